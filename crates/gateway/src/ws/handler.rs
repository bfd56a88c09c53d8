//! One [`Handler`] per WebSocket connection; its methods are the phases of
//! the connection: the challenge, the first-frame rules, the connect
//! decision and its answer, then the authenticated request/event loop.

use std::sync::Arc;

use clawgate_protocol::connect::{ConnectParams, Role, parse_connect_params};
use clawgate_protocol::frames::{
    ErrorShape, Event, EventTag, FrameError, Request, Response, event_json_with_seq, parse_request,
};
use clawgate_protocol::{MAX_UNAUTHORIZED_ROLE_CALLS, catalogue, close_code};
use futures_util::FutureExt;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tracing::{debug, info};

use crate::auth::{self, Authenticated, Rejection};
use crate::rpc::{self, Refusal};
use crate::session::{Caller, PeerContext, now_ms};
use crate::state::GatewayState;
use crate::state::hub::{ConnInfo, ConnReceiver, Outbound, conn_channel};
use crate::state::slots::UnauthSlot;
use crate::upstream::Upstream;
use crate::upstream::link::{self, LinkParams};
use crate::ws::connection::{Connection, ReadReady, is_oversize};
use crate::ws::hello::{HelloFrame, hello_ok, relayed_hello_ok};
use crate::ws::relay::Relay;

/// The most requests answered before their replies are flushed.
const REQUEST_BATCH: usize = 64;

