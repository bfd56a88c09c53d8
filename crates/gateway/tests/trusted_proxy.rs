//! `gateway.auth.mode = "trusted-proxy"`: the reference's header rules and
//! refusals, the connect decision behind them (device-less Control UI,
//! identity grants, the scopes cap, device auto-approval, the local
//! password), the proxy's signed assertion against a JWKS served by a
//! local HTTP server, and the whole path through a real nginx in front of
//! the gateway.
//!
//! The gateway listens on 127.0.0.1; the "proxy" connects from 127.0.0.2
//! (the only address in `gateway.trustedProxies`), anyone else from
//! 127.0.0.1.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clawgate_gateway::config::{
    AuthConfig, AutoApprove, GatewayConfig, JwksSource, JwtConfig, TrustedProxyConfig,
};
use clawgate_gateway::testkit;
use clawgate_protocol::Secret;
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROXY: &str = "127.0.0.2";
const OUTSIDER: &str = "127.0.0.1";
const USER: &str = "nick@example.com";
const ISSUER: &str = "https://auth.example.test";
const AUDIENCE: &str = "gateway.example.test";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tp_config() -> TrustedProxyConfig {
    TrustedProxyConfig {
        user_header: "x-forwarded-user".into(),
        required_headers: vec!["x-forwarded-proto".into()],
        allow_users: vec![
            USER.into(),
            "admin@example.com".into(),
            "eve@example.com".into(),
        ],
        allow_loopback: true,
        device_auto_approve: None,
        jwt: None,
    }
}

async fn start(tp: TrustedProxyConfig, tweak: impl FnOnce(&mut GatewayConfig)) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    let mut auth = AuthConfig::trusted_proxy(tp, Some(Secret::new(PASSWORD)));
    auth.identity_scopes = vec![(
        "admin@example.com".into(),
        vec!["operator.admin".into(), "operator.read".into()],
    )];
    let mut cfg = GatewayConfig::loopback(dir.path(), auth);
    cfg.port = 0;
    cfg.trusted_proxies = vec![ip(PROXY)];
    tweak(&mut cfg);
    TestGateway::start_with(cfg, fast_options(), dir).await
}

fn ui_params(scopes: &[&str]) -> Value {
    params("openclaw-control-ui", "ui", json!({}), scopes)
}

/// The proxy's headers for `user` (a trailing list adds or overrides).
fn proxy_headers<'a>(user: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("x-forwarded-user", user),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-for", "203.0.113.7"),
    ];
    for (k, v) in extra {
        h.retain(|(hk, _)| hk != k);
        h.push((k, v));
    }
    h
}

async fn via_proxy(gw: &TestGateway, headers: &[(&str, &str)]) -> Client {
    Client::connect_from(ip(PROXY), &gw.url(), headers)
        .await
        .expect("upgrade through the proxy")
}

fn assert_refused(res: &Value, code: &str, reason: &str) {
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{res}");
    assert_eq!(res["error"]["details"]["code"], code, "{res}");
    assert_eq!(res["error"]["details"]["authReason"], reason, "{res}");
    assert_eq!(
        res["error"]["details"]["recommendedNextStep"], "review_auth_configuration",
        "{res}"
    );
    assert_eq!(
        res["error"]["details"]["canRetryWithDeviceToken"], false,
        "{res}"
    );
}

