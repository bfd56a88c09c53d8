//! The shared secret (token or password) of a connect: which field carries
//! it, the limiter's verdict before any comparison (lockouts, and the
//! under-attack state that refuses peers without a recent success), the
//! constant-time comparison or, for `gateway.auth.passwordHash`, the
//! Argon2id verification on the bounded pool ([`verify_password`], awaited
//! before the sync decision), and recording a failure (delay or lockout).

use clawgate_protocol::wire::AuditAction;
use std::time::{Duration, Instant};

use clawgate_protocol::catalogue::AuthFailure;
use clawgate_protocol::connect::ConnectParams;
use serde_json::json;
use tracing::warn;

use crate::auth::device_proof;
use crate::config::AuthMode;
use crate::password::Verdict;
use crate::session::{PeerContext, is_loopback, now_ms};
use crate::state::limiter::{Admission, LimitKey, LimitScope, PeerClass};
use crate::state::{AuthState, GatewayState, audit};

/// How the shared-secret check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SharedOutcome {
    Ok,
    Missing,
    Mismatch,
    NotConfigured,
    RateLimited { retry_after_ms: u64 },
}

/// The outcome of an Argon2 password verification made before the
/// connect decision (only with `gateway.auth.passwordHash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordVerdict {
    /// Nothing to verify (no hash in force, or no secret offered).
    NotChecked,
    Match,
    Mismatch,
    /// The limiter refused before any hashing.
    Refused {
        retry_after_ms: u64,
    },
    /// The verification queue was full: nothing was computed.
    Busy,
}

/// How long a client whose verification found the queue full waits.
const BUSY_RETRY_MS: u64 = 1_000;

/// Which wire field carried the offered secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretKind {
    Token,
    Password,
}

/// A wire field that is present and not empty.
pub(crate) fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// The shared-secret part of a connect.
pub(crate) struct SharedCheck {
    pub outcome: SharedOutcome,
    /// The field the secret came in, if one was offered.
    pub offered: Option<SecretKind>,
    /// The failure to report when the shared secret is what failed.
    pub failure: AuthFailure,
    /// The limiter key for this peer's shared-secret failures.
    pub key: LimitKey,
    /// Trusted-proxy mode: the proxy's refusal, the answer when no other
    /// credential passes either.
    pub proxy_refusal: Option<clawgate_protocol::frames::ErrorShape>,
}

fn shared_key(peer: &PeerContext) -> LimitKey {
    LimitKey {
        scope: LimitScope::SharedSecret,
        peer: peer.ip,
        class: peer_class(peer),
    }
}

/// The limiter's verdict on a shared-secret attempt before any comparison:
/// the peer's lockout, then (a secret being offered) the under-attack state,
/// which lets through a connect signed by an already paired device.
fn admission(state: &GatewayState, key: &LimitKey, signer: &Signer<'_>) -> Admission {
    let now = Instant::now();
    match state.limiter.check(key, now) {
        Admission::Allowed => {}
        locked => return locked,
    }
    if state.limiter.is_under_attack() && signer.is_paired_device(state) {
        state.metrics.attack_paired_pass();
        return Admission::Allowed;
    }
    let verdict = state.limiter.check_attack(key, now);
    if verdict != Admission::Allowed {
        state.metrics.attack_refusal();
    }
    verdict
}

/// What a connect's device proof is checked against: the role it asks for
/// and the nonce of its challenge.
pub(crate) struct Signer<'a> {
    pub params: &'a ConnectParams,
    pub role: &'a str,
    pub nonce: &'a str,
}

impl Signer<'_> {
    /// Whether the connect is signed by a device already paired with this
    /// key: not a stranger's guess, so the under-attack state lets its
    /// shared-secret attempt through (its lockout still applies). The
    /// paired record is looked up first, so a made-up key costs no
    /// signature check.
    fn is_paired_device(&self, state: &GatewayState) -> bool {
        let Some(device) = &self.params.device else {
            return false;
        };
        let Some(raw) = device_proof::raw_public_key(&device.public_key) else {
            return false;
        };
        let paired = state
            .store
            .device(&device_proof::device_id_for(&raw))
            .is_some_and(|d| device_proof::raw_public_key(&d.public_key) == Some(raw));
        paired && device_proof::verify(self.params, device, self.role, self.nonce, now_ms()).is_ok()
    }
}

