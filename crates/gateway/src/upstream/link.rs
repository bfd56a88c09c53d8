//! One upstream socket for one authenticated client: clawgate's upstream
//! identity, its full-scope device token and a fresh signature, asking for
//! exactly the client's approved scopes (never more: the upstream enforces
//! them per connection), with the client's description so the upstream's
//! presence and chat history show who it is.

use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Role as WsRole;

use super::transport::{HandshakeIo, Io};
use clawgate_protocol::connect::{ClientInfo, ConnectAuth, ConnectParams, DeviceProof};
use clawgate_protocol::device_auth::{PayloadFields, payload_v3};
use clawgate_protocol::frames::{ErrorShape, RawResponse, ServerFrame};
use clawgate_protocol::{MAX_PAYLOAD_BYTES, PROTOCOL_VERSION, catalogue};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::{PLATFORM, Upstream};

/// What the upstream connect says about the client.
#[derive(Debug)]
pub struct LinkParams<'a> {
    /// The client's own description from its connect.
    pub client: &'a ClientInfo,
    /// The client's declared capabilities, passed on.
    pub caps: &'a [String],
    /// The client's approved scopes in clawgate: exactly what is asked for.
    pub scopes: &'a [String],
    /// The name the upstream shows (the clawgate device's name, else the
    /// client's own display name).
    pub display_name: Option<String>,
}

/// A relayed client's upstream socket.
pub type UpstreamWs = WebSocketStream<HandshakeIo<Box<dyn Io>>>;

/// An open, authenticated upstream socket and the upstream's `hello-ok`
/// payload (raw JSON text: it is large, and only a few of its fields are
/// changed, see `upstream::hello`).
pub struct Link {
    pub ws: UpstreamWs,
    pub hello: String,
}

/// Why no upstream socket could be opened.
#[derive(Debug, Clone)]
pub enum LinkError {
    /// The upstream is down, busy or did not answer in time (`reason`
    /// never names its address).
    Unavailable(String),
    /// The upstream does not accept clawgate's identity.
    NotPaired(Option<String>),
}

impl LinkError {
    /// The error the client gets.
    pub fn to_error(&self) -> ErrorShape {
        match self {
            LinkError::Unavailable(reason) => catalogue::upstream_unavailable(reason),
            LinkError::NotPaired(code) => catalogue::upstream_not_paired(code.as_deref()),
        }
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            LinkError::Unavailable(_) => "UPSTREAM_UNAVAILABLE",
            LinkError::NotPaired(_) => "UPSTREAM_NOT_PAIRED",
        }
    }
}

/// The codec settings of an upstream socket: the reference's frame limit,
/// and small buffers (one relayed client should cost little while idle).
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(2048)
        // Relayed frames are fed, then flushed once per batch.
        .write_buffer_size(4096)
        .max_message_size(Some(MAX_PAYLOAD_BYTES))
        .max_frame_size(Some(MAX_PAYLOAD_BYTES))
}

/// Browser client ids and modes the upstream accepts only with an `Origin`
/// header (which clawgate never forges), mapped to an id and mode it
/// accepts without one: `gateway-client` in `ui` mode (shown in presence).
/// Worker clients, which the upstream refuses from operators, go as
/// `gateway-client` in `backend` mode. Everything else passes unchanged.
pub fn upstream_client_id(id: &str, mode: &str) -> (String, String) {
    match (id, mode) {
        ("webchat-ui" | "openclaw-control-ui" | "webchat" | "openclaw-browser-copilot", _)
        | (_, "webchat") => ("gateway-client".into(), "ui".into()),
        ("openclaw-worker", _) | (_, "worker") => ("gateway-client".into(), "backend".into()),
        _ => (id.to_string(), mode.to_string()),
    }
}

