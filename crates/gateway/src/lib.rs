//! The clawgate gateway: one port serving HTTP (`/healthz`, `/readyz`,
//! `/metrics`, the Control UI) and the OpenClaw WebSocket protocol.
//!
//! A connect flows through [`listener`] (upgrade, caps, proxy headers) ->
//! [`connection`] (challenge, first-frame rules) -> [`auth`] (origin,
//! limiter, shared secret) -> `hello-ok`, then [`methods`] for requests and
//! [`hub`] for events.

pub mod audit;
pub mod auth;
pub mod config;
pub mod connection;
pub mod control_ui;
pub mod deferred;
pub mod device_methods;
pub mod device_proof;
#[doc(hidden)]
pub mod fuzzing;
pub mod hub;
pub mod limiter;
pub mod listener;
pub mod methods;
pub mod metrics;
pub mod pairing;
pub mod preauth_io;
pub mod state;
pub mod tokens;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::net::TcpListener;

pub use config::GatewayConfig;

/// A gateway serving on a background task (see [`Gateway::spawn`]).
pub struct GatewayHandle {
    addr: SocketAddr,
    state: Arc<GatewayState>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl GatewayHandle {
    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &Arc<GatewayState> {
        &self.state
    }

    /// Shuts down as on SIGTERM (broadcast `shutdown`, close sockets with
    /// 1012) and waits until the gateway has stopped.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        self.task.await.map_err(std::io::Error::other)?
    }
}
pub use state::{GatewayState, RuntimeOptions};

/// clawgate's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The OpenClaw release whose wire behaviour clawgate follows; reported as
/// `server.version` so clients that gate features on it keep working.
pub const COMPAT_VERSION: &str = "2026.9.6";
/// Events this gateway emits (`hello-ok.features.events`).
pub const EVENTS: &[&str] = &[
    "connect.challenge",
    "tick",
    "presence",
    "shutdown",
    "device.pair.requested",
    "device.pair.resolved",
    "device.pair.changed",
];

/// A bound, not yet serving gateway.
pub struct Gateway {
    state: Arc<GatewayState>,
    listener: TcpListener,
}

impl Gateway {
    /// Binds the listener.
    pub async fn bind(config: GatewayConfig, options: RuntimeOptions) -> std::io::Result<Gateway> {
        let addr = SocketAddr::new(config.bind.address(), config.port);
        let store =
            clawgate_store::Store::open(&config.state_dir.join(clawgate_store::DB_FILE_NAME))
                .map_err(|e| {
                    std::io::Error::other(format!("cannot open the gateway store: {e}"))
                })?;
        let listener = listener::bind(addr)?;
        Ok(Gateway {
            state: GatewayState::new(config, options, std::sync::Arc::new(store)),
            listener,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> Arc<GatewayState> {
        self.state.clone()
    }

    /// Serves on a background task (for embedding the gateway in another
    /// program, and for tests); [`GatewayHandle::stop`] shuts it down.
    pub fn spawn(self) -> std::io::Result<GatewayHandle> {
        let addr = self.local_addr()?;
        let state = self.state();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(self.serve(async move {
            let _ = stopped.await;
        }));
        Ok(GatewayHandle {
            addr,
            state,
            stop,
            task,
        })
    }

    /// Serves until `shutdown` resolves, then broadcasts `shutdown`, closes
    /// every socket with 1012 and returns once they are gone (or after a
    /// grace period).
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state;
        let ticker = tokio::spawn(tick_loop(state.clone()));
        let presence = tokio::spawn(presence_loop(state.clone()));
        let pruner = tokio::spawn(prune_loop(state.clone()));
        let flusher = tokio::spawn(flush_loop(state.clone()));
        let stop_state = state.clone();
        let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
        // Our own accept loop rather than axum::serve: deadlines and caps
        // for connections that have not sent a complete request yet.
        let server = tokio::spawn(listener::serve_http(
            self.listener,
            state.clone(),
            async move {
                let _ = http_stop_rx.await;
            },
        ));
        shutdown.await;
        // From here on no session is let in (upgrades get 503, a connect in
        // flight UNAVAILABLE with 1013) and no tick or presence goes out, so
        // every session gets `shutdown` as its last event before its 1012.
        stop_state.stop_accepting();
        ticker.abort();
        presence.abort();
        stop_state.hub.broadcast(
            "shutdown",
            &json!({"reason": "gateway stopping", "restartExpectedMs": null}),
        );
        // Give the shutdown event a moment to be written before the close.
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop_state.begin_shutdown();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while stop_state.metrics.connections_open() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        pruner.abort();
        flusher.abort();
        state.flush_deferred();
        let _ = http_stop_tx.send(());
        match tokio::time::timeout(Duration::from_secs(2), server).await {
            Ok(Ok(result)) => result,
            _ => Ok(()),
        }
    }
}

/// Drops pending pairing requests whose TTL ran out (reads already ignore
/// them; this keeps the table small).
async fn prune_loop(state: Arc<GatewayState>) {
    let mut interval = tokio::time::interval(Duration::from_secs(60));
    loop {
        interval.tick().await;
        let cutoff = state::now_ms().saturating_sub(pairing::PENDING_TTL_MS);
        match state.store.prune_expired_pending(cutoff) {
            Ok(expired) if !expired.is_empty() => {
                tracing::info!(
                    count = expired.len(),
                    "expired pending pairing requests removed"
                )
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "pruning expired pairing requests failed"),
        }
    }
}

/// Writes the queued last-seen and token-use updates once a second.
async fn flush_loop(state: Arc<GatewayState>) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let s = state.clone();
        let _ = tokio::task::spawn_blocking(move || s.flush_deferred()).await;
    }
}

async fn tick_loop(state: Arc<GatewayState>) {
    let mut interval = tokio::time::interval(state.options.tick_interval);
    interval.tick().await;
    loop {
        interval.tick().await;
        state.hub.broadcast("tick", &json!({"ts": state::now_ms()}));
    }
}

/// Broadcasts the presence list when it changed, at most every 250 ms, so a
/// burst of connects costs one broadcast rather than one per connect.
async fn presence_loop(state: Arc<GatewayState>) {
    let mut seen = state.hub.presence_version();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = state.hub.presence_version();
        if now != seen {
            seen = now;
            let list = methods::presence_list(&state);
            state.hub.broadcast("presence", &json!({"presence": list}));
        }
    }
}
