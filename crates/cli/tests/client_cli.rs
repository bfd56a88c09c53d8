//! The operator CLI as a client: token drift and the one bounded retry,
//! pairing approval, health/status/call/probe and doctor, with the real
//! binary against a real gateway process.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn write_config(state: &Path, config: Value) {
    std::fs::create_dir_all(state).unwrap();
    std::fs::write(state.join("clawgate.json"), config.to_string()).unwrap();
}

/// Starts the gateway on a free port, then writes that port into its
/// config so the CLI finds the local gateway (the file is re-read by the
/// gateway's reload poll; only the CLI uses the port).
fn start_gw(state: &Path, config: Value, env: &[(&str, &str)]) -> Running {
    write_config(state, config.clone());
    let gw = start(state, &[], env);
    write_config(state, with_port(config, gw.port));
    gw
}

fn with_port(mut config: Value, port: u16) -> Value {
    config["gateway"]["port"] = json!(port);
    config
}

fn token_config(token: &str) -> Value {
    json!({"gateway": {"auth": {"mode": "token", "token": token}}})
}

/// `clawgate_handshakes_total` by outcome, from the gateway's /metrics.
fn handshakes(port: u16) -> std::collections::BTreeMap<String, u64> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .filter_map(|l| l.strip_prefix("clawgate_handshakes_total{outcome=\""))
        .filter_map(|l| {
            let (outcome, rest) = l.split_once("\"}")?;
            Some((outcome.to_string(), rest.trim().parse().ok()?))
        })
        .collect()
}

fn count(m: &std::collections::BTreeMap<String, u64>, k: &str) -> u64 {
    m.get(k).copied().unwrap_or(0)
}

fn total(m: &std::collections::BTreeMap<String, u64>) -> u64 {
    m.values().sum()
}

fn device_id(client_state: &Path) -> String {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(client_state.join("client/identity.json")).unwrap(),
    )
    .unwrap();
    v["deviceId"].as_str().unwrap().to_string()
}

