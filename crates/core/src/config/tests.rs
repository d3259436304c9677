//! Tests across sections: defaults, problem reporting, production rules,
//! secrets, and the checks that keep the declared settings, what load reads,
//! `describe`, the CLI help and README.md's table from drifting apart.

use super::*;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

pub(crate) fn load(vars: &[(&str, &str)]) -> LoadedConfig {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load(&move |name| map.get(name).cloned())
}

pub(crate) fn variables(l: &LoadedConfig) -> Vec<&str> {
    l.problems.iter().map(|p| p.variable.as_str()).collect()
}

pub(crate) fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sy-config-{}", crate::keys::new_id("t")));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn defaults_need_no_configuration() {
    let l = load(&[]);
    assert!(l.problems.is_empty(), "{:?}", l.problems);
    let c = l.config;
    assert_eq!(c.environment, Environment::Development);
    assert_eq!(c.port, 8000);
    assert_eq!(c.host.to_string(), "127.0.0.1");
    assert_eq!(c.api_rate_limit, 100);
    assert_eq!(c.api_timeout, Duration::from_secs(300));
    assert_eq!(c.database.pool_size, 20);
    assert_eq!(c.database.kind, DatabaseKind::Sqlite);
    assert_eq!(c.database.url.expose(), DEFAULT_DATABASE_URL);
    assert!(c.redis.is_none());
}

#[test]
fn every_problem_is_reported_at_once_with_its_variable() {
    let l = load(&[
        ("PORT", "eighty"),
        ("API_TIMEOUT", "0"),
        ("DATABASE_POOL_SIZE", "-1"),
        ("DEBUG", "maybe"),
        ("DATABASE_URL", "mysql://x"),
        ("LOG_LEVEL", "loud"),
        ("HOST", "example.com"),
    ]);
    assert_eq!(
        variables(&l),
        [
            "LOG_LEVEL",
            "DEBUG",
            "HOST",
            "PORT",
            "API_TIMEOUT",
            "DATABASE_URL",
            "DATABASE_POOL_SIZE"
        ]
    );
    let text = ConfigErrors(l.problems).to_string();
    assert!(text.contains("PORT: `eighty` is not valid"), "{text}");
    assert!(text.contains("7 problem(s)"), "{text}");
    for message in [
        "PORT: `eighty` is not valid: expected an integer from 0 to 65535 (invalid digit found in string)",
        "API_TIMEOUT: `0` is out of range: expected an integer from 1 to 86400",
        "DEBUG: `maybe` is not valid: expected true or false",
        "HOST: `example.com` is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::)",
    ] {
        assert!(text.contains(message), "{message} not in {text}");
    }
}

#[test]
fn enums_name_their_accepted_values() {
    let l = load(&[("ENVIRONMENT", "live"), ("LOG_FORMAT", "xml")]);
    let text = ConfigErrors(l.problems).to_string();
    assert!(
        text.contains(
            "ENVIRONMENT: `live` is not valid: expected development, staging or production"
        ),
        "{text}"
    );
    assert!(
        text.contains("LOG_FORMAT: `xml` is not valid: expected json or pretty"),
        "{text}"
    );
    assert_eq!("prod".parse::<Environment>(), Ok(Environment::Production));
    for e in [
        Environment::Development,
        Environment::Staging,
        Environment::Production,
    ] {
        assert_eq!(e.to_string().parse::<Environment>(), Ok(e));
    }
}

#[test]
fn production_refuses_debug_weak_jwt_and_sqlite() {
    let l = load(&[("ENVIRONMENT", "production"), ("DEBUG", "true")]);
    assert_eq!(variables(&l), ["DEBUG", "JWT_SECRET", "DATABASE_URL"]);

    let l = load(&[
        ("ENVIRONMENT", "production"),
        ("JWT_SECRET", "short"),
        ("DATABASE_URL", "postgres://u@h/db"),
    ]);
    assert_eq!(variables(&l), ["JWT_SECRET"]);

    let l = load(&[
        ("ENVIRONMENT", "production"),
        ("JWT_SECRET", &"x".repeat(32)),
        ("ALLOW_SQLITE_IN_PRODUCTION", "true"),
    ]);
    assert!(l.problems.is_empty(), "{:?}", l.problems);
}

#[test]
fn secrets_come_from_files_and_never_print() {
    let dir = tempfile_dir();
    let path = dir.join("jwt");
    std::fs::write(&path, "a-very-long-secret-value-from-a-file-0123\n").unwrap();
    let path_s = path.display().to_string();
    let l = load(&[
        ("JWT_SECRET_FILE", &path_s),
        ("DATABASE_URL", "postgres://app:pw-123@db/sy"),
    ]);
    assert!(l.problems.is_empty(), "{:?}", l.problems);
    let c = &l.config;
    assert_eq!(
        c.jwt_secret.as_ref().map(Secret::expose),
        Some("a-very-long-secret-value-from-a-file-0123")
    );
    let shown = format!("{:?} {:?}", c.describe(), c);
    assert!(!shown.contains("a-very-long-secret"), "{shown}");
    assert!(!shown.contains("pw-123"), "{shown}");

    let l = load(&[("JWT_SECRET", "x"), ("JWT_SECRET_FILE", &path_s)]);
    assert_eq!(variables(&l), ["JWT_SECRET"]);
    let l = load(&[("REDIS_PASSWORD_FILE", "/nonexistent/file")]);
    assert_eq!(variables(&l), ["REDIS_PASSWORD_FILE"]);
    std::fs::remove_dir_all(dir).ok();
}

