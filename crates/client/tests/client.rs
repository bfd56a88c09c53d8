//! The client library against a real gateway on 127.0.0.1 (and, for the
//! tick watchdog, a fake one that goes silent): token caching, the one
//! bounded device-token retry, what stops reconnecting, reconnects, pinned
//! TLS and pairing (clients.md 1.2-1.6).

mod common;

use std::sync::Arc;
use std::time::Duration;

use clawgate_client::{
    Client, ClientError, ClientEvent, ConnectOptions, DeviceIdentity, FileTokenCache,
    MemoryTokenCache, TokenCache, TokenKey,
};
use clawgate_gateway::config::AuthMode;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;

fn key_for(gw_origin: &str, dir: &std::path::Path) -> TokenKey {
    let id = DeviceIdentity::load(dir).unwrap().expect("identity saved");
    TokenKey {
        gateway: gw_origin.to_string(),
        device_id: id.device_id().to_string(),
        role: "operator".into(),
    }
}

fn details(err: &ClientError) -> Value {
    let shape = err
        .gateway_error()
        .unwrap_or_else(|| panic!("not a gateway error: {err:?}"));
    shape.details.as_deref().cloned().unwrap_or(Value::Null)
}

fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A client with the shared token and the identity and file cache in `dir`.
fn opts_in(url: &str, token: Option<&str>, dir: &std::path::Path) -> ConnectOptions {
    let mut opts = ConnectOptions::new(url).state_dir(dir).unwrap();
    if let Some(t) = token {
        opts = opts.token(t);
    }
    opts
}

