//! Requests of authenticated sessions: the method table, the role gate,
//! scope checks, params validation, then the handler.
//!
//! - `system.rs`: health, status, last-heartbeat, system-presence;
//! - `devices.rs`: device.pair.*;
//! - `tokens.rs`: device.token.*;
//! - `audit.rs`: audit.list;
//! - `setup_codes.rs`: device.setup.create|list|revoke (setup codes);
//! - `passkeys.rs`: passkey.register.begin|finish, passkey.list|remove;
//! - `common.rs`: what the families share.
//!
//! New method families plug into [`METHODS`]; a method without a local
//! handler is "unknown" here (a relay can serve it later).

mod audit;
mod common;
mod devices;
mod passkeys;
mod setup_codes;
pub mod system;
mod tokens;

use std::time::Instant;

use clawgate_protocol::catalogue;
use clawgate_protocol::connect::Role;
use clawgate_protocol::frames::ErrorShape;
use clawgate_protocol::schema::{self, EMPTY_OBJECT, Schema};
use clawgate_protocol::scopes::{self, MethodAccess};
use serde_json::{Value, json};

pub use crate::session::Caller;
use crate::state::GatewayState;

/// A method's implementation.
pub enum Handler {
    /// Returns its result as a JSON value.
    Value(fn(&GatewayState, &Caller, Value) -> Result<Value, ErrorShape>),
    /// Returns its result serialized already (a hot method that writes
    /// its text without building a value).
    Reply(fn(&GatewayState, &Caller, Value) -> Result<Reply, ErrorShape>),
}

/// A method's result.
#[derive(Debug)]
pub enum Reply {
    Value(Value),
    /// One JSON value as serde_json writes it.
    Json(String),
}

impl Reply {
    /// The response frame to request `id`.
    pub fn response_json(self, id: &str) -> String {
        match self {
            Reply::Value(v) => clawgate_protocol::frames::Response::ok(id, v).to_json(),
            Reply::Json(text) => clawgate_protocol::frames::Response::ok_text(id, &text),
        }
    }

    /// The result as a JSON value.
    pub fn into_value(self) -> Value {
        match self {
            Reply::Value(v) => v,
            Reply::Json(text) => serde_json::from_str(&text).expect("replies are JSON"),
        }
    }
}

/// A locally served method.
pub struct Method {
    pub name: &'static str,
    pub params: &'static Schema,
    pub handler: Handler,
}

/// Every method this gateway serves.
pub const METHODS: &[Method] = &[
    Method {
        name: "health",
        params: &schema::Schema::Any,
        handler: Handler::Reply(system::health),
    },
    Method {
        name: "status",
        params: &schema::Schema::Any,
        handler: Handler::Value(system::status),
    },
    Method {
        name: "last-heartbeat",
        params: &schema::Schema::Any,
        handler: Handler::Value(system::last_heartbeat),
    },
    Method {
        name: "system-presence",
        params: &schema::Schema::Any,
        handler: Handler::Value(system::system_presence),
    },
    Method {
        name: "device.pair.list",
        params: &EMPTY_OBJECT,
        handler: Handler::Value(devices::pair_list),
    },
    Method {
        name: "device.pair.approve",
        params: &clawgate_protocol::wire::PAIR_DECISION_SCHEMA,
        handler: Handler::Value(devices::pair_approve),
    },
    Method {
        name: "device.pair.reject",
        params: &clawgate_protocol::wire::PAIR_DECISION_SCHEMA,
        handler: Handler::Value(devices::pair_reject),
    },
    Method {
        name: "device.pair.remove",
        params: &devices::DEVICE_ID_PARAMS,
        handler: Handler::Value(devices::pair_remove),
    },
    Method {
        name: "device.pair.rename",
        params: &devices::RENAME_PARAMS,
        handler: Handler::Value(devices::pair_rename),
    },
    Method {
        name: "device.token.rotate",
        params: &tokens::ROTATE_PARAMS,
        handler: Handler::Value(tokens::token_rotate),
    },
    Method {
        name: "device.token.revoke",
        params: &tokens::REVOKE_PARAMS,
        handler: Handler::Value(tokens::token_revoke),
    },
    Method {
        name: "device.setup.create",
        params: &setup_codes::CREATE_PARAMS,
        handler: Handler::Value(setup_codes::setup_create),
    },
    Method {
        name: "device.setup.list",
        params: &EMPTY_OBJECT,
        handler: Handler::Value(setup_codes::setup_list),
    },
    Method {
        name: "device.setup.revoke",
        params: &setup_codes::REVOKE_PARAMS,
        handler: Handler::Value(setup_codes::setup_revoke),
    },
    Method {
        name: "passkey.register.begin",
        params: &passkeys::BEGIN_PARAMS,
        handler: Handler::Value(passkeys::register_begin),
    },
    Method {
        name: "passkey.register.finish",
        params: &passkeys::FINISH_PARAMS,
        handler: Handler::Value(passkeys::register_finish),
    },
    Method {
        name: "passkey.list",
        params: &EMPTY_OBJECT,
        handler: Handler::Value(passkeys::list),
    },
    Method {
        name: "passkey.remove",
        params: &passkeys::REMOVE_PARAMS,
        handler: Handler::Value(passkeys::remove),
    },
    Method {
        name: "audit.list",
        params: &audit::AUDIT_LIST_PARAMS,
        handler: Handler::Value(audit::audit_list),
    },
];

