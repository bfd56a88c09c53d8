//! A passkey sign-in, decided: `POST api/passkeys/options` issues a
//! challenge bound to the browser's device key; `POST api/passkeys/signin`
//! checks the answer and, in one transaction, approves that device for the
//! operator role with the passkey's scopes (never more), mints its device
//! token and writes the audit row. The browser then connects with its
//! device identity and that token; it never holds the shared secret.
//!
//! Order of checks: the limiter (a locked-out peer is refused before any
//! parsing or crypto), the registry (fail closed on a replica that cannot
//! trust it), the origin's relying party, the assertion's shape, the
//! challenge (taken: single use), the browser identity it was issued to
//! and that identity's signature over it, the stored passkey (exists, same
//! host name, not flagged), the WebAuthn verification, then the write.
//! Every refusal counts against the peer in the limiter (scope `passkey`)
//! and leaves a `passkey.refused` audit row (rate-limited); a counter that
//! went backwards also flags the passkey.

use std::time::{Duration, Instant};

use clawgate_protocol::catalogue;
use clawgate_protocol::frames::ErrorShape;
use clawgate_protocol::wire::{
    AuditAction, SigninDevice, SigninOk, SigninOptionsRequest, SigninPasskey, SigninRequest,
    signin_payload,
};
use clawgate_store::{Device, Passkey, PendingRequest, StoreError};
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::auth::device_proof::{
    SIGNATURE_SKEW_MS, decode_base64_lenient, device_id_for, raw_public_key,
};
use crate::auth::passkey::{self, Party, Refused, StoredCredential, b64};
use crate::auth::shared::{peer_class, record_failure};
use crate::auth::{pairing, tokens};
use crate::session::{PeerContext, now_ms};
use crate::state::limiter::{Admission, LimitKey, LimitScope};
use crate::state::passkeys::{Full, SigninCeremony};
use crate::state::{GatewayState, audit};

/// The `approvedVia` of a device a passkey approved.
pub const APPROVED_VIA: &str = "passkey";

/// A refused request: the error, and how long to hold the answer back (the
/// limiter's delay for repeated failures).
#[derive(Debug)]
pub struct SigninRefusal {
    pub error: ErrorShape,
    pub delay: Duration,
    /// 400 malformed, 401 refused, 429 limited, 503 unavailable.
    pub status: u16,
}

impl SigninRefusal {
    fn now(status: u16, error: ErrorShape) -> SigninRefusal {
        SigninRefusal {
            error,
            delay: Duration::ZERO,
            status,
        }
    }
}

fn key(peer: &PeerContext) -> LimitKey {
    LimitKey {
        scope: LimitScope::Passkey,
        peer: peer.ip,
        class: peer_class(peer),
    }
}

/// The limiter and registry gates every passkey request passes first.
fn admit(state: &GatewayState, peer: &PeerContext) -> Result<(), SigninRefusal> {
    if let Admission::Locked { retry_after_ms } = state.limiter.check(&key(peer), Instant::now()) {
        return Err(SigninRefusal::now(
            429,
            catalogue::rate_limited(retry_after_ms),
        ));
    }
    if let Some(refusal) = state.registry.refusal() {
        return Err(SigninRefusal::now(503, refusal));
    }
    Ok(())
}

/// Counts the failure, audits it, and shapes the answer.
fn refuse(state: &GatewayState, peer: &PeerContext, why: Refused, details: Value) -> SigninRefusal {
    let delay = record_failure(state, &key(peer), peer);
    info!(peer = %peer.ip, reason = why.reason(), "passkey sign-in refused");
    state.audit_passkey_refusal(why.reason(), audit::peer_actor(peer), details);
    SigninRefusal {
        error: why.error(),
        delay,
        status: if why == Refused::Malformed { 400 } else { 401 },
    }
}

/// The browser identity in a request: its id and normalised key, if the
/// id is the key's SHA-256.
fn identity(device: &SigninDevice) -> Option<(String, String, [u8; 32])> {
    let raw = raw_public_key(&device.public_key)?;
    let id = device_id_for(&raw);
    (id == device.id.trim()).then(|| (id, b64(&raw), raw))
}

/// `POST api/passkeys/options`: a challenge for this browser identity.
pub fn options(
    state: &GatewayState,
    peer: &PeerContext,
    origin: &str,
    req: &SigninOptionsRequest,
) -> Result<Value, SigninRefusal> {
    admit(state, peer)?;
    let party = Party::of_origin(origin).map_err(|why| {
        refuse(
            state,
            peer,
            why,
            json!({"stage": "options", "origin": origin}),
        )
    })?;
    let Some((device_id, public_key, _)) = identity(&req.device) else {
        return Err(refuse(
            state,
            peer,
            Refused::Malformed,
            json!({"stage": "options", "problem": "device id is not the SHA-256 of its key"}),
        ));
    };
    let start = passkey::begin_signin(&party)
        .map_err(|why| refuse(state, peer, why, json!({"stage": "options"})))?;
    let now = now_ms();
    let expires_at_ms = now + passkey::CEREMONY_TTL_MS;
    let ceremony = SigninCeremony {
        server: start.server,
        challenge_text: start.challenge_text,
        device_id,
        public_key,
        rp_id: party.rp_id,
        origin: party.origin,
        peer: peer.ip,
        expires_at_ms,
    };
    if let Err(full) = state.passkeys.begin_signin(start.challenge, ceremony, now) {
        let mut e = ErrorShape::new(
            clawgate_protocol::frames::error_code::UNAVAILABLE,
            match full {
                Full::Yours => {
                    "too many passkey sign-ins in progress from this address; retry in two minutes"
                }
                Full::Everyone => "too many passkey sign-ins in progress; retry shortly",
            },
        );
        e.retryable = Some(true);
        e.retry_after_ms = Some(passkey::CEREMONY_TTL_MS);
        return Err(SigninRefusal::now(429, e));
    }
    Ok(json!({"ok": true, "publicKey": start.options, "expiresAtMs": expires_at_ms}))
}

