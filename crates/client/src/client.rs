//! The connection driver: one task owns the socket, reconnects, applies the
//! bounded retry and serves requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawgate_protocol::Secret;
use clawgate_protocol::frames::{ErrorShape, ServerFrame};
use clawgate_protocol::wire::{HelloAuth, HelloOk, HelloPolicy};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::auth::{self, AuthInputs, AuthPlan};
use crate::conn::{self, Ws};
use crate::endpoint::{Endpoint, is_trusted_retry_endpoint};
use crate::token_cache::{CachedToken, TokenKey};
use crate::{ClientError, ClientEvent, ConnectOptions, pauses_reconnect};

const EVENT_BUFFER: usize = 1024;
const MIN_TICK: Duration = Duration::from_millis(1000);

enum Cmd {
    Request {
        method: String,
        params: Value,
        reply: oneshot::Sender<Result<Value, ClientError>>,
    },
    Stop(oneshot::Sender<()>),
}

struct Shared {
    hello: Mutex<Arc<Value>>,
    /// Why the client stopped for good, once it has.
    stopped: Mutex<Option<ClientError>>,
}

/// A connection to a gateway that stays up (see the crate docs).
pub struct Client {
    cmds: mpsc::Sender<Cmd>,
    shared: Arc<Shared>,
    events: Mutex<Option<mpsc::Receiver<ClientEvent>>>,
    request_timeout: Duration,
}

impl Client {
    /// Connects (with at most the one device-token retry) and returns once
    /// `hello-ok` arrived, or with the error that stopped it.
    pub async fn connect(opts: ConnectOptions) -> Result<Client, ClientError> {
        let endpoint = Endpoint::parse(&opts.url).map_err(ClientError::InvalidOptions)?;
        if opts.tls_fingerprint.is_some() && !endpoint.is_tls() {
            return Err(ClientError::InvalidOptions(
                "a TLS fingerprint needs a wss:// URL".into(),
            ));
        }
        let (cmd_tx, cmd_rx) = mpsc::channel(256);
        let (event_tx, event_rx) = mpsc::channel(EVENT_BUFFER);
        let (first_tx, first_rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            hello: Mutex::new(Arc::new(Value::Null)),
            stopped: Mutex::new(None),
        });
        let request_timeout = opts.request_timeout;
        let driver = Driver {
            trusted: is_trusted_retry_endpoint(&opts.url, opts.tls_fingerprint.is_some()),
            key: opts.token_key(),
            endpoint,
            opts,
            shared: shared.clone(),
            events: event_tx,
            cmds: cmd_rx,
            first: Some(first_tx),
            pending: HashMap::new(),
            next_id: 1,
        };
        tokio::spawn(driver.run());
        match first_rx.await {
            Ok(Ok(())) => Ok(Client {
                cmds: cmd_tx,
                shared,
                events: Mutex::new(Some(event_rx)),
                request_timeout,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Stopped),
        }
    }

    /// The latest `hello-ok` payload.
    pub fn hello(&self) -> Arc<Value> {
        self.shared.hello.lock().expect("hello").clone()
    }

    /// The latest `hello-ok` payload, typed; `None` before the first
    /// `hello-ok` or when the gateway's does not have the protocol's shape.
    pub fn hello_ok(&self) -> Option<HelloOk> {
        HelloOk::deserialize(&*self.hello()).ok()
    }

    /// The events since connecting (connection changes and gateway
    /// events). Can be taken once; events are dropped when nobody takes
    /// them or the receiver falls 1024 behind.
    pub fn events(&self) -> Option<mpsc::Receiver<ClientEvent>> {
        self.events.lock().expect("events").take()
    }

    /// Why the client stopped for good, if it has.
    pub fn stopped(&self) -> Option<ClientError> {
        self.shared.stopped.lock().expect("stopped").clone()
    }

    /// Sends a request and waits (default request timeout) for its result.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        self.request_with_timeout(method, params, self.request_timeout)
            .await
    }

    pub async fn request_with_timeout(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        if let Some(e) = self.stopped() {
            return Err(e);
        }
        let (reply, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Request {
                method: method.to_string(),
                params,
                reply,
            })
            .await
            .map_err(|_| self.stopped().unwrap_or(ClientError::Stopped))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.stopped().unwrap_or(ClientError::Stopped)),
            Err(_) => Err(ClientError::Timeout(timeout)),
        }
    }

    /// Closes the connection and stops reconnecting.
    pub async fn close(self) {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Stop(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
        }
    }
}

