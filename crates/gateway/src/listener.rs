//! The HTTP side of the port: routes, the WebSocket upgrade, and the
//! limits applied before a socket gets a handshake (per-IP and global caps
//! on unauthenticated sockets, forwarding headers from untrusted peers).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::{debug, warn};

use crate::auth::PeerContext;
use crate::state::GatewayState;

/// Unauthenticated sockets one address may hold.
pub const MAX_UNAUTH_PER_IP: usize = 32;
/// Unauthenticated sockets in total.
pub const MAX_UNAUTH_TOTAL: usize = 4096;

/// Counts of sockets in one pre-authentication phase: upgraded but not
/// authenticated (`GatewayState::unauth`), or accepted but without a
/// complete HTTP request yet (`GatewayState::pending_http`).
///
/// Over the per-address cap a new socket is refused. At the global cap the
/// oldest socket of the phase is evicted to make room (a slow or idle
/// socket is by then the oldest, while a client that completes its
/// handshake needs its slot only for milliseconds), so sockets from many
/// addresses cannot lock legitimate clients out until their deadlines
/// pass. An evicted socket stops counting at once and is closed when its
/// task next runs (a connect it is already deciding still completes). Until
/// its task drops the slot it counts as lingering, and lingering slots are
/// bounded by the cap too, past which newcomers are refused; the close
/// handshake that follows (up to 2.5 s against a silent peer) is not
/// counted, so sockets closing are bounded only by the rate of evictions.
#[derive(Debug, Default)]
pub struct UnauthSlots {
    table: Mutex<SlotTable>,
    total: AtomicUsize,
}

#[derive(Debug, Default)]
struct SlotTable {
    per_ip: HashMap<IpAddr, usize>,
    /// Live slots by age (ids increase): the first is the oldest.
    order: BTreeMap<u64, (Option<IpAddr>, Arc<Notify>)>,
    next_id: u64,
    /// Evicted slots not yet dropped by their socket's task.
    lingering: usize,
}

/// Which count a slot is held in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pool {
    Unauth,
    Http,
}

/// One held slot; released on drop.
#[derive(Debug)]
pub struct UnauthSlot {
    state: Arc<GatewayState>,
    /// The address counted against, if any (trusted proxies are only
    /// counted globally while in the HTTP phase).
    ip: Option<IpAddr>,
    pool: Pool,
    id: u64,
    evict: Arc<Notify>,
}

impl UnauthSlot {
    /// Resolves when this socket is evicted to make room for a newer one.
    pub fn evicted(&self) -> impl Future<Output = ()> + use<> {
        Self::evicted_if_held(Some(self))
    }

    /// [`Self::evicted`] for a slot that may not be held (then it never
    /// resolves). Borrows nothing, so the slot can be dropped meanwhile.
    pub(crate) fn evicted_if_held(slot: Option<&UnauthSlot>) -> impl Future<Output = ()> + use<> {
        let evict = slot.map(|s| s.evict.clone());
        async move {
            match evict {
                Some(e) => e.notified().await,
                None => std::future::pending().await,
            }
        }
    }
}

impl Drop for UnauthSlot {
    fn drop(&mut self) {
        let slots = match self.pool {
            Pool::Unauth => &self.state.unauth,
            Pool::Http => &self.state.pending_http,
        };
        slots.give_back(self.ip, self.id);
    }
}

/// What taking a slot did.
struct Taken {
    id: u64,
    evict: Arc<Notify>,
    /// An older socket was evicted to make room.
    evicted: bool,
}

