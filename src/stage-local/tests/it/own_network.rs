//! Each instance on its own loopback, as in a Diego container (issue 22): two apps whose
//! sidecars listen on one port run side by side, `--instances 3` answers from three
//! instances, stopping leaves no helper and no namespace; where the machine has no
//! namespaces, the shared loopback stays and says so.

use crate::support::*;
use rustix::process::Signal;
use stage_local::errors::exit::NO_NAMESPACE;
use std::collections::BTreeSet;
use std::fs;

/// The web app, named `name`, with a sidecar `config-server` that listens on
/// `CONFIG_SERVER_PORT` (set to `sidecar_port` by the manifest) and answers with the
/// app's name and its instance's index and guid; the web app's `/config` asks it.
fn app_with_config_server(name: &str, sidecar_port: u16) -> (Sandbox, std::path::PathBuf) {
    let sb = Sandbox::web_app();
    sb.file(
        "manifest.yml",
        &format!(
            "applications:\n- name: {name}\n  memory: 256M\n  env:\n    CONFIG_SERVER_PORT: {sidecar_port}\n"
        ),
    );
    let bp = sb.sidecar_buildpack(
        "config-server",
        "16",
        r#"exec python3 -c '
import http.server, json, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        vcap = json.loads(os.environ["VCAP_APPLICATION"])
        body = json.dumps([vcap["application_name"], os.environ["CF_INSTANCE_INDEX"], os.environ["INSTANCE_GUID"]]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["CONFIG_SERVER_PORT"])), H).serve_forever()
'"#,
    );
    (sb, bp)
}

/// The app's URLs from the summary line `<name> answers at http://127.0.0.1:P/, ...`.
fn urls(out: &str) -> Vec<String> {
    let line = out
        .lines()
        .find_map(|l| l.split_once(" answers at ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no answers-at line in:\n{out}"));
    line.split(", ")
        .map(|u| u.split(' ').next().unwrap_or(u).to_string())
        .collect()
}

/// The body stage-local printed for `GET <url><path>`.
fn answer_of(out: &str, url: &str, path: &str) -> String {
    let head = format!(
        "stage-local: GET {}{path} -> 200 OK",
        url.trim_end_matches('/')
    );
    let mut lines = out.lines();
    lines
        .by_ref()
        .find(|l| *l == head)
        .unwrap_or_else(|| panic!("no {head:?} in:\n{out}"));
    lines.next().unwrap_or_default().to_string()
}

/// `GET path` from `url` (`http://127.0.0.1:P/`), asked by the test itself.
fn get(url: &str, path: &str) -> String {
    let port: u16 = url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches('/')
        .parse()
        .expect("a port");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(LIMIT)).expect("timeout");
    use std::io::{Read, Write};
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("ask");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.0 200"), "{answer}");
    body.to_string()
}

/// Waits (within `LIMIT`) until process `pid` listens on `port` in its own network.
fn wait_listening(pid: i32, port: u16) {
    let deadline = std::time::Instant::now() + LIMIT;
    while !listens(pid, port) {
        assert!(
            std::time::Instant::now() < deadline && !gone(pid),
            "pid {pid} never listened on {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The network helpers stage-local (`pid`) started: its children that run it as
/// `--internal-instance-network`.
fn helpers_of(pid: i32) -> Vec<i32> {
    fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            let stat = fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
            let argv = fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            ppid == Some(pid)
                && argv
                    .split(|b| *b == 0)
                    .any(|a| a == b"--internal-instance-network")
        })
        .collect()
}

/// The network namespace of `pid`, as `net:[inode]`.
fn netns_of(pid: i32) -> String {
    fs::read_link(format!("/proc/{pid}/ns/net"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/net: {e}"))
        .display()
        .to_string()
}

/// True while any process is in network namespace `ns`.
fn netns_in_use(ns: &str) -> bool {
    fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<i32>().is_ok())
        })
        .any(|e| {
            fs::read_link(e.path().join("ns/net")).is_ok_and(|l| l.display().to_string() == *ns)
        })
}

