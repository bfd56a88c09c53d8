//! Crash safety with the real binary: `kill -9` the gateway at random
//! moments during storms of pairing requests, approvals, token mints,
//! rotations, revocations and removals from concurrent clients; after each
//! restart on the same state directory the store must open, every store
//! invariant must hold (`clawgate_store::check_database`), and every
//! operation the gateway acknowledged must be there, checked by connecting
//! with the tokens it handed out: a token it handed out works unless a
//! later acknowledged rotate, revoke or remove ended it, and then it is
//! refused.
//!
//! `CLAWGATE_CRASH_KILLS` sets the number of kill points (default 20),
//! `CLAWGATE_CRASH_SEED` the seed (printed; it fixes the plan of operations
//! and kill delays; thread scheduling still varies between runs).
//!
//! The long run: `CLAWGATE_CRASH_KILLS=200 cargo test --release -p clawgate
//! --test crash_safety -- --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const TOKEN: &str = "crash-safety-token-3b8d1f0c";
const WORKERS: usize = 4;
const DEVICES_PER_WORKER: usize = 3;
const SCOPES: &[&str] = &["operator.read", "operator.pairing"];
/// No answer within this long from a live gateway is a failure.
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The operations the storm runs; `Request` is a connect that leaves a
/// pairing request, `Mint` a connect that is handed a device token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Request,
    Approve,
    Mint,
    Use,
    RotateSelf,
    RotateAdmin,
    Revoke,
    Remove,
}

/// A device and what the acknowledged operations left behind for it.
struct Dev {
    me: common::Identity,
    /// Acknowledged: the device is paired (stored).
    stored: bool,
    /// Acknowledged pairing request not resolved since.
    pending: Option<String>,
    /// Acknowledged: its operator token entry is revoked.
    revoked: bool,
    /// Tokens handed out and not ended by an acknowledged operation since.
    live: Vec<String>,
    /// Tokens ended by an acknowledged rotate, revoke or remove, not yet
    /// checked after a restart.
    newly_dead: Vec<String>,
    /// Every token ended so far (checked once more at the end).
    dead: Vec<String>,
    /// The operation in flight when the gateway was killed: it may or may
    /// not have been applied.
    doubt: Option<Op>,
}

impl Dev {
    fn new(rng: &mut StdRng) -> Dev {
        let seed: [u8; 32] = rng.random();
        Dev {
            me: common::Identity::from_seed(seed),
            stored: false,
            pending: None,
            revoked: false,
            live: Vec::new(),
            newly_dead: Vec::new(),
            dead: Vec::new(),
            doubt: None,
        }
    }

