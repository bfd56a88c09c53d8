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

/// An upgrade request for `/` on `addr`.
fn upgrade_head(addr: SocketAddr) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// A client's text frame (masked, with an all-zero key: valid, and the
/// payload stays readable).
fn client_text_frame(text: &str) -> Vec<u8> {
    let mut out = vec![0x81];
    if text.len() < 126 {
        out.push(0x80 | text.len() as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(text.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(text.as_bytes());
    out
}

/// Reads until `buf` holds the `101` head and `frames` whole server text
/// frames after it; returns the frames' texts (an error text on EOF or
/// after 5 s).
async fn read_upgrade(s: &mut TcpStream, frames: usize) -> Result<Vec<String>, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            if !head.starts_with("HTTP/1.1 101") {
                return Err(head);
            }
            let mut at = end + 4;
            let mut out = Vec::new();
            while at + 2 <= buf.len() {
                let (len, hl) = match buf[at + 1] & 0x7f {
                    126 if at + 4 <= buf.len() => {
                        (u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize, 4)
                    }
                    126 => break,
                    127 => return Err("unexpected 64-bit frame".into()),
                    n => (n as usize, 2),
                };
                if at + hl + len > buf.len() {
                    break;
                }
                out.push(String::from_utf8_lossy(&buf[at + hl..at + hl + len]).into_owned());
                at += hl + len;
            }
            if out.len() >= frames {
                return Ok(out);
            }
        }
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .map_err(|_| format!("timed out: {}", String::from_utf8_lossy(&buf)))?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("closed: {}", String::from_utf8_lossy(&buf)));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The accept loop reads the upgrade head itself: a head that arrives in
/// pieces is still whole, and a frame the client sends in the same write
/// as the last piece (before it has seen the `101`) is not lost.
#[tokio::test]
async fn an_upgrade_in_pieces_with_a_frame_behind_it_connects() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = upgrade_head(gw.addr);
    let (a, b) = head.split_at(7);
    let (b, c) = b.split_at(40);
    for piece in [a, b] {
        s.write_all(piece.as_bytes()).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    let connect = serde_json::json!({
        "type": "req", "id": "c1", "method": "connect",
        "params": common::cli_params(common::TOKEN, &["operator.read"]),
    })
    .to_string();
    let mut last = c.as_bytes().to_vec();
    last.extend_from_slice(&client_text_frame(&connect));
    s.write_all(&last).await.unwrap();
    let frames = read_upgrade(&mut s, 2).await.unwrap();
    assert!(frames[0].contains("connect.challenge"), "{frames:?}");
    assert!(
        frames[1].contains(r#""type":"hello-ok""#),
        "{:.300}",
        frames[1]
    );
    assert!(frames[1].contains(r#""id":"c1""#), "{:.300}", frames[1]);
    gw.stop().await;
}

/// A connection whose first request is not an upgrade goes to the router
/// with every byte read so far, stays open (keep-alive), and its next
/// request may still be an upgrade.
#[tokio::test]
async fn an_upgrade_after_a_kept_alive_request_is_routed_and_connects() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let addr = gw.addr;
    s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&buf).contains(r#""status":"live""#) {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("healthz answered")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
    s.write_all(upgrade_head(addr).as_bytes()).await.unwrap();
    let frames = read_upgrade(&mut s, 1).await.unwrap();
    assert!(frames[0].contains("connect.challenge"), "{frames:?}");
    gw.stop().await;
}

/// An upgrade the rules refuse is answered by the router, with its metric,
/// exactly as before the accept loop read heads itself.
#[tokio::test]
async fn a_refused_upgrade_is_answered_and_counted() {
    let gw = TestGateway::start(AuthMode::Token).await;
    let addr = gw.addr;
    let reply = raw(
        addr,
        upgrade_head(addr).replace("Host: ", "X-Forwarded-For: 203.0.113.9\r\nHost: "),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    assert!(reply.contains("proxy_attribution_required"), "{reply}");
    let reply = raw(
        addr,
        upgrade_head(addr).replace("Version: 13", "Version: 8"),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("unsupported websocket version"), "{reply}");
    let metrics = get_metrics(addr, None).await;
    assert!(
        metrics.contains(r#"reason="untrusted_forwarding"} 1"#),
        "{metrics}"
    );
    gw.stop().await;
}
