//! Fronting mode over real HTTP: a clawgate gateway with
//! `gateway.upstream` in front of a second, real clawgate gateway standing
//! in for the OpenClaw upstream (it serves a Control UI at `/` as the
//! reference does). The header-stripping check uses a raw TCP stand-in
//! that records what reaches it.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawgate_gateway::config::{AuthMode, UpstreamConfig};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Reply {
    status: u16,
    /// Every header line, lower-cased names, in order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    /// Whether anything returned names `needle`.
    fn mentions(&self, needle: &str) -> bool {
        self.headers
            .iter()
            .any(|(k, v)| k.contains(needle) || v.contains(needle))
            || self.body_text().contains(needle)
    }
}

/// One HTTP/1.0 request (no chunked answers: the body runs to the close).
async fn http(addr: SocketAddr, method: &str, path: &str, extra: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("answer in time")
        .unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let body = buf[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body,
    }
}

/// A gateway fronting the upstream at `upstream_port`.
async fn fronting(upstream_port: u16) -> TestGateway {
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.upstream = Some(UpstreamConfig {
        url: format!("ws://127.0.0.1:{upstream_port}/"),
        tls_fingerprint: None,
    });
    TestGateway::start_with(cfg, fast_options(), dir).await
}

/// A standalone gateway (the upstream) on `port` (0: any).
async fn upstream_on(port: u16, dir: tempfile::TempDir) -> TestGateway {
    let (mut cfg, _unused) = config(AuthMode::Token);
    cfg.config_path = dir.path().join(cfg.config_path.file_name().unwrap());
    cfg.state_dir = dir.path().to_path_buf();
    cfg.port = port;
    TestGateway::start_with(cfg, fast_options(), dir).await
}

fn assert_security_headers(r: &Reply, what: &str) {
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{what}");
}

#[tokio::test]
async fn the_upstream_ui_is_served_at_the_root_and_clawgates_own_under_clawgate() {
    let upstream = upstream_on(0, tempfile::tempdir().unwrap()).await;
    let port = upstream.addr.port();
    let gw = fronting(port).await;
    let leak = format!(":{port}");

    let direct = http(upstream.addr, "GET", "/", &[]).await;
    assert_eq!(direct.status, 200);
    assert!(direct.body_text().contains("<base href=\"/\">"));

    let root = http(gw.addr, "GET", "/", &[("Accept", "text/html")]).await;
    assert_eq!(root.status, 200, "{}", root.body_text());
    assert_eq!(root.body, direct.body, "the upstream's UI bytes");
    assert_security_headers(&root, "/");
    assert!(
        root.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(!root.mentions(&leak), "{:?}", root.headers);

    // Client-side routes are the document too; files of the UI pass.
    let route = http(gw.addr, "GET", "/devices", &[]).await;
    assert_eq!((route.status, &route.body), (200, &direct.body));
    let icon = http(gw.addr, "GET", "/favicon.svg", &[]).await;
    assert_eq!(icon.status, 200);
    assert_eq!(icon.header("content-type"), Some("image/svg+xml"));
    assert_security_headers(&icon, "/favicon.svg");
    let head = http(gw.addr, "HEAD", "/favicon.svg", &[]).await;
    assert_eq!((head.status, head.body.len()), (200, 0));

    // Not on the allowlist: never asked of the upstream.
    for path in ["/app.css", "/api/x", "/v1/models", "/catalogue.json"] {
        let r = http(gw.addr, "GET", path, &[]).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(!r.mentions(&leak));
    }

    // Only GET and HEAD.
    let post = http(gw.addr, "POST", "/", &[("Content-Length", "0")]).await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));

    // clawgate's own UI, at its base path.
    let own = http(gw.addr, "GET", "/clawgate/", &[]).await;
    assert_eq!(own.status, 200);
    assert!(own.body_text().contains("<base href=\"/clawgate/\">"));
    assert!(own.header("content-security-policy").is_some());
    let own_js = http(gw.addr, "GET", "/clawgate/js/main.js", &[]).await;
    assert_eq!(own_js.status, 200);
    let bare = http(gw.addr, "GET", "/clawgate", &[]).await;
    assert_eq!(bare.status, 308);
    assert_eq!(bare.header("location"), Some("/clawgate/"));

    // clawgate's endpoints stay clawgate's.
    let health = http(gw.addr, "GET", "/healthz", &[]).await;
    assert_eq!(health.status, 200);
    let ready = http(gw.addr, "GET", "/readyz", &[]).await;
    assert_eq!(ready.status, 200, "{}", ready.body_text());

    gw.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn capability_paths_pass_only_while_granted() {
    let upstream = upstream_on(0, tempfile::tempdir().unwrap()).await;
    let port = upstream.addr.port();
    let gw = fronting(port).await;
    let caps = &gw.state.upstream().expect("fronting").caps;
    let path = "/__openclaw__/cap/tok-1/index";

    let refused = http(gw.addr, "GET", path, &[]).await;
    assert_eq!(refused.status, 404);

    caps.grant("tok-1", 42);
    let granted = http(gw.addr, "GET", path, &[]).await;
    assert_eq!(granted.status, 200, "{}", granted.body_text());
    // The upstream (a clawgate) answers a path without a dot with its UI.
    assert!(granted.body_text().contains("<base href=\"/\">"));
    assert_eq!(granted.header("cache-control"), Some("no-store"));
    assert_security_headers(&granted, "cap");
    assert!(!granted.mentions(&format!(":{port}")));
    let other = http(gw.addr, "GET", "/__openclaw__/cap/tok-2/index", &[]).await;
    assert_eq!(other.status, 404);
    let post = http(gw.addr, "POST", path, &[("Content-Length", "0")]).await;
    assert_eq!(post.status, 405);

    caps.revoke_session(42);
    let revoked = http(gw.addr, "GET", path, &[]).await;
    assert_eq!(revoked.status, 404);

    gw.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn upstream_down_is_502_and_not_ready_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = upstream_on(0, tempfile::tempdir().unwrap()).await;
    let port = upstream.addr.port();
    let gw = fronting(port).await;
    let leak = format!(":{port}");
    assert_eq!(http(gw.addr, "GET", "/", &[]).await.status, 200);
    upstream.stop().await;

    let down = http(gw.addr, "GET", "/", &[]).await;
    assert_eq!(down.status, 502);
    assert!(
        down.body_text()
            .contains("upstream gateway is not reachable")
    );
    assert!(!down.mentions(&leak) && !down.mentions("127.0.0.1"));
    assert_security_headers(&down, "502");
    let ready = http(gw.addr, "GET", "/readyz", &[]).await;
    assert_eq!(ready.status, 503, "{}", ready.body_text());
    let v: serde_json::Value = serde_json::from_slice(&ready.body).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["status"], "upstream-unreachable");
    assert!(!ready.mentions(&leak) && !ready.mentions("127.0.0.1"));
    // clawgate itself is alive.
    assert_eq!(http(gw.addr, "GET", "/healthz", &[]).await.status, 200);
    // Its own UI does not depend on the upstream.
    assert_eq!(http(gw.addr, "GET", "/clawgate/", &[]).await.status, 200);

    // Back on the same port.
    let upstream = upstream_on(port, dir).await;
    let ready = http(gw.addr, "GET", "/readyz", &[]).await;
    assert_eq!(ready.status, 200, "{}", ready.body_text());
    assert_eq!(http(gw.addr, "GET", "/", &[]).await.status, 200);

    gw.stop().await;
    upstream.stop().await;
}

