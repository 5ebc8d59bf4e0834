//! Hostile or broken clients, against the real binary on loopback: half-sent
//! and trickled requests, idle and unread connections, too many connections,
//! oversized heads, running out of file descriptors. Timeouts are set small
//! through the knobs; every loop is bounded, and nothing asserts a speed: a
//! check waits (up to `PATIENCE`) for what must happen, with every other
//! timeout far longer, so only the mechanism under test can make it happen.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use crate::support::{
    lowest_free_fd, open_fds, parse_response, read_response, request, set_open_files, wait_for,
    Sidecar, DEMO,
};

const PATIENCE: Duration = Duration::from_secs(10);
const LONG: &str = "600000";

/// Reads until the server closes the connection; panics if it stays open
/// for `PATIENCE`. Returns what was read.
fn assert_closed_by_server(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("connection still open after {PATIENCE:?} ({e})"),
        }
    }
}

fn keep_alive_request(stream: &mut TcpStream, path: &str) -> u16 {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("write");
    read_response(stream).status
}

#[test]
fn half_sent_request_is_closed_after_the_header_timeout() {
    let sidecar = Sidecar::new()
        .env("CONFIG_SERVER_HEADER_TIMEOUT_MS", "200")
        .env("CONFIG_SERVER_IDLE_TIMEOUT_MS", LONG)
        .start();
    let mut stream = sidecar.connect();
    stream
        .write_all(b"GET /config/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .expect("write");
    assert_closed_by_server(&mut stream);
    // The same head after a served request on a keep-alive connection.
    let mut stream = sidecar.connect();
    assert_eq!(keep_alive_request(&mut stream, "/health"), 200);
    stream.write_all(b"GET /con").expect("write");
    assert_closed_by_server(&mut stream);
    assert_eq!(sidecar.get("/health").status, 200);
}

#[test]
fn trickled_request_head_is_cut_off() {
    let sidecar = Sidecar::new()
        .env("CONFIG_SERVER_HEADER_TIMEOUT_MS", "300")
        .env("CONFIG_SERVER_IDLE_TIMEOUT_MS", LONG)
        .start();
    let mut stream = sidecar.connect();
    stream
        .write_all(b"GET /config/ HTTP/1.1\r\n")
        .expect("write");
    // A header byte every 20 ms never completes the head; the server must stop it.
    stream.set_nonblocking(true).expect("nonblocking");
    let mut cut = false;
    for _ in 0..500 {
        if stream.write_all(b"X").is_err() {
            cut = true;
            break;
        }
        thread::sleep(Duration::from_millis(20));
        let mut probe = [0; 64];
        match stream.read(&mut probe) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            _ => {
                cut = true;
                break;
            }
        }
    }
    assert!(cut, "a trickled head held the connection for 10 s");
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let sidecar = Sidecar::new()
        .env("CONFIG_SERVER_IDLE_TIMEOUT_MS", "300")
        .env("CONFIG_SERVER_HEADER_TIMEOUT_MS", LONG)
        .start();
    // Kept alive after a request.
    let mut used = sidecar.connect();
    assert_eq!(keep_alive_request(&mut used, "/config/"), 200);
    // Connected, never a byte.
    let mut silent = sidecar.connect();
    assert_closed_by_server(&mut used);
    assert_closed_by_server(&mut silent);
    // A connection in use is not idle: requests within the timeout keep it open.
    let mut busy = sidecar.connect();
    for _ in 0..5 {
        assert_eq!(keep_alive_request(&mut busy, "/health"), 200);
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_partial_head_pipelined_behind_a_request_is_cut_off_after_the_header_timeout() {
    let sidecar = Sidecar::new()
        .env("CONFIG_SERVER_HEADER_TIMEOUT_MS", "200")
        .env("CONFIG_SERVER_IDLE_TIMEOUT_MS", LONG)
        .start();
    let mut stream = sidecar.connect();
    // In one write: the start of the second head is read with the first, and
    // the connection never goes idle between them.
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /con")
        .expect("write");
    assert_eq!(read_response(&mut stream).status, 200);
    assert_closed_by_server(&mut stream);
}

#[test]
fn a_held_read_outlasts_the_idle_and_header_timeouts() {
    let sidecar = Sidecar::new()
        .env("CONFIG_SERVER_IDLE_TIMEOUT_MS", "100")
        .env("CONFIG_SERVER_HEADER_TIMEOUT_MS", "100")
        .start();
    let tag = sidecar.etag("/config");
    let mut stream = sidecar.connect();
    write!(
        stream,
        "GET /config?wait=1s HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: {tag}\r\n\r\n"
    )
    .expect("write");
    // Ten times either timeout: a read cut by one would end with no answer.
    let response = read_response(&mut stream);
    assert_eq!(response.status, 304, "{response:#?}");
    assert_eq!(response.header("etag"), Some(tag.as_str()));
    // Answered, the connection is idle, and the idle timeout applies again.
    assert_closed_by_server(&mut stream);
}

#[test]
fn client_that_never_reads_its_responses_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.json");
    // About 1 MB of configuration: a few responses fill the socket buffers.
    let value = "v".repeat(1000);
    let entries: Vec<String> = (0..1000).map(|i| format!("\"k{i}\":\"{value}\"")).collect();
    fs::write(&path, format!("{{{}}}", entries.join(","))).expect("write");
    let sidecar = Sidecar::new()
        .env("CONFIG_SERVER_FILE", &path)
        .env("CONFIG_SERVER_IDLE_TIMEOUT_MS", "300")
        .env("CONFIG_SERVER_HEADER_TIMEOUT_MS", LONG)
        .start();
    let mut stream = sidecar.connect();
    let requests = "GET /config/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(60);
    stream.write_all(requests.as_bytes()).expect("write");
    // Never read while the server writes 60 MB; then see how much arrived.
    thread::sleep(Duration::from_millis(1500));
    let got = assert_closed_by_server(&mut stream);
    let answered = got.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count();
    assert!(
        answered < 60,
        "all 60 responses arrived: the connection was not cut"
    );
    assert_eq!(sidecar.get("/health").status, 200);
}

#[test]
fn at_the_connection_limit_the_longest_idle_connection_makes_room() {
    let sidecar = Sidecar::new()
        .env("CONFIG_SERVER_MAX_CONNECTIONS", "3")
        .env("CONFIG_SERVER_IDLE_TIMEOUT_MS", LONG)
        .start();
    let mut conns: Vec<TcpStream> = (0..3).map(|_| sidecar.connect()).collect();
    for c in &mut conns {
        assert_eq!(keep_alive_request(c, "/health"), 200);
        thread::sleep(Duration::from_millis(20));
    }
    // Used last, so idle the shortest: stays.
    assert_eq!(keep_alive_request(&mut conns[0], "/health"), 200);
    // A fourth client is served, and the connection idle the longest (the second) goes.
    sidecar.get("/config/").assert_json(200, DEMO);
    assert_closed_by_server(&mut conns[1]);
    assert_eq!(keep_alive_request(&mut conns[0], "/health"), 200);
}

#[test]
fn at_the_connection_limit_with_no_idle_connection_new_ones_get_503() {
    let sidecar = Sidecar::new()
        .env("CONFIG_SERVER_MAX_CONNECTIONS", "3")
        .env("CONFIG_SERVER_HEADER_TIMEOUT_MS", LONG)
        .start();
    // Three half-sent requests hold every slot.
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut c = sidecar.connect();
            c.write_all(b"GET /config/ HTTP/1.1\r\n").expect("write");
            c
        })
        .collect();
    thread::sleep(Duration::from_millis(100));
    for _ in 0..20 {
        let response = request(sidecar.port, "GET", "/health").expect("an answer, not a reset");
        response.assert_json(503, r#"{"error":"too many connections, try again"}"#);
        assert_eq!(response.header("retry-after"), Some("1"));
    }
    let warnings = sidecar.wait_stderr("connections are open");
    let lines: Vec<&str> = warnings
        .lines()
        .filter(|l| l.contains("connections are open"))
        .collect();
    assert_eq!(
        lines,
        ["warning: 3 connections are open (CONFIG_SERVER_MAX_CONNECTIONS) and none is idle: new \
          connections get 503 [repeats at most every 10s]"],
        "one warning for 20 refusals"
    );
    // Finishing one request frees its slot for the next client.
    held[0]
        .write_all(b"Host: 127.0.0.1\r\n\r\n")
        .expect("write");
    assert_eq!(read_response(&mut held[0]).status, 200);
    sidecar.get("/config/").assert_json(200, DEMO);
}

