//! The configuration being served, and how it changes without a restart.
//!
//! What a request sees is one [`Snapshot`]: the document and the `/health`
//! body that describes it, behind one `Arc`. A reload loads and checks the
//! new version completely (`source::load`), then swaps the `Arc`: a request
//! that started before the swap answers from the old document, one after it
//! from the new one, never from a mix.
//!
//! Reloads run one at a time, in [`run`], on a thread of their own: reading
//! and checking a large document takes a while, and requests keep being
//! answered from the last good one meanwhile. Files of `CONFIG_SERVER_RENDER`
//! are written from the new document before it is swapped in, and their
//! commands run after.
//!
//! A version that fails to load is refused with one warning naming the file
//! and the reason (never a value) and the last good document stays served;
//! the same failure is not repeated at every poll, and a later good version is
//! picked up; so is the same version once a failure that may pass by itself
//! (out of file descriptors, files changing while read) has passed. A reload
//! that finds nothing at all (no file, no binding) while a
//! real configuration is served is refused too: falling back to the demo
//! document would hand the app the wrong secrets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use crate::config::Source;
use crate::document::Document;
use crate::error::{self, Error};
use crate::metrics::{self, Metrics};
use crate::render::Files;
use crate::source::{self, Loaded, Origin};

/// What one request is answered from.
pub(crate) struct Snapshot {
    pub document: Arc<Document>,
    pub origin: Origin,
    /// 1 for the document loaded at startup, one more for each swap.
    pub generation: u64,
    /// The `/health` body.
    pub health: Bytes,
    loaded_at: SystemTime,
    /// The last attempt's failure, if it failed.
    last_error: Option<String>,
}

impl Snapshot {
    pub(crate) fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    pub(crate) fn last_attempt_failed(&self) -> bool {
        self.last_error.is_some()
    }

    fn new(
        document: Arc<Document>,
        origin: Origin,
        generation: u64,
        loaded_at: SystemTime,
        attempt_at: SystemTime,
        last_error: Option<String>,
    ) -> Self {
        let mut health = json!({
            "status": "ok",
            "generation": generation,
            "loaded_at": rfc3339(loaded_at),
            "last_attempt_at": rfc3339(attempt_at),
            "last_attempt_failed": last_error.is_some(),
        });
        if let (Some(err), Value::Object(map)) = (&last_error, &mut health) {
            map.insert("last_error".to_owned(), Value::from(err.as_str()));
        }
        Self {
            document,
            origin,
            generation,
            health: Bytes::from(health.to_string()),
            loaded_at,
            last_error,
        }
    }
}

/// The configuration being served.
pub(crate) struct Live {
    current: Mutex<Arc<Snapshot>>,
    /// The last attempt failed in a way that may pass with the files unchanged
    /// ([`crate::error::Error::may_pass`]).
    retry: AtomicBool,
    /// The generation served, for reads waiting for a change.
    generation: watch::Sender<u64>,
    pub metrics: Metrics,
}

impl Live {
    /// Starts serving what was loaded at startup, as generation 1.
    pub(crate) fn new(loaded: Loaded) -> Self {
        let now = SystemTime::now();
        let first = Snapshot::new(Arc::new(loaded.document), loaded.origin, 1, now, now, None);
        Self {
            current: Mutex::new(Arc::new(first)),
            retry: AtomicBool::new(false),
            generation: watch::Sender::new(1),
            metrics: Metrics::default(),
        }
    }

    /// Tells of every new generation, from now on.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Whether the last attempt should be made again even if nothing changes.
    pub(crate) fn wants_retry(&self) -> bool {
        self.retry.load(Ordering::Relaxed)
    }

