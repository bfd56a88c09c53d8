//! Device identity proof: the public key, the id
//! derived from it, the signature over the v3 (then v2) payload, the
//! challenge nonce and the clock skew, checked in the reference's order.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clawgate_protocol::catalogue::DeviceAuthFailure;
use clawgate_protocol::connect::{ConnectParams, DeviceProof};
use clawgate_protocol::device_auth::{PayloadFields, payload_v2, payload_v3};
use ed25519_dalek::{Signature, VerifyingKey};

/// Allowed distance between `signedAt` and the gateway clock.
pub const SIGNATURE_SKEW_MS: u64 = 120_000;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo.
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A verified device identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDevice {
    pub device_id: String,
    /// The raw key, base64url without padding (the stored, normalised form).
    pub public_key: String,
}

/// Decodes base64 or base64url, with or without padding.
pub fn decode_base64_lenient(s: &str) -> Option<Vec<u8>> {
    let mut normalized: String = s
        .trim()
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    let normalized_len = normalized.trim_end_matches('=').len();
    normalized.truncate(normalized_len);
    while !normalized.len().is_multiple_of(4) {
        normalized.push('=');
    }
    STANDARD.decode(normalized).ok()
}

/// The raw 32-byte key from the wire form: raw base64url (canonical), any
/// base64, or a PEM SubjectPublicKeyInfo.
pub fn raw_public_key(wire: &str) -> Option<[u8; 32]> {
    let bytes = if wire.contains("BEGIN") {
        let body: String = wire
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .join("");
        let der = decode_base64_lenient(&body)?;
        if der.len() != 44 || der[..12] != SPKI_ED25519_PREFIX {
            return None;
        }
        der[12..].to_vec()
    } else {
        decode_base64_lenient(wire)?
    };
    bytes.try_into().ok()
}

/// `device.id`: lowercase hex SHA-256 of the raw key.
pub fn device_id_for(raw: &[u8; 32]) -> String {
    clawgate_protocol::device_auth::device_id(raw)
}

/// Decompressing a public key costs ~3 µs (a field square root); paired
/// devices reconnect with the same key, so decoded keys are kept. Bounded:
/// the map is emptied when it reaches [`KEY_CACHE_MAX`] entries.
const KEY_CACHE_MAX: usize = 4096;

fn verifying_key(raw: &[u8; 32]) -> Option<VerifyingKey> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static KEYS: OnceLock<Mutex<HashMap<[u8; 32], VerifyingKey>>> = OnceLock::new();
    let keys = KEYS.get_or_init(Mutex::default);
    if let Some(k) = keys.lock().expect("key cache").get(raw) {
        return Some(*k);
    }
    let key = VerifyingKey::from_bytes(raw).ok()?;
    let mut map = keys.lock().expect("key cache");
    if map.len() >= KEY_CACHE_MAX {
        map.clear();
    }
    map.insert(*raw, key);
    Some(key)
}

/// The token slot of the signed payload: the first *present* of
/// `auth.token`, `auth.deviceToken`, `auth.bootstrapToken` (an empty
/// `auth.token` counts as present), else empty.
pub fn signature_token(params: &ConnectParams) -> &str {
    params
        .auth
        .token
        .as_deref()
        .or(params.auth.device_token.as_deref())
        .or(params.auth.bootstrap_token.as_deref())
        .unwrap_or("")
}

/// Checks the proof: id, skew, nonce, signature (v3, then v2).
pub fn verify(
    params: &ConnectParams,
    device: &DeviceProof,
    role: &str,
    challenge_nonce: &str,
    now_ms: u64,
) -> Result<VerifiedDevice, DeviceAuthFailure> {
    let raw = raw_public_key(&device.public_key);
    let derived = raw.as_ref().map(device_id_for);
    if derived.as_deref() != Some(device.id.trim()) {
        return Err(DeviceAuthFailure::DeviceIdMismatch);
    }
    let raw = raw.expect("derived implies raw");
    if now_ms.abs_diff(device.signed_at) > SIGNATURE_SKEW_MS {
        return Err(DeviceAuthFailure::SignatureExpired);
    }
    let nonce = device.nonce.trim();
    if nonce.is_empty() {
        return Err(DeviceAuthFailure::NonceRequired);
    }
    if nonce != challenge_nonce {
        return Err(DeviceAuthFailure::NonceMismatch);
    }
    let key = verifying_key(&raw).ok_or(DeviceAuthFailure::SignatureInvalid)?;
    let sig_bytes = decode_base64_lenient(&device.signature)
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .ok_or(DeviceAuthFailure::SignatureInvalid)?;
    let signature = Signature::from_bytes(&sig_bytes);
    let fields = PayloadFields {
        device_id: &device.id,
        client_id: &params.client.id,
        client_mode: &params.client.mode,
        role,
        scopes: params.requested_scopes(),
        signed_at_ms: device.signed_at,
        token: signature_token(params),
        nonce: &device.nonce,
        platform: &params.client.platform,
        device_family: params.client.device_family.as_deref().unwrap_or(""),
    };
    let v3 = payload_v3(&fields);
    if key.verify_strict(v3.as_bytes(), &signature).is_err() {
        let v2 = payload_v2(&fields);
        key.verify_strict(v2.as_bytes(), &signature)
            .map_err(|_| DeviceAuthFailure::SignatureInvalid)?;
    }
    Ok(VerifiedDevice {
        device_id: device.id.trim().to_string(),
        public_key: URL_SAFE_NO_PAD.encode(raw),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_forms_normalise_to_the_same_raw_key() {
        let raw = [7u8; 32];
        let url = URL_SAFE_NO_PAD.encode(raw);
        let std_padded = STANDARD.encode(raw);
        let mut der = SPKI_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&raw);
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(&der)
        );
        for form in [&url, &std_padded, &pem] {
            assert_eq!(raw_public_key(form), Some(raw), "{form}");
        }
        assert_eq!(raw_public_key("not a key"), None);
        assert_eq!(raw_public_key(&URL_SAFE_NO_PAD.encode([1u8; 31])), None);
        assert_eq!(device_id_for(&raw).len(), 64);
    }
}
