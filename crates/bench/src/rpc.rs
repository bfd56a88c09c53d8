//! `rpc`: R requests over C authenticated connections, each pipelining up
//! to 32 in flight; responses matched by id, events skipped.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::conn::{self, CLOSE_WAIT, Credentials, Failure, HANDSHAKE_TIMEOUT, Ws};
use crate::report::{self, Errors, Latencies, Meter};
use crate::{BenchError, Ctx, RpcArgs, check_pos, check_secs};

/// Requests in flight per connection.
const WINDOW: usize = 32;
/// A connection with requests in flight and no frame for this long gives up.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Default)]
struct ConnTally {
    responses: u64,
    ok: u64,
    errors: Errors,
    lat: Latencies,
}

struct Shared {
    prefix: String,
    suffix: String,
    issued: AtomicU64,
    total: u64,
    deadline: Instant,
}

/// Handles one inbound message; Err when the connection ended.
fn on_message(
    msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    inflight: &mut Vec<(u64, Instant)>,
    t: &mut ConnTally,
) -> Result<(), Failure> {
    let text = match msg {
        Some(Ok(Message::Text(text))) => text,
        Some(Ok(Message::Close(f))) => return Err(Failure::Closed(f.map(|f| f.code.into()))),
        Some(Ok(_)) => return Ok(()),
        Some(Err(e)) => return Err(conn::ws_failure(e)),
        None => return Err(Failure::Closed(None)),
    };
    let frame = match conn::parse_frame(&text) {
        Ok(f) => f,
        Err(f) => {
            t.errors.add(&f);
            return Ok(());
        }
    };
    if frame.ty != "res" {
        return Ok(());
    }
    let Some(id) = frame.id.as_deref().and_then(|i| i.parse::<u64>().ok()) else {
        return Ok(());
    };
    let Some(pos) = inflight.iter().position(|(i, _)| *i == id) else {
        return Ok(());
    };
    let (_, sent) = inflight.swap_remove(pos);
    t.lat.push(sent);
    t.responses += 1;
    if frame.ok == Some(true) {
        t.ok += 1;
    } else {
        let f = match frame.error {
            Some(e) => e.into_failure(),
            None => Failure::Protocol("ok:false without an error".into()),
        };
        t.errors.add(&f);
    }
    Ok(())
}

async fn drive(mut ws: Ws, sh: Arc<Shared>) -> ConnTally {
    let mut t = ConnTally::default();
    let mut inflight: Vec<(u64, Instant)> = Vec::with_capacity(WINDOW);
    let mut next_id = 1u64;
    let mut exhausted = false;
    loop {
        let mut wrote = false;
        while !exhausted && inflight.len() < WINDOW {
            if Instant::now() >= sh.deadline
                || sh.issued.fetch_add(1, Ordering::Relaxed) >= sh.total
            {
                exhausted = true;
                break;
            }
            let id = next_id;
            next_id += 1;
            let mut frame = String::with_capacity(sh.prefix.len() + sh.suffix.len() + 20);
            frame.push_str(&sh.prefix);
            let _ = write!(frame, "{id}");
            frame.push_str(&sh.suffix);
            if let Err(e) = ws.feed(Message::text(frame)).await {
                t.errors
                    .add_n(&conn::ws_failure(e), inflight.len() as u64 + 1);
                return t;
            }
            inflight.push((id, Instant::now()));
            wrote = true;
        }
        if wrote && let Err(e) = ws.flush().await {
            t.errors.add_n(&conn::ws_failure(e), inflight.len() as u64);
            return t;
        }
        if inflight.is_empty() {
            break;
        }
        let msg = match tokio::time::timeout(RESPONSE_TIMEOUT, ws.next()).await {
            Ok(m) => m,
            Err(_) => {
                t.errors.add_n(&Failure::Timeout, inflight.len() as u64);
                inflight.clear();
                break;
            }
        };
        if let Err(f) = on_message(msg, &mut inflight, &mut t) {
            t.errors.add_n(&f, inflight.len() as u64);
            return t;
        }
        // Take whatever else is already buffered before writing again.
        while let Some(msg) = ws.next().now_or_never() {
            if let Err(f) = on_message(msg, &mut inflight, &mut t) {
                t.errors.add_n(&f, inflight.len() as u64);
                return t;
            }
        }
    }
    conn::finish(ws, CLOSE_WAIT).await;
    t
}

