//! The connect decision, in the reference's order: the limiter and the
//! shared secret (`shared.rs`), the device-less rules, the device proof
//! (`device_proof.rs`), a device token when the shared secret did not pass
//! (`tokens.rs`), pairing (`pairing.rs`), then the device token handed out
//! in `hello-ok` (`issue.rs`). Returns a value; the socket is `ws`'s.

use std::time::{Duration, Instant};

use clawgate_protocol::Secret;
use clawgate_protocol::catalogue::{self, Audience, AuthFailure};
use clawgate_protocol::close_code;
use clawgate_protocol::connect::{ClientKind, ConnectParams, Role};
use clawgate_protocol::frames::ErrorShape;
use clawgate_protocol::wire::{AuthMethod, HandoffToken};
use tracing::{debug, warn};

use crate::auth::device_proof::{self, VerifiedDevice};
use crate::auth::shared::{
    PasswordVerdict, SecretKind, SharedCheck, SharedOutcome, Signer, check_shared, non_empty,
    record_failure,
};
use crate::auth::{bootstrap, issue, pairing, tokens, trusted_proxy};
use crate::config::AuthMode;
use crate::session::{PeerContext, ProxyAuth, now_ms};
use crate::state::limiter::{Admission, LimitKey, LimitScope};
use crate::state::{AuthState, GatewayState};

/// A successful authentication.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// `hello-ok.auth.method`.
    pub method: AuthMethod,
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
    pub issued_token: Option<(Secret, u64)>,
    /// `hello-ok.auth.deviceTokens[]`: a setup code's hand-off (empty
    /// unless the connect redeemed one).
    pub handoff: Vec<HandoffToken>,
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
    /// Refused at once with 1008 and the error's message as close reason.
    pub(crate) fn now(error: ErrorShape) -> Self {
        Rejection {
            error,
            close_code: close_code::POLICY_VIOLATION,
            close_reason: None,
            delay: Duration::ZERO,
        }
    }

    /// The store could not answer; the client may retry shortly.
    pub(crate) fn store_unavailable(err: clawgate_store::StoreError) -> Self {
        warn!(%err, "store unavailable during connect");
        Self::now(match &err {
            clawgate_store::StoreError::Unreachable { target, .. } => {
                clawgate_protocol::catalogue::registry_unreachable(target)
            }
            _ => clawgate_protocol::catalogue::store_unavailable(),
        })
    }
}

/// Decides a connect whose frame, protocol range and role already passed:
/// credentials, device proof, pairing and device-token issuance. `password`
/// is what [`crate::auth::shared::verify_password`] found (Argon2 runs
/// before, off the async workers). A setup code pasted as the token is
/// explained in the refusal.
pub fn authenticate(
    state: &GatewayState,
    params: &ConnectParams,
    role: Role,
    peer: &PeerContext,
    challenge_nonce: &str,
    password: PasswordVerdict,
) -> Result<Authenticated, Rejection> {
    decide(state, params, role, peer, challenge_nonce, password)
        .map_err(|r| bootstrap::explain_pasted_setup_code(params, r))
}

