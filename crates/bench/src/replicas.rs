//! `replicas`: clawgate replicas sharing one PostgreSQL registry.
//!
//! - `replicas revoke`: N fresh devices, one at a time, paired, connected and
//!   revoked across the replicas (round robin): the device asks on replica A,
//!   an operator approves on replica C, the device connects with its device
//!   token on A, an operator revokes the token on replica B, and the bench
//!   times how long A takes to close the device's socket with 4001. The
//!   replicas must run with `gateway.nodes.pairing.autoApproveLocal=false`
//!   (a loopback device would otherwise be paired silently, with no request
//!   to approve).
//! - `replicas handshake`: N handshakes (`token`, `v3` = shared token plus a
//!   signed device, `device-token` = a signed device with only its device
//!   token) with the server's CPU and, with `--pg-pid`, the PostgreSQL
//!   cluster's CPU per handshake.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Args, Subcommand, ValueEnum};
use clawgate_protocol::PROTOCOL_VERSION;
use clawgate_protocol::device_auth::{PayloadFields, payload_v3};
use ed25519_dalek::{Signer, SigningKey};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, broadcast, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::conn::{
    self, Auth, CLOSE_WAIT, Credentials, DeviceKey, Failure, HANDSHAKE_TIMEOUT, Target, Ws,
};
use crate::handshake::run_handshakes;
use crate::report::{self, Errors, Latencies, Meter, round};
use crate::{BenchError, Ctx, check_pos, check_secs, usage};

#[derive(Args, Debug)]
pub struct ReplicasArgs {
    #[command(subcommand)]
    pub cmd: ReplicasCmd,
}

#[derive(Subcommand, Debug)]
pub enum ReplicasCmd {
    /// Pair, connect and revoke N fresh devices across replicas; time approval and revocation propagation.
    Revoke(RevokeArgs),
    /// N handshakes (token, v3, device-token) with server and PostgreSQL CPU per handshake.
    Handshake(HsArgs),
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// The replicas' WebSocket URLs, comma-separated (at least 2, loopback).
    #[arg(long, value_delimiter = ',', required = true)]
    pub urls: Vec<String>,
    /// Devices to pair, connect and revoke (one at a time).
    #[arg(long, default_value_t = 200)]
    pub count: u64,
    /// Give up waiting for one event (a propagated request, approval or close) after this many seconds.
    #[arg(long, default_value_t = 5.0)]
    pub timeout_secs: f64,
    /// Stop starting new devices after this many seconds.
    #[arg(long, default_value_t = 240.0)]
    pub max_secs: f64,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HsMode {
    /// Shared token, no device.
    Token,
    /// Shared token and a signed device identity (as `handshake --device v3`).
    V3,
    /// A signed device identity and its device token only (no shared secret).
    DeviceToken,
}

impl HsMode {
    fn name(self) -> &'static str {
        match self {
            HsMode::Token => "token",
            HsMode::V3 => "v3",
            HsMode::DeviceToken => "device-token",
        }
    }
}

#[derive(Args, Debug)]
pub struct HsArgs {
    /// Number of handshakes.
    #[arg(short = 'n')]
    pub n: u64,
    /// Concurrent workers.
    #[arg(short = 'c')]
    pub c: usize,
    #[arg(long, value_enum, default_value = "token")]
    pub mode: HsMode,
    /// Number of device keys (paired during warm-up; v3 and device-token).
    #[arg(long, default_value_t = 64)]
    pub device_pool: usize,
    /// Source addresses, round-robin, e.g. 127.0.0.1-8.
    #[arg(long, value_name = "RANGE")]
    pub src_ips: Option<String>,
    /// Stop starting handshakes after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub max_secs: f64,
    /// The PostgreSQL postmaster's pid: its CPU and its children's (backends,
    /// background workers) is sampled around the measured phase.
    #[arg(long, value_name = "PID")]
    pub pg_pid: Option<u32>,
}

pub async fn run(ctx: &Ctx, a: ReplicasArgs) -> Result<(), BenchError> {
    match a.cmd {
        ReplicasCmd::Revoke(r) => revoke(ctx, r).await,
        ReplicasCmd::Handshake(h) => handshake(ctx, h).await,
    }
}

