//! `device.pair.*` and `device.token.*` results, and the paired-device and
//! pending-request records (`device.pair.list`, `device.pair.requested`).

use serde::{Deserialize, Serialize};

use super::Extra;
use crate::secret::{self, Secret};

/// A device's last known address as clients see it: loopback addresses
/// (the IPv4-mapped form included) are not shown (as in the reference).
pub fn shown_remote_ip(ip: Option<&str>) -> Option<String> {
    let ip = ip?;
    let loopback = ip
        .parse::<std::net::IpAddr>()
        .is_ok_and(crate::is_loopback_ip);
    (!loopback).then(|| ip.to_string())
}

/// A device token entry of a paired device (never the token itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub role: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub created_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at_ms: Option<u64>,
    #[serde(flatten, default)]
    pub extra: Extra,
}

impl TokenInfo {
    pub fn new(role: impl Into<String>, scopes: Vec<String>, created_at_ms: u64) -> Self {
        TokenInfo {
            role: role.into(),
            scopes,
            created_at_ms,
            rotated_at_ms: None,
            revoked_at_ms: None,
            last_used_at_ms: None,
            extra: Extra::new(),
        }
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked_at_ms.is_some()
    }
}

/// A paired device as clients see it (`device.pair.list`,
/// `device.pair.approve`): no token material, no approved-scope baseline
/// field beyond `scopes`; `connected` only in lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairedDevice {
    pub device_id: String,
    #[serde(default)]
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser_origin: Option<String>,
    /// Never a loopback address (see [`shown_remote_ip`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
    /// The first of `roles`; absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub approved_via: String,
    #[serde(default)]
    pub created_at_ms: u64,
    #[serde(default)]
    pub approved_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_reason: Option<String>,
    /// Whether a session of the device is live (`device.pair.list` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected: Option<bool>,
    #[serde(default)]
    pub tokens: Vec<TokenInfo>,
    #[serde(flatten, default)]
    pub extra: Extra,
}

impl PairedDevice {
    /// A device with its required fields; `role` is set from `roles`, every
    /// optional field is absent. Set those directly, and the address with
    /// [`PairedDevice::set_remote_ip`].
    pub fn new(
        device_id: impl Into<String>,
        public_key: impl Into<String>,
        roles: Vec<String>,
        scopes: Vec<String>,
        approved_via: impl Into<String>,
        created_at_ms: u64,
        approved_at_ms: u64,
    ) -> Self {
        PairedDevice {
            device_id: device_id.into(),
            public_key: public_key.into(),
            display_name: None,
            operator_label: None,
            platform: None,
            device_family: None,
            client_id: None,
            client_mode: None,
            browser_origin: None,
            remote_ip: None,
            role: roles.first().cloned(),
            roles,
            scopes,
            approved_via: approved_via.into(),
            created_at_ms,
            approved_at_ms,
            last_seen_at_ms: None,
            last_seen_reason: None,
            connected: None,
            tokens: Vec::new(),
            extra: Extra::new(),
        }
    }

    /// Sets `remoteIp`, leaving it out for loopback addresses.
    pub fn set_remote_ip(&mut self, ip: Option<&str>) {
        self.remote_ip = shown_remote_ip(ip);
    }

    /// The name to show: operator label, display name, client id, device id.
    pub fn name(&self) -> &str {
        self.operator_label
            .as_deref()
            .or(self.display_name.as_deref())
            .or(self.client_id.as_deref())
            .unwrap_or(&self.device_id)
    }
}

/// A pending pairing request as clients see it (`device.pair.list`,
/// `device.pair.requested`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingPairing {
    pub request_id: String,
    pub device_id: String,
    #[serde(default)]
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser_origin: Option<String>,
    /// Never a loopback address (see [`shown_remote_ip`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub silent: bool,
    #[serde(default)]
    pub is_repair: bool,
    /// Creation time.
    #[serde(default)]
    pub ts: u64,
    /// clawgate's short code for this request (`XXXX-XXXX`, see
    /// [`crate::pairing_code`]); an extra key after the reference's, absent
    /// from the reference gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairing_code: Option<String>,
    #[serde(flatten, default)]
    pub extra: Extra,
}

