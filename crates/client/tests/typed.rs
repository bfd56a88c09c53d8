//! The typed requests against a real gateway: pairing, rename, rotate,
//! revoke, remove and the audit log, decoded into their result types.

mod common;

use clawgate_client::methods::{
    AuditList, AuditQuery, PairList, PresenceEntry, TokenDelivery, TokenRevoked, TokenRotated,
};
use clawgate_client::{Client, ConnectOptions, DeviceIdentity, MemoryTokenCache};
use clawgate_gateway::config::AuthMode;
use clawgate_protocol::wire::HelloOk;
use common::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;

/// Decodes the gateway's raw JSON into the protocol type `T` and checks that
/// encoding it again gives the same text: same fields, same order, nothing
/// left in `extra`. The protocol types are the gateway's wire shapes.
fn same_wire<T: DeserializeOwned + Serialize>(raw: &Value) -> T {
    let typed: T = serde_json::from_value(raw.clone()).expect("decodes");
    assert_eq!(
        serde_json::to_string(&typed).unwrap(),
        raw.to_string(),
        "the protocol type does not reproduce the gateway's JSON"
    );
    typed
}

async fn raw(client: &Client, method: &str, params: Value) -> Value {
    client.request(method, params).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_requests_round_trip_against_the_gateway() {
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.auto_approve_local = false;
    let gw = TestGateway::start_with(cfg, options(), dir).await;
    let admin = admin(&gw.url(), TOKEN).await;

    assert!(admin.health().await.unwrap().ok);
    assert_eq!(
        admin.status().await.unwrap().runtime_version.as_deref(),
        Some("2026.9.6")
    );
    let presence = admin.system_presence().await.unwrap();
    assert!(
        matches!(&presence[0], PresenceEntry::Gateway(g) if g.mode == "gateway" && g.reason == "self"),
        "the gateway lists itself first: {presence:?}"
    );
    same_wire::<Vec<PresenceEntry>>(&raw(&admin, "system-presence", json!({})).await);
    let hello = same_wire::<HelloOk>(&admin.hello());
    assert_eq!(admin.hello_ok(), Some(hello));

    // A device asks; the typed list shows its request.
    let identity = DeviceIdentity::generate();
    let mut opts = ConnectOptions::new(gw.url())
        .token(TOKEN)
        .scopes(["operator.read"]);
    opts.identity = Some(identity.clone());
    opts.token_cache = Some(Arc::new(MemoryTokenCache::default()));
    opts.reconnect = false;
    let refused = Client::connect(opts.clone()).await.err().unwrap();
    assert_eq!(refused.detail_code(), Some("PAIRING_REQUIRED"));
    let list = admin.device_pair_list().await.unwrap();
    let request = list
        .pending
        .iter()
        .find(|r| r.device_id == identity.device_id())
        .expect("the request is listed");
    assert_eq!(request.scopes, vec!["operator.read".to_string()]);
    same_wire::<PairList>(&raw(&admin, "device.pair.list", json!({})).await);

    // By the pairing code the device was shown, as a person types it.
    let code = refused.gateway_error().unwrap().details.as_deref().unwrap()["pairingCode"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(request.pairing_code.as_deref(), Some(code.as_str()));
    let approved = admin
        .device_pair_approve_by(clawgate_client::methods::PairDecisionParams::from_input(
            &code.replace('-', "").to_lowercase(),
        ))
        .await
        .unwrap();
    assert_eq!(approved.request_id, request.request_id);
    assert_eq!(approved.device.device_id, identity.device_id());
    let device = Client::connect(opts.clone()).await.unwrap();
    // Its hello-ok hands out a device token; the typed form carries it too.
    let hello = same_wire::<HelloOk>(&device.hello());
    assert!(hello.auth.device_token.is_some());
    assert_eq!(hello.auth.recovery_migration_allowed, Some(true));

    admin
        .device_pair_rename(identity.device_id(), "Typed Laptop")
        .await
        .unwrap();
    let list = admin.device_pair_list().await.unwrap();
    let paired = list
        .paired
        .iter()
        .find(|d| d.device_id == identity.device_id())
        .unwrap();
    assert_eq!(paired.name(), "Typed Laptop");
    assert_eq!(paired.tokens.len(), 1);
    same_wire::<clawgate_client::methods::PairRenamed>(
        &raw(
            &admin,
            "device.pair.rename",
            json!({"deviceId": identity.device_id(), "label": "Typed Laptop"}),
        )
        .await,
    );
    same_wire::<PairList>(&raw(&admin, "device.pair.list", json!({})).await);

    // Cross-device rotation withholds the token; the device is disconnected.
    let rotated = admin
        .device_token_rotate(identity.device_id(), "operator", None)
        .await
        .unwrap();
    assert_eq!(rotated.token_delivery, TokenDelivery::WithheldCrossDevice);
    assert!(rotated.token.is_none());
    assert_eq!(rotated.scopes, vec!["operator.read".to_string()]);
    drop(device);
    same_wire::<TokenRotated>(
        &raw(
            &admin,
            "device.token.rotate",
            json!({"deviceId": identity.device_id(), "role": "operator"}),
        )
        .await,
    );

    let revoked = admin
        .device_token_revoke(identity.device_id(), "operator")
        .await
        .unwrap();
    assert!(revoked.revoked_at_ms > 0);
    same_wire::<TokenRevoked>(
        &raw(
            &admin,
            "device.token.revoke",
            json!({"deviceId": identity.device_id(), "role": "operator"}),
        )
        .await,
    );
    admin
        .device_pair_remove(identity.device_id())
        .await
        .unwrap();
    assert!(
        admin
            .device_pair_list()
            .await
            .unwrap()
            .paired
            .iter()
            .all(|d| d.device_id != identity.device_id())
    );

    // The audit log recorded each of these for this device.
    let page = admin
        .audit_list(&AuditQuery {
            device_id: Some(identity.device_id().to_string()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = page.entries.iter().map(|e| e.action.as_str()).collect();
    same_wire::<AuditList>(&raw(&admin, "audit.list", json!({"limit": 3})).await);
    let all = same_wire::<AuditList>(&raw(&admin, "audit.list", json!({})).await);
    assert!(
        all.entries
            .iter()
            .all(|e| !matches!(e.action, clawgate_client::methods::AuditAction::Other(_))),
        "every action the gateway wrote is a known AuditAction"
    );
    for wanted in [
        "pairing.requested",
        "pairing.approved",
        "device.renamed",
        "token.rotated",
        "token.revoked",
        "device.removed",
    ] {
        assert!(
            actions.iter().any(|a| a == &wanted),
            "{wanted} missing from {actions:?}"
        );
    }
    // Errors stay structured through the typed layer.
    let err = admin
        .device_pair_approve("no-such-request")
        .await
        .unwrap_err();
    assert!(err.gateway_error().is_some(), "{err:?}");
    gw.stop().await;
}
