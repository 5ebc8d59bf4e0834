//! Every failure of the packager and the manifest tool, worded for the person running
//! them (a platform engineer at a checkout, or a release script), not for an app
//! developer reading a staging log: no `cf push -k`, no "reinstall the buildpack".
//! Exit codes are supply's (`buildpack::errors::exit`): 0 done, 1 internal,
//! 2 usage, 3 configuration (manifest.yml, a missing file, a bad argument value),
//! 4 artifact (download or checksum), 5 filesystem.

use buildpack::errors::{at, exit, Error, Explanation, Fault};
use std::io;
use std::path::PathBuf;

/// Failures only the packager and the tool can hit.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PackError {
    /// An `include_files` entry names a path outside the buildpack's root, or is not
    /// written as a plain relative path.
    #[error("{}: include_files entry {entry:?} {problem}{}", manifest.display(), at(*position))]
    IncludeOutside {
        manifest: PathBuf,
        entry: String,
        problem: &'static str,
        position: Option<(usize, usize)>,
    },
    /// An `include_files` entry names no file.
    #[error("{}: include_files lists {entry:?}, which is not a file at {}{}", manifest.display(), path.display(), at(*position))]
    IncludeMissing {
        manifest: PathBuf,
        entry: String,
        path: PathBuf,
        reason: String,
        position: Option<(usize, usize)>,
    },
    /// A local artifact given to the tool cannot be read.
    #[error("cannot read the artifact {}", path.display())]
    Artifact { path: PathBuf, reason: String },
    /// The directory `package dev` should create is in the way.
    #[error("{} already exists and is not an empty directory", path.display())]
    OutputInTheWay { path: PathBuf },
    /// `package get` was asked for a key it does not read.
    #[error("{0}")]
    Key(String),
    /// A dependency named on the command line is not in the manifest.
    #[error("{}: dependencies has no {name:?} (it has {})", manifest.display(), known.join(", "))]
    NoDependency {
        manifest: PathBuf,
        name: String,
        known: Vec<String>,
    },
    /// A command-line value that clap would echo whole (a uri may carry a secret).
    #[error("invalid value for {arg}: {problem}")]
    Argument { arg: &'static str, problem: String },
    /// A key is written in a way the tool will not edit in place (an alias, an anchor,
    /// a block scalar, a flow mapping, YAML its span parser reads otherwise).
    #[error("{}: `{key}` {why}{}", manifest.display(), at(*position))]
    Uneditable {
        manifest: PathBuf,
        key: String,
        why: String,
        position: Option<(usize, usize)>,
    },
    /// The change asked for would make manifest.yml larger than supply and Cloud
    /// Controller read.
    #[error("{}: {change} would make it {bytes} bytes, over the {limit}-byte limit of manifest.yml", manifest.display())]
    WouldBeTooLarge {
        manifest: PathBuf,
        change: &'static str,
        bytes: usize,
        limit: u64,
    },
    /// `package verify --all`: some pinned uris do not serve their pinned bytes (each
    /// failure was reported as it happened).
    #[error("{} of {total} pinned uris do not serve the pinned bytes: {}", failed.len(), failed.join(", "))]
    NotServed { failed: Vec<String>, total: usize },
    /// The change asked for would leave manifest.yml invalid.
    #[error("{}: {change} would make `{key}` invalid: {problem}", manifest.display())]
    WouldBreak {
        manifest: PathBuf,
        change: &'static str,
        key: String,
        problem: String,
    },
}

impl PackError {
    fn exit_code(&self) -> i32 {
        match self {
            PackError::Key(_) | PackError::Argument { .. } => exit::USAGE,
            PackError::NotServed { .. } => exit::ARTIFACT,
            _ => exit::CONFIG,
        }
    }