/// With `gateway.auth.passwordHash` in force and a secret offered: asks
/// the limiter, then verifies on the bounded pool (off the async workers).
pub(crate) async fn verify_password(
    state: &GatewayState,
    params: &ConnectParams,
    peer: &PeerContext,
    signer: &Signer<'_>,
) -> PasswordVerdict {
    let auth = state.auth();
    let Some(hash) = &auth.config.password_hash else {
        return PasswordVerdict::NotChecked;
    };
    match auth.config.mode {
        AuthMode::Password => {}
        // Trusted-proxy mode: only a direct local caller may use it.
        AuthMode::TrustedProxy if peer.direct_local => {}
        _ => return PasswordVerdict::NotChecked,
    }
    let Some((value, _)) = offered_secret(auth.config.mode, params) else {
        return PasswordVerdict::NotChecked;
    };
    if let Admission::Locked { retry_after_ms } = admission(state, &shared_key(peer), signer) {
        return PasswordVerdict::Refused { retry_after_ms };
    }
    match state.passwords.verify(hash, value).await {
        Verdict::Match => {
            state.metrics.shared_evaluation();
            PasswordVerdict::Match
        }
        Verdict::Mismatch => {
            state.metrics.shared_evaluation();
            PasswordVerdict::Mismatch
        }
        Verdict::Busy => {
            state.metrics.password_queue_full();
            PasswordVerdict::Busy
        }
    }
}

/// The secret offered: the field named after the mode first, else the other.
fn offered_secret(mode: AuthMode, params: &ConnectParams) -> Option<(&str, SecretKind)> {
    match mode {
        AuthMode::Token => non_empty(&params.auth.token)
            .map(|s| (s, SecretKind::Token))
            .or_else(|| non_empty(&params.auth.password).map(|s| (s, SecretKind::Password))),
        AuthMode::Password => non_empty(&params.auth.password)
            .map(|s| (s, SecretKind::Password))
            .or_else(|| non_empty(&params.auth.token).map(|s| (s, SecretKind::Token))),
        // The local password of direct callers; a token is never one.
        AuthMode::TrustedProxy => {
            non_empty(&params.auth.password).map(|s| (s, SecretKind::Password))
        }
        AuthMode::None => None,
    }
}

