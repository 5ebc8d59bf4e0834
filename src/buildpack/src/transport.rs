//! The HTTP(S) transport: one client per run with explicit proxies, the system trust
//! store plus CF_SYSTEM_CERT_PATH, a connect and a stall timeout, and redirects
//! followed by this code (so no header of one hop, `Referer` included, reaches the
//! next host). It gives bytes: [`Fetcher::get`] answers a [`Body`] to read, or a
//! [`Failed`] classed as worth retrying or final, by what it says about the host. It
//! knows nothing of digests or manifests: `download` wires it to `verify`, and owns
//! the retries (with the backoff and `Retry-After` rules here).

use crate::detail;
use crate::errors::{Error, Fault};
use crate::fsutil::read_text;
use crate::proxy::Proxies;
use crate::redact::{describe, error_chain, scrub_urls, shown, Redacted};
use crate::settings::Network;
use reqwest::blocking::{Client, ClientBuilder, Response};
use reqwest::header::{LOCATION, RETRY_AFTER};
use std::cell::OnceCell;
use std::fs;
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll, Waker};
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

/// Where a request ended up: the URL that answered (or failed), and whether a redirect
/// led there. Tracked here, not read back from the response: reqwest moves a URL's
/// user-info into a header and drops it from the URL it reports.
#[derive(Debug, Clone)]
pub struct At {
    pub url: Url,
    pub redirected: bool,
}

/// How one download attempt ended, when it did not succeed.
#[derive(Debug)]
pub enum Failed {
    /// No connection, or it broke off (`fault` says which): worth another attempt.
    Transient(Fault, String, At),
    /// Final: the same answer every time (a certificate, a redirect loop, bad HTTP).
    Final(Fault, String, At),
    /// An HTTP error status, with the wait a 429 or 503 asked for, and where it
    /// answered.
    Status(u16, Option<Duration>, At),
    /// Final: a typed error (no TLS set-up, disk full, checksum mismatch, over the cap).
    Fatal(Box<Error>),
}

/// A successful response's body, to read once.
pub struct Body {
    resp: Response,
    pub at: At,
}

impl Body {
    /// The length the server announced, if it did.
    #[must_use]
    pub fn content_length(&self) -> Option<u64> {
        self.resp.content_length()
    }
}

impl std::io::Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.resp.read(buf)
    }
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

    /// The settings this fetcher was made with.
    #[must_use]
    pub fn network(&self) -> &Network {
        self.net
    }

    /// One GET of `url`, redirects followed: the body of a 2xx answer, or why not.
    /// `dependency` names what is fetched in an error about setting up TLS.
    ///
    /// # Errors
    ///
    /// [`Failed`], classed by what it says about the host.
    pub fn get(&self, url: &Url, dependency: &str) -> Result<Body, Failed> {
        let (client, _) = self
            .client(dependency)
            .map_err(|e| Failed::Fatal(Box::new(e)))?;
        let (resp, at) = follow(client, url)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Failed::Status(status.as_u16(), retry_after(&resp), at));
        }
        debug!(
            "HTTP {} from {}, content-length {:?}",
            status.as_u16(),
            Redacted::url(&at.url),
            resp.content_length()
        );
        Ok(Body { resp, at })
    }

    /// The proxy a request to `url` goes through, redacted, with the variable that set
    /// it; `None` before the first request or when it goes direct.
    #[must_use]
    pub fn proxy_for(&self, url: &Url) -> Option<(Redacted, String)> {
        let (_, proxies) = self.client.get()?;
        proxies
            .for_url(url)
            .map(|p| (Redacted::url(&p.url), p.var.clone()))
    }

    /// Says which proxy a request that got an HTTP error went through: the proxy may be
    /// the one that answered (a 407, or its own 403 or 502).
    pub fn say_proxy(&self, at: &Url) {
        if let Some((proxy, var)) = self.proxy_for(at) {
            detail!("The request went through the proxy {proxy} ({var})");
        }
    }
}

