//! The database section: which database (`DATABASE_URL`), its connection
//! pool, migrations at start, pgbouncer transaction pooling, and whether
//! production may use SQLite. Backup and retention settings belong here too.
//! PostgreSQL TLS is set in the URL as libpq sets it (`sslmode`,
//! `sslrootcert`, `sslcert`, `sslkey`); this file checks those parameters.

use super::reader::Reader;
use super::setting::{declare_settings, Section};
use crate::secret::{redact_url, Secret};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The database used when `DATABASE_URL` is unset.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./data/switchyard.db";

declare_settings! { Section::Database;
    DATABASE_URL: secret_value(DEFAULT_DATABASE_URL),
        "sqlite://PATH (created on first run, WAL mode) or postgres://...; TLS as libpq sets it: ?sslmode=verify-full&sslrootcert=/path/ca.pem. Shown with its password redacted.";
    DATABASE_POOL_SIZE: value("20"),
        "Maximum pooled connections.";
    DATABASE_ECHO: value("false"),
        "Log every SQL statement (text only; bound values are never logged).";
    DATABASE_STATEMENT_CACHE_CAPACITY: value("100"),
        "Prepared statements cached per connection; 0 disables the cache.";
    DATABASE_TRANSACTION_POOLING: value("false"),
        "Set true behind pgbouncer in transaction pooling mode: no statement cache, each operation one transaction (PostgreSQL only).";
    DATABASE_MAX_LIFETIME_SECONDS: value("1800"),
        "Connections are recycled after this age.";
    DATABASE_ACQUIRE_TIMEOUT_SECONDS: value("5"),
        "How long a request waits for a pooled connection.";
    DATABASE_MIGRATE_ON_START: value("true"),
        "Apply pending migrations when serve starts.";
    ALLOW_SQLITE_IN_PRODUCTION: value("false"),
        "Accept SQLite with ENVIRONMENT=production (single-node installs).";
}

/// Which database engine a `DATABASE_URL` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl DatabaseKind {
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

impl FromStr for DatabaseKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            _ => Err("expected sqlite or postgres".into()),
        }
    }
}

impl fmt::Display for DatabaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Database connection and pool settings.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Connection URL; may carry a password, hence secret.
    pub url: Secret,
    pub kind: DatabaseKind,
    /// Maximum open connections (`DATABASE_POOL_SIZE`).
    pub pool_size: u32,
    /// Log every SQL statement (`DATABASE_ECHO`).
    pub echo: bool,
    /// Prepared statements cached per connection; 0 for pgbouncer in
    /// transaction pooling mode (`DATABASE_STATEMENT_CACHE_CAPACITY`).
    pub statement_cache_capacity: usize,
    /// Connections are closed and replaced after this age (`DATABASE_MAX_LIFETIME_SECONDS`).
    pub max_lifetime: Duration,
    /// How long a request waits for a free connection (`DATABASE_ACQUIRE_TIMEOUT_SECONDS`).
    pub acquire_timeout: Duration,
    /// Apply pending migrations when `serve` starts (`DATABASE_MIGRATE_ON_START`).
    pub migrate_on_start: bool,
    /// The database is reached through a transaction-pooling proxy such as
    /// pgbouncer with `pool_mode = transaction` (`DATABASE_TRANSACTION_POOLING`):
    /// no statement cache, and every operation runs in one transaction so a
    /// statement never outlives the server connection it was prepared on.
    pub transaction_pooling: bool,
}

impl DatabaseConfig {
    /// The file of a SQLite database (`sqlite://PATH?…`); `None` for
    /// PostgreSQL and in-memory databases.
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        let url = self.url.expose();
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or(rest);
        (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
    }

    /// These settings for another database (a restore target, a scratch
    /// database): its engine from the URL, a small pool, no transaction
    /// pooling. `None` when the URL is neither SQLite nor PostgreSQL.
    pub fn for_url(&self, url: &str) -> Option<DatabaseConfig> {
        Some(DatabaseConfig {
            url: Secret::new(url),
            kind: DatabaseKind::of_url(url)?,
            pool_size: 2,
            transaction_pooling: false,
            ..self.clone()
        })
    }
}

/// The database settings, and `ALLOW_SQLITE_IN_PRODUCTION`.
pub(super) fn load(r: &mut Reader<'_>) -> (DatabaseConfig, bool) {
    let url = r
        .secret_url(&DATABASE_URL)
        .unwrap_or_else(|| Secret::new(DEFAULT_DATABASE_URL));
    let kind = match DatabaseKind::of_url(url.expose()) {
        Some(k) => k,
        None => {
            r.problem(
                DATABASE_URL.name,
                format!(
                    "`{}` is not supported: expected sqlite://PATH or postgres://…",
                    redact_url(url.expose())
                ),
            );
            DatabaseKind::Sqlite
        }
    };
    let database = DatabaseConfig {
        url,
        kind,
        pool_size: r.integer(&DATABASE_POOL_SIZE, 1, 1000) as u32,
        echo: r.flag(&DATABASE_ECHO),
        statement_cache_capacity: r.integer(&DATABASE_STATEMENT_CACHE_CAPACITY, 0, 10_000) as usize,
        max_lifetime: r.seconds(&DATABASE_MAX_LIFETIME_SECONDS, 1, 86_400),
        acquire_timeout: r.seconds(&DATABASE_ACQUIRE_TIMEOUT_SECONDS, 1, 600),
        migrate_on_start: r.flag(&DATABASE_MIGRATE_ON_START),
        transaction_pooling: r.flag(&DATABASE_TRANSACTION_POOLING),
    };
    if database.transaction_pooling && kind != DatabaseKind::Postgres {
        r.problem(
            DATABASE_TRANSACTION_POOLING.name,
            "applies only to PostgreSQL (a pgbouncer in front of it)",
        );
    }
    if kind == DatabaseKind::Postgres {
        for problem in postgres_tls_problems(database.url.expose(), &|p| p.is_file()) {
            r.problem(DATABASE_URL.name, problem);
        }
        if let Some(key) = postgres_client_key(database.url.expose()) {
            r.secret_file(&key);
        }
    }
    let allow_sqlite_in_production = r.flag(&ALLOW_SQLITE_IN_PRODUCTION);
    (database, allow_sqlite_in_production)
}

