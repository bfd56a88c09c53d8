//! Typed requests for the methods clawgate serves. The device, pairing,
//! token, audit and presence results are `clawgate_protocol::wire` types,
//! the definitions the gateway serialises; records (and `health`, `status`)
//! keep fields they do not know in `extra`, so a newer gateway adds fields
//! without breaking older clients.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{Client, ClientError};

/// The params object of a decision (plain fields: serializing cannot fail).
fn params_json(target: &PairDecisionParams) -> Value {
    serde_json::to_value(target).unwrap_or_else(|_| json!({}))
}

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

// The result shapes are the protocol crate's, the same definitions the
// gateway serialises.
pub use clawgate_protocol::wire::{
    AuditAction, AuditEntry, AuditList, PairApproved, PairDecisionParams, PairList, PairRejected,
    PairRemoved, PairRenamed, PairedDevice, PendingPairing, PresenceEntry, TokenDelivery,
    TokenInfo, TokenRevoked, TokenRotated,
};

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
    pub async fn system_presence(&self) -> Result<Vec<PresenceEntry>, ClientError> {
        self.typed("system-presence", json!({})).await
    }

    pub async fn device_pair_list(&self) -> Result<PairList, ClientError> {
        self.typed("device.pair.list", json!({})).await
    }

    pub async fn device_pair_approve(&self, request_id: &str) -> Result<PairApproved, ClientError> {
        self.device_pair_approve_by(PairDecisionParams::request_id(request_id))
            .await
    }

    pub async fn device_pair_reject(&self, request_id: &str) -> Result<PairRejected, ClientError> {
        self.device_pair_reject_by(PairDecisionParams::request_id(request_id))
            .await
    }

    /// `device.pair.approve` by request id or, on clawgate, by pairing code
    /// ([`PairDecisionParams::code`], [`PairDecisionParams::from_input`]).
    pub async fn device_pair_approve_by(
        &self,
        target: PairDecisionParams,
    ) -> Result<PairApproved, ClientError> {
        self.typed("device.pair.approve", params_json(&target))
            .await
    }

    /// `device.pair.reject` by request id or pairing code.
    pub async fn device_pair_reject_by(
        &self,
        target: PairDecisionParams,
    ) -> Result<PairRejected, ClientError> {
        self.typed("device.pair.reject", params_json(&target)).await
    }

    pub async fn device_pair_remove(&self, device_id: &str) -> Result<PairRemoved, ClientError> {
        self.typed("device.pair.remove", json!({"deviceId": device_id}))
            .await
    }

    pub async fn device_pair_rename(
        &self,
        device_id: &str,
        label: &str,
    ) -> Result<PairRenamed, ClientError> {
        self.typed(
            "device.pair.rename",
            json!({"deviceId": device_id, "label": label}),
        )
        .await
    }

    /// Issues a new token for (device, role); `scopes: None` keeps the
    /// current token's scopes.
    pub async fn device_token_rotate(
        &self,
        device_id: &str,
        role: &str,
        scopes: Option<&[&str]>,
    ) -> Result<TokenRotated, ClientError> {
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
    ) -> Result<TokenRevoked, ClientError> {
        self.typed(
            "device.token.revoke",
            json!({"deviceId": device_id, "role": role}),
        )
        .await
    }

    pub async fn audit_list(&self, query: &AuditQuery) -> Result<AuditList, ClientError> {
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
    fn results_decode_into_the_protocol_types_and_tokens_stay_redacted() {
        let list: PairList = decode(
            "device.pair.list",
            json!({
                "pending": [{"requestId": "r1", "deviceId": "d1", "roles": ["operator"], "scopes": [], "ts": 5, "future": 1}],
                "paired": [{"deviceId": "d2", "displayName": "Laptop", "tokens": [{"role": "operator", "scopes": ["operator.read"]}]}],
            }),
        )
        .unwrap();
        assert_eq!(list.pending[0].extra["future"], 1);
        assert_eq!(list.paired[0].name(), "Laptop");
        let rotated: TokenRotated = decode(
            "device.token.rotate",
            json!({"deviceId": "d", "role": "operator", "token": "SECRET-VALUE", "tokenDelivery": "in-band"}),
        )
        .unwrap();
        assert_eq!(rotated.token.as_ref().unwrap().expose(), "SECRET-VALUE");
        assert_eq!(rotated.token_delivery, TokenDelivery::InBand);
        assert!(!format!("{rotated:?}").contains("SECRET-VALUE"));
        let err = decode::<PairList>("device.pair.list", json!({"pending": 1})).unwrap_err();
        assert!(
            err.to_string()
                .contains("unexpected device.pair.list result"),
            "{err}"
        );
    }
}
