//! Typed requests for the methods clawgate serves. Every result type keeps
//! fields it does not know in `extra`, so a newer gateway adds fields
//! without breaking older clients.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{Client, ClientError};

/// `health`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub ok: bool,
    #[serde(default)]
    pub ts: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `status` (the fields clients use; the rest stays in `extra`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(default)]
    pub runtime_version: Option<String>,
    #[serde(default)]
    pub pid: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A pending pairing request (`device.pair.list`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingRequest {
    pub request_id: String,
    pub device_id: String,
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub remote_ip: Option<String>,
    #[serde(default)]
    pub is_repair: bool,
    #[serde(default)]
    pub ts: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A device token entry of a paired device (never the token itself).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub role: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub created_at_ms: Option<u64>,
    #[serde(default)]
    pub rotated_at_ms: Option<u64>,
    #[serde(default)]
    pub revoked_at_ms: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A paired device (`device.pair.list`, `device.pair.approve`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PairedDevice {
    pub device_id: String,
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub operator_label: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub approved_via: Option<String>,
    #[serde(default)]
    pub last_seen_at_ms: Option<u64>,
    #[serde(default)]
    pub connected: Option<bool>,
    #[serde(default)]
    pub tokens: Vec<TokenInfo>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl PairedDevice {
    /// The name to show: operator label, display name, client id, device id.
    pub fn name(&self) -> &str {
        self.operator_label
            .as_deref()
            .or(self.display_name.as_deref())
            .or(self.client_id.as_deref())
            .unwrap_or(&self.device_id)
    }
}

/// `device.pair.list`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PairingList {
    #[serde(default)]
    pub pending: Vec<PendingRequest>,
    #[serde(default)]
    pub paired: Vec<PairedDevice>,
}

/// `device.pair.approve`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Approved {
    pub request_id: String,
    pub device: PairedDevice,
}

/// `device.token.rotate`. `token` is only present when a device rotates its
/// own token over its own session.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rotated {
    pub device_id: String,
    pub role: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub rotated_at_ms: Option<u64>,
    #[serde(default)]
    pub token_delivery: Option<String>,
    #[serde(default, skip_serializing, deserialize_with = "secret")]
    pub token: Option<clawgate_protocol::Secret>,
}

/// `device.token.revoke`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Revoked {
    pub device_id: String,
    pub role: String,
    #[serde(default)]
    pub revoked_at_ms: Option<u64>,
}

/// One audit row (`audit.list`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub seq: u64,
    pub ts: u64,
    pub action: String,
    #[serde(default)]
    pub actor: Option<Value>,
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub details: Option<Value>,
    #[serde(default)]
    pub hash: Option<String>,
}

/// `audit.list`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    #[serde(default)]
    pub entries: Vec<AuditEntry>,
    #[serde(default)]
    pub next_cursor: Option<u64>,
}

/// Filters for `audit.list`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

fn secret<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<clawgate_protocol::Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(clawgate_protocol::Secret::new))
}

fn decode<T: DeserializeOwned>(method: &str, v: Value) -> Result<T, ClientError> {
    serde_json::from_value(v)
        .map_err(|e| ClientError::Protocol(format!("unexpected {method} result: {e}")))
}

impl Client {
    async fn typed<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, ClientError> {
        decode(method, self.request(method, params).await?)
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.typed("health", json!({})).await
    }

    pub async fn status(&self) -> Result<Status, ClientError> {
        self.typed("status", json!({})).await
    }

    /// `system-presence`: the gateway itself, then connected clients.
    pub async fn system_presence(&self) -> Result<Vec<Value>, ClientError> {
        self.typed("system-presence", json!({})).await
    }

    pub async fn device_pair_list(&self) -> Result<PairingList, ClientError> {
        self.typed("device.pair.list", json!({})).await
    }

    pub async fn device_pair_approve(&self, request_id: &str) -> Result<Approved, ClientError> {
        self.typed("device.pair.approve", json!({"requestId": request_id}))
            .await
    }

    /// Returns the rejected request's device id.
    pub async fn device_pair_reject(&self, request_id: &str) -> Result<String, ClientError> {
        let v = self
            .request("device.pair.reject", json!({"requestId": request_id}))
            .await?;
        Ok(v["deviceId"].as_str().unwrap_or_default().to_string())
    }

    pub async fn device_pair_remove(&self, device_id: &str) -> Result<(), ClientError> {
        self.request("device.pair.remove", json!({"deviceId": device_id}))
            .await
            .map(|_| ())
    }

    pub async fn device_pair_rename(
        &self,
        device_id: &str,
        label: &str,
    ) -> Result<(), ClientError> {
        self.request(
            "device.pair.rename",
            json!({"deviceId": device_id, "label": label}),
        )
        .await
        .map(|_| ())
    }

    /// Issues a new token for (device, role); `scopes: None` keeps the
    /// current token's scopes.
    pub async fn device_token_rotate(
        &self,
        device_id: &str,
        role: &str,
        scopes: Option<&[&str]>,
    ) -> Result<Rotated, ClientError> {
        let mut params = json!({"deviceId": device_id, "role": role});
        if let Some(s) = scopes {
            params["scopes"] = json!(s);
        }
        self.typed("device.token.rotate", params).await
    }

    pub async fn device_token_revoke(
        &self,
        device_id: &str,
        role: &str,
    ) -> Result<Revoked, ClientError> {
        self.typed(
            "device.token.revoke",
            json!({"deviceId": device_id, "role": role}),
        )
        .await
    }

    pub async fn audit_list(&self, query: &AuditQuery) -> Result<AuditPage, ClientError> {
        self.typed(
            "audit.list",
            serde_json::to_value(query).expect("query serialises"),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_kept_and_tokens_never_serialised() {
        let list: PairingList = serde_json::from_value(json!({
            "pending": [{"requestId": "r1", "deviceId": "d1", "roles": ["operator"], "scopes": [], "ts": 5, "future": 1}],
            "paired": [{"deviceId": "d2", "displayName": "Laptop", "tokens": [{"role": "operator", "scopes": ["operator.read"]}]}],
        }))
        .unwrap();
        assert_eq!(list.pending[0].extra["future"], 1);
        assert_eq!(list.paired[0].name(), "Laptop");
        let rotated: Rotated = serde_json::from_value(json!({
            "deviceId": "d", "role": "operator", "token": "SECRET-VALUE", "tokenDelivery": "in-band"
        }))
        .unwrap();
        assert_eq!(rotated.token.as_ref().unwrap().expose(), "SECRET-VALUE");
        let shown = serde_json::to_string(&rotated).unwrap();
        assert!(!shown.contains("SECRET-VALUE"), "{shown}");
        assert!(!format!("{rotated:?}").contains("SECRET-VALUE"));
    }
}
