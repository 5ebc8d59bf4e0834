//! The HTTP(S) transport: one client per run with explicit proxies, the system trust
//! store plus CF_SYSTEM_CERT_PATH, a connect and a stall timeout, a size cap, redirects
//! followed by this code (so no header of one hop, `Referer` included, reaches the
//! next host), and bounded retries with backoff that honour `Retry-After`. Each failure
//! is classed as worth retrying or final, and by what it says about the host.

use crate::detail;
use crate::errors::{Error, Fault};
use crate::fsutil::read_text;
use crate::manifest::Dependency;
use crate::proxy::Proxies;
use crate::redact::{describe, error_chain, remember_url, scrub_urls, shown, Redacted};
use crate::settings::Network;
use crate::verify::{
    copy_local, stream_verified, Limits, LocalError, Origin, StreamError, Verified,
};
use reqwest::blocking::{Client, ClientBuilder, Response};
use reqwest::header::{LOCATION, RETRY_AFTER};
use std::cell::OnceCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tracing::{debug, warn};
use url::Url;

/// Most redirects one download follows.
const MAX_REDIRECTS: usize = 10;
/// Largest file read from CF_SYSTEM_CERT_PATH: a whole CA bundle is a few hundred KB.
const MAX_CERT_FILE_BYTES: u64 = 4 << 20;

/// Downloads over HTTP(S), with one client built on first use.
pub struct Fetcher<'a> {
    net: &'a Network,
    client: OnceCell<(Client, Arc<Proxies>)>,
}

/// How one download attempt ended, when it did not succeed.
enum Failed {
    /// No connection, or it broke off (`fault` says which): worth another attempt.
    Transient(Fault, String, Url),
    /// Final: the same answer every time (a certificate, a redirect loop, bad HTTP).
    Final(Fault, String, Url),
    /// An HTTP error status, with the wait a 429 or 503 asked for, and the URL that
    /// answered it.
    Status(u16, Option<Duration>, Url),
    /// Final: a typed error (disk full, checksum mismatch, over the cap).
    Fatal(Box<Error>),
}

impl<'a> Fetcher<'a> {
    pub fn new(net: &'a Network) -> Self {
        Fetcher {
            net,
            client: OnceCell::new(),
        }
    }

