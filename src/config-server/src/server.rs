//! The HTTP/1.1 server: one current-thread tokio runtime, connections on
//! `127.0.0.1` only (HTTP/1.1 by hand, in `wire` and `conn`), a bounded number of them, reloads on SIGHUP and on
//! watched changes, and a bounded graceful shutdown on SIGTERM or SIGINT.
//!
//! Hostile or broken clients: a connection may hold a request head for the
//! header timeout, sit idle for the idle timeout, and send a head of at most
//! `MAX_HEAD_BYTES` (`wire`). At the connection limit, the connection idle
//! the longest is closed to make room; when none is idle, the new one gets a
//! `503` at once. Failures to accept (out of file descriptors) back off up to a
//! second and are logged at most once per [`WARN_EVERY`].

use std::future::Future;
use std::io;
use std::net::Ipv4Addr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Response, StatusCode};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

use crate::config::{Config, Limits};
use crate::conn::{self, Backoff, Handler, Tracker};
use crate::error::Error;
use crate::reload::{self, Live};
use crate::render::Files;
use crate::requestlog::RequestLog;
use crate::routes::{self, Door, Read, Routed};
use crate::source::Loaded;
use crate::watch as watcher;
use crate::wire::Head;

/// How long in-flight requests get to finish after SIGTERM/SIGINT. Cloud
/// Foundry would wait 10 s before SIGKILL; requests take microseconds, and
/// being gone within a second keeps restarts quick.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);
/// A repeating condition (accept failures, the connection limit) is logged at
/// most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Serves what was loaded at startup on `127.0.0.1:port` until SIGTERM or SIGINT;
/// `files` were written from it, and are written again at every reload.
pub(crate) fn serve(
    config: Config,
    loaded: Loaded,
    files: Files,
    token: Option<Vec<u8>>,
) -> Result<(), Error> {
    if let Some(limit) = conn::open_files_limit().filter(|&n| n < conn::MIN_OPEN_FILES) {
        return Err(Error::TooFewFiles { limit });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(Error::Runtime)?;
    let result = runtime.block_on(run(config, loaded, files, token));
    // A reload may be reading or writing on a blocking thread: do not wait for it
    // (a file it was writing is renamed into place whole, or not at all).
    runtime.shutdown_timeout(DRAIN_TIMEOUT);
    result
}

struct App {
    live: Arc<Live>,
    log: RequestLog,
    door: Door,
    tracker: Arc<Tracker>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
}

fn handler(name: &'static str, kind: SignalKind) -> Result<Signal, Error> {
    signal(kind).map_err(|source| Error::Signal {
        signal: name,
        source,
    })
}

async fn run(
    config: Config,
    loaded: Loaded,
    files: Files,
    token: Option<Vec<u8>>,
) -> Result<(), Error> {
    let mut sigterm = handler("SIGTERM", SignalKind::terminate())?;
    let mut sigint = handler("SIGINT", SignalKind::interrupt())?;
    let mut sighup = handler("SIGHUP", SignalKind::hangup())?;
    let port = config.port;
    // Loopback only: the configuration must not be reachable from outside the container.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(|source| Error::Listen { port, source })?;
    println!(
        "listening 127.0.0.1:{port}... (config from {})",
        loaded.origin
    );

    let limits = effective_limits(config.limits);
    let source = Arc::new(config.source);
    let live = Arc::new(Live::new(loaded));
    let files = Arc::new(files);
    let hooks = files.start_hooks(
        {
            let live = Arc::clone(&live);
            Arc::new(move |outcome| live.metrics.hook(outcome))
        },
        config.command_timeout,
    );
    let (trigger, reloads) = reload::reloader(Arc::clone(&live), Arc::clone(&source), files, hooks);
    let reloads = tokio::spawn(reloads);
    let tracker = Arc::new(Tracker::new());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let app = Arc::new(App {
        live: Arc::clone(&live),
        log: RequestLog::default(),
        door: Door {
            token,
            max_wait: limits.max_wait,
        },
        tracker: Arc::clone(&tracker),
        limits,
        shutdown: shutdown_rx.clone(),
    });
    let flusher = tokio::spawn({
        let app = Arc::clone(&app);
        async move { app.log.flush_periodically().await }
    });
    let watching = config.watch_interval.map(|interval| {
        tokio::spawn(watcher::run(
            Arc::clone(&live),
            trigger.clone(),
            Arc::clone(&source),
            interval,
            config.settle,
        ))
    });

    let mut accept_failures = Throttled::new();
    let mut at_limit = Throttled::new();
    let mut backoff = Backoff::new();
    let mut paused_until: Option<tokio::time::Instant> = None;

    let signal_name = loop {
        tokio::select! {
            accepted = listener.accept(), if paused_until.is_none() => match accepted {
                Ok((stream, _peer)) => {
                    if let Some(failed) = accept_failures.recover() {
                        println!("accepting connections again, after {failed} failed attempt(s)");
                    }
                    backoff.reset();
                    if tracker.open() >= limits.max_connections && !tracker.evict_longest_idle() {
                        at_limit.warn(|| format!(
                            "{} connections are open (CONFIG_SERVER_MAX_CONNECTIONS) and none is \
                             idle: new connections get 503",
                            limits.max_connections
                        ));
                        tokio::spawn(refuse(stream, limits.idle_timeout));
                    } else {
                        spawn_connection(stream, &app, &tracker, &shutdown_rx);
                    }
                }
                Err(err) => {
                    // Out of file descriptors, most likely: make room, then retry, slowly.
                    let delay = backoff.next_delay();
                    let evicted = is_out_of_files(&err) && tracker.evict_longest_idle();
                    accept_failures.warn(|| format!(
                        "cannot accept connections: {err}{}; retrying with a back-off of up to 1s",
                        if evicted { "; closed the connection idle the longest" } else { "" },
                    ));
                    paused_until = Some(tokio::time::Instant::now() + delay);
                }
            },
            () = async { tokio::time::sleep_until(paused_until.unwrap_or_else(tokio::time::Instant::now)).await }, if paused_until.is_some() => {
                paused_until = None;
            }
            _ = sighup.recv() => trigger.reload("SIGHUP"),
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
        }
    };

    drop(listener);
    if let Some(task) = watching {
        task.abort();
    }
    reloads.abort();
    let open = tracker.open();
    let _ = shutdown.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        loop {
            let closed = tracker.all_closed.notified();
            if tracker.open() == 0 {
                return;
            }
            closed.await;
        }
    })
    .await
    .is_ok();
    flusher.abort();
    app.log.flush();
    if drained {
        println!("{signal_name}: stopped after closing {open} open connection(s)");
    } else {
        println!(
            "{signal_name}: stopped; of {open} open connection(s), some did not finish within {}ms",
            DRAIN_TIMEOUT.as_millis()
        );
    }
    Ok(())
}

