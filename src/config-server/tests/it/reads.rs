//! Precise reads and change notification: key paths into nested values,
//! several keys at once, and `?wait=` long-polls across reloads and SIGHUP.

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::thread;

use crate::support::{read_response, request_with, Response, Running, Sidecar};

fn config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("config.yml");
    fs::write(&path, text).expect("write");
    path
}

/// Replaces `path` atomically.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).expect("write");
    fs::rename(&tmp, path).expect("rename");
}

fn get_with(sidecar: &Running, path: &str, headers: &[(&str, &str)]) -> Response {
    request_with(sidecar.port, "GET", path, headers).expect("request")
}

/// Starts `GET path` with `If-None-Match: etag` on its own thread.
fn long_poll(sidecar: &Running, path: &str, etag: &str) -> thread::JoinHandle<Response> {
    let (port, path, etag) = (sidecar.port, path.to_owned(), etag.to_owned());
    thread::spawn(move || {
        request_with(port, "GET", &path, &[("If-None-Match", &etag)]).expect("long poll")
    })
}

/// Waits until the sidecar holds `n` waiting reads (its own `/metrics` says).
fn wait_until_waiting(sidecar: &Running, n: usize) {
    let line = format!("config_server_connections_waiting {n}\n");
    let seen = crate::support::wait_for(std::time::Duration::from_secs(10), || {
        sidecar.get("/metrics").body.contains(&line).then_some(())
    });
    assert!(
        seen.is_some(),
        "never {n} waiting: {}",
        sidecar.get("/metrics").body
    );
}

