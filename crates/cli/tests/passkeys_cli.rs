//! `clawgate passkeys list|remove` with the real binary against a real
//! gateway process. Registering a passkey needs a browser's authenticator
//! (crates/gateway/tests/passkeys.rs and ui/tests/passkeys.test.mjs do
//! that); here the rows are written straight into the gateway's SQLite
//! file while it runs, as a registration would leave them, and the CLI
//! reads and removes them through the gateway.

mod common;

use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "passkeys-cli-token-7c2d1e";

fn insert(state: &std::path::Path, id: &str, label: &str, flagged: bool) {
    let conn = rusqlite::Connection::open(state.join("clawgate.sqlite")).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    conn.execute(
        "INSERT INTO passkeys (credential_id, user_handle, label, rp_id, scopes_json, public_key, \
         state, sign_count, created_by, created_at_ms, last_used_at_ms, flagged_at_ms, flagged_reason) \
         VALUES (?1, 'dXNlcg', ?2, 'localhost', '[\"operator.read\"]', '00', '00000000000000', 3, \
         'shared-secret', 1700000000000, NULL, ?3, ?4)",
        rusqlite::params![
            id,
            label,
            flagged.then_some(1_700_000_100_000i64),
            flagged.then_some("sign count went backwards"),
        ],
    )
    .unwrap();
}

#[test]
fn list_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    std::fs::write(
        state.join("clawgate.json"),
        format!(r#"{{"gateway": {{"auth": {{"token": "{TOKEN}"}}}}}}"#),
    )
    .unwrap();
    let r = start(state, &[], &[]);
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("clawgate.json")).unwrap())
            .unwrap();
    doc["gateway"]["port"] = json!(r.port);
    std::fs::write(state.join("clawgate.json"), doc.to_string()).unwrap();

    let (code, out, err) = clawgate(state, &["passkeys", "list"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("No passkeys. Register one in the Control UI"),
        "{out}"
    );

    insert(state, "cred-laptop", "laptop", false);
    insert(state, "cred-clone", "old key", true);
    // Credential ids are base64url: about one in 64 begins with '-', which
    // must not be read as an option.
    insert(state, "-zNkl_dash-first", "dash key", false);

    let (code, out, err) = clawgate(state, &["passkeys", "list", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    let keys = list["passkeys"].as_array().unwrap();
    assert_eq!(keys.len(), 3, "{list}");
    let laptop = keys.iter().find(|k| k["id"] == "cred-laptop").unwrap();
    assert_eq!(laptop["label"], "laptop");
    assert_eq!(laptop["scopes"], json!(["operator.read"]));
    assert_eq!(laptop["rpId"], "localhost");
    assert_eq!(laptop["signCount"], 3);
    for hidden in ["publicKey", "state", "userHandle"] {
        assert!(laptop.get(hidden).is_none(), "{laptop}");
    }

    let (code, out, err) = clawgate(state, &["passkeys", "list"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("laptop") && out.contains("operator.read"),
        "{out}"
    );
    assert!(out.contains("FLAGGED: sign count went backwards"), "{out}");
    assert!(out.contains("clawgate passkeys remove <id>"), "{out}");

    let (code, out, err) = clawgate(state, &["passkeys", "remove", "cred-laptop"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Removed passkey cred-laptop"), "{out}");
    let (code, out, err) = clawgate(state, &["passkeys", "remove", "cred-laptop"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("clawgate passkeys list"), "{err}");
    let (code, out, err) = clawgate(state, &["passkeys", "remove", "-zNkl_dash-first"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Removed passkey -zNkl_dash-first"), "{out}");

    let (code, out, _) = clawgate(state, &["passkeys", "list", "--json"]);
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["passkeys"].as_array().unwrap().len(), 1);

    // The removal is in the audit chain.
    let conn = rusqlite::Connection::open(state.join("clawgate.sqlite")).unwrap();
    let n: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'passkey.removed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 2);
    stop(r);
}
