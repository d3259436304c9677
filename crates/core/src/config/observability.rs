//! The observability section: logs (`LOG_LEVEL`, `LOG_FORMAT`) and error
//! reporting (`SENTRY_DSN` and its sample rates). Tracing exporters belong
//! here too.

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
        "Sentry project (https://KEY@HOST/PROJECT_ID) that 5xx responses and panics are reported to, scrubbed of keys, tokens and bodies; unset: no reporting.";
    SENTRY_TRACES_SAMPLE_RATE: value("0.1"),
        "Share of requests (0.0-1.0) sent to Sentry as performance transactions when SENTRY_DSN is set.";
    SENTRY_PROFILES_SAMPLE_RATE: value("0.1"),
        "Share of traced requests (0.0-1.0) to profile. Validated only: the Rust Sentry SDK has no profiler, so no profiles are sent.";
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
    pub sentry_traces_sample_rate: f32,
    pub sentry_profiles_sample_rate: f32,
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

/// A sample rate: a number from 0.0 to 1.0.
fn sample_rate(raw: &str) -> Result<f32, String> {
    match raw.parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!(
            "`{v}` is out of range: expected a number from 0.0 to 1.0"
        )),
        Err(_) => Err(format!(
            "`{raw}` is not valid: expected a number from 0.0 to 1.0"
        )),
    }
}

/// `http(s)://PUBLIC_KEY[:SECRET]@HOST[:PORT][/PATH]/PROJECT_ID`: what the
/// Sentry SDK accepts, checked here so that a bad DSN stops the start.
fn valid_sentry_dsn(d: &str) -> bool {
    let Some(rest) = d
        .strip_prefix("https://")
        .or_else(|| d.strip_prefix("http://"))
    else {
        return false;
    };
    let Some((authority, path)) = rest.split_once('/') else {
        return false;
    };
    let Some((user, host)) = authority.rsplit_once('@') else {
        return false;
    };
    let key = user.split(':').next().unwrap_or("");
    !key.is_empty()
        && !host.is_empty()
        && !d.contains(char::is_whitespace)
        && path
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .is_some_and(|project| !project.is_empty())
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
    let sentry_traces_sample_rate = r
        .parse_with(&SENTRY_TRACES_SAMPLE_RATE, sample_rate)
        .unwrap_or(0.0);
    let sentry_profiles_sample_rate = r
        .parse_with(&SENTRY_PROFILES_SAMPLE_RATE, sample_rate)
        .unwrap_or(0.0);
    Observability {
        log_level,
        log_format,
        sentry_dsn,
        sentry_traces_sample_rate,
        sentry_profiles_sample_rate,
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

    #[test]
    fn sentry_dsns_need_a_key_a_host_and_a_project() {
        assert!(valid_sentry_dsn("https://abc@o1.ingest.sentry.io/42"));
        assert!(valid_sentry_dsn("http://abc:secret@127.0.0.1:9000/sub/7"));
        assert!(!valid_sentry_dsn("https://o1.ingest.sentry.io/42"));
        assert!(!valid_sentry_dsn("https://abc@o1.ingest.sentry.io"));
        assert!(!valid_sentry_dsn("https://abc@o1.ingest.sentry.io/"));
        assert!(!valid_sentry_dsn("https://@host/1"));
        assert!(!valid_sentry_dsn("ftp://abc@host/1"));
    }

    #[test]
    fn sample_rates_are_fractions() {
        assert_eq!(sample_rate("0.1"), Ok(0.1));
        assert_eq!(sample_rate("1"), Ok(1.0));
        assert_eq!(sample_rate("0"), Ok(0.0));
        assert!(sample_rate("1.5").unwrap_err().contains("out of range"));
        assert!(sample_rate("-0.1").is_err());
        assert!(sample_rate("NaN").is_err());
        assert!(sample_rate("half").unwrap_err().contains("not valid"));
        for s in [&SENTRY_TRACES_SAMPLE_RATE, &SENTRY_PROFILES_SAMPLE_RATE] {
            assert_eq!(sample_rate(s.default.shown()), Ok(0.1));
        }
    }
}
