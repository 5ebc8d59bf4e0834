//! Every failure a user can act on, worded in one place: what failed, the likely
//! cause, what to do, and the details. Also the exit codes, which the tests assert.

use crate::digest::Sha256;
use crate::redact::Redacted;
use std::io;
use std::path::PathBuf;

/// Exit codes of `supply` (and the packager). CF only looks at zero or non-zero
/// (any non-zero fails staging with exit 225); the codes tell tests and operators apart.
pub mod exit {
    /// Staged.
    pub const OK: i32 = 0;
    /// A bug: an error the buildpack has no wording for.
    pub const INTERNAL: i32 = 1;
    /// Wrong command line (clap's own code for usage errors).
    pub const USAGE: i32 = 2;
    /// Bad configuration: `manifest.yml`, an env setting, the stack, the directories.
    pub const CONFIG: i32 = 3;
    /// The artifact could not be fetched, failed its checksum, or is a bad archive.
    pub const ARTIFACT: i32 = 4;
    /// The droplet or cache could not be written (permissions, no space).
    pub const FILESYSTEM: i32 = 5;
}

/// An error a user acts on. Plumbing errors are `anyhow` with context instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of the buildpack itself (`manifest.yml`, `VERSION`) is missing or unreadable.
    #[error("cannot read the buildpack file {}", path.display())]
    BuildpackFile { path: PathBuf, reason: String },
    /// The buildpack's `VERSION` is not one version: it names the zip, and goes into
    /// config.yml and the staging log.
    #[error("{} holds {value}, which is not a version", path.display())]
    Version {
        path: PathBuf,
        /// The value as it may be shown: quoted, escaped, cut (`redact::quoted`).
        value: String,
    },
    /// The buildpack's `manifest.yml` has a bad value.
    #[error("{}: `{key}` {problem}{}", path.display(), at(*position))]
    Manifest {
        path: PathBuf,
        key: String,
        problem: String,
        /// The line and column (1-based) of what `key` names in the file, where known:
        /// its value, or the key itself when the key is what is wrong (unknown, or
        /// written twice).
        position: Option<(usize, usize)>,
    },
    /// An env setting has a value outside its accepted form.
    #[error("{name} is set to {value}, which is not valid")]
    Setting {
        name: String,
        /// The value as it may be shown: quoted, escaped, cut (`redact::quoted`).
        value: String,
        accepted: String,
    },
    /// `CF_STACK` names a stack that a sidecar's dependency has no build for.
    #[error("{dependency} {version} does not support the stack {stack}")]
    UnsupportedStack {
        /// `<language>_buildpack`, as operators know it.
        buildpack: String,
        dependency: String,
        version: String,
        /// As it may be shown: quoted, escaped, cut (`redact::quoted`).
        stack: String,
        /// The stacks the buildpack stages on (`Manifest::stacks`).
        supported: Vec<String>,
    },
    /// The app pins its sidecar (`SIDECAR_BUILDPACK_<SIDECAR>_VERSION`) to versions this
    /// buildpack does not carry for the app's stack.
    #[error("{var} is set to {value}, and no {dependency} version this buildpack carries{} matches it", stack.as_ref().map(|s| format!(" for the stack {s}")).unwrap_or_default())]
    NoPinnedVersion {
        var: String,
        /// As it may be shown: quoted, escaped, cut (`redact::quoted`).
        value: String,
        dependency: String,
        /// As it may be shown; `None` on a local run without `CF_STACK`.
        stack: Option<String>,
        /// The versions carried for that stack, lowest first.
        available: Vec<String>,
    },
    /// A staging directory given on the command line is unusable.
    #[error("{name} {} {problem}", path.display())]
    Directory {
        name: &'static str,
        path: PathBuf,
        problem: String,
    },
    /// The download failed without an HTTP answer we could act on.
    #[error("could not download {dependency} from {url}")]
    Download {
        dependency: String,
        url: Redacted,
        attempts: u32,
        reason: String,
        fault: Fault,
        cert_path: Option<PathBuf>,
        proxy: Option<Redacted>,
    },
    /// The server answered with an HTTP error status.
    #[error("downloading {dependency} from {url} failed with HTTP {status}")]
    HttpStatus {
        dependency: String,
        url: Redacted,
        status: u16,
        attempts: u32,
    },
    /// What was fetched is not what `manifest.yml` pins.
    #[error("checksum mismatch for {dependency} from {origin}")]
    Checksum {
        dependency: String,
        origin: Redacted,
        expected: Sha256,
        actual: Sha256,
        bytes: u64,
        error_page: bool,
    },
    /// The artifact is an archive with an entry that is unsafe or wrong.
    #[error("the {dependency} archive is unusable: entry {entry} {problem}")]
    Archive {
        dependency: String,
        /// The entry's name as it may be shown: quoted, escaped, cut (`redact::quoted`).
        entry: String,
        problem: String,
    },
    /// The artifact has more bytes than the download cap allows.
    #[error("{dependency} from {origin} is larger than the download cap of {} MB", limit >> 20)]
    TooLarge {
        dependency: String,
        origin: Redacted,
        limit: u64,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}", path.display())]
    Write { path: PathBuf, source: io::Error },
    /// The `launch.yml` just written would not pass CF's parser: a bug.
    #[error("{} would be rejected by Cloud Foundry: {problem}", path.display())]
    LaunchYml { path: PathBuf, problem: String },
}