// --- devices and connects ------------------------------------------------------

/// A fresh device identity (random seed: every run pairs new devices).
struct Dev {
    key: SigningKey,
    id: String,
    public_key: String,
}

impl Dev {
    fn fresh() -> Dev {
        let seed: [u8; 32] =
            Sha256::digest(format!("clawgate-bench replicas {}", uuid::Uuid::new_v4())).into();
        let key = SigningKey::from_bytes(&seed);
        let raw = key.verifying_key().to_bytes();
        Dev {
            id: clawgate_protocol::device_auth::device_id(&raw),
            public_key: URL_SAFE_NO_PAD.encode(raw),
            key,
        }
    }

    /// `params.device` for a connect signing `token` (the first of
    /// `auth.token`, `auth.deviceToken` the connect carries).
    fn proof(&self, ch: &Challenge, token: &str, scopes: &[String]) -> Value {
        let payload = payload_v3(&PayloadFields {
            device_id: &self.id,
            client_id: "cli",
            client_mode: "cli",
            role: "operator",
            scopes,
            signed_at_ms: ch.ts,
            token,
            nonce: &ch.nonce,
            platform: "linux",
            device_family: "",
        });
        let sig = URL_SAFE_NO_PAD.encode(self.key.sign(payload.as_bytes()).to_bytes());
        json!({
            "id": self.id,
            "publicKey": self.public_key,
            "signature": sig,
            "signedAt": ch.ts,
            "nonce": ch.nonce,
        })
    }
}

struct Challenge {
    nonce: String,
    ts: u64,
}

/// What to authenticate with.
enum Creds<'a> {
    /// Shared token, no device (an operator).
    Operator(&'a str),
    /// Shared token and a signed device.
    SharedDevice(&'a str, &'a Dev),
    /// Only a device token and a signed device.
    DeviceToken(&'a str, &'a Dev),
}

/// A refused or failed connect: the failure, and `error.details` of an
/// `ok:false` answer (the pairing request id is in there).
struct ConnErr {
    failure: Failure,
    details: Option<Value>,
}

impl From<Failure> for ConnErr {
    fn from(failure: Failure) -> Self {
        ConnErr {
            failure,
            details: None,
        }
    }
}

const OPERATOR_SCOPES: &[&str] = &[
    "operator.admin",
    "operator.pairing",
    "operator.read",
    "operator.write",
];

/// One full handshake; `hello-ok`'s payload with the socket.
async fn connect(
    target: &Target,
    creds: &Creds<'_>,
    src: Option<IpAddr>,
) -> Result<(Ws, Value), ConnErr> {
    let mut ws = target.open(src, conn::ws_config(4096)).await?;
    let first = conn::next_text(&mut ws).await?;
    let ch = parse_challenge(&first)?;
    let id = format!("1:{}", uuid::Uuid::new_v4());
    let scopes: Vec<String> = match creds {
        Creds::Operator(_) => OPERATOR_SCOPES.iter().map(|s| s.to_string()).collect(),
        _ => vec!["operator.read".to_string()],
    };
    let (auth, device) = match creds {
        Creds::Operator(t) => (json!({"token": t}), None),
        Creds::SharedDevice(t, d) => (json!({"token": t}), Some(d.proof(&ch, t, &scopes))),
        Creds::DeviceToken(t, d) => (json!({"deviceToken": t}), Some(d.proof(&ch, t, &scopes))),
    };
    let v = PROTOCOL_VERSION;
    let mut params = json!({
        "minProtocol": v,
        "maxProtocol": v,
        "client": {"id": "cli", "version": "bench", "platform": "linux", "mode": "cli"},
        "role": "operator",
        "scopes": scopes,
        "auth": auth,
    });
    if let Some(d) = device {
        params["device"] = d;
    }
    let frame = json!({"type": "req", "id": id, "method": "connect", "params": params});
    ws.send(Message::text(frame.to_string()))
        .await
        .map_err(conn::ws_failure)?;
    loop {
        let text = conn::next_text(&mut ws).await?;
        let Ok(f) = serde_json::from_str::<Value>(&text) else {
            return Err(Failure::Protocol("unparsable frame".into()).into());
        };
        if f["type"] != "res" || f["id"].as_str() != Some(id.as_str()) {
            continue;
        }
        if f["ok"] == true {
            return Ok((ws, f["payload"].clone()));
        }
        let err = &f["error"];
        let code = err["details"]["code"]
            .as_str()
            .or(err["code"].as_str())
            .unwrap_or("error")
            .to_string();
        let message = err["message"].as_str().unwrap_or_default().to_string();
        // The server closes the socket after a refusal: let it.
        conn::finish(ws, CLOSE_WAIT).await;
        return Err(ConnErr {
            failure: Failure::Rejected { code, message },
            details: Some(err["details"].clone()),
        });
    }
}

