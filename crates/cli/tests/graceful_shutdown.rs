//! Graceful shutdown and restart with the real binary: SIGTERM while
//! clients are connected sends `shutdown` to every session, closes them with
//! 1012, refuses connects that arrive meanwhile, commits what was
//! acknowledged and flushes the batched audit rows, exits 0; restarted on
//! the same port and state directory, clients built on the client library
//! reconnect by themselves and carry on.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use clawgate_client::{Client, ClientEvent, ConnectOptions};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "graceful-shutdown-token-0123456789";
const LIBRARY_CLIENTS: usize = 3;
const RAW_CLIENTS: usize = 3;
const LABEL: &str = "renamed just before SIGTERM";

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// How one connect attempt ended.
#[derive(Debug)]
enum Attempt {
    /// hello-ok.
    Connected(Box<Ws>),
    /// The connect was answered with an error response.
    Refused(Value),
    /// The upgrade was answered with this HTTP status.
    Http(u16),
    /// TCP connect failed, or the socket closed (with this code) before an answer.
    Io(String),
    Closed(Option<u16>),
}

async fn attempt(port: u16, src: Ipv4Addr, token: &str) -> Attempt {
    let Ok(sock) = TcpSocket::new_v4() else {
        return Attempt::Io("socket".into());
    };
    sock.bind(SocketAddr::new(IpAddr::V4(src), 0)).unwrap();
    let tcp = match sock.connect(SocketAddr::from(([127, 0, 0, 1], port))).await {
        Ok(t) => t,
        Err(e) => return Attempt::Io(e.to_string()),
    };
    let mut ws = match tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/"), tcp).await
    {
        Ok((ws, _)) => ws,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            return Attempt::Http(r.status().as_u16());
        }
        Err(e) => return Attempt::Io(e.to_string()),
    };
    let params = json!({
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "cli", "version": "1", "platform": "linux", "mode": "cli"},
        "role": "operator", "scopes": ["operator.read"], "auth": {"token": token},
    });
    let req = json!({"type": "req", "id": "c", "method": "connect", "params": params});
    if ws.send(Message::text(req.to_string())).await.is_err() {
        return Attempt::Closed(None);
    }
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "res" && v["id"] == "c" {
                    return if v["ok"] == true {
                        Attempt::Connected(Box::new(ws))
                    } else {
                        Attempt::Refused(v["error"].clone())
                    };
                }
            }
            Some(Ok(Message::Close(f))) => return Attempt::Closed(f.map(|f| f.code.into())),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Attempt::Io(e.to_string()),
            None => return Attempt::Closed(None),
        }
    }
}

/// Reads a raw session until it ends: every text frame, then the close.
async fn read_to_close(mut ws: Ws) -> (Vec<Value>, Option<(u16, String)>) {
    let mut frames = Vec::new();
    while let Some(Ok(m)) = ws.next().await {
        match m {
            Message::Text(t) => frames.push(serde_json::from_str(t.as_str()).unwrap()),
            Message::Close(f) => {
                let close = f.map(|f| (u16::from(f.code), f.reason.to_string()));
                // Let tungstenite reply to the close.
                while let Some(Ok(_)) = ws.next().await {}
                return (frames, close);
            }
            _ => {}
        }
    }
    (frames, None)
}

fn library_options(port: u16, dir: &Path, i: usize) -> ConnectOptions {
    let mut opts = ConnectOptions::new(format!("ws://127.0.0.1:{port}"))
        .token(TOKEN)
        .scopes(["operator.admin"])
        .state_dir(dir.join(format!("client-{i}")))
        .unwrap();
    opts.client.display_name = Some(format!("library client {i}"));
    // Quick reconnects for the test (the default starts at 1 s).
    opts.initial_backoff = Duration::from_millis(100);
    opts.max_backoff = Duration::from_millis(500);
    opts
}

/// Events up to (and including) the first one `stop` accepts, or all that
/// came within `within`.
async fn events_until(
    rx: &mut mpsc::Receiver<ClientEvent>,
    within: Duration,
    stop: impl Fn(&ClientEvent) -> bool,
) -> Vec<ClientEvent> {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        let done = stop(&e);
        seen.push(e);
        if done {
            break;
        }
    }
    seen
}

