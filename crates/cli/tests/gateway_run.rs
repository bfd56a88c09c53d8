//! `clawgate gateway run` as a real process: first-run token generation,
//! refusals that name the key, config reload, and a trace-level log
//! scan proving no secret is ever printed.

mod common;

use std::time::{Duration, Instant};

use common::*;

use serde_json::{Value, json};

async fn connect(port: u16, token: &str) -> Value {
    connect_raw(port, json!({"token": token}), &["operator.admin"]).await
}

#[test]
fn first_run_generates_a_private_token_and_never_prints_it_to_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let r = start(&state, &[], &[]);
    let config = state.join("clawgate.json");
    let text = std::fs::read_to_string(&config).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let token = doc["gateway"]["auth"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(token.len(), 43);
    assert_eq!(doc["gateway"]["auth"]["mode"], "token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(
        r.stdout.contains("clawgate gateway auth-token --show"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains(&token));
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(connect(r.port, &token))["ok"], true);
    let (code, err) = stop(r);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains(&token));
    // The second run reuses the token.
    let r = start(&state, &[], &[]);
    assert!(!r.stdout.contains("Generated"));
    assert_eq!(rt.block_on(connect(r.port, &token))["ok"], true);
    stop(r);
}

#[test]
fn refuses_bad_configuration_naming_the_key() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["--auth", "token"], &[], "gateway.auth.token"),
        (&["--auth", "password"], &[], "gateway.auth.password"),
        (&["--auth", "none", "--bind", "lan"], &[], "--auth"),
        (&["--token", "undefined"], &[], "--token"),
        (&["--token", "  "], &[], "--token"),
        (
            &[],
            &[("CLAWGATE_GATEWAY_TOKEN", "null")],
            "CLAWGATE_GATEWAY_TOKEN",
        ),
    ];
    for (args, env, key) in cases {
        let dir = tempfile::tempdir().unwrap();
        // A config that configures nothing about auth but exists, so no token is generated.
        std::fs::write(dir.path().join("clawgate.json"), "{gateway: {port: 0}}").unwrap();
        let mut cmd = bin();
        cmd.arg("--state-dir")
            .arg(dir.path())
            .args(["gateway", "run", "--port", "0"])
            .args(*args);
        for (k, v) in *env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(key), "{args:?}: expected {key} in: {err}");
        assert!(err.contains("refusing to start"), "{err}");
    }
    for (file, key) in [
        (
            "{gateway: {auth: {mode: 'magic', token: 'abc'}}}",
            "gateway.auth.mode",
        ),
        (
            "{gateway: {auth: {token: 'abc', rateLimit: {windowMs: 0}}}}",
            "gateway.auth.rateLimit.windowMs",
        ),
        (
            "{gateway: {auth: {token: 'abc', rateLimit: {maxAttempts: -3}}}}",
            "gateway.auth.rateLimit.maxAttempts",
        ),
        (
            "{gateway: {auth: {token: 'abc'}, tickIntervalMs: 999}}",
            "gateway.tickIntervalMs",
        ),
        (
            "{gateway: {auth: {token: 'abc'}, tickIntervalMs: '30s'}}",
            "gateway.tickIntervalMs",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("clawgate.json"), file).unwrap();
        let out = bin()
            .arg("--state-dir")
            .arg(dir.path())
            .args(["gateway", "run", "--port", "0"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {err}");
        assert!(err.contains(key), "{file}: expected {key} in: {err}");
        assert!(!err.contains("abc"), "secret in error: {err}");
    }
}

#[test]
fn trace_logs_never_contain_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let token = "log-scan-shared-token-4b1d9e";
    let r = start(
        dir.path(),
        &["--log-format", "json"],
        &[("CLAWGATE_GATEWAY_TOKEN", token), ("CLAWGATE_LOG", "trace")],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ok = rt.block_on(connect(r.port, token));
    assert_eq!(ok["ok"], true);
    let wrong = "log-scan-wrong-guess-77aa";
    for _ in 0..3 {
        let bad = rt.block_on(connect(r.port, wrong));
        assert_eq!(bad["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH");
    }
    let (code, err) = stop(r);
    assert_eq!(code, 0);
    assert!(err.lines().count() > 5, "expected trace output, got: {err}");
    for line in err.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(v.get("level").is_some());
        assert!(!line.contains(token), "shared token in log: {line}");
        assert!(!line.contains(wrong), "offered secret in log: {line}");
    }
}

#[test]
fn sighup_applies_a_new_token_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("clawgate.json"),
        r#"{"gateway": {"auth": {"mode": "token", "token": "first-token-aaaa"}}}"#,
    )
    .unwrap();
    let r = start(dir.path(), &[], &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(connect(r.port, "first-token-aaaa"))["ok"], true);
    let out = bin()
        .arg("--state-dir")
        .arg(dir.path())
        .args(["config", "set", "gateway.auth.token", "second-token-bbbb"])
        .output()
        .unwrap();
    assert!(out.status.success());
    unsafe_kill(r.child.id(), "HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if rt.block_on(connect(r.port, "second-token-bbbb"))["ok"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "new token never accepted");
        std::thread::sleep(Duration::from_millis(200));
    }
    let old = rt.block_on(connect(r.port, "first-token-aaaa"));
    assert_eq!(old["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH");
    let (code, err) = stop(r);
    assert_eq!(code, 0);
    assert!(!err.contains("first-token-aaaa") && !err.contains("second-token-bbbb"));
}

/// `--auth trusted-proxy` is accepted as a mode, and without the proxy's
/// settings the gateway refuses to start naming the key to set.
#[test]
fn auth_flag_takes_trusted_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = clawgate(
        dir.path(),
        &["gateway", "run", "--auth", "trusted-proxy", "--port", "0"],
    );
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("gateway.auth.trustedProxy is not set")
            && err.contains("config set gateway.auth.trustedProxy.userHeader"),
        "{err}"
    );
    let (code, _, err) = clawgate(dir.path(), &["gateway", "run", "--auth", "sso"]);
    assert_ne!(code, 0);
    assert!(err.contains("trusted-proxy"), "{err}");
}
