//! The audit log's hash chain: every record carries the hash of the record
//! before it and its own hash, SHA-256 over that previous hash and the
//! record's content as stored. Changing, inserting or deleting a record
//! anywhere but at the ends breaks a link that [`ChainCheck`] names.
//!
//! The chain's order is the records' id order. Its first record names
//! [`GENESIS_HASH`] as its predecessor, or, once retention has deleted the
//! oldest records, the hash of the newest deleted one (the anchor).

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The predecessor of the first record ever chained.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Tags the canonical form, so that a later form cannot collide with it.
const FORM: &str = "switchyard-audit-v1";

/// A record's content as the chain covers it: every column but the id and
/// the hashes, as stored (the event by name, details as their JSON text).
#[derive(Debug, Clone, Copy)]
pub struct ChainedFields<'a> {
    pub timestamp: DateTime<Utc>,
    pub event: &'a str,
    pub actor_key_id: Option<&'a str>,
    pub actor_key: Option<&'a str>,
    pub project: Option<&'a str>,
    pub target: Option<&'a str>,
    pub task_id: Option<&'a str>,
    pub client_ip: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub details: &'a str,
}

/// A timestamp at the precision both databases keep (microseconds), so the
/// hash of a record read back equals the hash computed before writing it.
pub fn chain_time(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// The hash of a record whose predecessor's hash is `prev_hash`: lowercase
/// hex SHA-256 of a JSON array (the form's tag, `prev_hash`, then each field
/// in declaration order, absent ones as `null`), which is unambiguous
/// whatever the fields contain.
pub fn chain_hash(prev_hash: &str, f: &ChainedFields<'_>) -> String {
    let canonical = serde_json::json!([
        FORM,
        prev_hash,
        chain_time(f.timestamp).to_rfc3339_opts(SecondsFormat::Micros, true),
        f.event,
        f.actor_key_id,
        f.actor_key,
        f.project,
        f.target,
        f.task_id,
        f.client_ip,
        f.request_id,
        f.details,
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// One stored record as the check sees it.
#[derive(Debug, Clone, Copy)]
pub struct ChainLink<'a> {
    pub id: i64,
    pub fields: ChainedFields<'a>,
    pub prev_hash: Option<&'a str>,
    pub hash: Option<&'a str>,
}

/// Why a link is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// The record's content no longer matches its hash: it was changed.
    HashMismatch,
    /// The record names a predecessor other than the record before it: a
    /// record between them was deleted, or one was inserted or changed.
    PrevMismatch,
    /// The oldest record names a predecessor other than the anchor left by
    /// retention (or the genesis hash): older records were deleted outside
    /// retention.
    AnchorMismatch,
    /// A record after the chain started carries no hash.
    MissingHash,
}

impl BreakKind {
    /// What the break means, for operators.
    pub fn explain(self) -> &'static str {
        match self {
            BreakKind::HashMismatch => {
                "its content does not match its hash: the record was changed"
            }
            BreakKind::PrevMismatch => {
                "it does not name the record before it as its predecessor: a record between them was deleted, or one was inserted or changed"
            }
            BreakKind::AnchorMismatch => {
                "the oldest record does not follow the last record retention deleted: older records were deleted outside retention"
            }
            BreakKind::MissingHash => "it carries no hash although the chain had started",
        }
    }
}

/// The first broken link: the record at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    pub id: i64,
    pub kind: BreakKind,
    /// The hash the record should name or carry.
    pub expected: Option<String>,
    /// What it names or carries.
    pub found: Option<String>,
}

/// Walks records in id order and stops at the first broken link. Records
/// older than the first hashed one (written before the chain existed) are
/// counted apart.
#[derive(Debug, Clone)]
pub struct ChainCheck {
    expected_prev: String,
    started: bool,
    /// Records whose links held.
    pub checked: u64,
    /// Records written before the chain existed.
    pub unchained: u64,
    /// The hash of the last record whose links held: the chain's head.
    pub head: Option<String>,
    pub first_id: Option<i64>,
    pub last_id: Option<i64>,
}

impl ChainCheck {
    /// A check whose first record must name `anchor` (retention's anchor)
    /// or, without one, [`GENESIS_HASH`].
    pub fn new(anchor: Option<&str>) -> Self {
        Self {
            expected_prev: anchor.unwrap_or(GENESIS_HASH).to_owned(),
            started: false,
            checked: 0,
            unchained: 0,
            head: None,
            first_id: None,
            last_id: None,
        }
    }

