//! Replicas on one PostgreSQL registry: real `clawgate` processes, a real
//! PostgreSQL (the cluster `scripts/test.sh` starts; the outage test starts
//! its own with `scripts/pg.sh`), real signing clients.
//!
//! Without `CLAWGATE_TEST_PG_URL` these tests fail, saying how to start
//! PostgreSQL: they never pass without it.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const TOKEN: &str = "replicas-test-token-5d4c3b2a";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One replica: its state directory and its process.
struct Replica {
    _dir: tempfile::TempDir,
    run: Option<Running>,
}

impl Replica {
    fn port(&self) -> u16 {
        self.run.as_ref().expect("running").port
    }
}

/// Writes a replica's config: the shared token, pairing by operators only
/// (loopback tests would otherwise be approved silently), the store.
fn replica_config(state: &Path, url: &str, password_file: Option<&Path>, rate_limit: Value) {
    let mut store = json!({"url": url});
    if let Some(p) = password_file {
        store["passwordFile"] = json!(p);
    }
    let doc = json!({"gateway": {
        "auth": {"token": TOKEN, "rateLimit": rate_limit},
        "nodes": {"pairing": {"autoApproveLocal": false}},
        "store": store,
    }});
    std::fs::write(state.join("clawgate.json"), doc.to_string()).unwrap();
}

fn start_replica(url: &str, password_file: Option<&Path>) -> Replica {
    start_replica_with(url, password_file, json!({}))
}

fn start_replica_with(url: &str, password_file: Option<&Path>, rate_limit: Value) -> Replica {
    let dir = tempfile::tempdir().unwrap();
    replica_config(dir.path(), url, password_file, rate_limit);
    let run = start(dir.path(), &[], &[]);
    Replica {
        _dir: dir,
        run: Some(run),
    }
}