impl UnauthSlots {
    fn take(&self, ip: Option<IpAddr>, per_ip: usize, total: usize) -> Result<Taken, &'static str> {
        let mut t = self.table.lock().expect("slots lock");
        if let Some(ip) = ip
            && t.per_ip.get(&ip).copied().unwrap_or(0) >= per_ip
        {
            return Err("per_ip");
        }
        let held = self.total.load(Ordering::Relaxed);
        let mut evicted = false;
        if held >= total {
            if t.lingering >= total {
                return Err("global");
            }
            match t.order.pop_first() {
                Some((_, (old_ip, oldest))) => {
                    // Uncounted now; its task closes it when it next runs.
                    self.total.fetch_sub(1, Ordering::Relaxed);
                    if let Some(ip) = old_ip {
                        Self::uncount(&mut t.per_ip, ip);
                    }
                    t.lingering += 1;
                    oldest.notify_one();
                    evicted = true;
                }
                None => return Err("global"),
            }
        }
        if let Some(ip) = ip {
            *t.per_ip.entry(ip).or_insert(0) += 1;
        }
        let id = t.next_id;
        t.next_id += 1;
        let evict = Arc::new(Notify::new());
        t.order.insert(id, (ip, evict.clone()));
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Taken { id, evict, evicted })
    }

    fn give_back(&self, ip: Option<IpAddr>, id: u64) {
        let mut t = self.table.lock().expect("slots lock");
        if t.order.remove(&id).is_none() {
            // Evicted: already uncounted.
            t.lingering -= 1;
            return;
        }
        self.total.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = ip {
            Self::uncount(&mut t.per_ip, ip);
        }
    }

    fn uncount(per_ip: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
        if let Some(n) = per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&ip);
            }
        }
    }

    fn acquire_in(
        state: &Arc<GatewayState>,
        pool: Pool,
        ip: Option<IpAddr>,
    ) -> Result<UnauthSlot, &'static str> {
        let o = &state.options;
        // Per address, as the limiter counts it (an IPv6 host by its /64).
        let ip = ip.map(crate::limiter::limit_peer);
        let slots = match pool {
            Pool::Unauth => &state.unauth,
            Pool::Http => &state.pending_http,
        };
        let taken = slots.take(ip, o.max_unauth_per_ip, o.max_unauth_total)?;
        if taken.evicted {
            state.metrics.upgrade_refused(match pool {
                Pool::Unauth => "unauth_oldest_evicted",
                Pool::Http => "http_oldest_evicted",
            });
        }
        Ok(UnauthSlot {
            state: state.clone(),
            ip,
            pool,
            id: taken.id,
            evict: taken.evict,
        })
    }

    /// A slot for an upgraded, unauthenticated socket from `ip`.
    pub(crate) fn acquire(
        state: &Arc<GatewayState>,
        ip: IpAddr,
    ) -> Result<UnauthSlot, &'static str> {
        Self::acquire_in(state, Pool::Unauth, Some(ip))
    }

    /// A slot for a connection in the HTTP phase (`ip` None: not counted
    /// per address).
    fn acquire_http(
        state: &Arc<GatewayState>,
        ip: Option<IpAddr>,
    ) -> Result<UnauthSlot, &'static str> {
        Self::acquire_in(state, Pool::Http, ip)
    }

    /// Sockets held now.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Sockets held now by one address (an IPv6 address: its /64).
    pub fn held_by(&self, ip: IpAddr) -> usize {
        self.table
            .lock()
            .expect("slots lock")
            .per_ip
            .get(&crate::limiter::limit_peer(ip))
            .copied()
            .unwrap_or(0)
    }
}

/// The answer to a connection refused at accept time (written without
/// reading the request; the client may see a reset instead).
const HTTP_CAP_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 44\r\nconnection: close\r\n\r\ntoo many pending connections; retry shortly\n";

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
/// Upgraded sockets then fall under `connection.rs`'s own deadline.
pub async fn serve_http(
    listener: TcpListener,
    state: Arc<GatewayState>,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = router(state.clone());
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
        let slot = match UnauthSlots::acquire_http(&state, per_ip) {
            Ok(slot) => slot,
            Err(which) => {
                state.metrics.upgrade_refused(if which == "global" {
                    "http_global_cap"
                } else {
                    "http_per_ip_cap"
                });
                debug!(peer = %ip, which, "connection refused: too many pending HTTP connections");
                let _ = tcp.try_write(HTTP_CAP_RESPONSE);
                continue;
            }
        };
        tokio::spawn(serve_connection(
            state.clone(),
            app.clone(),
            tcp,
            addr,
            slot,
            close_rx.clone(),
        ));
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

async fn serve_connection(
    state: Arc<GatewayState>,
    app: Router,
    tcp: TcpStream,
    addr: SocketAddr,
    slot: UnauthSlot,
    mut close: tokio::sync::watch::Receiver<bool>,
) {
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
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades()
    );
    let first = tokio::time::sleep(timeout);
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

/// The router for one gateway.
pub fn router(state: Arc<GatewayState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(root)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            host_guard,
        ))
        .with_state(state)
}

/// Refuses a request addressed to a host name this gateway does not answer
/// to (DNS rebinding, see `auth::host_allowed`) before any route runs: the
/// Control UI, the WebSocket upgrade and the HTTP endpoints alike.
async fn host_guard(
    State(state): State<Arc<GatewayState>>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    // A Host that is present but not visible ASCII is checked as an empty
    // name (refused), not as a missing header (answered).
    let host = req
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or(""));
    if crate::auth::host_allowed(&state.config, host) {
        return next.run(req).await;
    }
    if is_websocket_upgrade(req.headers()) {
        state.metrics.upgrade_refused("host_not_allowed");
    }
    debug!("request refused: Host header names a host this gateway does not answer to");
    refuse(
        StatusCode::FORBIDDEN,
        "this gateway does not answer to that host name; use http://127.0.0.1 or localhost, or add the name to gateway.allowedHosts",
    )
}

