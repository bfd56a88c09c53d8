//! `clawgate upstream pair|status` and doctor's fronting checks with the
//! real binary, against a real standalone clawgate gateway acting as the
//! upstream OpenClaw gateway (it speaks the same protocol and pairs the
//! same way).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const UPSTREAM_TOKEN: &str = "upstream-shared-secret-5c1d9e";
const WRONG_TOKEN: &str = "not-the-upstream-token-77aa31";
const FIVE: [&str; 5] = [
    "operator.admin",
    "operator.approvals",
    "operator.pairing",
    "operator.read",
    "operator.write",
];

/// Starts a standalone clawgate as the upstream, with `extra` config under
/// `gateway`; its port is written back to its config so `clawgate devices`
/// run against its state dir finds it.
fn start_upstream(state: &Path, extra: Value) -> Running {
    let mut gateway = json!({"auth": {"token": UPSTREAM_TOKEN}});
    if let (Some(g), Some(e)) = (gateway.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            g.insert(k.clone(), v.clone());
        }
    }
    let mut doc = json!({ "gateway": gateway });
    std::fs::write(state.join("clawgate.json"), doc.to_string()).unwrap();
    let r = start(state, &[], &[]);
    doc["gateway"]["port"] = json!(r.port);
    std::fs::write(state.join("clawgate.json"), doc.to_string()).unwrap();
    r
}

/// A fronting clawgate's config pointing at `url`.
fn write_fronting_config(state: &Path, url: &str) {
    std::fs::write(
        state.join("clawgate.json"),
        json!({"gateway": {"port": free_port(), "auth": {"token": "front-door-token-1"}, "upstream": {"url": url}}})
            .to_string(),
    )
    .unwrap();
}