async fn audit_reasons(gw: &TestGateway) -> Vec<String> {
    // Refusal rows are written by the once-a-second flush.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    testkit::store(&gw.state)
        .audit_list(&clawgate_store::AuditQuery {
            action: Some("auth.failure".into()),
            ..Default::default()
        })
        .unwrap()
        .rows
        .iter()
        .filter_map(|r| r.details["authReason"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn proxied_control_ui_gets_in_with_its_identity_grant_only() {
    let gw = start(tp_config(), |_| {}).await;
    // Device-less Control UI: its own scopes are cleared.
    let mut c = via_proxy(&gw, &proxy_headers(USER, &[])).await;
    let res = c.connect_with(ui_params(&["operator.admin"])).await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["auth"]["method"], "trusted-proxy", "{res}");
    assert_eq!(res["payload"]["auth"]["scopes"], json!([]), "{res}");
    // An identity with a grant gets it (emails case-insensitively)...
    let mut c = via_proxy(&gw, &proxy_headers("Admin@Example.com", &[])).await;
    let res = c.connect_with(ui_params(&[])).await;
    assert_eq!(res["ok"], false, "not in allowUsers as written: {res}");
    let mut c = via_proxy(&gw, &proxy_headers("admin@example.com", &[])).await;
    let res = c.connect_with(ui_params(&[])).await;
    assert_eq!(res["payload"]["auth"]["method"], "trusted-proxy", "{res}");
    assert_eq!(
        res["payload"]["auth"]["scopes"],
        json!(["operator.admin", "operator.read"]),
        "{res}"
    );
    // ...within the proxy's x-openclaw-scopes cap; present but empty: none.
    let mut c = via_proxy(
        &gw,
        &proxy_headers(
            "admin@example.com",
            &[("x-openclaw-scopes", "operator.read")],
        ),
    )
    .await;
    let res = c.connect_with(ui_params(&[])).await;
    assert_eq!(
        res["payload"]["auth"]["scopes"],
        json!(["operator.read"]),
        "{res}"
    );
    // A device-less client that is not the Control UI needs a device.
    let mut c = via_proxy(&gw, &proxy_headers(USER, &[])).await;
    let res = c.connect_with(params("cli", "cli", json!({}), &[])).await;
    assert_eq!(
        res["error"]["details"]["code"], "DEVICE_IDENTITY_REQUIRED",
        "{res}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn refusals_carry_the_reference_codes_and_are_audited() {
    let gw = start(tp_config(), |_| {}).await;
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![
                ("x-forwarded-user", USER),
                ("x-forwarded-for", "203.0.113.7"),
            ],
            "AUTH_IDENTITY_HEADER_REQUIRED",
            "trusted_proxy_missing_header_x-forwarded-proto",
        ),
        (
            proxy_headers("", &[]),
            "AUTH_UNAUTHORIZED",
            "trusted_proxy_user_missing",
        ),
        (
            proxy_headers("mallory@example.com", &[]),
            "AUTH_UNAUTHORIZED",
            "trusted_proxy_user_not_allowed",
        ),
    ];
    for (headers, code, reason) in &cases {
        let mut c = via_proxy(&gw, headers).await;
        let res = c.connect_with(ui_params(&[])).await;
        assert_refused(&res, code, reason);
        assert_eq!(res["error"]["message"], "unauthorized", "{res}");
        assert_eq!(c.closed().await.code, 1008);
    }
    let reasons = audit_reasons(&gw).await;
    for (_, _, reason) in &cases {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} in {reasons:?}"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn bad_identity_header_values_are_refused_by_name() {
    let gw = start(tp_config(), |_| {}).await;
    let long = "a".repeat(600);
    let mut c = via_proxy(&gw, &proxy_headers(&long, &[])).await;
    let res = c.connect_with(ui_params(&[])).await;
    assert_refused(
        &res,
        "AUTH_UNAUTHORIZED",
        "trusted_proxy_user_header_too_long",
    );
    assert!(
        res["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-forwarded-user"),
        "{res}"
    );
    // A duplicated header: tungstenite's request builder keeps one value
    // per name, so the upgrade is written by hand.
    let raw = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Forwarded-Proto: https\r\nX-Forwarded-User: {USER}\r\nX-Forwarded-User: admin@example.com\r\n\r\n",
        addr = gw.addr
    );
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(ip(PROXY), 0)).unwrap();
    let mut stream = sock.connect(gw.addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    // The 101 head, byte by byte up to its blank line.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        stream.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    let mut c = Client::from_ws(ws).await;
    let res = c.connect_with(ui_params(&[])).await;
    assert_refused(
        &res,
        "AUTH_UNAUTHORIZED",
        "trusted_proxy_user_header_duplicated",
    );
    gw.stop().await;
}

