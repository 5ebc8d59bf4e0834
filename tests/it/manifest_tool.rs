//! The manifest tool (`package pin|get|dev|verify`) as scripts call it: the real
//! binary on copies of the repo's manifest, real files and a real server on loopback.

use crate::packaging::tool;
use crate::support::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PACKAGE: &str = env!("CARGO_BIN_EXE_package");
const REPO: &str = env!("CARGO_MANIFEST_DIR");
const SHA: &str = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";

/// A copy of the repo's manifest.yml in a temp dir.
fn manifest_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("manifest.yml");
    fs::copy(Path::new(REPO).join("manifest.yml"), &path).expect("copy");
    (dir, path)
}

fn package(args: &[&str]) -> Output {
    Command::new(PACKAGE).args(args).output().expect("run")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8")
}

fn get(manifest: &Path, key: &str) -> String {
    tool(&["get", key, "--manifest", s(manifest)])
        .trim_end()
        .to_string()
}

#[test]
fn pin_rewrites_only_the_pinned_values_in_place() {
    let (dir, m) = manifest_copy();
    fs::set_permissions(&m, fs::Permissions::from_mode(0o640)).expect("chmod");
    let before = fs::read_to_string(&m).expect("read");
    let uri = "https://mirror.example/cs/config-server-0.2.0-linux-x86_64.tgz";
    let out = tool(&[
        "pin",
        "config-server",
        "--version",
        "0.2.0",
        "--uri",
        uri,
        "--sha256",
        SHA,
        "--manifest",
        s(&m),
    ]);
    assert_eq!(out, "", "the log goes to stderr");
    let after = fs::read_to_string(&m).expect("read");
    // Every line but the four pinned values is as it was, comments included.
    let changed: Vec<(&str, &str)> = before
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(before.lines().count(), after.lines().count());
    assert_eq!(
        changed.iter().map(|(_, b)| b.trim()).collect::<Vec<_>>(),
        vec![
            "version: 0.2.0".to_string(),
            "version: 0.2.0".to_string(),
            format!("uri: {uri}"),
            format!("sha256: {SHA}"),
        ]
    );
    assert_eq!(get(&m, "dependencies[config-server].uri"), uri);
    assert_eq!(
        get(&m, "dependencies[config-server].cf_stacks"),
        "cflinuxfs3\ncflinuxfs4"
    );
    assert_eq!(get(&m, "default_versions[config-server]"), "0.2.0");
    let mode = fs::metadata(&m).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "the file keeps its mode");
    assert_eq!(
        fs::read_dir(dir.path()).expect("dir").count(),
        1,
        "no temp file left"
    );
}

