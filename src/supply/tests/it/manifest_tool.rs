//! The manifest tool (`package pin|get|dev|verify`) as scripts call it: the real
//! binary on copies of a manifest laid out as the repo's, real files and a real server
//! on loopback.

use crate::packaging::tool;
use crate::support::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SHA: &str = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";

/// The repo's manifest.yml, comments and layout included, with config-server pinned
/// at 0.1.0 for cflinuxfs3 and cflinuxfs4: tests that pin, and expect what a pin
/// changes, must not follow the release's own pins (a re-pin would break them).
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/fixtures/manifest.yml"
);

/// A copy of the fixture manifest in a temp dir, named manifest.yml.
fn manifest_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("manifest.yml");
    fs::copy(FIXTURE, &path).expect("copy");
    (dir, path)
}

/// The fixture stays the repo's manifest: pinned as the repo is, by the tool the
/// release uses, it is the same file byte for byte.
#[test]
fn the_fixture_is_the_repo_manifest_with_other_pins() {
    let repo = Path::new(REPO).join("manifest.yml");
    let (_dir, m) = manifest_copy();
    let version = get(&repo, "default_versions[config-server]");
    let uri = get(&repo, "dependencies[config-server].uri");
    let sha = get(&repo, "dependencies[config-server].sha256");
    let stacks = get(&repo, "dependencies[config-server].cf_stacks");
    let mut args = vec![
        "pin",
        "config-server",
        "--version",
        &version,
        "--uri",
        &uri,
        "--sha256",
        &sha,
        "--manifest",
        s(&m),
    ];
    for stack in stacks.lines() {
        args.extend(["--stack", stack]);
    }
    tool(&args);
    assert_eq!(
        fs::read_to_string(&m).expect("pinned"),
        fs::read_to_string(&repo).expect("repo"),
        "{FIXTURE} must be manifest.yml with config-server 0.1.0 for cflinuxfs3 and \
         cflinuxfs4: copy manifest.yml over it and set those pins back"
    );
}

fn package(args: &[&str]) -> Output {
    Command::new(package_bin())
        .args(args)
        .output()
        .expect("run")
}

