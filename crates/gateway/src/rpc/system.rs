//! `health`, `status`, `last-heartbeat`, `system-presence`: what the
//! gateway says about itself. Shapes follow the reference; where a field
//! belongs to a part of OpenClaw clawgate does not have (agents, channels,
//! sessions, models) it is present and empty.

use std::sync::OnceLock;

use clawgate_protocol::frames::ErrorShape;
use clawgate_protocol::wire::{GatewayPresence, PresenceEntry};
use serde_json::{Value, json};

use crate::rpc::Reply;
use crate::session::{Caller, now_ms};
use crate::state::GatewayState;
use crate::views;

/// What varies in the health summary: `ts`, `gateway.uptimeMs` and
/// `gateway.connections`.
fn health_numbers(state: &GatewayState) -> (u64, u64, u64) {
    (
        now_ms(),
        state.uptime_ms(),
        state.metrics.connections_open() as u64,
    )
}

fn health_value(ts: u64, uptime_ms: u64, connections: u64) -> Value {
    json!({
        "ok": true,
        "ts": ts,
        "durationMs": 0,
        "plugins": {"loaded": [], "errors": [], "unavailable": []},
        "configReload": {"hotReloadStatus": "active"},
        "channels": {},
        "channelOrder": [],
        "channelLabels": {},
        "heartbeatSeconds": 0,
        // No agents and no session store: null and empty, never invented.
        "defaultAgentId": null,
        "agents": [],
        "sessions": {"path": null, "count": 0, "recent": []},
        "eventLoop": event_loop(),
        "gateway": {
            "uptimeMs": uptime_ms,
            "connections": connections,
        },
    })
}

fn event_loop() -> Value {
    json!({
        "degraded": false,
        "degradedSinceMs": null,
        "reasons": [],
        "intervalMs": null,
        "delayP99Ms": null,
        "delayMaxMs": null,
        "utilization": null,
        "cpuCoreRatio": null,
        "cpuBreakdown": null,
    })
}

/// `modelRuntime` of `health` and `status`: clawgate runs no models.
fn model_runtime() -> Value {
    json!({"degraded": false, "pendingAgents": []})
}

/// The `health` method's result: the summary and `modelRuntime`.
fn health_result(ts: u64, uptime_ms: u64, connections: u64) -> Value {
    // The method's result has `modelRuntime`; the hello-ok snapshot's health does not.
    let mut summary = health_value(ts, uptime_ms, connections);
    summary["modelRuntime"] = model_runtime();
    summary
}

/// `health`, serialized: only three numbers change between calls, so the
/// text around them is made once (from [`health_result`], with marker
/// numbers) and each call writes the pieces and the numbers, without
/// building a JSON value (health is the method clients poll).
pub(crate) fn health(state: &GatewayState, _: &Caller, _: Value) -> Result<Reply, ErrorShape> {
    let (ts, uptime, connections) = health_numbers(state);
    Ok(Reply::Json(health_text(ts, uptime, connections)))
}

fn health_text(ts: u64, uptime_ms: u64, connections: u64) -> String {
    static PIECES: OnceLock<[String; 4]> = OnceLock::new();
    spliced(&PIECES, health_result, [ts, uptime_ms, connections])
}

/// The health summary (`hello-ok.snapshot.health`), serialized the same
/// way as [`health_text`]: the same text as [`health_value`] serialized.
pub fn health_summary_text(state: &GatewayState) -> String {
    let (ts, uptime, connections) = health_numbers(state);
    summary_text(ts, uptime, connections)
}

fn summary_text(ts: u64, uptime_ms: u64, connections: u64) -> String {
    static PIECES: OnceLock<[String; 4]> = OnceLock::new();
    spliced(&PIECES, health_value, [ts, uptime_ms, connections])
}

