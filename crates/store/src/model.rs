//! What the store keeps. Plain data: no SQL, no locking.
//!
//! Field names serialise in camelCase, matching the OpenClaw wire records
//! (`deviceId`, `approvedAtMs`, ...). Token strings never appear here: a
//! device token exists in the store only as its SHA-256 ([`TokenHash`]).

use serde::{Deserialize, Serialize};

/// An approved (paired) device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// 64 lowercase hex characters (SHA-256 of the public key).
    pub device_id: String,
    /// Raw 32-byte Ed25519 key, base64url without padding.
    pub public_key: String,
    pub display_name: Option<String>,
    pub operator_label: Option<String>,
    pub platform: Option<String>,
    pub device_family: Option<String>,
    pub client_id: Option<String>,
    pub client_mode: Option<String>,
    pub browser_origin: Option<String>,
    /// Approved roles.
    pub roles: Vec<String>,
    /// Approved scope baseline.
    pub scopes: Vec<String>,
    pub remote_ip: Option<String>,
    /// `"owner"`, `"silent"`, ...
    pub approved_via: String,
    pub created_at_ms: u64,
    pub approved_at_ms: u64,
    pub last_seen_at_ms: Option<u64>,
    pub last_seen_reason: Option<String>,
}

/// When and from where a device was last seen (the fields a routine
/// connect refreshes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub at_ms: u64,
    pub reason: Option<String>,
    pub remote_ip: Option<String>,
}

/// The per-(device, role) token entry. The token strings themselves are
/// never stored; see [`TokenHash`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleToken {
    pub device_id: String,
    pub role: String,
    pub scopes: Vec<String>,
    pub created_at_ms: u64,
    pub rotated_at_ms: Option<u64>,
    pub revoked_at_ms: Option<u64>,
    pub last_used_at_ms: Option<u64>,
}

/// One issued device token, kept only as the SHA-256 of its string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenHash {
    /// SHA-256 of the token string; serialised as lowercase hex.
    #[serde(with = "hex32")]
    pub hash: [u8; 32],
    pub device_id: String,
    pub role: String,
    /// Scopes this token string was issued for.
    pub scopes: Vec<String>,
    pub issued_at_ms: u64,
}

/// A pairing request waiting for an operator (or about to be approved
/// silently).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingRequest {
    pub request_id: String,
    pub device_id: String,
    pub public_key: String,
    pub display_name: Option<String>,
    pub platform: Option<String>,
    pub device_family: Option<String>,
    pub client_id: Option<String>,
    pub client_mode: Option<String>,
    pub browser_origin: Option<String>,
    pub remote_ip: Option<String>,
    pub role: String,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    /// `not-paired` | `role-upgrade` | `scope-upgrade` | `metadata-upgrade`.
    pub reason: String,
    pub silent: bool,
    pub is_repair: bool,
    /// Creation time.
    pub ts: u64,
    pub refreshed_at_ms: u64,
    /// The short code operators approve it by (`XXXX-XXXX`), unique among
    /// pending requests; `None` only for requests stored before schema 2.
    #[serde(default)]
    pub pairing_code: Option<String>,
}

/// A setup code: a single-use bootstrap token bound to one role and its
/// scopes. The token string is never stored, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetupCode {
    /// Non-secret handle (a UUID) for lists and revocation.
    pub setup_id: String,
    /// SHA-256 of the bootstrap token; never shown.
    #[serde(skip)]
    pub token_hash: [u8; 32],
    pub role: String,
    pub scopes: Vec<String>,
    pub label: Option<String>,
    /// Who minted it (a device id, or `shared-secret`).
    pub created_by: Option<String>,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub used_at_ms: Option<u64>,
    pub used_by_device_id: Option<String>,
    pub revoked_at_ms: Option<u64>,
}

impl SetupCode {
    /// `live`, `used`, `revoked` or `expired` at `now_ms`.
    pub fn state(&self, now_ms: u64) -> &'static str {
        if self.used_at_ms.is_some() {
            "used"
        } else if self.revoked_at_ms.is_some() {
            "revoked"
        } else if self.expires_at_ms <= now_ms {
            "expired"
        } else {
            "live"
        }
    }
}

