//! What one client connection may hold, and for how long.
//!
//! [`serve`] takes a connection through three phases:
//!
//! - idle: no request on it (just connected, or its last response sent). It
//!   may stay so for the idle timeout, then it is closed. A new connection
//!   counts as idle for the tracker (which may close it to make room) only
//!   once a read has found nothing waiting: one accepted a moment ago may
//!   hold a whole request that no one has read yet.
//! - reading: the first byte of a request has arrived. The whole head must
//!   follow within the header timeout, however slowly it trickles in (a
//!   half-sent request cannot hold the connection), in at most
//!   [`MAX_HEAD_BYTES`], and no more than that is read for it.
//! - answering: the handler answers; a `?wait=` read is bounded by its own
//!   wait, and ends at once if the client hangs up. Then the client must take
//!   the response within the idle timeout (a client that never reads cannot
//!   hold the connection either).
//!
//! Nothing is buffered while an answer is awaited but what the client
//! pipelines behind its request: a held read costs its task and no buffer.
//!
//! [`Tracker`] counts open connections and knows which are idle and since
//! when, so that at the connection limit the accept loop can close the one
//! idle the longest instead of refusing a new client.

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{BufMut, Bytes};
use http::{Method, Response, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::config::Limits;
use crate::wire::{self, Framing, Head, Parsed, MAX_HEAD_BYTES};

/// `Slot::idle_since` of a connection that is not idle.
const BUSY: u64 = u64::MAX;

/// How much is read at a time while a head comes in.
const READ_CHUNK: usize = 1024;

/// How long a connection closed with unread bytes (a body, the rest of a
/// refused head) is drained first: closing with unread data resets the
/// connection, and the client could lose the answer.
const LINGER: Duration = Duration::from_millis(100);

/// Answers the requests of a connection.
pub(crate) trait Handler {
    /// The response to `head`; `None` when `gone` resolved first (the client
    /// hung up while its answer was awaited).
    fn handle<G: Future<Output = ()>>(
        &self,
        head: Head,
        gone: G,
    ) -> impl Future<Output = Option<Response<Bytes>>>;
}

/// How a connection ends its current phase.
enum Next {
    Go,
    Close,
}

/// Serves the requests of one connection until the client hangs up, a
/// deadline passes, the tracker evicts it, or `shutdown` turns true.
pub(crate) async fn serve<H: Handler>(
    mut stream: TcpStream,
    handler: &H,
    slot: &Slot,
    limits: Limits,
    epoch: Instant,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut since = Instant::now();
    loop {
        if buf.is_empty() {
            let idle = Idle {
                slot,
                epoch,
                since,
                timeout: limits.idle_timeout,
            };
            if let Next::Close = idle.wait(&stream, &mut buf, &mut shutdown).await {
                return;
            }
        }
        slot.idle_since.store(BUSY, Ordering::Relaxed);
        let head = match read_head(&stream, &mut buf, limits.header_timeout).await {
            Ok(head) => head,
            Err(Some(status)) => {
                close_with(&mut stream, &wire::refusal(status), limits.idle_timeout).await;
                return;
            }
            Err(None) => return,
        };
        if buf.is_empty() {
            // Freed, not kept: a read that waits must not hold a buffer.
            buf = Vec::new();
        }
        let unread_body = head.has_body;
        let mut framing = Framing {
            head_only: head.method == Method::HEAD,
            close: !head.keep_alive || head.has_body,
            keep_alive_10: head.http10 && head.keep_alive,
        };
        let answer = handler.handle(*head, hung_up(&stream, &mut buf)).await;
        let Some(response) = answer else {
            return;
        };
        framing.close |= *shutdown.borrow() || slot.evicting.load(Ordering::Relaxed);
        if respond(&mut stream, &response, framing, limits.idle_timeout)
            .await
            .is_err()
        {
            return;
        }
        if framing.close {
            if unread_body {
                linger(&mut stream).await;
            }
            return;
        }
        since = Instant::now();
    }
}

/// A connection with no request on it.
struct Idle<'a> {
    slot: &'a Slot,
    epoch: Instant,
    /// When it went idle: accepted, or its last response sent.
    since: Instant,
    timeout: Duration,
}

impl Idle<'_> {
    /// Waits for the first bytes of a request, into `buf`.
    async fn wait(
        &self,
        stream: &TcpStream,
        buf: &mut Vec<u8>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Next {
        let deadline = self.since + self.timeout;
        let mut told = false;
        loop {
            match Got::from(read_now(stream, buf, READ_CHUNK)) {
                Got::Bytes => return Next::Go,
                Got::End => return Next::Close,
                Got::Nothing => {}
            }
            if !told {
                // A response just went out, or a new connection has nothing to read.
                self.slot.set_idle_since(self.epoch, self.since);
                told = true;
            }
            tokio::select! {
                ready = stream.readable() => if ready.is_err() {
                    return Next::Close;
                },
                () = self.slot.evict.notified() => return Next::Close,
                _ = shutdown.wait_for(|&stop| stop) => return Next::Close,
                () = tokio::time::sleep_until(deadline) => return Next::Close,
            }
        }
    }
}

