//! Setup codes (issue 18 part 3): `device.setup.create|list|revoke` and
//! redeeming a code with `auth.bootstrapToken` and a signed device identity,
//! against a real gateway on a loopback port with a real SQLite store.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clawgate_gateway::config::AuthMode;
use clawgate_gateway::testkit;
use clawgate_protocol::setup_code::SetupPayload;
use clawgate_store::{SetupCode, hash_token};
use common::*;
use serde_json::{Value, json};

const REFERENCE_MESSAGE: &str = "unauthorized: setup code invalid, expired, revoked, or already used (create a new code; review `clawgate devices list`)";

/// A gateway that never approves local devices by itself, so only a setup
/// code can pair one.
async fn manual_gateway() -> TestGateway {
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.auto_approve_local = false;
    TestGateway::start_with(cfg, fast_options(), dir).await
}

async fn admin(gw: &TestGateway) -> Client {
    operator(gw, &["operator.admin"]).await
}

/// Creates a setup code; returns the whole reply.
async fn create(admin: &mut Client, gw: &TestGateway, params: Value) -> Value {
    let mut params = params;
    params["gatewayUrl"] = json!(gw.url());
    let res = admin
        .request("s", "device.setup.create", Some(params))
        .await;
    assert_eq!(res["ok"], true, "{res}");
    res["payload"].clone()
}

/// The bootstrap token inside a created code.
fn token_of(created: &Value) -> String {
    let payload = SetupPayload::decode(created["setupCode"].as_str().unwrap()).unwrap();
    payload.bootstrap_token.expose().to_string()
}

fn redeem_params(token: &str, role: &str, scopes: &[&str]) -> Value {
    let mut p = params(
        "openclaw-android",
        if role == "node" { "node" } else { "ui" },
        json!({"bootstrapToken": token}),
        scopes,
    );
    p["role"] = json!(role);
    p["client"]["displayName"] = json!("Pixel");
    p["client"]["platform"] = json!("android");
    if role == "node" {
        p["minProtocol"] = json!(3);
    }
    p
}

async fn redeem(
    gw: &TestGateway,
    device: &TestDevice,
    token: &str,
    role: &str,
    scopes: &[&str],
) -> Value {
    let mut c = gw.client().await;
    c.connect_device(device, redeem_params(token, role, scopes))
        .await
}

fn code(res: &Value) -> &str {
    res["error"]["details"]["code"].as_str().unwrap_or("")
}

async fn paired(admin: &mut Client) -> Vec<Value> {
    let res = admin.request("l", "device.pair.list", None).await;
    res["payload"]["paired"].as_array().unwrap().clone()
}

fn assert_invalid(res: &Value) {
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(code(res), "AUTH_BOOTSTRAP_TOKEN_INVALID", "{res}");
    assert_eq!(res["error"]["message"], REFERENCE_MESSAGE);
    assert_eq!(
        res["error"]["details"]["authReason"],
        "bootstrap_token_invalid"
    );
    assert_eq!(
        res["error"]["details"]["recommendedNextStep"],
        "review_auth_configuration"
    );
}

