//! Staging output in the shape CF users know from libbuildpack: `-----> ` for a step,
//! seven spaces for details, `**WARNING**` and `**ERROR**` markers, and debug lines only
//! with `BP_DEBUG`. Code logs through `tracing`; this subscriber renders it.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::Mutex;
use tracing::field::{Field, Visit};
use tracing::{span, Event, Level, Metadata, Subscriber};

/// Target that marks an event as a step header.
pub const STEP: &str = "step";
/// The crates whose events are shown: this library and its two binaries. Libraries
/// (hyper-util, reqwest) emit `tracing` events too, with URLs that still carry their
/// user-info; they must never reach the staging log, even with BP_DEBUG.
const OWN_TARGETS: [&str; 4] = [STEP, "buildpack", "supply", "package"];
const INDENT: &str = "       ";

/// A step: `-----> Installing config-server 0.1.0`.
#[macro_export]
macro_rules! step {
    ($($arg:tt)*) => { tracing::info!(target: $crate::log::STEP, $($arg)*) };
}

/// A detail line under the current step.
#[macro_export]
macro_rules! detail {
    ($($arg:tt)*) => { tracing::info!($($arg)*) };
}

/// Renders events as CF staging log lines into any writer.
pub struct StagingLog {
    out: Mutex<Box<dyn Write + Send>>,
    debug: bool,
}

/// Whether `BP_DEBUG` asks for debug lines: set and not empty, as libbuildpack reads it.
pub fn debug_wanted(bp_debug: Option<&String>) -> bool {
    bp_debug.is_some_and(|v| !v.is_empty())
}

impl StagingLog {
    pub fn new(out: Box<dyn Write + Send>, debug: bool) -> Self {
        StagingLog {
            out: Mutex::new(out),
            debug,
        }
    }

    /// Installs this as the process-wide subscriber. A second call is a no-op.
    pub fn install(self) {
        let _ = tracing::subscriber::set_global_default(self);
    }
}

/// Formats an event's message, with every line indented the same way.
pub fn render(level: Level, target: &str, message: &str) -> String {
    let (first, rest) = match (level, target) {
        (_, STEP) => ("-----> ".to_string(), INDENT),
        (Level::ERROR, _) => (format!("{INDENT}**ERROR** "), INDENT),
        (Level::WARN, _) => (format!("{INDENT}**WARNING** "), INDENT),
        (Level::DEBUG | Level::TRACE, _) => (format!("{INDENT}DEBUG: "), INDENT),
        _ => (INDENT.to_string(), INDENT),
    };
    let mut out = String::new();
    for (i, line) in message.lines().enumerate() {
        let prefix = if i == 0 { first.as_str() } else { rest };
        let _ = writeln!(out, "{prefix}{}", safe_line(line));
    }
    if out.is_empty() {
        out = format!("{}\n", first.trim_end());
    }
    out
}

/// Most characters of one output line: a backstop, since every untrusted string is
/// already cut where it enters a message (`redact::shown`).
const MAX_LINE: usize = 4096;

/// One line as it may reach the staging log: no control character other than a tab
/// (a carriage return would fake a line, ESC would drive the terminal), and cut.
fn safe_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for (n, c) in line.chars().enumerate() {
        if n == MAX_LINE {
            out.push_str("… (line cut)");
            break;
        }
        if c != '\t' && crate::redact::is_unsafe(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={:?}", field.name(), value);
        }
    }
}

impl Subscriber for StagingLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let krate = metadata.target().split("::").next().unwrap_or_default();
        OWN_TARGETS.contains(&krate) && (self.debug || *metadata.level() <= Level::INFO)
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut msg = Message(String::new());
        event.record(&mut msg);
        let meta = event.metadata();
        let text = render(
            *meta.level(),
            meta.target(),
            &crate::redact::scrub_known(&msg.0),
        );
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cf_prefixes() {
        assert_eq!(
            render(Level::INFO, STEP, "Installing x 1"),
            "-----> Installing x 1\n"
        );
        assert_eq!(render(Level::INFO, "buildpack", "a"), "       a\n");
        assert_eq!(
            render(Level::WARN, "buildpack", "w"),
            "       **WARNING** w\n"
        );
        assert_eq!(
            render(Level::ERROR, "buildpack", "e\nmore"),
            "       **ERROR** e\n       more\n"
        );
    }

    #[test]
    fn no_control_character_reaches_a_line() {
        assert_eq!(
            render(Level::INFO, STEP, "x\r-----> fake\u{1b}[1m\tok"),
            "-----> x\\r-----> fake\\u{1b}[1m\tok\n"
        );
        let long = render(Level::INFO, "buildpack", &"a".repeat(10_000));
        assert!(long.ends_with("a… (line cut)\n") && long.len() < MAX_LINE + 40);
    }

    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn debug_lines_only_with_bp_debug() {
        for debug in [false, true] {
            let buf = Buf::default();
            let log = StagingLog::new(Box::new(buf.clone()), debug);
            tracing::subscriber::with_default(log, || {
                crate::step!("Step");
                tracing::debug!("hidden {}", 1);
                tracing::debug!(target: "hyper_util::client::legacy::pool", "bob:hunter2@host");
                tracing::error!(target: "reqwest", "never shown");
            });
            let out = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf8");
            let want = if debug {
                "-----> Step\n       DEBUG: hidden 1\n"
            } else {
                "-----> Step\n"
            };
            assert_eq!(out, want);
        }
    }
}
