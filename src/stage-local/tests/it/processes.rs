//! `--process TYPE`: one instance of each process type asked for, each with its own
//! sidecars, log sources, PORT, ids and MEMORY_LIMIT, checked on the real processes
//! (`/proc/<pid>/environ`), not only on what they print.

use crate::support::*;
use rustix::process::{kill_process, Signal};
use stage_local::errors::exit::{CLOUD_CONTROLLER, EXITED, INPUT, USAGE};
use std::collections::BTreeMap;

/// The web app, a worker that runs until stopped, and a buildpack with two sidecars:
/// `shared` (16 MB) beside web and worker, `webonly` (8 MB) beside web. Each logs one
/// line and runs until stopped. The app's env gives `shared` a port (`SHARED_PORT`).
/// The manifest sizes web with `memory:` and worker with `processes:`.
fn app_with_two_sidecars(worker_memory: &str) -> (Sandbox, std::path::PathBuf, u16) {
    let sb = Sandbox::web_app();
    let shared_port = free_port();
    sb.file(
        "Procfile",
        "web: exec python3 server.py\nworker: echo \"worker up\"; exec sleep 600\n",
    )
    .file(
        "manifest.yml",
        &format!(
            "applications:\n- name: demo\n  memory: 256M\n  processes:\n  - type: worker\n    \
             memory: {worker_memory}\n  env:\n    SHARED_PORT: {shared_port}\n"
        ),
    );
    let bp = sb.buildpack(
        "two-sidecars",
        r#"mkdir -p "$deps/$idx/bin"
for name in shared webonly; do
  printf '#!/usr/bin/env bash\necho "%s up"\nexec sleep 600\n' "$name" > "$deps/$idx/bin/$name"
  chmod 755 "$deps/$idx/bin/$name"
done
cat > "$deps/$idx/launch.yml" <<YML
processes:
- type: shared
  command: '"\$DEPS_DIR/$idx/bin/shared"'
  limits: {memory: 16}
  platforms: {cloudfoundry: {sidecar_for: [web, worker]}}
- type: webonly
  command: '"\$DEPS_DIR/$idx/bin/webonly"'
  limits: {memory: 8}
  platforms: {cloudfoundry: {sidecar_for: [web]}}
YML"#,
    );
    (sb, bp, shared_port)
}

#[test]
fn each_process_type_runs_with_its_own_sidecars_port_and_memory() {
    let (sb, bp, shared_port) = app_with_two_sidecars("128M");
    // Instances on one loopback: a later one's sidecar moves off the app's port.
    let mut running = sb
        .stage()
        .host_network()
        .buildpack(&bp)
        .process("web")
        .process("worker")
        .spawn();
    let out = running.wait_for("running; Ctrl-C stops");
    assert_eq!(
        started_sources(&out),
        vec![
            "APP/PROC/WEB/0",
            "APP/PROC/WEB/SIDECAR/SHARED/0",
            "APP/PROC/WEB/SIDECAR/WEBONLY/0",
            "APP/PROC/WORKER/0",
            "APP/PROC/WORKER/SIDECAR/SHARED/0",
        ],
        "webonly runs beside web only; {out}"
    );
    let pid_of = |source: &str| started_pid(&out, source);
    let (web, web_shared, web_only, worker, worker_shared) = (
        pid_of("APP/PROC/WEB/0"),
        pid_of("APP/PROC/WEB/SIDECAR/SHARED/0"),
        pid_of("APP/PROC/WEB/SIDECAR/WEBONLY/0"),
        pid_of("APP/PROC/WORKER/0"),
        pid_of("APP/PROC/WORKER/SIDECAR/SHARED/0"),
    );
    let env: BTreeMap<i32, BTreeMap<String, String>> =
        [web, web_shared, web_only, worker, worker_shared]
            .iter()
            .map(|p| (*p, environ(*p)))
            .collect();
    let get = |pid: i32, k: &str| env[&pid].get(k).cloned().unwrap_or_default();

    // Each instance: one PORT, one INSTANCE_GUID and certificate, one process type.
    for (members, kind) in [
        (&[web, web_shared, web_only][..], "web"),
        (&[worker, worker_shared], "worker"),
    ] {
        for p in members {
            assert_eq!(process_type(&env[p]), kind, "pid {p}");
            for k in ["PORT", "INSTANCE_GUID", "CF_INSTANCE_CERT", "SHARED_PORT"] {
                assert_eq!(get(*p, k), get(members[0], k), "{k} of pid {p} ({kind})");
            }
        }
    }
    for k in ["PORT", "INSTANCE_GUID", "CF_INSTANCE_CERT", "SHARED_PORT"] {
        assert_ne!(
            get(web, k),
            get(worker, k),
            "{k}: web and worker are two instances"
        );
    }
    // Web keeps the app's SHARED_PORT; the worker's instance gets a free one.
    assert_eq!(get(web_shared, "SHARED_PORT"), shared_port.to_string());
    let moved = get(worker_shared, "SHARED_PORT");
    // MEMORY_LIMIT: web's 256 MB less 16 + 8, the worker's 128 MB (processes:) less 16.
    for (pid, want) in [
        (web, "232m"),
        (web_shared, "16m"),
        (web_only, "8m"),
        (worker, "112m"),
        (worker_shared, "16m"),
    ] {
        assert_eq!(get(pid, "MEMORY_LIMIT"), want, "pid {pid}");
    }
    let (web_port, worker_port) = (get(web, "PORT"), get(worker, "PORT"));
    assert!(
        out.contains(&format!(
            "  web: pid {web}, PORT={web_port}, MEMORY_LIMIT=232m\n  \
             sidecar shared: pid {web_shared}, MEMORY_LIMIT=16m, SHARED_PORT={shared_port}\n  \
             sidecar webonly: pid {web_only}, MEMORY_LIMIT=8m\n  \
             worker: pid {worker}, PORT={worker_port} (no route), MEMORY_LIMIT=112m\n  \
             sidecar shared of worker: pid {worker_shared}, MEMORY_LIMIT=16m, \
             SHARED_PORT={moved} (in place of the app's {shared_port}, which web's instance uses)\n"
        )),
        "{out}"
    );
    for line in [
        "[APP/PROC/WORKER/0] OUT worker up\n",
        "[APP/PROC/WORKER/SIDECAR/SHARED/0] OUT shared up\n",
        "[APP/PROC/WEB/SIDECAR/SHARED/0] OUT shared up\n",
        "[APP/PROC/WEB/SIDECAR/WEBONLY/0] OUT webonly up\n",
    ] {
        running.wait_for(line);
    }
    interrupt(running, &[web, web_shared, web_only, worker, worker_shared])
        .lacks("[APP/PROC/WORKER/SIDECAR/WEBONLY");
    assert!(
        !sb.area("demo").join("instance-credentials").exists(),
        "the instances' credentials outlived the run"
    );
}