/// A loopback port nothing listens on.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Runs `clawgate --state-dir <state> <args>` with extra environment.
fn run_env(state: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = bin();
    cmd.arg("--state-dir").arg(state).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn assert_no_file_contains(dir: &Path, secret: &str) {
    for f in files_under(dir) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "{} contains the secret",
            f.display()
        );
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn pair_on_loopback_is_silent_stores_a_full_scope_token_and_is_idempotent() {
    let up_dir = tempfile::tempdir().unwrap();
    let up = start_upstream(up_dir.path(), json!({}));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let url = format!("ws://127.0.0.1:{}", up.port);
    write_fronting_config(state, &url);
    let mut outputs = String::new();

    // No secret anywhere: says where to put it.
    let (code, out, err) = clawgate(state, &["upstream", "pair"]);
    outputs += &(out.clone() + &err);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("CLAWGATE_UPSTREAM_TOKEN") && err.contains("--token-file"),
        "{err}"
    );

    // The wrong upstream token: exit 1, named, and never written anywhere.
    let (code, out, err) = run_env(
        state,
        &["upstream", "pair"],
        &[("CLAWGATE_UPSTREAM_TOKEN", WRONG_TOKEN)],
    );
    outputs += &(out.clone() + &err);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("AUTH_TOKEN_MISMATCH"), "{err}");
    assert!(
        err.contains("upstream gateway's own shared secret"),
        "{err}"
    );
    assert_no_file_contains(state, WRONG_TOKEN);
    assert!(!outputs.contains(WRONG_TOKEN), "{outputs}");

    // Loopback without an Origin: paired silently, from a token file.
    let token_file = dir.path().join("upstream.token");
    std::fs::write(&token_file, format!("{UPSTREAM_TOKEN}\n")).unwrap();
    let (code, out, err) = clawgate(
        state,
        &[
            "upstream",
            "pair",
            "--token-file",
            token_file.to_str().unwrap(),
        ],
    );
    outputs += &(out.clone() + &err);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Paired clawgate with the upstream"), "{out}");
    assert!(out.contains(clawgate_gateway::VERSION) || out.contains("OpenClaw"));
    for s in FIVE {
        assert!(out.contains(s), "{s} in {out}");
    }
    assert!(out.contains("clawgate gateway run will now use"), "{out}");
    std::fs::remove_file(&token_file).unwrap();

    // Identity and token stored privately; the gateway's loader reads them.
    let up_state = state.join("upstream");
    assert_eq!(mode(&up_state), 0o700);
    for f in ["identity.json", "device-tokens.json"] {
        assert_eq!(mode(&up_state.join(f)), 0o600, "{f}");
    }
    let creds = clawgate_gateway::upstream::load_credentials(&up_state, &format!("{url}/"))
        .expect("the gateway finds the credentials");
    let mut scopes = creds.scopes.clone();
    scopes.sort();
    assert_eq!(scopes, FIVE);
    let device_id = creds.identity.device_id().to_string();
    assert!(out.contains(&device_id), "{out}");
    let device_token = creds.token.expose().to_string();
    assert_no_file_contains(state, UPSTREAM_TOKEN);

    // Status: paired, all scopes; the device token is never printed.
    let (code, out, err) = clawgate(state, &["upstream", "status"]);
    outputs += &(out.clone() + &err);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Reachable: yes") && out.contains("protocol 4"),
        "{out}"
    );
    assert!(
        out.contains("Paired:    yes") && out.contains(&device_id),
        "{out}"
    );
    let (code, out, err) = clawgate(state, &["upstream", "status", "--json"]);
    outputs += &(out.clone() + &err);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["reachable"], true);
    assert_eq!(v["paired"], true);
    assert_eq!(v["protocol"], 4);
    assert_eq!(v["deviceId"], device_id.as_str());
    assert_eq!(v["scopes"], json!(FIVE));
    assert_eq!(v["missingScopes"], json!([]));

    // Again: nothing to do, even without the secret; the token is unchanged.
    let (code, out, err) = clawgate(state, &["upstream", "pair"]);
    outputs += &(out.clone() + &err);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("already paired"), "{out}");
    let (code, out, _) = run_env(
        state,
        &["upstream", "pair", "--json"],
        &[("CLAWGATE_UPSTREAM_TOKEN", UPSTREAM_TOKEN)],
    );
    outputs += &out;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["alreadyPaired"], true);
    let again =
        clawgate_gateway::upstream::load_credentials(&up_state, &format!("{url}/")).unwrap();
    assert_eq!(
        again.token.expose(),
        device_token,
        "pairing again keeps the token"
    );

    // The upstream rotates the token away: status says not paired and
    // names the fix; pairing again recovers.
    let (code, out, err) = clawgate(
        up_dir.path(),
        &[
            "devices",
            "rotate",
            "--device",
            &device_id,
            "--role",
            "operator",
            "--scope",
            "operator.read",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = clawgate(state, &["upstream", "status"]);
    outputs += &(out.clone() + &err);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("Paired:    no"), "{out}");
    assert!(
        err.contains("AUTH_DEVICE_TOKEN_MISMATCH") && err.contains("clawgate upstream pair"),
        "{err}"
    );
    let (code, out, err) = run_env(
        state,
        &["upstream", "pair"],
        &[("CLAWGATE_UPSTREAM_TOKEN", UPSTREAM_TOKEN)],
    );
    outputs += &(out.clone() + &err);
    assert_eq!(code, 0, "{out}{err}");
    let renewed =
        clawgate_gateway::upstream::load_credentials(&up_state, &format!("{url}/")).unwrap();
    assert_ne!(renewed.token.expose(), device_token);
    let mut scopes = renewed.scopes.clone();
    scopes.sort();
    assert_eq!(scopes, FIVE);
    let renewed_token = renewed.token.expose().to_string();

    // Doctor in fronting mode: the upstream checks pass (the front door
    // itself is not running here, which is a separate check).
    let (_, out, err) = clawgate(state, &["doctor", "--json"]);
    outputs += &(out.clone() + &err);
    let v: Value = serde_json::from_str(&out).unwrap();
    let check = |name: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} check in {v}"))
    };
    assert_eq!(check("Upstream")["severity"], "ok");
    assert_eq!(check("Upstream pairing")["severity"], "ok");
    assert_eq!(check("Upstream protocol")["severity"], "ok");
    // The upstream test gateway listens on loopback only: no side door.
    assert_eq!(check("Upstream bind")["severity"], "ok", "{v}");

    assert!(!outputs.contains(UPSTREAM_TOKEN), "{outputs}");
    assert!(!outputs.contains(&device_token), "{outputs}");
    assert!(!outputs.contains(&renewed_token), "{outputs}");
    let (_, up_err) = stop(up);
    assert!(!up_err.contains(UPSTREAM_TOKEN));
}

