//! Attacks against a real gateway, small enough for CI (correctness only,
//! no timing assertions; loopback only, bounded counts and durations):
//! - brute force: thousands of wrong-token connects over many 127.0.0.x
//!   sources, with and without a browser `Origin`, while a legitimate
//!   client from another address keeps connecting;
//! - connection exhaustion: sockets that upgrade and never send `connect`,
//!   sockets that send one byte at a time (before and after the upgrade),
//!   sockets that never send a request, against lowered caps and a short
//!   deadline.
//!
//! `clawgate-bench attack bruteforce|exhaust` runs the full-size versions
//! (see SECURITY.md).

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use clawgate_gateway::RuntimeOptions;
use clawgate_gateway::config::{AuthMode, RateLimitConfig};
use clawgate_gateway::testkit;
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// One connect attempt from `from`; the error code, or "OK".
async fn attempt(gw: &TestGateway, from: IpAddr, origin: Option<&str>, token: &str) -> String {
    let headers: Vec<(&str, &str)> = origin.map(|o| vec![("origin", o)]).unwrap_or_default();
    let mut c = match Client::connect_from(from, &gw.url(), &headers).await {
        Ok(c) => c,
        Err(e) => return format!("upgrade failed: {e}"),
    };
    let res = c.connect_with(cli_params(token, &[])).await;
    if res["ok"] == true {
        return "OK".into();
    }
    res["error"]["details"]["code"]
        .as_str()
        .or(res["error"]["code"].as_str())
        .unwrap_or("?")
        .to_string()
}

