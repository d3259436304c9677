//! TLS for the service's own listener (`TLS_CERT_FILE`, `TLS_KEY_FILE`):
//! the certificate and its checks (`certificate`), and the HTTPS listener
//! whose certificate is swapped in place on reload (`listener`). TLS to
//! PostgreSQL and Redis is configured in their URLs and done by sqlx and
//! redis-rs, with the same rustls.

mod certificate;
mod listener;

pub use certificate::{
    describe_der, inspect, load, CertificateError, CertificateInfo, Inspection, ServerCertificate,
    Validity, EXPIRY_WARNING_DAYS,
};
pub use listener::{ReloadableCertificate, TlsListener};

/// Makes ring rustls's process-wide provider, for the libraries that ask
/// rustls for "the default" (redis-rs). Harmless when one is installed.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
