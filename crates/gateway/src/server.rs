//! The gateway as a whole: bind, serve, shut down, and the background
//! loops (ticks, presence, pruning expired requests, the once-a-second
//! flush of deferred bookkeeping). The composition root: it builds the
//! state and hands the listener to `http`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::net::TcpListener;

use crate::auth::pairing::PENDING_TTL_MS;
use crate::config::GatewayConfig;
use crate::http;
use crate::http::control_ui::ControlUi;
use crate::replica;
use crate::rpc::{self, system};
use crate::session::now_ms;
use crate::state::{GatewayState, RuntimeOptions};

impl GatewayState {
    /// The state of a new gateway over an open store (for embedding and
    /// tests; [`Gateway::bind`] opens the store itself).
    pub fn new(
        config: GatewayConfig,
        options: RuntimeOptions,
        store: Arc<clawgate_store::Store>,
    ) -> Arc<Self> {
        GatewayState::assemble(config, options, store, &rpc::method_names())
    }
}

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

/// A bound, not yet serving gateway.
pub struct Gateway {
    state: Arc<GatewayState>,
    control_ui: Arc<ControlUi>,
    listener: TcpListener,
    /// Called once the accept loop runs (the service manager's `READY=1`).
    on_serving: Option<Box<dyn FnOnce() + Send>>,
    /// Marks the state directory as this gateway's until `serve` returns
    /// (`serve` never moves it out, so it drops when `serve` ends).
    _state_lock: clawgate_store::StateLock,
}

impl Gateway {
    /// Loads the TLS certificate when `gateway.tls` is on (a bad one stops
    /// the start before anything is opened; the error, of kind `Other`,
    /// names the config key), locks the state directory (a second gateway
    /// on it is refused with the first one's pid), opens the store and
    /// binds the listener.
    pub async fn bind(config: GatewayConfig, options: RuntimeOptions) -> std::io::Result<Gateway> {
        let addr = SocketAddr::new(config.bind.address(), config.port);
        let tls = crate::tls::load_if_enabled(&config)?;
        crate::tls::warn_if_plain_remote(&config);
        let state_lock = clawgate_store::StateLock::acquire(&config.state_dir)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let store = open_store(&config)?;
        let caught_up = follow_from_the_start(&store).await?;
        let listener = http::bind(addr)?;
        let control_ui = Arc::new(ControlUi::new(&config.control_ui));
        let state = GatewayState::new(config, options, Arc::new(store));
        if caught_up {
            state.registry.set_up();
        }
        if let Some(tls) = tls {
            let _ = state.tls.set(tls);
        }
        Ok(Gateway {
            state,
            control_ui,
            listener,
            on_serving: None,
            _state_lock: state_lock,
        })
    }

    /// Runs `f` once [`Gateway::serve`] has started the accept loop (for
    /// telling a service manager the gateway is ready).
    pub fn when_serving(mut self, f: impl FnOnce() + Send + 'static) -> Gateway {
        self.on_serving = Some(Box::new(f));
        self
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
        let watcher = state
            .upstream()
            .cloned()
            .map(|up| tokio::spawn(upstream_loop(up)));
        let tls_reloader = state.tls().cloned().map(|tls| tokio::spawn(tls.watch()));
        // Replicas on a shared registry: the change follower, presence rows
        // and lockout sharing.
        let replica_tasks = if state.store.replica_id().is_some() {
            vec![
                tokio::spawn(replica::follow(state.clone())),
                tokio::spawn(replica::presence(state.clone())),
                tokio::spawn(replica::lockouts(state.clone())),
                tokio::spawn(replica::events(state.clone())),
            ]
        } else {
            Vec::new()
        };
        let stop_state = state.clone();
        let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
        // Our own accept loop rather than axum::serve: deadlines and caps
        // for connections that have not sent a complete request yet.
        let server = tokio::spawn(http::serve_http(
            self.listener,
            state.clone(),
            self.control_ui,
            async move {
                let _ = http_stop_rx.await;
            },
        ));
        if let Some(on_serving) = self.on_serving {
            on_serving();
        }
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
        if let Some(w) = watcher {
            w.abort();
        }
        if let Some(r) = tls_reloader {
            r.abort();
        }
        for t in &replica_tasks {
            t.abort();
        }
        state.flush_deferred();
        if !replica_tasks.is_empty() {
            let s = state.clone();
            let _ = tokio::task::spawn_blocking(move || replica::leave(&s)).await;
        }
        let _ = http_stop_tx.send(());
        match tokio::time::timeout(Duration::from_secs(2), server).await {
            Ok(Ok(result)) => result,
            _ => Ok(()),
        }
    }
}

