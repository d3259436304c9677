//! Reading the audit log, for the admin API and the CLI alike: filters
//! parsed once from what operators type, pages behind an opaque cursor, and
//! exports as JSON lines or CSV. (Verifying the hash chain is the store's
//! `verify_audit_chain`.)

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use serde::Serialize;
use switchyard_core::audit::AuditKind;
use switchyard_store::{AuditFilter, AuditOrder, AuditRecord, Store, StoreError};
use utoipa::ToSchema;

/// Records per page unless asked otherwise, and at most.
pub const DEFAULT_PAGE: i64 = 100;
pub const MAX_PAGE: i64 = 1000;

/// Records an export or a verification reads per query.
pub const EXPORT_PAGE: i64 = 1000;

/// An audit record as the API and exports show it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditRecordView {
    /// Increases with every record: the chain's order.
    pub id: i64,
    pub timestamp: DateTime<Utc>,
    /// The event's name, e.g. `key.created`.
    pub event: String,
    /// The key that acted.
    pub actor_key_id: Option<String>,
    /// That key, redacted to its prefix (`sy_1a2b3c4d…`).
    pub actor_key: Option<String>,
    pub project: Option<String>,
    /// What was acted on, e.g. a key id or a budget id.
    pub target: Option<String>,
    pub task_id: Option<String>,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    /// What happened, as recorded.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// The previous record's hash; `null` for records from before the chain.
    pub prev_hash: Option<String>,
    /// This record's hash (SHA-256, hex).
    pub hash: Option<String>,
}

impl From<AuditRecord> for AuditRecordView {
    fn from(r: AuditRecord) -> Self {
        let details = serde_json::from_str(&r.details)
            .unwrap_or_else(|_| serde_json::Value::String(r.details.clone()));
        Self {
            id: r.id,
            timestamp: r.timestamp,
            event: r.event,
            actor_key_id: r.actor_key_id,
            actor_key: r.actor_key,
            project: r.project,
            target: r.target,
            task_id: r.task_id,
            client_ip: r.client_ip,
            request_id: r.request_id,
            details,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

/// One page of records, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub object: &'static str,
    pub data: Vec<AuditRecordView>,
    /// Whether older records match too.
    pub has_more: bool,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// A filter or cursor that cannot be read; `field` names the parameter.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidQuery {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidQuery {
    InvalidQuery {
        field,
        message: message.into(),
    }
}

/// A time as operators give it: RFC 3339 (`2026-01-31T12:00:00Z`), a UTC
/// date (`2026-01-31`, its midnight), or an age before `now` (`90d`,
/// `12h`, `30m`).
pub fn parse_time(
    field: &'static str,
    raw: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, InvalidQuery> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(Utc.from_utc_datetime(&t));
        }
    }
    let age = raw
        .char_indices()
        .last()
        .and_then(|(i, unit)| {
            let n: i64 = raw[..i].parse().ok().filter(|n| *n >= 0)?;
            match unit {
                'd' => Duration::try_days(n),
                'h' => Duration::try_hours(n),
                'm' => Duration::try_minutes(n),
                _ => None,
            }
        })
        .and_then(|d| now.checked_sub_signed(d));
    age.ok_or_else(|| {
        invalid(
            field,
            format!("`{raw}` is not RFC 3339, YYYY-MM-DD or an age such as 7d, 12h, 30m"),
        )
    })
}

/// The filters of a listing or an export, as given; [`Self::parse`] checks them.
#[derive(Debug, Clone, Default)]
pub struct FilterInput<'a> {
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub event: Option<&'a str>,
    pub key_id: Option<&'a str>,
    pub project: Option<&'a str>,
}

impl FilterInput<'_> {
    /// The filter, or what is wrong with it: times that do not parse or
    /// are out of order, an event name that does not exist.
    pub fn parse(&self, now: DateTime<Utc>) -> Result<AuditFilter, InvalidQuery> {
        let from = self
            .from
            .map(|raw| parse_time("from", raw, now))
            .transpose()?;
        let to = self.to.map(|raw| parse_time("to", raw, now)).transpose()?;
        if let (Some(f), Some(t)) = (from, to) {
            if f >= t {
                return Err(invalid("to", "must be after from"));
            }
        }
        let event = match self.event {
            None => None,
            Some(raw) => Some(
                raw.parse::<AuditKind>()
                    .map_err(|e| invalid("event", e))?
                    .as_str()
                    .to_owned(),
            ),
        };
        let text = |field: &'static str, v: Option<&str>| match v {
            Some(v) if v.is_empty() || v.len() > 200 => {
                Err(invalid(field, "must be 1 to 200 characters"))
            }
            v => Ok(v.map(str::to_owned)),
        };
        Ok(AuditFilter {
            from,
            to,
            event,
            key_id: text("key_id", self.key_id)?,
            project: text("project", self.project)?,
        })
    }
}

/// The cursor handed out with a page: the last record's id, opaque to
/// clients.
fn cursor_of(id: i64) -> String {
    format!("a{id}")
}

/// Reads a cursor handed out by [`page`].
pub fn parse_cursor(raw: &str) -> Result<i64, InvalidQuery> {
    raw.strip_prefix('a')
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| invalid("cursor", "is not a cursor this service handed out"))
}

