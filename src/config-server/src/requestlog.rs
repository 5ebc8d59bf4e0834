//! One stdout line per request, `METHOD PATH STATUS DURATION`, buffered.
//!
//! A write syscall per request would cost more than serving the request, so
//! lines collect in memory and go out in one write: at most `FLUSH_DELAY`
//! after the first unwritten line, as soon as `FLUSH_SIZE` bytes are waiting,
//! and at shutdown. An idle sidecar has no timer running at all.
//!
//! Only the path is logged: the URI keeps the query string apart, and no
//! configuration value ever passes through here. Method and path come from the
//! client, so they are escaped and cut (`sanitize`): at most [`MAX_PATH`]
//! characters of a path, [`MAX_METHOD`] of a method.

use std::io::Write;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::{Method, StatusCode};
use tokio::sync::Notify;

use crate::sanitize;

/// Characters of a request path the log keeps.
pub(crate) const MAX_PATH: usize = 256;
/// Characters of a request method the log keeps.
pub(crate) const MAX_METHOD: usize = 16;

/// How long a line may wait in memory.
const FLUSH_DELAY: Duration = Duration::from_millis(50);
/// How many bytes may wait in memory.
const FLUSH_SIZE: usize = 32 * 1024;

#[derive(Default)]
pub(crate) struct RequestLog {
    pending: Mutex<Pending>,
    wake: Notify,
}

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    flush_scheduled: bool,
}

impl RequestLog {
    /// Queues one line.
    pub(crate) fn record(&self, method: &Method, path: &str, status: StatusCode, took: Duration) {
        let mut pending = self.lock();
        // Writing into a Vec cannot fail.
        let _ = writeln!(
            pending.buf,
            "{} {} {} {:.3}ms",
            sanitize::cut(method.as_str(), MAX_METHOD),
            sanitize::cut(path, MAX_PATH),
            status.as_u16(),
            took.as_secs_f64() * 1000.0
        );
        if pending.buf.len() >= FLUSH_SIZE {
            write_out(&mut pending.buf);
        } else if !pending.flush_scheduled {
            pending.flush_scheduled = true;
            self.wake.notify_one();
        }
    }

    /// Writes out lines that have waited `FLUSH_DELAY`; runs until the runtime stops.
    pub(crate) async fn flush_periodically(&self) {
        loop {
            self.wake.notified().await;
            tokio::time::sleep(FLUSH_DELAY).await;
            self.flush();
        }
    }

    /// Writes out every waiting line now.
    pub(crate) fn flush(&self) {
        let mut pending = self.lock();
        write_out(&mut pending.buf);
        pending.flush_scheduled = false;
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic aborts the process (release profile), so poisoning is moot.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn write_out(buf: &mut Vec<u8>) {
    if buf.is_empty() {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    // Nowhere to report a failing stdout; the lines are dropped.
    let _ = stdout.write_all(buf).and_then(|()| stdout.flush());
    buf.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_one_line_per_request() {
        let log = RequestLog::default();
        log.record(
            &Method::GET,
            "/config/x",
            StatusCode::NOT_FOUND,
            Duration::from_micros(1234),
        );
        log.record(&Method::HEAD, "/health", StatusCode::OK, Duration::ZERO);
        let long = format!("/config/{}", "x".repeat(60_000));
        log.record(&Method::GET, &long, StatusCode::NOT_FOUND, Duration::ZERO);
        let pending = log.lock();
        assert_eq!(
            String::from_utf8_lossy(&pending.buf),
            format!(
                "GET /config/x 404 1.234ms\nHEAD /health 200 0.000ms\nGET /config/{}…(+59752 bytes) 404 0.000ms\n",
                "x".repeat(248)
            )
        );
        assert!(pending.flush_scheduled);
    }
}
