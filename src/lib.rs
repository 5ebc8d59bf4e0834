//! A Cloud Foundry supply buildpack that installs verified sidecar executables and
//! declares them in `launch.yml`. `main` parses the command line and environment;
//! everything else lives here so the packager can share it.

pub mod cache;
pub mod deprecation;
pub mod digest;
pub mod errors;
pub mod fetch;
pub mod fsutil;
pub mod install;
pub mod launch;
pub mod log;
pub mod manifest;
pub mod proxy;
pub mod redact;
pub mod settings;
pub mod staging;
pub mod supply;
pub mod transport;
pub mod verify;
pub mod version_line;
pub mod yaml;