#[test]
fn pin_adds_a_new_dependency_with_its_stacks() {
    let (_dir, m) = manifest_copy();
    let uri = "https://releases.example/my-agent/my-agent-1.0.0.tgz";
    let o = package(&[
        "pin",
        "my-agent",
        "--version",
        "1.0.0",
        "--uri",
        uri,
        "--sha256",
        SHA,
        "--manifest",
        s(&m),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("has no my-agent yet: name the stacks"),
        "{}",
        text(&o)
    );
    tool(&[
        "pin",
        "my-agent",
        "--version",
        "1.0.0",
        "--uri",
        uri,
        "--sha256",
        SHA,
        "--stack",
        "cflinuxfs4",
        "--manifest",
        s(&m),
    ]);
    assert_eq!(get(&m, "dependencies[my-agent].cf_stacks"), "cflinuxfs4");
    assert_eq!(get(&m, "default_versions[my-agent]"), "1.0.0");
    assert_eq!(get(&m, "dependencies[config-server].version"), "0.1.0");
}

#[test]
#[ignore = "needs root: mounts a filesystem"]
fn a_refused_pin_leaves_the_file_untouched() {
    let (dir, m) = manifest_copy();
    let before = fs::read(&m).expect("read");
    let pin = |extra: &[&str]| {
        let mut args = vec![
            "pin",
            "config-server",
            "--version",
            "0.2.0",
            "--uri",
            "https://h/cs.tgz",
            "--sha256",
            SHA,
            "--manifest",
            s(&m),
        ];
        args.extend_from_slice(extra);
        package(&args)
    };
    let o = pin(&["--stack", "a b"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("a stack name is letters"), "{}", text(&o));
    assert_eq!(fs::read(&m).expect("read"), before);
    // A second build of 0.1.0, for another stack: a pin must then say which it means.
    tool(&[
        "pin",
        "config-server",
        "--version",
        "0.1.0",
        "--uri",
        "https://h/w.tgz",
        "--sha256",
        SHA,
        "--stack",
        "windows",
        "--manifest",
        s(&m),
    ]);
    let before = fs::read(&m).expect("read");
    let o = pin(&[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("has 2 builds of config-server 0.1.0 (for cflinuxfs3, cflinuxfs4; for windows): pin one of them at a time, named by --stack"), "{}", text(&o));
    assert_eq!(fs::read(&m).expect("read"), before);
    // Pinning one of them to a new version says what the other stacks lose.
    let o = pin(&["--stack", "windows"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("**WARNING** config-server 0.1.0 for cflinuxfs3, cflinuxfs4 is no longer the default version"), "{}", text(&o));

    // A directory that cannot be written: exit 5, the manifest as it was.
    let (ro_dir, ro) = manifest_copy();
    let before = fs::read(&ro).expect("read");
    let _ro = Mount::read_only(ro_dir.path());
    let o = package(&[
        "pin",
        "config-server",
        "--version",
        "0.3.0",
        "--uri",
        "https://h/cs.tgz",
        "--sha256",
        SHA,
        "--manifest",
        s(&ro),
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(text(&o).contains("**ERROR** cannot write"), "{}", text(&o));
    assert_eq!(fs::read(&ro).expect("read"), before);
    drop(dir);
}

#[test]
fn get_reads_values_and_refuses_unknown_keys() {
    let m = Path::new(REPO).join("manifest.yml");
    assert_eq!(get(&m, "language"), "sidecar");
    assert_eq!(get(&m, "pre_package"), "scripts/build-portable");
    assert!(get(&m, "include_files").lines().any(|l| l == "bin/supply"));
    assert_eq!(
        get(&m, "sidecars[config-server].executable"),
        "bin/config-server"
    );
    let o = package(&[
        "get",
        "dependencies[config-server].colour",
        "--manifest",
        s(&m),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not \"colour\""), "{}", text(&o));
}

#[test]
#[ignore = "needs root: runs inside unshare -n (no network)"]
fn a_dev_buildpack_stages_a_local_build_with_no_network() {
    let work = tempfile::tempdir().expect("work");
    let artifact = work.path().join("config-server");
    fs::write(&artifact, sidecar_bytes("local build")).expect("artifact");
    let bp = work.path().join("bp");
    let arg = format!("config-server={}", artifact.display());
    let out = tool(&[
        "dev",
        "--root",
        REPO,
        "--supply",
        SUPPLY,
        "--out",
        s(&bp),
        &arg,
    ]);
    assert!(
        out.contains(&format!("file://{}", artifact.display())),
        "{out}"
    );
    let mode = |p: &str| fs::metadata(bp.join(p)).expect(p).permissions().mode() & 0o777;
    assert_eq!(
        (mode("bin/supply"), mode("bin/detect"), mode("manifest.yml")),
        (0o755, 0o755, 0o644)
    );
    let m = bp.join("manifest.yml");
    assert_eq!(
        get(&m, "dependencies[config-server].sha256"),
        sha256_hex(&sidecar_bytes("local build"))
    );

    let dirs = Dirs::new();
    let o = Command::new("unshare")
        .args(["-n", "--"])
        .arg(bp.join("bin/supply"))
        .args([dirs.build(), dirs.cache(), dirs.deps(), "0".into()])
        .env_clear()
        .env("CF_STACK", "cflinuxfs4")
        .output()
        .expect("unshare");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        fs::read(dirs.deps().join("0/bin/config-server")).expect("installed"),
        sidecar_bytes("local build")
    );

    // It never mixes with what is already there.
    let o = package(&[
        "dev",
        "--root",
        REPO,
        "--supply",
        SUPPLY,
        "--out",
        s(&bp),
        &arg,
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("already exists and is not an empty directory"),
        "{}",
        text(&o)
    );
    let o = package(&[
        "dev",
        "--root",
        REPO,
        "--supply",
        SUPPLY,
        "--out",
        s(&work.path().join("b2")),
        "config-server=/nonexistent",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("cannot read the artifact /nonexistent"),
        "{}",
        text(&o)
    );
    assert!(!work.path().join("b2").exists());
}

#[test]
fn verify_fetches_as_staging_does_and_compares_the_digest() {
    let bytes = sidecar_bytes("published");
    let server = Server::start(vec![Reply::Body(bytes.clone())]);
    let url = server.url("/cs-0.1.0.tgz");
    let sha = sha256_hex(&bytes);
    let o = package(&["verify", "--uri", &url, "--sha256", &sha]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "Verified sha256 {sha} ({} bytes) from {url}",
            bytes.len()
        )),
        "{}",
        text(&o)
    );

    let o = package(&["verify", "--uri", &url, "--sha256", SHA]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).contains("**ERROR** checksum mismatch"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("To fix: package only the pinned build"),
        "{}",
        text(&o)
    );

    // The manifest's own pin, by name.
    let (_dir, m) = manifest_copy();
    tool(&[
        "pin",
        "config-server",
        "--version",
        "0.1.0",
        "--uri",
        &url,
        "--sha256",
        &sha,
        "--manifest",
        s(&m),
    ]);
    let o = package(&["verify", "config-server", "--manifest", s(&m)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("Checking config-server 0.1.0"),
        "{}",
        text(&o)
    );
    let gone = Server::start(vec![Reply::Status(404)]);
    let o = package(&["verify", "--uri", &gone.url("/x.tgz"), "--sha256", &sha]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).contains("nothing is published at the uri"),
        "{}",
        text(&o)
    );
}
