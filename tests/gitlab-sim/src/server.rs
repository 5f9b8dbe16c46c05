//! The HTTP server: binds 127.0.0.1, runs its own tokio runtime on its own
//! thread (so plain synchronous tests can use it), accepts connections and
//! serves HTTP/1.1 on each with hyper (over TLS when started with it),
//! drops connections without a response when the knob says so, and stops
//! (closing the port) on request. Each request is handled in a task of its
//! own that runs to completion even if the client disconnects meanwhile (as
//! GitLab's Puma workers do): a client killed during the latency still
//! leaves its runner created and its request logged.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower::ServiceExt;

use crate::app::{self, Shared};
use crate::pipeline::ConnInfo;
use crate::tls::Tls;

/// A running server; dropping it stops the server and joins its thread.
#[derive(Debug)]
pub(crate) struct Server {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Returned by the per-request service to make hyper close the connection
/// without writing a response.
#[derive(Debug)]
struct DroppedConnection;

impl std::fmt::Display for DroppedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the drop_connections knob")
    }
}

impl std::error::Error for DroppedConnection {}

impl Server {
    /// Binds `127.0.0.1:port` (0 = any free port) and starts serving.
    pub(crate) fn start(shared: Arc<Shared>, port: u16, tls: Option<Tls>) -> io::Result<Server> {
        let listener = StdListener::bind((Ipv4Addr::LOCALHOST, port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("gitlab-sim")
            .enable_all()
            .build()?;
        let (tx, rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("gitlab-sim-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(accept_loop(listener, shared, tls, rx));
                // Dropping the runtime cancels every connection task.
                drop(runtime);
            })?;
        Ok(Server {
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the service answers when the handling task panicked.
fn internal_error() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        r#"{"message":"500 Internal Server Error"}"#,
    )
        .into_response()
}

async fn accept_loop(
    listener: StdListener,
    shared: Arc<Shared>,
    tls: Option<Tls>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gitlab-sim: cannot listen: {e}");
            return;
        }
    };
    let router = app::router(shared.clone());
    let local = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("gitlab-sim: cannot listen: {e}");
            return;
        }
    };
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                // Transient accept errors (EMFILE, aborted handshakes): keep going.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if shared.knobs.drop_connections() {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let shared = shared.clone();
        let service = service_fn(move |mut req: hyper::Request<Incoming>| {
            let router = router.clone();
            let shared = shared.clone();
            async move {
                if shared.knobs.drop_connections() {
                    return Err(DroppedConnection);
                }
                req.extensions_mut().insert(ConnInfo { peer, local });
                // Like GitLab, finish what was asked even if the client goes
                // away: hyper drops this future when the connection closes,
                // but not the task (latency, handler and log entry included).
                let handling = tokio::spawn(async move {
                    match router.oneshot(req).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    }
                });
                match handling.await {
                    Ok(response) => Ok(response),
                    // The handler panicked (or the runtime is shutting down).
                    Err(_) => Ok(internal_error()),
                }
            }
        });
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
                // A client that does not trust the CA ends the handshake:
                // no request reaches the router or the log.
                Some(tls) => {
                    if let Ok(stream) = tls.acceptor.accept(stream).await {
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            }
        });
    }
}