/// `POST api/passkeys/signin`: verify, approve, mint.
pub fn signin(
    state: &GatewayState,
    peer: &PeerContext,
    origin: &str,
    req: &SigninRequest,
) -> Result<SigninOk, SigninRefusal> {
    admit(state, peer)?;
    let stage = |extra: Value| {
        let mut d = json!({"stage": "signin", "claimedDeviceId": req.device.id});
        if let (Some(d), Value::Object(extra)) = (d.as_object_mut(), extra) {
            d.extend(extra);
        }
        d
    };
    let party = Party::of_origin(origin)
        .map_err(|why| refuse(state, peer, why, stage(json!({"origin": origin}))))?;
    let assertion = passkey::parse_assertion(&req.credential)
        .map_err(|why| refuse(state, peer, why, stage(json!({}))))?;
    let pk = json!({"passkeyId": assertion.credential_id});
    let now = now_ms();
    let Some(ceremony) = state.passkeys.take_signin(assertion.challenge, now) else {
        return Err(refuse(state, peer, Refused::ChallengeUnknown, stage(pk)));
    };
    if ceremony.origin != party.origin {
        return Err(refuse(state, peer, Refused::Origin, stage(pk)));
    }
    let Some((device_id, public_key, raw)) = identity(&req.device) else {
        return Err(refuse(state, peer, Refused::DeviceMismatch, stage(pk)));
    };
    if device_id != ceremony.device_id || public_key != ceremony.public_key {
        return Err(refuse(state, peer, Refused::DeviceMismatch, stage(pk)));
    }
    if !device_signature_ok(&req.device, &device_id, &ceremony.challenge_text, &raw, now) {
        return Err(refuse(state, peer, Refused::DeviceSignature, stage(pk)));
    }
    let stored = state
        .store
        .passkey(&assertion.credential_id)
        .map_err(|e| SigninRefusal::now(503, store_unavailable(e)))?;
    let Some(stored) = stored else {
        return Err(refuse(state, peer, Refused::UnknownCredential, stage(pk)));
    };
    if stored.rp_id != party.rp_id || stored.rp_id != ceremony.rp_id {
        return Err(refuse(state, peer, Refused::RpId, stage(pk)));
    }
    if stored.flagged_at_ms.is_some() {
        return Err(refuse(state, peer, Refused::Flagged, stage(pk)));
    }
    let credential = StoredCredential {
        credential_id: &stored.credential_id,
        user_handle: &stored.user_handle,
        public_key: &stored.public_key,
        state: &stored.state,
    };
    let used = match passkey::finish_signin(ceremony.server, &party, &assertion, &credential) {
        Ok(used) => used,
        Err(Refused::SignCount) => {
            flag(state, peer, &stored, now);
            return Err(refuse(state, peer, Refused::SignCount, stage(pk)));
        }
        Err(why) => return Err(refuse(state, peer, why, stage(pk))),
    };
    let done = approve(
        state,
        peer,
        &stored,
        &used,
        &device_id,
        &public_key,
        &party,
        now,
    )
    .map_err(|e| SigninRefusal::now(503, store_unavailable(e)))?;
    let Some((device, token, issued_at, token_scopes, superseded)) = done else {
        // Removed, flagged or used by another sign-in meanwhile.
        return Err(refuse(state, peer, Refused::UnknownCredential, stage(pk)));
    };
    state.limiter.record_success(&key(peer));
    state.deferred.remember(
        &device.device_id,
        "operator",
        &token,
        &token_scopes,
        issued_at,
    );
    for request_id in &superseded {
        pairing::broadcast_resolved(state, request_id, &device.device_id, "approved");
    }
    // Operators' device lists (here and on other replicas) show it at once.
    state.pairing_event("device.pair.changed", json!({}));
    info!(device = %device.device_id, passkey = %stored.credential_id, "browser signed in with a passkey");
    Ok(SigninOk {
        ok: true,
        device_id: device.device_id,
        role: "operator".into(),
        scopes: token_scopes,
        device_token: token,
        passkey: SigninPasskey {
            id: stored.credential_id.clone(),
            label: stored.label.clone(),
        },
    })
}

fn store_unavailable(e: StoreError) -> ErrorShape {
    warn!(%e, "passkey sign-in: store unavailable");
    catalogue::store_unavailable()
}

