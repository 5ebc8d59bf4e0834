//! The HTTP(S) transport: one client per run with explicit proxies, the system trust
//! store plus CF_SYSTEM_CERT_PATH, a connect and a stall timeout, a redirect policy, and
//! bounded retries with backoff. Each failure is classed as worth retrying or final.

use crate::detail;
use crate::errors::{Error, Fault};
use crate::manifest::Dependency;
use crate::redact::{describe, error_chain, scrub_urls, Redacted};
use crate::settings::Network;
use crate::verify::{stream_verified, Origin, StreamError, Verified};
use reqwest::blocking::{Client, ClientBuilder};
use std::cell::OnceCell;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::{debug, warn};
use url::Url;

/// Downloads over HTTP(S), with one client built on first use.
pub struct Fetcher<'a> {
    net: &'a Network,
    client: OnceCell<Client>,
}

/// How one download attempt ended, when it did not succeed.
enum Failed {
    /// Worth another attempt: connect error, timeout, reset, truncation, 5xx, 429.
    Transient(String),
    /// Final: the same answer every time (a certificate, a redirect loop).
    Final(Fault, String),
    /// Final: any other HTTP status.
    Status(u16),
    /// Final: a typed error (disk full, checksum mismatch).
    Fatal(Box<Error>),
}

impl<'a> Fetcher<'a> {
    pub fn new(net: &'a Network) -> Self {
        Fetcher {
            net,
            client: OnceCell::new(),
        }
    }

    fn client(&self, dependency: &str) -> Result<&Client, Error> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let client = build_client(self.net, dependency)?;
        Ok(self.client.get_or_init(|| client))
    }

    /// Fetches `dep` from its `uri` into a temp file in `dest_dir`, retrying transient
    /// failures, and verifies it.
    pub fn download(&self, dep: &Dependency, dest_dir: &Path) -> Result<Verified, Error> {
        let url = &dep.uri;
        let shown = Redacted::url(url);
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
            let mut src = File::open(&path).map_err(|e| local(e.to_string()))?;
            return stream_verified(&mut src, dep, dest_dir, Origin::Network(url.clone())).map_err(
                |e| match e {
                    StreamError::Fatal(e) => *e,
                    StreamError::Read(reason) => local(reason),
                },
            );
        }

        detail!("Downloading {shown}");
        let client = self.client(&dep.name)?;
        let attempts = self.net.attempts;
        let mut last = String::new();
        for attempt in 1..=attempts {
            match self.attempt(client, dep, dest_dir) {
                Ok(v) => return Ok(v),
                Err(Failed::Fatal(e)) => return Err(*e),
                Err(Failed::Final(fault, reason)) => {
                    return Err(self.download_error(dep, attempt, reason, fault))
                }
                Err(Failed::Status(status)) if status != 429 && status < 500 => {
                    return Err(Error::HttpStatus {
                        dependency: dep.name.clone(),
                        url: shown,
                        status,
                        attempts: attempt,
                    })
                }
                Err(Failed::Status(status)) => last = format!("HTTP {status}"),
                Err(Failed::Transient(reason)) => last = reason,
            }
            if attempt < attempts {
                let wait = backoff(self.net.retry_delay, attempt);
                warn!(
                    "attempt {attempt} of {attempts} failed ({last}); retrying in {:.1}s",
                    wait.as_secs_f64()
                );
                std::thread::sleep(wait);
            }
        }
        if let Some(status) = last.strip_prefix("HTTP ").and_then(|s| s.parse().ok()) {
            return Err(Error::HttpStatus {
                dependency: dep.name.clone(),
                url: shown,
                status,
                attempts,
            });
        }
        Err(self.download_error(dep, attempts, last, Fault::Network))
    }

    fn download_error(
        &self,
        dep: &Dependency,
        attempts: u32,
        reason: String,
        fault: Fault,
    ) -> Error {
        Error::Download {
            dependency: dep.name.clone(),
            url: Redacted::url(&dep.uri),
            attempts,
            reason,
            fault,
            cert_path: Some(self.net.cert_path.clone()),
            proxy: self.proxy_for(&dep.uri).map(|p| Redacted::str(&p)),
        }
    }

    /// The proxy a request to `url` goes through, for messages.
    fn proxy_for(&self, url: &Url) -> Option<String> {
        let p = match url.scheme() {
            "https" => self.net.https_proxy.as_ref(),
            _ => self.net.http_proxy.as_ref(),
        }?;
        let host = url.host_str().unwrap_or_default();
        let bypass = self.net.no_proxy.as_ref().is_some_and(|np| {
            np.value.split(',').map(str::trim).any(|e| {
                e == "*"
                    || (!e.is_empty()
                        && (host == e.trim_start_matches('.')
                            || host.ends_with(&format!(".{}", e.trim_start_matches('.')))))
            })
        });
        (!bypass).then(|| p.value.clone())
    }

    fn attempt(
        &self,
        client: &Client,
        dep: &Dependency,
        dest_dir: &Path,
    ) -> Result<Verified, Failed> {
        let url = &dep.uri;
        let mut resp = client.get(url.clone()).send().map_err(|e| {
            let reason = describe(&e, url);
            let fault = fault_of(&e, &reason);
            if fault.is_transient() {
                Failed::Transient(reason)
            } else {
                Failed::Final(fault, reason)
            }
        })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Failed::Status(status.as_u16()));
        }
        debug!(
            "HTTP {} from {}, content-length {:?}",
            status.as_u16(),
            Redacted::url(resp.url()),
            resp.content_length()
        );
        stream_verified(&mut resp, dep, dest_dir, Origin::Network(url.clone())).map_err(|e| match e
        {
            StreamError::Read(reason) => Failed::Transient(reason),
            StreamError::Fatal(e) => Failed::Fatal(e),
        })
    }
}