/// GETs `start`, following redirects here rather than in the client: each hop is a
/// fresh request, so no header of an earlier one (Authorization from user-info,
/// Proxy-Authorization, a Referer naming the presigned URL) can reach another host.
fn follow(client: &Client, start: &Url) -> Result<(Response, At), Failed> {
    let first_https = start.scheme() == "https";
    let mut url = start.clone();
    let mut seen: Vec<Url> = Vec::new();
    loop {
        let at = At {
            url: url.clone(),
            redirected: !seen.is_empty(),
        };
        let resp = match client.get(url.clone()).send() {
            Ok(resp) => resp,
            Err(e) => return Err(request_failed(&e, at)),
        };
        let status = resp.status();
        if !status.is_redirection() {
            return Ok((resp, at));
        }
        let refuse = |why: String| Failed::Final(Fault::Redirect, why, at.clone());
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
        // A redirect target's secrets are the server's choice: they are hidden where the
        // target is printed (`Redacted`, `describe`), never scrubbed from every line by
        // value (a password such as "Installed" would rewrite the staging log).
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

/// A request that got no response, classed. A failed lookup says so in its own words;
/// the reason never repeats a long URL's middle (the error around it names the URL).
fn request_failed(err: &reqwest::Error, at: At) -> Failed {
    if let Some(lookup) = error_sources(err).find_map(|e| e.downcast_ref::<LookupFailed>()) {
        return Failed::Transient(Fault::Unreachable, lookup.to_string(), at);
    }
    if proxy_refused(err) {
        return Failed::Status(407, None, at);
    }
    // reqwest's own line is "error sending request for url (URL)": the URL is said
    // once, by the error around this reason, so only the causes below it are kept.
    let reason = match std::error::Error::source(err) {
        Some(cause) => describe(cause, &at.url),
        None => describe(err, &at.url),
    };
    let fault = fault_of(err);
    if fault.is_transient() {
        Failed::Transient(fault, reason, at)
    } else {
        Failed::Final(fault, reason, at)
    }
}

/// The proxy answered CONNECT with 407: an HTTP status like any other. hyper-util's
/// tunnel error is not a public type, so its wording is the only handle here; should it
/// change, the failure is still reported as a connection failure naming the proxy.
fn proxy_refused(err: &reqwest::Error) -> bool {
    error_sources(err).any(|e| e.to_string().ends_with("proxy authorization required"))
}

/// A name lookup that found nothing: typed, so that [`request_failed`] tells it from
/// other connect errors by its type, not by any library's wording.
#[derive(Debug)]
struct LookupFailed {
    host: String,
}

impl std::fmt::Display for LookupFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "could not resolve host {}", shown(&self.host))
    }
}

impl std::error::Error for LookupFailed {}

/// The system's resolver (getaddrinfo, as reqwest's own uses), on a thread per lookup
/// so that the connect timeout still ends a lookup that hangs; a failure is a
/// [`LookupFailed`].
struct SystemResolver;

impl reqwest::dns::Resolve for SystemResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(Lookup::start(name.as_str().to_string()))
    }
}

/// One lookup in flight: its thread fills the state and wakes the task that waits.
struct Lookup {
    host: String,
    state: Arc<Mutex<LookupState>>,
}

#[derive(Default)]
struct LookupState {
    done: bool,
    found: Option<Vec<SocketAddr>>,
    waker: Option<Waker>,
}

impl Lookup {
    fn start(host: String) -> Self {
        let state = Arc::new(Mutex::new(LookupState::default()));
        let shared = Arc::clone(&state);
        let name = host.clone();
        std::thread::spawn(move || {
            let found = (name.as_str(), 0)
                .to_socket_addrs()
                .ok()
                .map(Iterator::collect::<Vec<_>>)
                .filter(|addrs| !addrs.is_empty());
            let mut st = shared.lock().unwrap_or_else(PoisonError::into_inner);
            st.found = found;
            st.done = true;
            if let Some(waker) = st.waker.take() {
                waker.wake();
            }
        });
        Lookup { host, state }
    }
}

impl Future for Lookup {
    type Output = Result<reqwest::dns::Addrs, Box<dyn std::error::Error + Send + Sync>>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !st.done {
            st.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(match st.found.take() {
            Some(addrs) => Ok(Box::new(addrs.into_iter())),
            None => Err(Box::new(LookupFailed {
                host: self.host.clone(),
            })),
        })
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
#[must_use]
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(5);
    (base * factor).min(Duration::from_secs(30))
}

/// What kind of failure a request error is, from the types in its chain: rustls's
/// certificate errors, hyper's parse errors, reqwest's own kinds.
fn fault_of(err: &reqwest::Error) -> Fault {
    use rustls::CertificateError as C;
    if err.is_redirect() {
        return Fault::Redirect;
    }
    match error_sources(err).find_map(|e| e.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        )) => return Fault::ExpiredCertificate,
        Some(rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        )) => return Fault::WrongHostCertificate,
        Some(rustls::Error::InvalidCertificate(_)) => return Fault::UntrustedCertificate,
        // The host answered, but not in TLS, or in TLS this client cannot agree to
        // (plain HTTP on an https:// uri, an alert): reached, and the same every time.
        // Before the connect check, since the TLS handshake is part of connecting.
        Some(_) => return Fault::BadResponse,
        None => {}
    }
    if err.is_connect() {
        return Fault::Unreachable;
    }
    if error_sources(err).any(|e| {
        e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse)
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
        .dns_resolver(Arc::new(SystemResolver))
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
