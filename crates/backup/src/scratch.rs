//! The databases a backup is restored into: a restore's target (which must
//! be empty unless forced), or a scratch database for a restore test,
//! dropped afterwards.

use crate::{files, pg, BackupError, Backups, Progress, Result};
use std::path::{Path, PathBuf};
use switchyard_core::backup::Manifest;
use switchyard_core::config::{BackupConfig, DatabaseConfig, DatabaseKind};
use switchyard_store::Store;

/// Opens the SQLite database file at `path` with the service's settings.
pub fn open_sqlite(db: &DatabaseConfig, path: &Path) -> Result<Store> {
    let url = format!("sqlite://{}", path.display());
    let config = db
        .for_url(&url)
        .ok_or_else(|| BackupError::Invalid(format!("{url} is not a database URL")))?;
    Ok(Store::connect_lazy(&config)?)
}

fn not_empty(tables: &[String]) -> BackupError {
    let shown: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
    BackupError::Refused(format!(
        "the target database is not empty ({} tables: {}{}): restore into an empty database, \
         or pass --force to replace what the backup holds",
        tables.len(),
        shown.join(", "),
        if tables.len() > shown.len() {
            ", …"
        } else {
            ""
        }
    ))
}

/// Restores `archive` (checked already) into the database `into`; returns
/// it opened, schema as the backup had it.
pub async fn restore_into(
    config: &BackupConfig,
    manifest: &Manifest,
    archive: &Path,
    into: &DatabaseConfig,
    force: bool,
    progress: &dyn Progress,
) -> Result<Store> {
    match into.kind {
        DatabaseKind::Sqlite => {
            let file = into.sqlite_file().ok_or_else(|| {
                BackupError::Invalid("the SQLite target must be a file (sqlite://PATH)".into())
            })?;
            if file.exists() {
                let existing = Store::connect_lazy(into)?;
                let tables = existing.table_names().await;
                existing.close().await;
                let tables = tables?;
                if !tables.is_empty() && !force {
                    return Err(not_empty(&tables));
                }
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = file.clone().into_os_string();
                    p.push(suffix);
                    match std::fs::remove_file(PathBuf::from(p)) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                        _ => {}
                    }
                }
            }
            if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            progress.phase(&format!("decompressing into {}", file.display()));
            let mut partial = file.clone().into_os_string();
            partial.push(".restoring");
            let partial = PathBuf::from(partial);
            files::gunzip(archive, &partial)
                .await
                .map_err(|e| BackupError::Corrupt {
                    id: manifest.id.to_string(),
                    why: e.to_string(),
                })?;
            std::fs::rename(&partial, &file)?;
            Ok(Store::connect_lazy(into)?)
        }
        DatabaseKind::Postgres => {
            let store = Store::connect_lazy(into)?;
            let tables = store.table_names().await?;
            if !tables.is_empty() && !force {
                return Err(not_empty(&tables));
            }
            let tool = pg::find("pg_restore", config.pg_bin_dir.as_deref()).await?;
            let server = store.pg_server_major().await?;
            pg::require_at_least(&tool, server, "the server")?;
            if let Some(dumped) = manifest.tool.as_deref().and_then(pg::major_of) {
                pg::require_at_least(&tool, dumped, "the pg_dump that wrote the archive")?;
            }
            progress.phase("restoring (pg_restore)");
            pg::restore(&tool, into.url.expose(), archive, !tables.is_empty()).await?;
            Ok(store)
        }
    }
}

enum Cleanup {
    /// A file in the work directory, which goes with it.
    Nothing,
    /// A database created for the test, dropped through the live database.
    Drop { name: String },
    /// `BACKUP_VERIFY_DATABASE_URL`, emptied again.
    Empty,
}

/// A scratch database for a restore test.
pub struct Scratch {
    config: DatabaseConfig,
    live: Store,
    cleanup: Cleanup,
}

impl Scratch {
    /// A temporary SQLite file in `work` for a SQLite backup; for
    /// PostgreSQL, `BACKUP_VERIFY_DATABASE_URL` emptied, else a new database
    /// on the backed-up server.
    pub async fn create(backups: &Backups, work: &Path) -> Result<Self> {
        let live = backups.store.clone();
        let invalid = |url: &str| BackupError::Invalid(format!("{url} is not a database URL"));
        match live.kind() {
            DatabaseKind::Sqlite => {
                let url = format!("sqlite://{}", work.join("scratch.db").display());
                let config = backups
                    .database
                    .for_url(&url)
                    .ok_or_else(|| invalid(&url))?;
                Ok(Self {
                    config,
                    live,
                    cleanup: Cleanup::Nothing,
                })
            }
            DatabaseKind::Postgres => match &backups.config.verify_database_url {
                Some(url) => {
                    let config = backups
                        .database
                        .for_url(url.expose())
                        .ok_or_else(|| invalid("BACKUP_VERIFY_DATABASE_URL"))?;
                    let scratch = Store::connect_lazy(&config)?;
                    let reset = scratch.pg_reset_public_schema().await;
                    scratch.close().await;
                    reset?;
                    Ok(Self {
                        config,
                        live,
                        cleanup: Cleanup::Empty,
                    })
                }
                None => {
                    let name = format!(
                        "switchyard_verify_{}",
                        hex::encode(rand::random::<[u8; 6]>())
                    );
                    let mut url = url::Url::parse(backups.database.url.expose())
                        .map_err(|e| BackupError::Invalid(format!("DATABASE_URL: {e}")))?;
                    url.set_path(&format!("/{name}"));
                    let config = backups
                        .database
                        .for_url(url.as_str())
                        .ok_or_else(|| invalid("the scratch database"))?;
                    live.pg_create_database(&name).await.map_err(|e| {
                        BackupError::Tool(format!(
                            "cannot create the scratch database {name} ({e}): give the service's \
                             database user CREATEDB, or set BACKUP_VERIFY_DATABASE_URL to a \
                             database for restore tests"
                        ))
                    })?;
                    Ok(Self {
                        config,
                        live,
                        cleanup: Cleanup::Drop { name },
                    })
                }
            },
        }
    }

    pub fn config(&self) -> &DatabaseConfig {
        &self.config
    }

    /// Removes what the test restored; failures are logged.
    pub async fn drop_it(self) {
        let result = match &self.cleanup {
            Cleanup::Nothing => Ok(()),
            Cleanup::Drop { name } => self.live.pg_drop_database(name).await,
            Cleanup::Empty => match Store::connect_lazy(&self.config) {
                Ok(s) => {
                    let r = s.pg_reset_public_schema().await;
                    s.close().await;
                    r
                }
                Err(e) => Err(e),
            },
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "the restore test's scratch database could not be removed");
        }
    }
}
