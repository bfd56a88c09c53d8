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

#[derive(Debug, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }
}

/// All gateway metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    connections_open: AtomicI64,
    connections_authenticated: AtomicI64,
    lockouts: AtomicU64,
    upgrades_refused: Mutex<BTreeMap<&'static str, u64>>,
    handshakes: Mutex<BTreeMap<&'static str, u64>>,
    auth_failures: Mutex<BTreeMap<&'static str, u64>>,
    requests: Mutex<BTreeMap<(&'static str, bool), u64>>,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
}

impl Metrics {
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
    pub fn upgrade_refused(&self, reason: &'static str) {
        *self
            .upgrades_refused
            .lock()
            .expect("metrics")
            .entry(reason)
            .or_default() += 1;
    }
    /// A request finished. `method` must come from the dispatch table (or
    /// be "unknown"), never straight from the client.
    pub fn request(&self, method: &'static str, ok: bool, elapsed: Duration) {
        *self
            .requests
            .lock()
            .expect("metrics")
            .entry((method, ok))
            .or_default() += 1;
        self.latency
            .lock()
            .expect("metrics")
            .entry(method)
            .or_default()
            .observe(elapsed.as_secs_f64());
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
        labelled(
            &mut out,
            "clawgate_handshakes_total",
            "Completed handshakes by outcome (ok or the error's details.code).",
            "outcome",
            &self.handshakes.lock().expect("metrics"),
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
        let _ = writeln!(
            out,
            "# HELP clawgate_requests_total Requests by method and result.\n# TYPE clawgate_requests_total counter"
        );
        for ((m, ok), v) in self.requests.lock().expect("metrics").iter() {
            let result = if *ok { "ok" } else { "error" };
            let _ = writeln!(
                out,
                "clawgate_requests_total{{method=\"{m}\",result=\"{result}\"}} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP clawgate_request_duration_seconds Request handling time by method.\n# TYPE clawgate_request_duration_seconds histogram"
        );
        for (m, h) in self.latency.lock().expect("metrics").iter() {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "clawgate_request_duration_seconds_bucket{{method=\"{m}\",le=\"{b}\"}} {}",
                    h.counts.get(i).copied().unwrap_or(0)
                );
            }
            let _ = writeln!(
                out,
                "clawgate_request_duration_seconds_bucket{{method=\"{m}\",le=\"+Inf\"}} {}\nclawgate_request_duration_seconds_sum{{method=\"{m}\"}} {}\nclawgate_request_duration_seconds_count{{method=\"{m}\"}} {}",
                h.count, h.sum, h.count
            );
        }
        out
    }
}
