//! `handshake`: N full handshakes with C workers, optionally with a signed
//! device identity from a pool of paired devices.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::json;

use crate::conn::{self, CLOSE_WAIT, Credentials, DeviceKey, HANDSHAKE_TIMEOUT, Target};
use crate::report::{self, Errors, Latencies, Meter};
use crate::{BenchError, Ctx, DeviceMode, HandshakeArgs, check_pos, check_secs};

/// What a set of workers achieved.
#[derive(Default)]
pub struct Tally {
    pub ok: u64,
    pub errors: Errors,
    pub lat: Latencies,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.ok += o.ok;
        self.errors.merge(o.errors);
        self.lat.merge(o.lat);
    }
}

/// Runs `n` handshakes over `c` workers until done or `deadline` (no new
/// handshake starts after it). Handshake `i` uses device `i % devices.len()`.
pub async fn run_handshakes(
    target: Arc<Target>,
    creds: Arc<Credentials>,
    devices: Arc<Vec<DeviceKey>>,
    n: u64,
    c: usize,
    deadline: Instant,
) -> Tally {
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::with_capacity(c);
    for _ in 0..c.min(n as usize).max(1) {
        let (target, creds, devices, next) =
            (target.clone(), creds.clone(), devices.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut t = Tally::default();
            let cfg = conn::ws_config(4096);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || Instant::now() >= deadline {
                    break;
                }
                let device = if devices.is_empty() {
                    None
                } else {
                    Some(&devices[(i % devices.len() as u64) as usize])
                };
                let src = target.pick_src();
                let start = Instant::now();
                let r = tokio::time::timeout(
                    HANDSHAKE_TIMEOUT,
                    conn::handshake(&target, &creds, device, src, cfg),
                )
                .await;
                match r {
                    Ok(Ok(ws)) => {
                        t.lat.push(start);
                        t.ok += 1;
                        conn::finish(ws, CLOSE_WAIT).await;
                    }
                    Ok(Err((f, ws))) => {
                        t.errors.add(&f);
                        if let Some(ws) = ws {
                            conn::finish(ws, CLOSE_WAIT).await;
                        }
                    }
                    Err(_) => t.errors.add(&conn::Failure::Timeout),
                }
            }
            t
        }));
    }
    let mut total = Tally::default();
    for w in workers {
        if let Ok(t) = w.await {
            total.merge(t);
        }
    }
    total
}

pub async fn run(ctx: &Ctx, a: HandshakeArgs) -> Result<(), BenchError> {
    check_pos("-n", a.n)?;
    check_pos("-c", a.c as u64)?;
    let max = check_secs("--max-secs", a.max_secs)?;
    let target = Arc::new(crate::target(ctx, a.src_ips.as_deref())?);
    let creds = Arc::new(Credentials::new(&ctx.auth));
    let device = a.device == Some(DeviceMode::V3);
    if device {
        check_pos("--device-pool", a.device_pool as u64)?;
    }
    let devices: Arc<Vec<DeviceKey>> = Arc::new(if device {
        (0..a.device_pool).map(DeviceKey::from_index).collect()
    } else {
        Vec::new()
    });

    // Warm-up: each device connects once, so the measured handshakes are
    // handshakes of already paired devices.
    let mut warmup = None;
    if device {
        let k = devices.len() as u64;
        let t = run_handshakes(
            target.clone(),
            creds.clone(),
            devices.clone(),
            k,
            a.c.min(devices.len()),
            Instant::now() + max,
        )
        .await;
        if t.ok == 0 {
            let mut f = serde_json::Map::new();
            f.insert("n".into(), json!(a.n));
            f.insert("c".into(), json!(a.c));
            f.insert("device".into(), json!("v3"));
            f.insert("ok".into(), json!(0));
            f.insert(
                "warmup".into(),
                json!({"devices": k, "ok": 0, "errors": t.errors.counts_json()}),
            );
            return Err(report::failed(
                ctx,
                "handshake",
                f,
                format!(
                    "device warm-up: none of the {k} devices got hello-ok at {} ({})",
                    ctx.url,
                    t.errors.summary()
                ),
            ));
        }
        if t.errors.total() > 0 {
            eprintln!(
                "warning: device warm-up: {}/{k} devices failed: {}",
                t.errors.total(),
                t.errors.summary()
            );
        }
        warmup = Some(json!({
            "devices": k,
            "ok": t.ok,
            "errors": t.errors.counts_json(),
        }));
    }

    let meter = Meter::start(ctx)?;
    let deadline = meter.started() + max;
    let mut t = run_handshakes(target.clone(), creds, devices, a.n, a.c, deadline).await;
    let m = meter.stop();

    let done = t.ok + t.errors.total();
    let mut out = report::header(ctx, "handshake");
    out.insert("n".into(), json!(a.n));
    out.insert("c".into(), json!(a.c));
    out.insert("device".into(), json!(device.then_some("v3")));
    if device {
        out.insert("device_pool".into(), json!(a.device_pool));
    }
    out.insert("src_ips".into(), json!(target.src_ips().len()));
    out.insert("done".into(), json!(done));
    out.insert("ok".into(), json!(t.ok));
    out.insert("errors".into(), t.errors.counts_json());
    if t.errors.total() > 0 {
        out.insert("error_samples".into(), t.errors.samples_json());
    }
    out.insert("stopped_by_time".into(), json!(done < a.n));
    m.add_rate(&mut out, t.ok);
    t.lat.add_fields(&mut out, &[50, 90, 99]);
    m.add_cpu(&mut out, t.ok);
    if let Some(w) = warmup {
        out.insert("warmup".into(), w);
    }
    let rate = if m.secs > 0.0 {
        t.ok as f64 / m.secs
    } else {
        0.0
    };
    let mut summary = format!(
        "{}: {}/{} ok{} in {:.2} s = {:.0}/s (c={}{}); {}\n{}",
        report::label_prefix(ctx, "handshake"),
        t.ok,
        a.n,
        if device { " (device v3)" } else { "" },
        m.secs,
        rate,
        a.c,
        if done < a.n {
            format!(", stopped at --max-secs after {done}")
        } else {
            String::new()
        },
        t.lat.summary(),
        m.cpu_summary(t.ok)
    );
    if t.errors.total() > 0 {
        summary.push_str(&format!("\nerrors: {}", t.errors.summary()));
    }
    report::emit(out, &summary);
    if t.ok == 0 {
        return Err(BenchError::Failed(format!(
            "no handshake succeeded against {}",
            ctx.url
        )));
    }
    Ok(())
}
