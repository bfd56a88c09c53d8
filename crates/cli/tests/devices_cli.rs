//! `clawgate devices ...` with the real binary against a real gateway
//! process, on pairing requests made by a real signing client.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "devices-cli-token-9f8e7d";

type Device = common::Identity;

fn device() -> Device {
    Device::random()
}

/// Connects `d` with the shared token and returns the connect response.
async fn connect(port: u16, d: &Device, scopes: &[&str]) -> Value {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/"))
        .await
        .unwrap();
    let ch: Value =
        serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    let nonce = ch["payload"]["nonce"].as_str().unwrap();
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    let params = json!({"minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "cli", "version": "1", "platform": "linux", "mode": "cli", "displayName": "cli-test-device"},
        "scopes": scopes, "auth": {"token": TOKEN},
        "device": d.cli_operator_proof(&scopes, TOKEN, nonce, ts)});
    ws.send(Message::Text(
        json!({"type": "req", "id": "c", "method": "connect", "params": params})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap()
}

#[test]
fn devices_commands_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    std::fs::write(
        state.join("clawgate.json"),
        format!(r#"{{"gateway": {{"auth": {{"token": "{TOKEN}"}}, "nodes": {{"pairing": {{"autoApproveLocal": false}}}}}}}}"#),
    )
    .unwrap();
    let r = start(state, &[], &[]);
    // The CLI finds the local gateway from the config: write the port there.
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("clawgate.json")).unwrap())
            .unwrap();
    doc["gateway"]["port"] = json!(r.port);
    std::fs::write(state.join("clawgate.json"), doc.to_string()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let a = device();
    let res = rt.block_on(connect(r.port, &a, &["operator.read"]));
    let rid = res["error"]["details"]["requestId"]
        .as_str()
        .unwrap()
        .to_string();
    let pcode = res["error"]["details"]["pairingCode"]
        .as_str()
        .unwrap()
        .to_string();

    let (code, out, _) = clawgate(state, &["devices", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Pending (1)")
            && out.contains(&rid)
            && out.contains("new pairing")
            && out.contains("Code")
            && out.contains(&pcode),
        "{out}"
    );
    let (code, out, _) = clawgate(state, &["devices", "list", "--json"]);
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["pending"][0]["requestId"], rid.as_str());
    assert_eq!(list["pending"][0]["pairingCode"], pcode.as_str());

    // --latest previews and names the exact command (with the code), exit 1.
    let (code, out, _) = clawgate(state, &["devices", "approve", "--latest"]);
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!("clawgate devices approve {pcode}"))
            && out.contains(&format!("Code:      {pcode}")),
        "{out}"
    );
    assert!(out.contains("First-time device pairing request."), "{out}");
    let (code, out, _) = clawgate(state, &["devices", "approve", "--latest", "--json"]);
    assert_eq!(code, 1, "a preview approves nothing");
    let preview: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(preview["selected"]["requestId"], rid.as_str());
    assert_eq!(preview["approvalState"]["kind"], "new pairing");
    assert_eq!(
        preview["approveCommand"],
        format!("clawgate devices approve {pcode}")
    );
    assert_eq!(preview["requiresAuthFlags"]["token"], false);
    // A typo'd code approves nothing and says where the codes are.
    let typo = if pcode.starts_with('B') {
        "CCCC-CCCC"
    } else {
        "BBBB-BBBB"
    };
    let (code, _, err) = clawgate(state, &["devices", "approve", typo]);
    assert_eq!(code, 1);
    assert!(
        err.contains("[PAIRING_CODE_UNKNOWN]") && err.contains("clawgate devices list"),
        "{err}"
    );
    // The code as typed by a person: lower case, no dash.
    let typed = pcode.replace('-', "").to_lowercase();
    let (code, out, _) = clawgate(state, &["devices", "approve", &typed]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("Approved {} ({typed})", a.id)),
        "{out}"
    );
    assert!(out.contains("scopes: operator.read"), "{out}");
    let res = rt.block_on(connect(r.port, &a, &["operator.read"]));
    assert_eq!(res["ok"], true);
    let (code, _, err) = clawgate(state, &["devices", "approve", &rid]);
    assert_eq!(code, 1, "approving twice fails");
    assert!(
        err.contains(&format!("No pending device request matches {rid}"))
            && err.contains("clawgate devices list"),
        "{err}"
    );
    let (code, _, err) = clawgate(state, &["devices", "approve", "--latest"]);
    assert_eq!(code, 1);
    assert!(err.contains("No pending device pairing requests"), "{err}");
    let (code, out, _) = clawgate(
        state,
        &[
            "devices",
            "rename",
            "--device",
            &a.id,
            "--name",
            "Json Laptop",
            "--json",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["label"],
        "Json Laptop"
    );

    let (code, out, _) = clawgate(
        state,
        &[
            "devices",
            "rename",
            "--device",
            &a.id,
            "--name",
            "Test Laptop",
        ],
    );
    assert_eq!(code, 0);
    assert!(out.contains("Test Laptop"));
    let (code, out, _) = clawgate(state, &["devices", "list"]);
    assert!(
        code == 0
            && out.contains("Paired (1)")
            && out.contains("Test Laptop")
            && out.contains(&a.id),
        "{out}"
    );
    let (code, out, _) = clawgate(
        state,
        &["devices", "rotate", "--device", &a.id, "--role", "operator"],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("Rotated the operator token of {}", a.id))
            && out.contains("operator.read"),
        "{out}"
    );
    let (code, out, _) = clawgate(
        state,
        &[
            "devices", "rotate", "--device", &a.id, "--role", "operator", "--json",
        ],
    );
    assert_eq!(code, 0);
    let rotated: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rotated["tokenDelivery"], "withheld-cross-device");
    assert!(
        rotated.get("token").is_none(),
        "no token for another device"
    );
    let (code, _, err) = clawgate(state, &["devices", "rotate", "--device", &a.id]);
    assert_eq!(code, 2, "--role is required: {err}");
    let (code, out, _) = clawgate(
        state,
        &["devices", "revoke", "--device", &a.id, "--role", "operator"],
    );
    assert_eq!(code, 0);
    assert!(out.contains("Revoked the operator token"), "{out}");
    let (code, out, _) = clawgate(
        state,
        &[
            "devices", "revoke", "--device", &a.id, "--role", "operator", "--json",
        ],
    );
    assert_eq!(code, 0);
    assert!(serde_json::from_str::<Value>(&out).unwrap()["revokedAtMs"].is_u64());
    let (code, out, _) = clawgate(state, &["devices", "remove", &a.id, "--json"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["deviceId"],
        a.id.as_str()
    );
    let (code, out, _) = clawgate(state, &["devices", "list"]);
    assert!(
        code == 0 && out.contains("No device pairing entries."),
        "{out}"
    );

    // Reject, clear, and the errors users see.
    let b = device();
    let res = rt.block_on(connect(r.port, &b, &[]));
    let rid_b = res["error"]["details"]["requestId"]
        .as_str()
        .unwrap()
        .to_string();
    let code_b = res["error"]["details"]["pairingCode"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, out, _) = clawgate(state, &["devices", "reject", &code_b, "--json"]);
    assert_eq!(code, 0, "{out}");
    let rejected: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rejected["requestId"], rid_b.as_str());
    assert_eq!(rejected["deviceId"], b.id.as_str());
    let (code, _, err) = clawgate(state, &["devices", "reject", &rid_b]);
    assert_eq!(code, 1);
    assert!(
        err.contains("unknown requestId") && err.contains("next:"),
        "{err}"
    );
    let c = device();
    rt.block_on(connect(r.port, &c, &[]));
    let (code, _, err) = clawgate(state, &["devices", "clear"]);
    assert_eq!(code, 1);
    assert!(err.contains("clawgate devices clear --yes"));
    let (code, out, _) = clawgate(state, &["devices", "clear", "--yes", "--pending"]);
    assert!(
        code == 0 && out.contains("Rejected 1 pending request"),
        "{out}"
    );
    let d = device();
    rt.block_on(connect(r.port, &d, &[]));
    let (code, out, _) = clawgate(state, &["devices", "clear", "--yes", "--pending", "--json"]);
    assert_eq!(code, 0);
    let cleared: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(cleared, json!({"removedDevices": 0, "rejectedPending": 1}));

    let url = format!("ws://127.0.0.1:{}/", r.port);
    // The host's operator with --url on loopback and the shared secret is
    // not asked to pair the CLI (autoApproveLocal is off here): it connects
    // device-less, as the reference CLI does, and creates no identity.
    let (code, out, err) = clawgate(
        state,
        &["devices", "list", "--url", &url, "--token", TOKEN, "--json"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    assert!(
        list["pending"].is_array() && list["paired"].is_array(),
        "{list}"
    );
    let (code, out, err) = clawgate(state, &["devices", "list", "--url", &url, "--token", TOKEN]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!state.join("client/identity.json").exists());

    // With a device identity (as from a remote host) the CLI needs pairing,
    // and the failure says exactly where and how to approve it.
    let (code, _, err) = clawgate(
        state,
        &[
            "devices",
            "list",
            "--url",
            &url,
            "--token",
            TOKEN,
            "--device-identity",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("[PAIRING_REQUIRED]"), "{err}");
    let (code, out, _) = clawgate(
        state,
        &[
            "devices",
            "list",
            "--url",
            &url,
            "--token",
            TOKEN,
            "--device-identity",
            "--json",
        ],
    );
    assert_eq!(code, 1);
    let failure: Value = serde_json::from_str(&out).unwrap();
    let rid_cli = failure["error"]["details"]["requestId"].as_str().unwrap();
    // One stable request: the text run and the --json run asked the same.
    let code_cli = failure["error"]["details"]["pairingCode"].as_str().unwrap();
    assert_eq!(
        failure["error"]["next"],
        format!(
            "Approve this CLI on the gateway host: run clawgate devices approve {code_cli} there (list requests with: clawgate devices list), or approve code {code_cli} in the Devices page of the gateway's Control UI ({url}); then run this command again."
        )
    );
    assert!(
        err.contains(&format!("Pairing code: {code_cli}"))
            && err.contains(&format!("clawgate devices approve {code_cli} there")),
        "{err}"
    );
    let (code, out, err) = clawgate(state, &["devices", "approve", rid_cli]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = clawgate(
        state,
        &[
            "devices",
            "list",
            "--url",
            &url,
            "--token",
            TOKEN,
            "--device-identity",
            "--json",
        ],
    );
    assert_eq!(
        code, 0,
        "approved, the paired CLI lists devices: {out}{err}"
    );

    let (code, out, _) = clawgate(
        state,
        &[
            "devices", "list", "--url", &url, "--token", "WRONG", "--json",
        ],
    );
    assert_eq!(code, 1);
    let err: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(err["error"]["code"], "AUTH_TOKEN_MISMATCH");
    assert_eq!(err["error"]["details"]["authReason"], "token_mismatch");
    assert!(
        err["error"]["next"]
            .as_str()
            .unwrap()
            .contains("clawgate gateway auth-token --show")
    );
    let (code, _, err) = clawgate(state, &["devices", "list", "--url", &url]);
    assert_eq!(code, 1);
    assert!(
        err.contains("pass --token or --password with --url")
            && err.contains("clawgate gateway auth-token --show"),
        "{err}"
    );
    let (code, _, err) = clawgate(
        state,
        &[
            "devices",
            "list",
            "--url",
            "ws://127.0.0.1:9/",
            "--token",
            "x",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("not reachable") && err.contains("clawgate gateway run"),
        "{err}"
    );
    let (code, _, _) = clawgate(state, &["devices", "frobnicate"]);
    assert_eq!(code, 2, "usage errors exit 2");
    let (code, err) = stop(r);
    assert_eq!(code, 0);
    assert!(!err.contains(TOKEN));
}
