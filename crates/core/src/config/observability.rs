//! The observability section: logs (`LOG_LEVEL`, `LOG_FORMAT`) and error
//! reporting (`SENTRY_DSN`). Tracing exporters belong here too.

use super::reader::Reader;
use super::setting::{declare_settings, Section};
use crate::secret::Secret;
use std::fmt;
use std::str::FromStr;

declare_settings! { Section::Observability;
    LOG_LEVEL: value("info"),
        "trace, debug, info, warn, error, off, or filter directives (info,sqlx=warn).";
    LOG_FORMAT: value("json"),
        "json (one object per line, with the request's id, route and key id) or pretty. Logs go to stderr.";
    SENTRY_DSN: secret,
        "Validated (https://KEY@HOST/PROJECT); error reporting is not wired yet.";
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Json,
    Pretty,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Json => "json",
            LogFormat::Pretty => "pretty",
        }
    }
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "pretty" | "text" => Ok(Self::Pretty),
            _ => Err("expected json or pretty".into()),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The observability section's values.
pub(super) struct Observability {
    pub log_level: String,
    pub log_format: LogFormat,
    pub sentry_dsn: Option<Secret>,
}

fn valid_log_level(s: &str) -> bool {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    s.split(',').all(|part| {
        let level = part.rsplit('=').next().unwrap_or(part).trim();
        let target_ok = part
            .split_once('=')
            .is_none_or(|(t, _)| !t.trim().is_empty() && !t.contains(char::is_whitespace));
        target_ok && LEVELS.contains(&level.to_ascii_lowercase().as_str())
    })
}

fn valid_sentry_dsn(d: &str) -> bool {
    (d.starts_with("https://") || d.starts_with("http://"))
        && d.contains('@')
        && d.rsplit('/').next().is_some_and(|p| !p.is_empty())
}

pub(super) fn load(r: &mut Reader<'_>) -> Observability {
    let log_level = r.text(&LOG_LEVEL);
    if !valid_log_level(&log_level) {
        r.problem(
            LOG_LEVEL.name,
            format!("`{log_level}` is not valid: expected trace, debug, info, warn, error or off, optionally as target=level directives"),
        );
    }
    let log_format = r.parse(&LOG_FORMAT);
    let sentry_dsn = r.secret(&SENTRY_DSN);
    if sentry_dsn
        .as_ref()
        .is_some_and(|d| !valid_sentry_dsn(d.expose()))
    {
        r.problem(
            SENTRY_DSN.name,
            "is not a Sentry DSN (https://PUBLIC_KEY@HOST/PROJECT_ID)",
        );
    }
    Observability {
        log_level,
        log_format,
        sentry_dsn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_accept_directives() {
        assert!(valid_log_level("info"));
        assert!(valid_log_level("info,sqlx=warn"));
        assert!(!valid_log_level("verbose"));
        assert!(!valid_log_level("=info"));
    }

    #[test]
    fn log_formats_print_as_they_parse() {
        for f in [LogFormat::Json, LogFormat::Pretty] {
            assert_eq!(f.as_str().parse::<LogFormat>(), Ok(f));
            assert_eq!(f.to_string(), f.as_str());
        }
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Pretty));
        assert_eq!(LogFormat::default().as_str(), LOG_FORMAT.default.shown());
    }
}