/// What `VERSION` must hold, for both tools' advice.
pub const VERSION_RULE: &str = "write one version in VERSION, such as 1.2.3: 1-64 letters, \
                                digits, '.', '-', '_', '+' or '~', starting with a letter or \
                                digit (it names the zip and is printed in the staging log)";

/// Who sets an env setting: what the error tells the user to change depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// An app env var for this buildpack (`SIDECAR_BUILDPACK_CONFIG_SERVER_*`).
    App,
    /// Usually the operator's staging environment variable group: the proxies and the
    /// download knobs.
    Operator,
    /// Set by Cloud Foundry itself (`MEMORY_LIMIT`): only a local run gets it wrong.
    Platform,
}

/// What went wrong with a download that got no HTTP status, as far as can be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No connection at all: refused, no route, no such host, a connect timeout.
    Unreachable,
    /// The host answered, then the transfer broke off: a reset, a body shorter than
    /// announced, no byte for the stall timeout.
    Interrupted,
    /// The host answered with something that is not usable HTTP or TLS (a head too
    /// large to read, a malformed response, plain HTTP or a TLS alert to a TLS client):
    /// the same answer every time.
    BadResponse,
    /// The server's certificate chains to no CA this machine trusts.
    UntrustedCertificate,
    /// The server's certificate has expired or is not valid yet.
    ExpiredCertificate,
    /// The server's certificate names other hosts than the URL's.
    WrongHostCertificate,
    /// A redirect loop, more than 10 redirects, a redirect from https to http or to a
    /// location that is not http(s).
    Redirect,
    /// A `file://` URI that cannot be read.
    LocalFile,
}

impl Fault {
    /// Only a connection that failed or broke off can go away by trying again.
    pub fn is_transient(self) -> bool {
        matches!(self, Fault::Unreachable | Fault::Interrupted)
    }
}

/// The parts of an `**ERROR**` block beyond its first line.
pub struct Explanation {
    pub cause: String,
    pub fix: String,
    pub details: Vec<String>,
}

impl Explanation {
    fn new(cause: impl Into<String>, fix: impl Into<String>, details: Vec<String>) -> Self {
        Explanation {
            cause: cause.into(),
            fix: fix.into(),
            details,
        }
    }

    /// The text of an `**ERROR**` block: `headline`, then the cause, the fix and the
    /// details (the packager words its own explanations and renders them the same way).
    pub fn render(&self, headline: &str) -> String {
        let mut msg = format!("{headline}\nCause: {}\nTo fix: {}", self.cause, self.fix);
        for d in &self.details {
            msg.push_str("\n  ");
            msg.push_str(d);
        }
        msg
    }
}

impl Error {
    /// For a checksum mismatch, the detail lines both tools print: the pinned and the
    /// received sha256, and how many bytes came.
    pub fn checksum_details(&self) -> Vec<String> {
        match self {
            Error::Checksum {
                expected,
                actual,
                bytes,
                ..
            } => vec![
                format!("expected sha256: {expected}"),
                format!("actual sha256:   {actual}"),
                format!("bytes received:  {bytes}"),
            ],
            _ => Vec::new(),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::BuildpackFile { .. }
            | Error::Version { .. }
            | Error::Manifest { .. }
            | Error::Setting { .. }
            | Error::UnsupportedStack { .. }
            | Error::NoPinnedVersion { .. }
            | Error::Directory { .. } => exit::CONFIG,
            Error::Download { .. }
            | Error::HttpStatus { .. }
            | Error::Checksum { .. }
            | Error::Archive { .. }
            | Error::TooLarge { .. } => exit::ARTIFACT,
            Error::Write { .. } => exit::FILESYSTEM,
            Error::LaunchYml { .. } => exit::INTERNAL,
        }
    }

