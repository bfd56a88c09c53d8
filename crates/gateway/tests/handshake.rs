//! The handshake against a real gateway: challenge, hello-ok, every
//! first-frame rule and every credential error, with full payloads and
//! close codes.

mod common;

use clawgate_gateway::config::AuthMode;
use common::*;
use insta::assert_json_snapshot;
use serde_json::{Value, json};

/// Sends `params` as connect and returns the response and the close.
async fn rejected(c: &mut Client, params: Value) -> Value {
    let res = c.connect_with(params).await;
    let closed = c.closed().await;
    json!({"response": res, "close": {"code": closed.code, "reason": closed.reason}})
}

#[tokio::test]
async fn challenge_comes_first_without_seq() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let c = gw.client().await;
    let ch = &c.challenge;
    assert_eq!(ch["type"], "event");
    assert_eq!(ch["event"], "connect.challenge");
    assert!(ch.get("seq").is_none());
    let nonce = ch["payload"]["nonce"].as_str().unwrap();
    assert_eq!(nonce.len(), 36);
    assert_eq!(nonce.as_bytes()[14], b'4', "UUID v4: {nonce}");
    assert!(ch["payload"]["ts"].as_u64().unwrap() > 1_700_000_000_000);
    let other = gw.client().await;
    assert_ne!(other.nonce(), c.nonce(), "nonce is per connection");
    gw.stop().await;
}

#[tokio::test]
async fn hello_ok_for_a_local_cli_with_the_token() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = gw.client().await;
    let res = c
        .connect_with(cli_params(TOKEN, &["operator.read", "operator.admin"]))
        .await;
    assert_eq!(res["ok"], true);
    let p = &res["payload"];
    assert_eq!(p["protocol"], 4);
    assert_eq!(p["auth"]["method"], "token");
    assert_eq!(
        p["auth"]["scopes"],
        json!(["operator.read", "operator.admin"])
    );
    assert_eq!(p["policy"]["tickIntervalMs"], 30000);
    assert_eq!(p["policy"]["maxPayload"], 26214400);
    assert_eq!(p["policy"]["maxBufferedBytes"], 52428800);
    assert!(p["auth"]["recoveryScope"].as_str().unwrap().len() == 43);
    assert_json_snapshot!("hello_ok_cli_admin", mask(&res));
    gw.stop().await;
}

#[tokio::test]
async fn wrong_token_cli_local() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = gw.client().await;
    assert_json_snapshot!(rejected(&mut c, cli_params("wrong", &["operator.read"])).await);
    gw.stop().await;
}

#[tokio::test]
async fn wrong_token_probe_and_ui_hints() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = gw.client().await;
    let probe = params("openclaw-probe", "probe", json!({"token": "x"}), &[]);
    assert_json_snapshot!("wrong_token_probe", rejected(&mut c, probe).await);
    let mut c = gw.client().await;
    let webchat = params("webchat", "webchat", json!({"token": "x"}), &[]);
    assert_json_snapshot!("wrong_token_webchat", rejected(&mut c, webchat).await);
    gw.stop().await;
}

#[tokio::test]
async fn wrong_secret_in_the_password_field_of_a_token_gateway() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = gw.client().await;
    let p = params("cli", "cli", json!({"password": "nope"}), &[]);
    let out = rejected(&mut c, p).await;
    assert_eq!(
        out["response"]["error"]["details"]["code"],
        "AUTH_TOKEN_MISMATCH"
    );
    // ...and the right token in the password field works.
    let mut c = gw.client().await;
    let res = c
        .connect_with(params("cli", "cli", json!({"password": TOKEN}), &[]))
        .await;
    assert_eq!(res["ok"], true);
    gw.stop().await;
}

#[tokio::test]
async fn password_mode_errors() {
    let gw = TestGateway::start(AuthMode::Password).await;
    let mut c = gw.client().await;
    let p = params("cli", "cli", json!({"password": "wrong"}), &[]);
    assert_json_snapshot!("password_mismatch", rejected(&mut c, p).await);
    let mut c = gw.client().await;
    let p = params("cli", "cli", json!({"token": PASSWORD}), &["operator.read"]);
    let res = c.connect_with(p).await;
    assert_eq!(res["ok"], true, "token field carries the password: {res}");
    assert_eq!(res["payload"]["auth"]["method"], "password");
    gw.stop().await;
}

#[tokio::test]
async fn auth_none_accepts_everyone() {
    let gw = TestGateway::start(AuthMode::None).await;
    let mut c = gw.client().await;
    let res = c
        .connect_with(params("cli", "cli", json!({}), &["operator.read"]))
        .await;
    assert_eq!(res["payload"]["auth"]["method"], "none");
    assert_eq!(res["payload"]["auth"]["scopes"], json!(["operator.read"]));
    gw.stop().await;
}

