//! `hold`: K authenticated idle connections held for T seconds, reading and
//! discarding frames (ticks; pings are answered while reading); how many the
//! server kept open, and what they cost it in RSS.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::conn::{self, CLOSE_WAIT, Credentials, Failure, HANDSHAKE_TIMEOUT, Target, Ws};
use crate::report::{self, Errors, Meter, round};
use crate::sys;
use crate::{BenchError, Ctx, HoldArgs, check_pos, check_secs};

/// An upgrade refused with 503 (per-IP/global cap on unauthenticated
/// sockets) is retried this many times: the point is to hold K sockets.
const RETRIES_503: u32 = 50;

#[derive(Default)]
struct Held {
    dropped: AtomicU64,
    frames: AtomicU64,
    drop_reasons: Mutex<BTreeMap<String, u64>>,
}

impl Held {
    fn dropped(&self, why: &Failure) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        *self
            .drop_reasons
            .lock()
            .unwrap()
            .entry(why.kind())
            .or_default() += 1;
    }
}

async fn hold_one(mut ws: Ws, mut stop: watch::Receiver<bool>, held: Arc<Held>) {
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => {
                conn::finish(ws, Duration::from_secs(1)).await;
                return;
            }
            m = ws.next() => match m {
                Some(Ok(Message::Close(f))) => {
                    held.dropped(&Failure::Closed(f.map(|f| f.code.into())));
                    // Let tungstenite send the close reply.
                    let _ = tokio::time::timeout(CLOSE_WAIT, async {
                        while let Some(Ok(_)) = ws.next().await {}
                    })
                    .await;
                    return;
                }
                Some(Ok(_)) => {
                    held.frames.fetch_add(1, Ordering::Relaxed);
                }
                Some(Err(e)) => {
                    held.dropped(&conn::ws_failure(e));
                    return;
                }
                None => {
                    held.dropped(&Failure::Closed(None));
                    return;
                }
            }
        }
    }
}

