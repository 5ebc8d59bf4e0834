//! HTTP/1.1 as bytes: a request head in, a response head out. No I/O here;
//! [`crate::conn`] reads and writes, and keeps the time.
//!
//! Why by hand and not hyper: a held `?wait=` read must cost little. hyper
//! keeps an 8 KiB read buffer and its own dispatcher for every open
//! connection, about 14 KiB each; the server here keeps no buffer while a read
//! waits (see `docs/performance.md`). What it accepts is deliberately narrow,
//! since the only clients are the app and probes on the same machine:
//!
//! - `GET`-style requests: a request with a body (`Content-Length` above 0, or
//!   any `Transfer-Encoding`) is answered, then the connection is closed
//!   instead of reading the body.
//! - At most [`MAX_HEADERS`] headers in at most [`MAX_HEAD_BYTES`]; more is
//!   `431`, however the bytes arrive. A head that is not HTTP/1.x (a TLS hello, HTTP/2's preface, a
//!   bare line feed in the wrong place), or has conflicting lengths, is `400`,
//!   and the connection is closed after either.
//! - Keep-alive is HTTP/1.1's default, and HTTP/1.0's with
//!   `Connection: keep-alive`.

use std::fmt::Write as _;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Response, StatusCode, Uri};

/// The most headers a request may have (hyper's default, too).
pub(crate) const MAX_HEADERS: usize = 100;

/// The largest request head (request line and headers) accepted; a larger one
/// gets `431`.
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A request head, parsed.
pub(crate) struct Head {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    /// The client keeps the connection open after the answer.
    pub keep_alive: bool,
    /// HTTP/1.0 (its keep-alive must be said in the answer).
    pub http10: bool,
    /// The request has a body, which is not read: the connection closes after the answer.
    pub has_body: bool,
}

/// What the bytes read so far hold.
pub(crate) enum Parsed {
    /// A whole head of this many bytes.
    Head(Box<Head>, usize),
    /// Not yet a whole head.
    Partial,
    /// Not a request this server answers: the status to answer with, then close.
    Refused(StatusCode),
}

/// Parses the request head at the start of `buf`. Only its first
/// [`MAX_HEAD_BYTES`] are looked at: a head that does not end within them is
/// too large (`431`), whatever follows.
pub(crate) fn parse(buf: &[u8]) -> Parsed {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut slots);
    let len = match request.parse(&buf[..buf.len().min(MAX_HEAD_BYTES)]) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Parsed::Refused(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refused(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        }
        Err(_) => return Parsed::Refused(StatusCode::BAD_REQUEST),
    };
    match head(&request) {
        Some(head) => Parsed::Head(Box::new(head), len),
        None => Parsed::Refused(StatusCode::BAD_REQUEST),
    }
}

/// The typed head of a request httparse took apart; `None` if a part is
/// not valid HTTP (a method or target the `http` types refuse, lengths that
/// disagree).
fn head(request: &httparse::Request<'_, '_>) -> Option<Head> {
    let method = Method::from_bytes(request.method?.as_bytes()).ok()?;
    let uri = Uri::try_from(request.path?).ok()?;
    let http10 = request.version? == 0;
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    for header in request.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(header.value).ok()?;
        headers.append(name, value);
    }
    let has_body = body_follows(&headers, http10)?;
    let keep_alive = match connection_says(&headers) {
        Some(keep) => keep,
        None => !http10,
    };
    Some(Head {
        method,
        uri,
        headers,
        keep_alive,
        http10,
        has_body,
    })
}

/// Whether a body follows the head: `None` when the head cannot be trusted
/// to say where it ends (RFC 9112 6.3: lengths that disagree, or both
/// `Transfer-Encoding` and `Content-Length`, are a smuggling attempt).
fn body_follows(headers: &HeaderMap, http10: bool) -> Option<bool> {
    let chunked = headers.contains_key(TRANSFER_ENCODING);
    let mut length: Option<u64> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.to_str().ok()?.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n: u64 = part.parse().ok()?;
            if length.is_some_and(|seen| seen != n) {
                return None;
            }
            length = Some(n);
        }
    }
    if chunked && (length.is_some() || http10) {
        return None;
    }
    Some(chunked || length.is_some_and(|n| n > 0))
}