#[test]
fn pairing_required_prints_the_request_and_wait_succeeds_after_approval() {
    let up_dir = tempfile::tempdir().unwrap();
    let up = start_upstream(
        up_dir.path(),
        json!({"nodes": {"pairing": {"autoApproveLocal": false}}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let url = format!("ws://127.0.0.1:{}", up.port);
    let env = [("CLAWGATE_UPSTREAM_TOKEN", UPSTREAM_TOKEN)];

    let (code, out, err) = run_env(state, &["upstream", "pair", "--url", &url], &env);
    assert_eq!(code, 2, "{out}{err}");
    let (_, list, _) = clawgate(up_dir.path(), &["devices", "list", "--json"]);
    let list: Value = serde_json::from_str(&list).unwrap();
    let rid = list["pending"][0]["requestId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&format!("openclaw devices approve {rid}")),
        "{err}"
    );
    assert!(!format!("{out}{err}").contains(UPSTREAM_TOKEN));

    // --json: the request and the command, exit 2.
    let (code, out, _) = run_env(state, &["upstream", "pair", "--url", &url, "--json"], &env);
    assert_eq!(code, 2);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["requestId"], rid.as_str(), "the same request is reused");
    assert_eq!(
        v["approveCommand"],
        format!("openclaw devices approve {rid}")
    );

    // Not paired yet: status says so and names the fix.
    let (code, out, err) = clawgate(state, &["upstream", "status", "--url", &url]);
    assert_eq!(code, 1);
    assert!(out.contains("Paired:    no"), "{out}");
    assert!(err.contains("clawgate upstream pair"), "{err}");

    // --wait keeps asking; approving on the upstream lets it finish.
    let mut child = bin()
        .arg("--state-dir")
        .arg(state)
        .args(["upstream", "pair", "--url", &url, "--wait", "60"])
        .env("CLAWGATE_UPSTREAM_TOKEN", UPSTREAM_TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let (code, out, err) = clawgate(up_dir.path(), &["devices", "approve", &rid]);
    assert_eq!(code, 0, "{out}{err}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "pair --wait did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("Paired clawgate with the upstream"),
        "{stdout}"
    );
    assert!(!format!("{stdout}{stderr}").contains(UPSTREAM_TOKEN));

    let (code, out, err) = clawgate(state, &["upstream", "status", "--url", &url, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["scopes"], json!(FIVE));
    assert_no_file_contains(state, UPSTREAM_TOKEN);
    drop(up);
}

#[test]
fn unreachable_upstream_and_missing_url_fail_with_the_next_step() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let env = [("CLAWGATE_UPSTREAM_TOKEN", UPSTREAM_TOKEN)];

    let (code, out, err) = run_env(state, &["upstream", "pair"], &env);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("clawgate config set gateway.upstream.url ws://127.0.0.1:18790"),
        "{err}"
    );
    let (code, _, err) = clawgate(state, &["upstream", "status"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("clawgate config set gateway.upstream.url"),
        "{err}"
    );

    let url = format!("ws://127.0.0.1:{}", free_port());
    let (code, out, err) = run_env(state, &["upstream", "pair", "--url", &url], &env);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("not reachable"), "{err}");
    assert!(err.contains("openclaw gateway status"), "{err}");
    let (code, out, err) = clawgate(state, &["upstream", "status", "--url", &url]);
    assert_eq!(code, 1);
    assert!(out.contains("Reachable: no"), "{out}");
    assert!(err.contains("not reachable"), "{err}");
    let (code, out, _) = run_env(state, &["upstream", "pair", "--url", &url, "--json"], &env);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert!(
        v["error"]["next"]
            .as_str()
            .unwrap()
            .contains("openclaw gateway status")
    );
    assert!(!format!("{out}{err}").contains(UPSTREAM_TOKEN));
}

#[test]
fn doctor_reports_an_unreachable_upstream_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    write_fronting_config(state, &format!("ws://127.0.0.1:{}", free_port()));
    let (code, out, err) = clawgate(state, &["doctor", "--json"]);
    assert_eq!(code, 1, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let checks = v["checks"].as_array().unwrap();
    let upstream = checks.iter().find(|c| c["name"] == "Upstream").unwrap();
    assert_eq!(upstream["severity"], "error");
    assert!(
        upstream["detail"]
            .as_str()
            .unwrap()
            .contains("not reachable")
    );
    assert!(
        upstream["fix"]
            .as_str()
            .unwrap()
            .contains("openclaw gateway status")
    );
    let pairing = checks
        .iter()
        .find(|c| c["name"] == "Upstream pairing")
        .unwrap();
    assert_eq!(pairing["severity"], "error");
    assert!(
        pairing["fix"]
            .as_str()
            .unwrap()
            .contains("clawgate upstream pair")
    );

    let (code, out, _) = clawgate(state, &["doctor"]);
    assert_eq!(code, 1);
    assert!(out.contains("[FAIL] Upstream: "), "{out}");

    // A non-loopback upstream host is a warning.
    write_fronting_config(state, "ws://192.0.2.77:18790");
    let (_, out, _) = clawgate(state, &["doctor", "--json", "--timeout", "1000"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let bind = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Upstream bind")
        .cloned()
        .unwrap();
    assert_eq!(bind["severity"], "warning");
    assert!(bind["fix"].as_str().unwrap().contains("--bind loopback"));
}
