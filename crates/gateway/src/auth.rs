//! Connect-time authentication decisions: origin, rate limit, shared
//! secret, and the device-less rules (server.md sections 2 to 4).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use clawgate_protocol::catalogue::{self, Audience, AuthFailure, OriginRefusal};
use clawgate_protocol::connect::{ClientKind, ConnectParams, Role};
use clawgate_protocol::frames::ErrorShape;
use clawgate_protocol::{Secret, close_code};
use tracing::warn;

use crate::config::AuthMode;
use crate::limiter::{Admission, LimitKey, LimitScope};
use crate::state::GatewayState;

/// Facts about the peer, fixed at upgrade time.
#[derive(Debug, Clone)]
pub struct PeerContext {
    /// The client's address (the TCP peer, or the forwarded client address
    /// when the peer is a trusted proxy).
    pub ip: IpAddr,
    /// TCP peer is loopback and no forwarding headers were present.
    pub direct_local: bool,
    /// The upgrade's `Origin` header, if any.
    pub origin: Option<String>,
    /// The upgrade's `Host` header, if any.
    pub host: Option<String>,
}

/// A successful authentication.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// `hello-ok.auth.method`.
    pub method: &'static str,
    pub role: Role,
    /// The live scopes of the session.
    pub scopes: Vec<String>,
    /// The shared-secret generation used, if the shared secret was used.
    pub shared_generation: Option<u64>,
}

/// A refused connect: the error to send, the close code, and how long to
/// wait before answering (loopback failure delays).
#[derive(Debug, Clone)]
pub struct Rejection {
    pub error: ErrorShape,
    pub close_code: u16,
    pub delay: Duration,
}

impl Rejection {
    fn now(error: ErrorShape) -> Self {
        Rejection {
            error,
            close_code: close_code::POLICY_VIOLATION,
            delay: Duration::ZERO,
        }
    }
}

/// Checks an `Origin` header. Allowed: an origin listed in
/// `gateway.controlUi.allowedOrigins` (or `*`), the gateway's own origin
/// (same host as the request's `Host`), or any loopback origin when the
/// peer itself is direct loopback.
pub fn check_origin(
    origin: &str,
    peer: &PeerContext,
    allowed: &[String],
) -> Result<(), OriginRefusal> {
    let normalized = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let Some((scheme, rest)) = normalized.split_once("://") else {
        return Err(OriginRefusal::MissingOrInvalid);
    };
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains('/') {
        return Err(OriginRefusal::MissingOrInvalid);
    }
    if allowed.iter().any(|a| a == "*" || *a == normalized) {
        return Ok(());
    }
    if let Some(host) = &peer.host
        && host.eq_ignore_ascii_case(rest)
    {
        return Ok(());
    }
    let hostname = host_without_port(rest);
    if peer.direct_local && is_loopback_host(hostname) {
        return Ok(());
    }
    Err(OriginRefusal::NotAllowed)
}