#[tokio::test]
async fn a_code_pairs_once_with_exactly_its_role_and_scopes() {
    let gw = manual_gateway().await;
    let mut admin = admin(&gw).await;
    let created = create(
        &mut admin,
        &gw,
        json!({"role": "operator", "scopes": ["operator.read", "operator.write"], "label": "phone"}),
    )
    .await;
    assert_eq!(created["role"], "operator");
    assert_eq!(
        created["scopes"],
        json!(["operator.read", "operator.write"])
    );
    assert!(created["qr"].as_array().unwrap().len() >= 21);

    // The code: the reference's JSON, the URL and a one-time token only.
    let text = created["setupCode"].as_str().unwrap();
    let json_text = String::from_utf8(URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap();
    assert!(
        !json_text.contains(TOKEN),
        "the shared token leaked: {json_text}"
    );
    let decoded: Value = serde_json::from_str(&json_text).unwrap();
    let keys: Vec<&str> = decoded
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["url", "bootstrapToken", "expiresAtMs"]);
    // The reference's normal form (no lone `/` path), which its apps require.
    assert_eq!(decoded["url"], gw.url().trim_end_matches('/'));
    assert_eq!(created["gatewayUrl"], decoded["url"]);
    let token = decoded["bootstrapToken"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 43);
    assert_eq!(decoded["expiresAtMs"], created["expiresAtMs"]);

    // Redeemed by a signed device asking for no scopes: it gets the code's.
    let phone = TestDevice::new();
    let res = redeem(&gw, &phone, &token, "operator", &[]).await;
    assert_eq!(res["ok"], true, "{res}");
    let auth = &res["payload"]["auth"];
    assert_eq!(auth["method"], "bootstrap-token");
    assert_eq!(auth["role"], "operator");
    assert_eq!(auth["scopes"], json!(["operator.read", "operator.write"]));
    let device_token = auth["deviceToken"].as_str().unwrap().to_string();
    assert_eq!(device_token.len(), 43);
    let handoff = auth["deviceTokens"].as_array().unwrap();
    assert_eq!(handoff.len(), 1);
    assert_eq!(handoff[0]["deviceToken"], device_token.as_str());
    assert_eq!(handoff[0]["role"], "operator");
    assert_eq!(
        handoff[0]["scopes"],
        json!(["operator.read", "operator.write"])
    );
    assert!(handoff[0]["issuedAtMs"].as_u64().is_some());

    let devices = paired(&mut admin).await;
    let record = devices
        .iter()
        .find(|d| d["deviceId"] == phone.id.as_str())
        .expect("paired");
    assert_eq!(record["approvedVia"], "bootstrap");
    assert_eq!(record["roles"], json!(["operator"]));
    assert_eq!(record["scopes"], json!(["operator.read", "operator.write"]));

    // The device token alone works from now on.
    let mut c = gw.client().await;
    let mut p = redeem_params("", "operator", &["operator.write"]);
    p["auth"] = json!({"deviceToken": device_token});
    let res = c.connect_device(&phone, p).await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["auth"]["method"], "device-token");

    // The code is spent: the same device, or another, is refused.
    let again = redeem(&gw, &phone, &token, "operator", &[]).await;
    assert_invalid(&again);
    let other = TestDevice::new();
    let res = redeem(&gw, &other, &token, "operator", &[]).await;
    assert_invalid(&res);
    assert!(
        paired(&mut admin)
            .await
            .iter()
            .all(|d| d["deviceId"] != other.id.as_str())
    );

    let list = admin.request("l", "device.setup.list", None).await;
    let codes = list["payload"]["setupCodes"].as_array().unwrap();
    assert_eq!(codes.len(), 1);
    assert_eq!(codes[0]["state"], "used");
    assert_eq!(codes[0]["usedByDeviceId"], phone.id.as_str());
    assert_eq!(codes[0]["label"], "phone");
    assert!(!list.to_string().contains(&token));

    let actions = audit_actions(&mut admin).await;
    let of = |a: &str| actions.iter().filter(|(x, _)| x == a).collect::<Vec<_>>();
    assert_eq!(of("setup_code.created").len(), 1);
    let redeemed = of("setup_code.redeemed");
    assert_eq!(redeemed.len(), 1);
    assert_eq!(redeemed[0].1["approvedVia"], "bootstrap");
    let rejected = of("setup_code.rejected");
    assert_eq!(rejected.len(), 2);
    assert!(rejected.iter().all(|(_, d)| d["reason"] == "used"));
    assert!(
        !format!("{actions:?}").contains(&token),
        "a token reached the audit log"
    );
}

