//! Browser attacks against a real loopback gateway (issue 8, item 5):
//! cross-origin WebSocket connects, DNS rebinding, forged forwarding
//! headers, and cross-site WebSocket hijacking (a page on another origin
//! driving the gateway).
//!
//! The rules these tests pin down (the reference's Origin check on the
//! first frame and its browser pairing rules, and clawgate's Host check):
//!
//! - Every upgrade that carries an `Origin` header is checked, whatever
//!   `client.id` it declares: the client id is the client's own claim, the
//!   `Origin` header is the browser's. Allowed: an origin listed in
//!   `gateway.controlUi.allowedOrigins`, the gateway's own origin (the
//!   request's `Host`), and, for a direct loopback peer only, any loopback
//!   origin on any port (as the reference does). Everything
//!   else is `CONTROL_UI_ORIGIN_NOT_ALLOWED` and close 1008, before any
//!   credential is looked at, so a hostile page learns nothing about the
//!   token and cannot spend the failed-auth budget. A socket without
//!   `Origin` is not a browser (browsers always send it on WebSocket
//!   upgrades) and is not origin-checked.
//! - A loopback-bound gateway answers only requests whose `Host` is a
//!   loopback name (`localhost`, `127.0.0.0/8`, `[::1]`) or is listed in
//!   `gateway.allowedHosts`: DNS rebinding makes an attacker's page
//!   same-origin with the gateway, and only `Host` shows it. HTTP 403 for
//!   the Control UI, the HTTP endpoints and the upgrade alike.
//! - Forwarding headers (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`) on an
//!   upgrade from a peer not in `gateway.trustedProxies` get HTTP 403. From
//!   a trusted proxy the forwarded client address is used for rate limiting,
//!   and the socket is never treated as local: no silent pairing, no kept
//!   device-less scopes, no loopback exemption from lockouts even when the
//!   forwarded address is itself a loopback address.

mod common;

use std::net::SocketAddr;

use clawgate_gateway::config::AuthMode;
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Error as WsError;

/// A raw HTTP/1.1 request with the headers given (a `Host` among them
/// replaces the default): the status and the body.
async fn http_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let host = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| addr.to_string());
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        if !k.eq_ignore_ascii_case("host") {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The HTTP status an upgrade was refused with, or `None` if it was
/// accepted (and the challenge arrived).
async fn upgrade_status(url: &str, headers: &[(&str, &str)]) -> Option<u16> {
    match Client::connect(url, headers).await {
        Ok(_) => None,
        Err(WsError::Http(resp)) => Some(resp.status().as_u16()),
        Err(other) => panic!("upgrade failed without an HTTP status: {other}"),
    }
}

/// Connect params for `client_id`/`mode` with `auth`, role node for node clients.
fn params_for(client_id: &str, mode: &str, auth: Value) -> Value {
    let mut p = params(client_id, mode, auth, &[]);
    if mode == "node" {
        p["role"] = json!("node");
    }
    p
}

/// The client ids a browser page could claim, and the others: the Origin
/// check does not depend on what the client says it is.
const CLIENTS: &[(&str, &str)] = &[
    ("openclaw-control-ui", "webchat"),
    ("openclaw-control-ui", "ui"),
    ("openclaw-browser-copilot", "ui"),
    ("webchat-ui", "webchat"),
    ("webchat", "webchat"),
    ("cli", "cli"),
    ("gateway-client", "backend"),
    ("node-host", "node"),
    ("openclaw-probe", "probe"),
    ("openclaw-macos", "ui"),
    ("test", "test"),
];

/// Origins a hostile page could have, against a gateway on 127.0.0.1:`port`.
fn hostile_origins(port: u16) -> Vec<(String, &'static str)> {
    let not_allowed = "origin not allowed";
    let invalid = "origin missing or invalid";
    vec![
        ("http://evil.example".into(), not_allowed),
        ("https://evil.example".into(), not_allowed),
        // The attacker's name on the gateway's port (what a rebinding page has).
        (format!("http://evil.example:{port}"), not_allowed),
        // Look-alikes of loopback names.
        (format!("http://127.0.0.1.evil.example:{port}"), not_allowed),
        (format!("http://localhost.evil.example:{port}"), not_allowed),
        ("http://127.evil.com".into(), not_allowed),
        ("http://localhost-evil.example".into(), not_allowed),
        ("http://[::ffff:7f00:1]".into(), not_allowed),
        ("http://0.0.0.0".into(), not_allowed),
        (format!("http://10.0.0.5:{port}"), not_allowed),
        // Opaque and malformed origins.
        ("null".into(), invalid),
        ("file://".into(), invalid),
        ("chrome-extension://abcdefghijklmnop".into(), invalid),
        (format!("http://127.0.0.1:{port}@evil.example"), invalid),
        (format!("http://127.0.0.1:{port}.evil.example"), invalid),
        ("*".into(), invalid),
        ("".into(), invalid),
    ]
}

#[tokio::test]
async fn cross_origin_connects_are_refused_for_every_client_id() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let port = gw.addr.port();
    for (origin, reason) in hostile_origins(port) {
        for (id, mode) in CLIENTS {
            let mut c = gw.client_with(&[("origin", &origin)]).await;
            // The right token: the refusal comes before any credential check.
            let mut p = params_for(id, mode, json!({"token": TOKEN}));
            // A device identity too: refused before the proof is looked at.
            let device = TestDevice::new();
            device.sign(&mut p, &c.nonce());
            let res = c.connect_with(p).await;
            let closed = c.closed().await;
            let what = format!("{id}/{mode} from Origin {origin:?}");
            assert_eq!(res["ok"], false, "{what}: {res}");
            assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{what}");
            assert_eq!(
                res["error"]["details"]["code"], "CONTROL_UI_ORIGIN_NOT_ALLOWED",
                "{what}: {res}"
            );
            assert_eq!(res["error"]["details"]["reason"], reason, "{what}");
            assert_eq!(closed.code, 1008, "{what}");
            assert!(
                closed.reason.starts_with("origin not allowed"),
                "{what}: {closed:?}"
            );
        }
    }
    // Nothing was paired or requested on the way.
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let list = admin.request("l", "device.pair.list", None).await;
    assert_eq!(list["payload"]["pending"], json!([]), "{list}");
    assert_eq!(list["payload"]["paired"], json!([]), "{list}");
    gw.stop().await;
}

