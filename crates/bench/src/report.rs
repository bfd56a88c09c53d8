//! Counting, percentiles, CPU/RSS sampling around a run, and the output:
//! one JSON line on stdout, a human summary on stderr.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::conn::Failure;
use crate::sys::{self, ProcSample};
use crate::{BenchError, Ctx};

/// Errors by kind, with the first message seen for each.
#[derive(Default)]
pub struct Errors {
    pub counts: BTreeMap<String, u64>,
    pub samples: BTreeMap<String, String>,
}

impl Errors {
    pub fn add(&mut self, f: &Failure) {
        self.add_n(f, 1);
    }

    pub fn add_n(&mut self, f: &Failure, n: u64) {
        let kind = f.kind();
        if !self.samples.contains_key(&kind) {
            self.samples.insert(kind.clone(), f.detail());
        }
        *self.counts.entry(kind).or_default() += n;
    }

    pub fn merge(&mut self, other: Errors) {
        for (k, v) in other.counts {
            *self.counts.entry(k).or_default() += v;
        }
        for (k, v) in other.samples {
            self.samples.entry(k).or_insert(v);
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    pub fn counts_json(&self) -> Value {
        json!(self.counts)
    }

    pub fn samples_json(&self) -> Value {
        json!(self.samples)
    }

    /// `AUTH_TOKEN_MISMATCH x3, io x1 (Connection refused)`.
    pub fn summary(&self) -> String {
        self.counts
            .iter()
            .map(|(k, v)| match self.samples.get(k) {
                Some(s) if !s.is_empty() => format!("{k} x{v} ({s})"),
                _ => format!("{k} x{v}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Latency samples in microseconds.
#[derive(Default)]
pub struct Latencies(pub Vec<u32>);

impl Latencies {
    pub fn push(&mut self, since: Instant) {
        let us = since.elapsed().as_micros().min(u32::MAX as u128) as u32;
        self.0.push(us);
    }

    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// Nearest-rank percentile in ms (None without samples).
    fn pct(sorted: &[u32], p: f64) -> Option<f64> {
        if sorted.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        let i = rank.clamp(1, sorted.len()) - 1;
        Some(round(sorted[i] as f64 / 1000.0, 3))
    }

    /// Adds `p50_ms` etc. for the given percentiles, and `max_ms`.
    pub fn add_fields(&mut self, out: &mut Map<String, Value>, percentiles: &[u32]) {
        self.0.sort_unstable();
        for &p in percentiles {
            out.insert(format!("p{p}_ms"), json!(Self::pct(&self.0, p as f64)));
        }
        out.insert("max_ms".into(), json!(Self::pct(&self.0, 100.0)));
    }

    pub fn summary(&mut self) -> String {
        self.0.sort_unstable();
        let f = |p: f64| {
            Self::pct(&self.0, p)
                .map(|v| format!("{v}"))
                .unwrap_or_else(|| "-".into())
        };
        format!(
            "p50 {} ms, p99 {} ms, max {} ms",
            f(50.0),
            f(99.0),
            f(100.0)
        )
    }
}

pub fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// CPU and RSS before a measured phase.
pub struct Meter {
    t0: Instant,
    cpu0: f64,
    server0: Option<ProcSample>,
    server_pid: Option<u32>,
}

/// What happened to CPU and RSS over the measured phase.
pub struct Metered {
    pub secs: f64,
    pub client_cpu_secs: f64,
    pub server0: Option<ProcSample>,
    pub server1: Option<ProcSample>,
}

impl Meter {
    pub fn start(ctx: &Ctx) -> Result<Meter, BenchError> {
        let server0 = match ctx.server_pid {
            Some(pid) => Some(server_sample(pid)?),
            None => None,
        };
        Ok(Meter {
            t0: Instant::now(),
            cpu0: sys::own_cpu_secs(),
            server0,
            server_pid: ctx.server_pid,
        })
    }

    pub fn started(&self) -> Instant {
        self.t0
    }

    pub fn stop(self) -> Metered {
        let secs = self.t0.elapsed().as_secs_f64();
        let client_cpu_secs = sys::own_cpu_secs() - self.cpu0;
        let server1 = self.server_pid.and_then(|pid| match sys::proc_sample(pid) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("warning: cannot sample --server-pid {pid} after the run: {e}");
                None
            }
        });
        Metered {
            secs,
            client_cpu_secs,
            server0: self.server0,
            server1,
        }
    }
}

/// The server's CPU seconds per wall second while nothing is sent to it,
/// over `secs` (sampled from /proc in 10 ms ticks, so coarse).
pub async fn idle_cpu_per_sec(pid: u32, secs: std::time::Duration) -> Result<f64, BenchError> {
    let a = server_sample(pid)?;
    let t0 = Instant::now();
    tokio::time::sleep(secs).await;
    let b = server_sample(pid)?;
    Ok(b.cpu_since(&a) / t0.elapsed().as_secs_f64())
}

/// A sample of the server process, or a usage error naming the pid.
pub fn server_sample(pid: u32) -> Result<ProcSample, BenchError> {
    sys::proc_sample(pid)
        .map_err(|e| BenchError::Usage(format!("--server-pid {pid}: cannot read /proc/{pid}: {e}")))
}

impl Metered {
    pub fn server_cpu_secs(&self) -> Option<f64> {
        match (&self.server0, &self.server1) {
            (Some(a), Some(b)) => Some(b.cpu_since(a)),
            _ => None,
        }
    }

    pub fn client_cpu_pct(&self) -> f64 {
        if self.secs > 0.0 {
            self.client_cpu_secs / self.secs * 100.0
        } else {
            0.0
        }
    }

    /// `secs`, `rate` = ops/secs.
    pub fn add_rate(&self, out: &mut Map<String, Value>, ops: u64) {
        out.insert("secs".into(), json!(round(self.secs, 3)));
        let rate = if self.secs > 0.0 {
            ops as f64 / self.secs
        } else {
            0.0
        };
        out.insert("rate".into(), json!(round(rate, 1)));
    }

    /// Client CPU, and server CPU/RSS when a pid was given;
    /// `server_cpu_us_per_op` divides the server's CPU by `ops`.
    pub fn add_cpu(&self, out: &mut Map<String, Value>, ops: u64) {
        out.insert(
            "client_cpu_secs".into(),
            json!(round(self.client_cpu_secs, 3)),
        );
        out.insert(
            "client_cpu_pct".into(),
            json!(round(self.client_cpu_pct(), 1)),
        );
        out.insert("client_cores".into(), json!(sys::cores()));
        if self.server0.is_none() {
            return;
        }
        let cpu = self.server_cpu_secs();
        out.insert("server_cpu_secs".into(), json!(cpu.map(|c| round(c, 3))));
        let pct = cpu
            .filter(|_| self.secs > 0.0)
            .map(|c| c / self.secs * 100.0);
        out.insert("server_cpu_pct".into(), json!(pct.map(|p| round(p, 1))));
        let per = cpu.filter(|_| ops > 0).map(|c| c * 1e6 / ops as f64);
        out.insert(
            "server_cpu_us_per_op".into(),
            json!(per.map(|p| round(p, 2))),
        );
        out.insert(
            "server_rss_kb_before".into(),
            json!(self.server0.as_ref().map(|s| s.rss_kb)),
        );
        out.insert(
            "server_rss_kb_after".into(),
            json!(self.server1.as_ref().map(|s| s.rss_kb)),
        );
    }

    /// The server's CPU per op less what it spends idle (`idle` CPU
    /// seconds per second, over this run's duration).
    pub fn net_cpu_us_per_op(&self, ops: u64, idle: f64) -> Option<f64> {
        let cpu = self.server_cpu_secs()?;
        (ops > 0).then(|| (cpu - idle * self.secs).max(0.0) * 1e6 / ops as f64)
    }

    /// `server_idle_cpu_pct` (before the run) and `server_cpu_us_per_op_net`.
    pub fn add_net_cpu(&self, out: &mut Map<String, Value>, ops: u64, idle: f64) {
        out.insert("server_idle_cpu_pct".into(), json!(round(idle * 100.0, 3)));
        out.insert(
            "server_cpu_us_per_op_net".into(),
            json!(self.net_cpu_us_per_op(ops, idle).map(|p| round(p, 2))),
        );
    }

    /// `client CPU 1.90 s (125% of a core, 2 cores); server CPU 1.10 s (55 us/op), RSS 9000 -> 9800 KiB`
    /// plus a note when the machine was CPU-saturated.
    pub fn cpu_summary(&self, ops: u64) -> String {
        let mut s = format!(
            "client CPU {:.2} s ({:.0}% of a core, {} cores)",
            self.client_cpu_secs,
            self.client_cpu_pct(),
            sys::cores()
        );
        if let Some(cpu) = self.server_cpu_secs() {
            s.push_str(&format!("; server CPU {cpu:.2} s"));
            if ops > 0 {
                s.push_str(&format!(" ({:.1} us/op)", cpu * 1e6 / ops as f64));
            }
        }
        if let (Some(a), Some(b)) = (&self.server0, &self.server1) {
            s.push_str(&format!(", server RSS {} -> {} KiB", a.rss_kb, b.rss_kb));
        }
        let cores = sys::cores() as f64;
        let server_pct = self
            .server_cpu_secs()
            .filter(|_| self.secs > 0.0)
            .map(|c| c / self.secs * 100.0)
            .unwrap_or(0.0);
        let total = self.client_cpu_pct() + server_pct;
        if self.secs >= 0.2 && total >= 0.9 * cores * 100.0 {
            s.push_str(&format!(
                "\nnote: the machine's CPUs were saturated (bench {:.0}% + server {:.0}% of {:.0}%); the bench's share limits the measurable rate",
                self.client_cpu_pct(),
                server_pct,
                cores * 100.0
            ));
        } else if self.secs >= 0.2 && self.client_cpu_pct() >= 0.9 * cores * 100.0 {
            s.push_str("\nnote: the bench itself used every core; the figure is client-bound");
        }
        s
    }
}

/// The fields every run starts with.
pub fn header(ctx: &Ctx, bench: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("bench".into(), json!(bench));
    m.insert("label".into(), json!(ctx.label));
    m.insert("url".into(), json!(ctx.url));
    m.insert("auth".into(), json!(ctx.auth.mode()));
    m
}

/// The JSON line on stdout, then the human summary on stderr.
pub fn emit(out: Map<String, Value>, summary: &str) {
    let line = Value::Object(out).to_string();
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
    eprintln!("{summary}");
}

/// A run that could not measure anything: still one JSON line (with the
/// reason in `error`), then exit 1 with the reason on stderr.
pub fn failed(ctx: &Ctx, bench: &str, fields: Map<String, Value>, msg: String) -> BenchError {
    let mut out = header(ctx, bench);
    out.extend(fields);
    out.insert("error".into(), json!(msg));
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", Value::Object(out));
    let _ = stdout.flush();
    BenchError::Failed(msg)
}

pub fn label_prefix(ctx: &Ctx, bench: &str) -> String {
    match &ctx.label {
        Some(l) => format!("{bench} [{l}]"),
        None => bench.to_string(),
    }
}
