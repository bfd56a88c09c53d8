//! `attack`: attacks on a loopback gateway, each with a legitimate client
//! measured alongside.
//!
//! - `attack bruteforce`: M wrong-token connects spread over many source
//!   addresses (127.0.0.x) and `Origin` headers, sequential per limiter key
//!   (source address x browser-or-not) and concurrent across keys. Reports
//!   outcomes by error code, per key whether the lockout came at the
//!   configured count (the peer's own) or earlier (the global budget), and
//!   the legitimate client's latency before and during the attack.
//! - `attack exhaust`: thousands of sockets that upgrade and never send
//!   `connect`, sockets that dribble the HTTP upgrade request or a frame a
//!   byte at a time, and sockets that send nothing; how many were upgraded
//!   or refused, when the server closed them, the server's RSS and fds, and
//!   the legitimate client's successes and latency meanwhile.
//!
//! Both read the gateway's `/metrics` before and after for the server's own
//! counts (refusals by reason, handshake outcomes, lockouts).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use futures_util::SinkExt;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::badauth::WRONG_SECRET;
use crate::conn::{self, Auth, CLOSE_WAIT, Credentials, Failure, HANDSHAKE_TIMEOUT, Target};
use crate::report::{self, Errors, Latencies, round};
use crate::sys;
use crate::{BenchError, Ctx, check_pos, check_secs, usage};

#[derive(Args, Debug)]
pub struct AttackArgs {
    #[command(subcommand)]
    pub cmd: AttackCmd,
}

#[derive(Subcommand, Debug)]
pub enum AttackCmd {
    /// Wrong-token connects over many source addresses and Origins while a
    /// legitimate client keeps connecting from another address.
    Bruteforce(BruteArgs),
    /// Idle upgraded sockets, byte-at-a-time senders and silent sockets
    /// while a legitimate client keeps connecting.
    Exhaust(ExhaustArgs),
}

#[derive(Args, Debug)]
pub struct BruteArgs {
    /// Wrong-token attempts in total.
    #[arg(short = 'm', default_value_t = 100_000)]
    pub m: u64,
    /// Attacker source addresses.
    #[arg(long, value_name = "RANGE", default_value = "127.0.0.10-250")]
    pub src_ips: String,
    /// Origin headers, comma-separated; `none` sends no Origin. Each source
    /// runs one sequential worker without Origin (if `none` is listed) and
    /// one with the others in turn (the limiter keys on address and
    /// browser-or-not, never on the Origin's value). `{port}` is the
    /// gateway's port.
    #[arg(
        long,
        default_value = "none,http://localhost:{port},http://127.0.0.1:{port},http://localhost:5173,http://127.0.0.1:8080"
    )]
    pub origins: String,
    /// The gateway's `gateway.auth.rateLimit.maxAttempts`, to check lockouts against.
    #[arg(long, default_value_t = 10)]
    pub max_attempts: u64,
    /// The gateway's `gateway.auth.rateLimit.exemptLoopback`: with true, a
    /// refusal of a source without Origin can only be the global budget.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub exempt_loopback: bool,
    /// The legitimate client's source address (correct secret).
    #[arg(long, default_value = "127.0.0.2")]
    pub legit_src: IpAddr,
    /// Pause between the legitimate client's connects, in ms.
    #[arg(long, default_value_t = 20)]
    pub legit_pause_ms: u64,
    /// Seconds of legitimate connects before the attack starts (baseline).
    #[arg(long, default_value_t = 3.0)]
    pub baseline_secs: f64,
    /// Stop the attack after this many seconds and report what was done.
    #[arg(long, default_value_t = 600.0)]
    pub max_secs: f64,
    /// Concurrent workers per limiter key (more than 1: the per-key
    /// lockout reading is left out, since attempts of one key race).
    #[arg(long, default_value_t = 1)]
    pub workers_per_key: usize,
    /// Attempts per second at most, over all workers (0: as fast as the
    /// workers go, which saturates a small machine).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Attempts in flight at most, over all workers (0: one per worker).
    /// With thousands of --src-ips (a botnet: one guess per address) this
    /// keeps the load generator from opening them all at once.
    #[arg(long, default_value_t = 0)]
    pub concurrency: usize,
}

#[derive(Args, Debug)]
pub struct ExhaustArgs {
    /// Sockets that complete the upgrade and never send `connect`, round-robin over --src-ips.
    #[arg(long, default_value_t = 6000)]
    pub idle: u64,
    /// Idle upgraded sockets from the one --hot-src address (the per-IP cap).
    #[arg(long, default_value_t = 100)]
    pub hot: u64,
    /// The address of the --hot sockets.
    #[arg(long, default_value = "127.0.0.9")]
    pub hot_src: IpAddr,
    /// Sockets that send the HTTP upgrade request one byte per --dribble-ms.
    #[arg(long, default_value_t = 500)]
    pub slow_head: u64,
    /// Sockets that upgrade, then send a frame one byte per --dribble-ms.
    #[arg(long, default_value_t = 500)]
    pub slow_frame: u64,
    /// Sockets that connect and never send a byte.
    #[arg(long, default_value_t = 500)]
    pub silent: u64,
    /// Attacker source addresses.
    #[arg(long, value_name = "RANGE", default_value = "127.0.0.10-250")]
    pub src_ips: String,
    /// Pause between the bytes of the slow senders, in ms.
    #[arg(long, default_value_t = 1000)]
    pub dribble_ms: u64,
    /// Sockets being opened at a time.
    #[arg(long, default_value_t = 256)]
    pub open_c: usize,
    /// Seconds to watch from the start of the attack (longer than the
    /// gateway's 15 s handshake deadline); sockets still open then are
    /// counted and closed.
    #[arg(long, default_value_t = 45.0)]
    pub secs: f64,
    /// The legitimate client's source address (correct secret).
    #[arg(long, default_value = "127.0.0.2")]
    pub legit_src: IpAddr,
    /// Pause between the legitimate client's connects, in ms.
    #[arg(long, default_value_t = 20)]
    pub legit_pause_ms: u64,
    /// Seconds of legitimate connects before the attack starts (baseline).
    #[arg(long, default_value_t = 3.0)]
    pub baseline_secs: f64,
}

