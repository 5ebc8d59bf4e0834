//! Maps a request to a response, without I/O, so it is unit-testable.
//!
//! | path                     | response |
//! |--------------------------|----------|
//! | `/config`, `/config/`    | the whole configuration |
//! | `/config/<a>/<b>/...`    | the value at that key path (each step percent-decoded), or 404 |
//! | `...?key=<p>&key=<q>`    | several values at once, as one object keyed by the names given |
//! | `...?wait=30s`           | with `If-None-Match` naming the current version: held until it changes |
//! | `/health`                | status, generation and last reload, never a value |
//! | `/metrics`               | counters in Prometheus' text format, never a key or a value |
//! | anything else            | 404 |
//!
//! Before any of that, the door: a `Host` that is not a loopback name or
//! address gets 403 (a web page must not read the configuration through DNS
//! rebinding), and with a token set, every path but `/health` needs it
//! (`Authorization: Bearer <token>`), or gets 401.
//!
//! Known paths answer GET and HEAD (HEAD: same headers, no body, for probes
//! such as `curl -I`); other methods get 405 with `Allow: GET, HEAD`. The
//! configuration's answers carry an `ETag`, and a matching `If-None-Match`
//! gets `304 Not Modified`, so an app can poll cheaply, or wait.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderValue, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, ETAG, HOST,
    IF_NONE_MATCH, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{Method, Response, StatusCode, Uri};

use crate::document::{percent_decode, split_path, Document, Rendered};
use crate::reload::Snapshot;

const NOT_FOUND: &[u8] = br#"{"error":"not found"}"#;
const METHOD_NOT_ALLOWED: &[u8] = br#"{"error":"method not allowed"}"#;
const BAD_HOST: &[u8] = br#"{"error":"the Host header must name this machine's loopback (127.0.0.1, [::1] or localhost): other names are refused, against DNS rebinding"}"#;
const NO_TOKEN: &[u8] =
    br#"{"error":"this config-server needs its token: Authorization: Bearer <CONFIG_SERVER_TOKEN>"}"#;
const BUSY_WAITING: &[u8] =
    br#"{"error":"too many requests are waiting (CONFIG_SERVER_MAX_WAITING), try again"}"#;

/// Responses are small and whole.
const BUSY_CONNECTIONS: &[u8] = br#"{"error":"too many connections, try again"}"#;

pub(crate) type Body = Bytes;

/// What the door asks of a request.
pub(crate) struct Door {
    /// The bearer token, if one is set.
    pub token: Option<Vec<u8>>,
    /// The longest `wait` a client may ask for.
    pub max_wait: Duration,
}

/// A request, as far as routing needs it.
pub(crate) struct Request<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
}

/// The metrics label of a path: a fixed set, never anything the client wrote.
pub(crate) fn route_label(path: &str) -> &'static str {
    match path {
        "/health" => "health",
        "/metrics" => "metrics",
        "/config" => "config",
        _ if path.starts_with("/config/") => "config",
        _ => "other",
    }
}

/// How a request is to be answered.
pub(crate) enum Routed {
    Now(Response<Body>),
    /// `/metrics`, which the server renders.
    Metrics,
    /// A read whose answer is `304` now, and whose client asked to wait up to
    /// `wait` for it to change.
    Wait {
        read: Read,
        wait: Duration,
    },
}

/// A read of the configuration: what to select, and the client's version.
pub(crate) struct Read {
    /// The key path after `/config/`.
    path: Vec<String>,
    /// `?key=` names and their paths (below `path`); none: the value at `path`.
    keys: Vec<(String, Vec<String>)>,
    if_none_match: Vec<HeaderValue>,
}

