//! Backups of Switchyard's database.
//!
//! A backup is a consistent snapshot taken while the service runs —
//! SQLite's `VACUUM INTO`, or `pg_dump` (custom format) of an exported
//! PostgreSQL snapshot — stored as an archive beside a [`Manifest`] that
//! records, per table, the row count and a checksum computed inside that
//! same snapshot. [`verify`] restores a backup into a scratch database and
//! compares; [`restore`] brings one back into an empty database. Backups
//! go to a directory or S3-compatible storage ([`destination`]).
//!
//! Restoring across engines (a SQLite backup into PostgreSQL or the
//! reverse) is refused: each engine's archive is that engine's own format.

mod checks;
pub mod destination;
mod files;
pub mod pg;
mod scratch;
mod stored;

pub use checks::compare;
use checks::{look_keys_up, migrate, refuse_across_engines};
use stored::{fetch_checked, list, read_manifest};

use chrono::{DateTime, Utc};
use destination::Target;
use futures_util::future::BoxFuture;
use serde::Serialize;
use std::time::Instant;
use switchyard_core::backup::{to_prune, BackupId, Destination, Manifest};
use switchyard_core::config::{BackupConfig, DatabaseConfig, DatabaseKind};
use switchyard_store::{BackupRun, Store};

/// What can go wrong, each with a message that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Store(#[from] switchyard_store::StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("backup storage: {0}")]
    Storage(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Tool(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the archive of {id} is damaged: {why}")]
    Corrupt { id: String, why: String },
    #[error("{0}")]
    Refused(String),
    #[error("the restore of {id} differs from its manifest: {}", .differences.join("; "))]
    Mismatch {
        id: String,
        differences: Vec<String>,
    },
}

pub type Result<T> = std::result::Result<T, BackupError>;

/// Where long work reports how far it got (a terminal shows it; the
/// service's scheduled jobs log phases only).
pub trait Progress: Send + Sync {
    /// A new step begins.
    fn phase(&self, what: &str);
    /// Bytes done of a transfer, of `total` when known.
    fn bytes(&self, what: &str, done: u64, total: Option<u64>);
}

/// Reports nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn phase(&self, _: &str) {}
    fn bytes(&self, _: &str, _: u64, _: Option<u64>) {}
}

/// The database backed up, and the backup settings.
pub struct Backups {
    pub store: Store,
    pub database: DatabaseConfig,
    pub config: BackupConfig,
}

fn archive_name(id: &BackupId, kind: DatabaseKind) -> String {
    match kind {
        DatabaseKind::Sqlite => format!("{id}.sqlite.gz"),
        DatabaseKind::Postgres => format!("{id}.dump"),
    }
}

/// What `restore` did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub id: BackupId,
    pub tables: usize,
    pub rows: u64,
    /// Migrations applied after the restore, to bring the schema current.
    pub migrations_applied: usize,
    pub duration_ms: u64,
}

/// What `verify` checked.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub id: BackupId,
    pub tables: usize,
    pub rows: u64,
    /// Keys found again through the service's own lookup by hash.
    pub keys_looked_up: usize,
    pub migrations_applied: usize,
    pub duration_ms: u64,
}

impl Backups {
    /// Backups of the configured database, with the configured settings.
    pub fn new(store: Store, config: &switchyard_core::Config) -> Self {
        Self {
            store,
            database: config.database.clone(),
            config: config.backup.clone(),
        }
    }

    /// The destination given, else `BACKUP_DESTINATION`, to write to (a
    /// directory is created if missing).
    pub fn target(&self, to: Option<&Destination>) -> Result<Target> {
        Target::open(self.destination(to)?, &self.config.s3)
    }

    /// The destination given, else `BACKUP_DESTINATION`, to read from: a
    /// directory that does not exist is an error, not created.
    pub fn source(&self, from: Option<&Destination>) -> Result<Target> {
        Target::open_existing(self.destination(from)?, &self.config.s3)
    }

    fn destination<'a>(&'a self, given: Option<&'a Destination>) -> Result<&'a Destination> {
        given.or(self.config.destination.as_ref()).ok_or_else(|| {
            BackupError::Invalid(
                "no destination: pass --to/--from DIRECTORY|s3://bucket/prefix or set BACKUP_DESTINATION"
                    .into(),
            )
        })
    }

    /// Records a run: the backup it made or tested, its size, or why it
    /// failed.
    async fn record(
        &self,
        kind: &str,
        target: &Target,
        started: DateTime<Utc>,
        backup: Option<&BackupId>,
        size: Option<u64>,
        failure: Option<&BackupError>,
    ) {
        let (backup_id, ok, error) = (
            backup.map(ToString::to_string),
            failure.is_none(),
            failure.map(ToString::to_string),
        );
        let run = BackupRun {
            id: format!("run_{}", hex::encode(rand::random::<[u8; 8]>())),
            kind: kind.to_owned(),
            backup_id,
            destination: target.shown().to_owned(),
            started_at: started,
            finished_at: switchyard_core::now(),
            ok,
            size_bytes: size.and_then(|s| i64::try_from(s).ok()),
            error,
        };
        if let Err(e) = self.store.record_backup_run(&run).await {
            tracing::error!(error = %e, kind, "the backup run could not be recorded");
        }
    }

