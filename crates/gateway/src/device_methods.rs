//! `device.pair.*`, `device.token.*` and `audit.list` (server.md 6.5, 7.1).
//!
//! Rules that hold for every handler: a caller never grants, mints or keeps
//! scopes it does not hold itself; only admins manage non-operator roles;
//! a non-admin session that authenticated with a device token manages only
//! its own device. Every change is one store transaction with its audit row,
//! and live sessions it invalidates are closed with 4001 and a reason that
//! says what happened.

use clawgate_protocol::frames::{ErrorShape, error_code};
use clawgate_protocol::schema::{NON_EMPTY, Prop, Schema};
use clawgate_protocol::scopes;
use clawgate_store::{AuditQuery, Device, StoreError, Tx};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::audit;
use crate::methods::Caller;
use crate::pairing;
use crate::state::{GatewayState, now_ms};
use crate::tokens;

pub static REQUEST_ID_PARAMS: Schema = Schema::Object(&[Prop::required("requestId", NON_EMPTY)]);
pub static DEVICE_ID_PARAMS: Schema = Schema::Object(&[Prop::required("deviceId", NON_EMPTY)]);
pub static RENAME_PARAMS: Schema = Schema::Object(&[
    Prop::required("deviceId", NON_EMPTY),
    Prop::required(
        "label",
        Schema::Str {
            min: 1,
            max: Some(64),
        },
    ),
]);
pub static ROTATE_PARAMS: Schema = Schema::Object(&[
    Prop::required("deviceId", NON_EMPTY),
    Prop::required("role", NON_EMPTY),
    Prop::optional("scopes", Schema::Array(&NON_EMPTY)),
]);
pub static REVOKE_PARAMS: Schema = Schema::Object(&[
    Prop::required("deviceId", NON_EMPTY),
    Prop::required("role", NON_EMPTY),
]);
pub static AUDIT_LIST_PARAMS: Schema = Schema::Object(&[
    Prop::optional("action", NON_EMPTY),
    Prop::optional("deviceId", NON_EMPTY),
    Prop::optional("sinceMs", Schema::Int { min: 0 }),
    Prop::optional("untilMs", Schema::Int { min: 0 }),
    Prop::optional("cursor", Schema::Int { min: 0 }),
    Prop::optional("limit", Schema::Int { min: 1 }),
]);

fn store_error(err: StoreError) -> ErrorShape {
    warn!(%err, "store operation failed");
    let mut e = ErrorShape::new(
        error_code::UNAVAILABLE,
        "gateway store unavailable; retry shortly",
    );
    e.retryable = Some(true);
    e
}

/// Applies `change` and its audit row in one transaction.
fn commit(
    state: &GatewayState,
    caller: &Caller,
    action: &str,
    device_id: &str,
    details: Value,
    change: impl FnOnce(&mut Tx<'_>) -> Result<(), StoreError>,
) -> Result<(), ErrorShape> {
    state
        .store
        .transact(|tx| {
            change(tx)?;
            tx.append_audit(&audit::record(
                action,
                audit::caller_actor(caller),
                Some(device_id),
                details,
            ))?;
            Ok(())
        })
        .map_err(store_error)
}

fn invalid(message: &str) -> ErrorShape {
    ErrorShape::invalid_request(message)
}

fn str_param<'a>(params: &'a Value, key: &str) -> &'a str {
    params
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or("")
}

fn is_admin(caller: &Caller) -> bool {
    caller.scopes.iter().any(|s| s == scopes::ADMIN)
}

/// A non-admin device-token session acting on another device.
fn denies_cross_device(caller: &Caller, target: &str) -> bool {
    caller
        .device_id
        .as_deref()
        .is_some_and(|own| own != target && !is_admin(caller))
}

fn has_non_operator_role(roles: &[String]) -> bool {
    roles.iter().any(|r| r != "operator")
}

