//! Running the droplet as CF's launcher does: the environment and working directory,
//! profile scripts, `cf logs` prefixes, codependent processes, and stopping everything.

use crate::support::*;
use rustix::process::{kill_process, Signal};
use stage_local::errors::exit::{EXITED, INPUT, NO_ANSWER, PORT_IN_USE};
use std::collections::BTreeMap;
use std::fs;

/// The web app plus a sidecar `sidekick` (16 MB) that records its environment, logs to
/// stdout and stderr, starts a background job, and runs until stopped.
fn app_with_sidekick() -> (Sandbox, std::path::PathBuf) {
    let sb = Sandbox::web_app();
    sb.file(
        ".profile.d/a.sh",
        "export ORDER=\"${ORDER:-}app-profile.d,\"\n",
    )
    .file(".profile", "export ORDER=\"${ORDER}profile\"\n")
    // What CF's launcher gives a profile script: its own path as $0, the app's
    // directory and the command as $1 and $2.
    .file(".profile.d/b.sh", "export LAUNCHER_ARGS=\"$0|$1|$2|$#\"\n");
    let bp = sb.sidecar_buildpack(
        "sidekick",
        "16",
        r#"env > "$TMPDIR/sidekick.env"
cp "$CF_INSTANCE_CERT" "$TMPDIR/instance.crt"; cp "$CF_INSTANCE_KEY" "$TMPDIR/instance.key"
echo "sidekick up"
echo "sidekick on stderr" >&2
sleep 600 & echo $! > "$TMPDIR/sidekick-job.pid"
exec sleep 600"#,
    );
    // Extend the buildpack: a profile.d script in its deps dir, for the final buildpack
    // to copy into the droplet's profile.d.
    let supply = bp.join("bin/supply");
    let mut script = fs::read_to_string(&supply).expect("supply");
    script.push_str(
        "mkdir -p \"$deps/$idx/profile.d\"\nprintf 'export ORDER=\"${ORDER:-}deps-profile.d,\"\\n' > \"$deps/$idx/profile.d/order.sh\"\n",
    );
    fs::write(&supply, script).expect("write supply");
    (sb, bp)
}