    fn client(&self, dependency: &str) -> Result<&(Client, Arc<Proxies>), Error> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let proxies = Arc::new(Proxies::parse(
            self.net.http_proxy.as_ref(),
            self.net.https_proxy.as_ref(),
            self.net.no_proxy.as_ref(),
        )?);
        let client = build_client(self.net, &proxies, dependency)?;
        Ok(self.client.get_or_init(|| (client, proxies)))
    }

    /// Fetches `dep` from its `uri` into a temp file in `dest_dir`, retrying transient
    /// failures, and verifies it.
    pub fn download(&self, dep: &Dependency, dest_dir: &Path) -> Result<Verified, Error> {
        let url = &dep.uri;
        remember_url(url);
        let shown = Redacted::url(url);
        let limits = Limits::of(self.net);
        if url.scheme() == "file" {
            detail!("Copying {shown}");
            let local = |reason: String| Error::Download {
                dependency: dep.name.clone(),
                url: shown.clone(),
                attempts: 1,
                reason,
                fault: Fault::LocalFile,
                cert_path: None,
                proxy: None,
            };
            let path = url
                .to_file_path()
                .map_err(|()| local("not a local path".into()))?;
            let origin = Origin::Network(url.clone());
            return copy_local(&path, dep, dest_dir, origin, limits).map_err(|e| match e {
                LocalError::Fatal(e) => *e,
                LocalError::TooLarge => too_large(dep, url, limits),
                LocalError::Unusable(reason) | LocalError::Read(reason) => local(reason),
            });
        }

        detail!("Downloading {shown}");
        let (client, proxies) = self.client(&dep.name)?;
        let attempts = self.net.attempts;
        let mut last = (String::new(), Fault::Unreachable, url.clone());
        let mut status = None;
        for attempt in 1..=attempts {
            let mut asked = None;
            match self.attempt(client, dep, dest_dir, limits) {
                Ok(v) => return Ok(v),
                Err(Failed::Fatal(e)) => return Err(*e),
                Err(Failed::Final(fault, reason, at)) => {
                    return Err(self.download_error(dep, attempt, reason, fault, &at, proxies))
                }
                Err(Failed::Status(code, _, at)) if code != 429 && code < 500 => {
                    through_proxy(proxies, &at);
                    return Err(Error::HttpStatus {
                        dependency: dep.name.clone(),
                        url: shown,
                        status: code,
                        attempts: attempt,
                    });
                }
                Err(Failed::Status(code, retry_after, at)) => {
                    status = Some((code, at));
                    last.0 = format!("HTTP {code}");
                    asked = retry_after;
                }
                Err(Failed::Transient(fault, reason, at)) => {
                    status = None;
                    last = (reason, fault, at);
                }
            }
            if attempt < attempts {
                let mut wait = backoff(self.net.retry_delay, attempt);
                let mut why = String::new();
                if let Some(asked) = asked {
                    let honoured = asked.min(self.net.max_retry_after);
                    wait = wait.max(honoured);
                    why = format!(
                        " (the server asked for {} s with Retry-After{})",
                        asked.as_secs(),
                        if honoured < asked {
                            format!(
                                "; waiting at most SIDECAR_BUILDPACK_MAX_RETRY_AFTER = {} s",
                                self.net.max_retry_after.as_secs()
                            )
                        } else {
                            String::new()
                        }
                    );
                }
                warn!(
                    "attempt {attempt} of {attempts} failed ({}); retrying in {:.1}s{why}",
                    crate::redact::shown(&last.0),
                    wait.as_secs_f64()
                );
                std::thread::sleep(wait);
            }
        }
        if let Some((code, at)) = status {
            through_proxy(proxies, &at);
            return Err(Error::HttpStatus {
                dependency: dep.name.clone(),
                url: shown,
                status: code,
                attempts,
            });
        }
        let (reason, fault, at) = last;
        Err(self.download_error(dep, attempts, reason, fault, &at, proxies))
    }

    fn download_error(
        &self,
        dep: &Dependency,
        attempts: u32,
        reason: String,
        fault: Fault,
        at: &Url,
        proxies: &Proxies,
    ) -> Error {
        // Where it failed, when a redirect led elsewhere.
        let reason = if *at == dep.uri {
            reason
        } else {
            format!(
                "{reason} (at {}, redirected from the uri)",
                Redacted::url(at)
            )
        };
        Error::Download {
            dependency: dep.name.clone(),
            url: Redacted::url(&dep.uri),
            attempts,
            reason,
            fault,
            cert_path: Some(self.net.cert_path.clone()),
            proxy: proxies.for_url(at).map(|p| Redacted::url(&p.url)),
        }
    }

    fn attempt(
        &self,
        client: &Client,
        dep: &Dependency,
        dest_dir: &Path,
        limits: Limits,
    ) -> Result<Verified, Failed> {
        let mut resp = follow(client, &dep.uri)?;
        let at = resp.url().clone();
        let status = resp.status();
        if !status.is_success() {
            return Err(Failed::Status(status.as_u16(), retry_after(&resp), at));
        }
        debug!(
            "HTTP {} from {}, content-length {:?}",
            status.as_u16(),
            Redacted::url(&at),
            resp.content_length()
        );
        // Refused from its announced length, before a byte is written.
        if resp.content_length().is_some_and(|n| n > limits.max_bytes) {
            return Err(Failed::Fatal(Box::new(too_large(dep, &dep.uri, limits))));
        }
        let origin = Origin::Network(dep.uri.clone());
        stream_verified(&mut resp, dep, dest_dir, origin, limits.max_bytes).map_err(|e| match e {
            StreamError::Read(reason) => Failed::Transient(Fault::Interrupted, reason, at),
            StreamError::TooLarge => Failed::Fatal(Box::new(too_large(dep, &dep.uri, limits))),
            StreamError::Fatal(e) => Failed::Fatal(e),
        })
    }
}

