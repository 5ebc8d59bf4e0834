//! A scripted HTTP(S) server on loopback, for every network fault a download can meet.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the test server does for one request.
#[derive(Clone)]
pub enum Reply {
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
}

/// A real HTTP/1.1 server on a loopback address that answers requests from a script;
/// the last reply repeats. Plain HTTP, or HTTPS with a certificate from [`TestCa`].
pub struct Server {
    pub addr: SocketAddr,
    scheme: &'static str,
    hits: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Server {
    #[must_use]
    pub fn start(replies: Vec<Reply>) -> Server {
        Server::start_on(Ipv4Addr::LOCALHOST, replies)
    }

    /// On another loopback address, such as 127.0.0.2: another host to redirect to.
    #[must_use]
    pub fn start_on(ip: Ipv4Addr, replies: Vec<Reply>) -> Server {
        Server::listen(ip, None, replies)
    }

    /// HTTPS on 127.0.0.1 with `tls` (see [`TestCa::server`]).
    #[must_use]
    pub fn start_tls(tls: Arc<rustls::ServerConfig>, replies: Vec<Reply>) -> Server {
        Server::listen(Ipv4Addr::LOCALHOST, Some(tls), replies)
    }

    fn listen(ip: Ipv4Addr, tls: Option<Arc<rustls::ServerConfig>>, replies: Vec<Reply>) -> Server {
        assert!(ip.is_loopback(), "test servers listen on loopback only");
        let listener = TcpListener::bind((ip, 0)).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (h, p) = (hits.clone(), paths.clone());
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
            paths,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().expect("lock").clone()
    }
}

fn serve(mut s: impl Read + Write, reply: Reply, paths: &Mutex<Vec<String>>) {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&req)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    paths
        .lock()
        .expect("lock")
        .push(line.split(' ').nth(1).unwrap_or("").to_string());
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
    };
    let _ = s.flush();
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}
