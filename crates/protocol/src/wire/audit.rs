//! `audit.list`: the audit log as clients see it, and the action names the
//! gateway and the CLI write.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What an audit row records. Serialises as the dotted action string; an
/// action this version does not know (a newer gateway, a test row) is kept
/// as [`AuditAction::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// `auth.failure`: a refused connect (shared secret or device token).
    AuthFailure,
    /// `auth.lockout`: the failed-auth limiter locked a peer out.
    AuthLockout,
    /// `auth.secret_changed`: the shared token or password changed.
    AuthSecretChanged,
    /// `auth.attack_started`: shared-secret failures across all peers
    /// spent the global budget; new peers' shared-secret attempts are
    /// refused until the episode cools down.
    AuthAttackStarted,
    /// `auth.attack_ended`: the episode cooled down (with its counts).
    AuthAttackEnded,
    /// `pairing.requested`.
    PairingRequested,
    /// `pairing.approved` (by an operator).
    PairingApproved,
    /// `pairing.silent_approved` (local auto-approval).
    PairingSilentApproved,
    /// `pairing.rejected`.
    PairingRejected,
    /// `pairing.superseded`: a newer request replaced a pending one.
    PairingSuperseded,
    /// `pairing.updated`: a device asked again for the same role with a
    /// different ask; its pending request (same id and code) now shows it.
    PairingUpdated,
    /// `pairing.code_unknown`: an operator named a pairing code no pending
    /// request has.
    PairingCodeUnknown,
    /// `pairing.code_limited`: a connection named too many unknown codes
    /// and is refused code lookups for a while.
    PairingCodeLimited,
    /// `device.removed`.
    DeviceRemoved,
    /// `device.renamed`.
    DeviceRenamed,
    /// `token.rotated`.
    TokenRotated,
    /// `token.revoked`.
    TokenRevoked,
    /// `upstream.admin_call`: fronting mode relayed a call that uses
    /// `operator.admin` on the upstream (method, client device).
    UpstreamAdminCall,
    /// `setup_code.created`: an admin minted a setup code (bootstrap token).
    SetupCodeCreated,
    /// `setup_code.redeemed`: a device paired with a setup code.
    SetupCodeRedeemed,
    /// `setup_code.rejected`: a connect presented a bootstrap token that was
    /// unknown, expired, used, revoked or for another role or scopes.
    SetupCodeRejected,
    /// `setup_code.revoked`.
    SetupCodeRevoked,
    /// `passkey.registered`: an operator registered a passkey (label, scopes).
    PasskeyRegistered,
    /// `passkey.removed`.
    PasskeyRemoved,
    /// `passkey.signin`: a browser signed in with a passkey; its device was
    /// approved with the passkey's scopes.
    PasskeySignin,
    /// `passkey.refused`: a passkey registration or sign-in was refused
    /// (reason in details; a sign count that went backwards flags the passkey).
    PasskeyRefused,
    /// Any other action string.
    Other(String),
}

