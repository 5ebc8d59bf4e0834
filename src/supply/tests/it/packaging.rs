//! The packager: zip name, contents, modes, `stack:`, cached dependencies, byte-for-byte
//! reproducibility, and that the unpacked zip stages the sidecar with no network.

use crate::support::*;
use buildpack::manifest::Manifest;
use md5::Digest;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `package ARGS` (the manifest tool), which must succeed; returns its stdout.
#[track_caller]
pub(crate) fn tool(args: &[&str]) -> String {
    let o = Command::new(package_bin())
        .args(args)
        .output()
        .expect("run package");
    assert!(
        o.status.success(),
        "package {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf8")
}

/// A copy of the repo's buildpack files whose config-server pin is `artifact`'s
/// digest; the uri stays the real release URL, which this machine cannot reach.
pub(crate) struct Source {
    pub(crate) root: tempfile::TempDir,
    pub(crate) artifacts: tempfile::TempDir,
    pub(crate) artifact: Vec<u8>,
}

/// The zip's name for `flavour` (`""`, `"-cached"`, `"-cached-cflinuxfs4"`), with the
/// repo's VERSION, which `Source` copies.
pub(crate) fn zip_name(flavour: &str) -> String {
    let version = fs::read_to_string(Path::new(REPO).join("VERSION")).expect("VERSION");
    format!("sidecar_buildpack{flavour}-v{}.zip", version.trim())
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
            "manifest.yml",
        ] {
            let dest = root.path().join(f);
            fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
            fs::copy(Path::new(REPO).join(f), dest).expect("copy");
        }
        let artifact = tgz(&[("bin/config-server", &sidecar_bytes("packaged"), 0o755)]);
        let src = Source {
            root,
            artifacts: tempfile::tempdir().expect("artifacts"),
            artifact,
        };
        let uri = src.get("dependencies[config-server].uri");
        src.pin(&uri, &sha256_hex(&src.artifact));
        let name = uri.rsplit('/').next().expect("file name");
        fs::write(src.artifacts.path().join(name), &src.artifact).expect("artifact");
        src
    }

    pub(crate) fn manifest(&self) -> PathBuf {
        self.root.path().join("manifest.yml")
    }

    /// A value of the manifest, read by the tool.
    pub(crate) fn get(&self, key: &str) -> String {
        let m = self.manifest();
        tool(&["get", key, "--manifest", m.to_str().expect("utf8")])
            .trim_end()
            .to_string()
    }

    /// config-server's pinned version and stacks, as the packager lists them:
    /// `config-server 0.2.0 [cflinuxfs3, cflinuxfs4, cflinuxfs5]`.
    pub(crate) fn config_server(&self) -> String {
        format!(
            "config-server {} [{}]",
            self.get("default_versions[config-server]"),
            self.get("dependencies[config-server].cf_stacks")
                .lines()
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// Pins config-server (its version and stacks kept) to `uri` and `sha`.
    pub(crate) fn pin(&self, uri: &str, sha: &str) {
        let m = self.manifest();
        let version = self.get("default_versions[config-server]");
        tool(&[
            "pin",
            "config-server",
            "--version",
            &version,
            "--uri",
            uri,
            "--sha256",
            sha,
            "--manifest",
            m.to_str().expect("utf8"),
        ]);
    }

    /// Points the dependency's uri at `url` and empties the artifact dir, so the
    /// packager must download it.
    pub(crate) fn served_from(&self, url: &str) {
        self.pin(url, &sha256_hex(&self.artifact));
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
        let o = self
            .zip_command(out, flags)
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

    /// `package zip` of this source into `out`, not yet run.
    pub(crate) fn zip_command(&self, out: &Path, flags: &[&str]) -> Command {
        let mut cmd = Command::new(package_bin());
        cmd.arg("zip")
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
            .env("SIDECAR_BUILDPACK_RETRY_DELAY_MS", "10");
        cmd
    }
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
    // Readable by an upload job or a web server, not only by who packaged it (a temp
    // file's 0600 once leaked through the rename).
    let mode = fs::metadata(&p).expect("zip").permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "{}: mode {mode:o}", p.display());
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
    let zip = zip_in(out.path(), &zip_name(""));
    assert!(
        text.ends_with(&format!("zip: {}\n", zip.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} not cached", src.config_server())),
        "{text}"
    );
    // Build output, created as `zip` creates it (0644 with the usual umask), not 0600.
    let umask = fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|l| u32::from_str_radix(l.strip_prefix("Umask:")?.trim(), 8).ok())
        .expect("Umask:");
    assert_eq!(
        fs::metadata(&zip).expect("stat").permissions().mode() & 0o777,
        0o666 & !umask
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
    let packaged = Manifest::parse(&manifest, Path::new("manifest.yml")).expect("loads");
    assert_eq!(packaged.stack, None, "stack-agnostic without --stack");
    assert!(packaged.dependencies.iter().all(|d| d.file.is_none()));
    // `cf create-buildpack NAME` takes the zip's name up to `-v`: ^[\w-]+$, no dots.
    let zip_name = zip.file_name().expect("name").to_string_lossy();
    let bp_name = zip_name.split("-v").next().expect("name");
    assert!(
        !bp_name.is_empty()
            && bp_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "{bp_name}"
    );
    assert_no_temp_files(out.path());
    assert_eq!(
        fs::read_dir(out.path()).expect("out").count(),
        1,
        "only the zip"
    );
}

#[test]
#[ignore = "needs root: runs inside unshare -n (no network)"]
fn cached_stack_zip_stages_with_no_network_at_all() {
    let src = Source::new();
    let out = tempfile::tempdir().expect("out");
    let (code, text) = src.package(out.path(), &["--cached", "--stack", "cflinuxfs4"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("{} cached", src.config_server())),
        "{text}"
    );
    let zip = zip_in(out.path(), &zip_name("-cached-cflinuxfs4"));
    let z = entries(&zip);
    let uri = src.get("dependencies[config-server].uri");
    let md5 = format!("{:x}", md5::Md5::digest(uri.as_bytes()));
    let name = uri.rsplit('/').next().expect("file name");
    let dep_path = format!("dependencies/{md5}/{name}");
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
    let (code, text) = src.package(a.path(), &["--cached"]);
    assert_eq!(code, 0, "{text}");
    // Without a subcommand the packager packages too (older callers use it so).
    let o = Command::new(package_bin())
        .arg("--root")
        .arg(src.root.path())
        .args(["--supply", SUPPLY, "--cached", "--output"])
        .arg(b.path())
        .arg("--artifact-dir")
        .arg(src.artifacts.path())
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let name = &zip_name("-cached");
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
    let uri = src.get("dependencies[config-server].uri");
    let name = uri.rsplit('/').next().expect("name");
    fs::write(src.artifacts.path().join(name), b"tampered").expect("tamper");
    let server = Server::start(vec![Reply::Body(b"also wrong".to_vec())]);
    let served = server.url(&format!("/{name}?token={SECRET}"));
    src.pin(&served, &sha256_hex(&src.artifact));
    let out = tempfile::tempdir().expect("out");
    let (code, text) = src.package(out.path(), &["--cached"]);
    assert_eq!(code, 4, "{text}");
    assert!(text.contains("**WARNING** not using"), "{text}");
    assert!(
        text.contains(&format!(
            "**ERROR** checksum mismatch for config-server {} from",
            src.get("default_versions[config-server]")
        )),
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
    // Found before anything is downloaded: a cached zip's dependencies come from here.
    let server = Server::start(vec![Reply::Body(src.artifact.clone())]);
    src.served_from(&server.url("/config-server-0.1.0-linux-x86_64.tgz"));
    let (code, text) = src.package(out.path(), &["--cached"]);
    assert_eq!(code, 3, "{text}");
    assert_eq!(server.hits(), 0, "{text}");
    assert!(
        text.contains(&format!(
            "**ERROR** {}: include_files lists \"bin/detect\", which is not a file at {}",
            src.manifest().display(),
            src.root.path().join("bin/detect").display()
        )),
        "{text}"
    );
    // The packager's own words, not staging's.
    assert!(
        text.contains("       Cause: the checkout is missing a file that manifest.yml says the buildpack ships\n       To fix: restore the file"),
        "{text}"
    );
    assert!(!text.contains("reinstall the buildpack"), "{text}");
    assert_eq!(fs::read_dir(out.path()).expect("out").count(), 0);
}

#[test]
fn include_files_outside_the_buildpack_are_refused_by_name() {
    let outside = tempfile::tempdir().expect("outside");
    fs::write(outside.path().join("secret"), "not the buildpack's").expect("secret");
    let link_target = outside.path().join("secret");
    let plain = "must be a plain relative path (no empty or '.' part, no trailing '/')";
    for (entry, problem) in [
        ("/etc/hostname", "is outside the buildpack"),
        ("../other/manifest.yml", "is outside the buildpack"),
        ("bin/../../escape", "is outside the buildpack"),
        ("./VERSION", plain),
        ("VERSION/", plain),
        ("bin//detect", plain),
        (
            "bin/link-out",
            "is outside the buildpack (a symlink leads out of it)",
        ),
        (
            "linked-dir/secret",
            "is outside the buildpack (a symlink leads out of it)",
        ),
    ] {
        let bp = Buildpack::new()
            .top_level(&format!("include_files:\n- VERSION\n- {entry}\n"))
            .write();
        fs::create_dir_all(bp.path().join("bin")).expect("bin");
        std::os::unix::fs::symlink(&link_target, bp.path().join("bin/link-out")).expect("link");
        std::os::unix::fs::symlink(outside.path(), bp.path().join("linked-dir")).expect("link");
        let out = tempfile::tempdir().expect("out");
        let o = Command::new(package_bin())
            .args(["zip", "--supply", SUPPLY, "--root"])
            .arg(bp.path())
            .arg("--output")
            .arg(out.path())
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(3), "{entry}: {text}");
        // The entry's own line, as manifest errors name it.
        let manifest = fs::read_to_string(bp.manifest()).expect("manifest");
        let line = 1 + manifest
            .lines()
            .position(|l| l == format!("- {entry}"))
            .expect("entry line");
        assert!(
            text.contains(&format!(
                "**ERROR** {}: include_files entry {entry:?} {problem} at line {line} column 3\n",
                bp.manifest().display()
            )),
            "{entry}: {text}"
        );
        assert_eq!(fs::read_dir(out.path()).expect("out").count(), 0, "{entry}");
    }
}

/// A buildpack dir from the builder with the files a zip needs, whose manifest ends
/// with `top_level`.
fn zippable(top_level: &str) -> Buildpack {
    let bp = Buildpack::new()
        .top_level(&format!(
            "include_files: [VERSION, bin/supply, bin/detect, bin/compile, manifest.yml]\n{top_level}"
        ))
        .write();
    fs::create_dir_all(bp.path().join("bin")).expect("bin");
    for f in ["bin/detect", "bin/compile"] {
        fs::copy(Path::new(REPO).join(f), bp.path().join(f)).expect("copy");
    }
    bp
}

fn zip_of(bp: &Buildpack, out: &Path) -> (Option<i32>, String) {
    let o = Command::new(package_bin())
        .args(["zip", "--supply", SUPPLY, "--root"])
        .arg(bp.path())
        .arg("--output")
        .arg(out)
        .output()
        .expect("run");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).to_string(),
    )
}

