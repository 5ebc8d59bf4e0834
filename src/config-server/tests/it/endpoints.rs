//! Every endpoint, its status, content type and whole body.

use std::io::Write;
use std::net::TcpStream;

use crate::support::{read_response, Sidecar, DEMO};

#[test]
fn config_with_and_without_trailing_slash() {
    let sidecar = Sidecar::new().start();
    sidecar.get("/config/").assert_json(200, DEMO);
    sidecar.get("/config").assert_json(200, DEMO);
    let response = sidecar.get("/config/");
    assert_eq!(response.header("content-length"), Some("63"));
    assert_eq!(response.header("cache-control"), Some("no-store"));
}

#[test]
fn config_key() {
    let sidecar = Sidecar::new().start();
    sidecar
        .get("/config/Scope")
        .assert_json(200, r#""some-service.admin""#);
    sidecar
        .get("/config/Password")
        .assert_json(200, r#""not-a-real-p4$$w0rd""#);
    // A query string does not change what is served.
    sidecar
        .get("/config/Scope?verbose=1")
        .assert_json(200, r#""some-service.admin""#);
}

#[test]
fn missing_key_is_a_json_404_without_values() {
    let sidecar = Sidecar::new().start();
    sidecar
        .get("/config/password")
        .assert_json(404, r#"{"error":"no key \"password\" in config"}"#);
    sidecar
        .get("/config/Scope/x")
        .assert_json(404, r#"{"error":"no key \"Scope/x\" in config"}"#);
}

#[test]
fn health_reports_the_generation_and_no_value() {
    let sidecar = Sidecar::new().start();
    let response = sidecar.get("/health");
    let health = response.json();
    assert_eq!(
        (
            response.status,
            health["status"].as_str(),
            health["generation"].as_u64()
        ),
        (200, Some("ok"), Some(1)),
        "{response:#?}"
    );
    assert_eq!(health["last_attempt_failed"], false);
    assert!(health.get("last_error").is_none());
    let stamp = health["loaded_at"].as_str().unwrap_or_default();
    assert!(stamp.len() == 24 && stamp.ends_with('Z'), "{stamp}");
    assert_eq!(health["last_attempt_at"], health["loaded_at"]);
    assert!(
        !response.body.contains("not-a-real-p4"),
        "{}",
        response.body
    );
}

#[test]
fn head_is_allowed_and_has_no_body() {
    let sidecar = Sidecar::new().start();
    let health_length = sidecar.get("/health").body.len().to_string();
    for (path, length) in [
        ("/config/", "63"),
        ("/health", health_length.as_str()),
        ("/config/Scope", "20"),
    ] {
        let response = sidecar.request("HEAD", path);
        response.assert_json(200, "");
        assert_eq!(
            response.header("content-length"),
            Some(length),
            "HEAD {path}"
        );
    }
}

#[test]
fn unknown_paths_are_json_404() {
    let sidecar = Sidecar::new().start();
    for path in ["/", "/health/", "/configs", "/config.json", "/metrics/"] {
        sidecar
            .get(path)
            .assert_json(404, r#"{"error":"not found"}"#);
    }
    sidecar
        .request("DELETE", "/nowhere")
        .assert_json(404, r#"{"error":"not found"}"#);
}

#[test]
fn other_methods_are_405_with_allow() {
    let sidecar = Sidecar::new().start();
    for (method, path) in [
        ("POST", "/config/"),
        ("PUT", "/config"),
        ("DELETE", "/config/Scope"),
        ("PATCH", "/health"),
        ("OPTIONS", "/config/"),
    ] {
        let response = sidecar.request(method, path);
        response.assert_json(405, r#"{"error":"method not allowed"}"#);
        assert_eq!(
            response.header("allow"),
            Some("GET, HEAD"),
            "{method} {path}"
        );
    }
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let sidecar = Sidecar::new().start();
    let mut stream = TcpStream::connect(("127.0.0.1", sidecar.port)).expect("connect");
    for _ in 0..3 {
        stream
            .write_all(b"GET /config/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .expect("write");
        read_response(&mut stream).assert_json(200, DEMO);
    }
}
