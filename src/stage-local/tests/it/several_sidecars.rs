//! Issue #14, "can one buildpack really ship several sidecars?", end to end with the
//! real binaries: a buildpack whose `bin/supply` is this repo's `supply` and whose
//! manifest declares two sidecars from two dependencies (`file://` tgz artifacts,
//! checked against their sha256), staged and run by `stage-local` with an app that has
//! a web and a worker process type:
//!
//! - `config-server` (this repo's, 32 MB) beside web and worker;
//! - `status-agent` (16 MB, with `args`) beside web only: a small Python HTTP service
//!   that answers with what it runs beside.
//!
//! Two dependencies rather than one binary twice: config-server takes its port only from
//! `CONFIG_SERVER_PORT`, so two copies beside one process could not be told apart by
//! `args`; and two artifacts exercise supply's install and launch.yml for each.
//!
//! These tests need `supply` and `config-server` built, which `cargo test --workspace`
//! does: `scripts/test` runs them with `--include-ignored`. They take the binaries from
//! next to the test binary, or from `STAGE_LOCAL_TEST_SUPPLY` and
//! `STAGE_LOCAL_TEST_CONFIG_SERVER`.

use crate::support::*;
use serde_json::json;
use sha2::{Digest, Sha256};
use stage_local::errors::exit::{CLOUD_CONTROLLER, SUPPLY_FAILED};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

const DEMO: &str = r#"{"Scope":"some-service.admin","Password":"not-a-real-p4$$w0rd"}"#;

/// A second sidecar: answers `GET /` on 127.0.0.1:$STATUS_AGENT_PORT with what it runs
/// beside, and runs until stopped. Never on the app's $PORT.
const STATUS_AGENT: &str = r#"#!/usr/bin/env python3
import http.server, json, os, sys
port = int(os.environ["STATUS_AGENT_PORT"])
if str(port) == os.environ.get("PORT"):
    sys.exit("STATUS_AGENT_PORT is the app's PORT")
vcap = json.loads(os.environ["VCAP_APPLICATION"])
status = json.dumps({
    "pid": os.getpid(),
    "argv": sys.argv[1:],
    "process_type": vcap["process_type"],
    "memory_limit": os.environ["MEMORY_LIMIT"],
    "app_port": os.environ["PORT"],
}).encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(status)))
        self.end_headers()
        self.wfile.write(status)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", port), H)
print(f"status-agent listening on 127.0.0.1:{port}", flush=True)
server.serve_forever()
"#;

/// The worker: asks its own config-server (the one beside it, on its instance's
/// CONFIG_SERVER_PORT) until it answers, says what it got, then keeps running.
const WORKER: &str = r#"import os, time, urllib.request
url = "http://127.0.0.1:%s/config" % os.environ["CONFIG_SERVER_PORT"]
while True:
    try:
        body = urllib.request.urlopen(url, timeout=5).read().decode()
        break
    except OSError:
        time.sleep(0.1)
print("worker got config: " + body, flush=True)
while True:
    time.sleep(600)
"#;

/// A gzipped tar at `path` holding `bin/<name>` (mode 0755) with the bytes `contents`
/// gives, made once per sandbox; returns its sha256.
fn tgz(path: &Path, name: &str, contents: impl FnOnce() -> Vec<u8>) -> String {
    if !path.exists() {
        write_tgz(path, name, &contents());
    }
    let digest = Sha256::digest(fs::read(path).expect("read tgz"));
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_tgz(path: &Path, name: &str, bytes: &[u8]) {
    let file = fs::File::create(path).expect("create tgz");
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o755);
    header.set_cksum();
    tar.append_data(&mut header, format!("bin/{name}"), bytes)
        .expect("append");
    tar.into_inner()
        .expect("tar")
        .finish()
        .expect("gzip")
        .sync_all()
        .expect("sync");
}

