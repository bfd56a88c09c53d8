//! The `connect` request: its closed schema, its typed form, and the
//! protocol-range and role rules applied to it.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::schema::{self, NON_EMPTY, Prop, STRING, Schema};
use crate::{MIN_NODE_PROTOCOL_VERSION, MIN_PROBE_PROTOCOL_VERSION, PROTOCOL_VERSION};

/// Accepted `client.id` values.
pub const CLIENT_IDS: &[&str] = &[
    "webchat-ui",
    "openclaw-control-ui",
    "openclaw-browser-copilot",
    "openclaw-tui",
    "webchat",
    "cli",
    "gateway-client",
    "openclaw-macos",
    "openclaw-linux",
    "openclaw-ios",
    "openclaw-watchos",
    "openclaw-android",
    "node-host",
    "openclaw-worker",
    "test",
    "fingerprint",
    "openclaw-probe",
];

/// Accepted `client.mode` values.
pub const CLIENT_MODES: &[&str] = &[
    "webchat", "cli", "ui", "backend", "node", "worker", "probe", "test",
];

static BOOL: Schema = Schema::Bool;

static CONNECT_PARAMS: Schema = Schema::Object(&[
    Prop::required("minProtocol", Schema::Int { min: 1 }),
    Prop::required("maxProtocol", Schema::Int { min: 1 }),
    Prop::required(
        "client",
        Schema::Object(&[
            Prop::required("id", Schema::Enum(CLIENT_IDS)),
            Prop::optional("displayName", NON_EMPTY),
            Prop::required("version", NON_EMPTY),
            Prop::optional(
                "buildId",
                Schema::Str {
                    min: 1,
                    max: Some(96),
                },
            ),
            Prop::required("platform", NON_EMPTY),
            Prop::optional("deviceFamily", NON_EMPTY),
            Prop::optional("modelIdentifier", NON_EMPTY),
            Prop::optional(
                "timeZone",
                Schema::Str {
                    min: 1,
                    max: Some(64),
                },
            ),
            Prop::required("mode", Schema::Enum(CLIENT_MODES)),
            Prop::optional("instanceId", NON_EMPTY),
        ]),
    ),
    Prop::optional("caps", Schema::Array(&NON_EMPTY)),
    Prop::optional("commands", Schema::Array(&NON_EMPTY)),
    Prop::optional("computerUse", Schema::Any),
    Prop::optional("workerRuns", Schema::Any),
    Prop::optional("permissions", Schema::Record(&BOOL)),
    Prop::optional("pathEnv", STRING),
    Prop::optional("role", NON_EMPTY),
    Prop::optional("scopes", Schema::Array(&NON_EMPTY)),
    Prop::optional("modelCatalog", Schema::Any),
    Prop::optional(
        "device",
        Schema::Object(&[
            Prop::required("id", NON_EMPTY),
            Prop::required("publicKey", NON_EMPTY),
            Prop::required("signature", NON_EMPTY),
            Prop::required("signedAt", Schema::Int { min: 0 }),
            Prop::required("nonce", NON_EMPTY),
        ]),
    ),
    Prop::optional(
        "auth",
        Schema::Object(&[
            Prop::optional("token", STRING),
            Prop::optional("bootstrapToken", STRING),
            Prop::optional("deviceToken", STRING),
            Prop::optional("password", STRING),
            Prop::optional("approvalRuntimeToken", STRING),
            Prop::optional("agentRuntimeIdentityToken", STRING),
        ]),
    ),
    Prop::optional("locale", STRING),
    Prop::optional("userAgent", STRING),
]);

/// The client's self-description.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    pub platform: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_identifier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
}

/// The device identity proof.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceProof {
    pub id: String,
    pub public_key: String,
    pub signature: String,
    pub signed_at: u64,
    pub nonce: String,
}

/// Credentials offered with `connect`. `Debug` never shows the values.
#[derive(Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectAuth {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_runtime_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_runtime_identity_token: Option<String>,
}

impl std::fmt::Debug for ConnectAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("ConnectAuth")
            .field("token", &shown(&self.token))
            .field("bootstrap_token", &shown(&self.bootstrap_token))
            .field("device_token", &shown(&self.device_token))
            .field("password", &shown(&self.password))
            .finish_non_exhaustive()
    }
}

/// Validated `connect` params.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectParams {
    pub min_protocol: u32,
    pub max_protocol: u32,
    pub client: ClientInfo,
    #[serde(default)]
    pub caps: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceProof>,
    #[serde(default)]
    pub auth: ConnectAuth,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// Validates and decodes `connect` params. The error is the full message of
/// the `INVALID_REQUEST` the reference sends ("invalid connect params: ...").
pub fn parse_connect_params(params: Option<&Value>) -> Result<ConnectParams, String> {
    let params = params.unwrap_or(&Value::Null);
    if let Some(problems) = schema::validate(params, &CONNECT_PARAMS) {
        return Err(format!("invalid connect params: {problems}"));
    }
    // Deserialized from the borrowed value: no copy of the whole tree.
    ConnectParams::deserialize(params).map_err(|e| format!("invalid connect params: {e}"))
}

