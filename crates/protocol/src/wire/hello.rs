//! `hello-ok`: the payload of a successful `connect` response.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Extra, PresenceEntry};
use crate::connect::Role;
use crate::secret::{self, Secret};

/// How the socket authenticated (`hello-ok.auth.method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    /// `gateway.auth.mode = "none"`.
    None,
    /// The shared token.
    Token,
    /// The shared password.
    Password,
    /// A per-device token.
    DeviceToken,
    /// A setup bootstrap token (reference only).
    BootstrapToken,
    /// Tailscale identity (reference only).
    Tailscale,
    /// An identity asserted by a trusted reverse proxy (reference only).
    TrustedProxy,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Token => "token",
            AuthMethod::Password => "password",
            AuthMethod::DeviceToken => "device-token",
            AuthMethod::BootstrapToken => "bootstrap-token",
            AuthMethod::Tailscale => "tailscale",
            AuthMethod::TrustedProxy => "trusted-proxy",
        }
    }

    pub fn parse(s: &str) -> Option<AuthMethod> {
        [
            AuthMethod::None,
            AuthMethod::Token,
            AuthMethod::Password,
            AuthMethod::DeviceToken,
            AuthMethod::BootstrapToken,
            AuthMethod::Tailscale,
            AuthMethod::TrustedProxy,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

impl std::fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The literal `"hello-ok"` of `hello-ok.type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloOkType {
    #[default]
    #[serde(rename = "hello-ok")]
    HelloOk,
}

/// `hello-ok`. `J` holds the snapshot's reference-shaped JSON blobs (see
/// [`HelloSnapshot`]): a `Value` for whoever reads one, pre-serialized
/// text (`&RawValue`) for a gateway writing one per connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound(
    serialize = "J: Serialize",
    deserialize = "J: Deserialize<'de> + Default"
))]
pub struct HelloOk<J = Value> {
    #[serde(rename = "type", default)]
    pub kind: HelloOkType,
    /// Always [`crate::PROTOCOL_VERSION`], even for a v3 node.
    pub protocol: u32,
    pub server: HelloServer,
    #[serde(default)]
    pub features: HelloFeatures,
    #[serde(default)]
    pub snapshot: HelloSnapshot<J>,
    pub auth: HelloAuth,
    #[serde(default)]
    pub policy: HelloPolicy,
    #[serde(flatten, default)]
    pub extra: Extra,
}

/// `hello-ok.server`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloServer {
    /// The OpenClaw version this gateway is (compatible with).
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// Per-process id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// Per-connection id.
    #[serde(default)]
    pub conn_id: String,
    /// `bundled` | `configured`, when the gateway serves a Control UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_ui_build_source: Option<String>,
    #[serde(flatten, default)]
    pub extra: Extra,
}

/// `hello-ok.features`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloFeatures {
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// `hello-ok.snapshot.suspension`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    /// `accepting` while the gateway takes connections.
    pub phase: String,
}

impl Default for Suspension {
    fn default() -> Self {
        Suspension {
            phase: "accepting".into(),
        }
    }
}

/// `hello-ok.snapshot.stateVersion`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateVersion {
    #[serde(default)]
    pub presence: u64,
    #[serde(default)]
    pub health: u64,
}

/// `hello-ok.snapshot`. `health` and `sessionDefaults` are reference-shaped
/// blobs and stay JSON (`J`: a `Value`, or pre-serialized `&RawValue`); `authMode`, `configPath` and `stateDir` are for
/// admin sessions only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound(
    serialize = "J: Serialize",
    deserialize = "J: Deserialize<'de> + Default"
))]
pub struct HelloSnapshot<J = Value> {
    #[serde(default)]
    pub suspension: Suspension,
    /// Empty without `operator.read`.
    #[serde(default)]
    pub presence: Vec<PresenceEntry>,
    #[serde(default)]
    pub health: J,
    #[serde(default)]
    pub state_version: StateVersion,
    #[serde(default)]
    pub uptime_ms: u64,
    #[serde(default)]
    pub session_defaults: J,
    /// The hash of the config revision in force; clawgate keeps none, so
    /// `null` (the reference's schema allows it).
    #[serde(default)]
    pub applied_config_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    #[serde(flatten, default)]
    pub extra: Extra,
}

/// `hello-ok.auth`. `Debug` never shows the device token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloAuth {
    pub method: AuthMethod,
    pub role: Role,
    /// The live, effective scopes of this socket.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Operators only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_scope: Option<String>,
    /// A device token handed out with this `hello-ok`, in clear.
    #[serde(
        default,
        serialize_with = "secret::expose_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub device_token: Option<Secret>,
    /// The token's `rotatedAtMs ?? createdAtMs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_migration_allowed: Option<bool>,
    /// The bootstrap (setup code) hand-off: the tokens this connect's setup
    /// code issued, one per role. Only on a bootstrap connect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_tokens: Vec<HandoffToken>,
}

/// One entry of `hello-ok.auth.deviceTokens[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandoffToken {
    #[serde(serialize_with = "secret::expose_one")]
    pub device_token: Secret,
    pub role: Role,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub issued_at_ms: u64,
}

