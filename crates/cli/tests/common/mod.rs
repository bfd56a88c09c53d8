//! Running the real `clawgate` binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The real binary, with no gateway secret or state dir inherited from the
/// environment running the tests, and its directory first on PATH (as
/// after `cargo install`), so the hints it prints say `clawgate`.
pub fn bin() -> Command {
    let exe = assert_cmd::cargo::cargo_bin("clawgate");
    let mut cmd = Command::new(&exe);
    let rest = std::env::var_os("PATH").unwrap_or_default();
    let dirs =
        std::iter::once(exe.parent().unwrap().to_path_buf()).chain(std::env::split_paths(&rest));
    cmd.env("PATH", std::env::join_paths(dirs).unwrap());
    for var in [
        "CLAWGATE_STATE_DIR",
        "CLAWGATE_GATEWAY_URL",
        "CLAWGATE_CLIENT_DIR",
        "CLAWGATE_GATEWAY_TOKEN",
        "OPENCLAW_GATEWAY_TOKEN",
        "CLAWGATE_GATEWAY_PASSWORD",
        "OPENCLAW_GATEWAY_PASSWORD",
        "CLAWGATE_PORT",
        "OPENCLAW_GATEWAY_PORT",
        "CLAWGATE_BIND",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `clawgate --state-dir <state> <args>`: (exit code, stdout, stderr).
pub fn clawgate(state: &Path, args: &[&str]) -> (i32, String, String) {
    let out = bin()
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

pub struct Running {
    pub child: Child,
    pub port: u16,
    pub stdout: String,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

/// A test that fails before `stop` must not leave its gateway running.
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `gateway run --port 0` and waits for the listening line.
pub fn start(state: &Path, extra: &[&str], env: &[(&str, &str)]) -> Running {
    let mut args = vec!["--port", "0"];
    args.extend_from_slice(extra);
    start_with(state, &args, env)
}

/// Starts `gateway run <args>` (no port chosen for it) and waits for the
/// listening line.
pub fn start_with(state: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut cmd = bin();
    cmd.arg("--state-dir")
        .arg(state)
        .args(["gateway", "run"])
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut stdout = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut port = 0;
    while Instant::now() < deadline {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        stdout.push_str(&line);
        if let Some(rest) = line
            .split("listening on ws://127.0.0.1:")
            .nth(1)
            .or_else(|| line.split("listening on wss://127.0.0.1:").nth(1))
        {
            port = rest.trim().parse().unwrap();
        }
        if line.starts_with("Dashboard") || line.starts_with("Open the dashboard") {
            break;
        }
    }
    assert!(port != 0, "gateway did not start: {stdout}");
    // Keep draining both pipes so the child never blocks on a full one.
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = reader.read_to_string(&mut sink);
    });
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut err_pipe = child.stderr.take().unwrap();
    let sink = stderr.clone();
    let stderr_reader = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match err_pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    });
    Running {
        child,
        port,
        stdout,
        stderr,
        stderr_reader: Some(stderr_reader),
    }
}

pub fn stop(mut r: Running) -> (i32, String) {
    unsafe_kill(r.child.id(), "TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = r.child.try_wait().unwrap() {
            if let Some(reader) = r.stderr_reader.take() {
                reader.join().unwrap();
            }
            let err = r.stderr.lock().unwrap().clone();
            return (status.code().unwrap_or(-1), err);
        }
        assert!(
            Instant::now() < deadline,
            "gateway did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn unsafe_kill(pid: u32, signal: &str) {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
}

/// An Ed25519 device identity for connects the tests build by hand.
pub struct Identity {
    pub key: ed25519_dalek::SigningKey,
    /// SHA-256 of the raw public key, hex.
    pub id: String,
    /// The raw public key, base64url.
    pub public_key: String,
}

impl Identity {
    pub fn from_seed(seed: [u8; 32]) -> Identity {
        use base64::Engine;
        use sha2::Digest;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let raw = key.verifying_key().to_bytes();
        Identity {
            id: clawgate_protocol::hex::encode(&sha2::Sha256::digest(raw)),
            public_key: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw),
            key,
        }
    }

    pub fn random() -> Identity {
        use rand::RngCore;
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        Identity::from_seed(seed)
    }

    /// The `device` block of a `cli`/`cli` operator connect from Linux: a
    /// v3 signature over `nonce`, with `token` in the payload's token slot.
    pub fn cli_operator_proof(
        &self,
        scopes: &[String],
        token: &str,
        nonce: &str,
        signed_at_ms: u64,
    ) -> serde_json::Value {
        use base64::Engine;
        use ed25519_dalek::Signer;
        let payload = clawgate_protocol::device_auth::payload_v3(
            &clawgate_protocol::device_auth::PayloadFields {
                device_id: &self.id,
                client_id: "cli",
                client_mode: "cli",
                role: "operator",
                scopes,
                signed_at_ms,
                token,
                nonce,
                platform: "linux",
                device_family: "",
            },
        );
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.key.sign(payload.as_bytes()).to_bytes());
        serde_json::json!({"id": self.id, "publicKey": self.public_key,
            "signature": signature, "signedAt": signed_at_ms, "nonce": nonce})
    }
}

/// One device-less connect over plain ws:// to a gateway on `port` with
/// `auth` (e.g. `{"token": T}` or `{"password": P}`) and `scopes`: the
/// `connect` response frame.
pub async fn connect_raw(port: u16, auth: serde_json::Value, scopes: &[&str]) -> serde_json::Value {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/"))
        .await
        .unwrap();
    let _challenge = ws.next().await.unwrap().unwrap();
    let params = serde_json::json!({
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "cli", "version": "1", "platform": "linux", "mode": "cli"},
        "auth": auth, "scopes": scopes,
    });
    ws.send(Message::Text(
        serde_json::json!({"type": "req", "id": "c", "method": "connect", "params": params})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    serde_json::from_str(reply.to_text().unwrap()).unwrap()
}
