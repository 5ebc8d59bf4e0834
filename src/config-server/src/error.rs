//! Every way the sidecar can fail, worded for whoever reads `cf logs`, and the
//! exit code each failure maps to.
//!
//! Messages name the variable to fix and never quote configuration content:
//! parse errors carry a line and column only, because serde's own messages
//! can echo the offending value (which may be a secret).
//!
//! # Exit codes
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | stopped by SIGTERM or SIGINT (connections drained, log flushed) |
//! | 1    | the runtime or a signal handler could not be set up, or the open-files limit is too low to run |
//! | 2    | a bad setting: `CONFIG_SERVER_PORT` not a number from 1 to 65535 or equal to `PORT`, another `CONFIG_SERVER_*` knob out of its range, a bad `CONFIG_SERVER_RENDER`, or a token that is empty, unreadable or world-readable |
//! | 3    | configuration not loadable at startup: `CONFIG_SERVER_FILE`, `CONFIG_SERVER_SERVICE`, `SERVICE_BINDING_ROOT`, `VCAP_SERVICES_FILE_PATH` or `VCAP_SERVICES` is wrong |
//! | 4    | cannot listen on `127.0.0.1:CONFIG_SERVER_PORT` (port in use, or not allowed) |
//! | 5    | a file of `CONFIG_SERVER_RENDER` could not be written at startup (its key missing, a value its format cannot carry, the disk) |
//!
//! Cloud Foundry restarts the whole app instance whenever a sidecar exits, so a
//! non-zero code shows up as a crash loop; the last `error:` line says why. A
//! configuration that breaks while the sidecar runs is not an exit: the reload
//! is refused with a warning and the last good document stays served.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::parse::ParseError;

