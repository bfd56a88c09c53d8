//! The HTTP side of the port: routes, the WebSocket upgrade, and the
//! limits applied before a socket gets a handshake (per-IP and global caps
//! on unauthenticated sockets, forwarding headers from untrusted peers).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::{debug, warn};

use crate::auth::PeerContext;
use crate::state::GatewayState;

/// Unauthenticated sockets one address may hold.
pub const MAX_UNAUTH_PER_IP: usize = 32;
/// Unauthenticated sockets in total.
pub const MAX_UNAUTH_TOTAL: usize = 4096;

/// Counts of sockets that have upgraded but not authenticated yet.
#[derive(Debug, Default)]
pub struct UnauthSlots {
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    total: AtomicUsize,
}

/// One held slot; released on drop.
#[derive(Debug)]
pub struct UnauthSlot {
    state: Arc<GatewayState>,
    ip: IpAddr,
}

impl Drop for UnauthSlot {
    fn drop(&mut self) {
        let slots = &self.state.unauth;
        slots.total.fetch_sub(1, Ordering::Relaxed);
        let mut map = slots.per_ip.lock().expect("slots lock");
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl UnauthSlots {
    fn acquire(state: &Arc<GatewayState>, ip: IpAddr) -> Result<UnauthSlot, &'static str> {
        let slots = &state.unauth;
        let mut map = slots.per_ip.lock().expect("slots lock");
        if slots.total.load(Ordering::Relaxed) >= MAX_UNAUTH_TOTAL {
            return Err("global");
        }
        let n = map.entry(ip).or_insert(0);
        if *n >= MAX_UNAUTH_PER_IP {
            return Err("per_ip");
        }
        *n += 1;
        slots.total.fetch_add(1, Ordering::Relaxed);
        Ok(UnauthSlot {
            state: state.clone(),
            ip,
        })
    }

    /// Unauthenticated sockets held now.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
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
    if crate::auth::host_allowed(&state.config, header_str(req.headers(), "host")) {
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
    let slot = match crate::listener::UnauthSlots::acquire(&state, client_ip) {
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
