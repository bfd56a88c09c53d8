//! `device.pair.*`: list, approve, reject, remove, rename.
//!
//! Rules that hold for every handler: a caller never grants scopes it does
//! not hold itself; only admins manage non-operator roles; a non-admin
//! session that authenticated with a device token manages only its own
//! device. Every change is one store transaction with its audit row, and
//! live sessions it invalidates are closed with 4001 and a reason that
//! says what happened.

use clawgate_protocol::frames::ErrorShape;
use clawgate_protocol::schema::{NON_EMPTY, Prop, Schema};
use clawgate_protocol::scopes;
use clawgate_protocol::wire::AuditAction;
use clawgate_protocol::wire::{
    PairApproved, PairDecisionParams, PairList, PairRejected, PairRemoved, PairRenamed, PairTarget,
};
use clawgate_protocol::{catalogue, pairing_code};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::auth::{pairing, tokens};
use crate::rpc::common::{
    commit, denies_cross_device, has_non_operator_role, invalid, store_error, str_param,
};
use crate::session::{Caller, now_ms};
use crate::state::code_guesses::Miss;
use crate::state::{GatewayState, audit};
use crate::views;

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

/// Pending requests that have not expired.
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
    let own = caller.device_id.as_deref().filter(|_| !caller.is_admin());
    let pending = live_pending(state)
        .iter()
        .filter(|p| own.is_none_or(|d| p.device_id == d))
        .map(views::pending)
        .collect();
    let paired = state
        .store
        .devices()
        .iter()
        .filter(|d| own.is_none_or(|o| d.device_id == o))
        .map(|d| {
            let connected = state.hub.device_connected(&d.device_id);
            views::paired(&state.store, d, Some(connected))
        })
        .collect();
    Ok(views::json(&PairList { pending, paired }))
}

/// The request `device.pair.approve` / `device.pair.reject` names: by id
/// (`Ok(None)` when unknown, answered as the reference does), or by
/// pairing code (an unknown code is refused here: counted against the
/// connection, audited, and after too many the connection is refused code
/// lookups for a while).
fn named_request(
    state: &GatewayState,
    caller: &Caller,
    method: &str,
    params: Value,
    now: u64,
) -> Result<(String, Option<clawgate_store::PendingRequest>), ErrorShape> {
    let params: PairDecisionParams = serde_json::from_value(params)
        .map_err(|e| invalid(&format!("invalid {method} params: {e}")))?;
    let target = params
        .target()
        .map_err(|problem| invalid(&format!("invalid {method} params: {problem}")))?;
    let code = match target {
        PairTarget::RequestId(id) => {
            let pending = state.store.pending(&id);
            return Ok((id, pending));
        }
        PairTarget::Code(code) => code,
    };
    if let Some(retry_after_ms) = state.code_guesses.refused(&caller.conn_id, now) {
        return Err(catalogue::pairing_code_rate_limited(retry_after_ms));
    }
    let shown = pairing_code::normalize(&code);
    let found = shown
        .as_deref()
        .and_then(|c| state.store.pending_by_code(c))
        .filter(|p| pairing::is_live(p, now));
    if let Some(p) = found {
        return Ok((p.request_id.clone(), Some(p)));
    }
    // Never echo more than a code's worth of what was typed.
    let typed: String = shown.unwrap_or_else(|| code.chars().take(16).collect());
    let miss = state.code_guesses.record_miss(&caller.conn_id, now);
    let limited = miss == Miss::LimitReached;
    state
        .store
        .transact(|tx| {
            tx.append_audit(&audit::record(
                AuditAction::PairingCodeUnknown,
                audit::caller_actor(caller),
                None,
                json!({"pairingCode": typed, "method": method}),
            ))?;
            if limited {
                tx.append_audit(&audit::record(
                    AuditAction::PairingCodeLimited,
                    audit::caller_actor(caller),
                    None,
                    json!({"retryAfterMs": crate::state::code_guesses::WINDOW_MS}),
                ))?;
            }
            Ok(())
        })
        .map_err(store_error)?;
    warn!(conn = %caller.conn_id, method, limited, "unknown pairing code");
    Err(catalogue::pairing_code_unknown(&typed))
}

