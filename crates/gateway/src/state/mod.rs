//! State shared by every connection of one gateway, and the parts it is
//! made of. Every other room (auth, ws, http, rpc) works on a
//! [`GatewayState`]; nothing in here imports those rooms.
//!
//! - `hub.rs`: the authenticated connections (sends, broadcasts, presence,
//!   closing sessions a change invalidated);
//! - `limiter.rs`: failed-auth counts and lockouts;
//! - `slots.rs`: counted slots for sockets that have not authenticated;
//! - `deferred.rs`: routine connect bookkeeping written once a second;
//! - `metrics.rs`: Prometheus counters;
//! - `audit.rs`: what an audit record says about who acted;
//! - `code_guesses.rs`: unknown pairing codes per operator connection;
//! - `passkeys.rs`: passkey ceremonies in flight (single-use challenges);
//! - `registry.rs`: whether a shared (PostgreSQL) registry is reachable and
//!   caught up, so a replica fails closed while it is not.
//!
//! Fields are crate-private: the rooms use them directly, other crates and
//! the integration tests go through the methods here and `testkit`.

pub mod audit;
pub mod code_guesses;
pub mod deferred;
pub mod hub;
pub mod limiter;
pub mod metrics;
pub mod passkeys;
pub mod registry;
pub mod slots;

use clawgate_protocol::wire::AuditAction;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use crate::config::{AuthConfig, GatewayConfig};
use crate::session::{PeerContext, now_ms};
use crate::state::deferred::Deferred;
use crate::state::hub::Hub;
use crate::state::limiter::AuthLimiter;
use crate::state::metrics::Metrics;
use crate::state::slots::{
    MAX_UNAUTH_PER_IP, MAX_UNAUTH_TOTAL, SlotRefusal, UnauthSlot, UnauthSlots,
};
use crate::tls::ServerTls;
use crate::upstream::Upstream;

/// The shared-secret settings in force, with their generation (bumped on
/// every change so sessions that authenticated under an older secret can
/// be found and closed).
#[derive(Debug, Clone)]
pub struct AuthState {
    pub config: Arc<AuthConfig>,
    pub generation: u64,
}