    /// Checks the next record in id order.
    pub fn feed(&mut self, link: &ChainLink<'_>) -> Result<(), ChainBreak> {
        let broken = |kind, expected: Option<&str>, found: Option<&str>| ChainBreak {
            id: link.id,
            kind,
            expected: expected.map(str::to_owned),
            found: found.map(str::to_owned),
        };
        let Some(hash) = link.hash else {
            if self.started {
                return Err(broken(BreakKind::MissingHash, None, None));
            }
            self.unchained += 1;
            return Ok(());
        };
        if link.prev_hash != Some(self.expected_prev.as_str()) {
            let kind = if self.started {
                BreakKind::PrevMismatch
            } else {
                BreakKind::AnchorMismatch
            };
            return Err(broken(
                kind,
                Some(self.expected_prev.as_str()),
                link.prev_hash,
            ));
        }
        let actual = chain_hash(&self.expected_prev, &link.fields);
        if actual != hash {
            return Err(broken(
                BreakKind::HashMismatch,
                Some(actual.as_str()),
                Some(hash),
            ));
        }
        self.started = true;
        self.checked += 1;
        self.first_id.get_or_insert(link.id);
        self.last_id = Some(link.id);
        self.expected_prev = hash.to_owned();
        self.head = Some(hash.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn fields(details: &str) -> ChainedFields<'_> {
        ChainedFields {
            timestamp: DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456789Z")
                .unwrap()
                .with_timezone(&Utc),
            event: "key.created",
            actor_key_id: Some("key_a"),
            actor_key: None,
            project: Some("p"),
            target: Some("key_b"),
            task_id: None,
            client_ip: None,
            request_id: None,
            details,
        }
    }

    #[test]
    fn hashes_are_stable_and_cover_every_field() {
        let h = chain_hash(GENESIS_HASH, &fields("{}"));
        assert_eq!(h.len(), 64);
        assert_eq!(h, chain_hash(GENESIS_HASH, &fields("{}")));
        // Nanoseconds beyond the stored microseconds do not count.
        let mut f = fields("{}");
        f.timestamp = chain_time(f.timestamp);
        assert_eq!(h, chain_hash(GENESIS_HASH, &f));
        assert_ne!(h, chain_hash(GENESIS_HASH, &fields("{\"a\":1}")));
        assert_ne!(h, chain_hash(&"1".repeat(64), &fields("{}")));
        // A value moved between fields changes the hash.
        let mut moved = fields("{}");
        moved.actor_key = Some("key_a");
        moved.actor_key_id = None;
        assert_ne!(h, chain_hash(GENESIS_HASH, &moved));
    }

    #[test]
    fn the_check_names_the_first_broken_link() {
        let details = ["{}", "{\"n\":1}", "{\"n\":2}"];
        let mut hashes = Vec::new();
        let mut prev = GENESIS_HASH.to_owned();
        for d in details {
            let h = chain_hash(&prev, &fields(d));
            hashes.push((prev.clone(), h.clone()));
            prev = h;
        }
        let link = |i: usize, d: &'static str| ChainLink {
            id: i as i64 + 1,
            fields: fields(d),
            prev_hash: Some(hashes[i].0.as_str()),
            hash: Some(hashes[i].1.as_str()),
        };
        let mut ok = ChainCheck::new(None);
        for (i, d) in details.into_iter().enumerate() {
            ok.feed(&link(i, d)).unwrap();
        }
        assert_eq!(
            (ok.checked, ok.head.as_deref()),
            (3, Some(hashes[2].1.as_str()))
        );

        // A changed record.
        let mut c = ChainCheck::new(None);
        c.feed(&link(0, details[0])).unwrap();
        let e = c.feed(&link(1, "{\"n\":9}")).unwrap_err();
        assert_eq!((e.id, e.kind), (2, BreakKind::HashMismatch));

        // A deleted record.
        let mut c = ChainCheck::new(None);
        c.feed(&link(0, details[0])).unwrap();
        let e = c.feed(&link(2, details[2])).unwrap_err();
        assert_eq!((e.id, e.kind), (3, BreakKind::PrevMismatch));

        // Retention's anchor lets the chain start later; anything else does not.
        let mut c = ChainCheck::new(Some(&hashes[0].1));
        c.feed(&link(1, details[1])).unwrap();
        let e = ChainCheck::new(None)
            .feed(&link(1, details[1]))
            .unwrap_err();
        assert_eq!((e.id, e.kind), (2, BreakKind::AnchorMismatch));

        // Records from before the chain are counted apart, but not after it.
        let mut c = ChainCheck::new(None);
        let bare = ChainLink {
            prev_hash: None,
            hash: None,
            ..link(0, details[0])
        };
        c.feed(&bare).unwrap();
        c.feed(&link(0, details[0])).unwrap();
        assert_eq!((c.unchained, c.checked), (1, 1));
        assert_eq!(c.feed(&bare).unwrap_err().kind, BreakKind::MissingHash);
    }
}
