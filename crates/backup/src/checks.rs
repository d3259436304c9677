//! What a restore is checked against: the manifest's tables, the keys'
//! lookup, the engine it came from; and the migrations run after it.

use crate::{BackupError, Result};
use switchyard_core::backup::{Manifest, TableSummary};
use switchyard_core::config::DatabaseKind;
use switchyard_store::Store;

/// Applies the migrations on a blocking thread of its own: sqlx's
/// migrator gives a future that is not `Send` for every lifetime, which a
/// scheduled job's future must be.
pub(crate) async fn migrate(store: &Store) -> Result<usize> {
    let store = store.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(store.migrate()))
        .await
        .map_err(|e| BackupError::Invalid(format!("the migrations' thread failed: {e}")))?
        .map_err(BackupError::from)
}

pub(crate) fn refuse_across_engines(manifest: &Manifest, kind: DatabaseKind) -> Result<()> {
    if manifest.engine != kind.as_str() {
        return Err(BackupError::Refused(format!(
            "{} is a {} backup and cannot be restored into {}: restoring across engines is not \
             supported (each engine's archive is its own format); restore into a {} database",
            manifest.id,
            manifest.engine,
            kind.as_str(),
            manifest.engine
        )));
    }
    Ok(())
}

/// The differences between the tables a manifest lists and those found.
pub fn compare(expected: &[TableSummary], found: &[TableSummary]) -> Vec<String> {
    let mut out = Vec::new();
    for e in expected {
        match found.iter().find(|f| f.name == e.name) {
            None => out.push(format!("table {} is missing", e.name)),
            Some(f) if f.rows != e.rows => out.push(format!(
                "table {}: {} rows restored, the manifest says {}",
                e.name, f.rows, e.rows
            )),
            Some(f) if f.sha256 != e.sha256 => out.push(format!(
                "table {}: the rows' checksum differs from the manifest's ({} rows each)",
                e.name, e.rows
            )),
            Some(_) => {}
        }
    }
    for f in found {
        if !expected.iter().any(|e| e.name == f.name) {
            out.push(format!(
                "table {} was restored but is not in the manifest",
                f.name
            ));
        }
    }
    out
}

/// Every key of the restored database found again by its hash, as the
/// service authenticates: how many were found, and those that were not.
pub(crate) async fn look_keys_up(store: &Store) -> Result<(usize, Vec<String>)> {
    let keys = store.list_keys(true).await?;
    let mut problems = Vec::new();
    for key in &keys {
        let hash = store.key_hash(&key.id).await?;
        let Some(hash) = hash
            .as_deref()
            .and_then(switchyard_core::keys::KeyHash::from_hex)
        else {
            problems.push(format!("key {} has no valid hash", key.id));
            continue;
        };
        let found = store.find_key_by_hash(&hash).await?;
        if found.as_ref().map(|k| &k.id) != Some(&key.id) {
            problems.push(format!("key {} is not found by its hash", key.id));
        }
    }
    Ok((keys.len() - problems.len(), problems))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::backup::TableSummary;

    fn t(name: &str, rows: u64, sha: &str) -> TableSummary {
        TableSummary {
            name: name.into(),
            rows,
            sha256: sha.into(),
        }
    }

    #[test]
    fn differences_are_named_table_by_table() {
        let expected = [
            t("api_keys", 3, "a"),
            t("usage_records", 10, "b"),
            t("tasks", 1, "c"),
        ];
        let found = [
            t("api_keys", 3, "a"),
            t("usage_records", 9, "b"),
            t("extra", 0, "d"),
        ];
        assert_eq!(
            compare(&expected, &found),
            [
                "table usage_records: 9 rows restored, the manifest says 10",
                "table tasks is missing",
                "table extra was restored but is not in the manifest",
            ]
        );
        assert!(compare(&expected, &expected).is_empty());
        let changed = [
            t("api_keys", 3, "x"),
            t("usage_records", 10, "b"),
            t("tasks", 1, "c"),
        ];
        assert_eq!(
            compare(&expected, &changed),
            ["table api_keys: the rows' checksum differs from the manifest's (3 rows each)"]
        );
    }
}