/// `KEY=VALUE` lines of `env` output.
fn env_file(path: &std::path::Path) -> BTreeMap<String, String> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Python's view of a PEM certificate chain and key: the key must match the first
/// certificate (`load_cert_chain` checks), whose fields are returned as JSON.
fn decode_cert(cert: &std::path::Path, key: &std::path::Path) -> serde_json::Value {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import json, ssl, sys\n\
             ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(sys.argv[1], sys.argv[2])\n\
             print(json.dumps(ssl._ssl._test_decode_cert(sys.argv[1])))",
        )
        .arg(cert)
        .arg(key)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn runs_web_and_its_sidecar_like_cfs_launcher() {
    let (sb, bp) = app_with_sidekick();
    let sidekick_port = free_port().to_string();
    // On the shared loopback PORT is the app's URL's; with a network of its own the
    // same holds but for PORT (own_network::...).
    let o = sb
        .stage()
        .host_network()
        .buildpack(&bp)
        .arg("--stop-after-answers")
        .arg("--env")
        .arg(format!("SIDEKICK_PORT={sidekick_port}"))
        .arg("--get")
        .arg("/")
        .arg("--get")
        .arg("/env")
        .run();
    o.success()
        .has("[APP/PROC/WEB/0] OUT web up\n")
        .has("[APP/PROC/WEB/0] ERR web says on stderr\n")
        .has("[APP/PROC/WEB/SIDECAR/SIDEKICK/0] OUT sidekick up\n")
        .has("[APP/PROC/WEB/SIDECAR/SIDEKICK/0] ERR sidekick on stderr\n")
        .has("with MEMORY_LIMIT=240m: exec python3 server.py\n")
        .has("with MEMORY_LIMIT=16m: \"$DEPS_DIR/0/bin/sidekick\"\n")
        .has("stage-local: stopped\n");
    assert_eq!(o.answer("/"), "hello from web");

    let droplet = fs::canonicalize(sb.area("demo").join("droplet")).expect("droplet");
    let d = |rel: &str| droplet.join(rel).display().to_string();
    let web = env_answer(&o);
    let env = &web["env"];
    assert_eq!(web["cwd"], d("app"));
    assert_eq!(env["HOME"], d("app"));
    assert_eq!(env["TMPDIR"], d("tmp"));
    assert_eq!(env["DEPS_DIR"], d("deps"));
    assert_eq!(env["MEMORY_LIMIT"], "240m", "256 MB less the sidecar's 16");
    assert_eq!(env["ORDER"], "deps-profile.d,app-profile.d,profile");
    // The launcher starts in the droplet's root (/home/vcap on CF) and cds into app/.
    assert_eq!(
        env["LAUNCHER_ARGS"],
        format!(
            "/tmp/lifecycle/launcher|{}|exec python3 server.py|2",
            d("app")
        )
    );
    assert_eq!(env["OLDPWD"], droplet.display().to_string());
    // What the launcher says before and after the profile scripts, in each process's log.
    for source in ["APP/PROC/WEB/0", "APP/PROC/WEB/SIDECAR/SIDEKICK/0"] {
        let lines: Vec<&str> = o
            .out
            .lines()
            .filter(|l| l.starts_with(&format!("[{source}] ")))
            .collect();
        assert_eq!(
            lines[..2],
            [
                format!("[{source}] OUT Invoking pre-start scripts."),
                format!("[{source}] OUT Invoking start command."),
            ],
            "{lines:?}"
        );
    }
    let vcap: serde_json::Value =
        serde_json::from_str(env["VCAP_APPLICATION"].as_str().expect("set")).expect("json");
    assert_eq!(
        (
            vcap["limits"]["mem"].as_i64(),
            vcap["process_type"].as_str()
        ),
        (Some(240), Some("web"))
    );
    let port = env["PORT"].as_str().expect("PORT").to_string();
    assert_eq!(env["VCAP_SERVICES"], "{}");

    // The final summary: the app's URL, and what runs.
    let web_pid = o.started_pid("APP/PROC/WEB/0");
    let side_pid = o.started_pid("APP/PROC/WEB/SIDECAR/SIDEKICK/0");
    o.has(&format!(
        "stage-local: demo answers at http://127.0.0.1:{port}/\n  web: pid {web_pid}, PORT={port}, MEMORY_LIMIT=240m\n  \
         sidecar sidekick: pid {side_pid}, MEMORY_LIMIT=16m, SIDEKICK_PORT={sidekick_port}\n  droplet: "
    ));

    // The sidecar gets what the app gets (but its own MEMORY_LIMIT): the launcher's
    // and Diego's environment.
    let side = env_file(&droplet.join("tmp/sidekick.env"));
    let guid = side["INSTANCE_GUID"].clone();
    assert_eq!(guid.len(), 36, "{guid}");
    for (k, want) in [
        ("MEMORY_LIMIT", "16m".to_string()),
        ("PORT", port.clone()),
        ("DEPS_DIR", d("deps")),
        ("HOME", d("app")),
        ("TMPDIR", d("tmp")),
        ("SIDEKICK_PORT", sidekick_port.clone()),
        ("INSTANCE_INDEX", "0".into()),
        ("CF_INSTANCE_INDEX", "0".into()),
        ("CF_INSTANCE_GUID", guid.clone()),
        ("CF_INSTANCE_IP", "127.0.0.1".into()),
        ("CF_INSTANCE_INTERNAL_IP", "127.0.0.1".into()),
        ("CF_INSTANCE_PORT", port.clone()),
        ("CF_INSTANCE_ADDR", format!("127.0.0.1:{port}")),
        (
            "CF_INSTANCE_PORTS",
            format!(r#"[{{"external":{port},"internal":{port}}}]"#),
        ),
        ("VCAP_APP_PORT", port.clone()),
        ("VCAP_APP_HOST", "0.0.0.0".into()),
    ] {
        assert_eq!(side.get(k), Some(&want), "sidekick's {k}");
    }
    for k in [
        "INSTANCE_GUID",
        "CF_INSTANCE_CERT",
        "CF_INSTANCE_KEY",
        "PORT",
    ] {
        assert_eq!(
            env[k].as_str(),
            side.get(k).map(String::as_str),
            "{k}: web and sidecar agree"
        );
    }
    let vcap: serde_json::Value =
        serde_json::from_str(&side["VCAP_APPLICATION"]).expect("VCAP_APPLICATION");
    assert_eq!(vcap["host"], "0.0.0.0");
    assert_eq!(vcap["instance_id"], guid.as_str());
    assert_eq!(
        vcap["port"].to_string(),
        port,
        "a number, as the launcher sets it"
    );
    assert_eq!(vcap["instance_index"], 0);
    assert_eq!(vcap["limits"]["mem"], 16);

    // A real certificate chain and its key, for this instance; gone after the run.
    let cert = decode_cert(
        &droplet.join("tmp/instance.crt"),
        &droplet.join("tmp/instance.key"),
    );
    assert_eq!(
        cert["subject"][0][0],
        serde_json::json!(["commonName", guid])
    );
    let sans = cert["subjectAltName"].to_string();
    assert!(
        sans.contains(&format!(r#"["DNS","{guid}"]"#))
            && sans.contains(r#"["IP Address","127.0.0.1"]"#),
        "{sans}"
    );
    for k in ["CF_INSTANCE_CERT", "CF_INSTANCE_KEY"] {
        assert!(
            !std::path::Path::new(&side[k]).exists(),
            "{k} outlived the run"
        );
    }

    let sidekick_exe =
        format!("[APP/PROC/WEB/SIDECAR/SIDEKICK/0] pid {side_pid} runs /usr/bin/sleep");
    o.has(&sidekick_exe);
    for pid in [
        web_pid,
        side_pid,
        pid_in(&droplet.join("tmp/sidekick-job.pid")),
    ] {
        assert!(gone(pid), "pid {pid} outlived stage-local");
    }
}

#[test]
fn a_sidecar_that_exits_at_once_stops_the_app() {
    let sb = Sandbox::web_app();
    let bp = sb.sidecar_buildpack("quitter", "16", "echo 'nothing to do'; exit 0");
    let o = sb.stage().buildpack(&bp).arg("--stop-after-answers").run();
    o.code(EXITED)
        .has("[APP/PROC/WEB/SIDECAR/QUITTER/0] OUT nothing to do\n")
        .has("stage-local: error: sidecar quitter [APP/PROC/WEB/SIDECAR/QUITTER/0] (pid ")
        .has(") exited with exit status 0: Cloud Foundry restarts the whole instance")
        .lacks("GET http");
    assert!(gone(o.started_pid("APP/PROC/WEB/0")));
}

#[test]
fn killing_the_sidecar_stops_the_app_and_leaves_nothing_behind() {
    let (sb, bp) = app_with_sidekick();
    let mut running = sb.stage().buildpack(&bp).spawn();
    let out = running.wait_for("running; Ctrl-C stops");
    let side = started_pid(&out, "APP/PROC/WEB/SIDECAR/SIDEKICK/0");
    let web = started_pid(&out, "APP/PROC/WEB/0");
    kill_process(pid(side), Signal::KILL).expect("kill the sidecar");
    let o = running.finish();
    o.code(EXITED).has(&format!(
        "sidecar sidekick [APP/PROC/WEB/SIDECAR/SIDEKICK/0] (pid {side}) exited with signal 9 (SIGKILL)"
    ));
    let job = pid_in(&sb.area("demo").join("droplet/tmp/sidekick-job.pid"));
    for p in [side, web, job] {
        assert!(gone(p), "pid {p} outlived stage-local");
    }
}

#[test]
fn ctrl_c_stops_everything_and_exits_zero() {
    let (sb, bp) = app_with_sidekick();
    let mut running = sb.stage().buildpack(&bp).spawn();
    let out = running.wait_for("running; Ctrl-C stops");
    let pids = [
        started_pid(&out, "APP/PROC/WEB/0"),
        started_pid(&out, "APP/PROC/WEB/SIDECAR/SIDEKICK/0"),
    ];
    running.signal(Signal::INT);
    let o = running.finish();
    o.success().has("stage-local: stopped\n");
    for p in pids {
        assert!(gone(p), "pid {p} outlived stage-local");
    }
}

#[test]
fn a_process_that_ignores_sigterm_gets_sigkill_after_the_grace_period() {
    let sb = Sandbox::web_app();
    let bp = sb.sidecar_buildpack("stubborn", "16", "trap '' TERM\nexec sleep 600");
    let o = sb
        .stage()
        .buildpack(&bp)
        .arg("--stop-after-answers")
        .arg("--grace-period")
        .arg("1")
        .run();
    o.success().has(
        "warning: sidecar stubborn [APP/PROC/WEB/SIDECAR/STUBBORN/0] ignored SIGTERM for the whole grace period; it got SIGKILL",
    );
    assert!(gone(o.started_pid("APP/PROC/WEB/SIDECAR/STUBBORN/0")));
}

#[test]
fn an_app_that_never_answers_is_given_up_on() {
    let sb = Sandbox::new();
    sb.file("Procfile", "web: exec sleep 600\n");
    // The old name of --stop-after-answers still works, with a deprecation line.
    let o = sb.stage().arg("--stop").arg("--wait").arg("1").run();
    o.code(NO_ANSWER)
        .has("stage-local: warning: --stop is deprecated and will go: it never stopped another run, it stops this one once the app has answered; use --stop-after-answers\n")
        .has("the app did not answer on http://127.0.0.1:")
        .has("within 1 s");
    assert!(gone(o.started_pid("APP/PROC/WEB/0")));
}

#[test]
fn a_port_in_use_is_refused_naming_its_holder() {
    let sb = Sandbox::web_app();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    sb.stage()
        .arg("--stop-after-answers")
        .arg("--port")
        .arg(&port)
        .run()
        .code(PORT_IN_USE)
        .has(&format!(
            "port {port} is in use: --port {port} is held by pid {} (",
            std::process::id()
        ))
        .lacks("stage-local: started [");
}

/// On the shared loopback, a sidecar's fixed port (`<NAME>_PORT` in the app's env) is
/// checked before anything starts, and the process holding it is named.
#[test]
fn a_sidecars_port_in_use_is_refused_before_anything_starts() {
    let sb = Sandbox::web_app();
    let bp = sb.sidecar_buildpack("config-server", "16", "exec sleep 600");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    sb.stage()
        .host_network()
        .buildpack(&bp)
        .arg("--stop-after-answers")
        .arg("--env")
        .arg(format!("CONFIG_SERVER_PORT={port}"))
        .run()
        .code(PORT_IN_USE)
        .has(&format!(
            "port {port} is in use: CONFIG_SERVER_PORT={port} (the app's env), where sidecar config-server is to listen, is held by pid {} (",
            std::process::id()
        ))
        .has("--env NAME=PORT")
        .lacks("stage-local: started [");
    // Another *_PORT of the app's env may name a remote service: only a warning.
    sb.stage()
        .host_network()
        .buildpack(&bp)
        .arg("--stop-after-answers")
        .arg("--env")
        .arg(format!("DB_PORT={port}"))
        .run()
        .success()
        .has(&format!(
            "warning: the app's env has DB_PORT={port}, and port {port} is held here by pid {} (",
            std::process::id()
        ));
    drop(taken);
    // --port may not be the sidecar's port either.
    sb.stage()
        .host_network()
        .buildpack(&bp)
        .arg("--stop-after-answers")
        .arg("--env")
        .arg(format!("CONFIG_SERVER_PORT={port}"))
        .arg("--port")
        .arg(&port)
        .run()
        .code(PORT_IN_USE)
        .has(&format!(
            "--port {port} is also CONFIG_SERVER_PORT, the port of sidecar config-server"
        ));
}

/// The first run holds the app's work dir until it ends: a second one, even
/// --stage-only, is refused and leaves the running droplet alone.
#[test]
fn a_second_run_is_refused_while_the_first_one_runs() {
    let (sb, bp) = app_with_sidekick();
    let mut first = sb.stage().buildpack(&bp).spawn();
    let out = first.wait_for("running; Ctrl-C stops");
    let side = started_pid(&out, "APP/PROC/WEB/SIDECAR/SIDEKICK/0");
    let droplet = sb.area("demo").join("droplet");
    let info = fs::read_to_string(droplet.join("staging_info.yml")).expect("staging_info");
    let marker = droplet.join("app/marker");
    fs::write(&marker, "first run").expect("marker");
    for extra in [&["--stage-only"][..], &["--stop-after-answers"]] {
        let mut second = sb.stage().buildpack(&bp);
        for a in extra {
            second = second.arg(a);
        }
        second.run().code(INPUT).has(&format!(
            "another stage-local run (pid {}) is using {}",
            first.pid(),
            sb.area("demo").display()
        ));
    }
    assert_eq!(fs::read_to_string(&marker).expect("marker"), "first run");
    assert_eq!(
        fs::read_to_string(droplet.join("staging_info.yml")).expect("staging_info"),
        info
    );
    let exe = fs::read_link(format!("/proc/{side}/exe")).expect("the sidecar runs");
    assert!(
        !exe.to_string_lossy().ends_with("(deleted)"),
        "{}",
        exe.display()
    );
    first.signal(Signal::INT);
    first.finish().success();
    sb.stage()
        .buildpack(&bp)
        .arg("--stage-only")
        .run()
        .success();
}

/// Processes that outlive a killed run (stage-local got SIGKILL, so it could not stop
/// them) still run from the droplet: the next run must not replace it under them, not
/// even with --stage-only, and must say which processes to stop.
#[test]
fn processes_a_killed_run_left_behind_keep_their_droplet() {
    let (sb, bp) = app_with_sidekick();
    let mut first = sb.stage().buildpack(&bp).spawn();
    let out = first.wait_for("running; Ctrl-C stops");
    let web = started_pid(&out, "APP/PROC/WEB/0");
    let side = started_pid(&out, "APP/PROC/WEB/SIDECAR/SIDEKICK/0");
    // Whatever happens below, the orphans are killed at the end.
    let orphans = KillGroupsOnDrop(vec![web, side]);
    first.kill_hard();
    assert!(!gone(web) && !gone(side), "the orphans run on");

    let droplet = sb.area("demo").join("droplet");
    let info = fs::read_to_string(droplet.join("staging_info.yml")).expect("staging_info");
    for extra in ["--stage-only", "--stop-after-answers"] {
        let o = sb.stage().buildpack(&bp).arg(extra).run();
        o.code(INPUT)
            .has(&format!(
                "processes of an earlier run of demo still use {}",
                sb.area("demo").display()
            ))
            .has(&format!("pid {web} ("))
            .has(&format!("pid {side} (sleep 600)"));
        // The fix names them all: the web process, the sidecar and its background job.
        let kill = o
            .err
            .split("stop them (`kill ")
            .nth(1)
            .and_then(|rest| rest.split('`').next())
            .unwrap_or_else(|| panic!("no kill command in {}", o.err));
        let named: Vec<i32> = kill.split(' ').map(|p| p.parse().expect("pid")).collect();
        assert!(
            named.contains(&web) && named.contains(&side) && named.len() == 3,
            "{named:?}"
        );
    }
    assert_eq!(
        fs::read_to_string(droplet.join("staging_info.yml")).expect("staging_info"),
        info
    );
    for pid in [web, side] {
        let cwd = fs::read_link(format!("/proc/{pid}/cwd")).expect("it runs");
        assert!(
            !cwd.to_string_lossy().ends_with("(deleted)"),
            "{}",
            cwd.display()
        );
    }
    drop(orphans);
    sb.stage()
        .buildpack(&bp)
        .arg("--stage-only")
        .run()
        .success();
}

/// Kills the process groups led by these pids when dropped.
struct KillGroupsOnDrop(Vec<i32>);

impl Drop for KillGroupsOnDrop {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = rustix::process::kill_process_group(pid(*p), Signal::KILL);
        }
        let deadline = std::time::Instant::now() + LIMIT;
        while self.0.iter().any(|p| !gone(*p)) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// A run killed while a bin/supply runs leaves that supply writing into the staging
/// area: the next run must not clear it under the supply.
#[test]
fn a_supply_a_killed_run_left_behind_keeps_its_staging_area() {
    let sb = Sandbox::web_app();
    let bp = sb.buildpack(
        "slow",
        r#"echo $$ > "$deps/$idx/supply.pid"; echo "-----> slow supply started"; exec sleep 600"#,
    );
    let mut first = sb.stage().buildpack(&bp).arg("--stage-only").spawn();
    first.wait_for("-----> slow supply started");
    let contents: Vec<_> = fs::read_dir(sb.area("demo"))
        .expect("area")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("contents"))
        .map(|e| e.path())
        .collect();
    assert_eq!(contents.len(), 1, "{contents:?}");
    let supply = pid_in(&contents[0].join("deps/0/supply.pid"));
    let _orphan = KillGroupsOnDrop(vec![supply]);
    first.kill_hard();
    assert!(!gone(supply));

    sb.stage()
        .buildpack(&bp)
        .arg("--stage-only")
        .run()
        .code(INPUT)
        .has(&format!("pid {supply} (sleep 600)"));
    assert!(contents[0].join("deps/0/supply.pid").exists(), "kept");
}

/// The launcher re-encodes VCAP_APPLICATION with Go's encoding/json, which escapes `&`,
/// `<` and `>` in strings (and sorts the keys).
#[test]
fn vcap_application_is_encoded_as_gos_json_encodes_it() {
    let sb = Sandbox::web_app();
    sb.file(
        "manifest.yml",
        "applications:\n- name: R&D <team>\n  memory: 256M\n",
    );
    let o = sb
        .stage()
        .arg("--stop-after-answers")
        .arg("--get")
        .arg("/env")
        .run();
    o.success();
    let env = env_answer(&o);
    let vcap = env["env"]["VCAP_APPLICATION"].as_str().expect("set");
    assert!(
        vcap.contains(r#""application_name":"R\u0026D \u003cteam\u003e""#),
        "{vcap}"
    );
    let parsed: serde_json::Value = serde_json::from_str(vcap).expect("json");
    assert_eq!(parsed["name"], "R&D <team>");
}