impl Read {
    /// The answer from `document`: `200` with the value, `304` if the client
    /// has it, or `404` naming the key missing.
    pub(crate) fn answer(&self, document: &Document) -> Response<Body> {
        let rendered = if self.keys.is_empty() {
            document.get(&self.path).ok_or_else(|| self.path.join("/"))
        } else {
            let wanted: Vec<(String, Vec<&str>)> = self
                .keys
                .iter()
                .map(|(name, steps)| {
                    let full = self.path.iter().chain(steps).map(String::as_str).collect();
                    (name.clone(), full)
                })
                .collect();
            document.select(&wanted).map_err(|missing| {
                let mut full = self.path.clone();
                full.push(missing.to_owned());
                full.join("/")
            })
        };
        match rendered {
            Ok(rendered) => self.tagged(&rendered),
            Err(missing) => error(
                StatusCode::NOT_FOUND,
                &format!("no key \"{missing}\" in config"),
            ),
        }
    }

    /// 200 with the body and its `ETag`, or 304 when the client has that version.
    fn tagged(&self, rendered: &Rendered) -> Response<Body> {
        let mut response = if self.has_version(&rendered.etag) {
            json(StatusCode::NOT_MODIFIED, Bytes::new())
        } else {
            json(StatusCode::OK, rendered.body.clone())
        };
        response.headers_mut().insert(ETAG, rendered.etag.clone());
        response
    }

    /// Whether `If-None-Match` lists `etag` (weak comparison, RFC 9110 13.1.2) or is `*`.
    fn has_version(&self, etag: &HeaderValue) -> bool {
        let etag = etag.as_bytes();
        self.if_none_match.iter().any(|value| {
            value.as_bytes().split(|&b| b == b',').any(|tag| {
                let tag = tag.trim_ascii();
                tag == b"*" || tag.strip_prefix(b"W/").unwrap_or(tag) == etag
            })
        })
    }
}

/// Routes `request`, answered from `snapshot`.
pub(crate) fn route(request: &Request<'_>, snapshot: &Snapshot, door: &Door) -> Routed {
    if !loopback_host(request.uri, request.headers) {
        return Routed::Now(json(StatusCode::FORBIDDEN, Bytes::from_static(BAD_HOST)));
    }
    let path = request.uri.path();
    let label = route_label(path);
    if label == "other" {
        return Routed::Now(json(StatusCode::NOT_FOUND, Bytes::from_static(NOT_FOUND)));
    }
    let method = request.method;
    if method != Method::GET && method != Method::HEAD {
        let mut response = json(
            StatusCode::METHOD_NOT_ALLOWED,
            Bytes::from_static(METHOD_NOT_ALLOWED),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Routed::Now(response);
    }
    if label == "health" {
        return Routed::Now(json(StatusCode::OK, snapshot.health.clone()));
    }
    if let Some(token) = &door.token {
        if !has_token(request.headers, token) {
            let mut response = json(StatusCode::UNAUTHORIZED, Bytes::from_static(NO_TOKEN));
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"config-server\""),
            );
            return Routed::Now(response);
        }
    }
    if label == "metrics" {
        return Routed::Metrics;
    }
    let raw = path.strip_prefix("/config").unwrap_or_default();
    let raw = raw.strip_prefix('/').unwrap_or(raw);
    let path = if raw.is_empty() {
        Some(Vec::new())
    } else {
        split_path(raw).map(owned)
    };
    let Some(path) = path else {
        let shown = percent_decode(raw).unwrap_or(Cow::Borrowed(raw));
        return Routed::Now(error(
            StatusCode::NOT_FOUND,
            &format!("no key \"{shown}\" in config"),
        ));
    };
    let mut keys = Vec::new();
    let mut wait = None;
    for (name, value) in request
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(param)
    {
        match name {
            "key" => {
                let form = value.replace('+', " ");
                let shown = percent_decode(&form).map_or_else(|| form.clone(), Cow::into_owned);
                match split_path(&form) {
                    Some(steps) => keys.push((shown, owned(steps))),
                    None => {
                        return Routed::Now(error(
                            StatusCode::NOT_FOUND,
                            &format!("no key \"{shown}\" in config"),
                        ))
                    }
                }
            }
            "wait" => match parse_wait(value, door.max_wait) {
                Ok(duration) => wait = Some(duration),
                Err(message) => return Routed::Now(error(StatusCode::BAD_REQUEST, &message)),
            },
            _ => {}
        }
    }
    let read = Read {
        path,
        keys,
        if_none_match: request
            .headers
            .get_all(IF_NONE_MATCH)
            .iter()
            .cloned()
            .collect(),
    };
    let response = read.answer(&snapshot.document);
    match wait {
        Some(wait) if response.status() == StatusCode::NOT_MODIFIED && !wait.is_zero() => {
            Routed::Wait { read, wait }
        }
        _ => Routed::Now(response),
    }
}

