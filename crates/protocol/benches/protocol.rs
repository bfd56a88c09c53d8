//! Micro-benchmarks of the protocol work on the connect path: parsing and
//! validating the first frame, building the device-auth payloads, and the
//! scope rules.
//!
//! `cargo bench -p clawgate-protocol`; under `cargo test` each benchmark
//! runs once as a smoke test.

use std::hint::black_box;

use clawgate_protocol::connect::{ConnectParams, parse_connect_params};
use clawgate_protocol::device_auth::{PayloadFields, payload_v2, payload_v3};
use clawgate_protocol::frames::{Request, parse_request};
use clawgate_protocol::scopes::{self, MethodAccess};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::Value;

/// A `connect` as the reference CLI sends it with a shared token: full
/// client block, the CLI's default scopes, no device identity.
const CONNECT_NO_DEVICE: &str = r#"{"type":"req","id":"a3f1c2d4-5b6e-4f70-8a91-b2c3d4e5f607","method":"connect","params":{"minProtocol":4,"maxProtocol":4,"client":{"id":"cli","displayName":"bench host","version":"2026.9.6","platform":"linux","deviceFamily":"desktop","mode":"cli","instanceId":"0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"},"caps":[],"role":"operator","scopes":["operator.admin","operator.read","operator.write","operator.approvals","operator.questions","operator.pairing","operator.talk.secrets"],"auth":{"token":"Jx3v9Qm2Lr8Tb5Nw1Hc7Kd4Fs6Gp0Ya2Ue9Ro3Mi5Zq"},"locale":"en-US","userAgent":"openclaw-cli/2026.9.6 (linux; x64) node/22.11.0"}}"#;

/// The same connect with a signed `device` block (64-hex id, raw base64url
/// key, 64-byte signature) and a device token instead of the shared token.
const CONNECT_DEVICE: &str = r#"{"type":"req","id":"a3f1c2d4-5b6e-4f70-8a91-b2c3d4e5f607","method":"connect","params":{"minProtocol":4,"maxProtocol":4,"client":{"id":"cli","displayName":"bench host","version":"2026.9.6","platform":"linux","deviceFamily":"desktop","mode":"cli","instanceId":"0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"},"caps":[],"role":"operator","scopes":["operator.admin","operator.read","operator.write","operator.approvals","operator.questions","operator.pairing","operator.talk.secrets"],"auth":{"deviceToken":"Pw8Lk2Jh5Gf3Ds9Aq1Zx7Cv4Bn6Mm0Qe2Rt8Yu3Io5Pa"},"device":{"id":"149ed9a8d1f0b6a3c2e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6","publicKey":"Ky0Lh4rT9bV2nW8qX1cZ5mJ3fG7dS6aP0eR4uY2iO8k","signature":"hQ3mV9xK2pL7wN4cR8tY1bF6jD0sG5aZ3eU9iO2kM7nB4vC8xH1qW6lT0rE5yP3dJ9fA2gS7hK4mN8bV1cX6zQ","signedAt":1795596589409,"nonce":"d4fdcf73-dee1-4eeb-9372-c3d7b3a9060b"},"locale":"en-US","userAgent":"openclaw-cli/2026.9.6 (linux; x64) node/22.11.0"}}"#;

const FRAMES: [(&str, &str); 2] = [("no_device", CONNECT_NO_DEVICE), ("device", CONNECT_DEVICE)];

/// What the gateway does with the first frame before any auth work
/// (`connection::handle_first_frame`): frame schema, method check, the
/// closed `connect` schema plus decoding, protocol window, role.
fn first_frame(text: &str) -> ConnectParams {
    let request = parse_request(text).expect("valid frame");
    assert_eq!(request.method, "connect");
    let params = parse_connect_params(request.params.as_ref()).expect("valid connect params");
    assert!(params.protocol_accepted());
    assert!(params.role().is_some());
    params
}

fn connect_parsing(c: &mut Criterion) {
    // Sanity: both frames decode as intended.
    assert!(first_frame(CONNECT_NO_DEVICE).device.is_none());
    assert!(first_frame(CONNECT_DEVICE).device.is_some());

    let mut g = c.benchmark_group("connect");
    for (name, text) in FRAMES {
        // Baseline: JSON text to `serde_json::Value`, no validation.
        g.bench_with_input(BenchmarkId::new("json_value_only", name), text, |b, t| {
            b.iter(|| serde_json::from_str::<Value>(black_box(t)).unwrap())
        });
        // Frame schema + `Request` (what `parse_request` costs alone).
        g.bench_with_input(BenchmarkId::new("parse_request", name), text, |b, t| {
            b.iter(|| parse_request(black_box(t)).unwrap())
        });
        // The closed `connect` schema + typed decode, from the parsed params.
        let request: Request = parse_request(text).unwrap();
        g.bench_with_input(
            BenchmarkId::new("parse_connect_params", name),
            &request.params,
            |b, p| b.iter(|| parse_connect_params(black_box(p.as_ref())).unwrap()),
        );
        // Everything above in sequence, as the gateway does it.
        g.bench_with_input(BenchmarkId::new("first_frame", name), text, |b, t| {
            b.iter(|| first_frame(black_box(t)))
        });
    }
    g.finish();
}

