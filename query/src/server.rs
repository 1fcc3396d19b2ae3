//! The socket side of the service: accepts connections and hands them to hyper with explicit
//! limits, so that slow or idle clients cannot starve others or exhaust file descriptors.
//!
//! - Request headers must arrive within [`Limits::header_timeout`] (hyper's header-read timer);
//!   a connection with no bytes moving either way for [`Limits::idle_timeout`] is closed.
//! - At most [`Limits::max_connections`] connections are open at once. When a new one arrives at
//!   the cap, the connection that has been quiet longest *without a request in flight* is closed
//!   to make room (a slow-header client or an idle keep-alive one), so a client that sends its
//!   request promptly is served during a flood of slow ones; when every connection is busy the
//!   new one is refused.
//! - The soft limit on open files is raised to the hard one at start, and the cap is kept below it.
//! - Ctrl-C or SIGTERM stops accepting, lets requests in flight finish (up to 30 s), then returns.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tower::ServiceExt;

/// Connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most (kept below the open-file limit).
    pub max_connections: usize,
    /// Time a client has to send a request's headers.
    pub header_timeout: Duration,
    /// A connection with no bytes read or written for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Files kept free for the index, labels, tiles and logs beside the connections.
const SPARE_FILES: u64 = 128;
/// How long a shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(30);

/// Raises the soft open-file limit to the hard one; returns the soft limit now in force.
#[allow(unsafe_code)] // two libc calls on a local struct; no safe wrapper in the dependency tree
fn raise_file_limit() -> u64 {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                if lim.rlim_cur < lim.rlim_max {
                    let raised = libc::rlimit {
                        rlim_cur: lim.rlim_max,
                        rlim_max: lim.rlim_max,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                        lim.rlim_cur = lim.rlim_max;
                    }
                }
                return lim.rlim_cur;
            }
        }
    }
    1024
}

/// What the accept loop knows of each open connection.
#[derive(Debug)]
struct Conn {
    /// When bytes last moved or a request started or ended (milliseconds since the server
    /// started).
    last_active: Arc<AtomicU64>,
    in_flight: Arc<AtomicUsize>,
    close: Option<oneshot::Sender<()>>,
}

#[derive(Debug, Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Conn>>,
}

impl Registry {
    /// Closes the connection quiet longest with no request in flight; false when all are busy.
    fn evict_one(&self) -> bool {
        let mut conns = self.conns.lock().expect("registry lock");
        let victim = conns
            .iter()
            .filter(|(_, c)| c.in_flight.load(Ordering::Relaxed) == 0 && c.close.is_some())
            .min_by_key(|(_, c)| c.last_active.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        match victim
            .and_then(|id| conns.get_mut(&id))
            .and_then(|c| c.close.take())
        {
            Some(tx) => {
                let _ = tx.send(());
                true
            }
            None => false,
        }
    }
}

/// A socket that notes when bytes move and fails once nothing moved for `idle`.
struct Watched {
    inner: TcpStream,
    start: Instant,
    last_active: Arc<AtomicU64>,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Watched {
    fn touch(&mut self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last_active.store(now, Ordering::Relaxed);
        self.timer.as_mut().reset(tokio::time::Instant::now() + self.idle);
    }

    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection idle too long",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

use std::future::Future;

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.poll_idle(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.touch();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.poll_idle(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot watch SIGTERM ({e}); Ctrl-C still stops the server");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Serves `app` on `listener` within `limits` until Ctrl-C or SIGTERM.
pub async fn run(listener: TcpListener, app: Router, limits: Limits) -> std::io::Result<()> {
    run_until(listener, app, limits, stop_signal()).await
}

/// [`run`], stopping when `stop` resolves (tests stop it without a signal).
pub async fn run_until(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let files = raise_file_limit();
    let cap = limits
        .max_connections
        .clamp(1, files.saturating_sub(SPARE_FILES).max(1) as usize);
    if cap < limits.max_connections {
        tracing::warn!(
            wanted = limits.max_connections,
            cap,
            "connection cap lowered to stay below the open-file limit"
        );
    }
    let registry = Arc::new(Registry::default());
    let open = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut next_id = 0u64;
    let mut refused = 0u64;
    tokio::pin!(stop);
    loop {
        let (stream, _peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of files or a reset before accept: wait a moment, go on.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if open.load(Ordering::Acquire) >= cap && !registry.evict_one() {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(refused, cap, "connections refused: every open one is busy");
            }
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let last_active = Arc::new(AtomicU64::new(start.elapsed().as_millis() as u64));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (close_tx, close_rx) = oneshot::channel();
        registry.conns.lock().expect("registry lock").insert(
            id,
            Conn {
                last_active: last_active.clone(),
                in_flight: in_flight.clone(),
                close: Some(close_tx),
            },
        );
        open.fetch_add(1, Ordering::AcqRel);
        let io = Watched {
            inner: stream,
            start,
            last_active: last_active.clone(),
            idle: limits.idle_timeout,
            timer: Box::pin(tokio::time::sleep(limits.idle_timeout)),
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let app = app.clone();
            let in_flight = in_flight.clone();
            let last_active = last_active.clone();
            in_flight.fetch_add(1, Ordering::AcqRel);
            async move {
                let resp = app.oneshot(req.map(Body::new)).await;
                last_active.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
                in_flight.fetch_sub(1, Ordering::AcqRel);
                resp
            }
        });
        let mut drain = drain_rx.clone();
        let registry = registry.clone();
        let open = open.clone();
        tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::trace!("connection ended: {e}");
                    }
                }
                _ = close_rx => {
                    tracing::debug!("connection closed to make room");
                }
                _ = drain.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            registry.conns.lock().expect("registry lock").remove(&id);
            open.fetch_sub(1, Ordering::AcqRel);
        });
    }
    drop(listener);
    let _ = drain_tx.send(true);
    let deadline = Instant::now() + DRAIN;
    while open.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!("stopped");
    Ok(())
}