#[test]
fn oversized_head_gets_431_and_long_paths_are_cut_in_the_log() {
    let sidecar = Sidecar::new().start();
    let huge = format!("/config/{}", "p".repeat(60 * 1024));
    let response = request(sidecar.port, "GET", &huge).expect("an answer");
    assert_eq!(response.status, 431, "{response:#?}");
    let long = format!("/config/{}", "q".repeat(10 * 1024));
    assert_eq!(sidecar.get(&long).status, 404);
    let stdout = sidecar.wait_stdout("GET /config/qqq");
    let line = stdout
        .lines()
        .find(|l| l.contains("/config/qqq"))
        .unwrap_or_default();
    assert!(
        line.starts_with(&format!(
            "GET /config/{}…(+9992 bytes) 404 ",
            "q".repeat(248)
        )),
        "{line}"
    );
    assert!(!stdout.contains("ppppp"), "the 431 request was logged");
    assert_eq!(sidecar.get("/health").status, 200);
}

/// `GET /config/` with a padding header, `size` bytes in all.
fn head_of(size: usize) -> String {
    let start = "GET /config/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Pad: ";
    format!("{start}{}\r\n\r\n", "p".repeat(size - start.len() - 4))
}

#[test]
fn a_head_over_16_kib_gets_431_though_it_arrives_whole() {
    let sidecar = Sidecar::new().start();
    let many: String = (0..90)
        .map(|i| format!("X-{i}: {}\r\n", "v".repeat(200)))
        .collect();
    for (what, head, status) in [
        ("exactly 16 KiB", head_of(16 * 1024), 200),
        ("a byte more", head_of(16 * 1024 + 1), 431),
        ("20 KiB", head_of(20 * 1024), 431),
        (
            "90 headers, 18 KiB",
            format!("GET /config/ HTTP/1.1\r\nHost: 127.0.0.1\r\n{many}Connection: close\r\n\r\n"),
            431,
        ),
    ] {
        // One write: the bytes past the cap are there to read at once.
        let mut stream = sidecar.connect();
        stream.write_all(head.as_bytes()).expect("write");
        let got = assert_closed_by_server(&mut stream);
        let response = parse_response(&got);
        assert_eq!(response.status, status, "{what}: {response:#?}");
    }
    assert_eq!(sidecar.get("/health").status, 200);
}

