//! Setup codes with the real binary against a real gateway process:
//! `devices setup-code` (JSON and text with its QR), `list`, `revoke`,
//! `pair --setup-code` from another state directory (the "device"), then the
//! device token alone; a setup code given as `--token` is explained.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "setup-cli-token-4b3a2c";

#[test]
fn setup_codes_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    std::fs::write(
        state.join("clawgate.json"),
        format!(r#"{{"gateway": {{"auth": {{"token": "{TOKEN}"}}, "nodes": {{"pairing": {{"autoApproveLocal": false}}}}}}}}"#),
    )
    .unwrap();
    let r = start(state, &[], &[]);
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("clawgate.json")).unwrap())
            .unwrap();
    doc["gateway"]["port"] = json!(r.port);
    std::fs::write(state.join("clawgate.json"), doc.to_string()).unwrap();
    let url = format!("ws://127.0.0.1:{}/", r.port);

    // --json: the reply without the QR matrix; the code holds the URL and a
    // one-time token, never the gateway token.
    let (code, out, err) = clawgate(
        state,
        &[
            "devices",
            "setup-code",
            "--role",
            "operator",
            "--scopes",
            "operator.read",
            "--name",
            "phone",
            "--ttl",
            "5m",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["role"], "operator");
    assert_eq!(created["scopes"], json!(["operator.read"]));
    assert_eq!(created["label"], "phone");
    assert!(created.get("qr").is_none());
    let ttl = created["expiresAtMs"].as_u64().unwrap() - created["createdAtMs"].as_u64().unwrap();
    assert_eq!(ttl, 5 * 60 * 1000);
    let setup = created["setupCode"].as_str().unwrap().to_string();
    let decoded: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&setup).unwrap()).unwrap();
    assert_eq!(decoded["url"], url.trim_end_matches('/'));
    assert_eq!(decoded["bootstrapToken"].as_str().unwrap().len(), 43);
    assert!(
        !out.contains(TOKEN)
            && !String::from_utf8_lossy(&URL_SAFE_NO_PAD.decode(&setup).unwrap()).contains(TOKEN)
    );

    // Text: the QR code, the code, how to redeem it, the loopback note.
    let (code, out, err) = clawgate(
        state,
        &[
            "devices",
            "setup-code",
            "--role",
            "node",
            "--name",
            "sensor",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains('\u{2580}') || out.contains('\u{2584}') || out.contains('\u{2588}'),
        "{out}"
    );
    assert!(out.contains("clawgate pair --setup-code"), "{out}");
    assert!(out.contains("loopback address"), "{out}");
    let node_id = out
        .lines()
        .find_map(|l| l.strip_prefix("Revoke it: clawgate devices setup-code revoke "))
        .unwrap()
        .to_string();

    // A setup code given as the gateway token is explained, not sent.
    let (code, out, err) = clawgate(
        state,
        &["devices", "list", "--url", &url, "--token", &setup],
    );
    assert_eq!(code, 1);
    let text = format!("{out}{err}");
    assert!(
        text.contains("setup code") && text.contains("clawgate pair --setup-code"),
        "{text}"
    );
    assert!(!text.contains("AUTH_TOKEN_MISMATCH"), "{text}");

    // Redeemed from another state directory (the device), once.
    let phone = tempfile::tempdir().unwrap();
    let (code, out, err) = clawgate(phone.path(), &["pair", "--setup-code", &setup, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let paired: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(paired["role"], "operator");
    assert_eq!(paired["scopes"], json!(["operator.read"]));
    assert_eq!(paired["tokenSaved"], true);
    let device_id = paired["deviceId"].as_str().unwrap().to_string();
    // Then its device token alone reaches the gateway.
    let (code, out, err) = clawgate(phone.path(), &["status", "--url", &url, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    // The code is spent.
    let other = tempfile::tempdir().unwrap();
    let (code, out, err) = clawgate(other.path(), &["pair", "--setup-code", &setup]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        format!("{out}{err}").contains("AUTH_BOOTSTRAP_TOKEN_INVALID"),
        "{out}{err}"
    );
    // Garbage is refused before connecting.
    let (code, out, err) = clawgate(other.path(), &["pair", "--setup-code", "not a code"]);
    assert_eq!(code, 1);
    assert!(
        format!("{out}{err}").contains("not a setup code"),
        "{out}{err}"
    );

    // The paired device, as the admin sees it.
    let (_, out, _) = clawgate(state, &["devices", "list", "--json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    let record = list["paired"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deviceId"] == device_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(record["approvedVia"], "bootstrap");

    // List and revoke.
    let (code, out, _) = clawgate(state, &["devices", "setup-code", "revoke", &node_id]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = clawgate(state, &["devices", "setup-code", "list", "--json"]);
    assert_eq!(code, 0);
    let codes: Value = serde_json::from_str(&out).unwrap();
    let states: Vec<&str> = codes["setupCodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["used", "revoked"]);
    assert!(!out.contains(&setup));
    let (code, out, _) = clawgate(state, &["devices", "setup-code", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("sensor") && out.contains("revoked"), "{out}");
    stop(r);
}
