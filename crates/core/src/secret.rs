//! A string that must never reach a log line, an error message or a `Debug` dump.

use std::fmt;

/// A secret value (API key, password, DSN). `Debug` and `Display` print
/// `[redacted]`; the value is only reachable through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself. Call sites are the only places that can leak it,
    /// so keep them few and obvious.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Replaces the password of a URL (`scheme://user:password@host/...`) with
/// `[redacted]`, leaving the rest readable for operators.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let redacted_userinfo = match userinfo.find(':') {
        Some(colon) => format!("{}:[redacted]", &userinfo[..colon]),
        None if userinfo.is_empty() => String::new(),
        // A bare user part may itself be a password (redis://:pw@ or redis://pw@).
        None => "[redacted]".to_owned(),
    };
    format!(
        "{}://{}@{}",
        &url[..scheme_end],
        redacted_userinfo,
        &rest[at + 1..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/sy?sslmode=require"),
            "postgres://app:[redacted]@db:5432/sy?sslmode=require"
        );
        assert_eq!(
            redact_url("redis://:pw@127.0.0.1:6379/0"),
            "redis://:[redacted]@127.0.0.1:6379/0"
        );
        assert_eq!(redact_url("sqlite://./data/x.db"), "sqlite://./data/x.db");
        assert_eq!(
            redact_url("postgres://app@db/sy"),
            "postgres://[redacted]@db/sy"
        );
    }
}