#[test]
fn running_out_of_file_descriptors_backs_off_and_warns_once() {
    let sidecar = Sidecar::new()
        .env("CONFIG_SERVER_HEADER_TIMEOUT_MS", LONG)
        .start();
    let pid = sidecar.pid();
    // Busy connections (half-sent heads) cannot be closed to make room; they must
    // have been read before the file descriptors run out, or they would count as idle.
    let base = open_fds(pid);
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut c = sidecar.connect();
            c.write_all(b"GET /health HTTP/1.1\r\n").expect("write");
            c
        })
        .collect();
    wait_for(PATIENCE, || (open_fds(pid) == base + 3).then_some(())).expect("3 accepted");
    thread::sleep(Duration::from_millis(200));
    // No room left, lowered after startup so that the connection limit (sized at
    // startup) does not stop the clients first: these wait in the listen backlog,
    // their requests sent.
    set_open_files(pid, lowest_free_fd(pid));
    let mut waiting: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut c = sidecar.connect();
            c.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .expect("write");
            c
        })
        .collect();
    thread::sleep(Duration::from_millis(1500));
    let warned = |stderr: &str| {
        stderr
            .lines()
            .filter(|l| l.contains("cannot accept connections"))
            .count()
    };
    let stderr = sidecar.wait_stderr("cannot accept connections");
    assert_eq!(warned(&stderr), 1, "{stderr}");
    assert!(stderr.contains("Too many open files"), "{stderr}");
    // Make room again: the waiting clients are served, and the recovery says how many
    // attempts failed (a few with back-off, not one every few milliseconds).
    set_open_files(pid, 1024);
    for c in &mut held {
        c.write_all(b"Host: 127.0.0.1\r\n\r\n").expect("write");
        assert_eq!(read_response(c).status, 200);
    }
    for c in &mut waiting {
        assert_eq!(read_response(c).status, 200);
    }
    let stdout = sidecar.wait_stdout("accepting connections again, after ");
    let attempts: usize = stdout
        .split("accepting connections again, after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a count of failed attempts");
    assert!(
        (1..20).contains(&attempts),
        "{attempts} failed attempts in about 1.5 s"
    );
    assert_eq!(warned(&sidecar.stderr()), 1);
}

