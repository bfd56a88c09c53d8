//! A tiny run of every `clawgate-bench` subcommand against a real clawgate
//! gateway served in this process. Asserts on counts and fields, never on
//! timing. `--server-pid` is this test process (where the gateway runs).

use std::process::{Command, Output};

use clawgate_gateway::config::{AuthConfig, AuthMode, GatewayConfig};
use clawgate_gateway::{Gateway, GatewayHandle, RuntimeOptions};
use clawgate_protocol::Secret;
use serde_json::Value;

const TOKEN: &str = "bench-smoke-token-1c9f";
const CHILD_PORT_ENV: &str = "CLAWGATE_BENCH_SMOKE_CHILD_PORT";

fn config(dir: &std::path::Path, port: u16) -> GatewayConfig {
    let mut cfg = GatewayConfig::loopback(
        dir,
        AuthConfig::new(AuthMode::Token, Some(Secret::new(TOKEN)), None),
    );
    cfg.port = port;
    cfg
}

struct TestGateway {
    handle: GatewayHandle,
    _dir: tempfile::TempDir,
}

impl TestGateway {
    async fn start() -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        let handle = Gateway::bind(config(dir.path(), 0), RuntimeOptions::default())
            .await
            .expect("bind")
            .spawn()
            .expect("spawn");
        TestGateway { handle, _dir: dir }
    }

    fn url(&self) -> String {
        format!("ws://{}", self.handle.local_addr())
    }

    async fn stop(self) {
        self.handle.stop().await.unwrap();
    }
}

struct Run {
    code: i32,
    json: Value,
    stderr: String,
}

/// Runs the bench binary off the async workers (the gateway keeps serving).
async fn bench(args: Vec<String>, env: Vec<(&'static str, String)>) -> Run {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_clawgate-bench"));
        cmd.args(&args)
            .env_remove("CLAWGATE_BENCH_TOKEN")
            .env_remove("CLAWGATE_BENCH_PASSWORD");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let Output {
            status,
            stdout,
            stderr,
        } = cmd.output().expect("run clawgate-bench");
        let stdout = String::from_utf8_lossy(&stdout).to_string();
        let stderr = String::from_utf8_lossy(&stderr).to_string();
        let lines: Vec<&str> = stdout.lines().collect();
        assert!(lines.len() <= 1, "one JSON line at most: {stdout}");
        let json = lines
            .first()
            .map(|l| serde_json::from_str(l).expect("stdout is JSON"))
            .unwrap_or(Value::Null);
        Run {
            code: status.code().unwrap_or(-1),
            json,
            stderr,
        }
    })
    .await
    .unwrap()
}

/// Bench arguments with this process (the in-process gateway) as the server.
fn args(url: &str, rest: &[&str]) -> Vec<String> {
    args_for(url, std::process::id(), rest)
}

