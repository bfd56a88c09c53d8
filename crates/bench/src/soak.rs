//! `soak`: K authenticated connections held for T seconds while the gateway
//! ticks, a share of them is closed on purpose and re-opened every P
//! seconds (churn), and RPCs go out at a steady rate across them. Counts
//! what the bench did not ask for (closes and errors, RPC failures, tick
//! gaps) and samples the server's RSS and open file descriptors: before,
//! through the hold, and after everything is closed.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::conn::{
    self, CLOSE_WAIT, Credentials, ErrorShape, Failure, HANDSHAKE_TIMEOUT, Target, Ws,
};
use crate::report::{self, Errors, Latencies, Meter, round};
use crate::sys;
use crate::{BenchError, Ctx, check_pos, check_secs};

#[derive(Args, Debug)]
pub struct SoakArgs {
    /// Connections to hold.
    #[arg(short = 'k')]
    pub k: u64,
    /// Seconds to hold them once the K are open.
    #[arg(long)]
    pub secs: f64,
    /// Source addresses, round-robin: spreads the gateway's per-IP cap on
    /// unauthenticated sockets and the ephemeral ports.
    #[arg(long, value_name = "RANGE", default_value = "127.0.0.1-16")]
    pub src_ips: String,
    /// Concurrent handshakes while opening.
    #[arg(long, default_value_t = 64)]
    pub connect_c: usize,
    /// Give up opening the first K after this many seconds.
    #[arg(long, default_value_t = 300.0)]
    pub open_secs: f64,
    /// Churn: every this many seconds, close a share of the connections on
    /// purpose and open as many new ones (0: no churn).
    #[arg(long, default_value_t = 60.0)]
    pub churn_every: f64,
    /// Churn: percent of K closed and re-opened per cycle.
    #[arg(long, default_value_t = 5.0)]
    pub churn_pct: f64,
    /// RPCs per second, spread round-robin over the live connections (0: none).
    #[arg(long, default_value_t = 50.0)]
    pub rpc_rate: f64,
    /// Methods called in turn (params `{}`).
    #[arg(long, default_value = "health,status")]
    pub methods: String,
    /// Sample the server's RSS and fds every this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub sample_every: f64,
    /// The tick interval to check against, in ms (default: `policy.tickIntervalMs` from hello-ok).
    #[arg(long)]
    pub tick_ms: Option<u64>,
    /// After closing everything, wait up to this long for the server's fds to return to baseline.
    #[arg(long, default_value_t = 15.0)]
    pub settle_secs: f64,
    /// Server fds above the baseline still counted as "back to baseline".
    #[arg(long, default_value_t = 8)]
    pub fd_slack: u64,
    /// Exit 1 when a check fails (unasked drops, RPC errors, tick gaps, fds not back).
    #[arg(long)]
    pub check: bool,
}

/// A handshake refused with 503 (the gateway's caps on unauthenticated
/// sockets) is retried this many times, with a growing pause.
const RETRIES_503: u32 = 100;
/// An RPC without a response for this long counts as a timeout.
const RPC_TIMEOUT: Duration = Duration::from_secs(15);
/// A connection asked to close waits this long for its RPCs in flight.
const DRAIN: Duration = Duration::from_secs(5);

/// What the main loop tells a connection.
enum Cmd {
    Rpc(usize),
    Close,
}

/// Counters every connection adds to.
#[derive(Default)]
struct Shared {
    ticks: AtomicU64,
    /// Times a connection went more than two tick intervals without a tick.
    tick_gaps: AtomicU64,
    conns_with_gap: AtomicU64,
    /// Connections that lived more than two intervals and never got a tick.
    conns_never_ticked: AtomicU64,
    conns_ended: AtomicU64,
    rpc_sent: AtomicU64,
    rpc_ok: AtomicU64,
    rpc_failed: AtomicU64,
    rpc_errors: Mutex<Errors>,
    lat: Mutex<Latencies>,
    /// A close or error the bench did not initiate.
    unasked: AtomicU64,
    unasked_reasons: Mutex<BTreeMap<String, u64>>,
    other_events: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn unasked(&self, why: &Failure) {
        self.unasked.fetch_add(1, Ordering::Relaxed);
        *self
            .unasked_reasons
            .lock()
            .unwrap()
            .entry(why.kind())
            .or_default() += 1;
    }

    fn rpc_failed(&self, why: &Failure, n: u64) {
        if n == 0 {
            return;
        }
        self.rpc_failed.fetch_add(n, Ordering::Relaxed);
        self.rpc_errors.lock().unwrap().add_n(why, n);
    }
}

/// Everything a connection task needs.
struct ConnCtx {
    shared: Arc<Shared>,
    methods: Arc<Vec<String>>,
    tick: Duration,
    stop: watch::Receiver<bool>,
}

#[derive(Deserialize)]
struct Inbound<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default)]
    error: Option<ErrorShape>,
}

