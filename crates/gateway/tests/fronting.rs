//! Fronting mode against a real upstream gateway on loopback. Here the
//! upstream is a second, standalone clawgate (it speaks the same protocol,
//! pairs clawgate's identity the same way and lets the test count its
//! sessions); `scripts/fronting.sh` runs the same story against a real
//! OpenClaw 2026.9.6 with the real `openclaw` CLI.

mod common;

use std::time::Duration;

use clawgate_gateway::config::{AuthConfig, AuthMode, GatewayConfig, UpstreamConfig};
use clawgate_gateway::{testkit, upstream};
use clawgate_protocol::Secret;
use common::*;
use serde_json::{Value, json};

const UPSTREAM_TOKEN: &str = "upstream-token-9d3e71aa";

/// A standalone upstream (its own shared token) and a fronting clawgate
/// whose identity was paired with it by the client library, as `clawgate
/// upstream pair` does.
struct Pair {
    upstream: TestGateway,
    front: TestGateway,
}

async fn upstream_gateway() -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = GatewayConfig::loopback(
        dir.path(),
        AuthConfig::new(AuthMode::Token, Some(Secret::new(UPSTREAM_TOKEN)), None),
    );
    cfg.port = 0;
    TestGateway::start_with(cfg, fast_options(), dir).await
}

async fn pair_identity(state_dir: &std::path::Path, upstream_url: &str) {
    let mut opts = clawgate_client::ConnectOptions::new(upstream_url)
        .token(UPSTREAM_TOKEN)
        .scopes(upstream::SCOPES)
        .state_dir(upstream::identity_dir(state_dir))
        .unwrap();
    opts.client = upstream::pairing_client_info();
    opts.reconnect = false;
    let client = clawgate_client::Client::connect(opts).await.expect("pair");
    client.close().await;
}

async fn front_of(upstream: &TestGateway, pair: bool, tick: Duration) -> TestGateway {
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.upstream = Some(UpstreamConfig {
        url: upstream.url(),
        tls_fingerprint: None,
    });
    if pair {
        pair_identity(dir.path(), &upstream.url()).await;
    }
    let options = clawgate_gateway::RuntimeOptions {
        tick_interval: tick,
        ..fast_options()
    };
    TestGateway::start_with(cfg, options, dir).await
}