#[tokio::test]
async fn proxy_bypass_and_loopback_sources() {
    let gw = start(tp_config(), |_| {}).await;
    // A direct peer not in trustedProxies: forwarding headers are refused
    // before the upgrade; a bare identity header gets the reference's
    // untrusted-source refusal.
    let err = Client::connect_from(ip(OUTSIDER), &gw.url(), &proxy_headers(USER, &[]))
        .await
        .err()
        .expect("forged forwarding headers refused");
    assert!(err.to_string().contains("403"), "{err}");
    let mut c = Client::connect_from(
        ip(OUTSIDER),
        &gw.url(),
        &[("x-forwarded-user", USER), ("x-pomerium-claim-email", USER)],
    )
    .await;
    // x-forwarded-user alone is a forwarding header too (x-forwarded-*).
    assert!(c.is_err());
    let gw2 = start(
        TrustedProxyConfig {
            user_header: "x-pomerium-claim-email".into(),
            required_headers: vec![],
            ..tp_config()
        },
        |_| {},
    )
    .await;
    c = Client::connect_from(
        ip(OUTSIDER),
        &gw2.url(),
        &[("x-pomerium-claim-email", USER)],
    )
    .await;
    let res = c.unwrap().connect_with(ui_params(&[])).await;
    assert_refused(&res, "AUTH_UNAUTHORIZED", "trusted_proxy_untrusted_source");
    gw2.stop().await;
    gw.stop().await;
    // A loopback proxy without allowLoopback.
    let gw = start(
        TrustedProxyConfig {
            allow_loopback: false,
            ..tp_config()
        },
        |_| {},
    )
    .await;
    let mut c = via_proxy(&gw, &proxy_headers(USER, &[])).await;
    let res = c.connect_with(ui_params(&[])).await;
    assert_refused(&res, "AUTH_UNAUTHORIZED", "trusted_proxy_loopback_source");
    gw.stop().await;
}

#[tokio::test]
async fn a_direct_local_caller_may_use_the_password_but_never_a_token() {
    let gw = start(tp_config(), |_| {}).await;
    let mut c = Client::connect_from(ip(OUTSIDER), &gw.url(), &[])
        .await
        .unwrap();
    let res = c
        .connect_with(params(
            "cli",
            "cli",
            json!({"password": PASSWORD}),
            &["operator.read"],
        ))
        .await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["auth"]["method"], "password", "{res}");
    let mut c = Client::connect_from(ip(OUTSIDER), &gw.url(), &[])
        .await
        .unwrap();
    let res = c
        .connect_with(params("cli", "cli", json!({"password": "wrong"}), &[]))
        .await;
    assert_eq!(
        res["error"]["details"]["code"], "AUTH_PASSWORD_MISMATCH",
        "{res}"
    );
    let mut c = Client::connect_from(ip(OUTSIDER), &gw.url(), &[])
        .await
        .unwrap();
    let res = c
        .connect_with(params("cli", "cli", json!({"token": PASSWORD}), &[]))
        .await;
    assert_refused(&res, "AUTH_UNAUTHORIZED", "trusted_proxy_untrusted_source");
    gw.stop().await;
}

#[tokio::test]
async fn devices_pair_or_are_auto_approved_within_the_list_and_cap() {
    // Without deviceAutoApprove: the usual pairing request.
    let gw = start(tp_config(), |_| {}).await;
    let device = TestDevice::new();
    let mut c = via_proxy(&gw, &proxy_headers(USER, &[])).await;
    let res = c
        .connect_device(&device, ui_params(&["operator.read"]))
        .await;
    assert_eq!(res["error"]["details"]["code"], "PAIRING_REQUIRED", "{res}");
    gw.stop().await;

    let gw = start(
        TrustedProxyConfig {
            device_auto_approve: Some(AutoApprove {
                scopes: vec!["operator.read".into(), "operator.write".into()],
                explicit: true,
            }),
            ..tp_config()
        },
        |_| {},
    )
    .await;
    let device = TestDevice::new();
    let mut c = via_proxy(&gw, &proxy_headers(USER, &[])).await;
    let res = c
        .connect_device(&device, ui_params(&["operator.read", "operator.admin"]))
        .await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["auth"]["method"], "trusted-proxy", "{res}");
    assert_eq!(
        res["payload"]["auth"]["scopes"],
        json!(["operator.read"]),
        "{res}"
    );
    assert!(
        res["payload"]["auth"]["deviceToken"].is_null(),
        "browser UI gets no token: {res}"
    );
    let stored = testkit::store(&gw.state)
        .device(&device.id)
        .expect("paired");
    assert_eq!(stored.approved_via, "trusted-proxy");
    assert_eq!(stored.scopes, vec!["operator.read"]);
    // A native UI client asking for nothing gets the list, capped by the
    // proxy's header, and a device token.
    let native = TestDevice::new();
    let mut c = via_proxy(
        &gw,
        &proxy_headers(USER, &[("x-openclaw-scopes", "operator.read")]),
    )
    .await;
    let res = c
        .connect_device(&native, params("openclaw-macos", "ui", json!({}), &[]))
        .await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(
        res["payload"]["auth"]["scopes"],
        json!(["operator.read"]),
        "{res}"
    );
    let stored = testkit::store(&gw.state)
        .device(&native.id)
        .expect("paired");
    assert_eq!(
        stored.scopes,
        vec!["operator.read"],
        "the cap limits the persistent grant"
    );
    assert!(res["payload"]["auth"]["deviceToken"].is_string(), "{res}");
    // A node is never auto-approved.
    let node = TestDevice::new();
    let mut c = via_proxy(&gw, &proxy_headers(USER, &[])).await;
    let mut p = params("node-host", "node", json!({}), &[]);
    p["role"] = json!("node");
    let res = c.connect_device(&node, p).await;
    assert_eq!(res["error"]["details"]["code"], "PAIRING_REQUIRED", "{res}");
    gw.stop().await;
}