fn parse_challenge(text: &str) -> Result<Challenge, Failure> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Failure::Protocol(format!("unparsable first frame: {e}")))?;
    if v["type"] != "event" || v["event"] != "connect.challenge" {
        return Err(Failure::Protocol(
            "the first frame was not a connect.challenge event".into(),
        ));
    }
    match (v["payload"]["nonce"].as_str(), v["payload"]["ts"].as_u64()) {
        (Some(n), Some(ts)) => Ok(Challenge {
            nonce: n.to_string(),
            ts,
        }),
        _ => Err(Failure::Protocol(
            "connect.challenge without nonce/ts".into(),
        )),
    }
}

async fn bounded<T>(
    d: Duration,
    f: impl Future<Output = Result<T, ConnErr>>,
) -> Result<T, ConnErr> {
    match tokio::time::timeout(d, f).await {
        Ok(r) => r,
        Err(_) => Err(Failure::Timeout.into()),
    }
}

// --- operator connections ---------------------------------------------------------

/// An event as received, with its arrival time.
#[derive(Clone)]
struct Event {
    name: String,
    payload: Value,
    at: Instant,
}

type Responses = Arc<std::sync::Mutex<HashMap<String, oneshot::Sender<(Value, Instant)>>>>;

/// An operator socket on one replica: requests by id, events broadcast.
struct Operator {
    sink: Mutex<SplitSink<Ws, Message>>,
    waiting: Responses,
    events: broadcast::Sender<Event>,
    next: AtomicU64,
}

impl Operator {
    async fn open(target: &Target, token: &str) -> Result<Operator, ConnErr> {
        let (ws, _) = bounded(
            HANDSHAKE_TIMEOUT,
            connect(target, &Creds::Operator(token), None),
        )
        .await?;
        let (sink, mut stream) = ws.split();
        let waiting: Responses = Arc::default();
        let (events, _) = broadcast::channel(4096);
        let (w, ev) = (waiting.clone(), events.clone());
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(t) = msg else { continue };
                let at = Instant::now();
                let Ok(f) = serde_json::from_str::<Value>(&t) else {
                    continue;
                };
                match f["type"].as_str() {
                    Some("res") => {
                        let id = f["id"].as_str().unwrap_or_default().to_string();
                        let tx = w.lock().expect("responses lock").remove(&id);
                        if let Some(tx) = tx {
                            let _ = tx.send((f, at));
                        }
                    }
                    Some("event") => {
                        let _ = ev.send(Event {
                            name: f["event"].as_str().unwrap_or_default().to_string(),
                            payload: f["payload"].clone(),
                            at,
                        });
                    }
                    _ => {}
                }
            }
            // Dropping the senders fails every request still waiting.
            w.lock().expect("responses lock").clear();
        });
        Ok(Operator {
            sink: Mutex::new(sink),
            waiting,
            events,
            next: AtomicU64::new(0),
        })
    }

    /// Sends a request; returns the response frame and when it arrived.
    async fn call(&self, method: &str, params: Value) -> Result<(Value, Instant), Failure> {
        let id = format!("op-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .expect("responses lock")
            .insert(id.clone(), tx);
        let frame = json!({"type": "req", "id": id, "method": method, "params": params});
        self.sink
            .lock()
            .await
            .send(Message::text(frame.to_string()))
            .await
            .map_err(conn::ws_failure)?;
        let (f, at) = rx.await.map_err(|_| Failure::Closed(None))?;
        if f["ok"] == true {
            return Ok((f, at));
        }
        let err = &f["error"];
        Err(Failure::Rejected {
            code: err["details"]["code"]
                .as_str()
                .or(err["code"].as_str())
                .unwrap_or("error")
                .to_string(),
            message: err["message"].as_str().unwrap_or_default().to_string(),
        })
    }
}