/// `n` replicas on a fresh database of the test cluster.
fn cluster(n: usize) -> (Vec<Replica>, String, Option<PathBuf>) {
    let (url, password_file) = clawgate_store::testing::fresh_database("replicas");
    let replicas = (0..n)
        .map(|_| start_replica(&url, password_file.as_deref()))
        .collect();
    (replicas, url, password_file)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn read_json(ws: &mut Socket) -> Option<Value> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return serde_json::from_str(&t).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Opens a socket and connects with `params` (the nonce is filled in by
/// `device_block`, when given): the socket and the connect response.
async fn connect_with(
    port: u16,
    auth: Value,
    scopes: &[&str],
    device: Option<(&Identity, &str)>,
) -> (Socket, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/"))
        .await
        .unwrap();
    let challenge = read_json(&mut ws).await.expect("challenge");
    let nonce = challenge["payload"]["nonce"].as_str().unwrap().to_string();
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    let mut params = json!({"minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "cli", "version": "1", "platform": "linux", "mode": "cli"},
        "scopes": scopes, "auth": auth});
    if let Some((id, signed_token)) = device {
        params["device"] = id.cli_operator_proof(&scopes, signed_token, &nonce, now_ms());
    }
    ws.send(Message::Text(
        json!({"type": "req", "id": "c", "method": "connect", "params": params})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let reply = read_json(&mut ws).await.unwrap_or(Value::Null);
    (ws, reply)
}

/// A device connect with the shared token.
async fn with_shared(port: u16, d: &Identity) -> (Socket, Value) {
    connect_with(
        port,
        json!({"token": TOKEN}),
        &["operator.read"],
        Some((d, TOKEN)),
    )
    .await
}

/// A device connect with its device token only.
async fn with_device_token(port: u16, d: &Identity, token: &str) -> (Socket, Value) {
    connect_with(
        port,
        json!({"deviceToken": token}),
        &["operator.read"],
        Some((d, token)),
    )
    .await
}

/// A device-less operator with the shared token (a local CLI keeps its
/// scopes).
async fn operator(port: u16) -> Socket {
    let (ws, res) = connect_with(port, json!({"token": TOKEN}), &["operator.admin"], None).await;
    assert_eq!(res["ok"], true, "operator connect: {res}");
    ws
}

/// Sends one request and returns its response (events in between are
/// skipped).
async fn call(ws: &mut Socket, id: &str, method: &str, params: Value) -> Value {
    ws.send(Message::Text(
        json!({"type": "req", "id": id, "method": method, "params": params})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    loop {
        let frame = read_json(ws).await.expect("response before close");
        if frame["type"] == "res" && frame["id"] == id {
            return frame;
        }
    }
}

/// Retries `f` every 50 ms until it returns `Some`, for at most `within`.
async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The close code the peer sends next (events are skipped), or `None` if
/// the socket ends without one within `within`.
async fn close_code(ws: &mut Socket, within: Duration) -> Option<u16> {
    tokio::time::timeout(within, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return Some(u16::from(frame.code)),
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// The next event named `name` on `ws` within `within` (other frames are
/// skipped).
async fn next_event(ws: &mut Socket, name: &str, within: Duration) -> Option<Value> {
    tokio::time::timeout(within, async {
        loop {
            let frame = read_json(ws).await?;
            if frame["type"] == "event" && frame["event"] == name {
                return Some(frame["payload"].clone());
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// Polls `status` on `op` until its `gateway.registry` satisfies `pred`.
async fn status_until(
    op: &mut Socket,
    within: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) {
    let deadline = Instant::now() + within;
    for n in 0.. {
        let st = call(op, &format!("st{n}"), "status", json!({})).await;
        let registry = &st["payload"]["gateway"]["registry"];
        if pred(registry) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not within {within:?}: {what}: {registry}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A pairing request from `d` on `port`: its request id.
async fn request_pairing(port: u16, d: &Identity) -> String {
    let (_, res) = with_shared(port, d).await;
    assert_eq!(res["ok"], false, "{res}");
    res["error"]["details"]["requestId"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits until the replica `op` is connected to lists request `rid` as
/// pending.
async fn until_listed(op: &mut Socket, rid: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    for n in 0.. {
        let list = call(op, &format!("l{n}"), "device.pair.list", json!({})).await;
        let listed = list["payload"]["pending"]
            .as_array()
            .is_some_and(|l| l.iter().any(|p| p["requestId"] == rid));
        if listed {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "request {rid} not listed: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connects `d` with the shared token until it gets hello-ok (its approval
/// has reached that replica): its device token.
async fn paired_token(port: u16, d: &Identity) -> String {
    eventually(Duration::from_secs(3), "approval seen", || async {
        let (_, res) = with_shared(port, d).await;
        res["payload"]["auth"]["deviceToken"]
            .as_str()
            .map(str::to_string)
    })
    .await
}

fn open_store(url: &str, password_file: Option<&Path>) -> clawgate_store::Store {
    let target = clawgate_store::PgTarget::parse(url, password_file).unwrap();
    clawgate_store::Store::open_postgres(&target).unwrap()
}

#[test]
fn pairing_tokens_and_revocation_cross_replicas() {
    let (replicas, _url, _) = cluster(3);
    let (a, b, c) = (replicas[0].port(), replicas[1].port(), replicas[2].port());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // A pending request made on A is approved from C.
        let x = Identity::random();
        let rid = request_pairing(a, &x).await;
        let mut op_c = operator(c).await;
        until_listed(&mut op_c, &rid).await;
        let res = call(
            &mut op_c,
            "approve",
            "device.pair.approve",
            json!({"requestId": rid}),
        )
        .await;
        assert_eq!(res["ok"], true, "{res}");

        // Paired on A (the approval reached it), the device token works on B.
        let token = paired_token(a, &x).await;
        let (_on_b, res) = with_device_token(b, &x, &token).await;
        assert_eq!(res["ok"], true, "device token on another replica: {res}");
        assert_eq!(res["payload"]["auth"]["role"], "operator", "{res}");

        // Rotated on C: the device's live socket on A closes with 4001 and
        // the old token is refused everywhere.
        let (mut on_a, res) = with_device_token(a, &x, &token).await;
        assert_eq!(res["ok"], true, "{res}");
        let res = call(
            &mut op_c,
            "rotate",
            "device.token.rotate",
            json!({"deviceId": x.id, "role": "operator"}),
        )
        .await;
        assert_eq!(res["ok"], true, "{res}");
        assert_eq!(
            close_code(&mut on_a, Duration::from_secs(3)).await,
            Some(4001),
            "a rotation on C closes the session on A"
        );
        // B learns of the rotation through NOTIFY (milliseconds; longer
        // on a loaded machine): the rotated-out token is refused there
        // once B has applied it, and it never comes back.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let (_, res) = with_device_token(b, &x, &token).await;
            if res["ok"] == false {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the rotated-out token is still accepted on B after 3 s: {res}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_, res) = with_device_token(b, &x, &token).await;
        assert_eq!(res["ok"], false, "the rotated-out token on B: {res}");
        let token = paired_token(a, &x).await;

        // Revoked on B: the device's live socket on A closes with 4001
        // within a second, and its token is refused everywhere.
        let (mut on_a, res) = with_device_token(a, &x, &token).await;
        assert_eq!(res["ok"], true, "{res}");
        let mut op_b = operator(b).await;
        let started = Instant::now();
        let res = call(
            &mut op_b,
            "revoke",
            "device.token.revoke",
            json!({"deviceId": x.id, "role": "operator"}),
        )
        .await;
        assert_eq!(res["ok"], true, "{res}");
        let code = close_code(&mut on_a, Duration::from_secs(3)).await;
        let took = started.elapsed();
        assert_eq!(code, Some(4001), "the socket on A closes with 4001");
        assert!(
            took < Duration::from_secs(1),
            "revocation reached A in {took:?}"
        );
        for port in [a, b, c] {
            let (_, res) = with_device_token(port, &x, &token).await;
            assert_eq!(res["ok"], false, "revoked token accepted on {port}: {res}");
        }
    });
}

#[test]
fn two_replicas_approving_at_once_one_wins() {
    let (replicas, url, password_file) = cluster(3);
    let (a, b, c) = (replicas[0].port(), replicas[1].port(), replicas[2].port());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for round in 0..5 {
            let y = Identity::random();
            let rid = request_pairing(a, &y).await;
            let mut op_b = operator(b).await;
            let mut op_c = operator(c).await;
            until_listed(&mut op_b, &rid).await;
            until_listed(&mut op_c, &rid).await;
            let params = json!({"requestId": rid});
            let (rb, rc) = tokio::join!(
                call(&mut op_b, "ab", "device.pair.approve", params.clone()),
                call(&mut op_c, "ac", "device.pair.approve", params.clone()),
            );
            let wins = [&rb, &rc].iter().filter(|r| r["ok"] == true).count();
            assert_eq!(
                wins, 1,
                "round {round}: exactly one approval wins: {rb} {rc}"
            );
            let loser = if rb["ok"] == true { &rc } else { &rb };
            let message = loser["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("already resolved") || message == "unknown requestId",
                "round {round}: {loser}"
            );
            // One approval in the audit chain, one token for the device.
            let token = paired_token(a, &y).await;
            let (_, res) = with_device_token(c, &y, &token).await;
            assert_eq!(res["ok"], true, "{res}");
            let audit = call(
                &mut op_b,
                "au",
                "audit.list",
                json!({"action": "pairing.approved", "deviceId": y.id}),
            )
            .await;
            assert_eq!(
                audit["payload"]["entries"].as_array().map(Vec::len),
                Some(1),
                "round {round}: {audit}"
            );
        }
    });
    let store = open_store(&url, password_file.as_deref());
    let report = store.check_invariants().unwrap();
    assert!(report.ok(), "{:?}", report.violations);
    assert!(report.audit.ok);
}

#[test]
fn a_replica_killed_mid_approvals_loses_nothing_acknowledged() {
    let (mut replicas, url, password_file) = cluster(3);
    let (a, b, c) = (replicas[0].port(), replicas[1].port(), replicas[2].port());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let b_pid = replicas[1].run.as_ref().unwrap().child.id();
    let acknowledged = rt.block_on(async {
        let devices: Vec<Identity> = (0..12).map(|_| Identity::random()).collect();
        let mut rids = Vec::new();
        for d in &devices {
            rids.push(request_pairing(a, d).await);
        }
        let mut op_b = operator(b).await;
        until_listed(&mut op_b, rids.last().unwrap()).await;
        // Approvals go to B one after another, each without waiting for the
        // previous answer; B is killed after the sixth acknowledgement.
        let mut acknowledged = Vec::new();
        for (i, rid) in rids.iter().enumerate() {
            op_b.send(Message::Text(
                json!({"type": "req", "id": format!("ap{i}"), "method": "device.pair.approve",
                    "params": {"requestId": rid}})
                .to_string()
                .into(),
            ))
            .await
            .unwrap();
        }
        while let Some(frame) = read_json(&mut op_b).await {
            if frame["type"] == "res" && frame["ok"] == true {
                let i: usize = frame["id"].as_str().unwrap()[2..].parse().unwrap();
                acknowledged.push(i);
                if acknowledged.len() == 6 {
                    unsafe_kill(b_pid, "KILL");
                }
            }
        }
        assert!(acknowledged.len() >= 6, "{acknowledged:?}");
        // Every acknowledged approval holds on the surviving replicas.
        let mut op_c = operator(c).await;
        for &i in &acknowledged {
            let token = paired_token(c, &devices[i]).await;
            let (_, res) = with_device_token(a, &devices[i], &token).await;
            assert_eq!(res["ok"], true, "approval {i} lost: {res}");
        }
        let list = call(&mut op_c, "l", "device.pair.list", json!({})).await;
        assert_eq!(list["ok"], true, "{list}");
        acknowledged
    });
    let _ = replicas[1].run.take();
    let store = open_store(&url, password_file.as_deref());
    let verification = store.verify_audit().unwrap();
    assert!(verification.ok, "{verification:?}");
    let report = store.check_invariants().unwrap();
    assert!(report.ok(), "{:?}", report.violations);
    assert!(
        store.devices().len() >= acknowledged.len(),
        "{} devices stored, {} acknowledged",
        store.devices().len(),
        acknowledged.len()
    );
}

/// A TCP relay the test can cut: every connection through it is closed and
/// new ones are refused while it is cut.
struct Relay {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl Relay {
    async fn start(to: SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (c, g) = (cut.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let (c, g) = (c.clone(), g.clone());
                let born = g.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(to).await else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    let watch = async {
                        while !c.load(Ordering::SeqCst) && g.load(Ordering::SeqCst) == born {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! { _ = copy => {}, _ = watch => {} }
                });
            }
        });
        Relay {
            addr,
            cut,
            generation,
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

fn pg_script() -> PathBuf {
    std::env::var_os("CLAWGATE_TEST_PG_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!("this test needs scripts/pg.sh: run it through scripts/test.sh, or set CLAWGATE_TEST_PG_SCRIPT")
        })
}

fn pg(args: &[&str]) -> String {
    let out = std::process::Command::new("bash")
        .arg(pg_script())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ready(port: u16) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn postgres_outages_fail_closed_and_catch_up_before_accepting_tokens() {
    // Its own cluster: this test stops and starts PostgreSQL.
    let pg_dir = tempfile::Builder::new()
        .prefix("clawgate-pg-")
        .tempdir_in("/tmp")
        .unwrap();
    let data = pg_dir.path().join("c");
    let port = free_port();
    let admin = pg(&["start", data.to_str().unwrap(), &port.to_string()]);
    struct Destroy(PathBuf, PathBuf);
    impl Drop for Destroy {
        fn drop(&mut self) {
            let _ = std::process::Command::new("bash")
                .arg(&self.0)
                .args(["destroy", self.1.to_str().unwrap()])
                .output();
        }
    }
    let _destroy = Destroy(pg_script(), data.clone());
    let password_file = data.join("password");
    let url = clawgate_store::testing::create_database(&admin, Some(&password_file), "outage");
    let db = url.rsplit('/').next().unwrap().to_string();

    let rt = tokio::runtime::Runtime::new().unwrap();
    // Replica A reaches PostgreSQL through a relay the test can cut; B
    // directly.
    let relay = rt.block_on(Relay::start(SocketAddr::from(([127, 0, 0, 1], port))));
    let via_relay = format!("postgres://clawgate@{}/{db}", relay.addr);
    let replica_a = start_replica(&via_relay, Some(&password_file));
    let replica_b = start_replica(&url, Some(&password_file));
    let (a, b) = (replica_a.port(), replica_b.port());

    rt.block_on(async {
        let x = Identity::random();
        let rid = request_pairing(a, &x).await;
        let mut op_b = operator(b).await;
        until_listed(&mut op_b, &rid).await;
        let res = call(
            &mut op_b,
            "ap",
            "device.pair.approve",
            json!({"requestId": rid}),
        )
        .await;
        assert_eq!(res["ok"], true, "{res}");
        let token = paired_token(a, &x).await;
        let (_, res) = with_device_token(a, &x, &token).await;
        assert_eq!(res["ok"], true, "{res}");

        // A is cut off: it fails closed within a couple of seconds.
        relay.cut();
        eventually(Duration::from_secs(5), "A drained", || async {
            (ready(a) == 503).then_some(())
        })
        .await;
        let (_, res) = with_device_token(a, &x, &token).await;
        assert_eq!(res["ok"], false, "{res}");
        assert_eq!(res["error"]["code"], "UNAVAILABLE", "{res}");
        assert!(
            res["error"]["message"]
                .as_str()
                .unwrap()
                .contains("device registry unreachable"),
            "{res}"
        );
        assert!(!res.to_string().contains("password"), "{res}");
        // The loopback operator with the shared secret still gets status.
        let mut op_a = operator(a).await;
        let status = call(&mut op_a, "st", "status", json!({})).await;
        assert_eq!(status["ok"], true, "{status}");
        assert_eq!(
            status["payload"]["gateway"]["registry"]["reachable"], false,
            "{status}"
        );
        let res = call(
            &mut op_a,
            "ap2",
            "device.pair.approve",
            json!({"requestId": "x"}),
        )
        .await;
        assert_eq!(res["error"]["code"], "UNAVAILABLE", "{res}");

        // Meanwhile B revokes the device's token.
        let res = call(
            &mut op_b,
            "rv",
            "device.token.revoke",
            json!({"deviceId": x.id, "role": "operator"}),
        )
        .await;
        assert_eq!(res["ok"], true, "{res}");

        // A comes back: from the moment it is reachable it never accepts
        // the revoked token (it catches up before it takes device tokens).
        relay.heal();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut saw_ready = false;
        while Instant::now() < deadline {
            let (_, res) = with_device_token(a, &x, &token).await;
            assert_eq!(res["ok"], false, "revoked token accepted by A: {res}");
            if res["error"]["code"] != "UNAVAILABLE" {
                saw_ready = ready(a) == 200;
                if saw_ready {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(saw_ready, "A did not come back");

        // PostgreSQL itself stops: both replicas fail closed; it starts
        // again: both accept device tokens again.
        let fresh = Identity::random();
        let rid = request_pairing(b, &fresh).await;
        until_listed(&mut op_b, &rid).await;
        let res = call(
            &mut op_b,
            "ap3",
            "device.pair.approve",
            json!({"requestId": rid}),
        )
        .await;
        assert_eq!(res["ok"], true, "{res}");
        let token = paired_token(b, &fresh).await;
        pg(&["stop", data.to_str().unwrap()]);
        for port in [a, b] {
            eventually(
                Duration::from_secs(5),
                "drained while PostgreSQL is down",
                || async { (ready(port) == 503).then_some(()) },
            )
            .await;
            let (_, res) = with_device_token(port, &fresh, &token).await;
            assert_eq!(res["error"]["code"], "UNAVAILABLE", "{res}");
        }
        pg(&["restart", data.to_str().unwrap()]);
        for port in [a, b] {
            eventually(
                Duration::from_secs(10),
                "back after PostgreSQL restarts",
                || async {
                    let (_, res) = with_device_token(port, &fresh, &token).await;
                    (res["ok"] == true).then_some(())
                },
            )
            .await;
            assert_eq!(ready(port), 200);
        }
    });
    drop(replica_a);
    drop(replica_b);
}

#[test]
fn replicas_share_events_presence_and_lockouts() {
    let (url, password_file) = clawgate_store::testing::fresh_database("shared_view");
    // Lockouts apply to loopback peers here, after three failures.
    let limits = json!({"exemptLoopback": false, "maxAttempts": 3, "lockoutMs": 60_000});
    let replica_a = start_replica_with(&url, password_file.as_deref(), limits.clone());
    let mut replica_b = start_replica_with(&url, password_file.as_deref(), limits);
    let (a, b) = (replica_a.port(), replica_b.port());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // A request made on B reaches A's operators as an event, and so
        // does its resolution.
        let mut op_a = operator(a).await;
        let z = Identity::random();
        let rid = request_pairing(b, &z).await;
        let event = next_event(&mut op_a, "device.pair.requested", Duration::from_secs(2))
            .await
            .expect("device.pair.requested from the other replica");
        assert_eq!(event["requestId"], rid.as_str(), "{event}");
        let mut op_b = operator(b).await;
        let res = call(
            &mut op_b,
            "ap",
            "device.pair.approve",
            json!({"requestId": rid}),
        )
        .await;
        assert_eq!(res["ok"], true, "{res}");
        let event = next_event(&mut op_a, "device.pair.resolved", Duration::from_secs(2))
            .await
            .expect("device.pair.resolved from the other replica");
        assert_eq!(event["requestId"], rid.as_str(), "{event}");
        assert_eq!(event["decision"], "approved", "{event}");

        // Presence: A's status and system-presence count B's sessions.
        let token = paired_token(b, &z).await;
        let (_held, res) = with_device_token(b, &z, &token).await;
        assert_eq!(res["ok"], true, "{res}");
        status_until(
            &mut op_a,
            Duration::from_secs(6),
            "B's sessions in A's status",
            |reg| {
                reg["replicas"].as_array().map(Vec::len) == Some(2)
                    && reg["sessionsAllReplicas"].as_u64().unwrap_or(0) >= 3
            },
        )
        .await;
        // The CLI's status names both replicas.
        let out = bin()
            .args([
                "status",
                "--url",
                &format!("ws://127.0.0.1:{a}"),
                "--token",
                TOKEN,
            ])
            .arg("--state-dir")
            .arg(replica_a._dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Registry     PostgreSQL") && text.contains("2 live"),
            "{text}"
        );
        let presence = call(&mut op_a, "p", "system-presence", json!({})).await;
        // (CLI sessions are not listed in presence, as in the reference.)
        let gateways: std::collections::BTreeSet<&str> = presence["payload"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["mode"] == "gateway")
            .filter_map(|e| e["instanceId"].as_str())
            .collect();
        assert_eq!(gateways.len(), 2, "both replicas' entries: {presence}");

        // Lockouts: three wrong tokens on A lock this peer out on B too,
        // within a second or two, even with the right token.
        for _ in 0..3 {
            let (_, res) = connect_with(
                a,
                json!({"token": "wrong-token-000"}),
                &["operator.read"],
                None,
            )
            .await;
            assert_eq!(res["ok"], false, "{res}");
        }
        eventually(Duration::from_secs(2), "lockout shared with B", || async {
            let (_, res) = connect_with(b, json!({"token": TOKEN}), &["operator.read"], None).await;
            (res["ok"] == false && res["error"]["details"]["code"] == "AUTH_RATE_LIMITED")
                .then_some(())
        })
        .await;

        // B stops without a word: after three missed refreshes it is gone
        // from A's view.
        let b_pid = replica_b.run.as_ref().unwrap().child.id();
        unsafe_kill(b_pid, "KILL");
        let _ = replica_b.run.take();
        status_until(
            &mut op_a,
            Duration::from_secs(10),
            "B dropped from A's status",
            |reg| reg["replicas"].as_array().map(Vec::len) == Some(1),
        )
        .await;
    });
}
