//! `config-server wait`: what the buildpack's HOLD_APP hook runs in the app's
//! processes before they start.

use std::process::{Child, Command, Output, Stdio};

use crate::support::{free_port, Sidecar, DEMO};

/// `config-server wait ARGS` with only `env` (and `CONFIG_SERVER_PORT=port`).
fn wait_cmd(port: u16, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(crate::support::BIN);
    cmd.arg("wait")
        .args(args)
        .env_clear()
        .env("CONFIG_SERVER_PORT", port.to_string())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn finished(child: Child) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = child
        .wait_with_output()
        .expect("wait for config-server wait");
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn waits_until_the_sidecar_serves_then_exits_0() {
    let port = free_port();
    // Started first, as the app may be: nothing listens yet.
    let waiting = wait_cmd(port, &[], &["--timeout", "60s"])
        .spawn()
        .expect("spawn wait");
    let sidecar = Sidecar::new().port(port).start();
    let (code, stdout, stderr) = finished(waiting);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "config-server is ready on 127.0.0.1:{port} (waited "
        )),
        "{stdout}"
    );
    assert_eq!(stderr, "");
    assert_eq!(sidecar.get("/config").body, DEMO);
}

#[test]
fn nothing_listening_times_out_saying_what_to_check() {
    let port = free_port();
    let (code, stdout, stderr) = finished(
        wait_cmd(port, &[], &["--timeout", "300ms"])
            .spawn()
            .expect("spawn"),
    );
    assert_eq!(code, Some(5));
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with("error: config-server wait: not ready after 0.3 s: nothing answers on "),
        "{stderr}"
    );
    assert!(
        stderr.contains("is the config-server sidecar declared for this process type"),
        "{stderr}"
    );
}

/// The sidecar that cannot load stops (CF restarts the instance, app and all) with
/// its reason in the app's log; a `wait` that times out names that reason too.
#[test]
fn a_wait_that_times_out_names_the_sidecars_failed_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tmpdir = tmp.path().to_str().expect("utf-8");
    let port = free_port();
    let missing = tmp.path().join("no-such-config.yml");
    let exited = Sidecar::new()
        .port(port)
        .env("TMPDIR", tmpdir)
        .env("CONFIG_SERVER_FILE", &missing)
        .run_to_exit();
    let message = format!(
        "CONFIG_SERVER_FILE={}: cannot read it: No such file or directory (os error 2)",
        missing.display()
    );
    exited.assert_error(3, &message);
    let (code, _, stderr) = finished(
        wait_cmd(port, &[("TMPDIR", tmpdir)], &["--timeout", "200ms"])
            .spawn()
            .expect("spawn"),
    );
    assert_eq!(code, Some(5));
    assert_eq!(
        stderr,
        format!(
            "error: config-server wait: not ready after 0.2 s: nothing answers, and its last \
             start failed: {message}; Cloud Foundry restarts the app instance until that is \
             fixed; the app starts without it\n"
        )
    );

    // A good start clears the note.
    let _sidecar = Sidecar::new().port(port).env("TMPDIR", tmpdir).start();
    assert!(!tmp
        .path()
        .join(format!("config-server-{port}.error"))
        .exists());
}

#[test]
fn only_for_skips_other_process_types_and_tasks_silently() {
    let port = free_port();
    for env in [
        &[("VCAP_APPLICATION", r#"{"process_type":"worker"}"#)][..],
        &[(
            "VCAP_APPLICATION",
            r#"{"name":"a task has no process type"}"#,
        )],
        &[],
    ] {
        let (code, stdout, stderr) = finished(
            wait_cmd(port, env, &["--timeout", "600s", "--only-for", "web,clock"])
                .spawn()
                .expect("spawn"),
        );
        assert_eq!((code, stdout.as_str(), stderr.as_str()), (Some(0), "", ""));
    }
    // In a process type it serves, it waits (and here times out).
    let (code, _, _) = finished(
        wait_cmd(
            port,
            &[("VCAP_APPLICATION", r#"{"process_type":"clock"}"#)],
            &["--timeout", "100ms", "--only-for", "web,clock"],
        )
        .spawn()
        .expect("spawn"),
    );
    assert_eq!(code, Some(5));
}

#[test]
fn settings_the_sidecar_refuses_fail_at_once() {
    let (code, _, stderr) = finished(
        wait_cmd(0, &[], &["--timeout", "600s"])
            .spawn()
            .expect("spawn"),
    );
    assert_eq!(code, Some(3));
    assert_eq!(
        stderr,
        "error: config-server wait: config-server cannot start: CONFIG_SERVER_PORT=\"0\" is not \
         a port number from 1 to 65535\n"
    );
    let (code, _, stderr) = finished(
        wait_cmd(8082, &[], &["--timeout", "soon"])
            .spawn()
            .expect("spawn"),
    );
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with("error: config-server wait: --timeout \"soon\""),
        "{stderr}"
    );
}