/// Waits for event `name` whose payload's `requestId` is `request_id`.
async fn wait_event(
    rx: &mut broadcast::Receiver<Event>,
    name: &str,
    request_id: &str,
    within: Duration,
) -> Result<Event, Failure> {
    let found = tokio::time::timeout(within, async {
        loop {
            match rx.recv().await {
                Ok(e) if e.name == name && e.payload["requestId"] == request_id => return Ok(e),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return Err(Failure::Closed(None)),
            }
        }
    })
    .await;
    match found {
        Ok(r) => r,
        Err(_) => Err(Failure::Timeout),
    }
}

fn us_between(a: Instant, b: Instant) -> u32 {
    b.saturating_duration_since(a)
        .as_micros()
        .min(u32::MAX as u128) as u32
}

// --- revoke ---------------------------------------------------------------------------

/// Latency series of the revoke run, by name.
#[derive(Default)]
struct Series(BTreeMap<&'static str, Latencies>);

impl Series {
    fn push(&mut self, name: &'static str, a: Instant, b: Instant) {
        self.0.entry(name).or_default().0.push(us_between(a, b));
    }
}

/// Counters of the revoke run.
#[derive(Default)]
struct Stats {
    /// Approvals A announced.
    approved: u64,
    /// Devices whose device-token session on A was up before B had applied
    /// the approval (a revoke sent on B at that moment is refused).
    b_behind: u64,
    /// Devices for which B never announced the approval.
    b_no_resolved: u64,
    /// Revokes B refused (retried).
    revoke_denied: u64,
}

/// Where one device failed, and why.
fn stage_failure(errors: &mut Errors, stage: &str, f: Failure) {
    let f = match f {
        Failure::Rejected { code, message } => Failure::Rejected {
            code: format!("{stage}:{code}"),
            message,
        },
        Failure::Timeout => Failure::Rejected {
            code: format!("{stage}:timeout"),
            message: "no answer / event within --timeout-secs".into(),
        },
        Failure::Closed(c) => Failure::Rejected {
            code: format!(
                "{stage}:closed-{}",
                c.map_or("none".to_string(), |c| c.to_string())
            ),
            message: "socket closed".into(),
        },
        other => Failure::Rejected {
            code: format!("{stage}:{}", other.kind()),
            message: other.detail(),
        },
    };
    errors.add(&f);
}

async fn revoke(ctx: &Ctx, a: RevokeArgs) -> Result<(), BenchError> {
    check_pos("--count", a.count)?;
    let wait = check_secs("--timeout-secs", a.timeout_secs)?;
    let max = check_secs("--max-secs", a.max_secs)?;
    if a.urls.len() < 2 {
        return Err(usage("--urls needs at least two replicas"));
    }
    let Auth::Token(token) = &ctx.auth else {
        return Err(usage(
            "replicas revoke needs --token (the replicas' shared token)",
        ));
    };
    let targets: Vec<Target> = a
        .urls
        .iter()
        .map(|u| Target::new(u, None).map_err(usage))
        .collect::<Result<_, _>>()?;
    let mut ops = Vec::with_capacity(targets.len());
    for t in &targets {
        match Operator::open(t, token).await {
            Ok(op) => ops.push(op),
            Err(e) => {
                return Err(BenchError::Failed(format!(
                    "operator connect to {} failed: {} ({})",
                    t.url,
                    e.failure.kind(),
                    e.failure.detail()
                )));
            }
        }
    }
    let n = targets.len();
    let started = Instant::now();
    let mut series = Series::default();
    let mut stats = Stats::default();
    let mut errors = Errors::default();
    let mut close_codes: BTreeMap<String, u64> = BTreeMap::new();
    let (mut done, mut ok) = (0u64, 0u64);
    for i in 0..a.count {
        if started.elapsed() >= max {
            break;
        }
        done += 1;
        let i = i as usize;
        let (ia, ib, ic) = (i % n, (i + 1) % n, (i + 2) % n);
        match one_device(
            token,
            &targets[ia],
            &ops[ia],
            &ops[ib],
            &ops[ic],
            wait,
            &mut series,
            &mut stats,
        )
        .await
        {
            Ok(code) => {
                *close_codes.entry(code.clone()).or_default() += 1;
                if code == "4001" {
                    ok += 1;
                } else {
                    errors.add(&Failure::Rejected {
                        code: format!("revoke:close-{code}"),
                        message: "the device socket closed with another code".into(),
                    });
                }
            }
            Err((stage, f)) => stage_failure(&mut errors, stage, f),
        }
    }
    let secs = started.elapsed().as_secs_f64();

    let mut out = report::header(ctx, "replicas-revoke");
    out.insert("replicas".into(), json!(n));
    out.insert("count".into(), json!(a.count));
    out.insert("done".into(), json!(done));
    out.insert("ok".into(), json!(ok));
    out.insert("secs".into(), json!(round(secs, 3)));
    out.insert("errors".into(), errors.counts_json());
    if errors.total() > 0 {
        out.insert("error_samples".into(), errors.samples_json());
    }
    out.insert("close_codes".into(), json!(close_codes));
    out.insert("approved".into(), json!(stats.approved));
    out.insert("b_behind_at_session".into(), json!(stats.b_behind));
    out.insert("b_no_resolved_event".into(), json!(stats.b_no_resolved));
    out.insert("revoke_denied_retried".into(), json!(stats.revoke_denied));
    let mut summary = format!(
        "{}: {ok}/{} revocations closed the device's socket on another replica with 4001 ({n} replicas, {:.1} s)",
        report::label_prefix(ctx, "replicas revoke"),
        a.count,
        secs
    );
    for (name, lat) in series.0.iter_mut() {
        let mut m = Map::new();
        m.insert("n".into(), json!(lat.0.len()));
        lat.add_fields(&mut m, &[50, 90, 99]);
        out.insert((*name).into(), Value::Object(m));
        summary.push_str(&format!("\n  {name}: {}", lat.summary()));
    }
    summary.push_str(&format!(
        "\n  {}/{} devices held their device-token session on A before B had applied the approval",
        stats.b_behind, stats.approved
    ));
    summary.push_str(&format!(
        "\n  B announced no device.pair.resolved for {} devices; B refused {} revokes (retried)",
        stats.b_no_resolved, stats.revoke_denied
    ));
    if errors.total() > 0 {
        summary.push_str(&format!("\nerrors: {}", errors.summary()));
    }
    report::emit(out, &summary);
    if ok == 0 {
        return Err(BenchError::Failed("no revocation propagated".into()));
    }
    Ok(())
}

/// One device through the whole cycle. Returns the close code the device's
/// device-token socket on A saw after the revoke on B, or the stage that
/// failed.
#[allow(clippy::too_many_arguments)]
async fn one_device(
    token: &str,
    target_a: &Target,
    op_a: &Operator,
    op_b: &Operator,
    op_c: &Operator,
    wait: Duration,
    series: &mut Series,
    stats: &mut Stats,
) -> Result<String, (&'static str, Failure)> {
    let dev = Dev::fresh();
    let mut ev_a = op_a.events.subscribe();
    let mut ev_b = op_b.events.subscribe();
    let mut ev_c = op_c.events.subscribe();

    // 1. The device asks on A (shared token + signature): PAIRING_REQUIRED.
    let asked = bounded(
        HANDSHAKE_TIMEOUT,
        connect(target_a, &Creds::SharedDevice(token, &dev), None),
    )
    .await;
    let t_asked = Instant::now();
    let request_id = match asked {
        Ok((ws, _)) => {
            conn::finish(ws, CLOSE_WAIT).await;
            return Err((
                "request",
                Failure::Protocol(
                    "the device was paired without an approval: run the replicas with gateway.nodes.pairing.autoApproveLocal=false".into(),
                ),
            ));
        }
        Err(e) => match e.details.as_ref().and_then(|d| d["requestId"].as_str()) {
            Some(id) => id.to_string(),
            None => return Err(("request", e.failure)),
        },
    };

    // 2. The request reaches C's operators.
    let seen = wait_event(&mut ev_c, "device.pair.requested", &request_id, wait)
        .await
        .map_err(|f| ("request-propagation", f))?;
    series.push("request_propagation", t_asked, seen.at);

    // 3. C approves.
    let t_approve = Instant::now();
    let (_, t_approved) = op_c
        .call("device.pair.approve", json!({"requestId": request_id}))
        .await
        .map_err(|f| ("approve", f))?;
    series.push("approve_rpc", t_approve, t_approved);

    // 4. A announces the decision to its operators.
    let resolved = wait_event(&mut ev_a, "device.pair.resolved", &request_id, wait)
        .await
        .map_err(|f| ("approve-propagation", f))?;
    if resolved.payload["decision"] != "approved" {
        return Err((
            "approve-propagation",
            Failure::Protocol(format!("decision {}", resolved.payload["decision"])),
        ));
    }
    series.push("approve_propagation", t_approve, resolved.at);
    stats.approved += 1;

    // 5. The device connects on A again and gets its device token.
    let (ws, hello) = bounded(
        HANDSHAKE_TIMEOUT,
        connect(target_a, &Creds::SharedDevice(token, &dev), None),
    )
    .await
    .map_err(|e| ("connect-after-approve", e.failure))?;
    let t_hello = Instant::now();
    series.push("approve_to_connect", t_approve, t_hello);
    conn::finish(ws, CLOSE_WAIT).await;
    let Some(device_token) = hello["auth"]["deviceToken"].as_str().map(str::to_string) else {
        return Err((
            "connect-after-approve",
            Failure::Protocol("hello-ok without auth.deviceToken".into()),
        ));
    };

    // 6. The device connects on A with its device token only, and waits.
    let (mut ws, _) = bounded(
        HANDSHAKE_TIMEOUT,
        connect(target_a, &Creds::DeviceToken(&device_token, &dev), None),
    )
    .await
    .map_err(|e| ("device-token-connect", e.failure))?;
    let (closed_tx, closed_rx) = oneshot::channel::<(Option<u16>, Instant)>();
    let watcher = tokio::spawn(async move {
        let code = loop {
            match conn::next_text(&mut ws).await {
                Ok(_) => continue,
                Err(Failure::Closed(code)) => break code,
                Err(_) => break None,
            }
        };
        let _ = closed_tx.send((code, Instant::now()));
    });

    let t_session = Instant::now();

    // 7. B must know the device before it can revoke its token: a revoke
    // sent to a replica that has not applied the approval yet is refused
    // ("device token revocation denied", unknown-device-or-role). Wait for
    // B's own device.pair.resolved, and count how often B was still behind
    // when the device already held its session on A.
    // (1.5 s: past the follower's 1 s poll.)
    let b_wait = wait.min(Duration::from_millis(1500));
    match wait_event(&mut ev_b, "device.pair.resolved", &request_id, b_wait).await {
        Ok(e) => {
            series.push("approve_propagation_b", t_approve, e.at);
            if e.at > t_session {
                stats.b_behind += 1;
                series.push("b_behind_by", t_session, e.at);
            }
        }
        // B saw the request and the approval in one catch-up: it announces
        // neither (its operators never hear of the request). Go on.
        Err(Failure::Timeout) => stats.b_no_resolved += 1,
        Err(f) => {
            watcher.abort();
            return Err(("approve-propagation-b", f));
        }
    }

    // 8. B revokes the token; A closes the socket.
    // A refusal from a B still behind is retried every 10 ms (counted).
    let mut t_revoke = Instant::now();
    let give_up = t_revoke + wait;
    let revoked = loop {
        let r = op_b
            .call(
                "device.token.revoke",
                json!({"deviceId": dev.id, "role": "operator"}),
            )
            .await;
        match r {
            Err(Failure::Rejected { code, .. })
                if code == "INVALID_REQUEST" && Instant::now() < give_up =>
            {
                stats.revoke_denied += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                t_revoke = Instant::now();
            }
            other => break other,
        }
    };
    let (_, t_revoked) = match revoked {
        Ok(r) => r,
        Err(f) => {
            watcher.abort();
            return Err(("revoke", f));
        }
    };
    series.push("revoke_rpc", t_revoke, t_revoked);
    match tokio::time::timeout(wait, closed_rx).await {
        Ok(Ok((code, at))) => {
            series.push("revoke_propagation", t_revoke, at);
            Ok(code.map_or("none".to_string(), |c| c.to_string()))
        }
        Ok(Err(_)) => Err(("revoke-propagation", Failure::Closed(None))),
        Err(_) => {
            watcher.abort();
            Err(("revoke-propagation", Failure::Timeout))
        }
    }
}

// --- handshake ------------------------------------------------------------------------

/// CPU seconds of a PostgreSQL cluster: the postmaster (with the children
/// it has reaped) and its live children.
fn pg_cpu_secs(postmaster: u32) -> Result<f64, String> {
    fn stat(pid: u32) -> Option<(u32, u64, u64)> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = s.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        // After the command: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
        Some((n(1)? as u32, n(11)? + n(12)?, n(13)? + n(14)?))
    }
    let hz = 100.0; // USER_HZ: 100 on every Linux the bench runs on.
    let (_, own, reaped) =
        stat(postmaster).ok_or_else(|| format!("cannot read /proc/{postmaster}/stat"))?;
    let mut ticks = own + reaped;
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if let Some((ppid, t, c)) = stat(pid)
                && ppid == postmaster
            {
                ticks += t + c;
            }
        }
    }
    Ok(ticks as f64 / hz)
}

