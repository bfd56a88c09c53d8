//! Store records as clients see them on the wire: a pending pairing
//! request (`device.pair.requested`, `device.pair.list`), a paired device
//! with its token entries (no token material), an audit entry. The one
//! place these shapes are written.

use clawgate_store::{Device, PendingRequest, Store};
use serde_json::{Value, json};

use crate::session::is_loopback;

/// A pending request as clients see it (`device.pair.requested`, `device.pair.list`).
pub fn pending(p: &PendingRequest) -> Value {
    let mut v = json!({
        "requestId": p.request_id,
        "deviceId": p.device_id,
        "publicKey": p.public_key,
    });
    let m = v.as_object_mut().expect("object");
    let shown_ip = Some(&p.remote_ip).filter(|ip| shown_ip(ip));
    insert_present(
        m,
        &[
            ("displayName", &p.display_name),
            ("platform", &p.platform),
            ("deviceFamily", &p.device_family),
            ("clientId", &p.client_id),
            ("clientMode", &p.client_mode),
            ("browserOrigin", &p.browser_origin),
            ("remoteIp", shown_ip.unwrap_or(&None)),
        ],
    );
    m.insert("role".into(), json!(p.role));
    m.insert("roles".into(), json!(p.roles));
    m.insert("scopes".into(), json!(p.scopes));
    m.insert("silent".into(), json!(p.silent));
    m.insert("isRepair".into(), json!(p.is_repair));
    m.insert("ts".into(), json!(p.ts));
    v
}

/// Whether a recorded address is shown: loopback addresses are not (as in
/// the reference), including the IPv4-mapped form.
fn shown_ip(ip: &Option<String>) -> bool {
    !ip.as_deref()
        .and_then(|s| s.parse::<std::net::IpAddr>().ok())
        .is_some_and(is_loopback)
}

/// Adds the fields that are present; the reference omits absent optional
/// fields rather than sending `null`.
fn insert_present(m: &mut serde_json::Map<String, Value>, fields: &[(&str, &Option<String>)]) {
    for (k, v) in fields {
        if let Some(x) = v {
            m.insert((*k).into(), json!(x));
        }
    }
}

/// A paired device as clients see it: no token material, no approved-scope
/// baseline field, plus `connected`.
pub fn paired(store: &Store, d: &Device, connected: Option<bool>) -> Value {
    let tokens: Vec<Value> = store
        .role_tokens(&d.device_id)
        .iter()
        .map(|t| {
            let mut v = json!({"role": t.role, "scopes": t.scopes, "createdAtMs": t.created_at_ms});
            if let Some(x) = t.rotated_at_ms {
                v["rotatedAtMs"] = json!(x);
            }
            if let Some(x) = t.revoked_at_ms {
                v["revokedAtMs"] = json!(x);
            }
            if let Some(x) = t.last_used_at_ms {
                v["lastUsedAtMs"] = json!(x);
            }
            v
        })
        .collect();
    let mut v = json!({"deviceId": d.device_id, "publicKey": d.public_key});
    let m = v.as_object_mut().expect("object");
    let shown_ip = Some(&d.remote_ip).filter(|ip| shown_ip(ip));
    insert_present(
        m,
        &[
            ("displayName", &d.display_name),
            ("operatorLabel", &d.operator_label),
            ("platform", &d.platform),
            ("deviceFamily", &d.device_family),
            ("clientId", &d.client_id),
            ("clientMode", &d.client_mode),
            ("browserOrigin", &d.browser_origin),
            ("remoteIp", shown_ip.unwrap_or(&None)),
        ],
    );
    if let Some(r) = d.roles.first() {
        m.insert("role".into(), json!(r));
    }
    m.insert("roles".into(), json!(d.roles));
    m.insert("scopes".into(), json!(d.scopes));
    m.insert("approvedVia".into(), json!(d.approved_via));
    m.insert("createdAtMs".into(), json!(d.created_at_ms));
    m.insert("approvedAtMs".into(), json!(d.approved_at_ms));
    if let Some(x) = d.last_seen_at_ms {
        m.insert("lastSeenAtMs".into(), json!(x));
    }
    if let Some(x) = &d.last_seen_reason {
        m.insert("lastSeenReason".into(), json!(x));
    }
    if let Some(c) = connected {
        m.insert("connected".into(), json!(c));
    }
    m.insert("tokens".into(), Value::Array(tokens));
    v
}
