//! `hello-ok`: what a client learns when its connect succeeds (server,
//! features, snapshot, its auth and the policy). Built once per connect.

use base64::Engine;
use clawgate_protocol::frames::{Request, Response};
use clawgate_protocol::{MAX_PAYLOAD_BYTES, PROTOCOL_VERSION, scopes};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::auth::Authenticated;
use crate::rpc::{self, system};
use crate::state::GatewayState;

/// `hello-ok.auth.recoveryScope`: an opaque handle a client can use to tell
/// whether two sessions share the same recovery boundary.
fn recovery_scope(generation: u64, device_id: Option<&str>) -> String {
    let material = json!(["shared-auth", generation, device_id.unwrap_or("")]).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(material.as_bytes()))
}

/// The `hello-ok` response to connect request `request`, serialized.
pub(crate) fn hello_ok(
    state: &GatewayState,
    request: &Request,
    auth: &Authenticated,
    conn_id: &str,
) -> String {
    let admin = scopes::satisfies(&auth.scopes, scopes::ADMIN);
    let can_read = scopes::satisfies(&auth.scopes, scopes::READ);
    let mut snapshot = json!({
        "suspension": {"phase": "accepting"},
        "presence": if can_read { Value::Array(system::presence_list(state)) } else { json!([]) },
        "health": system::health_summary(state),
        "stateVersion": {"presence": state.hub.presence_version(), "health": 1},
        "uptimeMs": state.uptime_ms(),
        "sessionDefaults": {
            "defaultAgentId": "main",
            "mainKey": "main",
            "mainSessionKey": "agent:main:main",
            "scope": "per-sender",
            "modelConfigured": false,
            "selectionRequired": false,
            "ownership": "sole",
        },
    });
    // clawgate keeps no config revision hash (the reference's schema allows null).
    snapshot["appliedConfigHash"] = Value::Null;
    // As in the reference, the auth mode and paths are for admins only.
    if admin {
        snapshot["authMode"] = json!(state.auth().config.mode.as_str());
        snapshot["configPath"] = json!(state.config.config_path.display().to_string());
        snapshot["stateDir"] = json!(state.config.state_dir.display().to_string());
    }
    let mut auth_json = json!({
        "method": auth.method,
        "role": auth.role.as_str(),
        "scopes": auth.scopes,
    });
    if auth.role == clawgate_protocol::connect::Role::Operator {
        auth_json["recoveryScope"] = json!(recovery_scope(
            auth.shared_generation.unwrap_or(0),
            auth.device_id.as_deref()
        ));
    }
    if let Some((token, issued_at)) = &auth.issued_token {
        auth_json["deviceToken"] = json!(token.expose());
        auth_json["issuedAtMs"] = json!(issued_at);
        if auth.role == clawgate_protocol::connect::Role::Operator {
            // No verified users in clawgate: an operator with a device token
            // may migrate its recovery scope, as in the reference.
            auth_json["recoveryMigrationAllowed"] = json!(true);
        }
    }
    let tick_ms = state.options.tick_interval.as_millis() as u64;
    let mut payload = json!({
        "type": "hello-ok",
        "protocol": PROTOCOL_VERSION,
        "server": {
            "version": crate::COMPAT_VERSION,
            "buildId": format!("clawgate-{}", crate::VERSION),
            "bootId": state.boot_id,
            "connId": conn_id,
        },
        "features": {
            "methods": rpc::method_names(),
            "events": crate::EVENTS,
            "capabilities": [],
        },
        "snapshot": snapshot,
        "auth": auth_json,
        "policy": {
            "maxPayload": MAX_PAYLOAD_BYTES,
            "maxBufferedBytes": clawgate_protocol::MAX_BUFFERED_BYTES,
            "tickIntervalMs": tick_ms,
            "attachments": {"maxBytes": 0, "maxImageBytes": 0},
            "allowedSessionVisibilities": [],
            "hasMultipleSessionSharingIdentities": false,
        },
    });
    // Plugin widgets, link readers and plugin surfaces: clawgate has no
    // plugins, so present and empty.
    payload["controlUiWidgetKinds"] = json!([]);
    payload["controlUiLinkReaders"] = json!([]);
    payload["pluginSurfaceUrls"] = json!({});
    // The Control UI is built into the binary, which the reference calls "bundled".
    if state.config.control_ui.enabled {
        payload["server"]["controlUiBuildSource"] = json!("bundled");
    }
    Response::ok(request.id.clone(), payload).to_json()
}
