//! What every method family shares: param access, the store error, one
//! transaction with its audit row, and the device-ownership rules.

use clawgate_protocol::frames::ErrorShape;
use clawgate_protocol::wire::AuditAction;
use clawgate_store::{StoreError, Tx};
use serde_json::Value;
use tracing::warn;

use crate::session::Caller;
use crate::state::{GatewayState, audit};

/// The store could not answer; the caller may retry shortly.
pub(crate) fn store_error(err: StoreError) -> ErrorShape {
    warn!(%err, "store operation failed");
    match &err {
        StoreError::Unreachable { target, .. } => {
            clawgate_protocol::catalogue::registry_unreachable(target)
        }
        _ => clawgate_protocol::catalogue::store_unavailable(),
    }
}

/// Applies `change` and its audit row in one transaction.
pub(crate) fn commit(
    state: &GatewayState,
    caller: &Caller,
    action: AuditAction,
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

/// `INVALID_REQUEST` with `message`.
pub(crate) fn invalid(message: &str) -> ErrorShape {
    ErrorShape::invalid_request(message)
}

/// A string param, trimmed; empty when absent (the schema has checked it).
pub(crate) fn str_param<'a>(params: &'a Value, key: &str) -> &'a str {
    params
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or("")
}

/// The `scopes` array param, trimmed and deduplicated in order; `None`
/// when absent (the schema has checked the items are strings).
pub(crate) fn asked_scopes(params: &Value) -> Option<Vec<String>> {
    let items = params.get("scopes")?.as_array()?;
    let mut out: Vec<String> = Vec::new();
    for s in items.iter().filter_map(Value::as_str).map(str::trim) {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    Some(out)
}

/// A non-admin device-token session acting on another device.
pub(crate) fn denies_cross_device(caller: &Caller, target: &str) -> bool {
    caller
        .device_id
        .as_deref()
        .is_some_and(|own| own != target && !caller.is_admin())
}

/// Any role but `operator` (only admins manage those).
pub(crate) fn has_non_operator_role(roles: &[String]) -> bool {
    roles.iter().any(|r| r != "operator")
}
