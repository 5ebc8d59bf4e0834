//! Getting an artifact and proving it is the one `manifest.yml` pins. Sources are
//! tried in order: the cached buildpack's `file:`, the app cache, the network. Bytes
//! are hashed while they stream into a temp file in the destination directory; the
//! caller only ever gets a file whose digest matched.

use crate::digest::{Sha256, STREAM_BUFFER};
use crate::errors::{Error, Fault};
use crate::manifest::{basename, Dependency};
use crate::redact::{scrub, scrub_urls, Redacted};
use crate::settings::Network;
use crate::{detail, digest::HashingWriter};
use reqwest::blocking::{Client, ClientBuilder};
use std::cell::OnceCell;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::NamedTempFile;
use tracing::{debug, warn};
use url::Url;

/// Where a verified artifact came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A `file:` entry of a cached buildpack: no network.
    CachedBuildpack(PathBuf),
    /// A copy kept in `CACHE_DIR` by an earlier staging.
    AppCache(PathBuf),
    /// Downloaded (`https://`, `http://` or `file://`).
    Network(Url),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::CachedBuildpack(p) => write!(f, "the cached buildpack ({})", p.display()),
            Origin::AppCache(p) => write!(f, "the app cache ({})", p.display()),
            Origin::Network(u) => write!(f, "{}", Redacted::url(u)),
        }
    }
}

/// An artifact whose sha256 matched, in a temp file that is deleted unless kept.
pub struct Verified {
    pub file: NamedTempFile,
    pub origin: Origin,
    pub bytes: u64,
}

/// Downloads over HTTP(S), with one client built on first use.
pub struct Fetcher<'a> {
    net: &'a Network,
    client: OnceCell<Client>,
}

/// Why streaming an artifact into place failed.
enum StreamError {
    /// Reading the source failed (for a download: worth another attempt).
    Read(String),
    /// Writing failed, or the digest did not match.
    Fatal(Box<Error>),
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

/// The error chain of a reqwest error, with the secrets of `url` and of any other URL
/// in it (a redirect's target) removed.
fn describe(err: &(dyn std::error::Error + 'static), url: &Url) -> String {
    scrub_urls(&scrub(&error_chain(err), url))
}

/// An error and its sources, each once, joined with `: `.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut src = err.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        src = s.source();
    }
    parts.join(": ")
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

/// Streams `src` into a temp file in `dest_dir`, hashing as it goes, and keeps it only
/// if the digest matches. No fsync: every reader verifies the digest again, so a file
/// torn by a crash is caught where it is used.
fn stream_verified(
    src: &mut dyn Read,
    dep: &Dependency,
    dest_dir: &Path,
    origin: Origin,
) -> Result<Verified, StreamError> {
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}-", dep.name))
        .suffix(".partial")
        .tempfile_in(dest_dir)
        .map_err(|e| StreamError::Fatal(Box::new(Error::write(dest_dir)(e))))?;
    let mut out = HashingWriter::new(io::BufWriter::with_capacity(STREAM_BUFFER, tmp));
    let mut buf = vec![0u8; STREAM_BUFFER];
    let mut head = Vec::new();
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let reason = match &origin {
                    Origin::Network(u) => describe(&e, u),
                    _ => e.to_string(),
                };
                return Err(StreamError::Read(format!(
                    "{reason} after {} bytes",
                    out.bytes()
                )));
            }
        };
        if head.len() < 512 {
            head.extend_from_slice(&buf[..n.min(512 - head.len())]);
        }
        out.write_all(&buf[..n])
            .map_err(|e| StreamError::Fatal(Box::new(Error::write(dest_dir)(e))))?;
    }
    let (actual, bytes, writer) = out.finish();
    let file = writer
        .into_inner()
        .map_err(|e| StreamError::Fatal(Box::new(Error::write(dest_dir)(e.into_error()))))?;
    if actual != dep.sha256 {
        let shown = match &origin {
            Origin::Network(u) => Redacted::url(u),
            other => Redacted::str(&other.to_string()),
        };
        return Err(StreamError::Fatal(Box::new(Error::Checksum {
            dependency: format!("{} {}", dep.name, dep.version),
            origin: shown,
            expected: dep.sha256,
            actual,
            bytes,
            error_page: looks_like_markup(&head),
        })));
    }
    Ok(Verified {
        file,
        origin,
        bytes,
    })
}