/// The runtime or a signal handler could not be set up (or the open-files
/// limit leaves no room to).
pub const EXIT_INTERNAL: u8 = 1;
/// `CONFIG_SERVER_PORT` or another knob is unusable.
pub const EXIT_SETTING: u8 = 2;
/// The configuration could not be loaded.
pub const EXIT_CONFIG: u8 = 3;
/// The listening socket could not be opened.
pub const EXIT_LISTEN: u8 = 4;
/// A file of `CONFIG_SERVER_RENDER` could not be written at startup.
pub const EXIT_RENDER: u8 = 5;

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `CONFIG_SERVER_PORT` is not a decimal number from 1 to 65535.
    #[error("CONFIG_SERVER_PORT={value:?} is not a port number from 1 to 65535")]
    InvalidPort { value: String },

    /// `CONFIG_SERVER_PORT` equals `PORT`, where the app itself must listen.
    #[error(
        "CONFIG_SERVER_PORT={port} is the app's own PORT: give the sidecar another port \
         in the app's manifest env"
    )]
    PortIsAppPort { port: u16 },

    /// `CONFIG_SERVER_PORT` is unset and `PORT` is the default port.
    #[error(
        "CONFIG_SERVER_PORT is not set, and its default {port} is the app's own PORT: set \
         CONFIG_SERVER_PORT to another port in the app's manifest env"
    )]
    DefaultPortIsAppPort { port: u16 },

    /// A `CONFIG_SERVER_*` knob is not a whole number in its range.
    #[error("{name}={value:?} is not valid: expected {accepted}")]
    InvalidSetting {
        name: &'static str,
        value: String,
        accepted: String,
    },

    /// `CONFIG_SERVER_RENDER` is not a list of good entries.
    #[error("CONFIG_SERVER_RENDER is not valid: {problem}")]
    InvalidRender { problem: String },

    /// A file of `CONFIG_SERVER_RENDER` could not be written at startup.
    #[error("{name}: cannot render it at startup: {problem}")]
    RenderFailed { name: String, problem: String },

    /// The token (`CONFIG_SERVER_TOKEN` or `CONFIG_SERVER_TOKEN_FILE`) is unusable.
    #[error("{setting}: {problem}")]
    InvalidToken { setting: String, problem: String },

    /// The configuration file could not be opened or read.
    #[error("CONFIG_SERVER_FILE={}: cannot read it", path.display())]
    FileUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The configuration file is a directory, a device or a pipe.
    #[error("CONFIG_SERVER_FILE={}: not a regular file", path.display())]
    FileNotRegular { path: PathBuf },

    /// Someone other than the app could change the configuration file.
    #[error("CONFIG_SERVER_FILE={}: refusing to read it: {problem}", path.display())]
    FileUnsafe { path: PathBuf, problem: Unsafe },

    /// A configuration source is over `source::MAX_SOURCE_BYTES` (1 MiB).
    #[error(
        "{what}: refusing to read it: {size} bytes, over the limit of {} bytes (1 MiB) \
         for a configuration source",
        crate::source::MAX_SOURCE_BYTES
    )]
    TooBig { what: String, size: String },

    /// The configuration file does not parse, or holds what JSON cannot carry.
    #[error("CONFIG_SERVER_FILE={}: {error}", path.display())]
    FileParse { path: PathBuf, error: ParseError },

    /// The configuration file parses, but its top level is not a mapping.
    #[error("CONFIG_SERVER_FILE={}: the top level must be a mapping of keys to values", path.display())]
    FileNotMapping { path: PathBuf },

    /// A bindings file or directory, or a file in it, could not be read.
    #[error("{origin}: cannot read {}", it_or(origin, path))]
    BindingsUnreadable {
        origin: Bindings,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// An entry of a `SERVICE_BINDING_ROOT` tree is unusable.
    #[error("{origin}: {}: {problem}", path.display())]
    BindingEntry {
        origin: Bindings,
        path: PathBuf,
        problem: &'static str,
    },

    /// `VCAP_SERVICES` (or the file) is not JSON, or not shaped like `VCAP_SERVICES`.
    #[error("{origin}: {problem} ({at})")]
    BindingsInvalid {
        origin: Bindings,
        problem: &'static str,
        at: Position,
    },

    /// `CONFIG_SERVER_SERVICE` names a service instance that is not bound to the app.
    #[error(
        "CONFIG_SERVER_SERVICE={name:?}: no service instance of that name is bound to the app \
         (looked in {looked})"
    )]
    ServiceNotBound { name: String, looked: String },

    /// More than one binding of one source is tagged or typed `config-server`.
    #[error(
        "{count} bound service instances are tagged config-server or of type config-server \
         ({names}) in {origin}: set CONFIG_SERVER_SERVICE to the name of the one to use"
    )]
    AmbiguousTag {
        count: usize,
        names: String,
        origin: Bindings,
    },

    /// The chosen instance's credentials hold what a configuration file may not.
    #[error("service instance {name:?} in {origin}: its credentials: {error}")]
    CredentialsInvalid {
        name: String,
        origin: Bindings,
        error: Box<ParseError>,
    },

    /// The chosen instance's credentials hold a CredHub reference the platform did
    /// not resolve (CF never does in file-based bindings).
    #[error(
        "service instance {name:?} in {origin}: its credentials are a CredHub reference \
         (credhub-ref) that the platform did not resolve, not the secret itself; Cloud \
         Foundry resolves them in VCAP_SERVICES only, and not in file-based bindings \
         (SERVICE_BINDING_ROOT, VCAP_SERVICES_FILE_PATH): turn the app feature off (cf \
         disable-feature-for-app APP service-binding-k8s or file-based-vcap-services) and \
         restart, or bind a service whose credentials are not stored in CredHub"
    )]
    CredhubRefUnresolved { name: String, origin: Bindings },

    /// The chosen instance has no `credentials` object.
    #[error(
        "service instance {name:?} in {origin}: its credentials are missing or not a JSON object"
    )]
    NoCredentials { name: String, origin: Bindings },

    /// The files changed while they were read, every time they were read.
    #[error(
        "{what}: the files changed while they were being read, {tries} times in a row; \
         write them in one step (a rename, or Kubernetes' ..data swap)"
    )]
    KeptChanging { what: String, tries: usize },

    /// The listening socket could not be opened.
    #[error("cannot listen on 127.0.0.1:{port} (CONFIG_SERVER_PORT)")]
    Listen {
        port: u16,
        #[source]
        source: io::Error,
    },

    /// The tokio runtime could not be built.
    #[error("cannot start the async runtime")]
    Runtime(#[source] io::Error),

    /// The limit of open files leaves no room to run, let alone serve.
    #[error(
        "the limit of open files (ulimit -n) is {limit}: config-server needs at least {} \
         (its runtime, signals, the listener, a configuration file and a client); raise it",
        crate::conn::MIN_OPEN_FILES
    )]
    TooFewFiles { limit: u64 },

    /// A signal handler could not be installed.
    #[error("cannot install the {signal} handler")]
    Signal {
        signal: &'static str,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The process exit code for this error (see the module docs).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::InvalidPort { .. }
            | Self::PortIsAppPort { .. }
            | Self::DefaultPortIsAppPort { .. }
            | Self::InvalidSetting { .. }
            | Self::InvalidRender { .. }
            | Self::InvalidToken { .. } => EXIT_SETTING,
            Self::RenderFailed { .. } => EXIT_RENDER,
            Self::FileUnreadable { .. }
            | Self::FileNotRegular { .. }
            | Self::FileUnsafe { .. }
            | Self::TooBig { .. }
            | Self::FileParse { .. }
            | Self::FileNotMapping { .. }
            | Self::BindingsUnreadable { .. }
            | Self::BindingEntry { .. }
            | Self::BindingsInvalid { .. }
            | Self::ServiceNotBound { .. }
            | Self::AmbiguousTag { .. }
            | Self::NoCredentials { .. }
            | Self::CredhubRefUnresolved { .. }
            | Self::CredentialsInvalid { .. }
            | Self::KeptChanging { .. } => EXIT_CONFIG,
            Self::Listen { .. } => EXIT_LISTEN,
            Self::Runtime(_) | Self::Signal { .. } | Self::TooFewFiles { .. } => EXIT_INTERNAL,
        }
    }

    /// Whether a load that failed so may well succeed later with the files as
    /// they are: they could not be read (out of file descriptors, a file gone
    /// for a moment in a non-atomic replace) or kept changing while read. A
    /// watcher tries such a load again at its next check; anything else waits
    /// for the files to change.
    pub fn may_pass(&self) -> bool {
        matches!(
            self,
            Self::FileUnreadable { .. }
                | Self::BindingsUnreadable { .. }
                | Self::KeptChanging { .. }
        )
    }
}