    fn explain(&self) -> Explanation {
        let (cause, fix, details) = match self {
            PackError::IncludeOutside { .. } => (
                "include_files names files relative to the buildpack's root, and the zip may \
                 only hold the buildpack's own files"
                    .into(),
                "list a plain relative path inside the buildpack, such as bin/supply (no \
                 leading '/' or './', no '..', no trailing '/', no symlink that leads out of it)"
                    .into(),
                vec![],
            ),
            PackError::IncludeMissing { reason, .. } => (
                "the checkout is missing a file that manifest.yml says the buildpack ships".into(),
                "restore the file (git status shows what is missing), or remove it from \
                 include_files"
                    .into(),
                vec![reason.clone()],
            ),
            PackError::Artifact { reason, .. } => (
                "the file given as NAME=FILE is not there or not readable".into(),
                "build the artifact first, or give the path of the file to pin".into(),
                vec![reason.clone()],
            ),
            PackError::OutputInTheWay { .. } => (
                "package dev creates its directory whole and never mixes it with other files"
                    .into(),
                "give --out a path that does not exist yet, or an empty directory".into(),
                vec![],
            ),
            PackError::NotServed { .. } => (
                "the release these pins name is not published where they point, or not with \
                 these bytes; stagings that download them (the uncached zip, the git URL) would \
                 fail"
                    .into(),
                "publish the release (scripts/build_and_upload.sh), or push with the cached zip \
                 (scripts/package --cached), which downloads nothing"
                    .into(),
                vec![],
            ),
            PackError::Key(_) => (
                "package get reads the keys it lists in `package get --help`".into(),
                "ask for one of those keys".into(),
                vec![],
            ),
            PackError::NoDependency { .. } => (
                "the name given on the command line is not a `dependencies` name in manifest.yml"
                    .into(),
                "use one of the names listed, or add the dependency first (package pin NAME \
                 --stack STACK ...)"
                    .into(),
                vec![],
            ),
            PackError::Argument { .. } => (
                "the command line has a value the tool cannot use".into(),
                "correct it (see --help) and run it again".into(),
                vec![],
            ),
            PackError::Uneditable { .. } => (
                "package changes a value in place, by its position in the file, and only where \
                 that changes nothing else; this one is written in a way it cannot edit so"
                    .into(),
                "nothing was written: write that key as a plain or quoted value (a list as \
                 [a, b] or one '- item' per line, without anchors or aliases), or make the \
                 change by hand and check it with `package get`"
                    .into(),
                vec![],
            ),
            PackError::WouldBeTooLarge { .. } => (
                "supply and `package get` refuse a manifest.yml over 1 MiB, and so does Cloud \
                 Controller: a buildpack carrying it would fail every staging"
                    .into(),
                "nothing was written: remove the dependencies and deprecation dates no longer \
                 needed (older versions, stacks no longer served) or long comments, then run it \
                 again"
                    .into(),
                vec![],
            ),
            PackError::WouldBreak { .. } => (
                "a value given on the command line is one manifest.yml cannot hold: supply would \
                 refuse the result"
                    .into(),
                "nothing was written: give a value the key accepts (the rule is above) and run \
                 it again"
                    .into(),
                vec![],
            ),
        };
        Explanation {
            cause,
            fix,
            details,
        }
    }
}