    fn end_live_tokens(&mut self) {
        let ended: Vec<String> = self.live.drain(..).collect();
        self.newly_dead.extend(ended.iter().cloned());
        self.dead.extend(ended);
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Why an exchange with the gateway did not complete.
#[derive(Debug)]
enum Fail {
    /// The socket broke or closed before the answer: the operation may or
    /// may not have been applied.
    Transport(String),
}

async fn open(port: u16) -> Result<(Ws, String), Fail> {
    let url = format!("ws://127.0.0.1:{port}/");
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| Fail::Transport(format!("upgrade: {e}")))?;
    let first = next_json(&mut ws).await?;
    let nonce = first["payload"]["nonce"]
        .as_str()
        .ok_or_else(|| Fail::Transport(format!("no challenge: {first}")))?
        .to_string();
    Ok((ws, nonce))
}

async fn next_json(ws: &mut Ws) -> Result<Value, Fail> {
    loop {
        let msg = tokio::time::timeout(REPLY_TIMEOUT, ws.next())
            .await
            .map_err(|_| Fail::Transport("no frame in time".into()))?;
        match msg {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(t.as_str())
                    .map_err(|e| Fail::Transport(format!("bad json: {e}")));
            }
            Some(Ok(Message::Close(f))) => {
                return Err(Fail::Transport(format!("closed: {f:?}")));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(Fail::Transport(format!("socket: {e}"))),
            None => return Err(Fail::Transport("socket ended".into())),
        }
    }
}

/// Sends a request and waits for its response (events are skipped).
async fn call(ws: &mut Ws, id: &str, method: &str, params: Value) -> Result<Value, Fail> {
    let frame = json!({"type": "req", "id": id, "method": method, "params": params});
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .map_err(|e| Fail::Transport(format!("send: {e}")))?;
    loop {
        let v = next_json(ws).await?;
        if v["type"] == "res" && v["id"] == id {
            return Ok(v);
        }
    }
}

fn client() -> Value {
    json!({"id": "cli", "version": "1.0.0", "platform": "linux", "mode": "cli"})
}

/// The device-less operator session of the gateway host (admin).
async fn admin(port: u16) -> Result<Ws, Fail> {
    let (mut ws, _) = open(port).await?;
    let params = json!({"minProtocol": 4, "maxProtocol": 4, "client": client(),
        "auth": {"token": TOKEN}, "scopes": ["operator.admin"]});
    let res = call(&mut ws, "c", "connect", params).await?;
    assert_eq!(res["ok"], true, "admin connect refused: {res}");
    Ok(ws)
}

/// Connects as `d`, with the shared token or a device token; returns the
/// socket and the connect response.
async fn connect_device(
    port: u16,
    d: &Dev,
    device_token: Option<&str>,
) -> Result<(Ws, Value), Fail> {
    connect_device_asking(port, d, device_token, SCOPES).await
}

async fn connect_device_asking(
    port: u16,
    d: &Dev,
    device_token: Option<&str>,
    scopes: &[&str],
) -> Result<(Ws, Value), Fail> {
    let (mut ws, nonce) = open(port).await?;
    let signed_at = now_ms();
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    let presented = device_token.unwrap_or(TOKEN);
    let auth = match device_token {
        Some(t) => json!({"deviceToken": t}),
        None => json!({"token": TOKEN}),
    };
    let params = json!({"minProtocol": 4, "maxProtocol": 4, "client": client(), "role": "operator",
        "scopes": scopes, "auth": auth,
        "device": d.me.cli_operator_proof(&scopes, presented, &nonce, signed_at)});
    let res = call(&mut ws, "c", "connect", params).await?;
    Ok((ws, res))
}

fn code(res: &Value) -> String {
    let e = &res["error"];
    e["details"]["code"]
        .as_str()
        .or(e["code"].as_str())
        .unwrap_or("?")
        .to_string()
}

/// What one storm acknowledged and what went wrong while the gateway lived.
#[derive(Default)]
struct Tally {
    acked: BTreeMap<Op, u64>,
    violations: Vec<String>,
}

/// One worker: runs operations on its devices, one at a time per device,
/// until the gateway dies under it.
async fn worker(
    port: u16,
    mut devs: Vec<Dev>,
    mut rng: StdRng,
    killed: Arc<AtomicBool>,
) -> (Vec<Dev>, Tally) {
    let mut tally = Tally::default();
    let Ok(mut admin_ws) = admin(port).await else {
        return (devs, tally);
    };
    let mut seq = 0u64;
    'storm: while !killed.load(Ordering::SeqCst) {
        let i = rng.random_range(0..devs.len());
        let d = &mut devs[i];
        let op = choose(d, &mut rng);
        seq += 1;
        let rid = format!("r{seq}");
        let result = run_op(port, &mut admin_ws, d, op, &rid, &mut tally).await;
        if let Err(Fail::Transport(why)) = result {
            d.doubt = Some(op);
            if !killed.load(Ordering::SeqCst) {
                tally.violations.push(format!(
                    "device {}: {op:?} failed while the gateway was alive: {why}",
                    &d.me.id[..12]
                ));
            }
            break 'storm;
        }
    }
    (devs, tally)
}

/// The next operation for `d`, given what is acknowledged about it.
fn choose(d: &Dev, rng: &mut StdRng) -> Op {
    if !d.stored || d.revoked {
        return if d.pending.is_some() {
            Op::Approve
        } else {
            Op::Request
        };
    }
    if d.live.is_empty() {
        return Op::Mint;
    }
    match rng.random_range(0..9) {
        0 | 1 => Op::Use,
        2 | 3 => Op::RotateSelf,
        4 => Op::RotateAdmin,
        5 | 6 => Op::Revoke,
        _ => Op::Remove,
    }
}