/// Connects with `TOKEN` once so that `dir` holds a paired identity and a
/// cached device token for `gw`; returns that token.
async fn pair_and_cache(gw: &TestGateway, dir: &std::path::Path) -> String {
    let client = Client::connect(opts_in(&gw.url(), Some(TOKEN), dir))
        .await
        .expect("first connect");
    let token = client.hello()["auth"]["deviceToken"]
        .as_str()
        .expect("a device token in hello-ok")
        .to_string();
    client.close().await;
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_connect_caches_the_device_token_and_a_tokenless_client_uses_it() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("client");

    let client = Client::connect(opts_in(&gw.url(), Some(TOKEN), &dir))
        .await
        .expect("connect with the shared token");
    let hello = client.hello();
    assert_eq!(hello["type"], "hello-ok", "{hello}");
    assert_eq!(hello["auth"]["method"], "token", "{hello}");
    assert_eq!(hello["auth"]["role"], "operator");
    let issued = hello["auth"]["deviceToken"]
        .as_str()
        .expect("device token issued to an identity")
        .to_string();

    // Cached under (origin, deviceId, role) with the scopes hello-ok granted.
    let key = key_for(&gw.origin(), &dir);
    let cache = FileTokenCache::new(&dir);
    let cached = cache.load(&key).unwrap().expect("token cached");
    assert_eq!(cached.token.expose(), issued);
    assert_eq!(cached.scopes, sorted(&hello["auth"]["scopes"]));
    assert!(cached.scopes.contains(&"operator.admin".to_string()));
    let listed = cache.list().unwrap();
    assert_eq!(listed.len(), 1, "exactly one cache row");
    assert_eq!(listed[0].0, key);
    client
        .request("health", json!({}))
        .await
        .expect("health works");
    client.close().await;

    // No shared secret at all: the cached device token gets in.
    let before = gw.idle_handshakes().await;
    let second = Client::connect(opts_in(&gw.url(), None, &dir))
        .await
        .expect("connect with the cached device token");
    let hello = second.hello();
    assert_eq!(hello["auth"]["method"], "device-token", "{hello}");
    assert_eq!(sorted(&hello["auth"]["scopes"]), cached.scopes);
    assert_eq!(
        gw.attempts_since(&before, 1).await.pairs(),
        vec![("ok", 1)],
        "one attempt, accepted"
    );
    second
        .request("health", json!({}))
        .await
        .expect("health works on the device token");
    // The same token came back, so the cache row is unchanged.
    let again = cache.load(&key).unwrap().unwrap();
    assert_eq!(again.token.expose(), issued);
    second.close().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_drift_is_recovered_by_one_delayed_retry_with_the_cached_token() {
    // No loopback failure delay on the gateway side, so the gap between the
    // two attempts is the client's own.
    let (mut cfg, dir) = config(AuthMode::Token);
    without_failure_delays(&mut cfg);
    let gw = TestGateway::start_with(cfg, options(), dir).await;
    let fwd = Forwarder::start(gw.addr).await;
    let tmp = tempfile::tempdir().unwrap();
    let cdir = tmp.path().join("client");

    let client = Client::connect(opts_in(&fwd.url(), Some(TOKEN), &cdir))
        .await
        .unwrap();
    let cached = client.hello()["auth"]["deviceToken"]
        .as_str()
        .unwrap()
        .to_string();
    client.close().await;

    // The gateway's token changes; this client still has the old one.
    gw.set_token(TOKEN_B);
    let before = gw.idle_handshakes().await;
    let arrivals_before = fwd.arrivals().len();
    let client = timeout(
        WAIT,
        Client::connect(opts_in(&fwd.url(), Some(TOKEN), &cdir)),
    )
    .await
    .expect("connect in time")
    .expect("the retry with the cached device token succeeds");
    assert_eq!(client.hello()["auth"]["method"], "device-token");

    let mut events = client.events().expect("events");
    let first = next_event(&mut events).await;
    let ClientEvent::Recovered { error, auth_method } = first else {
        panic!("expected Recovered first, got {first:?}");
    };
    assert_eq!(error.detail_code(), Some("AUTH_TOKEN_MISMATCH"));
    assert_eq!(auth_method, "device-token");
    let second = next_event(&mut events).await;
    assert!(
        matches!(&second, ClientEvent::Connected { auth_method, .. } if auth_method == "device-token"),
        "{second:?}"
    );
    assert!(client.stopped().is_none());

    // Exactly two attempts: the mismatch, then the retry.
    assert_eq!(
        gw.attempts_since(&before, 2).await.pairs(),
        vec![("AUTH_TOKEN_MISMATCH", 1), ("ok", 1)]
    );
    let arrivals = fwd.arrivals()[arrivals_before..].to_vec();
    assert_eq!(arrivals.len(), 2, "two TCP connections");
    let gap = arrivals[1] - arrivals[0];
    assert!(
        gap >= Duration::from_millis(200),
        "the retry came {gap:?} after the first attempt"
    );
    assert!(gap < Duration::from_secs(2), "retry took {gap:?}");

    client
        .request("health", json!({}))
        .await
        .expect("health works");
    // Still the same device token in the cache.
    let key = key_for(&format!("ws://{}", fwd.addr), &cdir);
    let row = FileTokenCache::new(&cdir).load(&key).unwrap().unwrap();
    assert_eq!(row.token.expose(), cached);
    // Nothing else happened on the connection.
    assert!(
        timeout(Duration::from_millis(300), next_event(&mut events))
            .await
            .is_err(),
        "no further connection events"
    );
    client.close().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_device_token_fails_after_two_attempts_and_is_deleted() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let tmp = tempfile::tempdir().unwrap();
    let cdir = tmp.path().join("client");
    let stale = pair_and_cache(&gw, &cdir).await;
    let key = key_for(&gw.origin(), &cdir);

    // An admin rotates this device's token; then the shared token drifts.
    let admin = admin(&gw.url(), TOKEN).await;
    let rotated = admin
        .request(
            "device.token.rotate",
            json!({"deviceId": key.device_id, "role": "operator"}),
        )
        .await
        .expect("rotate");
    assert_eq!(rotated["deviceId"], key.device_id.as_str(), "{rotated}");
    admin.close().await;
    gw.set_token(TOKEN_B);
    let cache = FileTokenCache::new(&cdir);
    assert_eq!(cache.load(&key).unwrap().unwrap().token.expose(), stale);

    let before = gw.idle_handshakes().await;
    let err = timeout(
        WAIT,
        Client::connect(opts_in(&gw.url(), Some(TOKEN), &cdir)),
    )
    .await
    .expect("fails in time")
    .err()
    .expect("a stale device token cannot recover the drift");
    assert_eq!(
        err.detail_code(),
        Some("AUTH_DEVICE_TOKEN_MISMATCH"),
        "{err}"
    );
    assert_eq!(details(&err)["canRetryWithDeviceToken"], false);
    assert!(
        err.to_string().contains("device token mismatch"),
        "message: {err}"
    );
    assert_eq!(
        gw.attempts_since(&before, 2).await.pairs(),
        vec![
            ("AUTH_DEVICE_TOKEN_MISMATCH", 1),
            ("AUTH_TOKEN_MISMATCH", 1)
        ]
    );
    assert!(
        cache.load(&key).unwrap().is_none(),
        "the stale token is deleted"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cached_token_a_mismatch_fails_after_one_attempt() {
    let gw = TestGateway::start(AuthMode::Token).await;

    // A device the gateway has paired, but whose token this client does not
    // hold: the gateway's hint alone does not make the client retry.
    let identity = DeviceIdentity::generate();
    let mut opts = ConnectOptions::new(gw.url()).token(TOKEN);
    opts.identity = Some(identity.clone());
    opts.token_cache = Some(Arc::new(MemoryTokenCache::default()));
    Client::connect(opts).await.expect("pairs").close().await;

    let empty = Arc::new(MemoryTokenCache::default());
    let mut opts = ConnectOptions::new(gw.url()).token("not-the-token");
    opts.identity = Some(identity.clone());
    opts.token_cache = Some(empty.clone());
    let before = gw.idle_handshakes().await;
    let err = Client::connect(opts).await.err().expect("refused");
    let shape = err.gateway_error().expect("the gateway's error").clone();
    assert_eq!(shape.code, "INVALID_REQUEST", "{shape:?}");
    assert_eq!(err.detail_code(), Some("AUTH_TOKEN_MISMATCH"));
    let d = details(&err);
    assert_eq!(d["canRetryWithDeviceToken"], true, "{d}");
    assert_eq!(d["recommendedNextStep"], "retry_with_device_token", "{d}");
    assert!(
        shape.message.contains("gateway token mismatch"),
        "{}",
        shape.message
    );
    assert_eq!(
        gw.attempts_since(&before, 1).await.pairs(),
        vec![("AUTH_TOKEN_MISMATCH", 1)],
        "no retry without a cached token"
    );
    let key = TokenKey {
        gateway: gw.origin(),
        device_id: identity.device_id().to_string(),
        role: "operator".into(),
    };
    assert!(empty.load(&key).unwrap().is_none());

    // Device-less with a wrong token: one attempt, the structured error.
    let before = gw.idle_handshakes().await;
    let err = Client::connect(ConnectOptions::new(gw.url()).token("still-wrong"))
        .await
        .err()
        .expect("refused");
    assert_eq!(err.detail_code(), Some("AUTH_TOKEN_MISMATCH"));
    assert_eq!(details(&err)["canRetryWithDeviceToken"], false);
    assert_eq!(
        gw.attempts_since(&before, 1).await.pairs(),
        vec![("AUTH_TOKEN_MISMATCH", 1)]
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_never_retries_and_keeps_the_cached_token() {
    let gw = TestGateway::start(AuthMode::Password).await;
    let tmp = tempfile::tempdir().unwrap();
    let cdir = tmp.path().join("client");
    let good = ConnectOptions::new(gw.url())
        .password(PASSWORD)
        .state_dir(&cdir)
        .unwrap();
    let client = Client::connect(good).await.expect("password connect");
    assert_eq!(client.hello()["auth"]["method"], "password");
    let issued = client.hello()["auth"]["deviceToken"]
        .as_str()
        .unwrap()
        .to_string();
    client.close().await;
    let key = key_for(&gw.origin(), &cdir);
    let cache = FileTokenCache::new(&cdir);
    assert_eq!(cache.load(&key).unwrap().unwrap().token.expose(), issued);

    let before = gw.idle_handshakes().await;
    let bad = ConnectOptions::new(gw.url())
        .password("wrong password")
        .state_dir(&cdir)
        .unwrap();
    let err = Client::connect(bad).await.err().expect("refused");
    assert_eq!(err.detail_code(), Some("AUTH_PASSWORD_MISMATCH"), "{err}");
    assert_eq!(details(&err)["canRetryWithDeviceToken"], false);
    assert_eq!(
        gw.attempts_since(&before, 1).await.pairs(),
        vec![("AUTH_PASSWORD_MISMATCH", 1)]
    );
    // A password failure says nothing about the device token.
    assert_eq!(cache.load(&key).unwrap().unwrap().token.expose(), issued);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_lived_client_reconnects_recovers_and_pauses_on_a_rotated_token() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let tmp = tempfile::tempdir().unwrap();
    let cdir = tmp.path().join("client");
    let mut opts = opts_in(&gw.url(), Some(TOKEN), &cdir);
    opts.initial_backoff = Duration::from_millis(50);
    opts.max_backoff = Duration::from_millis(200);
    let client = Client::connect(opts).await.expect("connect");
    let mut events = client.events().expect("events");
    let ev = next_event(&mut events).await;
    assert!(
        matches!(&ev, ClientEvent::Connected { auth_method, .. } if auth_method == "token"),
        "{ev:?}"
    );
    let key = key_for(&gw.origin(), &cdir);

    // The shared token changes: the gateway closes the session (4001), the
    // client reconnects with the old token, and the one retry with the
    // cached device token gets it back in.
    assert_eq!(gw.set_token(TOKEN_B), 1, "the session used the old token");
    let mut seen = Vec::new();
    loop {
        let ev = next_event(&mut events).await;
        seen.push(kind(&ev));
        match &ev {
            ClientEvent::Disconnected { code, reason } => {
                assert_eq!(*code, 4001, "{reason}");
            }
            ClientEvent::Recovered { error, .. } => {
                assert_eq!(error.detail_code(), Some("AUTH_TOKEN_MISMATCH"));
            }
            ClientEvent::Connected { auth_method, .. } => {
                assert_eq!(auth_method, "device-token");
                break;
            }
            ClientEvent::Paused(e) => panic!("paused: {e:?}"),
            _ => {}
        }
    }
    assert_eq!(
        seen,
        ["Disconnected", "Reconnecting", "Recovered", "Connected"]
    );
    let health = client.request("health", json!({})).await.expect("health");
    assert!(health.is_object(), "{health}");
    assert!(client.stopped().is_none());

    // An admin rotates the device token: the session is closed, the retry
    // carries the stale token, and the client stops for good.
    let admin = admin(&gw.url(), TOKEN_B).await;
    // Once a request was served, the admin's own handshake is counted; the
    // client reconnects as soon as the rotation closes its session.
    admin.request("health", json!({})).await.expect("health");
    let before_pause = gw.handshakes();
    admin
        .request(
            "device.token.rotate",
            json!({"deviceId": key.device_id, "role": "operator"}),
        )
        .await
        .expect("rotate");
    admin.close().await;
    let mut seen = Vec::new();
    let paused = loop {
        let ev = next_event(&mut events).await;
        seen.push(kind(&ev));
        match ev {
            ClientEvent::Paused(e) => break e,
            ClientEvent::Connected { .. } => panic!("reconnected with a rotated token"),
            ClientEvent::Disconnected { code, .. } => assert_eq!(code, 4001),
            _ => {}
        }
    };
    assert_eq!(seen, ["Disconnected", "Reconnecting", "Paused"]);
    assert_eq!(paused.detail_code(), Some("AUTH_DEVICE_TOKEN_MISMATCH"));
    let stopped = client.stopped().expect("stopped");
    assert_eq!(stopped.detail_code(), Some("AUTH_DEVICE_TOKEN_MISMATCH"));
    let err = client
        .request("health", json!({}))
        .await
        .expect_err("a stopped client refuses requests");
    assert_eq!(err.detail_code(), Some("AUTH_DEVICE_TOKEN_MISMATCH"));
    assert!(FileTokenCache::new(&cdir).load(&key).unwrap().is_none());

    // The mismatch and the retry, then silence.
    let after_pause = gw.attempts_since(&before_pause, 2).await;
    assert_eq!(
        after_pause.pairs(),
        vec![
            ("AUTH_DEVICE_TOKEN_MISMATCH", 1),
            ("AUTH_TOKEN_MISMATCH", 1)
        ]
    );
    let quiet_from = gw.handshakes();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(gw.handshakes(), quiet_from, "no connects after the pause");
    // The event stream ends with the pause.
    assert!(
        timeout(Duration::from_secs(1), events.recv())
            .await
            .expect("stream ends")
            .is_none()
    );
    gw.stop().await;
}

/// What the fake gateway saw on one connection.
#[derive(Debug)]
struct FakeConn {
    hello_sent: Instant,
    close: Option<(u16, String, Instant)>,
    /// Ids of the requests after `connect`.
    request_ids: Vec<String>,
}

/// A gateway that answers `connect` with hello-ok (tickIntervalMs 1000)
/// and then never sends another frame, while still reading.
async fn silent_gateway() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<FakeConn>,
) {
    fake_gateway(None).await
}

/// A gateway that completes the handshake (tick interval 1 s), never sends
/// ticks, and answers each request after `answer_after` (never when None).
async fn fake_gateway(
    answer_after: Option<Duration>,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<FakeConn>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64;
                let challenge = json!({"type": "event", "event": "connect.challenge",
                    "payload": {"nonce": "n1", "ts": now_ms}});
                ws.send(Message::Text(challenge.to_string().into()))
                    .await
                    .unwrap();
                let id = loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) => {
                            let req: Value = serde_json::from_str(t.as_str()).unwrap();
                            assert_eq!(req["method"], "connect");
                            break req["id"].clone();
                        }
                        Some(Ok(_)) => continue,
                        _ => return,
                    }
                };
                let hello = json!({"type": "res", "id": id, "ok": true, "payload": {
                    "type": "hello-ok", "protocol": 4,
                    "auth": {"method": "token", "role": "operator", "scopes": []},
                    "policy": {"tickIntervalMs": 1000}}});
                ws.send(Message::Text(hello.to_string().into()))
                    .await
                    .unwrap();
                let hello_sent = Instant::now();
                let mut close = None;
                let mut request_ids = Vec::new();
                while let Some(msg) = ws.next().await {
                    match msg {
                        Ok(Message::Text(t)) if answer_after.is_some() => {
                            let req: Value = serde_json::from_str(t.as_str()).unwrap();
                            request_ids.push(req["id"].as_str().unwrap_or("").to_string());
                            tokio::time::sleep(answer_after.unwrap()).await;
                            let res = json!({"type": "res", "id": req["id"], "ok": true,
                                "payload": {"ok": true}});
                            if ws
                                .send(Message::Text(res.to_string().into()))
                                .await
                                .is_err()
                            {
                                break;
                            }
                        }
                        Ok(Message::Close(frame)) => {
                            let (code, reason) = frame
                                .map(|f| (u16::from(f.code), f.reason.to_string()))
                                .unwrap_or((1005, String::new()));
                            close = Some((code, reason, Instant::now()));
                            break;
                        }
                        Ok(_) => continue,
                        Err(_) => break,
                    }
                }
                let _ = tx.send(FakeConn {
                    hello_sent,
                    close,
                    request_ids,
                });
            });
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_gateway_is_closed_with_4000_tick_timeout_and_reopened() {
    let (addr, mut conns) = silent_gateway().await;
    let mut opts = ConnectOptions::new(format!("ws://{addr}")).token("anything");
    opts.initial_backoff = Duration::from_millis(50);
    let client = Client::connect(opts).await.expect("hello-ok");
    let mut events = client.events().expect("events");
    assert_eq!(kind(&next_event(&mut events).await), "Connected");

    // The first connection ends when the client gives up on it.
    let first = timeout(Duration::from_secs(6), conns.recv())
        .await
        .expect("the client closes the silent connection")
        .unwrap();
    let (code, reason, at) = first.close.expect("a close frame from the client");
    assert_eq!((code, reason.as_str()), (4000, "tick timeout"));
    let after = at - first.hello_sent;
    assert!(
        after >= Duration::from_millis(1900) && after <= Duration::from_millis(4000),
        "closed {after:?} after hello-ok (watchdog: 2 x 1000 ms)"
    );

    let ev = next_event(&mut events).await;
    assert!(
        matches!(&ev, ClientEvent::Disconnected { code: 4000, reason } if reason == "tick timeout"),
        "{ev:?}"
    );
    assert_eq!(kind(&next_event(&mut events).await), "Reconnecting");
    // It connects a second time.
    assert_eq!(kind(&next_event(&mut events).await), "Connected");
    client.close().await;
    let second = timeout(Duration::from_secs(3), conns.recv())
        .await
        .expect("second connection ends")
        .unwrap();
    assert_eq!(
        second.close.map(|(c, r, _)| (c, r)),
        Some((1000, "client closed".to_string()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_is_not_mistaken_for_a_dead_gateway() {
    // The answer comes after 2.6 s, past the 2 x 1 s watchdog: a request
    // still waiting has its own deadline, so the socket stays up.
    let (addr, mut conns) = fake_gateway(Some(Duration::from_millis(2600))).await;
    let mut opts = ConnectOptions::new(format!("ws://{addr}")).token("anything");
    opts.reconnect = false;
    let client = Client::connect(opts).await.expect("hello-ok");
    let answer = client
        .request_with_timeout("health", json!({}), Duration::from_secs(6))
        .await
        .expect("the slow answer arrives on the same connection");
    assert_eq!(answer["ok"], true);
    client.close().await;
    let conn = timeout(Duration::from_secs(3), conns.recv())
        .await
        .expect("connection ends")
        .unwrap();
    assert_eq!(
        conn.close.map(|(c, r, _)| (c, r)),
        Some((1000, "client closed".to_string())),
        "closed by the client, not by the watchdog"
    );
    // Request ids are per connection: `1:` was the connect.
    assert_eq!(conn.request_ids.len(), 1);
    assert!(
        conn.request_ids[0].starts_with("2:"),
        "{:?}",
        conn.request_ids
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_certificate_is_accepted_and_anything_else_refused() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let front = TlsFront::start(gw.addr).await;
    let pin = clawgate_client::tls::fingerprint_of(&front.cert_der);

    let mut opts = ConnectOptions::new(front.url()).token(TOKEN);
    opts.tls_fingerprint = Some(pin.clone().into());
    let client = Client::connect(opts).await.expect("pinned wss connects");
    client
        .request("health", json!({}))
        .await
        .expect("health over TLS");
    client.close().await;

    // Another certificate's fingerprint.
    let mut opts = ConnectOptions::new(front.url()).token(TOKEN);
    opts.tls_fingerprint = Some(clawgate_client::tls::fingerprint_of(b"another cert").into());
    opts.reconnect = false;
    let err = Client::connect(opts)
        .await
        .err()
        .expect("wrong pin refused");
    match &err {
        ClientError::TlsPinMismatch(m) => {
            assert_eq!(m.presented.certificate, pin);
            assert!(m.to_string().contains(&pin.to_colon_hex()), "{m}");
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }

    // No pin: the web PKI does not know a self-signed certificate.
    let err = Client::connect(ConnectOptions::new(front.url()).token(TOKEN))
        .await
        .err()
        .expect("unpinned self-signed refused");
    match &err {
        ClientError::Tls(msg) => assert!(
            msg.to_ascii_lowercase().contains("issuer"),
            "expected an unknown-issuer error: {msg}"
        ),
        other => panic!("expected a TLS error, got {other:?}"),
    }

    // A pin with plain ws:// is a mistake the client refuses up front.
    let mut opts = ConnectOptions::new(gw.url()).token(TOKEN);
    opts.tls_fingerprint = Some(pin.into());
    let before = gw.idle_handshakes().await;
    let err = Client::connect(opts).await.err().expect("refused");
    assert!(matches!(err, ClientError::InvalidOptions(_)), "{err:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(gw.handshakes(), before, "nothing was sent");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_required_fails_once_then_connects_after_approval() {
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.auto_approve_local = false;
    let gw = TestGateway::start_with(cfg, options(), dir).await;
    let tmp = tempfile::tempdir().unwrap();
    let cdir = tmp.path().join("client");

    let before = gw.idle_handshakes().await;
    let err = Client::connect(opts_in(&gw.url(), Some(TOKEN), &cdir))
        .await
        .err()
        .expect("a new device needs approval");
    assert_eq!(err.gateway_error().unwrap().code, "NOT_PAIRED", "{err:?}");
    assert_eq!(err.detail_code(), Some("PAIRING_REQUIRED"));
    let d = details(&err);
    let request_id = d["requestId"]
        .as_str()
        .expect("a requestId in details")
        .to_string();
    assert!(!request_id.is_empty());
    let key = key_for(&gw.origin(), &cdir);
    assert_eq!(d["deviceId"], key.device_id.as_str(), "{d}");
    assert_eq!(
        gw.attempts_since(&before, 1).await.pairs(),
        vec![("PAIRING_REQUIRED", 1)],
        "one attempt only"
    );
    let cache = FileTokenCache::new(&cdir);
    assert!(cache.load(&key).unwrap().is_none());

    let admin = admin(&gw.url(), TOKEN).await;
    admin
        .request("device.pair.approve", json!({"requestId": request_id}))
        .await
        .expect("approve");
    admin.close().await;

    let client = Client::connect(opts_in(&gw.url(), Some(TOKEN), &cdir))
        .await
        .expect("approved device connects");
    let hello = client.hello();
    assert_eq!(hello["auth"]["method"], "token");
    let issued = hello["auth"]["deviceToken"].as_str().expect("device token");
    let row = cache
        .load(&key)
        .unwrap()
        .expect("token cached after approval");
    assert_eq!(row.token.expose(), issued);
    client.close().await;
    gw.stop().await;
}
