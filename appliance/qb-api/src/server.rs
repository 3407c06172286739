//! The HTTP listener: accepts TCP connections and serves HTTP/1.1 on them
//! within bounds no client can stretch.
//!
//! - At most `http.max_connections` connections at once; a connection over
//!   the limit is closed at once (a quick failure rather than a queue an
//!   attacker fills). A `/ws` connection keeps its slot while it lives.
//! - Request headers must arrive within `http.header_timeout_secs` of the
//!   connection opening or of the previous response: one byte a minute no
//!   longer holds a connection, and an idle keep-alive connection is closed
//!   after the same bound.
//! - A request body must arrive within `http.body_timeout_secs` in all
//!   ([`crate::middleware::body_deadline`]).
//! - HTTP/1.1 only: browsers reach the box over HTTP/1.1 (or over a TLS
//!   proxy), and cleartext HTTP/2 would need bounds of its own.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;
use tracing::{debug, warn};

/// What one listener allows.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

impl Bounds {
    pub fn from_config(c: &qb_core::config::HttpConfig) -> Self {
        Self {
            max_connections: c.max_connections,
            header_timeout: Duration::from_secs(c.header_timeout_secs),
        }
    }
}

/// A connection's place under `http.max_connections`, in every request's
/// extensions: a `/ws` handler holds on to it for the socket's life (the
/// HTTP connection ends when it is upgraded). The place is free again when
/// the last clone goes.
#[derive(Clone)]
pub struct ConnectionSlot(#[allow(dead_code)] Arc<Held>);

pub struct Held {
    _permit: OwnedSemaphorePermit,
    gauges: Arc<dyn ConnectionGauges>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauges.closed();
    }
}

/// Open connections and connections refused for the limit, for metrics.
pub trait ConnectionGauges: Send + Sync + 'static {
    fn opened(&self);
    fn closed(&self);
    fn refused(&self);
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting and waits for open connections to finish their requests
/// (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    bounds: Bounds,
    gauges: Arc<dyn ConnectionGauges>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let slots = Arc::new(Semaphore::new(bounds.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.header_timeout);
    let builder = builder.http1_only();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off
                    // instead of spinning; the listener stays.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            gauges.refused();
            debug!(%peer, "connection refused: http.max_connections reached");
            drop(stream);
            continue;
        };
        gauges.opened();
        let _ = stream.set_nodelay(true);
        let slot = ConnectionSlot(Arc::new(Held {
            _permit: permit,
            gauges: gauges.clone(),
        }));
        let service = app
            .clone()
            .map_request(move |mut req: axum::http::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req.extensions_mut().insert(slot.clone());
                req
            });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
