//! The relayed client's `hello-ok`, built from the upstream's: the
//! upstream's server, features, snapshot and policy (clients see the real
//! gateway), with clawgate's own parts put in:
//!
//! - `auth`: clawgate's (the client's clawgate device token, role, scopes);
//! - `server.connId`: clawgate's id for the client's connection;
//! - `features.methods` / `events`: clawgate's own methods and events added;
//! - `policy`: the tighter of both frame and buffer limits, and clawgate's
//!   tick interval (clawgate is the one tick source of a relayed socket);
//! - any other field that names the upstream's HTTP origin (the capability
//!   URLs of `pluginSurfaceUrls`, a `controlUiUrl`) goes through the same
//!   rewrite as every relayed frame (`caps::rewrite_origin`): capability
//!   URLs point at clawgate and are granted to the session, so the
//!   upstream's address is never shown.

use std::borrow::Cow;

use clawgate_protocol::wire::HelloAuth;
use clawgate_protocol::{MAX_BUFFERED_BYTES, MAX_PAYLOAD_BYTES};
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::Upstream;
use super::caps::rewrite_origin;

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

/// One top-level field of the merged `hello-ok`: the upstream's text as it
/// came, or a value clawgate rebuilt.
enum Field<'a> {
    Raw(&'a RawValue),
    Built(Value),
}

/// The merged `hello-ok` payload: the upstream's top-level fields in their
/// order, serialized without decoding the large ones (`snapshot`, most of
/// `features`) at all.
pub struct Merged<'a>(Vec<(Cow<'a, str>, Field<'a>)>);

impl Serialize for Merged<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (key, field) in &self.0 {
            match field {
                Field::Raw(raw) => map.serialize_entry(key, raw)?,
                Field::Built(value) => map.serialize_entry(key, value)?,
            }
        }
        map.end()
    }
}

/// Merges the upstream's `hello-ok` payload (`upstream_hello`, raw JSON)
/// with clawgate's parts. `None` when it is not a JSON object.
pub fn merge<'a>(up: &Upstream, upstream_hello: &'a str, local: Local<'_>) -> Option<Merged<'a>> {
    let fields: Vec<(Cow<'a, str>, &'a RawValue)> =
        serde_json::from_str::<OrderedRaw<'a>>(upstream_hello)
            .ok()?
            .0;
    let origin = up.http_origin();
    let mut out = Vec::with_capacity(fields.len() + 2);
    let mut has_auth = false;
    let mut has_policy = false;
    for (key, raw) in fields {
        let field = match key.as_ref() {
            "server" => {
                let mut server: Map<String, Value> = serde_json::from_str(raw.get()).ok()?;
                server.insert("connId".into(), json!(local.conn_id));
                Field::Built(Value::Object(server))
            }
            "features" => match features(raw, &local) {
                Some(v) => Field::Built(v),
                None => Field::Raw(raw),
            },
            "auth" => {
                has_auth = true;
                Field::Built(serde_json::to_value(&local.auth).unwrap_or(Value::Null))
            }
            "policy" => {
                has_policy = true;
                let policy: Map<String, Value> =
                    serde_json::from_str(raw.get()).unwrap_or_default();
                Field::Built(Value::Object(tightened(policy, local.tick_interval_ms)))
            }
            _ if raw.get().contains(&origin) => {
                let mut value: Value = serde_json::from_str(raw.get()).ok()?;
                rewrite_origin(
                    &up.caps,
                    &mut value,
                    &origin,
                    local.public_origin.as_deref(),
                    local.session_key,
                );
                Field::Built(value)
            }
            _ => Field::Raw(raw),
        };
        out.push((key, field));
    }
    if !has_auth {
        out.push((
            Cow::Borrowed("auth"),
            Field::Built(serde_json::to_value(&local.auth).unwrap_or(Value::Null)),
        ));
    }
    if !has_policy {
        out.push((
            Cow::Borrowed("policy"),
            Field::Built(Value::Object(tightened(Map::new(), local.tick_interval_ms))),
        ));
    }
    Some(Merged(out))
}

/// A JSON object's fields in order, values left as raw text.
struct OrderedRaw<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for OrderedRaw<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = OrderedRaw<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Self::Value, M::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(OrderedRaw(out))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// `features` with clawgate's methods and events added, or `None` when the
/// upstream already lists them all (then its text is kept as it came).
fn features(raw: &RawValue, local: &Local<'_>) -> Option<Value> {
    // Borrowed names, no allocation per name (names with escapes fail
    // this and take the full path below).
    #[derive(serde::Deserialize)]
    struct Names<'a> {
        #[serde(borrow, default)]
        methods: Vec<&'a str>,
        #[serde(borrow, default)]
        events: Vec<&'a str>,
    }
    let missing = |have: &[&str], ours: &[&str]| ours.iter().any(|o| !have.contains(o));
    if let Ok(names) = serde_json::from_str::<Names<'_>>(raw.get())
        && !missing(&names.methods, local.methods)
        && !missing(&names.events, local.events)
    {
        return None;
    }
    let mut features: Map<String, Value> = serde_json::from_str(raw.get()).ok()?;
    add_names(&mut features, "methods", local.methods);
    add_names(&mut features, "events", local.events);
    Some(Value::Object(features))
}

/// The policy with the tighter frame and buffer limits and clawgate's
/// tick interval.
fn tightened(mut policy: Map<String, Value>, tick_interval_ms: u64) -> Map<String, Value> {
    tighten(&mut policy, "maxPayload", MAX_PAYLOAD_BYTES as u64);
    tighten(&mut policy, "maxBufferedBytes", MAX_BUFFERED_BYTES as u64);
    policy.insert("tickIntervalMs".into(), json!(tick_interval_ms));
    policy
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
