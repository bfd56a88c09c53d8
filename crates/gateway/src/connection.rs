//! One WebSocket connection: challenge, the first-frame rules, the connect
//! decision, `hello-ok`, then the authenticated request/event loop.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use clawgate_protocol::connect::{ConnectParams, parse_connect_params};
use clawgate_protocol::frames::{
    ErrorShape, Event, FrameError, Request, Response, error_code, event_json_with_seq,
    parse_request,
};
use clawgate_protocol::{
    MAX_PAYLOAD_BYTES, MAX_PREAUTH_PAYLOAD_BYTES, MAX_UNAUTHORIZED_ROLE_CALLS, PROTOCOL_VERSION,
    catalogue, close_code, scopes, truncate_close_reason,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role as WsRole, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, error::CapacityError};
use tracing::{debug, info};

use crate::auth::{self, Authenticated, PeerContext};
use crate::hub::{ConnInfo, ConnReceiver, Outbound, conn_channel};
use crate::listener::UnauthSlot;
use crate::methods::{self, Caller, Refusal};
use crate::preauth_io::{PreauthGuardedIo, is_preauth_too_large};
use crate::state::{GatewayState, now_ms};

type Ws<S> = WebSocketStream<PreauthGuardedIo<S>>;

/// The WebSocket settings for every connection: small read buffer (most
/// frames are tiny, idle connections should cost little) and the post-auth
/// size limit; the pre-auth limit is enforced under the codec.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        // Also the most read per syscall: 2 KiB keeps an idle session small
        // (4 KiB would add ~2 KB each) while a window of pipelined requests
        // still arrives in one or two reads (512 bytes cost ~25% RPC rate).
        .read_buffer_size(2048)
        // Frames fed without a flush (an error response before its close
        // frame, a ping before a tick) go out in one write.
        .write_buffer_size(4096)
        .max_message_size(Some(MAX_PAYLOAD_BYTES))
        .max_frame_size(Some(MAX_PAYLOAD_BYTES))
}

async fn close<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut Ws<S>, code: u16, reason: &str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: truncate_close_reason(reason).to_string().into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(Some(frame))).await;
    // Let the peer's close reply arrive so the TCP close is clean.
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

async fn send_text<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut Ws<S>,
    text: String,
) -> Result<(), WsError> {
    ws.send(Message::Text(text.into())).await
}

/// Writes one text frame straight to the socket instead of through
/// tungstenite's write buffer, which keeps the capacity of the largest
/// frame it ever held for the life of the connection. `hello-ok` is the
/// largest frame most connections ever get, so an idle connection stays
/// ~2 KB smaller. Safe because everything written before was flushed.
async fn send_unbuffered<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut Ws<S>,
    text: String,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let frame = Frame::message(text, OpCode::Data(Data::Text), true);
    let mut bytes = Vec::with_capacity(frame.len());
    frame.format(&mut bytes).map_err(std::io::Error::other)?;
    let io = ws.get_mut();
    io.write_all(&bytes).await?;
    io.flush().await
}

/// Sends an error response then closes with `code` and the message.
async fn reject<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut Ws<S>,
    id: &str,
    error: ErrorShape,
    code: u16,
) {
    let reason = error.message.clone();
    // Fed, not sent: the close below flushes both in one write.
    let _ = ws
        .feed(Message::Text(Response::err(id, error).to_json().into()))
        .await;
    close(ws, code, &reason).await;
}

/// What the pre-auth phase ended with.
enum Preauth {
    /// Authenticated and registered with the hub (registry key, queue).
    Authenticated(Box<(Authenticated, u64, ConnReceiver)>),
    Closed,
}

/// Serves one upgraded connection to the end.
pub async fn serve<S>(state: Arc<GatewayState>, io: S, peer: PeerContext, slot: UnauthSlot)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (io, armed) = PreauthGuardedIo::new(io, MAX_PREAUTH_PAYLOAD_BYTES);
    let mut ws = WebSocketStream::from_raw_socket(io, WsRole::Server, Some(ws_config())).await;
    state.metrics.connection_opened();
    let conn_id = uuid::Uuid::new_v4().to_string();
    let mut slot = Some(slot);
    // Each phase is boxed: the task itself stays small, and the larger
    // pre-auth state is freed once the connection is authenticated.
    let outcome = Box::pin(preauth(&state, &mut ws, &peer, &conn_id, &mut slot)).await;
    drop(slot);
    let (authenticated, key, receiver) = match outcome {
        Preauth::Authenticated(b) => *b,
        Preauth::Closed => {
            state.metrics.connection_closed(false);
            return;
        }
    };
    // The codec's read buffer grew to the size of the connect frame and
    // would keep that capacity for the whole session. When nothing but that
    // frame has been read (no pipelined bytes to lose), start the session
    // with a fresh codec instead.
    if ws.get_ref().read_exactly_one_frame() {
        ws = WebSocketStream::from_raw_socket(ws.into_inner(), WsRole::Server, Some(ws_config()))
            .await;
    }
    armed.store(false, Ordering::Relaxed);
    Box::pin(authenticated_loop(
        &state,
        &mut ws,
        peer,
        conn_id,
        authenticated,
        key,
        receiver,
    ))
    .await;
    state.metrics.connection_closed(true);
}