pub async fn run(ctx: &Ctx, a: AttackArgs) -> Result<(), BenchError> {
    match a.cmd {
        AttackCmd::Bruteforce(b) => bruteforce(ctx, b).await,
        AttackCmd::Exhaust(e) => exhaust(ctx, e).await,
    }
}

// ---------------------------------------------------------------- shared

/// Open descriptors of a process.
fn fd_count(pid: u32) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count() as u64)
}

/// Server RSS and fds sampled every 250 ms: first, peak, last.
#[derive(Default, Clone, Copy)]
struct Usage {
    rss_first: Option<u64>,
    rss_peak: Option<u64>,
    rss_last: Option<u64>,
    fds_first: Option<u64>,
    fds_peak: Option<u64>,
    fds_last: Option<u64>,
}

impl Usage {
    fn sample(&mut self, pid: u32) {
        let rss = sys::proc_rss_kb(pid).ok();
        let fds = fd_count(pid);
        self.rss_first = self.rss_first.or(rss);
        self.fds_first = self.fds_first.or(fds);
        self.rss_peak = self.rss_peak.max(rss);
        self.fds_peak = self.fds_peak.max(fds);
        self.rss_last = rss.or(self.rss_last);
        self.fds_last = fds.or(self.fds_last);
    }

    fn add(&self, out: &mut Map<String, Value>) {
        out.insert("server_rss_kb_before".into(), json!(self.rss_first));
        out.insert("server_rss_kb_peak".into(), json!(self.rss_peak));
        out.insert("server_rss_kb_after".into(), json!(self.rss_last));
        out.insert("server_fds_before".into(), json!(self.fds_first));
        out.insert("server_fds_peak".into(), json!(self.fds_peak));
        out.insert("server_fds_after".into(), json!(self.fds_last));
    }

    fn summary(&self) -> String {
        let f = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        format!(
            "server RSS {} -> peak {} -> {} KiB; fds {} -> peak {} -> {}",
            f(self.rss_first),
            f(self.rss_peak),
            f(self.rss_last),
            f(self.fds_first),
            f(self.fds_peak),
            f(self.fds_last)
        )
    }
}

