//! Maps a request line to a response, without I/O, so it is unit-testable.
//!
//! | path                     | response |
//! |--------------------------|----------|
//! | `/config`, `/config/`    | the whole configuration |
//! | `/config/<key>`          | one top-level value (key percent-decoded), or 404 |
//! | `/health`                | status, generation and last reload, never a value |
//! | anything else            | 404 |
//!
//! Known paths answer GET and HEAD (HEAD: same headers, no body, for probes
//! such as `curl -I`); other methods get 405 with `Allow: GET, HEAD`. The
//! configuration's answers carry an `ETag`, and a matching `If-None-Match`
//! gets `304 Not Modified`, so an app can poll cheaply.

use std::borrow::Cow;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    HeaderMap, HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
};
use hyper::{Method, Response, StatusCode};

use crate::document::Rendered;
use crate::reload::Snapshot;

const NOT_FOUND: &[u8] = br#"{"error":"not found"}"#;
const METHOD_NOT_ALLOWED: &[u8] = br#"{"error":"method not allowed"}"#;

pub type Body = Full<Bytes>;

/// The response to `method path` (the path without its query string).
pub fn respond(
    snapshot: &Snapshot,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Response<Body> {
    let known = path == "/health" || path == "/config" || path.starts_with("/config/");
    if !known {
        return json(StatusCode::NOT_FOUND, Bytes::from_static(NOT_FOUND));
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = json(
            StatusCode::METHOD_NOT_ALLOWED,
            Bytes::from_static(METHOD_NOT_ALLOWED),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let doc = &snapshot.document;
    match path {
        "/health" => json(StatusCode::OK, snapshot.health.clone()),
        "/config" | "/config/" => tagged(doc.whole(), headers),
        _ => {
            let raw = path.strip_prefix("/config/").unwrap_or_default();
            let value = percent_decode(raw).and_then(|key| doc.get(&key));
            match value {
                Some(value) => tagged(&value, headers),
                None => json(StatusCode::NOT_FOUND, no_key(raw)),
            }
        }
    }
}

/// 200 with the body and its `ETag`, or 304 when the client has that version.
fn tagged(rendered: &Rendered, headers: &HeaderMap) -> Response<Body> {
    let mut response = if has_version(headers, &rendered.etag) {
        json(StatusCode::NOT_MODIFIED, Bytes::new())
    } else {
        json(StatusCode::OK, rendered.body.clone())
    };
    response.headers_mut().insert(ETAG, rendered.etag.clone());
    response
}

/// Whether `If-None-Match` lists `etag` (weak comparison, RFC 9110 13.1.2) or is `*`.
fn has_version(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let etag = etag.as_bytes();
    headers.get_all(IF_NONE_MATCH).iter().any(|value| {
        value.as_bytes().split(|&b| b == b',').any(|tag| {
            let tag = tag.trim_ascii();
            tag == b"*" || tag.strip_prefix(b"W/").unwrap_or(tag) == etag
        })
    })
}

fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Secrets must not end up in a cache.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `{"error":"no key \"<key>\" in config"}`, naming the key as the client sent it
/// (decoded when possible); never any value.
fn no_key(raw: &str) -> Bytes {
    let key = percent_decode(raw).unwrap_or(Cow::Borrowed(raw));
    let message = format!("no key \"{key}\" in config");
    let mut body = serde_json::Map::new();
    body.insert("error".to_owned(), message.into());
    Bytes::from(serde_json::Value::Object(body).to_string())
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is not UTF-8.
fn percent_decode(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.contains('%') {
        return Some(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http_body_util::BodyExt;

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
        let bytes = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(response.into_body().collect())
            .expect("a Full body cannot fail")
            .to_bytes();
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
            (
                Method::GET,
                "/config/n/0",
                404,
                None,
                r#"{"error":"no key \"n/0\" in config"}"#,
            ),
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
    fn percent_decoding() {
        assert_eq!(percent_decode("abc").as_deref(), Some("abc"));
        assert_eq!(percent_decode("a%2Fb%c3%a9").as_deref(), Some("a/bé"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