/// Everything connections share.
#[derive(Debug)]
pub struct GatewayState {
    pub(crate) config: GatewayConfig,
    auth: RwLock<AuthState>,
    pub(crate) limiter: AuthLimiter,
    /// Argon2 password verification off the async workers (bounded pool).
    pub(crate) passwords: crate::password::PasswordVerifier,
    /// Device registry and audit log.
    pub(crate) store: Arc<clawgate_store::Store>,
    /// Whether the registry can be trusted now (always, for SQLite).
    pub(crate) registry: registry::RegistryHealth,
    pub(crate) hub: Hub,
    pub(crate) metrics: Metrics,
    /// Routine connect updates waiting to be written, and tokens this
    /// process minted (see `deferred.rs`).
    pub(crate) deferred: Deferred,
    /// Upgraded sockets that have not authenticated yet.
    pub(crate) unauth: Arc<UnauthSlots>,
    /// TCP connections still in the HTTP phase (accepted, not yet upgraded
    /// or answered), capped like `unauth` (see `http::serve_http`).
    pub(crate) pending_http: Arc<UnauthSlots>,
    /// Per-process id reported as `server.bootId`.
    pub(crate) boot_id: String,
    /// Reported in the gateway's own presence entry.
    pub(crate) instance_id: String,
    started: Instant,
    shutting_down: AtomicBool,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Rate of auth-failure audit rows: (second it counts, rows so far,
    /// rows suppressed since the last written one).
    failure_audit: std::sync::Mutex<(u64, u32, u64)>,
    /// The same for "connect rejected" log lines: an attack must not flood
    /// the log (nor pay a write per attempt).
    rejection_log: std::sync::Mutex<(u64, u32, u64)>,
    /// Unknown pairing codes per operator connection (see `code_guesses.rs`).
    pub(crate) code_guesses: code_guesses::CodeGuesses,
    /// Passkey challenges issued and not yet answered.
    pub(crate) passkeys: passkeys::Ceremonies,
    pub(crate) options: RuntimeOptions,
    /// Fronting mode: the OpenClaw gateway every authenticated client is
    /// relayed to (`None`: a standalone gateway).
    pub(crate) upstream: Option<Arc<Upstream>>,
    /// `gateway.tls`: the certificate being served (set once by
    /// `Gateway::bind`; empty on a plain gateway).
    pub(crate) tls: std::sync::OnceLock<Arc<ServerTls>>,
    /// Set by a replica that learned another one changed the shared secret.
    reload_requested: tokio::sync::Notify,
}

/// Timings that tests shorten; the defaults are the protocol's.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Interval of `tick` events (and `policy.tickIntervalMs`).
    pub tick_interval: std::time::Duration,
    /// Time allowed from upgrade to a complete `connect`; also the time a
    /// TCP connection gets to deliver its first complete HTTP request head.
    pub handshake_timeout: std::time::Duration,
    /// Unauthenticated sockets one address may hold (default
    /// `slots::MAX_UNAUTH_PER_IP`); the same number of connections per
    /// address may be in the HTTP phase.
    pub max_unauth_per_ip: usize,
    /// Unauthenticated sockets in total (default
    /// `slots::MAX_UNAUTH_TOTAL`); the same for the HTTP phase.
    pub max_unauth_total: usize,
    /// How long a connect refused by the failed-auth limiter
    /// (`AUTH_RATE_LIMITED`) waits before it is answered, holding its
    /// unauthenticated slot (default 1 s): a guesser that keeps going after
    /// a lockout is slowed to what the per-IP and global caps allow
    /// (32 refusals a second per address by default) instead of costing the
    /// gateway a full handshake per attempt at line rate.
    pub rate_limited_delay: std::time::Duration,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            tick_interval: std::time::Duration::from_millis(clawgate_protocol::TICK_INTERVAL_MS),
            handshake_timeout: std::time::Duration::from_millis(
                clawgate_protocol::HANDSHAKE_TIMEOUT_MS,
            ),
            max_unauth_per_ip: MAX_UNAUTH_PER_IP,
            max_unauth_total: MAX_UNAUTH_TOTAL,
            rate_limited_delay: std::time::Duration::from_secs(1),
        }
    }
}

/// Auth-failure audit rows written per second at most.
pub const FAILURE_AUDIT_PER_SECOND: u32 = 50;

/// At most `limit` events a second: `Some(suppressed since the last one
/// admitted)` when this one is admitted, `None` when it is suppressed.
fn per_second(budget: &std::sync::Mutex<(u64, u32, u64)>, limit: u32, second: u64) -> Option<u64> {
    let mut g = budget.lock().expect("budget lock");
    if g.0 != second {
        *g = (second, 0, g.2);
    }
    if g.1 >= limit {
        g.2 += 1;
        return None;
    }
    g.1 += 1;
    Some(std::mem::take(&mut g.2))
}

/// "connect rejected" log lines per second.
pub const REJECTION_LOGS_PER_SECOND: u32 = 20;

