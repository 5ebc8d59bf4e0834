//! A scripted HTTP(S) server on loopback, for every network fault a download can meet.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What the test server does for one request.
#[derive(Clone)]
pub(crate) enum Reply {
    Body(Vec<u8>),
    Status(u16),
    /// Announces the full length, sends `n` bytes, closes.
    Truncated(Vec<u8>, usize),
    /// Announces the full length, sends `n` bytes, then resets the connection (RST).
    Reset(Vec<u8>, usize),
    /// Sends `n` bytes, then goes silent for the duration.
    Stall(Vec<u8>, usize, Duration),
    /// Sends a chunk every `interval`.
    Slow(Vec<u8>, usize, Duration),
    Redirect(String),
    /// An HTTP status with extra header lines (`Retry-After: 2`).
    StatusWith(u16, Vec<String>),
    /// 200 with no length, then bytes until the client hangs up.
    Endless,
    /// 200 with no length: the body, then the connection closes.
    Unsized(Vec<u8>),
    /// 200 announcing the given length, then nothing but the head.
    Announce(u64),
    /// A 200 whose head carries a header of this many bytes.
    HugeHead(usize),
    /// These bytes as soon as the connection is accepted, before any request is read,
    /// then a close: a server that speaks something else (plain HTTP to a TLS client,
    /// a TLS alert).
    Raw(Vec<u8>),
    /// Holds the body until this many requests have arrived (or 20 s pass): with
    /// `max_in_flight`, proof that the clients overlapped.
    Gate(usize, Vec<u8>),
}

/// A real HTTP/1.1 server on a loopback address that answers requests from a script;
/// the last reply repeats. Plain HTTP, or HTTPS with a certificate from [`TestCa`].
pub(crate) struct Server {
    pub addr: SocketAddr,
    scheme: &'static str,
    hits: Arc<AtomicUsize>,
    state: Arc<State>,
}

/// What the server saw: every request head, and how many were served at once.
#[derive(Default)]
struct State {
    requests: Mutex<Vec<String>>,
    arrived: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Server {
    #[must_use]
    pub(crate) fn start(replies: Vec<Reply>) -> Server {
        Server::start_on(Ipv4Addr::LOCALHOST, replies)
    }

    /// On another loopback address, such as 127.0.0.2: another host to redirect to.
    #[must_use]
    pub(crate) fn start_on(ip: Ipv4Addr, replies: Vec<Reply>) -> Server {
        Server::listen(ip, None, replies)
    }

    /// HTTPS on 127.0.0.1 with `tls` (see [`TestCa::server`]).
    #[must_use]
    pub(crate) fn start_tls(tls: Arc<rustls::ServerConfig>, replies: Vec<Reply>) -> Server {
        Server::listen(Ipv4Addr::LOCALHOST, Some(tls), replies)
    }

    fn listen(ip: Ipv4Addr, tls: Option<Arc<rustls::ServerConfig>>, replies: Vec<Reply>) -> Server {
        assert!(ip.is_loopback(), "test servers listen on loopback only");
        let listener = TcpListener::bind((ip, 0)).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(State::default());
        let (h, p) = (hits.clone(), state.clone());
        let scheme = if tls.is_some() { "https" } else { "http" };
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let n = h.fetch_add(1, Ordering::SeqCst);
                let reply = replies[n.min(replies.len() - 1)].clone();
                let p = p.clone();
                let tls = tls.clone();
                thread::spawn(move || {
                    if matches!(reply, Reply::Reset(..)) {
                        // Closing with a zero linger sends RST instead of FIN.
                        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                    }
                    match tls {
                        None => serve(stream, reply, &p),
                        Some(cfg) => {
                            let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                                return;
                            };
                            let mut tls = rustls::StreamOwned::new(conn, stream);
                            serve(&mut tls, reply, &p);
                            tls.conn.send_close_notify();
                            let _ = tls.flush();
                        }
                    }
                });
            }
        });
        Server {
            addr,
            scheme,
            hits,
            state,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    pub(crate) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Every request head received (request line and headers), in order.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.state.requests.lock().expect("lock").clone()
    }

    /// The most requests this server was answering at the same time.
    pub(crate) fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

fn serve(s: impl Read + Write, reply: Reply, state: &State) {
    state.arrived.fetch_add(1, Ordering::SeqCst);
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    respond(s, reply, state);
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
}

fn respond(mut s: impl Read + Write, reply: Reply, state: &State) {
    if let Reply::Raw(bytes) = &reply {
        let _ = s.write_all(bytes).and_then(|()| s.flush());
        // Let the bytes leave before the close.
        thread::sleep(Duration::from_millis(100));
        return;
    }
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&req);
    let head = head.split("\r\n\r\n").next().unwrap_or("").to_string();
    state.requests.lock().expect("lock").push(head);
    let head = |status: &str, len: usize, extra: &str| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n{extra}\r\n")
    };
    let _ = match reply {
        Reply::Body(b) => s
            .write_all(head("200 OK", b.len(), "").as_bytes())
            .and_then(|()| s.write_all(&b)),
        Reply::Status(code) => {
            let body = format!("<html><body>error {code}</body></html>");
            s.write_all(head(&format!("{code} X"), body.len(), "").as_bytes())
                .and_then(|()| s.write_all(body.as_bytes()))
        }
        Reply::Truncated(b, n) | Reply::Reset(b, n) => s
            .write_all(head("200 OK", b.len(), "").as_bytes())
            .and_then(|()| s.write_all(&b[..n]))
            .and_then(|()| s.flush())
            // Let the bytes leave before the close, so the client sees them first.
            .map(|()| thread::sleep(Duration::from_millis(100))),
        Reply::Stall(b, n, d) => {
            let r = s
                .write_all(head("200 OK", b.len(), "").as_bytes())
                .and_then(|()| s.write_all(&b[..n]))
                .and_then(|()| s.flush());
            thread::sleep(d);
            r
        }
        Reply::Slow(b, chunk, every) => {
            let mut r = s
                .write_all(head("200 OK", b.len(), "").as_bytes())
                .and_then(|()| s.flush());
            for c in b.chunks(chunk) {
                if r.is_err() {
                    break;
                }
                thread::sleep(every);
                r = s.write_all(c).and_then(|()| s.flush());
            }
            r
        }
        Reply::Redirect(to) => {
            s.write_all(head("302 Found", 0, &format!("Location: {to}\r\n")).as_bytes())
        }
        Reply::StatusWith(code, headers) => {
            let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
            s.write_all(head(&format!("{code} X"), 0, &extra).as_bytes())
        }
        Reply::Endless => {
            let mut r = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let chunk = vec![b'x'; 64 * 1024];
            while r.is_ok() {
                r = s.write_all(&chunk);
            }
            r
        }
        Reply::Unsized(b) => s
            .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            .and_then(|()| s.write_all(&b)),
        Reply::Announce(n) => s
            .write_all(
                format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .map(|()| thread::sleep(Duration::from_millis(500))),
        Reply::HugeHead(n) => {
            let big = format!("X-Padding: {}\r\n", "p".repeat(n));
            s.write_all(head("200 OK", 0, &big).as_bytes())
        }
        Reply::Raw(_) => Ok(()),
        Reply::Gate(n, b) => {
            let deadline = Instant::now() + Duration::from_secs(20);
            while state.arrived.load(Ordering::SeqCst) < n && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            s.write_all(head("200 OK", b.len(), "").as_bytes())
                .and_then(|()| s.write_all(&b))
        }
    };
    let _ = s.flush();
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub(crate) fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}
