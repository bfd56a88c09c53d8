//! `passkey.register.begin|finish`, `passkey.list`, `passkey.remove`
//! (clawgate's own methods, `operator.pairing`): passkeys that sign a
//! browser in as an operator (docs/passkeys.md).
//!
//! Registration runs in an operator's browser session: the relying party
//! is the host of the connection's `Origin` (checked at connect), the
//! scopes a passkey grants are at most the registering session's own, and
//! only the session that began a ceremony may finish it. Lists carry no
//! key material.

use clawgate_protocol::frames::{ErrorShape, error_code};
use clawgate_protocol::schema::{NON_EMPTY, Prop, Schema};
use clawgate_protocol::scopes;
use clawgate_protocol::wire::{AuditAction, PasskeyList, PasskeyRemoved};
use clawgate_store::Passkey;
use serde_json::{Value, json};
use tracing::info;

use crate::auth::passkey::{self, MAX_LABEL_CHARS, Party, Refused};
use crate::rpc::common::{asked_scopes, invalid, store_error, str_param};
use crate::session::{Caller, now_ms};
use crate::state::passkeys::{Full, RegistrationCeremony};
use crate::state::{GatewayState, audit};
use crate::views;

pub static BEGIN_PARAMS: Schema = Schema::Object(&[
    Prop::required(
        "label",
        Schema::Str {
            min: 1,
            max: Some(MAX_LABEL_CHARS),
        },
    ),
    Prop::optional("scopes", Schema::Array(&NON_EMPTY)),
]);
pub static FINISH_PARAMS: Schema =
    Schema::Object(&[Prop::required("credential", Schema::Record(&Schema::Any))]);
pub static REMOVE_PARAMS: Schema = Schema::Object(&[Prop::required(
    "id",
    Schema::Str {
        min: 1,
        max: Some(1024),
    },
)]);

/// The relying party of the caller's browser, or why there is none.
fn party(state: &GatewayState, caller: &Caller, stage: &str) -> Result<Party, ErrorShape> {
    let Some(origin) = &caller.origin else {
        return Err(invalid(
            "passkeys are registered from the Control UI in a browser (this connection has no Origin)",
        ));
    };
    Party::of_origin(origin).map_err(|why| refuse(state, caller, why, stage))
}

/// The scopes a new passkey grants: the asked ones (deduplicated), or the
/// caller's own operator scopes; never beyond the caller's.
fn granted(caller: &Caller, params: &Value) -> Result<Vec<String>, ErrorShape> {
    let scopes = match asked_scopes(params) {
        Some(s) => s,
        None => caller
            .scopes
            .iter()
            .filter(|s| scopes::is_operator_scope(s))
            .cloned()
            .collect(),
    };
    if scopes.is_empty() {
        return Err(invalid("a passkey must grant at least one operator scope"));
    }
    if let Some(bad) = scopes.iter().find(|s| !scopes::is_operator_scope(s)) {
        return Err(invalid(&format!(
            "unknown operator scope {bad:?}; known: {}",
            scopes::OPERATOR_SCOPES.join(", ")
        )));
    }
    if let Some(beyond) = scopes::first_uncovered(&caller.scopes, &scopes) {
        return Err(ErrorShape::new(
            error_code::FORBIDDEN,
            format!("a passkey cannot grant {beyond}, which this session does not hold"),
        )
        .with_details(
            json!({"code": "PASSKEY_REFUSED", "reason": "passkey_scopes_exceed_caller"}),
        ));
    }
    Ok(scopes)
}

fn refuse(state: &GatewayState, caller: &Caller, why: Refused, stage: &str) -> ErrorShape {
    info!(conn = %caller.conn_id, reason = why.reason(), "passkey registration refused");
    state.audit_passkey_refusal(
        why.reason(),
        audit::caller_actor(caller),
        json!({"stage": stage}),
    );
    why.error()
}