/// The test buildpack: `bin/supply` is the real one (a copy, so that it takes this
/// directory as its own), `manifest.yml` declares both sidecars; `second_name` names the
/// status-agent sidecar (to try names that clash).
fn two_sidecar_buildpack(sb: &Sandbox, second_name: &str) -> PathBuf {
    let art = sb.root.path().join("artifacts");
    fs::create_dir_all(&art).expect("artifacts dir");
    let cs = art.join("config-server-0.1.0.tgz");
    let cs_sha = tgz(&cs, "config-server", || {
        fs::read(built("STAGE_LOCAL_TEST_CONFIG_SERVER", "config-server")).expect("config-server")
    });
    let sa = art.join("status-agent-1.0.0.tgz");
    let sa_sha = tgz(&sa, "status-agent", || STATUS_AGENT.as_bytes().to_vec());
    let bp = sb.root.path().join("two-sidecar-buildpack");
    fs::create_dir_all(bp.join("bin")).expect("bin");
    fs::copy(
        built("STAGE_LOCAL_TEST_SUPPLY", "supply"),
        bp.join("bin/supply"),
    )
    .expect("copy supply");
    fs::write(bp.join("VERSION"), "2.0.0\n").expect("VERSION");
    fs::write(
        bp.join("manifest.yml"),
        format!(
            "---
language: twosidecars
default_versions:
- name: config-server
  version: 0.1.0
- name: status-agent
  version: 1.0.0
dependencies:
- name: config-server
  version: 0.1.0
  uri: file://{cs}
  sha256: {cs_sha}
  cf_stacks: [cflinuxfs4]
- name: status-agent
  version: 1.0.0
  uri: file://{sa}
  sha256: {sa_sha}
  cf_stacks: [cflinuxfs4]
sidecars:
- name: config-server
  dependency: config-server
  executable: bin/config-server
  memory_mb: 32
  process_types: [web, worker]
- name: {second_name}
  dependency: status-agent
  executable: bin/status-agent
  args: [--label, web only]
  memory_mb: 16
  process_types: [web]
",
            cs = cs.display(),
            sa = sa.display()
        ),
    )
    .expect("manifest.yml");
    bp
}

/// The app: web and worker process types; web sized by `memory:`, the worker by
/// `processes:`; each sidecar's port in its env, as an app manifest sets it.
fn web_and_worker_app() -> (Sandbox, u16, u16) {
    let sb = Sandbox::web_app();
    let (cs_port, sa_port) = (free_port(), free_port());
    sb.file("worker.py", WORKER)
        .file(
            "Procfile",
            "web: exec python3 server.py\nworker: exec python3 worker.py\n",
        )
        .file(
            "manifest.yml",
            &format!(
                "applications:\n- name: two-sidecars\n  memory: 256M\n  processes:\n  \
                 - type: worker\n    memory: 128M\n  env:\n    CONFIG_SERVER_PORT: {cs_port}\n    \
                 STATUS_AGENT_PORT: {sa_port}\n"
            ),
        );
    (sb, cs_port, sa_port)
}

/// The body of `GET http://127.0.0.1:<port><path>`, which must answer 200.
fn get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to {port}: {e}"));
    s.set_read_timeout(Some(LIMIT)).expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    body.to_string()
}

/// Pids of every process on the machine whose executable is `exe` or whose command
/// line has `arg`.
fn processes_running(exe: Option<&Path>, arg: Option<&str>) -> Vec<i32> {
    let mut pids: Vec<i32> = fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|pid: &i32| {
            let by_exe = exe.is_some_and(|want| {
                fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|got| got == want)
            });
            let by_arg = arg.is_some_and(|want| {
                fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == want.as_bytes()))
            });
            by_exe || by_arg
        })
        .filter(|pid| !gone(*pid))
        .collect();
    pids.sort_unstable();
    pids
}

