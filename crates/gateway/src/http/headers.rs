//! Response headers every answer carries, and reading request headers:
//! the upgrade test and the forwarding headers (which only
//! `gateway.trustedProxies` may send).

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::GatewayState;

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

pub(crate) fn with_security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    security_headers(h);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub(crate) fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    with_security_headers(
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response(),
    )
}

/// A plain-text refusal with the security headers.
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

/// A header as text, if present and visible ASCII.
pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The `Host` header: a value that is not visible ASCII reads as an empty
/// name (refused by the Host rule), not as a missing header (answered).
pub(crate) fn host_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).map(|v| v.to_str().unwrap_or(""))
}

/// `Upgrade: websocket` with `Connection: upgrade`.
pub(crate) fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let upgrade =
        header_str(headers, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let connection = header_str(headers, "connection").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    });
    upgrade && connection
}

/// Forwarding headers that would change who we think the client is.
pub(crate) fn has_forwarding_headers(headers: &HeaderMap) -> bool {
    headers.keys().any(|k| {
        let k = k.as_str();
        k.starts_with("x-forwarded-") || k == "forwarded" || k == "x-real-ip"
    })
}

/// The client address behind a trusted proxy: the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
pub(crate) fn forwarded_client(state: &GatewayState, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
    let Some(xff) = header_str(headers, "x-forwarded-for") else {
        return peer;
    };
    xff.split(',')
        .rev()
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .find(|ip| !state.is_trusted_proxy(*ip))
        .unwrap_or(peer)
}
