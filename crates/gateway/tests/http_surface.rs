//! The plain-HTTP surface around the WebSocket: who may read `/metrics`
//! (open on a loopback bind; bearer token or off elsewhere) and the
//! method an upgrade must use.

mod common;

use std::net::SocketAddr;

use clawgate_gateway::config::{AuthMode, BindMode};
use clawgate_protocol::Secret;
use common::{TestGateway, config, fast_options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends one raw request and returns the response text: everything up to
/// the end of the connection, or the head and whatever body has arrived
/// within 200 ms of it (a kept-alive connection does not end).
async fn raw(addr: SocketAddr, request: String) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let head_done = buf.windows(4).any(|w| w == b"\r\n\r\n");
        let wait = if head_done { 200 } else { 5_000 };
        match tokio::time::timeout(std::time::Duration::from_millis(wait), s.read(&mut chunk)).await
        {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => panic!("read: {e}"),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

async fn get_metrics(addr: SocketAddr, auth: Option<&str>) -> String {
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    raw(
        addr,
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"),
    )
    .await
}

/// A gateway bound to every interface; the test still talks to it only
/// over loopback.
async fn lan_gateway(metrics_token: Option<&str>) -> (TestGateway, SocketAddr) {
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.bind = BindMode::Lan;
    cfg.allowed_hosts = vec!["*".into()];
    cfg.metrics_token = metrics_token.map(Secret::new);
    let gw = TestGateway::start_with(cfg, fast_options(), dir).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], gw.addr.port()));
    (gw, addr)
}

#[tokio::test]
async fn metrics_are_open_on_a_loopback_bind() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let reply = get_metrics(gw.addr, None).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("clawgate_"), "{reply}");
    gw.stop().await;
}

#[tokio::test]
async fn metrics_are_off_on_a_lan_bind_without_a_token() {
    let (gw, addr) = lan_gateway(None).await;
    let reply = get_metrics(addr, None).await;
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    assert!(reply.contains("gateway.metrics.token"), "{reply}");
    assert!(!reply.contains("clawgate_connections"), "{reply}");
    gw.stop().await;
}

#[tokio::test]
async fn metrics_on_a_lan_bind_need_the_bearer_token() {
    let token = "scrape-0123456789abcdef";
    let (gw, addr) = lan_gateway(Some(token)).await;
    for wrong in [
        None,
        Some("Bearer wrong-0123456789abcdef"),
        Some("Basic c2NyYXBlOng="),
        Some(token),
    ] {
        let reply = get_metrics(addr, wrong).await;
        assert!(reply.starts_with("HTTP/1.1 401"), "{wrong:?}: {reply}");
        assert!(
            reply
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{reply}"
        );
        assert!(!reply.contains(token), "the token is never echoed: {reply}");
    }
    let reply = get_metrics(addr, Some(&format!("Bearer {token}"))).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("clawgate_"), "{reply}");
    gw.stop().await;
}

#[tokio::test]
async fn a_websocket_upgrade_must_be_a_get() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let addr = gw.addr;
    for method in ["POST", "PUT", "DELETE"] {
        let reply = raw(
            addr,
            format!(
                "{method} / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Content-Length: 0\r\n\r\n"
            ),
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 405"), "{method}: {reply}");
        assert!(reply.to_ascii_lowercase().contains("allow: get"), "{reply}");
    }
    // The same request as a GET upgrades.
    let reply = raw(
        addr,
        format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        ),
    );
    let reply = reply.await;
    assert!(reply.starts_with("HTTP/1.1 101"), "a GET upgrades: {reply}");
    let metrics = get_metrics(addr, None).await;
    assert!(metrics.contains("method_not_get"), "{metrics}");
    gw.stop().await;
}