#[test]
#[ignore = "needs supply and config-server built (cargo build --workspace) and python3"]
fn one_buildpack_ships_two_sidecars_each_beside_its_processes() {
    let (sb, cs_port, sa_port) = web_and_worker_app();
    let bp = two_sidecar_buildpack(&sb, "status-agent");
    // On one loopback, so the test can ask each config-server from here.
    let mut running = sb
        .stage()
        .host_network()
        .buildpack(&bp)
        .process("web")
        .process("worker")
        .spawn();
    let out = running.wait_for("running; Ctrl-C stops");

    // The real supply's staging log: both dependencies installed, both declared.
    for line in [
        "-----> twosidecars_buildpack 2.0.0\n-----> Installing config-server 0.1.0\n",
        "-----> Installing status-agent 1.0.0\n",
        "-----> Declaring sidecars\n       config-server for process types [web, worker], 32 MB, \
         command: \"$DEPS_DIR/0/bin/config-server\"\n       status-agent for process types [web], \
         16 MB, command: \"$DEPS_DIR/0/bin/status-agent\" --label 'web only'\n",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }

    // launch.yml, as CF's builder reads it, and result.json, as Cloud Controller gets it.
    let area = sb.area("two-sidecars");
    let droplet = fs::canonicalize(area.join("droplet")).expect("droplet");
    let launch: serde_yaml::Value = serde_yaml::from_str(
        &fs::read_to_string(droplet.join("deps/0/launch.yml")).expect("launch.yml"),
    )
    .expect("launch.yml is YAML");
    let want_launch: serde_yaml::Value = serde_yaml::from_str(
        r#"processes:
- type: config-server
  command: '"$DEPS_DIR/0/bin/config-server"'
  limits: {memory: 32}
  platforms: {cloudfoundry: {sidecar_for: [web, worker]}}
- type: status-agent
  command: '"$DEPS_DIR/0/bin/status-agent" --label ''web only'''
  limits: {memory: 16}
  platforms: {cloudfoundry: {sidecar_for: [web]}}
"#,
    )
    .expect("expected launch.yml");
    assert_eq!(launch, want_launch);
    let result: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(area.join("result.json")).expect("result"))
            .expect("result.json is JSON");
    assert_eq!(
        result["sidecars"],
        json!([
            {"name": "config-server", "process_types": ["web", "worker"],
             "command": "\"$DEPS_DIR/0/bin/config-server\"", "memory": 32},
            {"name": "status-agent", "process_types": ["web"],
             "command": "\"$DEPS_DIR/0/bin/status-agent\" --label 'web only'", "memory": 16},
        ])
    );
    assert_eq!(
        result["process_types"],
        json!({"web": "exec python3 server.py", "worker": "exec python3 worker.py"})
    );

    // What runs: config-server beside web and beside worker, status-agent beside web.
    assert_eq!(
        started_sources(&out),
        vec![
            "APP/PROC/WEB/0",
            "APP/PROC/WEB/SIDECAR/CONFIG-SERVER/0",
            "APP/PROC/WEB/SIDECAR/STATUS-AGENT/0",
            "APP/PROC/WORKER/0",
            "APP/PROC/WORKER/SIDECAR/CONFIG-SERVER/0",
        ]
    );
    let pid_of = |source: &str| started_pid(&out, source);
    let web = pid_of("APP/PROC/WEB/0");
    let web_cs = pid_of("APP/PROC/WEB/SIDECAR/CONFIG-SERVER/0");
    let web_sa = pid_of("APP/PROC/WEB/SIDECAR/STATUS-AGENT/0");
    let worker = pid_of("APP/PROC/WORKER/0");
    let worker_cs = pid_of("APP/PROC/WORKER/SIDECAR/CONFIG-SERVER/0");
    let env: BTreeMap<i32, BTreeMap<String, String>> = [web, web_cs, web_sa, worker, worker_cs]
        .into_iter()
        .map(|p| (p, environ(p)))
        .collect();
    let var = |pid: i32, k: &str| env[&pid].get(k).cloned().unwrap_or_default();
    for (pid, kind, memory) in [
        (web, "web", "208m"),
        (web_cs, "web", "32m"),
        (web_sa, "web", "16m"),
        (worker, "worker", "96m"),
        (worker_cs, "worker", "32m"),
    ] {
        assert_eq!(process_type(&env[&pid]), kind, "pid {pid}");
        assert_eq!(var(pid, "MEMORY_LIMIT"), memory, "pid {pid} ({kind})");
    }
    for k in ["PORT", "INSTANCE_GUID", "CONFIG_SERVER_PORT"] {
        assert_eq!(var(web_cs, k), var(web, k), "web's config-server: {k}");
        assert_eq!(var(web_sa, k), var(web, k), "web's status-agent: {k}");
        assert_eq!(
            var(worker_cs, k),
            var(worker, k),
            "worker's config-server: {k}"
        );
        assert_ne!(var(web, k), var(worker, k), "{k}: two instances");
    }
    assert_eq!(var(web_cs, "CONFIG_SERVER_PORT"), cs_port.to_string());
    let worker_cs_port: u16 = var(worker_cs, "CONFIG_SERVER_PORT")
        .parse()
        .expect("a port");

    // Each config-server is this repo's binary, from the droplet, listening on its own
    // instance's port; no other config-server of this droplet runs.
    let cs_exe = droplet.join("deps/0/bin/config-server");
    for (pid, port) in [(web_cs, cs_port), (worker_cs, worker_cs_port)] {
        running.wait_for(&format!("OUT listening 127.0.0.1:{port}..."));
        assert_eq!(
            fs::read_link(format!("/proc/{pid}/exe")).expect("exe"),
            cs_exe
        );
        assert!(listens(pid, port), "pid {pid} does not hold port {port}");
        assert_eq!(get(port, "/config"), DEMO, "config-server on {port}");
    }
    assert_eq!(
        processes_running(Some(&cs_exe), None),
        vec![web_cs.min(worker_cs), web_cs.max(worker_cs)]
    );
    // status-agent runs from the droplet with its args, beside web only, and says so.
    running.wait_for(&format!(
        "[APP/PROC/WEB/SIDECAR/STATUS-AGENT/0] OUT status-agent listening on 127.0.0.1:{sa_port}\n"
    ));
    let sa_script = droplet.join("deps/0/bin/status-agent");
    let sa_script = sa_script.to_str().expect("utf-8 path");
    assert_eq!(processes_running(None, Some(sa_script)), vec![web_sa]);
    let cmdline = fs::read(format!("/proc/{web_sa}/cmdline")).expect("cmdline");
    let argv: Vec<&[u8]> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    assert_eq!(
        argv[1..],
        [sa_script.as_bytes(), b"--label", b"web only"],
        "{argv:?}"
    );
    assert!(listens(web_sa, sa_port));
    let status: serde_json::Value =
        serde_json::from_str(&get(sa_port, "/")).expect("status-agent's JSON");
    assert_eq!(
        status,
        json!({"pid": web_sa, "argv": ["--label", "web only"], "process_type": "web",
               "memory_limit": "16m", "app_port": var(web, "PORT")})
    );

    // The apps reach their own config-server: web through GET /config (asked by
    // stage-local), the worker on its instance's port.
    running.wait_for(&format!(
        "stage-local: GET http://127.0.0.1:{}/config -> 200 OK\n{DEMO}\n",
        var(web, "PORT")
    ));
    running.wait_for(&format!(
        "[APP/PROC/WORKER/0] OUT worker got config: {DEMO}\n"
    ));
    for prefix in [
        "[APP/PROC/WEB/0] OUT web up\n",
        "[APP/PROC/WEB/SIDECAR/CONFIG-SERVER/0] OUT listening 127.0.0.1:",
        "[APP/PROC/WORKER/SIDECAR/CONFIG-SERVER/0] OUT listening 127.0.0.1:",
    ] {
        running.wait_for(prefix);
    }

    interrupt(running, &[web, web_cs, web_sa, worker, worker_cs])
        .lacks("[APP/PROC/WORKER/SIDECAR/STATUS-AGENT/");
}