pub async fn run(ctx: &Ctx, a: RpcArgs) -> Result<(), BenchError> {
    check_pos("-c", a.c as u64)?;
    check_pos("-r", a.r)?;
    let max = check_secs("--max-secs", a.max_secs)?;
    if a.method.is_empty() {
        return Err(crate::usage("--method must not be empty"));
    }
    let params: serde_json::Value = serde_json::from_str(&a.params)
        .map_err(|e| crate::usage(format!("--params is not JSON: {e}")))?;
    let target = Arc::new(crate::target(ctx, None)?);
    let creds = Credentials::new(&ctx.auth);

    // Connect C sockets (not measured).
    let cfg = conn::ws_config(64 * 1024);
    let mut connect_errors = Errors::default();
    let attempts = (0..a.c).map(|_| {
        let (target, creds) = (&target, &creds);
        async move {
            for _ in 0..50 {
                let r = tokio::time::timeout(
                    HANDSHAKE_TIMEOUT,
                    conn::handshake(target, creds, None, None, cfg),
                )
                .await;
                match r {
                    Ok(Ok(ws)) => return Ok(ws),
                    Ok(Err((Failure::Http(503), _))) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Ok(Err((f, ws))) => {
                        if let Some(ws) = ws {
                            conn::finish(ws, CLOSE_WAIT).await;
                        }
                        return Err(f);
                    }
                    Err(_) => return Err(Failure::Timeout),
                }
            }
            Err(Failure::Http(503))
        }
    });
    let mut sockets = Vec::new();
    for r in futures_util::future::join_all(attempts).await {
        match r {
            Ok(ws) => sockets.push(ws),
            Err(f) => connect_errors.add(&f),
        }
    }
    let connected = sockets.len();
    if connected == 0 {
        let mut f = serde_json::Map::new();
        f.insert("c".into(), json!(a.c));
        f.insert("r".into(), json!(a.r));
        f.insert("method".into(), json!(a.method));
        f.insert("connected".into(), json!(0));
        f.insert("connect_errors".into(), connect_errors.counts_json());
        f.insert("responses".into(), json!(0));
        return Err(report::failed(
            ctx,
            "rpc",
            f,
            format!(
                "no connection could be authenticated at {}: {}",
                ctx.url,
                connect_errors.summary()
            ),
        ));
    }

    let meter = Meter::start(ctx)?;
    let shared = Arc::new(Shared {
        prefix: r#"{"type":"req","id":""#.to_string(),
        suffix: format!(
            r#"","method":{},"params":{}}}"#,
            serde_json::Value::String(a.method.clone()),
            params
        ),
        issued: AtomicU64::new(0),
        total: a.r,
        deadline: meter.started() + max,
    });
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|ws| tokio::spawn(drive(ws, shared.clone())))
        .collect();
    let mut t = ConnTally::default();
    for task in tasks {
        if let Ok(c) = task.await {
            t.responses += c.responses;
            t.ok += c.ok;
            t.errors.merge(c.errors);
            t.lat.merge(c.lat);
        }
    }
    let m = meter.stop();

    let mut out = report::header(ctx, "rpc");
    out.insert("c".into(), json!(a.c));
    out.insert("r".into(), json!(a.r));
    out.insert("method".into(), json!(a.method));
    out.insert("window".into(), json!(WINDOW));
    out.insert("connected".into(), json!(connected));
    out.insert("connect_errors".into(), connect_errors.counts_json());
    out.insert("responses".into(), json!(t.responses));
    out.insert("ok".into(), json!(t.ok));
    out.insert("errors".into(), t.errors.counts_json());
    if t.errors.total() > 0 {
        out.insert("error_samples".into(), t.errors.samples_json());
    }
    out.insert(
        "stopped_by_time".into(),
        json!(t.responses + t.errors.total() < a.r),
    );
    m.add_rate(&mut out, t.responses);
    t.lat.add_fields(&mut out, &[50, 90, 99]);
    m.add_cpu(&mut out, t.responses);

    let mut summary = format!(
        "{}: {} responses ({} ok) to {} x{} over {connected} connections in {:.2} s = {:.0}/s; {}\n{}",
        report::label_prefix(ctx, "rpc"),
        t.responses,
        t.ok,
        a.method,
        a.r,
        m.secs,
        if m.secs > 0.0 {
            t.responses as f64 / m.secs
        } else {
            0.0
        },
        t.lat.summary(),
        m.cpu_summary(t.responses)
    );
    if t.errors.total() > 0 {
        summary.push_str(&format!("\nerrors: {}", t.errors.summary()));
    }
    report::emit(out, &summary);
    if t.responses == 0 {
        return Err(BenchError::Failed(format!(
            "no response to {} from {}",
            a.method, ctx.url
        )));
    }
    Ok(())
}
