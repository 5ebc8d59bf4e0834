//! Rotation without a restart: a changed file, bindings file or binding tree,
//! or SIGHUP, swaps in the new document once it loads completely; a broken new
//! version is refused with one warning and the last good one stays served.
//! The watcher polls every 100 ms here (`CONFIG_SERVER_WATCH_INTERVAL_MS`);
//! every wait is bounded.

use std::fs::{self, Permissions};
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::support::{
    assert_no_secret, read_response, request_with, wait_for, Running, Sidecar, SECRET,
};

const PATIENCE: Duration = Duration::from_secs(10);

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).expect("write");
    path
}

/// Replaces `path` atomically, as editors and deploy tools do.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).expect("write");
    fs::rename(&tmp, path).expect("rename");
}

fn watching(path: &Path) -> Running {
    Sidecar::new()
        .env("CONFIG_SERVER_FILE", path)
        .env("CONFIG_SERVER_WATCH_INTERVAL_MS", "100")
        .start()
}

/// Waits until `GET path` answers `body`.
fn wait_for_body(sidecar: &Running, path: &str, body: &str) {
    let seen = wait_for(PATIENCE, || (sidecar.get(path).body == body).then_some(()));
    assert!(
        seen.is_some(),
        "GET {path} never answered {body}; it answers {}\nstdout:\n{}\nstderr:\n{}",
        sidecar.get(path).body,
        sidecar.stdout(),
        sidecar.stderr()
    );
}

fn health(sidecar: &Running) -> serde_json::Value {
    sidecar.get("/health").json()
}