/// One held connection: reads (ticks, responses; pings are answered while
/// reading), sends the RPCs it is given, closes when asked.
async fn hold_conn(mut ws: Ws, mut cmds: mpsc::Receiver<Cmd>, mut cx: ConnCtx) {
    let sh = cx.shared.clone();
    let opened = Instant::now();
    let gap_limit = cx.tick * 2;
    let mut last_tick = opened;
    let mut ticks: u64 = 0;
    let mut gaps: u64 = 0;
    let mut pending: Vec<(u64, Instant)> = Vec::new();
    let mut next_id: u64 = 2;
    let mut lat = Latencies::default();
    // Set once the bench asked this connection to close: drain, then close.
    let mut closing: Option<tokio::time::Instant> = None;
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    let asked = loop {
        if closing.is_some() && pending.is_empty() {
            break true;
        }
        let gap_at = tokio::time::Instant::from_std(last_tick + gap_limit);
        tokio::select! {
            biased;
            _ = cx.stop.changed(), if closing.is_none() => {
                closing = Some(tokio::time::Instant::now() + DRAIN);
            }
            cmd = cmds.recv(), if closing.is_none() => match cmd {
                Some(Cmd::Rpc(m)) => {
                    let id = next_id;
                    next_id += 1;
                    let frame = format!(
                        r#"{{"type":"req","id":"{id}","method":{},"params":{{}}}}"#,
                        serde_json::to_string(&cx.methods[m % cx.methods.len()]).unwrap_or_default()
                    );
                    sh.rpc_sent.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = ws.send(Message::text(frame)).await {
                        let f = conn::ws_failure(e);
                        sh.rpc_failed(&f, 1 + pending.len() as u64);
                        sh.unasked(&f);
                        break false;
                    }
                    pending.push((id, Instant::now()));
                }
                Some(Cmd::Close) | None => {
                    closing = Some(tokio::time::Instant::now() + DRAIN);
                }
            },
            _ = tokio::time::sleep_until(closing.unwrap_or(far)), if closing.is_some() => {
                sh.rpc_failed(&Failure::Timeout, pending.len() as u64);
                pending.clear();
                break true;
            }
            _ = tokio::time::sleep_until(gap_at) => {
                gaps += 1;
                sh.tick_gaps.fetch_add(1, Ordering::Relaxed);
                last_tick = Instant::now();
                let before = pending.len();
                pending.retain(|(_, sent)| sent.elapsed() < RPC_TIMEOUT);
                sh.rpc_failed(&Failure::Timeout, (before - pending.len()) as u64);
            }
            m = ws.next() => {
                let text = match m {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(f))) => {
                        let f = Failure::Closed(f.map(|f| f.code.into()));
                        sh.rpc_failed(&f, pending.len() as u64);
                        sh.unasked(&f);
                        // Let tungstenite send the close reply.
                        let _ = tokio::time::timeout(CLOSE_WAIT, async {
                            while let Some(Ok(_)) = ws.next().await {}
                        })
                        .await;
                        break false;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        let f = conn::ws_failure(e);
                        sh.rpc_failed(&f, pending.len() as u64);
                        sh.unasked(&f);
                        break false;
                    }
                    None => {
                        let f = Failure::Closed(None);
                        sh.rpc_failed(&f, pending.len() as u64);
                        sh.unasked(&f);
                        break false;
                    }
                };
                let frame: Inbound<'_> = match serde_json::from_str(&text) {
                    Ok(f) => f,
                    Err(e) => {
                        let f = Failure::Protocol(format!("unparsable frame: {e}"));
                        sh.rpc_errors.lock().unwrap().add(&f);
                        continue;
                    }
                };
                match frame.ty.as_ref() {
                    "event" => {
                        let name = frame.event.as_deref().unwrap_or("");
                        if name == "tick" {
                            ticks += 1;
                            last_tick = Instant::now();
                            if ticks.is_multiple_of(64) {
                                sh.ticks.fetch_add(64, Ordering::Relaxed);
                            }
                        } else {
                            *sh.other_events.lock().unwrap().entry(name.to_string()).or_default() += 1;
                        }
                    }
                    "res" => {
                        let Some(id) = frame.id.as_deref().and_then(|i| i.parse::<u64>().ok()) else {
                            continue;
                        };
                        let Some(pos) = pending.iter().position(|(i, _)| *i == id) else {
                            continue;
                        };
                        let (_, sent) = pending.swap_remove(pos);
                        lat.push(sent);
                        if frame.ok == Some(true) {
                            sh.rpc_ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            let f = match frame.error {
                                Some(e) => e.into_failure(),
                                None => Failure::Protocol("ok:false without an error".into()),
                            };
                            sh.rpc_failed(&f, 1);
                        }
                    }
                    _ => {}
                }
            }
        }
    };
    if asked {
        conn::finish(ws, Duration::from_secs(2)).await;
    }
    sh.ticks.fetch_add(ticks % 64, Ordering::Relaxed);
    if gaps > 0 {
        sh.conns_with_gap.fetch_add(1, Ordering::Relaxed);
    }
    if ticks == 0 && opened.elapsed() > gap_limit {
        sh.conns_never_ticked.fetch_add(1, Ordering::Relaxed);
    }
    sh.conns_ended.fetch_add(1, Ordering::Relaxed);
    if !lat.0.is_empty() {
        sh.lat.lock().unwrap().merge(lat);
    }
}

