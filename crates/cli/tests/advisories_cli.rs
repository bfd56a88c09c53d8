//! Advisory regressions that need the real binary (issue 8, item 7; the
//! others are in `crates/gateway/tests/advisories.rs`): the dashboard
//! command, and a config reload through SIGHUP and a config file edit.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use rand::RngCore;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    clawgate_protocol::hex::encode(&b)
}

type Device = common::Identity;

/// One connect (signed by `device` when given) and, when it succeeded, one
/// request `method`: (connect response, method response).
async fn connect(
    port: u16,
    device: Option<&Device>,
    auth: Value,
    scopes: &[&str],
    method: Option<&str>,
) -> (Value, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/"))
        .await
        .unwrap();
    let ch: Value =
        serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    let nonce = ch["payload"]["nonce"].as_str().unwrap().to_string();
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    let mut params = json!({"minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "cli", "version": "1", "platform": "linux", "mode": "cli"},
        "scopes": scopes, "auth": auth});
    if let Some(d) = device {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let token = params["auth"]["token"]
            .as_str()
            .or(params["auth"]["deviceToken"].as_str())
            .unwrap_or("")
            .to_string();
        params["device"] = d.cli_operator_proof(&scopes, &token, &nonce, ts);
    }
    let send = |v: Value| Message::Text(v.to_string().into());
    ws.send(send(
        json!({"type": "req", "id": "c", "method": "connect", "params": params}),
    ))
    .await
    .unwrap();
    let res = read_res(&mut ws).await;
    let mut out = Value::Null;
    if let (true, Some(m)) = (res["ok"] == true, method) {
        ws.send(send(
            json!({"type": "req", "id": "m", "method": m, "params": {}}),
        ))
        .await
        .unwrap();
        out = read_res(&mut ws).await;
    }
    (res, out)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next response frame (events skipped); `Null` once the socket ends.
async fn read_res(ws: &mut Ws) -> Value {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "res" {
                    return v;
                }
            }
            Some(Ok(_)) => {}
            _ => return Value::Null,
        }
    }
}

fn code(res: &Value) -> &str {
    res["error"]["details"]["code"].as_str().unwrap_or("")
}

fn write_config(state: &Path, doc: &Value) {
    std::fs::write(state.join("clawgate.json"), doc.to_string()).unwrap();
}

/// A fake `xdg-open` on PATH that records its arguments; never a browser.
fn fake_opener(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let bin_dir = dir.join("fake-bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let record = dir.join("opened.txt");
    let script = bin_dir.join("xdg-open");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{0}.tmp' && mv '{0}.tmp' '{0}'\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (bin_dir, record)
}

fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{} never appeared", path.display());
}

/// PR #50615 (self-rated 9.0, March 2026): "`openclaw dashboard` logged the
/// `#token=` URL; a read-scoped device could fetch it via `logs.tail`."
///
/// clawgate: `dashboard` prints, opens and logs no token unless asked with
/// `--show-token` (then only on its own stdout, never on stderr or in a
/// log); the first run's generated token is not printed when stdout is not
/// a terminal and never logged; the gateway log (trace level) never holds
/// it; and no session can read the log over the API (no `logs.tail`; an
/// unknown method needs `operator.admin` first).
#[test]
fn tokens_leaked_by_the_dashboard_command() {
    // First run: the token is generated, saved, and shown nowhere.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("gw");
    std::fs::create_dir_all(&state).unwrap();
    let gw = start(
        &state,
        &["--log-format", "json"],
        &[("CLAWGATE_LOG", "trace")],
    );
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("clawgate.json")).unwrap())
            .unwrap();
    let token = doc["gateway"]["auth"]["token"]
        .as_str()
        .expect("a generated token in the config")
        .to_string();
    assert!(token.len() >= 43, "generated token too short");
    assert!(
        !gw.stdout.contains(&token),
        "first run printed the token: {}",
        gw.stdout
    );
    assert!(gw.stdout.contains("auth-token --show"), "{}", gw.stdout);
    doc["gateway"]["port"] = json!(gw.port);
    write_config(&state, &doc);

    // `dashboard`, plain and --json, with a desktop opener present.
    let work = tempfile::tempdir().unwrap();
    let (bin_dir, record) = fake_opener(work.path());
    let path = format!("{}:/usr/bin:/bin", bin_dir.display());
    let run = |args: &[&str]| {
        bin()
            .arg("--state-dir")
            .arg(&state)
            .args(args)
            .env("DISPLAY", ":99")
            .env("PATH", &path)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    for args in [&["dashboard"][..], &["dashboard", "--json"]] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        let out = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!out.contains(&token), "{args:?} printed the token: {out}");
        assert!(!err.contains(&token), "{args:?} logged the token: {err}");
        assert!(!out.contains("/#token="), "{out}");
        let opened = wait_for_file(&record);
        assert_eq!(opened.trim(), format!("http://127.0.0.1:{}/", gw.port));
        std::fs::remove_file(&record).unwrap();
    }
    // --show-token: the fragment on stdout only, nothing on stderr.
    let o = run(&["dashboard", "--no-open", "--show-token"]);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(out.contains(&format!("#token={token}")), "{out}");
    assert!(!err.contains(&token), "{err}");
    assert!(!record.exists(), "--no-open opened a browser");

    // No session can read the log: a read-scoped one is refused for the
    // scope, an admin finds no such method.
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (scopes, want) in [
        (&["operator.read"][..], "missing scope: operator.admin"),
        (&["operator.admin"], "unknown method: logs.tail"),
    ] {
        let (res, out) = rt.block_on(connect(
            gw.port,
            None,
            json!({"token": token}),
            scopes,
            Some("logs.tail"),
        ));
        assert_eq!(res["ok"], true, "{res}");
        assert_eq!(out["error"]["message"], want, "{out}");
        assert!(!out.to_string().contains(&token));
    }
    let (code, stderr) = stop(gw);
    assert_eq!(code, 0);
    assert!(
        stderr.lines().count() > 3,
        "the gateway logged nothing: {stderr}"
    );
    assert!(!stderr.contains(&token), "the gateway log holds the token");
    assert!(
        !stderr.contains("#token="),
        "the gateway log holds a dashboard URL"
    );
}

