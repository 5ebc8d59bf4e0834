//! SIGTERM and SIGINT: exit 0 within a second, in-flight requests answered.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{read_response, Running, Sidecar, DEMO};

const LIMIT: Duration = Duration::from_secs(1);

/// A keep-alive connection that has already served a request.
fn idle_connection(sidecar: &Running) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", sidecar.port)).expect("connect");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("write");
    assert_eq!(read_response(&mut stream).status, 200);
    stream
}

fn assert_closed(mut stream: TcpStream) {
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut buf = [0; 16];
    assert_eq!(stream.read(&mut buf).ok(), Some(0), "connection still open");
}

fn assert_stopped_quickly(signal: &str) {
    let sidecar = Sidecar::new().start();
    let stream = idle_connection(&sidecar);
    let (exited, took) = sidecar.stop(signal);
    assert_eq!(exited.code, Some(0), "{exited:#?}");
    assert!(took < LIMIT, "{signal} took {took:?}");
    assert_eq!(
        exited.stdout.lines().last(),
        Some(format!("{signal}: stopped after closing 1 open connection(s)").as_str()),
        "{exited:#?}"
    );
    assert_closed(stream);
}

#[test]
fn sigterm_exits_0_with_an_open_keep_alive_connection() {
    assert_stopped_quickly("SIGTERM");
}

#[test]
fn sigint_exits_0_with_an_open_keep_alive_connection() {
    assert_stopped_quickly("SIGINT");
}

#[test]
fn request_in_flight_at_sigterm_is_answered() {
    let sidecar = Sidecar::new().start();
    let mut stream = TcpStream::connect(("127.0.0.1", sidecar.port)).expect("connect");
    // Half a request: the server has started reading it when the signal comes.
    stream
        .write_all(b"GET /config/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .expect("write");
    thread::sleep(Duration::from_millis(100));
    let sent = Instant::now();
    sidecar.signal("SIGTERM");
    thread::sleep(Duration::from_millis(100));
    stream.write_all(b"\r\n").expect("finish request");
    let response = read_response(&mut stream);
    response.assert_json(200, DEMO);
    assert_eq!(response.header("connection"), Some("close"));
    let exited = sidecar.wait();
    assert_eq!(exited.code, Some(0), "{exited:#?}");
    assert!(sent.elapsed() < LIMIT, "took {:?}", sent.elapsed());
    assert!(exited.stdout.contains("GET /config/ 200 "), "{exited:#?}");
}

#[test]
fn silent_connection_is_closed_at_once() {
    let sidecar = Sidecar::new().start();
    // Connected, never sends a byte: nothing in flight, closed right away.
    let stream = TcpStream::connect(("127.0.0.1", sidecar.port)).expect("connect");
    thread::sleep(Duration::from_millis(50));
    let (exited, took) = sidecar.stop("SIGTERM");
    assert_eq!(exited.code, Some(0), "{exited:#?}");
    assert!(took < LIMIT, "took {took:?}");
    assert_eq!(
        exited.stdout.lines().last(),
        Some("SIGTERM: stopped after closing 1 open connection(s)"),
        "{exited:#?}"
    );
    assert_closed(stream);
}

#[test]
fn stalled_request_is_cut_off_after_500ms() {
    let sidecar = Sidecar::new().start();
    let mut stream = TcpStream::connect(("127.0.0.1", sidecar.port)).expect("connect");
    // Half a request that never completes.
    stream
        .write_all(b"GET /config/ HTTP/1.1\r\n")
        .expect("write");
    thread::sleep(Duration::from_millis(50));
    let (exited, took) = sidecar.stop("SIGTERM");
    assert_eq!(exited.code, Some(0), "{exited:#?}");
    assert!(
        took >= Duration::from_millis(500) && took < LIMIT,
        "took {took:?}"
    );
    assert_eq!(
        exited.stdout.lines().last(),
        Some("SIGTERM: stopped; of 1 open connection(s), some did not finish within 500ms"),
        "{exited:#?}"
    );
    assert_closed(stream);
}
