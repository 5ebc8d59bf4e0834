//! Config as files (`CONFIG_SERVER_RENDER`): written before the sidecar is
//! ready and after every reload that changes them, whole, mode 0600; a bad
//! render keeps the last good file; commands run after a change, bounded.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::support::{assert_no_secret, wait_for, Running, Sidecar, SECRET};

const PATIENCE: Duration = Duration::from_secs(10);

/// Replaces `path` atomically.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).expect("write");
    fs::rename(&tmp, path).expect("rename");
}

/// A sidecar with `HOME` at `app`, serving `app/config.yml`, rendering `render`.
fn rendering(app: &Path, config: &str, render: &str) -> Sidecar {
    let path = app.join("config.yml");
    fs::write(&path, config).expect("write");
    Sidecar::new()
        .env("HOME", app)
        .env("CONFIG_SERVER_FILE", "config.yml")
        .env("CONFIG_SERVER_RENDER", render)
}

fn read(path: PathBuf) -> String {
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn wait_for_file(path: PathBuf, text: &str, sidecar: &Running) {
    let seen = wait_for(PATIENCE, || {
        (fs::read_to_string(&path).ok()? == text).then_some(())
    });
    assert!(
        seen.is_some(),
        "{} never held {text:?}: {:?}\nstderr:\n{}",
        path.display(),
        fs::read_to_string(&path),
        sidecar.stderr()
    );
}

const RENDER: &str = r#"[
  {"path": "conf/db.env", "format": "env", "key": "db", "command": "echo ran >> hook.log"},
  {"path": "conf/app.properties", "format": "properties"},
  {"path": "all.yml", "format": "yaml"},
  {"path": "db.json", "format": "json", "key": "db"}
]"#;

#[test]
fn files_are_written_before_ready_and_again_after_a_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path();
    let sidecar = rendering(
        app,
        &format!("db:\n  user: app\n  password: \"{SECRET}\"\nname: it's\n"),
        RENDER,
    )
    .env("CONFIG_SERVER_WATCH_INTERVAL_MS", "100")
    .start();
    // Ready means written.
    assert_eq!(
        read(app.join("conf/db.env")),
        format!("user='app'\npassword='{SECRET}'\n")
    );
    assert_eq!(
        read(app.join("conf/app.properties")),
        format!("db.user=app\ndb.password={SECRET}\nname=it's\n")
    );
    assert_eq!(
        read(app.join("all.yml")),
        format!("db:\n  user: \"app\"\n  password: \"{SECRET}\"\nname: \"it's\"\n")
    );
    assert_eq!(
        read(app.join("db.json")),
        format!("{{\"user\":\"app\",\"password\":\"{SECRET}\"}}\n")
    );
    for file in ["conf/db.env", "conf/app.properties", "all.yml", "db.json"] {
        let mode = fs::metadata(app.join(file))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    assert!(!app.join("hook.log").exists(), "no command at startup");

    // A change to `name` only: db.env and db.json stay, their command does not run.
    replace(
        &app.join("config.yml"),
        &format!("db:\n  user: app\n  password: \"{SECRET}\"\nname: x\n"),
    );
    wait_for_file(
        app.join("all.yml"),
        &format!("db:\n  user: \"app\"\n  password: \"{SECRET}\"\nname: \"x\"\n"),
        &sidecar,
    );
    // A change to `db`: its files and its command.
    replace(
        &app.join("config.yml"),
        "db:\n  user: app\n  password: rotated\nname: x\n",
    );
    wait_for_file(
        app.join("conf/db.env"),
        "user='app'\npassword='rotated'\n",
        &sidecar,
    );
    wait_for_file(app.join("hook.log"), "ran\n", &sidecar);
    sidecar.wait_stdout("CONFIG_SERVER_RENDER[0] (conf/db.env): command done");
    assert_eq!(
        read(app.join("db.json")),
        "{\"user\":\"app\",\"password\":\"rotated\"}\n"
    );
    let (exited, _) = sidecar.stop("TERM");
    assert_no_secret(&exited.stdout);
    assert_no_secret(&exited.stderr);
    let names: Vec<String> = fs::read_dir(app.join("conf"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("tmp")), "{names:?}");
}