/// An HTML or XML body (an error page, a login form, an S3 `<Error>`).
fn looks_like_markup(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head)
        .trim_start()
        .to_ascii_lowercase();
    ["<!doctype", "<html", "<?xml", "<error", "<head", "<body"]
        .iter()
        .any(|p| text.starts_with(p))
}

/// The copy of one artifact an earlier staging left in `CACHE_DIR`, at
/// `sidecar-buildpack/dependencies/<sha256>/<file name>`. Every directory on that way is
/// checked to be a real one: a symlink planted there could make the cache read, write
/// or prune somewhere else.
pub struct AppCache {
    cache_dir: PathBuf,
}

const CACHE_DIRS: [&str; 2] = ["sidecar-buildpack", "dependencies"];
/// A `.partial` left in the cache this long ago belongs to no live staging: a store
/// takes a hard link or one copy.
const STALE_AFTER: Duration = Duration::from_secs(3600);

impl AppCache {
    pub fn new(cache_dir: &Path) -> Self {
        AppCache {
            cache_dir: cache_dir.to_path_buf(),
        }
    }

    /// Entries are keyed by digest, so a new pin never reads an old file.
    pub fn entry(&self, dep: &Dependency) -> PathBuf {
        let mut p = self.cache_dir.clone();
        p.extend(CACHE_DIRS);
        p.push(dep.sha256.to_string());
        p.push(entry_name(dep));
        p
    }

    /// The entry, if it is a regular file reached through real directories only.
    fn hit(&self, dep: &Dependency) -> Option<PathBuf> {
        let sha = dep.sha256.to_string();
        let dir = real_dirs(
            &self.cache_dir,
            &[CACHE_DIRS[0], CACHE_DIRS[1], &sha],
            false,
        )
        .ok()?;
        let entry = dir.join(entry_name(dep));
        fs::symlink_metadata(&entry)
            .is_ok_and(|m| m.is_file())
            .then_some(entry)
    }

    /// Keeps a verified artifact for the next staging. Best effort: failures warn.
    pub fn store(&self, dep: &Dependency, verified: &Path) {
        let entry = self.entry(dep);
        let result = (|| -> io::Result<()> {
            let sha = dep.sha256.to_string();
            let dir = real_dirs(&self.cache_dir, &[CACHE_DIRS[0], CACHE_DIRS[1], &sha], true)?;
            sweep_stale(&dir);
            let tmp = tempfile::Builder::new()
                .prefix(".store-")
                .suffix(".partial")
                .tempfile_in(&dir)?;
            let tmp_path = tmp.into_temp_path();
            fs::remove_file(&tmp_path)?;
            // A hard link costs nothing; other filesystems get a copy.
            if fs::hard_link(verified, &tmp_path).is_err() {
                fs::copy(verified, &tmp_path)?;
            }
            // A directory where the file belongs would stop the rename.
            if fs::symlink_metadata(&entry).is_ok_and(|m| m.is_dir()) {
                fs::remove_dir_all(&entry)?;
            }
            // Rename is atomic, and replaces a file or symlink there without following
            // it: a concurrent staging sees the old file or the new one.
            tmp_path.persist(&entry).map_err(|e| e.error)?;
            Ok(())
        })();
        match result {
            Ok(()) => detail!("Kept a copy in the app cache for the next staging"),
            Err(e) => warn!(
                "could not keep a copy in the app cache {}: {e}; the next staging downloads again",
                entry.display()
            ),
        }
    }

    /// Removes entries of other digests, so the cache holds only what is in use.
    pub fn prune(&self, keep: &[Sha256]) {
        let Ok(root) = real_dirs(&self.cache_dir, &CACHE_DIRS, false) else {
            return;
        };
        let Ok(entries) = fs::read_dir(&root) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !keep.iter().any(|k| k.to_string() == name) {
                let p = e.path();
                let res = if p.is_dir() && !p.is_symlink() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                if res.is_ok() {
                    debug!("pruned {} from the app cache", p.display());
                }
            }
        }
    }
}