async fn run_op(
    port: u16,
    admin: &mut Ws,
    d: &mut Dev,
    op: Op,
    rid: &str,
    tally: &mut Tally,
) -> Result<(), Fail> {
    let short = d.me.id[..12].to_string();
    let mut bad = |what: String| tally.violations.push(format!("device {short}: {what}"));
    let acked = match op {
        Op::Request | Op::Mint => {
            let (_ws, res) = connect_device(port, d, None).await?;
            match (op, res["ok"].as_bool()) {
                (Op::Request, Some(false)) if code(&res) == "PAIRING_REQUIRED" => {
                    d.pending = res["error"]["details"]["requestId"]
                        .as_str()
                        .map(str::to_owned);
                    true
                }
                (Op::Mint, Some(true)) => match res["payload"]["auth"]["deviceToken"].as_str() {
                    Some(t) => {
                        d.live.push(t.to_string());
                        true
                    }
                    None => {
                        bad(format!("hello-ok without a device token: {res}"));
                        false
                    }
                },
                _ => {
                    bad(format!("{op:?}: unexpected connect answer {res}"));
                    false
                }
            }
        }
        Op::Approve => {
            let request = d.pending.clone().expect("approve needs a request");
            let res = call(
                admin,
                rid,
                "device.pair.approve",
                json!({"requestId": request}),
            )
            .await?;
            if res["ok"] == true {
                d.stored = true;
                d.revoked = false;
                d.pending = None;
                true
            } else {
                bad(format!("approve refused: {res}"));
                false
            }
        }
        Op::Use => {
            let token = d.live.last().unwrap().clone();
            let (_ws, res) = connect_device(port, d, Some(&token)).await?;
            if res["ok"] != true {
                bad(format!(
                    "a live token was refused before any crash: {}",
                    code(&res)
                ));
            }
            res["ok"] == true
        }
        Op::RotateSelf => {
            let token = d.live.last().unwrap().clone();
            let (mut ws, res) = connect_device(port, d, Some(&token)).await?;
            if res["ok"] != true {
                bad(format!(
                    "a live token was refused before any crash: {}",
                    code(&res)
                ));
                false
            } else {
                let res = call(
                    &mut ws,
                    rid,
                    "device.token.rotate",
                    json!({"deviceId": d.me.id, "role": "operator"}),
                )
                .await?;
                match res["payload"]["token"].as_str() {
                    Some(t) if res["ok"] == true => {
                        d.end_live_tokens();
                        d.live.push(t.to_string());
                        true
                    }
                    _ => {
                        bad(format!("in-band rotate refused: {res}"));
                        false
                    }
                }
            }
        }
        Op::RotateAdmin | Op::Revoke | Op::Remove => {
            let (method, params) = match op {
                Op::RotateAdmin => (
                    "device.token.rotate",
                    json!({"deviceId": d.me.id, "role": "operator"}),
                ),
                Op::Revoke => (
                    "device.token.revoke",
                    json!({"deviceId": d.me.id, "role": "operator"}),
                ),
                _ => ("device.pair.remove", json!({"deviceId": d.me.id})),
            };
            let res = call(admin, rid, method, params).await?;
            if res["ok"] != true {
                bad(format!("{method} refused: {res}"));
                false
            } else {
                d.end_live_tokens();
                match op {
                    Op::Revoke => d.revoked = true,
                    Op::Remove => {
                        d.stored = false;
                        d.revoked = false;
                        d.pending = None;
                    }
                    _ => {}
                }
                true
            }
        }
    };
    if acked {
        *tally.acked.entry(op).or_default() += 1;
    }
    Ok(())
}

