//! The HTTP/1.1 server: one current-thread tokio runtime, hyper connections on
//! `127.0.0.1` only, and a bounded graceful shutdown on SIGTERM or SIGINT.

use std::convert::Infallible;
use std::future::ready;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};

use crate::document::Document;
use crate::error::Error;
use crate::requestlog::RequestLog;
use crate::routes;
use crate::source::Origin;

/// How long in-flight requests get to finish after SIGTERM/SIGINT. Cloud
/// Foundry would wait 10 s before SIGKILL; requests take microseconds, and
/// being gone within a second keeps restarts quick.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);
/// Pause after a failed accept (e.g. out of file descriptors) before retrying.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `document` on `127.0.0.1:port` until SIGTERM or SIGINT.
pub fn serve(port: u16, document: Document, origin: &Origin) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(run(port, document, origin))
}

struct App {
    document: Document,
    log: RequestLog,
}

async fn run(port: u16, document: Document, origin: &Origin) -> Result<(), Error> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(|source| Error::Signal {
        signal: "SIGTERM",
        source,
    })?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|source| Error::Signal {
        signal: "SIGINT",
        source,
    })?;
    // Loopback only: the configuration must not be reachable from outside the container.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(|source| Error::Listen { port, source })?;
    println!("listening 127.0.0.1:{port}... (config from {origin})");

    let app = Arc::new(App {
        document,
        log: RequestLog::default(),
    });
    let flusher = tokio::spawn({
        let app = Arc::clone(&app);
        async move { app.log.flush_periodically().await }
    });
    let http = http1::Builder::new();
    let graceful = GracefulShutdown::new();

    let signal_name = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => spawn_connection(stream, &app, &http, &graceful),
                Err(err) => {
                    eprintln!("warning: accepting a connection failed: {err}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
        }
    };

    drop(listener);
    let open = graceful.count();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
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

/// Serves one connection in its own task, watched for graceful shutdown.
fn spawn_connection(
    stream: TcpStream,
    app: &Arc<App>,
    http: &http1::Builder,
    graceful: &GracefulShutdown,
) {
    // Responses are small and written whole: no reason to wait for ACKs.
    let _ = stream.set_nodelay(true);
    let app = Arc::clone(app);
    let service = service_fn(move |request| ready(Ok::<_, Infallible>(app.handle(&request))));
    let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
    tokio::spawn(async move {
        // A client that hangs up mid-request is not worth a log line.
        let _ = connection.await;
    });
}

impl App {
    fn handle<B>(&self, request: &hyper::Request<B>) -> hyper::Response<routes::Body> {
        let started = Instant::now();
        let path = request.uri().path();
        let response = routes::respond(&self.document, request.method(), path);
        self.log
            .record(request.method(), path, response.status(), started.elapsed());
        response
    }
}
