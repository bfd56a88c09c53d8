//! Secret hygiene (issue 8, item 6): one full scenario against the real
//! binary with trace-level JSON logs, then every place a secret could end
//! up is scanned for every secret that was used.
//!
//! Scenario: shared-token connects; wrong tokens until `AUTH_RATE_LIMITED`;
//! a device asks for pairing and is approved with `clawgate devices
//! approve`; its device token works alone; it rotates its own token in band;
//! `devices rotate` (cross-device, withheld); a fresh token over the shared
//! secret; `devices revoke`; the revoked and a bogus device token refused;
//! re-approval; a remote CLI (`--url --token`) pairs and caches its own
//! device token; SIGHUP to password mode (right and wrong passwords, the
//! old token refused); a config file edit back to token mode with a new
//! token (both old secrets refused).
//!
//! Secrets: both shared tokens, the password, every wrong guess (a guess is
//! often a real secret from elsewhere), every device token minted (from
//! `hello-ok.auth.deviceToken`, the in-band rotation, the CLI's cache),
//! the bogus device token, and both private keys (the test device's and
//! the CLI's `identity.json`).
//!
//! Scanned: every stderr line (each must be a JSON log line) and stdout of
//! the gateway; the SQLite file, `-wal` and `-shm` (while running and after
//! shutdown; the audit log lives in the same file); `clawgate status`,
//! `status --json`, `health --json`, `gateway call status|audit.list
//! --json`, `devices list` and `devices list --json`, `config get
//! gateway.auth`, `doctor`, every CLI error; every error response and close
//! reason a client received. Each secret is looked for as is and in its
//! common encodings (standard and URL-safe base64, hex, percent-encoding;
//! for base64url tokens also their raw bytes and those bytes in hex and
//! standard base64). Device tokens must be stored as SHA-256 hashes: the
//! hash of each token still valid is in the database.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use common::*;
use futures_util::{SinkExt, StreamExt};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::Digest;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    hex(&b)
}

use clawgate_protocol::hex::encode as hex;

type Device = common::Identity;

/// The private key as the client library stores it.
fn private_key(d: &Device) -> String {
    URL_SAFE_NO_PAD.encode(d.key.to_bytes())
}

/// What the clients saw that must hold no secret: error responses, close
/// reasons and RPC results (never `hello-ok`, which carries the device
/// token by design, nor the in-band rotation result).
#[derive(Default)]
struct Seen {
    texts: Vec<String>,
}

struct Ws {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    nonce: String,
}

impl Ws {
    async fn open(port: u16, origin: Option<&str>) -> Ws {
        let mut req = format!("ws://127.0.0.1:{port}/")
            .into_client_request()
            .unwrap();
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let ch: Value =
            serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
        let nonce = ch["payload"]["nonce"].as_str().unwrap().to_string();
        Ws { ws, nonce }
    }

    async fn next(&mut self, seen: &mut Seen) -> Result<Value, (u16, String)> {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("a frame in time");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["type"] == "res" {
                        return Ok(v);
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    let (code, reason) = f
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    seen.texts.push(reason.clone());
                    return Err((code, reason));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Err((1006, String::new())),
            }
        }
    }

    /// Sends connect (signed by `device` if given); the response. An error
    /// response is recorded together with the close that follows it.
    async fn connect(
        &mut self,
        seen: &mut Seen,
        device: Option<&Device>,
        auth: Value,
        scopes: &[&str],
    ) -> Value {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let mut params = json!({"minProtocol": 4, "maxProtocol": 4,
            "client": {"id": "cli", "version": "1", "platform": "linux", "mode": "cli", "displayName": "hygiene"},
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
            params["device"] = d.cli_operator_proof(&scopes, &token, &self.nonce, ts);
        }
        self.ws
            .send(Message::Text(
                json!({"type": "req", "id": "c", "method": "connect", "params": params})
                    .to_string()
                    .into(),
            ))
            .await
            .unwrap();
        let res = self.next(seen).await.expect("connect response");
        if res["ok"] != true {
            seen.texts.push(res.to_string());
            let _ = self.next(seen).await;
        }
        res
    }

    async fn request(&mut self, seen: &mut Seen, method: &str, params: Value) -> Value {
        self.ws
            .send(Message::Text(
                json!({"type": "req", "id": "r", "method": method, "params": params})
                    .to_string()
                    .into(),
            ))
            .await
            .unwrap();
        self.next(seen).await.expect("response")
    }
}

