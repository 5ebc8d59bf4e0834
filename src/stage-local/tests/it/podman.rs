//! The sample app (fixtures/rubyapp) staged with this checkout's buildpack into an
//! image on the stand-in base, then run by a real container runtime: `skopeo inspect`
//! reads it, `podman load` loads it, `podman run` and `podman kube play` start the app
//! with its config-server sidecar, `/config` answers through the app, a stop stops
//! both, and a dead sidecar takes the container down with its code.
//!
//! Needs root, podman with runc, catatonit (kube play's pause), skopeo, mmdebstrap and
//! the Debian mirror (the stand-in base, built once and kept under
//! target/stage-local-image-test), Ruby (scripts/install-ruby) and the workspace's
//! binaries (`cargo build --workspace`): `scripts/test` installs and builds them, and
//! runs it with `--include-ignored`. Podman is configured for the test alone: runc, no
//! default ulimits (crun fails on these hosts' hybrid cgroups and on setrlimit), and its
//! own storage and network config in a temp dir; the machine's configuration is never
//! read or changed.

use crate::support::*;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

const IMAGE: &str = "localhost/app-using-config-server:latest";
/// `podman kube play` names the container `<pod>-<container>`.
const KUBE_POD: &str = "app-using-config-server-pod-0";
const KUBE_CONTAINER: &str = "app-using-config-server-pod-0-app-using-config-server";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository")
}

/// Runs `cmd`, which must succeed; returns its output.
fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// The static cf-entrypoint: STAGE_LOCAL_ENTRYPOINT, else built here as
/// scripts/stage-local builds it, in a target dir of its own (the test's own cargo
/// holds the lock of target/).
fn static_entrypoint() -> PathBuf {
    if let Some(p) = std::env::var_os("STAGE_LOCAL_ENTRYPOINT") {
        return PathBuf::from(p);
    }
    let host = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let target = repo().join("target/cf-entrypoint-static");
    let flags = format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        host.to_uppercase().replace('-', "_")
    );
    ok(Command::new(option_env!("CARGO").unwrap_or("cargo"))
        .args([
            "build",
            "--locked",
            "--quiet",
            "--release",
            "-p",
            "cf-entrypoint",
        ])
        .args(["--target", &host])
        .arg("--manifest-path")
        .arg(repo().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .env(flags, "-C target-feature=+crt-static"));
    target.join(&host).join("release/cf-entrypoint")
}

/// Podman with a configuration of its own, in a temp dir; dropping it removes every
/// container and pod it made.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Podman {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        fs::write(
            d.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = []\n[engine]\nruntime = \"runc\"\n\
                 [network]\nnetwork_config_dir = \"{}\"\n",
                d.join("cni").display()
            ),
        )
        .expect("containers.conf");
        fs::write(
            d.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                d.join("storage").display(),
                d.join("run").display()
            ),
        )
        .expect("storage.conf");
        Podman { dir }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.args(args)
            .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .env(
                "CONTAINERS_STORAGE_CONF",
                self.dir.path().join("storage.conf"),
            );
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        text(&ok(&mut self.cmd(args)))
    }

    fn inspect(&self, what: &str, format: &str) -> String {
        self.ok(&["inspect", what, "--format", format])
            .trim()
            .to_string()
    }

    /// Waits until `what`'s state is `state`.
    fn wait_state(&self, what: &str, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.inspect(what, "{{.State.Status}}") == state {
                return;
            }
            assert!(Instant::now() < deadline, "{what} never became {state}");
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for args in [
            &["pod", "rm", "-a", "-f"][..],
            &["rm", "-a", "-f"],
            &["rmi", "-a", "-f"],
        ] {
            let _ = self.cmd(args).output();
        }
    }
}

/// `GET http://<host>:<port><path>`, retried until it answers (the app boots) or a
/// minute passes; returns the status line and the body.
fn get(host: &str, port: u16, path: &str) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = TcpStream::connect((host, port)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            )?;
            let mut a = String::new();
            s.read_to_string(&mut a)?;
            Ok(a)
        });
        if let Ok(a) = &answer {
            if let Some((head, body)) = a.split_once("\r\n\r\n") {
                return (
                    head.lines().next().unwrap_or("").to_string(),
                    body.to_string(),
                );
            }
        }
        assert!(
            Instant::now() < deadline,
            "no answer on {host}:{port}{path}: {answer:?}"
        );
        thread::sleep(Duration::from_millis(500));
    }
}

/// Stages the sample app into `image` (and `kube`); returns the image's digest.
fn stage_image(buildpack: &Path, entrypoint: &Path, image: &Path, kube: &Path) -> String {
    let work = repo().join("target/stage-local-image-test");
    // The same inputs include the app cache's state: a staging that takes config-server
    // from the app cache says so in config.yml's output_metadata (#23), which is in the
    // droplet. Every app's cache goes; the stand-in base (bases/) stays cached.
    if let Ok(apps) = fs::read_dir(&work) {
        for app in apps.flatten() {
            let cache = app.path().join("cache");
            if cache.is_dir() {
                fs::remove_dir_all(&cache).expect("remove the app cache");
            }
        }
    }
    let out = ok(Command::new(BIN)
        .arg("--work-dir")
        .arg(&work)
        .arg("--buildpack")
        .arg(buildpack)
        .arg("--entrypoint")
        .arg(entrypoint)
        .arg("--stage-only")
        .arg("--image")
        .arg(image)
        .arg("--kube")
        .arg(kube)
        .arg(repo().join("fixtures/rubyapp")));
    let log = text(&out);
    assert!(
        log.contains("the image's base is a stand-in for the stack"),
        "{log}"
    );
    let head = format!("stage-local: wrote {IMAGE} (");
    log.lines()
        .find_map(|l| l.strip_prefix(&head))
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no digest in:\n{log}"))
        .to_string()
}