pub async fn run(ctx: &Ctx, a: HoldArgs) -> Result<(), BenchError> {
    check_pos("-k", a.k)?;
    check_pos("--connect-c", a.connect_c as u64)?;
    let hold_for = check_secs("--secs", a.secs)?;
    let max = check_secs("--max-secs", a.max_secs)?;
    let target: Arc<Target> = Arc::new(crate::target(ctx, a.src_ips.as_deref())?);
    let creds = Arc::new(Credentials::new(&ctx.auth));

    let meter = Meter::start(ctx)?; // server RSS before connecting
    let deadline = meter.started() + max;
    let (stop_tx, stop_rx) = watch::channel(false);
    let held = Arc::new(Held::default());
    let next = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));

    let mut workers = Vec::new();
    for _ in 0..a.connect_c.min(a.k as usize) {
        let (target, creds, next, held, stop_rx, retries) = (
            target.clone(),
            creds.clone(),
            next.clone(),
            held.clone(),
            stop_rx.clone(),
            retries.clone(),
        );
        let k = a.k;
        workers.push(tokio::spawn(async move {
            let mut handles: Vec<JoinHandle<()>> = Vec::new();
            let mut errors = Errors::default();
            let cfg = conn::ws_config(1024);
            'conns: loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= k || Instant::now() >= deadline {
                    break;
                }
                let mut attempt = 0;
                loop {
                    let r = tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        conn::handshake(&target, &creds, None, target.pick_src(), cfg),
                    )
                    .await;
                    match r {
                        Ok(Ok(ws)) => {
                            handles.push(tokio::spawn(hold_one(ws, stop_rx.clone(), held.clone())));
                            continue 'conns;
                        }
                        Ok(Err((Failure::Http(503), _)))
                            if attempt < RETRIES_503 && Instant::now() < deadline =>
                        {
                            attempt += 1;
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(10)).await;
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
            (handles, errors)
        }));
    }
    let mut handles = Vec::new();
    let mut errors = Errors::default();
    for w in workers {
        if let Ok((h, e)) = w.await {
            handles.extend(h);
            errors.merge(e);
        }
    }
    let connected = handles.len() as u64;
    let connect_secs = meter.started().elapsed().as_secs_f64();
    let rss_held = ctx.server_pid.and_then(|p| sys::proc_rss_kb(p).ok());
    // The server's CPU while the connections only sit there (ticks and
    // pings), apart from the CPU spent opening them.
    let idle0 = ctx.server_pid.and_then(|p| sys::proc_sample(p).ok());
    let idle_started = Instant::now();

    if connected > 0 {
        tokio::time::sleep(hold_for).await;
    }
    let dropped = held.dropped.load(Ordering::Relaxed);
    let survived = connected - dropped.min(connected);
    let rss_end = ctx.server_pid.and_then(|p| sys::proc_rss_kb(p).ok());
    let idle_cpu_pct = match (idle0, ctx.server_pid.and_then(|p| sys::proc_sample(p).ok())) {
        (Some(a), Some(b)) => Some(b.cpu_since(&a) * 100.0 / idle_started.elapsed().as_secs_f64()),
        _ => None,
    };
    let m = meter.stop();

    // Close everything (not part of the measurement).
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        for h in handles {
            let _ = h.await;
        }
    })
    .await;
    // RSS after every connection closed: one sample a second for
    // --after-secs (the last one is reported, and the first second at which
    // RSS was within 2x of the RSS before connecting).
    let mut rss_after_close = None;
    let mut within_2x_after = None;
    if let (Some(pid), Some(before)) = (ctx.server_pid, m.server0.as_ref().map(|s| s.rss_kb)) {
        let closed = Instant::now();
        let after = Duration::from_secs_f64(a.after_secs.max(0.0));
        loop {
            let rss = sys::proc_rss_kb(pid).ok();
            rss_after_close = rss.or(rss_after_close);
            if within_2x_after.is_none() && rss.is_some_and(|r| r <= 2 * before) {
                within_2x_after = Some(round(closed.elapsed().as_secs_f64(), 1));
            }
            if closed.elapsed() >= after {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    let rss_before = m.server0.as_ref().map(|s| s.rss_kb);
    let per_conn = match (rss_before, rss_held) {
        (Some(b), Some(h)) if connected > 0 => {
            Some(round((h as f64 - b as f64) * 1024.0 / connected as f64, 1))
        }
        _ => None,
    };
    let mut out = report::header(ctx, "hold");
    out.insert("k".into(), json!(a.k));
    out.insert("secs".into(), json!(a.secs));
    out.insert("src_ips".into(), json!(target.src_ips().len()));
    out.insert("connected".into(), json!(connected));
    out.insert("survived".into(), json!(survived));
    out.insert("dropped".into(), json!(dropped));
    out.insert(
        "drop_reasons".into(),
        json!(*held.drop_reasons.lock().unwrap()),
    );
    out.insert("connect_errors".into(), errors.counts_json());
    if errors.total() > 0 {
        out.insert("error_samples".into(), errors.samples_json());
    }
    out.insert(
        "connect_retries_503".into(),
        json!(retries.load(Ordering::Relaxed)),
    );
    out.insert("connect_secs".into(), json!(round(connect_secs, 3)));
    out.insert(
        "frames_received".into(),
        json!(held.frames.load(Ordering::Relaxed)),
    );
    out.insert("wall_secs".into(), json!(round(m.secs, 3)));
    out.insert("client_cpu_secs".into(), json!(round(m.client_cpu_secs, 3)));
    out.insert("client_cpu_pct".into(), json!(round(m.client_cpu_pct(), 1)));
    out.insert("client_cores".into(), json!(sys::cores()));
    if ctx.server_pid.is_some() {
        out.insert(
            "server_cpu_secs".into(),
            json!(m.server_cpu_secs().map(|c| round(c, 3))),
        );
        out.insert("server_rss_kb_before".into(), json!(rss_before));
        out.insert("server_rss_kb_held".into(), json!(rss_held));
        out.insert("server_rss_kb_end".into(), json!(rss_end));
        out.insert("rss_per_conn_bytes".into(), json!(per_conn));
        out.insert(
            "server_idle_cpu_pct".into(),
            json!(idle_cpu_pct.map(|p| round(p, 2))),
        );
        out.insert("after_secs".into(), json!(a.after_secs));
        out.insert("server_rss_kb_after_close".into(), json!(rss_after_close));
        out.insert("rss_within_2x_after_secs".into(), json!(within_2x_after));
    }

    let mut summary = format!(
        "{}: {connected}/{} connected in {:.2} s, held {} s: {survived} survived, {dropped} dropped; client CPU {:.2} s ({:.0}% of a core)",
        report::label_prefix(ctx, "hold"),
        a.k,
        connect_secs,
        a.secs,
        m.client_cpu_secs,
        m.client_cpu_pct(),
    );
    if let (Some(b), Some(h), Some(e)) = (rss_before, rss_held, rss_end) {
        summary.push_str(&format!(
            "\nserver RSS {b} KiB before, {h} KiB held, {e} KiB at the end = {} bytes per connection",
            per_conn.map(|p| format!("{p:.0}")).unwrap_or_else(|| "-".into())
        ));
    }
    if let Some(p) = idle_cpu_pct {
        summary.push_str(&format!("\nserver CPU while held: {p:.2}% of a core"));
    }
    if let Some(r) = rss_after_close {
        summary.push_str(&format!(
            "\nserver RSS {r} KiB {:.0} s after closing; within 2x of the RSS before: {}",
            a.after_secs,
            within_2x_after.map_or_else(|| "no".into(), |s| format!("after {s} s"))
        ));
    }
    if errors.total() > 0 {
        summary.push_str(&format!("\nconnect errors: {}", errors.summary()));
    }
    if dropped > 0 {
        summary.push_str(&format!(
            "\ndropped by: {:?}",
            *held.drop_reasons.lock().unwrap()
        ));
    }
    report::emit(out, &summary);
    if connected == 0 {
        return Err(BenchError::Failed(format!(
            "no connection could be opened to {}",
            ctx.url
        )));
    }
    Ok(())
}
