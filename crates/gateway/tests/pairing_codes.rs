//! Short pairing codes and one stable request per device and role
//! (clawgate's own; the reference has neither) against a real gateway on a
//! loopback port with a real SQLite store.

mod common;

use std::time::Duration;

use clawgate_gateway::config::AuthMode;
use clawgate_gateway::testkit;
use common::*;
use serde_json::{Value, json};

const ALPHABET: &str = "BCDFGHJKLMNPQRSTVWXZ";

fn device_params(scopes: &[&str]) -> Value {
    params("cli", "cli", json!({"token": TOKEN}), scopes)
}

async fn manual_gateway() -> TestGateway {
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.auto_approve_local = false;
    TestGateway::start_with(cfg, fast_options(), dir).await
}

/// Connects `d` asking for `scopes`; returns the PAIRING_REQUIRED details.
async fn ask(gw: &TestGateway, d: &TestDevice, scopes: &[&str]) -> Value {
    let mut c = gw.client().await;
    let res = c.connect_device(d, device_params(scopes)).await;
    assert_eq!(res["error"]["details"]["code"], "PAIRING_REQUIRED", "{res}");
    res["error"]["details"].clone()
}

fn code_of(details: &Value) -> String {
    details["pairingCode"]
        .as_str()
        .unwrap_or_else(|| panic!("no pairing code in {details}"))
        .to_string()
}

fn is_code(code: &str) -> bool {
    let (a, b) = code.split_once('-').unwrap_or(("", ""));
    a.len() == 4 && b.len() == 4 && a.chars().chain(b.chars()).all(|c| ALPHABET.contains(c))
}

async fn pending(admin: &mut Client) -> Vec<Value> {
    let list = admin.request("l", "device.pair.list", None).await;
    list["payload"]["pending"].as_array().unwrap().clone()
}

async fn audit_actions(admin: &mut Client) -> Vec<String> {
    common::audit_actions(admin)
        .await
        .into_iter()
        .map(|(action, _)| action)
        .collect()
}

/// Events until the socket is quiet for 300 ms.
async fn drain(c: &mut Client) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(v) = tokio::time::timeout(Duration::from_millis(300), c.next()).await {
        out.push(v.unwrap());
    }
    out
}

