//! The packager: zip name, contents, modes, `stack:`, cached dependencies, byte-for-byte
//! reproducibility, and that the unpacked zip stages the sidecar with no network.

use crate::support::*;
use md5::Digest;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const PACKAGE: &str = env!("CARGO_BIN_EXE_package");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A copy of the repo's buildpack files whose config-server pin is `artifact`'s
/// digest; the uri stays the real release URL, which this machine cannot reach.
pub(crate) struct Source {
    pub(crate) root: tempfile::TempDir,
    pub(crate) artifacts: tempfile::TempDir,
    pub(crate) artifact: Vec<u8>,
}

impl Source {
    pub(crate) fn new() -> Source {
        let root = tempfile::tempdir().expect("root");
        for f in [
            "README.md",
            "VERSION",
            "bin/detect",
            "bin/compile",
            "bin/supply",
        ] {
            let dest = root.path().join(f);
            fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
            fs::copy(Path::new(REPO).join(f), dest).expect("copy");
        }
        let artifact = tgz(&[("bin/config-server", &sidecar_bytes("packaged"), 0o755)]);
        let manifest = fs::read_to_string(Path::new(REPO).join("manifest.yml")).expect("manifest");
        let manifest: String = manifest
            .lines()
            .map(|l| {
                if l.starts_with("  sha256: ") {
                    format!("  sha256: {}\n", sha256_hex(&artifact))
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        fs::write(root.path().join("manifest.yml"), manifest).expect("write manifest");
        let artifacts = tempfile::tempdir().expect("artifacts");
        let uri = release_uri(root.path());
        let name = uri.rsplit('/').next().expect("file name");
        fs::write(artifacts.path().join(name), &artifact).expect("artifact");
        Source {
            root,
            artifacts,
            artifact,
        }
    }

    /// Points the dependency's uri at `url` and empties the artifact dir, so the
    /// packager must download it.
    pub(crate) fn served_from(&self, url: &str) {
        let path = self.root.path().join("manifest.yml");
        let m = fs::read_to_string(&path).expect("manifest");
        fs::write(&path, m.replace(&release_uri(self.root.path()), url)).expect("manifest");
        for e in fs::read_dir(self.artifacts.path())
            .expect("artifacts")
            .flatten()
        {
            fs::remove_file(e.path()).expect("rm artifact");
        }
    }

    pub(crate) fn package(&self, out: &Path, flags: &[&str]) -> (i32, String) {
        self.package_with(out, flags, &[])
    }

    /// Runs the packager with extra env vars (proxies, timeouts).
    pub(crate) fn package_with(
        &self,
        out: &Path,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> (i32, String) {
        let o = Command::new(PACKAGE)
            .arg("--root")
            .arg(self.root.path())
            .arg("--supply")
            .arg(SUPPLY)
            .arg("--output")
            .arg(out)
            .arg("--artifact-dir")
            .arg(self.artifacts.path())
            .args(flags)
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env("SIDECAR_BUILDPACK_RETRY_DELAY_MS", "10")
            .envs(env.iter().copied())
            .output()
            .expect("run package");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert_no_secret(&text);
        (o.status.code().unwrap_or(-1), text)
    }
}

fn release_uri(root: &Path) -> String {
    let m = fs::read_to_string(root.join("manifest.yml")).expect("manifest");
    m.lines()
        .find_map(|l| l.strip_prefix("  uri: "))
        .expect("uri line")
        .to_string()
}

/// Name → (mode, contents) of every entry.
fn entries(zip_path: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(fs::File::open(zip_path).expect("open zip")).expect("a zip");
    let mut out = BTreeMap::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).expect("entry");
        let mode = f.unix_mode().expect("every entry carries a Unix mode");
        let mut data = Vec::new();
        f.read_to_end(&mut data).expect("read entry");
        out.insert(
            f.name().expect("entry name").to_string(),
            (mode & 0o7777, data),
        );
    }
    out
}

/// Unzips like CF does, keeping modes.
fn unzip(zip_path: &Path, dest: &Path) {
    for (name, (mode, data)) in entries(zip_path) {
        let p = dest.join(name);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, data).expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    }
}

fn zip_in(out: &Path, name: &str) -> PathBuf {
    let p = out.join(name);
    assert!(
        p.is_file(),
        "{} missing; have {:?}",
        p.display(),
        fs::read_dir(out).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    p
}

fn listing(z: &BTreeMap<String, (u32, Vec<u8>)>) -> String {
    z.iter().map(|(n, (m, _))| format!("{m:o} {n}\n")).collect()
}

#[test]
fn uncached_zip_is_what_cf_create_buildpack_accepts() {
    let src = Source::new();
    let out = tempfile::tempdir().expect("out");
    let (code, text) = src.package(out.path(), &[]);
    assert_eq!(code, 0, "{text}");
    let zip = zip_in(out.path(), "sidecar_buildpack-v0.1.0.zip");
    assert!(
        text.ends_with(&format!("zip: {}\n", zip.display())),
        "{text}"
    );
    assert!(
        text.contains("config-server 0.1.0 [cflinuxfs3, cflinuxfs4] not cached"),
        "{text}"
    );
    let z = entries(&zip);
    assert_eq!(
        listing(&z),
        "644 README.md\n644 VERSION\n755 bin/compile\n755 bin/detect\n755 bin/supply\n644 manifest.yml\n"
    );
    assert_eq!(
        z["bin/supply"].1,
        fs::read(SUPPLY).expect("supply"),
        "bin/supply is the compiled supply"
    );
    let manifest = String::from_utf8(z["manifest.yml"].1.clone()).expect("utf8");
    assert!(manifest.len() < 1024 * 1024);
    let yaml: serde_yaml::Value = serde_yaml::from_str(&manifest).expect("valid YAML");
    assert!(
        yaml.get("stack").is_none(),
        "stack-agnostic without --stack"
    );
    assert!(!manifest.contains("file:"));
    let name = "sidecar_buildpack";
    assert!(name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    assert_no_temp_files(out.path());
    assert_eq!(
        fs::read_dir(out.path()).expect("out").count(),
        1,
        "only the zip"
    );
}

#[test]
fn cached_stack_zip_stages_with_no_network_at_all() {
    let src = Source::new();
    let out = tempfile::tempdir().expect("out");
    let (code, text) = src.package(out.path(), &["--cached", "--stack", "cflinuxfs4"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("config-server 0.1.0 [cflinuxfs3, cflinuxfs4] cached"),
        "{text}"
    );
    let zip = zip_in(out.path(), "sidecar_buildpack-cached-cflinuxfs4-v0.1.0.zip");
    let z = entries(&zip);
    let uri = release_uri(src.root.path());
    let md5 = format!("{:x}", md5::Md5::digest(uri.as_bytes()));
    let dep_path = format!("dependencies/{md5}/config-server-0.1.0-linux-x86_64.tgz");
    assert_eq!(z[&dep_path], (0o644, src.artifact.clone()));
    let manifest = String::from_utf8(z["manifest.yml"].1.clone()).expect("utf8");
    let golden_path = Path::new(REPO).join("tests/golden/packaged-manifest.yml");
    let want = manifest.replace(&sha256_hex(&src.artifact), "<sha256>");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(&golden_path, &want).expect("update golden");
    }
    assert_eq!(want, fs::read_to_string(golden_path).expect("golden"));

    // Unpack as CF does and stage in a network namespace with only loopback down.
    let bp = tempfile::tempdir().expect("bp");
    unzip(&zip, bp.path());
    let dirs = Dirs::new();
    let o = Command::new("unshare")
        .args(["-n", "--"])
        .arg(bp.path().join("bin/supply"))
        .args([dirs.build(), dirs.cache(), dirs.deps(), "0".into()])
        .env_clear()
        .env("CF_STACK", "cflinuxfs4")
        .env("https_proxy", "http://127.0.0.1:9")
        .output()
        .expect("unshare");
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text.contains(&format!(
            "Using the copy in the cached buildpack: {dep_path}"
        )),
        "{text}"
    );
    let installed = dirs.deps().join("0/bin/config-server");
    assert_eq!(
        fs::read(&installed).expect("installed"),
        sidecar_bytes("packaged")
    );
    assert!(fs::read_to_string(dirs.deps().join("0/launch.yml"))
        .expect("launch")
        .contains("type: config-server"));
}

#[test]
fn same_inputs_give_a_byte_identical_zip() {
    let src = Source::new();
    let (a, b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    for out in [a.path(), b.path()] {
        let (code, text) = src.package(out, &["--cached"]);
        assert_eq!(code, 0, "{text}");
    }
    let name = "sidecar_buildpack-cached-v0.1.0.zip";
    let (za, zb) = (
        fs::read(zip_in(a.path(), name)).expect("a"),
        fs::read(zip_in(b.path(), name)).expect("b"),
    );
    assert!(za == zb, "two packagings differ");
}

#[test]
fn checksum_mismatch_aborts_and_leaves_no_zip() {
    let src = Source::new();
    // The artifact dir holds the wrong bytes, and the release host is not reachable
    // here, so the packager must refuse rather than package anything.
    let uri = release_uri(src.root.path());
    let name = uri.rsplit('/').next().expect("name");
    fs::write(src.artifacts.path().join(name), b"tampered").expect("tamper");
    let server = Server::start(vec![Reply::Body(b"also wrong".to_vec())]);
    let m = fs::read_to_string(src.root.path().join("manifest.yml")).expect("m");
    let served = server.url(&format!("/{name}?token={SECRET}"));
    fs::write(
        src.root.path().join("manifest.yml"),
        m.replace(&uri, &served),
    )
    .expect("m");
    let out = tempfile::tempdir().expect("out");
    let (code, text) = src.package(out.path(), &["--cached"]);
    assert_eq!(code, 4, "{text}");
    assert!(text.contains("**WARNING** not using"), "{text}");
    assert!(
        text.contains("**ERROR** checksum mismatch for config-server 0.1.0 from"),
        "{text}"
    );
    assert_eq!(
        fs::read_dir(out.path()).expect("out").count(),
        0,
        "no zip, no temp files"
    );
}

#[test]
fn include_files_must_exist() {
    let src = Source::new();
    fs::remove_file(src.root.path().join("bin/detect")).expect("rm");
    let out = tempfile::tempdir().expect("out");
    let (code, text) = src.package(out.path(), &[]);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("**ERROR** cannot read the buildpack file ") && text.contains("bin/detect"),
        "{text}"
    );
    assert!(text.contains("lists bin/detect in include_files"), "{text}");
    assert_eq!(fs::read_dir(out.path()).expect("out").count(), 0);
}

#[test]
fn a_stack_without_builds_is_refused_before_any_zip() {
    let src = Source::new();
    let out = tempfile::tempdir().expect("out");
    let (code, text) = src.package(out.path(), &["--stack", "windows2019"]);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("**ERROR** config-server 0.1.0 does not support the stack \"windows2019\""),
        "{text}"
    );
    assert_eq!(fs::read_dir(out.path()).expect("out").count(), 0);
    let (code, text) = src.package(out.path(), &["--stack", "a b"]);
    assert_eq!(code, 2, "{text}");
}

#[test]
fn detect_and_compile_explain_themselves() {
    for (script, want) in [
        (
            "bin/detect",
            "sidecar_buildpack is a supply buildpack: list it before the app's own buildpack",
        ),
        (
            "bin/compile",
            "       **ERROR** sidecar_buildpack is a supply buildpack and cannot be last",
        ),
    ] {
        let o = Command::new(Path::new(REPO).join(script))
            .args(["/tmp/x", "/tmp/y"])
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(1), "{script}");
        assert_eq!(text.lines().count(), 1, "{script}: one line");
        assert!(text.starts_with(want), "{script}: {text}");
    }
}
