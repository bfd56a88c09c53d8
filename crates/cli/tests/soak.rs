//! A short soak against the real binary (the CI version of the 30-minute
//! `clawgate-bench soak` recorded in SECURITY.md): a few hundred
//! authenticated connections over several loopback source addresses, held
//! with a 1 s tick (`gateway.tickIntervalMs`, its lowest value) while a
//! share of them is closed and re-opened on purpose every few seconds and
//! RPCs go out across them. Nothing the test did not
//! ask for may happen: no close or error, no failed RPC, no connection
//! without ticks; and once everything is closed the gateway's open file
//! descriptors return to where they started.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "soak-test-token-0123456789";
const TICK_MS: u64 = 1000;
const CONNS: usize = 400;
const HOLD: Duration = Duration::from_secs(20);
const CHURN_EVERY: Duration = Duration::from_secs(4);
const CHURN_PER_CYCLE: usize = 40;
/// One RPC every this long, round-robin over the connections.
const RPC_EVERY: Duration = Duration::from_millis(40);
/// Source addresses 127.0.0.1 ..= 127.0.0.SOURCES.
const SOURCES: u8 = 4;
/// Handshakes in flight at once (the gateway allows 32 unauthenticated
/// sockets per address).
const OPENING_AT_ONCE: usize = 16;
/// Gateway fds above the baseline still counted as "back".
const FD_SLACK: u64 = 4;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

fn fd_count(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64
}

/// Raises this process's open-file soft limit to the hard limit.
fn raise_nofile() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

/// TCP from `src`, upgrade, challenge, `connect` with the shared token,
/// `hello-ok`. `Err("503")` when the upgrade was refused by the cap.
async fn open(port: u16, src: Ipv4Addr) -> Result<Ws, String> {
    let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.bind(SocketAddr::new(IpAddr::V4(src), 0))
        .map_err(|e| e.to_string())?;
    let tcp = sock
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .map_err(|e| e.to_string())?;
    let (mut ws, _) =
        match tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/"), tcp).await {
            Ok(ok) => ok,
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                return Err(r.status().as_u16().to_string());
            }
            Err(e) => return Err(e.to_string()),
        };
    let _challenge = ws.next().await;
    let params = json!({
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "cli", "version": "soak", "platform": "linux", "mode": "cli"},
        "role": "operator", "scopes": ["operator.read"], "auth": {"token": TOKEN},
    });
    let req = json!({"type": "req", "id": "c", "method": "connect", "params": params});
    ws.send(Message::text(req.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?;
                if v["type"] == "res" && v["id"] == "c" {
                    return if v["ok"] == true {
                        Ok(ws)
                    } else {
                        Err(format!("connect refused: {}", v["error"]))
                    };
                }
            }
            Some(Ok(_)) => {}
            other => return Err(format!("closed during the handshake: {other:?}")),
        }
    }
}

/// Opens `n` connections, `OPENING_AT_ONCE` at a time, round-robin over the
/// source addresses; a 503 from the cap is retried.
async fn open_many(port: u16, n: usize, first_src: usize) -> Vec<Ws> {
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..OPENING_AT_ONCE.min(n) {
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    return out;
                }
                let src = Ipv4Addr::new(127, 0, 0, 1 + ((first_src + i) % SOURCES as usize) as u8);
                let mut attempts = 0;
                loop {
                    match tokio::time::timeout(Duration::from_secs(15), open(port, src)).await {
                        Ok(Ok(ws)) => {
                            out.push(ws);
                            break;
                        }
                        Ok(Err(e)) if e == "503" && attempts < 100 => {
                            attempts += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Ok(Err(e)) => panic!("connection {i} from {src}: {e}"),
                        Err(_) => panic!("connection {i} from {src}: no hello-ok within 15 s"),
                    }
                }
            }
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all
}

