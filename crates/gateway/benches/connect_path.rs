//! Micro-benchmarks of the gateway's per-handshake CPU work: the device
//! proof (key decoding, id derivation, Ed25519 verification), what a client
//! spends signing, token hashing and lookups in a store holding 1,000
//! paired devices, the SQLite transactions a device connect may write, and
//! `auth::authenticate` end to end.
//!
//! Not covered: building `hello-ok` (`connection::hello_ok` is private).
//!
//! `cargo bench -p clawgate-gateway`; under `cargo test` each benchmark runs
//! once as a smoke test.

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clawgate_gateway::auth::{self, device_proof, tokens};
use clawgate_gateway::config::{AuthConfig, AuthMode, GatewayConfig};
use clawgate_gateway::session::PeerContext;
use clawgate_gateway::session::now_ms;
use clawgate_gateway::testkit;
use clawgate_gateway::{GatewayState, RuntimeOptions};
use clawgate_protocol::Secret;
use clawgate_protocol::connect::{ConnectParams, Role, parse_connect_params};
use clawgate_protocol::device_auth::{PayloadFields, payload_v2, payload_v3};
use clawgate_protocol::scopes::CLI_DEFAULT_SCOPES;
use clawgate_store::{Device, RoleToken, Store, TokenHash, hash_token};
use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde_json::{Value, json};

/// Paired devices in the benchmark store.
const DEVICES: usize = 1_000;
const NONCE: &str = "d4fdcf73-dee1-4eeb-9372-c3d7b3a9060b";
const SHARED_TOKEN: &str = "bench-shared-token-0123456789abcdefghijklmno";

/// A device identity as a client holds it.
struct Identity {
    key: SigningKey,
    id: String,
    public_key: String,
}

impl Identity {
    fn from_index(i: usize) -> Identity {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        let key = SigningKey::from_bytes(&seed);
        let raw = key.verifying_key().to_bytes();
        Identity {
            id: device_proof::device_id_for(&raw),
            public_key: URL_SAFE_NO_PAD.encode(raw),
            key,
        }
    }
}

fn cli_scopes() -> Vec<String> {
    CLI_DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect()
}

/// Connect params from the reference CLI; `auth` is the credentials block.
fn base_params(auth: Value) -> Value {
    json!({
        "minProtocol": 4,
        "maxProtocol": 4,
        "client": {
            "id": "cli",
            "version": "2026.9.6",
            "platform": "linux",
            "mode": "cli",
            "instanceId": "0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a",
        },
        "caps": [],
        "role": "operator",
        "scopes": CLI_DEFAULT_SCOPES,
        "auth": auth,
        "locale": "en-US",
    })
}

/// The v3 payload fields of `params` for `identity` (what a client signs).
fn fields<'a>(
    identity: &'a Identity,
    params: &'a ConnectParams,
    token: &'a str,
    signed_at: u64,
) -> PayloadFields<'a> {
    PayloadFields {
        device_id: &identity.id,
        client_id: &params.client.id,
        client_mode: &params.client.mode,
        role: "operator",
        scopes: params.requested_scopes(),
        signed_at_ms: signed_at,
        token,
        nonce: NONCE,
        platform: &params.client.platform,
        device_family: params.client.device_family.as_deref().unwrap_or(""),
    }
}

/// What a client does: build the v3 payload, sign it, encode the signature.
fn client_sign(identity: &Identity, f: &PayloadFields<'_>) -> String {
    let payload = payload_v3(f);
    URL_SAFE_NO_PAD.encode(identity.key.sign(payload.as_bytes()).to_bytes())
}

/// Connect params carrying a device block signed now (or with `v2`, the
/// legacy payload) over `token`'s slot.
fn signed_params(identity: &Identity, auth: Value, token: &str, v2: bool) -> ConnectParams {
    let mut value = base_params(auth);
    let unsigned = parse_connect_params(Some(&value)).expect("valid params");
    let signed_at = now_ms();
    let f = fields(identity, &unsigned, token, signed_at);
    let signature = if v2 {
        URL_SAFE_NO_PAD.encode(identity.key.sign(payload_v2(&f).as_bytes()).to_bytes())
    } else {
        client_sign(identity, &f)
    };
    value["device"] = json!({
        "id": identity.id,
        "publicKey": identity.public_key,
        "signature": signature,
        "signedAt": signed_at,
        "nonce": NONCE,
    });
    parse_connect_params(Some(&value)).expect("valid signed params")
}

