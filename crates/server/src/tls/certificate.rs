//! The HTTPS listener's certificate: read from its PEM files, checked (the
//! key belongs to the certificate, the dates), and described for operators
//! by `serve`, `config check` and `preflight`.

use chrono::{DateTime, Utc};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use switchyard_core::config::TlsConfig;
use x509_cert::der::Decode;

/// A certificate with fewer days than this left is reported as expiring
/// soon (by `config check`, `preflight` and `serve`); the alert rule
/// `TLSCertificateExpiringSoon` uses the same threshold.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// Why the certificate or its key cannot be used. Messages name the file,
/// never the key's contents; [`CertificateError::variable`] names the
/// setting.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        variable: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: PathBuf },
    #[error("`{path}` is not valid PEM: {reason}")]
    Pem {
        variable: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("the certificate in `{path}` cannot be parsed: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("`{path}` holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("the key in `{path}` cannot be used: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("`{key}` is not the private key of the certificate in TLS_CERT_FILE `{cert}`")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
}

impl CertificateError {
    /// The setting whose file is at fault.
    pub fn variable(&self) -> &'static str {
        match self {
            CertificateError::Read { variable, .. } | CertificateError::Pem { variable, .. } => {
                variable
            }
            CertificateError::NoCertificate { .. } | CertificateError::Parse { .. } => {
                "TLS_CERT_FILE"
            }
            CertificateError::NoKey { .. }
            | CertificateError::Key { .. }
            | CertificateError::KeyMismatch { .. } => "TLS_KEY_FILE",
        }
    }
}

/// What operators are told about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The subject, as RFC 4514 writes it (`CN=api.example.com`).
    pub subject: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

/// Where a certificate stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    NotYetValid,
    Valid { days_left: i64 },
    ExpiringSoon { days_left: i64 },
    Expired,
}

impl CertificateInfo {
    /// Days from `now` to the end of validity, fractional; negative once expired.
    pub fn days_left(&self, now: DateTime<Utc>) -> f64 {
        (self.not_after - now).num_seconds() as f64 / 86_400.0
    }

    pub fn validity(&self, now: DateTime<Utc>) -> Validity {
        if now < self.not_before {
            return Validity::NotYetValid;
        }
        if now >= self.not_after {
            return Validity::Expired;
        }
        let days_left = (self.not_after - now).num_days();
        if days_left < EXPIRY_WARNING_DAYS {
            Validity::ExpiringSoon { days_left }
        } else {
            Validity::Valid { days_left }
        }
    }

    /// One line: the subject, the end of validity and how far off it is.
    pub fn describe(&self, now: DateTime<Utc>) -> String {
        let until = self
            .not_after
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match self.validity(now) {
            Validity::NotYetValid => format!(
                "{}: not valid before {}",
                self.subject,
                self.not_before
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Validity::Expired => format!("{}: expired on {until}", self.subject),
            Validity::Valid { days_left } | Validity::ExpiringSoon { days_left } => {
                format!(
                    "{}: valid until {until} ({days_left} days left)",
                    self.subject
                )
            }
        }
    }
}

/// A certificate chain and its key, ready for rustls, with what it says.
#[derive(Debug, Clone)]
pub struct ServerCertificate {
    pub key: Arc<CertifiedKey>,
    pub info: CertificateInfo,
}

fn read(variable: &'static str, path: &Path) -> Result<Vec<u8>, CertificateError> {
    std::fs::read(path).map_err(|source| CertificateError::Read {
        variable,
        path: path.to_owned(),
        source,
    })
}

/// Reads and checks `TLS_CERT_FILE` and `TLS_KEY_FILE`: PEM, a certificate
/// that parses, a key rustls can sign with, and the key belonging to the
/// first certificate. The dates are not judged here (see [`inspect`]).
pub fn load(config: &TlsConfig) -> Result<ServerCertificate, CertificateError> {
    let cert_path = &config.cert_file;
    let key_path = &config.key_file;
    let chain = CertificateDer::pem_slice_iter(&read("TLS_CERT_FILE", cert_path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertificateError::Pem {
            variable: "TLS_CERT_FILE",
            path: cert_path.clone(),
            reason: e.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(CertificateError::NoCertificate {
            path: cert_path.clone(),
        });
    };
    let info = describe_der(leaf).map_err(|reason| CertificateError::Parse {
        path: cert_path.clone(),
        reason,
    })?;
    let key =
        PrivateKeyDer::from_pem_slice(&read("TLS_KEY_FILE", key_path)?).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => CertificateError::NoKey {
                path: key_path.clone(),
            },
            e => CertificateError::Pem {
                variable: "TLS_KEY_FILE",
                path: key_path.clone(),
                reason: e.to_string(),
            },
        })?;
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| CertificateError::Key {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
    let key = CertifiedKey::new(chain, signer);
    match key.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(CertificateError::KeyMismatch {
                cert: cert_path.clone(),
                key: key_path.clone(),
            })
        }
    }
    Ok(ServerCertificate {
        key: Arc::new(key),
        info,
    })
}

