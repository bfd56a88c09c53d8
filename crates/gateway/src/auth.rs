//! Connect-time authentication decisions: origin, rate limit, shared
//! secret, and the device-less rules (server.md sections 2 to 4).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use clawgate_protocol::catalogue::{self, Audience, AuthFailure, OriginRefusal};
use clawgate_protocol::close_code;
use clawgate_protocol::connect::{ClientKind, ConnectParams, Role};
use clawgate_protocol::frames::ErrorShape;
use serde_json::json;
use tracing::{debug, warn};

use crate::config::AuthMode;
use crate::limiter::{Admission, LimitKey, LimitScope};
use crate::state::{AuthState, GatewayState, now_ms};
use crate::{audit, device_proof, pairing, tokens};

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
#[derive(Clone)]
pub struct Authenticated {
    /// `hello-ok.auth.method`.
    pub method: &'static str,
    pub role: Role,
    /// The live scopes of the session.
    pub scopes: Vec<String>,
    /// The shared-secret generation used, if the shared secret was used.
    pub shared_generation: Option<u64>,
    /// The verified device, if one was presented.
    pub device_id: Option<String>,
    /// Authenticated by a device token (a "device session").
    pub device_token_auth: bool,
    /// The device token for `hello-ok` and its issue time.
    pub issued_token: Option<(String, u64)>,
}

