//! What one client connection may hold, and for how long.
//!
//! [`Timed`] wraps the socket that hyper reads and writes, and follows the
//! connection through three phases:
//!
//! - idle: no request on it (just connected, or its last response sent). It
//!   may stay so for the idle timeout, then it is closed. A new connection
//!   counts as idle for the tracker (which may close it to make room) only
//!   once a read has found nothing waiting: one accepted a moment ago may
//!   hold a whole request that no one has read yet.
//! - reading: the first byte of a request has arrived. The whole head must
//!   follow within the header timeout, however slowly it trickles in (a
//!   half-sent request cannot hold the connection).
//! - writing: a response is going out. The client must take it within the
//!   idle timeout (a client that never reads cannot hold it either).
//!
//! When a deadline passes, the socket read or write fails with `TimedOut` and
//! hyper drops the connection. Each phase change re-arms one timer; reads and
//! writes within a phase cost nothing extra.
//!
//! [`Tracker`] counts open connections and knows which are idle and since
//! when, so that at the connection limit the accept loop can close the one
//! idle the longest instead of refusing a new client.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use crate::config::Limits;

/// `Slot::idle_since` of a connection that is not idle.
const BUSY: u64 = u64::MAX;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Reading,
    Writing,
}

/// The socket, with the deadlines of its phase.
pub(crate) struct Timed {
    io: TcpStream,
    phase: Phase,
    /// When the phase began.
    since: Instant,
    /// Whether the tracker counts the connection as idle.
    told_idle: bool,
    deadline: Pin<Box<Sleep>>,
    limits: Limits,
    slot: Arc<Slot>,
    epoch: Instant,
}

impl Timed {
    pub(crate) fn new(io: TcpStream, limits: Limits, slot: Arc<Slot>, epoch: Instant) -> Self {
        let deadline = Box::pin(tokio::time::sleep(limits.idle_timeout));
        Self {
            io,
            phase: Phase::Idle,
            since: Instant::now(),
            told_idle: false,
            deadline,
            limits,
            slot,
            epoch,
        }
    }

    fn enter(&mut self, phase: Phase) {
        if self.phase == phase {
            return;
        }
        self.phase = phase;
        let now = Instant::now();
        self.since = now;
        let limit = match phase {
            Phase::Reading => self.limits.header_timeout,
            Phase::Idle | Phase::Writing => self.limits.idle_timeout,
        };
        self.deadline.as_mut().reset(now + limit);
        // A response just went out: idle (what the client pipelined behind its
        // request, hyper has read already or may be dropped with the connection).
        self.told_idle = phase == Phase::Idle;
        if self.told_idle {
            self.slot.set_idle_since(self.epoch, now);
        } else {
            self.slot.idle_since.store(BUSY, Ordering::Relaxed);
        }
    }

    /// After an operation came back `Pending`: fails it if the deadline has passed
    /// (and otherwise makes sure the task wakes up when it does).
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        // A read held by `?wait=` is bounded by its own wait, not by these.
        if self.slot.waiting.load(Ordering::Relaxed) {
            return None;
        }
        if self.deadline.as_mut().poll(cx).is_pending() {
            return None;
        }
        let what = match self.phase {
            Phase::Idle => "connection idle for longer than CONFIG_SERVER_IDLE_TIMEOUT_MS",
            Phase::Reading => "request head not complete within CONFIG_SERVER_HEADER_TIMEOUT_MS",
            Phase::Writing => "response not taken within CONFIG_SERVER_IDLE_TIMEOUT_MS",
        };
        Some(io::Error::new(io::ErrorKind::TimedOut, what))
    }

    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Pending => match self.expired(cx) {
                Some(err) => Poll::Ready(Err(err)),
                None => Poll::Pending,
            },
            ready @ Poll::Ready(_) => ready,
        }
    }
}