#[test]
fn a_bad_render_keeps_the_last_good_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path();
    let sidecar = rendering(app, "db:\n  user: a\n", RENDER).start();
    // `db` is gone: the document is served, db.env and db.json stay as they were.
    replace(&app.join("config.yml"), "other: 1\n");
    sidecar.signal("HUP");
    sidecar.wait_stdout("generation 2");
    sidecar.get("/config").assert_json(200, r#"{"other":1}"#);
    let stderr = sidecar.wait_stderr("CONFIG_SERVER_RENDER[3]");
    assert!(
        stderr.contains(
            "warning: CONFIG_SERVER_RENDER[0] (conf/db.env): not written, the last good file \
             stays: no key \"db\" in the configuration\n"
        ),
        "{stderr}"
    );
    assert_eq!(read(app.join("conf/db.env")), "user='a'\n");
    assert_eq!(read(app.join("db.json")), "{\"user\":\"a\"}\n");
    assert_eq!(read(app.join("all.yml")), "other: 1\n");
    assert!(sidecar
        .get("/metrics")
        .body
        .contains("config_server_renders_total{outcome=\"failed\"} 2\n"));
}

#[test]
fn bad_render_settings_stop_the_sidecar_naming_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path().canonicalize().expect("canonical");
    fs::create_dir(app.join("real")).expect("mkdir");
    symlink(app.join("real"), app.join("linked")).expect("symlink");
    for (render, message) in [
        (
            r#"[{"path":"a.toml","format":"toml"}]"#.to_owned(),
            r#"CONFIG_SERVER_RENDER is not valid: [0]: format "toml" is not one of json, yaml, env or properties"#.to_owned(),
        ),
        (
            r#"[{"path":"../a.env","format":"env"}]"#.to_owned(),
            "CONFIG_SERVER_RENDER is not valid: [0]: ../a.env leaves the app's directory (no .. in render paths)".to_owned(),
        ),
        (
            r#"[{"path":"/tmp/a.env","format":"env"}]"#.to_owned(),
            format!("CONFIG_SERVER_RENDER is not valid: [0]: /tmp/a.env is outside the app's directory {}", app.display()),
        ),
        (
            r#"[{"path":"linked/a.env","format":"env"}]"#.to_owned(),
            format!("CONFIG_SERVER_RENDER is not valid: [0]: {}/linked is a symlink: a rendered file must not be written through one", app.display()),
        ),
    ] {
        rendering(&app, "db: {user: a}\n", &render).run_to_exit().assert_error(2, &message);
    }
    rendering(&app, "db: {user: a}\n", r#"[{"path":"x.env","format":"env","key":"nope"}]"#)
        .run_to_exit()
        .assert_error(5, "CONFIG_SERVER_RENDER[0] (x.env): cannot render it at startup: no key \"nope\" in the configuration");
    rendering(&app, "db: {a.b: x}\n", r#"[{"path":"x.env","format":"env","key":"db"}]"#)
        .run_to_exit()
        .assert_error(5, "CONFIG_SERVER_RENDER[0] (x.env): cannot render it at startup: the key path `a.b` makes no valid variable name (letters, digits and _, not starting with a digit): use format properties or yaml, or render a key below it");
    assert_eq!(fs::read_dir(app.join("real")).expect("ls").count(), 0);
    assert!(!app.join("x.env").exists());
}

#[test]
fn a_command_that_hangs_is_killed_with_its_children_and_blocks_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path();
    let render =
        r#"[{"path":"a.env","format":"env","command":"sleep 600 & echo $! > child.pid; wait"}]"#;
    let sidecar = rendering(app, "a: 1\n", render)
        .env("CONFIG_SERVER_COMMAND_TIMEOUT_MS", "1000")
        .start();
    replace(&app.join("config.yml"), "a: 2\n");
    sidecar.signal("HUP");
    wait_for_file(app.join("a.env"), "a='2'\n", &sidecar);
    let pid = wait_for(PATIENCE, || {
        fs::read_to_string(app.join("child.pid"))
            .ok()?
            .trim()
            .parse::<u32>()
            .ok()
    })
    .expect("the command started");
    // While it hangs, requests and reloads go on.
    sidecar.get("/config").assert_json(200, r#"{"a":2}"#);
    replace(&app.join("config.yml"), "a: 3\n");
    sidecar.signal("HUP");
    sidecar.wait_stdout("generation 3");
    sidecar.get("/config").assert_json(200, r#"{"a":3}"#);
    sidecar.wait_stderr(
        "warning: CONFIG_SERVER_RENDER[0] (a.env): command still running after 1000ms \
         (CONFIG_SERVER_COMMAND_TIMEOUT_MS): killed it and its process group",
    );
    let gone = wait_for(PATIENCE, || {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie its parent (also killed) left to init.
        (stat.is_empty() || stat.contains(") Z ")).then_some(())
    });
    assert!(gone.is_some(), "the command's child {pid} survived");
}

#[test]
fn a_file_rendered_during_reloads_is_always_one_whole_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path();
    let version = |v: &str| {
        format!(
            "user: {v}\npassword: {v}{v}\nextra: \"{}\"\n",
            v.repeat(4000)
        )
    };
    let expected = |v: &str| {
        format!(
            "user='{v}'\npassword='{v}{v}'\nextra='{}'\n",
            v.repeat(4000)
        )
    };
    let sidecar = rendering(app, &version("a"), r#"[{"path":"c.env","format":"env"}]"#).start();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (path, stop) = (app.join("c.env"), Arc::clone(&stop));
        let (a, b) = (expected("a"), expected("b"));
        thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                let text = fs::read_to_string(&path).expect("the file is always there");
                assert!(
                    text == a || text == b,
                    "a torn render: {} bytes",
                    text.len()
                );
                reads += 1;
            }
            reads
        })
    };
    for i in 0..30 {
        let v = if i % 2 == 0 { "b" } else { "a" };
        replace(&app.join("config.yml"), &version(v));
        sidecar.signal("HUP");
        sidecar.wait_stdout(&format!("generation {}", i + 2));
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().expect("no torn read") > 0);
}