/// Why a configuration file is refused (see `source::check_file_safety`).
#[derive(Debug)]
pub enum Unsafe {
    /// The file itself is world-writable.
    WorldWritableFile { path: PathBuf, mode: u32 },
    /// A directory holding the file (or the symlink to it) is world-writable
    /// without the sticky bit, so anyone can replace the file.
    WorldWritableDir { path: PathBuf, mode: u32 },
}

impl fmt::Display for Unsafe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WorldWritableFile { path, mode } => write!(
                f,
                "{} is world-writable (mode {mode:04o}); run `chmod o-w {}`",
                path.display(),
                path.display()
            ),
            Self::WorldWritableDir { path, mode } => write!(
                f,
                "directory {} is world-writable without the sticky bit (mode {mode:04o}), \
                 so anyone can replace the file; run `chmod o-w {}` or move the file",
                path.display(),
                path.display()
            ),
        }
    }
}

/// The syntax a configuration file was parsed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Json => "JSON",
            Self::Yaml => "YAML",
        })
    }
}

/// Where in a document a parse error is, without any of the document's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position(pub Option<(usize, usize)>);

impl Position {
    pub fn of_json(err: &serde_json::Error) -> Self {
        Self(Some((err.line(), err.column())))
    }

    /// This position, in a part of `text` starting at byte `start`, as a
    /// position in the whole of `text` (columns count bytes, as serde_json's do).
    #[must_use]
    pub fn within(self, text: &[u8], start: usize) -> Self {
        let Some((line, column)) = self.0 else {
            return self;
        };
        let before = &text[..start.min(text.len())];
        let lines = before.iter().filter(|&&b| b == b'\n').count();
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let column = if line == 1 {
            start - line_start + column
        } else {
            column
        };
        Self(Some((lines + line, column)))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some((line, column)) => write!(f, "line {line}, column {column}"),
            None => f.write_str("position unknown"),
        }
    }
}

/// Where the service bindings were read from, as the user would name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bindings {
    /// The directory tree named by `SERVICE_BINDING_ROOT` (Kubernetes service bindings).
    Root(PathBuf),
    /// The file named by `VCAP_SERVICES_FILE_PATH`.
    File(PathBuf),
    /// The `VCAP_SERVICES` variable.
    Env,
}

impl fmt::Display for Bindings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Root(path) => write!(f, "SERVICE_BINDING_ROOT={}", path.display()),
            Self::File(path) => write!(f, "VCAP_SERVICES_FILE_PATH={}", path.display()),
            Self::Env => f.write_str("VCAP_SERVICES"),
        }
    }
}

/// "it" when `path` is the file that `origin` names, else the path.
fn it_or(origin: &Bindings, path: &Path) -> String {
    match origin {
        Bindings::File(file) if file == path => "it".to_owned(),
        _ => path.display().to_string(),
    }
}

/// The error and its chain of causes on one line, `outer: inner: innermost`.
pub fn report(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        line.push_str(": ");
        line.push_str(&inner.to_string());
        cause = inner.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_joins_the_cause_chain() {
        let err = Error::FileUnreadable {
            path: PathBuf::from("/app/config.yml"),
            source: io::Error::new(io::ErrorKind::NotFound, "no such file"),
        };
        assert_eq!(
            report(&err),
            "CONFIG_SERVER_FILE=/app/config.yml: cannot read it: no such file"
        );
        assert_eq!(err.exit_code(), EXIT_CONFIG);
    }

    #[test]
    fn position_without_location_says_so() {
        assert_eq!(Position(None).to_string(), "position unknown");
        assert_eq!(Position(Some((3, 7))).to_string(), "line 3, column 7");
    }
}
