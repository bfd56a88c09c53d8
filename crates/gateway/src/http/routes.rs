//! The routes: `/healthz`, `/readyz`, `/metrics`, the Control UI, and the
//! WebSocket upgrade on any other path, done by hand (hyper upgrade +
//! tokio-tungstenite) so the handler owns the socket. Every request first
//! passes the Host check (`auth::host_allowed`, against DNS rebinding).
//!
//! In fronting mode (`gateway.upstream`) clawgate's own UI moves to
//! [`FRONTING_BASE`] and every other non-upgrade request goes to the
//! upstream proxy (`proxy.rs`: the upstream's Control UI at `/`, granted
//! capability paths); `/readyz` also says whether the upstream is reachable.
//! The passkey sign-in endpoints (`<base>api/passkeys/*`, `passkeys.rs`)
//! sit under the Control UI's base path.
//! A replica on a shared registry answers `/readyz` 503 while the registry
//! is unreachable or not caught up.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use tracing::{debug, warn};

use crate::auth;
use crate::http::control_ui::{ControlUi, FRONTING_BASE};
use crate::http::headers::{
    header_str, host_header, is_websocket_upgrade, json_response, refuse, with_security_headers,
};
use crate::http::jwks::{self, JwksCache};
use crate::http::passkeys;
use crate::http::proxy::UpstreamProxy;
use crate::http::upgrade;
use crate::state::GatewayState;
use crate::ws;

/// What every route sees.
#[derive(Clone)]
struct App {
    gateway: Arc<GatewayState>,
    control_ui: Arc<ControlUi>,
    /// Fronting mode: the upstream's UI and capability paths.
    proxy: Option<Arc<UpstreamProxy>>,
    /// Trusted-proxy mode with `jwt`: the proxy's key set.
    jwks: Arc<JwksCache>,
}

/// The router for one gateway.
pub(crate) fn router(gateway: Arc<GatewayState>, control_ui: Arc<ControlUi>) -> Router {
    let proxy = gateway
        .upstream()
        .map(|u| Arc::new(UpstreamProxy::new(u.clone())));
    // Fronting: `/` is the upstream's UI; clawgate's own moves aside.
    let control_ui = if proxy.is_some() && control_ui.base() != FRONTING_BASE {
        Arc::new(ControlUi::at(control_ui.enabled(), FRONTING_BASE))
    } else {
        control_ui
    };
    let app = App {
        gateway,
        control_ui,
        proxy,
        jwks: Arc::new(JwksCache::default()),
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(upgrade_or_ui)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            host_guard,
        ))
        .with_state(app)
}

/// Refuses a request addressed to a host name this gateway does not answer
/// to (DNS rebinding, see `auth::host_allowed`) before any route runs: the
/// Control UI, the WebSocket upgrade and the HTTP endpoints alike.
async fn host_guard(
    State(App { gateway: state, .. }): State<App>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    if auth::host_allowed(&state.config, host_header(req.headers())) {
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

async fn healthz(State(App { gateway: state, .. }): State<App>) -> Response {
    json_response(
        StatusCode::OK,
        serde_json::json!({"ok": true, "status": "live", "uptimeMs": state.uptime_ms()}),
    )
}

/// Ready: not stopping and, in fronting mode, the upstream reachable (the
/// last connect or probe succeeded, or a probe made now does). The answer
/// never names the upstream's address.
async fn readyz(State(App { gateway: state, .. }): State<App>) -> Response {
    if state.is_shutting_down() {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"ok": false, "status": "stopping"}),
        );
    }
    if !state.registry.is_up() {
        // A replica cut off from the shared registry: drain it.
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({
                "ok": false,
                "status": "registry-unreachable",
                "registry": state.registry.location(),
                "message": format!(
                    "device registry unreachable ({}): {}",
                    state.registry.location(),
                    state.registry.why()
                ),
            }),
        );
    }
    let upstream_down = match state.upstream() {
        Some(upstream) => !upstream.is_up() && !upstream.probe().await,
        None => false,
    };
    if upstream_down {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({
                "ok": false,
                "status": "upstream-unreachable",
                "upstream": "unreachable",
                "message": "the upstream gateway is not reachable",
            }),
        )
    } else {
        json_response(
            StatusCode::OK,
            serde_json::json!({"ok": true, "status": "ready"}),
        )
    }
}