/// What `Connection` asks for: `Some(false)` for `close`, `Some(true)` for
/// `keep-alive`, `None` for neither (the version's default).
fn connection_says(headers: &HeaderMap) -> Option<bool> {
    let mut said = None;
    for value in headers.get_all(CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim) {
            if token.eq_ignore_ascii_case("close") {
                return Some(false);
            }
            if token.eq_ignore_ascii_case("keep-alive") {
                said = Some(true);
            }
        }
    }
    said
}

/// How a response goes out.
#[derive(Clone, Copy)]
pub(crate) struct Framing {
    /// Answering `HEAD`: the headers of the `GET`, no body.
    pub head_only: bool,
    /// The connection closes after this response.
    pub close: bool,
    /// An HTTP/1.0 client asked to keep the connection: say it is kept.
    pub keep_alive_10: bool,
}

/// Whether the body of `response` is sent: not for `HEAD`, and never with
/// `204` or `304` (RFC 9110 6.4.1).
pub(crate) fn sends_body(status: StatusCode, framing: Framing) -> bool {
    !framing.head_only && has_body(status)
}

/// Whether a response with `status` has a body at all (and so a length).
fn has_body(status: StatusCode) -> bool {
    status != StatusCode::NO_CONTENT && status != StatusCode::NOT_MODIFIED
}

/// Writes the status line and headers of `response` to `out`, with the
/// `Content-Length`, `Date` and `Connection` it needs.
pub(crate) fn encode_head(response: &Response<Bytes>, framing: Framing, out: &mut Vec<u8>) {
    let status = response.status();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut text = String::with_capacity(80);
    if has_body(status) {
        // HEAD gets the length the GET would have (RFC 9110 8.6).
        let _ = write!(text, "content-length: {}\r\n", response.body().len());
    }
    let _ = write!(
        text,
        "date: {}\r\n",
        httpdate::HttpDate::from(SystemTime::now())
    );
    if framing.close {
        text.push_str("connection: close\r\n");
    } else if framing.keep_alive_10 {
        text.push_str("connection: keep-alive\r\n");
    }
    text.push_str("\r\n");
    out.extend_from_slice(text.as_bytes());
}