/// `make(ts, uptimeMs, connections)` serialized, from pieces made once
/// (the value made with marker numbers, cut at the markers) and the three
/// numbers written between them.
fn spliced(
    pieces: &OnceLock<[String; 4]>,
    make: fn(u64, u64, u64) -> Value,
    numbers: [u64; 3],
) -> String {
    use std::fmt::Write;
    // Markers no real value takes (and that serialize as themselves).
    const MARKS: [u64; 3] = [
        9_007_199_254_740_001,
        9_007_199_254_740_002,
        9_007_199_254_740_003,
    ];
    let pieces = pieces.get_or_init(|| {
        let text = make(MARKS[0], MARKS[1], MARKS[2]).to_string();
        let mut pieces: [String; 4] = Default::default();
        let mut rest = text.as_str();
        for (i, mark) in MARKS.iter().enumerate() {
            let (head, tail) = rest
                .split_once(&mark.to_string())
                .expect("each marker appears once, in order");
            pieces[i] = head.to_string();
            rest = tail;
        }
        pieces[3] = rest.to_string();
        pieces
    });
    let mut out = String::with_capacity(pieces.iter().map(String::len).sum::<usize>() + 60);
    for (piece, n) in pieces.iter().zip(numbers) {
        out.push_str(piece);
        let _ = write!(out, "{n}");
    }
    out.push_str(&pieces[3]);
    out
}

fn process_memory() -> Value {
    // VmRSS from /proc; absent elsewhere.
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
                .map(|kb| kb * 1024)
        });
    json!({"rss": rss})
}

pub(crate) fn status(state: &GatewayState, _: &Caller, _: Value) -> Result<Value, ErrorShape> {
    let auth = state.auth();
    Ok(json!({
        "runtimeVersion": crate::COMPAT_VERSION,
        "hostDesktop": {"enabled": false, "state": "disabled"},
        "heartbeat": {"defaultAgentId": "main", "agents": []},
        "channelSummary": [],
        "queuedSystemEvents": [],
        "degradedSecretOwners": [],
        "degradedPlugins": [],
        "tasks": {"total": 0, "active": 0, "terminal": 0, "failures": 0, "byStatus": {}, "byRuntime": {}},
        "taskAudit": {"total": 0, "warnings": 0, "errors": 0, "byCode": {}},
        "sessions": {"paths": [], "count": 0, "defaults": {"model": null, "contextTokens": null}, "recent": [], "byAgent": []},
        "eventLoop": event_loop(),
        "processMemory": process_memory(),
        "workerPools": {},
        "modelRuntime": model_runtime(),
        "pid": std::process::id(),
        // No agent work to drain on shutdown.
        "shutdownBudget": {
            "timeoutMs": 0,
            "reserveMs": 0,
            "nativeStopBudget": false,
            "activeWork": {"rootRequests": 0, "cronRuns": 0, "sessionMutations": 0, "terminalPersistence": 0, "lifecycleWrites": 0},
            "writeCustody": [],
        },
        "gateway": {
            "implementation": "clawgate",
            "version": crate::VERSION,
            "bootId": state.boot_id,
            "uptimeMs": state.uptime_ms(),
            "authMode": auth.config.mode.as_str(),
            "bind": state.config.bind.address().to_string(),
            "port": state.config.port,
            "connections": {
                "open": state.metrics.connections_open(),
                "authenticated": state.hub.len(),
            },
            "registry": registry_status(state),
            "tls": tls_status(state),
            "underAttack": attack_status(state),
        },
    }))
}

/// `gateway.underAttack` in `status` (clawgate addition): whether
/// shared-secret attempts from new peers are being refused now, and the
/// counts (never an address).
fn attack_status(state: &GatewayState) -> Value {
    let a = state.limiter.attack_status(std::time::Instant::now());
    json!({
        "active": a.active,
        "activeForMs": a.active_for.as_millis() as u64,
        "refused": a.refused,
        "episodes": a.episodes,
        "recentSuccessPeers": a.recent_successes,
    })
}

/// `gateway.registry` in `status` (clawgate addition): where the device
/// registry lives, whether it is reachable, and for replicas on a shared
/// PostgreSQL store every live replica with its session count.
fn registry_status(state: &GatewayState) -> Value {
    let store = &state.store;
    let Some(replica_id) = store.replica_id() else {
        return json!({"backend": store.backend_name(), "reachable": true});
    };
    let mut replicas = vec![json!({
        "replicaId": replica_id,
        "host": hostname(),
        "sessions": state.hub.len(),
        "self": true,
    })];
    replicas.extend(state.registry.peers().into_iter().map(|p| {
        json!({
            "replicaId": p.replica_id,
            "host": p.host,
            "sessions": p.sessions,
            "refreshedAtMs": p.refreshed_at_ms,
            "self": false,
        })
    }));
    let total: u64 = state.registry.peer_sessions() + state.hub.len() as u64;
    json!({
        "backend": store.backend_name(),
        "location": state.registry.location(),
        "reachable": state.registry.is_up(),
        "problem": (!state.registry.is_up()).then(|| state.registry.why()),
        "appliedSeq": store.applied_seq(),
        "replicas": replicas,
        "sessionsAllReplicas": total,
    })
}

