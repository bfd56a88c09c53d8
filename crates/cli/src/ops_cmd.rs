//! Talking to a running gateway: `health`, `status`, `gateway call`,
//! `gateway probe` and `gateway watch`.

use std::time::{Duration, Instant};

use clap::Args;
use clawgate_client::{Client, ClientEvent};
use clawgate_protocol::scopes;
use serde_json::{Value, json};

use crate::Paths;
use crate::net::{self, Failure, Target, finish, print_json};

#[derive(Debug, Args)]
pub struct NetArgs {
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// The method, e.g. health, status, device.pair.list.
    pub method: String,
    /// Parameters as a JSON object.
    #[arg(long, default_value = "{}")]
    pub params: String,
    /// Scopes to ask for (default: the least the method needs).
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Also print the gateway's keepalive `tick` events.
    #[arg(long)]
    pub ticks: bool,
    #[command(flatten)]
    pub target: Target,
}

pub fn health(args: NetArgs, paths: &Paths) -> anyhow::Result<u8> {
    let json_out = args.target.json;
    finish(
        net::runtime().block_on(run_health(&args.target, paths)),
        json_out,
    )
}

async fn run_health(target: &Target, paths: &Paths) -> Result<u8, Failure> {
    let (client, ctx) = net::connect(target, paths, &[scopes::READ]).await?;
    let health = net::call(&client, &ctx, "health", json!({})).await?;
    client.close().await;
    if target.json {
        print_json(&health);
    } else {
        let ok = health["ok"].as_bool().unwrap_or(false);
        let gw = &health["gateway"];
        crate::say!(
            "Gateway at {} is {}{}",
            ctx.url,
            if ok { "healthy" } else { "NOT healthy" },
            match (gw["uptimeMs"].as_u64(), gw["connections"].as_u64()) {
                (Some(up), Some(n)) => format!(
                    " (up {}, {n} connection{})",
                    duration_text(up),
                    if n == 1 { "" } else { "s" }
                ),
                _ => String::new(),
            }
        );
    }
    Ok(if health["ok"].as_bool() == Some(false) {
        1
    } else {
        0
    })
}

pub fn status(args: NetArgs, paths: &Paths) -> anyhow::Result<u8> {
    let json_out = args.target.json;
    finish(
        net::runtime().block_on(run_status(&args.target, paths)),
        json_out,
    )
}

async fn run_status(target: &Target, paths: &Paths) -> Result<u8, Failure> {
    let started = Instant::now();
    let (client, ctx) = net::connect(target, paths, &[scopes::READ]).await?;
    let connect_ms = started.elapsed().as_millis() as u64;
    let hello = client.hello();
    let hello_auth = client.hello_ok().map(|h| h.auth);
    let status = net::call(&client, &ctx, "status", json!({})).await?;
    client.close().await;
    let gw = &status["gateway"];
    let dashboard = dashboard_url(&ctx.url);
    if target.json {
        print_json(&json!({
            "ok": true,
            "url": ctx.url,
            "dashboard": dashboard,
            "connectMs": connect_ms,
            "auth": hello["auth"].clone(),
            "server": hello["server"].clone(),
            "status": status,
        }));
        return Ok(0);
    }
    let mut rows = vec![
        (
            "Gateway",
            format!("{} · reachable {connect_ms} ms", ctx.url),
        ),
        ("Dashboard", dashboard),
        (
            "Version",
            format!(
                "{} {} (OpenClaw protocol compatible with {})",
                gw["implementation"].as_str().unwrap_or("gateway"),
                gw["version"].as_str().unwrap_or("?"),
                status["runtimeVersion"].as_str().unwrap_or("?")
            ),
        ),
        (
            "Uptime",
            gw["uptimeMs"]
                .as_u64()
                .map(duration_text)
                .unwrap_or_else(|| "?".into()),
        ),
        ("Auth", gw["authMode"].as_str().unwrap_or("?").to_string()),
        (
            "Connections",
            format!(
                "{} open, {} authenticated",
                gw["connections"]["open"].as_u64().unwrap_or(0),
                gw["connections"]["authenticated"].as_u64().unwrap_or(0)
            ),
        ),
        (
            "Memory",
            status["processMemory"]["rss"]
                .as_u64()
                .map(|b| format!("{:.1} MB resident", b as f64 / 1_048_576.0))
                .unwrap_or_else(|| "?".into()),
        ),
        (
            "This client",
            match &hello_auth {
                Some(auth) => format!(
                    "{} as {} ({})",
                    auth.method,
                    auth.role,
                    Some(auth.scopes.join(", "))
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "no scopes".into())
                ),
                None => "? as ? (no scopes)".into(),
            },
        ),
    ];
    rows.extend(tls_rows(&gw["tls"]));
    rows.extend(attack_row(&gw["underAttack"]));
    rows.extend(registry_rows(&gw["registry"]));
    for (k, v) in rows {
        crate::say!("{k:<12} {v}");
    }
    Ok(0)
}

