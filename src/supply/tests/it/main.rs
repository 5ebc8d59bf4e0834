//! Integration tests: the real binaries against temp dirs and real servers on loopback.
//! One test binary for all of them (see style.md).

mod fuzz_regressions;
mod git_entry;
mod hardening_disk;
mod hardening_network;
mod hardening_siblings;
mod hostile_archives;
mod hostile_config;
mod kill_points;
mod manifest_tool;
mod operators;
mod packaging;
mod pins;
mod supply;
mod support;
mod together;
