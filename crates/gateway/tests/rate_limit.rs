//! Failed-auth limiting against a real gateway: lockout, expiry, the
//! loopback delay schedule, peer keying (not Origin) and the global budget.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use clawgate_gateway::config::{AuthMode, RateLimitConfig};
use common::*;
use insta::assert_json_snapshot;
use serde_json::json;

async fn gateway(rate_limit: RateLimitConfig) -> TestGateway {
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.auth.rate_limit = rate_limit;
    TestGateway::start_with(cfg, fast_options(), dir).await
}

async fn attempt(
    gw: &TestGateway,
    from: IpAddr,
    origin: Option<&str>,
    token: &str,
) -> serde_json::Value {
    let headers: Vec<(&str, &str)> = origin.map(|o| vec![("origin", o)]).unwrap_or_default();
    let mut c = Client::connect_from(from, &gw.url(), &headers)
        .await
        .unwrap();
    c.connect_with(cli_params(token, &[])).await
}

const LOCAL: [u8; 4] = [127, 0, 0, 1];

#[tokio::test]
async fn ten_failures_lock_the_peer_even_for_the_right_token() {
    let gw = gateway(RateLimitConfig::default()).await;
    let ip = IpAddr::from(LOCAL);
    let origin = format!("http://localhost:{}", gw.addr.port());
    for i in 0..10 {
        let res = attempt(&gw, ip, Some(&origin), "wrong").await;
        assert_eq!(
            res["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH",
            "attempt {i}"
        );
    }
    let mut c = Client::connect_from(ip, &gw.url(), &[("origin", &origin)])
        .await
        .unwrap();
    let res = c.connect_with(cli_params(TOKEN, &[])).await;
    let retry = res["error"]["retryAfterMs"].as_u64().unwrap();
    assert!(retry > 290_000 && retry <= 300_000, "{retry}");
    let closed = c.closed().await;
    assert_json_snapshot!(
        "rate_limited",
        json!({"response": mask(&res), "close": {"code": closed.code, "reason": closed.reason}})
    );
    // Changing the Origin does not reset the budget: it is keyed on the peer.
    let res = attempt(&gw, ip, Some("http://localhost:1"), TOKEN).await;
    assert_eq!(res["error"]["details"]["code"], "AUTH_RATE_LIMITED");
    // Another address is unaffected.
    let res = attempt(&gw, IpAddr::from([127, 0, 0, 2]), Some(&origin), TOKEN).await;
    assert_eq!(res["ok"], true);
    gw.stop().await;
}

#[tokio::test]
async fn lockout_expires() {
    let gw = gateway(RateLimitConfig {
        max_attempts: 3,
        lockout_ms: 400,
        exempt_loopback: false,
        ..RateLimitConfig::default()
    })
    .await;
    let ip = IpAddr::from(LOCAL);
    for _ in 0..3 {
        attempt(&gw, ip, None, "wrong").await;
    }
    assert_eq!(
        attempt(&gw, ip, None, TOKEN).await["error"]["details"]["code"],
        "AUTH_RATE_LIMITED"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(attempt(&gw, ip, None, TOKEN).await["ok"], true);
    gw.stop().await;
}

#[tokio::test]
async fn loopback_failures_are_delayed_not_locked() {
    let gw = gateway(RateLimitConfig::default()).await;
    let ip = IpAddr::from(LOCAL);
    for expected_ms in [250u64, 500, 1000] {
        let started = Instant::now();
        let res = attempt(&gw, ip, None, "wrong").await;
        let took = started.elapsed();
        assert_eq!(res["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH");
        assert!(
            took >= Duration::from_millis(expected_ms),
            "delay {took:?} < {expected_ms} ms"
        );
    }
    // The right token still works, and is not held back by the delay the
    // next failure would get (2 s); the bound is loose so a busy machine
    // cannot make it flaky.
    let started = Instant::now();
    assert_eq!(attempt(&gw, ip, None, TOKEN).await["ok"], true);
    assert!(started.elapsed() < Duration::from_millis(1500));
    gw.stop().await;
}

#[tokio::test]
async fn global_budget_refuses_failing_peers_but_not_others() {
    let gw = gateway(RateLimitConfig {
        max_attempts: 100,
        exempt_loopback: false,
        global_max_failures: 4,
        // The budget alone; with the guard on, spending it also refuses new
        // peers (tests/under_attack.rs).
        attack_guard: false,
        ..RateLimitConfig::default()
    })
    .await;
    for last in 10..14u8 {
        let res = attempt(&gw, IpAddr::from([127, 0, 0, last]), None, "wrong").await;
        assert_eq!(res["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH");
    }
    let res = attempt(&gw, IpAddr::from([127, 0, 0, 10]), None, TOKEN).await;
    assert_eq!(res["error"]["details"]["code"], "AUTH_RATE_LIMITED");
    assert_eq!(res["error"]["retryable"], true);
    let res = attempt(&gw, IpAddr::from([127, 0, 0, 20]), None, TOKEN).await;
    assert_eq!(res["ok"], true, "a peer that never failed keeps getting in");
    gw.stop().await;
}