/// Checks the shared secret of a connect against the secret in force,
/// after asking the limiter (before any comparison). With a password hash
/// the comparison was made by [`verify_password`]: `verdict` holds it.
pub(crate) fn check_shared(
    state: &GatewayState,
    params: &ConnectParams,
    peer: &PeerContext,
    auth: &AuthState,
    verdict: PasswordVerdict,
    signer: &Signer<'_>,
) -> SharedCheck {
    let mode = auth.config.mode;
    let key = shared_key(peer);
    let offered = offered_secret(mode, params);
    let hashed = matches!(mode, AuthMode::Password | AuthMode::TrustedProxy)
        && auth.config.password_hash.is_some();
    let (expected, missing, mismatch, not_configured) = match mode {
        AuthMode::Password | AuthMode::TrustedProxy => (
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
    } else if hashed && offered.is_some() {
        // Asked and verified before this call (verify_password).
        match verdict {
            PasswordVerdict::Match => (SharedOutcome::Ok, mismatch),
            PasswordVerdict::Mismatch => (SharedOutcome::Mismatch, mismatch),
            PasswordVerdict::Refused { retry_after_ms } => {
                (SharedOutcome::RateLimited { retry_after_ms }, mismatch)
            }
            PasswordVerdict::Busy => (
                SharedOutcome::RateLimited {
                    retry_after_ms: BUSY_RETRY_MS,
                },
                mismatch,
            ),
            // The hash came into force between the two calls: refuse
            // without counting; the client retries.
            PasswordVerdict::NotChecked => (
                SharedOutcome::RateLimited {
                    retry_after_ms: BUSY_RETRY_MS,
                },
                mismatch,
            ),
        }
    } else if offered.is_none() {
        // Nothing to compare: only a lockout refuses (the under-attack
        // state is about guesses).
        match state.limiter.check(&key, Instant::now()) {
            Admission::Locked { retry_after_ms } => {
                (SharedOutcome::RateLimited { retry_after_ms }, mismatch)
            }
            Admission::Allowed if expected.is_none() && !hashed => {
                (SharedOutcome::NotConfigured, not_configured)
            }
            Admission::Allowed => (SharedOutcome::Missing, missing),
        }
    } else if let Admission::Locked { retry_after_ms } = admission(state, &key, signer) {
        // The limiter decides before any comparison or signature work.
        (SharedOutcome::RateLimited { retry_after_ms }, mismatch)
    } else {
        match (offered, expected) {
            (_, None) => (SharedOutcome::NotConfigured, not_configured),
            (None, Some(_)) => (SharedOutcome::Missing, missing),
            (Some((value, _)), Some(secret)) => {
                state.metrics.shared_evaluation();
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
        proxy_refusal: None,
    }
}

/// The limiter's class of a peer. Only a direct loopback peer without
/// `Origin` is [`PeerClass::Local`] (and so may be loopback-exempt): a
/// browser never is, nor is a socket that came through a trusted proxy
/// with a loopback client address: a forwarding header saying "127.0.0.1"
/// is a claim, not a fact (advisory class "loopback trust through proxy
/// headers").
pub(crate) fn peer_class(peer: &PeerContext) -> PeerClass {
    if peer.origin.is_some() {
        PeerClass::Browser
    } else if peer.direct_local && is_loopback(peer.ip) {
        PeerClass::Local
    } else {
        PeerClass::Remote
    }
}

/// Records a failed credential under `key` (any limiter scope) and returns
/// the delay to apply; a lockout it starts is counted, logged and audited.
pub(crate) fn record_failure(state: &GatewayState, key: &LimitKey, peer: &PeerContext) -> Duration {
    let outcome = state.limiter.record_failure(key, Instant::now());
    if outcome.locked_now {
        state.metrics.lockout();
        warn!(peer = %peer.ip, class = key.class.as_str(), scope = key.scope.as_str(), "failed-auth lockout started");
        // Queued for the once-a-second flush (every lockout is kept): a
        // synchronous write here would block a runtime worker once per
        // locked key while a distributed guesser is locking many.
        state.deferred.audit(audit::record(
            AuditAction::AuthLockout,
            audit::peer_actor(peer),
            None,
            json!({"scope": key.scope.as_str(), "peerClass": key.class.as_str()}),
        ));
    }
    outcome.delay
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_direct_loopback_peers_without_origin_are_local() {
        let peer = |ip: &str, direct_local: bool| PeerContext {
            ip: ip.parse().unwrap(),
            direct_local,
            origin: None,
            host: None,
            proxy: Default::default(),
        };
        for claimed in ["127.0.0.1", "::1", "::ffff:127.0.0.1", "::ffff:127.9.9.9"] {
            assert_eq!(
                peer_class(&peer(claimed, false)),
                PeerClass::Remote,
                "{claimed}"
            );
        }
        assert_eq!(peer_class(&peer("127.0.0.1", true)), PeerClass::Local);
        assert_eq!(
            peer_class(&peer("::ffff:127.0.0.1", true)),
            PeerClass::Local
        );
        assert_eq!(peer_class(&peer("203.0.113.5", false)), PeerClass::Remote);
        let browser = PeerContext {
            origin: Some("http://127.0.0.1:18789".into()),
            ..peer("127.0.0.1", true)
        };
        assert_eq!(peer_class(&browser), PeerClass::Browser);
    }
}
