//! One artifact from its uri, verified: the step that wires the transport (which gives
//! bytes) to verification (which consumes them), and owns the retries. Neither of the
//! two calls the other or this module; data flows down one way.

use crate::detail;
use crate::errors::{Error, Fault};
use crate::manifest::Dependency;
use crate::redact::{remember_url, shown, Redacted};
use crate::transport::{backoff, At, Failed, Fetcher};
use crate::verify::{
    copy_local, stream_verified, Limits, LocalError, Origin, StreamError, Verified,
};
use std::path::Path;
use tracing::warn;

/// Fetches `dep` from its `uri` into a temp file in `dest_dir`, retrying transient
/// failures, and verifies it.
///
/// # Errors
///
/// A typed [`Error`]: the download failed on every attempt, or for good (a
/// certificate, an HTTP error status, a redirect refused), or the bytes are not the
/// pinned ones, over the cap, or could not be written.
pub fn download(
    fetcher: &Fetcher<'_>,
    dep: &Dependency,
    dest_dir: &Path,
) -> Result<Verified, Error> {
    let url = &dep.uri;
    remember_url(url);
    let limits = Limits::of(fetcher.network());
    if url.scheme() == "file" {
        return copy_file_uri(dep, dest_dir, limits);
    }
    detail!("Downloading {}", Redacted::url(url));
    let attempts = fetcher.network().attempts;
    let mut last = Failed::Transient(Fault::Unreachable, String::new(), at_uri(dep));
    for attempt in 1..=attempts {
        let failed = match attempt_once(fetcher, dep, dest_dir, limits) {
            Ok(verified) => return Ok(verified),
            Err(failed) => failed,
        };
        let asked = match &failed {
            Failed::Fatal(_) | Failed::Final(..) => {
                return Err(give_up(fetcher, dep, attempt, failed))
            }
            Failed::Status(code, _, _) if *code != 429 && *code < 500 => {
                return Err(give_up(fetcher, dep, attempt, failed))
            }
            Failed::Status(_, asked, _) => *asked,
            Failed::Transient(..) => None,
        };
        if attempt < attempts {
            let (wait, why) = wait_before_retry(fetcher, attempt, asked);
            warn!(
                "attempt {attempt} of {attempts} failed ({}); retrying in {:.1}s{why}",
                shown(&summary(&failed)),
                wait.as_secs_f64()
            );
            std::thread::sleep(wait);
        }
        last = failed;
    }
    Err(give_up(fetcher, dep, attempts, last))
}

/// One request and the verification of its body.
fn attempt_once(
    fetcher: &Fetcher<'_>,
    dep: &Dependency,
    dest_dir: &Path,
    limits: Limits,
) -> Result<Verified, Failed> {
    let mut body = fetcher.get(&dep.uri, &dep.name)?;
    // Refused from its announced length, before a byte is written.
    if body.content_length().is_some_and(|n| n > limits.max_bytes) {
        return Err(Failed::Fatal(Box::new(too_large(dep, &dep.uri, limits))));
    }
    let at = body.at.clone();
    let origin = Origin::Network(dep.uri.clone());
    stream_verified(&mut body, dep, dest_dir, origin, limits.max_bytes).map_err(|e| match e {
        StreamError::Read(reason) => Failed::Transient(Fault::Interrupted, reason, at),
        StreamError::TooLarge => Failed::Fatal(Box::new(too_large(dep, &dep.uri, limits))),
        StreamError::Fatal(e) => Failed::Fatal(e),
    })
}

/// The wait before the next attempt, and why it is that long when the server asked.
fn wait_before_retry(
    fetcher: &Fetcher<'_>,
    attempt: u32,
    asked: Option<std::time::Duration>,
) -> (std::time::Duration, String) {
    let net = fetcher.network();
    let wait = backoff(net.retry_delay, attempt);
    let Some(asked) = asked else {
        return (wait, String::new());
    };
    let honoured = asked.min(net.max_retry_after);
    let capped = if honoured < asked {
        format!(
            "; waiting at most SIDECAR_BUILDPACK_MAX_RETRY_AFTER = {} s",
            net.max_retry_after.as_secs()
        )
    } else {
        String::new()
    };
    (
        wait.max(honoured),
        format!(
            " (the server asked for {} s with Retry-After{capped})",
            asked.as_secs()
        ),
    )
}

/// What a retry warning says of a failed attempt.
fn summary(failed: &Failed) -> String {
    match failed {
        Failed::Status(code, ..) => format!("HTTP {code}"),
        Failed::Transient(_, reason, _) | Failed::Final(_, reason, _) => reason.clone(),
        Failed::Fatal(e) => e.to_string(),
    }
}

/// The error for the last failure, after `attempts` attempts.
fn give_up(fetcher: &Fetcher<'_>, dep: &Dependency, attempts: u32, failed: Failed) -> Error {
    let (fault, reason, at) = match failed {
        Failed::Fatal(e) => return *e,
        Failed::Status(status, _, at) => {
            fetcher.say_proxy(&at.url);
            return Error::HttpStatus {
                dependency: dep.name.clone(),
                url: Redacted::url(&dep.uri),
                status,
                attempts,
            };
        }
        Failed::Transient(fault, reason, at) | Failed::Final(fault, reason, at) => {
            (fault, reason, at)
        }
    };
    // Where it failed, when a redirect led elsewhere.
    let reason = if at.redirected {
        format!(
            "{reason} (at {}, redirected from the uri)",
            Redacted::url(&at.url)
        )
    } else {
        reason
    };
    Error::Download {
        dependency: dep.name.clone(),
        url: Redacted::url(&dep.uri),
        attempts,
        reason,
        fault,
        cert_path: Some(fetcher.network().cert_path.clone()),
        proxy: fetcher.proxy_for(&at.url).map(|(proxy, _)| proxy),
    }
}

fn at_uri(dep: &Dependency) -> At {
    At {
        url: dep.uri.clone(),
        redirected: false,
    }
}

/// A `file://` uri: a local copy, verified, with the same limits as a download.
fn copy_file_uri(dep: &Dependency, dest_dir: &Path, limits: Limits) -> Result<Verified, Error> {
    let url = &dep.uri;
    let shown = Redacted::url(url);
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
    copy_local(&path, dep, dest_dir, origin, limits).map_err(|e| match e {
        LocalError::Fatal(e) => *e,
        LocalError::TooLarge => too_large(dep, url, limits),
        LocalError::Unusable(reason) | LocalError::Read(reason) => local(reason),
    })
}

fn too_large(dep: &Dependency, url: &url::Url, limits: Limits) -> Error {
    Error::TooLarge {
        dependency: dep.id(),
        origin: Redacted::url(url),
        limit: limits.max_bytes,
    }
}