/// What one connection saw over its life.
#[derive(Debug, Default)]
struct Life {
    ticks: u64,
    rpc_sent: u64,
    rpc_ok: u64,
    rpc_failed: Vec<String>,
    /// A close or error the test did not ask for.
    unasked: Option<String>,
    lived: Duration,
    /// Opened before the hold began (held through the whole run unless churned).
    initial: bool,
    churned: bool,
}

enum Cmd {
    Rpc(&'static str),
    Close,
}

async fn hold(
    mut ws: Ws,
    mut cmds: mpsc::Receiver<Cmd>,
    mut stop: watch::Receiver<bool>,
    initial: bool,
) -> Life {
    let t0 = Instant::now();
    let mut life = Life {
        initial,
        ..Life::default()
    };
    let mut pending = 0u64;
    let mut next_id = 0u64;
    let mut closing = false;
    loop {
        if closing && pending == 0 {
            break;
        }
        tokio::select! {
            _ = stop.changed(), if !closing => closing = true,
            cmd = cmds.recv(), if !closing => match cmd {
                Some(Cmd::Rpc(method)) => {
                    next_id += 1;
                    let req = json!({"type": "req", "id": next_id.to_string(), "method": method, "params": {}});
                    if let Err(e) = ws.send(Message::text(req.to_string())).await {
                        life.unasked = Some(format!("send failed: {e}"));
                        break;
                    }
                    pending += 1;
                    life.rpc_sent += 1;
                }
                Some(Cmd::Close) => {
                    life.churned = true;
                    closing = true;
                }
                None => closing = true,
            },
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["type"] == "event" && v["event"] == "tick" {
                        life.ticks += 1;
                    } else if v["type"] == "res" {
                        pending -= 1;
                        if v["ok"] == true {
                            life.rpc_ok += 1;
                        } else {
                            life.rpc_failed.push(v["error"].to_string());
                        }
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    life.unasked = Some(format!("closed by the gateway: {f:?}"));
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    life.unasked = Some(format!("error: {e}"));
                    break;
                }
                None => {
                    life.unasked = Some("socket ended".into());
                    break;
                }
            },
        }
    }
    if life.unasked.is_none() {
        // The test's own close: wait for the gateway's reply and EOF.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = ws.close(None).await;
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }
    life.lived = t0.elapsed();
    life
}

struct Slot {
    tx: mpsc::Sender<Cmd>,
    task: tokio::task::JoinHandle<Life>,
}

fn spawn(ws: Ws, stop: &watch::Receiver<bool>, initial: bool) -> Slot {
    let (tx, rx) = mpsc::channel(64);
    Slot {
        tx,
        task: tokio::spawn(hold(ws, rx, stop.clone(), initial)),
    }
}

