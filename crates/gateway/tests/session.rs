//! Authenticated sessions: methods, scope checks, the role gate, invalid
//! frames, events, shutdown.

mod common;

use std::time::Duration;

use clawgate_gateway::config::AuthMode;
use clawgate_gateway::testkit;
use common::*;
use insta::assert_json_snapshot;
use serde_json::json;

#[tokio::test]
async fn health_needs_no_scope_and_status_needs_read() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = operator(&gw, &[]).await;
    let res = c.request("h1", "health", None).await;
    assert_eq!(res["ok"], true);
    assert_eq!(res["payload"]["ok"], true);
    let res = c.request("s1", "status", None).await;
    assert_json_snapshot!("missing_scope_read", res);
    let res = c.request("p1", "device.pair.list", None).await;
    assert_eq!(res["error"]["details"]["missingScope"], "operator.pairing");
    let res = c.request("x1", "no.such.method", None).await;
    assert_eq!(res["error"]["message"], "missing scope: operator.admin");
    gw.stop().await;
}

#[tokio::test]
async fn read_scope_methods() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = operator(&gw, &["operator.read"]).await;
    let status = c.request("s", "status", Some(json!({}))).await;
    assert_eq!(status["ok"], true);
    let p = &status["payload"];
    for key in [
        "runtimeVersion",
        "heartbeat",
        "channelSummary",
        "queuedSystemEvents",
        "tasks",
        "sessions",
        "processMemory",
        "pid",
        "modelRuntime",
        "shutdownBudget",
    ] {
        assert!(p.get(key).is_some(), "status lacks {key}");
    }
    // As the reference: health's result has modelRuntime (its hello-ok
    // snapshot copy does not), and a read-only session's hello-ok snapshot
    // has no auth mode or paths.
    let health = c.request("h", "health", Some(json!({}))).await;
    assert_eq!(
        health["payload"]["modelRuntime"],
        json!({"degraded": false, "pendingAgents": []})
    );
    let mut fresh = gw.client().await;
    let hello = fresh
        .connect_with(cli_params(TOKEN, &["operator.read"]))
        .await;
    let snapshot = &hello["payload"]["snapshot"];
    for key in ["authMode", "configPath", "stateDir"] {
        assert!(
            snapshot.get(key).is_none(),
            "a read-only session sees {key}"
        );
    }
    assert!(snapshot["health"].get("modelRuntime").is_none());
    assert_eq!(
        hello["payload"]["server"]["controlUiBuildSource"],
        "bundled"
    );
    assert_eq!(p["gateway"]["authMode"], "token");
    assert!(
        !status.to_string().contains(TOKEN),
        "status leaks the token"
    );
    let hb = c.request("l", "last-heartbeat", None).await;
    assert_eq!(hb["ok"], true);
    assert_eq!(hb["payload"], serde_json::Value::Null);
    let pres = c.request("p", "system-presence", None).await;
    let list = pres["payload"].as_array().unwrap();
    assert_eq!(list[0]["mode"], "gateway");
    assert_eq!(list[0]["reason"], "self");
    // As the reference names its host: "Linux", and "linux <release>".
    assert!(list[0]["deviceFamily"].is_string(), "{}", list[0]);
    assert!(
        list[0]["platform"]
            .as_str()
            .unwrap()
            .starts_with(std::env::consts::OS)
    );
    // write implies read
    let mut w = operator(&gw, &["operator.write"]).await;
    assert_eq!(w.request("s", "status", None).await["ok"], true);
    gw.stop().await;
}

#[tokio::test]
async fn unknown_method_with_admin() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = operator(&gw, &["operator.admin"]).await;
    let res = c.request("u", "no.such.method", None).await;
    assert_json_snapshot!("unknown_method", res);
    gw.stop().await;
}