/// After a restart: the store's invariants, then every acknowledged fact,
/// then the operations in doubt are resolved from what the gateway has.
async fn verify(port: u16, db: &Path, devs: &mut [Dev], all_dead: bool) -> Vec<String> {
    let mut problems = Vec::new();
    match clawgate_store::check_database(db) {
        Ok(report) => problems.extend(report.violations.iter().map(|v| format!("store: {v}"))),
        Err(e) => problems.push(format!("store does not open for checking: {e}")),
    }
    let mut ws = admin(port).await.expect("admin after restart");
    let list = call(&mut ws, "l", "device.pair.list", json!({}))
        .await
        .expect("device.pair.list");
    assert_eq!(list["ok"], true, "{list}");
    let paired: BTreeMap<String, Value> = list["payload"]["paired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["deviceId"].as_str().unwrap().to_string(), p.clone()))
        .collect();
    let pending: Vec<(String, String)> = list["payload"]["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["deviceId"].as_str().unwrap().to_string(),
                p["requestId"].as_str().unwrap().to_string(),
            )
        })
        .collect();

    for d in devs.iter_mut() {
        let short = d.me.id[..12].to_string();
        let mut bad = |what: String| problems.push(format!("device {short}: {what}"));
        let entry = paired.get(&d.me.id);
        let operator_entry = entry.and_then(|e| {
            e["tokens"]
                .as_array()
                .and_then(|ts| ts.iter().find(|t| t["role"] == "operator").cloned())
        });
        let doubt = d.doubt.take();
        let lifecycle_doubt = matches!(doubt, Some(Op::Approve | Op::Remove));
        // Paired or not.
        if lifecycle_doubt {
            d.stored = entry.is_some();
            if d.stored {
                d.revoked = operator_entry
                    .as_ref()
                    .is_some_and(|t| t["revokedAtMs"].is_u64());
            }
        } else if d.stored != entry.is_some() {
            bad(format!(
                "acknowledged {} but the device is {}",
                if d.stored { "approval" } else { "removal" },
                if entry.is_some() { "paired" } else { "gone" }
            ));
        }
        if let Some(e) = entry {
            let roles: Vec<&str> = e["roles"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            if !roles.contains(&"operator") {
                bad(format!("paired without the approved role: {e}"));
            }
        }
        // Revoked or not.
        if doubt == Some(Op::Revoke) {
            d.revoked = operator_entry
                .as_ref()
                .is_some_and(|t| t["revokedAtMs"].is_u64());
        } else if d.stored && !lifecycle_doubt {
            let is_revoked = operator_entry
                .as_ref()
                .is_some_and(|t| t["revokedAtMs"].is_u64());
            if d.revoked && !is_revoked {
                bad("acknowledged revoke is not recorded after restart".into());
            }
        }
        // The acknowledged pairing request.
        let listed: Vec<&String> = pending
            .iter()
            .filter(|(dev, _)| *dev == d.me.id)
            .map(|(_, r)| r)
            .collect();
        match doubt {
            Some(Op::Request) | Some(Op::Approve) | Some(Op::Remove) => {
                d.pending = if d.stored && !d.revoked {
                    None
                } else {
                    listed.last().map(|r| r.to_string())
                };
            }
            _ => {
                if let Some(r) = &d.pending
                    && !listed.contains(&r)
                {
                    bad(format!(
                        "acknowledged pairing request {r} is gone after restart"
                    ));
                }
            }
        }
        // Tokens: the ones in doubt first, then the acknowledged ones.
        let token_doubt = matches!(
            doubt,
            Some(Op::RotateSelf | Op::RotateAdmin | Op::Revoke | Op::Remove)
        );
        let live: Vec<String> = d.live.drain(..).collect();
        for t in live {
            let works = token_works(port, d, &t).await;
            if works {
                d.live.push(t);
            } else if token_doubt {
                d.newly_dead.push(t.clone());
                d.dead.push(t);
            } else {
                bad("an acknowledged token is refused after restart".into());
                d.dead.push(t);
            }
        }
        let checked: Vec<String> = if all_dead {
            d.newly_dead.clear();
            d.dead.clone()
        } else {
            d.newly_dead.drain(..).collect()
        };
        for t in checked {
            if token_works(port, d, &t).await {
                bad(
                    "a token ended by an acknowledged rotate/revoke/remove works after restart"
                        .into(),
                );
            }
        }
        if !d.live.is_empty() && (!d.stored || d.revoked) {
            bad("a token works for a device that is removed or revoked".into());
        }
    }
    let _ = ws.close(None).await;
    problems
}

async fn token_works(port: u16, d: &Dev, token: &str) -> bool {
    let (mut ws, res) = connect_device(port, d, Some(token))
        .await
        .expect("gateway answers after restart");
    let ok = res["ok"] == true;
    if !ok {
        let c = code(&res);
        assert!(
            c.starts_with("AUTH_") || c == "PAIRING_REQUIRED" || c == "NOT_PAIRED",
            "a refused token must be an auth refusal, got {res}"
        );
    }
    let _ = ws.close(None).await;
    ok
}

