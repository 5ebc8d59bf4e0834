//! `package verify`: fetches a uri the way staging does (same client, proxies, CAs,
//! timeouts and retries), hashing while it streams, and succeeds only if it serves the
//! pinned bytes. The release checks each published uri with it before pinning.

use buildpack::digest::Sha256;
use buildpack::download::download;
use buildpack::manifest::{parse_uri, Dependency};
use buildpack::settings::Env;
use buildpack::transport::Fetcher;
use buildpack::{detail, step};
use std::collections::HashMap;

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
