//! HTTP/1.1 as the sidecar speaks it (by hand, `src/wire.rs`), against the
//! real binary: pipelining, HTTP/1.0, requests with bodies, heads that are
//! not HTTP, and a held read whose client hangs up.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use crate::support::{parse_response, wait_for, Response, Running, Sidecar, DEMO};

const PATIENCE: Duration = Duration::from_secs(10);

/// Everything the server sends until it closes the connection.
fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return raw,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "connection not closed within {PATIENCE:?} ({e}); read {:?}",
                String::from_utf8_lossy(&raw)
            ),
        }
    }
}

/// The responses in `raw`, one after the other (each with a `Content-Length`,
/// or none for a `304`); those whose index is in `to_head` answer `HEAD`.
fn split_head_responses(raw: &[u8], to_head: &[usize]) -> Vec<Response> {
    let mut text = String::from_utf8_lossy(raw).into_owned();
    let mut out = Vec::new();
    while let Some(end) = text.find("\r\n\r\n") {
        let head = &text[..end];
        let length: usize = if to_head.contains(&out.len()) {
            0
        } else {
            head.lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .map_or(0, |v| v.parse().expect("a length"))
        };
        let whole = end + 4 + length;
        out.push(parse_response(&text.as_bytes()[..whole]));
        text.drain(..whole);
    }
    assert!(text.is_empty(), "a partial response is left: {text:?}");
    out
}

fn split_responses(raw: &[u8]) -> Vec<Response> {
    split_head_responses(raw, &[])
}

fn waiting(sidecar: &Running) -> Option<usize> {
    let metrics = sidecar.get("/metrics").body;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("config_server_connections_waiting "))
        .and_then(|n| n.parse().ok())
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let sidecar = Sidecar::new().start();
    let mut stream = sidecar.connect();
    // All three in one write: the server must keep what follows each head.
    stream
        .write_all(
            b"GET /config/Scope HTTP/1.1\r\nHost: localhost\r\n\r\n\
              HEAD /config HTTP/1.1\r\nHost: localhost\r\n\r\n\
              GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .expect("write");
    let responses = split_head_responses(&until_closed(&mut stream), &[1]);
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200], "{responses:#?}");
    responses[0].assert_json(200, r#""some-service.admin""#);
    // HEAD: the GET's length, and no body (the next response follows at once).
    assert_eq!(
        responses[1].header("content-length"),
        Some(DEMO.len().to_string().as_str())
    );
    assert_eq!(responses[1].body, "");
    assert!(responses[2].body.contains("\"status\""), "{responses:#?}");
    assert_eq!(responses[2].header("connection"), Some("close"));
    assert!(responses.iter().all(|r| r.header("date").is_some()));
}

#[test]
fn a_request_pipelined_behind_a_held_read_is_answered_after_it() {
    let sidecar = Sidecar::new().start();
    let tag = sidecar.etag("/config");
    let mut stream = sidecar.connect();
    write!(
        stream,
        "GET /config?wait=1s HTTP/1.1\r\nHost: localhost\r\nIf-None-Match: {tag}\r\n\r\n\
         GET /config/Scope HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let responses = split_responses(&until_closed(&mut stream));
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [304, 200], "{responses:#?}");
    responses[1].assert_json(200, r#""some-service.admin""#);
}

#[test]
fn http_1_0_closes_unless_it_asks_to_keep_the_connection() {
    let sidecar = Sidecar::new().start();
    let mut stream = sidecar.connect();
    stream
        .write_all(b"GET /config/Scope HTTP/1.0\r\n\r\n")
        .expect("write");
    let responses = split_responses(&until_closed(&mut stream));
    assert_eq!(responses.len(), 1, "{responses:#?}");
    responses[0].assert_json(200, r#""some-service.admin""#);

    let mut kept = sidecar.connect();
    kept.write_all(
        b"GET /config/Scope HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
          GET /health HTTP/1.0\r\n\r\n",
    )
    .expect("write");
    let responses = split_responses(&until_closed(&mut kept));
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200], "{responses:#?}");
    assert_eq!(responses[0].header("connection"), Some("keep-alive"));
}

#[test]
fn a_request_with_a_body_is_answered_then_the_connection_closes() {
    let sidecar = Sidecar::new().start();
    for (framing, body) in [
        ("Content-Length: 11\r\n", "hello=world"),
        ("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
    ] {
        let mut stream = sidecar.connect();
        write!(
            stream,
            "POST /config HTTP/1.1\r\nHost: localhost\r\n{framing}\r\n{body}\
             GET /config HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        .expect("write");
        // The body is never taken for a request, nor what follows it.
        let responses = split_responses(&until_closed(&mut stream));
        assert_eq!(responses.len(), 1, "{framing}: {responses:#?}");
        responses[0].assert_json(405, r#"{"error":"method not allowed"}"#);
        assert_eq!(responses[0].header("connection"), Some("close"));
    }
    sidecar.get("/config").assert_json(200, DEMO);
}

#[test]
fn heads_that_are_not_http_or_smuggle_a_length_get_400_and_are_closed() {
    let sidecar = Sidecar::new().start();
    let cases: [&[u8]; 5] = [
        // A TLS client hello, as a client that took http:// for https:// sends it.
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET /config HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET /config HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        b"GET /config HTTP/1.1\r\nHost: localhost\r\nX: a\r\n folded\r\n\r\n",
    ];
    for case in cases {
        let mut stream = sidecar.connect();
        stream.write_all(case).expect("write");
        let responses = split_responses(&until_closed(&mut stream));
        assert_eq!(responses.len(), 1, "{case:?}: {responses:#?}");
        responses[0].assert_json(400, r#"{"error":"bad request"}"#);
    }
    sidecar.get("/config").assert_json(200, DEMO);
    // Not requests the app made: neither logged nor counted.
    assert!(!sidecar.stdout().contains(" 400 "), "{}", sidecar.stdout());
}

#[test]
fn a_held_read_whose_client_hangs_up_is_let_go() {
    let sidecar = Sidecar::new().env("CONFIG_SERVER_MAX_WAITING", "1").start();
    let tag = sidecar.etag("/config");
    let mut stream = sidecar.connect();
    write!(
        stream,
        "GET /config?wait=60s HTTP/1.1\r\nHost: localhost\r\nIf-None-Match: {tag}\r\n\r\n"
    )
    .expect("write");
    assert_eq!(
        wait_for(PATIENCE, || (waiting(&sidecar) == Some(1)).then_some(())),
        Some(())
    );
    stream.shutdown(Shutdown::Both).expect("hang up");
    drop(stream);
    // Its place among the waiting is free again, long before its 60 s.
    assert_eq!(
        wait_for(PATIENCE, || (waiting(&sidecar) == Some(0)).then_some(())),
        Some(()),
        "the read of a client that hung up is still held"
    );
    let mut next = sidecar.connect();
    write!(
        next,
        "GET /config?wait=1ms HTTP/1.1\r\nHost: localhost\r\nIf-None-Match: {tag}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let responses = split_responses(&until_closed(&mut next));
    assert_eq!(responses.len(), 1, "{responses:#?}");
    assert_eq!(responses[0].status, 304, "{responses:#?}");
}
