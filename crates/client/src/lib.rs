//! Async client for OpenClaw-protocol gateways.
//!
//! This first cut connects with the shared secret (no device identity, as
//! the reference CLI does on loopback), runs requests and reports failures
//! as structured errors. The device identity, token cache, the one bounded
//! retry and reconnects come with the client library work.

use std::time::Duration;

use clawgate_protocol::frames::{ErrorShape, ServerFrame};
use clawgate_protocol::{PROTOCOL_VERSION, Secret};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `ws://host:port/`.
    pub url: String,
    pub token: Option<Secret>,
    pub password: Option<Secret>,
    pub scopes: Vec<String>,
    /// Per step (handshake, each request).
    pub timeout: Duration,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered at the URL.
    #[error("gateway unreachable at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The gateway refused the connect or a request, with its structured error.
    #[error("{}", .0.message)]
    Gateway(Box<ErrorShape>),
    /// The socket closed without an error response.
    #[error("gateway closed the connection ({code}{})", if .reason.is_empty() { String::new() } else { format!(": {}", .reason) })]
    Closed { code: u16, reason: String },
    #[error("gateway did not answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected reply from the gateway: {0}")]
    Protocol(String),
}

/// An authenticated connection.
pub struct Session {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    hello: Value,
    next_id: u64,
    timeout: Duration,
}

impl Session {
    /// Connects and completes the handshake.
    pub async fn connect(opts: &ConnectOptions) -> Result<Session, ClientError> {
        let (ws, _) =
            tokio::time::timeout(opts.timeout, tokio_tungstenite::connect_async(&opts.url))
                .await
                .map_err(|_| ClientError::Timeout(opts.timeout))?
                .map_err(|e| ClientError::Unreachable {
                    url: opts.url.clone(),
                    reason: e.to_string(),
                })?;
        let mut session = Session {
            ws,
            hello: Value::Null,
            next_id: 0,
            timeout: opts.timeout,
        };
        let challenge = session.next_frame().await?;
        if !matches!(&challenge, ServerFrame::Event(e) if e.event == "connect.challenge") {
            return Err(ClientError::Protocol("expected connect.challenge".into()));
        }
        let mut auth = json!({});
        if let Some(t) = &opts.token {
            auth["token"] = json!(t.expose());
        }
        if let Some(p) = &opts.password {
            auth["password"] = json!(p.expose());
        }
        let params = json!({
            "minProtocol": PROTOCOL_VERSION,
            "maxProtocol": PROTOCOL_VERSION,
            "client": {
                "id": "cli",
                "version": env!("CARGO_PKG_VERSION"),
                "platform": std::env::consts::OS,
                "mode": "cli",
            },
            "role": "operator",
            "scopes": opts.scopes,
            "auth": auth,
        });
        session.hello = session.call("connect", params).await?;
        Ok(session)
    }

    /// The `hello-ok` payload.
    pub fn hello(&self) -> &Value {
        &self.hello
    }

    /// Sends a request and waits for its response, skipping events.
    pub async fn request(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        self.call(method, params).await
    }

    async fn call(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        self.next_id += 1;
        let id = format!("{}:{}", self.next_id, uuid::Uuid::new_v4());
        let frame = json!({"type": "req", "id": id, "method": method, "params": params});
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        loop {
            match self.next_frame().await? {
                ServerFrame::Response(r) if r.id == id => {
                    return match (r.ok, r.error) {
                        (true, _) => Ok(r.payload.unwrap_or(Value::Null)),
                        (false, Some(e)) => Err(ClientError::Gateway(Box::new(e))),
                        (false, None) => Err(ClientError::Protocol("error without details".into())),
                    };
                }
                _ => continue,
            }
        }
    }

    async fn next_frame(&mut self) -> Result<ServerFrame, ClientError> {
        loop {
            let msg = tokio::time::timeout(self.timeout, self.ws.next())
                .await
                .map_err(|_| ClientError::Timeout(self.timeout))?;
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str(t.as_str())
                        .map_err(|e| ClientError::Protocol(e.to_string()));
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return Err(ClientError::Closed { code, reason });
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ClientError::Protocol(e.to_string())),
                None => {
                    return Err(ClientError::Closed {
                        code: 1006,
                        reason: String::new(),
                    });
                }
            }
        }
    }

    /// Closes the socket politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