fn host_without_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// Whether a host name is a loopback name or address, parsed strictly:
/// `localhost`, `127.0.0.0/8`, `::1`; not `127.evil.com`.
pub fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SharedOutcome {
    Ok,
    Missing,
    Mismatch,
    NotConfigured,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecretKind {
    Token,
    Password,
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// Decides a connect whose frame, protocol range and role already passed.
pub fn authenticate(
    state: &GatewayState,
    params: &ConnectParams,
    role: Role,
    peer: &PeerContext,
) -> Result<Authenticated, Rejection> {
    let auth = state.auth();
    let mode = auth.config.mode;
    let audience = Audience {
        kind: params.client_kind(),
        local: peer.direct_local,
    };
    let limit_key = LimitKey {
        scope: LimitScope::SharedSecret,
        peer: peer.ip,
        browser: peer.origin.is_some(),
    };

    // The secret offered: the field named after the mode first, else the other.
    let offered = match mode {
        AuthMode::Token => non_empty(&params.auth.token)
            .map(|s| (s, SecretKind::Token))
            .or_else(|| non_empty(&params.auth.password).map(|s| (s, SecretKind::Password))),
        AuthMode::Password => non_empty(&params.auth.password)
            .map(|s| (s, SecretKind::Password))
            .or_else(|| non_empty(&params.auth.token).map(|s| (s, SecretKind::Token))),
        AuthMode::None => None,
    };

    // The limiter decides before any comparison or signature work.
    if mode != AuthMode::None
        && let Admission::Locked { retry_after_ms } = state.limiter.check(&limit_key, Instant::now())
    {
        return Err(Rejection::now(catalogue::rate_limited(retry_after_ms)));
    }

    let expected: Option<&Secret> = match mode {
        AuthMode::Token => auth.config.token.as_ref(),
        AuthMode::Password => auth.config.password.as_ref(),
        AuthMode::None => None,
    };
    let shared = match (mode, offered, expected) {
        (AuthMode::None, _, _) => SharedOutcome::Ok,
        (_, _, None) => SharedOutcome::NotConfigured,
        (_, None, Some(_)) => SharedOutcome::Missing,
        (_, Some((value, _)), Some(secret)) => {
            if secret.matches(value) {
                SharedOutcome::Ok
            } else {
                SharedOutcome::Mismatch
            }
        }
    };

    if params.device.is_some() {
        // Device identity, pairing and device tokens come with the pairing
        // work; until then say so plainly rather than half-verify a proof.
        return Err(Rejection::now(
            ErrorShape::invalid_request(
                "device identity is not supported by this gateway yet (connect without a device identity, using the gateway token)",
            )
            .with_details(serde_json::json!({"code": "DEVICE_AUTH_INVALID", "reason": "device-auth-unsupported"})),
        ));
    }

    // Device-less connections.
    if ClientKind::is_browser_ui(&params.client) {
        return Err(Rejection::now(
            catalogue::control_ui_device_identity_required(),
        ));
    }
    match shared {
        SharedOutcome::Ok if role == Role::Operator => {
            if offered.is_some() {
                state.limiter.record_success(&limit_key);
            }
            let keeps_scopes = peer.direct_local
                && matches!(
                    (params.client.id.as_str(), params.client.mode.as_str()),
                    ("cli", "cli") | ("gateway-client", "backend")
                );
            let scopes = if keeps_scopes {
                dedup(params.requested_scopes())
            } else {
                Vec::new()
            };
            Ok(Authenticated {
                method: mode.as_str(),
                role,
                scopes,
                shared_generation: Some(auth.generation),
            })
        }
        SharedOutcome::Ok | SharedOutcome::Missing => {
            Err(Rejection::now(catalogue::device_identity_required()))
        }
        SharedOutcome::NotConfigured => {
            let failure = if mode == AuthMode::Password {
                AuthFailure::PasswordMissingConfig
            } else {
                AuthFailure::TokenMissingConfig
            };
            Err(Rejection::now(catalogue::auth_failure(
                failure, audience, false,
            )))
        }
        SharedOutcome::Mismatch => {
            let failure = if mode == AuthMode::Password {
                AuthFailure::PasswordMismatch
            } else {
                AuthFailure::TokenMismatch
            };
            let outcome = state.limiter.record_failure(&limit_key, Instant::now());
            if outcome.locked_now {
                state.metrics.lockout();
                warn!(peer = %peer.ip, browser = limit_key.browser, "failed-auth lockout started");
            }
            let _ = SecretKind::Token;
            Err(Rejection {
                error: catalogue::auth_failure(failure, audience, false),
                close_code: close_code::POLICY_VIOLATION,
                delay: outcome.delay,
            })
        }
    }
}

fn dedup(scopes: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(scopes.len());
    for s in scopes {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(local: bool, host: Option<&str>) -> PeerContext {
        PeerContext {
            ip: if local {
                IpAddr::from([127, 0, 0, 1])
            } else {
                IpAddr::from([10, 0, 0, 5])
            },
            direct_local: local,
            origin: None,
            host: host.map(str::to_owned),
        }
    }

    #[test]
    fn origin_rules() {
        let none: Vec<String> = vec![];
        assert!(check_origin("http://localhost:1", &peer(true, None), &none).is_ok());
        assert!(check_origin("http://127.0.0.1:18789", &peer(true, None), &none).is_ok());
        assert!(check_origin("http://[::1]:5", &peer(true, None), &none).is_ok());
        assert_eq!(
            check_origin("http://127.evil.com", &peer(true, None), &none),
            Err(OriginRefusal::NotAllowed)
        );
        assert_eq!(
            check_origin("http://evil.example", &peer(true, None), &none),
            Err(OriginRefusal::NotAllowed)
        );
        assert_eq!(
            check_origin("null", &peer(true, None), &none),
            Err(OriginRefusal::MissingOrInvalid)
        );
        assert_eq!(
            check_origin("http://localhost:1", &peer(false, None), &none),
            Err(OriginRefusal::NotAllowed)
        );
        assert!(
            check_origin("https://gw.example:8443", &peer(false, Some("gw.example:8443")), &none)
                .is_ok()
        );
        let allowed = vec!["https://ui.example".to_string()];
        assert!(check_origin("https://UI.example/", &peer(false, None), &allowed).is_ok());
    }
}