impl GatewayState {
    /// The state of a new gateway. `method_names` are the methods it serves
    /// (the metrics keep one slot per name, by position).
    pub(crate) fn assemble(
        config: GatewayConfig,
        options: RuntimeOptions,
        store: Arc<clawgate_store::Store>,
        method_names: &[&'static str],
    ) -> Arc<Self> {
        let limiter = AuthLimiter::new(config.auth.rate_limit.clone());
        let auth = AuthState {
            config: Arc::new(config.auth.clone()),
            generation: 1,
        };
        let upstream = config
            .upstream
            .clone()
            .map(|u| Upstream::new(u, &config.state_dir));
        Arc::new(GatewayState {
            upstream,
            config,
            auth: RwLock::new(auth),
            limiter,
            passwords: crate::password::PasswordVerifier::for_this_machine(),
            registry: registry::RegistryHealth::new(&store),
            reload_requested: tokio::sync::Notify::new(),
            store,
            hub: Hub::default(),
            metrics: Metrics::new(method_names),
            deferred: Deferred::default(),
            unauth: Arc::default(),
            pending_http: Arc::default(),
            boot_id: uuid::Uuid::new_v4().to_string(),
            instance_id: uuid::Uuid::new_v4().to_string(),
            started: Instant::now(),
            shutting_down: AtomicBool::new(false),
            shutdown: tokio::sync::watch::channel(false).0,
            failure_audit: std::sync::Mutex::new((0, 0, 0)),
            rejection_log: std::sync::Mutex::new((0, 0, 0)),
            code_guesses: code_guesses::CodeGuesses::default(),
            passkeys: passkeys::Ceremonies::default(),
            options,
            tls: std::sync::OnceLock::new(),
        })
    }

    /// TLS on the listener, when `gateway.tls` is on.
    pub fn tls(&self) -> Option<&Arc<ServerTls>> {
        self.tls.get()
    }

    /// Writes the queued last-seen and token-use updates now.
    pub fn flush_deferred(&self) {
        self.report_attack_events();
        match self.deferred.flush(&self.store) {
            // Already said once by the replica follower; kept queued.
            Err(clawgate_store::StoreError::Unreachable { .. }) if !self.registry.is_up() => {}
            Err(err) => {
                tracing::warn!(%err, "writing the batched last-seen updates and audit rows failed; they stay queued for the next flush unless the store refused them as invalid");
            }
            Ok(_) => {}
        }
    }

    /// Logs, counts and audits the under-attack episodes that started or
    /// ended since the last call (once a second, from the flush loop):
    /// one line and one audit row per start and per end, with counts only.
    pub fn report_attack_events(&self) {
        use limiter::AttackEvent;
        for event in self.limiter.drain_attack_events(Instant::now()) {
            let (action, details) = match &event {
                AttackEvent::Started { failures, peers } => {
                    self.metrics.attack_state(true);
                    tracing::warn!(
                        failures,
                        peers,
                        "under attack: shared-secret failures spent the global budget; shared-secret attempts from peers without a recent success are refused until it cools down (device tokens and paired devices keep working)"
                    );
                    (
                        AuditAction::AuthAttackStarted,
                        serde_json::json!({"failures": failures, "peers": peers}),
                    )
                }
                AttackEvent::Ended {
                    duration,
                    refused,
                    failures,
                } => {
                    self.metrics.attack_state(false);
                    let secs = duration.as_secs();
                    tracing::warn!(
                        duration_s = secs,
                        refused,
                        failures,
                        "under-attack episode ended"
                    );
                    (
                        AuditAction::AuthAttackEnded,
                        serde_json::json!({"durationMs": duration.as_millis() as u64, "refused": refused, "failures": failures}),
                    )
                }
            };
            self.deferred.audit(audit::record(
                action,
                audit::host_actor("auth limiter"),
                None,
                details,
            ));
        }
    }

    /// The auth settings in force now.
    pub fn auth(&self) -> AuthState {
        self.auth.read().expect("auth lock").clone()
    }

    /// Replaces the auth settings. Returns the new generation when the
    /// shared secret or mode changed (the caller closes older sessions).
    pub fn replace_auth(&self, config: AuthConfig) -> Option<u64> {
        self.limiter.reconfigure(config.rate_limit.clone());
        let mut guard = self.auth.write().expect("auth lock");
        let changed = guard.config.mode != config.mode
            || guard.config.token != config.token
            || guard.config.password != config.password
            || guard.config.password_hash != config.password_hash;
        let generation = if changed {
            guard.generation + 1
        } else {
            guard.generation
        };
        *guard = AuthState {
            config: Arc::new(config),
            generation,
        };
        changed.then_some(generation)
    }

    /// First step of shutdown: new upgrades and connects are refused;
    /// sessions already open stay until [`Self::begin_shutdown`].
    pub fn stop_accepting(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Starts shutdown: new connects are refused and every connection is
    /// told to close.
    pub fn begin_shutdown(&self) {
        self.stop_accepting();
        self.shutdown.send_replace(true);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// A receiver that changes when shutdown begins.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Applies reloaded auth settings. When the shared secret or mode
    /// changed, records it in the audit log and closes every session that
    /// authenticated with the old secret (4001 "gateway auth changed");
    /// device-token sessions stay. Returns how many sessions were closed, or
    /// `None` when nothing changed.
    pub fn apply_auth_config(&self, config: AuthConfig, via: &str) -> Option<usize> {
        let generation = self.replace_auth(config)?;
        let mode = self.auth().config.mode.as_str();
        let _ = self.store.transact(|tx| {
            // Replicas sharing the registry re-read their own config.
            tx.announce(serde_json::json!({"kind": "auth.changed", "generation": generation}));
            tx.append_audit(&audit::record(
                AuditAction::AuthSecretChanged,
                audit::host_actor(via),
                None,
                serde_json::json!({"generation": generation, "mode": mode}),
            ))
            .map(|_| ())
        });
        Some(self.hub.close_where(
            |c| c.shared_auth_generation.is_some_and(|g| g < generation),
            clawgate_protocol::close_code::SESSION_INVALIDATED,
            "gateway auth changed",
        ))
    }

    /// Sends a pairing event (`device.pair.requested|resolved|changed`,
    /// `device.pair.setup.completed`) to this gateway's operator sockets
    /// and, for replicas, to every other replica's.
    pub fn pairing_event(&self, event: &str, payload: serde_json::Value) {
        self.hub.broadcast(event, &payload);
        self.registry.share_event(event, payload);
    }

    /// Asks whoever reloads this gateway's config (the binary's SIGHUP
    /// task) to do it now: another replica changed the shared secret.
    pub fn request_config_reload(&self) {
        self.reload_requested.notify_one();
    }

    /// Resolves when [`GatewayState::request_config_reload`] was called.
    pub async fn config_reload_requested(&self) {
        self.reload_requested.notified().await;
    }

    /// Whether a "connect rejected" line may be logged now (at most
    /// [`REJECTION_LOGS_PER_SECOND`] a second); `Some(n)`: yes, and `n`
    /// lines were suppressed since the last one.
    pub fn rejection_log_budget(&self) -> Option<u64> {
        per_second(
            &self.rejection_log,
            REJECTION_LOGS_PER_SECOND,
            now_ms() / 1000,
        )
    }

    /// Records a refused connect in the audit log: code, peer and the
    /// device id the client claimed; never a secret. At most
    /// [`FAILURE_AUDIT_PER_SECOND`] rows a second, so a flood cannot turn the
    /// audit log into a write amplifier; the next row written says how many
    /// were left out.
    pub fn audit_auth_failure(&self, code: &str, peer: &PeerContext, claimed_device: Option<&str>) {
        self.audit_auth_failure_with(code, None, peer, claimed_device);
    }

    /// A refused passkey ceremony (`passkey.refused`), within the same
    /// per-second budget as auth failures.
    pub fn audit_passkey_refusal(
        &self,
        reason: &str,
        actor: serde_json::Value,
        mut details: serde_json::Value,
    ) {
        self.budgeted_audit(
            AuditAction::PasskeyRefused,
            || actor,
            None,
            |suppressed| {
                details["reason"] = serde_json::json!(reason);
                if suppressed > 0 {
                    details["suppressedBefore"] = serde_json::json!(suppressed);
                }
                details
            },
        );
    }

    /// Queues a refusal's audit row within [`FAILURE_AUDIT_PER_SECOND`]
    /// rows a second; `details` gets how many were left out before it.
    fn budgeted_audit(
        &self,
        action: AuditAction,
        actor: impl FnOnce() -> serde_json::Value,
        device: Option<&str>,
        details: impl FnOnce(u64) -> serde_json::Value,
    ) {
        let Some(suppressed) = per_second(
            &self.failure_audit,
            FAILURE_AUDIT_PER_SECOND,
            now_ms() / 1000,
        ) else {
            return;
        };
        self.deferred
            .audit(audit::record(action, actor(), device, details(suppressed)));
    }

    /// [`GatewayState::audit_auth_failure`] with the refusal's
    /// `authReason` (trusted-proxy refusals say which rule refused, and the
    /// proxy's address is recorded: the client address is its claim).
    pub fn audit_auth_failure_with(
        &self,
        code: &str,
        reason: Option<&str>,
        peer: &PeerContext,
        claimed_device: Option<&str>,
    ) {
        // Nothing is built for a row the budget leaves out.
        self.budgeted_audit(
            AuditAction::AuthFailure,
            || audit::peer_actor(peer),
            claimed_device,
            |suppressed| {
                let mut details = serde_json::json!({"code": code});
                if let Some(reason) = reason {
                    details["authReason"] = serde_json::json!(reason);
                }
                if let crate::session::ProxyAuth::Verified { user, .. } = &peer.proxy {
                    details["proxyUser"] = serde_json::json!(user);
                }
                if suppressed > 0 {
                    details["suppressedBefore"] = serde_json::json!(suppressed);
                }
                if let Some(origin) = &peer.origin {
                    details["origin"] = serde_json::json!(origin);
                }
                details
            },
        );
    }

    pub fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Whether `ip` may send forwarding headers.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.config.trusted_proxies.contains(&ip)
            || self
                .config
                .trusted_proxy_ranges
                .iter()
                .any(|r| r.contains(ip))
    }

    /// The resolved configuration this gateway runs with.
    /// The upstream this gateway fronts, in fronting mode.
    pub fn upstream(&self) -> Option<&Arc<Upstream>> {
        self.upstream.as_ref()
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// A slot for an upgraded, unauthenticated socket from `ip`.
    pub(crate) fn acquire_unauth(&self, ip: IpAddr) -> Result<UnauthSlot, SlotRefusal> {
        self.acquire(&self.unauth, Some(ip), "unauth_oldest_evicted")
    }

    /// A slot for a connection in the HTTP phase (`ip` None: not counted
    /// per address).
    pub(crate) fn acquire_http(&self, ip: Option<IpAddr>) -> Result<UnauthSlot, SlotRefusal> {
        self.acquire(&self.pending_http, ip, "http_oldest_evicted")
    }

    fn acquire(
        &self,
        pool: &Arc<UnauthSlots>,
        ip: Option<IpAddr>,
        eviction_label: &'static str,
    ) -> Result<UnauthSlot, SlotRefusal> {
        let o = &self.options;
        let (slot, evicted) = pool.acquire(ip, o.max_unauth_per_ip, o.max_unauth_total)?;
        if evicted {
            self.metrics.upgrade_refused(eviction_label);
        }
        Ok(slot)
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    #[test]
    fn per_second_admits_the_limit_then_counts_what_it_suppressed() {
        let budget = std::sync::Mutex::new((7, 0, 0));
        let admitted: Vec<_> = (0..5).map(|_| per_second(&budget, 3, 7)).collect();
        assert_eq!(admitted, vec![Some(0), Some(0), Some(0), None, None]);
        // A new second admits again and reports what was suppressed.
        assert_eq!(per_second(&budget, 3, 8), Some(2));
        assert_eq!(per_second(&budget, 3, 8), Some(0));
    }
}
