//! clawgate's passkeys (WebAuthn) for the Control UI: the records
//! `passkey.list` returns, and the bodies of the pre-auth sign-in endpoints
//! (`POST <base>api/passkeys/options|signin`). docs/passkeys.md has the
//! whole contract. The WebAuthn JSON itself (creation and request options,
//! the browser's `toJSON()` of a credential) passes through as
//! `serde_json::Value` here and is parsed strictly by the gateway.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::secret::{self, Secret};

/// The text a browser's device key signs to bind a passkey sign-in to
/// itself: `clawgate-passkey-signin|v1|<device id>|<challenge>|<signedAt>`.
pub fn signin_payload(device_id: &str, challenge: &str, signed_at_ms: u64) -> String {
    format!("clawgate-passkey-signin|v1|{device_id}|{challenge}|{signed_at_ms}")
}

/// A registered passkey as lists show it: nothing secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasskeyInfo {
    /// The credential id, base64url.
    pub id: String,
    pub label: String,
    /// What a sign-in with it grants (operator role).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The host name it is bound to.
    pub rp_id: String,
    #[serde(default)]
    pub created_at_ms: u64,
    /// Who registered it: a device id, or `shared-secret`.
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub last_used_at_ms: Option<u64>,
    #[serde(default)]
    pub sign_count: u32,
    /// Set when a sign-in showed the authenticator's counter going
    /// backwards (a cloned authenticator); sign-ins stay refused.
    #[serde(default)]
    pub flagged_at_ms: Option<u64>,
    #[serde(default)]
    pub flagged_reason: Option<String>,
}

/// `passkey.list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasskeyList {
    #[serde(default)]
    pub passkeys: Vec<PasskeyInfo>,
}

/// `passkey.remove`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasskeyRemoved {
    pub removed: bool,
    pub id: String,
}

/// A browser's device identity as the sign-in endpoints take it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SigninDevice {
    /// Hex SHA-256 of the raw public key.
    pub id: String,
    /// Raw Ed25519 public key, base64url.
    pub public_key: String,
    /// Base64url Ed25519 signature over [`signin_payload`] (sign-in only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_at: Option<u64>,
}

/// `POST api/passkeys/options`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigninOptionsRequest {
    pub device: SigninDevice,
}

/// `POST api/passkeys/signin`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigninRequest {
    /// The browser's `PublicKeyCredential.toJSON()` of the assertion.
    pub credential: Value,
    pub device: SigninDevice,
}

/// The passkey a sign-in used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigninPasskey {
    pub id: String,
    pub label: String,
}

/// A successful sign-in: the browser's device is approved and this is its
/// device token (the only time it is sent).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SigninOk {
    pub ok: bool,
    pub device_id: String,
    pub role: String,
    pub scopes: Vec<String>,
    #[serde(serialize_with = "secret::expose_one")]
    pub device_token: Secret,
    pub passkey: SigninPasskey,
}