fn owned(steps: Vec<Cow<'_, str>>) -> Vec<String> {
    steps.into_iter().map(Cow::into_owned).collect()
}

/// `name=value` (or a bare `name`) of a query string.
fn param(pair: &str) -> Option<(&str, &str)> {
    if pair.is_empty() {
        return None;
    }
    Some(pair.split_once('=').unwrap_or((pair, "")))
}

/// `30s`, `500ms`, `2m`, or a whole number of seconds; at most `max`.
pub(crate) fn parse_wait(value: &str, max: Duration) -> Result<Duration, String> {
    let shown = crate::sanitize::cut(value, 32);
    let invalid = || {
        format!(
            "wait={shown:?} is not valid: expected a duration such as 30s, 500ms or 2m, of at \
             most {}ms (CONFIG_SERVER_MAX_WAIT_MS)",
            max.as_millis()
        )
    };
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = value.split_at(digits);
    let ms_per: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        _ => return Err(invalid()),
    };
    if number.is_empty() {
        return Err(invalid());
    }
    let ms = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(ms_per))
        .ok_or_else(invalid)?;
    let wait = Duration::from_millis(ms);
    if wait > max {
        return Err(invalid());
    }
    Ok(wait)
}

/// Whether the request names a loopback host: `localhost` (or a name under
/// it, which browsers resolve to loopback themselves), 127.0.0.0/8 or `[::1]`,
/// with any port. A request without `Host` (HTTP/1.0, not a browser) passes.
fn loopback_host(uri: &Uri, headers: &HeaderMap) -> bool {
    let mut hosts = headers.get_all(HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (None, _) => None,
        (Some(host), None) => match host.to_str() {
            Ok(host) => Some(host),
            Err(_) => return false,
        },
        (Some(_), Some(_)) => return false,
    };
    let authority = uri.authority().map(http::uri::Authority::as_str);
    [host, authority].into_iter().flatten().all(is_loopback)
}

/// Whether `authority` is `host` or `host:port` with a loopback host. The
/// port is digits or nothing: anything else would let a name hide behind a
/// loopback prefix, as in `127.0.0.1:1@evil.example`, whose host (after the
/// userinfo `127.0.0.1:1`) is `evil.example`.
fn is_loopback(authority: &str) -> bool {
    let port_ok = |port: &str| port.bytes().all(|b| b.is_ascii_digit());
    let host = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) if port.is_empty() || port.strip_prefix(':').is_some_and(port_ok) => {
                return v6.parse::<Ipv6Addr>().is_ok_and(|ip| {
                    ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
                });
            }
            _ => return false,
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) if port_ok(port) => host,
            Some(_) => return false,
            None => authority,
        },
    };
    let host = host.to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `Authorization` is `Bearer <token>`, compared in constant time.