/// The packager's words for an error the library reports (the same values supply
/// reports during staging, where other advice applies).
fn explain(e: &Error) -> Explanation {
    let (cause, fix, details): (String, String, Vec<String>) = match e {
        Error::BuildpackFile { reason, .. } => (
            "a file of the buildpack's source (manifest.yml, VERSION, a --mirror file) is \
             missing or unreadable"
                .into(),
            "run the packager from a complete checkout (--root names it), or restore the file"
                .into(),
            vec![reason.clone()],
        ),
        Error::Version { .. } => (
            "VERSION names the release: it goes into the zip's file name, config.yml and the \
             staging log"
                .into(),
            buildpack::errors::VERSION_RULE.into(),
            vec![],
        ),
        Error::Manifest { .. } => (
            "manifest.yml has a value the buildpack cannot use".into(),
            "fix that key in manifest.yml (pins: with `package pin` or \
             scripts/build_and_upload.sh), then run the packager again"
                .into(),
            vec![],
        ),
        Error::Setting { name, accepted, .. } => (
            format!("{name} tunes downloads, for the packager as for staging"),
            format!("set {name} to {accepted} in this shell, or unset it"),
            vec![],
        ),
        // Only staging reads an app's pin: the packager has nothing to add.
        Error::NoPinnedVersion { .. } => return e.explain(),
        Error::UnsupportedStack { supported, .. } => (
            "manifest.yml has no build of this dependency for that stack".into(),
            format!(
                "package for a stack it has a build for (--stack {}), or pin a build for this \
                 stack first (package pin NAME --stack STACK ...)",
                supported.first().map_or("STACK", String::as_str)
            ),
            vec![format!(
                "stacks with a build of every sidecar: {}",
                supported.join(", ")
            )],
        ),
        Error::Directory { .. } => (
            "a directory given to the packager is unusable".into(),
            "give an existing directory".into(),
            vec![],
        ),
        Error::Download {
            attempts,
            reason,
            fault,
            proxy,
            ..
        } => {
            let cause = match fault {
                Fault::UntrustedCertificate => {
                    "the server's TLS certificate is not trusted by this machine"
                }
                Fault::ExpiredCertificate => "the server's TLS certificate has expired",
                Fault::WrongHostCertificate => {
                    "the server's TLS certificate is not valid for the host in the uri"
                }
                Fault::Redirect => {
                    "the server's redirects cannot be followed: a loop, more than 10, from https \
                     to http, or to a location that is not http(s)"
                }
                Fault::LocalFile => "the file:// uri names a file that is not on this machine",
                Fault::Unreachable => "the host in the uri could not be reached from this machine",
                Fault::Interrupted => {
                    "the host in the uri was reached, then broke off the download"
                }
                Fault::BadResponse => {
                    "the host in the uri answered with something that is not usable HTTP"
                }
            };
            let mut details = vec![
                format!("attempts: {attempts}"),
                format!("last error: {reason}"),
            ];
            if let Some(p) = proxy {
                details.push(format!("proxy: {p}"));
            }
            (
                cause.into(),
                "check this machine's network, proxy (https_proxy, no_proxy) and trusted CAs, or \
                 package from a directory that holds the file (scripts/package --mirror DIR)"
                    .into(),
                details,
            )
        }
        Error::HttpStatus {
            status, attempts, ..
        } => (
            match status {
                401 | 403 => "the server refused access to the uri",
                404 | 410 => "nothing is published at the uri",
                _ => "the server answered the uri with an error",
            }
            .into(),
            "publish the file there (scripts/build_and_upload.sh), fix the uri in manifest.yml, \
             or package from a directory that holds the file (--mirror DIR)"
                .into(),
            vec![format!("attempts: {attempts}")],
        ),
        Error::Checksum { error_page, .. } => (
            if *error_page {
                "the server sent an HTML or XML page instead of the file".into()
            } else {
                "these are not the bytes manifest.yml pins: another build, or a damaged copy".into()
            },
            "package only the pinned build: fix the mirror or the uri, or re-pin a build you \
             trust (scripts/build_and_upload.sh, or package pin)"
                .into(),
            e.checksum_details(),
        ),
        Error::Archive { .. } => (
            "the artifact is damaged, or was built wrongly".into(),
            "rebuild it (scripts/build-portable) and re-pin it".into(),
            vec![],
        ),
        Error::Write { source, .. } => (
            match source.kind() {
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                    "no space left on the device".to_string()
                }
                io::ErrorKind::ReadOnlyFilesystem => "the filesystem is read-only".to_string(),
                io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                _ => source.to_string(),
            },
            "free space on that filesystem or fix its permissions (or write elsewhere with \
             --output), then run it again; nothing was left half-written"
                .into(),
            vec![source.to_string()],
        ),
        Error::LaunchYml { .. } => (
            "this is a bug in the buildpack".into(),
            "report it with this output".into(),
            vec![],
        ),
        Error::TooLarge { .. } => (
            "the uri serves far more than a sidecar needs: a wrong uri, a file that never \
             ends, or a hostile server"
                .into(),
            "check the uri in manifest.yml; if the artifact really is that large, raise \
             SIDECAR_BUILDPACK_MAX_DOWNLOAD_MB in this shell"
                .into(),
            vec![],
        ),
    };
    Explanation {
        cause,
        fix,
        details,
    }
}