#[tokio::test]
async fn device_identity_required_without_credentials() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = gw.client().await;
    assert_json_snapshot!(
        "device_identity_required",
        rejected(&mut c, params("cli", "cli", json!({}), &[])).await
    );
    // An empty token is no token.
    let mut c = gw.client().await;
    let out = rejected(&mut c, params("cli", "cli", json!({"token": ""}), &[])).await;
    assert_eq!(
        out["response"]["error"]["details"]["code"],
        "DEVICE_IDENTITY_REQUIRED"
    );
    // A node needs a device even with the right token.
    let mut c = gw.client().await;
    let mut p = params("node-host", "node", json!({"token": TOKEN}), &[]);
    p["role"] = json!("node");
    let out = rejected(&mut c, p).await;
    assert_eq!(
        out["response"]["error"]["details"]["code"],
        "DEVICE_IDENTITY_REQUIRED"
    );
    gw.stop().await;
}

#[tokio::test]
async fn control_ui_requires_a_device_identity() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let origin = format!("http://{}", gw.addr);
    let mut c = gw.client_with(&[("origin", &origin)]).await;
    let p = params(
        "openclaw-control-ui",
        "webchat",
        json!({"token": "wrong"}),
        &[],
    );
    assert_json_snapshot!(
        "control_ui_device_identity_required",
        rejected(&mut c, p).await
    );
    gw.stop().await;
}

#[tokio::test]
async fn origins_not_allowed() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = gw.client_with(&[("origin", "http://evil.example")]).await;
    assert_json_snapshot!(
        "origin_not_allowed",
        rejected(&mut c, cli_params(TOKEN, &[])).await
    );
    let mut c = gw.client_with(&[("origin", "null")]).await;
    assert_json_snapshot!(
        "origin_missing_or_invalid",
        rejected(&mut c, cli_params(TOKEN, &[])).await
    );
    let mut c = gw
        .client_with(&[("origin", "http://127.evil.com:80")])
        .await;
    let out = rejected(&mut c, cli_params(TOKEN, &[])).await;
    assert_eq!(
        out["response"]["error"]["details"]["reason"],
        "origin not allowed"
    );
    // Any loopback origin is fine for a loopback peer.
    let mut c = gw.client_with(&[("origin", "http://localhost:1")]).await;
    assert_eq!(c.connect_with(cli_params(TOKEN, &[])).await["ok"], true);
    gw.stop().await;
}

#[tokio::test]
async fn protocol_mismatch_closes_1002() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = gw.client().await;
    let mut p = cli_params(TOKEN, &[]);
    p["minProtocol"] = json!(5);
    p["maxProtocol"] = json!(5);
    assert_json_snapshot!("protocol_mismatch", rejected(&mut c, p).await);
    let mut c = gw.client().await;
    let mut p = cli_params(TOKEN, &[]);
    p["minProtocol"] = json!(3);
    p["maxProtocol"] = json!(3);
    let out = rejected(&mut c, p).await;
    assert_eq!(out["close"]["code"], 1002);
    // Probes may still speak 3.
    let mut c = gw.client().await;
    let mut p = params("openclaw-probe", "probe", json!({"token": TOKEN}), &[]);
    p["minProtocol"] = json!(3);
    p["maxProtocol"] = json!(3);
    assert_eq!(c.connect_with(p).await["ok"], true);
    gw.stop().await;
}

#[tokio::test]
async fn invalid_role() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = gw.client().await;
    let mut p = cli_params(TOKEN, &[]);
    p["role"] = json!("admin");
    assert_json_snapshot!("invalid_role", rejected(&mut c, p).await);
    gw.stop().await;
}

#[tokio::test]
async fn invalid_connect_params() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = gw.client().await;
    assert_json_snapshot!(
        "invalid_params_missing_and_extra",
        rejected(&mut c, json!({"foo": 1, "minProtocol": "x"})).await
    );
    let mut c = gw.client().await;
    let p = json!({"minProtocol":4,"maxProtocol":4,"client":{"id":"bad","version":"","platform":"linux","mode":"cli"},"foo":2});
    assert_json_snapshot!("invalid_params_enum_and_length", rejected(&mut c, p).await);
    let mut c = gw.client().await;
    let mut p = cli_params(TOKEN, &[]);
    p["auth"]["extra"] = json!("x");
    let out = rejected(&mut c, p).await;
    assert_eq!(
        out["response"]["error"]["message"],
        "invalid connect params: at /auth: unexpected property 'extra'"
    );
    gw.stop().await;
}