async fn start() -> Pair {
    let upstream = upstream_gateway().await;
    let front = front_of(&upstream, true, Duration::from_secs(30)).await;
    // The pairing connection is gone before anything is counted.
    wait_for("the pairing session to end", || {
        testkit::sessions(&upstream.state) == 0
    })
    .await;
    Pair { upstream, front }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn method_names(hello: &Value) -> Vec<String> {
    hello["payload"]["features"]["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_relayed_client_sees_the_upstream_with_clawgates_auth() {
    let p = start().await;
    let before = testkit::sessions(&p.upstream.state);
    let mut c = p.front.client().await;
    let hello = c.connect_with(cli_params(TOKEN, &["operator.read"])).await;
    assert_eq!(hello["ok"], true, "{hello}");
    let payload = &hello["payload"];
    // clawgate's auth, not the upstream's (no upstream token leaks).
    assert_eq!(payload["auth"]["method"], "token");
    assert_eq!(payload["auth"]["scopes"], json!(["operator.read"]));
    assert!(payload["auth"].get("deviceToken").is_none(), "{payload}");
    assert!(method_names(&hello).contains(&"audit.list".to_string()));
    assert!(!hello.to_string().contains(UPSTREAM_TOKEN));
    assert!(
        !hello
            .to_string()
            .contains(&p.upstream.addr.port().to_string()),
        "the upstream's port leaked: {hello}"
    );
    // One upstream socket for this client.
    wait_for("the upstream session", || {
        testkit::sessions(&p.upstream.state) == before + 1
    })
    .await;
    // Relayed: the upstream answers health.
    let res = c.request("h1", "health", None).await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["id"], "h1");
    // The upstream's presence lists the relayed client's upstream socket.
    let res = c.request("p1", "system-presence", None).await;
    assert_eq!(res["ok"], true, "{res}");
    drop(c);
    wait_for("the upstream socket to close", || {
        testkit::sessions(&p.upstream.state) == before
    })
    .await;
}

#[tokio::test]
async fn the_upstream_gets_exactly_the_clients_scopes() {
    let p = start().await;
    let mut c = p.front.client().await;
    let hello = c.connect_with(cli_params(TOKEN, &[])).await;
    assert_eq!(hello["ok"], true, "{hello}");
    // `status` needs operator.read upstream: refused there, not by clawgate.
    let res = c.request("s1", "status", None).await;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(res["error"]["details"]["code"], "MISSING_SCOPE", "{res}");
    let mut admin = operator(&p.front, &["operator.admin"]).await;
    let res = admin.request("s2", "status", None).await;
    assert_eq!(res["ok"], true, "{res}");
}

#[tokio::test]
async fn registry_methods_are_answered_by_clawgate_and_the_upstream_registry_is_untouched() {
    let p = start().await;
    let upstream_devices = testkit::store(&p.upstream.state).devices();
    assert_eq!(
        upstream_devices.len(),
        1,
        "clawgate's own identity is paired upstream"
    );
    let proxy_id = upstream_devices[0].device_id.clone();
    let tokens_before = testkit::store(&p.upstream.state).role_tokens(&proxy_id);
    let mut admin = operator(&p.front, &["operator.admin"]).await;
    let list = admin.request("l1", "device.pair.list", None).await;
    assert_eq!(list["ok"], true, "{list}");
    assert!(
        !list.to_string().contains(&proxy_id),
        "clawgate's registry, not the upstream's: {list}"
    );
    // Aimed at the proxy identity: answered by clawgate (unknown there).
    let res = admin
        .request(
            "r1",
            "device.pair.remove",
            Some(json!({"deviceId": proxy_id})),
        )
        .await;
    assert_eq!(res["ok"], false, "{res}");
    let res = admin
        .request(
            "r2",
            "device.token.rotate",
            Some(json!({"deviceId": proxy_id, "role": "operator"})),
        )
        .await;
    assert_eq!(res["ok"], false, "{res}");
    for (method, params) in [
        ("config.set", json!({"raw": "{}"})),
        ("config.apply", json!({"raw": "{}"})),
        (
            "config.patch",
            json!({"raw": "{gateway: {auth: {mode: 'none'}}}"}),
        ),
        ("secrets.resolve", json!({})),
        ("node.pair.list", json!({})),
        ("node.rename", json!({})),
    ] {
        let res = admin.request("b", method, Some(params)).await;
        assert_eq!(res["ok"], false, "{method}: {res}");
        assert_eq!(res["error"]["code"], "FORBIDDEN", "{method}: {res}");
        assert_eq!(
            res["error"]["details"]["code"], "FRONTED_METHOD_BLOCKED",
            "{method}: {res}"
        );
    }
    let after = testkit::store(&p.upstream.state).devices();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].device_id, proxy_id);
    assert_eq!(
        testkit::store(&p.upstream.state).role_tokens(&proxy_id),
        tokens_before,
        "the proxy's upstream token is unchanged"
    );
    // The upstream's own registry is reachable only on the upstream.
    let mut direct = Client::connect(&p.upstream.url(), &[]).await.unwrap();
    let hello = direct
        .connect_with(cli_params(UPSTREAM_TOKEN, &["operator.admin"]))
        .await;
    assert_eq!(hello["ok"], true);
    let list = direct.request("l", "device.pair.list", None).await;
    assert!(list.to_string().contains(&proxy_id));
}

#[tokio::test]
async fn relayed_admin_calls_are_audited_with_the_clients_device() {
    let p = start().await;
    let mut admin = operator(&p.front, &["operator.admin"]).await;
    // `update.status` needs operator.admin upstream (the upstream clawgate
    // does not serve it; the call is relayed and audited all the same).
    let res = admin.request("u1", "update.status", None).await;
    assert_eq!(res["id"], "u1");
    p.front.state.flush_deferred();
    let audit = admin
        .request(
            "a1",
            "audit.list",
            Some(json!({"action": "upstream.admin_call"})),
        )
        .await;
    assert_eq!(audit["ok"], true, "{audit}");
    let entries = audit["payload"]["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["details"]["method"] == "update.status"),
        "{audit}"
    );
}

#[tokio::test]
async fn revoking_a_device_closes_the_client_and_its_upstream_socket() {
    let p = start().await;
    let device = TestDevice::new();
    let mut c = p.front.client().await;
    let mut params = params(
        "openclaw-tui",
        "ui",
        json!({"token": TOKEN}),
        &["operator.read"],
    );
    params["role"] = json!("operator");
    let hello = c.connect_device(&device, params).await;
    assert_eq!(hello["ok"], true, "{hello}");
    let mut admin = operator(&p.front, &["operator.admin"]).await;
    let base = testkit::sessions(&p.upstream.state);
    assert_eq!(base, 2, "one upstream socket per relayed client");
    let res = admin
        .request(
            "rv",
            "device.token.revoke",
            Some(json!({"deviceId": device.id, "role": "operator"})),
        )
        .await;
    assert_eq!(res["ok"], true, "{res}");
    let closed = tokio::time::timeout(Duration::from_secs(1), c.closed())
        .await
        .expect("closed within a second");
    assert_eq!(closed.code, 4001, "{closed:?}");
    wait_for("the upstream socket to close", || {
        testkit::sessions(&p.upstream.state) == base - 1
    })
    .await;
}

