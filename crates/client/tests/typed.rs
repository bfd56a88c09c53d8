//! The typed requests against a real gateway: pairing, rename, rotate,
//! revoke, remove and the audit log, decoded into their result types.

mod common;

use clawgate_client::methods::AuditQuery;
use clawgate_client::{Client, ConnectOptions, DeviceIdentity, MemoryTokenCache};
use clawgate_gateway::config::AuthMode;
use common::*;
use std::sync::Arc;

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
    assert!(!presence.is_empty(), "the gateway lists itself");

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

    let approved = admin
        .device_pair_approve(&request.request_id)
        .await
        .unwrap();
    assert_eq!(approved.request_id, request.request_id);
    assert_eq!(approved.device.device_id, identity.device_id());
    let device = Client::connect(opts.clone()).await.unwrap();

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

    // Cross-device rotation withholds the token; the device is disconnected.
    let rotated = admin
        .device_token_rotate(identity.device_id(), "operator", None)
        .await
        .unwrap();
    assert_eq!(
        rotated.token_delivery.as_deref(),
        Some("withheld-cross-device")
    );
    assert!(rotated.token.is_none());
    assert_eq!(rotated.scopes, vec!["operator.read".to_string()]);
    drop(device);

    let revoked = admin
        .device_token_revoke(identity.device_id(), "operator")
        .await
        .unwrap();
    assert!(revoked.revoked_at_ms.is_some());
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
