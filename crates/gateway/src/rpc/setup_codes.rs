//! `device.setup.create`, `device.setup.list`, `device.setup.revoke`
//! (clawgate's names; the reference's `device.pair.setupCode` takes its own
//! access profiles and publishes no list or revoke): setup codes for phones
//! and other devices, admin only.
//!
//! A created code is a single-use bootstrap token (32 random bytes,
//! base64url, stored only as its SHA-256) bound to one role and its scopes,
//! wrapped with the gateway URL the device should dial in the reference's
//! setup-code format (`protocol::setup_code`). The reply carries the code
//! once, with its QR matrix for the Control UI; lists show the non-secret
//! `setupId`, label, binding and state, never the code.

use clawgate_protocol::frames::ErrorShape;
use clawgate_protocol::schema::{NON_EMPTY, Prop, Schema};
use clawgate_protocol::setup_code::{self, SetupPayload};
use clawgate_protocol::wire::AuditAction;
use clawgate_protocol::{Secret, scopes};
use clawgate_store::{SetupCode, hash_token};
use serde_json::{Value, json};
use tracing::info;

use crate::rpc::common::{asked_scopes, invalid, store_error, str_param};
use crate::session::{Caller, now_ms};
use crate::state::{GatewayState, audit};

/// Default lifetime, as the reference's setup codes (10 minutes).
pub const DEFAULT_TTL_MS: u64 = 10 * 60 * 1000;
const MIN_TTL_MS: u64 = 60 * 1000;
const MAX_TTL_MS: u64 = 24 * 60 * 60 * 1000;
const MAX_LABEL_CHARS: usize = 64;
const MAX_URL_CHARS: usize = 512;

static ROLES: [&str; 2] = ["operator", "node"];
pub static CREATE_PARAMS: Schema = Schema::Object(&[
    Prop::required("role", Schema::Enum(&ROLES)),
    Prop::optional("scopes", Schema::Array(&NON_EMPTY)),
    Prop::optional("ttlMs", Schema::Int { min: 0 }),
    Prop::optional(
        "label",
        Schema::Str {
            min: 0,
            max: Some(MAX_LABEL_CHARS),
        },
    ),
    Prop::required(
        "gatewayUrl",
        Schema::Str {
            min: 1,
            max: Some(MAX_URL_CHARS),
        },
    ),
]);
pub static REVOKE_PARAMS: Schema = Schema::Object(&[Prop::required("setupId", NON_EMPTY)]);

/// The scopes a code may bind for `role`, deduplicated, or why not.
fn bound_scopes(caller: &Caller, role: &str, params: &Value) -> Result<Vec<String>, ErrorShape> {
    let out = asked_scopes(params).unwrap_or_default();
    if role != "operator" {
        if !out.is_empty() {
            return Err(invalid("a node setup code binds no scopes (omit scopes)"));
        }
        return Ok(out);
    }
    if let Some(bad) = out.iter().find(|s| !scopes::is_operator_scope(s)) {
        return Err(invalid(&format!(
            "unknown operator scope {bad:?}; known: {}",
            scopes::OPERATOR_SCOPES.join(", ")
        )));
    }
    if let Some(beyond) = out.iter().find(|s| !scopes::satisfies(&caller.scopes, s)) {
        return Err(invalid(&format!(
            "a setup code cannot grant {beyond}, which this session does not hold"
        )));
    }
    Ok(out)
}

/// The TLS certificate fingerprint a `wss://` code carries (64 lowercase
/// hex), so a device can pin a self-signed gateway.
fn tls_fingerprint(state: &GatewayState, url: &str) -> Option<String> {
    if !url.starts_with("wss://") {
        return None;
    }
    let pin = state.tls()?.info().certificate_pin();
    let hex: String = pin
        .trim_start_matches("sha256:")
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    clawgate_protocol::hex::is_lower_hex64(&hex).then_some(hex)
}