/// Every form of `secret` a careless log or store could hold.
fn encodings(secret: &str) -> Vec<(String, Vec<u8>)> {
    let s = secret.as_bytes();
    let mut out = vec![
        ("as is".to_string(), s.to_vec()),
        ("base64".into(), STANDARD.encode(s).into_bytes()),
        (
            "base64 unpadded".into(),
            STANDARD_NO_PAD.encode(s).into_bytes(),
        ),
        ("base64url".into(), URL_SAFE.encode(s).into_bytes()),
        (
            "base64url unpadded".into(),
            URL_SAFE_NO_PAD.encode(s).into_bytes(),
        ),
        ("hex".into(), hex(s).into_bytes()),
        ("HEX".into(), hex(s).to_uppercase().into_bytes()),
    ];
    let pct: String = secret
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    if pct != secret {
        out.push(("percent-encoded".into(), pct.into_bytes()));
        out.push(("form-encoded".into(), secret.replace(' ', "+").into_bytes()));
    }
    // A base64url token's raw bytes, and those bytes re-encoded.
    if let Ok(raw) = URL_SAFE_NO_PAD.decode(secret)
        && raw.len() >= 16
    {
        out.push(("raw bytes".into(), raw.clone()));
        out.push(("raw bytes as hex".into(), hex(&raw).into_bytes()));
        out.push((
            "raw bytes as base64".into(),
            STANDARD.encode(&raw).into_bytes(),
        ));
        out.push((
            "raw bytes as base64 unpadded".into(),
            STANDARD_NO_PAD.encode(&raw).into_bytes(),
        ));
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.len() <= hay.len() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Fails naming the place, the secret's label and the encoding found.
fn scan(place: &str, hay: &[u8], secrets: &[(String, String)]) {
    for (label, secret) in secrets {
        for (how, needle) in encodings(secret) {
            assert!(!contains(hay, &needle), "{place} holds {label} ({how})");
        }
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

fn set_port(state: &Path, doc: &mut Value, port: u16) {
    doc["gateway"]["port"] = json!(port);
    std::fs::write(state.join("clawgate.json"), doc.to_string()).unwrap();
}

/// Runs the CLI; keeps every output for the scan.
fn cli(outputs: &mut Vec<(String, String)>, state: &Path, args: &[&str]) -> (i32, String) {
    let (code, out, err) = clawgate(state, args);
    let name = format!("clawgate {}", args.join(" "));
    outputs.push((format!("{name} (stdout)"), out.clone()));
    outputs.push((format!("{name} (stderr)"), err));
    (code, out)
}

fn request_id(res: &Value) -> String {
    res["error"]["details"]["requestId"]
        .as_str()
        .unwrap_or_else(|| panic!("no requestId: {res}"))
        .to_string()
}

fn device_token(res: &Value) -> String {
    res["payload"]["auth"]["deviceToken"]
        .as_str()
        .unwrap_or_else(|| panic!("no device token: {res}"))
        .to_string()
}

#[test]
fn no_secret_reaches_logs_store_outputs_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("gw");
    let cli_state = dir.path().join("remote-cli");
    std::fs::create_dir_all(&state).unwrap();
    let token1 = format!("hyg-tok1-{}", random_hex(16));
    let token2 = format!("hyg-tok2-{}", random_hex(16));
    let password = format!("hygiene pw/{}+=", random_hex(12));
    let mut secrets: Vec<(String, String)> = vec![
        ("the first shared token".into(), token1.clone()),
        ("the second shared token".into(), token2.clone()),
        ("the password".into(), password.clone()),
    ];
    let mut doc = json!({"gateway": {
        "auth": {"mode": "token", "token": token1},
        "nodes": {"pairing": {"autoApproveLocal": false}},
    }});
    std::fs::write(state.join("clawgate.json"), doc.to_string()).unwrap();
    let gw = start(
        &state,
        &["--log-format", "json"],
        &[("CLAWGATE_LOG", "trace")],
    );
    let port = gw.port;
    set_port(&state, &mut doc, port);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut seen = Seen::default();
    let mut outputs: Vec<(String, String)> = vec![("gateway stdout".into(), gw.stdout.clone())];

    // Shared token, device-less.
    rt.block_on(async {
        let mut c = Ws::open(port, None).await;
        let res = c
            .connect(
                &mut seen,
                None,
                json!({"token": token1}),
                &["operator.admin"],
            )
            .await;
        assert_eq!(res["ok"], true, "{res}");
        for m in ["health", "status", "system-presence"] {
            let res = c.request(&mut seen, m, json!({})).await;
            seen.texts.push(res.to_string());
        }
    });

    // Wrong tokens until the browser limiter locks this peer out.
    let origin = format!("http://127.0.0.1:{port}");
    rt.block_on(async {
        let mut locked = false;
        for i in 0..12 {
            let guess = format!("hyg-guess{i}-{}", random_hex(8));
            secrets.push((format!("wrong guess {i}"), guess.clone()));
            let mut c = Ws::open(port, Some(&origin)).await;
            let res = c
                .connect(&mut seen, None, json!({"token": guess}), &[])
                .await;
            let code = res["error"]["details"]["code"].clone();
            if code == "AUTH_RATE_LIMITED" {
                locked = true;
                break;
            }
            assert_eq!(code, "AUTH_TOKEN_MISMATCH", "{res}");
        }
        assert!(locked, "never rate limited");
        // A wrong password in the token field, and a loopback (delayed) guess.
        for field in ["password", "token"] {
            let guess = format!("hyg-{field}-guess-{}", random_hex(8));
            secrets.push((format!("wrong {field} guess"), guess.clone()));
            let mut c = Ws::open(port, None).await;
            let res = c.connect(&mut seen, None, json!({field: guess}), &[]).await;
            assert_eq!(res["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH");
        }
    });

    // A device: pairing request, approval through the CLI, device token.
    let dev = Device::random();
    secrets.push(("the test device's private key".into(), private_key(&dev)));
    let scopes = ["operator.read", "operator.pairing"];
    let res = rt.block_on(async {
        let mut c = Ws::open(port, None).await;
        c.connect(&mut seen, Some(&dev), json!({"token": token1}), &scopes)
            .await
    });
    assert_eq!(res["error"]["details"]["code"], "PAIRING_REQUIRED", "{res}");
    let rid = request_id(&res);
    let (code, out) = cli(&mut outputs, &state, &["devices", "approve", &rid]);
    assert_eq!(code, 0, "{out}");
    let mut minted: Vec<String> = Vec::new();
    let dt1 = rt.block_on(async {
        let mut c = Ws::open(port, None).await;
        let res = c
            .connect(&mut seen, Some(&dev), json!({"token": token1}), &scopes)
            .await;
        device_token(&res)
    });
    minted.push(dt1.clone());
    // The device token alone, then a self-rotation delivered in band.
    let dt2 = rt.block_on(async {
        let mut c = Ws::open(port, None).await;
        let res = c
            .connect(&mut seen, Some(&dev), json!({"deviceToken": dt1}), &scopes)
            .await;
        assert_eq!(res["payload"]["auth"]["method"], "device-token", "{res}");
        let res = c
            .request(
                &mut seen,
                "device.token.rotate",
                json!({"deviceId": dev.id, "role": "operator"}),
            )
            .await;
        assert_eq!(res["payload"]["tokenDelivery"], "in-band", "{res}");
        let _ = c.next(&mut seen).await; // 4001 device token rotated
        res["payload"]["token"].as_str().unwrap().to_string()
    });
    minted.push(dt2.clone());
    // The operator rotates it (withheld), a shared-secret connect gets a
    // fresh one, the operator revokes; revoked and bogus tokens refused.
    let (code, out) = cli(
        &mut outputs,
        &state,
        &[
            "devices", "rotate", "--device", &dev.id, "--role", "operator",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let bogus = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    secrets.push(("a bogus device token".into(), bogus.clone()));
    let dt3 = rt.block_on(async {
        for stale in [&dt1, &dt2] {
            let mut c = Ws::open(port, None).await;
            let res = c
                .connect(
                    &mut seen,
                    Some(&dev),
                    json!({"deviceToken": stale}),
                    &scopes,
                )
                .await;
            assert_eq!(
                res["error"]["details"]["code"],
                "AUTH_DEVICE_TOKEN_MISMATCH"
            );
        }
        let mut c = Ws::open(port, None).await;
        let res = c
            .connect(&mut seen, Some(&dev), json!({"token": token1}), &scopes)
            .await;
        device_token(&res)
    });
    minted.push(dt3.clone());
    let (code, out) = cli(
        &mut outputs,
        &state,
        &[
            "devices", "revoke", "--device", &dev.id, "--role", "operator",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let res = rt.block_on(async {
        for t in [&dt3, &bogus] {
            let mut c = Ws::open(port, None).await;
            let res = c
                .connect(&mut seen, Some(&dev), json!({"deviceToken": t}), &scopes)
                .await;
            assert_eq!(
                res["error"]["details"]["code"],
                "AUTH_DEVICE_TOKEN_MISMATCH"
            );
        }
        // Revoked: the shared secret needs a new approval.
        let mut c = Ws::open(port, None).await;
        c.connect(&mut seen, Some(&dev), json!({"token": token1}), &scopes)
            .await
    });
    let rid = request_id(&res);
    let (code, out) = cli(&mut outputs, &state, &["devices", "approve", &rid]);
    assert_eq!(code, 0, "{out}");
    let dt4 = rt.block_on(async {
        let mut c = Ws::open(port, None).await;
        let res = c
            .connect(&mut seen, Some(&dev), json!({"token": token1}), &scopes)
            .await;
        device_token(&res)
    });
    minted.push(dt4.clone());

    // A remote CLI with its own identity (--device-identity: the URL is on
    // loopback): pairing, then its cached token.
    let url = format!("ws://127.0.0.1:{port}");
    let remote = |outputs: &mut Vec<(String, String)>, args: &[&str], secret: &str| {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--url", &url, "--token", secret, "--device-identity"]);
        cli(outputs, &cli_state, &full)
    };
    let (code, _) = remote(
        &mut outputs,
        &["gateway", "call", "health", "--json"],
        &token1,
    );
    assert_eq!(code, 1, "the remote CLI needs pairing first");
    let (_, out) = cli(&mut outputs, &state, &["devices", "list", "--json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    let rid = list["pending"][0]["requestId"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, out) = cli(&mut outputs, &state, &["devices", "approve", &rid]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = remote(
        &mut outputs,
        &["gateway", "call", "health", "--json"],
        &token1,
    );
    assert_eq!(code, 0, "{out}");
    let wrong_remote = format!("hyg-remote-guess-{}", random_hex(8));
    secrets.push((
        "a wrong token given to the CLI".into(),
        wrong_remote.clone(),
    ));
    // With a cached device token the CLI recovers (the one bounded retry);
    // from a fresh state dir it fails with the error text scanned below.
    let (code, out) = remote(&mut outputs, &["gateway", "call", "health"], &wrong_remote);
    assert_eq!(code, 0, "{out}");
    let fresh = dir.path().join("fresh-cli");
    let (code, _) = cli(
        &mut outputs,
        &fresh,
        &[
            "gateway",
            "call",
            "health",
            "--url",
            &url,
            "--token",
            &wrong_remote,
            "--device-identity",
        ],
    );
    assert_eq!(code, 1);
    let identity: Value = serde_json::from_str(
        &std::fs::read_to_string(cli_state.join("client/identity.json")).unwrap(),
    )
    .unwrap();
    secrets.push((
        "the remote CLI's private key".into(),
        identity["privateKey"].as_str().unwrap().to_string(),
    ));
    let cached: Value = serde_json::from_str(
        &std::fs::read_to_string(cli_state.join("client/device-tokens.json")).unwrap(),
    )
    .unwrap();
    let cli_token = cached["tokens"][0]["token"].as_str().unwrap().to_string();
    minted.push(cli_token.clone());

    // SIGHUP into password mode: the password works, a wrong one and the
    // old token do not.
    doc["gateway"]["auth"] = json!({"mode": "password", "password": password});
    std::fs::write(state.join("clawgate.json"), doc.to_string()).unwrap();
    unsafe_kill(gw.child.id(), "HUP");
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut c = Ws::open(port, None).await;
            let res = c
                .connect(&mut seen, None, json!({"password": password}), &[])
                .await;
            if res["ok"] == true {
                break;
            }
            assert!(Instant::now() < deadline, "password never accepted: {res}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let wrong = format!("hyg-pw-guess-{}", random_hex(8));
        secrets.push(("a wrong password".into(), wrong.clone()));
        for auth in [json!({"password": wrong}), json!({"token": token1})] {
            let mut c = Ws::open(port, None).await;
            let res = c.connect(&mut seen, None, auth, &[]).await;
            assert_eq!(res["error"]["details"]["code"], "AUTH_PASSWORD_MISMATCH");
        }
    });
    // A config file edit (no signal) back to token mode with a new token.
    doc["gateway"]["auth"] = json!({"mode": "token", "token": token2});
    std::fs::write(state.join("clawgate.json"), doc.to_string()).unwrap();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut c = Ws::open(port, None).await;
            let res = c
                .connect(
                    &mut seen,
                    None,
                    json!({"token": token2}),
                    &["operator.admin"],
                )
                .await;
            if res["ok"] == true {
                let res = c
                    .request(&mut seen, "audit.list", json!({"limit": 500}))
                    .await;
                seen.texts.push(res.to_string());
                break;
            }
            assert!(Instant::now() < deadline, "new token never accepted: {res}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        for auth in [json!({"token": token1}), json!({"password": password})] {
            let mut c = Ws::open(port, None).await;
            let res = c.connect(&mut seen, None, auth, &[]).await;
            assert_eq!(res["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH");
        }
    });

    // The operator's views.
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["health", "--json"],
        &["gateway", "status"],
        &["gateway", "call", "status", "--json"],
        &[
            "gateway",
            "call",
            "audit.list",
            "--params",
            r#"{"limit":500}"#,
            "--json",
        ],
        &["devices", "list"],
        &["devices", "list", "--json"],
        &["config", "get", "gateway.auth"],
        &["config", "get", "gateway"],
        &["doctor"],
        &["devices", "approve", "no-such-request"],
        &["gateway", "call", "no.such.method"],
    ] {
        cli(&mut outputs, &state, args);
    }
    // The device's and the CLI's tokens are still valid: their hashes are
    // what the store holds.
    let db = state.join("clawgate.sqlite");
    let files_running: Vec<(String, Vec<u8>)> = ["", "-wal", "-shm"]
        .iter()
        .map(|s| {
            let p = format!("{}{s}", db.display());
            (format!("clawgate.sqlite{s} (running)"), read(Path::new(&p)))
        })
        .collect();

    let (code, stderr) = stop(gw);
    assert_eq!(code, 0, "{stderr}");
    let files_stopped: Vec<(String, Vec<u8>)> = ["", "-wal", "-shm"]
        .iter()
        .map(|s| {
            let p = format!("{}{s}", db.display());
            (format!("clawgate.sqlite{s} (stopped)"), read(Path::new(&p)))
        })
        .collect();

    for (i, t) in minted.iter().enumerate() {
        secrets.push((format!("device token {i}"), t.clone()));
    }

    // The log: every line JSON, verbose levels present.
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 20, "too few log lines: {stderr}");
    let mut levels = std::collections::BTreeSet::new();
    for line in &lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        levels.insert(v["level"].as_str().unwrap_or("").to_string());
    }
    assert!(levels.contains("DEBUG"), "no debug lines: {levels:?}");
    for (i, line) in lines.iter().enumerate() {
        scan(&format!("log line {i}: {line}"), line.as_bytes(), &secrets);
    }
    for (place, text) in &outputs {
        scan(place, text.as_bytes(), &secrets);
    }
    for (i, text) in seen.texts.iter().enumerate() {
        scan(
            &format!("client-visible text {i}: {text}"),
            text.as_bytes(),
            &secrets,
        );
    }
    for (place, bytes) in files_running.iter().chain(&files_stopped) {
        scan(place, bytes, &secrets);
    }
    // Hashed, not dropped: the valid tokens' SHA-256 is in the store.
    let all_db: Vec<u8> = files_running
        .iter()
        .chain(&files_stopped)
        .flat_map(|(_, b)| b.clone())
        .collect();
    assert!(!all_db.is_empty(), "no database found");
    for t in [&dt4, &cli_token] {
        let h = hex(&sha2::Sha256::digest(t.as_bytes()));
        assert!(
            contains(&all_db, h.as_bytes()),
            "no SHA-256 of a valid token in the store"
        );
    }
    // The scans above looked at something real.
    assert!(
        outputs
            .iter()
            .any(|(p, t)| p.contains("devices list --json") && t.contains(&dev.id))
    );
    assert!(seen.texts.iter().any(|t| t.contains("AUTH_RATE_LIMITED")));
    assert!(
        seen.texts.iter().any(|t| t.contains("auth.secret_changed")),
        "audit.list seen"
    );
}