fn is_out_of_files(err: &io::Error) -> bool {
    // EMFILE (24): this process; ENFILE (23): the whole system.
    matches!(err.raw_os_error(), Some(23 | 24))
}

/// The connection limits, lowered to what the open-files limit leaves room
/// for: plain connections first, waiting ones with what is left (at least one).
fn effective_limits(mut limits: Limits) -> Limits {
    if let Some(files) = conn::open_files_limit() {
        let room =
            usize::try_from(files.saturating_sub(conn::RESERVED_FDS).max(1)).unwrap_or(usize::MAX);
        if room < limits.max_connections {
            eprintln!(
                "warning: CONFIG_SERVER_MAX_CONNECTIONS lowered from {} to {room}: the limit of \
                 open files (ulimit -n) is {files}",
                limits.max_connections
            );
            limits.max_connections = room;
        }
        let left = room.saturating_sub(limits.max_connections).max(1);
        if left < limits.max_waiting {
            eprintln!(
                "warning: CONFIG_SERVER_MAX_WAITING lowered from {} to {left}: the limit of open \
                 files (ulimit -n) is {files}, and CONFIG_SERVER_MAX_CONNECTIONS takes {}",
                limits.max_waiting, limits.max_connections
            );
            limits.max_waiting = left;
        }
    }
    limits
}

/// Answers a connection over the limit with `503` and closes it.
async fn refuse(mut stream: TcpStream, timeout: Duration) {
    conn::close_with(&mut stream, &routes::busy_connections(), timeout).await;
}

/// Serves one connection in its own task, until the client or a timeout closes
/// it, the tracker evicts it, or the server shuts down.
fn spawn_connection(
    stream: TcpStream,
    app: &Arc<App>,
    tracker: &Arc<Tracker>,
    shutdown: &watch::Receiver<bool>,
) {
    // Responses are small and written whole: no reason to wait for ACKs.
    let _ = stream.set_nodelay(true);
    let (slot, registration) = tracker.register();
    let app = Arc::clone(app);
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let _registration = registration;
        let (limits, epoch) = (app.limits, app.tracker.epoch);
        conn::serve(stream, &*app, &slot, limits, epoch, shutdown).await;
    });
}