// ---- the proxy's signed assertion ----

/// An Ed25519 test key: the JWK and the PKCS#8 document to sign with.
struct TestKey {
    kid: String,
    pkcs8: Vec<u8>,
    jwk: Value,
}

impl TestKey {
    fn new(kid: &str, seed: u8) -> TestKey {
        let seed = [seed; 32];
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        let mut pkcs8 = hex_bytes("302e020100300506032b657004220420");
        pkcs8.extend_from_slice(&seed);
        TestKey {
            kid: kid.into(),
            pkcs8,
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": kid, "x": URL_SAFE_NO_PAD.encode(public.as_bytes())}),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(
            &header,
            claims,
            &jsonwebtoken::EncodingKey::from_ed_der(&self.pkcs8),
        )
        .unwrap()
    }
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn claims(user: &str, exp_in: i64) -> Value {
    let now = (now_ms() / 1000) as i64;
    json!({"iss": ISSUER, "aud": AUDIENCE, "email": user, "iat": now, "exp": now + exp_in})
}

/// A tiny HTTP server answering every request with `body` (Cache-Control
/// max-age=600); counts the requests.
struct JwksServer {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    body: Arc<std::sync::Mutex<String>>,
}

impl JwksServer {
    async fn start(body: String) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let body = Arc::new(std::sync::Mutex::new(body));
        let (h, b) = (hits.clone(), body.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (h, b) = (h.clone(), b.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    h.fetch_add(1, Ordering::SeqCst);
                    let body = b.lock().unwrap().clone();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: public, max-age=600\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                        body.len(),
                        body
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                });
            }
        });
        JwksServer { addr, hits, body }
    }

    fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }
}

fn jwt_config(jwks: JwksSource) -> JwtConfig {
    JwtConfig {
        header: "x-pomerium-jwt-assertion".into(),
        jwks,
        issuer: ISSUER.into(),
        audience: vec![AUDIENCE.into()],
        algorithms: vec!["EdDSA".into()],
        clock_skew_secs: 5,
        user_claim: "email".into(),
    }
}

fn with_jwt(jwt: JwtConfig) -> TrustedProxyConfig {
    TrustedProxyConfig {
        jwt: Some(jwt),
        ..tp_config()
    }
}

async fn connect_with_assertion(gw: &TestGateway, user: &str, assertion: Option<&str>) -> Value {
    let mut h = proxy_headers(user, &[]);
    if let Some(a) = assertion {
        h.push(("x-pomerium-jwt-assertion", a));
    }
    let mut c = via_proxy(gw, &h).await;
    c.connect_with(ui_params(&[])).await
}