    pub fn explain(&self) -> Explanation {
        match self {
            Error::BuildpackFile { reason, .. } => Explanation::new(
                "the buildpack is incomplete: it carries manifest.yml and VERSION at its root",
                "reinstall the buildpack from a packaged zip, or set SIDECAR_BUILDPACK_DIR to a \
                 directory that holds manifest.yml",
                vec![reason.clone()],
            ),
            Error::Version { .. } => Explanation::new(
                "the buildpack's VERSION was edited by hand or packaged from a broken commit",
                format!("{VERSION_RULE}; then package the buildpack again"),
                vec![],
            ),
            Error::Manifest { .. } => Explanation::new(
                "the buildpack's manifest.yml was edited by hand or packaged from a broken commit",
                "fix that key in manifest.yml and package the buildpack again",
                vec![],
            ),
            Error::Setting { accepted, name, .. } => explain_setting(name, accepted),
            Error::UnsupportedStack {
                buildpack,
                stack,
                supported,
                ..
            } => explain_stack(buildpack, stack, supported),
            Error::NoPinnedVersion { var, available, .. } => {
                explain_no_pinned_version(var, available)
            }
            Error::Directory {
                name: "DEPS_IDX", ..
            } => Explanation::new(
                "Cloud Foundry passes the buildpack's position in the app's buildpack list as \
                 DEPS_IDX (0, or 00, 01 ... once the app has 10 or more buildpacks); a local run \
                 passed something else",
                "pass the index as digits, such as 0",
                vec![],
            ),
            Error::Directory { .. } => Explanation::new(
                "Cloud Foundry calls bin/supply BUILD_DIR CACHE_DIR DEPS_DIR DEPS_IDX with \
                 directories it has made (CACHE_DIR may be missing); a local run passed something \
                 else",
                "pass an existing app directory as BUILD_DIR, an existing directory (or a new one \
                 in an existing directory) as DEPS_DIR, and a directory or a path that does not \
                 exist yet as CACHE_DIR",
                vec![],
            ),
            Error::Download {
                attempts,
                reason,
                fault,
                cert_path,
                proxy,
                ..
            } => explain_download(
                *attempts,
                reason,
                *fault,
                cert_path.as_ref(),
                proxy.as_ref(),
            ),
            Error::HttpStatus {
                status, attempts, ..
            } => explain_http_status(*status, *attempts),
            Error::Checksum {
                error_page, origin, ..
            } => {
                let cause = if *error_page {
                    "the server sent an HTML or XML page (an error page or a login form) instead \
                     of the file"
                } else {
                    "the file changed after it was pinned, or it was corrupted on the way"
                };
                // A file:// pin is a local build (`package dev`, which scripts/stage-local
                // runs): a rebuild changes the file, and the fix is to lay it out again.
                let fix = if origin.to_string().starts_with("file://") {
                    "if this is a development buildpack (package dev, which scripts/stage-local \
                     runs), the local build changed after it was made: make it again with \
                     package dev, or run scripts/stage-local; otherwise do not use this file, \
                     and re-pin only a file you built or trust"
                } else {
                    "do not use this file; check the uri and sha256 in the buildpack's \
                     manifest.yml, and re-pin only a file you built or trust"
                };
                Explanation::new(cause, fix, self.checksum_details())
            }
            Error::Archive { .. } => Explanation::new(
                "the artifact is damaged, or was built wrongly or maliciously",
                "rebuild the artifact with scripts/build_and_upload.sh and re-pin it",
                vec![],
            ),
            Error::TooLarge { .. } => Explanation::new(
                "the source holds far more than a sidecar needs: a wrong uri, a file that \
                 never ends, or a hostile server",
                "check the uri in the buildpack's manifest.yml; if the artifact really is \
                 that large, raise SIDECAR_BUILDPACK_MAX_DOWNLOAD_MB in the staging environment",
                vec![],
            ),
            Error::Write { source, .. } => explain_write(source),
            Error::LaunchYml { .. } => Explanation::new(
                "this is a bug in the buildpack",
                "report it with the staging log (BP_DEBUG=1 adds detail)",
                vec![],
            ),
        }
    }