#[tokio::test]
async fn events_share_one_sequence_and_one_tick_source() {
    // Both gateways tick every second; the client must see one tick a
    // second (clawgate's), and one seq sequence across clawgate's ticks
    // and the upstream's presence events.
    let upstream = {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = GatewayConfig::loopback(
            dir.path(),
            AuthConfig::new(AuthMode::Token, Some(Secret::new(UPSTREAM_TOKEN)), None),
        );
        cfg.port = 0;
        let options = clawgate_gateway::RuntimeOptions {
            tick_interval: Duration::from_secs(1),
            ..fast_options()
        };
        TestGateway::start_with(cfg, options, dir).await
    };
    let front = front_of(&upstream, true, Duration::from_secs(1)).await;
    // A paired app keeps its scopes (a device-less one would get none and
    // no presence events).
    let mut c = front.client().await;
    let hello = c
        .connect_device(
            &TestDevice::new(),
            params(
                "openclaw-tui",
                "ui",
                json!({"token": TOKEN}),
                &["operator.read"],
            ),
        )
        .await;
    assert_eq!(hello["ok"], true, "{hello}");
    assert_eq!(hello["payload"]["policy"]["tickIntervalMs"], 1000);
    // Another relayed client makes the upstream broadcast presence.
    let mut other = front.client().await;
    let res = other
        .connect_with(params(
            "openclaw-tui",
            "ui",
            json!({"token": TOKEN}),
            &["operator.read"],
        ))
        .await;
    assert_eq!(res["ok"], true);
    let started = std::time::Instant::now();
    let mut seqs = Vec::new();
    let mut ticks = 0;
    let mut presence = 0;
    while started.elapsed() < Duration::from_millis(3500) {
        let Ok(Ok(frame)) = tokio::time::timeout(Duration::from_millis(200), c.next()).await else {
            continue;
        };
        if frame["type"] == "event" {
            if let Some(s) = frame["seq"].as_u64() {
                seqs.push(s);
            }
            match frame["event"].as_str() {
                Some("tick") => ticks += 1,
                Some("presence") => presence += 1,
                _ => {}
            }
        }
    }
    assert!(presence >= 1, "the upstream's presence is relayed");
    assert!(
        (2..=4).contains(&ticks),
        "one tick source: {ticks} ticks in 3.5 s"
    );
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "one seq sequence per client socket");
}