#[tokio::test]
async fn invalid_frames_after_auth_keep_the_socket_open() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = operator(&gw, &["operator.read"]).await;
    c.send_text(r#"{"type":"req","id":"h"}"#).await;
    assert_json_snapshot!("post_auth_missing_method", c.response().await.unwrap());
    c.send_text(r#"{"type":"event","event":"x"}"#).await;
    assert_json_snapshot!("post_auth_not_a_request", c.response().await.unwrap());
    c.send_text("not json at all").await;
    // Dropped silently; the socket still works.
    let res = c.request("ok", "health", None).await;
    assert_eq!(res["id"], "ok");
    assert_eq!(res["ok"], true);
    gw.stop().await;
}

#[tokio::test]
async fn role_gate_closes_after_repeated_unauthorized_calls() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = operator(&gw, &["operator.admin"]).await;
    for i in 0..11 {
        let res = c
            .request(&format!("n{i}"), "node.invoke.result", Some(json!({})))
            .await;
        assert_eq!(res["error"]["message"], "unauthorized role: operator");
    }
    assert_eq!(
        c.closed().await,
        Closed {
            code: 1008,
            reason: "repeated unauthorized calls".into()
        }
    );
    // Ten in a row, then anything else, resets the streak.
    let mut c = operator(&gw, &["operator.admin"]).await;
    for round in 0..2 {
        for i in 0..10 {
            c.request(&format!("n{round}{i}"), "node.event", None).await;
        }
        assert_eq!(c.request("h", "health", None).await["ok"], true);
    }
    gw.stop().await;
}

