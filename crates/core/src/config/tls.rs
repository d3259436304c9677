//! The TLS section: the optional HTTPS listener for installs without a
//! proxy in front (`TLS_CERT_FILE`, `TLS_KEY_FILE`, read again on SIGHUP).
//! Whether the files hold a usable, unexpired certificate and its key is
//! checked where rustls is (the server crate's `tls` module), by `serve`,
//! `config check` and `preflight`; here only that both are set and exist.

use super::reader::Reader;
use super::setting::{declare_settings, Section};
use std::path::PathBuf;

declare_settings! { Section::Tls;
    TLS_CERT_FILE: optional,
        "PEM certificate chain (the server's certificate first): HOST:PORT then serves HTTPS only. Read again on SIGHUP; with TLS_KEY_FILE.";
    TLS_KEY_FILE: optional,
        "PEM private key of TLS_CERT_FILE's certificate (PKCS#8, PKCS#1 or SEC1). Read again on SIGHUP.";
}

/// Where the HTTPS listener's certificate and key are; present only when
/// both are set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

pub(super) fn load(r: &mut Reader<'_>) -> Option<TlsConfig> {
    let cert_file = r.optional_path(&TLS_CERT_FILE);
    let key_file = r.optional_path(&TLS_KEY_FILE);
    for (setting, path) in [(&TLS_CERT_FILE, &cert_file), (&TLS_KEY_FILE, &key_file)] {
        if let Some(path) = path {
            if !path.is_file() {
                r.problem(
                    setting.name,
                    format!("`{}` is not a readable file", path.display()),
                );
            }
        }
    }
    match (cert_file, key_file) {
        (Some(cert_file), Some(key_file)) => Some(TlsConfig {
            cert_file,
            key_file,
        }),
        (Some(_), None) => {
            r.problem(TLS_KEY_FILE.name, "is required with TLS_CERT_FILE");
            None
        }
        (None, Some(_)) => {
            r.problem(TLS_CERT_FILE.name, "is required with TLS_KEY_FILE");
            None
        }
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, tempfile_dir};

    #[test]
    fn both_files_are_needed_and_must_exist() {
        assert!(load(&[]).config.tls.is_none());
        let dir = tempfile_dir();
        let cert = dir.join("cert.pem");
        std::fs::write(&cert, "not checked here").unwrap();
        let cert = cert.to_str().unwrap();
        let l = load(&[("TLS_CERT_FILE", cert)]);
        let problems: Vec<String> = l.problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems, ["TLS_KEY_FILE: is required with TLS_CERT_FILE"]);
        let l = load(&[
            ("TLS_CERT_FILE", cert),
            ("TLS_KEY_FILE", "/nonexistent/key.pem"),
        ]);
        let problems: Vec<String> = l.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            ["TLS_KEY_FILE: `/nonexistent/key.pem` is not a readable file"]
        );
        let l = load(&[("TLS_CERT_FILE", cert), ("TLS_KEY_FILE", cert)]);
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        let tls = l.config.tls.unwrap();
        assert_eq!(tls.cert_file, std::path::Path::new(cert));
        std::fs::remove_dir_all(dir).ok();
    }
}