/// GETs `start`, following redirects here rather than in the client: each hop is a
/// fresh request, so no header of an earlier one (Authorization from user-info,
/// Proxy-Authorization, a Referer naming the presigned URL) can reach another host.
fn follow(client: &Client, start: &Url) -> Result<Response, Failed> {
    let first_https = start.scheme() == "https";
    let mut url = start.clone();
    let mut seen: Vec<Url> = Vec::new();
    loop {
        let resp = client.get(url.clone()).send().map_err(|e| {
            let reason = describe(&e, &url);
            // The proxy answered CONNECT with 407: an HTTP status like any other (it
            // has no typed form in hyper-util's tunnel error, only this wording).
            if reason.contains("proxy authorization required") {
                return Failed::Status(407, None, url.clone());
            }
            let fault = fault_of(&e, &reason);
            if fault.is_transient() {
                Failed::Transient(fault, reason, url.clone())
            } else {
                Failed::Final(fault, reason, url.clone())
            }
        })?;
        let status = resp.status();
        if !status.is_redirection() {
            return Ok(resp);
        }
        let refuse = |why: String| Failed::Final(Fault::Redirect, why, url.clone());
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                refuse(format!(
                    "HTTP {} without a usable Location",
                    status.as_u16()
                ))
            })?;
        let next = url.join(location.trim()).map_err(|_| {
            refuse(format!(
                "HTTP {} to {}, which is not a URL",
                status.as_u16(),
                crate::redact::quoted(Redacted::str(location).as_str())
            ))
        })?;
        remember_url(&next);
        if !matches!(next.scheme(), "http" | "https") {
            return Err(refuse(format!(
                "refusing a redirect to {}: only http and https locations are followed",
                Redacted::url(&next)
            )));
        }
        if first_https && next.scheme() == "http" {
            return Err(refuse(format!(
                "refusing a redirect from https to http ({})",
                Redacted::url(&next)
            )));
        }
        seen.push(url.clone());
        if seen.contains(&next) {
            return Err(refuse(format!("redirect loop at {}", Redacted::url(&next))));
        }
        if seen.len() > MAX_REDIRECTS {
            return Err(refuse(format!("more than {MAX_REDIRECTS} redirects")));
        }
        debug!(
            "HTTP {} from {}: redirected to {}",
            status.as_u16(),
            Redacted::url(&url),
            Redacted::url(&next)
        );
        url = next;
    }
}

/// Says which proxy a request that got an HTTP error went through: the proxy may be
/// the one that answered (a 407, or its own 403 or 502).
fn through_proxy(proxies: &Proxies, at: &Url) {
    if let Some(p) = proxies.for_url(at) {
        detail!(
            "The request went through the proxy {} ({})",
            Redacted::url(&p.url),
            p.var
        );
    }
}

fn too_large(dep: &Dependency, url: &Url, limits: Limits) -> Error {
    Error::TooLarge {
        dependency: format!("{} {}", dep.name, dep.version),
        origin: Redacted::url(url),
        limit: limits.max_bytes,
    }
}

/// The wait a 429 or 503 asks for: `Retry-After` in seconds or as an HTTP date.
fn retry_after(resp: &Response) -> Option<Duration> {
    if !matches!(resp.status().as_u16(), 429 | 503) {
        return None;
    }
    let value = resp.headers().get(RETRY_AFTER)?.to_str().ok()?.trim();
    parse_retry_after(value, SystemTime::now())
}

fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Waits `base`, then twice that, and so on, capped at 30 s.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(5);
    (base * factor).min(Duration::from_secs(30))
}

/// What kind of failure a request error is. rustls's wording is the only handle on
/// certificate errors: reqwest has no typed one. hyper's error says whether the host
/// answered with something unreadable.
fn fault_of(err: &reqwest::Error, reason: &str) -> Fault {
    if err.is_redirect() {
        return Fault::Redirect;
    }
    match reason.split_once("invalid peer certificate: ") {
        Some((_, why))
            if why.starts_with("certificate expired")
                || why.starts_with("certificate not valid yet") =>
        {
            return Fault::ExpiredCertificate
        }
        Some((_, why)) if why.starts_with("certificate not valid for name") => {
            return Fault::WrongHostCertificate
        }
        Some(_) => return Fault::UntrustedCertificate,
        None => {}
    }
    // The host answered, but not in TLS, or in TLS this client cannot agree to (plain
    // HTTP on an https:// uri, an alert): reached, and the same every time. Before the
    // connect check, since the TLS handshake is part of connecting.
    if error_sources(err).any(|e| e.is::<rustls::Error>()) {
        return Fault::BadResponse;
    }
    if err.is_connect() {
        return Fault::Unreachable;
    }
    if error_sources(err).any(|e| {
        e.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_parse())
    }) {
        return Fault::BadResponse;
    }
    // The connection was made: a timeout waiting for the answer, a reset, a close.
    Fault::Interrupted
}