fn signature_payloads(c: &mut Criterion) {
    let scopes: Vec<String> = scopes::CLI_DEFAULT_SCOPES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let fields = PayloadFields {
        device_id: "149ed9a8d1f0b6a3c2e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6",
        client_id: "cli",
        client_mode: "cli",
        role: "operator",
        scopes: &scopes,
        signed_at_ms: 1795596589409,
        token: "Pw8Lk2Jh5Gf3Ds9Aq1Zx7Cv4Bn6Mm0Qe2Rt8Yu3Io5Pa",
        nonce: "d4fdcf73-dee1-4eeb-9372-c3d7b3a9060b",
        platform: " Linux ",
        device_family: "Desktop",
    };
    assert!(payload_v3(&fields).ends_with("|linux|desktop"));

    let mut g = c.benchmark_group("device_auth");
    g.bench_function("payload_v3", |b| b.iter(|| payload_v3(black_box(&fields))));
    g.bench_function("payload_v2", |b| b.iter(|| payload_v2(black_box(&fields))));
    g.finish();
}

fn scope_checks(c: &mut Criterion) {
    let owned = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    let cli_defaults = owned(scopes::CLI_DEFAULT_SCOPES);
    // A device approved for read + pairing, asking for the CLI defaults.
    let narrow = owned(&[scopes::READ, scopes::PAIRING]);
    // Approved scopes without admin, so every check walks the implications.
    let no_admin = owned(&[
        scopes::READ,
        scopes::WRITE,
        scopes::APPROVALS,
        scopes::QUESTIONS,
        scopes::PAIRING,
        scopes::TALK_SECRETS,
    ]);
    let no_admin_requested = owned(&[
        scopes::READ,
        scopes::WRITE,
        scopes::SESSIONS_READ,
        scopes::APPROVALS,
        scopes::QUESTIONS,
        scopes::PAIRING,
        scopes::TALK_SECRETS,
    ]);
    assert!(scopes::covers(&cli_defaults, &cli_defaults));
    assert!(scopes::covers(&no_admin, &no_admin_requested));
    assert_eq!(
        scopes::first_uncovered(&narrow, &cli_defaults),
        Some(scopes::ADMIN)
    );

    let mut g = c.benchmark_group("scopes");
    g.bench_function("satisfies/admin_first", |b| {
        b.iter(|| scopes::satisfies(black_box(&cli_defaults), black_box(scopes::PAIRING)))
    });
    g.bench_function("satisfies/implied_by_write", |b| {
        b.iter(|| scopes::satisfies(black_box(&no_admin), black_box(scopes::SESSIONS_READ)))
    });
    g.bench_function("satisfies/not_granted", |b| {
        b.iter(|| scopes::satisfies(black_box(&no_admin), black_box(scopes::ADMIN)))
    });
    g.bench_function("covers/cli_defaults_by_admin", |b| {
        b.iter(|| scopes::covers(black_box(&cli_defaults), black_box(&cli_defaults)))
    });
    g.bench_function("covers/7_of_6_without_admin", |b| {
        b.iter(|| scopes::covers(black_box(&no_admin), black_box(&no_admin_requested)))
    });
    g.bench_function("first_uncovered/narrow_vs_cli_defaults", |b| {
        b.iter(|| scopes::first_uncovered(black_box(&narrow), black_box(&cli_defaults)))
    });
    g.bench_function("first_uncovered/none_missing", |b| {
        b.iter(|| scopes::first_uncovered(black_box(&no_admin), black_box(&no_admin_requested)))
    });
    for (method, expected) in [
        ("health", MethodAccess::Anyone),
        ("status", MethodAccess::Operator(scopes::READ)),
        ("device.pair.list", MethodAccess::Operator(scopes::PAIRING)),
        ("node.invoke.result", MethodAccess::NodeOnly),
        ("config.apply", MethodAccess::Operator(scopes::ADMIN)),
    ] {
        assert_eq!(scopes::method_access(method), expected);
        g.bench_with_input(BenchmarkId::new("method_access", method), method, |b, m| {
            b.iter(|| scopes::method_access(black_box(m)))
        });
    }
    g.finish();
}

criterion_group!(benches, connect_parsing, signature_payloads, scope_checks);
criterion_main!(benches);