#[test]
fn a_yaml_alias_bomb_is_never_expanded_and_errors_name_the_file() {
    let mut bomb = String::from("bomb0: &b0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let refs = vec![format!("*b{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("bomb{i}: &b{i} [{refs}]\n"));
    }
    // Under a key the buildpack ignores: packaged as written, not a billion items.
    let bp = zippable(&bomb);
    let out = tempfile::tempdir().expect("out");
    let (code, text) = zip_of(&bp, out.path());
    assert_eq!(code, Some(0), "{text}");
    let z = entries(&zip_in(out.path(), "sidecar_buildpack-v1.2.3.zip"));
    let packaged = String::from_utf8(z["manifest.yml"].1.clone()).expect("utf8");
    assert!(packaged.ends_with(&bomb), "{packaged}");

    // Where the buildpack reads it: an error that names the file and key.
    let bp = zippable(&format!("{bomb}pre_package: *b8\n"));
    let (code, text) = zip_of(&bp, out.path());
    assert_eq!(code, Some(3), "{text}");
    assert!(
        text.contains(&format!(
            "**ERROR** {}: `pre_package` ",
            bp.manifest().display()
        )),
        "{text}"
    );
}

#[test]
#[ignore = "needs root: mounts a filesystem"]
fn a_full_output_disk_gives_one_clean_error_and_leaves_nothing() {
    let src = Source::new();
    let out = tempfile::tempdir().expect("out");
    let full = out.path().join("full");
    let _mount = Mount::tmpfs(&full, "size=256k");
    let (code, text) = src.package(&full, &[]);
    assert_eq!(code, 5, "{text}");
    let zip = full.join(zip_name(""));
    assert!(
        text.contains(&format!(
            "       **ERROR** cannot write {}\n       Cause: no space left on the device\n       To fix: free space on that filesystem",
            zip.display()
        )),
        "{text}"
    );
    // The zip library's own complaint never reaches the output.
    assert!(!text.contains("ZipWriter"), "{text}");
    assert!(!text.contains("cf push"), "{text}");
    assert_eq!(
        fs::read_dir(&full).expect("full").count(),
        0,
        "nothing left behind"
    );
}