/// Bench arguments with `server_pid` as the server whose CPU is sampled.
fn args_for(url: &str, server_pid: u32, rest: &[&str]) -> Vec<String> {
    let pid = server_pid.to_string();
    let mut v: Vec<String> = [
        "--url",
        url,
        "--token",
        TOKEN,
        "--server-pid",
        &pid,
        "--label",
        "smoke",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn assert_common(j: &Value, bench: &str) {
    assert_eq!(j["bench"], bench, "{j}");
    assert_eq!(j["label"], "smoke", "{j}");
    assert!(j["client_cpu_secs"].as_f64().is_some(), "{j}");
    assert!(j["server_cpu_secs"].as_f64().is_some(), "{j}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_token_and_device() {
    let gw = TestGateway::start().await;
    let url = gw.url();

    let r = bench(args(&url, &["handshake", "-n", "50", "-c", "4"]), vec![]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = &r.json;
    assert_common(j, "handshake");
    assert_eq!(j["n"], 50);
    assert_eq!(j["ok"], 50, "{j}");
    assert_eq!(j["errors"], serde_json::json!({}), "{j}");
    assert!(j["device"].is_null());
    for f in [
        "rate",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "max_ms",
        "client_cpu_pct",
    ] {
        assert!(j[f].as_f64().is_some(), "{f}: {j}");
    }
    assert!(j["server_rss_kb_before"].as_u64().unwrap() > 0, "{j}");
    assert!(j["server_cpu_us_per_op"].as_f64().is_some(), "{j}");
    assert!(
        r.stderr.contains("handshake [smoke]: 50/50 ok"),
        "{}",
        r.stderr
    );

    // Source addresses round-robin.
    let r = bench(
        args(
            &url,
            &[
                "handshake",
                "-n",
                "20",
                "-c",
                "4",
                "--src-ips",
                "127.0.0.21-23",
            ],
        ),
        vec![],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json["ok"], 20, "{}", r.json);
    assert_eq!(r.json["src_ips"], 3);

    // Signed devices: warm-up pairs the pool, then paired-device handshakes.
    let r = bench(
        args(
            &url,
            &[
                "handshake",
                "--device",
                "v3",
                "--device-pool",
                "4",
                "-n",
                "40",
                "-c",
                "4",
            ],
        ),
        vec![],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = &r.json;
    assert_eq!(j["device"], "v3", "{j}");
    assert_eq!(j["device_pool"], 4);
    assert_eq!(j["ok"], 40, "{j}");
    assert_eq!(j["errors"], serde_json::json!({}), "{j}");
    assert_eq!(j["warmup"]["ok"], 4, "{j}");
    assert_eq!(j["warmup"]["errors"], serde_json::json!({}), "{j}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_keeps_every_connection() {
    let gw = TestGateway::start().await;
    let r = bench(
        args(&gw.url(), &["hold", "-k", "20", "--secs", "2"]),
        vec![],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = &r.json;
    assert_common(j, "hold");
    assert_eq!(j["k"], 20);
    assert_eq!(j["connected"], 20, "{j}");
    assert_eq!(j["survived"], 20, "{j}");
    assert_eq!(j["dropped"], 0, "{j}");
    for f in [
        "server_rss_kb_before",
        "server_rss_kb_held",
        "server_rss_kb_end",
    ] {
        assert!(j[f].as_u64().is_some(), "{f}: {j}");
    }
    assert!(j["rss_per_conn_bytes"].as_f64().is_some(), "{j}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_answers_every_request() {
    let gw = TestGateway::start().await;
    let r = bench(args(&gw.url(), &["rpc", "-c", "2", "-r", "200"]), vec![]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = &r.json;
    assert_common(j, "rpc");
    assert_eq!(j["method"], "health");
    assert_eq!(j["connected"], 2, "{j}");
    assert_eq!(j["responses"], 200, "{j}");
    assert_eq!(j["ok"], 200, "{j}");
    assert_eq!(j["errors"], serde_json::json!({}), "{j}");
    assert!(j["p99_ms"].as_f64().is_some(), "{j}");

    // A method this client may not call: ten responses, ten errors by code.
    let r = bench(
        args(
            &gw.url(),
            &["rpc", "-c", "1", "-r", "10", "--method", "no.such.method"],
        ),
        vec![],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json["responses"], 10, "{}", r.json);
    assert_eq!(r.json["ok"], 0, "{}", r.json);
    let errors = r.json["errors"].as_object().unwrap();
    assert_eq!(
        errors.values().filter_map(Value::as_u64).sum::<u64>(),
        10,
        "{}",
        r.json
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn badauth_is_rejected() {
    let gw = TestGateway::start().await;
    // One attempt per source address keeps the loopback delays short.
    let r = bench(
        args(
            &gw.url(),
            &["badauth", "-m", "5", "--src-ips", "127.0.0.31-35"],
        ),
        vec![],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = &r.json;
    assert_common(j, "badauth");
    assert_eq!(j["done"], 5, "{j}");
    assert_eq!(j["accepted"], 0, "{j}");
    assert_eq!(j["outcomes"]["AUTH_TOKEN_MISMATCH"], 5, "{j}");
    let seq = j["sequence"].as_array().unwrap();
    assert_eq!(seq.len(), 5, "{j}");
    assert_eq!(seq[0]["runs"][0][0], "AUTH_TOKEN_MISMATCH", "{j}");
    assert!(j["server_cpu_us_per_op"].as_f64().is_some(), "{j}");
    assert!(!r.stderr.contains("WARNING"), "{}", r.stderr);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_exit_codes() {
    // Not loopback, not ws://: usage errors (exit 2), nothing on stdout.
    for url in [
        "ws://10.1.2.3:18789",
        "ws://example.com:18789",
        "wss://127.0.0.1:18789",
    ] {
        let r = bench(args(url, &["handshake", "-n", "1", "-c", "1"]), vec![]).await;
        assert_eq!(r.code, 2, "{url}: {}", r.stderr);
        assert!(r.json.is_null());
        assert!(
            r.stderr.contains("loopback") || r.stderr.contains("ws://"),
            "{}",
            r.stderr
        );
    }
    let r = bench(
        args(
            "ws://127.0.0.1:1",
            &["handshake", "-n", "1", "-c", "1", "--src-ips", "10.0.0.1-2"],
        ),
        vec![],
    )
    .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = bench(
        [
            "--server-pid",
            "999999999",
            "handshake",
            "-n",
            "1",
            "-c",
            "1",
        ]
        .map(String::from)
        .to_vec(),
        vec![],
    )
    .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--server-pid"), "{}", r.stderr);

    // Nothing listening: the run completes, counts io errors, exits 1.
    let url = format!("ws://127.0.0.1:{}", free_port());
    let r = bench(args(&url, &["handshake", "-n", "3", "-c", "1"]), vec![]).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.json["ok"], 0);
    assert_eq!(r.json["errors"]["io"], 3, "{}", r.json);

    // Token from the environment.
    let gw = TestGateway::start().await;
    let r = bench(
        vec![
            "--url".into(),
            gw.url(),
            "handshake".into(),
            "-n".into(),
            "2".into(),
            "-c".into(),
            "1".into(),
        ],
        vec![("CLAWGATE_BENCH_TOKEN", TOKEN.to_string())],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json["ok"], 2, "{}", r.json);
    assert!(r.json.get("server_cpu_secs").is_none());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_times_a_gateway_process() {
    // The child is this test binary running `child_gateway` below.
    let port = free_port();
    let url = format!("ws://127.0.0.1:{port}");
    let exe = std::env::current_exe().unwrap();
    let r = bench(
        vec![
            "--url".into(),
            url.clone(),
            "--token".into(),
            TOKEN.into(),
            "--label".into(),
            "smoke".into(),
            "startup".into(),
            "--ready-timeout-secs".into(),
            "20".into(),
            "--".into(),
            exe.to_string_lossy().to_string(),
            "child_gateway".into(),
            "--exact".into(),
            "--ignored".into(),
        ],
        vec![(CHILD_PORT_ENV, port.to_string())],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = &r.json;
    assert_eq!(j["bench"], "startup", "{j}");
    assert!(j["ready_ms"].as_f64().unwrap() > 0.0, "{j}");
    assert!(j["server_rss_kb"].as_u64().unwrap() > 0, "{j}");
    assert!(j["server_rss_kb_tree"].as_u64().unwrap() > 0, "{j}");
    assert!(j["attempts"].as_u64().unwrap() >= 1, "{j}");
    assert!(j["stop"].as_str().is_some(), "{j}");

    // A command that never serves: a clear timeout, exit 1.
    let r = bench(
        vec![
            "--url".into(),
            format!("ws://127.0.0.1:{}", free_port()),
            "--token".into(),
            TOKEN.into(),
            "startup".into(),
            "--ready-timeout-secs".into(),
            "0.5".into(),
            "--".into(),
            "sleep".into(),
            "30".into(),
        ],
        vec![],
    )
    .await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("not ready within 0.5 s"), "{}", r.stderr);
    assert!(r.json["ready_ms"].is_null(), "{}", r.json);
    assert!(
        r.json["error"].as_str().unwrap().contains("not ready"),
        "{}",
        r.json
    );

    // A command that exits at once.
    let r = bench(
        vec![
            "--url".into(),
            format!("ws://127.0.0.1:{}", free_port()),
            "startup".into(),
            "--".into(),
            "sh".into(),
            "-c".into(),
            "echo boom >&2; exit 3".into(),
        ],
        vec![],
    )
    .await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("exit 3"), "{}", r.stderr);
    assert!(r.stderr.contains("boom"), "{}", r.stderr);
}

/// Not a test: the gateway process `startup_times_a_gateway_process` spawns
/// (serves until killed; returns at once when run by hand).
#[test]
#[ignore = "helper process for the startup smoke"]
fn child_gateway() {
    let Ok(port) = std::env::var(CHILD_PORT_ENV) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let _handle = Gateway::bind(
            config(dir.path(), port.parse().unwrap()),
            RuntimeOptions::default(),
        )
        .await
        .expect("bind")
        .spawn()
        .expect("spawn");
        std::future::pending::<()>().await;
    });
}

/// `clawgate-bench floor`: the bench's own clients complete handshakes
/// against it (token, signed device) and its refusals look like a
/// gateway's, with the loopback delay; its CPU is sampled like a server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_serves_handshakes_and_refusals() {
    use std::io::{BufRead, BufReader};
    let mut floor = Command::new(env!("CARGO_BIN_EXE_clawgate-bench"))
        .args([
            "--token",
            TOKEN,
            "floor",
            "--port",
            "0",
            "--verify-ed25519",
            "--secs",
            "60",
        ])
        .env_remove("CLAWGATE_BENCH_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the floor server");
    let mut line = String::new();
    BufReader::new(floor.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: std::net::SocketAddr = line.trim().parse().expect("the floor prints its address");
    assert!(addr.ip().is_loopback(), "{addr}");
    let url = format!("ws://{addr}");
    let with_pid = |rest: &[&str]| args_for(&url, floor.id(), rest);

    let r = bench(with_pid(&["handshake", "-n", "40", "-c", "4"]), vec![]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_common(&r.json, "handshake");
    assert_eq!(r.json["ok"], 40, "{}", r.json);
    assert!(
        r.json["server_cpu_us_per_op"].as_f64().unwrap() > 0.0,
        "{}",
        r.json
    );

    let r = bench(
        with_pid(&[
            "handshake",
            "-n",
            "20",
            "-c",
            "4",
            "--device",
            "v3",
            "--device-pool",
            "4",
        ]),
        vec![],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json["ok"], 20, "{}", r.json);

    let r = bench(
        with_pid(&[
            "badauth",
            "-m",
            "4",
            "--src-ips",
            "127.0.0.41-42",
            "--idle-secs",
            "0",
        ]),
        vec![],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json["done"], 4, "{}", r.json);
    assert_eq!(r.json["outcomes"]["AUTH_TOKEN_MISMATCH"], 4, "{}", r.json);
    // Two per address: 250 ms, then 500 ms.
    assert!(r.json["max_ms"].as_f64().unwrap() >= 450.0, "{}", r.json);
    let _ = floor.kill();
    let _ = floor.wait();
}
