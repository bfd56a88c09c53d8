//! Building audit records. The store chains and persists them; this module
//! decides what an entry says about who acted. Never a secret.

use clawgate_protocol::wire::AuditAction;
use clawgate_store::AuditRecord;
use serde_json::{Value, json};

use crate::session::{Caller, PeerContext, now_ms};

/// An audit record of `action`, now.
pub fn record(
    action: AuditAction,
    actor: Value,
    device_id: Option<&str>,
    details: Value,
) -> AuditRecord {
    AuditRecord {
        ts_ms: now_ms(),
        action: action.as_str().to_string(),
        actor,
        device_id: device_id.map(str::to_owned),
        details,
    }
}

/// An unauthenticated peer.
pub fn peer_actor(peer: &PeerContext) -> Value {
    json!({"kind": "peer", "ip": peer.ip.to_string()})
}

/// An authenticated session.
pub fn caller_actor(caller: &Caller) -> Value {
    let mut v = json!({"kind": "session", "connId": caller.conn_id, "ip": caller.ip.to_string(), "role": caller.role.as_str()});
    if let Some(d) = &caller.device_id {
        v["deviceId"] = json!(d);
    }
    v
}

/// The operator at the gateway host (config reload, CLI on the state dir).
pub fn host_actor(what: &str) -> Value {
    json!({"kind": "host", "via": what})
}
