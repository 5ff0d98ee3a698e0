//! Accepting and keeping TCP connections, with the bounds that keep one client (or anyone
//! who can reach the port) from exhausting the process:
//! - at most `max_connections` open connections: at the cap pimgate stops accepting (new
//!   connections wait in the kernel's backlog), so it never runs out of file descriptors;
//! - a connection must deliver a request's head within `header_read_timeout` of being
//!   accepted or of its first byte (a client that sends half a header and stops is closed);
//! - a kept-alive connection with no request for `idle_timeout` is closed;
//! - on shutdown, accepting stops, connections finish their requests and close.
//!
//! HTTP/1.1 only (identity providers and the PIM speak it; a TLS-terminating ingress talks
//! HTTP/1.1 to its backends).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

/// The connection-level bounds.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    /// The largest request head hyper buffers (URI and headers); pimgate's own, smaller
    /// limits answer with a body before this is reached.
    pub max_head_bytes: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long shutdown waits for open connections to finish.
    pub drain_timeout: Duration,
}

/// Where a connection is in its life, for the watchdog.
const IDLE: u8 = 0;
const READING_HEAD: u8 = 1;
const SERVING: u8 = 2;

/// What the watchdog of one connection sees: its phase and when the phase began (or when
/// the connection was last active, while idle), in ms since `origin`.
struct Watch {
    origin: Instant,
    phase: AtomicU8,
    since_ms: AtomicU64,
}

impl Watch {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            // A new connection owes its first request head.
            phase: AtomicU8::new(READING_HEAD),
            since_ms: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn enter(&self, phase: u8) {
        self.since_ms.store(self.now_ms(), Ordering::Release);
        self.phase.store(phase, Ordering::Release);
    }

    /// A request is being served (its time is bounded by the request deadline, not here).
    fn serving(&self) {
        self.phase.store(SERVING, Ordering::Release);
    }

    /// Bytes arrived: an idle connection starts a request head.
    fn read(&self) {
        if self.phase.load(Ordering::Acquire) == IDLE {
            self.enter(READING_HEAD);
        }
    }

    /// Bytes went out: an idle connection was active just now.
    fn wrote(&self) {
        if self.phase.load(Ordering::Acquire) == IDLE {
            self.since_ms.store(self.now_ms(), Ordering::Release);
        }
    }

    /// How long until the connection has overstayed its phase (`None`: it already has).
    fn remaining(&self, limits: &ConnectionLimits) -> Option<Duration> {
        let limit = match self.phase.load(Ordering::Acquire) {
            IDLE => limits.idle_timeout,
            READING_HEAD => limits.header_read_timeout,
            // A request in progress is bounded by the request timeout, not here.
            _ => return Some(limits.idle_timeout),
        };
        let spent = Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.since_ms.load(Ordering::Acquire)),
        );
        limit.checked_sub(spent).filter(|d| !d.is_zero())
    }
}

/// The socket, reporting its reads and writes to the watchdog.
struct Watched {
    inner: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.wrote();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, _peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait a moment
                    // rather than spin; the cap normally keeps this from happening.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let watch = Watch::new();
        let io = TokioIo::new(Watched {
            inner: stream,
            watch: watch.clone(),
        });
        let served = watch.clone();
        let service = TowerToHyperService::new(app.clone().map_request(
            move |req: hyper::Request<Incoming>| {
                served.serving();
                req
            },
        ));
        let service = Ended {
            inner: service,
            watch: watch.clone(),
        };
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            // The watchdog below times heads and idle connections separately.
            .header_read_timeout(None)
            .max_buf_size(limits.max_head_bytes.max(8192))
            .keep_alive(true)
            .serve_connection(io, service);
        let conn = graceful.watch(conn);
        let limits = limits.clone();
        tokio::spawn(async move {
            let _slot = permit;
            tokio::pin!(conn);
            // The watchdog is told nothing per request: it looks at the phase at least every
            // `check_every`, the shortest limit, so a phase that began while it slept is seen
            // before its own deadline and then closed exactly at it.
            let check_every = limits.header_read_timeout.min(limits.idle_timeout);
            loop {
                let Some(wait) = watch.remaining(&limits) else {
                    // Overstayed (a slow or idle client): drop the connection.
                    return;
                };
                tokio::select! {
                    done = &mut conn => {
                        if let Err(e) = done {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        return;
                    }
                    () = tokio::time::sleep(wait.min(check_every)) => {}
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain timeout were closed");
    }
    Ok(())
}

/// Marks the connection idle again once a response has been handed to hyper.
#[derive(Clone)]
struct Ended<S> {
    inner: S,
    watch: Arc<Watch>,
}

impl<S, R> hyper::service::Service<R> for Ended<S>
where
    S: hyper::service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, req: R) -> Self::Future {
        let fut = self.inner.call(req);
        let watch = self.watch.clone();
        Box::pin(async move {
            let out = fut.await;
            watch.enter(IDLE);
            out
        })
    }
}