#[test]
fn connection_limit_is_lowered_to_fit_the_open_files_limit() {
    let sidecar = Sidecar::wrap_in_shell("ulimit -n 40;").start();
    assert_eq!(
        sidecar
            .wait_stderr("lowered")
            .lines()
            .find(|l| l.contains("lowered")),
        Some(
            "warning: CONFIG_SERVER_MAX_CONNECTIONS lowered from 128 to 8: the limit of open \
             files (ulimit -n) is 40"
        )
    );
    // Far more clients than fit: the sidecar keeps answering.
    let conns: Vec<TcpStream> = (0..30).map(|_| sidecar.connect()).collect();
    assert!(wait_for(PATIENCE, || (sidecar.get("/health").status == 200)
        .then_some(()))
    .is_some());
    drop(conns);
}

#[test]
fn out_of_file_descriptors_with_idle_clients_to_close_still_warns_once() {
    let sidecar = Sidecar::new()
        .env("CONFIG_SERVER_IDLE_TIMEOUT_MS", LONG)
        .start();
    let pid = sidecar.pid();
    set_open_files(pid, open_fds(pid) + 2);
    // Every new client finds no file descriptor, the sidecar closes an idle one
    // to make room, accepts, and runs out again: the condition comes and goes
    // dozens of times, and must still be logged once per interval.
    let mut conns: Vec<TcpStream> = (0..40).map(|_| sidecar.connect()).collect();
    let last = conns.last_mut().expect("40 connections");
    assert_eq!(keep_alive_request(last, "/health"), 200);
    let stderr = sidecar.wait_stderr("cannot accept connections");
    let warned = stderr
        .lines()
        .filter(|l| l.contains("cannot accept connections"))
        .count();
    assert_eq!(warned, 1, "{stderr}");
    let recovered = sidecar
        .stdout()
        .matches("accepting connections again")
        .count();
    assert!(recovered <= 1, "{}", sidecar.stdout());
}

#[test]
fn an_open_files_limit_too_low_to_run_is_an_error_not_a_crash() {
    // Below a dozen, tokio's signal setup used to panic (SIGABRT) or the listener
    // failed as if the port were the problem.
    for limit in [7, 9, 15] {
        Sidecar::wrap_in_shell(&format!("ulimit -n {limit};"))
            .run_to_exit()
            .assert_error(
                1,
                &format!(
                    "the limit of open files (ulimit -n) is {limit}: config-server needs at \
                     least 16 (its runtime, signals, the listener, a configuration file and a \
                     client); raise it"
                ),
            );
    }
}