    /// Wraps an io error on `path` as a user-facing write error.
    pub fn write(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Write { path, source }
    }
}

/// ` at line L column C`, the way errors about a place in a file end (nothing when the
/// place is not known).
pub fn at(position: Option<(usize, usize)>) -> String {
    position.map_or_else(String::new, |(l, c)| format!(" at line {l} column {c}"))
}

/// Who sets an env setting decides what to tell: an app's own knob, the operator's
/// staging group, or a variable CF sets itself.
fn explain_setting(name: &str, accepted: &str) -> Explanation {
    match crate::settings::scope_of(name) {
        Scope::App => Explanation::new(
            format!("{name} is an app env var that tunes this buildpack at staging"),
            format!(
                "set {name} to {accepted} (cf set-env APP {name} VALUE, or the app \
                 manifest's env:), or unset it, then restage"
            ),
            vec![],
        ),
        Scope::Operator => Explanation::new(
            format!(
                "{name} comes from the staging environment variable group (set by \
                 the platform operator) or from the app's env"
            ),
            format!(
                "set {name} to {accepted}, or unset it: cf \
                 set-staging-environment-variable-group for all apps, or cf set-env \
                 APP {name} VALUE for one; then restage"
            ),
            vec![],
        ),
        Scope::Platform => Explanation::new(
            format!(
                "Cloud Foundry sets {name} itself; this value was set by hand or by \
                 a local tool"
            ),
            format!("unset {name}, or set it to {accepted}"),
            vec![],
        ),
    }
}

fn explain_stack(buildpack: &str, stack: &str, supported: &[String]) -> Explanation {
    Explanation::new(
        format!("this release of {buildpack} has no build for the app's stack"),
        format!(
            "use a release of {buildpack} that supports the stack {stack} (the platform \
             team installs it with cf update-buildpack), or push the app on a stack \
             this release supports (cf push -s {})",
            supported.last().map_or("STACK", String::as_str)
        ),
        vec![format!(
            "stacks this release supports: {}",
            if supported.is_empty() {
                "none (its sidecars have no stack in common)".to_string()
            } else {
                supported.join(", ")
            }
        )],
    )
}

/// A per-app pin (`SIDECAR_BUILDPACK_<SIDECAR>_VERSION`) that no build matches.
fn explain_no_pinned_version(var: &str, available: &[String]) -> Explanation {
    Explanation::new(
        format!(
            "{var} is an app env var that holds the sidecar at versions this buildpack \
             carries; this release of the buildpack has none that the value matches"
        ),
        format!(
            "set {var} to one of the versions below or a range that holds one (such \
             as 0.2.x or ~0.2), or unset it to take the buildpack's default; then \
             restage"
        ),
        vec![format!(
            "versions available: {}",
            if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            }
        )],
    )
}