impl PendingPairing {
    /// A request with its required fields; every optional field is absent.
    /// Set those directly, and the address with
    /// [`PendingPairing::set_remote_ip`].
    pub fn new(
        request_id: impl Into<String>,
        device_id: impl Into<String>,
        public_key: impl Into<String>,
        role: impl Into<String>,
        roles: Vec<String>,
        scopes: Vec<String>,
        ts: u64,
    ) -> Self {
        PendingPairing {
            request_id: request_id.into(),
            device_id: device_id.into(),
            public_key: public_key.into(),
            display_name: None,
            platform: None,
            device_family: None,
            client_id: None,
            client_mode: None,
            browser_origin: None,
            remote_ip: None,
            role: role.into(),
            roles,
            scopes,
            silent: false,
            is_repair: false,
            ts,
            pairing_code: None,
            extra: Extra::new(),
        }
    }

    /// Sets `remoteIp`, leaving it out for loopback addresses.
    pub fn set_remote_ip(&mut self, ip: Option<&str>) {
        self.remote_ip = shown_remote_ip(ip);
    }

    /// The name to show: display name, client id, device id.
    pub fn name(&self) -> &str {
        self.display_name
            .as_deref()
            .or(self.client_id.as_deref())
            .unwrap_or(&self.device_id)
    }
}

/// The params of `device.pair.approve` and `device.pair.reject`: exactly
/// one of `requestId` (the reference's) and `code` (clawgate's short
/// pairing code, any case, dash optional). One definition for the gateway
/// (via [`PAIR_DECISION_SCHEMA`] and [`PairDecisionParams::target`]), the
/// client library, the CLI and the UI fixtures.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairDecisionParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// The closed params schema of [`PairDecisionParams`]; "exactly one" is
/// checked by [`PairDecisionParams::target`].
pub static PAIR_DECISION_SCHEMA: crate::schema::Schema = crate::schema::Schema::Object(&[
    crate::schema::Prop::optional("requestId", crate::schema::NON_EMPTY),
    crate::schema::Prop::optional("code", crate::schema::NON_EMPTY),
]);

/// What a [`PairDecisionParams`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairTarget {
    RequestId(String),
    /// As typed (trimmed); the gateway normalises it.
    Code(String),
}

impl PairDecisionParams {
    /// By request id.
    pub fn request_id(id: impl Into<String>) -> Self {
        PairDecisionParams {
            request_id: Some(id.into()),
            code: None,
        }
    }

    /// By pairing code.
    pub fn code(code: impl Into<String>) -> Self {
        PairDecisionParams {
            request_id: None,
            code: Some(code.into()),
        }
    }

    /// What an operator typed: a pairing code when it has a code's shape
    /// (any case, dash optional), a request id otherwise.
    pub fn from_input(input: &str) -> Self {
        let input = input.trim();
        if crate::pairing_code::looks_like_code(input) {
            Self::code(input)
        } else {
            Self::request_id(input)
        }
    }

    /// The one target, or the schema-style problem: neither is the
    /// reference's missing-`requestId` message, both is refused.
    pub fn target(&self) -> Result<PairTarget, String> {
        match (&self.request_id, &self.code) {
            (Some(id), None) => Ok(PairTarget::RequestId(id.trim().to_string())),
            (None, Some(code)) => Ok(PairTarget::Code(code.trim().to_string())),
            (None, None) => Err("must have required property 'requestId'".into()),
            (Some(_), Some(_)) => Err("must have exactly one of 'requestId' or 'code'".into()),
        }
    }
}

/// `device.pair.list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PairList {
    #[serde(default)]
    pub pending: Vec<PendingPairing>,
    #[serde(default)]
    pub paired: Vec<PairedDevice>,
}

/// `device.pair.approve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairApproved {
    pub request_id: String,
    pub device: PairedDevice,
}

/// `device.pair.reject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairRejected {
    pub request_id: String,
    #[serde(default)]
    pub device_id: String,
}

/// `device.pair.remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairRemoved {
    pub device_id: String,
}

/// `device.pair.rename`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairRenamed {
    pub device_id: String,
    #[serde(default)]
    pub label: String,
}

/// How a rotated token reached (or did not reach) its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenDelivery {
    /// In this reply: the device rotated its own token over its own session.
    InBand,
    /// Not sent: the device gets a token the next time it connects with the
    /// shared secret.
    WithheldCrossDevice,
}

impl TokenDelivery {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenDelivery::InBand => "in-band",
            TokenDelivery::WithheldCrossDevice => "withheld-cross-device",
        }
    }
}

/// `device.token.rotate`. `token` is present only in band (a device
/// rotating its own token over its own session).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRotated {
    pub device_id: String,
    pub role: String,
    #[serde(
        default,
        serialize_with = "secret::expose_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub token: Option<Secret>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub rotated_at_ms: u64,
    pub token_delivery: TokenDelivery,
}