impl std::fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticated")
            .field("method", &self.method)
            .field("role", &self.role)
            .field("scopes", &self.scopes)
            .field("device_id", &self.device_id)
            .field(
                "issued_token",
                &self.issued_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A refused connect: the error to send, the close code, and how long to
/// wait before answering (loopback failure delays).
#[derive(Debug, Clone)]
pub struct Rejection {
    pub error: ErrorShape,
    pub close_code: u16,
    /// Close reason when it differs from the message (pairing adds the id).
    pub close_reason: Option<Box<str>>,
    pub delay: Duration,
}

impl Rejection {
    fn now(error: ErrorShape) -> Self {
        Rejection {
            error,
            close_code: close_code::POLICY_VIOLATION,
            close_reason: None,
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
    // The same normaliser as `gateway.controlUi.allowedOrigins`, so a
    // configured origin and a header always compare alike.
    let Some(normalized) = crate::config::normalize_origin(origin.trim()).filter(|o| o != "*")
    else {
        return Err(OriginRefusal::MissingOrInvalid);
    };
    if allowed.iter().any(|a| a == "*" || *a == normalized) {
        return Ok(());
    }
    let (scheme, authority) = normalized.split_once("://").unwrap_or(("", ""));
    // The gateway's own origin: same scheme, the request's Host.
    if let Some(host) = &peer.host
        && crate::config::normalize_origin(&format!("{scheme}://{host}")).as_ref()
            == Some(&normalized)
    {
        return Ok(());
    }
    if peer.direct_local && is_loopback_host(host_without_port(authority)) {
        return Ok(());
    }
    Err(OriginRefusal::NotAllowed)
}

/// Whether the gateway answers a request carrying `Host: host`.
///
/// DNS rebinding: a page on `http://attacker.example:18789` whose name the
/// attacker re-points at 127.0.0.1 is, for the browser, same-origin with a
/// loopback gateway on that port, so the `Origin` check alone passes; only
/// the `Host` header gives it away. A loopback-bound gateway therefore
/// answers only loopback names (`localhost`, `127.0.0.0/8`, `[::1]`) and the
/// names in `gateway.allowedHosts`. On any other bind the check applies
/// once `gateway.allowedHosts` is set (listed names, loopback names and IP
/// addresses: an IP address cannot be re-pointed). `"*"` turns it off. A
/// request without `Host` (HTTP/1.0; never a browser) is answered.
pub fn host_allowed(config: &crate::config::GatewayConfig, host: Option<&str>) -> bool {
    let Some(host) = host else {
        return true;
    };
    let allowed = &config.allowed_hosts;
    if allowed.iter().any(|h| h == "*") {
        return true;
    }
    let Some(name) = crate::config::normalize_host_name(host_without_port(host.trim())) else {
        return false;
    };
    if is_loopback_host(&name) || allowed.contains(&name) {
        return true;
    }
    if config.bind.is_loopback() {
        return false;
    }
    allowed.is_empty() || name.parse::<IpAddr>().is_ok()
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
    RateLimited { retry_after_ms: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecretKind {
    Token,
    Password,
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// The shared-secret part of a connect.
struct SharedCheck {
    outcome: SharedOutcome,
    offered: Option<SecretKind>,
    failure: AuthFailure,
    key: LimitKey,
}

fn check_shared(
    state: &GatewayState,
    params: &ConnectParams,
    peer: &PeerContext,
    auth: &AuthState,
) -> SharedCheck {
    let mode = auth.config.mode;
    let key = LimitKey {
        scope: LimitScope::SharedSecret,
        peer: peer.ip,
        browser: not_exempt(peer),
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
    let (expected, missing, mismatch, not_configured) = match mode {
        AuthMode::Password => (
            auth.config.password.as_ref(),
            AuthFailure::PasswordMissing,
            AuthFailure::PasswordMismatch,
            AuthFailure::PasswordMissingConfig,
        ),
        _ => (
            auth.config.token.as_ref(),
            AuthFailure::TokenMissing,
            AuthFailure::TokenMismatch,
            AuthFailure::TokenMissingConfig,
        ),
    };
    let (outcome, failure) = if mode == AuthMode::None {
        (SharedOutcome::Ok, AuthFailure::Unauthorized)
    } else if let Admission::Locked { retry_after_ms } = state.limiter.check(&key, Instant::now()) {
        // The limiter decides before any comparison or signature work.
        (SharedOutcome::RateLimited { retry_after_ms }, mismatch)
    } else {
        match (offered, expected) {
            (_, None) => (SharedOutcome::NotConfigured, not_configured),
            (None, Some(_)) => (SharedOutcome::Missing, missing),
            (Some((value, _)), Some(secret)) => {
                if secret.matches(value) {
                    (SharedOutcome::Ok, mismatch)
                } else {
                    (SharedOutcome::Mismatch, mismatch)
                }
            }
        }
    };
    SharedCheck {
        outcome,
        offered: offered.map(|(_, k)| k),
        failure,
        key,
    }
}

/// The limiter's `browser` bit: set for sockets that may never be
/// loopback-exempt (delays instead of lockouts). A browser (`Origin`)
/// never is; nor is a socket that came through a trusted proxy with a
/// loopback client address: a forwarding header saying "127.0.0.1" is a
/// claim, not a fact (advisory class "loopback trust through proxy
/// headers"), and only a direct loopback peer is local. The address is
/// taken as the limiter counts it, so a claimed `::ffff:127.0.0.1` (which
/// the limiter files under 127.0.0.1) is caught too.
fn not_exempt(peer: &PeerContext) -> bool {
    peer.origin.is_some()
        || (!peer.direct_local && crate::limiter::limit_peer(peer.ip).is_loopback())
}

/// Records a shared-secret failure and returns the delay to apply.
fn record_shared_failure(state: &GatewayState, key: &LimitKey, peer: &PeerContext) -> Duration {
    let outcome = state.limiter.record_failure(key, Instant::now());
    if outcome.locked_now {
        state.metrics.lockout();
        warn!(peer = %peer.ip, browser = key.browser, "failed-auth lockout started");
        // Queued for the once-a-second flush (every lockout is kept): a
        // synchronous write here would block a runtime worker once per
        // locked key while a distributed guesser is locking many.
        state.deferred.audit(audit::record(
            "auth.lockout",
            audit::peer_actor(peer),
            None,
            json!({"scope": "shared-secret", "browser": key.browser}),
        ));
    }
    outcome.delay
}

/// Decides a connect whose frame, protocol range and role already passed:
/// credentials, device proof, pairing and device-token issuance.
pub fn authenticate(
    state: &GatewayState,
    params: &ConnectParams,
    role: Role,
    peer: &PeerContext,
    challenge_nonce: &str,
) -> Result<Authenticated, Rejection> {
    let auth = state.auth();
    let mode = auth.config.mode;
    let audience = Audience {
        kind: params.client_kind(),
        local: peer.direct_local,
    };
    let shared = check_shared(state, params, peer, &auth);

    let Some(device) = &params.device else {
        return authenticate_device_less(state, params, role, peer, &auth, shared, audience);
    };

    // The device-token candidate (`auth.deviceToken`, else `auth.token`)
    // and its limiter key: the shared secret's key in the device-token scope.
    let explicit = non_empty(&params.auth.device_token);
    let candidate = explicit.or_else(|| non_empty(&params.auth.token));
    let dt_key = LimitKey {
        scope: LimitScope::DeviceToken,
        ..shared.key
    };

    // A peer the limiter refuses for the shared secret, with no device-token
    // candidate or with that key refused too, is answered before the
    // signature check: a refused attempt costs no Ed25519 verification.
    if let SharedOutcome::RateLimited { retry_after_ms } = shared.outcome
        && (candidate.is_none()
            || matches!(
                state.limiter.check(&dt_key, Instant::now()),
                Admission::Locked { .. }
            ))
    {
        return Err(Rejection::now(catalogue::rate_limited(retry_after_ms)));
    }

    // Device proof, after the shared comparison and before any token work.
    let now = now_ms();
    let verified = device_proof::verify(params, device, role.as_str(), challenge_nonce, now)
        .map_err(|f| Rejection::now(catalogue::device_auth_failure(f)))?;
    let requested = dedup(params.requested_scopes());

    let mut method = mode.as_str();
    let mut presented_token: Option<(String, u64)> = None;
    if shared.outcome != SharedOutcome::Ok {
        let verdict = match candidate {
            None => None,
            Some(_)
                if matches!(
                    state.limiter.check(&dt_key, Instant::now()),
                    Admission::Locked { .. }
                ) =>
            {
                Some(Err(tokens::TokenRejection::Mismatch("rate-limited")))
            }
            Some(token) => Some(
                tokens::verify(
                    &state.store,
                    &verified.device_id,
                    &verified.public_key,
                    role.as_str(),
                    token,
                    &requested,
                )
                .map(|entry| (token.to_string(), entry.issued_at_ms)),
            ),
        };
        match verdict {
            Some(Ok(found)) => {
                state.limiter.record_success(&dt_key);
                method = "device-token";
                presented_token = Some(found);
            }
            other => {
                let mut delay = Duration::ZERO;
                if matches!(other, Some(Err(_))) {
                    state.limiter.record_failure(&dt_key, Instant::now());
                }
                if shared.outcome == SharedOutcome::Mismatch {
                    delay = record_shared_failure(state, &shared.key, peer);
                }
                let error = match (shared.outcome, other) {
                    (_, Some(Err(tokens::TokenRejection::ScopeMismatch))) => {
                        catalogue::auth_failure(AuthFailure::ScopeMismatch, audience, false)
                    }
                    (_, Some(Err(tokens::TokenRejection::Mismatch(why)))) if explicit.is_some() => {
                        debug!(device = %verified.device_id, why, "device token rejected");
                        catalogue::auth_failure(AuthFailure::DeviceTokenMismatch, audience, false)
                    }
                    (SharedOutcome::RateLimited { retry_after_ms }, _) => {
                        catalogue::rate_limited(retry_after_ms)
                    }
                    _ => {
                        let can_retry = shared.failure == AuthFailure::TokenMismatch
                            && non_empty(&params.auth.password).is_none()
                            && shared.offered == Some(SecretKind::Token)
                            && non_empty(&params.auth.device_token).is_none();
                        catalogue::auth_failure(shared.failure, audience, can_retry)
                    }
                };
                return Err(Rejection {
                    error,
                    close_code: close_code::POLICY_VIOLATION,
                    close_reason: None,
                    delay,
                });
            }
        }
    } else if shared.offered.is_some() {
        state.limiter.record_success(&shared.key);
    }

    // Pairing: is this device approved for what it asks?
    let ask = pairing::Ask {
        verified: &verified,
        params,
        role,
        requested: &requested,
        peer,
        now_ms: now,
    };
    let outcome =
        pairing::evaluate(state, &ask, method).map_err(|e| Rejection::now(store_unavailable(e)))?;
    let (device, routine) = match outcome {
        pairing::PairingOutcome::Approved { device, routine } => (device, routine),
        pairing::PairingOutcome::Required {
            error,
            close_reason,
        } => {
            return Err(Rejection {
                error,
                close_code: close_code::POLICY_VIOLATION,
                close_reason: Some(close_reason.into_boxed_str()),
                delay: Duration::ZERO,
            });
        }
    };

    // Device token: echo the one presented, hand out again the one this
    // process minted earlier, or mint one. A routine reconnect (only the
    // last-seen fields changed) queues its bookkeeping instead of writing;
    // anything else is one transaction with the refreshed device record.
    let issued = match presented_token {
        Some((token, issued_at)) if routine => {
            state.deferred.seen(&device);
            state
                .deferred
                .touched(&device.device_id, role.as_str(), now);
            (token, issued_at)
        }
        Some((token, issued_at)) => {
            state
                .store
                .transact(|tx| {
                    tx.put_device(&device)?;
                    tx.touch_token(&device.device_id, role.as_str(), now)
                })
                .map_err(|e| Rejection::now(store_unavailable(e)))?;
            (token, issued_at)
        }
        None => {
            let token_scopes = tokens::token_scopes(role.as_str(), &requested, &device.scopes);
            let reused = routine
                .then(|| {
                    state.deferred.reusable(
                        &state.store,
                        &device.device_id,
                        role.as_str(),
                        &token_scopes,
                    )
                })
                .flatten();
            match reused {
                Some(found) => {
                    state.deferred.seen(&device);
                    found
                }
                None => {
                    let existing = state.store.role_token(&device.device_id, role.as_str());
                    let (token, issued_at) = state
                        .store
                        .transact(|tx| {
                            tx.put_device(&device)?;
                            tokens::mint(
                                tx,
                                existing.as_ref(),
                                &device.device_id,
                                role.as_str(),
                                token_scopes.clone(),
                                now,
                            )
                        })
                        .map_err(|e| Rejection::now(store_unavailable(e)))?;
                    state.deferred.remember(
                        &device.device_id,
                        role.as_str(),
                        &token,
                        &token_scopes,
                        issued_at,
                    );
                    (token.expose().to_string(), issued_at)
                }
            }
        }
    };
    Ok(Authenticated {
        method,
        role,
        scopes: requested,
        shared_generation: (method != "device-token").then_some(auth.generation),
        device_id: Some(verified.device_id),
        device_token_auth: method == "device-token",
        issued_token: Some(issued),
    })
}

fn store_unavailable(err: clawgate_store::StoreError) -> ErrorShape {
    warn!(%err, "store unavailable during connect");
    let mut e = ErrorShape::new(
        clawgate_protocol::frames::error_code::UNAVAILABLE,
        "gateway store unavailable; retry shortly",
    );
    e.retryable = Some(true);
    e.retry_after_ms = Some(1000);
    e
}

fn authenticate_device_less(
    state: &GatewayState,
    params: &ConnectParams,
    role: Role,
    peer: &PeerContext,
    auth: &AuthState,
    shared: SharedCheck,
    audience: Audience,
) -> Result<Authenticated, Rejection> {
    if ClientKind::is_browser_ui(&params.client) {
        return Err(Rejection::now(
            catalogue::control_ui_device_identity_required(),
        ));
    }
    match shared.outcome {
        SharedOutcome::Ok if role == Role::Operator => {
            if shared.offered.is_some() {
                state.limiter.record_success(&shared.key);
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
                method: auth.config.mode.as_str(),
                role,
                scopes,
                shared_generation: Some(auth.generation),
                device_id: None,
                device_token_auth: false,
                issued_token: None,
            })
        }
        SharedOutcome::Ok | SharedOutcome::Missing => {
            Err(Rejection::now(catalogue::device_identity_required()))
        }
        SharedOutcome::RateLimited { retry_after_ms } => {
            Err(Rejection::now(catalogue::rate_limited(retry_after_ms)))
        }
        SharedOutcome::NotConfigured => Err(Rejection::now(catalogue::auth_failure(
            shared.failure,
            audience,
            false,
        ))),
        SharedOutcome::Mismatch => {
            let delay = record_shared_failure(state, &shared.key, peer);
            Err(Rejection {
                error: catalogue::auth_failure(shared.failure, audience, false),
                close_code: close_code::POLICY_VIOLATION,
                close_reason: None,
                delay,
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
    fn forwarded_loopback_claims_are_never_exempt() {
        let peer = |ip: &str, direct_local: bool| PeerContext {
            ip: ip.parse().unwrap(),
            direct_local,
            origin: None,
            host: None,
        };
        for claimed in ["127.0.0.1", "::1", "::ffff:127.0.0.1", "::ffff:127.9.9.9"] {
            assert!(not_exempt(&peer(claimed, false)), "{claimed}");
        }
        assert!(!not_exempt(&peer("127.0.0.1", true)));
        assert!(!not_exempt(&peer("203.0.113.5", false)));
    }

    #[test]
    fn host_rules() {
        use crate::config::{AuthConfig, BindMode, GatewayConfig};
        let mut cfg =
            GatewayConfig::loopback("/tmp/x", AuthConfig::new(AuthMode::None, None, None));
        for ok in [
            None,
            Some("127.0.0.1:18789"),
            Some("localhost:18789"),
            Some("LOCALHOST"),
            Some("localhost."),
            Some("[::1]:18789"),
            Some("127.1.2.3"),
        ] {
            assert!(host_allowed(&cfg, ok), "{ok:?}");
        }
        for bad in [
            "evil.example:18789",
            "attacker.com",
            "127.0.0.1.evil.example",
            "localhost.evil.example:18789",
            "10.0.0.5:18789",
            "",
            "evil example",
        ] {
            assert!(!host_allowed(&cfg, Some(bad)), "{bad}");
        }
        cfg.allowed_hosts = vec!["gw.example".into()];
        assert!(host_allowed(&cfg, Some("GW.example:18789")));
        assert!(!host_allowed(&cfg, Some("evil.example")));
        cfg.allowed_hosts = vec!["*".into()];
        assert!(host_allowed(&cfg, Some("evil.example")));
        // LAN bind: no list, no check; with a list, names must be listed.
        cfg.bind = BindMode::Lan;
        cfg.allowed_hosts = vec![];
        assert!(host_allowed(&cfg, Some("whatever.local:18789")));
        cfg.allowed_hosts = vec!["gw.example".into()];
        assert!(host_allowed(&cfg, Some("192.168.1.5:18789")));
        assert!(host_allowed(&cfg, Some("gw.example")));
        assert!(!host_allowed(&cfg, Some("evil.example")));
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
            check_origin(
                "https://gw.example:8443",
                &peer(false, Some("gw.example:8443")),
                &none
            )
            .is_ok()
        );
        let allowed = vec!["https://ui.example".to_string()];
        assert!(check_origin("https://UI.example/", &peer(false, None), &allowed).is_ok());
    }
}