    /// Takes a backup and writes it to `target`; the run is recorded.
    /// (Boxed, so that a caller's future stays `Send` for any lifetime.)
    pub fn create<'a>(
        &'a self,
        target: &'a Target,
        progress: &'a dyn Progress,
    ) -> BoxFuture<'a, Result<Manifest>> {
        Box::pin(async move {
            let started = switchyard_core::now();
            let result = self.create_inner(target, started, progress).await;
            match &result {
                Ok(m) => {
                    self.record(
                        "backup",
                        target,
                        started,
                        Some(&m.id),
                        Some(m.size_bytes),
                        None,
                    )
                    .await
                }
                Err(e) => {
                    tracing::error!(error = %e, destination = target.shown(), "backup failed");
                    self.record("backup", target, started, None, None, Some(e))
                        .await;
                }
            }
            result
        })
    }

    async fn create_inner(
        &self,
        target: &Target,
        started: DateTime<Utc>,
        progress: &dyn Progress,
    ) -> Result<Manifest> {
        let clock = Instant::now();
        let kind = self.store.kind();
        let id = BackupId::new(started, kind.as_str());
        let work = tempfile::tempdir()?;
        let archive = work.path().join(archive_name(&id, kind));
        let (tables, schema_version, tool) = match kind {
            DatabaseKind::Sqlite => {
                progress.phase("copying the database (VACUUM INTO)");
                let copy = work.path().join("snapshot.db");
                self.store.sqlite_copy_into(&copy).await?;
                let snapshot = scratch::open_sqlite(&self.database, &copy)?;
                progress.phase("counting and checksumming the tables");
                let tables = snapshot.table_summaries().await?;
                let version = snapshot.schema_version().await?;
                snapshot.close().await;
                progress.phase("compressing");
                files::gzip(&copy, &archive).await?;
                (tables, version, None)
            }
            DatabaseKind::Postgres => {
                let pg_dump = pg::find("pg_dump", self.config.pg_bin_dir.as_deref()).await?;
                let server = self.store.pg_server_major().await?;
                pg::require_at_least(&pg_dump, server, "the server")?;
                let mut snapshot = self.store.pg_export_snapshot().await?;
                progress.phase("dumping (pg_dump) and checksumming the tables");
                let url = self.database.url.expose().to_owned();
                let snapshot_id = snapshot.id().to_owned();
                let dumped = pg::dump(&pg_dump, &url, &snapshot_id, &archive);
                let (dumped, tables) = tokio::join!(dumped, snapshot.table_summaries());
                let version = snapshot.schema_version().await;
                snapshot.finish().await.ok();
                dumped?;
                (
                    tables?,
                    version?,
                    Some(format!("{} (server {server})", pg_dump.version)),
                )
            }
        };
        progress.phase("hashing the archive");
        let (size_bytes, sha256) = files::sha256(&archive).await?;
        let manifest = Manifest {
            id: id.clone(),
            format: Manifest::FORMAT,
            created_at: started,
            engine: kind.as_str().to_owned(),
            service_version: env!("CARGO_PKG_VERSION").to_owned(),
            schema_version,
            archive: archive_name(&id, kind),
            size_bytes,
            sha256,
            tool,
            duration_ms: 0,
            tables,
        };
        progress.phase(&format!("uploading to {}", target.shown()));
        target
            .put_file(&manifest.archive, &archive, progress)
            .await?;
        let manifest = Manifest {
            duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
            ..manifest
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| BackupError::Invalid(e.to_string()))?;
        target.put_bytes(&Manifest::file_name(&id), json).await?;
        Ok(manifest)
    }

    /// Loads backups' manifests, newest first; an unreadable manifest is
    /// skipped with a warning.
    pub async fn list(&self, target: &Target) -> Result<Vec<Manifest>> {
        list(target).await
    }

    /// Deletes backups past retention (keeping at least `BACKUP_KEEP_MIN`);
    /// returns the ids deleted (or, with `dry_run`, that would be).
    pub fn prune<'a>(
        &'a self,
        target: &'a Target,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> BoxFuture<'a, Result<Vec<BackupId>>> {
        Box::pin(self.prune_inner(target, now, dry_run))
    }

    async fn prune_inner(
        &self,
        target: &Target,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Vec<BackupId>> {
        let manifests = list(target).await?;
        let all: Vec<(BackupId, DateTime<Utc>)> = manifests
            .iter()
            .map(|m| (m.id.clone(), m.created_at))
            .collect();
        let doomed = to_prune(&all, now, self.config.retention_days, self.config.keep_min);
        if !dry_run {
            for id in &doomed {
                if let Some(m) = manifests.iter().find(|m| &m.id == id) {
                    // The manifest first: a backup half deleted is not listed.
                    target.delete(&Manifest::file_name(id)).await?;
                    target.delete(&m.archive).await?;
                }
            }
        }
        Ok(doomed)
    }

    /// Restores backup `id` into the database at `url`, which must be empty
    /// unless `force`; then applies the migrations this version has.
    pub async fn restore(
        &self,
        target: &Target,
        id: &BackupId,
        url: &str,
        force: bool,
        progress: &dyn Progress,
    ) -> Result<RestoreReport> {
        let clock = Instant::now();
        let manifest = read_manifest(target, id).await?;
        let into = self.database.for_url(url).ok_or_else(|| {
            BackupError::Invalid("--target must be sqlite://PATH or postgres://…".into())
        })?;
        refuse_across_engines(&manifest, into.kind)?;
        let work = tempfile::tempdir()?;
        let archive = fetch_checked(target, &manifest, work.path(), progress).await?;
        let restored =
            scratch::restore_into(&self.config, &manifest, &archive, &into, force, progress)
                .await?;
        progress.phase("applying migrations");
        let migrations_applied = migrate(&restored).await?;
        restored.close().await;
        Ok(RestoreReport {
            id: manifest.id.clone(),
            tables: manifest.tables.len(),
            rows: manifest.tables.iter().map(|t| t.rows).sum(),
            migrations_applied,
            duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// The recovery test: restores backup `id` (else the newest) into a
    /// scratch database, compares every table with the manifest, finds the
    /// keys again through the service's own lookup, and drops the scratch
    /// database. The run is recorded.
    pub fn verify<'a>(
        &'a self,
        target: &'a Target,
        id: Option<&'a BackupId>,
        progress: &'a dyn Progress,
    ) -> BoxFuture<'a, Result<VerifyReport>> {
        Box::pin(async move {
            let started = switchyard_core::now();
            let result = self.verify_newest_or(target, id, progress).await;
            match &result {
                Ok(r) => {
                    self.record("verify", target, started, Some(&r.id), None, None)
                        .await
                }
                Err(e) => {
                    tracing::error!(error = %e, destination = target.shown(), "backup verification failed");
                    self.record("verify", target, started, id, None, Some(e))
                        .await;
                }
            }
            result
        })
    }

    async fn verify_newest_or(
        &self,
        target: &Target,
        id: Option<&BackupId>,
        progress: &dyn Progress,
    ) -> Result<VerifyReport> {
        let manifest = match id {
            Some(id) => read_manifest(target, id).await?,
            None => list(target).await?.into_iter().next().ok_or_else(|| {
                BackupError::NotFound(format!("there is no backup in {}", target.shown()))
            })?,
        };
        self.verify_inner(target, &manifest, progress).await
    }

    async fn verify_inner(
        &self,
        target: &Target,
        manifest: &Manifest,
        progress: &dyn Progress,
    ) -> Result<VerifyReport> {
        let clock = Instant::now();
        refuse_across_engines(manifest, self.store.kind())?;
        let work = tempfile::tempdir()?;
        let archive = fetch_checked(target, manifest, work.path(), progress).await?;
        let scratch = scratch::Scratch::create(self, work.path()).await?;
        let outcome = async {
            let restored = scratch::restore_into(
                &self.config,
                manifest,
                &archive,
                scratch.config(),
                true,
                progress,
            )
            .await?;
            progress.phase("comparing every table with the manifest");
            let found = restored.table_summaries().await?;
            let mut differences = compare(&manifest.tables, &found);
            let version = restored.schema_version().await?;
            if version != manifest.schema_version {
                differences.push(format!(
                    "schema version {version} restored, the manifest says {}",
                    manifest.schema_version
                ));
            }
            if !differences.is_empty() {
                restored.close().await;
                return Err(BackupError::Mismatch {
                    id: manifest.id.to_string(),
                    differences,
                });
            }
            progress.phase("applying migrations and looking the keys up");
            let migrations_applied = migrate(&restored).await?;
            let (keys_looked_up, problems) = look_keys_up(&restored).await?;
            restored.close().await;
            if !problems.is_empty() {
                return Err(BackupError::Mismatch {
                    id: manifest.id.to_string(),
                    differences: problems,
                });
            }
            Ok((migrations_applied, keys_looked_up))
        }
        .await;
        scratch.drop_it().await;
        let (migrations_applied, keys_looked_up) = outcome?;
        Ok(VerifyReport {
            id: manifest.id.clone(),
            tables: manifest.tables.len(),
            rows: manifest.tables.iter().map(|t| t.rows).sum(),
            keys_looked_up,
            migrations_applied,
            duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
}