/// `o` exited with `code` and its output holds `says`.
#[track_caller]
fn exits_saying(o: &Output, code: i32, says: &str) {
    assert_eq!(o.status.code(), Some(code), "{}", text(o));
    assert!(text(o).contains(says), "{}", text(o));
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
    exits_saying(&o, 3, "has no my-agent yet: name the stacks");
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

/// A rebuild changes the local file a development buildpack pins: the error says to
/// make the development buildpack again, not to distrust a release.
#[test]
fn a_stale_dev_buildpack_says_to_make_it_again() {
    let work = tempfile::tempdir().expect("work");
    let artifact = work.path().join("config-server");
    fs::write(&artifact, sidecar_bytes("first build")).expect("artifact");
    let bp = work.path().join("bp");
    let arg = format!("config-server={}", artifact.display());
    tool(&[
        "dev",
        "--root",
        REPO,
        "--supply",
        SUPPLY,
        "--out",
        s(&bp),
        &arg,
    ]);
    fs::write(&artifact, sidecar_bytes("rebuilt")).expect("rebuild");
    let dirs = Dirs::new();
    let o = Command::new(bp.join("bin/supply"))
        .args([dirs.build(), dirs.cache(), dirs.deps(), "0".into()])
        .env_clear()
        .env("CF_STACK", "cflinuxfs4")
        .output()
        .expect("supply");
    exits_saying(
        &o,
        4,
        "To fix: if this is a development buildpack (package dev, which scripts/stage-local \
         runs), the local build changed after it was made: make it again with package dev, or \
         run scripts/stage-local",
    );
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
    exits_saying(&o, 3, "already exists and is not an empty directory");
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
    exits_saying(&o, 3, "cannot read the artifact /nonexistent");
    assert!(!work.path().join("b2").exists());
}

#[test]
fn verify_fetches_as_staging_does_and_compares_the_digest() {
    let bytes = sidecar_bytes("published");
    let server = Server::start(vec![Reply::Body(bytes.clone())]);
    let url = server.url("/cs-0.1.0.tgz");
    let sha = sha256_hex(&bytes);
    let o = package(&["verify", "--uri", &url, "--sha256", &sha]);
    exits_saying(
        &o,
        0,
        &format!("Verified sha256 {sha} ({} bytes) from {url}", bytes.len()),
    );

    let o = package(&["verify", "--uri", &url, "--sha256", SHA]);
    exits_saying(&o, 4, "**ERROR** checksum mismatch");
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
    exits_saying(&o, 0, "Checking config-server 0.1.0");
    let gone = Server::start(vec![Reply::Status(404)]);
    let o = package(&["verify", "--uri", &gone.url("/x.tgz"), "--sha256", &sha]);
    exits_saying(&o, 4, "nothing is published at the uri");
}

/// What an operator runs before a push: every pinned uri, the git-URL route's
/// prebuilt supply (bin/supply.lock) included, each reported, one failure not hiding
/// the next check.
#[test]
fn verify_all_checks_every_pin_and_the_supply_lock() {
    let bytes = sidecar_bytes("published");
    let cs = Server::start(vec![Reply::Body(bytes.clone())]);
    let (dir, m) = manifest_copy();
    tool(&[
        "pin",
        "config-server",
        "--version",
        "0.1.0",
        "--uri",
        &cs.url("/cs-0.1.0.tgz"),
        "--sha256",
        &sha256_hex(&bytes),
        "--manifest",
        s(&m),
    ]);
    let supply = b"#!/bin/sh\necho supply\n".to_vec();
    let unpublished = Server::start(vec![Reply::Status(404)]);
    fs::create_dir(dir.path().join("bin")).expect("bin");
    let lock = dir.path().join("bin/supply.lock");
    let write_lock = |url: &str| {
        fs::write(
            &lock,
            format!("# comment\nurl={url}\nsha256={}\n", sha256_hex(&supply)),
        )
        .expect("lock");
    };
    write_lock(&unpublished.url("/supply-0.2.0"));
    let o = package(&["verify", "--all", "--manifest", s(&m)]);
    exits_saying(
        &o,
        4,
        "1 of 2 pinned uris do not serve the pinned bytes: supply (bin/supply.lock)",
    );
    let out = text(&o);
    assert!(out.contains("Checking config-server 0.1.0"), "{out}");
    assert!(out.contains("Checking supply (bin/supply.lock)"), "{out}");
    assert!(out.contains("nothing is published at the uri"), "{out}");
    assert!(out.contains("push with the cached zip"), "{out}");

    let published = Server::start(vec![Reply::Body(supply.clone())]);
    write_lock(&published.url("/supply-0.2.0"));
    let o = package(&["verify", "--all", "--manifest", s(&m)]);
    exits_saying(&o, 0, "Every pinned uri serves its pinned bytes (2)");
    assert_eq!(published.hits(), 1);

    // Without a lock beside the manifest (a zip's manifest), only the dependencies.
    fs::remove_file(&lock).expect("rm");
    let o = package(&["verify", "--all", "--manifest", s(&m)]);
    exits_saying(&o, 0, "Every pinned uri serves its pinned bytes (1)");
    let o = package(&["verify", "--all", "config-server", "--manifest", s(&m)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

// --- Manifests as people write them -------------------------------------------------

const OLD: &str = "04dc5c623ef5854bffbcf995205b0ef2d518ff27551f05c4976235c21ae40d76";

/// Runs `package ARGS --manifest FILE` on a manifest holding `text` (`{OLD}` in it is
/// a pinned digest), within a deadline; returns the run and the file's bytes after it.
fn on_manifest(text: &str, args: &[&str]) -> (Output, String) {
    let dir = tempfile::tempdir().expect("dir");
    let m = dir.path().join("manifest.yml");
    fs::write(&m, text.replace("{OLD}", OLD)).expect("write");
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["--manifest", s(&m)]);
    let o = within(60, Command::new(package_bin()).args(&full));
    (o, fs::read_to_string(&m).expect("read"))
}

/// Runs `cmd`, killing it if it has not ended after `secs`: a hang fails the test
/// instead of stalling the suite.
#[track_caller]
fn within(secs: u64, cmd: &mut Command) -> Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().expect("kill");
            let o = child.wait_with_output().expect("output");
            panic!("still running after {secs} s: {}", text(&o));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn pin_args(
    name: &'static str,
    version: &'static str,
    stacks: &[&'static str],
) -> Vec<&'static str> {
    let mut args = vec![
        "pin",
        name,
        "--version",
        version,
        "--uri",
        "https://h/new-2.0.tgz",
        "--sha256",
        SHA,
    ];
    for stack in stacks {
        args.extend(["--stack", stack]);
    }
    args
}

/// A minimal manifest around `deps` (the dependencies section) and `dv`.
fn manifest_with(dv: &str, deps: &str) -> String {
    format!("language: sidecar\n{dv}{deps}")
}

/// The one sidecar every manifest must list, in block style.
const SIDECAR: &str =
    "sidecars:\n- name: cs\n  dependency: cs\n  executable: bin/cs\n  memory_mb: 32\n";

#[test]
fn pins_are_the_edit_a_careful_person_would_make_in_every_yaml_style() {
    // Default versions and the sidecar, which no pin of `cs` changes.
    let block_dv = format!("default_versions:\n- name: cs\n  version: 1.0.0\n{SIDECAR}");
    let pinned_dv = format!("default_versions:\n- name: cs\n  version: 2.0.0\n{SIDECAR}");
    let flow_sidecar =
        "sidecars: [{name: cs, dependency: cs, executable: bin/cs, memory_mb: 32}]  # s\n";
    let crlf_sidecar = SIDECAR.replace('\n', "\r\n");
    for (what, before, after) in [
        (
            "flow mappings and sequences, a comment after each",
            manifest_with(
                "default_versions: [{name: cs, version: 1.0.0}]   # dv\n",
                &format!("dependencies: [{{name: cs, version: 1.0.0, uri: 'https://h/cs.tgz', sha256: {{OLD}}, cf_stacks: [s1, s2]}}] # d\n{flow_sidecar}"),
            ),
            manifest_with(
                "default_versions: [{name: cs, version: 2.0.0}]   # dv\n",
                &format!("dependencies: [{{name: cs, version: 2.0.0, uri: 'https://h/new-2.0.tgz', sha256: {SHA}, cf_stacks: [s1, s2]}}] # d\n{flow_sidecar}"),
            ),
        ),
        (
            "CRLF line endings, and a new dependency's lines",
            format!("language: sidecar\r\ndependencies:\r\n- name: cs\r\n  version: 1.0.0\r\n  uri: https://h/cs.tgz\r\n  sha256: {{OLD}}\r\n  cf_stacks: [s1]\r\n{crlf_sidecar}default_versions:\r\n- name: cs\r\n  version: 1.0.0\r\n"),
            format!("language: sidecar\r\ndependencies:\r\n- name: cs\r\n  version: 1.0.0\r\n  uri: https://h/cs.tgz\r\n  sha256: {OLD}\r\n  cf_stacks: [s1]\r\n- name: new\r\n  version: 2.0.0\r\n  uri: https://h/new-2.0.tgz\r\n  sha256: {SHA}\r\n  cf_stacks: [s1]\r\n{crlf_sidecar}default_versions:\r\n- name: cs\r\n  version: 1.0.0\r\n- name: new\r\n  version: 2.0.0\r\n"),
        ),
        (
            "a byte order mark, a tab after a colon, trailing spaces, no final newline",
            format!("\u{feff}language: sidecar  \n{block_dv}dependencies:\n- name: cs\n  version:\t1.0.0  \n  uri:\thttps://h/cs.tgz\n  sha256: {{OLD}}\n  cf_stacks: [s1]"),
            format!("\u{feff}language: sidecar  \n{pinned_dv}dependencies:\n- name: cs\n  version:\t2.0.0  \n  uri:\thttps://h/new-2.0.tgz\n  sha256: {SHA}\n  cf_stacks: [s1]"),
        ),
        (
            "quoted values keep their quotes; `---`, `...` and comments stay",
            format!("--- # head\nlanguage: sidecar\n{block_dv}dependencies:   # deps\n  # first\n  - uri: \"https://h/cs.tgz\"  # u\n    sha256: '{{OLD}}'\n    cf_stacks: [s1]\n    version: '1.0.0'\n    name: \"cs\"\n...\n"),
            format!("--- # head\nlanguage: sidecar\n{pinned_dv}dependencies:   # deps\n  # first\n  - uri: \"https://h/new-2.0.tgz\"  # u\n    sha256: '{SHA}'\n    cf_stacks: [s1]\n    version: '2.0.0'\n    name: \"cs\"\n...\n"),
        ),
        (
            "an anchored and tagged neighbour, a block scalar before the next entry",
            manifest_with(
                &block_dv,
                "x-common: &common !!map\n  k: v\ndependencies:\n- name: cs\n  version: 1.0.0\n  uri: https://h/cs.tgz\n  sha256: {OLD}\n  cf_stacks: [s1]\n  notes: |\n    kept as written\n\n- name: other\n  version: 1.0.0\n  uri: https://h/o.tgz\n  sha256: {OLD}\n",
            ),
            manifest_with(
                &pinned_dv,
                &format!("x-common: &common !!map\n  k: v\ndependencies:\n- name: cs\n  version: 2.0.0\n  uri: https://h/new-2.0.tgz\n  sha256: {SHA}\n  cf_stacks: [s1]\n  notes: |\n    kept as written\n\n- name: other\n  version: 1.0.0\n  uri: https://h/o.tgz\n  sha256: {OLD}\n"),
            ),
        ),
    ] {
        let name = if what.starts_with("CRLF") { "new" } else { "cs" };
        let (o, out) = on_manifest(&before, &pin_args(name, "2.0.0", &["s1"][..usize::from(name == "new")]));
        assert_eq!(o.status.code(), Some(0), "{what}: {}", text(&o));
        assert_eq!(out, after, "{what}");
    }
}

#[test]
fn a_block_list_keeps_the_lines_and_comments_of_the_items_that_stay() {
    let before = manifest_with(
        "default_versions:\n- name: cs\n  version: 1.0.0\n",
        &format!("dependencies:\n- name: cs\n  version: 1.0.0\n  uri: https://h/cs.tgz\n  sha256: {{OLD}}\n  cf_stacks:\n  - cflinuxfs3   # old, going\n  # the current stack\n  - cflinuxfs4   # current\n{SIDECAR}"),
    );
    let (o, out) = on_manifest(
        &before,
        &pin_args("cs", "1.0.0", &["cflinuxfs4", "cflinuxfs5"]),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        out.ends_with(&format!(
            "  cf_stacks:\n  # the current stack\n  - cflinuxfs4   # current\n  - cflinuxfs5\n{SIDECAR}"
        )),
        "{out}"
    );
    // An item that takes another's place takes its line (and its comment).
    let (_, out) = on_manifest(
        &before,
        &pin_args("cs", "1.0.0", &["cflinuxfs5", "cflinuxfs4"]),
    );
    assert!(
        out.ends_with(&format!("  cf_stacks:\n  - cflinuxfs5   # old, going\n  # the current stack\n  - cflinuxfs4   # current\n{SIDECAR}")),
        "{out}"
    );
}

/// The manifest with config-server pinned as the repo has it, for refusals.
fn small() -> String {
    manifest_with(
        "default_versions:\n- name: cs\n  version: 1.0.0\n",
        "dependencies:\n- name: cs\n  version: 1.0.0\n  uri: https://h/cs.tgz\n  sha256: {OLD}\n  cf_stacks: [s1]\nsidecars:\n- name: cs\n  dependency: cs\n  executable: bin/cs\n  memory_mb: 32\n",
    )
}

#[test]
fn what_cannot_be_edited_in_place_is_refused_at_its_line_and_column() {
    for (what, before, args, says) in [
        (
            "an alias",
            small().replace("  version: 1.0.0\ndependencies", "  version: &v 1.0.0\ndependencies")
                .replace("- name: cs\n  version: 1.0.0\n  uri", "- name: cs\n  version: *v\n  uri"),
            pin_args("cs", "2.0.0", &[]),
            "`dependencies[0].version` cannot be pinned: it is an alias (*name) of another value at line 7 column 12",
        ),
        (
            "an anchored list, even for one more entry",
            small().replace("dependencies:\n", "dependencies: &deps\n"),
            pin_args("new", "2.0.0", &["s1"]),
            "`dependencies` cannot be pinned: it carries an anchor (&name) that other keys may share at line 6 column 1",
        ),
        (
            "a flow mapping that lacks the key to set",
            small().replace("- name: cs\n  dependency: cs\n  executable: bin/cs\n  memory_mb: 32\n", "- {name: cs, dependency: cs, executable: bin/cs, memory_mb: 32}\n"),
            vec!["sidecar", "cs", "--executable", "bin/cs", "--memory-mb", "32", "--arg", "x"],
            "`sidecars[0]` cannot be set: it is not a block mapping (one `key: value` per line), so nothing can be added to it at line 12 column 3",
        ),
        (
            "YAML that libyaml reads and the editor's parser does not",
            small().replace("cf_stacks: [s1]", "cf_stacks: [s1]# no space"),
            pin_args("cs", "2.0.0", &[]),
            "`(document)` is YAML that supply reads but the editor's parser does not (comments must be separated from other tokens by whitespace) at line 10 column 18",
        ),
    ] {
        let dir = tempfile::tempdir().expect("dir");
        let m = dir.path().join("manifest.yml");
        let before = before.replace("{OLD}", OLD);
        fs::write(&m, &before).expect("write");
        fs::set_permissions(&m, fs::Permissions::from_mode(0o600)).expect("chmod");
        let mut full = args.clone();
        full.extend(["--manifest", s(&m)]);
        let o = within(60, Command::new(package_bin()).args(&full));
        assert_eq!(o.status.code(), Some(3), "{what}: {}", text(&o));
        assert!(
            text(&o).contains(&format!("**ERROR** {}: {says}\n", m.display())),
            "{what}: {}",
            text(&o)
        );
        assert!(
            text(&o).contains("To fix: nothing was written: write that key as a plain or quoted value"),
            "{what}: {}",
            text(&o)
        );
        assert_eq!(fs::read_to_string(&m).expect("read"), before, "{what}");
        let mode = fs::metadata(&m).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{what}");
        assert_eq!(fs::read_dir(dir.path()).expect("dir").count(), 1, "{what}: a temp file left");
    }
}

#[test]
fn a_value_the_manifest_refuses_is_blamed_on_the_command_line() {
    for (args, says) in [
        (
            vec!["sidecar", "extra", "--dependency", "cs", "--executable", "bin/cs", "--memory-mb", "0"],
            "this sidecar would make `sidecars[1].memory_mb` invalid: must be a whole number of MB from 1 to 65536\n",
        ),
        (
            vec!["sidecar", "bad name", "--dependency", "cs", "--executable", "bin/cs", "--memory-mb", "8"],
            "this sidecar would make `sidecars[1].name` invalid: must be 1-64 letters, digits, '-' or '_'\n",
        ),
        (
            pin_args("new", "2.0.0:beta", &["s1"]),
            "the pin would make `dependencies[1].version` invalid: must be 1-64 letters",
        ),
        (
            vec!["sidecar", "extra", "--dependency", "nope", "--executable", "bin/x", "--memory-mb", "8"],
            "dependencies has no \"nope\" (it has cs)\n",
        ),
    ] {
        let (o, after) = on_manifest(&small(), &args);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(says), "{args:?}: {}", text(&o));
        // A line and column of a text that was never written would mislead.
        assert!(!text(&o).contains(" at line "), "{}", text(&o));
        assert!(!text(&o).contains("To fix: fix that key in manifest.yml"), "{}", text(&o));
        assert_eq!(after, small().replace("{OLD}", OLD));
    }
}

#[test]
fn the_tools_own_errors_about_the_file_point_at_the_key() {
    let two = small().replace(
        "  cf_stacks: [s1]\n",
        "  cf_stacks: [s1]\n- name: cs\n  version: 1.0.0\n  uri: https://h/cs2.tgz\n  sha256: {OLD}\n  cf_stacks: [s2]\n",
    );
    for (before, args, says) in [
        (
            small(),
            pin_args("new", "2.0.0", &[]),
            "`dependencies` has no new yet: name the stacks of its build with --stack (for example --stack cflinuxfs4) at line 6 column 1",
        ),
        (
            two,
            pin_args("cs", "2.0.0", &[]),
            "`dependencies` has 2 builds of cs 1.0.0 (for s1; for s2): pin one of them at a time, named by --stack at line 6 column 1",
        ),
        (
            small().replace("  cf_stacks: [s1]\n", "  cf_stacks: [s1]\n  file: dependencies/x/cs.tgz\n"),
            pin_args("cs", "2.0.0", &[]),
            "`dependencies[0].file` is set, as only a packaged manifest has it: pin the buildpack's source manifest.yml at line 11 column 9",
        ),
    ] {
        let (o, _) = on_manifest(&before, &args);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        assert!(text(&o).contains(says), "{}", text(&o));
    }
    // The loader's positions hold with a byte order mark, CRLF and tabs too.
    for (variant, at) in [
        ("\u{feff}", "at line 9 column 11"),
        ("crlf", "at line 9 column 11"),
        ("tab", "at line 9 column 11"),
    ] {
        let bad = small().replace("sha256: {OLD}", "sha256: abc");
        let bad = match variant {
            "crlf" => bad.replace('\n', "\r\n"),
            "tab" => bad.replace("sha256: abc", "sha256:\tabc"),
            bom => format!("{bom}{bad}"),
        };
        let (o, _) = on_manifest(&bad, &["get", "language"]);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        assert!(
            text(&o).contains(&format!(
                "`dependencies[0].sha256` expected 64 hex digits, found 3 characters {at}\n"
            )),
            "{variant:?}: {}",
            text(&o)
        );
    }
}

#[test]
fn secrets_in_a_uri_never_reach_the_output() {
    let secret_uri = "https://user:pa55word@h/cs.tgz?X-Amz-Signature=0123456789abcdef";
    let leaks = |o: &Output| {
        let t = text(o);
        assert!(
            !t.contains("pa55word") && !t.contains("0123456789abcdef"),
            "{t}"
        );
    };
    let args = |uri: &'static str| {
        vec![
            "pin",
            "cs",
            "--version",
            "1.0.0",
            "--uri",
            uri,
            "--sha256",
            SHA,
        ]
    };
    let dir = tempfile::tempdir().expect("dir");
    let m = dir.path().join("manifest.yml");
    fs::write(&m, small().replace("{OLD}", OLD)).expect("write");
    // Pinned, then pinned again ("already pins ..."), then refused by its scheme.
    for uri in [
        secret_uri,
        secret_uri,
        "ftp://user:pa55word@h/cs.tgz?X-Amz-Signature=0123456789abcdef",
    ] {
        let mut a = args(uri);
        a.extend(["--manifest", s(&m)]);
        let o = package(&a);
        leaks(&o);
        assert_eq!(
            o.status.code(),
            Some(if uri.starts_with("ftp") { 2 } else { 0 }),
            "{}",
            text(&o)
        );
    }
    // Checked against a server that has nothing there.
    let gone = Server::start(vec![Reply::Status(404)]);
    let uri = gone.url("/cs.tgz?X-Amz-Signature=0123456789abcdef");
    let o = package(&["verify", "cs", "--uri", &uri, "--sha256", SHA]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    leaks(&o);
    assert!(
        text(&o).contains("-----> Checking cs (--uri)\n"),
        "{}",
        text(&o)
    );
}

#[test]
fn names_and_keys_that_are_not_there_get_words_of_their_own() {
    let (_dir, m) = manifest_copy();
    for (args, code, says) in [
        (
            vec!["get", "dependencies[nope].uri"],
            3,
            "dependencies has no \"nope\" (it has config-server)\n       Cause: the name given on the command line is not a `dependencies` name",
        ),
        (
            vec!["verify", "nope"],
            3,
            "dependencies has no \"nope\" (it has config-server)\n",
        ),
        (
            vec!["get", "dependencies[config-server].uri", "--stack", "windows"],
            3,
            "config-server 0.1.0 does not support the stack \"windows\"\n       Cause: manifest.yml has no build of this dependency for that stack",
        ),
        (
            vec!["get", "dependencies[config-server]uri"],
            2,
            "\"dependencies[config-server]uri\" needs a '.' after its ']'",
        ),
    ] {
        let mut a = args.clone();
        a.extend(["--manifest", s(&m)]);
        let o = package(&a);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(says), "{args:?}: {}", text(&o));
    }
}

#[test]
fn a_manifest_or_artifact_that_is_no_small_regular_file_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo")
        .success());
    let big = dir.path().join("big.yml");
    fs::write(
        &big,
        format!("language: sidecar\n#{}\n", "x".repeat(2 << 20)),
    )
    .expect("big");
    for (manifest, says) in [(&fifo, "is a FIFO"), (&big, "is larger than 1048576 bytes")] {
        for args in [
            vec!["get", "language"],
            pin_args("cs", "2.0.0", &["s1"]),
            vec![
                "sidecar",
                "cs",
                "--executable",
                "bin/cs",
                "--memory-mb",
                "8",
            ],
            vec!["verify", "cs"],
        ] {
            let mut a = args.clone();
            a.extend(["--manifest", s(manifest)]);
            let o = within(20, Command::new(package_bin()).args(&a));
            assert_eq!(o.status.code(), Some(3), "{args:?}: {}", text(&o));
            assert!(
                text(&o).contains(&format!(
                    "**ERROR** cannot read the buildpack file {}",
                    manifest.display()
                )) && text(&o).contains(says),
                "{args:?}: {}",
                text(&o)
            );
        }
    }
    let root = dir.path().join("root");
    fs::create_dir(&root).expect("root");
    fs::rename(&fifo, root.join("manifest.yml")).expect("mv");
    let o = within(
        20,
        Command::new(package_bin()).args([
            "zip",
            "--supply",
            SUPPLY,
            "--root",
            s(&root),
            "--output",
            s(&dir.path().join("out")),
        ]),
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    // An artifact of `dev` that is a FIFO.
    let art = dir.path().join("art");
    assert!(Command::new("mkfifo")
        .arg(&art)
        .status()
        .expect("mkfifo")
        .success());
    let o = within(
        20,
        Command::new(package_bin())
            .args([
                "dev",
                "--root",
                REPO,
                "--supply",
                SUPPLY,
                "--out",
                s(&dir.path().join("bp")),
            ])
            .arg(format!("config-server={}", art.display())),
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("is a FIFO"), "{}", text(&o));
    assert!(!dir.path().join("bp").exists());
}