#[tokio::test]
async fn a_stopped_upstream_closes_clients_with_1012_and_new_connects_get_unavailable() {
    let p = start().await;
    let mut c = operator(&p.front, &["operator.read"]).await;
    p.upstream.stop().await;
    let closed = tokio::time::timeout(Duration::from_secs(5), c.closed())
        .await
        .expect("closed");
    assert_eq!(closed.code, 1012, "{closed:?}");
    assert!(closed.reason.contains("upstream"), "{closed:?}");
    let mut c = p.front.client().await;
    let res = c.connect_with(cli_params(TOKEN, &["operator.read"])).await;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(res["error"]["code"], "UNAVAILABLE", "{res}");
    assert_eq!(
        res["error"]["details"]["code"], "UPSTREAM_UNAVAILABLE",
        "{res}"
    );
    assert!(!res.to_string().contains("127.0.0.1"), "{res}");
    // clawgate stays up and answers its own health endpoint.
    let (status, _) = http_get(p.front.addr, "/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_unpaired_front_says_so_and_the_wrong_secret_never_reaches_the_upstream() {
    let upstream = upstream_gateway().await;
    let front = front_of(&upstream, false, Duration::from_secs(30)).await;
    let mut c = front.client().await;
    let res = c.connect_with(cli_params(TOKEN, &["operator.read"])).await;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(
        res["error"]["details"]["code"], "UPSTREAM_NOT_PAIRED",
        "{res}"
    );
    // A wrong secret at clawgate's door: refused by clawgate, and the
    // upstream sees no connection at all.
    // (Readiness probes open and close sockets upstream without a connect:
    // what must not move is the upstream's count of connects it answered.)
    let answered = |state: &clawgate_gateway::GatewayState| -> Vec<String> {
        testkit::metrics_text(state)
            .lines()
            .filter(|l| {
                l.starts_with("clawgate_handshakes_total")
                    || l.starts_with("clawgate_auth_failures_total{")
            })
            .map(str::to_owned)
            .collect()
    };
    let before = answered(&upstream.state);
    for _ in 0..5 {
        let mut c = front.client().await;
        let res = c
            .connect_with(cli_params("wrong-token", &["operator.read"]))
            .await;
        assert_eq!(
            res["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH",
            "{res}"
        );
    }
    // The upstream's own secret is not clawgate's.
    let mut c = front.client().await;
    let res = c
        .connect_with(cli_params(UPSTREAM_TOKEN, &["operator.read"]))
        .await;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(answered(&upstream.state), before);
    assert_eq!(testkit::sessions(&upstream.state), 0);
}

#[tokio::test]
async fn nodes_are_refused_with_a_clear_error() {
    let p = start().await;
    let device = TestDevice::new();
    let mut c = p.front.client().await;
    let mut params = params("node-host", "node", json!({"token": TOKEN}), &[]);
    params["role"] = json!("node");
    let res = c.connect_device(&device, params).await;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(res["error"]["details"]["code"], "NODE_NOT_FRONTED", "{res}");
}

/// A TLS terminator with a fresh self-signed certificate that forwards the
/// plaintext to `target` (a `wss://` upstream).
async fn tls_front(target: std::net::SocketAddr) -> (std::net::SocketAddr, Vec<u8>) {
    use std::sync::Arc;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_der = certified.cert.der().to_vec();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![CertificateDer::from(cert_der.clone())], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut out) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut out).await;
                }
            });
        }
    });
    (addr, cert_der)
}

#[tokio::test]
async fn a_wss_upstream_is_pinned_to_its_certificate() {
    let upstream = upstream_gateway().await;
    let (tls_addr, cert) = tls_front(upstream.addr).await;
    let url = format!("wss://127.0.0.1:{}/", tls_addr.port());
    let pin = clawgate_client::tls::fingerprint_of(&cert);
    let start_front = |pin: [u8; 32], pair: bool| {
        let url = url.clone();
        async move {
            let (mut cfg, dir) = config(AuthMode::Token);
            cfg.upstream = Some(UpstreamConfig {
                url: url.clone(),
                tls_fingerprint: Some(pin),
            });
            if pair {
                let mut opts = clawgate_client::ConnectOptions::new(&url)
                    .token(UPSTREAM_TOKEN)
                    .scopes(upstream::SCOPES)
                    .state_dir(upstream::identity_dir(dir.path()))
                    .unwrap();
                opts.client = upstream::pairing_client_info();
                opts.reconnect = false;
                opts.tls_fingerprint = Some(clawgate_client::Fingerprint(pin).into());
                clawgate_client::Client::connect(opts)
                    .await
                    .expect("pair over wss")
                    .close()
                    .await;
            }
            TestGateway::start_with(cfg, fast_options(), dir).await
        }
    };
    // The right pin: relayed over TLS.
    let front = start_front(pin.0, true).await;
    let mut c = front.client().await;
    let hello = c.connect_with(cli_params(TOKEN, &["operator.read"])).await;
    assert_eq!(hello["ok"], true, "{hello}");
    let res = c.request("h", "health", None).await;
    assert_eq!(res["ok"], true, "{res}");
    // A wrong pin: the upstream is refused at the TLS handshake.
    let mut wrong = pin.0;
    wrong[0] ^= 0xff;
    let other = start_front(wrong, false).await;
    // Its credentials: copy the paired ones (same URL), so only the pin differs.
    let from = upstream::identity_dir(&state_dir_of(&front));
    let to = upstream::identity_dir(&state_dir_of(&other));
    std::fs::create_dir_all(&to).unwrap();
    for f in ["identity.json", "device-tokens.json"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    // Missing credentials are read again at most once a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut c = other.client().await;
    let res = c.connect_with(cli_params(TOKEN, &["operator.read"])).await;
    assert_eq!(res["ok"], false, "{res}");
    assert_eq!(
        res["error"]["details"]["code"], "UPSTREAM_UNAVAILABLE",
        "{res}"
    );
    assert!(
        res["error"]["message"].as_str().unwrap().contains("TLS"),
        "{res}"
    );
}