/// The answer to a head refused by [`parse`]: a JSON error, and the connection closes.
pub(crate) fn refusal(status: StatusCode) -> Response<Bytes> {
    let body: &'static [u8] = if status == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE {
        br#"{"error":"request head too large"}"#
    } else {
        br#"{"error":"bad request"}"#
    };
    let mut response = Response::new(Bytes::from_static(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Head {
        match parse(text.as_bytes()) {
            Parsed::Head(head, len) => {
                assert_eq!(len, text.len(), "the whole head is consumed");
                *head
            }
            Parsed::Partial => panic!("partial: {text:?}"),
            Parsed::Refused(status) => panic!("refused {status}: {text:?}"),
        }
    }

    fn refused(text: &str) -> StatusCode {
        match parse(text.as_bytes()) {
            Parsed::Refused(status) => status,
            Parsed::Head(..) => panic!("accepted: {text:?}"),
            Parsed::Partial => panic!("partial: {text:?}"),
        }
    }

    #[test]
    fn a_plain_get_keeps_the_connection() {
        let head = parsed("GET /config/db?key=a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        assert_eq!(head.method, Method::GET);
        assert_eq!(head.uri.path(), "/config/db");
        assert_eq!(head.uri.query(), Some("key=a"));
        assert_eq!(head.headers["host"], "127.0.0.1");
        assert!(head.keep_alive && !head.http10 && !head.has_body);
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection() {
        assert!(!parsed("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").keep_alive);
        assert!(!parsed("GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
        assert!(!parsed("GET / HTTP/1.0\r\n\r\n").keep_alive);
        let kept = parsed("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(kept.keep_alive && kept.http10);
    }

    #[test]
    fn bodies_are_noticed_and_ambiguous_lengths_refused() {
        assert!(!parsed("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").has_body);
        assert!(parsed("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").has_body);
        assert!(parsed("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n").has_body);
        assert!(parsed("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").has_body);
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(refused(bad), StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn what_is_not_http_1_is_refused() {
        for bad in [
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "\u{16}\u{3}\u{1}\u{2}\u{0}\u{1}\r\n\r\n",
            "GET /a b HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\r\n  folded\r\n\r\n",
            "GET / HTTP/1.1\r\nX: \u{1}\r\n\r\n",
        ] {
            assert_eq!(refused(bad), StatusCode::BAD_REQUEST, "{bad:?}");
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            refused(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }

    #[test]
    fn a_partial_head_waits_and_pipelined_requests_stay_apart() {
        assert!(matches!(
            parse(b"GET /config HTTP/1.1\r\nHo"),
            Parsed::Partial
        ));
        let two = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        let Parsed::Head(first, len) = parse(two.as_bytes()) else {
            panic!("the first head")
        };
        assert_eq!(first.uri.path(), "/a");
        assert_eq!(&two[len..], "GET /b HTTP/1.1\r\n\r\n");
    }

    /// `GET /config` with a padding header, `size` bytes in all.
    fn head_of(size: usize) -> String {
        let start = "GET /config HTTP/1.1\r\nHost: localhost\r\nX-Pad: ";
        format!("{start}{}\r\n\r\n", "p".repeat(size - start.len() - 4))
    }

    #[test]
    fn a_head_is_at_most_16_kib_whatever_follows_it() {
        let largest = head_of(MAX_HEAD_BYTES);
        assert_eq!(parsed(&largest).uri.path(), "/config");
        // Pipelined requests behind a head that fits do not count against it.
        let behind = format!("{largest}{}", head_of(MAX_HEAD_BYTES));
        assert!(matches!(parse(behind.as_bytes()), Parsed::Head(_, len) if len == MAX_HEAD_BYTES));
        // One byte more is too large, though it arrived whole, in one read.
        let over = head_of(MAX_HEAD_BYTES + 1);
        assert_eq!(refused(&over), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let giant = head_of(3 * MAX_HEAD_BYTES);
        assert_eq!(refused(&giant), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        // Fewer than 100 headers, over 16 KiB together.
        let many: String = (0..90)
            .map(|i| format!("X-{i}: {}\r\n", "v".repeat(200)))
            .collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(refused(&many), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        // Not whole yet: partial below the cap, refused at it.
        assert!(matches!(
            parse(&over.as_bytes()[..MAX_HEAD_BYTES - 1]),
            Parsed::Partial
        ));
        assert_eq!(
            refused(&over[..MAX_HEAD_BYTES]),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }

    /// xorshift64: the same inputs on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// `seed` with a few bytes inserted, removed, replaced or repeated.
    fn mutated(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
        const BYTES: &[u8] = b" \t\r\n:/?#[]@%*,;=\"\\\x00\x7f\x80\xff0159+-.HTPchunkedlength";
        let mut buf = seed.to_vec();
        for _ in 0..=rng.below(8) {
            let at = rng.below(buf.len() + 1);
            match rng.below(4) {
                0 => buf.insert(at, BYTES[rng.below(BYTES.len())]),
                1 if at < buf.len() => {
                    buf.remove(at);
                }
                2 if at < buf.len() => buf[at] = rng.next() as u8,
                _ => {
                    let from = rng.below(buf.len().max(1));
                    let to = (from + rng.below(16)).min(buf.len());
                    let piece = buf[from..to].to_vec();
                    buf.splice(at..at, piece);
                }
            }
        }
        buf
    }

    /// Mutated and random heads, for a bounded time: `parse` never panics, a
    /// head it takes is at most 16 KiB and within the bytes given, and every
    /// strict prefix of it is `Partial` (a head split across reads is never
    /// refused for where the split fell).
    #[test]
    fn no_input_makes_parse_panic_or_misframe() {
        let padded = head_of(MAX_HEAD_BYTES);
        let seeds: [&[u8]; 8] = [
            b"GET /config/db?key=a&wait=30s HTTP/1.1\r\nHost: 127.0.0.1:8082\r\nIf-None-Match: \"1\"\r\n\r\n",
            b"POST http://localhost:8/config HTTP/1.0\r\nContent-Length: 5, 5\r\nConnection: keep-alive\r\n\r\nhello",
            b"HEAD * HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 0\r\n\r\n",
            b"CONNECT [::1]:80 HTTP/1.1\nHost: [::1]\n\n",
            b"OPTIONS http://u@[::1]:99/a%20b?c#d HTTP/1.1\r\nX: \xff\xfe\t\r\nHost: a\r\nHost: b\r\n\r\n",
            b"\r\n\r\nGET //x HTTP/1.1\r\nA:\r\nB: \r\n\r\nGET / HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            padded.as_bytes(),
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let started = std::time::Instant::now();
        let mut heads = 0;
        for round in 0..200_000 {
            if started.elapsed() > std::time::Duration::from_secs(2) {
                break;
            }
            let buf = if round % 8 == 0 {
                (0..rng.below(64)).map(|_| rng.next() as u8).collect()
            } else {
                let seed = seeds[rng.below(seeds.len())];
                mutated(&mut rng, seed)
            };
            let Parsed::Head(_, len) = parse(&buf) else {
                continue;
            };
            heads += 1;
            assert!(
                len <= buf.len().min(MAX_HEAD_BYTES),
                "{len} bytes taken of {}",
                buf.len()
            );
            if len < 1024 {
                for cut in 0..len {
                    assert!(
                        matches!(parse(&buf[..cut]), Parsed::Partial),
                        "{cut} bytes of {:?}",
                        String::from_utf8_lossy(&buf[..len])
                    );
                }
            }
        }
        assert!(heads > 0, "no mutation was a head: the seeds are wrong");
    }

    fn encoded(response: &Response<Bytes>, framing: Framing) -> String {
        let mut out = Vec::new();
        encode_head(response, framing, &mut out);
        String::from_utf8(out).expect("ascii")
    }

    const KEEP: Framing = Framing {
        head_only: false,
        close: false,
        keep_alive_10: false,
    };

    #[test]
    fn response_heads_carry_length_date_and_connection() {
        let mut response = Response::new(Bytes::from_static(b"{}"));
        response
            .headers_mut()
            .insert("etag", HeaderValue::from_static("\"1\""));
        let text = encoded(&response, KEEP);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\netag: \"1\"\r\ncontent-length: 2\r\ndate: "));
        assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");
        assert!(!text.contains("connection"), "{text}");
        let closing = encoded(
            &response,
            Framing {
                close: true,
                ..KEEP
            },
        );
        assert!(closing.ends_with("connection: close\r\n\r\n"), "{closing}");
        let kept = Framing {
            keep_alive_10: true,
            ..KEEP
        };
        assert!(encoded(&response, kept).ends_with("connection: keep-alive\r\n\r\n"));
        // HEAD: the GET's length, no body.
        let head = Framing {
            head_only: true,
            ..KEEP
        };
        assert!(encoded(&response, head).contains("content-length: 2\r\n"));
        assert!(!sends_body(StatusCode::OK, head));
        assert!(sends_body(StatusCode::OK, KEEP));
    }

    #[test]
    fn not_modified_has_neither_body_nor_length() {
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        let text = encoded(&response, KEEP);
        assert!(text.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{text}");
        assert!(!text.contains("content-length"), "{text}");
        assert!(!sends_body(StatusCode::NOT_MODIFIED, KEEP));
    }
}