/// The headers every HTTP response carries (the Control UI adds its own
/// policy on top, see `control_ui.rs`).
pub(crate) fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn with_security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    security_headers(h);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    with_security_headers(
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response(),
    )
}

async fn healthz(State(state): State<Arc<GatewayState>>) -> Response {
    json_response(
        StatusCode::OK,
        serde_json::json!({"ok": true, "status": "live", "uptimeMs": state.uptime_ms()}),
    )
}

async fn readyz(State(state): State<Arc<GatewayState>>) -> Response {
    if state.is_shutting_down() {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"ok": false, "status": "stopping"}),
        )
    } else {
        json_response(
            StatusCode::OK,
            serde_json::json!({"ok": true, "status": "ready"}),
        )
    }
}

async fn metrics(State(state): State<Arc<GatewayState>>) -> Response {
    with_security_headers(
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            state.metrics.render(),
        )
            .into_response(),
    )
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let upgrade =
        header_str(headers, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let connection = header_str(headers, "connection").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    });
    upgrade && connection
}

/// Forwarding headers that would change who we think the client is.
fn has_forwarding_headers(headers: &HeaderMap) -> bool {
    headers.keys().any(|k| {
        let k = k.as_str();
        k.starts_with("x-forwarded-") || k == "forwarded" || k == "x-real-ip"
    })
}

/// The client address behind a trusted proxy: the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
fn forwarded_client(state: &GatewayState, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
    let Some(xff) = header_str(headers, "x-forwarded-for") else {
        return peer;
    };
    xff.split(',')
        .rev()
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .find(|ip| !state.is_trusted_proxy(*ip))
        .unwrap_or(peer)
}

pub(crate) fn refuse(status: StatusCode, message: &str) -> Response {
    with_security_headers(
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{message}\n"),
        )
            .into_response(),
    )
}

async fn root(
    State(state): State<Arc<GatewayState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    mut req: Request<Body>,
) -> Response {
    let headers = req.headers();
    if !is_websocket_upgrade(headers) {
        let path = req.uri().path();
        if !state.control_ui.owns(path) {
            return refuse(StatusCode::NOT_FOUND, "not found");
        }
        return state.control_ui.serve(req.method(), path, headers);
    }
    let forwarded = has_forwarding_headers(headers);
    if forwarded && !state.is_trusted_proxy(addr.ip()) {
        state.metrics.upgrade_refused("untrusted_forwarding");
        warn!(peer = %addr.ip(), "upgrade refused: forwarding headers from a peer not in gateway.trustedProxies");
        return refuse(
            StatusCode::FORBIDDEN,
            "forwarding headers are only accepted from gateway.trustedProxies",
        );
    }
    if state.is_shutting_down() {
        state.metrics.upgrade_refused("shutting_down");
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "gateway is shutting down");
    }
    let client_ip = if forwarded {
        forwarded_client(&state, headers, addr.ip())
    } else {
        addr.ip()
    };
    if header_str(headers, "sec-websocket-version") != Some("13") {
        return refuse(StatusCode::BAD_REQUEST, "unsupported websocket version");
    }
    let Some(key) = headers.get("sec-websocket-key") else {
        return refuse(StatusCode::BAD_REQUEST, "missing sec-websocket-key");
    };
    let accept = derive_accept_key(key.as_bytes());
    let slot = match UnauthSlots::acquire(&state, client_ip) {
        Ok(slot) => slot,
        Err(which) => {
            state.metrics.upgrade_refused(if which == "global" {
                "unauth_global_cap"
            } else {
                "unauth_per_ip_cap"
            });
            debug!(peer = %client_ip, which, "upgrade refused: too many unauthenticated sockets");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many unauthenticated connections; retry shortly",
            );
        }
    };
    let peer = PeerContext {
        ip: client_ip,
        direct_local: addr.ip().is_loopback() && !forwarded,
        origin: header_str(headers, "origin").map(str::to_owned),
        host: header_str(headers, "host").map(str::to_owned),
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return refuse(StatusCode::BAD_REQUEST, "connection cannot be upgraded");
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                crate::connection::serve(state, TokioIo::new(upgraded), peer, slot).await;
            }
            Err(err) => debug!(%err, "upgrade failed"),
        }
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&accept).expect("accept key is ASCII"),
    );
    resp
}