pub fn setup_create(
    state: &GatewayState,
    caller: &Caller,
    params: Value,
) -> Result<Value, ErrorShape> {
    let role = str_param(&params, "role").to_string();
    let scopes = bound_scopes(caller, &role, &params)?;
    // In the reference's normal form: the OpenClaw apps refuse any other.
    let Some(url) = setup_code::normalize_gateway_url(str_param(&params, "gatewayUrl")) else {
        return Err(invalid(
            "gatewayUrl must be the ws:// or wss:// URL the device reaches this gateway at",
        ));
    };
    let ttl_ms = match params.get("ttlMs").and_then(Value::as_u64) {
        None => DEFAULT_TTL_MS,
        Some(t) if (MIN_TTL_MS..=MAX_TTL_MS).contains(&t) => t,
        Some(_) => {
            return Err(invalid(
                "ttlMs must lie between 60000 (1 minute) and 86400000 (24 hours)",
            ));
        }
    };
    let label = Some(str_param(&params, "label").to_string()).filter(|l| !l.is_empty());
    let now = now_ms();
    let token = Secret::generate();
    let code = SetupCode {
        setup_id: uuid::Uuid::new_v4().to_string(),
        token_hash: hash_token(token.expose()),
        role: role.clone(),
        scopes: scopes.clone(),
        label: label.clone(),
        created_by: Some(
            caller
                .device_id
                .clone()
                .unwrap_or_else(|| "shared-secret".into()),
        ),
        created_at_ms: now,
        expires_at_ms: now + ttl_ms,
        used_at_ms: None,
        used_by_device_id: None,
        revoked_at_ms: None,
    };
    state
        .store
        .transact(|tx| {
            tx.insert_setup_code(&code)?;
            tx.append_audit(&audit::record(
                AuditAction::SetupCodeCreated,
                audit::caller_actor(caller),
                None,
                json!({
                    "setupId": code.setup_id,
                    "role": role,
                    "scopes": scopes,
                    "label": label,
                    "expiresAtMs": code.expires_at_ms,
                    "gatewayUrl": url,
                }),
            ))?;
            Ok(())
        })
        .map_err(store_error)?;
    let payload = SetupPayload {
        url: url.clone(),
        bootstrap_token: token,
        expires_at_ms: Some(code.expires_at_ms),
        tls_fingerprint: tls_fingerprint(state, &url),
    };
    let text = payload.encode();
    info!(setup = %code.setup_id, role = %role, "setup code created");
    Ok(json!({
        "setupId": code.setup_id,
        "setupCode": text,
        "gatewayUrl": url,
        "role": role,
        "scopes": scopes,
        "label": label,
        "createdAtMs": code.created_at_ms,
        "expiresAtMs": code.expires_at_ms,
        "qr": setup_code::qr_rows(&text),
    }))
}

/// A stored code as lists show it (no secret in it).
fn view(c: &SetupCode, now: u64) -> Value {
    json!({
        "setupId": c.setup_id,
        "role": c.role,
        "scopes": c.scopes,
        "label": c.label,
        "state": c.state(now),
        "createdBy": c.created_by,
        "createdAtMs": c.created_at_ms,
        "expiresAtMs": c.expires_at_ms,
        "usedAtMs": c.used_at_ms,
        "usedByDeviceId": c.used_by_device_id,
        "revokedAtMs": c.revoked_at_ms,
    })
}

pub fn setup_list(state: &GatewayState, _: &Caller, _: Value) -> Result<Value, ErrorShape> {
    let now = now_ms();
    let codes = state.store.setup_codes().map_err(store_error)?;
    Ok(json!({"setupCodes": codes.iter().map(|c| view(c, now)).collect::<Vec<_>>()}))
}

pub fn setup_revoke(
    state: &GatewayState,
    caller: &Caller,
    params: Value,
) -> Result<Value, ErrorShape> {
    let setup_id = str_param(&params, "setupId").to_string();
    let now = now_ms();
    let revoked = state
        .store
        .transact(|tx| {
            let Some(code) = tx.setup_code(&setup_id)? else {
                return Ok(Err("unknown setupId"));
            };
            if !tx.revoke_setup_code(&setup_id, now)? {
                return Ok(Err(match code.state(now) {
                    "used" => "setup code already used (remove the device it paired with: clawgate devices remove <deviceId>)",
                    "revoked" => "setup code already revoked",
                    _ => "setup code already expired",
                }));
            }
            tx.append_audit(&audit::record(
                AuditAction::SetupCodeRevoked,
                audit::caller_actor(caller),
                None,
                json!({"setupId": setup_id, "role": code.role, "label": code.label}),
            ))?;
            Ok(Ok(code))
        })
        .map_err(store_error)?;
    match revoked {
        Ok(code) => {
            info!(setup = %setup_id, "setup code revoked");
            let mut v = view(&code, now);
            v["state"] = json!("revoked");
            v["revokedAtMs"] = json!(now);
            Ok(v)
        }
        Err(why) => Err(invalid(why)),
    }
}