/// Serves one upgraded connection to the end, holding `slot` (an
/// unauthenticated-socket slot) until it authenticates or closes.
/// `preamble` is what the upgrade still has to send (its `101`, when the
/// accept loop took the upgrade itself): it goes out in the same write as
/// the challenge.
pub fn serve<S>(
    state: Arc<GatewayState>,
    io: S,
    peer: PeerContext,
    slot: UnauthSlot,
    preamble: Vec<u8>,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + ReadReady + Unpin + Send + 'static,
{
    state.metrics.connection_opened();
    let mut handler = Handler {
        conn: Connection::new(io),
        state,
        peer,
        conn_id: uuid::Uuid::new_v4().to_string(),
    };
    // Not an `async fn`: its arguments would stay in the future for its
    // whole life beside the handler built from them, so every connection's
    // task would carry the socket and the peer twice. The block uses the
    // handler where it was captured.
    async move {
        // Each phase is boxed: the task itself stays small, and the larger
        // pre-auth state is freed once the connection is authenticated.
        let Some(session) = Box::pin(handler.preauth(slot, preamble)).await else {
            handler.state.metrics.connection_closed(false);
            return;
        };
        handler.conn.authenticated();
        Box::pin(handler.run(session)).await;
        handler.state.metrics.connection_closed(true);
    }
}

/// The per-connection state: the socket, the gateway, who the peer is.
struct Handler<S> {
    state: Arc<GatewayState>,
    conn: Connection<S>,
    peer: PeerContext,
    /// `hello-ok.server.connId`, presence and audit rows.
    conn_id: String,
}

/// An authenticated session, registered with the hub.
struct Session {
    auth: Authenticated,
    /// The hub's key for this connection.
    key: u64,
    /// What the hub queued for this connection.
    receiver: ConnReceiver,
    /// Fronting mode: the client's own upstream socket.
    upstream: Option<Box<crate::upstream::link::UpstreamWs>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Handler<S> {
    /// Sends the challenge and waits for the first frame until the
    /// handshake deadline, shutdown, or eviction at the global cap.
    async fn preauth(&mut self, slot: UnauthSlot, preamble: Vec<u8>) -> Option<Session> {
        let mut slot = Some(slot);
        let slot = &mut slot;
        let nonce = uuid::Uuid::new_v4().to_string();
        let challenge = Event {
            kind: EventTag::Event,
            event: "connect.challenge".into(),
            payload: Some(json!({"nonce": nonce, "ts": now_ms(), "capabilities": []})),
            seq: None,
        };
        self.conn
            .send_first(preamble, &challenge.to_json())
            .await
            .ok()?;
        let mut shutdown = self.state.shutdown_signal();
        let deadline = tokio::time::Instant::now() + self.state.options.handshake_timeout;
        // At the global cap of unauthenticated sockets the oldest is evicted
        // to make room for a newer one (see `state::slots`).
        let mut evicted = std::pin::pin!(UnauthSlot::evicted_if_held(slot.as_ref()));
        loop {
            let next = tokio::select! {
                n = tokio::time::timeout_at(deadline, self.conn.next()) => n,
                _ = shutdown.changed() => {
                    self.conn.close(close_code::SERVICE_RESTART, "service restart").await;
                    return None;
                }
                _ = &mut evicted => {
                    debug!(peer = %self.peer.ip, "unauthenticated socket evicted for a newer one");
                    self.state.metrics.handshake("evicted");
                    slot.take();
                    self.conn.close(close_code::TRY_AGAIN_LATER, "too many unauthenticated connections").await;
                    return None;
                }
            };
            let text = match next {
                Err(_) => {
                    debug!(peer = %self.peer.ip, "handshake timeout");
                    self.state.metrics.handshake("timeout");
                    self.conn.close(close_code::NORMAL, "").await;
                    return None;
                }
                Ok(None) | Ok(Some(Ok(Message::Close(_)))) => return None,
                Ok(Some(Err(err))) => {
                    if is_oversize(&err) {
                        self.state.metrics.handshake("oversize");
                        // An empty reason, as the reference sends on the wire
                        // (its WebSocket library's limit fires first).
                        self.conn.close(close_code::MESSAGE_TOO_BIG, "").await;
                    }
                    return None;
                }
                Ok(Some(Ok(Message::Text(t)))) => t.as_str().to_owned(),
                Ok(Some(Ok(Message::Binary(b)))) => match String::from_utf8(b.to_vec()) {
                    Ok(t) => t,
                    Err(_) => {
                        self.conn.close(close_code::NORMAL, "").await;
                        return None;
                    }
                },
                Ok(Some(Ok(_))) => continue,
            };
            return self.first_frame(&nonce, slot, &text).await;
        }
    }

    /// The first-frame rules in the reference's order: not JSON -> 1000;
    /// not a request -> 1008; not `connect`, bad params -> error + 1008;
    /// protocol range -> 1002; role; `Origin`; shutdown; then the connect.
    async fn first_frame(
        &mut self,
        nonce: &str,
        slot: &mut Option<UnauthSlot>,
        text: &str,
    ) -> Option<Session> {
        let request = match parse_request(text) {
            Ok(r) => r,
            Err(FrameError::NotJson) => {
                self.state.metrics.handshake("invalid_json");
                self.conn.close(close_code::NORMAL, "").await;
                return None;
            }
            Err(FrameError::Invalid { .. }) => {
                self.state.metrics.handshake("invalid_frame");
                self.conn
                    .close(close_code::POLICY_VIOLATION, "invalid request frame")
                    .await;
                return None;
            }
        };
        let checked = self.connect_frame_rules(&request);
        let (params, role) = match checked {
            Ok(ok) => ok,
            Err((label, error, code)) => {
                self.state.metrics.handshake(label);
                self.conn.reject(&request.id, error, code, None).await;
                return None;
            }
        };
        if let Some(origin) = &self.peer.origin
            && let Err(why) = auth::check_origin(
                origin,
                &self.peer,
                &self.state.config.control_ui.allowed_origins,
            )
        {
            self.state
                .metrics
                .handshake("CONTROL_UI_ORIGIN_NOT_ALLOWED");
            info!(peer = %self.peer.ip, "connect refused: origin not allowed");
            self.state
                .audit_auth_failure("CONTROL_UI_ORIGIN_NOT_ALLOWED", &self.peer, None);
            let e = catalogue::origin_not_allowed(why);
            self.conn
                .reject(&request.id, e, close_code::POLICY_VIOLATION, None)
                .await;
            return None;
        }
        if self.state.is_shutting_down() {
            self.refuse_restarting(&request.id).await;
            return None;
        }
        self.connect(&request, &params, role, nonce, slot).await
    }

    /// The rules a `connect` request must pass before any credential is
    /// looked at; on failure the metrics label, error and close code.
    fn connect_frame_rules(
        &self,
        request: &Request,
    ) -> Result<(ConnectParams, Role), (&'static str, ErrorShape, u16)> {
        if request.method != "connect" {
            let e = ErrorShape::invalid_request("invalid handshake: first request must be connect");
            return Err(("not_connect", e, close_code::POLICY_VIOLATION));
        }
        let params = parse_connect_params(request.params.as_ref()).map_err(|message| {
            let e = ErrorShape::invalid_request(message);
            ("invalid_params", e, close_code::POLICY_VIOLATION)
        })?;
        if !params.protocol_accepted() {
            let e = catalogue::protocol_mismatch(params.protocol_mismatch_details());
            return Err(("PROTOCOL_MISMATCH", e, close_code::PROTOCOL_ERROR));
        }
        let Some(role) = params.role() else {
            let e = ErrorShape::invalid_request("invalid role");
            return Err(("invalid_role", e, close_code::POLICY_VIOLATION));
        };
        Ok((params, role))
    }

    /// Decides the connect and answers it: `hello-ok` and a registered
    /// session, or the refusal (after its delay, if any).
    async fn connect(
        &mut self,
        request: &Request,
        params: &ConnectParams,
        role: Role,
        nonce: &str,
        slot: &mut Option<UnauthSlot>,
    ) -> Option<Session> {
        // A password hash is verified first, on the bounded pool, after the
        // limiter's verdict (nothing is hashed for a refused peer).
        let signer = auth::shared::Signer {
            params,
            role: role.as_str(),
            nonce,
        };
        let password =
            auth::shared::verify_password(&self.state, params, &self.peer, &signer).await;
        let decision = auth::authenticate(&self.state, params, role, &self.peer, nonce, password);
        // The socket is no longer waiting to authenticate: its slot is freed
        // before answering, so a client that reconnects at once is not
        // counted twice (a refusal that is delayed keeps it while it waits).
        let held = slot.take();
        let authenticated = match decision {
            Ok(a) => a,
            Err(rejection) => {
                self.refuse(request, params, rejection, held).await;
                return None;
            }
        };
        drop(held);
        // Registered before hello-ok goes out, so a rotation, revocation or
        // secret change that lands from here on reaches this session.
        let (sender, receiver) = conn_channel();
        let info = self.conn_info(&authenticated, params);
        let key = self.state.hub.register(info, sender);
        // Shutdown may have begun while this connect was decided (after the
        // check before it): its `shutdown` broadcast may have missed this
        // session, so it is refused like any connect in shutdown.
        if self.state.is_shutting_down() {
            self.state.hub.unregister(key);
            self.refuse_restarting(&request.id).await;
            return None;
        }
        let (hello, upstream) = match self.state.upstream.clone() {
            None => (
                hello_ok(&self.state, request, &authenticated, &self.conn_id),
                None,
            ),
            Some(up) => {
                match self
                    .link(&up, request, params, role, &authenticated, key)
                    .await
                {
                    Ok((hello, ws)) => (HelloFrame::whole(hello), Some(ws)),
                    Err((error, label, code)) => {
                        self.state.hub.unregister(key);
                        up.caps.revoke_session(key);
                        self.state.metrics.handshake(label);
                        self.conn.reject(&request.id, error, code, None).await;
                        return None;
                    }
                }
            }
        };
        if self.conn.send_unbuffered(&hello.parts()).await.is_err() {
            self.state.hub.unregister(key);
            if let Some(up) = &self.state.upstream {
                up.caps.revoke_session(key);
            }
            return None;
        }
        self.state.metrics.handshake("ok");
        debug!(peer = %self.peer.ip, client = %params.client.id, mode = %params.client.mode, role = %role, method = authenticated.method.as_str(), "connected");
        Some(Session {
            auth: authenticated,
            key,
            receiver,
            upstream: upstream.map(Box::new),
        })
    }

    /// Fronting mode: opens the client's upstream socket (clawgate's
    /// identity, exactly the client's scopes) and builds its `hello-ok`
    /// from the upstream's. On failure, the error, its metrics label and
    /// the close code.
    async fn link(
        &mut self,
        up: &Arc<Upstream>,
        request: &Request,
        params: &ConnectParams,
        role: Role,
        auth: &Authenticated,
        key: u64,
    ) -> Result<(String, crate::upstream::link::UpstreamWs), (ErrorShape, &'static str, u16)> {
        if role != Role::Operator {
            return Err((
                catalogue::node_not_fronted(),
                "NODE_NOT_FRONTED",
                close_code::POLICY_VIOLATION,
            ));
        }
        // The upstream shows the clawgate device's name (an operator may
        // have renamed it), else what the client calls itself.
        let display_name = auth
            .device_id
            .as_deref()
            .and_then(|d| self.state.store.device(d))
            .and_then(|d| d.display_name)
            .or_else(|| params.client.display_name.clone());
        let deadline = tokio::time::Instant::now() + self.state.options.handshake_timeout;
        let linked = link::open(
            up,
            LinkParams {
                client: &params.client,
                caps: &params.caps,
                scopes: &auth.scopes,
                display_name,
            },
            deadline,
        )
        .await;
        let link = match linked {
            Ok(link) => link,
            Err(e) => {
                self.state.metrics.upstream_link(e.label());
                info!(peer = %self.peer.ip, code = e.label(), "authenticated, but no upstream socket");
                return Err((e.to_error(), e.label(), close_code::TRY_AGAIN_LATER));
            }
        };
        self.state.metrics.upstream_link("ok");
        // Capability URLs point at the origin the client reached clawgate
        // at: the browser's `Origin` (already checked), else the `Host`.
        let public_origin = self.public_origin();
        let hello = relayed_hello_ok(
            &self.state,
            up,
            request,
            auth,
            &self.conn_id,
            &link.hello,
            public_origin,
            key,
        )
        .ok_or_else(|| {
            let e = link::LinkError::Unavailable("hello-ok is not a JSON object".into());
            (e.to_error(), e.label(), close_code::TRY_AGAIN_LATER)
        })?;
        Ok((hello, link.ws))
    }

    /// Answers a refused connect: metrics, the audit row for auth failures,
    /// a rate-limited log line, the delay (holding the slot), the error and
    /// the close.
    async fn refuse(
        &mut self,
        request: &Request,
        params: &ConnectParams,
        rejection: Rejection,
        held: Option<UnauthSlot>,
    ) {
        let state = &self.state;
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
            let reason = rejection
                .error
                .details
                .as_ref()
                .and_then(|d| d.get("authReason"))
                .and_then(|r| r.as_str())
                .filter(|r| r.starts_with("trusted_proxy_"));
            state.audit_auth_failure_with(code, reason, &self.peer, claimed);
        }
        if let Some(suppressed) = state.rejection_log_budget() {
            let (peer, client) = (self.peer.ip, &params.client.id);
            if suppressed > 0 {
                info!(%peer, %client, code, suppressed, "connect rejected (earlier rejections not logged: see the metrics and audit log)");
            } else {
                info!(%peer, %client, code, "connect rejected");
            }
        }
        let mut delay = rejection.delay;
        if code == "AUTH_RATE_LIMITED" {
            delay = delay.max(state.options.rate_limited_delay);
        }
        if !delay.is_zero() {
            // Waiting with the slot held keeps delayed refusals within the
            // per-IP and global caps; at the global cap they are evicted
            // like any old unauthenticated socket.
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = UnauthSlot::evicted_if_held(held.as_ref()) => {}
            }
        }
        drop(held);
        let reason = rejection.close_reason.as_deref();
        self.conn
            .reject(&request.id, rejection.error, rejection.close_code, reason)
            .await;
    }

    /// The answer to a connect while the gateway shuts down.
    async fn refuse_restarting(&mut self, request_id: &str) {
        self.conn
            .reject(
                request_id,
                catalogue::gateway_restarting(),
                close_code::TRY_AGAIN_LATER,
                None,
            )
            .await;
    }

    /// Where the client reached clawgate: the browser's `Origin` (already
    /// checked), else `http://` and the `Host` (capability URLs point there).
    fn public_origin(&self) -> Option<String> {
        self.peer
            .origin
            .clone()
            .or_else(|| self.peer.host.as_ref().map(|h| format!("http://{h}")))
    }

    /// What the hub records about this session.
    fn conn_info(&self, auth: &Authenticated, params: &ConnectParams) -> ConnInfo {
        let client = &params.client;
        ConnInfo {
            conn_id: self.conn_id.clone(),
            role: auth.role,
            scopes: auth.scopes.clone(),
            client_id: client.id.clone(),
            client_mode: client.mode.clone(),
            display_name: client.display_name.clone(),
            version: client.version.clone(),
            platform: client.platform.clone(),
            device_family: client.device_family.clone(),
            model_identifier: client.model_identifier.clone(),
            instance_id: client.instance_id.clone(),
            device_id: auth.device_id.clone(),
            remote_ip: self.peer.ip,
            connected_at_ms: now_ms(),
            shared_auth_generation: auth.shared_generation,
        }
    }

    /// The authenticated loop: one task selecting over the session's
    /// outbound queue (responses, events, closes), shutdown and the socket.
    ///
    /// Not an `async fn`: its argument would stay in the future beside the
    /// caller and queue taken from it, in every idle session. The block
    /// keeps only what it uses, where it was captured.
    fn run(&mut self, session: Session) -> impl Future<Output = ()> + Send + '_
    where
        S: Send,
    {
        let Session {
            auth,
            key,
            mut receiver,
            upstream,
        } = session;
        let device_id = auth.device_id;
        let caller = Caller {
            role: auth.role,
            scopes: auth.scopes,
            device_id: device_id.clone().filter(|_| auth.device_token_auth),
            conn_id: self.conn_id.clone(),
            ip: self.peer.ip,
            origin: self.peer.origin.clone(),
        };
        async move {
            if let Some(upstream) = upstream {
                let relay = Relay {
                    state: &self.state,
                    caller: &caller,
                    device_id: device_id.as_deref(),
                    receiver: &mut receiver,
                    upstream: *upstream,
                    upstream_origin: self
                        .state
                        .upstream()
                        .map(|up| up.http_origin())
                        .unwrap_or_default(),
                    public_origin: self.public_origin(),
                    key,
                };
                // Boxed: the relay's state (the upstream socket, its codec) is
                // not part of every standalone session's future.
                Box::pin(relay.run(&mut self.conn)).await;
                self.state.hub.unregister(key);
                if let Some(up) = &self.state.upstream {
                    up.caps.revoke_session(key);
                }
                return;
            }
            let mut seq: u64 = 0;
            let mut role_streak: u32 = 0;
            let mut awaiting_pong = false;
            let mut shutdown = self.state.shutdown_signal();
            loop {
                tokio::select! {
                    biased;
                    out = receiver.recv() => {
                        let Some(out) = out else { break };
                        receiver.written(&out);
                        let sent = match out {
                            Outbound::Frame(text) => self.conn.send_text(text).await,
                            Outbound::Event { name, payload } => {
                                if &*name == "tick" {
                                    // Keepalive rides on the tick: a peer that has
                                    // not answered the previous tick's ping (or
                                    // sent anything) within one interval is gone.
                                    if awaiting_pong {
                                        debug!(peer = %self.peer.ip, "no pong within a tick interval; dropping the connection");
                                        break;
                                    }
                                    awaiting_pong = true;
                                    self.conn.feed(Message::Ping(Default::default())).await;
                                }
                                seq += 1;
                                self.conn.send_text(event_json_with_seq(&name, &payload, seq)).await
                            }
                            Outbound::Close { code, reason } => {
                                // Closes are boxed: the close handshake's
                                // timers are not carried by an idle session.
                                Box::pin(self.conn.close(code, &reason)).await;
                                break;
                            }
                        };
                        if sent.is_err() {
                            break;
                        }
                    }
                    _ = shutdown.changed() => {
                        Box::pin(self.conn.close(close_code::SERVICE_RESTART, "service restart")).await;
                        break;
                    }
                    incoming = self.conn.next() => {
                        awaiting_pong = false;
                        // Boxed, per batch: answering (the RPC handlers'
                        // futures) is most of this loop's state, and an idle
                        // session should not carry it.
                        if !Box::pin(self.requests(&caller, incoming, &mut role_streak)).await {
                            break;
                        }
                    }
                }
            }
            self.state.hub.unregister(key);
        }
    }

    /// Answers `first` and whatever other requests have already arrived
    /// (up to [`REQUEST_BATCH`]), then writes the replies out in one flush:
    /// pipelined requests cost one write, not one each. False when the
    /// session ends.
    async fn requests(
        &mut self,
        caller: &Caller,
        first: Option<Result<Message, WsError>>,
        role_streak: &mut u32,
    ) -> bool {
        let mut incoming = first;
        let mut open = true;
        for i in 0..REQUEST_BATCH {
            let message = match incoming {
                None | Some(Ok(Message::Close(_))) => {
                    open = false;
                    break;
                }
                Some(Err(err)) => {
                    if is_oversize(&err) {
                        self.conn.close(close_code::MESSAGE_TOO_BIG, "").await;
                    }
                    open = false;
                    break;
                }
                Some(Ok(m)) => m,
            };
            if let Some(reply) = self.answer(caller, &message, role_streak) {
                if self.conn.feed_text(reply).await.is_err() {
                    return false;
                }
                if *role_streak > MAX_UNAUTHORIZED_ROLE_CALLS {
                    self.conn
                        .close(close_code::POLICY_VIOLATION, "repeated unauthorized calls")
                        .await;
                    return false;
                }
            }
            // The last of a batch: what else has arrived waits for the next
            // batch (taking it here would drop it).
            if i + 1 == REQUEST_BATCH {
                break;
            }
            match self.conn.next().now_or_never() {
                Some(next) => incoming = next,
                None => break,
            }
        }
        // Replies queued before the end still go out (a close flushes too).
        self.conn.flush().await.is_ok() && open
    }

    /// The response to one frame of an authenticated session, serialized
    /// (`None`: the frame is dropped). Counts consecutive calls refused for
    /// the role.
    fn answer(&self, caller: &Caller, message: &Message, role_streak: &mut u32) -> Option<String> {
        // Parsed in place: no copy of the frame per request.
        let text = match message {
            Message::Text(t) => t.as_str(),
            Message::Binary(b) => std::str::from_utf8(b).ok()?,
            _ => return None,
        };
        let request = match parse_request(text) {
            Err(FrameError::NotJson) => {
                debug!("dropped a frame that is not JSON");
                return None;
            }
            Err(FrameError::Invalid { id, problems }) => {
                return Some(
                    Response::err(
                        id.unwrap_or_else(|| "invalid".into()),
                        ErrorShape::invalid_request(format!("invalid request frame: {problems}")),
                    )
                    .to_json(),
                );
            }
            Ok(request) => request,
        };
        let (_, result) = rpc::dispatch(&self.state, caller, &request.method, request.params);
        Some(match result {
            Ok(reply) => {
                *role_streak = 0;
                reply.response_json(&request.id)
            }
            Err(Refusal::Role(e)) => {
                *role_streak += 1;
                Response::err(request.id, e).to_json()
            }
            Err(Refusal::Other(e)) => {
                *role_streak = 0;
                Response::err(request.id, e).to_json()
            }
        })
    }
}
