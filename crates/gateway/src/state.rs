//! State shared by every connection of one gateway.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::config::{AuthConfig, GatewayConfig};
use crate::hub::Hub;
use crate::limiter::AuthLimiter;
use crate::listener::UnauthSlots;
use crate::metrics::Metrics;

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
    pub config: GatewayConfig,
    auth: RwLock<AuthState>,
    pub limiter: AuthLimiter,
    /// Device registry and audit log.
    pub store: Arc<clawgate_store::Store>,
    pub hub: Hub,
    pub metrics: Metrics,
    /// Routine connect updates waiting to be written, and tokens this
    /// process minted (see `deferred.rs`).
    pub deferred: crate::deferred::Deferred,
    pub unauth: UnauthSlots,
    /// TCP connections still in the HTTP phase (accepted, not yet upgraded
    /// or answered), capped like `unauth` (see `listener::serve_http`).
    pub pending_http: UnauthSlots,
    /// Per-process id reported as `server.bootId`.
    pub boot_id: String,
    /// Reported in the gateway's own presence entry.
    pub instance_id: String,
    pub started: Instant,
    pub started_at_ms: u64,
    shutting_down: AtomicBool,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Rate of auth-failure audit rows: (second it counts, rows so far,
    /// rows suppressed since the last written one).
    failure_audit: std::sync::Mutex<(u64, u32, u64)>,
    /// The same for "connect rejected" log lines: an attack must not flood
    /// the log (nor pay a write per attempt).
    rejection_log: std::sync::Mutex<(u64, u32, u64)>,
    pub options: RuntimeOptions,
    /// The Control UI's files and build id.
    pub control_ui: crate::control_ui::ControlUi,
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
    /// `listener::MAX_UNAUTH_PER_IP`); the same number of connections per
    /// address may be in the HTTP phase.
    pub max_unauth_per_ip: usize,
    /// Unauthenticated sockets in total (default
    /// `listener::MAX_UNAUTH_TOTAL`); the same for the HTTP phase.
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
            max_unauth_per_ip: crate::listener::MAX_UNAUTH_PER_IP,
            max_unauth_total: crate::listener::MAX_UNAUTH_TOTAL,
            rate_limited_delay: std::time::Duration::from_secs(1),
        }
    }
}

/// Auth-failure audit rows written per second at most.
pub const FAILURE_AUDIT_PER_SECOND: u32 = 50;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

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
    pub fn new(
        config: GatewayConfig,
        options: RuntimeOptions,
        store: Arc<clawgate_store::Store>,
    ) -> Arc<Self> {
        let limiter = AuthLimiter::new(config.auth.rate_limit.clone());
        let auth = AuthState {
            config: Arc::new(config.auth.clone()),
            generation: 1,
        };
        let control_ui = crate::control_ui::ControlUi::new(&config.control_ui);
        Arc::new(GatewayState {
            control_ui,
            config,
            auth: RwLock::new(auth),
            limiter,
            store,
            hub: Hub::default(),
            metrics: Metrics::new(&crate::methods::method_names()),
            deferred: crate::deferred::Deferred::default(),
            unauth: UnauthSlots::default(),
            pending_http: UnauthSlots::default(),
            boot_id: uuid::Uuid::new_v4().to_string(),
            instance_id: uuid::Uuid::new_v4().to_string(),
            started: Instant::now(),
            started_at_ms: now_ms(),
            shutting_down: AtomicBool::new(false),
            shutdown: tokio::sync::watch::channel(false).0,
            failure_audit: std::sync::Mutex::new((0, 0, 0)),
            rejection_log: std::sync::Mutex::new((0, 0, 0)),
            options,
        })
    }

    /// Writes the queued last-seen and token-use updates now.
    pub fn flush_deferred(&self) {
        if let Err(err) = self.deferred.flush(&self.store) {
            tracing::warn!(%err, "writing the batched last-seen updates and audit rows failed; they stay queued for the next flush unless the store refused them as invalid");
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
            || guard.config.password != config.password;
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
            tx.append_audit(&crate::audit::record(
                "auth.secret_changed",
                crate::audit::host_actor(via),
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

    /// Records a refused connect in the audit log: code, peer and the
    /// device id the client claimed; never a secret. At most
    /// [`FAILURE_AUDIT_PER_SECOND`] rows a second, so a flood cannot turn the
    /// audit log into a write amplifier; the next row written says how many
    /// were left out.
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

    pub fn audit_auth_failure(
        &self,
        code: &str,
        peer: &crate::auth::PeerContext,
        claimed_device: Option<&str>,
    ) {
        let Some(suppressed) = per_second(
            &self.failure_audit,
            FAILURE_AUDIT_PER_SECOND,
            now_ms() / 1000,
        ) else {
            return;
        };
        let mut details = serde_json::json!({"code": code});
        if suppressed > 0 {
            details["suppressedBefore"] = serde_json::json!(suppressed);
        }
        if let Some(origin) = &peer.origin {
            details["origin"] = serde_json::json!(origin);
        }
        self.deferred.audit(crate::audit::record(
            "auth.failure",
            crate::audit::peer_actor(peer),
            claimed_device,
            details,
        ));
    }

    pub fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Whether `ip` may send forwarding headers.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.config.trusted_proxies.contains(&ip)
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
