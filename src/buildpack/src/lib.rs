//! What the buildpack's tools share: the formats they read and write (`manifest.yml`,
//! `launch.yml`, the YAML underneath), the staging log's format and its redaction, the
//! settings read from the environment, the error type and its exit codes, and the
//! download and verification of an artifact. `supply` stages with it; `package` packs
//! and pins with it. Nothing here decides what a staging does: that is `supply`'s.

// The library declares only what it compiles in: its binary's SBOM and audit data list
// no more. (Its binary and tests see its dependencies too, and are not checked.)
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod deprecation;
pub mod digest;
pub mod download;
pub mod errors;
pub mod fsutil;
pub mod launch;
pub mod log;
pub mod manifest;
pub mod proxy;
pub mod redact;
pub mod settings;
pub mod transport;
pub mod verify;
pub mod version_line;
pub mod version_pin;
pub mod yaml;