#[tokio::test]
async fn every_pending_request_gets_a_unique_code_both_sides_see() {
    let gw = manual_gateway().await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let mut codes = Vec::new();
    for _ in 0..6 {
        let d = TestDevice::new();
        let details = ask(&gw, &d, &["operator.read"]).await;
        let code = code_of(&details);
        assert!(is_code(&code), "{code}");
        // An extra key after every reference key (their order is kept).
        let keys: Vec<&String> = details.as_object().unwrap().keys().collect();
        assert_eq!(keys.last().unwrap().as_str(), "pairingCode", "{details}");
        assert_eq!(keys[..3], ["code", "reason", "requestId"]);
        codes.push((details["requestId"].as_str().unwrap().to_string(), code));
    }
    let mut unique: Vec<&String> = codes.iter().map(|(_, c)| c).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), codes.len(), "{codes:?}");
    // The requested events and the operator's list carry the same codes.
    let events = drain(&mut admin).await;
    let announced: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "device.pair.requested")
        .map(|e| e["payload"]["pairingCode"].as_str().unwrap())
        .collect();
    assert_eq!(announced.len(), codes.len());
    let list = pending(&mut admin).await;
    assert_eq!(list.len(), codes.len());
    for (id, code) in &codes {
        let p = list.iter().find(|p| p["requestId"] == id.as_str()).unwrap();
        assert_eq!(p["pairingCode"], code.as_str());
    }
    // Stored with the request.
    let store = testkit::store(&gw.state);
    for (id, code) in &codes {
        assert_eq!(
            store.pending(id).unwrap().pairing_code.as_deref(),
            Some(code.as_str())
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn approve_by_code_in_any_case_without_the_dash_then_the_code_is_gone() {
    let gw = manual_gateway().await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let d = TestDevice::new();
    let details = ask(&gw, &d, &["operator.read"]).await;
    let code = code_of(&details);
    let typed = code.replace('-', "").to_lowercase();
    let res = admin
        .request("a", "device.pair.approve", Some(json!({"code": typed})))
        .await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["requestId"], details["requestId"]);
    assert_eq!(res["payload"]["device"]["deviceId"], d.id.as_str());
    // The device is in.
    let mut c = gw.client().await;
    let res = c
        .connect_device(&d, device_params(&["operator.read"]))
        .await;
    assert_eq!(res["ok"], true, "{res}");
    // The code died with its request: nothing to approve, state unchanged.
    let again = admin
        .request("b", "device.pair.approve", Some(json!({"code": code})))
        .await;
    assert_eq!(again["error"]["code"], "INVALID_REQUEST");
    assert_eq!(again["error"]["details"]["code"], "PAIRING_CODE_UNKNOWN");
    let message = again["error"]["message"].as_str().unwrap();
    assert!(message.contains("clawgate devices list"), "{message}");
    assert!(message.contains(&code), "{message}");
    assert!(pending(&mut admin).await.is_empty());
    assert!(
        audit_actions(&mut admin)
            .await
            .contains(&"pairing.code_unknown".to_string())
    );
    gw.stop().await;
}

#[tokio::test]
async fn reject_by_code_and_the_code_dies_with_the_request() {
    let gw = manual_gateway().await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let d = TestDevice::new();
    let details = ask(&gw, &d, &[]).await;
    let code = code_of(&details);
    let res = admin
        .request("r", "device.pair.reject", Some(json!({"code": code})))
        .await;
    assert_eq!(
        res["payload"],
        json!({"requestId": details["requestId"], "deviceId": d.id})
    );
    let res = admin
        .request("r2", "device.pair.reject", Some(json!({"code": code})))
        .await;
    assert_eq!(res["error"]["details"]["code"], "PAIRING_CODE_UNKNOWN");
    let res = admin
        .request("r3", "device.pair.approve", Some(json!({"code": code})))
        .await;
    assert_eq!(res["error"]["details"]["code"], "PAIRING_CODE_UNKNOWN");
    assert!(testkit::store(&gw.state).device(&d.id).is_none());
    gw.stop().await;
}

#[tokio::test]
async fn an_expired_request_takes_its_code_with_it() {
    let gw = manual_gateway().await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let d = TestDevice::new();
    let details = ask(&gw, &d, &["operator.read"]).await;
    let code = code_of(&details);
    // Age the request past the 5-minute TTL.
    let store = testkit::store(&gw.state);
    let mut p = store
        .pending(details["requestId"].as_str().unwrap())
        .unwrap();
    p.refreshed_at_ms -= 6 * 60 * 1000;
    store.transact(|tx| tx.put_pending(&p)).unwrap();
    let res = admin
        .request("a", "device.pair.approve", Some(json!({"code": code})))
        .await;
    assert_eq!(
        res["error"]["details"]["code"], "PAIRING_CODE_UNKNOWN",
        "{res}"
    );
    assert!(store.device(&d.id).is_none());
    // Asking again opens a new request with a new code.
    let fresh = ask(&gw, &d, &["operator.read"]).await;
    assert_ne!(fresh["requestId"], details["requestId"]);
    assert_ne!(code_of(&fresh), code);
    gw.stop().await;
}

#[tokio::test]
async fn retries_keep_id_and_code_show_the_latest_ask_and_approve_exactly_it() {
    let gw = manual_gateway().await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let d = TestDevice::new();
    let first = ask(&gw, &d, &["operator.read", "operator.write"]).await;
    let (id, code) = (first["requestId"].clone(), code_of(&first));
    drain(&mut admin).await;
    // Same ask again: same request, nothing to announce.
    let same = ask(&gw, &d, &["operator.read", "operator.write"]).await;
    assert_eq!(same["requestId"], id);
    assert!(
        drain(&mut admin)
            .await
            .iter()
            .all(|e| e["event"] != "device.pair.requested")
    );
    // A narrower ask: same id and code, the request shows only it.
    let narrower = ask(&gw, &d, &["operator.read"]).await;
    assert_eq!(narrower["requestId"], id);
    assert_eq!(code_of(&narrower), code);
    let events = drain(&mut admin).await;
    let requested: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "device.pair.requested")
        .collect();
    assert_eq!(requested.len(), 1, "{events:?}");
    assert_eq!(requested[0]["payload"]["requestId"], id);
    assert_eq!(requested[0]["payload"]["pairingCode"], code.as_str());
    assert_eq!(requested[0]["payload"]["scopes"], json!(["operator.read"]));
    assert!(events.iter().all(|e| e["event"] != "device.pair.resolved"));
    let list = pending(&mut admin).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["scopes"], json!(["operator.read"]));
    // A wider one: still the same request, showing the wider ask.
    let wider = ask(&gw, &d, &["operator.read", "operator.pairing"]).await;
    assert_eq!(wider["requestId"], id);
    assert_eq!(code_of(&wider), code);
    // Approval grants exactly what is shown now, never a union.
    let res = admin
        .request("a", "device.pair.approve", Some(json!({"code": code})))
        .await;
    assert_eq!(
        res["payload"]["device"]["scopes"],
        json!(["operator.read", "operator.pairing"]),
        "{res}"
    );
    let actions = audit_actions(&mut admin).await;
    assert_eq!(
        actions.iter().filter(|a| *a == "pairing.updated").count(),
        2,
        "{actions:?}"
    );
    assert!(!actions.contains(&"pairing.superseded".to_string()));
    gw.stop().await;
}