/// Samples the server until `stop`.
fn sampler(pid: Option<u32>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Usage> {
    tokio::spawn(async move {
        let mut u = Usage::default();
        let Some(pid) = pid else { return u };
        loop {
            u.sample(pid);
            if stop.load(Ordering::Relaxed) {
                return u;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

/// The legitimate client's results, per phase.
#[derive(Default)]
struct Legit {
    ok: u64,
    lat: Latencies,
    failures: Errors,
}

/// Phases of a run, as the legitimate client sees them.
const BASELINE: usize = 0;
const ATTACK: usize = 1;

/// Connects with the right secret from `src` in a loop, timing each full
/// handshake, until `stop`; results land in the phase `phase` says. Runs on
/// its own thread and runtime, as a separate client would: its timings do
/// not include waiting behind the attack's tasks in the bench.
fn legit_loop(
    target: Arc<Target>,
    creds: Arc<Credentials>,
    src: IpAddr,
    pause: Duration,
    phase: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<[Legit; 2]> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let out = match rt {
            Ok(rt) => rt.block_on(legit_run(target, creds, src, pause, phase, stop)),
            Err(_) => Default::default(),
        };
        let _ = tx.send(out);
    });
    tokio::spawn(async move { rx.await.unwrap_or_default() })
}

async fn legit_run(
    target: Arc<Target>,
    creds: Arc<Credentials>,
    src: IpAddr,
    pause: Duration,
    phase: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> [Legit; 2] {
    {
        let mut out: [Legit; 2] = Default::default();
        let cfg = conn::ws_config(4096);
        while !stop.load(Ordering::Relaxed) {
            let p = phase.load(Ordering::Relaxed) as usize;
            let start = Instant::now();
            let r = tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                conn::handshake(&target, &creds, None, Some(src), cfg),
            )
            .await;
            let l = &mut out[p.min(1)];
            match r {
                Ok(Ok(ws)) => {
                    l.lat.push(start);
                    l.ok += 1;
                    conn::finish(ws, CLOSE_WAIT).await;
                }
                Ok(Err((f, ws))) => {
                    l.failures.add(&f);
                    if let Some(ws) = ws {
                        conn::finish(ws, CLOSE_WAIT).await;
                    }
                }
                Err(_) => l.failures.add(&Failure::Timeout),
            }
            // In slices, so a long pause ends as soon as the run does.
            let resume = Instant::now() + pause;
            while !stop.load(Ordering::Relaxed) && Instant::now() < resume {
                tokio::time::sleep(pause.min(Duration::from_millis(50))).await;
            }
        }
        out
    }
}

fn legit_fields(out: &mut Map<String, Value>, prefix: &str, l: &mut Legit) {
    out.insert(format!("{prefix}_ok"), json!(l.ok));
    out.insert(format!("{prefix}_failures"), json!(l.failures.total()));
    out.insert(format!("{prefix}_failure_kinds"), l.failures.counts_json());
    // Handshakes that took a second or more: the signature of a SYN
    // retransmit (a full accept queue), not of a slow server.
    let slow = l.lat.0.iter().filter(|us| **us >= 1_000_000).count();
    out.insert(format!("{prefix}_over_1s"), json!(slow));
    let mut m = Map::new();
    l.lat.add_fields(&mut m, &[50, 90, 99]);
    for (k, v) in m {
        out.insert(format!("{prefix}_{k}"), v);
    }
}

fn legit_summary(name: &str, l: &mut Legit) -> String {
    let mut s = format!(
        "{name}: {} hello-ok, {} failed; {}",
        l.ok,
        l.failures.total(),
        l.lat.summary()
    );
    if l.failures.total() > 0 {
        s.push_str(&format!(" ({})", l.failures.summary()));
    }
    s
}

/// The gateway's counters from `/metrics` (plain HTTP from the default
/// source address): `name{label="value"}` -> count.
async fn metrics(addr: SocketAddr) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let fetch = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        Some(String::from_utf8_lossy(&buf).into_owned())
    };
    let Ok(Some(text)) = tokio::time::timeout(Duration::from_secs(5), fetch).await else {
        return out;
    };
    for line in text.lines() {
        let interesting = [
            "clawgate_upgrades_refused_total",
            "clawgate_handshakes_total",
            "clawgate_auth_lockouts_total",
            "clawgate_auth_failures_total",
            "clawgate_auth_attack_",
            "clawgate_auth_shared_secret_evaluations_total",
            "clawgate_auth_password_queue_full_total",
        ];
        if !interesting.iter().any(|p| line.starts_with(p)) {
            continue;
        }
        if let Some((k, v)) = line.rsplit_once(' ')
            && let Ok(v) = v.trim().parse::<u64>()
        {
            out.insert(k.to_string(), v);
        }
    }
    out
}

fn metrics_delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> Value {
    let mut m = Map::new();
    for (k, v) in after {
        let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
        if d > 0 {
            m.insert(k.clone(), json!(d));
        }
    }
    Value::Object(m)
}

/// A TCP connection from `src`.
async fn tcp_from(src: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    let _ = sock.set_nodelay(true);
    sys::bind_address_no_port(&sock);
    sock.bind(SocketAddr::new(src, 0))?;
    sock.connect(to).await
}

// ---------------------------------------------------------------- bruteforce

/// One limiter key's run: its outcomes in order, run-length encoded.
struct KeyRun {
    src: IpAddr,
    browser: bool,
    runs: Vec<(String, u64)>,
    accepted: u64,
}

impl KeyRun {
    fn record(&mut self, kind: String) {
        match self.runs.last_mut() {
            Some((k, n)) if *k == kind => *n += 1,
            _ => self.runs.push((kind, 1)),
        }
    }

    /// Wrong-token comparisons before the first refusal, if refused.
    fn mismatches_before_refusal(&self) -> Option<u64> {
        let mut n = 0;
        for (k, c) in &self.runs {
            match k.as_str() {
                "AUTH_RATE_LIMITED" => return Some(n),
                "AUTH_TOKEN_MISMATCH" | "AUTH_PASSWORD_MISMATCH" => n += c,
                _ => {}
            }
        }
        None
    }
}

/// One wrong-secret connect with an optional Origin: the outcome's kind
/// ("ACCEPTED" when the gateway said hello-ok).
async fn wrong_attempt(
    url: &str,
    addr: SocketAddr,
    src: IpAddr,
    origin: Option<&str>,
    creds: &Credentials,
) -> String {
    let run = async {
        let mut req = url.into_client_request().map_err(conn::ws_failure)?;
        if let Some(o) = origin
            && let Ok(v) = HeaderValue::from_str(o)
        {
            req.headers_mut().insert("origin", v);
        }
        let stream = tcp_from(src, addr).await.map_err(Failure::Io)?;
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(req, stream, Some(conn::ws_config(4096)))
                .await
                .map_err(conn::ws_failure)?;
        conn::next_text(&mut ws).await?;
        let frame = creds.connect_frame("1:a", None);
        ws.send(Message::text(frame))
            .await
            .map_err(conn::ws_failure)?;
        loop {
            let text = conn::next_text(&mut ws).await?;
            let f = conn::parse_frame(&text)?;
            if f.ty != "res" {
                continue;
            }
            let kind = if f.ok == Some(true) {
                "ACCEPTED".to_string()
            } else {
                f.error
                    .map(|e| e.key())
                    .unwrap_or_else(|| "error".to_string())
            };
            conn::finish(ws, CLOSE_WAIT).await;
            return Ok::<String, Failure>(kind);
        }
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, run).await {
        Ok(Ok(kind)) => kind,
        Ok(Err(f)) => f.kind(),
        Err(_) => Failure::Timeout.kind(),
    }
}

async fn bruteforce(ctx: &Ctx, a: BruteArgs) -> Result<(), BenchError> {
    check_pos("-m", a.m)?;
    let max = check_secs("--max-secs", a.max_secs)?;
    if !(a.rate.is_finite() && a.rate >= 0.0) {
        return Err(usage("--rate must be 0 or a positive number"));
    }
    let baseline = Duration::from_secs_f64(a.baseline_secs.max(0.0));
    let target = Arc::new(Target::new(&ctx.url, Some(&a.src_ips)).map_err(usage)?);
    let legit_target = Arc::new(Target::new(&ctx.url, None).map_err(usage)?);
    if target.src_ips().contains(&a.legit_src) {
        return Err(usage("--legit-src must not be one of --src-ips"));
    }
    let wrong = match &ctx.auth {
        Auth::Token(t) if t != WRONG_SECRET => Auth::Token(WRONG_SECRET.into()),
        Auth::Password(p) if p != WRONG_SECRET => Auth::Password(WRONG_SECRET.into()),
        _ => {
            return Err(usage(
                "attack bruteforce needs the gateway's --token or --password (for the legitimate client)",
            ));
        }
    };
    let port = target.addr.port();
    let mut browser_origins = Vec::new();
    let mut plain = false;
    for o in a
        .origins
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
    {
        if o == "none" {
            plain = true;
        } else {
            browser_origins.push(o.replace("{port}", &port.to_string()));
        }
    }
    if !plain && browser_origins.is_empty() {
        return Err(usage("--origins lists nothing"));
    }
    let bad = Arc::new(Credentials::new(&wrong));
    let good = Arc::new(Credentials::new(&ctx.auth));
    let browser_origins = Arc::new(browser_origins);

    // Baseline: the legitimate client alone.
    let phase = Arc::new(AtomicU64::new(BASELINE as u64));
    let stop_legit = Arc::new(AtomicBool::new(false));
    let stop_sampler = Arc::new(AtomicBool::new(false));
    let usage_task = sampler(ctx.server_pid, stop_sampler.clone());
    let metrics0 = metrics(target.addr).await;
    let legit = legit_loop(
        legit_target.clone(),
        good.clone(),
        a.legit_src,
        Duration::from_millis(a.legit_pause_ms),
        phase.clone(),
        stop_legit.clone(),
    );
    tokio::time::sleep(baseline).await;
    phase.store(ATTACK as u64, Ordering::Relaxed);

    // The attack: one sequential worker per limiter key.
    let meter = report::Meter::start(ctx)?;
    let deadline = meter.started() + max;
    let next = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(if a.concurrency == 0 {
        tokio::sync::Semaphore::MAX_PERMITS
    } else {
        a.concurrency
    }));
    let mut workers = Vec::new();
    for &src in target.src_ips() {
        let classes: Vec<bool> = [
            plain.then_some(false),
            (!browser_origins.is_empty()).then_some(true),
        ]
        .into_iter()
        .flatten()
        .collect();
        for (browser, _) in classes
            .iter()
            .flat_map(|b| std::iter::repeat_n(*b, a.workers_per_key.max(1)).zip(0..))
        {
            let (next, bad, origins) = (next.clone(), bad.clone(), browser_origins.clone());
            let in_flight = in_flight.clone();
            let (url, addr, m, rate) = (ctx.url.clone(), target.addr, a.m, a.rate);
            let started = meter.started();
            workers.push(tokio::spawn(async move {
                let mut run = KeyRun {
                    src,
                    browser,
                    runs: Vec::new(),
                    accepted: 0,
                };
                let mut i = 0usize;
                loop {
                    let ticket = next.fetch_add(1, Ordering::Relaxed);
                    if Instant::now() >= deadline || ticket >= m {
                        break;
                    }
                    if rate > 0.0 {
                        let at = started + Duration::from_secs_f64(ticket as f64 / rate);
                        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                    }
                    let origin = browser.then(|| origins[i % origins.len()].as_str());
                    i += 1;
                    let Ok(_permit) = in_flight.acquire().await else {
                        break;
                    };
                    // Waiting for a place may outlast the run.
                    if Instant::now() >= deadline {
                        break;
                    }
                    let kind = wrong_attempt(&url, addr, src, origin, &bad).await;
                    if kind == "ACCEPTED" {
                        run.accepted += 1;
                    }
                    run.record(kind);
                }
                run
            }));
        }
    }
    let mut runs = Vec::new();
    for w in workers {
        if let Ok(r) = w.await {
            runs.push(r);
        }
    }
    let m = meter.stop();
    stop_legit.store(true, Ordering::Relaxed);
    let mut legit = legit.await.unwrap_or_default();
    let metrics1 = metrics(target.addr).await;
    stop_sampler.store(true, Ordering::Relaxed);
    let usage_seen = usage_task.await.unwrap_or_default();

    // Outcomes and the per-key reading.
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut accepted = 0;
    let (mut at_count, mut early, mut late, mut never) = (0u64, 0u64, 0u64, 0u64);
    let (mut exempt_keys, mut exempt_refused) = (0u64, 0u64);
    let mut compared_after_refusal = 0u64;
    let mut early_examples = Vec::new();
    for r in &runs {
        accepted += r.accepted;
        for (k, n) in &r.runs {
            *outcomes.entry(k.clone()).or_default() += n;
        }
        let exempt = !r.browser && a.exempt_loopback;
        let before = r.mismatches_before_refusal();
        if let Some(b) = before {
            let total_mismatch: u64 = r
                .runs
                .iter()
                .filter(|(k, _)| k.ends_with("_MISMATCH"))
                .map(|(_, n)| n)
                .sum();
            compared_after_refusal += total_mismatch - b;
        }
        if exempt {
            exempt_keys += 1;
            if before.is_some() {
                exempt_refused += 1;
            }
            continue;
        }
        match before {
            Some(b) if b == a.max_attempts => at_count += 1,
            Some(b) if b < a.max_attempts => {
                early += 1;
                if early_examples.len() < 5 {
                    early_examples.push(json!({
                        "src": r.src.to_string(),
                        "browser": r.browser,
                        "mismatches_before_refusal": b,
                    }));
                }
            }
            Some(_) => late += 1,
            None => never += 1,
        }
    }
    let done: u64 = outcomes.values().sum();
    let global_engaged = early > 0 || exempt_refused > 0;
    // With several workers per key the per-key sequence interleaves: only
    // the outcome counts are meaningful.
    let per_key = a.workers_per_key <= 1;

    let mut out = report::header(ctx, "attack-bruteforce");
    out.insert("m".into(), json!(a.m));
    out.insert("rate_limit".into(), json!(a.rate));
    out.insert("attempts".into(), json!(done));
    out.insert("stopped_by_time".into(), json!(done < a.m));
    out.insert("src_ips".into(), json!(target.src_ips().len()));
    out.insert("origins".into(), json!(a.origins));
    out.insert("keys".into(), json!(runs.len()));
    out.insert("accepted".into(), json!(accepted));
    out.insert("outcomes".into(), json!(outcomes));
    out.insert("max_attempts".into(), json!(a.max_attempts));
    out.insert("exempt_loopback".into(), json!(a.exempt_loopback));
    out.insert("workers_per_key".into(), json!(a.workers_per_key));
    if per_key {
        out.insert("locked_keys".into(), json!(at_count + early + late));
        out.insert("lockout_at_configured_count".into(), json!(at_count));
        out.insert("refused_before_own_count".into(), json!(early));
        out.insert("refused_after_more_than_count".into(), json!(late));
        out.insert("never_refused".into(), json!(never));
        out.insert("exempt_keys".into(), json!(exempt_keys));
        out.insert("exempt_keys_refused".into(), json!(exempt_refused));
        out.insert("global_budget_engaged".into(), json!(global_engaged));
    }
    out.insert("early_refusal_examples".into(), json!(early_examples));
    out.insert(
        "compared_after_first_refusal".into(),
        json!(compared_after_refusal),
    );
    out.insert("secs".into(), json!(round(m.secs, 3)));
    out.insert(
        "rate".into(),
        json!(round(done as f64 / m.secs.max(1e-9), 1)),
    );
    // Guesses the gateway actually compared (a *_MISMATCH answer), per
    // minute of attack: what a distributed guesser gets (issue 22).
    let evaluated: u64 = outcomes
        .iter()
        .filter(|(k, _)| k.ends_with("_MISMATCH"))
        .map(|(_, n)| n)
        .sum();
    let refused = outcomes.get("AUTH_RATE_LIMITED").copied().unwrap_or(0);
    out.insert("evaluated".into(), json!(evaluated));
    out.insert("refused".into(), json!(refused));
    out.insert(
        "evaluated_per_min".into(),
        json!(round(evaluated as f64 * 60.0 / m.secs.max(1e-9), 1)),
    );
    if let Some(cpu) = m.server_cpu_secs()
        && refused > 0
    {
        // Upper bound: all server CPU of the run over the refusals.
        out.insert(
            "server_cpu_us_per_refused".into(),
            json!(round(cpu * 1e6 / refused as f64, 1)),
        );
    }
    out.insert("legit_src".into(), json!(a.legit_src.to_string()));
    legit_fields(&mut out, "legit_baseline", &mut legit[BASELINE]);
    legit_fields(&mut out, "legit", &mut legit[ATTACK]);
    m.add_cpu(&mut out, done);
    usage_seen.add(&mut out);
    out.insert(
        "server_metrics_delta".into(),
        metrics_delta(&metrics0, &metrics1),
    );

    let mut summary = format!(
        "{}: {done}/{} wrong-secret connects in {:.1} s over {} addresses x {} keys each; accepted {accepted}\n\
         outcomes: {outcomes:?}\n\
         {}\n\
         {}\n{}\n{}\n{}",
        report::label_prefix(ctx, "attack bruteforce"),
        a.m,
        m.secs,
        target.src_ips().len(),
        if plain && !browser_origins.is_empty() {
            2
        } else {
            1
        },
        if per_key {
            format!(
                "lockouts: {at_count} keys at the configured {} failures, {early} refused earlier (global budget), {late} later, {never} never refused; \
                 {exempt_refused}/{exempt_keys} loopback-exempt keys refused (global budget only); global budget engaged: {global_engaged}",
                a.max_attempts
            )
        } else {
            format!(
                "lockouts: not read per key ({} workers per key race)",
                a.workers_per_key
            )
        },
        legit_summary("legit (baseline)", &mut legit[BASELINE]),
        legit_summary("legit (during attack)", &mut legit[ATTACK]),
        m.cpu_summary(done),
        usage_seen.summary(),
    );
    summary.push_str(&format!(
        "\nevaluated (compared) guesses: {evaluated} ({:.0}/min), refused unevaluated: {refused}",
        evaluated as f64 * 60.0 / m.secs.max(1e-9)
    ));
    if accepted > 0 {
        summary.push_str(&format!(
            "\n!!!!!!!! WARNING: the gateway ACCEPTED {accepted} connect(s) with a WRONG secret !!!!!!!!"
        ));
    }
    report::emit(out, &summary);
    if accepted > 0 {
        return Err(BenchError::Failed(format!(
            "{accepted} wrong-secret connects accepted"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------- exhaust

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Idle,
    Hot,
    SlowHead,
    SlowFrame,
    Silent,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Idle => "idle",
            Kind::Hot => "hot",
            Kind::SlowHead => "slow_head",
            Kind::SlowFrame => "slow_frame",
            Kind::Silent => "silent",
        }
    }
}

/// How one attack socket went.
#[derive(Default)]
struct SockResult {
    /// The upgrade: "101", "503", another status, "closed" (ended before
    /// an answer), "io", "timeout"; None when it never asked.
    upgrade: Option<String>,
    /// From the start of its clock (connect, or the upgrade for upgraded
    /// sockets) to the server closing it, in ms.
    closed_after_ms: Option<u64>,
    /// The close frame's code, when the server sent one.
    close_code: Option<u16>,
    /// Still open when the watch ended.
    open_at_end: bool,
    connect_error: Option<String>,
}

fn upgrade_request(addr: SocketAddr) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Reads an HTTP response head: its status and the bytes after it.
async fn read_head(s: &mut TcpStream, until: tokio::time::Instant) -> (String, Vec<u8>) {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(until, s.read(&mut chunk)).await {
            Err(_) => return ("timeout".into(), buf),
            Ok(Ok(0)) => return ("closed".into(), buf),
            Ok(Err(_)) => return ("io".into(), buf),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let status = std::str::from_utf8(&buf[..end])
                .ok()
                .and_then(|h| h.split_whitespace().nth(1))
                .unwrap_or("?")
                .to_string();
            return (status, buf[end + 4..].to_vec());
        }
        if buf.len() > 16 * 1024 {
            return ("?".into(), buf);
        }
    }
}

/// Finds the code of a close frame among unmasked server frames.
fn close_code(frames: &[u8]) -> Option<u16> {
    let mut i = 0;
    while i + 2 <= frames.len() {
        let op = frames[i] & 0x0f;
        let len7 = (frames[i + 1] & 0x7f) as usize;
        let (len, hdr) = match len7 {
            126 if i + 4 <= frames.len() => (
                u16::from_be_bytes([frames[i + 2], frames[i + 3]]) as usize,
                4,
            ),
            127 => return None,
            126 => return None,
            n => (n, 2),
        };
        let start = i + hdr;
        if op == 8 {
            return (start + 2 <= frames.len())
                .then(|| u16::from_be_bytes([frames[start], frames[start + 1]]));
        }
        i = start + len;
    }
    None
}

/// Reads until the server closes (EOF or error) or `until`; the bytes read.
async fn until_closed(
    s: &mut TcpStream,
    mut seen: Vec<u8>,
    until: tokio::time::Instant,
) -> (bool, Vec<u8>) {
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(until, s.read(&mut chunk)).await {
            Err(_) => return (false, seen),
            Ok(Ok(0)) | Ok(Err(_)) => return (true, seen),
            Ok(Ok(n)) => {
                if seen.len() < 4096 {
                    seen.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }
}

/// Sends `bytes` one every `pause` until the server closes (EOF, error, or
/// any answer followed by EOF) or `until`: whether it closed.
async fn dribble(
    s: &mut TcpStream,
    bytes: &[u8],
    pause: Duration,
    until: tokio::time::Instant,
    seen: &mut Vec<u8>,
) -> bool {
    let mut chunk = [0u8; 1024];
    let mut i = 0;
    loop {
        if i < bytes.len() && s.write_all(&bytes[i..i + 1]).await.is_err() {
            return true;
        }
        i += 1;
        let wait = tokio::time::Instant::now() + pause;
        let wait = wait.min(until);
        loop {
            match tokio::time::timeout_at(wait, s.read(&mut chunk)).await {
                Err(_) => break,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => {
                    if seen.len() < 4096 {
                        seen.extend_from_slice(&chunk[..n]);
                    }
                }
            }
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
    }
}

async fn attack_socket(
    kind: Kind,
    src: IpAddr,
    addr: SocketAddr,
    dribble_ms: u64,
    until: tokio::time::Instant,
    open: Arc<tokio::sync::Semaphore>,
) -> SockResult {
    let mut r = SockResult::default();
    let permit = open.acquire_owned().await.ok();
    let mut s = match tcp_from(src, addr).await {
        Ok(s) => s,
        Err(e) => {
            r.connect_error = Some(
                e.raw_os_error()
                    .map(|c| format!("os-{c}"))
                    .unwrap_or_else(|| "io".into()),
            );
            return r;
        }
    };
    let t0 = Instant::now();
    let pause = Duration::from_millis(dribble_ms);
    let head = upgrade_request(addr);
    match kind {
        Kind::Silent => {
            drop(permit);
            let (closed, _) = until_closed(&mut s, Vec::new(), until).await;
            if closed {
                r.closed_after_ms = Some(t0.elapsed().as_millis() as u64);
            } else {
                r.open_at_end = true;
            }
        }
        Kind::SlowHead => {
            drop(permit);
            let mut seen = Vec::new();
            let closed = dribble(&mut s, head.as_bytes(), pause, until, &mut seen).await;
            if seen.starts_with(b"HTTP/1.1 ") {
                r.upgrade = Some(String::from_utf8_lossy(&seen[9..12]).into_owned());
            }
            if closed {
                r.closed_after_ms = Some(t0.elapsed().as_millis() as u64);
            } else {
                r.open_at_end = true;
            }
        }
        Kind::Idle | Kind::Hot | Kind::SlowFrame => {
            if s.write_all(head.as_bytes()).await.is_err() {
                r.upgrade = Some("io".into());
                return r;
            }
            let answer_by = tokio::time::Instant::now() + Duration::from_secs(10);
            let (status, rest) = read_head(&mut s, answer_by.min(until)).await;
            drop(permit);
            let upgraded = status == "101";
            r.upgrade = Some(status);
            if !upgraded {
                return r;
            }
            let t_up = Instant::now();
            let (closed, seen) = if kind == Kind::SlowFrame {
                // A masked text frame announcing 125 bytes, a byte at a time.
                let mut frame = vec![0x81u8, 0x80 | 125, 7, 7, 7, 7];
                frame.extend(std::iter::repeat_n(b'x', 125));
                let mut seen = rest;
                let closed = dribble(&mut s, &frame, pause, until, &mut seen).await;
                (closed, seen)
            } else {
                until_closed(&mut s, rest, until).await
            };
            if closed {
                r.closed_after_ms = Some(t_up.elapsed().as_millis() as u64);
                r.close_code = close_code(&seen);
            } else {
                r.open_at_end = true;
            }
        }
    }
    r
}

/// Percentiles of close times, in seconds.
fn close_times(mut ms: Vec<u64>) -> Value {
    if ms.is_empty() {
        return Value::Null;
    }
    ms.sort_unstable();
    let p = |q: f64| {
        let i = ((q / 100.0) * ms.len() as f64).ceil() as usize;
        round(ms[i.clamp(1, ms.len()) - 1] as f64 / 1000.0, 3)
    };
    json!({"n": ms.len(), "min_s": p(0.0), "p50_s": p(50.0), "p99_s": p(99.0), "max_s": p(100.0)})
}

async fn exhaust(ctx: &Ctx, a: ExhaustArgs) -> Result<(), BenchError> {
    let secs = check_secs("--secs", a.secs)?;
    let baseline = Duration::from_secs_f64(a.baseline_secs.max(0.0));
    let target = Target::new(&ctx.url, Some(&a.src_ips)).map_err(usage)?;
    let legit_target = Arc::new(Target::new(&ctx.url, None).map_err(usage)?);
    if target.src_ips().contains(&a.legit_src) || a.hot_src == a.legit_src {
        return Err(usage("--legit-src must not be an attacker address"));
    }
    if matches!(ctx.auth, Auth::None) {
        return Err(usage(
            "attack exhaust needs the gateway's --token or --password (for the legitimate client)",
        ));
    }
    let good = Arc::new(Credentials::new(&ctx.auth));
    let addr = target.addr;

    let phase = Arc::new(AtomicU64::new(BASELINE as u64));
    let stop_legit = Arc::new(AtomicBool::new(false));
    let stop_sampler = Arc::new(AtomicBool::new(false));
    let usage_task = sampler(ctx.server_pid, stop_sampler.clone());
    let metrics0 = metrics(addr).await;
    let legit = legit_loop(
        legit_target,
        good,
        a.legit_src,
        Duration::from_millis(a.legit_pause_ms),
        phase.clone(),
        stop_legit.clone(),
    );
    tokio::time::sleep(baseline).await;
    phase.store(ATTACK as u64, Ordering::Relaxed);

    let meter = report::Meter::start(ctx)?;
    let until = tokio::time::Instant::now() + secs;
    let open = Arc::new(tokio::sync::Semaphore::new(a.open_c.max(1)));
    let mut plan: Vec<(Kind, IpAddr)> = Vec::new();
    for _ in 0..a.hot {
        plan.push((Kind::Hot, a.hot_src));
    }
    // Interleaved so every kind competes for the caps from the start.
    let total = a.idle + a.slow_head + a.slow_frame + a.silent;
    let (mut i, mut h, mut f, mut s) = (0, 0, 0, 0);
    while i + h + f + s < total {
        for (n, max, kind) in [
            (&mut i, a.idle, Kind::Idle),
            (&mut h, a.slow_head, Kind::SlowHead),
            (&mut f, a.slow_frame, Kind::SlowFrame),
            (&mut s, a.silent, Kind::Silent),
        ] {
            if *n < max {
                *n += 1;
                plan.push((kind, target.pick_src().expect("--src-ips is set")));
            }
        }
    }
    let results = Arc::new(Mutex::new(Vec::<(Kind, SockResult)>::new()));
    let mut tasks = Vec::with_capacity(plan.len());
    for (kind, src) in plan {
        let (open, results) = (open.clone(), results.clone());
        let dribble_ms = a.dribble_ms;
        tasks.push(tokio::spawn(async move {
            let r = attack_socket(kind, src, addr, dribble_ms, until, open).await;
            results.lock().unwrap().push((kind, r));
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let m = meter.stop();
    // Let the server finish closing, then stop the legitimate client.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_legit.store(true, Ordering::Relaxed);
    let mut legit = legit.await.unwrap_or_default();
    let metrics1 = metrics(addr).await;
    stop_sampler.store(true, Ordering::Relaxed);
    let usage_seen = usage_task.await.unwrap_or_default();

    // Per kind: upgrade answers, close times, close codes, still open.
    let results = std::mem::take(&mut *results.lock().unwrap());
    let mut per_kind = Map::new();
    let mut open_at_end = 0;
    let mut summary_kinds = Vec::new();
    for kind in [
        Kind::Hot,
        Kind::Idle,
        Kind::SlowHead,
        Kind::SlowFrame,
        Kind::Silent,
    ] {
        let rs: Vec<&SockResult> = results
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, r)| r)
            .collect();
        if rs.is_empty() {
            continue;
        }
        let mut upgrades: BTreeMap<String, u64> = BTreeMap::new();
        let mut codes: BTreeMap<String, u64> = BTreeMap::new();
        let mut connect_errors: BTreeMap<String, u64> = BTreeMap::new();
        let mut closed = Vec::new();
        let mut still = 0;
        for r in &rs {
            if let Some(u) = &r.upgrade {
                *upgrades.entry(u.clone()).or_default() += 1;
            }
            if let Some(c) = r.close_code {
                *codes.entry(c.to_string()).or_default() += 1;
            }
            if let Some(e) = &r.connect_error {
                *connect_errors.entry(e.clone()).or_default() += 1;
            }
            if let Some(ms) = r.closed_after_ms {
                closed.push(ms);
            }
            if r.open_at_end {
                still += 1;
            }
        }
        open_at_end += still;
        let times = close_times(closed);
        summary_kinds.push(format!(
            "{}: {} sockets, answers {upgrades:?}, closed by the server {} (close codes {codes:?}), still open at the end {still}; close times {}",
            kind.name(),
            rs.len(),
            times.get("n").and_then(Value::as_u64).unwrap_or(0),
            times
        ));
        per_kind.insert(
            kind.name().into(),
            json!({
                "sockets": rs.len(),
                "answers": upgrades,
                "connect_errors": connect_errors,
                "close_codes": codes,
                "closed_after": times,
                "open_at_end": still,
            }),
        );
    }

    let mut out = report::header(ctx, "attack-exhaust");
    out.insert("src_ips".into(), json!(target.src_ips().len()));
    out.insert("hot_src".into(), json!(a.hot_src.to_string()));
    out.insert("dribble_ms".into(), json!(a.dribble_ms));
    out.insert("watch_secs".into(), json!(a.secs));
    out.insert("kinds".into(), Value::Object(per_kind));
    out.insert("open_at_end".into(), json!(open_at_end));
    out.insert("legit_src".into(), json!(a.legit_src.to_string()));
    legit_fields(&mut out, "legit_baseline", &mut legit[BASELINE]);
    legit_fields(&mut out, "legit", &mut legit[ATTACK]);
    m.add_cpu(&mut out, 0);
    usage_seen.add(&mut out);
    out.insert(
        "server_metrics_delta".into(),
        metrics_delta(&metrics0, &metrics1),
    );
    let summary = format!(
        "{}: {} attack sockets over {} addresses (+{} from {}), watched {:.0} s; {open_at_end} still open at the end\n{}\n{}\n{}\n{}\n{}\nserver: {}",
        report::label_prefix(ctx, "attack exhaust"),
        results.len(),
        target.src_ips().len(),
        a.hot,
        a.hot_src,
        m.secs,
        summary_kinds.join("\n"),
        legit_summary("legit (baseline)", &mut legit[BASELINE]),
        legit_summary("legit (during attack)", &mut legit[ATTACK]),
        m.cpu_summary(0),
        usage_seen.summary(),
        metrics_delta(&metrics0, &metrics1),
    );
    report::emit(out, &summary);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_close_code() {
        // A text frame "hi", then a close frame 1000.
        let frames = [0x81, 2, b'h', b'i', 0x88, 2, 0x03, 0xe8];
        assert_eq!(close_code(&frames), Some(1000));
        assert_eq!(close_code(&[0x81, 2, b'h']), None);
        let mut long = vec![0x81, 126, 0, 200];
        long.extend(std::iter::repeat_n(b'x', 200));
        long.extend([0x88, 2, 0x03, 0xf5]);
        assert_eq!(close_code(&long), Some(1013));
    }

    #[test]
    fn lockout_reading() {
        let mut r = KeyRun {
            src: "127.0.0.10".parse().unwrap(),
            browser: true,
            runs: Vec::new(),
            accepted: 0,
        };
        for _ in 0..10 {
            r.record("AUTH_TOKEN_MISMATCH".into());
        }
        assert_eq!(r.mismatches_before_refusal(), None);
        r.record("AUTH_RATE_LIMITED".into());
        r.record("AUTH_RATE_LIMITED".into());
        assert_eq!(r.mismatches_before_refusal(), Some(10));
        assert_eq!(r.runs.len(), 2);
    }
}