/// A request that was open when this call looked it up and was decided by
/// someone else (another operator, or another replica) before its
/// transaction ran: nothing changed.
fn already_resolved(request_id: &str) -> ErrorShape {
    invalid(&format!(
        "unknown requestId: pairing request {request_id} was already resolved by another operator; nothing changed (see clawgate devices list)"
    ))
}

pub fn pair_approve(
    state: &GatewayState,
    caller: &Caller,
    params: Value,
) -> Result<Value, ErrorShape> {
    let now = now_ms();
    let (request_id, pending) = named_request(state, caller, "device.pair.approve", params, now)?;
    let request_id = request_id.as_str();
    let pending = pending.filter(|p| pairing::is_live(p, now));
    if !caller.is_admin() {
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
                AuditAction::PairingApproved,
                audit::caller_actor(caller),
                Some(&device.device_id),
                json!({"requestId": request.request_id, "roles": request.roles, "scopes": request.scopes, "approvedVia": "owner"}),
            ))?;
            Ok(Some((request, device)))
        })
        .map_err(store_error)?;
    let Some((request, device)) = decided else {
        if state
            .store
            .pending(&request.request_id)
            .is_some_and(|p| pairing::is_live(&p, now))
        {
            // The device asked again (other scopes) between the lookup and
            // the write: approve only what was shown, so nothing now.
            return Err(invalid(&format!(
                "pairing request {} changed while it was being approved (the device asked again); nothing was approved: review it with clawgate devices list",
                request.request_id
            )));
        }
        return Err(already_resolved(&request.request_id));
    };
    info!(device = %device.device_id, request = %request.request_id, "device pairing approved");
    pairing::broadcast_resolved(state, &request.request_id, &device.device_id, "approved");
    Ok(views::json(&PairApproved {
        request_id: request.request_id,
        device: views::paired(&state.store, &device, None),
    }))
}

pub fn pair_reject(
    state: &GatewayState,
    caller: &Caller,
    params: Value,
) -> Result<Value, ErrorShape> {
    let now = now_ms();
    let (_, pending) = named_request(state, caller, "device.pair.reject", params, now)?;
    if let Some(own) = caller.device_id.as_deref().filter(|_| !caller.is_admin())
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
                AuditAction::PairingRejected,
                audit::caller_actor(caller),
                Some(&request.device_id),
                json!({"requestId": request.request_id}),
            ))?;
            Ok(true)
        })
        .map_err(store_error)?;
    if !rejected {
        return Err(already_resolved(&request.request_id));
    }
    info!(request = %request.request_id, "device pairing rejected");
    pairing::broadcast_resolved(state, &request.request_id, &request.device_id, "rejected");
    Ok(views::json(&PairRejected {
        request_id: request.request_id,
        device_id: request.device_id,
    }))
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
        && !caller.is_admin()
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
        AuditAction::DeviceRemoved,
        &device_id,
        json!({}),
        |tx| tx.delete_device(&device_id).map(|_| ()),
    )?;
    let closed = state
        .hub
        .close_device_sessions(&device_id, None, "device removed");
    state.deferred.forget(&device_id, None);
    info!(device = %device_id, closed, "device removed");
    Ok(views::json(&PairRemoved { device_id }))
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
    if caller.device_id.is_some() && !caller.is_admin() && has_non_operator_role(&device.roles) {
        return Err(invalid("device pairing rename denied"));
    }
    let previous = device.operator_label.clone();
    device.operator_label = Some(label.clone());
    commit(
        state,
        caller,
        AuditAction::DeviceRenamed,
        &device_id,
        json!({"label": label, "previousLabel": previous}),
        |tx| tx.put_device(&device).map(|_| ()),
    )?;
    state.pairing_event("device.pair.changed", json!({}));
    Ok(views::json(&PairRenamed { device_id, label }))
}