#[tokio::test]
async fn two_devices_racing_for_one_code_exactly_one_wins() {
    let gw = manual_gateway().await;
    let mut admin = admin(&gw).await;
    for _ in 0..3 {
        let created = create(&mut admin, &gw, json!({"role": "node"})).await;
        let token = token_of(&created);
        let (a, b) = (TestDevice::new(), TestDevice::new());
        let mut ca = gw.client().await;
        let mut cb = gw.client().await;
        let (pa, pb) = (
            {
                let mut p = redeem_params(&token, "node", &[]);
                a.sign(&mut p, &ca.nonce());
                p
            },
            {
                let mut p = redeem_params(&token, "node", &[]);
                b.sign(&mut p, &cb.nonce());
                p
            },
        );
        let (ra, rb) = tokio::join!(ca.connect_with(pa), cb.connect_with(pb));
        let wins = [&ra, &rb].iter().filter(|r| r["ok"] == true).count();
        assert_eq!(wins, 1, "{ra}\n{rb}");
        let loser = if ra["ok"] == true { &rb } else { &ra };
        assert_invalid(loser);
        let node_devices = paired(&mut admin)
            .await
            .iter()
            .filter(|d| d["deviceId"] == a.id.as_str() || d["deviceId"] == b.id.as_str())
            .count();
        assert_eq!(node_devices, 1);
    }
}

/// A code written straight into the store (to reach states the RPC cannot
/// make on demand, such as already expired).
fn plant(gw: &TestGateway, token: &str, role: &str, scopes: &[&str], expires_at_ms: u64) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let code = SetupCode {
        setup_id: id.clone(),
        token_hash: hash_token(token),
        role: role.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        label: None,
        created_by: None,
        created_at_ms: now_ms() - 1000,
        expires_at_ms,
        used_at_ms: None,
        used_by_device_id: None,
        revoked_at_ms: None,
    };
    testkit::store(&gw.state)
        .transact(|tx| tx.insert_setup_code(&code))
        .unwrap();
    id
}

#[tokio::test]
async fn bad_codes_are_refused_with_nothing_paired_and_audited() {
    let gw = manual_gateway().await;
    let mut admin = admin(&gw).await;

    // Expired.
    let expired = "expired-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    plant(&gw, expired, "operator", &["operator.read"], now_ms() - 1);
    // Revoked.
    let created = create(
        &mut admin,
        &gw,
        json!({"role": "operator", "scopes": ["operator.read"]}),
    )
    .await;
    let revoked = token_of(&created);
    let res = admin
        .request(
            "r",
            "device.setup.revoke",
            Some(json!({"setupId": created["setupId"]})),
        )
        .await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["state"], "revoked");
    // For another role: an operator code presented by a node.
    let operator_code = token_of(
        &create(
            &mut admin,
            &gw,
            json!({"role": "operator", "scopes": ["operator.read"]}),
        )
        .await,
    );
    // Asking beyond the code's scopes.
    let narrow = token_of(
        &create(
            &mut admin,
            &gw,
            json!({"role": "operator", "scopes": ["operator.read"]}),
        )
        .await,
    );

    let cases: Vec<(&str, String, &str, Vec<&str>, &str)> = vec![
        (
            "unknown",
            "never-minted-token-bbbbbbbbbbbbbbbbbbbbbbbbbb".into(),
            "operator",
            vec![],
            "unknown",
        ),
        ("expired", expired.into(), "operator", vec![], "expired"),
        ("revoked", revoked.clone(), "operator", vec![], "revoked"),
        (
            "wrong role",
            operator_code.clone(),
            "node",
            vec![],
            "wrong-role",
        ),
        (
            "beyond scopes",
            narrow.clone(),
            "operator",
            vec!["operator.admin"],
            "scopes-beyond-code",
        ),
        (
            "oversized",
            "x".repeat(600),
            "operator",
            vec![],
            "malformed",
        ),
    ];
    for (name, token, role, scopes, reason) in &cases {
        let device = TestDevice::new();
        let before = audit_actions(&mut admin).await.len();
        let res = redeem(&gw, &device, token, role, scopes).await;
        assert_invalid(&res);
        // One payload for every reason: nothing tells a guesser which it was.
        insta::assert_json_snapshot!("bootstrap_token_invalid", mask(&res));
        assert!(
            paired(&mut admin)
                .await
                .iter()
                .all(|d| d["deviceId"] != device.id.as_str()),
            "{name}: paired"
        );
        let actions = audit_actions(&mut admin).await;
        let new: Vec<_> = actions[before..]
            .iter()
            .filter(|(a, _)| a == "setup_code.rejected")
            .collect();
        assert_eq!(new.len(), 1, "{name}: {actions:?}");
        assert_eq!(new[0].1["reason"], *reason, "{name}");
    }
    // The refused codes are unchanged: the operator code still pairs an
    // operator, the narrow one within its scopes.
    let ok = redeem(
        &gw,
        &TestDevice::new(),
        &operator_code,
        "operator",
        &["operator.read"],
    )
    .await;
    assert_eq!(ok["ok"], true, "{ok}");
    let ok = redeem(&gw, &TestDevice::new(), &narrow, "operator", &[]).await;
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(ok["payload"]["auth"]["scopes"], json!(["operator.read"]));

    // Malformed params are refused by the schema before anything happens.
    let mut c = gw.client().await;
    let res = c
        .connect_with(params("cli", "cli", json!({"bootstrapToken": 7}), &[]))
        .await;
    assert_eq!(res["ok"], false, "{res}");
}

