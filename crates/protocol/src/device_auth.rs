//! The strings a device signs to prove its identity (server.md 5.1).

/// The fields of a device-auth payload.
#[derive(Debug, Clone, Copy)]
pub struct PayloadFields<'a> {
    pub device_id: &'a str,
    pub client_id: &'a str,
    pub client_mode: &'a str,
    pub role: &'a str,
    pub scopes: &'a [String],
    pub signed_at_ms: u64,
    /// The signature token slot: first present of `auth.token`,
    /// `auth.deviceToken`, `auth.bootstrapToken`; empty when none.
    pub token: &'a str,
    pub nonce: &'a str,
    pub platform: &'a str,
    pub device_family: &'a str,
}

/// A device id: the lowercase hex SHA-256 of the raw 32-byte Ed25519
/// public key (what the gateway derives and what clients send).
pub fn device_id(raw_public_key: &[u8; 32]) -> String {
    use sha2::{Digest, Sha256};
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(raw_public_key);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0x0f)] as char);
    }
    out
}

/// Trims and lower-cases ASCII letters only, as the reference does for the
/// v3 platform and device-family fields.
pub fn normalize_metadata(value: &str) -> String {
    value.trim().to_ascii_lowercase()
}

/// The v3 payload: `v3|deviceId|clientId|clientMode|role|scopes|signedAt|token|nonce|platform|deviceFamily`.
pub fn payload_v3(f: &PayloadFields<'_>) -> String {
    format!(
        "{}|{}|{}",
        common("v3", f),
        normalize_metadata(f.platform),
        normalize_metadata(f.device_family)
    )
}

/// The v2 payload: `v2|deviceId|clientId|clientMode|role|scopes|signedAt|token|nonce`.
pub fn payload_v2(f: &PayloadFields<'_>) -> String {
    common("v2", f)
}

fn common(version: &str, f: &PayloadFields<'_>) -> String {
    format!(
        "{version}|{}|{}|{}|{}|{}|{}|{}|{}",
        f.device_id,
        f.client_id,
        f.client_mode,
        f.role,
        f.scopes.join(","),
        f.signed_at_ms,
        f.token,
        f.nonce
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_example() {
        let scopes = vec!["operator.read".to_string()];
        let f = PayloadFields {
            device_id: "149ed9a8",
            client_id: "cli",
            client_mode: "cli",
            role: "operator",
            scopes: &scopes,
            signed_at_ms: 1795596589409,
            token: "reftoken123",
            nonce: "d4fdcf73-dee1-4eeb-9372-c3d7b3a9060b",
            platform: " Linux ",
            device_family: "",
        };
        assert_eq!(
            payload_v3(&f),
            "v3|149ed9a8|cli|cli|operator|operator.read|1795596589409|reftoken123|d4fdcf73-dee1-4eeb-9372-c3d7b3a9060b|linux|"
        );
        assert_eq!(
            payload_v2(&f),
            "v2|149ed9a8|cli|cli|operator|operator.read|1795596589409|reftoken123|d4fdcf73-dee1-4eeb-9372-c3d7b3a9060b"
        );
    }
}
