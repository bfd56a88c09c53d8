//! The session loop of a relayed client (fronting mode): one task moving
//! frames between the client's socket and its own upstream socket.
//!
//! - Client -> upstream: requests are routed by `upstream::policy`:
//!   relayed as they came (ids untouched, no copy), answered by clawgate
//!   (`rpc::dispatch`: its device registry, audit log) or refused. Calls
//!   that use `operator.admin` upstream are audited with the client's
//!   device.
//! - Upstream -> client: responses pass untouched. Events that carry a
//!   `seq` are renumbered into the client socket's one sequence, which
//!   clawgate's own events share; events without one pass as they are.
//!   The upstream's `tick` is dropped (clawgate's ticks, with their
//!   keepalive ping, are the socket's one tick source), and so are its
//!   `device.pair.*` events (they describe the upstream's registry, which
//!   holds clawgate's own identity, not the client's devices).
//! - clawgate's hub: its ticks, `shutdown`, device pairing events and
//!   closes (revocation, rotation, removal, a changed shared secret: the
//!   client and its upstream socket close together). Its own `presence`
//!   and `health` are dropped: the client sees the upstream's.
//! - Lifecycle: whichever side ends, both sockets close; the upstream
//!   going away closes the client with 1012 and a reason naming the
//!   upstream (never its address).

use std::sync::Arc;

use crate::upstream::link::UpstreamWs;
use clawgate_protocol::close_code;
use clawgate_protocol::frames::{
    ErrorShape, FrameHead, Response, event_json_with_seq, parse_request, with_seq,
};
use clawgate_protocol::wire::AuditAction;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tracing::debug;

use crate::rpc::{self, Refusal};
use crate::session::Caller;
use crate::state::GatewayState;
use crate::state::audit;
use crate::state::hub::{ConnReceiver, Outbound};
use crate::upstream::policy::{self, Route};
use crate::ws::connection::{Connection, is_oversize};

/// Why the upstream socket ended, as the client is told.
const UPSTREAM_CLOSED: &str = "upstream gateway closed the connection";

/// One relayed session.
pub(crate) struct Relay<'a> {
    pub state: &'a Arc<GatewayState>,
    pub caller: &'a Caller,
    /// The client's clawgate device (audit rows), whatever it
    /// authenticated with.
    pub device_id: Option<&'a str>,
    pub receiver: &'a mut ConnReceiver,
    pub upstream: UpstreamWs,
    /// The upstream's HTTP origin (`http://host:port`): frames naming it
    /// are rewritten before the client sees them.
    pub upstream_origin: String,
    /// Where the client reached clawgate (capability URLs point there).
    pub public_origin: Option<String>,
    /// The session's hub key (capability tokens are granted to it).
    pub key: u64,
}

/// Frames relayed per wakeup before the other side gets a turn.
const BATCH: usize = 64;

/// How a relayed session ends: `Some((code, reason))` closes the client
/// with it; `None`: the client's socket is already closed or gone.
type End = Option<(u16, String)>;

/// What a relayed session's loop does next.
enum Step {
    Continue,
    Stop,
}

