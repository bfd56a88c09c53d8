//! The accept loop: a deep listen queue, TCP_NODELAY, a counted slot and
//! a request-head deadline for every connection still in the HTTP phase;
//! the first request head read here, a WebSocket upgrade taken in the same
//! task (`upgrade.rs`), anything else to hyper with the router
//! (`routes.rs`). With `gateway.tls` on, the TLS handshake runs first,
//! within the same deadline and slot.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::http::control_ui::ControlUi;
use crate::http::routes::router;
use crate::http::upgrade::{self, FirstRequest, Prefixed};
use crate::state::GatewayState;
use crate::state::slots::{SlotRefusal, UnauthSlot};
use crate::ws;

/// The answer to a connection refused at accept time (written without
/// reading the request; the client may see a reset instead).
const HTTP_CAP_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 44\r\nconnection: close\r\n\r\ntoo many pending connections; retry shortly\n";

/// The answer to plain HTTP on a TLS port (a `ws://` or `http://` URL for
/// a gateway that speaks only `wss://` / `https://`).
const PLAIN_ON_TLS_RESPONSE: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 69\r\nconnection: close\r\n\r\nthis gateway port speaks TLS: use https:// or wss:// instead of http\n";

/// The accept queue asked for (the kernel caps it at `net.core.somaxconn`).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds the gateway's listener with a deep accept queue: a burst of
/// connects (a flood, or every client reconnecting after a restart) waits
/// in the queue instead of being dropped, which a client would notice only
/// after its 1 s SYN-ACK retransmit. (tokio's `TcpListener::bind` asks for
/// 1024.)
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(LISTEN_BACKLOG)
}

