//! Device identity, pairing, device tokens and the device RPCs against a
//! real gateway with a real SQLite store.

mod common;

use clawgate_gateway::config::AuthMode;
use clawgate_gateway::testkit;
use common::*;
use insta::assert_json_snapshot;
use serde_json::{Value, json};

fn device_params(token: Option<&str>, device_token: Option<&str>, scopes: &[&str]) -> Value {
    let mut auth = json!({});
    if let Some(t) = token {
        auth["token"] = json!(t);
    }
    if let Some(t) = device_token {
        auth["deviceToken"] = json!(t);
    }
    params("cli", "cli", auth, scopes)
}

async fn manual_gateway() -> TestGateway {
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.auto_approve_local = false;
    TestGateway::start_with(cfg, fast_options(), dir).await
}

/// Connects `device` with the shared token from loopback (silently paired).
async fn paired(gw: &TestGateway, device: &TestDevice, scopes: &[&str]) -> (Client, String) {
    let mut c = gw.client().await;
    let res = c
        .connect_device(device, device_params(Some(TOKEN), None, scopes))
        .await;
    assert_eq!(res["ok"], true, "{res}");
    let token = res["payload"]["auth"]["deviceToken"]
        .as_str()
        .unwrap()
        .to_string();
    (c, token)
}

async fn rejected_device(c: &mut Client, device: &TestDevice, params: Value) -> Value {
    let res = c.connect_device(device, params).await;
    let closed = c.closed().await;
    json!({"response": res, "close": {"code": closed.code, "reason": closed.reason}})
}

/// The pairing request id of a PAIRING_REQUIRED connect response.
fn request_id_of(res: &Value) -> String {
    res["error"]["details"]["requestId"]
        .as_str()
        .unwrap_or_else(|| panic!("no pairing request in {res}"))
        .to_string()
}

fn masked_ids(v: &Value, device: &TestDevice) -> Value {
    let text = v.to_string().replace(&device.id, "[deviceId]");
    mask(&serde_json::from_str(&text).unwrap())
}

#[tokio::test]
async fn device_proof_errors_in_order() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let d = TestDevice::new();
    let base = || device_params(Some(TOKEN), None, &["operator.read"]);

    let mut c = gw.client().await;
    let mut p = base();
    d.sign(&mut p, &c.nonce());
    p["device"]["id"] = json!("0".repeat(64));
    let res = c.connect_with(p).await;
    let closed = c.closed().await;
    assert_json_snapshot!(
        "device_id_mismatch",
        json!({"response": res, "close": {"code": closed.code, "reason": closed.reason}})
    );

    let mut c = gw.client().await;
    let mut p = base();
    d.sign_at(&mut p, &c.nonce(), now_ms() - 121_000);
    let res = c.connect_with(p).await;
    assert_json_snapshot!("device_signature_expired", res);

    let mut c = gw.client().await;
    let mut p = base();
    d.sign(&mut p, " ");
    let res = c.connect_with(p).await;
    assert_json_snapshot!("device_nonce_required", res);

    let mut c = gw.client().await;
    let mut p = base();
    d.sign(&mut p, "5fb12ca2-1ec2-49ae-a0a2-51f3ac193930");
    let res = c.connect_with(p).await;
    assert_json_snapshot!("device_nonce_mismatch", res);

    // Signing an empty token slot while sending auth.token.
    let mut c = gw.client().await;
    let mut p = device_params(None, None, &["operator.read"]);
    d.sign(&mut p, &c.nonce());
    p["auth"]["token"] = json!(TOKEN);
    let res = c.connect_with(p).await;
    assert_json_snapshot!("device_signature_invalid", res);

    // A clock 110 s ahead is still fine.
    let mut c = gw.client().await;
    let mut p = base();
    d.sign_at(&mut p, &c.nonce(), now_ms() + 110_000);
    assert_eq!(c.connect_with(p).await["ok"], true);
    gw.stop().await;
}

#[tokio::test]
async fn loopback_device_is_paired_silently_and_gets_a_token() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let d = TestDevice::new();
    let mut c = gw.client().await;
    let res = c
        .connect_device(
            &d,
            device_params(Some(TOKEN), None, &["operator.read", "operator.pairing"]),
        )
        .await;
    let auth = &res["payload"]["auth"];
    assert_eq!(auth["method"], "token");
    assert_eq!(auth["scopes"], json!(["operator.read", "operator.pairing"]));
    let token = auth["deviceToken"].as_str().unwrap();
    assert_eq!(token.len(), 43);
    assert!(auth["issuedAtMs"].as_u64().is_some());
    let list = c.request("l", "device.pair.list", None).await;
    let dev = &list["payload"]["paired"][0];
    assert_eq!(dev["deviceId"], d.id.as_str());
    assert_eq!(dev["approvedVia"], "silent");
    assert_eq!(dev["connected"], true);
    assert!(!list.to_string().contains(token), "list leaks the token");
    gw.stop().await;
}

