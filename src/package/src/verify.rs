//! `package verify`: fetches a uri the way staging does (same client, proxies, CAs,
//! timeouts and retries), hashing while it streams, and succeeds only if it serves the
//! pinned bytes. The release checks each published uri with it before pinning.

use crate::errors::PackError;
use buildpack::digest::Sha256;
use buildpack::download::download;
use buildpack::errors::Error;
use buildpack::manifest::{parse_uri, Dependency, Manifest};
use buildpack::settings::Env;
use buildpack::transport::Fetcher;
use buildpack::{detail, step};
use std::collections::HashMap;
use std::path::Path;

/// Checks that `uri` serves `sha256`; `name` and `version` are for the messages.
pub(crate) fn run(
    name: &str,
    version: &str,
    uri: &str,
    sha256: Sha256,
    env: &HashMap<String, String>,
) -> anyhow::Result<()> {
    // Messages say "<name> <version>"; a uri from the command line has no version.
    let version = if version.is_empty() {
        "(--uri)"
    } else {
        version
    };
    let dep = Dependency {
        name: name.to_string(),
        version: version.to_string(),
        uri: parse_uri(uri).map_err(|e| anyhow::anyhow!("{uri}: {e}"))?,
        uri_text: uri.to_string(),
        sha256,
        cf_stacks: Vec::new(),
        file: None,
    };
    let net = Env(env).network()?;
    step!("Checking {name} {version}");
    let scratch = tempfile::tempdir()?;
    let verified = download(&Fetcher::new(&net), &dep, scratch.path())?;
    detail!(
        "Verified sha256 {} ({} bytes) from {}",
        sha256,
        verified.bytes,
        verified.origin
    );
    Ok(())
}

/// `package verify --all`: every build of every dependency in `manifest`, then the
/// prebuilt supply that `bin/supply.lock` beside it pins for the git-URL route. Each
/// failure is reported as it happens and the next pin is still checked, so one run
/// tells an operator everything a push would meet.
pub(crate) fn all(manifest: &Path, env: &HashMap<String, String>) -> anyhow::Result<()> {
    let m = Manifest::parse(&crate::zip::read(manifest)?, manifest)?;
    let mut pins: Vec<(String, String, String, Sha256)> = m
        .dependencies
        .iter()
        .map(|d| {
            (
                d.name.clone(),
                d.version.clone(),
                d.uri_text.clone(),
                d.sha256,
            )
        })
        .collect();
    let lock = manifest
        .parent()
        .unwrap_or(Path::new("."))
        .join("bin/supply.lock");
    if lock.exists() {
        let (uri, sha256) = supply_lock(&lock)?;
        pins.push(("supply".into(), "(bin/supply.lock)".into(), uri, sha256));
    }
    let mut failed = Vec::new();
    for (name, version, uri, sha256) in &pins {
        if let Err(e) = run(name, version, uri, *sha256, env) {
            let (_, msg) = crate::errors::report(&e);
            tracing::error!("{msg}");
            failed.push(format!("{name} {version}"));
        }
    }
    if failed.is_empty() {
        step!("Every pinned uri serves its pinned bytes ({})", pins.len());
        Ok(())
    } else {
        Err(PackError::NotServed {
            failed,
            total: pins.len(),
        }
        .into())
    }
}

/// The `url=` and `sha256=` lines of `bin/supply.lock` (scripts/build_and_upload.sh
/// writes it; bin/supply, a sh script, reads it the same way).
fn supply_lock(path: &Path) -> anyhow::Result<(String, Sha256)> {
    let bad = |problem: String| Error::BuildpackFile {
        path: path.to_path_buf(),
        reason: problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .map(str::trim)
            .ok_or_else(|| bad(format!("has no {key}= line")))
    };
    let uri = value("url")?.to_string();
    let sha256 = value("sha256")?
        .parse::<Sha256>()
        .map_err(|e| bad(format!("sha256: {e}")))?;
    Ok((uri, sha256))
}
