//! Request log: one stdout line per request, `METHOD PATH STATUS DURATIONms`,
//! written promptly, never with a query string or a configuration value.

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{assert_no_secret, read_response, Sidecar, SECRET};

/// `(method, path, status)` of each request line; asserts the duration format.
fn request_lines(stdout: &str) -> Vec<(String, String, String)> {
    stdout
        .lines()
        .filter(|line| !line.starts_with("listening ") && !line.starts_with("SIG"))
        .filter(|line| !line.starts_with("GET /health "))
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let [method, path, status, took] = fields[..] else {
                panic!("unexpected log line {line:?}");
            };
            let ms = took.strip_suffix("ms").and_then(|n| n.parse::<f64>().ok());
            assert!(ms.is_some_and(|ms| ms >= 0.0), "bad duration in {line:?}");
            (method.to_owned(), path.to_owned(), status.to_owned())
        })
        .collect()
}

#[test]
fn one_line_per_request_without_query_strings_or_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.yml");
    fs::write(&path, format!("token: {SECRET}\n")).expect("write");
    let sidecar = Sidecar::new().env("CONFIG_SERVER_FILE", &path).start();

    sidecar.get("/config/");
    sidecar.get(&format!("/config/token?auth={SECRET}"));
    sidecar.request("HEAD", "/health");
    sidecar.request("POST", "/config/");
    sidecar.get("/nope?x=1");
    let stdout = sidecar.wait_stdout("GET /nope 404 ");

    let expected: Vec<(String, String, String)> = [
        ("GET", "/config/", "200"),
        ("GET", "/config/token", "200"),
        ("HEAD", "/health", "200"),
        ("POST", "/config/", "405"),
        ("GET", "/nope", "404"),
    ]
    .iter()
    .map(|(m, p, s)| ((*m).to_owned(), (*p).to_owned(), (*s).to_owned()))
    .collect();
    assert_eq!(request_lines(&stdout), expected, "{stdout}");
    let (exited, _) = sidecar.stop("SIGTERM");
    assert_no_secret(&exited.stdout);
    assert_no_secret(&exited.stderr);
}

#[test]
fn lines_are_written_within_a_fraction_of_a_second() {
    let sidecar = Sidecar::new().start();
    let mut stream = TcpStream::connect(("127.0.0.1", sidecar.port)).expect("connect");
    stream
        .write_all(b"GET /config/Scope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("write");
    read_response(&mut stream);
    let answered = Instant::now();
    sidecar.wait_stdout("GET /config/Scope 200 ");
    let took = answered.elapsed();
    assert!(took < Duration::from_millis(500), "log line took {took:?}");
}

#[test]
fn every_line_is_written_by_shutdown() {
    let sidecar = Sidecar::new().start();
    let mut stream = TcpStream::connect(("127.0.0.1", sidecar.port)).expect("connect");
    for _ in 0..500 {
        stream
            .write_all(b"GET /config/Password HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .expect("write");
        read_response(&mut stream);
    }
    let (exited, _) = sidecar.stop("SIGTERM");
    assert_eq!(exited.code, Some(0));
    let lines = request_lines(&exited.stdout);
    assert_eq!(lines.len(), 500);
    assert!(lines.iter().all(
        |(m, p, s)| (m.as_str(), p.as_str(), s.as_str()) == ("GET", "/config/Password", "200")
    ));
    assert!(!exited.stdout.contains("not-a-real-p4$$w0rd"));
}
