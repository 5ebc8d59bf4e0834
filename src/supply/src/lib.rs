//! `supply`: one staging of a Cloud Foundry supply buildpack, step by step (see
//! ARCHITECTURE.md). [`cli`] reads the command line and the environment into a
//! [`supply::Context`]; [`supply::run`] loads the manifest, takes each sidecar from the
//! cached buildpack, the app cache or the network, verifies it, installs it and
//! declares it in `launch.yml`. The formats, the log and the download live in the
//! `buildpack` crate, which the packager shares.

// The library declares only what it compiles in: its binary's SBOM and audit data list
// no more. (Its binary and tests see its dependencies too, and are not checked.)
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod cache;
pub mod cli;
pub mod fetch;
pub mod hold;
pub mod install;
pub mod staging;
pub mod supply;