async fn preauth<S: AsyncRead + AsyncWrite + Unpin>(
    state: &GatewayState,
    ws: &mut Ws<S>,
    peer: &PeerContext,
    conn_id: &str,
    slot: &mut Option<UnauthSlot>,
) -> Preauth {
    let nonce = uuid::Uuid::new_v4().to_string();
    let challenge = Event {
        kind: clawgate_protocol::frames::EventTag::Event,
        event: "connect.challenge".into(),
        payload: Some(json!({"nonce": nonce, "ts": now_ms(), "capabilities": []})),
        seq: None,
    };
    if send_text(ws, challenge.to_json()).await.is_err() {
        return Preauth::Closed;
    }
    let mut shutdown = state.shutdown_signal();
    let deadline = tokio::time::Instant::now() + state.options.handshake_timeout;
    // At the global cap of unauthenticated sockets the oldest is evicted
    // to make room for a newer one (see `listener::UnauthSlots`).
    let mut evicted = std::pin::pin!(UnauthSlot::evicted_if_held(slot.as_ref()));
    loop {
        let next = tokio::select! {
            n = tokio::time::timeout_at(deadline, ws.next()) => n,
            _ = shutdown.changed() => {
                close(ws, close_code::SERVICE_RESTART, "service restart").await;
                return Preauth::Closed;
            }
            _ = &mut evicted => {
                debug!(peer = %peer.ip, "unauthenticated socket evicted for a newer one");
                state.metrics.handshake("evicted");
                slot.take();
                close(ws, close_code::TRY_AGAIN_LATER, "too many unauthenticated connections").await;
                return Preauth::Closed;
            }
        };
        let text = match next {
            Err(_) => {
                debug!(peer = %peer.ip, "handshake timeout");
                state.metrics.handshake("timeout");
                close(ws, close_code::NORMAL, "").await;
                return Preauth::Closed;
            }
            Ok(None) => return Preauth::Closed,
            Ok(Some(Err(err))) => {
                if is_oversize(&err) {
                    state.metrics.handshake("oversize");
                    // An empty reason, as the reference sends on the wire (its
                    // WebSocket library's limit fires before its own reason).
                    close(ws, close_code::MESSAGE_TOO_BIG, "").await;
                }
                return Preauth::Closed;
            }
            Ok(Some(Ok(Message::Text(t)))) => t.as_str().to_owned(),
            Ok(Some(Ok(Message::Binary(b)))) => match String::from_utf8(b.to_vec()) {
                Ok(t) => t,
                Err(_) => {
                    close(ws, close_code::NORMAL, "").await;
                    return Preauth::Closed;
                }
            },
            Ok(Some(Ok(Message::Close(_)))) => return Preauth::Closed,
            Ok(Some(Ok(_))) => continue,
        };
        return handle_first_frame(state, ws, peer, &nonce, conn_id, slot, &text).await;
    }
}

fn is_oversize(err: &WsError) -> bool {
    match err {
        WsError::Io(e) => is_preauth_too_large(e),
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => true,
        _ => false,
    }
}