#[test]
fn large_and_deeply_nested_manifests_take_no_quadratic_time() {
    // 1 MB of nested flow lists: libyaml scans it in time that grows with the square of
    // the depth (minutes); it is refused at the nesting limit instead.
    let deep = format!(
        "language: sidecar\nx: {}{}\n",
        "[".repeat(400_000),
        "]".repeat(400_000)
    );
    let (o, _) = on_manifest(&deep, &["get", "language"]);
    exits_saying(
        &o,
        3,
        "`(document)` nested deeper than 128 levels at line 2",
    );
    // 1 MB of short lists: a pin finds every span in one pass. (Within the cap of
    // 50,000 values, yaml::MAX_VALUES: 100,000 one-item lists are refused since #21.)
    let mut many = small();
    let mut i = 0;
    let long = "a".repeat(60);
    while many.len() < 1_000_000 {
        many.push_str(&format!("x{i}:\n- {long}\n"));
        i += 1;
    }
    let (o, after) = on_manifest(&many, &pin_args("cs", "2.0.0", &[]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        after.contains("  version: 2.0.0\n  uri: https://h/new-2.0.tgz\n"),
        "pinned"
    );
}

#[test]
fn a_manifest_reached_by_a_symlink_stays_a_symlink() {
    let dir = tempfile::tempdir().expect("dir");
    let real = dir.path().join("shared.yml");
    fs::write(&real, small().replace("{OLD}", OLD)).expect("write");
    fs::set_permissions(&real, fs::Permissions::from_mode(0o640)).expect("chmod");
    let link = dir.path().join("manifest.yml");
    std::os::unix::fs::symlink("shared.yml", &link).expect("link");
    let mut a = pin_args("cs", "2.0.0", &[]);
    a.extend(["--manifest", s(&link)]);
    tool(&a);
    assert!(fs::symlink_metadata(&link)
        .expect("link")
        .file_type()
        .is_symlink());
    assert!(fs::read_to_string(&real)
        .expect("real")
        .contains("version: 2.0.0"));
    assert_eq!(
        fs::metadata(&real).expect("meta").permissions().mode() & 0o777,
        0o640
    );
    // --output gets the manifest's mode too: a release stages its pin beside the file.
    let staged = dir.path().join("staged.yml");
    let mut a = pin_args("cs", "3.0.0", &[]);
    a.extend(["--manifest", s(&link), "--output", s(&staged)]);
    tool(&a);
    assert_eq!(
        fs::metadata(&staged).expect("meta").permissions().mode() & 0o777,
        0o640
    );
}

#[test]
fn a_dev_buildpack_at_an_odd_path_prints_a_command_that_can_be_pasted() {
    let work = tempfile::tempdir().expect("work");
    let odd = work.path().join("my builds/日本");
    fs::create_dir_all(&odd).expect("odd");
    let artifact = odd.join("config server #1");
    fs::write(&artifact, sidecar_bytes("odd")).expect("artifact");
    let dev = |pins: &[&str]| {
        Command::new(package_bin())
            .current_dir(work.path())
            .args([
                "dev",
                "--root",
                REPO,
                "--supply",
                SUPPLY,
                "--out",
                "out dir/bp",
            ])
            .args(pins)
            .output()
            .expect("run")
    };
    // A typo in any name fails before anything is hashed or made.
    let o = dev(&[
        "config-server=my builds/日本/config server #1",
        "config-servr=my builds/日本/config server #1",
    ]);
    exits_saying(
        &o,
        3,
        "dependencies has no \"config-servr\" (it has config-server)",
    );
    assert!(!work.path().join("out dir").exists());
    let o = dev(&["config-server=my builds/日本/config server #1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let supply = work.path().join("out dir/bp/bin/supply");
    assert!(
        text(&o).contains(&format!(
            "Run it: '{}' BUILD_DIR CACHE_DIR DEPS_DIR 0",
            supply.display()
        )),
        "{}",
        text(&o)
    );
    let dirs = Dirs::new();
    let staged = Command::new(&supply)
        .args([dirs.build(), dirs.cache(), dirs.deps(), "0".into()])
        .env("CF_STACK", "cflinuxfs4")
        .output()
        .expect("supply");
    assert_eq!(staged.status.code(), Some(0), "{}", text(&staged));
    assert_eq!(
        fs::read(dirs.deps().join("0/bin/config-server")).expect("installed"),
        sidecar_bytes("odd")
    );
}

/// `text` padded with a comment to `size` bytes.
fn padded_to(text: &str, size: usize) -> String {
    let mut padded = format!("{text}# ");
    let left = size - padded.len() - 1;
    padded.push_str(&"x".repeat(left));
    padded.push('\n');
    assert_eq!(padded.len(), size);
    padded
}

// #21 item 8: `package pin` wrote a manifest of 1,051,382 bytes, which supply and
// `package get` then refused. A write is refused when its result would be.
#[test]
fn a_pin_that_would_take_the_manifest_over_its_cap_writes_nothing() {
    let cap = buildpack::manifest::MAX_MANIFEST_BYTES as usize;
    let text = padded_to(&small().replace("{OLD}", OLD), cap - 40);
    let dir = tempfile::tempdir().expect("dir");
    let m = dir.path().join("manifest.yml");
    fs::write(&m, &text).expect("write");
    let mut args = pin_args("other", "2.0.0", &["s1"]);
    args.extend(["--manifest", s(&m)]);
    let o = package(&args);
    exits_saying(&o, 3, "the pin would make it 1048");
    exits_saying(&o, 3, "bytes, over the 1048576-byte limit of manifest.yml");
    exits_saying(
        &o,
        3,
        "Cause: supply and `package get` refuse a manifest.yml over 1 MiB",
    );
    assert_eq!(
        fs::read_to_string(&m).expect("read"),
        text,
        "nothing written"
    );
    // A pin that fits is written, and read back.
    let fits = padded_to(&small().replace("{OLD}", OLD), cap - 400);
    fs::write(&m, &fits).expect("write");
    assert_eq!(package(&args).status.code(), Some(0));
    assert!(fs::metadata(&m).expect("stat").len() <= cap as u64);
    assert_eq!(get(&m, "default_versions[other]"), "2.0.0");
}
