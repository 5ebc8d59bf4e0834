//! Just enough HTTP/1.1 to ask the app something on loopback: one GET per connection,
//! bounded by a timeout, answers read by Content-Length, chunks, or to the end.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Answers bigger than this are cut: they are for reading on a terminal.
const MAX_ANSWER: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub status: u16,
    pub reason: String,
    pub body: Vec<u8>,
}

/// `GET path` from 127.0.0.1:`port`.
pub(crate) fn get(port: u16, path: &str, timeout: Duration) -> io::Result<Answer> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    // One write: `write!` on a socket sends each formatted piece on its own.
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: stage-local\r\n\
             Accept: */*\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk)?;
        if n > 0 {
            buf.extend_from_slice(&chunk[..n]);
        }
        if let Some(answer) = parse(&buf, n == 0 || buf.len() >= MAX_ANSWER) {
            return Ok(answer);
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed before a whole HTTP answer",
            ));
        }
    }
}

/// The answer in `buf` if it is complete (or `eof`: whatever arrived).
fn parse(buf: &[u8], eof: bool) -> Option<Answer> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next()?;
    let status = parts.next()?.parse().ok()?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "content-length" {
            length = value.parse::<usize>().ok();
        } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let rest = &buf[end + 4..];
    let body = if chunked {
        dechunk(rest).or_else(|| eof.then(|| rest.to_vec()))?
    } else if let Some(len) = length {
        if rest.len() < len && !eof {
            return None;
        }
        rest[..len.min(rest.len())].to_vec()
    } else if eof {
        rest.to_vec()
    } else {
        return None;
    };
    Some(Answer {
        status,
        reason,
        body,
    })
}

/// The body of a complete chunked transfer, or `None` if more is to come.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(body);
        }
        // A huge declared size must not overflow: it just means "more is to come".
        if rest.len() < size.checked_add(2)? {
            return None;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_by_length_chunks_or_eof() {
        let fixed = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(
            parse(fixed, false),
            Some(Answer {
                status: 200,
                reason: "OK".into(),
                body: b"hello".to_vec()
            })
        );
        assert_eq!(parse(&fixed[..fixed.len() - 1], false), None);
        let chunked = b"HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let a = parse(chunked, false).expect("complete");
        assert_eq!(
            (a.status, a.reason.as_str(), a.body.as_slice()),
            (502, "Bad Gateway", &b"abcde"[..])
        );
        assert_eq!(parse(b"HTTP/1.0 404 Not Found\r\n\r\nnope", false), None);
        assert_eq!(
            parse(b"HTTP/1.0 404 Not Found\r\n\r\nnope", true).map(|a| a.body),
            Some(b"nope".to_vec())
        );
    }

    #[test]
    fn gets_from_a_real_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            // The whole request before the answer: answering and closing early would
            // reset the client's write (a broken pipe, seen under load).
            let mut req = Vec::new();
            let mut chunk = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => req.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
        });
        let a = get(port, "/", Duration::from_secs(5)).expect("answer");
        assert_eq!(a.body, b"hi");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        assert!(get(port, "/", Duration::from_secs(1)).is_err());
    }
}