/// Pairs each device with the shared token (silent local pairing) and
/// returns the device token from its `hello-ok`.
async fn device_tokens(
    target: &Target,
    token: &str,
    devs: &[Dev],
) -> (Vec<Option<String>>, Errors) {
    let mut errors = Errors::default();
    let mut out = Vec::with_capacity(devs.len());
    for d in devs {
        match bounded(
            HANDSHAKE_TIMEOUT,
            connect(target, &Creds::SharedDevice(token, d), None),
        )
        .await
        {
            Ok((ws, hello)) => {
                out.push(hello["auth"]["deviceToken"].as_str().map(str::to_string));
                conn::finish(ws, CLOSE_WAIT).await;
            }
            Err(e) => {
                errors.add(&e.failure);
                out.push(None);
            }
        }
    }
    (out, errors)
}

/// `n` device-token handshakes over `c` workers.
async fn run_device_token_handshakes(
    target: Arc<Target>,
    pool: Arc<Vec<(Dev, String)>>,
    n: u64,
    c: usize,
    deadline: Instant,
) -> crate::handshake::Tally {
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..c.min(n as usize).max(1) {
        let (target, pool, next) = (target.clone(), pool.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut t = crate::handshake::Tally::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || Instant::now() >= deadline {
                    break;
                }
                let (dev, tok) = &pool[(i % pool.len() as u64) as usize];
                let src = target.pick_src();
                let start = Instant::now();
                match bounded(
                    HANDSHAKE_TIMEOUT,
                    connect(&target, &Creds::DeviceToken(tok, dev), src),
                )
                .await
                {
                    Ok((ws, _)) => {
                        t.lat.push(start);
                        t.ok += 1;
                        conn::finish(ws, CLOSE_WAIT).await;
                    }
                    Err(e) => t.errors.add(&e.failure),
                }
            }
            t
        }));
    }
    let mut total = crate::handshake::Tally::default();
    for w in workers {
        if let Ok(t) = w.await {
            total.ok += t.ok;
            total.errors.merge(t.errors);
            total.lat.merge(t.lat);
        }
    }
    total
}

