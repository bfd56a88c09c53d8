//! `audit.list`: pages of the hash-chained audit log, newest rows
//! included (the batched ones are written first).

use clawgate_protocol::frames::ErrorShape;
use clawgate_protocol::schema::{NON_EMPTY, Prop, Schema};
use clawgate_protocol::wire::AuditList;
use clawgate_store::AuditQuery;
use serde_json::Value;

use crate::rpc::common::store_error;
use crate::session::Caller;
use crate::state::GatewayState;
use crate::views;

pub static AUDIT_LIST_PARAMS: Schema = Schema::Object(&[
    Prop::optional("action", NON_EMPTY),
    Prop::optional("deviceId", NON_EMPTY),
    Prop::optional("sinceMs", Schema::Int { min: 0 }),
    Prop::optional("untilMs", Schema::Int { min: 0 }),
    Prop::optional("cursor", Schema::Int { min: 0 }),
    Prop::optional("limit", Schema::Int { min: 1 }),
]);

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
    Ok(views::json(&AuditList {
        entries: page.rows.iter().map(views::audit_entry).collect(),
        next_cursor: page.next_cursor,
    }))
}