fn decide(
    state: &GatewayState,
    params: &ConnectParams,
    role: Role,
    peer: &PeerContext,
    challenge_nonce: &str,
    password: PasswordVerdict,
) -> Result<Authenticated, Rejection> {
    let auth = state.auth();
    let audience = Audience {
        kind: params.client_kind(),
        local: peer.direct_local,
    };
    let signer = Signer {
        params,
        role: role.as_str(),
        nonce: challenge_nonce,
    };
    // Trusted-proxy mode: a verified proxy identity decides; otherwise only
    // a direct local caller's password, a device token or a setup code may
    // still get in (as in the reference), and the proxy's refusal is the
    // answer when they do not.
    let mut proxy_refusal = None;
    if auth.config.mode == AuthMode::TrustedProxy {
        let refusal = match &peer.proxy {
            ProxyAuth::Verified { user, scopes_cap } => {
                let who = ProxyUser {
                    user,
                    cap: scopes_cap.as_deref(),
                };
                return proxied(state, params, role, peer, challenge_nonce, &auth, who);
            }
            ProxyAuth::Refused { reason, message } => {
                catalogue::trusted_proxy_failure(reason, message.as_deref())
            }
            // The mode changed between the upgrade and this connect.
            ProxyAuth::NotApplicable => {
                catalogue::trusted_proxy_failure("trusted_proxy_no_request", None)
            }
        };
        let local_password = peer.direct_local
            && (auth.config.password.is_some() || auth.config.password_hash.is_some())
            && non_empty(&params.auth.password).is_some();
        // A device token may also come in `auth.token` (the reference's
        // shared-token fallback); no shared token exists in this mode.
        let credential = params.device.is_some()
            && (non_empty(&params.auth.device_token).is_some()
                || non_empty(&params.auth.token).is_some()
                || non_empty(&params.auth.bootstrap_token).is_some());
        if !local_password && !credential {
            return Err(Rejection::now(refusal));
        }
        proxy_refusal = Some(refusal);
    }
    let mut shared = check_shared(state, params, peer, &auth, password, &signer);
    shared.proxy_refusal = proxy_refusal;
    // Replicas: a device decided on another replica a moment ago (approved,
    // issued a token, revoked) is decided here on the registry as it is
    // now, not as this cache last saw it. One atomic read when up to date.
    if params.device.is_some() && state.store.behind() {
        let _ = state.store.refresh();
    }
    let Some(device) = &params.device else {
        return authenticate_device_less(state, params, role, peer, &auth, shared, audience);
    };
    let candidate = TokenCandidate::of(params, &shared);

    // A peer the limiter refuses for the shared secret, with no device-token
    // candidate or with that key refused too, is answered before the
    // signature check: a refused attempt costs no Ed25519 verification.
    if let SharedOutcome::RateLimited { retry_after_ms } = shared.outcome
        && (candidate.token.is_none() || candidate.locked(state))
    {
        return Err(Rejection::now(catalogue::rate_limited(retry_after_ms)));
    }

    // A replica cut off from its shared registry fails closed: no device
    // token, setup code or pairing is decided on a registry it cannot see.
    // A direct local caller with the shared secret still gets in (as a
    // device-less operator) to run `status` and `doctor`.
    if let Some(refusal) = state.registry.refusal() {
        if shared.outcome == SharedOutcome::Ok {
            if peer.direct_local {
                return authenticate_device_less(
                    state, params, role, peer, &auth, shared, audience,
                );
            }
            return Err(Rejection::now(refusal));
        }
        if candidate.token.is_some() || non_empty(&params.auth.bootstrap_token).is_some() {
            let delay = if shared.outcome == SharedOutcome::Mismatch {
                record_failure(state, &shared.key, peer)
            } else {
                Duration::ZERO
            };
            return Err(Rejection {
                delay,
                ..Rejection::now(refusal)
            });
        }
    }

    // Device proof, after the shared comparison and before any token work.
    let now = now_ms();
    let verified = device_proof::verify(params, device, role.as_str(), challenge_nonce, now)
        .map_err(|f| Rejection::now(catalogue::device_auth_failure(f)))?;
    let requested = dedup(params.requested_scopes());
    refresh_on_miss(state, &shared, &candidate, &verified.device_id, role);

    // A setup code, when the shared secret did not pass (the reference's
    // order: bootstrap token before a device token).
    if shared.outcome != SharedOutcome::Ok
        && let Some(token) = non_empty(&params.auth.bootstrap_token)
    {
        return bootstrap::redeem(
            state,
            &bootstrap::Redeem {
                params,
                role,
                peer,
                verified: &verified,
                requested: &requested,
                token,
                shared_key: shared.key,
                audience,
                now_ms: now,
            },
        );
    }

    let presented = if shared.outcome == SharedOutcome::Ok {
        if shared.offered.is_some() {
            state.limiter.record_success(&shared.key);
        }
        None
    } else {
        let ctx = DeviceTokenCheck {
            params,
            role,
            peer,
            verified: &verified,
            requested: &requested,
            audience,
        };
        Some(check_device_token(state, &ctx, &shared, &candidate)?)
    };
    let method = if presented.is_some() {
        AuthMethod::DeviceToken
    } else {
        auth.config.mode.auth_method()
    };

    // Pairing: is this device approved for what it asks?
    let ask = pairing::Ask {
        verified: &verified,
        params,
        role,
        requested: &requested,
        peer,
        now_ms: now,
    };
    let (device, routine) =
        match pairing::evaluate(state, &ask, method).map_err(Rejection::store_unavailable)? {
            pairing::PairingOutcome::Approved { device, routine } => (device, routine),
            pairing::PairingOutcome::Required {
                error,
                close_reason,
            } => {
                return Err(Rejection {
                    close_reason: Some(close_reason.into_boxed_str()),
                    ..Rejection::now(error)
                });
            }
        };

    let issued = issue::hand_out(state, &device, role, &requested, presented, routine, now)
        .map_err(Rejection::store_unavailable)?;
    let device_token_auth = method == AuthMethod::DeviceToken;
    Ok(Authenticated {
        method,
        role,
        scopes: requested,
        shared_generation: (!device_token_auth).then_some(auth.generation),
        device_id: Some(verified.device_id),
        device_token_auth,
        issued_token: Some(issued),
        handoff: Vec::new(),
    })
}