/// Waits `base`, then twice that, and so on, capped at 30 s.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(5);
    (base * factor).min(Duration::from_secs(30))
}

/// What kind of failure a request error is. rustls's wording is the only handle on
/// certificate errors: reqwest has no typed one.
fn fault_of(err: &reqwest::Error, reason: &str) -> Fault {
    if err.is_redirect() {
        return Fault::Redirect;
    }
    match reason.split_once("invalid peer certificate: ") {
        None => Fault::Network,
        Some((_, why))
            if why.starts_with("certificate expired")
                || why.starts_with("certificate not valid yet") =>
        {
            Fault::ExpiredCertificate
        }
        Some((_, why)) if why.starts_with("certificate not valid for name") => {
            Fault::WrongHostCertificate
        }
        Some(_) => Fault::UntrustedCertificate,
    }
}

/// The client for every download of a run: explicit proxies (from `Network`, not
/// reqwest's own env lookup), timeouts, the redirect policy, and the system trust store
/// plus CF_SYSTEM_CERT_PATH.
fn build_client(net: &Network, dependency: &str) -> Result<Client, Error> {
    let certs = extra_certificates(&net.cert_path);
    let mut b = builder(net)?;
    for (_, cert) in &certs {
        b = b.add_root_certificate(cert.clone());
    }
    let failed = match b.build() {
        Ok(client) => return Ok(client),
        Err(e) if certs.is_empty() => e,
        // A file that is PEM but not a usable CA certificate fails the whole client:
        // find it, say so, and trust the others.
        Err(_) => {
            let mut b = builder(net)?;
            for (path, cert) in certs {
                match builder(net)?.add_root_certificate(cert.clone()).build() {
                    Ok(_) => b = b.add_root_certificate(cert),
                    Err(e) => warn!(
                        "not trusting a certificate in {}: {}",
                        path.display(),
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

fn builder(net: &Network) -> Result<ClientBuilder, Error> {
    let redirect = reqwest::redirect::Policy::custom(|attempt| {
        let first_https = attempt.previous().first().map(|u| u.scheme()) == Some("https");
        if attempt.previous().len() > 10 {
            attempt.error("more than 10 redirects")
        } else if attempt.previous().contains(attempt.url()) {
            attempt.error("redirect loop")
        } else if first_https && attempt.url().scheme() == "http" {
            attempt.error("refusing a redirect from https to http")
        } else {
            attempt.follow()
        }
    });
    let mut b = Client::builder()
        .no_proxy()
        .connect_timeout(net.connect_timeout)
        // Blocking reqwest applies this to each read, not the whole body: a stall
        // timeout, so a slow but moving download is never killed.
        .timeout(net.stall_timeout)
        .redirect(redirect)
        .user_agent(concat!("sidecar-buildpack/", env!("CARGO_PKG_VERSION")));
    let no_proxy = net
        .no_proxy
        .as_ref()
        .and_then(|np| reqwest::NoProxy::from_string(&np.value));
    for (setting, https) in [(&net.https_proxy, true), (&net.http_proxy, false)] {
        if let Some(p) = setting {
            let proxy = if https {
                reqwest::Proxy::https(p.value.as_str())
            } else {
                reqwest::Proxy::http(p.value.as_str())
            };
            let proxy = proxy.map_err(|_| Error::Setting {
                name: p.var.clone(),
                value: Redacted::str(&p.value).to_string(),
                accepted: "a proxy URL such as http://proxy.example:3128".into(),
            })?;
            b = b.proxy(proxy.no_proxy(no_proxy.clone()));
        }
    }
    Ok(b)
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
        match fs::read(&p).map(|pem| reqwest::Certificate::from_pem_bundle(&pem)) {
            Ok(Ok(found)) if !found.is_empty() => {
                debug!(
                    "trusting {} certificate(s) from {}",
                    found.len(),
                    p.display()
                );
                certs.extend(found.into_iter().map(|c| (p.clone(), c)));
            }
            _ => debug!("skipping {}: not a PEM certificate", p.display()),
        }
    }
    certs
}