impl Relay<'_> {
    /// Runs until either side closes, shutdown or a close from the hub.
    pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(mut self, conn: &mut Connection<S>) {
        let mut seq: u64 = 0;
        let mut awaiting_pong = false;
        let mut shutdown = self.state.shutdown_signal();
        let reason = loop {
            tokio::select! {
                biased;
                out = self.receiver.recv() => {
                    let Some(out) = out else { break None };
                    self.receiver.written(&out);
                    let sent = match out {
                        Outbound::Frame(text) => conn.send_text(text).await,
                        Outbound::Event { name, payload } => {
                            match &*name {
                                // The upstream's own are relayed instead.
                                "presence" | "health" => continue,
                                "tick" => {
                                    if awaiting_pong {
                                        debug!("no pong within a tick interval; dropping the relayed connection");
                                        break Some((close_code::NORMAL, String::new()));
                                    }
                                    awaiting_pong = true;
                                    conn.feed(Message::Ping(Default::default())).await;
                                }
                                _ => {}
                            }
                            seq += 1;
                            conn.send_text(event_json_with_seq(&name, &payload, seq)).await
                        }
                        Outbound::Close { code, reason } => {
                            conn.close(code, &reason).await;
                            break None;
                        }
                    };
                    if sent.is_err() {
                        break None;
                    }
                }
                _ = shutdown.changed() => {
                    conn.close(close_code::SERVICE_RESTART, "service restart").await;
                    break None;
                }
                incoming = conn.next() => {
                    awaiting_pong = false;
                    if let Some(end) = self.client_batch(conn, incoming).await {
                        break end;
                    }
                }
                frame = self.upstream.next() => {
                    if let Some(end) = self.upstream_batch(conn, frame, &mut seq).await {
                        break end;
                    }
                }
            }
        };
        if let Some((code, why)) = reason {
            conn.close(code, &why).await;
        }
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(250),
            self.upstream.close(Some(CloseFrame {
                code: close_code::NORMAL.into(),
                reason: "".into(),
            })),
        )
        .await;
    }

    /// Frames from the client: `first`, then whatever else has already
    /// arrived (up to [`BATCH`]), relayed with one flush upstream.
    /// `Some(end)`: the session ends (with this close for the client).
    async fn client_batch<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Connection<S>,
        first: Option<Result<Message, WsError>>,
    ) -> Option<End> {
        let mut next = first;
        let mut end = None;
        for i in 0..BATCH {
            let message = match next {
                None | Some(Ok(Message::Close(_))) => {
                    end = Some(None);
                    break;
                }
                Some(Err(err)) => {
                    if is_oversize(&err) {
                        conn.close(close_code::MESSAGE_TOO_BIG, "").await;
                    }
                    end = Some(None);
                    break;
                }
                Some(Ok(m)) => m,
            };
            if let Step::Stop = self.client_frame(conn, message).await {
                end = Some(None);
                break;
            }
            // The last of a batch: what else has arrived waits for the next
            // batch (taking it here would drop it).
            if i + 1 == BATCH {
                break;
            }
            match conn.next().now_or_never() {
                Some(m) => next = m,
                None => break,
            }
        }
        if self.upstream.flush().await.is_err() && end.is_none() {
            self.upstream_lost();
            return Some(Some((
                close_code::SERVICE_RESTART,
                UPSTREAM_CLOSED.to_string(),
            )));
        }
        end
    }

    /// Frames from the upstream: `first`, then whatever else has already
    /// arrived (up to [`BATCH`]), passed on with one flush to the client.
    async fn upstream_batch<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Connection<S>,
        first: Option<Result<Message, WsError>>,
        seq: &mut u64,
    ) -> Option<End> {
        let mut next = first;
        let mut end = None;
        for i in 0..BATCH {
            let message = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    debug!(error = %e, "upstream socket failed");
                    self.upstream_lost();
                    end = Some(Some((
                        close_code::SERVICE_RESTART,
                        UPSTREAM_CLOSED.to_string(),
                    )));
                    break;
                }
                None => {
                    self.upstream_lost();
                    end = Some(Some((
                        close_code::SERVICE_RESTART,
                        UPSTREAM_CLOSED.to_string(),
                    )));
                    break;
                }
            };
            match message {
                Message::Text(text) => match self.pass_to_client(conn, text, seq).await {
                    Ok(()) => {}
                    Err(()) => {
                        end = Some(None);
                        break;
                    }
                },
                Message::Close(frame) => {
                    let (code, why) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    debug!(code, reason = %why, "upstream closed a relayed socket");
                    if code == close_code::SERVICE_RESTART || code == 1006 {
                        self.upstream_lost();
                    }
                    if code == close_code::SESSION_INVALIDATED {
                        // The upstream removed or rotated clawgate's own
                        // identity: its token may be stale.
                        if let Some(up) = self.state.upstream() {
                            let _ = up.reload_credentials();
                        }
                    }
                    end = Some(Some((
                        close_code::SERVICE_RESTART,
                        UPSTREAM_CLOSED.to_string(),
                    )));
                    break;
                }
                _ => {}
            }
            if i + 1 == BATCH {
                break;
            }
            match self.upstream.next().now_or_never() {
                Some(m) => next = m,
                None => break,
            }
        }
        if conn.flush().await.is_err() {
            return Some(None);
        }
        end
    }

    /// One frame from the client.
    async fn client_frame<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Connection<S>,
        message: Message,
    ) -> Step {
        let text = match &message {
            Message::Text(t) => t.as_str(),
            Message::Binary(b) => match std::str::from_utf8(b) {
                Ok(t) => t,
                Err(_) => return Step::Continue,
            },
            _ => return Step::Continue,
        };
        let head = FrameHead::parse(text);
        let routed = head
            .as_ref()
            .filter(|h| h.is_request() && h.id.is_some())
            .and_then(|h| {
                h.method
                    .as_deref()
                    .map(|m| (m, h.id.as_deref().unwrap_or("")))
            });
        let Some((method, id)) = routed else {
            // Not a request clawgate can route: answered as a standalone
            // gateway answers it (not JSON: dropped; invalid: an error).
            return self.answer_locally(conn, text).await;
        };
        let params = if policy::needs_params(method) {
            parse_request(text).ok().and_then(|r| r.params)
        } else {
            None
        };
        match policy::route(method, params.as_ref()) {
            Route::Local => self.answer_locally(conn, text).await,
            Route::Blocked(error) => {
                self.state.metrics.relay_blocked();
                let reply = Response::err(id, error).to_json();
                match conn.send_text(reply).await {
                    Ok(()) => Step::Continue,
                    Err(_) => Step::Stop,
                }
            }
            Route::Relay { audit } => {
                if audit {
                    self.audit_admin_call(method);
                }
                let message = match message {
                    Message::Binary(b) => match String::from_utf8(b.to_vec()) {
                        Ok(t) => Message::Text(t.into()),
                        Err(_) => return Step::Continue,
                    },
                    m => m,
                };
                self.state.metrics.relayed();
                // Flushed once per batch (`client_batch`).
                match self.upstream.feed(message).await {
                    Ok(()) => Step::Continue,
                    Err(_) => {
                        conn.close(close_code::SERVICE_RESTART, UPSTREAM_CLOSED)
                            .await;
                        Step::Stop
                    }
                }
            }
        }
    }

    /// Answers a frame as clawgate itself.
    async fn answer_locally<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Connection<S>,
        text: &str,
    ) -> Step {
        let reply = match parse_request(text) {
            Err(clawgate_protocol::frames::FrameError::NotJson) => return Step::Continue,
            Err(clawgate_protocol::frames::FrameError::Invalid { id, problems }) => Response::err(
                id.unwrap_or_else(|| "invalid".into()),
                ErrorShape::invalid_request(format!("invalid request frame: {problems}")),
            )
            .to_json(),
            Ok(request) => {
                let (_, result) =
                    rpc::dispatch(self.state, self.caller, &request.method, request.params);
                match result {
                    Ok(payload) => payload.response_json(&request.id),
                    Err(Refusal::Role(e)) | Err(Refusal::Other(e)) => {
                        Response::err(request.id, e).to_json()
                    }
                }
            }
        };
        match conn.send_text(reply).await {
            Ok(()) => Step::Continue,
            Err(_) => Step::Stop,
        }
    }

    /// One frame from the upstream, passed to the client.
    async fn pass_to_client<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Connection<S>,
        text: tokio_tungstenite::tungstenite::Utf8Bytes,
        seq: &mut u64,
    ) -> Result<(), ()> {
        // A frame that names the upstream's address (a fresh capability
        // URL, a link) is rewritten first; the rest pass untouched.
        let text = if text.as_str().contains(self.upstream_origin.as_str()) {
            match self.without_upstream_origin(text.as_str()) {
                Some(t) => t.into(),
                None => return Ok(()),
            }
        } else {
            text
        };
        let Some(head) = FrameHead::parse(text.as_str()) else {
            return Ok(());
        };
        if head.is_event() {
            let event = head.event.as_deref().unwrap_or("");
            if event == "tick" || event.starts_with("device.pair.") {
                return Ok(());
            }
            if head.seq.is_some() {
                *seq += 1;
                let Some(renumbered) = with_seq(text.as_str(), *seq) else {
                    return Ok(());
                };
                conn.feed(Message::Text(renumbered.into())).await;
                return Ok(());
            }
        }
        // Flushed once per batch (`upstream_batch`).
        conn.feed_message(Message::Text(text)).await.map_err(|_| ())
    }

    /// `text` with every mention of the upstream's HTTP origin rewritten
    /// (capability URLs granted to this session); `None`: not JSON.
    fn without_upstream_origin(&self, text: &str) -> Option<String> {
        let mut frame: serde_json::Value = serde_json::from_str(text).ok()?;
        let up = self.state.upstream()?;
        crate::upstream::caps::rewrite_origin(
            &up.caps,
            &mut frame,
            &self.upstream_origin,
            self.public_origin.as_deref(),
            self.key,
        );
        serde_json::to_string(&frame).ok()
    }

    /// The upstream dropped the socket or is restarting: it counts as down
    /// (`/readyz` 503) until a probe, made now, says otherwise.
    fn upstream_lost(&self) {
        if let Some(up) = self.state.upstream() {
            up.set_up(false);
            let up = up.clone();
            tokio::spawn(async move {
                up.probe().await;
            });
        }
    }

    /// An audit row for a relayed call that uses `operator.admin`.
    fn audit_admin_call(&self, method: &str) {
        self.state.deferred.audit(audit::record(
            AuditAction::UpstreamAdminCall,
            audit::caller_actor(self.caller),
            self.device_id,
            json!({"method": method}),
        ));
    }
}