/// The `sslmode` values PostgreSQL clients understand, weakest first.
pub const SSL_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// The client certificate's private key a `postgres://` URL names
/// (`sslkey`), a secret file.
fn postgres_client_key(url: &str) -> Option<std::path::PathBuf> {
    let parsed = url::Url::parse(url).ok()?;
    parsed
        .query_pairs()
        .find(|(name, _)| name == "sslkey" || name == "ssl-key")
        .map(|(_, value)| std::path::PathBuf::from(&*value))
}

/// What is wrong with the TLS parameters of a `postgres://` URL: an
/// `sslmode` no client knows, or an `sslrootcert`, `sslcert` or `sslkey`
/// that names no file (`is_file` tells). Messages name parameters and
/// paths, never the URL (it may hold a password).
fn postgres_tls_problems(url: &str, is_file: &dyn Fn(&std::path::Path) -> bool) -> Vec<String> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for (name, value) in parsed.query_pairs() {
        match &*name {
            "sslmode" if !SSL_MODES.contains(&&*value) => problems.push(format!(
                "sslmode `{value}` is not valid: expected one of {}",
                SSL_MODES.join(", ")
            )),
            "sslrootcert" | "sslcert" | "sslkey" | "ssl-root-cert" | "ssl-cert" | "ssl-key"
                if !is_file(std::path::Path::new(&*value)) =>
            {
                problems.push(format!("{name} `{value}` is not a readable file"))
            }
            _ => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, variables};
    use super::*;

    #[test]
    fn database_kinds_print_as_they_parse() {
        for k in [DatabaseKind::Sqlite, DatabaseKind::Postgres] {
            assert_eq!(k.as_str().parse::<DatabaseKind>(), Ok(k));
            assert_eq!(k.to_string(), k.as_str());
        }
        assert_eq!(
            DatabaseKind::of_url(DEFAULT_DATABASE_URL),
            Some(DatabaseKind::Sqlite)
        );
    }

    #[test]
    fn a_postgres_client_key_is_a_secret_file() {
        let url = "postgres://app@db/sy?sslmode=verify-full&sslcert=/c/app.crt&sslkey=/c/app.key";
        assert_eq!(postgres_client_key(url), Some("/c/app.key".into()));
        assert_eq!(postgres_client_key("postgres://app@db/sy"), None);
    }

    #[test]
    fn postgres_tls_parameters_are_checked() {
        let exists = |p: &std::path::Path| p == std::path::Path::new("/etc/ca.pem");
        let ok = "postgres://app:pw@db:5432/sy?sslmode=verify-full&sslrootcert=/etc/ca.pem";
        assert_eq!(postgres_tls_problems(ok, &exists), Vec::<String>::new());
        let bad = "postgres://app:pw@db:5432/sy?sslmode=verify_full&sslrootcert=/etc/missing.pem";
        assert_eq!(
            postgres_tls_problems(bad, &exists),
            [
                "sslmode `verify_full` is not valid: expected one of disable, allow, prefer, require, verify-ca, verify-full",
                "sslrootcert `/etc/missing.pem` is not a readable file"
            ]
        );
        let l = load(&[("DATABASE_URL", "postgres://app:secret@db/sy?sslmode=always")]);
        assert_eq!(l.problems.len(), 1, "{:?}", l.problems);
        assert_eq!(l.problems[0].variable, "DATABASE_URL");
        assert!(
            !l.problems[0].message.contains("secret"),
            "{:?}",
            l.problems
        );
    }

    #[test]
    fn transaction_pooling_is_shown_and_needs_postgres() {
        let l = load(&[("DATABASE_TRANSACTION_POOLING", "true")]);
        assert_eq!(variables(&l), ["DATABASE_TRANSACTION_POOLING"]);
        let l = load(&[
            ("DATABASE_TRANSACTION_POOLING", "true"),
            ("DATABASE_URL", "postgres://app:pw@pgbouncer:6432/sy"),
        ]);
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        assert!(l.config.database.transaction_pooling);
        let rows = l.config.describe();
        assert!(
            rows.contains(&("DATABASE_TRANSACTION_POOLING", "true".to_owned())),
            "{rows:?}"
        );
        assert!(
            rows.contains(&(
                "DATABASE_URL",
                "postgres://app:[redacted]@pgbouncer:6432/sy".to_owned()
            )),
            "{rows:?}"
        );
    }
}