/// GHSA-68x5-xx89-w9mm (fixed in OpenClaw 2026.4.8): "Auth closure not
/// refreshed on config reload → revoked credentials still accepted until
/// restart."
///
/// Through the real binary: a device token revoked with `clawgate devices
/// revoke` and one of a device removed with `devices remove` stay refused
/// across SIGHUP, a config file edit (picked up without a signal) and a
/// restart; a shared token replaced in the file is refused as soon as the
/// reload happened, without a restart.
#[test]
fn revoked_credentials_accepted_after_a_config_reload_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let t1 = format!("adv-tok1-{}", random_hex(8));
    let t2 = format!("adv-tok2-{}", random_hex(8));
    let t3 = format!("adv-tok3-{}", random_hex(8));
    let mut doc = json!({"gateway": {"auth": {"mode": "token", "token": t1}}});
    write_config(state, &doc);
    let gw = start(state, &[], &[]);
    let port = gw.port;
    doc["gateway"]["port"] = json!(port);
    write_config(state, &doc);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let scopes = ["operator.read"];

    // Three devices paired silently (loopback): one revoked, one removed.
    let devices = [Device::random(), Device::random(), Device::random()];
    let tokens: Vec<String> = devices
        .iter()
        .map(|d| {
            let (res, _) = rt.block_on(connect(port, Some(d), json!({"token": t1}), &scopes, None));
            res["payload"]["auth"]["deviceToken"]
                .as_str()
                .unwrap_or_else(|| panic!("{res}"))
                .to_string()
        })
        .collect();
    let (code_rv, out, err) = clawgate(
        state,
        &[
            "devices",
            "revoke",
            "--device",
            &devices[0].id,
            "--role",
            "operator",
        ],
    );
    assert_eq!(code_rv, 0, "{out}{err}");
    let (code_rm, out, err) = clawgate(state, &["devices", "remove", &devices[1].id]);
    assert_eq!(code_rm, 0, "{out}{err}");

    let dead_are_refused = |port: u16, when: &str| {
        for (d, t) in devices.iter().zip(&tokens).take(2) {
            let (res, _) = rt.block_on(connect(
                port,
                Some(d),
                json!({"deviceToken": t}),
                &scopes,
                None,
            ));
            assert_eq!(
                code(&res),
                "AUTH_DEVICE_TOKEN_MISMATCH",
                "{when}: a dead device token: {res}"
            );
        }
        let (res, _) = rt.block_on(connect(
            port,
            Some(&devices[2]),
            json!({"deviceToken": tokens[2]}),
            &scopes,
            None,
        ));
        assert_eq!(
            res["payload"]["auth"]["method"], "device-token",
            "{when}: {res}"
        );
    };
    let shared_ok = |port: u16, t: &str| {
        rt.block_on(connect(port, None, json!({"token": t}), &[], None))
            .0["ok"]
            == true
    };
    dead_are_refused(port, "after revoke/remove");

    // SIGHUP with nothing changed.
    unsafe_kill(gw.child.id(), "HUP");
    std::thread::sleep(Duration::from_millis(300));
    dead_are_refused(port, "after SIGHUP");
    assert!(shared_ok(port, &t1));

    // A new token in the file, then SIGHUP: the old one is refused as soon
    // as the new one is accepted.
    doc["gateway"]["auth"]["token"] = json!(t2);
    write_config(state, &doc);
    unsafe_kill(gw.child.id(), "HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !shared_ok(port, &t2) {
        assert!(Instant::now() < deadline, "the new token never took effect");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!shared_ok(port, &t1), "the replaced token still works");
    dead_are_refused(port, "after a token change and SIGHUP");

    // A file edit alone (the gateway watches the file).
    doc["gateway"]["auth"]["token"] = json!(t3);
    write_config(state, &doc);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !shared_ok(port, &t3) {
        assert!(
            Instant::now() < deadline,
            "the edited token never took effect"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!shared_ok(port, &t2), "the replaced token still works");
    assert!(!shared_ok(port, &t1));
    dead_are_refused(port, "after a config file edit");

    // A restart does not bring them back either.
    let (code_stop, log) = stop(gw);
    assert_eq!(code_stop, 0, "{log}");
    assert!(log.contains("shared secret changed"), "{log}");
    let gw = start(state, &[], &[]);
    dead_are_refused(gw.port, "after a restart");
    assert!(!shared_ok(gw.port, &t1));
    assert!(shared_ok(gw.port, &t3));
    stop(gw);
}
