//! Embedded schema migrations, one list per database engine, applied with
//! sqlx's migrator (versioned, checksummed, locked against concurrent runs).

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use std::borrow::Cow;
use switchyard_core::config::DatabaseKind;

type Embedded = &'static [(i64, &'static str, &'static str)];

/// Declares each migration once; every one must exist for both engines.
macro_rules! embedded {
    ($(($version:literal, $description:literal, $file:literal)),* $(,)?) => {
        const POSTGRES: Embedded = &[$((
            $version,
            $description,
            include_str!(concat!("../migrations/postgres/", $file)),
        )),*];
        const SQLITE: Embedded = &[$((
            $version,
            $description,
            include_str!(concat!("../migrations/sqlite/", $file)),
        )),*];
    };
}

embedded!(
    (1, "core", "0001_core.sql"),
    (2, "key rate limits", "0002_key_rate_limits.sql"),
    (3, "budgets", "0003_budgets.sql"),
    (4, "tasks", "0004_tasks.sql"),
    (5, "key task profiles", "0005_key_task_profiles.sql"),
    (6, "scheduled jobs", "0006_scheduled_jobs.sql"),
    (7, "key rotation", "0007_key_rotation.sql"),
    (8, "audit chain", "0008_audit_chain.sql"),
    (9, "backup runs", "0009_backup_runs.sql"),
    (10, "budget leases", "0010_budget_leases.sql"),
    (
        11,
        "console sessions ended",
        "0011_console_sessions_ended.sql"
    ),
    (
        12,
        "usage indexes ascending",
        "0012_usage_indexes_ascending.sql"
    ),
);

#[derive(Debug)]
struct Source(Embedded);

impl<'s> MigrationSource<'s> for Source {
    fn resolve(self) -> futures_core::future::BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

pub(crate) async fn migrator(kind: DatabaseKind) -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Source(match kind {
        DatabaseKind::Sqlite => SQLITE,
        DatabaseKind::Postgres => POSTGRES,
    }))
    .await
}

/// Versions the binary knows about, in order.
pub(crate) fn known_versions(kind: DatabaseKind) -> Vec<i64> {
    match kind {
        DatabaseKind::Sqlite => SQLITE,
        DatabaseKind::Postgres => POSTGRES,
    }
    .iter()
    .map(|m| m.0)
    .collect()
}