/// Without web there is no route: nothing is asked, and the worker runs until stopped.
/// Its memory is Cloud Controller's default when the manifest does not size it.
#[test]
fn a_worker_alone_has_no_route_and_keeps_the_apps_sidecar_port() {
    let (sb, bp, shared_port) = app_with_two_sidecars("128M");
    sb.file(
        "manifest.yml",
        &format!(
            "applications:\n- name: demo\n  memory: 256M\n  env:\n    SHARED_PORT: {shared_port}\n"
        ),
    );
    let mut running = sb
        .stage()
        .host_network()
        .buildpack(&bp)
        .process("worker")
        .spawn();
    let out = running.wait_for("running; Ctrl-C stops");
    let worker = started_pid(&out, "APP/PROC/WORKER/0");
    let side = started_pid(&out, "APP/PROC/WORKER/SIDECAR/SHARED/0");
    assert_eq!(
        started_sources(&out),
        vec!["APP/PROC/WORKER/0", "APP/PROC/WORKER/SIDECAR/SHARED/0"]
    );
    assert_eq!(environ(worker)["MEMORY_LIMIT"], "1008m", "1024 MB less 16");
    assert_eq!(environ(side)["SHARED_PORT"], shared_port.to_string());
    let port = environ(worker)["PORT"].clone();
    assert!(
        out.contains(&format!(
            "stage-local: demo runs worker (no web process, so no route)\n  \
             worker: pid {worker}, PORT={port} (no route), MEMORY_LIMIT=1008m\n"
        )),
        "{out}"
    );
    assert!(
        !out.contains("waiting up to") && !out.contains("GET http"),
        "{out}"
    );
    interrupt(running, &[worker, side]);
}

/// CF restarts only the instance whose process exited; here everything stops, and the
/// report names the worker's sidecar.
#[test]
fn a_worker_sidecar_that_dies_stops_every_instance() {
    let (sb, bp, _) = app_with_two_sidecars("128M");
    let mut running = sb
        .stage()
        .buildpack(&bp)
        .process("worker")
        .process("web")
        .spawn();
    let out = running.wait_for("running; Ctrl-C stops");
    let side = started_pid(&out, "APP/PROC/WORKER/SIDECAR/SHARED/0");
    let web = started_pid(&out, "APP/PROC/WEB/0");
    kill_process(pid(side), Signal::KILL).expect("kill the worker's sidecar");
    let o = running.finish();
    o.code(EXITED).has(&format!(
        "sidecar shared [APP/PROC/WORKER/SIDECAR/SHARED/0] (pid {side}) exited with signal 9 (SIGKILL)"
    ));
    assert!(gone(web) && gone(side));
}

#[test]
fn process_types_the_app_lacks_or_flags_that_need_web_are_refused() {
    let (sb, bp, _) = app_with_two_sidecars("128M");
    sb.stage()
        .buildpack(&bp)
        .process("web")
        .process("clock")
        .run()
        .code(INPUT)
        .has("stage-local: error: the staged app has no clock process type: nothing to start\n")
        .has("to fix: add `clock: <command>` to the Procfile, or start one of the app's process types with --process: web, worker\n")
        .lacks("stage-local: started [");
    sb.stage()
        .buildpack(&bp)
        .process("worker")
        .arg("--get")
        .arg("/")
        .run()
        .code(USAGE)
        .has("stage-local: error: --get needs the web process, and --process does not start it\n")
        .lacks("staging");
}

/// Cloud Controller checks each process against its own memory: with `processes:`
/// giving the worker 16 MB, `shared` (16 MB) leaves it nothing, while web has room.
#[test]
fn the_memory_rule_is_checked_per_process_type() {
    let (sb, bp, _) = app_with_two_sidecars("16M");
    sb.stage()
        .buildpack(&bp)
        .arg("--stage-only")
        .run()
        .code(CLOUD_CONTROLLER)
        .has("stage-local: error: the sidecars of the \"worker\" process take 16 MB of its 16 MB (processes: in the manifest): the memory allocation defined is too large to run with the dependent \"worker\" process\n")
        .has("  shared: 16 MB (buildpack 0: ")
        .has("to fix: give worker more memory (the manifest's `processes: [{type: worker, memory: ...}]`), or the sidecars less");
    let (sb, bp, _) = app_with_two_sidecars("17M");
    sb.stage()
        .buildpack(&bp)
        .arg("--stage-only")
        .run()
        .success()
        .has("    worker: 17 MB (processes: in the manifest), less 16 MB for its sidecars: MEMORY_LIMIT=1m\n");
}