/// A client role. Serialises as `"operator"` / `"node"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Operator,
    Node,
}

impl Role {
    /// Parses a role; only `operator` and `node` are accepted at connect.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "operator" => Some(Role::Operator),
            "node" => Some(Role::Node),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Node => "node",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ConnectParams {
    /// The requested role, `operator` when absent; `None` for anything else.
    pub fn role(&self) -> Option<Role> {
        Role::parse(self.role.as_deref().unwrap_or("operator"))
    }

    /// The requested scopes (`[]` when absent), in the order sent.
    pub fn requested_scopes(&self) -> &[String] {
        self.scopes.as_deref().unwrap_or(&[])
    }

    /// Whether the protocol range is acceptable for this client.
    pub fn protocol_accepted(&self) -> bool {
        let (min, max) = (self.min_protocol, self.max_protocol);
        if min <= PROTOCOL_VERSION && PROTOCOL_VERSION <= max {
            return true;
        }
        if self.client.mode == "probe"
            && max >= MIN_PROBE_PROTOCOL_VERSION
            && min <= PROTOCOL_VERSION
        {
            return true;
        }
        self.role.as_deref() == Some("node")
            && self.client.mode == "node"
            && min <= MIN_NODE_PROTOCOL_VERSION
            && MIN_NODE_PROTOCOL_VERSION <= max
    }

    /// The `details` of a `PROTOCOL_MISMATCH` error for this connect.
    pub fn protocol_mismatch_details(&self) -> Value {
        json!({
            "code": "PROTOCOL_MISMATCH",
            "clientMinProtocol": self.min_protocol,
            "clientMaxProtocol": self.max_protocol,
            "expectedProtocol": PROTOCOL_VERSION,
            "minimumProbeProtocol": MIN_PROBE_PROTOCOL_VERSION,
        })
    }

    /// What kind of client this is, for wording hints.
    pub fn client_kind(&self) -> ClientKind {
        ClientKind::of(&self.client)
    }
}

/// Client families that get different wording in auth errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// `client.mode == "cli"`.
    Cli,
    /// The browser Control UI, the browser copilot or the TUI.
    OperatorUi,
    /// Webchat clients.
    Webchat,
    /// Everything else (probes, native apps, nodes, tests).
    Other,
}

impl ClientKind {
    pub fn of(client: &ClientInfo) -> ClientKind {
        if client.mode == "cli" {
            ClientKind::Cli
        } else if matches!(
            client.id.as_str(),
            "openclaw-control-ui" | "openclaw-browser-copilot" | "openclaw-tui"
        ) {
            ClientKind::OperatorUi
        } else if client.mode == "webchat" || client.id == "webchat-ui" {
            ClientKind::Webchat
        } else {
            ClientKind::Other
        }
    }

    /// Browser UIs that must present a device identity.
    pub fn is_browser_ui(client: &ClientInfo) -> bool {
        matches!(
            client.id.as_str(),
            "openclaw-control-ui" | "openclaw-browser-copilot"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> Result<ConnectParams, String> {
        parse_connect_params(Some(&v))
    }

    #[test]
    fn reference_messages() {
        assert_eq!(
            params(json!({"foo":1,"minProtocol":"x"})).unwrap_err(),
            "invalid connect params: must have required property 'maxProtocol'; at root: unexpected property 'foo'; at /minProtocol: must be integer"
        );
        assert_eq!(
            params(json!({"minProtocol":4,"maxProtocol":4,"client":{"id":"bad","version":"","platform":"linux","mode":"cli"},"foo":2})).unwrap_err(),
            "invalid connect params: at root: unexpected property 'foo'; at /client/id: must be equal to one of the allowed values; at /client/version: must not have fewer than 1 characters"
        );
    }

    #[test]
    fn protocol_windows() {
        let base = |min: u32, max: u32, mode: &str, role: Option<&str>| {
            let mut v = json!({"minProtocol":min,"maxProtocol":max,"client":{"id":"cli","version":"1","platform":"linux","mode":mode}});
            if let Some(r) = role {
                v["role"] = json!(r);
            }
            params(v).unwrap().protocol_accepted()
        };
        assert!(base(4, 4, "cli", None));
        assert!(base(1, 9, "cli", None));
        assert!(!base(3, 3, "cli", None));
        assert!(!base(5, 5, "cli", None));
        assert!(base(3, 3, "probe", None));
        assert!(base(3, 3, "node", Some("node")));
        assert!(!base(3, 3, "node", None));
    }

    #[test]
    fn auth_debug_redacts() {
        let p = params(json!({"minProtocol":4,"maxProtocol":4,"client":{"id":"cli","version":"1","platform":"linux","mode":"cli"},"auth":{"token":"s3cret-value"}})).unwrap();
        assert!(!format!("{p:?}").contains("s3cret-value"));
    }
}