/// `/metrics`: open on a loopback bind; on any other bind only with
/// `Authorization: Bearer <gateway.metrics.token>`, and off without a token.
async fn metrics(
    State(App { gateway: state, .. }): State<App>,
    headers: axum::http::HeaderMap,
) -> Response {
    if !state.config.bind.is_loopback() {
        let Some(expected) = &state.config.metrics_token else {
            return refuse(
                StatusCode::NOT_FOUND,
                "metrics are off on a non-loopback bind; set gateway.metrics.token (or CLAWGATE_METRICS_TOKEN) and scrape with Authorization: Bearer <token>",
            );
        };
        let presented = header_str(&headers, "authorization")
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        if !presented.is_some_and(|p| expected.matches(p)) {
            let mut resp = refuse(
                StatusCode::UNAUTHORIZED,
                "metrics need Authorization: Bearer <gateway.metrics.token>",
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"clawgate metrics\""),
            );
            return resp;
        }
    }
    with_security_headers(
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            match state.upstream() {
                Some(up) => state.metrics.render() + &up.render_metrics(),
                None => state.metrics.render(),
            },
        )
            .into_response(),
    )
}

/// Any other path: the WebSocket upgrade, or a Control UI file.
async fn upgrade_or_ui(
    State(App {
        gateway: state,
        control_ui,
        proxy,
        jwks,
    }): State<App>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    mut req: Request<Body>,
) -> Response {
    let headers = req.headers();
    if !is_websocket_upgrade(headers) {
        let path = req.uri().path();
        if control_ui.enabled()
            && let Some(which) = passkeys::Endpoint::of(control_ui.base(), path)
        {
            return passkeys::serve(&state, addr, which, req).await;
        }
        if control_ui.owns(path) {
            return control_ui.serve(req.method(), path, headers);
        }
        return match proxy {
            Some(proxy) => proxy.serve(req, control_ui.enabled()).await,
            None => refuse(StatusCode::NOT_FOUND, "not found"),
        };
    }
    let (checked, slot) = match upgrade::check(&state, addr, req.method(), headers)
        .and_then(|checked| upgrade::acquire(&state, &checked).map(|slot| (checked, slot)))
    {
        Ok(ok) => ok,
        Err(refused) => return refused_upgrade(&state, addr, refused),
    };
    // Trusted-proxy mode: the identity headers (and the proxy's signed
    // assertion) are only here; the connect decision reads the verdict.
    let proxy_auth = jwks::proxy_verdict(&state, &jwks, addr.ip(), req.headers()).await;
    let peer = upgrade::peer_context(&checked, addr, req.headers(), proxy_auth);
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return refuse(StatusCode::BAD_REQUEST, "connection cannot be upgraded");
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                ws::serve(state, TokioIo::new(upgraded), peer, slot, Vec::new()).await;
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
        HeaderValue::from_str(&checked.accept).expect("accept key is ASCII"),
    );
    resp
}

/// Answers a refused upgrade, counting it.
fn refused_upgrade(state: &GatewayState, addr: SocketAddr, refused: upgrade::Refused) -> Response {
    if let Some(label) = refused.metric {
        state.metrics.upgrade_refused(label);
    }
    match refused.metric {
        Some("untrusted_forwarding") => {
            warn!(peer = %addr.ip(), "upgrade refused: forwarding headers from a peer not in gateway.trustedProxies");
        }
        Some(label @ ("unauth_global_cap" | "unauth_per_ip_cap")) => {
            debug!(peer = %addr.ip(), label, "upgrade refused: too many unauthenticated sockets");
        }
        _ => {}
    }
    let mut resp = refuse(refused.status, refused.message);
    if refused.status == StatusCode::METHOD_NOT_ALLOWED {
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
    }
    resp
}