fn wait_exit(gw: &mut Running, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = gw.child.try_wait().unwrap() {
            return Some(status.code().unwrap_or(-1));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn sigterm_sends_shutdown_closes_1012_commits_and_library_clients_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut gw = start(&state, &["--token", TOKEN], &[]);
    let port = gw.port;
    let pid = gw.child.id();
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Clients: some on the client library (each its own device identity,
    // paired silently on loopback), some raw sessions.
    let (clients, mut events) = rt.block_on(async {
        let mut clients = Vec::new();
        let mut events = Vec::new();
        for i in 0..LIBRARY_CLIENTS {
            let c = Client::connect(library_options(port, dir.path(), i))
                .await
                .unwrap();
            events.push(c.events().unwrap());
            clients.push(c);
        }
        (clients, events)
    });
    let raw: Vec<Ws> = rt.block_on(async {
        let mut raw = Vec::new();
        for _ in 0..RAW_CLIENTS {
            match attempt(port, Ipv4Addr::LOCALHOST, TOKEN).await {
                Attempt::Connected(ws) => raw.push(*ws),
                other => panic!("raw connect failed: {other:?}"),
            }
        }
        raw
    });
    let device_of = |i: usize| -> String {
        let hello = clients[i].hello();
        let id = hello["auth"]["deviceId"].as_str().map(str::to_owned);
        id.unwrap_or_else(|| {
            let v: Value = serde_json::from_str(
                &std::fs::read_to_string(dir.path().join(format!("client-{i}/identity.json")))
                    .unwrap(),
            )
            .unwrap();
            v["deviceId"].as_str().unwrap().to_string()
        })
    };
    let renamed = device_of(1);

    // Refused connects whose audit rows are batched (written once a
    // second), from addresses of their own so the limiter adds no delay.
    let refusals = rt.block_on(async {
        let a = attempt(port, Ipv4Addr::new(127, 0, 0, 21), "wrong-token-aaaaaaaa");
        let b = attempt(port, Ipv4Addr::new(127, 0, 0, 22), "wrong-token-bbbbbbbb");
        let (a, b) = tokio::join!(a, b);
        vec![a, b]
    });
    for r in &refusals {
        assert!(
            matches!(r, Attempt::Refused(e) if e["details"]["code"] == "AUTH_TOKEN_MISMATCH"),
            "{r:?}"
        );
    }
    // An acknowledged write, then SIGTERM at once.
    let ack = rt
        .block_on(clients[0].request(
            "device.pair.rename",
            json!({"deviceId": renamed, "label": LABEL}),
        ))
        .unwrap();
    assert_eq!(ack["label"], LABEL);
    unsafe_kill(pid, "TERM");
    let signalled = Instant::now();

    // Every raw session gets `shutdown`, then a 1012 close; connects tried
    // once the sessions have the event are refused, never let in.
    let (sessions, late) = rt.block_on(async {
        let readers: Vec<_> = raw
            .into_iter()
            .map(|ws| tokio::spawn(read_to_close(ws)))
            .collect();
        let mut sessions = Vec::new();
        for r in readers {
            sessions.push(
                tokio::time::timeout(Duration::from_secs(10), r)
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        let mut late = Vec::new();
        for _ in 0..20 {
            match tokio::time::timeout(
                Duration::from_secs(5),
                attempt(port, Ipv4Addr::new(127, 0, 0, 31), TOKEN),
            )
            .await
            {
                Ok(a) => {
                    let refused_at_tcp = matches!(&a, Attempt::Io(_));
                    late.push(a);
                    if refused_at_tcp {
                        break; // the listener is gone
                    }
                }
                Err(_) => panic!("a connect during shutdown hung"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (sessions, late)
    });
    for (frames, close) in &sessions {
        let i = frames
            .iter()
            .position(|f| f["type"] == "event" && f["event"] == "shutdown")
            .unwrap_or_else(|| panic!("no shutdown event: {frames:?}"));
        let payload = &frames[i]["payload"];
        assert!(
            payload["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{payload}"
        );
        assert!(
            payload["restartExpectedMs"].is_null() || payload["restartExpectedMs"].is_u64(),
            "{payload}"
        );
        assert!(frames[i]["seq"].is_u64());
        assert_eq!(i, frames.len() - 1, "nothing after shutdown: {frames:?}");
        assert_eq!(
            close.as_ref().map(|(c, r)| (*c, r.as_str())),
            Some((1012, "service restart"))
        );
    }
    assert!(!late.is_empty());
    for a in &late {
        match a {
            Attempt::Http(503) | Attempt::Closed(Some(1012)) => {}
            Attempt::Io(e) => assert!(!e.is_empty()),
            Attempt::Refused(e) => assert_eq!(e["code"], "UNAVAILABLE", "{e}"),
            other => panic!("a connect during shutdown was not refused cleanly: {other:?}"),
        }
    }

    // The process exits 0 within the budget (3 s drain + 2 s HTTP + slack).
    let code = wait_exit(&mut gw, Duration::from_secs(10));
    assert_eq!(code, Some(0), "exit after SIGTERM");
    let stopped_in = signalled.elapsed();
    assert!(stopped_in < Duration::from_secs(10));
    let log = gw.stderr.lock().unwrap().clone();
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(!log.contains(TOKEN), "token in the log");

    // The library clients saw the event and the 1012, and are retrying.
    rt.block_on(async {
        for rx in events.iter_mut() {
            let seen = events_until(rx, Duration::from_secs(10), |e| {
                matches!(e, ClientEvent::Reconnecting { .. })
            })
            .await;
            assert!(
                seen.iter()
                    .any(|e| matches!(e, ClientEvent::Event { event, .. } if event == "shutdown")),
                "{seen:?}"
            );
            assert!(
                seen.iter()
                    .any(|e| matches!(e, ClientEvent::Disconnected { code: 1012, .. })),
                "{seen:?}"
            );
            assert!(matches!(
                seen.last(),
                Some(ClientEvent::Reconnecting { .. })
            ));
        }
        // Nothing to talk to meanwhile.
        let err = clients[2]
            .request_with_timeout("health", json!({}), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                clawgate_client::ClientError::NotConnected
                    | clawgate_client::ClientError::Timeout(_)
            ),
            "{err:?}"
        );
    });

    // Restart on the same port and state directory.
    let port_arg = port.to_string();
    let gw2 = start_with(&state, &["--port", &port_arg, "--token", TOKEN], &[]);
    assert_eq!(gw2.port, port);

    rt.block_on(async {
        // Each library client reconnects by itself.
        for (i, rx) in events.iter_mut().enumerate() {
            let seen = events_until(rx, Duration::from_secs(20), |e| {
                matches!(e, ClientEvent::Connected { .. })
            })
            .await;
            assert!(
                matches!(seen.last(), Some(ClientEvent::Connected { .. })),
                "client {i} did not reconnect: {seen:?}"
            );
            assert!(clients[i].stopped().is_none());
            let health = clients[i].request("health", json!({})).await.unwrap();
            assert_eq!(health["ok"], true, "{health}");
        }
        // The acknowledged write is there.
        let list = clients[0]
            .request("device.pair.list", json!({}))
            .await
            .unwrap();
        let dev = list["paired"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["deviceId"] == renamed.as_str())
            .unwrap_or_else(|| panic!("renamed device missing: {list}"));
        assert_eq!(dev["operatorLabel"], LABEL, "{dev}");
        // So are the batched audit rows of the refused connects (queued
        // less than a second before SIGTERM: written by the shutdown flush).
        let audit = clients[0]
            .request(
                "audit.list",
                json!({"action": "auth.failure", "limit": 1000}),
            )
            .await
            .unwrap();
        let failures = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["details"]["code"] == "AUTH_TOKEN_MISMATCH")
            .count();
        assert_eq!(failures, refusals.len(), "{audit}");
        let audit = clients[0]
            .request(
                "audit.list",
                json!({"action": "device.renamed", "limit": 1000}),
            )
            .await
            .unwrap();
        assert!(
            audit["entries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["deviceId"] == renamed.as_str() && e["details"]["label"] == LABEL),
            "{audit}"
        );
    });
    rt.block_on(async {
        for c in clients {
            c.close().await;
        }
    });
    let (code, log) = stop(gw2);
    assert_eq!(code, 0);
    assert!(!log.contains(TOKEN), "token in the log");
}