#[tokio::test]
async fn another_role_opens_its_own_request() {
    let gw = manual_gateway().await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let d = TestDevice::new();
    let op = ask(&gw, &d, &["operator.read"]).await;
    let mut c = gw.client().await;
    let mut p = params("node-host", "node", json!({"token": TOKEN}), &[]);
    p["role"] = json!("node");
    let res = c.connect_device(&d, p).await;
    let node = &res["error"]["details"];
    assert_eq!(node["requestedRole"], "node", "{res}");
    assert_ne!(node["requestId"], op["requestId"]);
    assert_ne!(code_of(node), code_of(&op));
    let list = pending(&mut admin).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["role"], "node");
    gw.stop().await;
}

#[tokio::test]
async fn the_same_device_id_with_another_public_key_is_refused_not_merged() {
    let gw = manual_gateway().await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let d = TestDevice::new();
    let details = ask(&gw, &d, &["operator.read"]).await;
    let code = code_of(&details);
    // Another key claiming the pending device's id, asking for more.
    let other = TestDevice::new();
    let mut c = gw.client().await;
    let mut p = device_params(&["operator.admin"]);
    other.sign(&mut p, &c.nonce());
    p["device"]["id"] = json!(d.id);
    let res = c.connect_with(p).await;
    assert_eq!(
        res["error"]["details"]["code"], "DEVICE_AUTH_DEVICE_ID_MISMATCH",
        "{res}"
    );
    // The pending request is untouched: same id, code, key and ask.
    let list = pending(&mut admin).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["requestId"], details["requestId"]);
    assert_eq!(list[0]["pairingCode"], code.as_str());
    assert_eq!(list[0]["publicKey"], d.public_key.as_str());
    assert_eq!(list[0]["scopes"], json!(["operator.read"]));
    gw.stop().await;
}

