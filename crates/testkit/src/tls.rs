//! Certificates made by the test: a private certificate authority that
//! issues server certificates for given names and dates, for the tests of
//! TLS to PostgreSQL, Redis and the service's own HTTPS listener.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// A certificate authority of the test's own.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA's certificate, PEM: what clients are told to trust.
    pub cert_pem: String,
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    /// A new CA; `name` becomes its common name.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("generate the CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(365);
        params.not_after = now + time::Duration::days(3650);
        let cert = params.self_signed(&key).expect("self-sign the CA");
        Self {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
        }
    }

    /// A server certificate for `names` (host names or IP addresses; the
    /// first is also the common name), valid from 1 day ago for 90 days.
    pub fn issue(&self, names: &[&str]) -> IssuedCert {
        self.issue_between(names, -1, 90)
    }

    /// A server certificate for `names` valid from `from_days` to
    /// `until_days` days from now (negative: in the past).
    pub fn issue_between(&self, names: &[&str], from_days: i64, until_days: i64) -> IssuedCert {
        let key = KeyPair::generate().expect("generate a server key");
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(sans).expect("server certificate parameters");
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from_days);
        params.not_after = now + time::Duration::days(until_days);
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign the server certificate");
        IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes the CA certificate to `dir/name`; returns its path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.cert_pem).expect("write the CA certificate");
        path
    }
}

impl IssuedCert {
    /// Writes `dir/<stem>.crt` and `dir/<stem>.key` (mode 0600); returns
    /// their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem).expect("write the certificate");
        std::fs::write(&key, &self.key_pem).expect("write the key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the key");
        (cert, key)
    }
}