#[tokio::test]
async fn device_token_authenticates_and_is_echoed() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let d = TestDevice::new();
    let (_c, token) = paired(&gw, &d, &["operator.read"]).await;
    let mut c = gw.client().await;
    let res = c
        .connect_device(&d, device_params(None, Some(&token), &["operator.read"]))
        .await;
    assert_eq!(res["payload"]["auth"]["method"], "device-token");
    assert_eq!(res["payload"]["auth"]["deviceToken"], token.as_str());
    // In the auth.token slot too.
    let mut c = gw.client().await;
    let res = c
        .connect_device(&d, device_params(Some(&token), None, &["operator.read"]))
        .await;
    assert_eq!(res["payload"]["auth"]["method"], "device-token");
    gw.stop().await;
}

#[tokio::test]
async fn bounded_retry_shape_stale_shared_token_plus_device_token() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let d = TestDevice::new();
    let (_c, token) = paired(&gw, &d, &["operator.read"]).await;
    // First attempt: the old shared token alone -> mismatch with the retry hint.
    let mut c = gw.client().await;
    let out = rejected_device(
        &mut c,
        &d,
        device_params(Some("old-shared"), None, &["operator.read"]),
    )
    .await;
    assert_json_snapshot!("token_mismatch_can_retry", masked_ids(&out, &d));
    // The retry: both tokens -> accepted with the device token.
    let mut c = gw.client().await;
    let res = c
        .connect_device(
            &d,
            device_params(Some("old-shared"), Some(&token), &["operator.read"]),
        )
        .await;
    assert_eq!(res["payload"]["auth"]["method"], "device-token", "{res}");
    gw.stop().await;
}

#[tokio::test]
async fn bad_device_token_and_scope_mismatch() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let d = TestDevice::new();
    let (_c, token) = paired(&gw, &d, &["operator.read"]).await;
    let mut c = gw.client().await;
    let bogus = "A".repeat(43);
    let out = rejected_device(
        &mut c,
        &d,
        device_params(None, Some(&bogus), &["operator.read"]),
    )
    .await;
    assert_json_snapshot!("device_token_mismatch", masked_ids(&out, &d));
    let mut c = gw.client().await;
    let out = rejected_device(
        &mut c,
        &d,
        device_params(None, Some(&token), &["operator.admin"]),
    )
    .await;
    assert_json_snapshot!("device_token_scope_mismatch", masked_ids(&out, &d));
    // No credentials at all, with a device.
    let mut c = gw.client().await;
    let out = rejected_device(&mut c, &d, device_params(None, None, &[])).await;
    assert_eq!(
        out["response"]["error"]["details"]["code"],
        "AUTH_TOKEN_MISSING"
    );
    gw.stop().await;
}

#[tokio::test]
async fn pairing_required_then_approved_from_the_api() {
    let gw = manual_gateway().await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let d = TestDevice::new();
    let mut c = gw.client().await;
    let res = c
        .connect_device(&d, device_params(Some(TOKEN), None, &["operator.read"]))
        .await;
    let closed = c.closed().await;
    let request_id = request_id_of(&res);
    assert_eq!(closed.code, 1008);
    assert_eq!(
        closed.reason,
        clawgate_protocol::truncate_close_reason(&format!(
            "pairing required: device is not approved yet (requestId: {request_id})"
        ))
    );
    let code = res["error"]["details"]["pairingCode"]
        .as_str()
        .expect("PAIRING_REQUIRED carries the pairing code")
        .to_string();
    let shown = res
        .to_string()
        .replace(&request_id, "[requestId]")
        .replace(&code, "[pairingCode]")
        .replace(&d.id, "[deviceId]");
    assert_json_snapshot!(
        "pairing_required_not_paired",
        serde_json::from_str::<Value>(&shown).unwrap()
    );
    // The admin socket saw the request.
    let ev = loop {
        let v = admin.next().await.unwrap();
        if v["event"] == "device.pair.requested" {
            break v;
        }
    };
    assert_eq!(ev["payload"]["requestId"], request_id.as_str());
    assert!(ev["seq"].as_u64().unwrap() >= 1);
    // Retrying keeps the same request id.
    let mut c = gw.client().await;
    let res = c
        .connect_device(&d, device_params(Some(TOKEN), None, &["operator.read"]))
        .await;
    assert_eq!(res["error"]["details"]["requestId"], request_id.as_str());
    let list = admin.request("l", "device.pair.list", None).await;
    assert_eq!(list["payload"]["pending"].as_array().unwrap().len(), 1);
    // Approve.
    let res = admin
        .request(
            "a",
            "device.pair.approve",
            Some(json!({"requestId": request_id})),
        )
        .await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["device"]["approvedVia"], "owner");
    assert!(res["payload"]["device"].get("approvedScopes").is_none());
    let again = admin
        .request(
            "a2",
            "device.pair.approve",
            Some(json!({"requestId": request_id})),
        )
        .await;
    assert_eq!(again["error"]["message"], "unknown requestId");
    let mut c = gw.client().await;
    let res = c
        .connect_device(&d, device_params(Some(TOKEN), None, &["operator.read"]))
        .await;
    assert_eq!(res["ok"], true);
    assert_eq!(
        res["payload"]["auth"]["deviceToken"]
            .as_str()
            .unwrap()
            .len(),
        43
    );
    gw.stop().await;
}

