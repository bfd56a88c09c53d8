//! Setup codes at connect time: a device that presents `auth.bootstrapToken`
//! (and no shared secret that passed) is paired by the code, for exactly the
//! role and scopes the code was minted for, and gets its device token in
//! `hello-ok` (`auth.deviceToken` and the `deviceTokens[]` hand-off).
//!
//! One transaction decides: the code is looked up by the SHA-256 of the
//! token, checked (live, same role, the asked scopes within the bound ones,
//! as the reference refuses anything beyond the code's profile), consumed by
//! a conditional UPDATE (of two racing devices exactly one wins), and the
//! device record, its token and the audit row are written with it. A refusal
//! writes only its audit row. Failures count in the limiter under their own
//! scope (`bootstrap-token`), like other credential failures.
//!
//! Also here: a setup code pasted where the gateway token belongs is
//! explained (`details.remediationHint`) instead of reading as a plain token
//! mismatch; only its format is looked at, never its validity.

use std::time::Instant;

use clawgate_protocol::catalogue::{self, Audience, AuthFailure};
use clawgate_protocol::connect::{ConnectParams, Role};
use clawgate_protocol::frames::ErrorShape;
use clawgate_protocol::setup_code::{self, MAX_BOOTSTRAP_TOKEN_LEN};
use clawgate_protocol::wire::{AuditAction, AuthMethod, HandoffToken};
use clawgate_protocol::{Secret, scopes};
use clawgate_store::{Device, PendingRequest, SetupCode, StoreError, hash_token};
use serde_json::{Value, json};
use tracing::info;

use crate::auth::connect::{Authenticated, Rejection};
use crate::auth::device_proof::VerifiedDevice;
use crate::auth::{pairing, tokens};
use crate::session::PeerContext;
use crate::state::limiter::{Admission, LimitKey, LimitScope};
use crate::state::{GatewayState, audit};

/// The `approvedVia` of a device paired by a setup code.
pub const APPROVED_VIA: &str = "bootstrap";

/// A bootstrap connect, as `connect.rs` hands it over.
pub(crate) struct Redeem<'a> {
    pub params: &'a ConnectParams,
    pub role: Role,
    pub peer: &'a PeerContext,
    pub verified: &'a VerifiedDevice,
    /// Requested scopes, deduplicated.
    pub requested: &'a [String],
    pub token: &'a str,
    /// The shared secret's limiter key; this uses its peer and class.
    pub shared_key: LimitKey,
    pub audience: Audience,
    pub now_ms: u64,
}

/// Why a bootstrap token was refused (the audit row's `reason`; the client
/// always gets the same AUTH_BOOTSTRAP_TOKEN_INVALID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Malformed,
    Unknown,
    Expired,
    Used,
    Revoked,
    WrongRole,
    ScopesBeyond,
}

impl Refused {
    fn as_str(self) -> &'static str {
        match self {
            Refused::Malformed => "malformed",
            Refused::Unknown => "unknown",
            Refused::Expired => "expired",
            Refused::Used => "used",
            Refused::Revoked => "revoked",
            Refused::WrongRole => "wrong-role",
            Refused::ScopesBeyond => "scopes-beyond-code",
        }
    }
}

/// What a successful redemption wrote.
struct Redeemed {
    code: SetupCode,
    device: Device,
    token: Secret,
    issued_at: u64,
    token_scopes: Vec<String>,
}

/// Pairs the device by its setup code, or refuses.
pub(crate) fn redeem(state: &GatewayState, r: &Redeem<'_>) -> Result<Authenticated, Rejection> {
    let key = LimitKey {
        scope: LimitScope::BootstrapToken,
        ..r.shared_key
    };
    if let Admission::Locked { retry_after_ms } = state.limiter.check(&key, Instant::now()) {
        return Err(Rejection::now(catalogue::rate_limited(retry_after_ms)));
    }
    let outcome = if r.token.len() > MAX_BOOTSTRAP_TOKEN_LEN {
        record_refusal(state, r, None, Refused::Malformed).map(|()| Err(Refused::Malformed))
    } else {
        consume(state, r)
    };
    match outcome.map_err(Rejection::store_unavailable)? {
        Ok(done) => {
            state.limiter.record_success(&key);
            Ok(authenticated(state, r, done))
        }
        Err(why) => {
            let delay = crate::auth::shared::record_failure(state, &key, r.peer);
            info!(peer = %r.peer.ip, device = %r.verified.device_id, reason = why.as_str(), "setup code refused");
            Err(Rejection {
                delay,
                ..Rejection::now(catalogue::auth_failure(
                    AuthFailure::BootstrapTokenInvalid,
                    r.audience,
                    false,
                ))
            })
        }
    }
}