/// A live connection as the main loop sees it.
struct Slot {
    tx: mpsc::Sender<Cmd>,
    task: JoinHandle<()>,
}

/// What opening connections needs, shared by the first open and churn.
struct Opener {
    target: Arc<Target>,
    creds: Arc<Credentials>,
    connect_c: usize,
    shared: Arc<Shared>,
    methods: Arc<Vec<String>>,
    tick: Duration,
    stop: watch::Receiver<bool>,
}

struct Opened {
    slots: Vec<Slot>,
    errors: Errors,
    retries_503: u64,
    secs: f64,
}

impl Opener {
    fn spawn(&self, ws: Ws) -> Slot {
        let (tx, rx) = mpsc::channel(64);
        let cx = ConnCtx {
            shared: self.shared.clone(),
            methods: self.methods.clone(),
            tick: self.tick,
            stop: self.stop.clone(),
        };
        Slot {
            tx,
            task: tokio::spawn(hold_conn(ws, rx, cx)),
        }
    }

    /// Opens `n` connections with `connect_c` handshakes at a time, until
    /// `deadline`.
    async fn open(self: &Arc<Self>, n: u64, deadline: Instant) -> Opened {
        let t0 = Instant::now();
        let next = Arc::new(AtomicU64::new(0));
        let mut workers = Vec::new();
        for _ in 0..self.connect_c.min(n as usize).max(1) {
            let (me, next) = (self.clone(), next.clone());
            workers.push(tokio::spawn(async move {
                let mut slots = Vec::new();
                let mut errors = Errors::default();
                let mut retries = 0u64;
                let cfg = conn::ws_config(1024);
                'conns: while next.fetch_add(1, Ordering::Relaxed) < n {
                    let mut attempt = 0u32;
                    loop {
                        if Instant::now() >= deadline {
                            errors.add(&Failure::Timeout);
                            continue 'conns;
                        }
                        let r = tokio::time::timeout(
                            HANDSHAKE_TIMEOUT,
                            conn::handshake(&me.target, &me.creds, None, me.target.pick_src(), cfg),
                        )
                        .await;
                        match r {
                            Ok(Ok(ws)) => {
                                slots.push(me.spawn(ws));
                                continue 'conns;
                            }
                            Ok(Err((Failure::Http(503), _))) if attempt < RETRIES_503 => {
                                attempt += 1;
                                retries += 1;
                                let pause = 10 * u64::from(attempt.min(20));
                                tokio::time::sleep(Duration::from_millis(pause)).await;
                            }
                            Ok(Err((f, ws))) => {
                                errors.add(&f);
                                if let Some(ws) = ws {
                                    conn::finish(ws, CLOSE_WAIT).await;
                                }
                                continue 'conns;
                            }
                            Err(_) => {
                                errors.add(&Failure::Timeout);
                                continue 'conns;
                            }
                        }
                    }
                }
                (slots, errors, retries)
            }));
        }
        let mut out = Opened {
            slots: Vec::new(),
            errors: Errors::default(),
            retries_503: 0,
            secs: 0.0,
        };
        for w in workers {
            if let Ok((s, e, r)) = w.await {
                out.slots.extend(s);
                out.errors.merge(e);
                out.retries_503 += r;
            }
        }
        out.secs = t0.elapsed().as_secs_f64();
        out
    }
}

/// A churn cycle in flight: the slots it emptied, and its task.
type ChurnTask = (Vec<usize>, JoinHandle<(u64, Opened)>);

/// Closes `slots` on purpose, then opens as many new connections.
async fn churn(opener: Arc<Opener>, slots: Vec<Slot>) -> (u64, Opened) {
    let n = slots.len() as u64;
    let mut closed = 0;
    let mut tasks = Vec::new();
    for s in slots {
        let _ = s.tx.send(Cmd::Close).await;
        tasks.push(s.task);
    }
    for t in tasks {
        if tokio::time::timeout(DRAIN + Duration::from_secs(5), t)
            .await
            .is_ok()
        {
            closed += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    (closed, opener.open(n, deadline).await)
}

/// Open file descriptors of a process.
fn fd_count(pid: u32) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count() as u64)
}

/// One sample of the server during the hold.
#[derive(Clone, Copy)]
struct Sample {
    /// Seconds since the hold began.
    t: f64,
    rss_kb: u64,
    fds: u64,
}