#[tokio::test]
async fn list_revoke_and_purge() {
    let gw = manual_gateway().await;
    let mut admin = admin(&gw).await;
    let a = create(&mut admin, &gw, json!({"role": "node", "label": "kitchen"})).await;
    let b = create(
        &mut admin,
        &gw,
        json!({"role": "operator", "scopes": ["operator.read"], "ttlMs": 120000}),
    )
    .await;
    let list = admin.request("l", "device.setup.list", None).await;
    let codes = list["payload"]["setupCodes"].as_array().unwrap();
    assert_eq!(codes.len(), 2);
    assert!(codes.iter().all(|c| c["state"] == "live"));
    assert_eq!(codes[0]["label"], "kitchen");
    assert!(codes.iter().all(|c| c.get("setupCode").is_none()));

    let res = admin
        .request(
            "r",
            "device.setup.revoke",
            Some(json!({"setupId": a["setupId"]})),
        )
        .await;
    assert_eq!(res["ok"], true, "{res}");
    let res = admin
        .request(
            "r",
            "device.setup.revoke",
            Some(json!({"setupId": a["setupId"]})),
        )
        .await;
    assert_eq!(res["ok"], false);
    assert_eq!(res["error"]["message"], "setup code already revoked");
    let res = admin
        .request("r", "device.setup.revoke", Some(json!({"setupId": "nope"})))
        .await;
    assert_eq!(res["error"]["message"], "unknown setupId");
    assert!(
        audit_actions(&mut admin)
            .await
            .iter()
            .any(|(a, _)| a == "setup_code.revoked")
    );

    // Bad create params: each refused, nothing stored.
    for bad in [
        json!({"role": "admin"}),
        json!({"role": "node", "scopes": ["operator.read"]}),
        json!({"role": "operator", "scopes": ["operator.everything"]}),
        json!({"role": "operator", "ttlMs": 5}),
        json!({"role": "operator", "gatewayUrl": "http://x"}),
    ] {
        let mut p = bad.clone();
        if p.get("gatewayUrl").is_none() {
            p["gatewayUrl"] = json!(gw.url());
        }
        let res = admin.request("c", "device.setup.create", Some(p)).await;
        assert_eq!(res["ok"], false, "{bad}: {res}");
    }
    let store = testkit::store(&gw.state);
    assert_eq!(store.setup_codes().unwrap().len(), 2);

    // A non-admin operator may not mint codes.
    let mut reader = operator(&gw, &["operator.read", "operator.pairing"]).await;
    let res = reader
        .request(
            "c",
            "device.setup.create",
            Some(json!({"role": "node", "gatewayUrl": gw.url()})),
        )
        .await;
    assert_eq!(res["ok"], false, "{res}");

    // Purged once expired (the prune loop calls this once a minute).
    let expiry = b["expiresAtMs"]
        .as_u64()
        .unwrap()
        .max(a["expiresAtMs"].as_u64().unwrap());
    let gone = store.prune_expired_setup_codes(expiry + 1).unwrap();
    assert_eq!(gone.len(), 2);
    assert!(store.setup_codes().unwrap().is_empty());
}

