//! Prometheus metrics, rendered in the text exposition format.
//!
//! Hand-rolled on atomics rather than a global recorder so that several
//! gateways (tests) can live in one process. Labels are drawn from fixed
//! sets (outcome codes, method names clawgate serves), never from client
//! input, device ids or secrets.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Latency histogram bucket bounds, seconds.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Counters and a latency histogram for one method, all atomics: the
/// request path takes no lock.
#[derive(Debug)]
struct MethodStats {
    name: &'static str,
    ok: AtomicU64,
    error: AtomicU64,
    /// Cumulative counts per bucket bound.
    buckets: [AtomicU64; BUCKETS.len()],
    sum_nanos: AtomicU64,
}

impl MethodStats {
    fn new(name: &'static str) -> MethodStats {
        MethodStats {
            name,
            ok: AtomicU64::new(0),
            error: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, ok: bool, elapsed: Duration) {
        let counter = if ok { &self.ok } else { &self.error };
        counter.fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        // Buckets are cumulative: bump every bound the time fits under.
        if let Some(first) = BUCKETS.iter().position(|b| secs <= *b) {
            for b in &self.buckets[first..] {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.ok.load(Ordering::Relaxed) + self.error.load(Ordering::Relaxed)
    }
}

/// All gateway metrics.
#[derive(Debug)]
pub struct Metrics {
    connections_open: AtomicI64,
    connections_authenticated: AtomicI64,
    lockouts: AtomicU64,
    /// The "under attack" state (issue 22): 1 while on, episodes started,
    /// shared-secret attempts refused by it, and shared-secret comparisons
    /// actually evaluated (what a guesser gets).
    under_attack: AtomicI64,
    attack_episodes: AtomicU64,
    attack_refusals: AtomicU64,
    attack_paired_passes: AtomicU64,
    shared_evaluations: AtomicU64,
    /// Password hash verifications refused because the pool's queue was full.
    password_queue_full: AtomicU64,
    upgrades_refused: Mutex<BTreeMap<&'static str, u64>>,
    handshakes: Mutex<BTreeMap<&'static str, u64>>,
    auth_failures: Mutex<BTreeMap<&'static str, u64>>,
    handshakes_ok: AtomicU64,
    /// Fronting mode: requests relayed upstream, requests refused by the
    /// relay's policy, upstream sockets opened by outcome.
    relayed: AtomicU64,
    relay_blocked: AtomicU64,
    upstream_links: Mutex<BTreeMap<&'static str, u64>>,
    /// One entry per method of the dispatch table, then "unknown".
    methods: Vec<MethodStats>,
}

impl Metrics {
    /// Metrics for a gateway serving `methods` (indexes into this slice
    /// are what [`Metrics::request`] takes).
    pub fn new(methods: &[&'static str]) -> Metrics {
        let mut stats: Vec<MethodStats> = methods.iter().map(|m| MethodStats::new(m)).collect();
        stats.push(MethodStats::new("unknown"));
        Metrics {
            connections_open: AtomicI64::new(0),
            connections_authenticated: AtomicI64::new(0),
            lockouts: AtomicU64::new(0),
            under_attack: AtomicI64::new(0),
            attack_episodes: AtomicU64::new(0),
            attack_refusals: AtomicU64::new(0),
            attack_paired_passes: AtomicU64::new(0),
            shared_evaluations: AtomicU64::new(0),
            password_queue_full: AtomicU64::new(0),
            upgrades_refused: Mutex::default(),
            handshakes: Mutex::default(),
            auth_failures: Mutex::default(),
            handshakes_ok: AtomicU64::new(0),
            relayed: AtomicU64::new(0),
            relay_blocked: AtomicU64::new(0),
            upstream_links: Mutex::default(),
            methods: stats,
        }
    }

    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }
    pub fn connection_closed(&self, was_authenticated: bool) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
        if was_authenticated {
            self.connections_authenticated
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
    pub fn connections_open(&self) -> i64 {
        self.connections_open.load(Ordering::Relaxed)
    }
    /// A handshake finished; `outcome` is "ok" or the error's code.
    pub fn handshake(&self, outcome: &'static str) {
        if outcome == "ok" {
            self.connections_authenticated
                .fetch_add(1, Ordering::Relaxed);
            self.handshakes_ok.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *self
            .handshakes
            .lock()
            .expect("metrics")
            .entry(outcome)
            .or_default() += 1;
    }
    pub fn auth_failure(&self, detail_code: &'static str) {
        *self
            .auth_failures
            .lock()
            .expect("metrics")
            .entry(detail_code)
            .or_default() += 1;
    }
    pub fn lockout(&self) {
        self.lockouts.fetch_add(1, Ordering::Relaxed);
    }
    /// An "under attack" episode started (`true`) or ended.
    pub fn attack_state(&self, on: bool) {
        self.under_attack.store(i64::from(on), Ordering::Relaxed);
        if on {
            self.attack_episodes.fetch_add(1, Ordering::Relaxed);
        }
    }
    pub fn attack_refusal(&self) {
        self.attack_refusals.fetch_add(1, Ordering::Relaxed);
    }
    /// Under attack: a shared-secret attempt let through because a paired
    /// device signed the connect.
    pub fn attack_paired_pass(&self) {
        self.attack_paired_passes.fetch_add(1, Ordering::Relaxed);
    }
    /// A shared secret was compared (or a password hash verified).
    pub fn shared_evaluation(&self) {
        self.shared_evaluations.fetch_add(1, Ordering::Relaxed);
    }
    /// Shared-secret comparisons evaluated so far.
    pub fn shared_evaluations(&self) -> u64 {
        self.shared_evaluations.load(Ordering::Relaxed)
    }
    pub fn password_queue_full(&self) {
        self.password_queue_full.fetch_add(1, Ordering::Relaxed);
    }
    pub fn upgrade_refused(&self, reason: &'static str) {
        *self
            .upgrades_refused
            .lock()
            .expect("metrics")
            .entry(reason)
            .or_default() += 1;
    }
    /// Fronting mode: a request relayed upstream.
    pub fn relayed(&self) {
        self.relayed.fetch_add(1, Ordering::Relaxed);
    }
    /// Fronting mode: a request the relay's policy refused.
    pub fn relay_blocked(&self) {
        self.relay_blocked.fetch_add(1, Ordering::Relaxed);
    }
    /// Fronting mode: an upstream socket for a client was opened ("ok") or
    /// not (the error's details.code).
    pub fn upstream_link(&self, outcome: &'static str) {
        *self
            .upstream_links
            .lock()
            .expect("metrics")
            .entry(outcome)
            .or_default() += 1;
    }

    /// A request finished. `method` is the index of the method in the
    /// table given to [`Metrics::new`]; anything past it counts as
    /// "unknown" (labels never come straight from the client).
    pub fn request(&self, method: usize, ok: bool, elapsed: Duration) {
        let stats = self
            .methods
            .get(method)
            .unwrap_or_else(|| self.methods.last().expect("unknown slot"));
        stats.observe(ok, elapsed);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            &mut out,
            "clawgate_connections_open",
            "WebSocket connections currently open.",
            self.connections_open.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "clawgate_connections_authenticated",
            "WebSocket connections currently authenticated.",
            self.connections_authenticated.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP clawgate_auth_lockouts_total Failed-auth lockouts started.\n# TYPE clawgate_auth_lockouts_total counter\nclawgate_auth_lockouts_total {}",
            self.lockouts.load(Ordering::Relaxed)
        );
        gauge(
            &mut out,
            "clawgate_auth_under_attack",
            "1 while shared-secret attempts from new peers are refused (global failure budget spent).",
            self.under_attack.load(Ordering::Relaxed),
        );
        for (name, help, v) in [
            (
                "clawgate_auth_attack_episodes_total",
                "Under-attack episodes started.",
                &self.attack_episodes,
            ),
            (
                "clawgate_auth_attack_refusals_total",
                "Shared-secret attempts refused unevaluated by the under-attack state.",
                &self.attack_refusals,
            ),
            (
                "clawgate_auth_attack_paired_device_passes_total",
                "Shared-secret attempts let through under attack because a paired device signed them.",
                &self.attack_paired_passes,
            ),
            (
                "clawgate_auth_shared_secret_evaluations_total",
                "Shared secrets compared (or password hashes verified).",
                &self.shared_evaluations,
            ),
            (
                "clawgate_auth_password_queue_full_total",
                "Password verifications refused because the verification queue was full.",
                &self.password_queue_full,
            ),
        ] {
            let v = v.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let labelled = |out: &mut String,
                        name: &str,
                        help: &str,
                        label: &str,
                        map: &BTreeMap<&'static str, u64>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (k, v) in map {
                let _ = writeln!(out, "{name}{{{label}=\"{k}\"}} {v}");
            }
        };
        let mut handshakes = self.handshakes.lock().expect("metrics").clone();
        let ok = self.handshakes_ok.load(Ordering::Relaxed);
        if ok > 0 {
            handshakes.insert("ok", ok);
        }
        labelled(
            &mut out,
            "clawgate_handshakes_total",
            "Completed handshakes by outcome (ok or the error's details.code).",
            "outcome",
            &handshakes,
        );
        labelled(
            &mut out,
            "clawgate_auth_failures_total",
            "Authentication failures by details.code.",
            "code",
            &self.auth_failures.lock().expect("metrics"),
        );
        labelled(
            &mut out,
            "clawgate_upgrades_refused_total",
            "WebSocket upgrades refused before the handshake, by reason.",
            "reason",
            &self.upgrades_refused.lock().expect("metrics"),
        );
        let links = self.upstream_links.lock().expect("metrics").clone();
        if !links.is_empty() {
            labelled(
                &mut out,
                "clawgate_upstream_links_total",
                "Fronting mode: upstream sockets opened for clients, by outcome.",
                "outcome",
                &links,
            );
            let _ = writeln!(
                out,
                "# HELP clawgate_relayed_requests_total Fronting mode: requests relayed to the upstream.\n# TYPE clawgate_relayed_requests_total counter\nclawgate_relayed_requests_total {}\n# HELP clawgate_relay_blocked_total Fronting mode: requests the relay refused (FRONTED_METHOD_BLOCKED).\n# TYPE clawgate_relay_blocked_total counter\nclawgate_relay_blocked_total {}",
                self.relayed.load(Ordering::Relaxed),
                self.relay_blocked.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP clawgate_requests_total Requests by method and result.\n# TYPE clawgate_requests_total counter"
        );
        let used: Vec<&MethodStats> = self.methods.iter().filter(|m| m.count() > 0).collect();
        for m in &used {
            for (result, v) in [("ok", &m.ok), ("error", &m.error)] {
                let v = v.load(Ordering::Relaxed);
                if v > 0 {
                    let _ = writeln!(
                        out,
                        "clawgate_requests_total{{method=\"{}\",result=\"{result}\"}} {v}",
                        m.name
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP clawgate_request_duration_seconds Request handling time by method.\n# TYPE clawgate_request_duration_seconds histogram"
        );
        for m in &used {
            let name = m.name;
            for (b, count) in BUCKETS.iter().zip(&m.buckets) {
                let _ = writeln!(
                    out,
                    "clawgate_request_duration_seconds_bucket{{method=\"{name}\",le=\"{b}\"}} {}",
                    count.load(Ordering::Relaxed)
                );
            }
            let count = m.count();
            let sum = m.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "clawgate_request_duration_seconds_bucket{{method=\"{name}\",le=\"+Inf\"}} {count}\nclawgate_request_duration_seconds_sum{{method=\"{name}\"}} {sum}\nclawgate_request_duration_seconds_count{{method=\"{name}\"}} {count}"
            );
        }
        out
    }
}