/// A stand-in upstream that records every request head and answers with
/// `reply` (where `{port}` is its own port).
async fn recording_upstream(reply: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    let reply = reply.replace("{port}", &port.to_string());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).to_string());
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    (port, heads)
}

#[tokio::test]
async fn credentials_and_forwarding_headers_never_reach_the_upstream() {
    let (port, heads) = recording_upstream(
        "HTTP/1.1 302 Found\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\
         Server: upstream-server\r\nSet-Cookie: openclaw=1\r\nX-Powered-By: node\r\n\
         Location: http://127.0.0.1:{port}/next?a=1\r\nX-Upstream: 127.0.0.1:{port}\r\n\
         Connection: close\r\n\r\nok",
    )
    .await;
    let gw = fronting(port).await;
    let leak = format!(":{port}");

    let r = http(
        gw.addr,
        "GET",
        "/chat?session=main",
        &[
            ("Cookie", "clawgate=secret"),
            ("Authorization", "Bearer secret"),
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-Host", "evil.example"),
            ("Forwarded", "for=203.0.113.7"),
            ("X-Real-IP", "203.0.113.7"),
            ("Origin", "http://evil.example"),
            ("Accept", "text/html"),
            ("Accept-Encoding", "gzip"),
            ("If-None-Match", "\"abc\""),
            ("User-Agent", "test-agent"),
        ],
    )
    .await;
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/next?a=1"));
    for dropped in ["server", "set-cookie", "x-powered-by", "x-upstream"] {
        assert!(r.header(dropped).is_none(), "{dropped}: {:?}", r.headers);
    }
    assert!(!r.mentions(&leak), "{:?}", r.headers);
    assert_security_headers(&r, "302");

    // The readiness probe's WebSocket upgrades reach the stand-in too;
    // only the proxied request is about the client.
    let heads: Vec<String> = heads
        .lock()
        .unwrap()
        .iter()
        .filter(|h| !h.to_ascii_lowercase().contains("upgrade: websocket"))
        .cloned()
        .collect();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let head = heads[0].to_ascii_lowercase();
    // A client-side route is fetched as the document.
    assert!(head.starts_with("get / http/1.1\r\n"), "{head}");
    for absent in [
        "cookie",
        "authorization",
        "x-forwarded-",
        "forwarded",
        "x-real-ip",
        "origin",
        "secret",
        "203.0.113.7",
    ] {
        assert!(
            !head.contains(absent),
            "{absent} reached the upstream:\n{head}"
        );
    }
    let names: HashMap<&str, &str> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    assert_eq!(names.get("host"), Some(&gw.addr.to_string().as_str()));
    assert_eq!(names.get("accept"), Some(&"text/html"));
    assert_eq!(names.get("accept-encoding"), Some(&"gzip"));
    assert_eq!(names.get("if-none-match"), Some(&"\"abc\""));
    assert_eq!(names.get("user-agent"), Some(&"test-agent"));
    let mut keys: Vec<&str> = names.keys().copied().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "accept",
            "accept-encoding",
            "host",
            "if-none-match",
            "user-agent"
        ]
    );

    gw.stop().await;
}