async fn handshake(ctx: &Ctx, a: HsArgs) -> Result<(), BenchError> {
    check_pos("-n", a.n)?;
    check_pos("-c", a.c as u64)?;
    let max = check_secs("--max-secs", a.max_secs)?;
    if a.mode != HsMode::Token {
        check_pos("--device-pool", a.device_pool as u64)?;
    }
    if let Some(pid) = a.pg_pid {
        pg_cpu_secs(pid).map_err(|e| usage(format!("--pg-pid {pid}: {e}")))?;
    }
    let target = Arc::new(crate::target(ctx, a.src_ips.as_deref())?);
    let mut warmup = None;

    // Warm-up: devices paired (and, for device-token, their tokens fetched)
    // before the measured phase.
    let mut dt_pool = Arc::new(Vec::new());
    let v3_pool: Arc<Vec<DeviceKey>> = Arc::new(if a.mode == HsMode::V3 {
        (0..a.device_pool).map(DeviceKey::from_index).collect()
    } else {
        Vec::new()
    });
    let creds = Arc::new(Credentials::new(&ctx.auth));
    match a.mode {
        HsMode::Token => {}
        HsMode::V3 => {
            let k = v3_pool.len() as u64;
            let t = run_handshakes(
                target.clone(),
                creds.clone(),
                v3_pool.clone(),
                k,
                a.c.min(v3_pool.len()),
                Instant::now() + max,
            )
            .await;
            if t.ok == 0 {
                return Err(BenchError::Failed(format!(
                    "device warm-up: none of the {k} devices got hello-ok ({})",
                    t.errors.summary()
                )));
            }
            warmup = Some(json!({"devices": k, "ok": t.ok, "errors": t.errors.counts_json()}));
        }
        HsMode::DeviceToken => {
            let Auth::Token(token) = &ctx.auth else {
                return Err(usage(
                    "--mode device-token needs --token (to pair the devices)",
                ));
            };
            let devs: Vec<Dev> = (0..a.device_pool).map(|_| Dev::fresh()).collect();
            let (tokens, errors) = device_tokens(&target, token, &devs).await;
            let pool: Vec<(Dev, String)> = devs
                .into_iter()
                .zip(tokens)
                .filter_map(|(d, t)| t.map(|t| (d, t)))
                .collect();
            if pool.is_empty() {
                return Err(BenchError::Failed(format!(
                    "device warm-up: no device got a device token ({})",
                    errors.summary()
                )));
            }
            warmup = Some(
                json!({"devices": a.device_pool, "ok": pool.len(), "errors": errors.counts_json()}),
            );
            dt_pool = Arc::new(pool);
        }
    }

    let pg0 = a.pg_pid.map(pg_cpu_secs);
    let meter = Meter::start(ctx)?;
    let deadline = meter.started() + max;
    let mut t = match a.mode {
        HsMode::Token | HsMode::V3 => {
            run_handshakes(target.clone(), creds, v3_pool, a.n, a.c, deadline).await
        }
        HsMode::DeviceToken => {
            run_device_token_handshakes(target.clone(), dt_pool, a.n, a.c, deadline).await
        }
    };
    let m = meter.stop();
    let pg1 = a.pg_pid.map(pg_cpu_secs);

    let done = t.ok + t.errors.total();
    let mut out = report::header(ctx, "replicas-handshake");
    out.insert("n".into(), json!(a.n));
    out.insert("c".into(), json!(a.c));
    out.insert("mode".into(), json!(a.mode.name()));
    if a.mode != HsMode::Token {
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
    let mut pg_note = String::new();
    if let (Some(Ok(p0)), Some(Ok(p1))) = (&pg0, &pg1) {
        let cpu = p1 - p0;
        out.insert("pg_cpu_secs".into(), json!(round(cpu, 3)));
        let per = (t.ok > 0).then(|| cpu * 1e6 / t.ok as f64);
        out.insert("pg_cpu_us_per_op".into(), json!(per.map(|p| round(p, 2))));
        pg_note = format!(
            "; PostgreSQL CPU {cpu:.2} s ({:.1} us/op)",
            per.unwrap_or(0.0)
        );
    }
    if let Some(w) = warmup {
        out.insert("warmup".into(), w);
    }
    let rate = if m.secs > 0.0 {
        t.ok as f64 / m.secs
    } else {
        0.0
    };
    let mut summary = format!(
        "{}: {}/{} ok ({}) in {:.2} s = {:.0}/s (c={}); {}\n{}{}",
        report::label_prefix(ctx, "replicas handshake"),
        t.ok,
        a.n,
        a.mode.name(),
        m.secs,
        rate,
        a.c,
        t.lat.summary(),
        m.cpu_summary(t.ok),
        pg_note
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