async fn handle_first_frame<S: AsyncRead + AsyncWrite + Unpin>(
    state: &GatewayState,
    ws: &mut Ws<S>,
    peer: &PeerContext,
    nonce: &str,
    conn_id: &str,
    slot: &mut Option<UnauthSlot>,
    text: &str,
) -> Preauth {
    let request = match parse_request(text) {
        Ok(r) => r,
        Err(FrameError::NotJson) => {
            state.metrics.handshake("invalid_json");
            close(ws, close_code::NORMAL, "").await;
            return Preauth::Closed;
        }
        Err(FrameError::Invalid { .. }) => {
            state.metrics.handshake("invalid_frame");
            close(ws, close_code::POLICY_VIOLATION, "invalid request frame").await;
            return Preauth::Closed;
        }
    };
    if request.method != "connect" {
        state.metrics.handshake("not_connect");
        let e = ErrorShape::invalid_request("invalid handshake: first request must be connect");
        reject(ws, &request.id, e, close_code::POLICY_VIOLATION).await;
        return Preauth::Closed;
    }
    let params = match parse_connect_params(request.params.as_ref()) {
        Ok(p) => p,
        Err(message) => {
            state.metrics.handshake("invalid_params");
            let e = ErrorShape::invalid_request(message);
            reject(ws, &request.id, e, close_code::POLICY_VIOLATION).await;
            return Preauth::Closed;
        }
    };
    if !params.protocol_accepted() {
        state.metrics.handshake("PROTOCOL_MISMATCH");
        let e = catalogue::protocol_mismatch(params.protocol_mismatch_details());
        reject(ws, &request.id, e, close_code::PROTOCOL_ERROR).await;
        return Preauth::Closed;
    }
    let Some(role) = params.role() else {
        state.metrics.handshake("invalid_role");
        let e = ErrorShape::invalid_request("invalid role");
        reject(ws, &request.id, e, close_code::POLICY_VIOLATION).await;
        return Preauth::Closed;
    };
    if let Some(origin) = &peer.origin
        && let Err(why) = auth::check_origin(origin, peer, &state.config.control_ui.allowed_origins)
    {
        state.metrics.handshake("CONTROL_UI_ORIGIN_NOT_ALLOWED");
        info!(peer = %peer.ip, "connect refused: origin not allowed");
        state.audit_auth_failure("CONTROL_UI_ORIGIN_NOT_ALLOWED", peer, None);
        let e = catalogue::origin_not_allowed(why);
        reject(ws, &request.id, e, close_code::POLICY_VIOLATION).await;
        return Preauth::Closed;
    }
    if state.is_shutting_down() {
        reject(ws, &request.id, restarting(), close_code::TRY_AGAIN_LATER).await;
        return Preauth::Closed;
    }
    let decision = auth::authenticate(state, &params, role, peer, nonce);
    // The socket is no longer waiting to authenticate: its slot is freed
    // before answering, so a client that reconnects at once is not counted
    // twice (a refusal that is delayed keeps it while it waits).
    let held = slot.take();
    match decision {
        Ok(authenticated) => {
            drop(held);
            // Registered before hello-ok goes out, so a rotation, revocation
            // or secret change that lands from here on reaches this session.
            let (sender, receiver) = conn_channel();
            let key = state
                .hub
                .register(conn_info(conn_id, peer, &authenticated, &params), sender);
            // Shutdown may have begun while this connect was decided (after
            // the check above): its `shutdown` broadcast may have missed
            // this session, so it is refused like any connect in shutdown.
            if state.is_shutting_down() {
                state.hub.unregister(key);
                reject(ws, &request.id, restarting(), close_code::TRY_AGAIN_LATER).await;
                return Preauth::Closed;
            }
            let hello = hello_ok(state, &request, &authenticated, conn_id);
            if send_unbuffered(ws, hello).await.is_err() {
                state.hub.unregister(key);
                return Preauth::Closed;
            }
            state.metrics.handshake("ok");
            debug!(peer = %peer.ip, client = %params.client.id, mode = %params.client.mode, role = %role, method = authenticated.method, "connected");
            Preauth::Authenticated(Box::new((authenticated, key, receiver)))
        }
        Err(rejection) => {
            let code = rejection
                .error
                .detail_code()
                .and_then(|c| catalogue::entry(c).map(|e| e.code))
                .unwrap_or("rejected");
            state.metrics.handshake(code);
            if code.starts_with("AUTH_") {
                state.metrics.auth_failure(code);
            }
            if code.starts_with("AUTH_") || code.starts_with("DEVICE_AUTH_") {
                let claimed = params.device.as_ref().map(|d| d.id.as_str());
                state.audit_auth_failure(code, peer, claimed);
            }
            if let Some(suppressed) = state.rejection_log_budget() {
                if suppressed > 0 {
                    info!(peer = %peer.ip, client = %params.client.id, code, suppressed, "connect rejected (earlier rejections not logged: see the metrics and audit log)");
                } else {
                    info!(peer = %peer.ip, client = %params.client.id, code, "connect rejected");
                }
            }
            let mut delay = rejection.delay;
            if code == "AUTH_RATE_LIMITED" {
                delay = delay.max(state.options.rate_limited_delay);
            }
            if !delay.is_zero() {
                // Waiting with the slot held keeps delayed refusals within
                // the per-IP and global caps; at the global cap they are
                // evicted like any old unauthenticated socket.
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = UnauthSlot::evicted_if_held(held.as_ref()) => {}
                }
            }
            drop(held);
            match rejection.close_reason {
                Some(reason) => {
                    let _ = ws
                        .feed(Message::Text(
                            Response::err(&request.id, rejection.error).to_json().into(),
                        ))
                        .await;
                    close(ws, rejection.close_code, &reason).await;
                }
                None => reject(ws, &request.id, rejection.error, rejection.close_code).await,
            }
            Preauth::Closed
        }
    }
}

