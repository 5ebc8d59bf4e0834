//! Counters for `/metrics`, in Prometheus' text format (version 0.0.4).
//!
//! Labels come from fixed sets (a route name, a status code, an outcome),
//! never from anything a client or the configuration wrote: no key, no value
//! and no path can reach a label.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::UNIX_EPOCH;

use crate::reload::Snapshot;

/// What a reload came to.
#[derive(Clone, Copy)]
pub(crate) enum Reload {
    /// A new generation is served.
    Changed,
    /// The source loads to what is served already.
    Unchanged,
    /// The new version was refused; the last good one stays.
    Refused,
}

/// What running a file's command (or sending its signal) came to.
#[derive(Clone, Copy)]
pub(crate) enum Hook {
    Ok,
    Failed,
    TimedOut,
}

#[derive(Default)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    reloads: [AtomicU64; 3],
    renders_ok: AtomicU64,
    renders_failed: AtomicU64,
    hooks: [AtomicU64; 3],
    /// A reload is being read and checked right now.
    pub reloading: AtomicBool,
}

impl Metrics {
    pub(crate) fn request(&self, route: &'static str, status: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        *requests.entry((route, status)).or_default() += 1;
    }

    pub(crate) fn reload(&self, outcome: Reload) {
        self.reloads[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn render(&self, ok: bool) {
        let counter = if ok {
            &self.renders_ok
        } else {
            &self.renders_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn hook(&self, outcome: Hook) {
        self.hooks[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The text of `/metrics`.
    pub(crate) fn render_text(&self, snapshot: &Snapshot, open: usize, waiting: usize) -> String {
        let mut out = String::new();
        family(
            &mut out,
            "requests_total",
            "counter",
            "Requests answered, by route and status.",
        );
        for ((route, status), count) in self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "config_server_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        family(
            &mut out,
            "reloads_total",
            "counter",
            "Reloads, by outcome: changed (a new generation), unchanged, refused.",
        );
        for (outcome, i) in [("changed", 0), ("unchanged", 1), ("refused", 2)] {
            let n = self.reloads[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "config_server_reloads_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        family(
            &mut out,
            "renders_total",
            "counter",
            "Files of CONFIG_SERVER_RENDER written (ok) or kept as they were (failed).",
        );
        for (outcome, counter) in [("ok", &self.renders_ok), ("failed", &self.renders_failed)] {
            let n = counter.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "config_server_renders_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        family(
            &mut out,
            "hooks_total",
            "counter",
            "Commands run and signals sent after a file changed, by outcome.",
        );
        for (outcome, i) in [("ok", 0), ("failed", 1), ("timed_out", 2)] {
            let n = self.hooks[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "config_server_hooks_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        let loaded = snapshot
            .loaded_at()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let reloading = u8::from(self.reloading.load(Ordering::Relaxed));
        let failed = u8::from(snapshot.last_attempt_failed());
        for (name, help, value) in [
            (
                "generation",
                "The generation served: 1 at startup, one more per reload that changed it.",
                snapshot.generation.to_string(),
            ),
            (
                "last_load_timestamp_seconds",
                "When the generation served was loaded, in seconds since the epoch.",
                format!("{loaded:.3}"),
            ),
            (
                "last_reload_failed",
                "1 if the last reload was refused (the last good generation is served).",
                failed.to_string(),
            ),
            (
                "reloading",
                "1 while a reload is being read and checked.",
                reloading.to_string(),
            ),
            (
                "connections_open",
                "Open client connections, waiting ones included.",
                open.to_string(),
            ),
            (
                "connections_waiting",
                "Connections holding a ?wait= read.",
                waiting.to_string(),
            ),
        ] {
            family(&mut out, name, "gauge", help);
            let _ = writeln!(out, "config_server_{name} {value}");
        }
        out
    }
}

/// The `# HELP` and `# TYPE` lines of a metric.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP config_server_{name} {help}");
    let _ = writeln!(out, "# TYPE config_server_{name} {kind}");
}