/// Replicas: before a connect is refused or sent to pairing because this
/// cache does not know its device token or its approval, the cache is
/// brought up to date once (another replica may have issued the token or
/// approved the device an instant ago, its NOTIFY not yet here). Only for
/// connects that hold the shared secret or present a device token (so a
/// peer with neither costs no query), and the limiter has already had its
/// say on both.
fn refresh_on_miss(
    state: &GatewayState,
    shared: &SharedCheck,
    candidate: &TokenCandidate<'_>,
    device_id: &str,
    role: Role,
) {
    if state.store.replica_id().is_none() {
        return;
    }
    let miss = if shared.outcome == SharedOutcome::Ok {
        state
            .store
            .device(device_id)
            .is_none_or(|d| !d.roles.iter().any(|r| r == role.as_str()))
    } else {
        candidate.token.is_some_and(|t| {
            state
                .store
                .token_by_hash(&clawgate_store::hash_token(t))
                .is_none()
        })
    };
    if miss {
        let _ = state.store.refresh();
    }
}

/// The device token a connect may be authenticated with (`auth.deviceToken`,
/// else `auth.token`) and its limiter key: the shared secret's key in the
/// device-token scope.
struct TokenCandidate<'a> {
    token: Option<&'a str>,
    /// It came in `auth.deviceToken` (not reused from `auth.token`).
    explicit: bool,
    key: LimitKey,
}

impl<'a> TokenCandidate<'a> {
    fn of(params: &'a ConnectParams, shared: &SharedCheck) -> Self {
        let explicit = non_empty(&params.auth.device_token);
        TokenCandidate {
            token: explicit.or_else(|| non_empty(&params.auth.token)),
            explicit: explicit.is_some(),
            key: LimitKey {
                scope: LimitScope::DeviceToken,
                ..shared.key
            },
        }
    }

    fn locked(&self, state: &GatewayState) -> bool {
        matches!(
            state.limiter.check(&self.key, Instant::now()),
            Admission::Locked { .. }
        )
    }
}

/// What a device-token check needs to know about the connect.
struct DeviceTokenCheck<'a> {
    params: &'a ConnectParams,
    role: Role,
    peer: &'a PeerContext,
    verified: &'a VerifiedDevice,
    requested: &'a [String],
    audience: Audience,
}