/// The answer to a connect while the gateway shuts down.
fn restarting() -> ErrorShape {
    let mut e = ErrorShape::new(
        error_code::UNAVAILABLE,
        "connect unavailable during gateway restart",
    );
    e.retryable = Some(true);
    e.retry_after_ms = Some(1000);
    e
}

/// `hello-ok.auth.recoveryScope`: an opaque handle a client can use to tell
/// whether two sessions share the same recovery boundary.
fn recovery_scope(generation: u64, device_id: Option<&str>) -> String {
    let material = json!(["shared-auth", generation, device_id.unwrap_or("")]).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(material.as_bytes()))
}

fn hello_ok(
    state: &GatewayState,
    request: &Request,
    auth: &Authenticated,
    conn_id: &str,
) -> String {
    let admin = scopes::satisfies(&auth.scopes, scopes::ADMIN);
    let can_read = scopes::satisfies(&auth.scopes, scopes::READ);
    let mut snapshot = json!({
        "suspension": {"phase": "accepting"},
        "presence": if can_read { Value::Array(methods::presence_list(state)) } else { json!([]) },
        "health": methods::health_summary(state),
        "stateVersion": {"presence": state.hub.presence_version(), "health": 1},
        "uptimeMs": state.uptime_ms(),
        "sessionDefaults": {
            "defaultAgentId": "main",
            "mainKey": "main",
            "mainSessionKey": "agent:main:main",
            "scope": "per-sender",
            "modelConfigured": false,
            "selectionRequired": false,
            "ownership": "sole",
        },
    });
    // clawgate keeps no config revision hash (the reference's schema allows null).
    snapshot["appliedConfigHash"] = Value::Null;
    // As in the reference, the auth mode and paths are for admins only.
    if admin {
        snapshot["authMode"] = json!(state.auth().config.mode.as_str());
        snapshot["configPath"] = json!(state.config.config_path.display().to_string());
        snapshot["stateDir"] = json!(state.config.state_dir.display().to_string());
    }
    let mut auth_json = json!({
        "method": auth.method,
        "role": auth.role.as_str(),
        "scopes": auth.scopes,
    });
    if auth.role == clawgate_protocol::connect::Role::Operator {
        auth_json["recoveryScope"] = json!(recovery_scope(
            auth.shared_generation.unwrap_or(0),
            auth.device_id.as_deref()
        ));
    }
    if let Some((token, issued_at)) = &auth.issued_token {
        auth_json["deviceToken"] = json!(token);
        auth_json["issuedAtMs"] = json!(issued_at);
        if auth.role == clawgate_protocol::connect::Role::Operator {
            // No verified users in clawgate: an operator with a device token
            // may migrate its recovery scope, as in the reference.
            auth_json["recoveryMigrationAllowed"] = json!(true);
        }
    }
    let tick_ms = state.options.tick_interval.as_millis() as u64;
    let mut payload = json!({
        "type": "hello-ok",
        "protocol": PROTOCOL_VERSION,
        "server": {
            "version": crate::COMPAT_VERSION,
            "buildId": format!("clawgate-{}", crate::VERSION),
            "bootId": state.boot_id,
            "connId": conn_id,
        },
        "features": {
            "methods": methods::method_names(),
            "events": crate::EVENTS,
            "capabilities": [],
        },
        "snapshot": snapshot,
        "auth": auth_json,
        "policy": {
            "maxPayload": MAX_PAYLOAD_BYTES,
            "maxBufferedBytes": clawgate_protocol::MAX_BUFFERED_BYTES,
            "tickIntervalMs": tick_ms,
            "attachments": {"maxBytes": 0, "maxImageBytes": 0},
            "allowedSessionVisibilities": [],
            "hasMultipleSessionSharingIdentities": false,
        },
    });
    // Plugin widgets, link readers and plugin surfaces: clawgate has no
    // plugins, so present and empty.
    payload["controlUiWidgetKinds"] = json!([]);
    payload["controlUiLinkReaders"] = json!([]);
    payload["pluginSurfaceUrls"] = json!({});
    // The Control UI is built into the binary, which the reference calls "bundled".
    if state.config.control_ui.enabled {
        payload["server"]["controlUiBuildSource"] = json!("bundled");
    }
    Response::ok(request.id.clone(), payload).to_json()
}

