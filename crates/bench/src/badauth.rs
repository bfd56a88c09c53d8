//! `badauth`: M connects with a wrong token, sequential per source address
//! and parallel across them; the sequence of outcomes (e.g. token mismatch
//! then rate limited), whether any was accepted, and the server CPU per
//! rejection.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::json;

use crate::conn::{self, Auth, CLOSE_WAIT, Credentials, Failure, HANDSHAKE_TIMEOUT};
use crate::report::{self, Errors, Latencies, Meter};
use crate::{BadauthArgs, BenchError, Ctx, check_pos, check_secs};

/// The wrong secret: fixed, so runs are comparable.
pub const WRONG_SECRET: &str = "clawgate-bench-wrong-7d3f9a1c5e8b2046";

#[derive(Default)]
struct Source {
    done: u64,
    accepted: u64,
    outcomes: Errors,
    /// Run-length encoded outcomes in order.
    runs: Vec<(String, u64)>,
    lat: Latencies,
}

impl Source {
    fn record(&mut self, kind: String) {
        match self.runs.last_mut() {
            Some((k, n)) if *k == kind => *n += 1,
            _ => self.runs.push((kind, 1)),
        }
    }
}

pub async fn run(ctx: &Ctx, a: BadauthArgs) -> Result<(), BenchError> {
    check_pos("-m", a.m)?;
    let max = check_secs("--max-secs", a.max_secs)?;
    let target = Arc::new(crate::target(ctx, a.src_ips.as_deref())?);
    let wrong = match &ctx.auth {
        Auth::Password(p) if p == WRONG_SECRET => {
            return Err(crate::usage(
                "the configured password is the bench's wrong one",
            ));
        }
        Auth::Token(t) if t == WRONG_SECRET => {
            return Err(crate::usage(
                "the configured token is the bench's wrong one",
            ));
        }
        Auth::Password(_) => Auth::Password(WRONG_SECRET.into()),
        _ => Auth::Token(WRONG_SECRET.into()),
    };
    let creds = Arc::new(Credentials::new(&wrong));
    let sources: Vec<Option<IpAddr>> = if target.src_ips().is_empty() {
        vec![None]
    } else {
        target.src_ips().iter().copied().map(Some).collect()
    };

    let idle = match ctx.server_pid {
        Some(pid) if a.idle_secs != 0.0 => {
            let secs = check_secs("--idle-secs", a.idle_secs)?;
            Some(report::idle_cpu_per_sec(pid, secs).await?)
        }
        _ => None,
    };
    let meter = Meter::start(ctx)?;
    let deadline = meter.started() + max;
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = sources
        .iter()
        .map(|&src| {
            let (target, creds, next) = (target.clone(), creds.clone(), next.clone());
            let m = a.m;
            tokio::spawn(async move {
                let mut s = Source::default();
                let cfg = conn::ws_config(4096);
                loop {
                    if Instant::now() >= deadline || next.fetch_add(1, Ordering::Relaxed) >= m {
                        break;
                    }
                    let start = Instant::now();
                    let r = tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        conn::handshake(&target, &creds, None, src, cfg),
                    )
                    .await;
                    s.lat.push(start);
                    s.done += 1;
                    match r {
                        Ok(Ok(ws)) => {
                            s.accepted += 1;
                            s.record("ACCEPTED".into());
                            conn::finish(ws, CLOSE_WAIT).await;
                        }
                        Ok(Err((f, ws))) => {
                            s.record(f.kind());
                            s.outcomes.add(&f);
                            if let Some(ws) = ws {
                                conn::finish(ws, CLOSE_WAIT).await;
                            }
                        }
                        Err(_) => {
                            s.record(Failure::Timeout.kind());
                            s.outcomes.add(&Failure::Timeout);
                        }
                    }
                }
                (src, s)
            })
        })
        .collect();
    let mut per_source = Vec::new();
    for w in workers {
        if let Ok(r) = w.await {
            per_source.push(r);
        }
    }
    let m = meter.stop();

    let mut done = 0;
    let mut accepted = 0;
    let mut outcomes = Errors::default();
    let mut lat = Latencies::default();
    let mut sequence = Vec::new();
    for (src, s) in per_source {
        done += s.done;
        accepted += s.accepted;
        sequence.push(json!({
            "src": src.map(|ip| ip.to_string()).unwrap_or_else(|| "default".into()),
            "runs": s.runs.iter().map(|(k, n)| json!([k, n])).collect::<Vec<_>>(),
        }));
        outcomes.merge(s.outcomes);
        lat.merge(s.lat);
    }
    let mut outcome_counts = outcomes.counts.clone();
    if accepted > 0 {
        outcome_counts.insert("ACCEPTED".into(), accepted);
    }
    // A rejection is an answer from the gateway: an error response or a
    // close with a code (not an unreachable socket or a timeout).
    let answered = outcomes
        .counts
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "io" | "timeout" | "closed" | "protocol"))
        .map(|(_, n)| n)
        .sum::<u64>()
        + accepted;

    let mut out = report::header(ctx, "badauth");
    out.insert("m".into(), json!(a.m));
    out.insert("src_ips".into(), json!(target.src_ips().len()));
    out.insert("done".into(), json!(done));
    out.insert("accepted".into(), json!(accepted));
    out.insert("outcomes".into(), json!(outcome_counts));
    out.insert("sequence".into(), json!(sequence));
    out.insert("stopped_by_time".into(), json!(done < a.m));
    out.insert("secs".into(), json!(report::round(m.secs, 3)));
    lat.add_fields(&mut out, &[50, 99]);
    m.add_cpu(&mut out, done);
    if let Some(idle) = idle {
        m.add_net_cpu(&mut out, done, idle);
    }

    let mut summary = format!(
        "{}: {done}/{} wrong-token connects in {:.2} s{}; outcomes: {}; {}\n{}",
        report::label_prefix(ctx, "badauth"),
        a.m,
        m.secs,
        if done < a.m {
            " (stopped at --max-secs)"
        } else {
            ""
        },
        outcomes.summary(),
        lat.summary(),
        m.cpu_summary(done)
    );
    if let Some(idle) = idle
        && let Some(net) = m.net_cpu_us_per_op(done, idle)
    {
        summary.push_str(&format!(
            "\nserver idle CPU {:.2}% before the run; without it: {net:.1} us/rejection",
            idle * 100.0
        ));
    }
    if accepted > 0 {
        summary.push_str(&format!(
            "\n!!!!!!!! WARNING: the gateway ACCEPTED {accepted} connect(s) with a WRONG token !!!!!!!!"
        ));
    }
    report::emit(out, &summary);
    if answered == 0 {
        return Err(BenchError::Failed(format!(
            "the gateway at {} answered none of the attempts: {}",
            ctx.url,
            outcomes.summary()
        )));
    }
    Ok(())
}
