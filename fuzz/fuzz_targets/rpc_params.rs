//! Every RPC's params, through the gateway's own dispatcher.
//!
//! Input: `[method, caller, params-json...]`. `method` picks an entry of
//! `methods::METHODS` (or a name the gateway does not serve), `caller` one
//! of six sessions (admin, read-only, read/write/pairing operator, two
//! device-token sessions, a node), and the rest is the `params` JSON (none
//! when empty). `methods::dispatch` runs the role gate, the scope rule, the
//! params schema and the handler against a real store holding two paired
//! devices and two pending requests (restored after each change).
//!
//! Properties: nothing panics; a refusal is a structured error with a code
//! and a message, never a store failure; a success only reaches a caller
//! whose role and scopes the method allows; a rotated token is returned
//! only to the device it belongs to.

#![no_main]

use std::sync::Arc;

use clawgate_fuzz::gateway_state;
use clawgate_gateway::{GatewayState, testkit};
use clawgate_gateway::config::AuthMode;
use clawgate_gateway::rpc::{Caller, METHODS, Refusal, dispatch};
use clawgate_protocol::connect::Role;
use clawgate_protocol::frames::error_code;
use clawgate_protocol::scopes::{self, MethodAccess};
use clawgate_store::{Device, PendingRequest, RoleToken};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Fixed identities so corpus entries keep naming the same devices.
fn key(seed: u8) -> (String, String) {
    use base64::Engine;
    let raw = ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
        .verifying_key()
        .to_bytes();
    (
        clawgate_protocol::device_auth::device_id(&raw),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw),
    )
}