#[test]
#[ignore = "needs root, podman, runc, catatonit, skopeo, mmdebstrap, Ruby and the workspace built (scripts/test)"]
fn the_sample_apps_image_runs_with_its_sidecar_on_podman_and_kube_play() {
    let sb = Sandbox::new();
    let root = sb.root.path();
    let buildpack = root.join("buildpack");
    ok(Command::new(built("STAGE_LOCAL_PACKAGE", "package"))
        .args(["dev", "--root"])
        .arg(repo())
        .arg("--supply")
        .arg(built("STAGE_LOCAL_SUPPLY", "supply"))
        .arg("--out")
        .arg(&buildpack)
        .arg(format!(
            "config-server={}",
            built("STAGE_LOCAL_CONFIG_SERVER", "config-server").display()
        )));
    let entrypoint = static_entrypoint();
    let (one, two, kube) = (
        root.join("one.tar"),
        root.join("two.tar"),
        root.join("app.yml"),
    );
    let digest = stage_image(&buildpack, &entrypoint, &one, &kube);
    assert_eq!(
        stage_image(&buildpack, &entrypoint, &two, &kube),
        digest,
        "same inputs, same digest"
    );
    assert_eq!(fs::read(&one).expect("one"), fs::read(&two).expect("two"));

    let inspected = text(&ok(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", one.display()))));
    let inspected: serde_json::Value = serde_json::from_str(&inspected).expect("skopeo's JSON");
    assert_eq!(inspected["Digest"], digest.as_str());
    assert_eq!(inspected["Architecture"], "amd64");

    let podman = Podman::new();
    let loaded = podman.ok(&["load", "-i", one.to_str().expect("utf8")]);
    assert!(
        loaded.contains(&format!("Loaded image: {IMAGE}")),
        "{loaded}"
    );

    // podman run: the app answers on its port, /config through the app from the sidecar.
    let port = free_port();
    let name = format!("stage-local-test-{}", std::process::id());
    podman.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "-p",
        &format!("127.0.0.1:{port}:8080"),
        IMAGE,
    ]);
    let (status, body) = get("127.0.0.1", port, "/");
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body, "Hi, I'm an app with a sidecar!");
    let (status, body) = get("127.0.0.1", port, "/config");
    assert!(
        status.contains(" 200 ") && body.contains("\"Password\""),
        "{status}\n{body}"
    );
    let top = podman.ok(&["top", &name, "user", "args"]);
    assert!(
        top.contains("vcap") && top.contains("/home/vcap/deps/0/bin/config-server"),
        "{top}"
    );
    assert!(top.contains("rackup config.ru -p 8080"), "{top}");
    // A stop reaches both; the entrypoint reports it and exits 0.
    podman.ok(&["stop", &name]);
    assert_eq!(podman.inspect(&name, "{{.State.ExitCode}}"), "0");
    let logs = podman.ok(&["logs", &name]);
    for line in [
        "cf-entrypoint: started [APP/PROC/WEB/SIDECAR/CONFIG-SERVER/0] as pid",
        "[APP/PROC/WEB/SIDECAR/CONFIG-SERVER/0] OUT SIGTERM: stopped",
        "[APP/PROC/WEB/0] ERR ",
        "INFO  going to shutdown",
        "cf-entrypoint: stopped; exiting with 0",
    ] {
        assert!(logs.contains(line), "{line:?} not in:\n{logs}");
    }
    assert!(!logs.contains("got SIGKILL"), "{logs}");

    // Codependent: when the sidecar dies, the app stops and the container exits with
    // the sidecar's status.
    podman.ok(&["start", &name]);
    get("127.0.0.1", port, "/");
    let pid = podman
        .ok(&["top", &name, "pid", "args"])
        .lines()
        .find(|l| l.contains("config-server"))
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .expect("the sidecar's pid");
    podman.ok(&["exec", &name, "bash", "-c", &format!("kill -9 {pid}")]);
    podman.wait_state(&name, "exited");
    assert_eq!(podman.inspect(&name, "{{.State.ExitCode}}"), "137");
    let logs = podman.ok(&["logs", &name]);
    assert!(
        logs.contains("[APP/PROC/WEB/SIDECAR/CONFIG-SERVER/0] exited with signal 9 (SIGKILL): stopping the others"),
        "{logs}"
    );

    // podman kube play: the same, from the Deployment; the pod's address answers.
    let kube_text = fs::read_to_string(&kube).expect("kube yaml");
    assert!(
        kube_text.contains(&format!("image: {IMAGE}")),
        "{kube_text}"
    );
    podman.ok(&["kube", "play", kube.to_str().expect("utf8")]);
    podman.wait_state(KUBE_CONTAINER, "running");
    let infra = podman
        .ok(&[
            "pod",
            "inspect",
            KUBE_POD,
            "--format",
            "{{.InfraContainerID}}",
        ])
        .trim()
        .to_string();
    let ip = podman.inspect(
        &infra,
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
    );
    let (status, body) = get(&ip, 8080, "/config");
    assert!(
        status.contains(" 200 ") && body.contains("\"Password\""),
        "{status}\n{body}"
    );
    podman.ok(&["pod", "stop", KUBE_POD]);
    assert_eq!(podman.inspect(KUBE_CONTAINER, "{{.State.ExitCode}}"), "0");
    let logs = podman.ok(&["logs", KUBE_CONTAINER]);
    assert!(
        logs.contains("[APP/PROC/WEB/SIDECAR/CONFIG-SERVER/0] OUT SIGTERM: stopped")
            && logs.contains("cf-entrypoint: stopped; exiting with 0"),
        "{logs}"
    );
    podman.ok(&["kube", "down", kube.to_str().expect("utf8")]);
}