#[tokio::test]
async fn scope_upgrade_then_a_new_ask_keeps_one_stable_request() {
    let gw = manual_gateway().await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let d = TestDevice::new();
    let mut c = gw.client().await;
    let first = c
        .connect_device(&d, device_params(Some(TOKEN), None, &["operator.read"]))
        .await;
    let first_id = request_id_of(&first);
    admin
        .request(
            "a",
            "device.pair.approve",
            Some(json!({"requestId": first_id})),
        )
        .await;
    // Asking for more: a scope-upgrade request showing what is approved.
    let mut c = gw.client().await;
    let res = c
        .connect_device(
            &d,
            device_params(Some(TOKEN), None, &["operator.read", "operator.write"]),
        )
        .await;
    let details = &res["error"]["details"];
    assert_eq!(details["reason"], "scope-upgrade");
    assert_eq!(details["approvedScopes"], json!(["operator.read"]));
    assert_eq!(details["approvedRoles"], json!(["operator"]));
    let upgrade_id = details["requestId"].as_str().unwrap().to_string();
    let upgrade_code = details["pairingCode"].as_str().unwrap().to_string();
    // A deliberate difference from the reference (which supersedes with a
    // new request here): asking again for the same role keeps the request,
    // its id and its code, and the request shows only the latest ask.
    let mut c = gw.client().await;
    let res = c
        .connect_device(&d, device_params(Some(TOKEN), None, &["operator.pairing"]))
        .await;
    assert_eq!(request_id_of(&res), upgrade_id);
    assert_eq!(
        res["error"]["details"]["pairingCode"],
        upgrade_code.as_str()
    );
    let mut saw_requested_again = false;
    while let Ok(v) =
        tokio::time::timeout(std::time::Duration::from_millis(300), admin.next()).await
    {
        let v = v.unwrap();
        assert!(
            v["event"] != "device.pair.resolved"
                || v["payload"]["requestId"] != upgrade_id.as_str(),
            "a stable request is not resolved by a retry: {v}"
        );
        if v["event"] == "device.pair.requested"
            && v["payload"]["requestId"] == upgrade_id.as_str()
            && v["payload"]["scopes"] == json!(["operator.pairing"])
        {
            saw_requested_again = true;
        }
    }
    assert!(saw_requested_again, "the updated ask was not announced");
    let list = admin.request("l", "device.pair.list", None).await;
    let pending = list["payload"]["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["requestId"], upgrade_id.as_str());
    assert_eq!(pending[0]["scopes"], json!(["operator.pairing"]));
    gw.stop().await;
}

#[tokio::test]
async fn reject_and_remove() {
    let gw = manual_gateway().await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let d = TestDevice::new();
    let mut c = gw.client().await;
    let res = c
        .connect_device(&d, device_params(Some(TOKEN), None, &[]))
        .await;
    let id = request_id_of(&res);
    let res = admin
        .request("r", "device.pair.reject", Some(json!({"requestId": id})))
        .await;
    assert_eq!(res["payload"], json!({"requestId": id, "deviceId": d.id}));
    let res = admin
        .request("r2", "device.pair.reject", Some(json!({"requestId": id})))
        .await;
    assert_eq!(res["error"]["message"], "unknown requestId");
    let res = admin
        .request("x", "device.pair.remove", Some(json!({"deviceId": d.id})))
        .await;
    assert_eq!(res["error"]["message"], "unknown deviceId");
    gw.stop().await;
}

#[tokio::test]
async fn rotate_revoke_remove_close_live_sessions() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let d = TestDevice::new();
    let (mut live, token) = paired(&gw, &d, &["operator.read"]).await;

    let res = admin
        .request(
            "rot",
            "device.token.rotate",
            Some(json!({"deviceId": d.id, "role": "operator"})),
        )
        .await;
    assert_eq!(res["payload"]["tokenDelivery"], "withheld-cross-device");
    assert!(res["payload"].get("token").is_none());
    assert_eq!(res["payload"]["scopes"], json!(["operator.read"]));
    assert_eq!(
        live.closed().await,
        Closed {
            code: 4001,
            reason: "device token rotated".into()
        }
    );
    // The old token is dead.
    let mut c = gw.client().await;
    let res = c
        .connect_device(&d, device_params(None, Some(&token), &["operator.read"]))
        .await;
    assert_eq!(
        res["error"]["details"]["code"],
        "AUTH_DEVICE_TOKEN_MISMATCH"
    );

    // Self-rotation over a device-token session delivers in band.
    let (_c, fresh) = paired(&gw, &d, &["operator.read", "operator.pairing"]).await;
    let mut own = gw.client().await;
    let res = own
        .connect_device(
            &d,
            device_params(None, Some(&fresh), &["operator.read", "operator.pairing"]),
        )
        .await;
    assert_eq!(res["payload"]["auth"]["method"], "device-token");
    let res = own
        .request(
            "self",
            "device.token.rotate",
            Some(json!({"deviceId": d.id, "role": "operator"})),
        )
        .await;
    assert_eq!(res["payload"]["tokenDelivery"], "in-band");
    let in_band = res["payload"]["token"].as_str().unwrap().to_string();
    assert_eq!(own.closed().await.code, 4001);
    let mut c = gw.client().await;
    let res = c
        .connect_device(&d, device_params(None, Some(&in_band), &["operator.read"]))
        .await;
    assert_eq!(res["payload"]["auth"]["method"], "device-token");

    // Revoke.
    let res = admin
        .request(
            "rev",
            "device.token.revoke",
            Some(json!({"deviceId": d.id, "role": "operator"})),
        )
        .await;
    assert!(res["payload"]["revokedAtMs"].as_u64().is_some());
    assert_eq!(
        c.closed().await,
        Closed {
            code: 4001,
            reason: "device token revoked".into()
        }
    );
    let mut c2 = gw.client().await;
    let res = c2
        .connect_device(&d, device_params(None, Some(&in_band), &["operator.read"]))
        .await;
    assert_eq!(
        res["error"]["details"]["code"],
        "AUTH_DEVICE_TOKEN_MISMATCH"
    );

    // Remove.
    let (mut live, _) = paired(&gw, &d, &["operator.read"]).await;
    let res = admin
        .request("rm", "device.pair.remove", Some(json!({"deviceId": d.id})))
        .await;
    assert_eq!(res["payload"], json!({"deviceId": d.id}));
    assert_eq!(
        live.closed().await,
        Closed {
            code: 4001,
            reason: "device removed".into()
        }
    );
    gw.stop().await;
}

