//! Instance identity credentials, as Diego gives every process of an instance (sidecars
//! too) in `CF_INSTANCE_CERT` and `CF_INSTANCE_KEY`: paths to a PEM certificate chain
//! and its private key. Diego signs them with its instance-identity CA, for 24 hours,
//! with the instance guid as common name and DNS name, the container's IP, and the app's
//! guid as an organizational unit (`app:<guid>`). Here a throwaway CA signs a fresh pair
//! for each run, so that a sidecar that reads, serves or presents them can be tried; the
//! files are removed when the run ends.

use crate::env::Ids;
use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::fs;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long Diego's instance identity certificates last by default.
const VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// The files of one run; dropping this removes them.
pub(crate) struct Credentials {
    dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Credentials {
    /// Writes a fresh certificate chain (instance, then CA) and key into `dir`, which
    /// is made anew with mode 0700 (its missing parents too); the key is 0600.
    pub(crate) fn create(dir: &Path, ids: &Ids, ip: &str) -> anyhow::Result<Credentials> {
        let (chain, key) =
            issue(ids, ip).context("cannot make the instance identity certificate")?;
        match fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot clear {}", dir.display()))
            }
            _ => {}
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let creds = Credentials {
            dir: dir.to_path_buf(),
            cert: dir.join("instance.crt"),
            key: dir.join("instance.key"),
        };
        let write = |path: &Path, text: &str, mode: u32| -> anyhow::Result<()> {
            fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .with_context(|| format!("cannot set the mode of {}", path.display()))
        };
        write(&creds.key, &key, 0o600)?;
        write(&creds.cert, &chain, 0o644)?;
        Ok(creds)
    }
}

impl Drop for Credentials {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The PEM chain (instance certificate, then the CA's) and the PEM private key.
fn issue(ids: &Ids, ip: &str) -> Result<(String, String), rcgen::Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let at = |d: Duration| {
        time::OffsetDateTime::from_unix_timestamp(d.as_secs() as i64)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    };
    let (not_before, not_after) = (
        at(now.saturating_sub(Duration::from_secs(60))),
        at(now + VALIDITY),
    );

    let mut ca = CertificateParams::default();
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name.push(
        DnType::CommonName,
        "stage-local instance identity CA (throwaway)",
    );
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (ca.not_before, ca.not_after) = (not_before, not_after);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

    let mut leaf = CertificateParams::new(vec![ids.instance.clone(), ip.to_string()])?;
    leaf.distinguished_name = rcgen::DistinguishedName::new();
    leaf.distinguished_name
        .push(DnType::CommonName, ids.instance.clone());
    leaf.distinguished_name
        .push(DnType::OrganizationalUnitName, format!("app:{}", ids.app));
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    (leaf.not_before, leaf.not_after) = (not_before, not_after);
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &ca)?;
    Ok((cert.pem() + &ca.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_chain_and_a_private_key_and_removes_them_when_dropped() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("creds");
        let ids = Ids::of("demo");
        let creds = Credentials::create(&dir, &ids, "127.0.0.1").expect("created");
        let chain = fs::read_to_string(&creds.cert).expect("cert");
        assert_eq!(chain.matches("-----BEGIN CERTIFICATE-----").count(), 2);
        let key = fs::read_to_string(&creds.key).expect("key");
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!((mode(&dir), mode(&creds.key)), (0o700, 0o600));
        drop(creds);
        assert!(!dir.exists());
    }
}