/// The shared secret did not pass: the connect stands or falls with its
/// device token. Returns the presented token and its issue time, or the
/// refusal (recording the failure against both limiter keys as it applies).
fn check_device_token(
    state: &GatewayState,
    ctx: &DeviceTokenCheck<'_>,
    shared: &SharedCheck,
    candidate: &TokenCandidate<'_>,
) -> Result<(Secret, u64), Rejection> {
    let verdict = match candidate.token {
        None => None,
        Some(_) if candidate.locked(state) => {
            Some(Err(tokens::TokenRejection::Mismatch("rate-limited")))
        }
        Some(token) => Some(
            tokens::verify(
                &state.store,
                &ctx.verified.device_id,
                &ctx.verified.public_key,
                ctx.role.as_str(),
                token,
                ctx.requested,
            )
            .map(|entry| (Secret::new(token.to_string()), entry.issued_at_ms)),
        ),
    };
    let failed = match verdict {
        Some(Ok(found)) => {
            state.limiter.record_success(&candidate.key);
            return Ok(found);
        }
        Some(Err(why)) => {
            state.limiter.record_failure(&candidate.key, Instant::now());
            Some(why)
        }
        None => None,
    };
    let delay = if shared.outcome == SharedOutcome::Mismatch {
        record_failure(state, &shared.key, ctx.peer)
    } else {
        Duration::ZERO
    };
    let error = match (shared.outcome, failed) {
        (_, Some(tokens::TokenRejection::ScopeMismatch)) => {
            catalogue::auth_failure(AuthFailure::ScopeMismatch, ctx.audience, false)
        }
        (_, Some(tokens::TokenRejection::Mismatch(why))) if candidate.explicit => {
            debug!(device = %ctx.verified.device_id, why, "device token rejected");
            catalogue::auth_failure(AuthFailure::DeviceTokenMismatch, ctx.audience, false)
        }
        (SharedOutcome::RateLimited { retry_after_ms }, _) => {
            catalogue::rate_limited(retry_after_ms)
        }
        (SharedOutcome::Missing | SharedOutcome::NotConfigured, _)
            if shared.proxy_refusal.is_some() =>
        {
            shared.proxy_refusal.clone().expect("checked")
        }
        _ => {
            let auth = &ctx.params.auth;
            let can_retry = shared.failure == AuthFailure::TokenMismatch
                && non_empty(&auth.password).is_none()
                && shared.offered == Some(SecretKind::Token)
                && non_empty(&auth.device_token).is_none();
            catalogue::auth_failure(shared.failure, ctx.audience, can_retry)
        }
    };
    Err(Rejection {
        delay,
        ..Rejection::now(error)
    })
}

/// A connect without a device identity: only the shared secret counts,
/// and only a local CLI or backend keeps the scopes it asks for.
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
                method: auth.config.mode.auth_method(),
                role,
                scopes,
                shared_generation: Some(auth.generation),
                device_id: None,
                device_token_auth: false,
                issued_token: None,
                handoff: Vec::new(),
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
            let delay = record_failure(state, &shared.key, peer);
            Err(Rejection {
                delay,
                ..Rejection::now(catalogue::auth_failure(shared.failure, audience, false))
            })
        }
    }
}

/// The verified proxy identity of a connect and its scopes cap.
#[derive(Clone, Copy)]
struct ProxyUser<'a> {
    user: &'a str,
    cap: Option<&'a [String]>,
}

/// Whether a client is a UI the reference's `deviceAutoApprove` covers:
/// the browser Control UI and webchat, and native apps in UI mode.
fn auto_approvable_client(params: &ConnectParams) -> bool {
    matches!(
        params.client_kind(),
        ClientKind::OperatorUi | ClientKind::Webchat
    ) || params.client.mode == "ui"
}

