//! `hello-ok`: what a client learns when its connect succeeds (server,
//! features, snapshot, its auth and the policy), built as the protocol's
//! `HelloOk` and serialized once per connect.

use std::sync::OnceLock;

use base64::Engine;
use clawgate_protocol::connect::Role;
use clawgate_protocol::frames::{Request, Response};
use clawgate_protocol::wire::hello::{HelloOkType, StateVersion, Suspension};
use clawgate_protocol::wire::{
    Extra, HelloAuth, HelloFeatures, HelloOk, HelloPolicy, HelloServer, HelloSnapshot,
};
use clawgate_protocol::{PROTOCOL_VERSION, scopes};
use serde_json::json;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::auth::Authenticated;
use crate::rpc::{self, system};
use crate::state::GatewayState;

/// `hello-ok.auth.recoveryScope`: an opaque handle a client can use to tell
/// whether two sessions share the same recovery boundary.
fn recovery_scope(generation: u64, device_id: Option<&str>) -> String {
    // The same text as `json!(["shared-auth", generation, device])`.
    let material = serde_json::to_string(&("shared-auth", generation, device_id.unwrap_or("")))
        .expect("strings and numbers serialize");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(material.as_bytes()))
}

/// `snapshot.sessionDefaults`, serialized once: the same for every session
/// (clawgate has no sessions or models of its own; the reference requires
/// the keys).
fn session_defaults() -> &'static RawValue {
    static DEFAULTS: OnceLock<Box<RawValue>> = OnceLock::new();
    DEFAULTS.get_or_init(|| {
        serde_json::value::to_raw_value(&json!({
            "defaultAgentId": "main",
            "mainKey": "main",
            "mainSessionKey": "agent:main:main",
            "scope": "per-sender",
            "modelConfigured": false,
            "selectionRequired": false,
            "ownership": "sole",
        }))
        .expect("a JSON value serializes")
    })
}

/// Fields of the reference's hello-ok that belong to its plugins (widgets,
/// link readers, plugin surfaces): clawgate has none, so present and empty.
fn plugin_fields() -> Extra {
    let mut extra = Extra::new();
    extra.insert("controlUiWidgetKinds".into(), json!([]));
    extra.insert("controlUiLinkReaders".into(), json!([]));
    extra.insert("pluginSurfaceUrls".into(), json!({}));
    extra
}

/// `hello-ok.auth` for this session.
pub(crate) fn hello_auth(auth: &Authenticated) -> HelloAuth {
    let mut out = HelloAuth::new(auth.method, auth.role, auth.scopes.clone());
    if auth.role == Role::Operator {
        out.recovery_scope = Some(recovery_scope(
            auth.shared_generation.unwrap_or(0),
            auth.device_id.as_deref(),
        ));
    }
    if let Some((token, issued_at)) = &auth.issued_token {
        // No verified users in clawgate: an operator with a device token
        // may migrate its recovery scope, as in the reference.
        out.issue_device_token(token.clone(), *issued_at);
    }
    out.device_tokens = auth.handoff.clone();
    out
}

/// `hello-ok.snapshot` with `health` (serialized): presence only with `operator.read`; the auth mode
/// and paths only for admins, as in the reference.
fn snapshot<'a>(
    state: &GatewayState,
    auth: &Authenticated,
    health: &'a RawValue,
) -> HelloSnapshot<&'a RawValue> {
    let can_read = scopes::satisfies(&auth.scopes, scopes::READ);
    let mut snapshot = HelloSnapshot {
        suspension: Suspension::default(),
        presence: if can_read {
            system::presence_list(state)
        } else {
            Vec::new()
        },
        health,
        state_version: StateVersion {
            presence: state.hub.presence_version(),
            health: 1,
        },
        uptime_ms: state.uptime_ms(),
        session_defaults: session_defaults(),
        // clawgate keeps no config revision hash (the reference's schema
        // allows null).
        applied_config_hash: None,
        auth_mode: None,
        config_path: None,
        state_dir: None,
        extra: Extra::new(),
    };
    if scopes::satisfies(&auth.scopes, scopes::ADMIN) {
        snapshot.auth_mode = Some(state.auth().config.mode.as_str().to_string());
        snapshot.config_path = Some(state.config.config_path.display().to_string());
        snapshot.state_dir = Some(state.config.state_dir.display().to_string());
    }
    snapshot
}

/// `hello-ok.features` serialized: the same for every connection of this
/// process (the method and event lists are fixed at build time).
fn features_json() -> &'static str {
    static FEATURES: OnceLock<String> = OnceLock::new();
    FEATURES.get_or_init(|| {
        let features = HelloFeatures {
            methods: rpc::method_names().into_iter().map(String::from).collect(),
            events: crate::EVENTS.iter().map(|e| e.to_string()).collect(),
            capabilities: Vec::new(),
        };
        serde_json::to_string(&features).expect("features serialize")
    })
}

/// `"features":` with empty lists, as [`HelloFeatures::default`]
/// serializes: the place in a serialized `hello-ok` where the cached
/// [`features_json`] goes. Inside a JSON string every quote is escaped, so
/// these bytes can only be the `features` member itself.
const EMPTY_FEATURES: &str = r#""features":{"methods":[],"events":[],"capabilities":[]}"#;

/// A serialized `hello-ok` response: its text, and where in it the cached
/// features go (standalone) or nothing to insert (relayed).
pub(crate) struct HelloFrame {
    text: String,
    /// The bytes of `text` the features replace.
    features_at: Option<std::ops::Range<usize>>,
}

impl HelloFrame {
    /// A frame sent as it is.
    pub(crate) fn whole(text: String) -> Self {
        HelloFrame {
            text,
            features_at: None,
        }
    }