fn entry_name(dep: &Dependency) -> String {
    basename(&dep.uri).unwrap_or_else(|| dep.name.clone())
}

/// `base/a/b/...` as real directories, never through a symlink. With `create`, a
/// missing one is made and a file or symlink in the way is replaced; without, either
/// is an error. `base` itself is taken as given (CF's choice of path).
fn real_dirs(base: &Path, names: &[&str], create: bool) -> io::Result<PathBuf> {
    let mut path = base.to_path_buf();
    for name in names {
        path.push(name);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) if create => fs::remove_file(&path)?,
            Err(e) if create && e.kind() == io::ErrorKind::NotFound => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", path.display()),
                ))
            }
            Err(e) => return Err(e),
        }
        match fs::create_dir(&path) {
            // Another staging sharing the cache made it first.
            Err(e)
                if e.kind() == io::ErrorKind::AlreadyExists
                    && fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) => {}
            other => other?,
        }
    }
    Ok(path)
}

/// Removes our temp files (`.partial`) older than `STALE_AFTER` from `dir`: what a
/// staging killed half-way left behind.
fn sweep_stale(dir: &Path) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_AFTER));
        if name.starts_with('.')
            && name.ends_with(".partial")
            && stale
            && fs::remove_file(e.path()).is_ok()
        {
            debug!("removed the stale {}", e.path().display());
        }
    }
}

/// Removes whatever is at `path` if it is not a real directory (a file, a symlink),
/// so that creating the directory never follows a link out of place.
pub fn replace_non_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn report_verified(dep: &Dependency, v: &Verified) {
    detail!(
        "Verified sha256 {} ({} bytes) from {}",
        dep.sha256,
        v.bytes,
        v.origin
    );
}

/// Tries the sources in order and returns the first verified artifact.
pub fn obtain(
    fetcher: &Fetcher<'_>,
    dep: &Dependency,
    buildpack_dir: &Path,
    cache: &AppCache,
    dest_dir: &Path,
) -> Result<Verified, Error> {
    if let Some(file) = dep.file.as_deref().filter(|f| !f.is_empty()) {
        let path = buildpack_dir.join(file);
        detail!("Using the copy in the cached buildpack: {file}");
        let verified = copy_verified(&path, dep, dest_dir).map_err(|e| match e {
            Error::BuildpackFile { path, reason } => Error::BuildpackFile {
                path,
                reason: format!("{reason} (manifest.yml's file: entry for {})", dep.name),
            },
            other => other,
        })?;
        report_verified(dep, &verified);
        return Ok(verified);
    }

    let hit = cache
        .hit(dep)
        .and_then(|entry| File::open(&entry).ok().map(|f| (entry, f)));
    if let Some((entry, mut src)) = hit {
        match stream_verified(&mut src, dep, dest_dir, Origin::AppCache(entry.clone())) {
            Ok(v) => {
                detail!("Using the copy in the app cache");
                report_verified(dep, &v);
                return Ok(v);
            }
            Err(StreamError::Fatal(e)) if matches!(*e, Error::Write { .. }) => return Err(*e),
            Err(_) => {
                warn!(
                    "the app cache's copy of {} {} is corrupt; dropping it and downloading again",
                    dep.name, dep.version
                );
                if let Err(e) = fs::remove_file(&entry) {
                    warn!("could not remove {}: {e}", entry.display());
                }
            }
        }
    }

    let verified = fetcher.download(dep, dest_dir)?;
    report_verified(dep, &verified);
    cache.store(dep, verified.file.path());
    Ok(verified)
}

/// Copies a local file into a temp file in `dest_dir` if its digest matches `dep`.
/// The packager uses it for local builds and mirrors.
pub fn copy_verified(path: &Path, dep: &Dependency, dest_dir: &Path) -> Result<Verified, Error> {
    let mut src = File::open(path).map_err(|e| Error::BuildpackFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    stream_verified(
        &mut src,
        dep,
        dest_dir,
        Origin::CachedBuildpack(path.to_path_buf()),
    )
    .map_err(|e| match e {
        StreamError::Fatal(e) => *e,
        StreamError::Read(reason) => Error::BuildpackFile {
            path: path.to_path_buf(),
            reason,
        },
    })
}