fn device_signature_ok(
    device: &SigninDevice,
    device_id: &str,
    challenge: &str,
    raw: &[u8; 32],
    now: u64,
) -> bool {
    let (Some(sig), Some(signed_at)) = (&device.signature, device.signed_at) else {
        return false;
    };
    if now.abs_diff(signed_at) > SIGNATURE_SKEW_MS {
        return false;
    }
    let Some(sig) = decode_base64_lenient(sig).and_then(|b| <[u8; 64]>::try_from(b).ok()) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(raw) else {
        return false;
    };
    let payload = signin_payload(device_id, challenge, signed_at);
    key.verify_strict(payload.as_bytes(), &Signature::from_bytes(&sig))
        .is_ok()
}

/// Flags a passkey whose counter went backwards (first time only).
fn flag(state: &GatewayState, peer: &PeerContext, stored: &Passkey, now: u64) {
    let outcome = state.store.transact(|tx| {
        if tx.flag_passkey(&stored.credential_id, now, "sign count went backwards")? {
            tx.append_audit(&audit::record(
                AuditAction::PasskeyRefused,
                audit::peer_actor(peer),
                None,
                json!({
                    "reason": Refused::SignCount.reason(),
                    "passkeyId": stored.credential_id,
                    "label": stored.label,
                    "flagged": true,
                    "storedSignCount": stored.sign_count,
                }),
            ))?;
        }
        Ok(())
    });
    if let Err(e) = outcome {
        warn!(%e, "could not flag a passkey whose counter went backwards");
    }
    warn!(passkey = %stored.credential_id, "passkey flagged: its signature counter went backwards");
}

type Approved = (
    Device,
    clawgate_protocol::Secret,
    u64,
    Vec<String>,
    Vec<String>,
);

/// The one transaction: the passkey is still there, unflagged and at the
/// counter that was verified; record its use, approve the device, mint.
#[allow(clippy::too_many_arguments)]
fn approve(
    state: &GatewayState,
    peer: &PeerContext,
    stored: &Passkey,
    used: &passkey::Used,
    device_id: &str,
    public_key: &str,
    party: &Party,
    now: u64,
) -> Result<Option<Approved>, StoreError> {
    let superseded = state.store.pending_for_device(device_id);
    state.store.transact(|tx| {
        let current = tx.passkey(&stored.credential_id)?;
        let unchanged = current.as_ref().is_some_and(|c| {
            c.flagged_at_ms.is_none() && c.state == stored.state && c.scopes == stored.scopes
        });
        if !unchanged {
            return Ok(None);
        }
        tx.update_passkey_use(&stored.credential_id, &used.state, used.sign_count, now)?;
        let existing = tx.device(device_id)?;
        let same_key = existing.as_ref().filter(|d| d.public_key == public_key);
        if existing.is_some() && same_key.is_none() {
            tx.delete_device(device_id)?;
        }
        let approval = PendingRequest {
            request_id: format!("passkey:{}", stored.credential_id),
            device_id: device_id.to_string(),
            public_key: public_key.to_string(),
            display_name: Some(format!("Control UI (passkey \"{}\")", stored.label)),
            platform: None,
            device_family: None,
            client_id: None,
            client_mode: None,
            browser_origin: Some(party.origin.clone()),
            remote_ip: Some(peer.ip.to_string()),
            role: "operator".into(),
            roles: vec!["operator".into()],
            scopes: stored.scopes.clone(),
            reason: pairing::PairingReason::NotPaired.as_str().to_string(),
            silent: false,
            is_repair: false,
            ts: now,
            refreshed_at_ms: now,
            pairing_code: None,
        };
        let mut device = pairing::merged_device(same_key, &approval, APPROVED_VIA, now);
        // A device that was paired before keeps its own name and origin.
        if let Some(prev) = same_key {
            device.display_name = prev.display_name.clone().or(device.display_name);
            device.platform = prev.platform.clone();
            device.device_family = prev.device_family.clone();
            device.client_id = prev.client_id.clone();
            device.client_mode = prev.client_mode.clone();
        }
        tx.put_device(&device)?;
        let mut dropped = Vec::new();
        for p in &superseded {
            if tx.delete_pending(&p.request_id)? {
                dropped.push(p.request_id.clone());
            }
        }
        let token_scopes = tokens::token_scopes("operator", &stored.scopes, &device.scopes);
        let current_token = tx.role_token(device_id, "operator")?;
        let (token, issued_at) = tokens::mint(
            tx,
            current_token.as_ref(),
            device_id,
            "operator",
            token_scopes.clone(),
            now,
        )?;
        tx.append_audit(&audit::record(
            AuditAction::PasskeySignin,
            audit::peer_actor(peer),
            Some(device_id),
            json!({
                "passkeyId": stored.credential_id,
                "label": stored.label,
                "role": "operator",
                "scopes": token_scopes,
                "approvedVia": APPROVED_VIA,
                "origin": party.origin,
                "signCount": used.sign_count,
            }),
        ))?;
        Ok(Some((device, token, issued_at, token_scopes, dropped)))
    })
}