#[tokio::test]
async fn the_token_is_stored_hashed() {
    let gw = manual_gateway().await;
    let mut admin = admin(&gw).await;
    let created = create(&mut admin, &gw, json!({"role": "node"})).await;
    let token = token_of(&created);
    let hash_hex = clawgate_protocol::hex::encode(&hash_token(&token));
    let db = state_dir_of(&gw).join(clawgate_store::DB_FILE_NAME);
    let mut bytes = std::fs::read(&db).unwrap();
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    bytes.extend(std::fs::read(&wal).unwrap_or_default());
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(contains(&hash_hex), "the hash is not in the database files");
    assert!(
        !contains(&token),
        "the plain bootstrap token is in the database files"
    );
    assert!(!contains(created["setupCode"].as_str().unwrap()));
}

#[tokio::test]
async fn a_setup_code_pasted_as_the_token_is_explained() {
    let gw = manual_gateway().await;
    let mut admin = admin(&gw).await;
    let created = create(
        &mut admin,
        &gw,
        json!({"role": "operator", "scopes": ["operator.read"]}),
    )
    .await;
    let text = created["setupCode"].as_str().unwrap();
    // Device-less CLI and a signed device: both get the hint, the code is
    // left unused.
    let mut c = gw.client().await;
    let res = c.connect_with(cli_params(text, &["operator.read"])).await;
    assert_eq!(code(&res), "AUTH_TOKEN_MISMATCH", "{res}");
    insta::assert_json_snapshot!("setup_code_pasted_as_token", mask(&res));
    let hint = res["error"]["details"]["remediationHint"].as_str().unwrap();
    assert!(
        hint.contains("setup code") && hint.contains("clawgate pair --setup-code"),
        "{hint}"
    );
    let res = {
        let mut c = gw.client().await;
        c.connect_device(&TestDevice::new(), cli_params(text, &["operator.read"]))
            .await
    };
    assert_eq!(code(&res), "AUTH_TOKEN_MISMATCH", "{res}");
    assert!(
        res["error"]["details"]["remediationHint"].is_string(),
        "{res}"
    );
    // A plain wrong token gets no such hint.
    let mut c = gw.client().await;
    let res = c
        .connect_with(cli_params("wrong", &["operator.read"]))
        .await;
    assert!(
        res["error"]["details"].get("remediationHint").is_none(),
        "{res}"
    );
    // The hint does not depend on validity: a made-up code gets it too.
    let fake = SetupPayload {
        url: "ws://10.0.0.1:1".into(),
        bootstrap_token: clawgate_protocol::Secret::new("made-up"),
        expires_at_ms: None,
        tls_fingerprint: None,
    }
    .encode();
    let mut c = gw.client().await;
    let res = c.connect_with(cli_params(&fake, &["operator.read"])).await;
    assert_eq!(
        res["error"]["details"]["remediationHint"],
        json!(clawgate_protocol::setup_code::PASTED_AS_TOKEN_HINT)
    );
    let list = admin.request("l", "device.setup.list", None).await;
    assert_eq!(list["payload"]["setupCodes"][0]["state"], "live");
}

#[tokio::test]
async fn bootstrap_failures_count_in_the_limiter() {
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.auto_approve_local = false;
    let gw = TestGateway::start_with(cfg, fast_options(), dir).await;
    // From a non-loopback-exempt class: a browser Origin makes the peer a
    // browser, which is locked out (not just delayed) after the budget.
    let mut last = Value::Null;
    for _ in 0..30 {
        let mut c = gw
            .client_with(&[("Origin", &format!("http://{}", gw.addr))])
            .await;
        let mut p = redeem_params(
            "guess-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "operator",
            &[],
        );
        p["client"]["id"] = json!("openclaw-control-ui");
        last = c.connect_device(&TestDevice::new(), p).await;
        if code(&last) == "AUTH_RATE_LIMITED" {
            break;
        }
    }
    assert_eq!(code(&last), "AUTH_RATE_LIMITED", "{last}");
}
