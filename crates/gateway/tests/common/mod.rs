//! A real gateway on 127.0.0.1:0 and a real WebSocket client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clawgate_gateway::config::{AuthConfig, AuthMode, GatewayConfig};
use clawgate_gateway::{Gateway, GatewayState, RuntimeOptions};
use clawgate_protocol::Secret;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const TOKEN: &str = "test-token-5f1c2a9e";
pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestGateway {
    pub addr: SocketAddr,
    pub state: Arc<GatewayState>,
    handle: clawgate_gateway::GatewayHandle,
    _dir: tempfile::TempDir,
}

pub fn config(mode: AuthMode) -> (GatewayConfig, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = GatewayConfig::loopback(
        dir.path(),
        AuthConfig::new(
            mode,
            (mode == AuthMode::Token).then(|| Secret::new(TOKEN)),
            (mode == AuthMode::Password).then(|| Secret::new(PASSWORD)),
        ),
    );
    cfg.port = 0;
    (cfg, dir)
}

pub fn fast_options() -> RuntimeOptions {
    RuntimeOptions {
        tick_interval: Duration::from_secs(30),
        handshake_timeout: Duration::from_secs(15),
        ..RuntimeOptions::default()
    }
}

impl TestGateway {
    pub async fn start(mode: AuthMode) -> TestGateway {
        let (cfg, dir) = config(mode);
        Self::start_with(cfg, fast_options(), dir).await
    }

    pub async fn start_with(
        cfg: GatewayConfig,
        options: RuntimeOptions,
        dir: tempfile::TempDir,
    ) -> TestGateway {
        let handle = Gateway::bind(cfg, options)
            .await
            .expect("bind")
            .spawn()
            .expect("spawn");
        TestGateway {
            addr: handle.local_addr(),
            state: handle.state().clone(),
            handle,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops the gateway and waits for `serve` to return.
    pub async fn stop(self) {
        self.handle.stop().await.unwrap();
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.url(), &[]).await.expect("connect")
    }

    pub async fn client_with(&self, headers: &[(&str, &str)]) -> Client {
        Client::connect(&self.url(), headers)
            .await
            .expect("connect")
    }
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub challenge: Value,
}

/// How a socket ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

impl Client {
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Client, WsError> {
        let cfg = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(
            upgrade_request(url, headers)?,
            Some(cfg),
            false,
        )
        .await?;
        Client::after_upgrade(ws).await
    }

    /// Connects from a chosen loopback source address (127.0.0.x).
    pub async fn connect_from(
        local: std::net::IpAddr,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, WsError> {
        let req = upgrade_request(url, headers)?;
        let target: SocketAddr = format!(
            "{}:{}",
            req.uri().host().unwrap(),
            req.uri().port_u16().unwrap()
        )
        .parse()
        .unwrap();
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(local, 0)).unwrap();
        let stream = sock.connect(target).await.map_err(WsError::Io)?;
        let (ws, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream)).await?;
        Client::after_upgrade(ws).await
    }

    /// A client over a socket upgraded by hand.
    pub async fn from_ws(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Client {
        Client::after_upgrade(ws).await.expect("challenge")
    }

    /// Reads the challenge that follows the upgrade.
    async fn after_upgrade(
        mut ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    ) -> Result<Client, WsError> {
        let first = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("challenge in time")
            .expect("challenge frame")?;
        let challenge: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
        Ok(Client { ws, challenge })
    }

    pub fn nonce(&self) -> String {
        self.challenge["payload"]["nonce"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    pub async fn send_json(&mut self, v: &Value) {
        self.send_text(&v.to_string()).await;
    }

    /// The next text frame as JSON, or how the socket closed.
    pub async fn next(&mut self) -> Result<Value, Closed> {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(20), self.ws.next())
                .await
                .expect("frame in time");
            match msg {
                Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(t.as_str()).unwrap()),
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return Err(Closed { code, reason });
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("socket error: {e}"),
                None => {
                    return Err(Closed {
                        code: 1006,
                        reason: String::new(),
                    });
                }
            }
        }
    }

    /// The next response, skipping events.
    pub async fn response(&mut self) -> Result<Value, Closed> {
        loop {
            let v = self.next().await?;
            if v["type"] == "res" {
                return Ok(v);
            }
        }
    }

    /// Waits for the close frame, skipping any other frames.
    pub async fn closed(&mut self) -> Closed {
        loop {
            if let Err(c) = self.next().await {
                return c;
            }
        }
    }

    pub async fn request(&mut self, id: &str, method: &str, params: Option<Value>) -> Value {
        let mut frame = json!({"type": "req", "id": id, "method": method});
        if let Some(p) = params {
            frame["params"] = p;
        }
        self.send_json(&frame).await;
        self.response().await.expect("response")
    }

    /// Sends `connect` and returns the response, plus the close if one followed.
    pub async fn connect_with(&mut self, params: Value) -> Value {
        self.send_json(&json!({"type": "req", "id": "c1", "method": "connect", "params": params}))
            .await;
        self.response().await.expect("connect response")
    }
}