impl AsyncRead for Timed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && self.phase == Phase::Idle {
                    self.enter(Phase::Reading);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                if self.phase == Phase::Idle && !self.told_idle {
                    // A new connection with nothing to read: idle since it was accepted.
                    self.slot.set_idle_since(self.epoch, self.since);
                    self.told_idle = true;
                }
                match self.expired(cx) {
                    Some(err) => Poll::Ready(Err(err)),
                    None => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for Timed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.enter(Phase::Writing);
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.after_write(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.enter(Phase::Writing);
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.after_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        // hyper flushes once a response is written out: the connection is idle again.
        if matches!(polled, Poll::Ready(Ok(()))) && self.phase == Phase::Writing {
            self.enter(Phase::Idle);
        }
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// One open connection as the tracker sees it.
pub(crate) struct Slot {
    /// Milliseconds from the tracker's epoch to when it went idle; [`BUSY`] if not idle.
    idle_since: AtomicU64,
    evicting: AtomicBool,
    /// Holding a `?wait=` read.
    waiting: AtomicBool,
    /// Asks the connection's task to close it.
    pub evict: Notify,
}

impl Slot {
    fn set_idle_since(&self, epoch: Instant, now: Instant) {
        let ms = u64::try_from(now.duration_since(epoch).as_millis()).unwrap_or(BUSY - 1);
        self.idle_since.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.idle_since.load(Ordering::Relaxed) != BUSY
    }
}

/// The open connections.
pub(crate) struct Tracker {
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    /// How many of them hold a `?wait=` read.
    waiting: AtomicUsize,
    next_id: AtomicU64,
    /// Woken when the last connection closes.
    pub all_closed: Notify,
    pub epoch: Instant,
}

/// Removes its connection from the tracker when dropped.
pub(crate) struct Registration {
    tracker: Arc<Tracker>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut slots = self.tracker.lock();
        slots.remove(&self.id);
        if slots.is_empty() {
            self.tracker.all_closed.notify_waiters();
        }
    }
}

impl Tracker {
    pub(crate) fn new() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            waiting: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            all_closed: Notify::new(),
            epoch: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Open connections that count against `CONFIG_SERVER_MAX_CONNECTIONS`:
    /// all but those holding a `?wait=` read.
    pub(crate) fn open(&self) -> usize {
        self.total().saturating_sub(self.waiting())
    }

    /// Every open connection.
    pub(crate) fn total(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Counts `slot`'s connection as waiting until the guard is dropped; `None`
    /// if `max` connections wait already.
    pub(crate) fn start_waiting<'a>(&'a self, slot: &'a Slot, max: usize) -> Option<Waiting<'a>> {
        self.waiting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        slot.waiting.store(true, Ordering::Relaxed);
        Some(Waiting {
            tracker: self,
            slot,
        })
    }

    /// Adds a connection; it stays counted until the registration is dropped.
    pub(crate) fn register(self: &Arc<Self>) -> (Arc<Slot>, Registration) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            idle_since: AtomicU64::new(BUSY),
            evicting: AtomicBool::new(false),
            waiting: AtomicBool::new(false),
            evict: Notify::new(),
        });
        self.lock().insert(id, Arc::clone(&slot));
        let registration = Registration {
            tracker: Arc::clone(self),
            id,
        };
        (slot, registration)
    }

    /// Asks the connection idle the longest to close; `false` if none is idle.
    pub(crate) fn evict_longest_idle(&self) -> bool {
        let slots = self.lock();
        let oldest = slots
            .values()
            .filter(|s| !s.evicting.load(Ordering::Relaxed))
            .filter(|s| s.is_idle())
            .min_by_key(|s| s.idle_since.load(Ordering::Relaxed));
        let Some(slot) = oldest else {
            return false;
        };
        slot.evicting.store(true, Ordering::Relaxed);
        slot.evict.notify_one();
        true
    }
}

/// A connection counted as waiting.
pub(crate) struct Waiting<'a> {
    tracker: &'a Tracker,
    slot: &'a Slot,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.slot.waiting.store(false, Ordering::Relaxed);
        self.tracker.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The limit of open files, from `/proc/self/limits` (no `unsafe` getrlimit).
pub(crate) fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// File descriptors kept for everything but client connections: stdio, the
/// listener, the runtime's epoll and wakers, signal pipes, reading the config.
pub(crate) const RESERVED_FDS: u64 = 32;

/// Below this limit of open files the sidecar does not start: it needs about a
/// dozen before its first client (and tokio's signal setup panics without them).
pub(crate) const MIN_OPEN_FILES: u64 = 16;

/// Backs off after failures, doubling from 10 ms up to a cap.
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    pub(crate) fn new() -> Self {
        Self { next: Self::FIRST }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    pub(crate) fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_second() {
        let mut b = Backoff::new();
        let delays: Vec<u128> = (0..9).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(10));
    }

    #[test]
    fn limits_are_read_from_proc() {
        assert!(open_files_limit().is_some_and(|n| n > 0));
    }
}