impl TokenRotated {
    /// The reply; `token` is `Some` only in band, and `tokenDelivery`
    /// follows from it.
    pub fn new(
        device_id: impl Into<String>,
        role: impl Into<String>,
        token: Option<Secret>,
        scopes: Vec<String>,
        rotated_at_ms: u64,
    ) -> Self {
        let token_delivery = if token.is_some() {
            TokenDelivery::InBand
        } else {
            TokenDelivery::WithheldCrossDevice
        };
        TokenRotated {
            device_id: device_id.into(),
            role: role.into(),
            token,
            scopes,
            rotated_at_ms,
            token_delivery,
        }
    }
}

/// `device.token.revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRevoked {
    pub device_id: String,
    pub role: String,
    #[serde(default)]
    pub revoked_at_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn keys(v: &Value) -> Vec<&str> {
        v.as_object().unwrap().keys().map(String::as_str).collect()
    }

    fn full_device() -> PairedDevice {
        let mut d = PairedDevice::new(
            "d1",
            "pk",
            vec!["operator".into(), "node".into()],
            vec!["operator.read".into()],
            "owner",
            1,
            2,
        );
        d.display_name = Some("Laptop".into());
        d.operator_label = Some("mine".into());
        d.platform = Some("linux".into());
        d.device_family = Some("desktop".into());
        d.client_id = Some("cli".into());
        d.client_mode = Some("cli".into());
        d.browser_origin = Some("http://x".into());
        d.set_remote_ip(Some("10.0.0.2"));
        d.last_seen_at_ms = Some(3);
        d.last_seen_reason = Some("connect".into());
        d.connected = Some(true);
        let mut t = TokenInfo::new("operator", vec!["operator.read".into()], 1);
        t.rotated_at_ms = Some(4);
        t.revoked_at_ms = Some(5);
        t.last_used_at_ms = Some(6);
        d.tokens.push(t);
        d
    }

    #[test]
    fn paired_device_order_and_omissions() {
        let v = serde_json::to_value(full_device()).unwrap();
        assert_eq!(
            keys(&v),
            [
                "deviceId",
                "publicKey",
                "displayName",
                "operatorLabel",
                "platform",
                "deviceFamily",
                "clientId",
                "clientMode",
                "browserOrigin",
                "remoteIp",
                "role",
                "roles",
                "scopes",
                "approvedVia",
                "createdAtMs",
                "approvedAtMs",
                "lastSeenAtMs",
                "lastSeenReason",
                "connected",
                "tokens"
            ]
        );
        assert_eq!(v["role"], "operator");
        assert_eq!(
            keys(&v["tokens"][0]),
            [
                "role",
                "scopes",
                "createdAtMs",
                "rotatedAtMs",
                "revokedAtMs",
                "lastUsedAtMs"
            ]
        );
        let back: PairedDevice = serde_json::from_value(v).unwrap();
        assert_eq!(back, full_device());

        let mut bare = PairedDevice::new("d2", "pk", vec![], vec![], "silent", 1, 1);
        bare.set_remote_ip(Some("127.0.0.1"));
        let v = serde_json::to_value(&bare).unwrap();
        assert_eq!(
            v,
            json!({"deviceId": "d2", "publicKey": "pk", "roles": [], "scopes": [],
                   "approvedVia": "silent", "createdAtMs": 1, "approvedAtMs": 1, "tokens": []})
        );
        assert_eq!(serde_json::from_value::<PairedDevice>(v).unwrap(), bare);
    }

    #[test]
    fn pending_order_and_loopback() {
        let mut p = PendingPairing::new(
            "r1",
            "d1",
            "pk",
            "operator",
            vec!["operator".into()],
            vec![],
            9,
        );
        p.set_remote_ip(Some("::1"));
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            keys(&v),
            [
                "requestId",
                "deviceId",
                "publicKey",
                "role",
                "roles",
                "scopes",
                "silent",
                "isRepair",
                "ts"
            ]
        );
        p.display_name = Some("Phone".into());
        p.set_remote_ip(Some("192.168.1.4"));
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["remoteIp"], "192.168.1.4");
        assert_eq!(keys(&v)[3..5], ["displayName", "remoteIp"]);
        assert_eq!(serde_json::from_value::<PendingPairing>(v).unwrap(), p);
        // The code is an extra key after every reference key.
        p.pairing_code = Some("BCDF-GHJK".into());
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(*keys(&v).last().unwrap(), "pairingCode");
        assert_eq!(v["pairingCode"], "BCDF-GHJK");
    }

    #[test]
    fn decision_params_name_exactly_one_request() {
        let by_code = PairDecisionParams::from_input(" bcdfghjk ");
        assert_eq!(
            serde_json::to_value(&by_code).unwrap(),
            json!({"code": "bcdfghjk"})
        );
        assert_eq!(by_code.target(), Ok(PairTarget::Code("bcdfghjk".into())));
        let by_id = PairDecisionParams::from_input("45565c50-6178-4690-9cbe-8dfc1449e4a7");
        assert_eq!(
            serde_json::to_value(&by_id).unwrap(),
            json!({"requestId": "45565c50-6178-4690-9cbe-8dfc1449e4a7"})
        );
        assert!(
            PairDecisionParams::default()
                .target()
                .unwrap_err()
                .contains("'requestId'")
        );
        let both = PairDecisionParams {
            request_id: Some("r".into()),
            code: Some("BCDF-GHJK".into()),
        };
        assert!(both.target().unwrap_err().contains("exactly one"));
        assert!(
            crate::schema::validate(&json!({"code": "x", "other": 1}), &PAIR_DECISION_SCHEMA)
                .is_some()
        );
        assert!(crate::schema::validate(&json!({"code": "x"}), &PAIR_DECISION_SCHEMA).is_none());
    }

    #[test]
    fn unknown_fields_are_kept_and_missing_ones_default() {
        let list: PairList = serde_json::from_value(json!({
            "pending": [{"requestId": "r1", "deviceId": "d1", "roles": ["operator"], "scopes": [], "ts": 5, "future": 1}],
            "paired": [{"deviceId": "d2", "displayName": "Laptop", "tokens": [{"role": "operator", "scopes": ["operator.read"]}]}],
        }))
        .unwrap();
        assert_eq!(list.pending[0].extra["future"], 1);
        assert_eq!(list.paired[0].name(), "Laptop");
        assert_eq!(list.paired[0].tokens[0].created_at_ms, 0);
        let again = serde_json::to_value(&list).unwrap();
        assert_eq!(again["pending"][0]["future"], 1);
    }

    #[test]
    fn rotate_reply_carries_the_token_only_in_band() {
        let in_band = TokenRotated::new(
            "d",
            "operator",
            Some(Secret::new("SECRET-VALUE")),
            vec![],
            7,
        );
        let v = serde_json::to_value(&in_band).unwrap();
        assert_eq!(
            keys(&v),
            [
                "deviceId",
                "role",
                "token",
                "scopes",
                "rotatedAtMs",
                "tokenDelivery"
            ]
        );
        assert_eq!(v["tokenDelivery"], "in-band");
        assert!(!format!("{in_band:?}").contains("SECRET-VALUE"));
        let back: TokenRotated = serde_json::from_value(v).unwrap();
        assert_eq!(back.token.as_ref().unwrap().expose(), "SECRET-VALUE");

        let withheld = TokenRotated::new("d", "operator", None, vec!["operator.read".into()], 7);
        assert_eq!(
            serde_json::to_value(&withheld).unwrap(),
            json!({"deviceId": "d", "role": "operator", "scopes": ["operator.read"],
                   "rotatedAtMs": 7, "tokenDelivery": "withheld-cross-device"})
        );
    }

    #[test]
    fn small_results() {
        let v = serde_json::to_value(PairRejected {
            request_id: "r".into(),
            device_id: "d".into(),
        })
        .unwrap();
        assert_eq!(v.to_string(), r#"{"requestId":"r","deviceId":"d"}"#);
        let v = serde_json::to_value(PairRenamed {
            device_id: "d".into(),
            label: "l".into(),
        })
        .unwrap();
        assert_eq!(v.to_string(), r#"{"deviceId":"d","label":"l"}"#);
        let v = serde_json::to_value(TokenRevoked {
            device_id: "d".into(),
            role: "operator".into(),
            revoked_at_ms: 3,
        })
        .unwrap();
        assert_eq!(
            v.to_string(),
            r#"{"deviceId":"d","role":"operator","revokedAtMs":3}"#
        );
        let v = serde_json::to_value(PairRemoved {
            device_id: "d".into(),
        })
        .unwrap();
        assert_eq!(v.to_string(), r#"{"deviceId":"d"}"#);
    }
}