#[test]
fn a_render_refused_for_a_passing_reason_is_written_at_the_next_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path();
    fs::create_dir(app.join("conf")).expect("mkdir");
    let sidecar = rendering(app, "a: 1\n", r#"[{"path":"conf/a.env","format":"env"}]"#).start();
    // A symlink put in the way: the new version is served, not written through it.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    fs::remove_file(app.join("conf/a.env")).expect("rm");
    fs::remove_dir(app.join("conf")).expect("rmdir");
    symlink(elsewhere.path(), app.join("conf")).expect("symlink");
    replace(&app.join("config.yml"), "a: 2\n");
    sidecar.signal("HUP");
    sidecar
        .wait_stderr("CONFIG_SERVER_RENDER[0] (conf/a.env): not written, the last good file stays");
    sidecar.get("/config").assert_json(200, r#"{"a":2}"#);
    assert_eq!(fs::read_dir(elsewhere.path()).expect("ls").count(), 0);
    // The link gone, a SIGHUP of the same document writes it.
    fs::remove_file(app.join("conf")).expect("rm link");
    sidecar.signal("HUP");
    wait_for_file(app.join("conf/a.env"), "a='2'\n", &sidecar);
}

#[test]
fn a_failing_command_is_logged_and_a_signal_reaches_the_app() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path();
    // The "app": a shell that writes its pid and notes every SIGHUP it gets.
    // Killed on drop, so that a failing test leaves nothing running.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _fake_app = Killed(
        std::process::Command::new("bash")
            .current_dir(app)
            .args([
                "-c",
                "trap 'echo hup >> hup.log' HUP; echo $$ > app.pid; while :; do sleep 0.05; done",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn the app"),
    );
    wait_for(PATIENCE, || {
        fs::read_to_string(app.join("app.pid"))
            .ok()
            .filter(|p| p.ends_with('\n'))
    })
    .expect("the app wrote its pid");
    let render = r#"[
      {"path": "a.json", "format": "json", "command": "echo out; exit 3"},
      {"path": "b.yml", "format": "yaml", "signal": "HUP", "pid_file": "app.pid"}
    ]"#;
    let sidecar = rendering(app, "a: 1\n", render).start();
    replace(&app.join("config.yml"), "a: 2\n");
    sidecar.signal("HUP");
    sidecar
        .wait_stderr("warning: CONFIG_SERVER_RENDER[0] (a.json): command failed (exit status: 3)");
    wait_for_file(app.join("hup.log"), "hup\n", &sidecar);
    sidecar.wait_stdout(&format!(
        "CONFIG_SERVER_RENDER[1] (b.yml): sent HUP to process {}",
        fs::read_to_string(app.join("app.pid")).expect("pid").trim()
    ));
    let metrics = sidecar.get("/metrics").body;
    for line in [
        "config_server_hooks_total{outcome=\"ok\"} 1\n",
        "config_server_hooks_total{outcome=\"failed\"} 1\n",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
}
