//! One WebSocket connection: open it (TCP, optional TLS, upgrade) and run
//! the handshake up to `hello-ok`.

use std::time::Duration;

use clawgate_protocol::PROTOCOL_VERSION;
use clawgate_protocol::device_auth::{PayloadFields, payload_v3};
use clawgate_protocol::frames::ServerFrame;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::auth::AuthPlan;
use crate::endpoint::Endpoint;
use crate::identity::DeviceIdentity;
use crate::{ClientError, ConnectOptions, tls};

/// An open WebSocket to a gateway (TCP, or TLS over TCP).
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The reference's maximum frame size (25 MiB).
const MAX_MESSAGE: usize = 25 * 1024 * 1024;

/// Opens the socket and performs the upgrade.
pub(crate) async fn open(opts: &ConnectOptions, ep: &Endpoint) -> Result<Ws, ClientError> {
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(MAX_MESSAGE);
    config.max_frame_size = Some(MAX_MESSAGE);
    open_socket(ep, opts.tls_fingerprint.as_ref(), config).await
}

/// Opens a WebSocket to `ep` (pinning `wss://` to `pin` when given) with
/// the codec settings `config`, without any protocol handshake: for
/// programs that speak the protocol themselves (clawgate's relay).
pub async fn open_socket(
    ep: &Endpoint,
    pin: Option<&crate::TlsPin>,
    config: WebSocketConfig,
) -> Result<Ws, ClientError> {
    let request = ep
        .url()
        .into_client_request()
        .map_err(|e| ClientError::InvalidOptions(format!("gateway URL: {e}")))?;
    let connector = if ep.is_tls() {
        Some(Connector::Rustls(tls::client_config(pin)))
    } else {
        Some(Connector::Plain)
    };
    let url = ep.url();
    match tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector)
        .await
    {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => {
            let status = resp.status().as_u16();
            let body = resp
                .body()
                .as_deref()
                .map(|b| {
                    String::from_utf8_lossy(&b[..b.len().min(2048)])
                        .trim()
                        .to_string()
                })
                .unwrap_or_default();
            Err(ClientError::Rejected { status, body })
        }
        // tokio-tungstenite hands rustls handshake failures (a pin or
        // certificate mismatch) back as I/O errors: they are TLS failures,
        // not an unreachable gateway.
        Err(tungstenite::Error::Io(e)) => match tls_failure(&e) {
            Some(err) => Err(err),
            None => Err(ClientError::Unreachable {
                url,
                reason: e.to_string(),
            }),
        },
        Err(tungstenite::Error::Tls(e)) => Err(ClientError::Tls(e.to_string())),
        Err(e) => Err(ClientError::Unreachable {
            url,
            reason: e.to_string(),
        }),
    }
}

/// The rustls error inside an I/O error: the pinned verifier's mismatch
/// as such, anything else as text (`General` errors without rustls's
/// "unexpected error" prefix).
fn tls_failure(e: &std::io::Error) -> Option<ClientError> {
    let msg = match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::Other(other) => match other.0.downcast_ref::<tls::PinMismatch>() {
            Some(mismatch) => return Some(ClientError::TlsPinMismatch(mismatch.clone())),
            None => other.to_string(),
        },
        rustls::Error::General(msg) => msg.clone(),
        other => other.to_string(),
    };
    Some(ClientError::Tls(msg))
}