/// The subject and dates of a DER certificate.
pub fn describe_der(der: &[u8]) -> Result<CertificateInfo, String> {
    let cert = x509_cert::Certificate::from_der(der).map_err(|e| e.to_string())?;
    let validity = &cert.tbs_certificate.validity;
    let time = |t: &x509_cert::time::Time| {
        let d = t.to_unix_duration();
        i64::try_from(d.as_secs())
            .ok()
            .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
            .ok_or_else(|| "a date is out of range".to_owned())
    };
    Ok(CertificateInfo {
        subject: cert.tbs_certificate.subject.to_string(),
        not_before: time(&validity.not_before)?,
        not_after: time(&validity.not_after)?,
    })
}

/// What `config check` and `preflight` say about the configured
/// certificate.
#[derive(Debug)]
pub enum Inspection {
    /// Usable now (it may still be expiring soon: see [`Validity`]).
    Usable(CertificateInfo, Validity),
    /// Loads, but is outside its dates: clients refuse it.
    OutOfDate(CertificateInfo, Validity),
    /// Cannot be used at all.
    Unusable(CertificateError),
}

/// Loads the configured certificate and judges it at `now`.
pub fn inspect(config: &TlsConfig, now: DateTime<Utc>) -> Inspection {
    match load(config) {
        Err(e) => Inspection::Unusable(e),
        Ok(cert) => match cert.info.validity(now) {
            v @ (Validity::Expired | Validity::NotYetValid) => Inspection::OutOfDate(cert.info, v),
            v => Inspection::Usable(cert.info, v),
        },
    }
}

impl fmt::Display for Validity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Validity::NotYetValid => f.write_str("not yet valid"),
            Validity::Expired => f.write_str("expired"),
            Validity::Valid { days_left } => write!(f, "valid for {days_left} more days"),
            Validity::ExpiringSoon { days_left } => write!(
                f,
                "expires in {days_left} days (under {EXPIRY_WARNING_DAYS}): renew it"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(not_before: &str, not_after: &str) -> CertificateInfo {
        CertificateInfo {
            subject: "CN=api.example.com".into(),
            not_before: not_before.parse().unwrap(),
            not_after: not_after.parse().unwrap(),
        }
    }

    #[test]
    fn validity_follows_the_dates_and_the_warning_threshold() {
        let c = info("2026-01-01T00:00:00Z", "2026-04-01T00:00:00Z");
        let at = |t: &str| c.validity(t.parse().unwrap());
        assert_eq!(at("2025-12-31T23:59:59Z"), Validity::NotYetValid);
        assert_eq!(
            at("2026-01-01T00:00:00Z"),
            Validity::Valid { days_left: 90 }
        );
        assert_eq!(
            at("2026-03-17T23:00:00Z"),
            Validity::Valid { days_left: 14 }
        );
        assert_eq!(
            at("2026-03-18T00:00:01Z"),
            Validity::ExpiringSoon { days_left: 13 }
        );
        assert_eq!(at("2026-04-01T00:00:00Z"), Validity::Expired);
        let now = "2026-03-31T12:00:00Z".parse().unwrap();
        assert!((c.days_left(now) - 0.5).abs() < 1e-9);
        assert_eq!(
            c.describe(now),
            "CN=api.example.com: valid until 2026-04-01T00:00:00Z (0 days left)"
        );
        assert_eq!(
            c.describe("2026-05-01T00:00:00Z".parse().unwrap()),
            "CN=api.example.com: expired on 2026-04-01T00:00:00Z"
        );
    }

    #[test]
    fn garbage_is_no_certificate() {
        assert!(describe_der(b"not DER").is_err());
    }
}