fn device_proof_benches(c: &mut Criterion) {
    let identity = Identity::from_index(0);
    let device_token = Secret::generate();
    let auth = json!({"deviceToken": device_token.expose()});
    let params = signed_params(&identity, auth.clone(), device_token.expose(), false);
    let proof = params.device.clone().expect("device block");
    let legacy = signed_params(&identity, auth, device_token.expose(), true);
    let legacy_proof = legacy.device.clone().expect("device block");
    let now = proof.signed_at;

    let raw = device_proof::raw_public_key(&proof.public_key).expect("key");
    let key = VerifyingKey::from_bytes(&raw).expect("valid point");
    let sig_bytes: [u8; 64] = device_proof::decode_base64_lenient(&proof.signature)
        .expect("base64")
        .try_into()
        .expect("64 bytes");
    let signature = Signature::from_bytes(&sig_bytes);
    let v3 = payload_v3(&fields(
        &identity,
        &params,
        device_token.expose(),
        proof.signed_at,
    ));
    assert!(key.verify_strict(v3.as_bytes(), &signature).is_ok());
    assert!(key.verify(v3.as_bytes(), &signature).is_ok());
    assert!(device_proof::verify(&params, &proof, "operator", NONCE, now).is_ok());
    assert!(device_proof::verify(&legacy, &legacy_proof, "operator", NONCE, now).is_ok());

    let mut g = c.benchmark_group("device_proof");
    g.bench_function("raw_public_key_base64url", |b| {
        b.iter(|| device_proof::raw_public_key(black_box(&proof.public_key)))
    });
    g.bench_function("device_id_sha256_hex", |b| {
        b.iter(|| device_proof::device_id_for(black_box(&raw)))
    });
    g.bench_function("verifying_key_from_bytes", |b| {
        b.iter(|| VerifyingKey::from_bytes(black_box(&raw)))
    });
    g.bench_function("decode_signature_base64url", |b| {
        b.iter(|| device_proof::decode_base64_lenient(black_box(&proof.signature)))
    });
    g.bench_function("verify_strict_v3", |b| {
        b.iter(|| black_box(&key).verify_strict(black_box(v3.as_bytes()), black_box(&signature)))
    });
    // For comparison only: the non-strict check (no small-order checks, no
    // decompression of R). The gateway uses `verify_strict`.
    g.bench_function("verify_nonstrict_v3_for_comparison", |b| {
        b.iter(|| black_box(&key).verify(black_box(v3.as_bytes()), black_box(&signature)))
    });
    // The gateway's whole proof check: all of the above plus the payload.
    g.bench_function("verify_v3", |b| {
        b.iter(|| device_proof::verify(black_box(&params), &proof, "operator", NONCE, now))
    });
    // A v2-signing client costs a failed v3 check first.
    g.bench_function("verify_v2_fallback", |b| {
        b.iter(|| device_proof::verify(black_box(&legacy), &legacy_proof, "operator", NONCE, now))
    });
    g.finish();

    let mut g = c.benchmark_group("client");
    let f = fields(&identity, &params, device_token.expose(), now);
    g.bench_function("sign_v3", |b| {
        b.iter(|| client_sign(&identity, black_box(&f)))
    });
    g.finish();
}

/// A gateway whose store holds `DEVICES` paired operator devices, each with
/// one issued device token. Returns the state, the device identities and
/// their tokens.
fn gateway_with_devices(dir: &std::path::Path) -> (Arc<GatewayState>, Vec<Identity>, Vec<Secret>) {
    let store = Store::open(&dir.join(clawgate_store::DB_FILE_NAME)).expect("store");
    let identities: Vec<Identity> = (0..DEVICES).map(Identity::from_index).collect();
    let secrets: Vec<Secret> = (0..DEVICES).map(|_| Secret::generate()).collect();
    let scopes = cli_scopes();
    let now = now_ms();
    store
        .transact(|tx| {
            for (identity, secret) in identities.iter().zip(&secrets) {
                tx.put_device(&Device {
                    device_id: identity.id.clone(),
                    public_key: identity.public_key.clone(),
                    display_name: None,
                    operator_label: None,
                    platform: Some("linux".into()),
                    device_family: None,
                    client_id: Some("cli".into()),
                    client_mode: Some("cli".into()),
                    browser_origin: None,
                    roles: vec!["operator".into()],
                    scopes: scopes.clone(),
                    remote_ip: Some("127.0.0.1".into()),
                    approved_via: "silent".into(),
                    created_at_ms: now,
                    approved_at_ms: now,
                    last_seen_at_ms: None,
                    last_seen_reason: None,
                })?;
                tx.put_role_token(&RoleToken {
                    device_id: identity.id.clone(),
                    role: "operator".into(),
                    scopes: scopes.clone(),
                    created_at_ms: now,
                    rotated_at_ms: None,
                    revoked_at_ms: None,
                    last_used_at_ms: None,
                })?;
                tx.add_token_hash(
                    &TokenHash {
                        hash: hash_token(secret.expose()),
                        device_id: identity.id.clone(),
                        role: "operator".into(),
                        scopes: scopes.clone(),
                        issued_at_ms: now,
                    },
                    tokens::TOKENS_KEPT_PER_ROLE,
                )?;
            }
            Ok(())
        })
        .expect("seed store");
    let config = GatewayConfig::loopback(
        dir,
        AuthConfig::new(AuthMode::Token, Some(Secret::new(SHARED_TOKEN)), None),
    );
    let state = GatewayState::new(config, RuntimeOptions::default(), Arc::new(store));
    (state, identities, secrets)
}