fn warnings(sidecar: &Running) -> Vec<String> {
    sidecar
        .stderr()
        .lines()
        .filter(|l| l.starts_with("warning: reload"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn an_edited_file_is_served_without_a_restart_with_a_new_etag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "config.yml", "token: one\n");
    let sidecar = watching(&path);
    let first = sidecar.get("/config/");
    first.assert_json(200, r#"{"token":"one"}"#);
    let etag = first.header("etag").expect("an ETag").to_owned();
    assert_eq!(first.header("cache-control"), Some("no-store"));
    // Unchanged: 304 for the tag the app holds.
    let cached = request_with(sidecar.port, "GET", "/config/", &[("If-None-Match", &etag)])
        .expect("request");
    assert_eq!((cached.status, cached.body.as_str()), (304, ""));

    fs::write(&path, "token: two\n").expect("edit in place");
    wait_for_body(&sidecar, "/config/", r#"{"token":"two"}"#);
    let stdout = sidecar.wait_stdout("reloaded (a change): generation 2 from CONFIG_SERVER_FILE=");
    assert_no_secret(&stdout);
    let again = request_with(sidecar.port, "GET", "/config/", &[("If-None-Match", &etag)])
        .expect("request");
    again.assert_json(200, r#"{"token":"two"}"#);
    assert_ne!(again.header("etag"), Some(etag.as_str()));
    let status = health(&sidecar);
    assert_eq!(
        (
            status["generation"].as_u64(),
            &status["last_attempt_failed"]
        ),
        (Some(2), &false.into())
    );
    assert_ne!(status["loaded_at"], serde_json::Value::Null);

    replace(&path, "token: three\n");
    wait_for_body(&sidecar, "/config/token", r#""three""#);
    assert_eq!(health(&sidecar)["generation"], 3);
}

#[test]
fn a_kubernetes_style_symlink_swap_is_picked_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    // config.yml -> ..data/config.yml, ..data -> ..v1, swapped to ..v2 by a rename.
    for (version, text) in [("..v1", "key: v1\n"), ("..v2", "key: v2\n")] {
        fs::create_dir(dir.path().join(version)).expect("mkdir");
        write(&dir.path().join(version), "config.yml", text);
    }
    symlink("..v1", dir.path().join("..data")).expect("symlink");
    let link = dir.path().join("config.yml");
    symlink("..data/config.yml", &link).expect("symlink");
    let sidecar = watching(&link);
    sidecar.get("/config/key").assert_json(200, r#""v1""#);
    symlink("..v2", dir.path().join("..data_tmp")).expect("symlink");
    fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).expect("swap");
    wait_for_body(&sidecar, "/config/key", r#""v2""#);
}

#[test]
fn sighup_reloads_even_with_watching_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "config.json", r#"{"n": 1}"#);
    let sidecar = Sidecar::new()
        .env("CONFIG_SERVER_FILE", &path)
        .env("CONFIG_SERVER_WATCH_INTERVAL_MS", "0")
        .start();
    replace(&path, r#"{"n": 2}"#);
    thread::sleep(Duration::from_millis(300));
    sidecar.get("/config/n").assert_json(200, "1");
    sidecar.signal("HUP");
    wait_for_body(&sidecar, "/config/n", "2");
    sidecar.wait_stdout("reloaded (SIGHUP): generation 2");
}

#[test]
fn a_broken_version_is_refused_once_and_the_last_good_one_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "config.yml", "password: good\n");
    let sidecar = watching(&path);
    let shown = path.display().to_string();

    // Invalid: one warning naming the file and the place, never the value.
    replace(&path, &format!("password: {SECRET}\npassword: again\n"));
    let first = wait_for(PATIENCE, || warnings(&sidecar).first().cloned()).expect("a warning");
    assert_eq!(
        first,
        format!(
            "warning: reload (a change) refused, still serving generation 1: \
             CONFIG_SERVER_FILE={shown}: key `password` appears twice in the same mapping \
             (line 2, column 1): keep one of them"
        )
    );
    // The same broken content written again: tried again, not warned again.
    let attempted = health(&sidecar)["last_attempt_at"].clone();
    replace(&path, &format!("password: {SECRET}\npassword: again\n"));
    wait_for(PATIENCE, || {
        (health(&sidecar)["last_attempt_at"] != attempted).then_some(())
    })
    .expect("another attempt");
    // Several polls later: still the old document, still one warning.
    thread::sleep(Duration::from_millis(300));
    sidecar
        .get("/config/")
        .assert_json(200, r#"{"password":"good"}"#);
    assert_eq!(warnings(&sidecar).len(), 1, "{:?}", warnings(&sidecar));
    let status = health(&sidecar);
    assert_eq!(status["generation"], 1);
    assert_eq!(status["last_attempt_failed"], true);
    assert!(
        status["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains(&shown),
        "{status}"
    );

    // Too big, then unsafe: each its own warning.
    let big = fs::File::create(dir.path().join("big")).expect("create");
    big.set_len(2 * 1024 * 1024).expect("set_len");
    fs::rename(dir.path().join("big"), &path).expect("rename");
    wait_for(PATIENCE, || (warnings(&sidecar).len() == 2).then_some(())).expect("a second warning");
    assert!(warnings(&sidecar)[1].ends_with(
        "2097152 bytes, over the limit of 1048576 bytes (1 MiB) for a configuration source"
    ));
    replace(&path, "password: fine\n");
    fs::set_permissions(&path, Permissions::from_mode(0o666)).expect("chmod");
    wait_for(PATIENCE, || (warnings(&sidecar).len() == 3).then_some(())).expect("a third warning");
    assert!(
        warnings(&sidecar)[2].contains("is world-writable (mode 0666)"),
        "{:?}",
        warnings(&sidecar)
    );
    sidecar
        .get("/config/")
        .assert_json(200, r#"{"password":"good"}"#);

    // A good version is picked up.
    fs::set_permissions(&path, Permissions::from_mode(0o644)).expect("chmod");
    wait_for_body(&sidecar, "/config/", r#"{"password":"fine"}"#);
    let status = health(&sidecar);
    assert_eq!(
        (
            status["generation"].as_u64(),
            &status["last_attempt_failed"]
        ),
        (Some(2), &false.into())
    );
    let (exited, _) = sidecar.stop("SIGTERM");
    assert_no_secret(&exited.stdout);
    assert_no_secret(&exited.stderr);
}

#[test]
fn a_deleted_file_keeps_the_last_good_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "config.yml", "a: 1\n");
    let sidecar = watching(&path);
    fs::remove_file(&path).expect("rm");
    let warning = wait_for(PATIENCE, || warnings(&sidecar).first().cloned()).expect("a warning");
    assert!(
        warning.contains("cannot read it: No such file or directory"),
        "{warning}"
    );
    sidecar.get("/config/a").assert_json(200, "1");
    write(dir.path(), "config.yml", "a: 2\n");
    wait_for_body(&sidecar, "/config/a", "2");
}

fn binding(root: &Path, name: &str, files: &[(&str, &str)]) {
    let dir = root.join(name);
    fs::create_dir_all(&dir).expect("mkdir");
    for (key, value) in files {
        fs::write(dir.join(key), value).expect("write");
    }
}

#[test]
fn binding_tree_rotation_and_removal() {
    let root = tempfile::tempdir().expect("tempdir");
    binding(
        root.path(),
        "cfg",
        &[("type", "config-server"), ("password", "one")],
    );
    let sidecar = Sidecar::new()
        .env("SERVICE_BINDING_ROOT", root.path())
        .env("CONFIG_SERVER_WATCH_INTERVAL_MS", "100")
        .start();
    sidecar
        .get("/config/")
        .assert_json(200, r#"{"password":"one"}"#);
    binding(root.path(), "cfg", &[("password", "two"), ("user", "u")]);
    wait_for_body(&sidecar, "/config/", r#"{"password":"two","user":"u"}"#);
    // The binding goes away: the demo document is never swapped in for it.
    fs::remove_dir_all(root.path().join("cfg")).expect("rm");
    let warning = wait_for(PATIENCE, || warnings(&sidecar).first().cloned()).expect("a warning");
    assert!(
        warning.contains("no configuration found any more"),
        "{warning}"
    );
    sidecar
        .get("/config/")
        .assert_json(200, r#"{"password":"two","user":"u"}"#);
}

#[test]
fn bindings_file_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vcap = |pw: &str| {
        format!(
            r#"{{"user-provided":[{{"name":"c","tags":["config-server"],"credentials":{{"pw":"{pw}"}}}}]}}"#
        )
    };
    let path = write(dir.path(), "vcap_services", &vcap("one"));
    let sidecar = Sidecar::new()
        .env("VCAP_SERVICES_FILE_PATH", &path)
        .env("CONFIG_SERVER_WATCH_INTERVAL_MS", "100")
        .start();
    sidecar.get("/config/pw").assert_json(200, r#""one""#);
    replace(&path, &vcap("two"));
    wait_for_body(&sidecar, "/config/pw", r#""two""#);
}

#[test]
fn requests_during_reloads_see_one_whole_document_or_the_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let doc = |v: &str| {
        let entries: Vec<String> = (0..50).map(|i| format!("\"k{i}\": \"{v}\"")).collect();
        format!("{{{}}}", entries.join(", "))
    };
    let (a, b) = (doc("a"), doc("b"));
    let render = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .expect("json")
            .to_string()
    };
    let (want_a, want_b) = (render(&a), render(&b));
    let path = write(dir.path(), "config.json", &a);
    let sidecar = Sidecar::new()
        .env("CONFIG_SERVER_FILE", &path)
        .env("CONFIG_SERVER_WATCH_INTERVAL_MS", "100")
        .start();
    let pid = sidecar.pid();
    let done = Arc::new(AtomicBool::new(false));
    let swapper = thread::spawn({
        let (done, path) = (Arc::clone(&done), path.clone());
        move || {
            for i in 0..40 {
                replace(&path, if i % 2 == 0 { &b } else { &a });
                let _ = std::process::Command::new("kill")
                    .args(["-HUP", &pid.to_string()])
                    .status();
                thread::sleep(Duration::from_millis(10));
            }
            done.store(true, Ordering::SeqCst);
        }
    });
    let mut stream = TcpStream::connect(("127.0.0.1", sidecar.port)).expect("connect");
    let (mut seen_a, mut seen_b) = (0, 0);
    for _ in 0..20_000 {
        stream
            .write_all(b"GET /config/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .expect("write");
        let response = read_response(&mut stream);
        assert_eq!(response.status, 200);
        if response.body == want_a {
            seen_a += 1;
        } else if response.body == want_b {
            seen_b += 1;
        } else {
            panic!("a mixed or broken document: {}", response.body);
        }
        if done.load(Ordering::SeqCst) {
            break;
        }
    }
    swapper.join().expect("swapper");
    assert!(
        seen_a > 0 && seen_b > 0,
        "saw a {seen_a} times, b {seen_b} times"
    );
    assert!(health(&sidecar)["generation"].as_u64() > Some(2));
}

#[test]
fn a_file_rewritten_in_place_in_two_writes_is_served_only_whole() {
    // #21: truncated, a first half that parses on its own, the second half 300 ms
    // later. The watcher polls every 100 ms; the first half must never be served.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "config.yml", "a: 1\nb: 1\n");
    let sidecar = watching(&path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .expect("open in place");
    file.write_all(b"a: 2\n").expect("first half");
    thread::sleep(Duration::from_millis(300));
    file.write_all(b"b: 2\n").expect("second half");
    drop(file);
    wait_for_body(&sidecar, "/config", r#"{"a":2,"b":2}"#);
    assert_eq!(health(&sidecar)["generation"], 2, "{}", sidecar.stdout());
}