/// Loads with `vars`, returning the names load asked the environment for.
fn names_read(vars: &[(&str, &str)]) -> (LoadedConfig, BTreeSet<String>) {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let asked = RefCell::new(BTreeSet::new());
    let loaded = Config::load(&|name| {
        asked.borrow_mut().insert(name.to_owned());
        map.get(name).cloned()
    });
    (loaded, asked.into_inner())
}

/// The rows of `describe` that are no variable.
const NOTES: [&str; 2] = ["route limits", "models"];

#[test]
fn setting_names_are_unique_and_sections_hold_their_own() {
    let mut seen = BTreeSet::new();
    for s in settings() {
        assert!(seen.insert(s.name), "{} is declared twice", s.name);
        assert!(
            s.name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
            "{}",
            s.name
        );
        assert!(!s.help.is_empty(), "{} has no help", s.name);
        assert_eq!(setting(s.name), Some(s));
    }
    for section in Section::ALL {
        for s in section.settings() {
            assert_eq!(s.section, section, "{} is listed under {section}", s.name);
        }
    }
}

#[test]
fn load_reads_and_describes_every_declared_setting_and_nothing_else() {
    let dir = tempfile_dir();
    let file = dir.join("models.toml");
    std::fs::write(
        &file,
        "[[models]]\nid = \"m1\"\nbase_url = \"http://127.0.0.1:1/v1\"\n",
    )
    .unwrap();
    let file = file.display().to_string();
    for vars in [vec![], vec![("SWITCHYARD_CONFIG", file.as_str())]] {
        let (loaded, asked) = names_read(&vars);
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let rows = loaded.config.describe();
        let mut got: Vec<&str> = rows.iter().map(|(name, _)| *name).collect();
        let mut want: Vec<&str> = settings().map(|s| s.name).chain(NOTES).collect();
        got.sort_unstable();
        want.sort_unstable();
        let missing: Vec<&&str> = want.iter().filter(|n| !got.contains(n)).collect();
        let extra: Vec<&&str> = got.iter().filter(|n| !want.contains(n)).collect();
        assert_eq!(
            got, want,
            "describe must list each declared setting once; missing {missing:?}, extra {extra:?}"
        );
        for name in &asked {
            let declared_as = setting(name).or_else(|| {
                name.strip_suffix("_FILE")
                    .and_then(setting)
                    .filter(|s| s.secret)
            });
            assert!(
                declared_as.is_some(),
                "load reads {name}, which is not declared"
            );
        }
        for s in settings() {
            let read = asked.contains(s.name);
            let unused = rows
                .iter()
                .any(|(n, v)| *n == s.name && v.starts_with("(not used"));
            assert!(
                read || unused,
                "{} is declared but load never reads it",
                s.name
            );
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn unset_settings_show_their_declared_default() {
    let rows = load(&[]).config.describe();
    for s in settings() {
        let (_, shown) = rows
            .iter()
            .find(|(n, _)| *n == s.name)
            .unwrap_or_else(|| panic!("{} is not described", s.name));
        match s.default {
            DefaultValue::Value(d) => assert_eq!(shown, d, "{}", s.name),
            DefaultValue::Unset => assert_eq!(shown, "(unset)", "{}", s.name),
            DefaultValue::Computed(_) => {}
        }
    }
    let rows = load(&[("DATABASE_TRANSACTION_POOLING", "true")])
        .config
        .describe();
    assert!(rows
        .iter()
        .any(|(n, v)| *n == "DATABASE_TRANSACTION_POOLING" && v == "true"));
}

#[test]
fn the_help_lists_every_setting() {
    let help = env_help();
    for s in settings() {
        assert!(
            help.contains(&format!("\n  {}", s.name)),
            "{} missing",
            s.name
        );
        assert!(help.contains(s.help), "{}'s help missing", s.name);
    }
    for section in Section::ALL {
        assert!(help.contains(&format!("\n{}:\n", section.title())));
    }
}

/// README.md's configuration section: from its heading to the next.
fn readme_configuration() -> &'static str {
    let readme = include_str!("../../../../README.md");
    let start = readme.find("\n## Configuration\n").unwrap();
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    &rest[..end]
}

/// The names between backticks in `text`.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

#[test]
fn the_readme_table_lists_exactly_the_declared_settings_with_their_defaults() {
    let mut documented = BTreeSet::new();
    for row in readme_configuration()
        .lines()
        .filter(|l| l.starts_with("| `"))
    {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
        let default = cells[1].replace('`', "");
        for name in backticked(cells[0]) {
            let s = setting(name)
                .unwrap_or_else(|| panic!("README.md documents {name}, which is not declared"));
            assert_eq!(
                default,
                s.default.shown(),
                "README.md's default for {name} differs from its declaration"
            );
            assert!(documented.insert(name), "README.md lists {name} twice");
        }
    }
    for s in settings() {
        assert!(
            documented.contains(s.name),
            "{} is declared but missing from README.md's configuration table",
            s.name
        );
    }
}

#[test]
fn the_readme_names_every_secret() {
    let section = readme_configuration();
    let start = section.find("Every secret").unwrap();
    let end = start + section[start..].find("can instead").unwrap();
    let listed: BTreeSet<&str> = backticked(&section[start..end]).into_iter().collect();
    let secrets: BTreeSet<&str> = settings().filter(|s| s.secret).map(|s| s.name).collect();
    assert_eq!(listed, secrets);
}