fn upgrade_request(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, WsError> {
    let mut req = url.into_client_request()?;
    for (k, v) in headers {
        let name =
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut()
            .insert(name, HeaderValue::from_str(v).unwrap());
    }
    Ok(req)
}

pub fn client_info(id: &str, mode: &str) -> Value {
    json!({"id": id, "version": "1.0.0", "platform": "linux", "mode": mode})
}

/// Connect params for a device-less client.
pub fn params(id: &str, mode: &str, auth: Value, scopes: &[&str]) -> Value {
    json!({
        "minProtocol": 4,
        "maxProtocol": 4,
        "client": client_info(id, mode),
        "auth": auth,
        "scopes": scopes,
    })
}

pub fn cli_params(token: &str, scopes: &[&str]) -> Value {
    params("cli", "cli", json!({"token": token}), scopes)
}

/// A connected CLI session with the given scopes.
pub async fn operator(gw: &TestGateway, scopes: &[&str]) -> Client {
    let mut c = gw.client().await;
    let res = c.connect_with(cli_params(TOKEN, scopes)).await;
    assert_eq!(res["ok"], true, "{res}");
    c
}

/// Replaces volatile values for snapshots.
pub fn mask(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                // The host's address is there only when it has a route.
                .filter(|(k, _)| k.as_str() != "ip")
                .map(|(k, v)| {
                    let masked = match k.as_str() {
                        "ts" | "uptimeMs" | "connId" | "bootId" | "nonce" | "retryAfterMs"
                        | "onlineSince" | "instanceId" | "configPath" | "stateDir" | "pid"
                        | "rss" | "recoveryScope" | "durationMs" => json!("[masked]"),
                        // The gateway host's own presence entry names this
                        // machine: its name and kernel.
                        "host" | "platform" | "text" => json!("[masked]"),
                        _ => mask(v),
                    };
                    (k.clone(), masked)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(mask).collect()),
        other => other.clone(),
    }
}

pub fn state_dir_of(gw: &TestGateway) -> PathBuf {
    gw.state.config().state_dir.clone()
}

/// A plain HTTP/1.1 GET; returns the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A test device: an Ed25519 identity that signs connects like a real client.
pub struct TestDevice {
    pub key: ed25519_dalek::SigningKey,
    pub id: String,
    pub public_key: String,
}

impl TestDevice {
    pub fn new() -> TestDevice {
        use rand::RngCore;
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        TestDevice::from_seed(seed)
    }

    /// A device with a fixed key (replayable property-test cases).
    pub fn from_seed(seed: [u8; 32]) -> TestDevice {
        use base64::Engine;
        use sha2::Digest;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let raw = key.verifying_key().to_bytes();
        let id = sha2::Sha256::digest(raw)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let public_key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        TestDevice {
            key,
            id,
            public_key,
        }
    }

    /// Adds a signed `device` block (v3 payload) to connect `params`.
    pub fn sign(&self, params: &mut Value, nonce: &str) {
        self.sign_at(params, nonce, now_ms());
    }

    pub fn sign_at(&self, params: &mut Value, nonce: &str, signed_at: u64) {
        use base64::Engine;
        use ed25519_dalek::Signer;
        let auth = &params["auth"];
        let token = auth
            .get("token")
            .or(auth.get("deviceToken"))
            .or(auth.get("bootstrapToken"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let scopes: Vec<String> = params["scopes"]
            .as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        let role = params["role"].as_str().unwrap_or("operator").to_string();
        let payload = clawgate_protocol::device_auth::payload_v3(
            &clawgate_protocol::device_auth::PayloadFields {
                device_id: &self.id,
                client_id: params["client"]["id"].as_str().unwrap(),
                client_mode: params["client"]["mode"].as_str().unwrap(),
                role: &role,
                scopes: &scopes,
                signed_at_ms: signed_at,
                token,
                nonce,
                platform: params["client"]["platform"].as_str().unwrap_or(""),
                device_family: params["client"]["deviceFamily"].as_str().unwrap_or(""),
            },
        );
        let sig = self.key.sign(payload.as_bytes());
        params["device"] = json!({
            "id": self.id,
            "publicKey": self.public_key,
            "signature": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig.to_bytes()),
            "signedAt": signed_at,
            "nonce": nonce,
        });
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

impl Client {
    /// Signs `params` with `device` for this connection's challenge and connects.
    pub async fn connect_device(&mut self, device: &TestDevice, mut params: Value) -> Value {
        device.sign(&mut params, &self.nonce());
        self.connect_with(params).await
    }
}

/// Every audit entry as (action, details), oldest first (up to 1000).
pub async fn audit_actions(op: &mut Client) -> Vec<(String, Value)> {
    let res = op
        .request("a", "audit.list", Some(json!({"limit": 1000})))
        .await;
    res["payload"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["details"].clone(),
            )
        })
        .collect()
}