/// The memory rule with the real supply: supply warns when the sidecars of a process
/// type take all of the staging memory (staging has at least 1024 MB), and Cloud
/// Controller's check, per process type against that type's own memory, refuses the
/// droplet. Then two sidecars whose names share a settings prefix fail at load.
#[test]
#[ignore = "needs supply and config-server built (cargo build --workspace) and python3"]
fn the_memory_rule_and_name_clashes_with_the_real_supply() {
    let (sb, _, _) = web_and_worker_app();
    let bp = two_sidecar_buildpack(&sb, "status-agent");
    let stage = |vars: &[(&str, &str)]| {
        let mut run = sb.stage().buildpack(&bp).arg("--stage-only");
        for (k, v) in vars {
            run = run.arg("--env").arg(format!("{k}={v}"));
        }
        run.run()
    };

    // web: 1000 + 24 = 1024 MB, all of staging's 1024: supply warns for web only (the
    // worker's 1000 is less), and Cloud Controller refuses web's 256 MB.
    stage(&[
        ("SIDECAR_BUILDPACK_CONFIG_SERVER_MEMORY_MB", "1000"),
        ("SIDECAR_BUILDPACK_STATUS_AGENT_MEMORY_MB", "24"),
    ])
    .code(CLOUD_CONTROLLER)
    .has("       **WARNING** the sidecars of web take 1024 MB, and the app has at most 1024 MB (MEMORY_LIMIT at staging): Cloud Controller will refuse the droplet")
    .lacks("the sidecars of worker take")
    .has("stage-local: error: the sidecars of the \"web\" process take 1024 MB of its 256 MB (the app's memory)");

    // The worker has 128 MB (processes:): config-server at 128 leaves it nothing, while
    // web (128 + 16 of its 256) is fine. One MB less fits.
    stage(&[("SIDECAR_BUILDPACK_CONFIG_SERVER_MEMORY_MB", "128")])
        .code(CLOUD_CONTROLLER)
        .lacks("**WARNING**")
        .has("stage-local: error: the sidecars of the \"worker\" process take 128 MB of its 128 MB (processes: in the manifest)")
        .has("  config-server: 128 MB (buildpack 0: twosidecars 2.0.0 in two-sidecar-buildpack)");
    stage(&[("SIDECAR_BUILDPACK_CONFIG_SERVER_MEMORY_MB", "127")])
        .success()
        .has("    web: 256 MB (the app's memory), less 143 MB for its sidecars: MEMORY_LIMIT=113m\n")
        .has("    worker: 128 MB (processes: in the manifest), less 127 MB for its sidecars: MEMORY_LIMIT=1m\n");

    // Names that differ only in case or '-'/'_' would share SIDECAR_BUILDPACK_<NAME>_*:
    // the real supply refuses the manifest at load, before installing anything.
    for clash in ["CONFIG-SERVER", "config_server", "Config_Server"] {
        let bp = two_sidecar_buildpack(&sb, clash);
        let o = sb.stage().buildpack(&bp).arg("--stage-only").run();
        o.code(SUPPLY_FAILED)
            .has(&format!(
                "`sidecars[1].name` \"{clash}\" clashes with \"config-server\" (sidecars[0]): \
                 both would read the app's settings from SIDECAR_BUILDPACK_CONFIG_SERVER_*"
            ))
            .lacks("-----> Installing");
    }
}