pub fn register_begin(
    state: &GatewayState,
    caller: &Caller,
    params: Value,
) -> Result<Value, ErrorShape> {
    let Some(label) = passkey::label(str_param(&params, "label")) else {
        return Err(invalid(
            "label must be 1 to 64 characters without control characters",
        ));
    };
    let scopes = granted(caller, &params)?;
    let party = party(state, caller, "register.begin")?;
    let start = passkey::begin_registration(&party, &label).map_err(|why| match why {
        Refused::Malformed => invalid(
            "this label cannot be used as a passkey name; use letters, digits, spaces and punctuation",
        ),
        why => refuse(state, caller, why, "register.begin"),
    })?;
    let now = now_ms();
    let expires_at_ms = now + passkey::CEREMONY_TTL_MS;
    let ceremony = RegistrationCeremony {
        server: start.server,
        rp_id: party.rp_id,
        origin: party.origin,
        label,
        scopes,
        conn_id: caller.conn_id.clone(),
        created_by: Some(
            caller
                .device_id
                .clone()
                .unwrap_or_else(|| "shared-secret".into()),
        ),
        expires_at_ms,
    };
    state
        .passkeys
        .begin_registration(start.challenge, ceremony, now)
        .map_err(|full| {
            let mut e = ErrorShape::new(
                error_code::UNAVAILABLE,
                match full {
                    Full::Yours => "this session has too many passkey registrations in progress; finish or wait two minutes",
                    Full::Everyone => "too many passkey registrations in progress; retry shortly",
                },
            );
            e.retryable = Some(true);
            e.retry_after_ms = Some(passkey::CEREMONY_TTL_MS);
            e
        })?;
    Ok(json!({"publicKey": start.options, "expiresAtMs": expires_at_ms}))
}

pub fn register_finish(
    state: &GatewayState,
    caller: &Caller,
    params: Value,
) -> Result<Value, ErrorShape> {
    let credential = params.get("credential").cloned().unwrap_or(Value::Null);
    let (registration, challenge) = passkey::parse_registration(&credential)
        .map_err(|why| refuse(state, caller, why, "register.finish"))?;
    let now = now_ms();
    let Some(ceremony) = state
        .passkeys
        .take_registration(challenge, &caller.conn_id, now)
    else {
        return Err(refuse(
            state,
            caller,
            Refused::ChallengeUnknown,
            "register.finish",
        ));
    };
    let party = party(state, caller, "register.finish")?;
    if party.origin != ceremony.origin || party.rp_id != ceremony.rp_id {
        return Err(refuse(state, caller, Refused::Origin, "register.finish"));
    }
    let new = passkey::finish_registration(ceremony.server, &party, &registration)
        .map_err(|why| refuse(state, caller, why, "register.finish"))?;
    let record = Passkey {
        credential_id: new.credential_id,
        user_handle: new.user_handle,
        label: ceremony.label,
        rp_id: ceremony.rp_id,
        scopes: ceremony.scopes,
        public_key: new.public_key,
        state: new.state,
        sign_count: new.sign_count,
        created_by: ceremony.created_by,
        created_at_ms: now,
        last_used_at_ms: None,
        flagged_at_ms: None,
        flagged_reason: None,
    };
    let inserted = state
        .store
        .transact(|tx| {
            if tx.passkey(&record.credential_id)?.is_some() {
                return Ok(false);
            }
            tx.insert_passkey(&record)?;
            tx.append_audit(&audit::record(
                AuditAction::PasskeyRegistered,
                audit::caller_actor(caller),
                None,
                json!({
                    "passkeyId": record.credential_id,
                    "label": record.label,
                    "scopes": record.scopes,
                    "rpId": record.rp_id,
                }),
            ))?;
            Ok(true)
        })
        .map_err(store_error)?;
    if !inserted {
        return Err(invalid("this passkey is already registered"));
    }
    info!(passkey = %record.credential_id, label = %record.label, "passkey registered");
    Ok(json!({"passkey": views::passkey(&record)}))
}

pub fn list(state: &GatewayState, _caller: &Caller, _params: Value) -> Result<Value, ErrorShape> {
    let passkeys = state.store.passkeys().map_err(store_error)?;
    let list = PasskeyList {
        passkeys: passkeys.iter().map(views::passkey).collect(),
    };
    Ok(views::json(&list))
}

pub fn remove(state: &GatewayState, caller: &Caller, params: Value) -> Result<Value, ErrorShape> {
    let id = str_param(&params, "id").to_string();
    let removed = state
        .store
        .transact(|tx| {
            let Some(found) = tx.passkey(&id)? else {
                return Ok(false);
            };
            tx.delete_passkey(&id)?;
            tx.append_audit(&audit::record(
                AuditAction::PasskeyRemoved,
                audit::caller_actor(caller),
                None,
                json!({"passkeyId": id, "label": found.label, "scopes": found.scopes}),
            ))?;
            Ok(true)
        })
        .map_err(store_error)?;
    if !removed {
        return Err(invalid(&format!(
            "no passkey has id {id:?}; list them with: clawgate passkeys list"
        )));
    }
    info!(passkey = %id, "passkey removed");
    Ok(views::json(&PasskeyRemoved { removed: true, id }))
}