/// A connect a trusted proxy vouched for (`hello-ok.auth.method:
/// "trusted-proxy"`). Device-less: only the browser Control UI, with no
/// scopes of its own, only the identity's `identityScopes` grant. With a
/// device: the proof, then pairing (new UI devices and same-key scope
/// upgrades approved at once under `deviceAutoApprove`, within its list
/// and the proxy's `x-openclaw-scopes` cap); the session holds the
/// device's scopes plus the identity's grant, capped. The browser Control
/// UI gets no device token (it comes through the proxy every time, as in
/// the reference); other clients do.
fn proxied(
    state: &GatewayState,
    params: &ConnectParams,
    role: Role,
    peer: &PeerContext,
    challenge_nonce: &str,
    auth: &AuthState,
    who: ProxyUser<'_>,
) -> Result<Authenticated, Rejection> {
    let grant = trusted_proxy::identity_grant(&auth.config, who.user);
    let Some(device) = &params.device else {
        if ClientKind::is_browser_ui(&params.client) && role == Role::Operator {
            return Ok(Authenticated {
                method: AuthMethod::TrustedProxy,
                role,
                scopes: trusted_proxy::capped(dedup(&grant), who.cap),
                shared_generation: Some(auth.generation),
                device_id: None,
                device_token_auth: false,
                issued_token: None,
                handoff: Vec::new(),
            });
        }
        return Err(Rejection::now(catalogue::device_identity_required()));
    };
    if let Some(refusal) = state.registry.refusal() {
        return Err(Rejection::now(refusal));
    }
    // Replicas: decide on the registry as it is now (see `decide`).
    if state.store.behind() {
        let _ = state.store.refresh();
    }
    let now = now_ms();
    let verified = device_proof::verify(params, device, role.as_str(), challenge_nonce, now)
        .map_err(|f| Rejection::now(catalogue::device_auth_failure(f)))?;
    let mut requested = dedup(params.requested_scopes());
    let auto = auth
        .config
        .trusted_proxy
        .as_ref()
        .and_then(|c| c.device_auto_approve.as_ref())
        .filter(|_| role == Role::Operator && auto_approvable_client(params));
    if let Some(auto) = auto {
        let within = |s: &String| clawgate_protocol::scopes::covers(&auto.scopes, &[s]);
        let mut can_grant: Vec<String> = if requested.is_empty() {
            auto.scopes.clone()
        } else {
            requested.iter().filter(|s| within(s)).cloned().collect()
        };
        let questions = clawgate_protocol::scopes::QUESTIONS.to_string();
        if !auto.explicit && !can_grant.contains(&questions) {
            can_grant.push(questions);
        }
        let can_grant = trusted_proxy::capped(can_grant, who.cap);
        let held: Vec<String> = state
            .store
            .device(&verified.device_id)
            .filter(|d| d.public_key == verified.public_key)
            .map(|d| d.scopes)
            .unwrap_or_default();
        // A connect that asks for nothing gets the list; one that asks for
        // more than the device holds asks for no more than that plus what
        // auto-approval may grant.
        if requested.is_empty() {
            requested = can_grant;
        } else if !clawgate_protocol::scopes::covers(&held, &requested) {
            requested.retain(|s| {
                can_grant.contains(s) || clawgate_protocol::scopes::covers(&held, &[s])
            });
        }
    }
    let ask = pairing::Ask {
        verified: &verified,
        params,
        role,
        requested: &requested,
        peer,
        now_ms: now,
    };
    let proxy_user = auto.map(|_| who.user);
    let outcome = pairing::evaluate_with(state, &ask, AuthMethod::TrustedProxy, proxy_user)
        .map_err(Rejection::store_unavailable)?;
    let (device, routine) = match outcome {
        pairing::PairingOutcome::Approved { device, routine } => (device, routine),
        pairing::PairingOutcome::Required {
            error,
            close_reason,
        } => {
            return Err(Rejection {
                close_reason: Some(close_reason.into_boxed_str()),
                ..Rejection::now(error)
            });
        }
    };
    let issued = if ClientKind::is_browser_ui(&params.client) {
        if routine {
            state.deferred.seen(&device);
        } else {
            state
                .store
                .transact(|tx| tx.put_device(&device))
                .map_err(Rejection::store_unavailable)?;
        }
        None
    } else {
        Some(
            issue::hand_out(state, &device, role, &requested, None, routine, now)
                .map_err(Rejection::store_unavailable)?,
        )
    };
    let mut scopes = requested;
    for s in grant {
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    Ok(Authenticated {
        method: AuthMethod::TrustedProxy,
        role,
        scopes: trusted_proxy::capped(scopes, who.cap),
        shared_generation: Some(auth.generation),
        device_id: Some(verified.device_id),
        device_token_auth: false,
        issued_token: issued,
        handoff: Vec::new(),
    })
}

/// Requested scopes in order, each once.
fn dedup(requested: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(requested.len());
    for s in requested {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}