#[tokio::test]
async fn five_unknown_codes_lock_that_connection_out_of_code_lookups() {
    let gw = manual_gateway().await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let d = TestDevice::new();
    let real = code_of(&ask(&gw, &d, &["operator.read"]).await);
    let mut guess = 0;
    let mut wrong = || loop {
        guess += 1;
        let candidate = format!("BBBB-BB{}", &ALPHABET[guess % 20..guess % 20 + 1].repeat(2));
        if candidate != real {
            return candidate;
        }
    };
    for i in 0..5 {
        let res = admin
            .request(
                &format!("g{i}"),
                "device.pair.approve",
                Some(json!({"code": wrong()})),
            )
            .await;
        assert_eq!(
            res["error"]["details"]["code"], "PAIRING_CODE_UNKNOWN",
            "{res}"
        );
    }
    // Now even the right code is refused on this connection ...
    let res = admin
        .request("g5", "device.pair.approve", Some(json!({"code": real})))
        .await;
    let error = &res["error"];
    assert_eq!(error["details"]["code"], "AUTH_RATE_LIMITED", "{res}");
    assert_eq!(error["retryable"], true);
    let retry = error["retryAfterMs"].as_u64().unwrap();
    assert!(retry > 50_000 && retry <= 60_000, "{retry}");
    let res = admin
        .request("g6", "device.pair.reject", Some(json!({"code": real})))
        .await;
    assert_eq!(res["error"]["details"]["code"], "AUTH_RATE_LIMITED");
    // ... nothing was approved or rejected ...
    assert!(testkit::store(&gw.state).device(&d.id).is_none());
    let actions = audit_actions(&mut admin).await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "pairing.code_unknown")
            .count(),
        5
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "pairing.code_limited")
            .count(),
        1
    );
    // ... and another operator connection is not affected.
    let mut other = operator(&gw, &["operator.admin"]).await;
    let res = other
        .request("a", "device.pair.approve", Some(json!({"code": real})))
        .await;
    assert_eq!(res["ok"], true, "{res}");
    gw.stop().await;
}

#[tokio::test]
async fn a_code_grants_nothing_without_the_operator_scopes() {
    let gw = manual_gateway().await;
    let d = TestDevice::new();
    let details = ask(&gw, &d, &["operator.admin"]).await;
    let code = code_of(&details);
    // Reading is not approving.
    let mut reader = operator(&gw, &["operator.read"]).await;
    let res = reader
        .request("a", "device.pair.approve", Some(json!({"code": code})))
        .await;
    assert_eq!(res["error"]["details"]["code"], "MISSING_SCOPE", "{res}");
    // Pairing without admin cannot grant admin.
    let mut pairer = operator(&gw, &["operator.pairing"]).await;
    let res = pairer
        .request("a", "device.pair.approve", Some(json!({"code": code})))
        .await;
    assert_eq!(
        res["error"]["message"], "missing scope: operator.admin",
        "{res}"
    );
    let store = testkit::store(&gw.state);
    assert!(store.device(&d.id).is_none());
    assert_eq!(
        store
            .pending(details["requestId"].as_str().unwrap())
            .unwrap()
            .pairing_code
            .as_deref(),
        Some(code.as_str())
    );
    gw.stop().await;
}

#[tokio::test]
async fn approve_and_reject_take_exactly_one_of_request_id_and_code() {
    let gw = manual_gateway().await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let d = TestDevice::new();
    let details = ask(&gw, &d, &[]).await;
    let both = admin
        .request(
            "b",
            "device.pair.approve",
            Some(json!({"requestId": details["requestId"], "code": code_of(&details)})),
        )
        .await;
    assert_eq!(
        both["error"]["message"],
        "invalid device.pair.approve params: must have exactly one of 'requestId' or 'code'"
    );
    let neither = admin
        .request("n", "device.pair.reject", Some(json!({})))
        .await;
    assert_eq!(
        neither["error"]["message"],
        "invalid device.pair.reject params: must have required property 'requestId'"
    );
    let extra = admin
        .request(
            "x",
            "device.pair.reject",
            Some(json!({"code": "BBBB-BBBB", "x": 1})),
        )
        .await;
    assert_eq!(extra["error"]["code"], "INVALID_REQUEST");
    // By request id as before.
    let res = admin
        .request(
            "a",
            "device.pair.approve",
            Some(json!({"requestId": details["requestId"]})),
        )
        .await;
    assert_eq!(res["ok"], true, "{res}");
    gw.stop().await;
}
