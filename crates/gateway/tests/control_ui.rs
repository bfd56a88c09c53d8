//! The Control UI over real HTTP: files, client-side routes, the template,
//! security and cache headers, base paths, and the catalogue export the UI
//! reads.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use clawgate_gateway::config::AuthMode;
use clawgate_gateway::testkit;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

async fn http(addr: SocketAddr, method: &str, path: &str, extra: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn repo_file(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// Writes `want` to `rel` under `UPDATE_CATALOGUE=1`; asserts the file
/// equals it.
fn export_in_sync(rel: &str, want: &str) {
    let path = repo_file(rel);
    if std::env::var_os("UPDATE_CATALOGUE").is_some() {
        std::fs::write(&path, want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{rel} is out of date; regenerate it with: \
         UPDATE_CATALOGUE=1 cargo test -p clawgate-gateway --test control_ui"
    );
}

/// The UI reads the error catalogue from `ui/catalogue.json`; it must be
/// the protocol crate's catalogue exactly. `UPDATE_CATALOGUE=1` rewrites it.
#[test]
fn catalogue_export_is_in_sync() {
    let want = format!("{}\n", clawgate_protocol::catalogue::catalogue_json());
    export_in_sync("ui/catalogue.json", &want);
}

/// The pause list, scope implications and method scopes the UI's client
/// follows come from the protocol crate too (`ui/js/protocol.js`).
#[test]
fn client_rules_export_is_in_sync() {
    let methods = clawgate_gateway::rpc::method_names();
    let want = clawgate_protocol::catalogue::control_ui_rules_module(&methods);
    export_in_sync("ui/js/protocol.js", &want);
}

#[tokio::test]
async fn index_is_filled_in_and_locked_down() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let r = http(gw.addr, "GET", "/", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "text/html; charset=utf-8");
    assert!(!r.body.contains("__CLAWGATE_"), "template left unfilled");
    assert!(r.body.contains(&format!(
        "data-build-id=\"{}\"",
        &testkit::control_ui_build_id()
    )));
    assert!(r.body.contains("<base href=\"/\""));
    let csp = &r.headers["content-security-policy"];
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        &format!("connect-src 'self' ws://{0} wss://{0}", gw.addr),
    ] {
        assert!(csp.contains(part), "{part} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(r.headers["cache-control"], "no-cache");
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    assert_eq!(r.headers["referrer-policy"], "no-referrer");
    gw.stop().await;
}

#[tokio::test]
async fn files_revalidate_with_their_etag() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let r = http(gw.addr, "GET", "/catalogue.json", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/json");
    let catalogue: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert!(
        catalogue
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["code"] == "PAIRING_REQUIRED")
    );
    let etag = r.headers["etag"].clone();
    assert!(etag.contains(&testkit::control_ui_build_id()), "{etag}");
    let again = http(
        gw.addr,
        "GET",
        "/catalogue.json",
        &[("If-None-Match", &etag)],
    )
    .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let stale = http(
        gw.addr,
        "GET",
        "/catalogue.json",
        &[("If-None-Match", "\"old\"")],
    )
    .await;
    assert_eq!(stale.status, 200);
    // Scripts go out as JavaScript (module scripts need it).
    let js = http(gw.addr, "GET", "/js/main.js", &[]).await;
    assert_eq!(js.status, 200, "{}", js.body);
    assert_eq!(js.headers["content-type"], "text/javascript; charset=utf-8");
    gw.stop().await;
}

#[tokio::test]
async fn routes_get_the_index_and_nothing_else_leaks() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let index = http(gw.addr, "GET", "/", &[]).await.body;
    for route in ["/devices", "/audit", "/settings/devices"] {
        let r = http(gw.addr, "GET", route, &[]).await;
        assert_eq!((r.status, &r.body), (200, &index), "{route}");
    }
    for path in [
        "/missing.js",
        "/README.md",
        "/tests/package.json",
        "/../Cargo.toml",
        "/js/../../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/.git/config",
    ] {
        let r = http(gw.addr, "GET", path, &[]).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(r.headers.contains_key("content-security-policy"), "{path}");
    }
    let post = http(gw.addr, "POST", "/", &[("Content-Length", "0")]).await;
    assert_eq!(post.status, 405);
    assert_eq!(post.headers["allow"], "GET, HEAD");
    let head = http(gw.addr, "HEAD", "/", &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    // The operational endpoints stay where they were.
    assert_eq!(http(gw.addr, "GET", "/healthz", &[]).await.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn base_path_and_disabled_ui() {
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.control_ui.base_path = "/ui/admin/".into();
    let gw = TestGateway::start_with(cfg, fast_options(), dir).await;
    let r = http(gw.addr, "GET", "/ui/admin/", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("<base href=\"/ui/admin/\""));
    assert_eq!(
        http(gw.addr, "GET", "/ui/admin/devices", &[]).await.status,
        200
    );
    let redirect = http(gw.addr, "GET", "/ui/admin", &[]).await;
    assert_eq!(redirect.status, 308);
    assert_eq!(redirect.headers["location"], "/ui/admin/");
    assert_eq!(http(gw.addr, "GET", "/", &[]).await.status, 404);
    assert_eq!(http(gw.addr, "GET", "/devices", &[]).await.status, 404);
    gw.stop().await;

    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.control_ui.enabled = false;
    let gw = TestGateway::start_with(cfg, fast_options(), dir).await;
    assert_eq!(http(gw.addr, "GET", "/", &[]).await.status, 404);
    assert_eq!(
        http(gw.addr, "GET", "/catalogue.json", &[]).await.status,
        404
    );
    assert_eq!(http(gw.addr, "GET", "/healthz", &[]).await.status, 200);
    gw.stop().await;
}