/// Two apps whose sidecars both listen on one port, which a process here also holds,
/// run at the same time: each answers `/config` from its own sidecar. Ctrl-C and
/// SIGTERM then leave no process, no helper and no namespace behind.
#[test]
#[ignore = "needs root or unprivileged user namespaces, and util-linux"]
fn two_apps_with_sidecars_on_one_port_run_side_by_side() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("addr").port();
    let (a, bp_a) = app_with_config_server("app-a", port);
    let (b, bp_b) = app_with_config_server("app-b", port);
    let mut run_a = a
        .stage()
        .arg("--network")
        .arg("own")
        .buildpack(&bp_a)
        .spawn();
    let out_a = run_a.wait_for("running; Ctrl-C stops");
    let mut run_b = b
        .stage()
        .arg("--network")
        .arg("own")
        .buildpack(&bp_b)
        .spawn();
    let out_b = run_b.wait_for("running; Ctrl-C stops");
    let mut guids = BTreeSet::new();
    let mut namespaces = BTreeSet::new();
    let mut pids = Vec::new();
    for (name, out, run) in [("app-a", &out_a, &run_a), ("app-b", &out_b, &run_b)] {
        assert!(
            out.contains("stage-local: each instance runs in its own network namespace"),
            "{out}"
        );
        let web = started_pid(out, "APP/PROC/WEB/0");
        let side = started_pid(out, "APP/PROC/WEB/SIDECAR/CONFIG-SERVER/0");
        // Readiness is web's answer; its sidecar may still be starting.
        wait_listening(side, port);
        let url = &urls(out)[0];
        let answer: serde_json::Value =
            serde_json::from_str(&get(url, "/config")).expect("JSON from the sidecar");
        assert_eq!(answer[0], name, "{answer}");
        assert_eq!(answer[1], "0");
        guids.insert(answer[2].to_string());
        assert_eq!(environ(web)["PORT"], "8080");
        assert_eq!(netns_of(web), netns_of(side), "one network per instance");
        let helpers = helpers_of(run.pid());
        assert_eq!(helpers.len(), 1, "one helper per instance: {helpers:?}");
        assert_eq!(netns_of(helpers[0]), netns_of(web));
        assert_ne!(netns_of(web), netns_of(std::process::id() as i32));
        namespaces.insert(netns_of(web));
        pids.push(vec![web, side, helpers[0]]);
    }
    assert_eq!(
        guids.len(),
        2,
        "each app's instance has its own guid: {guids:?}"
    );
    assert_eq!(
        namespaces.len(),
        2,
        "each app has its own network: {namespaces:?}"
    );
    run_a.signal(Signal::INT);
    run_b.signal(Signal::TERM);
    for (run, pids) in [run_a, run_b].into_iter().zip(&pids) {
        run.finish()
            .success()
            .has("stage-local: stopping 2 running process group(s)");
        for p in pids {
            assert!(gone(*p), "pid {p} outlived stage-local");
        }
    }
    for ns in &namespaces {
        assert!(!netns_in_use(ns), "{ns} outlived stage-local");
    }
    drop(held);
}

/// `--instances 3`: three instances, each with its own index, guid, loopback port here
/// and network, in which its sidecar listens on the app's port.
#[test]
#[ignore = "needs root or unprivileged user namespaces, and util-linux"]
fn three_instances_answer_each_from_its_own_network() {
    let sidecar_port = free_port();
    let (sb, bp) = app_with_config_server("demo", sidecar_port);
    let mut running = sb
        .stage()
        .arg("--network")
        .arg("own")
        .arg("--instances")
        .arg("3")
        .buildpack(&bp)
        .arg("--get")
        .arg("/env")
        .spawn();
    let out = running.wait_for("running; Ctrl-C stops");
    let urls = urls(&out);
    assert_eq!(urls.len(), 3, "{out}");
    let mut guids = BTreeSet::new();
    let mut pids = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let env: serde_json::Value =
            serde_json::from_str(&answer_of(&out, url, "/env")).expect("JSON from /env");
        let env = &env["env"];
        let index = i.to_string();
        let host_port = url
            .trim_start_matches("http://127.0.0.1:")
            .trim_end_matches('/');
        for (k, want) in [
            ("PORT", "8080"),
            ("INSTANCE_INDEX", index.as_str()),
            ("CF_INSTANCE_INDEX", index.as_str()),
            ("CF_INSTANCE_PORT", host_port),
        ] {
            assert_eq!(env[k], want, "instance {i}: {k}");
        }
        let vcap: serde_json::Value =
            serde_json::from_str(env["VCAP_APPLICATION"].as_str().expect("set")).expect("json");
        assert_eq!(vcap["instance_index"], i);
        assert_eq!(vcap["instance_id"], env["INSTANCE_GUID"]);
        guids.insert(env["INSTANCE_GUID"].to_string());
        // Readiness is web's answer; its sidecar may still be starting.
        let web = started_pid(&out, &format!("APP/PROC/WEB/{i}"));
        let side = started_pid(&out, &format!("APP/PROC/WEB/SIDECAR/CONFIG-SERVER/{i}"));
        wait_listening(side, sidecar_port);
        let config: serde_json::Value =
            serde_json::from_str(&get(url, "/config")).expect("JSON from /config");
        assert_eq!(
            (config[1].as_str(), config[2].to_string()),
            (Some(index.as_str()), env["INSTANCE_GUID"].to_string()),
            "instance {i} asks its own sidecar"
        );
        assert!(
            out.contains(&format!("\n  web/{i}: pid {web}, PORT=8080 (at {url}), ")),
            "{out}"
        );
        pids.extend([web, side]);
    }
    assert_eq!(guids.len(), 3, "every instance has its own guid: {guids:?}");
    // Where to edit what the running app reads (the droplet's copy of the app).
    assert!(
        out.contains(&format!(
            "  app files: {} (a copy of APP_DIR: edit there",
            sb.area("demo").join("droplet/app").display()
        )),
        "{out}"
    );
    interrupt(running, &pids);
}

