//! The relayed client's `hello-ok`, built from the upstream's: the
//! upstream's server, features, snapshot and policy (clients see the real
//! gateway), with clawgate's own parts put in:
//!
//! - `auth`: clawgate's (the client's clawgate device token, role, scopes);
//! - `server.connId`: clawgate's id for the client's connection;
//! - `features.methods` / `events`: clawgate's own methods and events added;
//! - `policy`: the tighter of both frame and buffer limits, and clawgate's
//!   tick interval (clawgate is the one tick source of a relayed socket);
//! - `pluginSurfaceUrls`: capability URLs on the upstream's HTTP origin
//!   are rewritten to clawgate's origin and granted to the session (the
//!   HTTP proxy serves them); any other URL naming the upstream is dropped,
//!   so the upstream's address is never shown.

use clawgate_protocol::wire::HelloAuth;
use clawgate_protocol::{MAX_BUFFERED_BYTES, MAX_PAYLOAD_BYTES};
use serde_json::{Map, Value, json};

use super::Upstream;
use super::caps::{CAP_PREFIX, token_in_url};

/// clawgate's parts of a relayed `hello-ok`.
pub struct Local<'a> {
    pub conn_id: &'a str,
    pub auth: HelloAuth,
    pub methods: &'a [&'static str],
    pub events: &'a [&'static str],
    pub tick_interval_ms: u64,
    /// `scheme://host[:port]` the client reached clawgate at, for
    /// capability URLs (`None`: they are dropped).
    pub public_origin: Option<String>,
    /// The hub key of the session capability tokens are granted to.
    pub session_key: u64,
}

/// Merges `upstream_hello` (the upstream's `hello-ok` payload) with
/// clawgate's parts.
pub fn merge(up: &Upstream, mut hello: Value, local: Local<'_>) -> Value {
    let Some(obj) = hello.as_object_mut() else {
        return hello;
    };
    if let Some(server) = obj.get_mut("server").and_then(Value::as_object_mut) {
        server.insert("connId".into(), json!(local.conn_id));
    }
    if let Some(features) = obj.get_mut("features").and_then(Value::as_object_mut) {
        add_names(features, "methods", local.methods);
        add_names(features, "events", local.events);
    }
    obj.insert(
        "auth".into(),
        serde_json::to_value(&local.auth).unwrap_or(Value::Null),
    );
    let policy = obj
        .entry("policy")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    if let Some(policy) = policy {
        tighten(policy, "maxPayload", MAX_PAYLOAD_BYTES as u64);
        tighten(policy, "maxBufferedBytes", MAX_BUFFERED_BYTES as u64);
        policy.insert("tickIntervalMs".into(), json!(local.tick_interval_ms));
    }
    let origin = up.http_origin();
    if let Some(surfaces) = obj
        .get_mut("pluginSurfaceUrls")
        .and_then(Value::as_object_mut)
    {
        surfaces.retain(|_, url| {
            let Some(text) = url.as_str() else {
                return true;
            };
            if !text.contains(&origin) {
                return true;
            }
            match (token_in_url(text, &origin), &local.public_origin) {
                (Some(token), Some(public)) => {
                    up.caps.grant(token, local.session_key);
                    *url = json!(format!("{public}{CAP_PREFIX}{token}"));
                    true
                }
                _ => false,
            }
        });
    }
    // A Control UI URL on the upstream's own origin would send the client
    // around clawgate.
    for key in ["controlUiUrl"] {
        if obj
            .get(key)
            .and_then(Value::as_str)
            .is_some_and(|u| u.contains(&origin))
        {
            obj.remove(key);
        }
    }
    hello
}

/// Appends the names in `ours` that `features[key]` lacks.
fn add_names(features: &mut Map<String, Value>, key: &str, ours: &[&str]) {
    let Some(list) = features.get_mut(key).and_then(Value::as_array_mut) else {
        return;
    };
    for name in ours {
        if !list.iter().any(|v| v.as_str() == Some(name)) {
            list.push(json!(name));
        }
    }
}

/// `policy[key]` = the smaller of the upstream's and clawgate's limit.
fn tighten(policy: &mut Map<String, Value>, key: &str, ours: u64) {
    let theirs = policy.get(key).and_then(Value::as_u64).unwrap_or(ours);
    policy.insert(key.into(), json!(theirs.min(ours)));
}