/// How a live connection ended.
enum End {
    Stop(oneshot::Sender<()>),
    Dropped { code: u16, reason: String },
}

struct Driver {
    opts: ConnectOptions,
    endpoint: Endpoint,
    trusted: bool,
    key: Option<TokenKey>,
    shared: Arc<Shared>,
    events: mpsc::Sender<ClientEvent>,
    cmds: mpsc::Receiver<Cmd>,
    first: Option<oneshot::Sender<Result<(), ClientError>>>,
    pending: HashMap<String, oneshot::Sender<Result<Value, ClientError>>>,
    next_id: u64,
}

impl Driver {
    fn emit(&self, event: ClientEvent) {
        let _ = self.events.try_send(event);
    }

    fn load_stored(&self) -> Result<Option<CachedToken>, ClientError> {
        match (&self.key, &self.opts.token_cache) {
            (Some(key), Some(cache)) => Ok(cache.load(key)?),
            _ => Ok(None),
        }
    }

    async fn run(mut self) {
        let mut failures: u32 = 0;
        let mut retry_used = false;
        let mut retry_pending = false;
        let mut retried_after: Option<Box<ErrorShape>> = None;
        loop {
            let stored = match self.load_stored() {
                Ok(s) => s,
                Err(e) => return self.terminal(e),
            };
            let plan = auth::select(&AuthInputs {
                token: self.opts.token.as_ref(),
                password: self.opts.password.as_ref(),
                device_token: self.opts.device_token.as_ref(),
                bootstrap_token: self.opts.bootstrap_token.as_ref(),
                prefer_bootstrap_token: self.opts.prefer_bootstrap_token,
                stored: stored.as_ref().map(|s| (&s.token, &s.scopes[..])),
                retry_with_stored: retry_pending && self.trusted,
                scopes: self.opts.scopes.as_deref(),
            });
            retry_pending = false;
            match self.attempt(&plan).await {
                Ok((ws, hello)) => {
                    retry_used = false;
                    failures = 0;
                    if let Err(e) = self.persist_token(&hello, stored.as_ref()) {
                        let mut ws = ws;
                        conn::close(&mut ws, 1000, "client state unavailable").await;
                        return self.terminal(e);
                    }
                    let auth_method = hello_auth(&hello)
                        .map_or("token", |a| a.method.as_str())
                        .to_string();
                    if auth_method == "bootstrap-token" {
                        // The setup code is spent: reconnects use the device
                        // token just cached, with the scopes cached with it.
                        self.opts.bootstrap_token = None;
                        self.opts.prefer_bootstrap_token = false;
                        self.opts.scopes = None;
                    }
                    let tick = HelloPolicy::deserialize(&hello["policy"])
                        .map(|p| Duration::from_millis(p.tick_interval_ms))
                        .unwrap_or(Duration::from_secs(30))
                        .max(MIN_TICK);
                    let hello = Arc::new(hello);
                    *self.shared.hello.lock().expect("hello") = hello.clone();
                    if let Some(error) = retried_after.take() {
                        self.emit(ClientEvent::Recovered {
                            error,
                            auth_method: auth_method.clone(),
                        });
                    }
                    self.emit(ClientEvent::Connected { auth_method, hello });
                    if let Some(first) = self.first.take() {
                        let _ = first.send(Ok(()));
                    }
                    match self.serve(ws, tick).await {
                        End::Stop(ack) => {
                            self.fail_pending(ClientError::Stopped);
                            let _ = ack.send(());
                            return;
                        }
                        End::Dropped { code, reason } => {
                            self.fail_pending(ClientError::Closed {
                                code,
                                reason: reason.clone(),
                            });
                            self.emit(ClientEvent::Disconnected {
                                code,
                                reason: reason.clone(),
                            });
                            if !self.opts.reconnect {
                                return self.terminal(ClientError::Closed { code, reason });
                            }
                            let delay = self.backoff(failures);
                            failures += 1;
                            self.emit(ClientEvent::Reconnecting {
                                attempt: failures,
                                delay,
                                error: format!("closed ({code})"),
                            });
                            if !self.sleep(delay).await {
                                return;
                            }
                        }
                    }
                }
                Err(err) => {
                    let gateway = err.gateway_error().cloned();
                    let code = err.detail_code().map(str::to_owned);
                    if code.as_deref() == Some("AUTH_DEVICE_TOKEN_MISMATCH") && plan.used_stored {
                        self.forget_token(plan.device_token.as_deref());
                    }
                    // The one bounded retry (clients.md 1.3).
                    if code.as_deref() == Some("AUTH_TOKEN_MISMATCH")
                        && !retry_used
                        && plan.device_token.is_none()
                        && plan.token.is_some()
                        && stored.is_some()
                        && self.trusted
                    {
                        retry_used = true;
                        retry_pending = true;
                        retried_after = gateway.map(Box::new);
                        if !self.sleep(self.opts.retry_delay).await {
                            return;
                        }
                        continue;
                    }
                    retried_after = None;
                    let paused = err.gateway_error().is_some_and(pauses_reconnect);
                    if paused || self.first.is_some() || !self.opts.reconnect {
                        return self.terminal(err);
                    }
                    let mut delay = self.backoff(failures);
                    if let Some(after) = err.gateway_error().and_then(|e| e.retry_after_ms) {
                        delay = delay.max(Duration::from_millis(after));
                    }
                    failures += 1;
                    self.emit(ClientEvent::Reconnecting {
                        attempt: failures,
                        delay,
                        error: err.to_string(),
                    });
                    if !self.sleep(delay).await {
                        return;
                    }
                }
            }
        }
    }

