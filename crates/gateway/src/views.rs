//! Store records as clients see them on the wire, built as the protocol's
//! typed payloads (`clawgate_protocol::wire`): a pending pairing request
//! (`device.pair.requested`, `device.pair.list`), a paired device with its
//! token entries (no token material), an audit entry, a passkey (no key
//! material). The only place the
//! gateway turns a store model into a wire shape.

use clawgate_protocol::wire::{
    AuditAction, AuditEntry, PairedDevice, PasskeyInfo, PendingPairing, TokenInfo,
};
use clawgate_store::{AuditRow, Device, Passkey, PendingRequest, Store};
use serde::Serialize;
use serde_json::Value;

/// A passkey as lists show it.
pub fn passkey(p: &Passkey) -> PasskeyInfo {
    PasskeyInfo {
        id: p.credential_id.clone(),
        label: p.label.clone(),
        scopes: p.scopes.clone(),
        rp_id: p.rp_id.clone(),
        created_at_ms: p.created_at_ms,
        created_by: p.created_by.clone(),
        last_used_at_ms: p.last_used_at_ms,
        sign_count: p.sign_count,
        flagged_at_ms: p.flagged_at_ms,
        flagged_reason: p.flagged_reason.clone(),
    }
}

/// A pending request.
pub fn pending(p: &PendingRequest) -> PendingPairing {
    let mut v = PendingPairing::new(
        &p.request_id,
        &p.device_id,
        &p.public_key,
        &p.role,
        p.roles.clone(),
        p.scopes.clone(),
        p.ts,
    );
    v.display_name = p.display_name.clone();
    v.platform = p.platform.clone();
    v.device_family = p.device_family.clone();
    v.client_id = p.client_id.clone();
    v.client_mode = p.client_mode.clone();
    v.browser_origin = p.browser_origin.clone();
    v.set_remote_ip(p.remote_ip.as_deref());
    v.silent = p.silent;
    v.is_repair = p.is_repair;
    v.pairing_code = p.pairing_code.clone();
    v
}

/// A paired device with its token entries; `connected` in lists only.
pub fn paired(store: &Store, d: &Device, connected: Option<bool>) -> PairedDevice {
    let mut v = PairedDevice::new(
        &d.device_id,
        &d.public_key,
        d.roles.clone(),
        d.scopes.clone(),
        &d.approved_via,
        d.created_at_ms,
        d.approved_at_ms,
    );
    v.display_name = d.display_name.clone();
    v.operator_label = d.operator_label.clone();
    v.platform = d.platform.clone();
    v.device_family = d.device_family.clone();
    v.client_id = d.client_id.clone();
    v.client_mode = d.client_mode.clone();
    v.browser_origin = d.browser_origin.clone();
    v.set_remote_ip(d.remote_ip.as_deref());
    v.last_seen_at_ms = d.last_seen_at_ms;
    v.last_seen_reason = d.last_seen_reason.clone();
    v.connected = connected;
    v.tokens = store
        .role_tokens(&d.device_id)
        .iter()
        .map(|t| {
            let mut info = TokenInfo::new(&t.role, t.scopes.clone(), t.created_at_ms);
            info.rotated_at_ms = t.rotated_at_ms;
            info.revoked_at_ms = t.revoked_at_ms;
            info.last_used_at_ms = t.last_used_at_ms;
            info
        })
        .collect();
    v
}

/// An audit row.
pub fn audit_entry(r: &AuditRow) -> AuditEntry {
    AuditEntry {
        seq: r.seq,
        ts: r.ts_ms,
        action: AuditAction::parse(&r.action),
        actor: r.actor.clone(),
        device_id: r.device_id.clone(),
        details: r.details.clone(),
        hash: r.hash.clone(),
    }
}

/// A payload as the JSON a frame carries. The wire types serialize
/// infallibly (plain fields, string keys).
pub fn json(payload: &impl Serialize) -> Value {
    serde_json::to_value(payload).expect("wire payloads serialize")
}
