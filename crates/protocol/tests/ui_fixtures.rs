//! The Control UI's browser tests render the Devices, Audit and Overview
//! pages from `ui/tests/fixtures/wire.json`, which is written here from the
//! protocol's wire types: a field renamed in `clawgate_protocol::wire`
//! changes the fixture, and the UI test that reads the old name fails.
//! `UPDATE_FIXTURES=1 cargo test -p clawgate-protocol --test ui_fixtures`
//! rewrites the file.

use clawgate_protocol::connect::Role;
use clawgate_protocol::wire::{
    AuditAction, AuditEntry, AuditList, ClientPresence, GatewayPresence, PairList, PairedDevice,
    PendingPairing, PresenceEntry, TokenInfo,
};
use serde_json::json;

const FIXTURE: &str = "ui/tests/fixtures/wire.json";

/// Fixed times (2026-01-01T00:00:00Z and later) so the file is stable.
const T0: u64 = 1_767_225_600_000;
const DEVICE_A: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const DEVICE_B: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const DEVICE_C: &str = "5555aaaa5555aaaa5555aaaa5555aaaa5555aaaa5555aaaa5555aaaa5555aaaa";

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn pair_list() -> PairList {
    // A request with every optional field (a browser on the LAN) ...
    let mut browser = PendingPairing::new(
        "req-browser-1",
        DEVICE_C,
        "pkC",
        "operator",
        strings(&["operator"]),
        strings(&["operator.read", "operator.pairing"]),
        T0 + 60_000,
    );
    browser.display_name = Some("Kitchen tablet".into());
    browser.platform = Some("Linux x86_64".into());
    browser.device_family = Some("tablet".into());
    browser.client_id = Some("openclaw-control-ui".into());
    browser.client_mode = Some("webchat".into());
    browser.browser_origin = Some("http://192.168.1.20:18789".into());
    browser.set_remote_ip(Some("192.168.1.20"));
    browser.pairing_code = Some("BCDF-GHJK".into());
    // ... and a bare one from loopback (no remoteIp), a scope upgrade of a
    // paired device.
    let mut upgrade = PendingPairing::new(
        "req-upgrade-2",
        DEVICE_B,
        "pkB",
        "operator",
        strings(&["operator"]),
        strings(&["operator.read", "operator.admin"]),
        T0 + 30_000,
    );
    upgrade.is_repair = true;
    upgrade.pairing_code = Some("WXZB-QRST".into());
    upgrade.set_remote_ip(Some("127.0.0.1"));

    // A paired device with every optional field and two tokens (one revoked).
    let mut laptop = PairedDevice::new(
        DEVICE_A,
        "pkA",
        strings(&["operator", "node"]),
        strings(&["operator.read", "operator.pairing"]),
        "owner",
        T0,
        T0 + 1_000,
    );
    laptop.display_name = Some("Work laptop".into());
    laptop.operator_label = Some("Ada's laptop".into());
    laptop.platform = Some("macOS 15".into());
    laptop.device_family = Some("laptop".into());
    laptop.client_id = Some("cli".into());
    laptop.client_mode = Some("cli".into());
    laptop.browser_origin = Some("https://gateway.example".into());
    laptop.set_remote_ip(Some("203.0.113.7"));
    laptop.last_seen_at_ms = Some(T0 + 90_000);
    laptop.last_seen_reason = Some("connect".into());
    laptop.connected = Some(true);
    let mut operator = TokenInfo::new("operator", strings(&["operator.read"]), T0 + 1_000);
    operator.rotated_at_ms = Some(T0 + 5_000);
    operator.last_used_at_ms = Some(T0 + 90_000);
    let mut node = TokenInfo::new("node", vec![], T0 + 1_000);
    node.revoked_at_ms = Some(T0 + 7_000);
    laptop.tokens = vec![operator, node];

    // A paired device with only the required fields.
    let mut bare = PairedDevice::new(
        DEVICE_B,
        "pkB",
        strings(&["operator"]),
        strings(&["operator.read"]),
        "silent",
        T0 + 2_000,
        T0 + 2_000,
    );
    bare.set_remote_ip(Some("::1"));
    bare.connected = Some(false);
    bare.tokens = vec![TokenInfo::new(
        "operator",
        strings(&["operator.read"]),
        T0 + 2_000,
    )];

    PairList {
        pending: vec![browser, upgrade],
        paired: vec![laptop, bare],
    }
}