    /// One connect attempt, bounded by the handshake deadline.
    async fn attempt(&self, plan: &AuthPlan) -> Result<(Ws, Value), ClientError> {
        let deadline = self.opts.handshake_timeout;
        let work = async {
            let mut ws = conn::open(&self.opts, &self.endpoint).await?;
            match conn::handshake(&mut ws, &self.opts, plan, self.opts.identity.as_ref()).await {
                Ok(hello) => Ok((ws, hello)),
                Err(e) => {
                    conn::close(&mut ws, 1000, "").await;
                    Err(e)
                }
            }
        };
        match tokio::time::timeout(deadline, work).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout(deadline)),
        }
    }

    /// Saves the device token from `hello-ok` (compare-and-swap against the
    /// token read before the attempt).
    fn persist_token(
        &self,
        hello: &Value,
        stored: Option<&CachedToken>,
    ) -> Result<(), ClientError> {
        let (Some(key), Some(cache)) = (&self.key, &self.opts.token_cache) else {
            return Ok(());
        };
        let Some(auth) = hello_auth(hello) else {
            return Ok(());
        };
        let Some(token) = auth
            .device_token
            .as_ref()
            .map(Secret::expose)
            .filter(|t| !t.is_empty())
        else {
            return Ok(());
        };
        let key = TokenKey {
            role: auth.role.as_str().to_string(),
            ..key.clone()
        };
        let previous = stored.filter(|_| key.role == self.opts.role);
        let scopes = match previous {
            Some(p) if p.token.expose() == token => p.scopes.clone(),
            _ => auth.scopes.clone(),
        };
        let expected = previous.map(|p| p.token.expose());
        if expected == Some(token) {
            return Ok(());
        }
        if !cache.store(&key, expected, CachedToken::new(token, scopes))? {
            tracing::debug!("device token cache changed concurrently; kept the newer entry");
        }
        Ok(())
    }

    fn forget_token(&self, sent: Option<&str>) {
        if let (Some(key), Some(cache), Some(sent)) = (&self.key, &self.opts.token_cache, sent)
            && let Err(e) = cache.remove(key, sent)
        {
            tracing::warn!("could not delete the stale device token: {e}");
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        let cap = self
            .opts
            .initial_backoff
            .saturating_mul(1u32 << failures.min(16))
            .min(self.opts.max_backoff);
        // Full jitter: anywhere in [0, cap], so clients restarted together
        // do not reconnect in lockstep.
        let ms = cap.as_millis() as u64;
        Duration::from_millis(rand::random_range(0..=ms))
    }

    /// Sleeps, still answering commands. False when asked to stop.
    async fn sleep(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                cmd = self.cmds.recv() => match cmd {
                    Some(Cmd::Request { reply, .. }) => {
                        let _ = reply.send(Err(ClientError::NotConnected));
                    }
                    Some(Cmd::Stop(ack)) => {
                        let _ = ack.send(());
                        return false;
                    }
                    None => return false,
                },
            }
        }
    }

    fn terminal(mut self, err: ClientError) {
        *self.shared.stopped.lock().expect("stopped") = Some(err.clone());
        self.fail_pending(err.clone());
        if let Some(first) = self.first.take() {
            let _ = first.send(Err(err));
        } else {
            self.emit(ClientEvent::Paused(err));
        }
        // Answer whatever is still queued, then drop the receiver.
        self.cmds.close();
        while let Ok(cmd) = self.cmds.try_recv() {
            match cmd {
                Cmd::Request { reply, .. } => {
                    let _ = reply.send(Err(self
                        .shared
                        .stopped
                        .lock()
                        .expect("stopped")
                        .clone()
                        .unwrap_or(ClientError::Stopped)));
                }
                Cmd::Stop(ack) => {
                    let _ = ack.send(());
                }
            }
        }
    }

    fn fail_pending(&mut self, err: ClientError) {
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(err.clone()));
        }
    }

    /// Runs a live connection until it ends.
    async fn serve(&mut self, mut ws: Ws, tick: Duration) -> End {
        // Request ids count from 2 on each connection (`1:` was the connect).
        self.next_id = 1;
        let watchdog = tick * 2;
        let mut last_frame = Instant::now();
        loop {
            tokio::select! {
                incoming = ws.next() => {
                    last_frame = Instant::now();
                    match incoming {
                        Some(Ok(Message::Text(text))) => self.on_frame(text.as_str()),
                        Some(Ok(Message::Close(frame))) => {
                            let (code, reason) = conn::close_code_reason(frame);
                            return End::Dropped { code, reason };
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return End::Dropped { code: 1006, reason: e.to_string() },
                        None => return End::Dropped { code: 1006, reason: String::new() },
                    }
                }
                cmd = self.cmds.recv() => match cmd {
                    Some(Cmd::Request { method, params, reply }) => {
                        self.next_id += 1;
                        let id = format!("{}:{}", self.next_id, uuid::Uuid::new_v4());
                        let frame = json!({"type": "req", "id": id, "method": method, "params": params});
                        match conn::send(&mut ws, &frame).await {
                            Ok(()) => {
                                self.pending.retain(|_, r| !r.is_closed());
                                self.pending.insert(id, reply);
                            }
                            Err(e) => {
                                let _ = reply.send(Err(e));
                            }
                        }
                    }
                    Some(Cmd::Stop(ack)) => {
                        conn::close(&mut ws, 1000, "client closed").await;
                        return End::Stop(ack);
                    }
                    None => {
                        conn::close(&mut ws, 1000, "client closed").await;
                        let (ack, _) = oneshot::channel();
                        return End::Stop(ack);
                    }
                },
                _ = tokio::time::sleep_until(last_frame + watchdog) => {
                    // A request still waiting has its own deadline (as in
                    // the reference); only an idle silent socket is dead.
                    self.pending.retain(|_, r| !r.is_closed());
                    if !self.pending.is_empty() {
                        last_frame = Instant::now();
                        continue;
                    }
                    conn::close(&mut ws, 4000, "tick timeout").await;
                    return End::Dropped { code: 4000, reason: "tick timeout".into() };
                }
            }
        }
    }

    fn on_frame(&mut self, text: &str) {
        match serde_json::from_str::<ServerFrame>(text) {
            Ok(ServerFrame::Response(r)) => {
                if let Some(reply) = self.pending.remove(&r.id) {
                    let result = match (r.ok, r.error) {
                        (true, _) => Ok(r.payload.unwrap_or(Value::Null)),
                        (false, Some(e)) => Err(ClientError::Gateway(Box::new(e))),
                        (false, None) => Err(ClientError::Protocol(
                            "error response without an error".into(),
                        )),
                    };
                    let _ = reply.send(result);
                }
            }
            Ok(ServerFrame::Event(e)) => self.emit(ClientEvent::Event {
                event: e.event,
                payload: e.payload.unwrap_or(Value::Null),
                seq: e.seq,
            }),
            Err(e) => tracing::debug!("ignoring an unreadable frame: {e}"),
        }
    }
}

/// `hello-ok.auth`, typed; `None` when it does not have the protocol's shape.
fn hello_auth(hello: &Value) -> Option<HelloAuth> {
    HelloAuth::deserialize(&hello["auth"]).ok()
}