#[tokio::test]
async fn assertions_are_verified_against_the_jwks() {
    let key = TestKey::new("k1", 7);
    let other = TestKey::new("k-other", 9);
    let server = JwksServer::start(json!({"keys": [key.jwk]}).to_string()).await;
    let gw = start(with_jwt(jwt_config(JwksSource::Url(server.url()))), |_| {}).await;

    let good = key.sign(&claims(USER, 300));
    let res = connect_with_assertion(&gw, USER, Some(&good)).await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["auth"]["method"], "trusted-proxy", "{res}");
    // The header's user and the claim's compare case-insensitively.
    let res = connect_with_assertion(&gw, "Nick@Example.com", Some(&good)).await;
    assert_eq!(res["ok"], true, "{res}");

    let now = (now_ms() / 1000) as i64;
    let mut wrong_aud = claims(USER, 300);
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims(USER, 300);
    wrong_iss["iss"] = json!("https://evil.example");
    let mut no_exp = claims(USER, 300);
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut not_yet = claims(USER, 300);
    not_yet["nbf"] = json!(now + 600);
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let none_payload = URL_SAFE_NO_PAD.encode(claims(USER, 300).to_string());
    let alg_none = format!("{none_header}.{none_payload}.");
    let alg_none_sig = format!("{none_header}.{none_payload}.AAAA");
    let hs_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","kid":"k1"}"#);
    let alg_hs = format!("{hs_header}.{none_payload}.AAAA");
    let mut tampered = good.clone();
    tampered.replace_range(tampered.len() - 6.., "AAAAAA");
    let cases: Vec<(String, &str, &str)> = vec![
        (
            key.sign(&claims(USER, -120)),
            USER,
            "trusted_proxy_jwt_expired",
        ),
        (key.sign(&wrong_aud), USER, "trusted_proxy_jwt_audience"),
        (key.sign(&wrong_iss), USER, "trusted_proxy_jwt_issuer"),
        (key.sign(&no_exp), USER, "trusted_proxy_jwt_claims"),
        (key.sign(&not_yet), USER, "trusted_proxy_jwt_not_yet_valid"),
        (
            other.sign(&claims(USER, 300)),
            USER,
            "trusted_proxy_jwt_unknown_key",
        ),
        (alg_none.clone(), USER, "trusted_proxy_jwt_malformed"),
        (alg_none_sig, USER, "trusted_proxy_jwt_algorithm"),
        (alg_hs, USER, "trusted_proxy_jwt_algorithm"),
        (tampered, USER, "trusted_proxy_jwt_signature"),
        ("not.a.jwt".into(), USER, "trusted_proxy_jwt_malformed"),
        ("%%%.***.!!!".into(), USER, "trusted_proxy_jwt_malformed"),
        // An assertion for another user than the header names.
        (
            key.sign(&claims("admin@example.com", 300)),
            USER,
            "trusted_proxy_jwt_user_mismatch",
        ),
    ];
    for (token, user, reason) in &cases {
        let res = connect_with_assertion(&gw, user, Some(token)).await;
        assert_refused(&res, "AUTH_UNAUTHORIZED", reason);
        let msg = res["error"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with("unauthorized: trusted proxy assertion"),
            "{msg}"
        );
    }
    // The header without an assertion.
    let res = connect_with_assertion(&gw, USER, None).await;
    assert_refused(&res, "AUTH_UNAUTHORIZED", "trusted_proxy_jwt_missing");
    // The key set was fetched once, plus one refetch for the unknown kid
    // (later unknown kids within 30 s do not refetch).
    let hits = server.hits.load(Ordering::SeqCst);
    assert_eq!(hits, 2, "JWKS fetches");
    let res = connect_with_assertion(
        &gw,
        USER,
        Some(&TestKey::new("k3", 3).sign(&claims(USER, 300))),
    )
    .await;
    assert_refused(&res, "AUTH_UNAUTHORIZED", "trusted_proxy_jwt_unknown_key");
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        2,
        "rate-limited refetch"
    );

    let reasons = audit_reasons(&gw).await;
    for (_, _, reason) in &cases {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} in {reasons:?}"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_and_an_unreachable_jwks_fails_closed() {
    let key = TestKey::new("k1", 7);
    let rotated = TestKey::new("k2", 8);
    let server = JwksServer::start(json!({"keys": [key.jwk]}).to_string()).await;
    let gw = start(with_jwt(jwt_config(JwksSource::Url(server.url()))), |_| {}).await;
    let res = connect_with_assertion(&gw, USER, Some(&key.sign(&claims(USER, 300)))).await;
    assert_eq!(res["ok"], true, "{res}");
    *server.body.lock().unwrap() = json!({"keys": [key.jwk, rotated.jwk]}).to_string();
    let res = connect_with_assertion(&gw, USER, Some(&rotated.sign(&claims(USER, 300)))).await;
    assert_eq!(res["ok"], true, "unknown kid refetches: {res}");
    gw.stop().await;

    // Nothing listens there: refused, never let through.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}/jwks.json");
    let gw = start(with_jwt(jwt_config(JwksSource::Url(url))), |_| {}).await;
    let res = connect_with_assertion(&gw, USER, Some(&key.sign(&claims(USER, 300)))).await;
    assert_refused(&res, "AUTH_UNAUTHORIZED", "trusted_proxy_jwks_unavailable");
    gw.stop().await;

    // A huge or broken key set is refused as such.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(
        &file,
        format!("{{\"keys\": [], \"pad\": \"{}\"}}", "x".repeat(100_000)),
    )
    .unwrap();
    let gw = start(with_jwt(jwt_config(JwksSource::File(file.clone()))), |_| {}).await;
    let res = connect_with_assertion(&gw, USER, Some(&key.sign(&claims(USER, 300)))).await;
    assert_refused(&res, "AUTH_UNAUTHORIZED", "trusted_proxy_jwks_too_large");
    std::fs::write(
        &file,
        "{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]}",
    )
    .unwrap();
    let res = connect_with_assertion(&gw, USER, Some(&key.sign(&claims(USER, 300)))).await;
    assert_refused(&res, "AUTH_UNAUTHORIZED", "trusted_proxy_jwks_invalid");
    // The file is read again once it changes.
    std::fs::write(&file, json!({"keys": [key.jwk]}).to_string()).unwrap();
    let res = connect_with_assertion(&gw, USER, Some(&key.sign(&claims(USER, 300)))).await;
    assert_eq!(res["ok"], true, "{res}");
    gw.stop().await;
}