#[tokio::test]
async fn first_request_must_be_connect() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = gw.client().await;
    c.send_json(&json!({"type":"req","id":"q1","method":"health"}))
        .await;
    let res = c.response().await.unwrap();
    let closed = c.closed().await;
    assert_json_snapshot!(
        "first_request_not_connect",
        json!({"response": res, "close": {"code": closed.code, "reason": closed.reason}})
    );
    gw.stop().await;
}

#[tokio::test]
async fn malformed_first_frames() {
    let gw = TestGateway::start(AuthMode::Token).await;
    // Not JSON: no response, close 1000 with an empty reason.
    let mut c = gw.client().await;
    c.send_text("hello").await;
    assert_eq!(
        c.next().await,
        Err(Closed {
            code: 1000,
            reason: String::new()
        })
    );
    // JSON but not a request frame: no response, 1008.
    for frame in [
        r#"{"type":"event","id":"x"}"#,
        r#"{"type":"req","id":"x"}"#,
        "[]",
        "42",
    ] {
        let mut c = gw.client().await;
        c.send_text(frame).await;
        assert_eq!(
            c.next().await,
            Err(Closed {
                code: 1008,
                reason: "invalid request frame".into()
            }),
            "{frame}"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn oversize_preauth_frame_closes_1009() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = gw.client().await;
    let big = format!(
        r#"{{"type":"req","id":"1","method":"connect","params":{{"pad":"{}"}}}}"#,
        "x".repeat(70_000)
    );
    c.send_text(&big).await;
    let closed = c.closed().await;
    assert_eq!(closed.code, 1009);
    assert_eq!(closed.reason, "", "an empty reason, as the reference sends");
    // Exactly at the cap is still parsed (and rejected for its content).
    let mut c = gw.client().await;
    let mut frame = String::from(r#"{"type":"req","id":"1","method":"connect","params":{"pad":""#);
    let fill = 65536 - frame.len() - 3;
    frame.push_str(&"x".repeat(fill));
    frame.push_str("\"}}");
    assert_eq!(frame.len(), 65536);
    c.send_text(&frame).await;
    let res = c.response().await.unwrap();
    assert_eq!(res["error"]["code"], "INVALID_REQUEST");
    gw.stop().await;
}

#[tokio::test]
async fn handshake_timeout_closes_1000() {
    let (cfg, dir) = config(AuthMode::Token);
    let mut options = fast_options();
    options.handshake_timeout = std::time::Duration::from_millis(300);
    let gw = TestGateway::start_with(cfg, options, dir).await;
    let mut c = gw.client().await;
    let started = std::time::Instant::now();
    assert_eq!(
        c.next().await,
        Err(Closed {
            code: 1000,
            reason: String::new()
        })
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    gw.stop().await;
}

#[tokio::test]
async fn close_reason_is_truncated_to_120_bytes() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = gw.client().await;
    let out = rejected(&mut c, json!({"foo": 1, "minProtocol": "x"})).await;
    let reason = out["close"]["reason"].as_str().unwrap();
    assert_eq!(reason.len(), 120);
    assert!(
        out["response"]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with(reason)
    );
    gw.stop().await;
}

/// Dual-stack loopback: a gateway listening on an IPv6 socket sees an IPv4
/// loopback client as `::ffff:127.0.0.1`. That peer is local: a device is
/// paired silently and a device-less CLI keeps its scopes, as on
/// 127.0.0.1 (before the fix it was treated as remote: PAIRING_REQUIRED).
#[tokio::test]
async fn an_ipv4_mapped_loopback_peer_is_local() {
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.bind = clawgate_gateway::config::BindMode::Custom("::ffff:127.0.0.1".parse().unwrap());
    assert!(cfg.bind.is_loopback());
    let gw = TestGateway::start_with(cfg, fast_options(), dir).await;
    assert_eq!(gw.addr.ip().to_string(), "::ffff:127.0.0.1");
    let url = format!("ws://127.0.0.1:{}/", gw.addr.port());

    let device = TestDevice::new();
    let mut c = Client::connect(&url, &[]).await.expect("connect");
    let res = c
        .connect_device(
            &device,
            params("cli", "cli", json!({"token": TOKEN}), &["operator.read"]),
        )
        .await;
    assert_eq!(res["ok"], true, "{res}");
    assert!(res["payload"]["auth"]["deviceToken"].is_string(), "{res}");

    let mut c = Client::connect(&url, &[]).await.expect("connect");
    let res = c.connect_with(cli_params(TOKEN, &["operator.admin"])).await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["auth"]["scopes"], json!(["operator.admin"]));
}