impl HelloAuth {
    pub fn new(method: AuthMethod, role: Role, scopes: Vec<String>) -> Self {
        HelloAuth {
            method,
            role,
            scopes,
            recovery_scope: None,
            device_token: None,
            issued_at_ms: None,
            recovery_migration_allowed: None,
            device_tokens: Vec::new(),
        }
    }

    /// Hands out `token` (issued at `issued_at_ms`). With no verified users
    /// in clawgate, an operator that gets a device token may migrate its
    /// recovery scope (`recoveryMigrationAllowed`), as in the reference.
    pub fn issue_device_token(&mut self, token: Secret, issued_at_ms: u64) {
        self.device_token = Some(token);
        self.issued_at_ms = Some(issued_at_ms);
        if self.role == Role::Operator {
            self.recovery_migration_allowed = Some(true);
        }
    }
}

/// `hello-ok.policy.attachments`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachments {
    #[serde(default)]
    pub max_bytes: u64,
    #[serde(default)]
    pub max_image_bytes: u64,
}

/// `hello-ok.policy`. A field missing from a gateway's policy reads as
/// clawgate's value (see [`HelloPolicy::default`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HelloPolicy {
    pub max_payload: u64,
    pub max_buffered_bytes: u64,
    pub tick_interval_ms: u64,
    pub attachments: Attachments,
    pub allowed_session_visibilities: Vec<String>,
    pub has_multiple_session_sharing_identities: bool,
}

impl HelloPolicy {
    /// clawgate's policy with the given tick interval (no attachments, no
    /// shared sessions).
    pub fn with_tick_interval(tick_interval_ms: u64) -> Self {
        HelloPolicy {
            max_payload: crate::MAX_PAYLOAD_BYTES as u64,
            max_buffered_bytes: crate::MAX_BUFFERED_BYTES as u64,
            tick_interval_ms,
            attachments: Attachments::default(),
            allowed_session_visibilities: Vec::new(),
            has_multiple_session_sharing_identities: false,
        }
    }
}