/// The `.package-*` work dirs in `out`.
fn work_dirs(out: &Path) -> Vec<String> {
    fs::read_dir(out)
        .expect("out")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".package-"))
        .collect()
}

#[test]
fn a_killed_run_leaves_a_work_dir_that_the_next_run_removes() {
    let src = Source::new();
    let stalling = Server::start(vec![Reply::Stall(
        src.artifact.clone(),
        10,
        std::time::Duration::from_secs(60),
    )]);
    src.served_from(&stalling.url("/config-server-0.1.0-linux-x86_64.tgz"));
    let out = tempfile::tempdir().expect("out");
    let start = |flags: &[&str]| {
        src.zip_command(out.path(), flags)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn")
    };
    // n runs have a work dir with a download in it.
    let wait_for_work_dirs = |n: usize| {
        for _ in 0..200 {
            let downloading = work_dirs(out.path())
                .iter()
                .filter(|d| {
                    fs::read_dir(out.path().join(d)).is_ok_and(|mut e| {
                        e.any(|f| {
                            f.is_ok_and(|f| f.file_name().to_string_lossy().ends_with(".partial"))
                        })
                    })
                })
                .count();
            if downloading >= n {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("no download started: {:?}", work_dirs(out.path()));
    };
    // Two runs at work: the second keeps the first one's dir, which is locked.
    let mut alive = start(&["--cached"]);
    wait_for_work_dirs(1);
    let alive_dir = work_dirs(out.path());
    let mut killed = start(&["--cached"]);
    wait_for_work_dirs(2);
    killed.kill().expect("SIGKILL");
    killed.wait().expect("reap");
    assert_eq!(
        work_dirs(out.path()).len(),
        2,
        "SIGKILL leaves its work dir"
    );

    // The next run removes the killed run's dir, and only that one.
    let (code, text) = src.package(out.path(), &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("left by a run that was killed"), "{text}");
    assert_eq!(work_dirs(out.path()), alive_dir, "the live run's dir stays");
    alive.kill().expect("SIGKILL");
    alive.wait().expect("reap");
    let (code, text) = src.package(out.path(), &[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(work_dirs(out.path()), Vec::<String>::new());
}

#[test]
fn a_stack_without_builds_is_refused_before_any_zip() {
    let src = Source::new();
    let out = tempfile::tempdir().expect("out");
    let (code, text) = src.package(out.path(), &["--stack", "windows2019"]);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains(&format!(
            "**ERROR** config-server {} does not support the stack \"windows2019\"",
            src.get("default_versions[config-server]")
        )),
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

// #21 item 8: `package zip --cached` wrote a manifest of 1,048,602 bytes (its `file:`
// entries took it over the cap) into a zip that then failed every staging. It is
// refused before the first download, with no zip and no work dir left.
#[test]
fn a_cached_zip_whose_manifest_would_pass_the_cap_is_refused_before_downloading() {
    let src = Source::new();
    let server = Server::start(vec![Reply::Body(src.artifact.clone())]);
    src.served_from(&server.url("/config-server.tgz"));
    let cap = buildpack::manifest::MAX_MANIFEST_BYTES as usize;
    let text = fs::read_to_string(src.manifest()).expect("manifest");
    // Under the cap by less than a `file:` line adds.
    let padding = cap - 20 - text.len() - 3;
    fs::write(src.manifest(), format!("{text}# {}\n", "x".repeat(padding))).expect("pad");
    let out = tempfile::tempdir().expect("out");
    let (code, text) = src.package(out.path(), &["--cached"]);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("packaging would make it")
            && text.contains("bytes, over the 1048576-byte limit of manifest.yml"),
        "{text}"
    );
    assert_eq!(server.hits(), 0, "refused before the first download");
    assert_eq!(
        fs::read_dir(out.path()).expect("out").count(),
        0,
        "nothing left"
    );
    // Without --cached nothing is added: the same manifest packages.
    let (code, text) = src.package(out.path(), &[]);
    assert_eq!(code, 0, "{text}");
}

// #21 item 9: a VERSION of `0.1.0/../../OUTSIDE` wrote the zip outside --output.
#[test]
fn a_version_that_is_a_path_writes_nothing_anywhere() {
    let src = Source::new();
    fs::write(src.root.path().join("VERSION"), "0.1.0/../../OUTSIDE\n").expect("VERSION");
    let top = tempfile::tempdir().expect("top");
    let out = top.path().join("a/b");
    fs::create_dir_all(&out).expect("out");
    let (code, text) = src.package(&out, &[]);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("VERSION holds \"0.1.0/../../OUTSIDE\", which is not a version"),
        "{text}"
    );
    assert!(text.contains("Cause: VERSION names the release"), "{text}");
    assert_eq!(
        snapshot(top.path()).len(),
        2,
        "only a/ and a/b: {:?}",
        snapshot(top.path())
    );
}