/// `gateway.tls` in `status` (clawgate addition): the certificate served
/// now (after any reload) and the two pins a client can use.
fn tls_status(state: &GatewayState) -> Value {
    match state.tls() {
        None => json!({"enabled": false}),
        Some(tls) => {
            let info = tls.info();
            json!({
                "enabled": true,
                "certificateSha256": info.certificate_pin(),
                "publicKeyPin": info.public_key_pin(),
                "selfSigned": info.self_signed,
            })
        }
    }
}

pub(crate) fn last_heartbeat(_: &GatewayState, _: &Caller, _: Value) -> Result<Value, ErrorShape> {
    Ok(Value::Null)
}

/// The gateway's own presence entry followed by connected clients, then
/// (replicas) every other replica's entries.
pub fn presence_list(state: &GatewayState) -> Vec<PresenceEntry> {
    let mut list = local_presence(state);
    list.extend(state.registry.peer_entries());
    list
}

/// This gateway's own entry and its connected clients.
pub fn local_presence(state: &GatewayState) -> Vec<PresenceEntry> {
    let mut entry = GatewayPresence::new(
        hostname(),
        crate::COMPAT_VERSION,
        crate::VERSION,
        host_platform(),
        &state.instance_id,
        now_ms(),
    );
    entry.device_family = host_device_family().to_string();
    if let Some(ip) = primary_ipv4() {
        entry = entry.with_ip(&ip.to_string());
    }
    let mut list = vec![entry.into()];
    list.extend(state.hub.presence());
    list
}

/// The host's OS and, on Linux, its kernel release ("linux 6.8.0"), as the
/// reference reports its own platform.
fn host_platform() -> &'static str {
    static PLATFORM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PLATFORM.get_or_init(|| {
        let os = std::env::consts::OS;
        match std::fs::read_to_string("/proc/sys/kernel/osrelease") {
            Ok(release) if !release.trim().is_empty() => format!("{os} {}", release.trim()),
            _ => os.to_string(),
        }
    })
}

/// The host's device family, named as the reference names it.
fn host_device_family() -> &'static str {
    match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Mac",
        "windows" => "Windows",
        other => other,
    }
}

/// The address this host reaches other networks from, found once by
/// asking the kernel for a route (a UDP connect sends nothing); none
/// without a route.
fn primary_ipv4() -> Option<std::net::Ipv4Addr> {
    static IP: std::sync::OnceLock<Option<std::net::Ipv4Addr>> = std::sync::OnceLock::new();
    *IP.get_or_init(|| {
        let socket = std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0)).ok()?;
        // A documentation address (TEST-NET-3): routed like any other.
        socket
            .connect((std::net::Ipv4Addr::new(203, 0, 113, 1), 9))
            .ok()?;
        match socket.local_addr().ok()?.ip() {
            std::net::IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_unspecified() => Some(v4),
            _ => None,
        }
    })
}

pub(crate) fn system_presence(
    state: &GatewayState,
    _: &Caller,
    _: Value,
) -> Result<Value, ErrorShape> {
    Ok(views::json(&presence_list(state)))
}

/// The host name, read once: presence is built on every connect that can read it.
pub(crate) fn hostname() -> &'static str {
    static HOSTNAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOSTNAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "localhost".into())
    })
}

#[cfg(test)]
mod health_tests {
    use super::*;

    #[test]
    fn the_health_text_is_the_serialized_health_result() {
        for (ts, up, conns) in [
            (0, 0, 0),
            (1_764_000_000_123, 98_765, 10_001),
            (u64::MAX, 1, 7),
        ] {
            assert_eq!(
                health_text(ts, up, conns),
                health_result(ts, up, conns).to_string()
            );
            assert_eq!(
                summary_text(ts, up, conns),
                health_value(ts, up, conns).to_string()
            );
        }
    }
}