#[tokio::test]
async fn device_less_scopes_are_cleared_except_for_local_cli_and_backend() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let cases = [
        ("cli", "cli", json!(["operator.admin"])),
        ("gateway-client", "backend", json!(["operator.admin"])),
        ("test", "test", json!([])),
        ("openclaw-probe", "probe", json!([])),
        ("gateway-client", "ui", json!([])),
    ];
    for (id, mode, expected) in cases {
        let mut c = gw.client().await;
        let res = c
            .connect_with(params(
                id,
                mode,
                json!({"token": TOKEN}),
                &["operator.admin"],
            ))
            .await;
        assert_eq!(res["payload"]["auth"]["scopes"], expected, "{id}/{mode}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn remote_clients_behind_a_trusted_proxy() {
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let gw = TestGateway::start_with(cfg, fast_options(), dir).await;
    // Remote CLI: scopes cleared, remote wording of the hint.
    let mut c = gw.client_with(&[("x-forwarded-for", "203.0.113.9")]).await;
    let res = c.connect_with(cli_params(TOKEN, &["operator.admin"])).await;
    assert_eq!(res["payload"]["auth"]["scopes"], json!([]));
    let mut c = gw.client_with(&[("x-forwarded-for", "203.0.113.9")]).await;
    let res = c.connect_with(cli_params("wrong", &[])).await;
    assert_eq!(
        res["error"]["message"],
        "unauthorized: gateway token mismatch (set gateway.remote.token to match gateway.auth.token)"
    );
    gw.stop().await;
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_get_403() {
    let gw = TestGateway::start(AuthMode::Token).await;
    for header in [
        "x-forwarded-for",
        "forwarded",
        "x-real-ip",
        "x-forwarded-host",
    ] {
        let err = Client::connect(&gw.url(), &[(header, "203.0.113.9")])
            .await
            .err()
            .unwrap_or_else(|| panic!("{header} was accepted"));
        match err {
            tokio_tungstenite::tungstenite::Error::Http(resp) => {
                assert_eq!(resp.status(), 403, "{header}")
            }
            other => panic!("{header}: {other}"),
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn per_ip_cap_on_unauthenticated_sockets() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut held = Vec::new();
    for _ in 0..32 {
        held.push(gw.client().await);
    }
    match Client::connect(&gw.url(), &[]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("33rd unauthenticated socket accepted"),
    }
    // Authenticating frees a slot.
    let first = held.first_mut().unwrap();
    assert_eq!(first.connect_with(cli_params(TOKEN, &[])).await["ok"], true);
    let mut c = gw.client().await;
    assert_eq!(c.connect_with(cli_params(TOKEN, &[])).await["ok"], true);
    drop(held);
    gw.stop().await;
}

#[tokio::test]
async fn ticks_carry_a_per_connection_seq() {
    let (cfg, dir) = config(AuthMode::Token);
    let mut options = fast_options();
    options.tick_interval = Duration::from_millis(150);
    let gw = TestGateway::start_with(cfg, options, dir).await;
    let mut c = gw.client().await;
    let res = c.connect_with(cli_params(TOKEN, &[])).await;
    assert_eq!(res["payload"]["policy"]["tickIntervalMs"], 150);
    let mut seqs = Vec::new();
    while seqs.len() < 3 {
        let ev = c.next().await.unwrap();
        if ev["event"] == "tick" {
            assert!(ev["payload"]["ts"].as_u64().is_some());
            seqs.push(ev["seq"].as_u64().unwrap());
        }
    }
    assert_eq!(seqs, [1, 2, 3]);
    gw.stop().await;
}

#[tokio::test]
async fn presence_events_go_to_readers_only() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut reader = operator(&gw, &["operator.read"]).await;
    let mut blind = operator(&gw, &[]).await;
    // A backend helper, like a CLI call, does not show up in presence (as
    // in the reference); an app does.
    let mut helper = gw.client().await;
    let res = helper
        .connect_with(params(
            "gateway-client",
            "backend",
            json!({"token": TOKEN}),
            &[],
        ))
        .await;
    assert_eq!(res["ok"], true);
    let mut app = gw.client().await;
    let res = app
        .connect_with(params("test", "test", json!({"token": TOKEN}), &[]))
        .await;
    assert_eq!(res["ok"], true);
    let ev = loop {
        let v = reader.next().await.unwrap();
        if v["event"] == "presence" {
            break v;
        }
    };
    let list = ev["payload"]["presence"].as_array().unwrap();
    assert!(list.iter().any(|e| e["clientId"] == "test"));
    assert!(!list.iter().any(|e| e["clientId"] == "gateway-client"));
    assert_eq!(ev["seq"], 1, "the helper caused no presence event");
    // The scope-less session got no presence event: the first frame it
    // reads is the answer to its own request.
    blind
        .send_json(&json!({"type": "req", "id": "h", "method": "health"}))
        .await;
    let first = blind.next().await.unwrap();
    assert_eq!(first["type"], "res", "unexpected frame: {first}");
    assert_eq!(first["id"], "h");
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_broadcasts_and_closes_1012() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = operator(&gw, &[]).await;
    let mut pending = gw.client().await;
    let stopper = tokio::spawn(gw.stop());
    let ev = c.next().await.unwrap();
    assert_eq!(ev["event"], "shutdown");
    assert_eq!(ev["payload"]["reason"], "gateway stopping");
    assert_eq!(
        c.closed().await,
        Closed {
            code: 1012,
            reason: "service restart".into()
        }
    );
    assert_eq!(pending.closed().await.code, 1012);
    stopper.await.unwrap();
}

#[tokio::test]
async fn http_endpoints() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = operator(&gw, &["operator.read"]).await;
    c.request("s", "status", None).await;
    let mut bad = gw.client().await;
    bad.connect_with(cli_params("wrong-token-value", &[])).await;
    let (status, health) = http_get(gw.addr, "/healthz").await;
    assert_eq!(status, 200, "{health}");
    assert!(health.contains(r#""status":"live""#));
    assert_eq!(http_get(gw.addr, "/readyz").await.0, 200);
    let (_, metrics) = http_get(gw.addr, "/metrics").await;
    assert!(metrics.contains("clawgate_connections_open"));
    assert!(metrics.contains(r#"clawgate_handshakes_total{outcome="ok"}"#));
    assert!(
        metrics.contains(r#"clawgate_auth_failures_total{code="AUTH_TOKEN_MISMATCH"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"clawgate_requests_total{method="status",result="ok"} 1"#));
    assert!(!metrics.contains(TOKEN) && !metrics.contains("wrong-token-value"));
    let (status, page) = http_get(gw.addr, "/").await;
    assert!(status == 200 && page.contains("clawgate"));
    gw.stop().await;
}

#[tokio::test]
async fn peers_that_stop_answering_pings_are_dropped() {
    let (cfg, dir) = config(AuthMode::Token);
    let mut options = fast_options();
    options.tick_interval = Duration::from_millis(150);
    let gw = TestGateway::start_with(cfg, options, dir).await;
    let mut alive = operator(&gw, &[]).await;
    let silent = operator(&gw, &[]).await;
    assert_eq!(testkit::sessions(&gw.state), 2);
    // `alive` keeps reading (and so answers pings); `silent` never reads.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while testkit::sessions(&gw.state) > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "silent peer was never dropped"
        );
        let _ = tokio::time::timeout(Duration::from_millis(50), alive.next()).await;
    }
    // The one that answers is still served.
    assert_eq!(alive.request("h", "health", None).await["ok"], true);
    drop(silent);
    gw.stop().await;
}

#[tokio::test]
async fn a_request_pipelined_right_behind_connect_is_answered() {
    let gw = TestGateway::start(AuthMode::Token).await;
    for _ in 0..20 {
        let mut c = gw.client().await;
        // Both frames leave before hello-ok comes back: the server may read
        // them in one go, and must not lose the second.
        c.send_json(&json!({"type": "req", "id": "c", "method": "connect",
            "params": cli_params(TOKEN, &["operator.read"])}))
            .await;
        c.send_json(&json!({"type": "req", "id": "h", "method": "health"}))
            .await;
        let hello = c.response().await.unwrap();
        assert_eq!(hello["id"], "c");
        assert_eq!(hello["ok"], true, "{hello}");
        let health = c.response().await.unwrap();
        assert_eq!(health["id"], "h");
        assert_eq!(health["ok"], true, "{health}");
    }
    gw.stop().await;
}

/// Requests that arrive together are answered in batches with one write
/// each; none is lost at a batch's boundary, and the replies keep the
/// requests' order.
#[tokio::test]
async fn many_pipelined_requests_are_all_answered_in_order() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = operator(&gw, &["operator.read"]).await;
    for i in 0..300 {
        let method = if i % 3 == 0 { "status" } else { "health" };
        c.send_json(&json!({"type": "req", "id": format!("r{i}"), "method": method}))
            .await;
    }
    for i in 0..300 {
        let res = c.response().await.unwrap();
        assert_eq!(res["id"], format!("r{i}"));
        assert_eq!(res["ok"], true, "{res}");
    }
    gw.stop().await;
}

/// The reference's key set in `health` (and so in the hello-ok snapshot):
/// where clawgate has nothing (agents, sessions, event-loop samples) the
/// value is null or empty, never invented.
#[tokio::test]
async fn health_has_the_reference_keys_with_honest_values() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = operator(&gw, &["operator.read"]).await;
    let health = c.request("h", "health", None).await;
    assert_json_snapshot!("health_result", mask(&health["payload"]));
    gw.stop().await;
}

/// A presence entry carries what the client said about itself and the
/// scopes of its session, as in the reference.
#[tokio::test]
async fn presence_entries_carry_device_family_model_and_scopes() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut reader = operator(&gw, &["operator.read"]).await;
    let mut app = gw.client().await;
    let mut p = params("test", "test", json!({"token": TOKEN}), &[]);
    p["client"]["deviceFamily"] = json!("Laptop");
    p["client"]["modelIdentifier"] = json!("XPS13,9");
    assert_eq!(app.connect_with(p).await["ok"], true);
    let pres = reader.request("p", "system-presence", None).await;
    let entry = pres["payload"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["clientId"] == "test")
        .cloned()
        .unwrap();
    assert_eq!(entry["deviceFamily"], "Laptop");
    assert_eq!(entry["modelIdentifier"], "XPS13,9");
    assert_eq!(
        entry["scopes"],
        json!([]),
        "a device-less test client keeps no scopes"
    );
    assert_eq!(entry["roles"], json!(["operator"]));
    gw.stop().await;
}