impl Handler for App {
    async fn handle<G: Future<Output = ()>>(&self, head: Head, gone: G) -> Option<Response<Bytes>> {
        let started = Instant::now();
        let snapshot = self.live.snapshot();
        let routed = routes::route(
            &routes::Request {
                method: &head.method,
                uri: &head.uri,
                headers: &head.headers,
            },
            &snapshot,
            &self.door,
        );
        drop(snapshot);
        // The headers are not kept while a read waits.
        let Head { method, uri, .. } = head;
        let response = match routed {
            Routed::Now(response) => response,
            Routed::Metrics => {
                let text = self.live.metrics.render_text(
                    &self.live.snapshot(),
                    self.tracker.total(),
                    self.tracker.waiting(),
                );
                routes::text(text, "text/plain; version=0.0.4; charset=utf-8")
            }
            Routed::Wait { read, wait } => self.wait(&read, wait, gone).await?,
        };
        let path = uri.path();
        self.log
            .record(&method, path, response.status(), started.elapsed());
        self.live
            .metrics
            .request(routes::route_label(path), response.status().as_u16());
        Some(response)
    }
}

impl App {
    /// Holds a read until its answer is no longer `304` (a new generation
    /// changed what it selects), `wait` passes, or the server stops; answers
    /// `503` if too many reads wait already; `None` if the client hangs up
    /// first (`gone`). A waiting connection counts against
    /// `CONFIG_SERVER_MAX_WAITING`, not against the connections that plain
    /// reads need.
    async fn wait<G: Future<Output = ()>>(
        &self,
        read: &Read,
        wait: Duration,
        gone: G,
    ) -> Option<Response<Bytes>> {
        let Some(_waiting) = self.tracker.start_waiting(self.limits.max_waiting) else {
            return Some(routes::busy_waiting());
        };
        let deadline = tokio::time::Instant::now() + wait;
        // Subscribed before looking: a swap after this look wakes the loop.
        let mut generations = self.live.subscribe();
        let mut shutdown = self.shutdown.clone();
        let mut gone = pin!(gone);
        loop {
            let response = read.answer(&self.live.snapshot().document);
            if response.status() != StatusCode::NOT_MODIFIED {
                return Some(response);
            }
            tokio::select! {
                changed = generations.changed() => if changed.is_err() {
                    return Some(response);
                },
                () = tokio::time::sleep_until(deadline) => return Some(response),
                _ = shutdown.wait_for(|&stop| stop) => return Some(response),
                () = gone.as_mut() => return None,
            }
        }
    }
}

/// A warning about a condition that may repeat many times a second, written at
/// most once per [`WARN_EVERY`] with a count of what was left out. The
/// condition may also come and go many times a second (out of file
/// descriptors, a closed idle connection makes room for one accept, and the
/// next runs out again): the interval holds across such episodes, and only an
/// episode that was warned about is said to be over.
struct Throttled {
    /// When a warning was last written.
    last: Option<Instant>,
    suppressed: u64,
    /// Occurrences in the current episode.
    total: u64,
    /// Whether the current episode was warned about.
    shown: bool,
}

impl Throttled {
    fn new() -> Self {
        Self {
            last: None,
            suppressed: 0,
            total: 0,
            shown: false,
        }
    }

    fn warn(&mut self, message: impl FnOnce() -> String) {
        self.total += 1;
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < WARN_EVERY)
        {
            self.suppressed += 1;
            return;
        }
        let more = match self.suppressed {
            0 => String::new(),
            n => format!(" ({n} more time(s) since the last warning)"),
        };
        eprintln!(
            "warning: {}{more} [repeats at most every {}s]",
            message(),
            WARN_EVERY.as_secs()
        );
        self.last = Some(now);
        self.suppressed = 0;
        self.shown = true;
    }

    /// Ends the current episode; `Some(occurrences)` if it was warned about, so
    /// that its end is worth a line too.
    fn recover(&mut self) -> Option<u64> {
        let warned = (self.total > 0 && self.shown).then_some(self.total);
        self.total = 0;
        self.shown = false;
        warned
    }
}