#[tokio::test]
async fn allowed_origins_the_own_origin_and_loopback_pages() {
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.control_ui.allowed_origins = vec!["https://ui.example".into()];
    let gw = TestGateway::start_with(cfg, fast_options(), dir).await;
    let port = gw.addr.port();
    let connects = |origin: String| {
        let url = gw.url();
        async move {
            let mut c = Client::connect(&url, &[("origin", &origin)]).await.unwrap();
            let res = c.connect_with(cli_params(TOKEN, &[])).await;
            (res["ok"] == true, res["error"]["details"]["code"].clone())
        }
    };
    // The gateway's own origin, and (direct loopback peer) loopback pages on
    // any port: as the reference does.
    for ok in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("http://[::1]:{port}"),
        "http://127.0.0.1:8080".into(),
        "http://localhost:3000".into(),
        // An allowed origin exactly as listed (case and a trailing slash do not matter).
        "https://ui.example".into(),
        "HTTPS://UI.EXAMPLE/".into(),
    ] {
        assert!(connects(ok.clone()).await.0, "{ok}");
    }
    // http vs https, and other ports, are other origins.
    for bad in [
        "http://ui.example",
        "https://ui.example:8443",
        "https://sub.ui.example",
        "https://ui.example.evil.example",
    ] {
        let (ok, code) = connects(bad.to_string()).await;
        assert!(!ok, "{bad} was accepted");
        assert_eq!(code, "CONTROL_UI_ORIGIN_NOT_ALLOWED", "{bad}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn other_ports_of_the_gateway_host_are_other_origins_for_a_remote_peer() {
    // A gateway behind a proxy at gw.example:8443: its own origin is fine,
    // the same host on another port or scheme is not, and a remote peer's
    // loopback origin is not either.
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    cfg.allowed_hosts = vec!["gw.example".into()];
    let gw = TestGateway::start_with(cfg, fast_options(), dir).await;
    let attempt = |origin: &'static str| {
        let url = gw.url();
        async move {
            let mut c = Client::connect(
                &url,
                &[
                    ("host", "gw.example:8443"),
                    ("origin", origin),
                    ("x-forwarded-for", "198.51.100.20"),
                ],
            )
            .await
            .unwrap();
            c.connect_with(cli_params(TOKEN, &[])).await
        }
    };
    assert_eq!(attempt("https://gw.example:8443").await["ok"], true);
    for bad in [
        "https://gw.example:9443",
        "https://gw.example",
        "http://127.0.0.1:8443",
        "http://localhost:8443",
    ] {
        let res = attempt(bad).await;
        assert_eq!(
            res["error"]["details"]["code"], "CONTROL_UI_ORIGIN_NOT_ALLOWED",
            "{bad}: {res}"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn hostile_origins_cannot_spend_the_failed_auth_budget_or_probe_the_token() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let port = gw.addr.port();
    // Twenty wrong tokens from a hostile page: each is an origin refusal,
    // never a token verdict (no oracle), and none counts as a failure.
    for i in 0..20 {
        let origin = format!("http://evil{i}.example:{port}");
        let mut c = gw.client_with(&[("origin", &origin)]).await;
        let res = c.connect_with(cli_params(&format!("guess-{i}"), &[])).await;
        assert_eq!(
            res["error"]["details"]["code"],
            "CONTROL_UI_ORIGIN_NOT_ALLOWED"
        );
        assert!(res["error"]["details"].get("authReason").is_none(), "{res}");
    }
    // The operator's own page (a browser on the same peer address, whose
    // budget is 10 failures) still gets in at once: none of the twenty
    // counted.
    let own = format!("http://127.0.0.1:{port}");
    let mut c = gw.client_with(&[("origin", &own)]).await;
    let res = c.connect_with(cli_params(TOKEN, &[])).await;
    assert_eq!(res["ok"], true, "{res}");
    let metrics = http_get(gw.addr, "/metrics").await.1;
    assert!(
        metrics.contains("clawgate_auth_lockouts_total 0"),
        "{metrics}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn no_origin_means_no_browser_and_no_origin_check() {
    // Native clients send no Origin; the Control UI id without Origin is
    // not refused for its origin but still needs a device identity.
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut c = gw.client().await;
    let res = c
        .connect_with(params(
            "openclaw-control-ui",
            "webchat",
            json!({"token": TOKEN}),
            &[],
        ))
        .await;
    assert_eq!(
        res["error"]["details"]["code"],
        "CONTROL_UI_DEVICE_IDENTITY_REQUIRED"
    );
    let mut c = gw.client().await;
    assert_eq!(c.connect_with(cli_params(TOKEN, &[])).await["ok"], true);
    gw.stop().await;
}

#[tokio::test]
async fn dns_rebinding_host_names_are_refused_by_a_loopback_gateway() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let port = gw.addr.port();
    let evil_port = format!("evil.example:{port}");
    let hostile = [
        evil_port.as_str(),
        "attacker.com",
        "127.0.0.1.evil.example",
        "localhost.evil.example",
        "10.0.0.5",
    ];
    for host in hostile {
        for path in [
            "/",
            "/index.html",
            "/js/main.js",
            "/devices",
            "/healthz",
            "/readyz",
            "/metrics",
        ] {
            let (status, body) = http_with(gw.addr, path, &[("host", host)]).await;
            assert_eq!(status, 403, "GET {path} with Host {host}: {body}");
            assert!(body.contains("gateway.allowedHosts"), "{body}");
            assert!(!body.contains("clawgate</title>"), "the UI was served");
        }
        // The upgrade a rebinding page would make: Origin and Host agree,
        // so only the Host check stands between it and the handshake.
        let origin = format!("http://{host}");
        assert_eq!(
            upgrade_status(&gw.url(), &[("host", host), ("origin", &origin)]).await,
            Some(403),
            "upgrade with Host {host}"
        );
        // A non-browser client with that Host: refused too.
        assert_eq!(
            upgrade_status(&gw.url(), &[("host", host)]).await,
            Some(403),
            "upgrade with Host {host}, no Origin"
        );
    }
    // Loopback names are answered.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(
            http_with(gw.addr, "/", &[("host", &host)]).await.0,
            200,
            "{host}"
        );
        let origin = format!("http://{host}");
        let mut c = Client::connect(&gw.url(), &[("host", &host), ("origin", &origin)])
            .await
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        let res = c.connect_with(cli_params(TOKEN, &[])).await;
        assert_eq!(res["ok"], true, "{host}: {res}");
    }
    // A Host with bytes beyond ASCII is refused, not taken for a missing
    // Host (which non-browser HTTP/1.0 clients may omit).
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: evil\xe9.example\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    assert!(
        buf.starts_with(b"HTTP/1.1 403"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    let metrics = http_get(gw.addr, "/metrics").await.1;
    assert!(metrics.contains("host_not_allowed"), "{metrics}");
    gw.stop().await;
}

#[tokio::test]
async fn dns_rebinding_with_auth_none_cannot_drive_the_gateway() {
    // The worst case: no secret at all. A rebinding page is refused by Host,
    // a cross-origin page by Origin; neither gets a session.
    let gw = TestGateway::start(AuthMode::None).await;
    let port = gw.addr.port();
    let rebinding = format!("rebind.evil.example:{port}");
    let origin = format!("http://{rebinding}");
    assert_eq!(
        upgrade_status(&gw.url(), &[("host", &rebinding), ("origin", &origin)]).await,
        Some(403)
    );
    let mut c = gw.client_with(&[("origin", "https://evil.example")]).await;
    let res = c
        .connect_with(params("cli", "cli", json!({}), &["operator.admin"]))
        .await;
    assert_eq!(
        res["error"]["details"]["code"],
        "CONTROL_UI_ORIGIN_NOT_ALLOWED"
    );
    // A local native client (no Origin) is what auth none is for.
    let mut c = gw.client().await;
    let res = c
        .connect_with(params("cli", "cli", json!({}), &["operator.admin"]))
        .await;
    assert_eq!(res["ok"], true);
    gw.stop().await;
}

#[tokio::test]
async fn allowed_hosts_is_the_escape_hatch() {
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.allowed_hosts = vec!["claw.home.arpa".into()];
    let gw = TestGateway::start_with(cfg, fast_options(), dir).await;
    let port = gw.addr.port();
    let listed = format!("claw.home.arpa:{port}");
    assert_eq!(http_with(gw.addr, "/", &[("host", &listed)]).await.0, 200);
    let origin = format!("http://{listed}");
    let mut c = Client::connect(&gw.url(), &[("host", &listed), ("origin", &origin)])
        .await
        .unwrap();
    assert_eq!(c.connect_with(cli_params(TOKEN, &[])).await["ok"], true);
    // Other names are still refused.
    assert_eq!(
        http_with(gw.addr, "/", &[("host", "evil.example")]).await.0,
        403
    );
    gw.stop().await;

    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.allowed_hosts = vec!["*".into()];
    let gw = TestGateway::start_with(cfg, fast_options(), dir).await;
    assert_eq!(
        http_with(gw.addr, "/", &[("host", "anything.example")])
            .await
            .0,
        200
    );
    gw.stop().await;
}

#[tokio::test]
async fn forged_forwarding_headers_from_an_untrusted_peer_get_403() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let forged: &[(&str, &str)] = &[
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-for", "203.0.113.9, 127.0.0.1"),
        ("forwarded", "for=127.0.0.1;proto=https"),
        ("forwarded", "for=\"[::1]\""),
        ("x-real-ip", "127.0.0.1"),
        ("x-forwarded-host", "localhost"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-port", "443"),
        ("X-Forwarded-For", "::1"),
    ];
    for (name, value) in forged {
        for origin in [None, Some("http://127.0.0.1")] {
            let mut headers = vec![(*name, *value)];
            if let Some(o) = origin {
                headers.push(("origin", o));
            }
            assert_eq!(
                upgrade_status(&gw.url(), &headers).await,
                Some(403),
                "{name}: {value} (origin {origin:?})"
            );
        }
    }
    let metrics = http_get(gw.addr, "/metrics").await.1;
    assert!(metrics.contains("untrusted_forwarding"), "{metrics}");
    // Without them, the same peer gets in.
    let mut c = gw.client().await;
    assert_eq!(c.connect_with(cli_params(TOKEN, &[])).await["ok"], true);
    gw.stop().await;
}

#[tokio::test]
async fn a_trusted_proxy_is_accepted_but_its_clients_are_never_local() {
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let gw = TestGateway::start_with(cfg, fast_options(), dir).await;
    let via = |client: &'static str| vec![("x-forwarded-for", client)];

    // Accepted; a device-less CLI keeps no declared scope (not local).
    let mut c = gw.client_with(&via("203.0.113.9")).await;
    let res = c.connect_with(cli_params(TOKEN, &["operator.admin"])).await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["auth"]["scopes"], json!([]));

    // Even a forwarded loopback address is a claim, not a fact: no silent
    // pairing for a device behind the proxy.
    for client in ["203.0.113.9", "127.0.0.1", "::1"] {
        let d = TestDevice::new();
        let mut c = gw.client_with(&via(client)).await;
        let mut p = params("cli", "cli", json!({"token": TOKEN}), &["operator.read"]);
        d.sign(&mut p, &c.nonce());
        let res = c.connect_with(p).await;
        assert_eq!(
            res["error"]["details"]["code"], "PAIRING_REQUIRED",
            "forwarded for {client}: {res}"
        );
    }

    // Rate limiting is keyed on the forwarded client: ten failures lock
    // 198.51.100.1 out (lockout, not loopback delays) ...
    for i in 0..10 {
        let mut c = gw.client_with(&via("198.51.100.1")).await;
        let res = c.connect_with(cli_params(&format!("wrong-{i}"), &[])).await;
        assert_eq!(res["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH");
    }
    let mut c = gw.client_with(&via("198.51.100.1")).await;
    let res = c.connect_with(cli_params(TOKEN, &[])).await;
    assert_eq!(
        res["error"]["details"]["code"], "AUTH_RATE_LIMITED",
        "{res}"
    );
    // ... while another client behind the same proxy is unaffected, and so
    // is the proxy's own direct connect.
    let mut c = gw.client_with(&via("198.51.100.2")).await;
    assert_eq!(c.connect_with(cli_params(TOKEN, &[])).await["ok"], true);
    let mut c = gw.client().await;
    assert_eq!(c.connect_with(cli_params(TOKEN, &[])).await["ok"], true);

    // A forwarded loopback address gets no loopback exemption: ten failures
    // lock it out too (a direct loopback peer would only be delayed).
    for i in 0..10 {
        let mut c = gw.client_with(&via("127.0.0.1")).await;
        let res = c.connect_with(cli_params(&format!("wrong-{i}"), &[])).await;
        assert_eq!(
            res["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH",
            "attempt {i}: {res}"
        );
    }
    let mut c = gw.client_with(&via("127.0.0.1")).await;
    let res = c.connect_with(cli_params(TOKEN, &[])).await;
    assert_eq!(
        res["error"]["details"]["code"], "AUTH_RATE_LIMITED",
        "a forwarded 127.0.0.1 was treated as local: {res}"
    );
    // The direct loopback operator is a different key and still gets in.
    let mut c = gw.client().await;
    assert_eq!(c.connect_with(cli_params(TOKEN, &[])).await["ok"], true);
    gw.stop().await;
}

#[tokio::test]
async fn a_page_on_another_origin_cannot_drive_the_gateway() {
    // Cross-site WebSocket hijacking: the victim's browser holds a paired
    // device and its token; a page on another origin opens a socket to the
    // gateway. The browser attaches the attacker's Origin, which is refused
    // before credentials, so even a replayed device token and a valid proof
    // get nowhere, and no pairing request is created for the operator to
    // approve by mistake.
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.auto_approve_local = false;
    let gw = TestGateway::start_with(cfg, fast_options(), dir).await;
    let port = gw.addr.port();
    let own = format!("http://127.0.0.1:{port}");

    // The victim's Control UI, approved by the operator.
    let d = TestDevice::new();
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let mut c = gw.client_with(&[("origin", &own)]).await;
    let ui = |auth: Value| params("openclaw-control-ui", "webchat", auth, &["operator.admin"]);
    let res = c.connect_device(&d, ui(json!({"token": TOKEN}))).await;
    let request_id = res["error"]["details"]["requestId"]
        .as_str()
        .unwrap()
        .to_string();
    let res = admin
        .request(
            "a",
            "device.pair.approve",
            Some(json!({"requestId": request_id})),
        )
        .await;
    assert_eq!(res["ok"], true, "{res}");
    let mut c = gw.client_with(&[("origin", &own)]).await;
    let res = c.connect_device(&d, ui(json!({"token": TOKEN}))).await;
    assert_eq!(res["ok"], true, "{res}");
    let device_token = res["payload"]["auth"]["deviceToken"]
        .as_str()
        .unwrap()
        .to_string();

    // The hostile page, holding everything the victim has.
    for origin in [
        "https://evil.example",
        "null",
        "http://127.0.0.1.evil.example",
    ] {
        for auth in [
            json!({"deviceToken": device_token}),
            json!({"token": TOKEN}),
            json!({}),
        ] {
            let mut c = gw.client_with(&[("origin", origin)]).await;
            let res = c.connect_device(&d, ui(auth.clone())).await;
            assert_eq!(
                res["error"]["details"]["code"], "CONTROL_UI_ORIGIN_NOT_ALLOWED",
                "{origin} {auth}: {res}"
            );
            assert!(res.get("payload").is_none());
        }
        // A fresh device from that page creates no pending request.
        let mut c = gw.client_with(&[("origin", origin)]).await;
        let res = c
            .connect_device(&TestDevice::new(), ui(json!({"token": TOKEN})))
            .await;
        assert!(res["error"]["details"].get("requestId").is_none(), "{res}");
    }
    let list = admin.request("l", "device.pair.list", None).await;
    assert_eq!(list["payload"]["pending"], json!([]), "{list}");
    // The victim's own page is unaffected.
    let mut c = gw.client_with(&[("origin", &own)]).await;
    let res = c
        .connect_device(&d, ui(json!({"deviceToken": device_token})))
        .await;
    assert_eq!(res["payload"]["auth"]["method"], "device-token", "{res}");
    gw.stop().await;
}