fn median(mut v: Vec<u64>) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    })
}

/// Least-squares slope of RSS over time, KiB per minute.
fn slope_kib_per_min(samples: &[Sample]) -> Option<f64> {
    if samples.len() < 3 {
        return None;
    }
    let n = samples.len() as f64;
    let mx = samples.iter().map(|s| s.t).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.rss_kb as f64).sum::<f64>() / n;
    let sxx: f64 = samples.iter().map(|s| (s.t - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = samples
        .iter()
        .map(|s| (s.t - mx) * (s.rss_kb as f64 - my))
        .sum();
    Some(sxy / sxx * 60.0)
}

/// RSS over the hold: medians of the first and last window (5 minutes, or a
/// third of a shorter hold) and the slope.
struct RssTrend {
    window_secs: f64,
    first_median: Option<u64>,
    last_median: Option<u64>,
    slope: Option<f64>,
    min: Option<u64>,
    max: Option<u64>,
}

fn rss_trend(samples: &[Sample], hold_secs: f64) -> RssTrend {
    let window = (hold_secs / 3.0).min(300.0);
    let end = samples.last().map(|s| s.t).unwrap_or(0.0);
    let first = samples
        .iter()
        .filter(|s| s.t <= window)
        .map(|s| s.rss_kb)
        .collect();
    let last = samples
        .iter()
        .filter(|s| s.t >= end - window)
        .map(|s| s.rss_kb)
        .collect();
    RssTrend {
        window_secs: window,
        first_median: median(first),
        last_median: median(last),
        slope: slope_kib_per_min(samples),
        min: samples.iter().map(|s| s.rss_kb).min(),
        max: samples.iter().map(|s| s.rss_kb).max(),
    }
}

/// A non-negative, finite number of seconds (0 allowed: "off").
fn check_secs_or_zero(flag: &str, v: f64) -> Result<f64, BenchError> {
    if !(v.is_finite() && (0.0..1e7).contains(&v)) {
        return Err(crate::usage(format!(
            "{flag} must be 0 or a positive number of seconds"
        )));
    }
    Ok(v)
}

/// Opens one connection and reads `policy.tickIntervalMs` from hello-ok.
async fn probe_tick_ms(target: &Target, creds: &Credentials) -> Result<u64, Failure> {
    let work = async {
        let mut ws = target.open(None, conn::ws_config(1024)).await?;
        conn::next_text(&mut ws).await?; // connect.challenge
        let id = "1:soak-probe";
        ws.send(Message::text(creds.connect_frame(id, None)))
            .await
            .map_err(conn::ws_failure)?;
        loop {
            let text = conn::next_text(&mut ws).await?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| Failure::Protocol(format!("unparsable frame: {e}")))?;
            if v["type"] != "res" || v["id"] != id {
                continue;
            }
            if v["ok"] != true {
                let e: Option<ErrorShape> = serde_json::from_value(v["error"].clone()).ok();
                return Err(e.map(ErrorShape::into_failure).unwrap_or_else(|| {
                    Failure::Protocol("connect refused without an error".into())
                }));
            }
            let tick = v["payload"]["policy"]["tickIntervalMs"].as_u64();
            conn::finish(ws, CLOSE_WAIT).await;
            return tick
                .ok_or_else(|| Failure::Protocol("hello-ok has no policy.tickIntervalMs".into()));
        }
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_) => Err(Failure::Timeout),
    }
}

