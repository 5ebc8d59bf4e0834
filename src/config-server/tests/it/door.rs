//! The guarded door: loopback `Host` names only, the optional bearer token,
//! and `/metrics`, which names no key and holds no value.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;

use crate::support::{
    assert_no_secret, parse_response, request_with, Response, Sidecar, DEMO, SECRET,
};

/// One request with exactly these header lines.
fn raw(port: u16, path: &str, headers: &str) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("read");
    parse_response(&bytes)
}

#[test]
fn only_loopback_host_names_are_answered_against_dns_rebinding() {
    let sidecar = Sidecar::new().start();
    let port = sidecar.port;
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        raw(port, "/config", &format!("Host: {host}\r\n")).assert_json(200, DEMO);
    }
    raw(port, "/config", "").assert_json(200, DEMO);
    for host in [
        format!("rebind.attacker.example:{port}"),
        "0.0.0.0".to_owned(),
        "127.0.0.1.nip.io".to_owned(),
    ] {
        let response = raw(port, "/config", &format!("Host: {host}\r\n"));
        assert_eq!(response.status, 403, "{host}: {response:#?}");
        assert!(!response.body.contains("admin"), "{response:#?}");
    }
}

#[test]
fn a_target_in_absolute_form_must_name_a_loopback_host_too() {
    let sidecar = Sidecar::new().start();
    let port = sidecar.port;
    let local = format!("Host: 127.0.0.1:{port}\r\n");
    raw(port, &format!("http://127.0.0.1:{port}/config"), &local).assert_json(200, DEMO);
    for target in [
        "http://rebind.attacker.example/config".to_owned(),
        // The host is rebind.attacker.example; `127.0.0.1:<port>` is userinfo.
        format!("http://127.0.0.1:{port}@rebind.attacker.example/config"),
    ] {
        for headers in [local.as_str(), ""] {
            let response = raw(port, &target, headers);
            assert_eq!(response.status, 403, "{target} {headers:?}: {response:#?}");
            assert!(!response.body.contains("admin"), "{response:#?}");
        }
    }
    let response = raw(
        port,
        "/config",
        &format!("Host: 127.0.0.1:{port}@rebind.attacker.example\r\n"),
    );
    assert_eq!(response.status, 403, "{response:#?}");
}

#[test]
fn with_a_token_every_read_but_health_needs_it() {
    let token = "tok-3f9a2c71e0";
    let sidecar = Sidecar::new().env("CONFIG_SERVER_TOKEN", token).start();
    for path in ["/config", "/config/Scope", "/metrics"] {
        let denied = sidecar.get(path);
        assert_eq!(denied.status, 401, "{path}");
        assert_eq!(
            denied.header("www-authenticate"),
            Some("Bearer realm=\"config-server\"")
        );
        let wrong = request_with(
            sidecar.port,
            "GET",
            path,
            &[("Authorization", "Bearer nope")],
        )
        .expect("request");
        assert_eq!(wrong.status, 401, "{path}");
    }
    let bearer = format!("Bearer {token}");
    request_with(
        sidecar.port,
        "GET",
        "/config",
        &[("Authorization", &bearer)],
    )
    .expect("request")
    .assert_json(200, DEMO);
    assert_eq!(sidecar.get("/health").status, 200);
    let (exited, _) = sidecar.stop("TERM");
    assert!(!exited.stdout.contains(token) && !exited.stderr.contains(token));
}

#[test]
fn a_token_file_must_exist_and_not_be_world_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("token");
    fs::write(&file, format!("{SECRET}\n")).expect("write");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).expect("chmod");
    let sidecar = Sidecar::new()
        .env("CONFIG_SERVER_TOKEN_FILE", &file)
        .start();
    let bearer = format!("Bearer {SECRET}");
    request_with(
        sidecar.port,
        "GET",
        "/config",
        &[("Authorization", &bearer)],
    )
    .expect("request")
    .assert_json(200, DEMO);
    assert_eq!(sidecar.get("/config").status, 401);
    drop(sidecar);

    let shown = file.display();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
    Sidecar::new()
        .env("CONFIG_SERVER_TOKEN_FILE", &file)
        .run_to_exit()
        .assert_error(
            2,
            &format!("CONFIG_SERVER_TOKEN_FILE={shown}: every user can read it (mode 0644); run `chmod o-r {shown}`"),
        );
    let missing = dir.path().join("nope");
    Sidecar::new()
        .env("CONFIG_SERVER_TOKEN_FILE", &missing)
        .run_to_exit()
        .assert_error(
            2,
            &format!(
                "CONFIG_SERVER_TOKEN_FILE={}: cannot read it: No such file or directory (os error 2)",
                missing.display()
            ),
        );
    Sidecar::new()
        .env("CONFIG_SERVER_TOKEN", "two words")
        .run_to_exit()
        .assert_error(
            2,
            "CONFIG_SERVER_TOKEN: the token must be visible ASCII characters without spaces (it \
             travels in an HTTP header)",
        );
    Sidecar::new()
        .env("CONFIG_SERVER_TOKEN", "x")
        .env("CONFIG_SERVER_TOKEN_FILE", &file)
        .run_to_exit()
        .assert_error(
            2,
            "CONFIG_SERVER_TOKEN and CONFIG_SERVER_TOKEN_FILE: both are set: set one",
        );
}

#[test]
fn metrics_count_requests_and_reloads_without_a_key_or_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.yml");
    fs::write(&path, format!("db_password: {SECRET}\n")).expect("write");
    let sidecar = Sidecar::new().env("CONFIG_SERVER_FILE", &path).start();
    sidecar.get("/config/db_password");
    sidecar.get("/config/missing_key_name");
    sidecar.signal("HUP");
    let reloaded = crate::support::wait_for(std::time::Duration::from_secs(10), || {
        let metrics = sidecar.get("/metrics");
        metrics
            .body
            .contains("config_server_reloads_total{outcome=\"unchanged\"} 1\n")
            .then_some(metrics)
    });
    let metrics = reloaded.expect("the SIGHUP reload is counted");
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let body = metrics.body;
    for line in [
        "config_server_requests_total{route=\"config\",status=\"200\"} 1\n",
        "config_server_requests_total{route=\"config\",status=\"404\"} 1\n",
        "config_server_reloads_total{outcome=\"unchanged\"} 1\n",
        "config_server_generation 1\n",
        "config_server_connections_waiting 0\n",
        "# TYPE config_server_last_load_timestamp_seconds gauge\n",
    ] {
        assert!(body.contains(line), "{line} missing from:\n{body}");
    }
    assert_no_secret(&body);
    assert!(!body.contains("db_password") && !body.contains("missing_key_name"));
}
