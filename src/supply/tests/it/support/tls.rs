//! A certificate authority made per test, for TLS servers on loopback.

use std::fs;
use std::path::Path;
use std::sync::Arc;

/// A certificate authority made fresh for one test: no key is ever committed.
pub(crate) struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    cert: rcgen::Certificate,
}

impl TestCa {
    #[must_use]
    pub(crate) fn new() -> TestCa {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sidecar-buildpack test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).expect("CA cert");
        TestCa {
            issuer: rcgen::Issuer::new(params, key),
            cert,
        }
    }

    /// Writes the CA's certificate into `dir` (a CF_SYSTEM_CERT_PATH), with a file
    /// that is not PEM beside it, which must be skipped.
    pub(crate) fn install(&self, dir: &Path) {
        fs::create_dir_all(dir).expect("cert dir");
        fs::write(dir.join("test-ca.pem"), self.cert.pem()).expect("write CA");
        fs::write(dir.join("README"), "not a certificate\n").expect("write junk");
    }

    /// A TLS server config whose certificate, signed by this CA, names `names`
    /// (IP addresses or DNS names). `expired` makes one that ended in 2001.
    #[must_use]
    pub(crate) fn server(&self, names: &[&str], expired: bool) -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(std::string::ToString::to_string).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sidecar-buildpack test server");
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        let chain = vec![cert.der().clone(), self.cert.der().clone()];
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        Arc::new(cfg)
    }
}