/// `--instances 2` on the shared loopback: each instance gets its own `PORT` and index,
/// and the second one's sidecar a free port in place of the app's, which the first uses.
#[test]
fn instances_on_the_shared_loopback_get_their_own_ports() {
    let sidecar_port = free_port();
    let (sb, bp) = app_with_config_server("demo", sidecar_port);
    let mut running = sb
        .stage()
        .host_network()
        .arg("--instances")
        .arg("2")
        .buildpack(&bp)
        .arg("--get")
        .arg("/env")
        .spawn();
    let out = running.wait_for("running; Ctrl-C stops");
    let urls = urls(&out);
    assert_eq!(urls.len(), 2, "{out}");
    let mut pids = Vec::new();
    let mut sidecar_ports = BTreeSet::new();
    for (i, url) in urls.iter().enumerate() {
        let env: serde_json::Value =
            serde_json::from_str(&answer_of(&out, url, "/env")).expect("JSON from /env");
        let env = &env["env"];
        assert_eq!(
            format!("http://127.0.0.1:{}/", env["PORT"].as_str().expect("PORT")),
            *url
        );
        assert_eq!(env["CF_INSTANCE_INDEX"], i.to_string());
        let port: u16 = env["CONFIG_SERVER_PORT"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .expect("CONFIG_SERVER_PORT");
        sidecar_ports.insert(port);
        let web = started_pid(&out, &format!("APP/PROC/WEB/{i}"));
        let side = started_pid(&out, &format!("APP/PROC/WEB/SIDECAR/CONFIG-SERVER/{i}"));
        wait_listening(side, port);
        let config: serde_json::Value =
            serde_json::from_str(&get(url, "/config")).expect("JSON from /config");
        assert_eq!(
            config[1],
            i.to_string(),
            "instance {i} asks its own sidecar"
        );
        pids.extend([web, side]);
    }
    assert!(sidecar_ports.contains(&sidecar_port), "{sidecar_ports:?}");
    assert_eq!(sidecar_ports.len(), 2, "{sidecar_ports:?}");
    assert!(
        out.contains(&format!(
            "(in place of the app's {sidecar_port}, which web/0's instance uses)"
        )),
        "{out}"
    );
    interrupt(running, &pids);
}

/// A machine without namespaces (here an `unshare` that is refused, as it is to a user
/// without them): `auto` says so and keeps the shared loopback; `own` is refused.
#[test]
fn without_namespaces_the_shared_loopback_stays() {
    let sb = Sandbox::web_app();
    let fake = sb.root.path().join("fake-bin");
    write(
        &fake.join("unshare"),
        "#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n",
        0o755,
    );
    let path = format!(
        "{}:{}",
        fake.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let bp = sb.buildpack("noop", "true");
    let o = sb
        .stage()
        .env("PATH", &path)
        .buildpack(&bp)
        .arg("--stop-after-answers")
        .arg("--get")
        .arg("/env")
        .run();
    o.success().has(
        "stage-local: no network namespace for the instances (unshare: unshare failed: \
         Operation not permitted): every instance shares this machine's loopback",
    );
    let url = &urls(&o.out)[0];
    let env: serde_json::Value =
        serde_json::from_str(&answer_of(&o.out, url, "/env")).expect("JSON from /env");
    assert_eq!(
        format!(
            "http://127.0.0.1:{}/",
            env["env"]["PORT"].as_str().expect("PORT")
        ),
        *url,
        "PORT is the URL's port"
    );
    sb.stage()
        .env("PATH", &path)
        .arg("--network")
        .arg("own")
        .buildpack(&bp)
        .arg("--stop-after-answers")
        .run()
        .code(NO_NAMESPACE)
        .has(
            "--network own: this machine cannot give an instance a network namespace: \
             unshare: unshare failed: Operation not permitted",
        )
        .has("--network host")
        .lacks("stage-local: started [");
}

/// Without root (here `nobody`), the instance's network namespace belongs to a user
/// namespace that maps the user to itself: the app runs with the caller's uid.
#[test]
#[ignore = "needs root (to run stage-local as nobody) and unprivileged user namespaces"]
fn without_root_a_user_namespace_holds_the_network() {
    use std::os::unix::fs::PermissionsExt as _;
    let sb = Sandbox::web_app();
    sb.file(
        "server.py",
        &SERVER_PY.replace(
            "\"cwd\": os.getcwd()",
            "\"cwd\": os.getcwd(), \"uid\": os.getuid()",
        ),
    );
    let bp = sb.buildpack("noop", "true");
    fs::create_dir_all(sb.work()).expect("work dir");
    for dir in [sb.root.path().to_path_buf(), sb.work()] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(BIN)
        .arg("--work-dir")
        .arg(sb.work())
        .args(["--network", "own", "--stop-after-answers", "--get", "/env"])
        .arg("--buildpack")
        .arg(&bp)
        .arg(sb.app())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", sb.work())
        .output()
        .expect("run setpriv");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(
            "stage-local: each instance runs in its own network namespace (in a user namespace)"
        ),
        "{text}"
    );
    let url = &urls(&text)[0];
    let answer: serde_json::Value =
        serde_json::from_str(&answer_of(&text, url, "/env")).expect("JSON from /env");
    assert_eq!(answer["env"]["PORT"], "8080");
    assert_eq!(answer["uid"], 65534, "the app keeps the caller's uid");
}