/// The exit code and the whole `**ERROR**` message for any error.
pub(crate) fn report(err: &anyhow::Error) -> (i32, String) {
    if let Some(e) = err.downcast_ref::<PackError>() {
        return (e.exit_code(), e.explain().render(&e.to_string()));
    }
    if let Some(e) = err.downcast_ref::<Error>() {
        return (e.exit_code(), explain(e).render(&e.to_string()));
    }
    (
        exit::INTERNAL,
        format!(
            "{err:#}\nCause: the message above names what failed\nTo fix: correct what it \
             names; if it is unclear, report it with this output"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use buildpack::redact::Redacted;

    /// One of every library error, as the packager can meet them.
    fn every_error() -> Vec<Error> {
        let sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .expect("sha");
        let url = Redacted::str("https://h/x.tgz");
        vec![
            Error::BuildpackFile {
                path: "/bp/VERSION".into(),
                reason: "gone".into(),
            },
            Error::Version {
                path: "/bp/VERSION".into(),
                value: "\"1/..\"".into(),
            },
            Error::Manifest {
                path: "/bp/manifest.yml".into(),
                key: "language".into(),
                problem: "bad".into(),
                position: None,
            },
            Error::Setting {
                name: "SIDECAR_BUILDPACK_STALL_TIMEOUT".into(),
                value: "x".into(),
                accepted: "1-3600".into(),
            },
            Error::UnsupportedStack {
                buildpack: "sidecar_buildpack".into(),
                dependency: "d".into(),
                version: "1".into(),
                stack: "s".into(),
                supported: vec!["cflinuxfs4".into()],
            },
            Error::Directory {
                name: "BUILD_DIR",
                path: "/x".into(),
                problem: "is missing".into(),
            },
            Error::Download {
                dependency: "d".into(),
                url: url.clone(),
                attempts: 4,
                reason: "refused".into(),
                fault: Fault::Unreachable,
                cert_path: None,
                proxy: None,
            },
            Error::HttpStatus {
                dependency: "d".into(),
                url: url.clone(),
                status: 404,
                attempts: 1,
            },
            Error::Checksum {
                dependency: "d".into(),
                origin: url,
                expected: sha,
                actual: sha,
                bytes: 1,
                error_page: false,
            },
            Error::Archive {
                dependency: "d".into(),
                entry: "e".into(),
                problem: "p".into(),
            },
            Error::TooLarge {
                dependency: "d".into(),
                origin: Redacted::str("https://h/a.tgz"),
                limit: 1 << 30,
            },
            Error::Write {
                path: "/out".into(),
                source: io::Error::from(io::ErrorKind::StorageFull),
            },
            Error::LaunchYml {
                path: "/x".into(),
                problem: "p".into(),
            },
        ]
    }

    #[test]
    fn no_staging_advice_reaches_the_person_packaging() {
        for e in every_error() {
            let (code, msg) = report(&anyhow::Error::new(e));
            assert_ne!(code, exit::INTERNAL + 100);
            for staging_only in [
                "cf push",
                "restage",
                "reinstall",
                "staging container",
                "app's disk quota",
                "cf set-env",
                "SIDECAR_BUILDPACK_DIR",
            ] {
                assert!(!msg.contains(staging_only), "{staging_only:?} in:\n{msg}");
            }
            assert!(
                msg.contains("\nCause: ") && msg.contains("\nTo fix: "),
                "{msg}"
            );
        }
    }

    #[test]
    fn a_full_disk_says_where_and_what_to_do() {
        let (code, msg) = report(&anyhow::Error::new(Error::Write {
            path: "/out/x.zip".into(),
            source: io::Error::from(io::ErrorKind::StorageFull),
        }));
        assert_eq!(code, exit::FILESYSTEM);
        assert!(
            msg.starts_with(
                "cannot write /out/x.zip\nCause: no space left on the device\nTo fix: free space"
            ),
            "{msg}"
        );
    }
}
