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
//! | 1    | unexpected failure: the runtime or a signal handler could not be set up |
//! | 2    | bad `CONFIG_SERVER_PORT`: not a number from 1 to 65535, or equal to `PORT` |
//! | 3    | configuration not loadable: `CONFIG_SERVER_FILE`, `CONFIG_SERVER_SERVICE`, `VCAP_SERVICES` or `VCAP_SERVICES_FILE_PATH` is wrong |
//! | 4    | cannot listen on `127.0.0.1:CONFIG_SERVER_PORT` (port in use, or not allowed) |
//!
//! Cloud Foundry restarts the whole app instance whenever a sidecar exits, so a
//! non-zero code shows up as a crash loop; the last `error:` line says why.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// The runtime or a signal handler could not be set up.
pub const EXIT_INTERNAL: u8 = 1;
/// `CONFIG_SERVER_PORT` is unusable.
pub const EXIT_PORT: u8 = 2;
/// The configuration could not be loaded.
pub const EXIT_CONFIG: u8 = 3;
/// The listening socket could not be opened.
pub const EXIT_LISTEN: u8 = 4;

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

    /// The configuration file does not parse.
    #[error("CONFIG_SERVER_FILE={}: not valid {format} ({at})", path.display())]
    FileSyntax {
        path: PathBuf,
        format: Format,
        at: Position,
    },

    /// The configuration file parses, but its top level is not a mapping.
    #[error("CONFIG_SERVER_FILE={}: the top level must be a mapping of keys to values", path.display())]
    FileNotMapping { path: PathBuf },

    /// The file named by `VCAP_SERVICES_FILE_PATH` could not be read.
    #[error("VCAP_SERVICES_FILE_PATH={}: cannot read it", path.display())]
    BindingsUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
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
         (looked in {origin}; bound: {bound})"
    )]
    ServiceNotBound {
        name: String,
        origin: Bindings,
        bound: String,
    },

    /// More than one bound instance is tagged `config-server`.
    #[error(
        "{count} bound service instances are tagged config-server ({names}) in {origin}: \
         set CONFIG_SERVER_SERVICE to the name of the one to use"
    )]
    AmbiguousTag {
        count: usize,
        names: String,
        origin: Bindings,
    },

    /// The chosen instance has no `credentials` object.
    #[error(
        "service instance {name:?} in {origin}: its credentials are missing or not a JSON object"
    )]
    NoCredentials { name: String, origin: Bindings },

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
            | Self::DefaultPortIsAppPort { .. } => EXIT_PORT,
            Self::FileUnreadable { .. }
            | Self::FileNotRegular { .. }
            | Self::FileUnsafe { .. }
            | Self::FileSyntax { .. }
            | Self::FileNotMapping { .. }
            | Self::BindingsUnreadable { .. }
            | Self::BindingsInvalid { .. }
            | Self::ServiceNotBound { .. }
            | Self::AmbiguousTag { .. }
            | Self::NoCredentials { .. } => EXIT_CONFIG,
            Self::Listen { .. } => EXIT_LISTEN,
            Self::Runtime(_) | Self::Signal { .. } => EXIT_INTERNAL,
        }
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

    pub fn of_yaml(err: &serde_yaml::Error) -> Self {
        Self(err.location().map(|l| (l.line(), l.column())))
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
    /// The `VCAP_SERVICES` variable.
    Env,
    /// The file named by `VCAP_SERVICES_FILE_PATH`.
    File(PathBuf),
}

impl fmt::Display for Bindings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env => f.write_str("VCAP_SERVICES"),
            Self::File(path) => write!(f, "VCAP_SERVICES_FILE_PATH={}", path.display()),
        }
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
