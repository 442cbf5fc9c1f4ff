//! The accept loop: TCP (and TLS) connections served by hyper's HTTP/1.1 and HTTP/2, each by a
//! service made for it from its peer address, until shutdown; then a grace period for open
//! connections. Each connection has a watchdog for stalls ([`Progress`]), and its socket closes
//! lingering ([`Linger`]), beneath TLS.

use super::linger::Linger;
use super::watchdog::{Progress, STALL_LIMIT, Stall, Watched};
use crate::proxy::gateway::ConnInfo;
use crate::telemetry::metrics::WorkerLabels;
use crate::util::workers::Workers;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Longest a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `listener` until `shutdown` flips, each connection with the service `service` makes
/// for it, on one of `workers` if given (else on the runtime this runs on).
pub(super) async fn serve<F, S, B>(
    listener: TcpListener,
    service: F,
    tls: Option<tokio_rustls::TlsAcceptor>,
    grace: Duration,
    mut shutdown: watch::Receiver<bool>,
    workers: Option<Workers>,
    open: Option<Family<WorkerLabels, Gauge>>,
) where
    S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Error: Into<tower::BoxError>,
    S::Future: Send + 'static,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
    F: Fn(ConnInfo) -> S,
{
    // Each connection holds a sender until it ends: at shutdown, the channel closing says that
    // every connection has.
    let (alive, mut all_ended) = tokio::sync::mpsc::channel::<()>(1);
    let mut builder = auto::Builder::new(Shared(tokio::runtime::Handle::current()));
    // No header-read timeout of hyper's: the connection's watchdog closes a connection that
    // stalls before or between requests, whatever the protocol (`super::watchdog`).
    builder.http2().timer(hyper_util::rt::TokioTimer::new());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let conn = ConnInfo { peer, tls: tls.is_some(), client: peer.ip(), trusted: false };
                let progress = Progress::start();
                let svc = hyper_util::service::TowerToHyperService::new(Watched::new(service(conn), progress.clone()));
                let one = Connection { builder: builder.clone(), alive: alive.clone(), shutdown: shutdown.clone(), tls: tls.clone(), peer, open: open.clone(), progress };
                match &workers {
                    None => {
                        tokio::spawn(one.serve(stream, svc));
                    }
                    // The socket leaves this runtime's reactor and joins the worker's.
                    Some(workers) => match stream.into_std() {
                        Ok(stream) => workers.spawn(move || async move {
                            match tokio::net::TcpStream::from_std(stream) {
                                Ok(stream) => one.serve(stream, svc).await,
                                Err(e) => tracing::warn!(error = %e, "connection hand-off failed"),
                            }
                        }),
                        Err(e) => tracing::warn!(error = %e, "connection hand-off failed"),
                    },
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    drop(alive);
    if tokio::time::timeout(grace, all_ended.recv()).await.is_err() {
        tracing::warn!("shutdown grace period elapsed with connections still open");
    }
    // Only now: dropping the workers closes what they still serve.
    drop(workers);
}

/// Where hyper runs the tasks it spawns, which are the HTTP/2 streams (an HTTP/1.1 connection
/// serves its requests in its own task): on the shared runtime, so that the streams of one
/// HTTP/2 connection, which an ingress may send everything over, spread over every core
/// instead of staying on the worker that holds the connection.
#[derive(Clone)]
struct Shared(tokio::runtime::Handle);

impl<F> hyper::rt::Executor<F> for Shared
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.0.spawn(fut);
    }
}

/// What serving one accepted connection needs, wherever it runs.
struct Connection {
    builder: auto::Builder<Shared>,
    /// Held until the connection ends, for the shutdown's wait.
    alive: tokio::sync::mpsc::Sender<()>,
    /// Flips at shutdown: the connection finishes what it serves and closes.
    shutdown: watch::Receiver<bool>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    peer: std::net::SocketAddr,
    /// Where the connection is counted while open, by the worker serving it.
    open: Option<Family<WorkerLabels, Gauge>>,
    /// What its watchdog knows of it.
    progress: std::sync::Arc<Progress>,
}