fn token_and_auth_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, identities, secrets) = gateway_with_devices(dir.path());
    let store = testkit::store(&state);
    // A device in the middle of the table.
    let i = DEVICES / 2;
    let identity = &identities[i];
    let token = secrets[i].expose();
    let hash = hash_token(token);
    let unknown = hash_token("not-an-issued-token");
    let requested = cli_scopes();
    assert!(store.token_by_hash(&hash).is_some());
    assert!(store.token_by_hash(&unknown).is_none());

    let mut g = c.benchmark_group("tokens");
    g.bench_function("hash_token", |b| b.iter(|| hash_token(black_box(token))));
    g.bench_function("token_by_hash_1000_devices/hit", |b| {
        b.iter(|| store.token_by_hash(black_box(&hash)))
    });
    g.bench_function("token_by_hash_1000_devices/miss", |b| {
        b.iter(|| store.token_by_hash(black_box(&unknown)))
    });
    g.bench_function("device_lookup_1000_devices", |b| {
        b.iter(|| store.device(black_box(&identity.id)))
    });
    // `tokens::verify`: hash, lookup, device, role entry, scope checks.
    let verify = || {
        tokens::verify(
            store,
            &identity.id,
            &identity.public_key,
            "operator",
            black_box(token),
            &requested,
        )
    };
    assert!(verify().is_ok());
    g.bench_function("verify_1000_devices", |b| b.iter(verify));
    g.finish();

    // The SQLite write of a device-token connect that is not routine (the
    // device record changed beyond its last-seen fields), alone.
    let mut g = c.benchmark_group("store");
    let device = store.device(&identity.id).expect("paired");
    g.bench_function("transact_put_device_touch_token", |b| {
        b.iter(|| {
            store
                .transact(|tx| {
                    tx.put_device(&device)?;
                    tx.touch_token(&device.device_id, "operator", now_ms())
                })
                .expect("write")
        })
    });
    // The write of a shared-token device connect that gets a new token:
    // device + a minted token (hash insert, trim to the newest 8, role entry).
    // On another device: minting trims the oldest hashes, `token` included.
    let device = store.device(&identities[i + 2].id).expect("paired");
    let role_token = store.role_token(&device.device_id, "operator");
    let token_scopes = cli_scopes();
    g.bench_function("transact_put_device_mint_token", |b| {
        b.iter(|| {
            store
                .transact(|tx| {
                    tx.put_device(&device)?;
                    tokens::mint(
                        tx,
                        role_token.as_ref(),
                        &device.device_id,
                        "operator",
                        token_scopes.clone(),
                        now_ms(),
                    )
                })
                .expect("write")
        })
    });
    g.bench_function("token_generate", |b| b.iter(Secret::generate));
    g.finish();

    let peer = PeerContext {
        ip: IpAddr::from([127, 0, 0, 1]),
        direct_local: true,
        origin: None,
        host: Some("127.0.0.1:18789".into()),
        proxy: Default::default(),
    };
    let mut g = c.benchmark_group("authenticate");
    // Routine reconnect of a paired device with its device token: proof,
    // token verify, pairing check; the last-seen/token-use bookkeeping is
    // queued, not written. Signed just before measuring: `signedAt` must
    // stay within 2 minutes.
    let params = signed_params(identity, json!({"deviceToken": token}), token, false);
    let run = |params: &ConnectParams| {
        auth::authenticate(
            &state,
            black_box(params),
            Role::Operator,
            &peer,
            NONCE,
            auth::shared::PasswordVerdict::NotChecked,
        )
    };
    let ok = run(&params).expect("device-token connect");
    assert_eq!(ok.method.as_str(), "device-token");
    g.bench_function("device_token_1000_devices", |b| {
        b.iter(|| run(&params).expect("accepted"))
    });

    // A paired device authenticating with the shared token: proof, pairing
    // check; the first connect mints a device token (one transaction), every
    // later routine one gets that token again without a write.
    let other = &identities[i + 1];
    let params = signed_params(other, json!({"token": SHARED_TOKEN}), SHARED_TOKEN, false);
    let ok = run(&params).expect("shared-token device connect");
    assert!(ok.issued_token.is_some());
    g.bench_function("shared_token_device_1000_devices", |b| {
        b.iter(|| run(&params).expect("accepted"))
    });

    // No device: shared-token comparison and the local CLI rule only.
    let params = parse_connect_params(Some(&base_params(json!({"token": SHARED_TOKEN}))))
        .expect("valid params");
    let ok = run(&params).expect("shared-token connect");
    assert_eq!(ok.method.as_str(), "token");
    g.bench_function("shared_token_no_device", |b| {
        b.iter(|| run(&params).expect("accepted"))
    });
    g.finish();
}

criterion_group!(benches, device_proof_benches, token_and_auth_benches);
criterion_main!(benches);
