//! Integration tests: the real binaries against temp dirs and real servers on loopback.
//! One test binary for all of them (see style.md).

mod git_entry;
mod packaging;
mod supply;
mod support;