impl Default for HelloPolicy {
    fn default() -> Self {
        Self::with_tick_interval(crate::TICK_INTERVAL_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::GatewayPresence;
    use serde_json::json;

    #[test]
    fn auth_methods_round_trip() {
        for (m, s) in [
            (AuthMethod::None, "none"),
            (AuthMethod::Token, "token"),
            (AuthMethod::Password, "password"),
            (AuthMethod::DeviceToken, "device-token"),
            (AuthMethod::BootstrapToken, "bootstrap-token"),
            (AuthMethod::Tailscale, "tailscale"),
            (AuthMethod::TrustedProxy, "trusted-proxy"),
        ] {
            assert_eq!(m.as_str(), s);
            assert_eq!(serde_json::to_value(m).unwrap(), json!(s));
            assert_eq!(serde_json::from_value::<AuthMethod>(json!(s)).unwrap(), m);
            assert_eq!(AuthMethod::parse(s), Some(m));
        }
        assert_eq!(AuthMethod::parse("magic"), None);
    }

    #[test]
    fn a_partial_policy_reads_the_rest_as_clawgate_defaults() {
        let p: HelloPolicy = serde_json::from_value(json!({"tickIntervalMs": 1000})).unwrap();
        assert_eq!(p, HelloPolicy::with_tick_interval(1000));
        let p: HelloPolicy = serde_json::from_value(json!({})).unwrap();
        assert_eq!(p.tick_interval_ms, crate::TICK_INTERVAL_MS);
    }

    fn sample() -> HelloOk {
        let mut auth = HelloAuth::new(
            AuthMethod::Token,
            Role::Operator,
            vec!["operator.read".into()],
        );
        auth.recovery_scope = Some("rs".into());
        auth.issue_device_token(Secret::new("DEVTOKEN"), 9);
        HelloOk {
            kind: HelloOkType::HelloOk,
            protocol: 4,
            server: HelloServer {
                version: "2026.9.6".into(),
                build_id: Some("clawgate-0.1.0".into()),
                boot_id: Some("b".into()),
                conn_id: "c".into(),
                control_ui_build_source: Some("bundled".into()),
                extra: Extra::new(),
            },
            features: HelloFeatures {
                methods: vec!["health".into()],
                events: vec!["tick".into()],
                capabilities: vec![],
            },
            snapshot: HelloSnapshot {
                presence: vec![
                    GatewayPresence::new("vm", "2026.9.6", "0.1.0", "linux", "i", 1).into(),
                ],
                health: json!({"ok": true}),
                state_version: StateVersion {
                    presence: 0,
                    health: 1,
                },
                uptime_ms: 5,
                session_defaults: json!({"defaultAgentId": "main"}),
                auth_mode: Some("token".into()),
                config_path: Some("/c".into()),
                state_dir: Some("/s".into()),
                ..Default::default()
            },
            auth,
            policy: HelloPolicy::with_tick_interval(30_000),
            extra: Extra::new(),
        }
    }

    #[test]
    fn hello_ok_shape_and_order() {
        let hello = sample();
        let v = serde_json::to_value(&hello).unwrap();
        let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
        assert_eq!(
            keys(&v),
            [
                "type", "protocol", "server", "features", "snapshot", "auth", "policy"
            ]
        );
        assert_eq!(v["type"], "hello-ok");
        assert_eq!(
            keys(&v["server"]),
            [
                "version",
                "buildId",
                "bootId",
                "connId",
                "controlUiBuildSource"
            ]
        );
        assert_eq!(
            keys(&v["snapshot"]),
            [
                "suspension",
                "presence",
                "health",
                "stateVersion",
                "uptimeMs",
                "sessionDefaults",
                "appliedConfigHash",
                "authMode",
                "configPath",
                "stateDir"
            ]
        );
        assert_eq!(
            v["auth"],
            json!({"method": "token", "role": "operator", "scopes": ["operator.read"],
                   "recoveryScope": "rs", "deviceToken": "DEVTOKEN", "issuedAtMs": 9,
                   "recoveryMigrationAllowed": true})
        );
        assert_eq!(
            keys(&v["auth"]),
            [
                "method",
                "role",
                "scopes",
                "recoveryScope",
                "deviceToken",
                "issuedAtMs",
                "recoveryMigrationAllowed"
            ]
        );
        assert_eq!(
            v["policy"],
            json!({"maxPayload": 26214400, "maxBufferedBytes": 52428800, "tickIntervalMs": 30000,
                   "attachments": {"maxBytes": 0, "maxImageBytes": 0},
                   "allowedSessionVisibilities": [], "hasMultipleSessionSharingIdentities": false})
        );
        assert!(!format!("{hello:?}").contains("DEVTOKEN"));
        assert_eq!(serde_json::from_value::<HelloOk>(v).unwrap(), hello);
    }

    #[test]
    fn node_auth_without_token_is_minimal() {
        let auth = HelloAuth::new(AuthMethod::DeviceToken, Role::Node, vec![]);
        assert_eq!(
            serde_json::to_string(&auth).unwrap(),
            r#"{"method":"device-token","role":"node","scopes":[]}"#
        );
        let mut with = auth.clone();
        with.issue_device_token(Secret::new("t"), 1);
        assert_eq!(with.recovery_migration_allowed, None);
    }

    #[test]
    fn reference_hello_parses_and_keeps_unknown_fields() {
        let v = json!({"type":"hello-ok","protocol":4,
            "server":{"version":"2026.9.6","buildId":"x","bootId":"b","controlUiBuildSource":"bundled","connId":"c"},
            "features":{"methods":[],"events":[],"capabilities":["a"]},
            "snapshot":{"suspension":{"phase":"accepting"},"presence":[
                {"clientId":"openclaw-macos","mode":"ui","user":{"id":"u"},"onlineSince":1,"roles":["operator"],"scopes":["operator.read"],"ts":2,"text":"t","host":"h","version":"v","platform":"linux","reason":"connect"}],
                "health":{},"stateVersion":{"presence":1,"health":7},"uptimeMs":1,"appliedConfigHash":"h","sessionDefaults":{},"authMode":"token"},
            "controlUiWidgetKinds":[],
            "auth":{"method":"token","role":"operator","scopes":["operator.read"],"recoveryScope":"r","recoveryMigrationAllowed":true,"deviceToken":"kn40","issuedAtMs":1},
            "policy":{"maxPayload":26214400,"maxBufferedBytes":52428800,"tickIntervalMs":30000,"attachments":{"maxBytes":1,"maxImageBytes":1},"allowedSessionVisibilities":["shared"],"hasMultipleSessionSharingIdentities":false}});
        let hello: HelloOk = serde_json::from_value(v).unwrap();
        assert_eq!(hello.auth.device_token.unwrap().expose(), "kn40");
        assert!(hello.extra.contains_key("controlUiWidgetKinds"));
        assert_eq!(hello.snapshot.applied_config_hash.as_deref(), Some("h"));
        match &hello.snapshot.presence[0] {
            PresenceEntry::Client(c) => assert!(c.extra.contains_key("user")),
            other => panic!("{other:?}"),
        }
    }
}