#[tokio::test]
async fn pairing_scope_caller_cannot_mint_admin() {
    // Advisory GHSA-4jpw-hj22-2xmc: operator.pairing alone must not mint admin.
    let gw = manual_gateway().await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let mut pairer = operator(&gw, &["operator.pairing"]).await;
    let d = TestDevice::new();
    let mut c = gw.client().await;
    let res = c
        .connect_device(&d, device_params(Some(TOKEN), None, &["operator.admin"]))
        .await;
    let id = request_id_of(&res);
    let res = pairer
        .request("a", "device.pair.approve", Some(json!({"requestId": id})))
        .await;
    assert_eq!(res["error"]["message"], "missing scope: operator.admin");
    // Approved by an admin for read only; the pairer may not rotate it into admin.
    let d2 = TestDevice::new();
    let mut c = gw.client().await;
    let res = c
        .connect_device(&d2, device_params(Some(TOKEN), None, &["operator.read"]))
        .await;
    let id2 = request_id_of(&res);
    assert_eq!(
        admin
            .request("a", "device.pair.approve", Some(json!({"requestId": id2})))
            .await["ok"],
        true
    );
    let res = pairer
        .request(
            "r",
            "device.token.rotate",
            Some(json!({"deviceId": d2.id, "role": "operator", "scopes": ["operator.admin"]})),
        )
        .await;
    assert_eq!(res["error"]["message"], "device token rotation denied");
    // Nor can an admin rotate outside the approved baseline.
    let res = admin
        .request(
            "r",
            "device.token.rotate",
            Some(json!({"deviceId": d2.id, "role": "operator", "scopes": ["operator.admin"]})),
        )
        .await;
    assert_eq!(res["error"]["message"], "device token rotation denied");
    // Node roles need admin.
    let res = pairer
        .request(
            "n",
            "device.token.rotate",
            Some(json!({"deviceId": d2.id, "role": "node"})),
        )
        .await;
    assert_eq!(res["error"]["message"], "device token rotation denied");
    gw.stop().await;
}

#[tokio::test]
async fn tokens_are_never_stored_in_clear() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut issued = Vec::new();
    for _ in 0..3 {
        let d = TestDevice::new();
        let (_c, token) = paired(&gw, &d, &["operator.read"]).await;
        issued.push(token);
    }
    let dir = state_dir_of(&gw);
    gw.stop().await;
    for name in ["clawgate.sqlite", "clawgate.sqlite-wal"] {
        let path = dir.join(name);
        if let Ok(bytes) = std::fs::read(&path) {
            let text = String::from_utf8_lossy(&bytes);
            for t in &issued {
                assert!(!text.contains(t.as_str()), "{name} holds a token string");
            }
            assert!(!text.contains(TOKEN), "{name} holds the shared token");
        }
    }
}