/// A legitimate client connecting in a loop from `from` until `stop`:
/// (hello-ok count, failures).
fn legit_loop(
    gw: &TestGateway,
    from: IpAddr,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, Vec<String>)> {
    let url = gw.url();
    tokio::spawn(async move {
        let mut ok = 0;
        let mut failures = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match Client::connect_from(from, &url, &[]).await {
                Ok(mut c) => {
                    let res = c.connect_with(cli_params(TOKEN, &[])).await;
                    if res["ok"] == true {
                        ok += 1;
                    } else {
                        failures.push(res["error"].to_string());
                    }
                }
                Err(e) => failures.push(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (ok, failures)
    })
}

const MAX_ATTEMPTS: u32 = 10;
const GLOBAL_BUDGET: u32 = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_over_many_sources_and_origins() {
    let (mut cfg, dir) = config(AuthMode::Token);
    // The defaults, except a global budget small enough to reach quickly.
    cfg.auth.rate_limit = RateLimitConfig {
        max_attempts: MAX_ATTEMPTS,
        global_max_failures: GLOBAL_BUDGET,
        ..RateLimitConfig::default()
    };
    assert!(cfg.auth.rate_limit.exempt_loopback);
    // Refusals answered after 20 ms instead of 1 s, to keep the test short
    // (`limiter_refusals_wait_holding_their_slot` covers the wait).
    let options = RuntimeOptions {
        rate_limited_delay: Duration::from_millis(20),
        ..fast_options()
    };
    let gw = Arc::new(TestGateway::start_with(cfg, options, dir).await);
    let origin = format!("http://localhost:{}", gw.addr.port());
    let stop = Arc::new(AtomicBool::new(false));
    let legit = legit_loop(&gw, ip(2), stop.clone());
    let accepted = Arc::new(AtomicU64::new(0));

    // Phase 1, per-peer lockout: 32 browser sources (never loopback-exempt),
    // 12 wrong tokens each, concurrently: 32 x 10 failures stay under the
    // global budget, so every lockout is the peer's own.
    let mut tasks = Vec::new();
    for last in 10..42u8 {
        let (gw, origin, accepted) = (gw.clone(), origin.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            let mut seq = Vec::new();
            for _ in 0..MAX_ATTEMPTS + 2 {
                let r = attempt(&gw, ip(last), Some(&origin), "wrong-token").await;
                if r == "OK" {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
                seq.push(r);
            }
            (last, seq)
        }));
    }
    for t in tasks {
        let (last, seq) = t.await.unwrap();
        let n = MAX_ATTEMPTS as usize;
        assert!(
            seq[..n].iter().all(|r| r == "AUTH_TOKEN_MISMATCH"),
            "127.0.0.{last}: {seq:?}"
        );
        assert!(
            seq[n..].iter().all(|r| r == "AUTH_RATE_LIMITED"),
            "127.0.0.{last} not locked after {n}: {seq:?}"
        );
    }
    // Every lockout is in the audit log (written in the background flush,
    // which audit.list runs first).
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let res = admin
        .request(
            "l",
            "audit.list",
            Some(json!({"action": "auth.lockout", "limit": 1000})),
        )
        .await;
    assert_eq!(
        res["payload"]["entries"].as_array().unwrap().len(),
        32,
        "{res}"
    );
    drop(admin);
    // A locked peer is refused before the device signature is checked: a
    // bad signature gets AUTH_RATE_LIMITED, not a signature error.
    let mut c = Client::connect_from(ip(10), &gw.url(), &[("origin", &origin)])
        .await
        .unwrap();
    let mut p = params("cli", "cli", json!({}), &[]);
    TestDevice::new().sign(&mut p, "not-the-challenge-nonce");
    let res = c.connect_with(p).await;
    assert_eq!(
        res["error"]["details"]["code"], "AUTH_RATE_LIMITED",
        "{res}"
    );

    // Phase 2, the global budget: 50 loopback sources without Origin
    // (exempt: delays, never lockouts) and 16 browser sources, 30 attempts
    // each. Exempt peers can only be refused by the global budget, and
    // browser peers refused before their own 10th failure are too.
    let mut tasks = Vec::new();
    for last in (50..100u8).chain(150..166) {
        let browser = last >= 150;
        let (gw, origin, accepted) = (gw.clone(), origin.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            let mut seq = Vec::new();
            for _ in 0..30 {
                let o = browser.then_some(origin.as_str());
                let r = attempt(&gw, ip(last), o, "wrong-token").await;
                if r == "OK" {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
                seq.push(r);
            }
            (last, browser, seq)
        }));
    }
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut exempt_refused = 0;
    let mut early_refused = 0;
    for t in tasks {
        let (last, browser, seq) = t.await.unwrap();
        for r in &seq {
            *totals.entry(r.clone()).or_default() += 1;
        }
        assert!(
            seq.iter()
                .all(|r| r == "AUTH_TOKEN_MISMATCH" || r == "AUTH_RATE_LIMITED"),
            "127.0.0.{last}: {seq:?}"
        );
        let mismatches = seq.iter().filter(|r| *r == "AUTH_TOKEN_MISMATCH").count();
        if seq.iter().any(|r| r == "AUTH_RATE_LIMITED") {
            if !browser {
                exempt_refused += 1;
            } else if mismatches < MAX_ATTEMPTS as usize {
                early_refused += 1;
            }
        }
    }
    assert_eq!(
        exempt_refused, 50,
        "every loopback-exempt source ends up refused by the global budget: {totals:?}"
    );
    assert!(
        early_refused > 0,
        "some browser source was refused before its own count: {totals:?}"
    );
    // Attempts compared against the secret: what was left of the budget
    // plus each source's first attempt (a peer that has not failed is
    // never refused), not the number of attempts.
    let compared = totals.get("AUTH_TOKEN_MISMATCH").copied().unwrap_or(0);
    // Without the budget every exempt attempt would be compared (1,500)
    // plus 10 per browser source (160).
    assert!(compared < u64::from(GLOBAL_BUDGET), "{totals:?}");
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        0,
        "a wrong token was accepted"
    );

    // The legitimate client never failed during the attack. Spending the
    // budget started an "under attack" episode: a peer that authenticated
    // recently still gets in, an exempt loopback CLI too, but a browser on
    // a new address with the right token waits until it cools down (issue
    // 22's price; tests/under_attack.rs covers the episode).
    stop.store(true, Ordering::Relaxed);
    let (ok, failures) = legit.await.unwrap();
    assert!(failures.is_empty(), "legit client failed: {failures:?}");
    assert!(ok > 0);
    assert_eq!(attempt(&gw, ip(2), None, TOKEN).await, "OK");
    assert_eq!(attempt(&gw, ip(4), None, TOKEN).await, "OK");
    assert!(testkit::under_attack(&gw.state));
    assert_eq!(
        attempt(&gw, ip(3), Some(&origin), TOKEN).await,
        "AUTH_RATE_LIMITED"
    );
    // A failing peer with the right token is still refused.
    assert_eq!(attempt(&gw, ip(60), None, TOKEN).await, "AUTH_RATE_LIMITED");
    Arc::into_inner(gw).unwrap().stop().await;
}

const PER_IP: usize = 4;
const TOTAL: usize = 16;

fn exhaust_options() -> RuntimeOptions {
    RuntimeOptions {
        handshake_timeout: Duration::from_millis(1500),
        max_unauth_per_ip: PER_IP,
        max_unauth_total: TOTAL,
        ..fast_options()
    }
}

async fn raw_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from, 0)).unwrap();
    sock.connect(to).await.unwrap()
}