    /// The frame's text in order, in pieces: written with one vectored
    /// write, so the ~13 KB of features are never copied per connection.
    pub(crate) fn parts(&self) -> [&str; 3] {
        match &self.features_at {
            Some(r) => [&self.text[..r.start], features_json(), &self.text[r.end..]],
            None => [&self.text, "", ""],
        }
    }
}

/// The `hello-ok` response to connect request `request`. Everything that
/// varies per connection is serialized per connection; the feature lists
/// (the same for all) are the cached [`features_json`].
pub(crate) fn hello_ok(
    state: &GatewayState,
    request: &Request,
    auth: &Authenticated,
    conn_id: &str,
) -> HelloFrame {
    // The snapshot's JSON blobs go in as text: `health` from its
    // template (checked as JSON once more here), `sessionDefaults` cached.
    let health = RawValue::from_string(system::health_summary_text(state))
        .expect("the health template is JSON");
    with_features(
        &request.id,
        &hello_ok_payload(state, auth, conn_id, &health),
    )
}

/// The response to request `id` with `hello` (whose features are empty),
/// marked where the cached features go.
fn with_features(id: &str, hello: &HelloOk<&RawValue>) -> HelloFrame {
    let text = Response::ok_json(id, hello);
    let at = text
        .find(EMPTY_FEATURES)
        .expect("hello-ok has a features member");
    let start = at + r#""features":"#.len();
    HelloFrame {
        text,
        features_at: Some(start..at + EMPTY_FEATURES.len()),
    }
}

/// The `hello-ok` payload with empty `features` (see [`hello_ok`]).
fn hello_ok_payload<'a>(
    state: &GatewayState,
    auth: &Authenticated,
    conn_id: &str,
    health: &'a RawValue,
) -> HelloOk<&'a RawValue> {
    HelloOk {
        kind: HelloOkType::HelloOk,
        protocol: PROTOCOL_VERSION,
        server: HelloServer {
            version: crate::COMPAT_VERSION.into(),
            build_id: Some(format!("clawgate-{}", crate::VERSION)),
            boot_id: Some(state.boot_id.clone()),
            conn_id: conn_id.into(),
            // The Control UI is built into the binary, which the reference
            // calls "bundled".
            control_ui_build_source: state.config.control_ui.enabled.then(|| "bundled".into()),
            extra: Extra::new(),
        },
        features: HelloFeatures::default(),
        snapshot: snapshot(state, auth, health),
        auth: hello_auth(auth),
        policy: HelloPolicy::with_tick_interval(state.options.tick_interval.as_millis() as u64),
        extra: plugin_fields(),
    }
}

/// The `hello-ok` of a relayed session (fronting mode): the upstream's
/// (`upstream_hello`), with clawgate's auth, connection id, methods,
/// events and limits (see `upstream::hello`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn relayed_hello_ok(
    state: &GatewayState,
    up: &crate::upstream::Upstream,
    request: &Request,
    auth: &Authenticated,
    conn_id: &str,
    upstream_hello: &str,
    public_origin: Option<String>,
    session_key: u64,
) -> Option<String> {
    /// clawgate's own methods a relayed client may call (answered locally).
    const OWN_METHODS: &[&str] = &[
        "device.pair.list",
        "device.pair.approve",
        "device.pair.reject",
        "device.pair.remove",
        "device.pair.rename",
        "device.token.rotate",
        "device.token.revoke",
        "audit.list",
    ];
    let merged = crate::upstream::hello::merge(
        up,
        upstream_hello,
        crate::upstream::hello::Local {
            conn_id,
            auth: hello_auth(auth),
            methods: OWN_METHODS,
            events: crate::EVENTS,
            tick_interval_ms: state.options.tick_interval.as_millis() as u64,
            public_origin,
            session_key,
        },
    )?;
    Some(Response::ok_json(&request.id, &merged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthConfig, AuthMode, GatewayConfig};
    use clawgate_protocol::wire::AuthMethod;

    /// The recovery scope hashes the same text it always did (a client
    /// compares scopes across gateway versions).
    #[test]
    fn recovery_scope_material_is_unchanged() {
        for (generation, device) in [(0, None), (7, Some("dev\"1"))] {
            let old = json!(["shared-auth", generation, device.unwrap_or("")]).to_string();
            let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(old.as_bytes()));
            assert_eq!(recovery_scope(generation, device), expected);
        }
    }

    /// The spliced `hello-ok` is byte for byte the one serialized whole.
    #[test]
    fn spliced_features_are_the_serialized_features() {
        let dir = tempfile::tempdir().unwrap();
        let config =
            GatewayConfig::loopback(dir.path(), AuthConfig::new(AuthMode::None, None, None));
        let store = clawgate_store::Store::open(&dir.path().join("db.sqlite")).unwrap();
        let state = GatewayState::new(config, Default::default(), std::sync::Arc::new(store));
        for scopes in [
            vec![],
            vec![scopes::READ.to_string()],
            vec![scopes::ADMIN.to_string()],
        ] {
            let auth = Authenticated {
                method: AuthMethod::Token,
                role: Role::Operator,
                scopes,
                shared_generation: Some(3),
                device_id: Some("dev\"features\":{}".into()),
                device_token_auth: false,
                issued_token: None,
                handoff: Vec::new(),
            };
            let health = RawValue::from_string(system::health_summary_text(&state)).unwrap();
            let empty = hello_ok_payload(&state, &auth, "conn-1", &health);
            let mut whole = empty.clone();
            whole.features = serde_json::from_str(features_json()).unwrap();
            assert!(!whole.features.methods.is_empty());
            assert_eq!(
                with_features("req\"features\":", &empty).parts().concat(),
                Response::ok_json("req\"features\":", &whole)
            );
        }
    }
}