/// Reads a page size: 1 to [`MAX_PAGE`].
pub fn parse_limit(raw: &str) -> Result<i64, InvalidQuery> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| (1..=MAX_PAGE).contains(n))
        .ok_or_else(|| invalid("limit", format!("must be an integer from 1 to {MAX_PAGE}")))
}

/// Up to `limit` records matching `filter`, newest first, older than the
/// record `cursor` names.
pub async fn page(
    store: &Store,
    filter: &AuditFilter,
    cursor: Option<i64>,
    limit: i64,
) -> Result<AuditPage, StoreError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let mut records = store
        .audit_page(filter, AuditOrder::NewestFirst, cursor, limit + 1)
        .await?;
    let has_more = records.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    records.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = if has_more {
        records.last().map(|r| cursor_of(r.id))
    } else {
        None
    };
    Ok(AuditPage {
        object: "list",
        data: records.into_iter().map(AuditRecordView::from).collect(),
        has_more,
        next_cursor,
    })
}

/// How an export is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line, as the API shows records.
    Jsonl,
    /// RFC 4180 CSV with a header row; details as their JSON text.
    Csv,
}

/// The CSV columns, in order.
pub const CSV_HEADER: &str = "id,timestamp,event,actor_key_id,actor_key,project,target,task_id,client_ip,request_id,details,prev_hash,hash";

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_owned()
    }
}

/// One record as a CSV row (without the line break).
pub fn csv_row(r: &AuditRecord) -> String {
    let time = r
        .timestamp
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let id = r.id.to_string();
    let cells: [&str; 13] = [
        &id,
        &time,
        &r.event,
        r.actor_key_id.as_deref().unwrap_or(""),
        r.actor_key.as_deref().unwrap_or(""),
        r.project.as_deref().unwrap_or(""),
        r.target.as_deref().unwrap_or(""),
        r.task_id.as_deref().unwrap_or(""),
        r.client_ip.as_deref().unwrap_or(""),
        r.request_id.as_deref().unwrap_or(""),
        &r.details,
        r.prev_hash.as_deref().unwrap_or(""),
        r.hash.as_deref().unwrap_or(""),
    ];
    cells.map(csv_field).join(",")
}

/// Writes every record matching `filter`, oldest first, to `out`, reading
/// [`EXPORT_PAGE`] records at a time; returns how many were written.
pub async fn export(
    store: &Store,
    filter: &AuditFilter,
    format: ExportFormat,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<u64> {
    if format == ExportFormat::Csv {
        writeln!(out, "{CSV_HEADER}")?;
    }
    let mut after = None;
    let mut written = 0u64;
    loop {
        let records = store
            .audit_page(filter, AuditOrder::OldestFirst, after, EXPORT_PAGE)
            .await?;
        for r in &records {
            match format {
                ExportFormat::Csv => writeln!(out, "{}", csv_row(r))?,
                ExportFormat::Jsonl => writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&AuditRecordView::from(r.clone()))?
                )?,
            }
            written += 1;
        }
        match records.last() {
            Some(last) if records.len() == EXPORT_PAGE as usize => after = Some(last.id),
            _ => break,
        }
    }
    out.flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn times_parse_in_every_documented_form() {
        let now = Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap();
        let at = |s| parse_time("from", s, now);
        assert_eq!(
            at("2026-03-01T00:00:00Z").unwrap(),
            Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            at("2026-03-01").unwrap(),
            Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(at("7d").unwrap(), now - Duration::days(7));
        assert_eq!(at("12h").unwrap(), now - Duration::hours(12));
        assert_eq!(at("30m").unwrap(), now - Duration::minutes(30));
        for bad in [
            "",
            "d",
            "-1d",
            "7w",
            "yesterday",
            "99999999999999d",
            "2026-13-01",
        ] {
            let e = at(bad).unwrap_err();
            assert_eq!(e.field, "from", "{bad}");
        }
    }

    #[test]
    fn filters_cursors_and_limits_name_what_is_wrong() {
        let now = Utc::now();
        let f = FilterInput {
            from: Some("2026-01-01"),
            to: Some("2026-02-01"),
            event: Some("key.created"),
            key_id: Some("key_1"),
            project: None,
        }
        .parse(now)
        .unwrap();
        assert_eq!(f.event.as_deref(), Some("key.created"));
        let field = |input: FilterInput<'_>| input.parse(now).unwrap_err().field;
        assert_eq!(
            field(FilterInput {
                from: Some("2026-02-01"),
                to: Some("2026-01-01"),
                ..Default::default()
            }),
            "to"
        );
        assert_eq!(
            field(FilterInput {
                event: Some("key.stolen"),
                ..Default::default()
            }),
            "event"
        );
        assert_eq!(
            field(FilterInput {
                project: Some(""),
                ..Default::default()
            }),
            "project"
        );
        assert_eq!(parse_cursor(&cursor_of(42)).unwrap(), 42);
        for bad in ["42", "a", "a-1", "a0", "ax"] {
            assert_eq!(parse_cursor(bad).unwrap_err().field, "cursor");
        }
        assert_eq!(parse_limit("1000").unwrap(), 1000);
        for bad in ["0", "1001", "-5", "ten"] {
            assert_eq!(parse_limit(bad).unwrap_err().field, "limit");
        }
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("{\"k\":\"v\"}"), "\"{\"\"k\"\":\"\"v\"\"}\"");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(CSV_HEADER.split(',').count(), 13);
    }
}