fn wal_len(db: &Path) -> u64 {
    std::fs::metadata(PathBuf::from(format!("{}-wal", db.display())))
        .map(|m| m.len())
        .unwrap_or(0)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
fn kill_9_during_storms_loses_nothing_acknowledged() {
    let kills = env_u64("CLAWGATE_CRASH_KILLS").unwrap_or(20).max(1) as usize;
    let seed = env_u64("CLAWGATE_CRASH_SEED").unwrap_or_else(now_ms);
    println!(
        "crash_safety: seed {seed} (CLAWGATE_CRASH_SEED={seed} repeats the plan), {kills} kill points"
    );
    let mut rng = StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    // Every device goes through an operator (no silent local approval); no
    // delays for refused tokens (each check would otherwise wait).
    std::fs::write(
        state.join("clawgate.json"),
        json!({"gateway": {"auth": {"token": TOKEN, "rateLimit": {
            "exemptLoopback": false, "maxAttempts": 1_000_000, "globalMaxFailures": 1_000_000}},
            "nodes": {"pairing": {"autoApproveLocal": false}}}})
        .to_string(),
    )
    .unwrap();
    let db = state.join(clawgate_store::DB_FILE_NAME);
    let rt = tokio::runtime::Runtime::new().unwrap();

    let mut devs: Vec<Vec<Dev>> = (0..WORKERS)
        .map(|_| {
            (0..DEVICES_PER_WORKER)
                .map(|_| Dev::new(&mut rng))
                .collect()
        })
        .collect();
    let mut acked: BTreeMap<Op, u64> = BTreeMap::new();
    let mut problems: Vec<String> = Vec::new();
    let mut wal_kills = 0usize;
    let mut doubts = 0usize;
    let started = Instant::now();

    for kill in 0..=kills {
        let running = start(state, &[], &[]);
        let port = running.port;
        if kill > 0 {
            let mut all: Vec<Dev> = devs.drain(..).flatten().collect();
            let found = rt.block_on(verify(port, &db, &mut all, false));
            for p in found {
                problems.push(format!("after kill {kill}: {p}"));
            }
            let mut it = all.into_iter();
            devs = (0..WORKERS)
                .map(|_| it.by_ref().take(DEVICES_PER_WORKER).collect())
                .collect();
        }
        if kill == kills {
            // The last restart: check every token ever ended, then stop
            // cleanly and check the store once more.
            let mut all: Vec<Dev> = devs.drain(..).flatten().collect();
            let found = rt.block_on(verify(port, &db, &mut all, true));
            problems.extend(found.into_iter().map(|p| format!("final: {p}")));
            let (code, stderr) = stop(running);
            assert_eq!(code, 0, "{stderr}");
            let report = clawgate_store::check_database(&db).unwrap();
            problems.extend(
                report
                    .violations
                    .iter()
                    .map(|v| format!("after clean stop: {v}")),
            );
            // The operator's view of the same store.
            let (_, out, _) = clawgate(state, &["doctor", "--json"]);
            let doc: Value = serde_json::from_str(&out).unwrap();
            let store_check = doc["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == "Store")
                .cloned()
                .unwrap_or(Value::Null);
            assert_eq!(store_check["ok"], true, "doctor: {store_check}");
            println!(
                "crash_safety: final store: {} devices, {} token entries, {} token hashes, {} pending, {} audit rows",
                report.devices,
                report.role_tokens,
                report.token_hashes,
                report.pending,
                report.audit.rows
            );
            break;
        }

        // The storm, and the kill at a random moment in it.
        let killed = Arc::new(AtomicBool::new(false));
        let delay = Duration::from_millis(rng.random_range(20..400));
        let handles: Vec<_> = devs
            .drain(..)
            .map(|ds| {
                let worker_rng = StdRng::seed_from_u64(rng.random());
                rt.spawn(worker(port, ds, worker_rng, killed.clone()))
            })
            .collect();
        std::thread::sleep(delay);
        killed.store(true, Ordering::SeqCst);
        let mut running = running;
        running.child.kill().unwrap(); // SIGKILL
        running.child.wait().unwrap();
        if wal_len(&db) > 0 {
            wal_kills += 1;
        }
        for h in handles {
            let (ds, tally) = rt.block_on(h).unwrap();
            for (op, n) in tally.acked {
                *acked.entry(op).or_default() += n;
            }
            problems.extend(
                tally
                    .violations
                    .into_iter()
                    .map(|v| format!("kill {}: {v}", kill + 1)),
            );
            doubts += ds.iter().filter(|d| d.doubt.is_some()).count();
            devs.push(ds);
        }
        drop(running);
    }

    let total: u64 = acked.values().sum();
    println!(
        "crash_safety: {kills} kill points in {:.1} s, {total} operations acknowledged {acked:?}, {doubts} in flight at a kill, {wal_kills} kills left a WAL to recover, {} violations",
        started.elapsed().as_secs_f64(),
        problems.len()
    );
    assert!(problems.is_empty(), "seed {seed}:\n{}", problems.join("\n"));
    // The storms did what they are for.
    for op in [Op::Approve, Op::RotateSelf, Op::Revoke, Op::Remove] {
        assert!(
            acked.get(&op).copied().unwrap_or(0) > 0,
            "no {op:?} acknowledged: {acked:?}"
        );
    }
    assert!(
        wal_kills > 0,
        "no kill left a WAL behind: nothing was recovered"
    );
}

/// A state dir with one approved device holding a token; returns the
/// device and its token, with the gateway still running.
fn paired_state(state: &Path) -> (Running, Dev, String) {
    std::fs::write(
        state.join("clawgate.json"),
        json!({"gateway": {"auth": {"token": TOKEN},
            "nodes": {"pairing": {"autoApproveLocal": false}}}})
        .to_string(),
    )
    .unwrap();
    let running = start(state, &[], &[]);
    let port = running.port;
    let mut d = Dev::new(&mut StdRng::seed_from_u64(7));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let token = rt.block_on(async {
        let mut tally = Tally::default();
        let mut admin_ws = admin(port).await.unwrap();
        for (i, op) in [Op::Request, Op::Approve, Op::Mint].into_iter().enumerate() {
            run_op(
                port,
                &mut admin_ws,
                &mut d,
                op,
                &format!("s{i}"),
                &mut tally,
            )
            .await
            .unwrap();
        }
        assert!(tally.violations.is_empty(), "{:?}", tally.violations);
        d.live[0].clone()
    });
    (running, d, token)
}

fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", db.display()))
}

#[test]
fn a_state_dir_torn_by_kill_9_recovers_from_its_wal() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let db = state.join(clawgate_store::DB_FILE_NAME);
    let (mut running, d, token) = paired_state(state);
    running.child.kill().unwrap(); // SIGKILL: no checkpoint, no cleanup
    running.child.wait().unwrap();
    drop(running);
    assert!(wal_len(&db) > 0, "the kill left no WAL");
    assert!(sidecar(&db, "-shm").exists());
    // The operator's check reads through the WAL without changing anything.
    let wal = std::fs::read(sidecar(&db, "-wal")).unwrap();
    let main = std::fs::read(&db).unwrap();
    let report = clawgate_store::check_database(&db).unwrap();
    assert!(report.ok(), "{:?}", report.violations);
    assert_eq!((report.devices, report.token_hashes), (1, 1));
    assert_eq!(std::fs::read(sidecar(&db, "-wal")).unwrap(), wal);
    assert_eq!(std::fs::read(&db).unwrap(), main);
    // A scribbled shared-memory index is rebuilt from the WAL.
    std::fs::write(sidecar(&db, "-shm"), vec![0xa5u8; 32768]).unwrap();

    let running = start(state, &[], &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert!(rt.block_on(token_works(running.port, &d, &token)));
    let (code, stderr) = stop(running);
    assert_eq!(code, 0, "{stderr}");
    let report = clawgate_store::check_database(&db).unwrap();
    assert!(report.ok(), "{:?}", report.violations);
    assert_eq!((report.devices, report.token_hashes), (1, 1));
}

#[test]
fn a_damaged_database_is_refused_naming_the_file_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let db = state.join(clawgate_store::DB_FILE_NAME);
    let (running, _d, _token) = paired_state(state);
    let (code, stderr) = stop(running);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !sidecar(&db, "-wal").exists(),
        "a clean stop checkpoints the WAL"
    );
    let config = std::fs::read(state.join("clawgate.json")).unwrap();
    let full = std::fs::read(&db).unwrap();

    let damages: [(&str, Vec<u8>); 2] = [
        ("truncated", full[..full.len() / 2].to_vec()),
        ("not a database", {
            let mut b = full.clone();
            b[..16].copy_from_slice(b"definitely not!!");
            b
        }),
    ];
    for (what, bytes) in damages {
        std::fs::write(&db, &bytes).unwrap();
        let out = bin()
            .arg("--state-dir")
            .arg(state)
            .args(["gateway", "run", "--port", "0"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(
            stderr.contains(&db.display().to_string()),
            "{what}: {stderr}"
        );
        assert!(
            stderr.contains("damaged") && stderr.contains("mv "),
            "{what}: {stderr}"
        );
        assert!(!stderr.contains("cannot listen"), "{what}: {stderr}");
        // Nothing was lost or rewritten.
        assert_eq!(std::fs::read(&db).unwrap(), bytes, "{what}");
        assert_eq!(std::fs::read(state.join("clawgate.json")).unwrap(), config);

        // doctor names the file and what to do, and changes nothing either.
        let (_, out, _) = clawgate(state, &["doctor", "--json"]);
        let doc: Value = serde_json::from_str(&out).unwrap();
        let check = doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "Store")
            .cloned()
            .unwrap();
        assert_eq!(check["ok"], false, "{what}: {check}");
        assert!(
            check["detail"]
                .as_str()
                .unwrap()
                .contains(&db.display().to_string())
        );
        assert!(check["fix"].as_str().unwrap().contains("mv "), "{check}");
        assert_eq!(std::fs::read(&db).unwrap(), bytes, "{what}");
    }
}