fn has_token(headers: &HeaderMap, token: &[u8]) -> bool {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    let Some((scheme, given)) = value.split_at_checked(7) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(b"bearer ") || given.len() != token.len() {
        return false;
    }
    given.iter().zip(token).fold(0, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// `503` to a read that would wait while too many others do.
pub(crate) fn busy_waiting() -> Response<Body> {
    busy(BUSY_WAITING)
}

/// `503` to a connection over the limit, when none is idle to make room.
pub(crate) fn busy_connections() -> Response<Body> {
    busy(BUSY_CONNECTIONS)
}

fn busy(body: &'static [u8]) -> Response<Body> {
    let mut response = json(StatusCode::SERVICE_UNAVAILABLE, Bytes::from_static(body));
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// `200` with a body that is not JSON (`/metrics`).
pub(crate) fn text(body: String, content_type: &'static str) -> Response<Body> {
    let mut response = json(StatusCode::OK, Bytes::from(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Secrets must not end up in a cache.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `{"error":"<message>"}`; the message names keys as the client sent them
/// (decoded when possible), never any value.
fn error(status: StatusCode, message: &str) -> Response<Body> {
    let mut body = serde_json::Map::new();
    body.insert("error".to_owned(), message.into());
    json(
        status,
        Bytes::from(serde_json::Value::Object(body).to_string()),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::document::Document;
    use crate::reload::Live;
    use crate::source::{Loaded, Origin};

    fn snapshot() -> Arc<Snapshot> {
        let doc = Document::from_map(
            serde_json::from_str(r#"{"a b":"spaced","Password":"pw","n":[1]}"#)
                .expect("valid object"),
        );
        let live = Live::new(Loaded {
            document: doc,
            origin: Origin::Demo,
        });
        live.snapshot()
    }

    fn door() -> Door {
        Door {
            token: None,
            max_wait: Duration::from_secs(60),
        }
    }

    fn respond(
        snap: &Snapshot,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Response<Body> {
        respond_at(snap, method, path, headers, &door())
    }

    fn respond_at(
        snap: &Snapshot,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        door: &Door,
    ) -> Response<Body> {
        let uri: Uri = path.parse().expect("a valid URI");
        let request = Request {
            method,
            uri: &uri,
            headers,
        };
        match route(&request, snap, door) {
            Routed::Now(response) => response,
            Routed::Metrics => text(String::new(), "application/json"),
            Routed::Wait { read, .. } => read.answer(&snap.document),
        }
    }

    fn call(method: Method, path: &str) -> (StatusCode, Option<String>, String) {
        call_with(method, path, &HeaderMap::new())
    }

    fn call_with(
        method: Method,
        path: &str,
        headers: &HeaderMap,
    ) -> (StatusCode, Option<String>, String) {
        let response = respond(&snapshot(), &method, path, headers);
        let status = response.status();
        let allow = response
            .headers()
            .get(ALLOW)
            .map(|v| v.to_str().expect("ascii").to_owned());
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let bytes = response.into_body();
        (
            status,
            allow,
            String::from_utf8(bytes.to_vec()).expect("utf-8 body"),
        )
    }

    #[test]
    fn routes() {
        let whole = r#"{"a b":"spaced","Password":"pw","n":[1]}"#;
        let cases: &[(Method, &str, u16, Option<&str>, &str)] = &[
            (Method::GET, "/config", 200, None, whole),
            (Method::GET, "/config/", 200, None, whole),
            (Method::HEAD, "/config/", 200, None, whole),
            (Method::GET, "/config/n", 200, None, "[1]"),
            (Method::GET, "/config/a%20b", 200, None, r#""spaced""#),
            (
                Method::GET,
                "/config/password",
                404,
                None,
                r#"{"error":"no key \"password\" in config"}"#,
            ),
            (
                Method::GET,
                "/config/a%2",
                404,
                None,
                r#"{"error":"no key \"a%2\" in config"}"#,
            ),
            (
                Method::GET,
                "/config/q%22",
                404,
                None,
                r#"{"error":"no key \"q\"\" in config"}"#,
            ),
            (Method::GET, "/config/n/0", 200, None, "1"),
            (
                Method::GET,
                "/config/n/1",
                404,
                None,
                r#"{"error":"no key \"n/1\" in config"}"#,
            ),
            (
                Method::GET,
                "/config/?key=Password&key=n/0&key=a+b",
                200,
                None,
                r#"{"Password":"pw","n/0":1,"a b":"spaced"}"#,
            ),
            (Method::GET, "/config/n?key=0", 200, None, r#"{"0":1}"#),
            (
                Method::GET,
                "/config?key=Password&key=x",
                404,
                None,
                r#"{"error":"no key \"x\" in config"}"#,
            ),
            (
                Method::GET,
                "/config?wait=-1s",
                400,
                None,
                r#"{"error":"wait=\"-1s\" is not valid: expected a duration such as 30s, 500ms or 2m, of at most 60000ms (CONFIG_SERVER_MAX_WAIT_MS)"}"#,
            ),
            (Method::GET, "/config/n?wait=5s&t=1", 200, None, "[1]"),
            (
                Method::GET,
                "/health/",
                404,
                None,
                r#"{"error":"not found"}"#,
            ),
            (Method::GET, "/", 404, None, r#"{"error":"not found"}"#),
            (
                Method::GET,
                "/configx",
                404,
                None,
                r#"{"error":"not found"}"#,
            ),
            (Method::POST, "/nope", 404, None, r#"{"error":"not found"}"#),
            (
                Method::POST,
                "/config/",
                405,
                Some("GET, HEAD"),
                r#"{"error":"method not allowed"}"#,
            ),
            (
                Method::DELETE,
                "/config/n",
                405,
                Some("GET, HEAD"),
                r#"{"error":"method not allowed"}"#,
            ),
            (
                Method::PUT,
                "/health",
                405,
                Some("GET, HEAD"),
                r#"{"error":"method not allowed"}"#,
            ),
        ];
        for (method, path, status, allow, body) in cases {
            let got = call(method.clone(), path);
            assert_eq!(
                got,
                (
                    StatusCode::from_u16(*status).expect("valid status"),
                    allow.map(str::to_owned),
                    (*body).to_owned()
                ),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn etag_and_if_none_match() {
        let snap = snapshot();
        let ok = respond(&snap, &Method::GET, "/config/", &HeaderMap::new());
        let etag = ok.headers()[ETAG].clone();
        let key_etag =
            respond(&snap, &Method::GET, "/config/n", &HeaderMap::new()).headers()[ETAG].clone();
        assert_ne!(etag, key_etag);
        let with = |value: String| {
            let mut headers = HeaderMap::new();
            headers.insert(
                IF_NONE_MATCH,
                HeaderValue::from_str(&value).expect("header"),
            );
            headers
        };
        let tag = etag.to_str().expect("ascii").to_owned();
        for (value, status) in [
            (tag.clone(), 304),
            (format!("W/{tag}"), 304),
            (format!("\"x\", {tag}"), 304),
            ("*".to_owned(), 304),
            ("\"x\"".to_owned(), 200),
            (key_etag.to_str().expect("ascii").to_owned(), 200),
        ] {
            let headers = with(value.clone());
            let (got, _, body) = call_with(Method::GET, "/config", &headers);
            assert_eq!(got.as_u16(), status, "{value}");
            assert_eq!(body.is_empty(), status == 304, "{value}");
        }
        let not_modified = respond(&snap, &Method::HEAD, "/config", &with(tag.clone()));
        assert_eq!(not_modified.status(), 304);
        assert_eq!(not_modified.headers()[ETAG], etag);
        assert_eq!(not_modified.headers()[CACHE_CONTROL], "no-store");
        // Errors carry no tag and are never 304.
        let missing = respond(&snap, &Method::GET, "/config/zz", &with("*".to_owned()));
        assert_eq!(missing.status(), 404);
        assert!(missing.headers().get(ETAG).is_none());
    }

    #[test]
    fn wait_values() {
        let max = Duration::from_secs(60);
        for (value, ms) in [
            ("30s", 30_000),
            ("500ms", 500),
            ("1m", 60_000),
            ("7", 7000),
            ("0", 0),
        ] {
            assert_eq!(
                parse_wait(value, max),
                Ok(Duration::from_millis(ms)),
                "{value}"
            );
        }
        for value in [
            "",
            "-1",
            "1.5s",
            "61s",
            "2m",
            "s",
            "10h",
            "99999999999999999999999",
            " 1s",
        ] {
            assert!(parse_wait(value, max).is_err(), "{value}");
        }
    }

    #[test]
    fn only_loopback_hosts_are_served() {
        let snap = snapshot();
        for (host, status) in [
            ("127.0.0.1:8082", 200),
            ("127.1.2.3", 200),
            ("localhost:8082", 200),
            ("LocalHost", 200),
            ("app.localhost:1", 200),
            ("[::1]:8082", 200),
            ("[::ffff:127.0.0.1]", 200),
            ("evil.example:8082", 403),
            ("127.0.0.1.nip.io", 403),
            ("localhost.evil.example", 403),
            ("0.0.0.0:8082", 403),
            ("10.0.0.1", 403),
            ("[::2]", 403),
            ("[::1", 403),
            ("", 403),
            // Userinfo in front of another host, and ports that are not numbers.
            ("127.0.0.1:1@evil.example", 403),
            ("[::1]:1@evil.example:80", 403),
            ("localhost@evil.example", 403),
            ("localhost:http", 403),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(HOST, HeaderValue::from_str(host).expect("header"));
            for path in ["/config", "/health"] {
                let got = respond(&snap, &Method::GET, path, &headers).status();
                assert_eq!(got.as_u16(), status, "{host} {path}");
            }
        }
        assert_eq!(
            respond(&snap, &Method::GET, "/config", &HeaderMap::new()).status(),
            200
        );
        let mut twice = HeaderMap::new();
        twice.append(HOST, HeaderValue::from_static("localhost"));
        twice.append(HOST, HeaderValue::from_static("localhost"));
        assert_eq!(
            respond(&snap, &Method::GET, "/config", &twice).status(),
            403
        );
        for target in [
            "http://evil.example/config",
            "http://127.0.0.1:1@evil.example/config",
            "http://[::1]:1@evil.example/config",
        ] {
            let absolute = respond(&snap, &Method::GET, target, &HeaderMap::new());
            assert_eq!(absolute.status(), 403, "{target}");
        }
        let local = respond(
            &snap,
            &Method::GET,
            "http://127.0.0.1:8082/config",
            &HeaderMap::new(),
        );
        assert_eq!(local.status(), 200);
    }

    #[test]
    fn the_token_guards_everything_but_health() {
        let snap = snapshot();
        let door = Door {
            token: Some(b"t0ken".to_vec()),
            max_wait: Duration::from_secs(1),
        };
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, HeaderValue::from_str(value).expect("header"));
            headers
        };
        let none = HeaderMap::new();
        for (headers, path, status) in [
            (&none, "/config", 401),
            (&none, "/metrics", 401),
            (&none, "/health", 200),
            (&with("Bearer t0ken"), "/config/n", 200),
            (&with("bearer t0ken"), "/metrics", 200),
            (&with("Bearer t0ke"), "/config", 401),
            (&with("Bearer t0kenn"), "/config", 401),
            (&with("Basic t0ken"), "/config", 401),
            (&with("t0ken"), "/config", 401),
        ] {
            let response = respond_at(&snap, &Method::GET, path, headers, &door);
            assert_eq!(response.status().as_u16(), status, "{headers:?} {path}");
            if status == 401 {
                assert_eq!(
                    response.headers()[WWW_AUTHENTICATE],
                    "Bearer realm=\"config-server\""
                );
            }
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("abc").as_deref(), Some("abc"));
        assert_eq!(percent_decode("a%2Fb%c3%a9").as_deref(), Some("a/bé"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
