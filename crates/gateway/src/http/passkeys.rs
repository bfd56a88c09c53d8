//! The pre-auth passkey sign-in endpoints under the Control UI's base path:
//! `POST <base>api/passkeys/options` and `POST <base>api/passkeys/signin`
//! (docs/passkeys.md). The decision is `auth::passkey_signin`; this file is
//! the HTTP shape around it: POST with `Content-Type: application/json`
//! (a cross-site form cannot send that without a CORS preflight, which
//! this gateway never grants), an `Origin` that passes the same rule as a
//! browser's WebSocket, forwarding headers only from trusted proxies, a
//! 64 KiB body, one JSON shape (unknown fields refused), and the
//! limiter's delay held before a refusal is answered.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use clawgate_protocol::catalogue;
use clawgate_protocol::frames::ErrorShape;
use clawgate_protocol::wire::{SigninOptionsRequest, SigninRequest};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::auth;
use crate::auth::passkey::Refused;
use crate::auth::passkey_signin::{self, SigninRefusal};
use crate::http::headers::{forwarded_client, has_forwarding_headers, header_str, json_response};
use crate::session::{PeerContext, ProxyAuth, is_loopback};
use crate::state::GatewayState;

/// The largest body either endpoint reads.
const MAX_BODY: usize = 64 * 1024;

/// Which endpoint a path under the UI's base is, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Options,
    Signin,
}

impl Endpoint {
    /// `path` relative to the UI's `base` (which ends with `/`).
    pub(crate) fn of(base: &str, path: &str) -> Option<Endpoint> {
        match path.strip_prefix(base)? {
            "api/passkeys/options" => Some(Endpoint::Options),
            "api/passkeys/signin" => Some(Endpoint::Signin),
            _ => None,
        }
    }
}

fn error(status: StatusCode, e: ErrorShape) -> Response {
    let retry = e.retry_after_ms;
    let mut resp = json_response(status, json!({"ok": false, "error": e}));
    if let Some(ms) = retry
        && let Ok(v) = HeaderValue::from_str(&ms.div_ceil(1000).to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn malformed(message: &str) -> Response {
    let mut e = Refused::Malformed.error();
    e.message = format!("passkey refused: {message}");
    error(StatusCode::BAD_REQUEST, e)
}

async fn refused(r: SigninRefusal) -> Response {
    if !r.delay.is_zero() {
        tokio::time::sleep(r.delay).await;
    }
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::UNAUTHORIZED);
    error(status, r.error)
}

/// Answers one request to `which`.
pub(crate) async fn serve(
    state: &GatewayState,
    addr: SocketAddr,
    which: Endpoint,
    req: Request<Body>,
) -> Response {
    if req.method() != Method::POST {
        let mut resp = error(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorShape::invalid_request("passkey endpoints take POST"),
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    let headers = req.headers();
    let forwarded = has_forwarding_headers(headers);
    if forwarded && !state.is_trusted_proxy(addr.ip()) {
        return error(
            StatusCode::FORBIDDEN,
            ErrorShape::invalid_request(
                "proxy_attribution_required: forwarding headers are only accepted from gateway.trustedProxies",
            ),
        );
    }
    let json_body = header_str(headers, "content-type")
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json_body {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorShape::invalid_request("send the body as Content-Type: application/json"),
        );
    }
    let ip = if forwarded {
        forwarded_client(state, headers, addr.ip())
    } else {
        addr.ip()
    };
    let peer = PeerContext {
        ip,
        direct_local: is_loopback(addr.ip()) && !forwarded,
        origin: header_str(headers, "origin").map(str::to_owned),
        host: header_str(headers, "host").map(str::to_owned),
        proxy: ProxyAuth::NotApplicable,
    };
    let Some(origin) = peer.origin.clone() else {
        return error(
            StatusCode::FORBIDDEN,
            catalogue::origin_not_allowed(catalogue::OriginRefusal::MissingOrInvalid),
        );
    };
    if let Err(why) = auth::check_origin(&origin, &peer, &state.config.control_ui.allowed_origins) {
        state.audit_auth_failure("CONTROL_UI_ORIGIN_NOT_ALLOWED", &peer, None);
        return error(StatusCode::FORBIDDEN, catalogue::origin_not_allowed(why));
    }
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorShape::invalid_request("the body is larger than 64 KiB"),
            );
        }
    };
    match which {
        Endpoint::Options => {
            let parsed: SigninOptionsRequest = match parse(&body) {
                Ok(p) => p,
                Err(resp) => return resp,
            };
            match passkey_signin::options(state, &peer, &origin, &parsed) {
                Ok(v) => json_response(StatusCode::OK, v),
                Err(r) => refused(r).await,
            }
        }
        Endpoint::Signin => {
            let parsed: SigninRequest = match parse(&body) {
                Ok(p) => p,
                Err(resp) => return resp,
            };
            match passkey_signin::signin(state, &peer, &origin, &parsed) {
                Ok(ok) => json_response(
                    StatusCode::OK,
                    serde_json::to_value(&ok).unwrap_or_else(|_| json!({"ok": false})),
                ),
                Err(r) => refused(r).await,
            }
        }
    }
}

/// The body as `T`, or a 400 that says what is wrong (never the body).
#[allow(clippy::result_large_err)]
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "the body is not JSON".to_string()
            }
            _ => format!(
                "the body does not have the expected shape ({})",
                data_error(&e)
            ),
        };
        malformed(&what)
    })
}

/// serde's message without any echoed value (it can quote input).
fn data_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let cut = text.find(" at line").unwrap_or(text.len());
    let text = &text[..cut];
    if text.contains("unknown field") {
        "unknown field".into()
    } else if text.contains("missing field") {
        text.to_string()
    } else {
        "wrong type".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::of("/", "/api/passkeys/options"),
            Some(Endpoint::Options)
        );
        assert_eq!(
            Endpoint::of("/clawgate/", "/clawgate/api/passkeys/signin"),
            Some(Endpoint::Signin)
        );
        assert_eq!(Endpoint::of("/clawgate/", "/api/passkeys/signin"), None);
        assert_eq!(Endpoint::of("/", "/api/passkeys/other"), None);
    }
}
