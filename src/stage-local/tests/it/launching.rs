//! Running the droplet as CF's launcher does: the environment and working directory,
//! profile scripts, `cf logs` prefixes, codependent processes, and stopping everything.

use crate::support::*;
use rustix::process::{kill_process, Signal};
use std::fs;

const NO_ANSWER: i32 = 7;
const EXITED: i32 = 8;
const PORT_IN_USE: i32 = 6;

/// The web app plus a sidecar `sidekick` (16 MB) that records its environment, logs to
/// stdout and stderr, starts a background job, and runs until stopped.
fn app_with_sidekick() -> (Sandbox, std::path::PathBuf) {
    let sb = Sandbox::web_app();
    sb.file(
        ".profile.d/a.sh",
        "export ORDER=\"${ORDER:-}app-profile.d,\"\n",
    )
    .file(".profile", "export ORDER=\"${ORDER}profile\"\n");
    let bp = sb.sidecar_buildpack(
        "sidekick",
        "16",
        r#"env > "$TMPDIR/sidekick.env"
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

#[test]
fn runs_web_and_its_sidecar_like_cfs_launcher() {
    let (sb, bp) = app_with_sidekick();
    let o = sb
        .stage()
        .buildpack(&bp)
        .arg("--stop")
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

    let side = fs::read_to_string(droplet.join("tmp/sidekick.env")).expect("sidekick env");
    for want in [
        "MEMORY_LIMIT=16m".to_string(),
        format!("PORT={port}"),
        format!("DEPS_DIR={}", d("deps")),
        format!("HOME={}", d("app")),
    ] {
        assert!(
            side.lines().any(|l| l == want),
            "sidekick lacks {want}:\n{side}"
        );
    }
    let sidekick_exe = format!(
        "[APP/PROC/WEB/SIDECAR/SIDEKICK/0] pid {} runs /usr/bin/sleep",
        o.started_pid("APP/PROC/WEB/SIDECAR/SIDEKICK/0")
    );
    o.has(&sidekick_exe);
    for pid in [
        o.started_pid("APP/PROC/WEB/0"),
        o.started_pid("APP/PROC/WEB/SIDECAR/SIDEKICK/0"),
        pid_in(&droplet.join("tmp/sidekick-job.pid")),
    ] {
        assert!(gone(pid), "pid {pid} outlived stage-local");
    }
}

#[test]
fn a_sidecar_that_exits_at_once_stops_the_app() {
    let sb = Sandbox::web_app();
    let bp = sb.sidecar_buildpack("quitter", "16", "echo 'nothing to do'; exit 0");
    let o = sb.stage().buildpack(&bp).arg("--stop").run();
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
        .arg("--stop")
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
    let o = sb.stage().arg("--stop").arg("--wait").arg("1").run();
    o.code(NO_ANSWER)
        .has("the app did not answer on http://127.0.0.1:")
        .has("within 1 s");
    assert!(gone(o.started_pid("APP/PROC/WEB/0")));
}

#[test]
fn a_port_in_use_is_refused() {
    let sb = Sandbox::web_app();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    sb.stage()
        .arg("--stop")
        .arg("--port")
        .arg(&port)
        .run()
        .code(PORT_IN_USE)
        .has(&format!("port {port} is in use"));
}