fn cached_tokens(client_state: &Path) -> Vec<Value> {
    std::fs::read_to_string(client_state.join("client/device-tokens.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["tokens"].as_array().cloned())
        .unwrap_or_default()
}

/// Waits for a JSON line from `watch` satisfying `pred`, returning it.
fn expect_line(rx: &mpsc::Receiver<String>, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| panic!("watch printed a non-JSON line: {line}"));
                if pred(&v) {
                    return v;
                }
                seen.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    panic!("no {what} line from watch; saw: {seen:#?}");
}

#[test]
fn token_drift_recovers_once_then_stops_on_a_rotated_device_token() {
    let gw_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let (gw_state, client_state) = (gw_dir.path(), client_dir.path());
    let gw = start_gw(gw_state, token_config("drift-token-A"), &[]);
    let url = format!("ws://127.0.0.1:{}", gw.port);

    // A long-lived client that knows only token A.
    let mut watch = bin()
        .arg("--state-dir")
        .arg(client_state)
        .args([
            "gateway",
            "watch",
            "--json",
            "--url",
            &url,
            "--token",
            "drift-token-A",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    expect_line(&rx, "connected", |v| {
        v["type"] == "connected" && v["authMethod"] == "token"
    });
    assert_eq!(cached_tokens(client_state).len(), 1, "device token cached");
    let id = device_id(client_state);

    // The gateway's token changes to B (config edit + SIGHUP).
    let before = handshakes(gw.port);
    write_config(gw_state, with_port(token_config("drift-token-B"), gw.port));
    unsafe_kill(gw.child.id(), "HUP");
    expect_line(&rx, "disconnected", |v| v["type"] == "disconnected");
    expect_line(&rx, "recovered", |v| {
        v["type"] == "recovered" && v["code"] == "AUTH_TOKEN_MISMATCH"
    });
    expect_line(&rx, "connected again", |v| {
        v["type"] == "connected" && v["authMethod"] == "device-token"
    });
    let after = handshakes(gw.port);
    assert_eq!(
        total(&after) - total(&before),
        2,
        "exactly two connects: the refused one and the retry ({before:?} -> {after:?})"
    );
    assert_eq!(
        count(&after, "AUTH_TOKEN_MISMATCH") - count(&before, "AUTH_TOKEN_MISMATCH"),
        1
    );
    assert_eq!(count(&after, "ok") - count(&before, "ok"), 1);

    // An admin on the gateway host rotates the device's token.
    let (code, out, err) = clawgate(
        gw_state,
        &["devices", "rotate", "--device", &id, "--role", "operator"],
    );
    assert_eq!(code, 0, "{out}{err}");
    expect_line(&rx, "paused", |v| v["type"] == "paused");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = watch.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "watch did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
    // The reader thread may still hold the last lines: read until it sees
    // EOF and drops its sender (the process has exited).
    let mut stdout_rest = String::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        stdout_rest.push_str(&line);
        stdout_rest.push('\n');
    }
    let mut err = String::new();
    watch
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let error: Value = serde_json::from_str(stdout_rest.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|_| panic!("last line is the JSON error: {stdout_rest}"));
    assert_eq!(
        error["error"]["code"], "AUTH_DEVICE_TOKEN_MISMATCH",
        "{error}"
    );
    let next = error["error"]["next"].as_str().unwrap();
    assert!(
        next.contains(&format!(
            "clawgate devices rotate --device {id} --role operator"
        )),
        "{next}"
    );
    // The stale token was deleted, and nothing connects any more.
    assert!(cached_tokens(client_state).is_empty());
    let stopped = handshakes(gw.port);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        total(&handshakes(gw.port)),
        total(&stopped),
        "no reconnects"
    );

    // The same story for a one-shot command: after the rotation the CLI
    // with the old token stops with the rotate guidance (text mode).
    let (code, _, err) = clawgate(
        client_state,
        &[
            "health",
            "--url",
            &url,
            "--token",
            "drift-token-A",
            "--device-identity",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("AUTH_TOKEN_MISMATCH"), "{err}");
    let (_, stderr) = stop(gw);
    for secret in ["drift-token-A", "drift-token-B"] {
        assert!(!stderr.contains(secret), "gateway log leaks a token");
        assert!(!err.contains(secret), "CLI output leaks a token");
    }
}

#[test]
fn a_device_waits_for_approval_then_connects() {
    let gw_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let (gw_state, client_state) = (gw_dir.path(), client_dir.path());
    let token = "pairing-token-1";
    let gw = start_gw(
        gw_state,
        json!({"gateway": {"auth": {"mode": "token", "token": token},
                "nodes": {"pairing": {"autoApproveLocal": false}}}}),
        &[],
    );
    let url = format!("ws://127.0.0.1:{}", gw.port);

    let (code, out, err) = clawgate(
        client_state,
        &[
            "health",
            "--url",
            &url,
            "--token",
            token,
            "--device-identity",
        ],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("[PAIRING_REQUIRED]"), "{err}");
    let rid = err
        .split("clawgate devices approve ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .map(|r| r.trim_end_matches(['.', ';', ')']).to_string())
        .unwrap_or_else(|| panic!("no approve command in: {err}"));
    // The JSON form keeps the gateway's details; the same request is reused.
    let (code, out, _) = clawgate(
        client_state,
        &[
            "health",
            "--url",
            &url,
            "--token",
            token,
            "--json",
            "--device-identity",
        ],
    );
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["code"], "PAIRING_REQUIRED");
    // The approve command names the request's short pairing code.
    assert_eq!(v["error"]["details"]["pairingCode"], rid.as_str());
    assert!(v["error"]["details"]["requestId"].is_string());
    assert!(v["error"]["next"].as_str().unwrap().contains(&rid));

    // The operator on the gateway host approves it (device-less, config token).
    let (code, out, err) = clawgate(gw_state, &["devices", "approve", &rid]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&device_id(client_state)), "{out}");

    let (code, out, err) = clawgate(
        client_state,
        &[
            "health",
            "--url",
            &url,
            "--token",
            token,
            "--device-identity",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("is healthy"), "{out}");
    assert_eq!(cached_tokens(client_state).len(), 1);
    // With only the device token (no shared secret), `doctor` finds it valid.
    let (code, out, err) = clawgate(
        client_state,
        &[
            "doctor",
            "--url",
            &url,
            "--token",
            token,
            "--device-identity",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("cached token") && out.contains("is accepted"),
        "{out}"
    );
    stop(gw);
}

#[test]
fn health_status_call_and_probe() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let token = "ops-token-77";
    let gw = start_gw(state, token_config(token), &[]);
    let url = format!("ws://127.0.0.1:{}", gw.port);
    let mut outputs = String::new();
    let mut run = |args: &[&str]| {
        let r = clawgate(state, args);
        outputs.push_str(&r.1);
        outputs.push_str(&r.2);
        r
    };

    let (code, out, _) = run(&["health"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("Gateway at {url}/ is healthy")),
        "{out}"
    );
    let (code, out, _) = run(&["gateway", "health", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["ok"], true);

    let (code, out, _) = run(&["status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Dashboard") && out.contains("http://127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("Auth         token"), "{out}");
    let (code, out, _) = run(&["gateway", "status", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"]["gateway"]["implementation"], "clawgate");
    assert_eq!(v["auth"]["method"], "token");

    let (code, out, _) = run(&["gateway", "call", "status", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["runtimeVersion"],
        "2026.9.6"
    );
    let (code, out, _) = run(&["gateway", "call", "health"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("Gateway call: health\n{"), "{out}");
    let (code, _, err) = run(&["gateway", "call", "health", "--params", "[1]"]);
    assert_eq!(code, 2, "params must be an object");
    assert!(err.contains("JSON object"), "{err}");
    let (code, _, err) = run(&["gateway", "call", "health", "--params", "{nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("not valid JSON"), "{err}");
    let (code, out, _) = run(&["gateway", "call", "no.such.method", "--json"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["error"]["next"].is_string(), "{v}");

    let (code, out, _) = run(&["gateway", "probe"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Auth:      ok (token as operator)"), "{out}");
    // A wrong token is a failure, not "ok" (fresh client state: no cached
    // device token to fall back on).
    let fresh = tempfile::tempdir().unwrap();
    let (code, out, _) = clawgate(
        fresh.path(),
        &[
            "gateway",
            "probe",
            "--url",
            &url,
            "--token",
            "WRONG-token",
            "--json",
        ],
    );
    assert_eq!(code, 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["reachable"], true);
    assert_eq!(v["error"]["code"], "AUTH_TOKEN_MISMATCH");
    assert_eq!(v["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH");

    // --url needs explicit credentials; nothing listening is "not reachable".
    let (code, _, err) = run(&["health", "--url", &url]);
    assert_eq!(code, 1);
    assert!(
        err.contains("pass --token or --password with --url"),
        "{err}"
    );
    let (code, _, err) = run(&["health", "--url", "ws://127.0.0.1:9", "--token", "x"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("not reachable") && err.contains("clawgate gateway run"),
        "{err}"
    );
    let (code, _, err) = run(&["health", "--url", "ftp://x", "--token", "x"]);
    assert_eq!(code, 1);
    assert!(err.contains("not ws:// or wss://"), "{err}");
    let (code, _, err) = run(&[
        "health",
        "--url",
        "wss://127.0.0.1:9",
        "--token",
        "x",
        "--tls-fingerprint",
        "abc",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("64 hex digits"), "{err}");

    // The target and its secret from the environment (out of `ps`).
    let env_client = tempfile::tempdir().unwrap();
    let out = bin()
        .arg("--state-dir")
        .arg(env_client.path())
        .args(["health", "--json"])
        .env("CLAWGATE_GATEWAY_URL", &url)
        .env("CLAWGATE_GATEWAY_TOKEN", token)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["ok"],
        true
    );
    assert!(
        !env_client.path().join("client/identity.json").exists(),
        "an env URL is a --url target; on loopback with the secret the CLI connects device-less"
    );

    assert!(!outputs.contains(token), "a command printed the token");
    stop(gw);
}

#[test]
fn doctor_finds_token_drift_and_stale_device_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    // Healthy setup.
    let gw = start_gw(state, token_config("doctor-config-token"), &[]);
    let (code, out, err) = clawgate(state, &["doctor"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("[ok  ] Shared secret"), "{out}");
    assert!(out.contains("All checks passed."), "{out}");
    let (code, out, _) = clawgate(state, &["doctor", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true);
    assert!(v["checks"].as_array().unwrap().len() >= 4);

    // A client that paired over --url, whose token an admin then rotated.
    let client = tempfile::tempdir().unwrap();
    let url = format!("ws://127.0.0.1:{}", gw.port);
    let (code, _, err) = clawgate(
        client.path(),
        &[
            "health",
            "--url",
            &url,
            "--token",
            "doctor-config-token",
            "--device-identity",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = device_id(client.path());
    let (code, _, _) = clawgate(
        state,
        &["devices", "rotate", "--device", &id, "--role", "operator"],
    );
    assert_eq!(code, 0);
    let (code, out, _) = clawgate(
        client.path(),
        &[
            "doctor",
            "--url",
            &url,
            "--token",
            "doctor-config-token",
            "--device-identity",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("[FAIL] Device token") && out.contains("AUTH_DEVICE_TOKEN_MISMATCH"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "clawgate devices rotate --device {id} --role operator"
        )),
        "{out}"
    );
    stop(gw);

    // The running gateway uses another token than the config: drift.
    let gw = start_gw(
        state,
        token_config("doctor-config-token"),
        &[("CLAWGATE_GATEWAY_TOKEN", "doctor-env-token")],
    );
    let (code, out, err) = clawgate(state, &["doctor"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("[FAIL] Shared secret: token drift"), "{out}");
    assert!(out.contains("clawgate gateway run"), "{out}");
    for secret in ["doctor-config-token", "doctor-env-token"] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "doctor printed a secret"
        );
    }
    stop(gw);

    // Nothing running: says so and how to start it.
    let (code, out, _) = clawgate(state, &["doctor"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("[FAIL] Gateway") && out.contains("clawgate gateway run"),
        "{out}"
    );

    // A fresh token, saved but never printed.
    let (code, out, err) = clawgate(state, &["doctor", "--generate-gateway-token"]);
    assert_eq!(code, 0, "{err}");
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("clawgate.json")).unwrap())
            .unwrap();
    let new = saved["gateway"]["auth"]["token"].as_str().unwrap();
    assert_ne!(new, "doctor-config-token");
    assert!(new.len() >= 32);
    assert!(!out.contains(new) && !err.contains(new));
}

#[test]
fn approve_latest_waits_for_the_device_to_ask() {
    let gw_dir = tempfile::tempdir().unwrap();
    let client_dir = tempfile::tempdir().unwrap();
    let token = "wait-token-3";
    let gw = start_gw(
        gw_dir.path(),
        json!({"gateway": {"auth": {"mode": "token", "token": token},
                "nodes": {"pairing": {"autoApproveLocal": false}}}}),
        &[],
    );
    let url = format!("ws://127.0.0.1:{}", gw.port);
    let waiter = bin()
        .arg("--state-dir")
        .arg(gw_dir.path())
        .args(["devices", "approve", "--latest", "--wait", "15", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let (code, _, err) = clawgate(
        client_dir.path(),
        &[
            "health",
            "--url",
            &url,
            "--token",
            token,
            "--device-identity",
        ],
    );
    assert_eq!(code, 1, "{err}");
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a preview approves nothing");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["selected"]["deviceId"],
        device_id(client_dir.path()).as_str()
    );
    assert!(
        out.stderr.is_empty(),
        "no progress output when not on a terminal / in --json"
    );
    stop(gw);
}