/// The `connect` handshake: wait for the challenge, send the credentials
/// (signed with the device key when there is one) and return `hello-ok`.
pub(crate) async fn handshake(
    ws: &mut Ws,
    opts: &ConnectOptions,
    plan: &AuthPlan,
    identity: Option<&DeviceIdentity>,
) -> Result<Value, ClientError> {
    let challenge = loop {
        match next_frame(ws).await? {
            ServerFrame::Event(e) if e.event == "connect.challenge" => break e.payload,
            _ => continue,
        }
    };
    let nonce = challenge
        .as_ref()
        .and_then(|p| p.get("nonce"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    let Some(nonce) = nonce else {
        close(ws, 1008, "connect challenge missing nonce").await;
        return Err(ClientError::Protocol(
            "connect challenge missing nonce".into(),
        ));
    };
    let signed_at = challenge
        .as_ref()
        .and_then(|p| p.get("ts"))
        .and_then(Value::as_u64)
        .unwrap_or_else(crate::storage::now_ms);

    let info = &opts.client;
    let mut client = Map::new();
    client.insert("id".into(), json!(info.id));
    if let Some(name) = &info.display_name {
        client.insert("displayName".into(), json!(name));
    }
    client.insert("version".into(), json!(info.version));
    client.insert("platform".into(), json!(info.platform));
    if let Some(family) = &info.device_family {
        client.insert("deviceFamily".into(), json!(family));
    }
    client.insert("mode".into(), json!(info.mode));
    client.insert("instanceId".into(), json!(info.instance_id));

    let mut auth = Map::new();
    for (key, value) in [
        ("token", &plan.token),
        ("bootstrapToken", &plan.bootstrap_token),
        ("deviceToken", &plan.device_token),
        ("password", &plan.password),
    ] {
        if let Some(v) = value {
            auth.insert(key.into(), json!(v));
        }
    }
    let mut params = json!({
        "minProtocol": PROTOCOL_VERSION,
        "maxProtocol": PROTOCOL_VERSION,
        "client": client,
        "caps": [],
        "role": opts.role,
        "scopes": plan.scopes,
        "auth": auth,
    });
    if let Some(id) = identity {
        let payload = payload_v3(&PayloadFields {
            device_id: id.device_id(),
            client_id: &info.id,
            client_mode: &info.mode,
            role: &opts.role,
            scopes: &plan.scopes,
            signed_at_ms: signed_at,
            token: &plan.signature_token,
            nonce: &nonce,
            platform: &info.platform,
            device_family: info.device_family.as_deref().unwrap_or(""),
        });
        params["device"] = json!({
            "id": id.device_id(),
            "publicKey": id.public_key(),
            "signature": id.sign(&payload),
            "signedAt": signed_at,
            "nonce": nonce,
        });
    }
    let id = format!("1:{}", uuid::Uuid::new_v4());
    send(
        ws,
        &json!({"type": "req", "id": id, "method": "connect", "params": params}),
    )
    .await?;
    loop {
        match next_frame(ws).await? {
            ServerFrame::Response(r) if r.id == id => {
                return match (r.ok, r.error) {
                    (true, _) => Ok(r.payload.unwrap_or(Value::Null)),
                    (false, Some(e)) => Err(ClientError::Gateway(Box::new(e))),
                    (false, None) => Err(ClientError::Protocol(
                        "connect refused without an error".into(),
                    )),
                };
            }
            _ => continue,
        }
    }
}

pub(crate) async fn send(ws: &mut Ws, frame: &Value) -> Result<(), ClientError> {
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .map_err(|e| ClientError::Closed {
            code: 1006,
            reason: e.to_string(),
        })
}

/// The next protocol frame; a close or a dead socket is an error.
pub(crate) async fn next_frame(ws: &mut Ws) -> Result<ServerFrame, ClientError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(t.as_str())
                    .map_err(|e| ClientError::Protocol(format!("bad frame: {e}")));
            }
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = close_code_reason(frame);
                return Err(ClientError::Closed { code, reason });
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                return Err(ClientError::Closed {
                    code: 1006,
                    reason: e.to_string(),
                });
            }
            None => {
                return Err(ClientError::Closed {
                    code: 1006,
                    reason: String::new(),
                });
            }
        }
    }
}

/// The code and reason of a close frame (1005 when it carried none).
pub(crate) fn close_code_reason(frame: Option<CloseFrame>) -> (u16, String) {
    frame
        .map(|f| (u16::from(f.code), f.reason.to_string()))
        .unwrap_or((1005, String::new()))
}

/// Closes politely, without waiting long for the peer.
pub(crate) async fn close(ws: &mut Ws, code: u16, reason: &str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_string().into(),
    };
    let _ = tokio::time::timeout(Duration::from_millis(250), ws.close(Some(frame))).await;
}
