//! `device.token.rotate` and `device.token.revoke`.
//!
//! A caller never mints or keeps scopes it does not hold itself; only
//! admins manage non-operator roles; a non-admin device-token session
//! manages only its own device. A rotation or revocation closes the
//! sessions of that (device, role) with 4001 and says which it was. A
//! revoked role is not brought back by a rotation: it takes a new approval
//! (the device's next connect for it is a role upgrade).

use clawgate_protocol::frames::ErrorShape;
use clawgate_protocol::schema::{NON_EMPTY, Prop, Schema};
use clawgate_protocol::scopes;
use clawgate_protocol::wire::AuditAction;
use clawgate_protocol::wire::{TokenRevoked, TokenRotated};
use clawgate_store::{Device, RoleToken};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::auth::tokens;
use crate::rpc::common::{commit, denies_cross_device, invalid, store_error, str_param};
use crate::session::{Caller, now_ms};
use crate::state::{GatewayState, audit};
use crate::views;

pub static ROTATE_PARAMS: Schema = Schema::Object(&[
    Prop::required("deviceId", NON_EMPTY),
    Prop::required("role", NON_EMPTY),
    Prop::optional("scopes", Schema::Array(&NON_EMPTY)),
]);
pub static REVOKE_PARAMS: Schema = Schema::Object(&[
    Prop::required("deviceId", NON_EMPTY),
    Prop::required("role", NON_EMPTY),
]);

/// A refused rotation or revocation (`what`): the reason goes to the log,
/// the caller gets the reference's one message.
fn denied(what: &str, device_id: &str, role: &str, reason: &str) -> ErrorShape {
    warn!(device = %device_id, role = %role, reason, "device token {what} denied");
    invalid(&format!("device token {what} denied"))
}

/// The `deviceId` and `role` params.
fn device_and_role(params: &Value) -> (String, String) {
    (
        str_param(params, "deviceId").to_string(),
        str_param(params, "role").to_string(),
    )
}

/// Whether `caller` may manage the tokens of (device, role) at all: its
/// own device unless it is an admin, and only admins manage roles other
/// than `operator`.
fn may_manage(caller: &Caller, device_id: &str, role: &str) -> Result<(), &'static str> {
    if denies_cross_device(caller, device_id) {
        return Err("device-ownership-mismatch");
    }
    if role != "operator" && !caller.is_admin() {
        return Err("role-management-requires-admin");
    }
    Ok(())
}

pub fn token_rotate(
    state: &GatewayState,
    caller: &Caller,
    params: Value,
) -> Result<Value, ErrorShape> {
    let (device_id, role) = device_and_role(&params);
    let (device, current, requested) = rotation_allowed(state, caller, &device_id, &role, &params)
        .map_err(|reason| denied("rotation", &device_id, &role, reason))?;
    let now = now_ms();
    let token_scopes = tokens::token_scopes(&role, &requested, &device.scopes);
    let (token, rotated_at) = state
        .store
        .transact(|tx| {
            tx.delete_token_hashes(&device_id, &role)?;
            // The entry as it will be after the rotation; `mint` writes it.
            let mut base = current.clone();
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
            // Other replicas close the device's sessions of this role too
            // (a rotation is not told from a broader-scope re-issue by the
            // rows alone, so it is said; in this transaction, so a crash
            // cannot lose it).
            tx.announce(json!({"kind": "close", "deviceId": device_id, "role": role,
                "reason": "device token rotated"}));
            tx.append_audit(&audit::record(
                AuditAction::TokenRotated,
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
    // The token goes back only to the device itself, over its own session.
    let in_band = caller.device_id.as_deref() == Some(device_id.as_str());
    let token = in_band.then_some(token);
    Ok(views::json(&TokenRotated::new(
        device_id,
        role,
        token,
        token_scopes,
        rotated_at,
    )))
}

/// Whether `caller` may rotate (device, role), and to which scopes: the
/// device, its live role entry and the requested scopes (the entry's own
/// when none are given), or the reason it is denied (for the log).
fn rotation_allowed(
    state: &GatewayState,
    caller: &Caller,
    device_id: &str,
    role: &str,
    params: &Value,
) -> Result<(Device, RoleToken, Vec<String>), &'static str> {
    may_manage(caller, device_id, role)?;
    let device = state.store.device(device_id);
    let current = state.store.role_token(device_id, role);
    let (Some(device), Some(current)) = (device, current) else {
        return Err("unknown-device-or-role");
    };
    if !device.roles.iter().any(|r| r == role) {
        return Err("unknown-device-or-role");
    }
    // A revoked role comes back only through a new approval, never by
    // minting a fresh token for it here.
    if current.revoked_at_ms.is_some() {
        return Err("role-revoked-requires-approval");
    }
    let requested: Vec<String> = match params.get("scopes").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        None => current.scopes.clone(),
    };
    if role != "operator" {
        return match requested.is_empty() {
            true => Ok((device, current, requested)),
            false => Err("scope-outside-approved-baseline"),
        };
    }
    if device.scopes.is_empty() && !requested.is_empty() {
        return Err("missing-approved-scope-baseline");
    }
    if !scopes::covers(&device.scopes, &requested)
        || requested.iter().any(|s| !scopes::is_operator_scope(s))
    {
        return Err("scope-outside-approved-baseline");
    }
    if !scopes::covers(&caller.scopes, &requested) {
        return Err("caller-missing-scope");
    }
    Ok((device, current, requested))
}

pub fn token_revoke(
    state: &GatewayState,
    caller: &Caller,
    params: Value,
) -> Result<Value, ErrorShape> {
    let (device_id, role) = device_and_role(&params);
    let refuse = |reason| denied("revocation", &device_id, &role, reason);
    may_manage(caller, &device_id, &role).map_err(refuse)?;
    let Some(mut entry) = state.store.role_token(&device_id, &role) else {
        return Err(refuse("unknown-device-or-role"));
    };
    let now = now_ms();
    entry.revoked_at_ms = Some(now);
    commit(
        state,
        caller,
        AuditAction::TokenRevoked,
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
    Ok(views::json(&TokenRevoked {
        device_id,
        role,
        revoked_at_ms: now,
    }))
}