/// Opens the upstream socket for one client, waiting for a handshake slot
/// (at most `MAX_PARALLEL_HANDSHAKES` in flight) until `deadline`.
pub async fn open(up: &Upstream, p: LinkParams<'_>, deadline: Instant) -> Result<Link, LinkError> {
    let creds = up.credentials().map_err(|e| {
        tracing::warn!(error = %e, "cannot relay: no upstream credentials");
        LinkError::NotPaired(None)
    })?;
    let _permit = tokio::time::timeout_at(deadline, up.handshakes.acquire())
        .await
        .map_err(|_| LinkError::Unavailable("too many connects in progress".into()))?
        .expect("the semaphore is never closed");
    let transport = match tokio::time::timeout_at(deadline, up.transport()).await {
        Err(_) => return Err(LinkError::Unavailable("connect timed out".into())),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "upstream connect failed");
            up.set_up(false);
            let reason = if e
                .get_ref()
                .is_some_and(|i| i.is::<tokio_rustls::rustls::Error>())
            {
                tracing::warn!(error = %e, "upstream TLS handshake failed (check gateway.upstream.tlsFingerprint)");
                "TLS handshake failed"
            } else {
                "not reachable"
            };
            return Err(LinkError::Unavailable(reason.into()));
        }
        Ok(Ok(t)) => t,
    };
    let request = up
        .endpoint
        .url()
        .into_client_request()
        .map_err(|_| LinkError::Unavailable("bad upstream URL".into()))?;
    let upgraded = tokio::time::timeout_at(
        deadline,
        tokio_tungstenite::client_async_with_config(
            request,
            HandshakeIo::new(transport),
            Some(ws_config()),
        ),
    )
    .await;
    let mut ws = match upgraded {
        Err(_) => return Err(LinkError::Unavailable("connect timed out".into())),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp)))
            if resp.status().as_u16() == 503 =>
        {
            return Err(LinkError::Unavailable("busy".into()));
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "upstream upgrade failed");
            return Err(LinkError::Unavailable("upgrade refused".into()));
        }
        Ok(Ok((ws, _))) => ws,
    };
    let result = tokio::time::timeout_at(deadline, handshake(&mut ws, &creds, &p)).await;
    match result {
        Ok(Ok((hello, delivered))) => {
            up.set_up(true);
            Ok(Link {
                ws: shed_handshake_buffers(ws, delivered).await,
                hello,
            })
        }
        Ok(Err(e)) => {
            if matches!(e, LinkError::NotPaired(_)) {
                // The token may have been re-paired on disk meanwhile.
                let _ = up.reload_credentials();
            }
            Err(e)
        }
        Err(_) => Err(LinkError::Unavailable("handshake timed out".into())),
    }
}

/// The socket after the handshake: when the codec holds no unread byte, a
/// fresh codec over the same stream, without the buffer `hello-ok` grew
/// (see `transport.rs`); otherwise the same codec.
async fn shed_handshake_buffers(mut ws: UpstreamWs, delivered: u64) -> UpstreamWs {
    if ws.get_ref().drained_after(delivered) {
        let io = ws.into_inner().into_inner();
        return WebSocketStream::from_raw_socket(
            HandshakeIo::passthrough(io),
            WsRole::Client,
            Some(ws_config()),
        )
        .await;
    }
    ws.get_mut().set_passthrough();
    ws
}