pub async fn run(ctx: &Ctx, a: SoakArgs) -> Result<(), BenchError> {
    check_pos("-k", a.k)?;
    check_pos("--connect-c", a.connect_c as u64)?;
    let hold_for = check_secs("--secs", a.secs)?;
    let open_for = check_secs("--open-secs", a.open_secs)?;
    let sample_every = check_secs("--sample-every", a.sample_every)?;
    let settle = check_secs("--settle-secs", a.settle_secs)?;
    let churn_every = check_secs_or_zero("--churn-every", a.churn_every)?;
    if !(a.churn_pct.is_finite() && (0.0..=100.0).contains(&a.churn_pct)) {
        return Err(crate::usage("--churn-pct must be between 0 and 100"));
    }
    if !(a.rpc_rate.is_finite() && (0.0..=1e6).contains(&a.rpc_rate)) {
        return Err(crate::usage("--rpc-rate must be between 0 and 1000000"));
    }
    let methods: Vec<String> = a
        .methods
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect();
    if methods.is_empty() && a.rpc_rate > 0.0 {
        return Err(crate::usage("--methods must name at least one method"));
    }
    let target = Arc::new(crate::target(ctx, Some(&a.src_ips))?);
    let creds = Arc::new(Credentials::new(&ctx.auth));
    let pid = ctx.server_pid;

    // Baseline before any connection of ours exists.
    let fds_before = pid.and_then(fd_count);
    let meter = Meter::start(ctx)?;
    let tick_ms = match a.tick_ms {
        Some(t) if t > 0 => t,
        Some(_) => return Err(crate::usage("--tick-ms must be at least 1")),
        None => probe_tick_ms(&target, &creds).await.map_err(|f| {
            BenchError::Failed(format!(
                "cannot read the tick interval from {}: {} ({})",
                ctx.url,
                f.kind(),
                f.detail()
            ))
        })?,
    };
    let tick = Duration::from_millis(tick_ms);

    let shared = Arc::new(Shared::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let opener = Arc::new(Opener {
        target: target.clone(),
        creds,
        connect_c: a.connect_c,
        shared: shared.clone(),
        methods: Arc::new(methods),
        tick,
        stop: stop_rx,
    });

    // Open the K.
    let first = opener.open(a.k, Instant::now() + open_for).await;
    let connected = first.slots.len() as u64;
    let mut connect_errors = first.errors;
    let mut retries_503 = first.retries_503;
    let open_secs = first.secs;
    let mut slots: Vec<Option<Slot>> = first.slots.into_iter().map(Some).collect();
    let rss_open = pid.and_then(|p| sys::proc_rss_kb(p).ok());
    let fds_open = pid.and_then(fd_count);
    eprintln!(
        "soak: {connected}/{} open in {open_secs:.1} s (tick {tick_ms} ms); holding {} s",
        a.k, a.secs
    );
    if connected == 0 {
        let _ = stop_tx.send(true);
        let mut f = serde_json::Map::new();
        f.insert("k".into(), json!(a.k));
        f.insert("connected".into(), json!(0));
        f.insert("connect_errors".into(), connect_errors.counts_json());
        f.insert("error_samples".into(), connect_errors.samples_json());
        return Err(report::failed(
            ctx,
            "soak",
            f,
            format!("no connection could be opened to {}", ctx.url),
        ));
    }

    // Hold: RPCs, churn and samples until the hold ends.
    let hold_start = Instant::now();
    let hold_end = hold_start + hold_for;
    let mut samples: Vec<Sample> = Vec::new();
    let take_sample = |samples: &mut Vec<Sample>| {
        if let Some(p) = pid
            && let (Ok(rss), Some(fds)) = (sys::proc_rss_kb(p), fd_count(p))
        {
            samples.push(Sample {
                t: hold_start.elapsed().as_secs_f64(),
                rss_kb: rss,
                fds,
            });
        }
    };
    take_sample(&mut samples);
    let mut sample_iv = tokio::time::interval(sample_every);
    sample_iv.tick().await;
    let rpc_period = Duration::from_millis(100);
    let mut rpc_iv = tokio::time::interval(rpc_period);
    rpc_iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut churn_iv = tokio::time::interval(if churn_every > 0.0 {
        Duration::from_secs_f64(churn_every)
    } else {
        hold_for + Duration::from_secs(3600)
    });
    churn_iv.tick().await;
    let churn_n = ((a.k as f64) * a.churn_pct / 100.0).round() as usize;
    let mut churn_task: Option<ChurnTask> = None;
    let mut churn_cycles = 0u64;
    let mut churn_skipped = 0u64;
    let mut churn_closed = 0u64;
    let mut churn_opened = 0u64;
    let mut churn_secs_max = 0.0f64;
    let mut rpc_credit = 0.0f64;
    let mut rpc_cursor = 0usize;
    let mut rpc_method = 0usize;
    let mut rpc_skipped = 0u64;
    let mut churn_cursor = 0usize;
    let sleep_end = tokio::time::sleep_until(tokio::time::Instant::from_std(hold_end));
    tokio::pin!(sleep_end);
    loop {
        tokio::select! {
            _ = &mut sleep_end => break,
            _ = sample_iv.tick() => take_sample(&mut samples),
            _ = rpc_iv.tick(), if a.rpc_rate > 0.0 => {
                rpc_credit += a.rpc_rate * rpc_period.as_secs_f64();
                let n = rpc_credit.floor() as usize;
                rpc_credit -= n as f64;
                for _ in 0..n {
                    // The next live connection, round-robin.
                    let mut sent = false;
                    for _ in 0..slots.len() {
                        let i = rpc_cursor % slots.len();
                        rpc_cursor = rpc_cursor.wrapping_add(1);
                        let Some(s) = &slots[i] else { continue };
                        match s.tx.try_send(Cmd::Rpc(rpc_method)) {
                            Ok(()) => {
                                rpc_method = rpc_method.wrapping_add(1);
                                sent = true;
                                break;
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => slots[i] = None,
                            Err(mpsc::error::TrySendError::Full(_)) => {}
                        }
                    }
                    if !sent {
                        rpc_skipped += 1;
                    }
                }
            }
            _ = churn_iv.tick(), if churn_every > 0.0 && churn_n > 0 => {
                if churn_task.is_some() {
                    churn_skipped += 1;
                    continue;
                }
                let mut picked = Vec::new();
                let mut taken = Vec::new();
                for _ in 0..slots.len() {
                    if taken.len() >= churn_n {
                        break;
                    }
                    let i = churn_cursor % slots.len();
                    churn_cursor = churn_cursor.wrapping_add(1);
                    if let Some(s) = slots[i].take() {
                        picked.push(i);
                        taken.push(s);
                    }
                }
                churn_cycles += 1;
                churn_task = Some((picked, tokio::spawn(churn(opener.clone(), taken))));
            }
            r = async { (&mut churn_task.as_mut().expect("guarded").1).await }, if churn_task.is_some() => {
                let (picked, _) = churn_task.take().expect("guarded");
                if let Ok((closed, opened)) = r {
                    churn_closed += closed;
                    churn_opened += opened.slots.len() as u64;
                    churn_secs_max = churn_secs_max.max(opened.secs);
                    connect_errors.merge(opened.errors);
                    retries_503 += opened.retries_503;
                    for (i, s) in picked.into_iter().zip(opened.slots) {
                        slots[i] = Some(s);
                    }
                }
            }
        }
    }
    // A churn cycle still running finishes (its connections count as held).
    if let Some((picked, task)) = churn_task.take()
        && let Ok((closed, opened)) = task.await
    {
        churn_closed += closed;
        churn_opened += opened.slots.len() as u64;
        churn_secs_max = churn_secs_max.max(opened.secs);
        connect_errors.merge(opened.errors);
        retries_503 += opened.retries_503;
        for (i, s) in picked.into_iter().zip(opened.slots) {
            slots[i] = Some(s);
        }
    }
    take_sample(&mut samples);
    let live_at_end = slots
        .iter()
        .filter(|s| s.as_ref().is_some_and(|s| !s.tx.is_closed()))
        .count() as u64;
    let m = meter.stop();

    // Close everything on purpose, then wait for the server's fds to settle.
    let _ = stop_tx.send(true);
    let close_t0 = Instant::now();
    let _ = tokio::time::timeout(DRAIN + Duration::from_secs(30), async {
        for s in slots.into_iter().flatten() {
            let _ = s.task.await;
        }
    })
    .await;
    let close_secs = close_t0.elapsed().as_secs_f64();
    let settle_t0 = Instant::now();
    let mut fds_after = pid.and_then(fd_count);
    if let (Some(before), Some(_)) = (fds_before, fds_after) {
        while settle_t0.elapsed() < settle {
            fds_after = pid.and_then(fd_count);
            if fds_after.is_some_and(|f| f <= before + a.fd_slack) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let settle_secs = settle_t0.elapsed().as_secs_f64();
    let rss_after_close = pid.and_then(|p| sys::proc_rss_kb(p).ok());

    // Figures.
    let ld = |x: &AtomicU64| x.load(Ordering::Relaxed);
    let unasked = ld(&shared.unasked);
    let rpc_sent = ld(&shared.rpc_sent);
    let rpc_ok = ld(&shared.rpc_ok);
    let rpc_failed = ld(&shared.rpc_failed);
    let ticks = ld(&shared.ticks);
    let tick_gaps = ld(&shared.tick_gaps);
    let conns_ended = ld(&shared.conns_ended);
    let trend = rss_trend(&samples, hold_for.as_secs_f64());
    let fds_peak = samples.iter().map(|s| s.fds).chain(fds_open).max();
    let rss_peak = samples.iter().map(|s| s.rss_kb).chain(rss_open).max();
    let fds_back = match (fds_before, fds_after) {
        (Some(b), Some(f)) => Some(f <= b + a.fd_slack),
        _ => None,
    };
    let mut lat = std::mem::take(&mut *shared.lat.lock().unwrap());
    let mut failed_checks = Vec::new();
    if connected < a.k {
        failed_checks.push(format!("opened {connected} of {}", a.k));
    }
    if unasked > 0 {
        failed_checks.push(format!("{unasked} unasked drops"));
    }
    if rpc_failed > 0 {
        failed_checks.push(format!("{rpc_failed} RPC errors"));
    }
    if tick_gaps > 0 {
        failed_checks.push(format!("{tick_gaps} tick gaps"));
    }
    if churn_opened < churn_closed {
        failed_checks.push(format!("churn re-opened {churn_opened} of {churn_closed}"));
    }
    if fds_back == Some(false) {
        failed_checks.push("server fds not back to baseline".into());
    }

    let mut out = report::header(ctx, "soak");
    out.insert("k".into(), json!(a.k));
    out.insert("secs".into(), json!(a.secs));
    out.insert("src_ips".into(), json!(target.src_ips().len()));
    out.insert("tick_ms".into(), json!(tick_ms));
    out.insert("connected".into(), json!(connected));
    out.insert("open_secs".into(), json!(round(open_secs, 3)));
    out.insert("connect_errors".into(), connect_errors.counts_json());
    if connect_errors.total() > 0 {
        out.insert(
            "connect_error_samples".into(),
            connect_errors.samples_json(),
        );
    }
    out.insert("connect_retries_503".into(), json!(retries_503));
    out.insert("live_at_end".into(), json!(live_at_end));
    out.insert("conns_total".into(), json!(conns_ended));
    out.insert("unasked_drops".into(), json!(unasked));
    out.insert(
        "unasked_reasons".into(),
        json!(*shared.unasked_reasons.lock().unwrap()),
    );
    out.insert("ticks".into(), json!(ticks));
    out.insert("tick_gaps".into(), json!(tick_gaps));
    out.insert(
        "conns_with_tick_gap".into(),
        json!(ld(&shared.conns_with_gap)),
    );
    out.insert(
        "conns_never_ticked".into(),
        json!(ld(&shared.conns_never_ticked)),
    );
    out.insert(
        "other_events".into(),
        json!(*shared.other_events.lock().unwrap()),
    );
    out.insert("churn_every_secs".into(), json!(churn_every));
    out.insert("churn_per_cycle".into(), json!(churn_n));
    out.insert("churn_cycles".into(), json!(churn_cycles));
    out.insert("churn_skipped".into(), json!(churn_skipped));
    out.insert("churn_closed".into(), json!(churn_closed));
    out.insert("churn_reopened".into(), json!(churn_opened));
    out.insert(
        "churn_max_reopen_secs".into(),
        json!(round(churn_secs_max, 3)),
    );
    out.insert("rpc_rate".into(), json!(a.rpc_rate));
    out.insert("rpc_sent".into(), json!(rpc_sent));
    out.insert("rpc_ok".into(), json!(rpc_ok));
    out.insert("rpc_errors".into(), json!(rpc_failed));
    out.insert("rpc_skipped".into(), json!(rpc_skipped));
    {
        let errs = shared.rpc_errors.lock().unwrap();
        out.insert("rpc_error_kinds".into(), errs.counts_json());
        if errs.total() > 0 {
            out.insert("rpc_error_samples".into(), errs.samples_json());
        }
    }
    let mut lat_fields = serde_json::Map::new();
    lat.add_fields(&mut lat_fields, &[50, 99]);
    for (k, v) in lat_fields {
        out.insert(format!("rpc_{k}"), v);
    }
    out.insert("wall_secs".into(), json!(round(m.secs, 3)));
    out.insert("client_cpu_secs".into(), json!(round(m.client_cpu_secs, 3)));
    out.insert("client_cpu_pct".into(), json!(round(m.client_cpu_pct(), 1)));
    out.insert("client_cores".into(), json!(sys::cores()));
    if pid.is_some() {
        out.insert(
            "server_cpu_secs".into(),
            json!(m.server_cpu_secs().map(|c| round(c, 3))),
        );
        let rss_before = m.server0.as_ref().map(|s| s.rss_kb);
        out.insert("server_rss_kb_before".into(), json!(rss_before));
        out.insert("server_rss_kb_open".into(), json!(rss_open));
        out.insert("server_rss_kb_peak".into(), json!(rss_peak));
        out.insert("server_rss_kb_min_held".into(), json!(trend.min));
        out.insert("server_rss_kb_max_held".into(), json!(trend.max));
        out.insert(
            "server_rss_window_secs".into(),
            json!(round(trend.window_secs, 1)),
        );
        out.insert(
            "server_rss_kb_first_median".into(),
            json!(trend.first_median),
        );
        out.insert("server_rss_kb_last_median".into(), json!(trend.last_median));
        out.insert(
            "server_rss_slope_kb_per_min".into(),
            json!(trend.slope.map(|s| round(s, 2))),
        );
        out.insert("server_rss_kb_after_close".into(), json!(rss_after_close));
        out.insert("server_fds_before".into(), json!(fds_before));
        out.insert("server_fds_open".into(), json!(fds_open));
        out.insert("server_fds_peak".into(), json!(fds_peak));
        out.insert("server_fds_after".into(), json!(fds_after));
        out.insert("server_fds_back".into(), json!(fds_back));
        out.insert("fd_slack".into(), json!(a.fd_slack));
        out.insert("samples".into(), json!(samples.len()));
        out.insert(
            "rss_series_kb".into(),
            json!(
                samples
                    .iter()
                    .map(|s| json!([round(s.t, 1), s.rss_kb, s.fds]))
                    .collect::<Vec<_>>()
            ),
        );
    }
    out.insert("close_secs".into(), json!(round(close_secs, 3)));
    out.insert("settle_secs".into(), json!(round(settle_secs, 3)));
    out.insert("checks_failed".into(), json!(failed_checks));

    let mut summary = format!(
        "{}: {connected}/{} connected in {open_secs:.1} s over {} source addresses, held {} s (tick {tick_ms} ms); {live_at_end} live at the end",
        report::label_prefix(ctx, "soak"),
        a.k,
        target.src_ips().len(),
        a.secs,
    );
    summary.push_str(&format!(
        "\nunasked drops {unasked}; ticks {ticks}, tick gaps {tick_gaps} (> 2 intervals without a tick)"
    ));
    if churn_every == 0.0 || churn_n == 0 {
        summary.push_str("\nchurn: off");
    } else {
        summary.push_str(&format!(
        "\nchurn: {churn_cycles} cycles of {churn_n}, {churn_closed} closed on purpose, {churn_opened} re-opened (slowest re-open {churn_secs_max:.2} s){}",
        if churn_skipped > 0 {
            format!(", {churn_skipped} cycles skipped (previous still running)")
        } else {
            String::new()
        }
    ));
    }
    summary.push_str(&format!(
        "\nRPCs: {rpc_sent} sent, {rpc_ok} ok, {rpc_failed} errors; {}",
        lat.summary()
    ));
    if rpc_failed > 0 {
        summary.push_str(&format!(
            " ({})",
            shared.rpc_errors.lock().unwrap().summary()
        ));
    }
    if let (Some(b), Some(p), Some(f)) = (fds_before, fds_peak, fds_after) {
        summary.push_str(&format!(
            "\nserver fds: {b} before, {p} peak, {f} after closing ({})",
            if f <= b + a.fd_slack {
                format!("back to baseline within {}", a.fd_slack)
            } else {
                "NOT back to baseline".into()
            }
        ));
    }
    if let (Some(first), Some(last)) = (trend.first_median, trend.last_median) {
        summary.push_str(&format!(
            "\nserver RSS: {} KiB before, {} KiB open; median {first} KiB over the first {:.0} s, {last} KiB over the last {:.0} s ({:+.1}%); slope {} KiB/min; range {}..{} KiB; {} KiB after closing",
            m.server0.as_ref().map(|s| s.rss_kb).unwrap_or(0),
            rss_open.unwrap_or(0),
            trend.window_secs,
            trend.window_secs,
            (last as f64 - first as f64) / first.max(1) as f64 * 100.0,
            trend
                .slope
                .map(|s| format!("{s:+.2}"))
                .unwrap_or_else(|| "-".into()),
            trend.min.unwrap_or(0),
            trend.max.unwrap_or(0),
            rss_after_close.unwrap_or(0),
        ));
    }
    summary.push_str(&format!("\n{}", m.cpu_summary(rpc_sent)));
    if connect_errors.total() > 0 {
        summary.push_str(&format!("\nconnect errors: {}", connect_errors.summary()));
    }
    if unasked > 0 {
        summary.push_str(&format!(
            "\nunasked drops by: {:?}",
            *shared.unasked_reasons.lock().unwrap()
        ));
    }
    if failed_checks.is_empty() {
        summary.push_str("\nchecks: all passed");
    } else {
        summary.push_str(&format!("\nchecks FAILED: {}", failed_checks.join("; ")));
    }
    report::emit(out, &summary);
    if a.check && !failed_checks.is_empty() {
        return Err(BenchError::Failed(format!(
            "soak checks failed: {}",
            failed_checks.join("; ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: f64, rss_kb: u64) -> Sample {
        Sample { t, rss_kb, fds: 0 }
    }

    #[test]
    fn medians_and_slope() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![5, 1, 3]), Some(3));
        assert_eq!(median(vec![4, 1, 3, 2]), Some(2));
        // 60 KiB more per minute.
        let rising: Vec<Sample> = (0..10).map(|i| s(i as f64 * 10.0, 1000 + i * 10)).collect();
        let slope = slope_kib_per_min(&rising).unwrap();
        assert!((slope - 60.0).abs() < 1e-9, "{slope}");
        let flat: Vec<Sample> = (0..10).map(|i| s(i as f64, 500)).collect();
        assert_eq!(slope_kib_per_min(&flat), Some(0.0));
        assert_eq!(slope_kib_per_min(&flat[..2]), None);
    }

    #[test]
    fn trend_windows_are_five_minutes_or_a_third() {
        // 30 minutes sampled every 10 s: the first and last 5 minutes.
        let long: Vec<Sample> = (0..=180)
            .map(|i| {
                s(
                    i as f64 * 10.0,
                    if i <= 30 {
                        100
                    } else if i >= 150 {
                        300
                    } else {
                        200
                    },
                )
            })
            .collect();
        let t = rss_trend(&long, 1800.0);
        assert_eq!(t.window_secs, 300.0);
        assert_eq!(t.first_median, Some(100));
        assert_eq!(t.last_median, Some(300));
        let short: Vec<Sample> = (0..=30).map(|i| s(i as f64, 7)).collect();
        let t = rss_trend(&short, 30.0);
        assert_eq!(t.window_secs, 10.0);
        assert_eq!((t.first_median, t.last_median), (Some(7), Some(7)));
    }
}