/// Where the device registry lives; for replicas on PostgreSQL, whether it
/// is reachable and every live replica with its sessions (absent on a
/// gateway that does not report it).
fn registry_rows(r: &Value) -> Vec<(&'static str, String)> {
    let Some(backend) = r["backend"].as_str() else {
        return Vec::new();
    };
    if backend != "postgres" {
        return vec![("Registry", format!("{backend} (this gateway only)"))];
    }
    let location = r["location"].as_str().unwrap_or("?");
    let state = if r["reachable"] == true {
        format!(
            "reachable, caught up to change {}",
            r["appliedSeq"].as_u64().unwrap_or(0)
        )
    } else {
        format!(
            "UNREACHABLE ({}): device tokens and pairing refused on this replica",
            r["problem"].as_str().unwrap_or("?")
        )
    };
    let replicas: Vec<String> = r["replicas"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|p| {
                    format!(
                        "{}{} on {}: {} sessions",
                        p["replicaId"]
                            .as_str()
                            .unwrap_or("?")
                            .get(..8)
                            .unwrap_or("?"),
                        if p["self"] == true { " (this one)" } else { "" },
                        p["host"].as_str().unwrap_or("?"),
                        p["sessions"].as_u64().unwrap_or(0)
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    vec![
        ("Registry", format!("PostgreSQL {location}, {state}")),
        (
            "Replicas",
            format!(
                "{} live, {} sessions in all: {}",
                replicas.len(),
                r["sessionsAllReplicas"].as_u64().unwrap_or(0),
                replicas.join("; ")
            ),
        ),
    ]
}

/// The under-attack state (absent on a gateway that does not report it).
fn attack_row(a: &Value) -> Option<(&'static str, String)> {
    let episodes = a["episodes"].as_u64()?;
    let text = if a["active"] == true {
        format!(
            "UNDER ATTACK for {}: {} shared-secret attempts from new addresses refused; device tokens, paired devices and recently successful addresses still get in ({} episodes so far)",
            duration_text(a["activeForMs"].as_u64().unwrap_or(0)),
            a["refused"].as_u64().unwrap_or(0),
            episodes
        )
    } else {
        format!("no ({episodes} episodes since start)")
    };
    Some(("Under attack", text))
}

/// The certificate the gateway serves, as its `status` reports it (so a
/// reloaded certificate shows at once): both pins `--tls-fingerprint` takes.
fn tls_rows(tls: &Value) -> Vec<(&'static str, String)> {
    if tls["enabled"] != true {
        return vec![("TLS", "off".into())];
    }
    let text = |k: &str| tls[k].as_str().unwrap_or("?").to_string();
    let origin = if tls["selfSigned"] == true {
        "on (self-signed certificate)"
    } else {
        "on"
    };
    vec![
        ("TLS", origin.to_string()),
        ("Cert SHA-256", text("certificateSha256")),
        (
            "Key pin",
            format!(
                "{} (pin with --tls-fingerprint; survives renewals that keep the key)",
                text("publicKeyPin")
            ),
        ),
    ]
}

/// The Control UI URL for a gateway WebSocket URL.
fn dashboard_url(ws_url: &str) -> String {
    match ws_url.split_once("://") {
        Some(("wss", rest)) => format!("https://{rest}"),
        Some((_, rest)) => format!("http://{rest}"),
        None => ws_url.to_string(),
    }
}

fn duration_text(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

pub fn call(args: CallArgs, paths: &Paths) -> anyhow::Result<u8> {
    let params: Value = match serde_json::from_str(&args.params) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            crate::say_err!(
                "error: --params must be a JSON object, e.g. --params '{{\"key\": 1}}'"
            );
            return Ok(2);
        }
        Err(e) => {
            crate::say_err!("error: --params is not valid JSON: {e}");
            return Ok(2);
        }
    };
    let json_out = args.target.json;
    finish(
        net::runtime().block_on(async {
            let needed: Vec<&str> = if args.scopes.is_empty() {
                net::scopes_for_method(&args.method)
            } else {
                args.scopes.iter().map(String::as_str).collect()
            };
            let (client, ctx) = net::connect(&args.target, paths, &needed).await?;
            let result = net::call(&client, &ctx, &args.method, params).await;
            client.close().await;
            let result = result?;
            if json_out {
                print_json(&result);
            } else {
                crate::say!("Gateway call: {}", args.method);
                print_json(&result);
            }
            Ok(0)
        }),
        json_out,
    )
}

pub fn probe(args: NetArgs, paths: &Paths) -> anyhow::Result<u8> {
    let target = args.target;
    net::runtime().block_on(async {
        let started = Instant::now();
        let outcome = net::connect(&target, paths, &[scopes::READ]).await;
        let connect_ms = started.elapsed().as_millis() as u64;
        let (client, ctx) = match outcome {
            Ok(ok) => ok,
            Err(failure) => {
                let reachable = failure.code.is_some();
                if target.json {
                    print_json(&json!({
                        "ok": false,
                        "reachable": reachable,
                        "auth": {"ok": false},
                        "connectMs": connect_ms,
                        "error": {
                            "code": failure.code,
                            "message": failure.message,
                            "details": failure.details,
                            "next": failure.next,
                        },
                    }));
                } else {
                    crate::say!("Reachable: {}", if reachable { "yes" } else { "no" });
                    crate::say!("Auth:      failed");
                    failure.print(false);
                }
                return Ok(1);
            }
        };
        // A probe checks the credentials given: a shared token the gateway
        // refused is a failure even when the cached device token got in.
        let recovered = ctx.recovered.clone();
        let health_started = Instant::now();
        let health = net::call(&client, &ctx, "health", json!({})).await;
        let health_ms = health_started.elapsed().as_millis() as u64;
        let hello = client.hello();
        let typed = client.hello_ok();
        client.close().await;
        let auth = &hello["auth"];
        let healthy = health.as_ref().is_ok_and(|h| h["ok"] == true);
        if target.json {
            print_json(&json!({
                "ok": healthy && recovered.is_none(),
                "sharedSecretRefused": recovered,
                "url": ctx.url,
                "reachable": true,
                "auth": {"ok": true, "method": auth["method"], "role": auth["role"], "scopes": auth["scopes"]},
                "server": hello["server"],
                "protocol": hello["protocol"],
                "connectMs": connect_ms,
                "healthMs": health_ms,
                "healthy": healthy,
            }));
        } else {
            crate::say!("Gateway:   {}", ctx.url);
            crate::say!("Reachable: yes ({connect_ms} ms to hello)");
            match &recovered {
                Some(code) => crate::say!(
                    "Auth:      shared secret REFUSED ({code}); the cached device token still works"
                ),
                None => match &typed {
                    Some(h) => crate::say!("Auth:      ok ({} as {})", h.auth.method, h.auth.role),
                    None => crate::say!("Auth:      ok (? as ?)"),
                },
            }
            match &typed {
                Some(h) => crate::say!(
                    "Server:    OpenClaw {} protocol {}",
                    h.server.version, h.protocol
                ),
                None => crate::say!("Server:    OpenClaw ? protocol {}", hello["protocol"]),
            }
            match &health {
                Ok(_) if healthy => crate::say!("Health:    ok ({health_ms} ms)"),
                Ok(_) => crate::say!("Health:    NOT ok"),
                Err(f) => {
                    crate::say!("Health:    failed");
                    f.print(false);
                }
            }
        }
        if let Some(code) = &recovered {
            let entry = clawgate_protocol::catalogue::entry(code);
            if !target.json {
                crate::say_err!(
                    "next: {}",
                    entry.map(|e| e.next).unwrap_or("clawgate doctor")
                );
            }
        }
        Ok(if healthy && recovered.is_none() { 0 } else { 1 })
    })
}

pub fn watch(args: WatchArgs, paths: &Paths) -> anyhow::Result<u8> {
    let json_out = args.target.json;
    let result = net::runtime().block_on(async {
        let (mut opts, ctx) = net::session_options(
            &args.target,
            paths,
            &[scopes::READ],
            net::Session::LongLived,
        )?;
        opts.reconnect = true;
        opts.request_timeout = Duration::from_secs(30);
        let client = Client::connect(opts)
            .await
            .map_err(|e| Failure::from_client(e, &ctx))?;
        let mut events = client.events().expect("events are taken once");
        loop {
            let event = tokio::select! {
                e = events.recv() => e,
                _ = tokio::signal::ctrl_c() => {
                    client.close().await;
                    return Ok(0);
                }
            };
            let Some(event) = event else {
                return Ok(0);
            };
            match event {
                ClientEvent::Paused(err) => {
                    if json_out {
                        crate::say!("{}", json!({"type": "paused"}));
                    } else {
                        crate::say!("{} stopped: the gateway refused this client", now());
                    }
                    return Err(Failure::from_client(err, &ctx));
                }
                ClientEvent::Event { event, .. } if event == "tick" && !args.ticks => {}
                other => print_event(&other, json_out),
            }
        }
    });
    finish(result, json_out)
}

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

fn print_event(event: &ClientEvent, json_out: bool) {
    let line = match event {
        ClientEvent::Connected { auth_method, .. } => (
            json!({"type": "connected", "authMethod": auth_method}),
            format!("connected ({auth_method})"),
        ),
        ClientEvent::Recovered { error, auth_method } => (
            json!({"type": "recovered", "code": error.detail_code(), "authMethod": auth_method}),
            format!(
                "the gateway refused the shared token ({}); recovered with the cached device token",
                error.detail_code().unwrap_or(&error.code)
            ),
        ),
        ClientEvent::Disconnected { code, reason } => (
            json!({"type": "disconnected", "code": code, "reason": reason}),
            format!(
                "disconnected ({code}{})",
                if reason.is_empty() {
                    String::new()
                } else {
                    format!(": {reason}")
                }
            ),
        ),
        ClientEvent::Reconnecting {
            attempt,
            delay,
            error,
        } => (
            json!({"type": "reconnecting", "attempt": attempt, "delayMs": delay.as_millis() as u64, "error": error}),
            format!(
                "reconnecting in {} ms (attempt {attempt}: {error})",
                delay.as_millis()
            ),
        ),
        ClientEvent::Event {
            event,
            payload,
            seq,
        } => (
            json!({"type": "event", "event": event, "payload": payload, "seq": seq}),
            format!("event {event} {payload}"),
        ),
        ClientEvent::Paused(_) => return,
    };
    if json_out {
        crate::say!("{}", line.0);
    } else {
        crate::say!("{} {}", now(), line.1);
    }
}