    /// What a request is answered from; cheap (a lock and an `Arc` clone).
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Arc<Snapshot>> {
        // A panic aborts the process (release profile), so poisoning is moot.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Loads `source` again and swaps it in if it is good and new, after
    /// writing `files` from it; returns which files changed. `why` says what
    /// asked for it (`SIGHUP`, `a change`), for the log line. Blocks: it reads
    /// files and writes others.
    fn reload(&self, source: &Source, why: &str, files: &Files) -> Vec<usize> {
        let now = SystemTime::now();
        let current = self.snapshot();
        let loaded = source::load(source);
        self.retry.store(
            loaded.as_ref().is_err_and(Error::may_pass),
            Ordering::Relaxed,
        );
        let failure = match loaded {
            Ok(loaded) if loaded.origin == Origin::Demo && current.origin != Origin::Demo => {
                format!(
                    "no configuration found any more (no CONFIG_SERVER_FILE, and no binding \
                     named by CONFIG_SERVER_SERVICE or tagged {}): the demo document is \
                     never swapped in for a real one",
                    source::TAG
                )
            }
            Ok(loaded)
                if *current.document == loaded.document && current.origin == loaded.origin =>
            {
                if current.last_error.is_some() {
                    println!(
                        "reload ({why}): {} loads again, unchanged: still generation {}",
                        current.origin, current.generation
                    );
                }
                self.metrics.reload(metrics::Reload::Unchanged);
                // A file that could not be written last time (a full disk) gets another go.
                let changed = files.update(&current.document, &self.metrics);
                self.store(Snapshot::new(
                    Arc::clone(&current.document),
                    current.origin.clone(),
                    current.generation,
                    current.loaded_at,
                    now,
                    None,
                ));
                return changed;
            }
            Ok(loaded) => {
                let generation = current.generation + 1;
                let changed = files.update(&loaded.document, &self.metrics);
                println!(
                    "reloaded ({why}): generation {generation} from {}",
                    loaded.origin
                );
                self.metrics.reload(metrics::Reload::Changed);
                self.store(Snapshot::new(
                    Arc::new(loaded.document),
                    loaded.origin,
                    generation,
                    now,
                    now,
                    None,
                ));
                self.generation.send_replace(generation);
                return changed;
            }
            Err(err) => error::report(&err),
        };
        // Once per distinct failure: a poll that finds the same broken file says nothing
        // new. An explicit SIGHUP always gets its answer.
        if current.last_error.as_deref() != Some(failure.as_str()) || why == "SIGHUP" {
            eprintln!(
                "warning: reload ({why}) refused, still serving generation {}: {failure}",
                current.generation
            );
        }
        self.metrics.reload(metrics::Reload::Refused);
        self.store(Snapshot::new(
            Arc::clone(&current.document),
            current.origin.clone(),
            current.generation,
            current.loaded_at,
            now,
            Some(failure),
        ));
        Vec::new()
    }

    fn store(&self, snapshot: Snapshot) {
        *self.lock() = Arc::new(snapshot);
    }
}

/// Asks for reloads; cheap to clone. A request made while a reload runs is
/// served by the next one; requests made meanwhile are one.
#[derive(Clone)]
pub(crate) struct Trigger(mpsc::UnboundedSender<&'static str>);

impl Trigger {
    /// Asks for a reload; `why` is `SIGHUP` or `a change`.
    pub(crate) fn reload(&self, why: &'static str) {
        let _ = self.0.send(why);
    }
}

/// Reloads whenever asked, one at a time, each on a blocking thread so that
/// requests go on being answered from the document served until the new one
/// is checked; then tells `hooks` which files changed. Returns the trigger
/// and the task's future.
pub(crate) fn reloader(
    live: Arc<Live>,
    source: Arc<Source>,
    files: Arc<Files>,
    hooks: impl Fn(Vec<usize>) + Send + 'static,
) -> (Trigger, impl std::future::Future<Output = ()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<&'static str>();
    let task = async move {
        while let Some(mut why) = rx.recv().await {
            // Asked several times while the last one ran: one reload does; a
            // SIGHUP among them gets its answer.
            while let Ok(more) = rx.try_recv() {
                if more == "SIGHUP" {
                    why = more;
                }
            }
            live.metrics.reloading.store(true, Ordering::Relaxed);
            let job = {
                let (live, source, files) =
                    (Arc::clone(&live), Arc::clone(&source), Arc::clone(&files));
                tokio::task::spawn_blocking(move || live.reload(&source, why, &files))
            };
            let changed = job.await.unwrap_or_default();
            live.metrics.reloading.store(false, Ordering::Relaxed);
            if !changed.is_empty() {
                hooks(changed);
            }
        }
    };
    (Trigger(tx), task)
}

/// `2026-11-30T10:04:05.123Z`.
fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps() {
        let at = |secs: u64, millis: u64| {
            rfc3339(UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(at(1_795_954_445, 123), "2026-11-29T12:14:05.123Z");
        assert_eq!(at(4_107_542_399, 999), "2100-02-28T23:59:59.999Z");
    }
}