fn upgrade_request(addr: SocketAddr) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Reads until EOF or an error (what a closed socket gives), at most
/// `limit`; true when the server ended the connection.
async fn ended_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Sends `bytes` one at a time, 100 ms apart, stopping when the server has
/// closed the connection; true when it did before the bytes ran out.
async fn dribble_until_closed(s: &mut TcpStream, bytes: &[u8]) -> bool {
    let mut buf = [0u8; 4096];
    for b in bytes {
        if s.write_all(&[*b]).await.is_err() {
            return true;
        }
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            _ => {}
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhaustion_caps_and_deadlines_hold() {
    let (cfg, dir) = config(AuthMode::Token);
    let gw = TestGateway::start_with(cfg, exhaust_options(), dir).await;
    let refused = |r: Result<Client, _>| match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status() == 503,
        _ => false,
    };

    // Per-IP cap: 4 idle upgraded sockets from one address, the 5th refused.
    let mut idle = Vec::new();
    for _ in 0..PER_IP {
        idle.push(Client::connect_from(ip(20), &gw.url(), &[]).await.unwrap());
    }
    assert!(
        refused(Client::connect_from(ip(20), &gw.url(), &[]).await),
        "5th unauthenticated socket from one address accepted"
    );
    // Fill the caps of two more addresses: 12 of 16 held.
    for last in [21, 22] {
        for _ in 0..PER_IP {
            idle.push(
                Client::connect_from(ip(last), &gw.url(), &[])
                    .await
                    .unwrap(),
            );
        }
    }
    assert_eq!(testkit::unauth_sockets(&gw.state), 3 * PER_IP);
    // A legitimate client from another address still gets in.
    let mut legit = Client::connect_from(ip(2), &gw.url(), &[]).await.unwrap();
    assert_eq!(legit.connect_with(cli_params(TOKEN, &[])).await["ok"], true);
    // Global cap: a fourth address fills it. A newer socket then evicts the
    // oldest (close 1013), so the total stays at the cap and a legitimate
    // client still gets in.
    for _ in 0..PER_IP {
        idle.push(Client::connect_from(ip(23), &gw.url(), &[]).await.unwrap());
    }
    assert_eq!(testkit::unauth_sockets(&gw.state), TOTAL);
    let mut newcomer = Client::connect_from(ip(24), &gw.url(), &[]).await.unwrap();
    let oldest = idle.remove(0);
    let mut oldest = oldest;
    assert_eq!(oldest.closed().await.code, 1013);
    assert_eq!(testkit::unauth_sockets(&gw.state), TOTAL);
    assert_eq!(
        newcomer.connect_with(cli_params(TOKEN, &[])).await["ok"],
        true
    );
    // A burst from ten more addresses never takes the total over the cap
    // by more than the evictions in flight (one here).
    let mut burst = Vec::new();
    for last in 60..70u8 {
        for _ in 0..2 {
            burst.push(
                Client::connect_from(ip(last), &gw.url(), &[])
                    .await
                    .unwrap(),
            );
            assert!(testkit::unauth_sockets(&gw.state) <= TOTAL + 1);
        }
    }
    // The deadline (or eviction) closes every idle socket, freeing the caps.
    for c in idle.iter_mut().chain(burst.iter_mut()) {
        let code = c.closed().await.code;
        assert!(code == 1000 || code == 1013, "{code}");
    }
    for _ in 0..100 {
        if testkit::unauth_sockets(&gw.state) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(testkit::unauth_sockets(&gw.state), 0);
    let mut c = Client::connect_from(ip(24), &gw.url(), &[]).await.unwrap();
    assert_eq!(c.connect_with(cli_params(TOKEN, &[])).await["ok"], true);
    // The session that authenticated during all this is unaffected.
    let res = legit.request("h1", "health", None).await;
    assert_eq!(res["ok"], true, "{res}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_senders_are_closed_at_the_deadline() {
    let (cfg, dir) = config(AuthMode::Token);
    let gw = TestGateway::start_with(cfg, exhaust_options(), dir).await;
    let addr = gw.addr;
    // 6 s of dribbling at most (100 ms a byte) against a 1.5 s deadline.
    let slow = |s: &str| s.as_bytes()[..60.min(s.len())].to_vec();

    // Slowloris on the HTTP request head, before any WebSocket exists.
    let head = upgrade_request(addr);
    let mut s = raw_from(ip(30), addr).await;
    assert!(
        dribble_until_closed(&mut s, &slow(&head)).await,
        "a request head sent a byte at a time was not cut off"
    );
    // A connection that never sends a byte.
    let mut s = raw_from(ip(31), addr).await;
    assert!(
        ended_within(&mut s, Duration::from_secs(5)).await,
        "a silent connection was not closed"
    );
    // After the upgrade: the connect frame a byte at a time.
    let mut s = raw_from(ip(32), addr).await;
    s.write_all(upgrade_request(addr).as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 101"));
    // A masked text frame announcing 125 bytes, sent a byte at a time.
    let mut frame = vec![0x81u8, 0x80 | 125, 1, 2, 3, 4];
    frame.extend(std::iter::repeat_n(b'x', 125));
    assert!(
        dribble_until_closed(&mut s, &frame[..60]).await,
        "a connect frame sent a byte at a time was not cut off"
    );
    // Nothing is left holding a slot.
    for _ in 0..100 {
        if testkit::unauth_sockets(&gw.state) == 0 && testkit::pending_http(&gw.state) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(testkit::unauth_sockets(&gw.state), 0);
    assert_eq!(testkit::pending_http(&gw.state), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_request_are_capped() {
    let (cfg, dir) = config(AuthMode::Token);
    let gw = TestGateway::start_with(cfg, exhaust_options(), dir).await;
    let addr = gw.addr;
    // Per address: 4 silent connections held, the 5th answered 503 at once.
    let mut held = Vec::new();
    for _ in 0..PER_IP {
        held.push(raw_from(ip(40), addr).await);
    }
    for _ in 0..100 {
        if testkit::pending_http_of(&gw.state, ip(40)) == PER_IP {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(testkit::pending_http_of(&gw.state, ip(40)), PER_IP);
    let mut fifth = raw_from(ip(40), addr).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), fifth.read_to_end(&mut buf)).await;
    assert!(
        buf.starts_with(b"HTTP/1.1 503"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    // Globally: 16 in total over 4 addresses; a connection from a new
    // address then evicts the oldest silent one and is served.
    for last in 41..44u8 {
        for _ in 0..PER_IP {
            held.push(raw_from(ip(last), addr).await);
        }
    }
    for _ in 0..100 {
        if testkit::pending_http(&gw.state) == TOTAL {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(testkit::pending_http(&gw.state), TOTAL);
    let mut c = Client::connect_from(ip(44), &gw.url(), &[]).await.unwrap();
    assert_eq!(c.connect_with(cli_params(TOKEN, &[])).await["ok"], true);
    let mut oldest = held.remove(0);
    assert!(
        ended_within(&mut oldest, Duration::from_millis(500)).await,
        "the oldest silent connection was not evicted"
    );
    assert!(testkit::pending_http(&gw.state) <= TOTAL);
    // The rest are closed at the deadline.
    for s in &mut held {
        assert!(ended_within(s, Duration::from_secs(10)).await);
    }
    for _ in 0..100 {
        if testkit::pending_http(&gw.state) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(testkit::pending_http(&gw.state), 0);
    // Keep-alive HTTP still works (two requests on one connection).
    let mut s = raw_from(ip(45), addr).await;
    for _ in 0..2 {
        s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_refusals_wait_holding_their_slot() {
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.auth.rate_limit = RateLimitConfig {
        max_attempts: 2,
        exempt_loopback: false,
        ..RateLimitConfig::default()
    };
    let options = RuntimeOptions {
        rate_limited_delay: Duration::from_secs(3),
        ..exhaust_options()
    };
    let gw = Arc::new(TestGateway::start_with(cfg, options, dir).await);
    let me = ip(50);
    for _ in 0..2 {
        assert_eq!(
            attempt(&gw, me, None, "wrong-token").await,
            "AUTH_TOKEN_MISMATCH"
        );
    }
    // Four refused connects from the locked address wait for their answer
    // holding their slots, so a fifth cannot even upgrade.
    let mut waiting = Vec::new();
    for _ in 0..PER_IP {
        let gw = gw.clone();
        waiting.push(tokio::spawn(
            async move { attempt(&gw, me, None, TOKEN).await },
        ));
    }
    let refused = r#"clawgate_handshakes_total{outcome="AUTH_RATE_LIMITED"} 4"#;
    for _ in 0..200 {
        if testkit::metrics_text(&gw.state).contains(refused) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(testkit::metrics_text(&gw.state).contains(refused));
    assert_eq!(testkit::unauth_sockets_of(&gw.state, me), PER_IP);
    match Client::connect_from(me, &gw.url(), &[]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a fifth socket while four refusals wait"),
    }
    // Another address is not held up.
    assert_eq!(attempt(&gw, ip(51), None, TOKEN).await, "OK");
    for w in waiting {
        assert_eq!(w.await.unwrap(), "AUTH_RATE_LIMITED");
    }
    Arc::into_inner(gw).unwrap().stop().await;
}