impl AuditAction {
    /// Every action clawgate writes.
    pub const KNOWN: [AuditAction; 26] = [
        AuditAction::AuthFailure,
        AuditAction::AuthLockout,
        AuditAction::AuthSecretChanged,
        AuditAction::AuthAttackStarted,
        AuditAction::AuthAttackEnded,
        AuditAction::PairingRequested,
        AuditAction::PairingApproved,
        AuditAction::PairingSilentApproved,
        AuditAction::PairingRejected,
        AuditAction::PairingSuperseded,
        AuditAction::PairingUpdated,
        AuditAction::PairingCodeUnknown,
        AuditAction::PairingCodeLimited,
        AuditAction::DeviceRemoved,
        AuditAction::DeviceRenamed,
        AuditAction::TokenRotated,
        AuditAction::TokenRevoked,
        AuditAction::UpstreamAdminCall,
        AuditAction::SetupCodeCreated,
        AuditAction::SetupCodeRedeemed,
        AuditAction::SetupCodeRejected,
        AuditAction::SetupCodeRevoked,
        AuditAction::PasskeyRegistered,
        AuditAction::PasskeyRemoved,
        AuditAction::PasskeySignin,
        AuditAction::PasskeyRefused,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            AuditAction::AuthFailure => "auth.failure",
            AuditAction::AuthLockout => "auth.lockout",
            AuditAction::AuthSecretChanged => "auth.secret_changed",
            AuditAction::AuthAttackStarted => "auth.attack_started",
            AuditAction::AuthAttackEnded => "auth.attack_ended",
            AuditAction::PairingRequested => "pairing.requested",
            AuditAction::PairingApproved => "pairing.approved",
            AuditAction::PairingSilentApproved => "pairing.silent_approved",
            AuditAction::PairingRejected => "pairing.rejected",
            AuditAction::PairingSuperseded => "pairing.superseded",
            AuditAction::PairingUpdated => "pairing.updated",
            AuditAction::PairingCodeUnknown => "pairing.code_unknown",
            AuditAction::PairingCodeLimited => "pairing.code_limited",
            AuditAction::DeviceRemoved => "device.removed",
            AuditAction::DeviceRenamed => "device.renamed",
            AuditAction::TokenRotated => "token.rotated",
            AuditAction::TokenRevoked => "token.revoked",
            AuditAction::UpstreamAdminCall => "upstream.admin_call",
            AuditAction::SetupCodeCreated => "setup_code.created",
            AuditAction::SetupCodeRedeemed => "setup_code.redeemed",
            AuditAction::SetupCodeRejected => "setup_code.rejected",
            AuditAction::SetupCodeRevoked => "setup_code.revoked",
            AuditAction::PasskeyRegistered => "passkey.registered",
            AuditAction::PasskeyRemoved => "passkey.removed",
            AuditAction::PasskeySignin => "passkey.signin",
            AuditAction::PasskeyRefused => "passkey.refused",
            AuditAction::Other(s) => s,
        }
    }

    /// The action for `s`; unknown strings become [`AuditAction::Other`].
    pub fn parse(s: &str) -> AuditAction {
        Self::KNOWN
            .into_iter()
            .find(|a| a.as_str() == s)
            .unwrap_or_else(|| AuditAction::Other(s.to_string()))
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for AuditAction {
    fn from(s: &str) -> Self {
        AuditAction::parse(s)
    }
}

impl Serialize for AuditAction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AuditAction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| AuditAction::parse(&s))
    }
}

/// One audit row (`audit.list`). `deviceId` is `null` (not left out) when
/// the row is about no device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub seq: u64,
    pub ts: u64,
    pub action: AuditAction,
    /// Who acted (`{kind: "session"|"peer"|"host", ...}`); never a secret.
    #[serde(default)]
    pub actor: Value,
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub details: Value,
    /// Hex SHA-256 chaining this row to the previous one.
    #[serde(default)]
    pub hash: String,
}

/// `audit.list`. `nextCursor` is `null` on the last page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditList {
    #[serde(default)]
    pub entries: Vec<AuditEntry>,
    #[serde(default)]
    pub next_cursor: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn actions_round_trip_with_their_exact_strings() {
        let want = [
            "auth.failure",
            "auth.lockout",
            "auth.secret_changed",
            "auth.attack_started",
            "auth.attack_ended",
            "pairing.requested",
            "pairing.approved",
            "pairing.silent_approved",
            "pairing.rejected",
            "pairing.superseded",
            "pairing.updated",
            "pairing.code_unknown",
            "pairing.code_limited",
            "device.removed",
            "device.renamed",
            "token.rotated",
            "token.revoked",
            "upstream.admin_call",
        ];
        for (action, s) in AuditAction::KNOWN.iter().zip(want) {
            assert_eq!(action.as_str(), s);
            assert_eq!(serde_json::to_value(action).unwrap(), json!(s));
            assert_eq!(
                serde_json::from_value::<AuditAction>(json!(s)).unwrap(),
                *action
            );
            assert_eq!(AuditAction::parse(s), *action);
        }
        let other: AuditAction = serde_json::from_value(json!("test.row")).unwrap();
        assert_eq!(other, AuditAction::Other("test.row".into()));
        assert_eq!(serde_json::to_value(&other).unwrap(), json!("test.row"));
    }

    #[test]
    fn entry_order_and_null_device() {
        let list = AuditList {
            entries: vec![AuditEntry {
                seq: 1,
                ts: 2,
                action: AuditAction::AuthSecretChanged,
                actor: json!({"kind": "host", "via": "config"}),
                device_id: None,
                details: json!({}),
                hash: "ab".into(),
            }],
            next_cursor: None,
        };
        let text = serde_json::to_string(&list).unwrap();
        assert_eq!(
            text,
            r#"{"entries":[{"seq":1,"ts":2,"action":"auth.secret_changed","actor":{"kind":"host","via":"config"},"deviceId":null,"details":{},"hash":"ab"}],"nextCursor":null}"#
        );
        assert_eq!(serde_json::from_str::<AuditList>(&text).unwrap(), list);
    }
}