#[tokio::test]
async fn audit_log_records_and_verifies() {
    let gw = manual_gateway().await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let d = TestDevice::new();
    let mut c = gw.client().await;
    let res = c
        .connect_device(&d, device_params(Some(TOKEN), None, &["operator.read"]))
        .await;
    let id = request_id_of(&res);
    admin
        .request("a", "device.pair.approve", Some(json!({"requestId": id})))
        .await;
    admin
        .request(
            "r",
            "device.pair.rename",
            Some(json!({"deviceId": d.id, "label": "Laptop"})),
        )
        .await;
    let res = admin
        .request("l", "audit.list", Some(json!({"deviceId": d.id})))
        .await;
    let actions: Vec<&str> = res["payload"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["pairing.requested", "pairing.approved", "device.renamed"]
    );
    assert!(!res.to_string().contains(TOKEN));
    let v = testkit::store(&gw.state).verify_audit().unwrap();
    assert!(v.ok && v.rows >= 3, "{v:?}");
    let mut reader = operator(&gw, &["operator.pairing"]).await;
    let res = reader.request("l", "audit.list", None).await;
    assert_eq!(res["error"]["details"]["missingScope"], "operator.admin");
    gw.stop().await;
}

#[tokio::test]
async fn restart_keeps_everything() {
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.auto_approve_local = false;
    // Both runs use the same state dir (cfg.state_dir is inside `dir`).
    let cfg2 = cfg.clone();
    let gw = TestGateway::start_with(cfg, fast_options(), tempfile::tempdir().unwrap()).await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let (a, b) = (TestDevice::new(), TestDevice::new());
    let mut tokens = Vec::new();
    for d in [&a, &b] {
        let mut c = gw.client().await;
        let res = c
            .connect_device(d, device_params(Some(TOKEN), None, &["operator.read"]))
            .await;
        let id = request_id_of(&res);
        admin
            .request("a", "device.pair.approve", Some(json!({"requestId": id})))
            .await;
        let mut c = gw.client().await;
        let res = c
            .connect_device(d, device_params(Some(TOKEN), None, &["operator.read"]))
            .await;
        tokens.push(
            res["payload"]["auth"]["deviceToken"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    admin
        .request(
            "rev",
            "device.token.revoke",
            Some(json!({"deviceId": b.id, "role": "operator"})),
        )
        .await;
    gw.stop().await;

    let gw = TestGateway::start_with(cfg2, fast_options(), tempfile::tempdir().unwrap()).await;
    let mut c = gw.client().await;
    let res = c
        .connect_device(
            &a,
            device_params(None, Some(&tokens[0]), &["operator.read"]),
        )
        .await;
    assert_eq!(res["payload"]["auth"]["method"], "device-token", "{res}");
    let mut c = gw.client().await;
    let res = c
        .connect_device(
            &b,
            device_params(None, Some(&tokens[1]), &["operator.read"]),
        )
        .await;
    assert_eq!(
        res["error"]["details"]["code"],
        "AUTH_DEVICE_TOKEN_MISMATCH"
    );
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let list = admin.request("l", "device.pair.list", None).await;
    assert_eq!(list["payload"]["paired"].as_array().unwrap().len(), 2);
    assert!(testkit::store(&gw.state).verify_audit().unwrap().ok);
    gw.stop().await;
    drop(dir);
}

#[tokio::test]
async fn shared_secret_change_takes_effect_without_restart() {
    // Advisory GHSA-68x5-xx89-w9mm: stale auth after a config reload.
    let gw = TestGateway::start(AuthMode::Token).await;
    let d = TestDevice::new();
    let (_c, device_token) = paired(&gw, &d, &["operator.read"]).await;
    let mut device_session = gw.client().await;
    let res = device_session
        .connect_device(
            &d,
            device_params(None, Some(&device_token), &["operator.read"]),
        )
        .await;
    assert_eq!(res["payload"]["auth"]["method"], "device-token");
    let mut shared_session = operator(&gw, &["operator.read"]).await;

    let mut auth = gw.state.auth().config.as_ref().clone();
    auth.token = Some(clawgate_protocol::Secret::new("the-new-token"));
    // Both sessions that used the shared token close (the pairing session too).
    assert_eq!(gw.state.apply_auth_config(auth.clone(), "test"), Some(2));
    assert_eq!(
        shared_session.closed().await,
        Closed {
            code: 4001,
            reason: "gateway auth changed".into()
        }
    );
    // Applying the same settings again changes nothing.
    assert_eq!(gw.state.apply_auth_config(auth, "test"), None);
    let mut c = gw.client().await;
    let res = c.connect_with(cli_params(TOKEN, &[])).await;
    assert_eq!(res["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH");
    let mut c = gw.client().await;
    assert_eq!(
        c.connect_with(cli_params("the-new-token", &[])).await["ok"],
        true
    );
    // The device-token session is untouched.
    assert_eq!(
        device_session.request("h", "health", None).await["ok"],
        true
    );
    let rows = testkit::store(&gw.state)
        .audit_list(&clawgate_store::AuditQuery {
            action: Some("auth.secret_changed".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rows.rows.len(), 1);
    assert!(!format!("{:?}", rows.rows).contains("the-new-token"));
    gw.stop().await;
}

#[tokio::test]
async fn device_less_sessions_never_keep_declared_scopes_remotely() {
    // Advisory GHSA-rqpp-rjj8-7wv8.
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let gw = TestGateway::start_with(cfg, fast_options(), dir).await;
    let mut c = gw.client_with(&[("x-forwarded-for", "198.51.100.7")]).await;
    let res = c.connect_with(cli_params(TOKEN, &["operator.admin"])).await;
    assert_eq!(res["payload"]["auth"]["scopes"], json!([]));
    let res = c.request("l", "device.pair.list", None).await;
    assert_eq!(res["error"]["details"]["code"], "MISSING_SCOPE");
    gw.stop().await;
}

#[tokio::test]
async fn role_upgrade_to_node_is_never_silent_and_rotation_cannot_mint_it() {
    // Advisory GHSA-whf9-3hcx-gq54: rotation minting roles that never passed approval.
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let d = TestDevice::new();
    let (_c, _) = paired(&gw, &d, &["operator.read"]).await;
    let res = admin
        .request(
            "r",
            "device.token.rotate",
            Some(json!({"deviceId": d.id, "role": "node"})),
        )
        .await;
    assert_eq!(res["error"]["message"], "device token rotation denied");
    let mut c = gw.client().await;
    let mut p = params("node-host", "node", json!({"token": TOKEN}), &[]);
    p["role"] = json!("node");
    let res = c.connect_device(&d, p).await;
    let details = &res["error"]["details"];
    assert_eq!(details["reason"], "role-upgrade", "{res}");
    assert_eq!(details["requestedRole"], "node");
    assert_eq!(details["approvedRoles"], json!(["operator"]));
    gw.stop().await;
}

#[tokio::test]
async fn metadata_change_needs_approval_from_a_browser_origin() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let d = TestDevice::new();
    let (_c, _) = paired(&gw, &d, &["operator.read"]).await;
    // Same key, another platform, from a page: re-approval required.
    let origin = format!("http://localhost:{}", gw.addr.port());
    let mut c = gw.client_with(&[("origin", &origin)]).await;
    let mut p = device_params(Some(TOKEN), None, &["operator.read"]);
    p["client"]["platform"] = json!("windows");
    let res = c.connect_device(&d, p).await;
    assert_eq!(
        res["error"]["details"]["reason"], "metadata-upgrade",
        "{res}"
    );
    assert_eq!(
        res["error"]["message"],
        "pairing required: device identity changed and must be re-approved"
    );
    gw.stop().await;
}

#[tokio::test]
async fn auth_failures_are_audited_without_secrets() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let d = TestDevice::new();
    let mut c = gw.client().await;
    let res = c
        .connect_device(
            &d,
            device_params(Some("guess-1234"), Some("bogus-device-token"), &[]),
        )
        .await;
    assert_eq!(
        res["error"]["details"]["code"],
        "AUTH_DEVICE_TOKEN_MISMATCH"
    );
    // Refused-connect rows are batched; write the batch now.
    gw.state.flush_deferred();
    let rows = testkit::store(&gw.state)
        .audit_list(&clawgate_store::AuditQuery {
            action: Some("auth.failure".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rows.rows.len(), 1);
    let row = &rows.rows[0];
    assert_eq!(row.details["code"], "AUTH_DEVICE_TOKEN_MISMATCH");
    assert_eq!(row.device_id.as_deref(), Some(d.id.as_str()));
    assert_eq!(row.actor["ip"], "127.0.0.1");
    let text = format!("{rows:?}");
    assert!(!text.contains("guess-1234") && !text.contains("bogus-device-token"));
    gw.stop().await;
}

#[tokio::test]
async fn pem_keys_are_accepted_and_stored_normalised() {
    use base64::Engine;
    let gw = TestGateway::start(AuthMode::Token).await;
    let d = TestDevice::new();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&d.public_key)
        .unwrap();
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(&raw);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&der)
    );
    let mut c = gw.client().await;
    let mut p = device_params(Some(TOKEN), None, &["operator.pairing"]);
    d.sign(&mut p, &c.nonce());
    p["device"]["publicKey"] = json!(pem);
    let res = c.connect_with(p).await;
    assert_eq!(res["ok"], true, "{res}");
    let list = c.request("l", "device.pair.list", None).await;
    assert_eq!(
        list["payload"]["paired"][0]["publicKey"],
        d.public_key.as_str()
    );
    gw.stop().await;
}

#[tokio::test]
async fn lifecycle_times_and_event_audience() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut reader = operator(&gw, &["operator.read"]).await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let d = TestDevice::new();
    let (_c, token) = paired(&gw, &d, &["operator.read"]).await;
    let mut c = gw.client().await;
    c.connect_device(&d, device_params(None, Some(&token), &["operator.read"]))
        .await;
    // The silent approval reached the admin (pairing scope) but not the reader.
    let mut admin_saw = false;
    while let Ok(Ok(v)) =
        tokio::time::timeout(std::time::Duration::from_millis(200), admin.next()).await
    {
        admin_saw |= v["event"] == "device.pair.resolved";
    }
    assert!(admin_saw);
    while let Ok(Ok(v)) =
        tokio::time::timeout(std::time::Duration::from_millis(200), reader.next()).await
    {
        assert!(
            !v["event"].as_str().unwrap_or("").starts_with("device.pair"),
            "{v}"
        );
    }
    let list = admin.request("l", "device.pair.list", None).await;
    let dev = &list["payload"]["paired"][0];
    for key in ["createdAtMs", "approvedAtMs", "lastSeenAtMs"] {
        assert!(dev[key].as_u64().is_some(), "{key} missing: {dev}");
    }
    assert_eq!(dev["lastSeenReason"], "connect");
    let tok = &dev["tokens"][0];
    assert!(
        tok["createdAtMs"].as_u64().is_some() && tok["lastUsedAtMs"].as_u64().is_some(),
        "{tok}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_pending_operator_decision_is_not_side_stepped_by_a_local_reconnect() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let d = TestDevice::new();
    let (_c, _) = paired(&gw, &d, &["operator.read"]).await;
    admin
        .request(
            "rev",
            "device.token.revoke",
            Some(json!({"deviceId": d.id, "role": "operator"})),
        )
        .await;
    // From a page (not silent-eligible for a CLI client) a request opens...
    let origin = format!("http://localhost:{}", gw.addr.port());
    let mut c = gw.client_with(&[("origin", &origin)]).await;
    let res = c
        .connect_device(&d, device_params(Some(TOKEN), None, &["operator.read"]))
        .await;
    assert_eq!(res["error"]["details"]["reason"], "role-upgrade", "{res}");
    let request_id = request_id_of(&res);
    // ...and a plain local reconnect does not approve it behind the operator's back.
    let mut c = gw.client().await;
    let res = c
        .connect_device(&d, device_params(Some(TOKEN), None, &["operator.read"]))
        .await;
    assert_eq!(
        res["error"]["details"]["requestId"],
        request_id.as_str(),
        "{res}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn routine_reconnects_reuse_the_token_and_defer_last_seen() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let d = TestDevice::new();
    let (first, token) = paired(&gw, &d, &["operator.read"]).await;
    drop(first);
    let hashes = testkit::store(&gw.state)
        .token_hashes(&d.id, "operator")
        .len();

    // A routine shared-token reconnect gets the same token back: no new
    // token is minted, nothing is written synchronously.
    let (_again, again) = paired(&gw, &d, &["operator.read"]).await;
    assert_eq!(again, token);
    assert_eq!(
        testkit::store(&gw.state)
            .token_hashes(&d.id, "operator")
            .len(),
        hashes
    );

    // Its last-seen update is queued, and `device.pair.list` writes it first.
    let before = testkit::store(&gw.state)
        .device(&d.id)
        .unwrap()
        .last_seen_at_ms;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (_third, _) = paired(&gw, &d, &["operator.read"]).await;
    let list = admin.request("l", "device.pair.list", None).await;
    let listed = list["payload"]["paired"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["deviceId"] == d.id.as_str())
        .unwrap()["lastSeenAtMs"]
        .as_u64();
    assert!(listed > before, "{listed:?} after {before:?}");

    // Asking for other scopes mints a token for them.
    let (_wider, wider) = paired(&gw, &d, &["operator.read", "operator.pairing"]).await;
    assert_ne!(wider, token);
    // After a rotation the old token is never handed out again.
    admin
        .request(
            "r",
            "device.token.rotate",
            Some(json!({"deviceId": d.id, "role": "operator"})),
        )
        .await;
    let (_rotated, after) = paired(&gw, &d, &["operator.read", "operator.pairing"]).await;
    assert_ne!(after, wider);
    assert_ne!(after, token);
    let mut c = gw.client().await;
    let res = c
        .connect_device(&d, device_params(None, Some(&wider), &["operator.read"]))
        .await;
    assert_eq!(
        res["error"]["details"]["code"],
        "AUTH_DEVICE_TOKEN_MISMATCH"
    );

    // A device removed while its last-seen update waits stays removed.
    let (_last, _) = paired(&gw, &d, &["operator.read", "operator.pairing"]).await;
    admin
        .request("x", "device.pair.remove", Some(json!({"deviceId": d.id})))
        .await;
    gw.state.flush_deferred();
    assert!(testkit::store(&gw.state).device(&d.id).is_none());
    gw.stop().await;
}

#[tokio::test]
async fn token_scopes_are_normalised_and_a_broader_token_replaces_the_old_one() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let d = TestDevice::new();
    // Implied scopes added and sorted, as the reference stores token scopes.
    let (_c, narrow) = paired(&gw, &d, &["operator.write", "operator.pairing"]).await;
    let rot = admin
        .request(
            "rot",
            "device.token.rotate",
            Some(json!({"deviceId": d.id, "role": "operator"})),
        )
        .await;
    assert_eq!(
        rot["payload"]["scopes"],
        json!(["operator.pairing", "operator.read", "operator.write"])
    );
    let (_c, before) = paired(&gw, &d, &["operator.read"]).await;
    assert_ne!(before, narrow, "the rotated-away token is not handed out");
    let list = admin.request("l", "device.pair.list", None).await;
    let rec = &list["payload"]["paired"][0];
    assert_eq!(
        rec["tokens"][0]["scopes"],
        json!(["operator.pairing", "operator.read", "operator.write"]),
        "a narrower connect leaves the role entry as it was"
    );

    // A silently approved scope upgrade mints a token that replaces the old one.
    let (_c, upgraded) = paired(&gw, &d, &["operator.admin"]).await;
    let mut c = gw.client().await;
    let res = c
        .connect_device(&d, device_params(None, Some(&before), &["operator.read"]))
        .await;
    assert_eq!(
        res["error"]["details"]["code"], "AUTH_DEVICE_TOKEN_MISMATCH",
        "{res}"
    );
    let mut c = gw.client().await;
    let res = c
        .connect_device(&d, device_params(None, Some(&upgraded), &["operator.read"]))
        .await;
    assert_eq!(res["ok"], true, "{res}");
}

#[tokio::test]
async fn a_token_reissued_after_revoke_keeps_its_creation_time() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let d = TestDevice::new();
    let _ = paired(&gw, &d, &["operator.read"]).await;
    let list = admin.request("l1", "device.pair.list", None).await;
    let created = list["payload"]["paired"][0]["tokens"][0]["createdAtMs"].clone();
    let res = admin
        .request(
            "rev",
            "device.token.revoke",
            Some(json!({"deviceId": d.id, "role": "operator"})),
        )
        .await;
    assert_eq!(res["ok"], true, "{res}");
    // From loopback with the shared token the role is re-approved silently.
    let _ = paired(&gw, &d, &["operator.read"]).await;
    let list = admin.request("l2", "device.pair.list", None).await;
    let token = &list["payload"]["paired"][0]["tokens"][0];
    assert_eq!(token["createdAtMs"], created);
    assert!(token["rotatedAtMs"].as_u64().is_some(), "{token}");
    assert!(token.get("revokedAtMs").is_none(), "{token}");
}

/// A revoked role comes back only through a new approval: `device.token.rotate`
/// on it is refused (before the fix it minted a fresh token for the revoked
/// role), and the device's next connect for the role needs an operator.
#[tokio::test]
async fn a_revoked_role_is_not_brought_back_by_rotate() {
    let gw = manual_gateway().await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let d = TestDevice::new();
    // Paired through the API: a request, then an approval.
    let mut c = gw.client().await;
    let res = c
        .connect_device(&d, device_params(Some(TOKEN), None, &["operator.read"]))
        .await;
    let request_id = request_id_of(&res);
    let res = admin
        .request(
            "ap",
            "device.pair.approve",
            Some(json!({"requestId": request_id})),
        )
        .await;
    assert_eq!(res["ok"], true, "{res}");
    let res = admin
        .request(
            "rev",
            "device.token.revoke",
            Some(json!({"deviceId": d.id, "role": "operator"})),
        )
        .await;
    assert_eq!(res["ok"], true, "{res}");
    let hashes_before = testkit::store(&gw.state)
        .token_hashes(&d.id, "operator")
        .len();
    let res = admin
        .request(
            "rot",
            "device.token.rotate",
            Some(json!({"deviceId": d.id, "role": "operator"})),
        )
        .await;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(res["error"]["message"], "device token rotation denied");
    assert!(res["payload"].is_null(), "{res}");
    assert_eq!(
        testkit::store(&gw.state)
            .token_hashes(&d.id, "operator")
            .len(),
        hashes_before,
        "no token minted"
    );
    let entry = testkit::store(&gw.state)
        .role_token(&d.id, "operator")
        .expect("role entry kept");
    assert!(entry.revoked_at_ms.is_some(), "still revoked: {entry:?}");
    // The next connect for the role asks an operator again.
    let mut c = gw.client().await;
    let res = c
        .connect_device(&d, device_params(Some(TOKEN), None, &["operator.read"]))
        .await;
    assert_eq!(res["error"]["details"]["code"], "PAIRING_REQUIRED", "{res}");
    assert_eq!(res["error"]["details"]["reason"], "role-upgrade", "{res}");
}
