//! stage-local's own output: lines prefixed `stage-local:`, so they stand apart from the
//! buildpacks' staging log and the app's `[APP/PROC/WEB/0]` lines. Output errors (a
//! closed pipe) are ignored: they must never stop the cleanup of running processes.

use std::fmt::Display;
use std::io::Write;

/// One of stage-local's own lines; further lines of `msg` follow unprefixed.
pub(crate) fn say(msg: impl Display) {
    let _ = writeln!(std::io::stdout().lock(), "stage-local: {msg}");
}

/// Something that works here but deserves attention (it may not on Cloud Foundry).
pub(crate) fn warn(msg: impl Display) {
    let _ = writeln!(std::io::stdout().lock(), "stage-local: warning: {msg}");
}

/// Text written as given, in one write so other threads' lines cannot split it.
pub(crate) fn raw(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// A line of a staging log written as given (no prefix), as a buildpack writes it.
pub(crate) fn line(msg: impl Display) {
    let _ = writeln!(std::io::stdout().lock(), "{msg}");
}