#[test]
fn hundreds_of_connections_with_ticks_churn_and_rpcs_leave_nothing_behind() {
    let limit = raise_nofile();
    assert!(
        limit >= 2 * CONNS as u64 + 200,
        "open-file limit {limit} is too low for this test"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("clawgate.json"),
        format!("{{gateway: {{tickIntervalMs: {TICK_MS}}}}}"),
    )
    .unwrap();
    let gw = start(dir.path(), &["--token", TOKEN], &[]);
    let (port, pid) = (gw.port, gw.child.id());
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Let the gateway finish starting (log writer, reload poll) first.
    std::thread::sleep(Duration::from_millis(300));
    let fds_before = fd_count(pid);

    let (lives, churn_cycles, rpcs_queued, fds_held) = rt.block_on(async move {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut slots: Vec<Option<Slot>> = open_many(port, CONNS, 0)
            .await
            .into_iter()
            .map(|ws| Some(spawn(ws, &stop_rx, true)))
            .collect();
        assert_eq!(slots.len(), CONNS);
        let fds_held = fd_count(pid);
        let mut ended: Vec<Life> = Vec::new();
        let end = tokio::time::Instant::now() + HOLD;
        let mut churn = tokio::time::interval(CHURN_EVERY);
        churn.tick().await;
        let mut rpc = tokio::time::interval(RPC_EVERY);
        let (mut cursor, mut churn_cursor, mut cycles, mut sent) = (0usize, 0usize, 0u32, 0u64);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(end) => break,
                _ = rpc.tick() => {
                    let i = cursor % CONNS;
                    cursor += 1;
                    if let Some(s) = &slots[i] {
                        let method = if cursor % 2 == 0 { "health" } else { "status" };
                        s.tx.send(Cmd::Rpc(method)).await.unwrap();
                        sent += 1;
                    }
                }
                _ = churn.tick() => {
                    // Close a share on purpose, then open as many new ones
                    // (from other source addresses than the first time).
                    cycles += 1;
                    let picked: Vec<usize> = (0..CHURN_PER_CYCLE)
                        .map(|j| (churn_cursor + j) % CONNS)
                        .collect();
                    churn_cursor += CHURN_PER_CYCLE;
                    for &i in &picked {
                        let s = slots[i].take().unwrap();
                        s.tx.send(Cmd::Close).await.unwrap();
                        ended.push(s.task.await.unwrap());
                    }
                    let fresh = open_many(port, picked.len(), cycles as usize).await;
                    assert_eq!(fresh.len(), picked.len());
                    for (i, ws) in picked.into_iter().zip(fresh) {
                        slots[i] = Some(spawn(ws, &stop_rx, false));
                    }
                }
            }
        }
        stop_tx.send(true).unwrap();
        for s in slots.into_iter().flatten() {
            ended.push(s.task.await.unwrap());
        }
        (ended, cycles, sent, fds_held)
    });

    // Nothing happened that the test did not ask for.
    let unasked: Vec<_> = lives.iter().filter_map(|l| l.unasked.as_ref()).collect();
    assert!(unasked.is_empty(), "unasked drops: {unasked:?}");
    let failed: Vec<_> = lives.iter().flat_map(|l| &l.rpc_failed).collect();
    assert!(failed.is_empty(), "failed RPCs: {failed:?}");
    // Queued RPCs a connection had not sent yet when told to stop are not
    // sent; every one that went out got an ok response.
    let sent: u64 = lives.iter().map(|l| l.rpc_sent).sum();
    let ok: u64 = lives.iter().map(|l| l.rpc_ok).sum();
    assert_eq!(ok, sent, "every RPC sent got an ok response");
    assert!(sent <= rpcs_queued && sent + 64 >= rpcs_queued);
    assert!(sent >= 100, "only {sent} RPCs went out");
    assert!(churn_cycles >= 3, "only {churn_cycles} churn cycles");
    assert_eq!(
        lives.iter().filter(|l| l.churned).count(),
        churn_cycles as usize * CHURN_PER_CYCLE
    );
    assert_eq!(
        lives.len(),
        CONNS + churn_cycles as usize * CHURN_PER_CYCLE,
        "every connection, initial and re-opened, was accounted for"
    );
    // Every connection that lived a few tick intervals got ticks; those held
    // through the whole run got many (bounds far below the ~20 expected).
    for l in &lives {
        if l.lived > Duration::from_millis(4 * TICK_MS) {
            assert!(
                l.ticks >= 1,
                "a connection lived {:?} without a tick",
                l.lived
            );
        }
        if l.initial && !l.churned {
            assert!(l.ticks >= 5, "a held connection got only {} ticks", l.ticks);
        }
    }
    assert!(fds_held >= fds_before + CONNS as u64);

    // Closed on purpose: the gateway's descriptors go back to the baseline.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut fds_after = fd_count(pid);
    while fds_after > fds_before + FD_SLACK && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        fds_after = fd_count(pid);
    }
    assert!(
        fds_after <= fds_before + FD_SLACK,
        "gateway fds: {fds_before} before, {fds_held} held, {fds_after} after closing"
    );
    // And it still serves.
    let ws = rt.block_on(open(port, Ipv4Addr::LOCALHOST));
    assert!(ws.is_ok(), "{:?}", ws.err());
    drop(ws);
    let (code, _) = stop(gw);
    assert_eq!(code, 0);
}