/// The SQLite file in the state directory, or the PostgreSQL registry of
/// `gateway.store.url` (connected, migrated and loaded; the error names
/// `host:port/db`, never a password).
fn open_store(config: &GatewayConfig) -> std::io::Result<clawgate_store::Store> {
    let fail = |e: clawgate_store::StoreError| {
        std::io::Error::other(format!("cannot open the gateway store: {e}"))
    };
    match config.store.postgres().map_err(fail)? {
        None => clawgate_store::Store::open(&config.state_dir.join(clawgate_store::DB_FILE_NAME))
            .map_err(fail),
        Some(target) => {
            let store = clawgate_store::Store::open_postgres(&target).map_err(fail)?;
            tracing::info!(
                registry = store.location(),
                replica = store.replica_id().unwrap_or_default(),
                "device registry: PostgreSQL (shared by replicas)"
            );
            Ok(store)
        }
    }
}

/// Replicas: a replica is ready only once its change follower listens and
/// has caught up (a change committed between loading the registry and
/// listening is not missed). Returns whether the store is shared and caught
/// up; a LISTEN connection that does not come up within 10 s stops the
/// start.
async fn follow_from_the_start(store: &clawgate_store::Store) -> std::io::Result<bool> {
    let Some(mut listen) = store.listen() else {
        return Ok(false);
    };
    let listening =
        tokio::time::timeout(Duration::from_secs(10), listen.wait_for(|s| s.connected)).await;
    if !matches!(listening, Ok(Ok(_))) {
        return Err(std::io::Error::other(format!(
            "cannot open the gateway store: no change-log (LISTEN) connection to {} within 10 s",
            store.location()
        )));
    }
    // No session exists yet: what the catch-up found needs no one told.
    store
        .catch_up()
        .map_err(|e| std::io::Error::other(format!("cannot open the gateway store: {e}")))?;
    Ok(true)
}

/// Drops pending pairing requests whose TTL ran out (reads already ignore
/// them; this keeps the table small) and expired setup codes.
async fn prune_loop(state: Arc<GatewayState>) {
    let mut interval = tokio::time::interval(Duration::from_secs(60));
    loop {
        interval.tick().await;
        let cutoff = now_ms().saturating_sub(PENDING_TTL_MS);
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
        // Setup codes are purged once expired, used or not (the audit log
        // keeps their history).
        match state.store.prune_expired_setup_codes(now_ms()) {
            Ok(gone) if !gone.is_empty() => {
                tracing::info!(count = gone.len(), "expired setup codes removed")
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "pruning expired setup codes failed"),
        }
    }
}

/// Fronting mode: keeps `Upstream::is_up` (and so `/readyz`) current with
/// a TCP connect every 2 s (the upstream does no work for it), and says at
/// start when clawgate is not paired with it.
async fn upstream_loop(up: Arc<crate::upstream::Upstream>) {
    if let Err(e) = up.credentials() {
        tracing::warn!("{e}");
    }
    let mut interval = tokio::time::interval(Duration::from_secs(2));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        up.probe().await;
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
        state.hub.broadcast("tick", &json!({"ts": now_ms()}));
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
            let list = system::presence_list(&state);
            state.hub.broadcast("presence", &json!({"presence": list}));
        }
    }
}