/// Serves HTTP on `listener` until `stop` resolves.
///
/// This replaces `axum::serve`, which gives a connection unlimited time to
/// send its request (hyper's header-read timeout needs a timer, and axum
/// sets none). Here every accepted connection:
/// - counts against the per-address and global caps (the same numbers as
///   for unauthenticated WebSockets; trusted proxies only globally) until
///   it upgrades or closes (keep-alive included: an idle keep-alive
///   connection is closed by the header-read timeout); over a cap it gets
///   a 503 and is closed at once;
/// - must deliver a complete first request head within
///   `handshake_timeout` (a socket that sends nothing, or a byte at a
///   time, is closed), and every later head on a keep-alive connection
///   within the same time (hyper's header-read timeout).
///
/// With TLS (`state.tls()`), the handshake must also finish within that
/// time, counted from the accept (so a client that never completes it
/// frees its slot like one that never sends a request).
///
/// Upgraded sockets then fall under the WebSocket handler's own deadline.
pub async fn serve_http(
    listener: TcpListener,
    state: Arc<GatewayState>,
    control_ui: Arc<ControlUi>,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = router(state.clone(), control_ui);
    let tls = state.tls().map(|t| t.acceptor().clone());
    let (close_tx, close_rx) = tokio::sync::watch::channel(false);
    let mut stop = std::pin::pin!(stop);
    loop {
        let (tcp, addr) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(err) => {
                    // Out of descriptors and the like: back off instead of
                    // spinning; the deadlines free descriptors meanwhile.
                    debug!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Replies are small frames written back to back: without
        // TCP_NODELAY, Nagle plus delayed ACKs stall them ~40 ms.
        if let Err(err) = tcp.set_nodelay(true) {
            debug!(%err, "TCP_NODELAY not set");
        }
        let ip = addr.ip();
        let per_ip = (!state.is_trusted_proxy(ip)).then_some(ip);
        let slot = match state.acquire_http(per_ip) {
            Ok(slot) => slot,
            Err(which) => {
                state.metrics.upgrade_refused(match which {
                    SlotRefusal::Global => "http_global_cap",
                    SlotRefusal::PerIp => "http_per_ip_cap",
                });
                debug!(peer = %ip, ?which, "connection refused: too many pending HTTP connections");
                let _ = tcp.try_write(HTTP_CAP_RESPONSE);
                continue;
            }
        };
        let deadline = Instant::now() + state.options.handshake_timeout;
        match &tls {
            None => tokio::spawn(serve_connection(
                state.clone(),
                app.clone(),
                tcp,
                addr,
                slot,
                close_rx.clone(),
                deadline,
            )),
            Some(acceptor) => tokio::spawn(serve_tls_connection(
                state.clone(),
                app.clone(),
                acceptor.clone(),
                tcp,
                addr,
                slot,
                close_rx.clone(),
                deadline,
            )),
        };
    }
    drop(listener);
    // No new connections; those in the HTTP phase finish their request.
    close_tx.send_replace(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while state.pending_http.total() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// The TLS handshake (by `deadline`, given up on eviction or shutdown),
/// then [`serve_connection`] over the TLS stream. Plain HTTP is answered
/// with a 400 that says to use https:// or wss://.
#[allow(clippy::too_many_arguments)]
async fn serve_tls_connection(
    state: Arc<GatewayState>,
    app: Router,
    acceptor: TlsAcceptor,
    mut tcp: TcpStream,
    addr: SocketAddr,
    slot: UnauthSlot,
    mut close: tokio::sync::watch::Receiver<bool>,
    deadline: Instant,
) {
    let handshake = async {
        // A TLS record starts with 0x16 (handshake); a letter is an HTTP
        // method: someone used ws:// or http://.
        let mut first = [0u8; 1];
        if tcp.peek(&mut first).await? == 1 && first[0].is_ascii_alphabetic() {
            let _ = tcp.write_all(PLAIN_ON_TLS_RESPONSE).await;
            let _ = tcp.shutdown().await;
            return Err(std::io::Error::other("plain HTTP on the TLS port"));
        }
        acceptor.accept(tcp).await
    };
    let tls = Phase {
        failed: Some("tls_handshake_failed"),
        timeout: "tls_handshake_timeout",
        name: "TLS",
    };
    let Some(stream) =
        before_deadline(&state, addr, &slot, &mut close, deadline, tls, handshake).await
    else {
        return;
    };
    serve_connection(state, app, stream, addr, slot, close, deadline).await
}

/// A step of the HTTP phase (the TLS handshake, reading the first head):
/// its metric labels for a failure and a timeout, and its name in logs.
struct Phase {
    failed: Option<&'static str>,
    timeout: &'static str,
    name: &'static str,
}

/// `step` by `deadline`; `None` (counted and logged) when it fails, times
/// out, the slot is evicted for a newer connection, or the gateway closes.
async fn before_deadline<T, E: std::fmt::Display>(
    state: &GatewayState,
    addr: SocketAddr,
    slot: &UnauthSlot,
    close: &mut tokio::sync::watch::Receiver<bool>,
    deadline: Instant,
    phase: Phase,
    step: impl Future<Output = Result<T, E>>,
) -> Option<T> {
    let name = phase.name;
    tokio::select! {
        done = tokio::time::timeout_at(deadline, step) => match done {
            Ok(Ok(value)) => Some(value),
            Ok(Err(err)) => {
                if let Some(label) = phase.failed {
                    state.metrics.upgrade_refused(label);
                }
                debug!(peer = %addr.ip(), %err, "{name} connection ended");
                None
            }
            Err(_) => {
                state.metrics.upgrade_refused(phase.timeout);
                debug!(peer = %addr.ip(), "{name}: nothing complete in time");
                None
            }
        },
        _ = slot.evicted() => {
            debug!(peer = %addr.ip(), "pending {name} connection evicted for a newer one");
            None
        }
        _ = close.changed() => None,
    }
}

/// One connection in the HTTP phase: its first request head read here
/// (`upgrade.rs`); an upgrade that passes every check becomes a WebSocket
/// in this task, anything else goes to hyper with the bytes read so far.
/// All of it by `deadline`, ended early by eviction or shutdown.
async fn serve_connection<S>(
    state: Arc<GatewayState>,
    app: Router,
    mut io: S,
    addr: SocketAddr,
    slot: UnauthSlot,
    mut close: tokio::sync::watch::Receiver<bool>,
    deadline: Instant,
) where
    S: AsyncRead + AsyncWrite + ws::ReadReady + Unpin + Send + 'static,
{
    let head = Phase {
        failed: None,
        timeout: "http_request_timeout",
        name: "HTTP",
    };
    let read = upgrade::first_request(&state, addr, &mut io);
    let Some(first) = before_deadline(&state, addr, &slot, &mut close, deadline, head, read).await
    else {
        return;
    };
    match first {
        FirstRequest::Upgrade {
            slot: ws_slot,
            peer,
            response,
            rest,
        } => {
            drop(slot);
            // A task of its own: the accept phase's state (this future)
            // is freed, and an idle WebSocket's task is only its own.
            tokio::spawn(ws::serve(
                state,
                Prefixed::new(rest, io),
                peer,
                ws_slot,
                response,
            ));
        }
        FirstRequest::Hyper(read) => {
            // Boxed: an idle WebSocket's task is not sized for hyper's
            // connection state.
            Box::pin(serve_hyper(
                state,
                app,
                Prefixed::new(read, io),
                addr,
                slot,
                close,
                deadline,
            ))
            .await;
        }
        FirstRequest::Closed => {}
    }
}

/// hyper over `io` (TCP, or TLS over TCP, with the bytes already read in
/// front) until the connection ends, is evicted, or sends no complete
/// first request head by `deadline`.
async fn serve_hyper<S>(
    state: Arc<GatewayState>,
    app: Router,
    io: S,
    addr: SocketAddr,
    slot: UnauthSlot,
    mut close: tokio::sync::watch::Receiver<bool>,
    deadline: Instant,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let requests = Arc::new(AtomicUsize::new(0));
    let service = {
        let requests = requests.clone();
        hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            requests.fetch_add(1, Ordering::Relaxed);
            req.extensions_mut().insert(ConnectInfo(addr));
            let mut app = app.clone();
            async move { tower_service::Service::call(&mut app, req).await }
        })
    };
    let timeout = state.options.handshake_timeout;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeout);
    let mut conn = std::pin::pin!(
        builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
    );
    let first = tokio::time::sleep_until(deadline);
    let mut first = std::pin::pin!(first);
    let mut waiting_first = true;
    let evicted = slot.evicted();
    let mut evicted = std::pin::pin!(evicted);
    let mut closing = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(err) = ended {
                    debug!(peer = %addr.ip(), %err, "HTTP connection ended");
                }
                break;
            }
            _ = &mut first, if waiting_first => {
                if requests.load(Ordering::Relaxed) == 0 {
                    state.metrics.upgrade_refused("http_request_timeout");
                    debug!(peer = %addr.ip(), "no complete HTTP request in time");
                    break;
                }
                waiting_first = false;
            }
            _ = &mut evicted => {
                debug!(peer = %addr.ip(), "pending HTTP connection evicted for a newer one");
                break;
            }
            _ = close.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    drop(slot);
}