/// A registered passkey (WebAuthn credential) that signs browsers in as
/// operators with `scopes`. The public key and the authenticator state are
/// the WebAuthn library's encodings, opaque to the store; nothing here is
/// secret, but only `clawgate-gateway` interprets them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passkey {
    /// The credential id, base64url (unique).
    pub credential_id: String,
    /// The WebAuthn user handle it was created for, base64url.
    pub user_handle: String,
    pub label: String,
    /// The host name (WebAuthn RP id) it is bound to.
    pub rp_id: String,
    pub scopes: Vec<String>,
    /// The credential's public key (encoded static state).
    pub public_key: Vec<u8>,
    /// The authenticator's dynamic state (sign count, flags), encoded.
    pub state: Vec<u8>,
    pub sign_count: u32,
    /// Who registered it (a device id, or `shared-secret`).
    pub created_by: Option<String>,
    pub created_at_ms: u64,
    pub last_used_at_ms: Option<u64>,
    /// Set when a sign-in showed the counter going backwards.
    pub flagged_at_ms: Option<u64>,
    pub flagged_reason: Option<String>,
}

/// An audit entry as a caller appends it. `actor` says who acted
/// (connection, device, IP) and, like `details`, never holds a secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub ts_ms: u64,
    /// e.g. `pairing.requested`, `pairing.approved`, `token.rotated`,
    /// `auth.failure`, `auth.lockout`, `auth.secret_changed`.
    pub action: String,
    pub actor: serde_json::Value,
    pub device_id: Option<String>,
    pub details: serde_json::Value,
}

/// An audit entry as stored: the record plus its place in the hash chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRow {
    pub seq: u64,
    pub ts_ms: u64,
    pub action: String,
    pub actor: serde_json::Value,
    pub device_id: Option<String>,
    pub details: serde_json::Value,
    /// Hex; 64 zeros for the first row.
    pub prev_hash: String,
    /// Hex SHA-256 over `prev_hash` and the canonical encoding of the row.
    pub hash: String,
}

/// A filter over the audit log. Results ascend by `seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AuditQuery {
    pub action: Option<String>,
    pub device_id: Option<String>,
    /// Inclusive lower bound on `ts_ms`.
    pub since_ms: Option<u64>,
    /// Inclusive upper bound on `ts_ms`.
    pub until_ms: Option<u64>,
    /// Only rows with `seq` greater than this (the previous page's cursor).
    pub after_seq: Option<u64>,
    /// Page size; 0 means the default (100), values above 1000 are capped.
    pub limit: usize,
}

impl AuditQuery {
    pub const DEFAULT_LIMIT: usize = 100;
    pub const MAX_LIMIT: usize = 1000;

    /// The page size actually used.
    pub fn effective_limit(&self) -> usize {
        match self.limit {
            0 => Self::DEFAULT_LIMIT,
            n => n.min(Self::MAX_LIMIT),
        }
    }
}

impl Default for AuditQuery {
    fn default() -> Self {
        AuditQuery {
            action: None,
            device_id: None,
            since_ms: None,
            until_ms: None,
            after_seq: None,
            limit: Self::DEFAULT_LIMIT,
        }
    }
}

/// One page of audit rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub rows: Vec<AuditRow>,
    /// The last returned `seq` when more rows match; pass it as `after_seq`.
    pub next_cursor: Option<u64>,
}

/// The outcome of walking the whole audit chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditVerification {
    /// Rows read.
    pub rows: u64,
    pub ok: bool,
    /// The first `seq` that is missing or does not verify.
    pub first_bad_seq: Option<u64>,
    pub problem: Option<String>,
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&clawgate_protocol::hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        clawgate_protocol::hex::decode32(&text)
            .ok_or_else(|| D::Error::custom("expected 64 hex characters"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_serialises_hash_as_hex() {
        let t = TokenHash {
            hash: [0xab; 32],
            device_id: "d".into(),
            role: "operator".into(),
            scopes: vec!["operator.read".into()],
            issued_at_ms: 7,
        };
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["hash"], "ab".repeat(32));
        assert_eq!(v["issuedAtMs"], 7);
        let back: TokenHash = serde_json::from_value(v).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn audit_query_limits() {
        assert_eq!(AuditQuery::default().effective_limit(), 100);
        let q = |limit| AuditQuery {
            limit,
            ..AuditQuery::default()
        };
        assert_eq!(q(0).effective_limit(), 100);
        assert_eq!(q(5).effective_limit(), 5);
        assert_eq!(q(5000).effective_limit(), 1000);
    }
}