fn conn_info(
    conn_id: &str,
    peer: &PeerContext,
    auth: &Authenticated,
    params: &ConnectParams,
) -> ConnInfo {
    ConnInfo {
        conn_id: conn_id.to_string(),
        role: auth.role,
        scopes: auth.scopes.clone(),
        client_id: params.client.id.clone(),
        client_mode: params.client.mode.clone(),
        display_name: params.client.display_name.clone(),
        version: params.client.version.clone(),
        platform: params.client.platform.clone(),
        device_family: params.client.device_family.clone(),
        model_identifier: params.client.model_identifier.clone(),
        instance_id: params.client.instance_id.clone(),
        device_id: auth.device_id.clone(),
        remote_ip: peer.ip,
        connected_at_ms: now_ms(),
        shared_auth_generation: auth.shared_generation,
    }
}

async fn authenticated_loop<S: AsyncRead + AsyncWrite + Unpin>(
    state: &GatewayState,
    ws: &mut Ws<S>,
    peer: PeerContext,
    conn_id: String,
    auth: Authenticated,
    key: u64,
    mut receiver: ConnReceiver,
) {
    let caller = Caller {
        role: auth.role,
        scopes: auth.scopes,
        device_id: auth.device_id.filter(|_| auth.device_token_auth),
        conn_id,
        ip: peer.ip,
    };
    let mut seq: u64 = 0;
    let mut role_streak: u32 = 0;
    let mut awaiting_pong = false;
    let mut shutdown = state.shutdown_signal();
    loop {
        tokio::select! {
            biased;
            out = receiver.recv() => {
                let Some(out) = out else { break };
                receiver.written(&out);
                let sent = match out {
                    Outbound::Frame(text) => send_text(ws, text).await,
                    Outbound::Event { name, payload } => {
                        if &*name == "tick" {
                            // Keepalive rides on the tick: a peer that has not
                            // answered the previous tick's ping (or sent
                            // anything) within one interval is gone.
                            if awaiting_pong {
                                debug!(peer = %peer.ip, "no pong within a tick interval; dropping the connection");
                                break;
                            }
                            awaiting_pong = true;
                            let _ = ws.feed(Message::Ping(Default::default())).await;
                        }
                        seq += 1;
                        send_text(ws, event_json_with_seq(&name, &payload, seq)).await
                    }
                    Outbound::Close { code, reason } => {
                        close(ws, code, &reason).await;
                        break;
                    }
                };
                if sent.is_err() {
                    break;
                }
            }
            _ = shutdown.changed() => {
                close(ws, close_code::SERVICE_RESTART, "service restart").await;
                break;
            }
            incoming = ws.next() => {
                awaiting_pong = false;
                let message = match incoming {
                    None | Some(Ok(Message::Close(_))) => break,
                    Some(Err(err)) => {
                        if is_oversize(&err) {
                            close(ws, close_code::MESSAGE_TOO_BIG, "").await;
                        }
                        break;
                    }
                    Some(Ok(m)) => m,
                };
                // Parsed in place: no copy of the frame per request.
                let text = match &message {
                    Message::Text(t) => t.as_str(),
                    Message::Binary(b) => match std::str::from_utf8(b) {
                        Ok(t) => t,
                        Err(_) => continue,
                    },
                    _ => continue,
                };
                let reply = match parse_request(text) {
                    Err(FrameError::NotJson) => {
                        debug!("dropped a frame that is not JSON");
                        continue;
                    }
                    Err(FrameError::Invalid { id, problems }) => Response::err(
                        id.unwrap_or_else(|| "invalid".into()),
                        ErrorShape::invalid_request(format!("invalid request frame: {problems}")),
                    ),
                    Ok(request) => {
                        let (_, result) = methods::dispatch(state, &caller, &request.method, request.params);
                        match result {
                            Ok(payload) => {
                                role_streak = 0;
                                Response::ok(request.id, payload)
                            }
                            Err(Refusal::Role(e)) => {
                                role_streak += 1;
                                Response::err(request.id, e)
                            }
                            Err(Refusal::Other(e)) => {
                                role_streak = 0;
                                Response::err(request.id, e)
                            }
                        }
                    }
                };
                if send_text(ws, reply.to_json()).await.is_err() {
                    break;
                }
                if role_streak > MAX_UNAUTHORIZED_ROLE_CALLS {
                    close(ws, close_code::POLICY_VIOLATION, "repeated unauthorized calls").await;
                    break;
                }
            }
        }
    }
    state.hub.unregister(key);
}