fn device(seed: u8, roles: &[&str], scopes: &[&str]) -> Device {
    let (device_id, public_key) = key(seed);
    Device {
        device_id,
        public_key,
        display_name: Some(format!("fuzz device {seed}")),
        operator_label: None,
        platform: Some("linux".into()),
        device_family: None,
        client_id: Some("cli".into()),
        client_mode: Some("cli".into()),
        browser_origin: None,
        roles: roles.iter().map(|s| s.to_string()).collect(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        remote_ip: Some("192.168.1.20".into()),
        approved_via: "owner".into(),
        created_at_ms: 1_700_000_000_000,
        approved_at_ms: 1_700_000_000_000,
        last_seen_at_ms: None,
        last_seen_reason: None,
    }
}

fn pending(request_id: &str, seed: u8, role: &str, scopes: &[&str]) -> PendingRequest {
    let (device_id, public_key) = key(seed);
    let now = clawgate_gateway::session::now_ms();
    PendingRequest {
        request_id: request_id.into(),
        device_id,
        public_key,
        display_name: None,
        platform: Some("linux".into()),
        device_family: None,
        client_id: Some("cli".into()),
        client_mode: Some("cli".into()),
        browser_origin: None,
        remote_ip: Some("192.168.1.21".into()),
        role: role.into(),
        roles: vec![role.into()],
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        reason: "not-paired".into(),
        silent: false,
        is_repair: false,
        ts: now,
        refreshed_at_ms: now,
        pairing_code: None,
    }
}

const OPERATOR_SCOPES: &[&str] = &[scopes::READ, scopes::WRITE, scopes::PAIRING];

/// Paired: device 1 (operator + node), device 2 (operator). Pending:
/// `fuzz-request-op` (device 3, operator), `fuzz-request-node` (device 4, node).
fn restore_fixture(state: &GatewayState) {
    let devices = [
        device(1, &["operator", "node"], OPERATOR_SCOPES),
        device(2, &["operator"], &[scopes::READ]),
    ];
    let extra = [key(3).0, key(4).0];
    let requests = [
        pending("fuzz-request-op", 3, "operator", &[scopes::READ]),
        pending("fuzz-request-node", 4, "node", &[]),
    ];
    testkit::store(&state)
        .transact(|tx| {
            for id in &extra {
                tx.delete_device(id)?;
            }
            for d in &devices {
                tx.delete_device(&d.device_id)?;
                tx.put_device(d)?;
                for role in &d.roles {
                    let scopes = if role == "operator" {
                        d.scopes.clone()
                    } else {
                        Vec::new()
                    };
                    tx.put_role_token(&RoleToken {
                        device_id: d.device_id.clone(),
                        role: role.clone(),
                        scopes,
                        created_at_ms: 1_700_000_000_000,
                        rotated_at_ms: None,
                        revoked_at_ms: None,
                        last_used_at_ms: None,
                    })?;
                }
            }
            for p in &requests {
                tx.put_pending(p)?;
            }
            Ok(())
        })
        .expect("fixture restored");
}

fn caller(kind: u8) -> Caller {
    let (role, scopes, device): (Role, &[&str], Option<u8>) = match kind % 6 {
        0 => (Role::Operator, &[scopes::ADMIN], None),
        1 => (Role::Operator, &[scopes::READ], None),
        2 => (Role::Operator, OPERATOR_SCOPES, None),
        3 => (Role::Operator, &[scopes::READ, scopes::PAIRING], Some(1)),
        4 => (Role::Operator, &[scopes::ADMIN], Some(2)),
        _ => (Role::Node, &[], Some(1)),
    };
    Caller {
        role,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        device_id: device.map(|seed| key(seed).0),
        conn_id: "fuzz-conn".into(),
        ip: [192, 168, 1, 20].into(),
        // A browser tab for some callers, so passkey registration runs.
        origin: (kind % 2 == 0).then(|| "https://fuzz.example".into()),
    }
}

struct Ctx {
    state: Arc<GatewayState>,
    _dir: tempfile::TempDir,
    runs: u32,
    dirty: bool,
}

fn fresh() -> Ctx {
    let (state, dir) = gateway_state(AuthMode::Token);
    restore_fixture(&state);
    Ctx {
        state,
        _dir: dir,
        runs: 0,
        dirty: false,
    }
}

/// A fresh store every so often keeps the audit log (one row per change)
/// from growing through a long run.
const RUNS_PER_STORE: u32 = 20_000;

thread_local! {
    static CTX: std::cell::RefCell<Ctx> = std::cell::RefCell::new(fresh());
}

const READ_ONLY: &[&str] = &[
    "health",
    "status",
    "last-heartbeat",
    "system-presence",
    "device.pair.list",
    "audit.list",
];

const OTHER_NAMES: &[&str] = &["no.such.method", "connect", "node.invoke.result"];

fuzz_target!(|data: &[u8]| {
    let [method, who, params @ ..] = data else {
        return;
    };
    let params = if params.is_empty() {
        None
    } else {
        match serde_json::from_slice::<Value>(params) {
            Ok(v) => Some(v),
            Err(_) => return,
        }
    };
    let index = usize::from(*method) % (METHODS.len() + OTHER_NAMES.len());
    let name = match METHODS.get(index) {
        Some(m) => m.name,
        None => OTHER_NAMES[index - METHODS.len()],
    };
    let caller = caller(*who);
    CTX.with(|cell| {
        let mut ctx = cell.borrow_mut();
        ctx.runs += 1;
        if ctx.runs >= RUNS_PER_STORE {
            *ctx = fresh();
        } else if ctx.dirty || ctx.runs % 1000 == 0 {
            // Also now and then: the pending requests must stay within their TTL.
            restore_fixture(&ctx.state);
            ctx.dirty = false;
        }
        let (_, result) = dispatch(&ctx.state, &caller, name, params.clone());
        match result {
            Ok(reply) => {
                ctx.dirty |= !READ_ONLY.contains(&name);
                let payload = reply.into_value();
                serde_json::to_string(&payload).expect("payload serialises");
                match scopes::method_access(name) {
                    MethodAccess::Anyone => {}
                    MethodAccess::NodeOnly => assert_eq!(caller.role, Role::Node),
                    MethodAccess::Operator(scope) => {
                        assert_eq!(caller.role, Role::Operator, "{name}");
                        assert!(scopes::satisfies(&caller.scopes, scope), "{name}");
                    }
                }
                if let Some(token) = payload.get("token") {
                    assert!(token.is_string());
                    assert_eq!(
                        caller.device_id.as_deref(),
                        payload.get("deviceId").and_then(Value::as_str),
                        "a token went to another device's session"
                    );
                }
            }
            Err(Refusal::Role(e)) | Err(Refusal::Other(e)) => {
                assert!(!e.code.is_empty() && !e.message.is_empty(), "{e:?}");
                assert_ne!(e.code, error_code::UNAVAILABLE, "store failure: {e:?}");
            }
        }
    });
});