/// Methods that decide something in the device registry: refused while a
/// replica's shared registry is unreachable or not caught up (fail closed).
const REGISTRY_DECISIONS: &[&str] = &[
    "device.pair.approve",
    "device.pair.reject",
    "device.pair.remove",
    "device.pair.rename",
    "device.token.rotate",
    "device.token.revoke",
    "device.setup.create",
    "device.setup.revoke",
    "passkey.register.begin",
    "passkey.register.finish",
    "passkey.remove",
];

/// The names of [`METHODS`], in order: `hello-ok.features.methods`, and
/// the metrics' per-method slots (indexed by position).
pub fn method_names() -> Vec<&'static str> {
    METHODS.iter().map(|m| m.name).collect()
}

pub fn lookup(name: &str) -> Option<(usize, &'static Method)> {
    METHODS.iter().enumerate().find(|(_, m)| m.name == name)
}

/// Why a request was refused before reaching a handler.
#[derive(Debug)]
pub enum Refusal {
    /// The role may not call this method (counts toward the close-after-10 rule).
    Role(ErrorShape),
    Other(ErrorShape),
}

/// Authorizes and runs one request. Returns the method's static name for
/// metrics ("unknown" for anything not served) and the outcome.
pub fn dispatch(
    state: &GatewayState,
    caller: &Caller,
    method: &str,
    params: Option<Value>,
) -> (&'static str, Result<Reply, Refusal>) {
    let started = Instant::now();
    let found = lookup(method);
    let (index, label) = found.map_or((METHODS.len(), "unknown"), |(i, m)| (i, m.name));
    let result = authorize(caller, method).and_then(|()| {
        let Some((_, m)) = found else {
            return Err(Refusal::Other(ErrorShape::invalid_request(format!(
                "unknown method: {method}"
            ))));
        };
        let params = params.unwrap_or_else(|| json!({}));
        if let Some(problems) = schema::validate(&params, m.params) {
            return Err(Refusal::Other(ErrorShape::invalid_request(format!(
                "invalid {} params: {problems}",
                m.name
            ))));
        }
        if REGISTRY_DECISIONS.contains(&m.name)
            && let Some(refusal) = state.registry.refusal()
        {
            return Err(Refusal::Other(refusal));
        }
        // Replicas: device methods answer from the registry as another
        // replica left it a moment ago (a request made there, a device
        // approved there), not from this replica's cache as it last saw it.
        // A decision reads the change log first (one query; operators act
        // rarely); a listing only when this replica was told it is behind.
        if m.name.starts_with("device.")
            && (state.store.behind()
                || (REGISTRY_DECISIONS.contains(&m.name) && state.store.replica_id().is_some()))
        {
            let _ = state.store.refresh();
        }
        match m.handler {
            Handler::Value(f) => f(state, caller, params).map(Reply::Value),
            Handler::Reply(f) => f(state, caller, params),
        }
        .map_err(Refusal::Other)
    });
    state
        .metrics
        .request(index, result.is_ok(), started.elapsed());
    (label, result)
}

fn authorize(caller: &Caller, method: &str) -> Result<(), Refusal> {
    let role_error = || {
        Refusal::Role(ErrorShape::invalid_request(format!(
            "unauthorized role: {}",
            caller.role
        )))
    };
    match scopes::method_access(method) {
        MethodAccess::Anyone => Ok(()),
        MethodAccess::NodeOnly if caller.role == Role::Node => Ok(()),
        MethodAccess::NodeOnly => Err(role_error()),
        MethodAccess::Operator(_) if caller.role != Role::Operator => Err(role_error()),
        MethodAccess::Operator(scope) => {
            if scopes::satisfies(&caller.scopes, scope) {
                Ok(())
            } else {
                Err(Refusal::Other(catalogue::missing_scope(scope)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthConfig, AuthMode, GatewayConfig};
    use crate::state::audit as audit_record;
    use clawgate_protocol::scopes;
    use clawgate_protocol::wire::AuditAction;

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
            origin: None,
        };
        state
            .store
            .transact(|tx| {
                tx.append_audit(&audit_record::record(
                    AuditAction::Other("test.row".into()),
                    json!({}),
                    None,
                    json!({}),
                ))
                .map(|_| ())
            })
            .unwrap();
        let list = |params: Value| {
            let (_, result) = dispatch(&state, &caller, "audit.list", Some(params));
            result.map(Reply::into_value).map_err(|e| format!("{e:?}"))
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