/// A paired device as clients see it: no token material, no approved-scope
/// baseline field, plus `connected`.
pub fn paired_json(state: &GatewayState, d: &Device, connected: Option<bool>) -> Value {
    let tokens: Vec<Value> = state
        .store
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
    let shown_ip = Some(&d.remote_ip).filter(|ip| !pairing::is_loopback_ip(ip));
    pairing::insert_present(
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

fn live_pending(state: &GatewayState) -> Vec<clawgate_store::PendingRequest> {
    let now = now_ms();
    state
        .store
        .pending_list()
        .into_iter()
        .filter(|p| pairing::is_live(p, now))
        .collect()
}

pub fn pair_list(state: &GatewayState, caller: &Caller, _: Value) -> Result<Value, ErrorShape> {
    // Show exact last-seen times: write the queued ones first.
    state.flush_deferred();
    let own = caller.device_id.as_deref().filter(|_| !is_admin(caller));
    let pending: Vec<Value> = live_pending(state)
        .iter()
        .filter(|p| own.is_none_or(|d| p.device_id == d))
        .map(pairing::pending_json)
        .collect();
    let paired: Vec<Value> = state
        .store
        .devices()
        .iter()
        .filter(|d| own.is_none_or(|o| d.device_id == o))
        .map(|d| {
            let connected = state.hub.device_connected(&d.device_id);
            paired_json(state, d, Some(connected))
        })
        .collect();
    Ok(json!({"pending": pending, "paired": paired}))
}

pub fn pair_approve(
    state: &GatewayState,
    caller: &Caller,
    params: Value,
) -> Result<Value, ErrorShape> {
    let request_id = str_param(&params, "requestId");
    let now = now_ms();
    let pending = state
        .store
        .pending(request_id)
        .filter(|p| pairing::is_live(p, now));
    if !is_admin(caller) {
        let Some(p) = &pending else {
            return Err(invalid("device pairing approval denied"));
        };
        if caller
            .device_id
            .as_deref()
            .is_some_and(|own| own != p.device_id)
            || has_non_operator_role(&p.roles)
        {
            warn!(request = %request_id, "device pairing approval denied");
            return Err(invalid("device pairing approval denied"));
        }
    }
    let Some(request) = pending else {
        return Err(invalid("unknown requestId"));
    };
    // The approver must hold every operator scope it grants.
    if let Some(missing) = scopes::first_uncovered(&caller.scopes, &request.scopes) {
        return Err(invalid(&format!("missing scope: {missing}")));
    }
    // The request and the device are read again inside the transaction
    // (under the writer lock the cache is current): a rejection, a removal
    // or another approval may have committed since the reads above, and an
    // approval built on them would undo what those operators were told.
    let decided = state
        .store
        .transact(|tx| {
            let Some(request) = state
                .store
                .pending(&request.request_id)
                .filter(|p| pairing::is_live(p, now) && p.scopes == request.scopes)
            else {
                return Ok(None);
            };
            let stored = state.store.device(&request.device_id);
            let existing = stored
                .as_ref()
                .filter(|d| d.public_key == request.public_key);
            let key_changed = existing.is_none() && stored.is_some();
            let device = pairing::merged_device(existing, &request, "owner", now);
            if key_changed {
                tx.delete_device(&device.device_id)?;
            }
            tx.put_device(&device)?;
            for role in &request.roles {
                let current = state
                    .store
                    .role_token(&device.device_id, role)
                    .filter(|_| !key_changed);
                let token_scopes = tokens::token_scopes(role, &device.scopes, &device.scopes);
                let entry = match current {
                    Some(mut t) if t.revoked_at_ms.is_none() => {
                        t.scopes = token_scopes;
                        t
                    }
                    _ => clawgate_store::RoleToken {
                        device_id: device.device_id.clone(),
                        role: role.clone(),
                        scopes: token_scopes,
                        created_at_ms: now,
                        rotated_at_ms: None,
                        revoked_at_ms: None,
                        last_used_at_ms: None,
                    },
                };
                tx.put_role_token(&entry)?;
            }
            for p in state.store.pending_for_device(&request.device_id) {
                tx.delete_pending(&p.request_id)?;
            }
            tx.append_audit(&audit::record(
                "pairing.approved",
                audit::caller_actor(caller),
                Some(&device.device_id),
                json!({"requestId": request.request_id, "roles": request.roles, "scopes": request.scopes, "approvedVia": "owner"}),
            ))?;
            Ok(Some((request, device)))
        })
        .map_err(store_error)?;
    let Some((request, device)) = decided else {
        return Err(invalid("unknown requestId"));
    };
    info!(device = %device.device_id, request = %request.request_id, "device pairing approved");
    pairing::broadcast_resolved(state, &request.request_id, &device.device_id, "approved");
    Ok(json!({"requestId": request.request_id, "device": paired_json(state, &device, None)}))
}

pub fn pair_reject(
    state: &GatewayState,
    caller: &Caller,
    params: Value,
) -> Result<Value, ErrorShape> {
    let request_id = str_param(&params, "requestId");
    let pending = state.store.pending(request_id);
    if let Some(own) = caller.device_id.as_deref().filter(|_| !is_admin(caller))
        && pending.as_ref().is_none_or(|p| p.device_id != own)
    {
        return Err(invalid("device pairing rejection denied"));
    }
    let Some(request) = pending else {
        return Err(invalid("unknown requestId"));
    };
    // Still pending inside the transaction, or an approval won the race.
    let rejected = state
        .store
        .transact(|tx| {
            if !tx.delete_pending(&request.request_id)? {
                return Ok(false);
            }
            tx.append_audit(&audit::record(
                "pairing.rejected",
                audit::caller_actor(caller),
                Some(&request.device_id),
                json!({"requestId": request.request_id}),
            ))?;
            Ok(true)
        })
        .map_err(store_error)?;
    if !rejected {
        return Err(invalid("unknown requestId"));
    }
    info!(request = %request.request_id, "device pairing rejected");
    pairing::broadcast_resolved(state, &request.request_id, &request.device_id, "rejected");
    Ok(json!({"requestId": request.request_id, "deviceId": request.device_id}))
}

pub fn pair_remove(
    state: &GatewayState,
    caller: &Caller,
    params: Value,
) -> Result<Value, ErrorShape> {
    let device_id = str_param(&params, "deviceId").to_string();
    if denies_cross_device(caller, &device_id) {
        return Err(invalid("device pairing removal denied"));
    }
    let device = state.store.device(&device_id);
    if caller.device_id.is_some()
        && !is_admin(caller)
        && device
            .as_ref()
            .is_some_and(|d| has_non_operator_role(&d.roles))
    {
        return Err(invalid("device pairing removal denied"));
    }
    if device.is_none() {
        return Err(invalid("unknown deviceId"));
    }
    commit(
        state,
        caller,
        "device.removed",
        &device_id,
        json!({}),
        |tx| tx.delete_device(&device_id).map(|_| ()),
    )?;
    let closed = state
        .hub
        .close_device_sessions(&device_id, None, "device removed");
    state.deferred.forget(&device_id, None);
    info!(device = %device_id, closed, "device removed");
    Ok(json!({"deviceId": device_id}))
}

pub fn pair_rename(
    state: &GatewayState,
    caller: &Caller,
    params: Value,
) -> Result<Value, ErrorShape> {
    let device_id = str_param(&params, "deviceId").to_string();
    let label = str_param(&params, "label").to_string();
    if label.is_empty() {
        return Err(invalid("label required"));
    }
    if denies_cross_device(caller, &device_id) {
        return Err(invalid("device pairing rename denied"));
    }
    let Some(mut device) = state.store.device(&device_id) else {
        return Err(invalid("unknown deviceId"));
    };
    if caller.device_id.is_some() && !is_admin(caller) && has_non_operator_role(&device.roles) {
        return Err(invalid("device pairing rename denied"));
    }
    let previous = device.operator_label.clone();
    device.operator_label = Some(label.clone());
    commit(
        state,
        caller,
        "device.renamed",
        &device_id,
        json!({"label": label, "previousLabel": previous}),
        |tx| tx.put_device(&device).map(|_| ()),
    )?;
    state.hub.broadcast("device.pair.changed", &json!({}));
    Ok(json!({"deviceId": device_id, "label": label}))
}

fn rotation_denied(device_id: &str, role: &str, reason: &str) -> ErrorShape {
    warn!(device = %device_id, role = %role, reason, "device token rotation denied");
    invalid("device token rotation denied")
}

pub fn token_rotate(
    state: &GatewayState,
    caller: &Caller,
    params: Value,
) -> Result<Value, ErrorShape> {
    let device_id = str_param(&params, "deviceId").to_string();
    let role = str_param(&params, "role").to_string();
    if denies_cross_device(caller, &device_id) {
        return Err(rotation_denied(
            &device_id,
            &role,
            "device-ownership-mismatch",
        ));
    }
    if role != "operator" && !is_admin(caller) {
        return Err(rotation_denied(
            &device_id,
            &role,
            "role-management-requires-admin",
        ));
    }
    let Some(device) = state.store.device(&device_id) else {
        return Err(rotation_denied(&device_id, &role, "unknown-device-or-role"));
    };
    let current = state.store.role_token(&device_id, &role);
    if !device.roles.contains(&role) || current.is_none() {
        return Err(rotation_denied(&device_id, &role, "unknown-device-or-role"));
    }
    let requested: Vec<String> = match params.get("scopes").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        None => current
            .as_ref()
            .map(|t| t.scopes.clone())
            .unwrap_or_default(),
    };
    if role == "operator" {
        if device.scopes.is_empty() && !requested.is_empty() {
            return Err(rotation_denied(
                &device_id,
                &role,
                "missing-approved-scope-baseline",
            ));
        }
        if !scopes::covers(&device.scopes, &requested)
            || requested.iter().any(|s| !scopes::is_operator_scope(s))
        {
            return Err(rotation_denied(
                &device_id,
                &role,
                "scope-outside-approved-baseline",
            ));
        }
        if !scopes::covers(&caller.scopes, &requested) {
            return Err(rotation_denied(&device_id, &role, "caller-missing-scope"));
        }
    } else if !requested.is_empty() {
        return Err(rotation_denied(
            &device_id,
            &role,
            "scope-outside-approved-baseline",
        ));
    }
    let now = now_ms();
    let token_scopes = tokens::token_scopes(&role, &requested, &device.scopes);
    let (token, rotated_at) = state
        .store
        .transact(|tx| {
            tx.delete_token_hashes(&device_id, &role)?;
            // The entry as it will be after the rotation; `mint` writes it.
            let mut base = current.clone().expect("checked above");
            base.revoked_at_ms = None;
            base.scopes = token_scopes.clone();
            base.rotated_at_ms = Some(now);
            let (token, at) = tokens::mint(
                tx,
                Some(&base),
                &device_id,
                &role,
                token_scopes.clone(),
                now,
            )?;
            tx.append_audit(&audit::record(
                "token.rotated",
                audit::caller_actor(caller),
                Some(&device_id),
                json!({"role": role, "scopes": token_scopes}),
            ))?;
            Ok((token, at))
        })
        .map_err(store_error)?;
    let closed = state
        .hub
        .close_device_sessions(&device_id, Some(&role), "device token rotated");
    state.deferred.forget(&device_id, Some(&role));
    info!(device = %device_id, role = %role, closed, "device token rotated");
    let in_band = caller.device_id.as_deref() == Some(device_id.as_str());
    let mut result = json!({"deviceId": device_id, "role": role});
    if in_band {
        result["token"] = json!(token.expose());
    }
    result["scopes"] = json!(token_scopes);
    result["rotatedAtMs"] = json!(rotated_at);
    result["tokenDelivery"] = json!(if in_band {
        "in-band"
    } else {
        "withheld-cross-device"
    });
    Ok(result)
}

pub fn token_revoke(
    state: &GatewayState,
    caller: &Caller,
    params: Value,
) -> Result<Value, ErrorShape> {
    let device_id = str_param(&params, "deviceId").to_string();
    let role = str_param(&params, "role").to_string();
    let denied = |reason: &str| {
        warn!(device = %device_id, role = %role, reason, "device token revocation denied");
        invalid("device token revocation denied")
    };
    if denies_cross_device(caller, &device_id) {
        return Err(denied("device-ownership-mismatch"));
    }
    if role != "operator" && !is_admin(caller) {
        return Err(denied("role-management-requires-admin"));
    }
    let Some(mut entry) = state.store.role_token(&device_id, &role) else {
        return Err(denied("unknown-device-or-role"));
    };
    let now = now_ms();
    entry.revoked_at_ms = Some(now);
    commit(
        state,
        caller,
        "token.revoked",
        &device_id,
        json!({"role": role}),
        |tx| {
            tx.delete_token_hashes(&device_id, &role)?;
            tx.put_role_token(&entry)?;
            Ok(())
        },
    )?;
    let closed = state
        .hub
        .close_device_sessions(&device_id, Some(&role), "device token revoked");
    state.deferred.forget(&device_id, Some(&role));
    info!(device = %device_id, role = %role, closed, "device token revoked");
    Ok(json!({"deviceId": device_id, "role": role, "revokedAtMs": now}))
}

/// An integer the params schema accepted (`Schema::Int { min: 0 }`: JSON
/// integers beyond `i64`, and integral floats such as `1e20`, pass it),
/// clamped to `i64::MAX`, the largest value the store compares. Without the
/// clamp such a value was ignored (a float) or reached SQLite as an
/// out-of-range error reported as a retryable "store unavailable".
fn int_param(value: &Value) -> Option<u64> {
    let n = value
        .as_u64()
        // Saturating: the schema has checked the float is integral and >= 0.
        .or_else(|| value.as_f64().map(|f| f as u64))?;
    Some(n.min(i64::MAX as u64))
}

pub fn audit_list(state: &GatewayState, _: &Caller, params: Value) -> Result<Value, ErrorShape> {
    // Rows batched for the next flush are part of the log: write them first.
    state.flush_deferred();
    let u64_param = |k: &str| params.get(k).and_then(int_param);
    let query = AuditQuery {
        action: params
            .get("action")
            .and_then(Value::as_str)
            .map(str::to_owned),
        device_id: params
            .get("deviceId")
            .and_then(Value::as_str)
            .map(str::to_owned),
        since_ms: u64_param("sinceMs"),
        until_ms: u64_param("untilMs"),
        after_seq: u64_param("cursor"),
        limit: u64_param("limit").unwrap_or(100).min(1000) as usize,
    };
    let page = state.store.audit_list(&query).map_err(store_error)?;
    let entries: Vec<Value> = page
        .rows
        .iter()
        .map(|r| {
            json!({
                "seq": r.seq,
                "ts": r.ts_ms,
                "action": r.action,
                "actor": r.actor,
                "deviceId": r.device_id,
                "details": r.details,
                "hash": r.hash,
            })
        })
        .collect();
    Ok(json!({"entries": entries, "nextCursor": page.next_cursor}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthConfig, AuthMode, GatewayConfig};

    /// Found by the rpc_params fuzz target: a cursor or time bound beyond
    /// i64 (valid for the params schema) was answered UNAVAILABLE "gateway
    /// store unavailable; retry shortly", and an integral float was ignored.
    #[test]
    fn audit_list_clamps_out_of_range_integers() {
        let dir = tempfile::tempdir().unwrap();
        let config =
            GatewayConfig::loopback(dir.path(), AuthConfig::new(AuthMode::None, None, None));
        let store = clawgate_store::Store::open(&dir.path().join("db.sqlite")).unwrap();
        let state = GatewayState::new(config, Default::default(), std::sync::Arc::new(store));
        let caller = Caller {
            role: clawgate_protocol::connect::Role::Operator,
            scopes: vec![scopes::ADMIN.into()],
            device_id: None,
            conn_id: "c".into(),
            ip: [127, 0, 0, 1].into(),
        };
        state
            .store
            .transact(|tx| {
                tx.append_audit(&audit::record("test.row", json!({}), None, json!({})))
                    .map(|_| ())
            })
            .unwrap();
        let list = |params: Value| {
            let (_, result) = crate::methods::dispatch(&state, &caller, "audit.list", Some(params));
            result.map_err(|e| format!("{e:?}"))
        };
        let entries = |v: Value| v["entries"].as_array().unwrap().len();
        let huge = json!(18446744073709551615u64);
        assert_eq!(entries(list(json!({})).unwrap()), 1);
        assert_eq!(entries(list(json!({"cursor": huge})).unwrap()), 0);
        assert_eq!(entries(list(json!({"sinceMs": huge})).unwrap()), 0);
        assert_eq!(entries(list(json!({"untilMs": huge})).unwrap()), 1);
        assert_eq!(entries(list(json!({"sinceMs": 1e20})).unwrap()), 0);
        assert_eq!(entries(list(json!({"limit": 1e20})).unwrap()), 1);
    }
}