/// One open connection counted on its worker's gauge until dropped (served or cancelled).
struct Counted(Gauge);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Connection {
    /// Serves `stream` with `svc` (after the TLS handshake, if any) until it closes.
    async fn serve<S, B>(self, stream: TcpStream, svc: S)
    where
        S: hyper::service::Service<
                http::Request<hyper::body::Incoming>,
                Response = http::Response<B>,
            > + Send
            + 'static,
        S::Error: Into<tower::BoxError>,
        S::Future: Send + 'static,
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<tower::BoxError>,
    {
        let Self {
            builder,
            alive,
            shutdown,
            tls,
            peer,
            open,
            progress,
        } = self;
        let _counted = open.map(|family| {
            let labels = WorkerLabels {
                worker: crate::util::workers::index().to_string(),
            };
            let gauge = family.get_or_create(&labels).clone();
            gauge.inc();
            Counted(gauge)
        });
        let ended = match tls {
            None => {
                let conn = builder.serve_connection_with_upgrades(
                    TokioIo::new(Linger::new(stream, progress.clone())),
                    svc,
                );
                drive(conn.into_owned(), &progress, peer, shutdown).await
            }
            Some(acceptor) => {
                // The socket comes back from a failed handshake, to be closed outright: there
                // is no answer to linger for.
                let stream = match tokio::time::timeout(
                    TLS_HANDSHAKE_TIMEOUT,
                    acceptor
                        .accept(Linger::new(stream, progress.clone()))
                        .into_fallible(),
                )
                .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err((e, socket))) => {
                        tracing::debug!(error = %e, %peer, "tls handshake failed");
                        progress.abandon();
                        drop(socket);
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "tls handshake timed out");
                        progress.abandon();
                        return;
                    }
                };
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                drive(conn.into_owned(), &progress, peer, shutdown).await
            }
        };
        drop(alive);
        if let Err(e) = ended {
            tracing::debug!(error = %e, "connection ended with error");
        }
    }
}

/// Serves `conn` until it ends. At shutdown, or once its watchdog finds an HTTP/2 connection
/// idle, it is shut gracefully (HTTP/1.1: after the request in progress; HTTP/2: a GOAWAY);
/// once its watchdog finds it stalled, it is dropped, which closes the socket outright.
async fn drive(
    conn: impl Finish,
    progress: &Progress,
    peer: std::net::SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), tower::BoxError> {
    let mut conn = std::pin::pin!(conn);
    // Once the graceful end has begun (at shutdown or for idleness), nothing starts it again.
    let mut going = false;
    loop {
        tokio::select! {
            // The connection first: it is what wakes the task, request after request.
            biased;
            ended = conn.as_mut() => return ended,
            // A change, or the channel closed with the server: either way, shut down.
            _ = shutdown.changed(), if !going => {
                going = true;
                conn.as_mut().finish();
            }
            stall = progress.stalled(STALL_LIMIT, !going) => match stall {
                Stall::Abandon => {
                    tracing::debug!(%peer, "connection closed: no request within the stall limit");
                    return Ok(());
                }
                Stall::GoAway => {
                    tracing::debug!(%peer, "idle HTTP/2 connection sent away");
                    going = true;
                    conn.as_mut().finish();
                }
            },
        }
    }
}

/// A served connection that can be asked to finish gracefully: hyper-util's own trait for this
/// is sealed.
trait Finish: std::future::Future<Output = Result<(), tower::BoxError>> {
    /// Starts the graceful end: HTTP/1.1 after the request in progress, HTTP/2 with a GOAWAY.
    fn finish(self: std::pin::Pin<&mut Self>);
}

impl<I, S, B> Finish for auto::UpgradeableConnection<'static, I, S, Shared>
where
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<tower::BoxError>,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    fn finish(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}