#[test]
fn key_paths_walk_into_mappings_and_sequences() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config(
        dir.path(),
        "db:\n  user: app\n  a/b: slashed\n  hosts: [h0, {name: h1}]\nport: 5432\n",
    );
    let sidecar = Sidecar::new().env("CONFIG_SERVER_FILE", &path).start();
    for (path, body) in [
        ("/config/db/user", r#""app""#),
        ("/config/db/hosts/1/name", r#""h1""#),
        ("/config/db/hosts/0", r#""h0""#),
        ("/config/db/a%2Fb", r#""slashed""#),
        ("/config/port", "5432"),
        (
            "/config/db?key=user&key=hosts/0",
            r#"{"user":"app","hosts/0":"h0"}"#,
        ),
        (
            "/config/?key=port&key=db/a%2Fb",
            r#"{"port":5432,"db/a/b":"slashed"}"#,
        ),
    ] {
        let response = sidecar.get(path);
        response.assert_json(200, body);
        assert!(response.header("etag").is_some(), "{path}");
    }
    for (path, missing) in [
        ("/config/db/a/b", "db/a/b"),
        ("/config/db/hosts/2", "db/hosts/2"),
        ("/config/db/user/x", "db/user/x"),
        ("/config/?key=port&key=nope", "nope"),
    ] {
        sidecar.get(path).assert_json(
            404,
            &format!(r#"{{"error":"no key \"{missing}\" in config"}}"#),
        );
    }
    // A value's tag follows that value only: the same read, a 304.
    let tag = sidecar
        .get("/config/db/user")
        .header("etag")
        .expect("tag")
        .to_owned();
    replace(&path, "db:\n  user: app\n  hosts: []\nport: 1\n");
    sidecar.signal("HUP");
    sidecar.wait_stdout("generation 2");
    let again = get_with(&sidecar, "/config/db/user", &[("If-None-Match", &tag)]);
    assert_eq!(again.status, 304);
}

#[test]
fn a_long_poll_is_answered_by_the_reload_that_changes_its_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config(dir.path(), "a: 1\nb: 1\n");
    let sidecar = Sidecar::new()
        .env("CONFIG_SERVER_FILE", &path)
        .env("CONFIG_SERVER_WATCH_INTERVAL_MS", "100")
        .start();
    let whole = sidecar
        .get("/config")
        .header("etag")
        .expect("tag")
        .to_owned();
    let a = sidecar
        .get("/config/a")
        .header("etag")
        .expect("tag")
        .to_owned();
    let on_whole = long_poll(&sidecar, "/config?wait=60s", &whole);
    let on_a = long_poll(&sidecar, "/config/a?wait=3s", &a);
    wait_until_waiting(&sidecar, 2);
    // A change the watcher sees: the whole document changed, `a` did not.
    replace(&path, "a: 1\nb: 2\n");
    let answer = on_whole.join().expect("thread");
    answer.assert_json(200, r#"{"a":1,"b":2}"#);
    assert_ne!(answer.header("etag"), Some(whole.as_str()));
    let unchanged = on_a.join().expect("thread");
    assert_eq!(
        (unchanged.status, unchanged.header("etag")),
        (304, Some(a.as_str()))
    );
    assert!(sidecar
        .stdout()
        .contains("reloaded (a change): generation 2"));
    // And a reload on SIGHUP (or the watcher, whichever comes first).
    let tag = sidecar
        .get("/config/a")
        .header("etag")
        .expect("tag")
        .to_owned();
    let on_a = long_poll(&sidecar, "/config/a?wait=60s", &tag);
    wait_until_waiting(&sidecar, 1);
    replace(&path, "a: 3\nb: 2\n");
    sidecar.signal("HUP");
    on_a.join().expect("thread").assert_json(200, "3");
}

#[test]
fn wait_values_are_checked_and_bounded_by_the_operator() {
    let sidecar = Sidecar::new()
        .env("CONFIG_SERVER_MAX_WAIT_MS", "2000")
        .start();
    let tag = sidecar
        .get("/config")
        .header("etag")
        .expect("tag")
        .to_owned();
    for value in ["-1s", "3s", "1.5s", "soon", "99999999999999999999999m", ""] {
        get_with(&sidecar, &format!("/config?wait={value}"), &[("If-None-Match", &tag)])
            .assert_json(
                400,
                &format!(
                    r#"{{"error":"wait=\"{value}\" is not valid: expected a duration such as 30s, 500ms or 2m, of at most 2000ms (CONFIG_SERVER_MAX_WAIT_MS)"}}"#
                ),
            );
    }
    // Nothing changes: 304 once the wait is over; without If-None-Match, at once.
    let held = get_with(&sidecar, "/config?wait=1500ms", &[("If-None-Match", &tag)]);
    assert_eq!(
        (held.status, held.header("etag")),
        (304, Some(tag.as_str()))
    );
    sidecar
        .get("/config?wait=2s")
        .assert_json(200, crate::support::DEMO);
    let err = Sidecar::new()
        .env("CONFIG_SERVER_MAX_WAIT_MS", "10")
        .run_to_exit();
    err.assert_error(
        2,
        "CONFIG_SERVER_MAX_WAIT_MS=\"10\" is not valid: expected a whole number from 1000 to 3600000",
    );
}

#[test]
fn waiting_reads_have_their_own_cap_and_never_starve_plain_reads() {
    let sidecar = Sidecar::new()
        .env("CONFIG_SERVER_MAX_CONNECTIONS", "2")
        .env("CONFIG_SERVER_MAX_WAITING", "3")
        .start();
    let tag = sidecar
        .get("/config")
        .header("etag")
        .expect("tag")
        .to_owned();
    // One at a time: a connection not yet sent its request is idle, and at the
    // limit the next client may close it to make room.
    let waiters: Vec<_> = (1..=3)
        .map(|n| {
            let waiter = long_poll(&sidecar, "/config?wait=60s", &tag);
            wait_until_waiting(&sidecar, n);
            waiter
        })
        .collect();
    // Plain reads still get both their connections, on keep-alive too.
    let mut kept = TcpStream::connect(("127.0.0.1", sidecar.port)).expect("connect");
    for _ in 0..3 {
        kept.write_all(b"GET /config HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("write");
        read_response(&mut kept).assert_json(200, crate::support::DEMO);
        sidecar
            .get("/config/Scope")
            .assert_json(200, r#""some-service.admin""#);
    }
    let busy = get_with(&sidecar, "/config?wait=60s", &[("If-None-Match", &tag)]);
    busy.assert_json(
        503,
        r#"{"error":"too many requests are waiting (CONFIG_SERVER_MAX_WAITING), try again"}"#,
    );
    assert_eq!(busy.header("retry-after"), Some("1"));
    // SIGTERM answers the waiting reads at once, and the sidecar stops cleanly.
    let (exited, _) = sidecar.stop("TERM");
    for waiter in waiters {
        assert_eq!(waiter.join().expect("thread").status, 304);
    }
    assert_eq!(exited.code, Some(0), "{exited:#?}");
}