// ---- a real nginx in front of the gateway ----

/// nginx from the distribution, on a loopback port, in front of `gw`: it
/// connects to the gateway from 127.0.0.2 (the trusted proxy), overwrites
/// the identity headers with what the test asks for (X-Test-User,
/// X-Test-Assertion: in a real deployment its auth module would set
/// them), and passes WebSocket upgrades. Panics when nginx cannot start.
struct Nginx {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(gateway: SocketAddr) -> Nginx {
        let bin = PathBuf::from("/usr/sbin/nginx");
        assert!(
            bin.exists(),
            "nginx is required for this test: apt-get install nginx-light (scripts/test.sh installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = dir.path().display();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
error_log stderr warn;
pid {p}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {p}/body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{gateway};
            proxy_bind {PROXY};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto http;
            proxy_set_header X-Forwarded-User $http_x_test_user;
            proxy_set_header X-Pomerium-Jwt-Assertion $http_x_test_assertion;
            proxy_set_header X-Test-User "";
            proxy_set_header X-Test-Assertion "";
            proxy_read_timeout 30s;
        }}
    }}
}}
"#
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut child = std::process::Command::new(&bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("nginx starts");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Nginx {
                    child,
                    port,
                    _dir: dir,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("nginx exited at start: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        panic!("nginx did not listen on 127.0.0.1:{port}");
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn through_a_real_nginx() {
    let key = TestKey::new("k1", 7);
    let server = JwksServer::start(json!({"keys": [key.jwk]}).to_string()).await;
    let gw = start(with_jwt(jwt_config(JwksSource::Url(server.url()))), |_| {}).await;
    let nginx = Nginx::start(gw.addr);
    let through = |user: &str, assertion: &str, extra: Vec<(&'static str, String)>| {
        let mut h: Vec<(String, String)> = vec![
            ("x-test-user".into(), user.to_string()),
            ("x-test-assertion".into(), assertion.to_string()),
        ];
        h.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
        h
    };
    async fn connect(url: &str, h: &[(String, String)]) -> Value {
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut c = Client::connect(url, &h)
            .await
            .expect("upgrade through nginx");
        c.connect_with(ui_params(&[])).await
    }
    let good = key.sign(&claims(USER, 300));
    let res = connect(&nginx.url(), &through(USER, &good, vec![])).await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["auth"]["method"], "trusted-proxy", "{res}");

    let mut wrong_aud = claims(USER, 300);
    wrong_aud["aud"] = json!("other");
    let mut wrong_iss = claims(USER, 300);
    wrong_iss["iss"] = json!("https://evil.example");
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(claims(USER, 300).to_string())
    );
    for (assertion, user, reason) in [
        (
            key.sign(&claims(USER, -120)),
            USER,
            "trusted_proxy_jwt_expired",
        ),
        (key.sign(&wrong_aud), USER, "trusted_proxy_jwt_audience"),
        (key.sign(&wrong_iss), USER, "trusted_proxy_jwt_issuer"),
        (
            TestKey::new("k9", 9).sign(&claims(USER, 300)),
            USER,
            "trusted_proxy_jwt_unknown_key",
        ),
        (none, USER, "trusted_proxy_jwt_malformed"),
        (String::new(), USER, "trusted_proxy_jwt_missing"),
        (
            key.sign(&claims("admin@example.com", 300)),
            USER,
            "trusted_proxy_jwt_user_mismatch",
        ),
    ] {
        let res = connect(&nginx.url(), &through(user, &assertion, vec![])).await;
        assert_refused(&res, "AUTH_UNAUTHORIZED", reason);
    }
    // A client's own identity header does not survive nginx: it is
    // overwritten with what the proxy vouches for.
    let res = connect(
        &nginx.url(),
        &through(
            USER,
            &good,
            vec![("x-forwarded-user", "admin@example.com".into())],
        ),
    )
    .await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(
        res["payload"]["auth"]["scopes"],
        json!([]),
        "not admin's grant: {res}"
    );
    // Bypassing nginx with the same headers: the gateway refuses them.
    let err = Client::connect(
        &gw.url(),
        &[
            ("x-forwarded-user", USER),
            ("x-pomerium-jwt-assertion", good.as_str()),
        ],
    )
    .await
    .err()
    .expect("proxy bypass refused");
    assert!(err.to_string().contains("403"), "{err}");
    drop(nginx);
    gw.stop().await;
}

#[tokio::test]
async fn a_loopback_proxy_without_forwarding_headers_is_not_a_local_caller() {
    // Only the identity header: no x-forwarded-* that would mark the
    // socket as forwarded. Local silent pairing must not apply.
    let gw = start(
        TrustedProxyConfig {
            user_header: "x-pomerium-claim-email".into(),
            required_headers: vec![],
            ..tp_config()
        },
        |_| {},
    )
    .await;
    let device = TestDevice::new();
    let mut c = via_proxy(&gw, &[("x-pomerium-claim-email", USER)]).await;
    let res = c
        .connect_device(
            &device,
            params("openclaw-macos", "ui", json!({}), &["operator.read"]),
        )
        .await;
    assert_eq!(res["error"]["details"]["code"], "PAIRING_REQUIRED", "{res}");
    gw.stop().await;
}

#[tokio::test]
async fn a_paired_device_keeps_its_own_credential_path() {
    // As in the reference: a device token is its own way in, also when the
    // proxy's headers are absent (revoke the device to cut it off).
    let gw = start(
        TrustedProxyConfig {
            device_auto_approve: Some(AutoApprove {
                scopes: vec!["operator.read".into()],
                explicit: true,
            }),
            ..tp_config()
        },
        |_| {},
    )
    .await;
    let device = TestDevice::new();
    let mut c = via_proxy(&gw, &proxy_headers(USER, &[])).await;
    let res = c
        .connect_device(&device, params("openclaw-macos", "ui", json!({}), &[]))
        .await;
    let token = res["payload"]["auth"]["deviceToken"]
        .as_str()
        .expect("token")
        .to_string();
    let mut c = Client::connect_from(ip(OUTSIDER), &gw.url(), &[])
        .await
        .unwrap();
    let res = c
        .connect_device(
            &device,
            params(
                "openclaw-macos",
                "ui",
                json!({"deviceToken": token}),
                &["operator.read"],
            ),
        )
        .await;
    assert_eq!(res["payload"]["auth"]["method"], "device-token", "{res}");
    let mut c = Client::connect_from(ip(OUTSIDER), &gw.url(), &[])
        .await
        .unwrap();
    let res = c
        .connect_device(
            &device,
            params(
                "openclaw-macos",
                "ui",
                json!({"deviceToken": "wrong"}),
                &["operator.read"],
            ),
        )
        .await;
    assert_eq!(
        res["error"]["details"]["code"], "AUTH_DEVICE_TOKEN_MISMATCH",
        "{res}"
    );
    // Without any credential, the proxy's refusal is the answer.
    let mut c = Client::connect_from(ip(OUTSIDER), &gw.url(), &[])
        .await
        .unwrap();
    let res = c
        .connect_device(
            &device,
            params("openclaw-macos", "ui", json!({}), &["operator.read"]),
        )
        .await;
    assert_refused(&res, "AUTH_UNAUTHORIZED", "trusted_proxy_untrusted_source");
    gw.stop().await;
}