fn audit_list() -> AuditList {
    let entry = |seq: u64, action: AuditAction, actor, device: Option<&str>, details| AuditEntry {
        seq,
        ts: T0 + seq * 1_000,
        action,
        actor,
        device_id: device.map(str::to_owned),
        details,
        hash: format!("{seq:064}"),
    };
    AuditList {
        entries: vec![
            entry(
                1,
                AuditAction::PairingRequested,
                json!({"kind": "peer", "ip": "192.168.1.20"}),
                Some(DEVICE_C),
                json!({"requestId": "req-browser-1", "roles": ["operator"], "scopes": ["operator.read"]}),
            ),
            entry(
                2,
                AuditAction::PairingApproved,
                json!({"kind": "session", "connId": "conn-1", "ip": "127.0.0.1", "role": "operator", "deviceId": DEVICE_A}),
                Some(DEVICE_C),
                json!({"requestId": "req-browser-1", "approvedVia": "owner"}),
            ),
            entry(
                3,
                AuditAction::AuthFailure,
                json!({"kind": "peer", "ip": "198.51.100.9"}),
                None,
                json!({"reason": "token_mismatch"}),
            ),
            entry(
                4,
                AuditAction::AuthSecretChanged,
                json!({"kind": "host", "via": "config"}),
                None,
                json!({}),
            ),
        ],
        next_cursor: None,
    }
}

fn presence() -> Vec<PresenceEntry> {
    let mut gateway = GatewayPresence::new("vm", "2026.9.6", "0.1.0", "linux 6.8.0", "inst-gw", T0)
        .with_ip("192.0.2.10");
    gateway.device_family = "Linux".into();
    let mut browser = ClientPresence::new(
        "openclaw-control-ui",
        "webchat",
        Role::Operator,
        Some("Kitchen tablet"),
        "2026.9.6",
        "Linux x86_64",
        T0 + 60_000,
    );
    browser.scopes = vec!["operator.read".into()];
    browser.instance_id = Some("inst-tablet".into());
    browser.device_id = Some(DEVICE_C.into());
    let node = ClientPresence::new("node-host", "node", Role::Node, None, "1.2.3", "linux", T0);
    vec![gateway.into(), browser.into(), node.into()]
}

fn passkey_list() -> clawgate_protocol::wire::PasskeyList {
    use clawgate_protocol::wire::{PasskeyInfo, PasskeyList};
    let key = |id: &str, label: &str, scopes: &[&str]| PasskeyInfo {
        id: id.into(),
        label: label.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        rp_id: "localhost".into(),
        created_at_ms: T0,
        created_by: Some("shared-secret".into()),
        last_used_at_ms: None,
        sign_count: 0,
        flagged_at_ms: None,
        flagged_reason: None,
    };
    let mut used = key("Zm9vYmFyYmF6", "ui laptop", &["operator.read"]);
    used.last_used_at_ms = Some(T0 + 60_000);
    used.sign_count = 3;
    let mut flagged = key(
        "cXV4cXV1eA",
        "old key",
        &["operator.read", "operator.pairing"],
    );
    flagged.flagged_at_ms = Some(T0 + 120_000);
    flagged.flagged_reason = Some("sign count went backwards".into());
    PasskeyList {
        passkeys: vec![used, flagged],
    }
}

#[test]
fn ui_fixture_is_in_sync() {
    let fixture = json!({
        "//": "Written by crates/protocol/tests/ui_fixtures.rs from clawgate_protocol::wire; rewrite with UPDATE_FIXTURES=1 cargo test -p clawgate-protocol --test ui_fixtures",
        "pairList": pair_list(),
        "auditList": audit_list(),
        "presence": presence(),
        "passkeyList": passkey_list(),
        "auditActions": AuditAction::KNOWN.iter().map(AuditAction::as_str).collect::<Vec<_>>(),
    });
    let want = format!("{}\n", serde_json::to_string_pretty(&fixture).unwrap());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(FIXTURE);
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{FIXTURE} is out of date; regenerate it with: \
         UPDATE_FIXTURES=1 cargo test -p clawgate-protocol --test ui_fixtures"
    );
    // And it reads back as the same values.
    let back: serde_json::Value = serde_json::from_str(&have).unwrap();
    assert_eq!(
        serde_json::from_value::<PairList>(back["pairList"].clone()).unwrap(),
        pair_list()
    );
    assert_eq!(
        serde_json::from_value::<AuditList>(back["auditList"].clone()).unwrap(),
        audit_list()
    );
    assert_eq!(
        serde_json::from_value::<Vec<PresenceEntry>>(back["presence"].clone()).unwrap(),
        presence()
    );
}