/// Reads into `buf` until it starts with a whole request head, within
/// `timeout` (its first bytes are in). `Err(Some(status))`: refuse it with
/// that status; `Err(None)`: drop the connection (hung up, timed out, failed).
async fn read_head(
    stream: &TcpStream,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<Box<Head>, Option<StatusCode>> {
    let deadline = Instant::now() + timeout;
    loop {
        match wire::parse(buf) {
            Parsed::Head(head, len) => {
                buf.drain(..len);
                return Ok(head);
            }
            Parsed::Refused(status) => return Err(Some(status)),
            Parsed::Partial => {}
        }
        // Partial: fewer than MAX_HEAD_BYTES are in (parse refuses a head not
        // whole within them), and no read takes the buffer past them.
        let room = MAX_HEAD_BYTES
            .saturating_sub(buf.len())
            .clamp(1, READ_CHUNK);
        loop {
            match Got::from(read_now(stream, buf, room)) {
                Got::Bytes => break,
                Got::End => return Err(None),
                Got::Nothing => {}
            }
            match tokio::time::timeout_at(deadline, stream.readable()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Err(None),
            }
        }
    }
}

/// What a read that does not wait found.
enum Got {
    Bytes,
    /// Nothing yet (`WouldBlock`).
    Nothing,
    /// The client hung up, or the socket failed.
    End,
}

impl From<io::Result<usize>> for Got {
    fn from(read: io::Result<usize>) -> Self {
        match read {
            Ok(0) => Got::End,
            Ok(_) => Got::Bytes,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Got::Nothing,
            Err(_) => Got::End,
        }
    }
}

/// Reads what the socket has now, at most `most` (above 0) bytes more than `buf` holds.
fn read_now(stream: &TcpStream, buf: &mut Vec<u8>, most: usize) -> io::Result<usize> {
    buf.reserve(most);
    stream.try_read_buf(&mut (&mut *buf).limit(most))
}

/// Resolves when the client hangs up (or the socket fails) while its request
/// is answered. What it pipelines meanwhile is kept in `pending`, up to
/// [`MAX_HEAD_BYTES`]; then it is not read until the answer is out.
async fn hung_up(stream: &TcpStream, pending: &mut Vec<u8>) {
    loop {
        let room = MAX_HEAD_BYTES.saturating_sub(pending.len());
        if room == 0 {
            return std::future::pending().await;
        }
        if stream.readable().await.is_err() {
            return;
        }
        // Without a reservation: a waiting read grows no buffer it will not use.
        if let Got::End = Got::from(stream.try_read_buf(&mut (&mut *pending).limit(room))) {
            return;
        }
    }
}

/// Writes `response`, which the client must take within `timeout`.
async fn respond(
    stream: &mut TcpStream,
    response: &Response<Bytes>,
    framing: Framing,
    timeout: Duration,
) -> io::Result<()> {
    let mut head = Vec::with_capacity(256);
    wire::encode_head(response, framing, &mut head);
    let body: &[u8] = if wire::sends_body(response.status(), framing) {
        response.body()
    } else {
        &[]
    };
    tokio::time::timeout(timeout, write_both(stream, &head, body))
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

/// Writes `head` then `body`, in one system call when the socket takes both.
async fn write_both(stream: &mut TcpStream, mut head: &[u8], mut body: &[u8]) -> io::Result<()> {
    while !head.is_empty() || !body.is_empty() {
        let n = stream
            .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_head = n.min(head.len());
        head = &head[from_head..];
        body = &body[n - from_head..];
    }
    Ok(())
}

/// Answers with `response`, then closes the connection (lingering, since the
/// client may have sent more than was read).
pub(crate) async fn close_with(
    stream: &mut TcpStream,
    response: &Response<Bytes>,
    timeout: Duration,
) {
    let framing = Framing {
        head_only: false,
        close: true,
        keep_alive_10: false,
    };
    if respond(stream, response, framing, timeout).await.is_ok() {
        linger(stream).await;
    }
}

/// Closes the sending side, then drains what the client still sends for
/// [`LINGER`], so that the last response is not lost to a reset.
async fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(LINGER, async {
        loop {
            if stream.readable().await.is_err() {
                return;
            }
            if let Got::End = Got::from(discard_now(stream)) {
                return;
            }
        }
    })
    .await;
}

/// Reads and drops what the socket has now (the buffer is on the stack of
/// this call, not in every connection's task).
fn discard_now(stream: &TcpStream) -> io::Result<usize> {
    let mut sink = [0; 4096];
    stream.try_read(&mut sink)
}

/// One open connection as the tracker sees it.
pub(crate) struct Slot {
    /// Milliseconds from the tracker's epoch to when it went idle; [`BUSY`] if not idle.
    idle_since: AtomicU64,
    evicting: AtomicBool,
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

    /// Counts a connection as waiting until the guard is dropped; `None` if
    /// `max` connections wait already.
    pub(crate) fn start_waiting(&self, max: usize) -> Option<Waiting<'_>> {
        self.waiting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Waiting { tracker: self })
    }

    /// Adds a connection; it stays counted until the registration is dropped.
    pub(crate) fn register(self: &Arc<Self>) -> (Arc<Slot>, Registration) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            idle_since: AtomicU64::new(BUSY),
            evicting: AtomicBool::new(false),
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
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
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