/// The upstream handshake: the challenge, clawgate's signed connect, the
/// upstream's answer (its raw payload) and how many messages were read.
async fn handshake(
    ws: &mut UpstreamWs,
    creds: &super::Credentials,
    p: &LinkParams<'_>,
) -> Result<(String, u64), LinkError> {
    let lost = |_| LinkError::Unavailable("closed during the handshake".into());
    let mut delivered = 0u64;
    let (nonce, ts) = loop {
        let text = next_text(ws, &mut delivered).await.map_err(lost)?;
        match serde_json::from_str::<ServerFrame>(&text) {
            Ok(ServerFrame::Event(e)) if e.event == "connect.challenge" => {
                let payload = e.payload.unwrap_or(Value::Null);
                let nonce = payload.get("nonce").and_then(Value::as_str).unwrap_or("");
                if nonce.is_empty() {
                    return Err(LinkError::Unavailable("challenge without a nonce".into()));
                }
                let ts = payload.get("ts").and_then(Value::as_u64);
                break (nonce.to_string(), ts);
            }
            _ => continue,
        }
    };
    let (client_id, client_mode) = upstream_client_id(&p.client.id, &p.client.mode);
    let signed_at = ts.unwrap_or_else(crate::session::now_ms);
    let token = creds.token.expose();
    let scopes: Vec<String> = p.scopes.to_vec();
    let payload = payload_v3(&PayloadFields {
        device_id: creds.identity.device_id(),
        client_id: &client_id,
        client_mode: &client_mode,
        role: "operator",
        scopes: &scopes,
        signed_at_ms: signed_at,
        token,
        nonce: &nonce,
        platform: PLATFORM,
        device_family: "",
    });
    let params = ConnectParams {
        min_protocol: PROTOCOL_VERSION,
        max_protocol: PROTOCOL_VERSION,
        client: ClientInfo {
            id: client_id,
            display_name: p.display_name.clone(),
            version: p.client.version.clone(),
            build_id: None,
            platform: PLATFORM.into(),
            device_family: None,
            model_identifier: None,
            time_zone: p.client.time_zone.clone(),
            mode: client_mode,
            instance_id: p.client.instance_id.clone(),
        },
        caps: p.caps.to_vec(),
        commands: Vec::new(),
        role: Some("operator".into()),
        scopes: Some(scopes),
        device: Some(DeviceProof {
            id: creds.identity.device_id().to_string(),
            public_key: creds.identity.public_key(),
            signature: creds.identity.sign(&payload),
            signed_at,
            nonce,
        }),
        auth: ConnectAuth {
            device_token: Some(token.to_string()),
            ..ConnectAuth::default()
        },
        locale: None,
        user_agent: None,
    };
    let request = serde_json::json!({
        "type": "req",
        "id": "clawgate-connect",
        "method": "connect",
        "params": params,
    });
    ws.send(Message::Text(request.to_string().into()))
        .await
        .map_err(|_| LinkError::Unavailable("closed during the handshake".into()))?;
    loop {
        let text = next_text(ws, &mut delivered).await.map_err(lost)?;
        let Some(r) = RawResponse::parse(&text) else {
            continue;
        };
        if r.id != "clawgate-connect" {
            continue;
        }
        if r.ok {
            return match r.payload {
                Some(hello) => Ok((hello.get().to_string(), delivered)),
                None => Err(LinkError::Unavailable("hello-ok without a payload".into())),
            };
        }
        let error = r
            .error
            .unwrap_or_else(|| ErrorShape::new("UNAVAILABLE", ""));
        return Err(refusal(&error));
    }
}

/// What an upstream refusal of clawgate's connect means for the client.
fn refusal(error: &ErrorShape) -> LinkError {
    let code = error.detail_code().map(str::to_owned);
    match code.as_deref() {
        Some(
            "AUTH_DEVICE_TOKEN_MISMATCH"
            | "PAIRING_REQUIRED"
            | "AUTH_SCOPE_MISMATCH"
            | "DEVICE_IDENTITY_REQUIRED"
            | "AUTH_TOKEN_MISSING"
            | "AUTH_UNAUTHORIZED",
        ) => {
            tracing::warn!(code = code.as_deref().unwrap_or(""), message = %error.message, "the upstream refused clawgate's identity; run `clawgate upstream pair`");
            LinkError::NotPaired(code)
        }
        Some(c) if c.starts_with("DEVICE_AUTH_") => {
            tracing::warn!(code = c, message = %error.message, "the upstream refused clawgate's device proof");
            LinkError::NotPaired(code)
        }
        Some("AUTH_RATE_LIMITED") => LinkError::Unavailable("rate limited".into()),
        _ => {
            tracing::warn!(code = code.as_deref().unwrap_or(&error.code), message = %error.message, "the upstream refused a relayed connect");
            LinkError::Unavailable(format!(
                "refused the connect ({})",
                code.as_deref().unwrap_or(&error.code)
            ))
        }
    }
}

/// The next text frame during the handshake; `delivered` counts every
/// message read.
async fn next_text(
    ws: &mut UpstreamWs,
    delivered: &mut u64,
) -> Result<tokio_tungstenite::tungstenite::Utf8Bytes, ()> {
    loop {
        let next = ws.next().await;
        if matches!(next, Some(Ok(_))) {
            *delivered += 1;
        }
        match next {
            Some(Ok(Message::Text(t))) => return Ok(t),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Err(()),
            Some(Ok(_)) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_ids_are_mapped() {
        assert_eq!(
            upstream_client_id("openclaw-control-ui", "webchat"),
            ("gateway-client".into(), "ui".into())
        );
        assert_eq!(
            upstream_client_id("webchat", "ui"),
            ("gateway-client".into(), "ui".into())
        );
        assert_eq!(
            upstream_client_id("cli", "cli"),
            ("cli".into(), "cli".into())
        );
        assert_eq!(
            upstream_client_id("openclaw-tui", "ui"),
            ("openclaw-tui".into(), "ui".into())
        );
    }
}
