//! The device-auth signature: the v2/v3 payload builder
//! (`protocol::device_auth`) and the gateway's verifier
//! (`device_proof::verify`, key and signature decoding).
//!
//! - Arbitrary ids, keys, signatures and fields never panic the verifier
//!   or the decoders.
//! - A v3 or v2 payload signed with an Ed25519 key (as clients sign it:
//!   base64url signature over the payload's UTF-8 bytes) verifies with the
//!   key in any accepted wire form (base64url, padded base64, PEM), the id
//!   derived from it and the same fields, within the clock skew; outside
//!   it is `SignatureExpired`, a blank nonce is `NonceRequired`.
//! - Any single-byte change of the signature, or a changed role, makes it
//!   `SignatureInvalid`.

#![no_main]

use arbitrary::Arbitrary;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clawgate_gateway::auth::device_proof::{
    SIGNATURE_SKEW_MS, decode_base64_lenient, raw_public_key, verify,
};
use clawgate_protocol::catalogue::DeviceAuthFailure;
use clawgate_protocol::connect::{ClientInfo, ConnectAuth, ConnectParams, DeviceProof};
use clawgate_protocol::device_auth::{PayloadFields, payload_v2, payload_v3};
use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    seed: [u8; 32],
    client_id: String,
    client_mode: String,
    role: String,
    scopes: Vec<String>,
    signed_at: u64,
    /// Distance of the gateway clock from `signed_at`.
    clock_offset: i32,
    token: Option<String>,
    device_token: Option<String>,
    bootstrap_token: Option<String>,
    nonce: String,
    platform: String,
    device_family: Option<String>,
    v2: bool,
    key_form: u8,
    flip_at: u8,
    flip_bits: u8,
    // The free-form pass.
    raw_id: String,
    raw_key: String,
    raw_signature: String,
}

fn params(i: &Input, device: DeviceProof) -> ConnectParams {
    ConnectParams {
        min_protocol: 4,
        max_protocol: 4,
        client: ClientInfo {
            id: i.client_id.clone(),
            display_name: None,
            version: "1".into(),
            build_id: None,
            platform: i.platform.clone(),
            device_family: i.device_family.clone(),
            model_identifier: None,
            time_zone: None,
            mode: i.client_mode.clone(),
            instance_id: None,
        },
        caps: Vec::new(),
        commands: Vec::new(),
        role: Some(i.role.clone()),
        scopes: Some(i.scopes.clone()),
        device: Some(device),
        auth: ConnectAuth {
            token: i.token.clone(),
            device_token: i.device_token.clone(),
            bootstrap_token: i.bootstrap_token.clone(),
            ..ConnectAuth::default()
        },
        locale: None,
        user_agent: None,
    }
}

fn pem(raw: &[u8; 32]) -> String {
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(raw);
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD.encode(der)
    )
}

fuzz_target!(|i: Input| {
    let now = i.signed_at.saturating_add_signed(i64::from(i.clock_offset));

    // Free-form: whatever a client sends, the verifier answers.
    let _ = raw_public_key(&i.raw_key);
    let _ = decode_base64_lenient(&i.raw_signature);
    let free = DeviceProof {
        id: i.raw_id.clone(),
        public_key: i.raw_key.clone(),
        signature: i.raw_signature.clone(),
        signed_at: i.signed_at,
        nonce: i.nonce.clone(),
    };
    let p = params(&i, free.clone());
    let _ = verify(&p, &free, &i.role, i.nonce.trim(), now);

    // Signed by a real key: verifies, and only as signed.
    let key = SigningKey::from_bytes(&i.seed);
    let raw = key.verifying_key().to_bytes();
    let device_id = clawgate_protocol::device_auth::device_id(&raw);
    let public_key = match i.key_form % 3 {
        0 => URL_SAFE_NO_PAD.encode(raw),
        1 => STANDARD.encode(raw),
        _ => pem(&raw),
    };
    // The signature token slot: the first present of token, deviceToken,
    // bootstrapToken.
    let token = i
        .token
        .as_deref()
        .or(i.device_token.as_deref())
        .or(i.bootstrap_token.as_deref())
        .unwrap_or("");
    let fields = PayloadFields {
        device_id: &device_id,
        client_id: &i.client_id,
        client_mode: &i.client_mode,
        role: &i.role,
        scopes: &i.scopes,
        signed_at_ms: i.signed_at,
        token,
        nonce: &i.nonce,
        platform: &i.platform,
        device_family: i.device_family.as_deref().unwrap_or(""),
    };
    let payload = if i.v2 {
        payload_v2(&fields)
    } else {
        payload_v3(&fields)
    };
    let signature = key.sign(payload.as_bytes()).to_bytes();
    let device = DeviceProof {
        id: device_id.clone(),
        public_key,
        signature: URL_SAFE_NO_PAD.encode(signature),
        signed_at: i.signed_at,
        nonce: i.nonce.clone(),
    };
    let p = params(&i, device.clone());
    let challenge = i.nonce.trim();
    let expected = if now.abs_diff(i.signed_at) > SIGNATURE_SKEW_MS {
        Err(DeviceAuthFailure::SignatureExpired)
    } else if challenge.is_empty() {
        Err(DeviceAuthFailure::NonceRequired)
    } else {
        Ok(())
    };
    let got = verify(&p, &device, &i.role, challenge, now);
    match (&expected, &got) {
        (Ok(()), Ok(v)) => {
            assert_eq!(v.device_id, device_id);
            assert_eq!(v.public_key, URL_SAFE_NO_PAD.encode(raw));
        }
        (Err(e), Err(g)) => assert_eq!(e, g),
        _ => panic!("expected {expected:?}, got {got:?}"),
    }
    if expected.is_err() {
        return;
    }

    // One byte of the signature changed: refused.
    let mut bad = signature;
    bad[usize::from(i.flip_at) % 64] ^= i.flip_bits.max(1);
    let mut forged = device.clone();
    forged.signature = URL_SAFE_NO_PAD.encode(bad);
    let p = params(&i, forged.clone());
    assert_eq!(
        verify(&p, &forged, &i.role, challenge, now),
        Err(DeviceAuthFailure::SignatureInvalid),
        "a changed signature verified"
    );

    // The same signature for another role: refused.
    let other_role = format!("{}x", i.role);
    let p = params(&i, device.clone());
    assert_eq!(
        verify(&p, &device, &other_role, challenge, now),
        Err(DeviceAuthFailure::SignatureInvalid),
        "a signature verified for a role it did not sign"
    );
});