/// The one transaction: check, consume, pair, mint, audit; or audit the
/// refusal and change nothing else.
fn consume(state: &GatewayState, r: &Redeem<'_>) -> Result<Result<Redeemed, Refused>, StoreError> {
    let hash = hash_token(r.token.trim());
    let role = r.role.as_str();
    let superseded = state.store.pending_for_device(&r.verified.device_id);
    state.store.transact(|tx| {
        let found = tx.setup_code_by_hash(&hash)?;
        let verdict = match &found {
            None => Err(Refused::Unknown),
            Some(c) if c.used_at_ms.is_some() => Err(Refused::Used),
            Some(c) if c.revoked_at_ms.is_some() => Err(Refused::Revoked),
            Some(c) if c.expires_at_ms <= r.now_ms => Err(Refused::Expired),
            Some(c) if c.role != role => Err(Refused::WrongRole),
            Some(c) if !scopes::covers(&c.scopes, r.requested) => Err(Refused::ScopesBeyond),
            Some(c) => {
                if tx.consume_setup_code(&c.setup_id, &r.verified.device_id, r.now_ms)? {
                    Ok(c.clone())
                } else {
                    Err(Refused::Used)
                }
            }
        };
        let code = match verdict {
            Ok(code) => code,
            Err(why) => {
                tx.append_audit(&refusal_record(r, found.as_ref(), why))?;
                return Ok(Err(why));
            }
        };
        let existing = tx.device(&r.verified.device_id)?;
        let same_key = existing
            .as_ref()
            .filter(|d| d.public_key == r.verified.public_key);
        if existing.is_some() && same_key.is_none() {
            tx.delete_device(&r.verified.device_id)?;
        }
        let mut device =
            pairing::merged_device(same_key, &approval(r, &code), APPROVED_VIA, r.now_ms);
        device.last_seen_at_ms = Some(r.now_ms);
        device.last_seen_reason = Some("connect".into());
        tx.put_device(&device)?;
        for p in &superseded {
            tx.delete_pending(&p.request_id)?;
        }
        let token_scopes = tokens::token_scopes(role, &code.scopes, &device.scopes);
        let current = tx.role_token(&device.device_id, role)?;
        let (token, issued_at) = tokens::mint(
            tx,
            current.as_ref(),
            &device.device_id,
            role,
            token_scopes.clone(),
            r.now_ms,
        )?;
        tx.append_audit(&audit::record(
            AuditAction::SetupCodeRedeemed,
            audit::peer_actor(r.peer),
            Some(&device.device_id),
            json!({
                "setupId": code.setup_id,
                "label": code.label,
                "role": role,
                "scopes": code.scopes,
                "approvedVia": APPROVED_VIA,
                "clientId": r.params.client.id,
            }),
        ))?;
        Ok(Ok(Redeemed {
            code,
            device,
            token,
            issued_at,
            token_scopes,
        }))
    })
}

/// The approval a setup code stands for, in the shape pairing merges.
fn approval(r: &Redeem<'_>, code: &SetupCode) -> PendingRequest {
    let client = &r.params.client;
    PendingRequest {
        request_id: code.setup_id.clone(),
        device_id: r.verified.device_id.clone(),
        public_key: r.verified.public_key.clone(),
        display_name: client.display_name.clone(),
        platform: Some(client.platform.clone()),
        device_family: client.device_family.clone(),
        client_id: Some(client.id.clone()),
        client_mode: Some(client.mode.clone()),
        browser_origin: None,
        remote_ip: Some(r.peer.ip.to_string()),
        role: code.role.clone(),
        roles: vec![code.role.clone()],
        scopes: code.scopes.clone(),
        reason: pairing::PairingReason::NotPaired.as_str().to_string(),
        silent: false,
        is_repair: false,
        ts: r.now_ms,
        refreshed_at_ms: r.now_ms,
        // Never stored as a pending request: no code to approve it by.
        pairing_code: None,
    }
}