/// Two operators acting on the same request or device at the same moment:
/// what both were told must agree with the store, and the store's
/// invariants hold (an approval approves an open request).
#[test]
fn concurrent_operators_never_contradict_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    std::fs::write(
        state.join("clawgate.json"),
        json!({"gateway": {"auth": {"token": TOKEN},
            "nodes": {"pairing": {"autoApproveLocal": false}}}})
        .to_string(),
    )
    .unwrap();
    let running = start(state, &[], &[]);
    let port = running.port;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut rng = StdRng::seed_from_u64(now_ms());
    let problems = rt.block_on(async {
        let mut a = admin(port).await.unwrap();
        let mut b = admin(port).await.unwrap();
        let mut problems = Vec::new();
        let request = |res: &Value| {
            res["error"]["details"]["requestId"]
                .as_str()
                .map(str::to_owned)
        };
        for i in 0..150 {
            // Approve and reject the same request at once: one of them wins.
            let d = Dev::new(&mut rng);
            let (_ws, res) = connect_device(port, &d, None).await.unwrap();
            let rid = request(&res).unwrap();
            let (ia, ib) = (format!("a{i}"), format!("b{i}"));
            let (ra, rb) = tokio::join!(
                call(&mut a, &ia, "device.pair.approve", json!({"requestId": rid})),
                call(&mut b, &ib, "device.pair.reject", json!({"requestId": rid}))
            );
            if ra.unwrap()["ok"] == true && rb.unwrap()["ok"] == true {
                problems.push(format!("request {rid}: both the approval and the rejection were acknowledged"));
            }

            // Approve a narrower re-request and remove the device at once:
            // an acknowledged removal leaves the device gone.
            let (_ws, res) = connect_device(port, &d, None).await.unwrap();
            if let Some(rid) = request(&res) {
                let r = call(&mut a, &ia, "device.pair.approve", json!({"requestId": rid})).await;
                assert_eq!(r.unwrap()["ok"], true);
            }
            call(&mut a, &ia, "device.token.revoke", json!({"deviceId": d.me.id, "role": "operator"}))
                .await
                .unwrap();
            let (_ws, res) = connect_device_asking(port, &d, None, &["operator.read"]).await.unwrap();
            let rid = request(&res).unwrap();
            let (ra, rb) = tokio::join!(
                call(&mut a, &ia, "device.pair.approve", json!({"requestId": rid})),
                call(&mut b, &ib, "device.pair.remove", json!({"deviceId": d.me.id}))
            );
            let (ra, rb) = (ra.unwrap(), rb.unwrap());
            if rb["ok"] == true && ra["ok"] == true {
                let list = call(&mut a, &ia, "device.pair.list", json!({})).await.unwrap();
                let paired = list["payload"]["paired"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["deviceId"] == d.me.id.as_str());
                if paired {
                    problems.push(format!(
                        "device {}: removal acknowledged, yet an approval racing it left the device paired",
                        &d.me.id[..12]
                    ));
                }
            }
        }
        problems
    });
    let report = clawgate_store::check_database(&state.join(clawgate_store::DB_FILE_NAME)).unwrap();
    let mut all = problems;
    all.extend(report.violations.iter().map(|v| format!("store: {v}")));
    drop(running);
    assert!(
        all.is_empty(),
        "{} problems:\n{}",
        all.len(),
        all.join("\n")
    );
}