/// The sources of `err`, outermost first, looking inside each `io::Error` (whose
/// `source()` skips the error it wraps: hyper and rustls wrap theirs in one or two).
fn error_sources<'e>(
    err: &'e (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'e (dyn std::error::Error + 'static)> {
    std::iter::successors(err.source(), |e| {
        match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        }
    })
}

/// The client for every download of a run: the proxies of `proxies` (asked per request,
/// never reqwest's own env lookup), timeouts, no redirects (`follow` does them), and
/// the system trust store plus CF_SYSTEM_CERT_PATH.
fn build_client(net: &Network, proxies: &Arc<Proxies>, dependency: &str) -> Result<Client, Error> {
    let certs = extra_certificates(&net.cert_path);
    let mut b = builder(net, proxies);
    for (_, cert) in &certs {
        b = b.add_root_certificate(cert.clone());
    }
    let failed = match b.build() {
        Ok(client) => return Ok(client),
        Err(e) if certs.is_empty() => e,
        // A file that is PEM but not a usable CA certificate fails the whole client:
        // find it, say so, and trust the others.
        Err(_) => {
            let mut b = builder(net, proxies);
            for (path, cert) in certs {
                match builder(net, proxies)
                    .add_root_certificate(cert.clone())
                    .build()
                {
                    Ok(_) => b = b.add_root_certificate(cert),
                    Err(e) => warn!(
                        "not trusting a certificate in {}: {}",
                        shown(&path.display().to_string()),
                        describe_plain(&e)
                    ),
                }
            }
            match b.build() {
                Ok(client) => return Ok(client),
                Err(e) => e,
            }
        }
    };
    Err(Error::Download {
        dependency: dependency.to_string(),
        url: Redacted::str("(no request was made)"),
        attempts: 0,
        reason: format!("cannot set up TLS: {}", describe_plain(&failed)),
        fault: Fault::UntrustedCertificate,
        cert_path: Some(net.cert_path.clone()),
        proxy: None,
    })
}

fn builder(net: &Network, proxies: &Arc<Proxies>) -> ClientBuilder {
    let mut b = Client::builder()
        .no_proxy()
        .connect_timeout(net.connect_timeout)
        // Blocking reqwest applies this to each read, not the whole body: a stall
        // timeout, so a slow but moving download is never killed.
        .timeout(net.stall_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .user_agent(concat!("sidecar-buildpack/", env!("CARGO_PKG_VERSION")));
    if !proxies.is_empty() {
        let p = Arc::clone(proxies);
        b = b.proxy(reqwest::Proxy::custom(move |url| {
            p.for_url(url).map(|p| p.url.clone())
        }));
    }
    b
}

/// An error chain with no URL to scrub (client set-up).
fn describe_plain(err: &(dyn std::error::Error + 'static)) -> String {
    scrub_urls(&error_chain(err))
}

/// CA certificates from `CF_SYSTEM_CERT_PATH`, added to the system trust store.
fn extra_certificates(dir: &Path) -> Vec<(PathBuf, reqwest::Certificate)> {
    let Ok(entries) = fs::read_dir(dir) else {
        debug!(
            "no CA certificates added: {} is not a readable directory",
            dir.display()
        );
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    let mut certs = Vec::new();
    for p in paths {
        // Only regular files, capped: a FIFO or a link to /dev/zero there must not hang
        // or fill the staging.
        let pem = match read_text(&p, MAX_CERT_FILE_BYTES) {
            Ok(pem) => pem,
            Err(e) => {
                debug!("skipping {}: {e}", shown(&p.display().to_string()));
                continue;
            }
        };
        match reqwest::Certificate::from_pem_bundle(pem.as_bytes()) {
            Ok(found) if !found.is_empty() => {
                debug!(
                    "trusting {} certificate(s) from {}",
                    found.len(),
                    shown(&p.display().to_string())
                );
                certs.extend(found.into_iter().map(|c| (p.clone(), c)));
            }
            _ => debug!(
                "skipping {}: not a PEM certificate",
                shown(&p.display().to_string())
            ),
        }
    }
    certs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