fn refusal_record(
    r: &Redeem<'_>,
    code: Option<&SetupCode>,
    why: Refused,
) -> clawgate_store::AuditRecord {
    let mut details = json!({
        "reason": why.as_str(),
        "requestedRole": r.role.as_str(),
        "requestedScopes": r.requested,
        "claimedDeviceId": r.verified.device_id,
    });
    if let Some(c) = code {
        details["setupId"] = json!(c.setup_id);
        details["codeRole"] = json!(c.role);
    }
    audit::record(
        AuditAction::SetupCodeRejected,
        audit::peer_actor(r.peer),
        None,
        details,
    )
}

fn record_refusal(
    state: &GatewayState,
    r: &Redeem<'_>,
    code: Option<&SetupCode>,
    why: Refused,
) -> Result<(), StoreError> {
    let record = refusal_record(r, code, why);
    state
        .store
        .transact(|tx| tx.append_audit(&record).map(|_| ()))
}

fn authenticated(state: &GatewayState, r: &Redeem<'_>, done: Redeemed) -> Authenticated {
    let Redeemed {
        code,
        device,
        token,
        issued_at,
        token_scopes,
    } = done;
    info!(device = %device.device_id, role = %r.role, setup = %code.setup_id, "device paired by setup code");
    state.deferred.remember(
        &device.device_id,
        r.role.as_str(),
        &token,
        &token_scopes,
        issued_at,
    );
    state.pairing_event(
        "device.pair.setup.completed",
        json!({
            "setupId": code.setup_id,
            "deviceId": device.device_id,
            "deviceName": device.display_name,
            "role": code.role,
            "scopes": code.scopes,
            "ts": r.now_ms,
        }),
    );
    pairing::broadcast_resolved(state, &code.setup_id, &device.device_id, "approved");
    // Asked for nothing: the session gets what the code grants.
    let scopes = if r.requested.is_empty() {
        token_scopes.clone()
    } else {
        r.requested.to_vec()
    };
    Authenticated {
        method: AuthMethod::BootstrapToken,
        role: r.role,
        scopes,
        shared_generation: None,
        device_id: Some(device.device_id),
        device_token_auth: true,
        issued_token: Some((token.clone(), issued_at)),
        handoff: vec![HandoffToken {
            device_token: token,
            role: r.role,
            scopes: token_scopes,
            issued_at_ms: issued_at,
        }],
    }
}

/// Adds the setup-code hint to a token-mismatch refusal whose `auth.token`
/// or `auth.deviceToken` is a setup code (format only: nothing is looked up,
/// so the answer says nothing about the code's validity).
pub(crate) fn explain_pasted_setup_code(
    params: &ConnectParams,
    mut rejection: Rejection,
) -> Rejection {
    let pasted = [&params.auth.token, &params.auth.device_token]
        .into_iter()
        .flatten()
        .any(|t| setup_code::is_setup_code(t));
    let mismatch = matches!(
        rejection.error.detail_code(),
        Some("AUTH_TOKEN_MISMATCH" | "AUTH_DEVICE_TOKEN_MISMATCH" | "AUTH_UNAUTHORIZED")
    );
    if pasted && mismatch {
        add_hint(&mut rejection.error);
    }
    rejection
}

/// `details.remediationHint`, where the reference puts that key (before
/// `recommendedNextStep`).
fn add_hint(error: &mut ErrorShape) {
    if let Some(Value::Object(details)) = error.details.as_deref_mut() {
        let old = std::mem::take(details);
        for (key, value) in old {
            if key == "recommendedNextStep" {
                details.insert(
                    "remediationHint".into(),
                    json!(setup_code::PASTED_AS_TOKEN_HINT),
                );
            }
            details.insert(key, value);
        }
        details
            .entry("remediationHint")
            .or_insert_with(|| json!(setup_code::PASTED_AS_TOKEN_HINT));
    }
}
