//! Test support shared by the workspace's test suites: a fresh database for
//! each test (SQLite file or PostgreSQL database), private PostgreSQL, Redis
//! and pgbouncer servers for tests that stop or break them (PostgreSQL and
//! Redis optionally over TLS, with certificates from [`tls`]), and
//! [`process`], the harness for tests that run a binary (`switchyard serve`
//! on a port it picks itself).
//!
//! Nothing here skips: when PostgreSQL or Redis binaries or the shared
//! PostgreSQL server are missing, the calling test fails with a message that
//! says what to start or install (`scripts/test.sh` does both).

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

pub mod alloc_count;
pub mod fake_anthropic;
pub mod fake_openai;
mod fake_server;
pub mod otlp;
pub mod ports;
pub mod process;
mod records;
mod servers;
pub mod tls;

pub use records::{usage_record, usage_row};
pub use servers::{PrivatePgbouncer, PrivatePostgres, PrivateRedis};
pub use tls::{IssuedCert, TestCa};

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use switchyard_core::config::{DatabaseConfig, DatabaseKind};
use switchyard_core::Secret;

/// The embedded model's GGUF file for tests: `SWITCHYARD_TEST_MODEL`, else
/// where `scripts/test.sh` puts it (`switchyard models pull`). Panics with
/// what to run when it is missing.
pub fn local_model_path() -> PathBuf {
    let path = std::env::var("SWITCHYARD_TEST_MODEL").map_or_else(
        |_| PathBuf::from("/var/cache/switchyard/models/SmolLM2-135M-Instruct.Q4_1.gguf"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "the test model `{}` is missing: run scripts/test.sh, or \
         `switchyard models pull --dest {}` and set SWITCHYARD_TEST_MODEL",
        path.display(),
        path.display()
    );
    path
}

/// The PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that exists for one test. PostgreSQL databases are dropped when
/// this value is dropped; SQLite files live in a temporary directory.
pub struct TestDatabase {
    pub url: String,
    pub kind: DatabaseKind,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("switchyard.db").display());
        Self {
            url,
            kind: DatabaseKind::Sqlite,
            pg_name: None,
            _dir: Some(dir),
        }
    }

    /// Creates `sy_test_<random>` on the shared PostgreSQL server.
    pub fn postgres() -> Self {
        let admin = postgres_admin_url();
        let name = format!("sy_test_{:016x}", rand::random::<u64>());
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let url = replace_database(&admin, &name);
        Self {
            url,
            kind: DatabaseKind::Postgres,
            pg_name: Some(name),
            _dir: None,
        }
    }

    pub fn of_kind(kind: DatabaseKind) -> Self {
        match kind {
            DatabaseKind::Sqlite => Self::sqlite(),
            DatabaseKind::Postgres => Self::postgres(),
        }
    }

    pub fn config(&self) -> DatabaseConfig {
        database_config(&self.url, self.kind)
    }

    /// Runs one SQL statement outside the service's store, as an intruder
    /// or a careless operator with database access would (tests of the
    /// audit chain's tamper evidence); returns the rows it affected.
    pub async fn execute(&self, sql: &str) -> u64 {
        use sqlx::Connection;
        let result = match self.kind {
            DatabaseKind::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query(sql)
                    .execute(&mut c)
                    .await
                    .map(|r| r.rows_affected())
            }
            DatabaseKind::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query(sql)
                    .execute(&mut c)
                    .await
                    .map(|r| r.rows_affected())
            }
        };
        result.unwrap_or_else(|e| panic!("`{sql}` failed: {e}"))
    }

    /// Runs one query outside the service's store, as [`Self::execute`]
    /// does, and returns its first column as text (tests that read the
    /// schema back from the database's own catalog).
    pub async fn texts(&self, sql: &str) -> Vec<String> {
        use sqlx::Connection;
        let result = match self.kind {
            DatabaseKind::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar(sql).fetch_all(&mut c).await
            }
            DatabaseKind::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar(sql).fetch_all(&mut c).await
            }
        };
        result.unwrap_or_else(|e| panic!("`{sql}` failed: {e}"))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            let _ = Command::new("psql")
                .args([
                    postgres_admin_url().as_str(),
                    "-qAt",
                    "-c",
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Database settings as the service would load them, for a test URL.
pub fn database_config(url: &str, kind: DatabaseKind) -> DatabaseConfig {
    DatabaseConfig {
        url: Secret::new(url),
        kind,
        pool_size: 5,
        echo: false,
        statement_cache_capacity: 100,
        max_lifetime: Duration::from_secs(1800),
        acquire_timeout: Duration::from_secs(3),
        migrate_on_start: true,
        transaction_pooling: false,
    }
}

fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Runs one SQL command with `psql`, failing the test loudly if it cannot.
pub fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
        .output()
        .unwrap_or_else(|e| panic!("cannot run psql (install postgresql-client): {e}"));
    assert!(
        out.status.success(),
        "psql `{sql}` against {url} failed — is PostgreSQL running? (scripts/test.sh starts it)\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Calls `check` every 25 ms until it returns `Ok`, and returns that value;
/// fails the test with the last `Err` (what was seen instead) when `within`
/// passes first. For conditions nothing signals (a database row, a probe's
/// answer); output of a spawned process is waited on with
/// [`process::Process::wait_for`] instead.
pub fn poll_until<T>(within: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(value) => return value,
            Err(seen) => assert!(Instant::now() < deadline, "not within {within:?}: {seen}"),
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Polls `url` with GET every 50 ms until it answers 2xx (a server's
/// `/ready` or `/health`); false when `timeout` passes first.
pub fn wait_for_http_ok(url: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if reqwest::blocking::get(url).is_ok_and(|r| r.status().is_success()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl TestDatabase {
    /// Loses everything, as a disaster would: the PostgreSQL database is
    /// dropped and created again empty; the SQLite file (with its WAL) is
    /// deleted.
    pub fn drop_contents(&self) {
        match &self.pg_name {
            Some(name) => {
                let admin = postgres_admin_url();
                psql(&admin, &format!("DROP DATABASE {name} WITH (FORCE)"));
                psql(&admin, &format!("CREATE DATABASE {name}"));
            }
            None => {
                let file = self.url.trim_start_matches("sqlite://");
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{file}{suffix}"));
                }
                assert!(!std::path::Path::new(file).exists());
            }
        }
    }

    /// The database's name on the PostgreSQL server.
    pub fn postgres_name(&self) -> Option<&str> {
        self.pg_name.as_deref()
    }
}

/// The shared Redis server tests may use without stopping it.
pub fn redis_url() -> String {
    std::env::var("SWITCHYARD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

/// A prefix no other test (or earlier run) uses, for keys in shared Redis.
pub fn unique_prefix(what: &str) -> String {
    format!("sy-test:{what}:{:016x}:", rand::random::<u64>())
}

/// The fake Claude Code CLI shipped with the test kit (a Python script that
/// speaks `--output-format stream-json`).
pub fn fake_claude() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fake-claude")
}

/// The Switchyard API keys (`sy_` and 64 hex digits) in `text`.
pub fn find_keys(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| w.starts_with("sy_") && w.len() == 67)
        .map(str::to_owned)
        .collect()
}

#[doc(hidden)]
pub use switchyard_core::config::DatabaseKind as __DatabaseKind;

/// Runs each named `async fn(DatabaseKind)` as two tests, `NAME::sqlite` and
/// `NAME::postgres`. `multi_thread:` first runs them on a two-worker runtime.
///
/// ```ignore
/// on_both_engines!(keys_round_trip, budgets_hold);
/// on_both_engines!(multi_thread: two_replicas_agree);
/// ```
#[macro_export]
macro_rules! on_both_engines {
    (multi_thread: $($name:ident),* $(,)?) => {
        $crate::on_both_engines!(@tests tokio::test(flavor = "multi_thread", worker_threads = 2); $($name),*);
    };
    (@tests $attr:meta; $($name:ident),*) => {$(
        mod $name {
            #[$attr]
            async fn sqlite() {
                super::$name($crate::__DatabaseKind::Sqlite).await
            }
            #[$attr]
            async fn postgres() {
                super::$name($crate::__DatabaseKind::Postgres).await
            }
        }
    )*};
    ($($name:ident),* $(,)?) => {
        $crate::on_both_engines!(@tests tokio::test; $($name),*);
    };
}

#[cfg(test)]
mod tests {
    use super::replace_database;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            replace_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            replace_database("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(replace_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