/// A download that failed for good: what its fault says about the host, the proxy and
/// the trust store, and what to do.
fn explain_download(
    attempts: u32,
    reason: &str,
    fault: Fault,
    cert_path: Option<&PathBuf>,
    proxy: Option<&Redacted>,
) -> Explanation {
    let mut details = vec![
        format!("attempts: {attempts}"),
        format!("last error: {}", crate::redact::shown(reason)),
    ];
    if let Some(p) = proxy {
        details.push(format!("proxy: {p}"));
    }
    let cert_path = cert_path
        .as_ref()
        .map_or_else(|| "unset".into(), |p| p.display().to_string());
    let (cause, fix) = match fault {
        Fault::UntrustedCertificate => (
            "the server's TLS certificate is not trusted, often because a corporate \
             proxy re-signs traffic"
                .to_string(),
            format!(
                "install the issuing CA in the stack's trust store or in \
                 CF_SYSTEM_CERT_PATH (now {cert_path}), or mirror the file on a host \
                 with a trusted certificate"
            ),
        ),
        Fault::ExpiredCertificate => (
            "the server's TLS certificate has expired or is not valid yet (or the \
             staging cell's clock is wrong)"
                .to_string(),
            "renew the server's certificate, or point manifest.yml's uri at a host \
             with a valid one"
                .to_string(),
        ),
        Fault::WrongHostCertificate => (
            "the server's TLS certificate is not valid for the host in the URL".into(),
            "use a host name the certificate names in manifest.yml's uri, or fix the \
             server's certificate"
                .into(),
        ),
        Fault::Redirect => (
            "the server redirected in a loop, more than 10 times, from https to http, \
             or to a location that is not http(s) such as file://, which is refused"
                .into(),
            "point manifest.yml's uri at the file's final https location".into(),
        ),
        Fault::BadResponse => (
            "the host was reached, but its answer is not usable HTTP or TLS (for \
             example, plain HTTP on an https:// uri, a TLS version or cipher this \
             client does not share, or headers too large to read); it gives the \
             same answer every time"
                .into(),
            "check what answers at that uri from staging (a proxy or a misconfigured \
             server), point the uri at a plain file server, or use the cached \
             buildpack"
                .into(),
        ),
        Fault::Interrupted => (
            "the host was reached, but the download broke off on every attempt (a \
             reset connection, a body shorter than announced, or no byte for the \
             stall timeout)"
                .into(),
            "check the network path to the host (proxies, load balancers); raise \
             SIDECAR_BUILDPACK_STALL_TIMEOUT for a slow link, or use the cached \
             buildpack"
                .into(),
        ),
        Fault::LocalFile => (
            "the file:// uri names no regular file that can be read on this machine".into(),
            "mount the mirror on the stack, or use an https:// uri".into(),
        ),
        Fault::Unreachable if proxy.is_some() => (
            "the proxy or the release host could not be reached".to_string(),
            "check http_proxy, https_proxy and no_proxy in the staging environment \
             group, or use the cached buildpack on foundations without internet"
                .to_string(),
        ),
        Fault::Unreachable => (
            "the release host could not be reached from the staging container".to_string(),
            "check the foundation's egress and proxy settings (http_proxy, \
             https_proxy, no_proxy), or use the cached buildpack, which needs no \
             network"
                .to_string(),
        ),
    };
    Explanation::new(cause, fix, details)
}

fn explain_http_status(status: u16, attempts: u32) -> Explanation {
    let cause = match status {
        407 => {
            "the proxy asks for credentials, and the proxy setting has none or wrong \
             ones"
        }
        401 | 403 => {
            "the server refused access: the URL may need credentials or may have \
             expired"
        }
        404 | 410 => {
            "the file is not at that URL: the release was not uploaded, or \
             manifest.yml points at the wrong place"
        }
        429 => "the server is rate-limiting downloads",
        _ if status >= 500 => "the server had an error on every attempt",
        _ => "the server refused the request",
    };
    let fix = if status == 407 {
        "put the proxy's user and password in https_proxy / http_proxy in the \
         staging environment group, as http://user:password@proxy:port \
         (percent-encode any '@', ':', '/', '?' or '#' in them)"
    } else {
        "check that the uri in the buildpack's manifest.yml is reachable from \
         staging, or use the cached buildpack"
    };
    Explanation::new(cause, fix, vec![format!("attempts: {attempts}")])
}

fn explain_write(source: &io::Error) -> Explanation {
    // By kind, not errno: tempfile wraps its errors with the path, which
    // keeps the kind but drops the raw OS code.
    let cause = match source.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            "no space left on the device".to_string()
        }
        io::ErrorKind::ReadOnlyFilesystem => "the filesystem is read-only".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => source.to_string(),
    };
    Explanation::new(
        cause,
        "free space or fix permissions on that path; on Cloud Foundry, raise the \
         app's disk quota (cf push -k) and restage",
        vec![source.to_string()],
    )
}

/// The whole `**ERROR**` message for any error: typed errors get their explanation,
/// others their context chain.
pub fn report(err: &anyhow::Error) -> (i32, String) {
    match err.downcast_ref::<Error>() {
        Some(e) => (e.exit_code(), e.explain().render(&e.to_string())),
        None => (
            exit::INTERNAL,
            format!(
                "{err:#}\nCause: the message above names what failed\nTo fix: correct what it names; \
                 if it is unclear or persists, report it with this output (BP_DEBUG=1 adds detail)"
            ),
        ),
    }
}
