//! Method dispatch: the role gate, scope checks, params validation and the
//! handlers. New method families plug into [`lookup`]; a method without a
//! local handler is "unknown" here (a relay can serve it later).

use std::time::Instant;

use clawgate_protocol::catalogue;
use clawgate_protocol::connect::Role;
use clawgate_protocol::frames::ErrorShape;
use clawgate_protocol::schema::{self, EMPTY_OBJECT, Schema};
use clawgate_protocol::scopes::{self, MethodAccess};
use serde_json::{Value, json};

use crate::device_methods as dm;
use crate::state::{GatewayState, now_ms};

/// The session a request comes from.
#[derive(Debug, Clone)]
pub struct Caller {
    pub role: Role,
    pub scopes: Vec<String>,
    /// The caller's device, when it authenticated with a device token (the
    /// reference's "device session": it may manage only its own device
    /// unless it holds `operator.admin`).
    pub device_id: Option<String>,
    pub conn_id: String,
    pub ip: std::net::IpAddr,
}

type Handler = fn(&GatewayState, &Caller, Value) -> Result<Value, ErrorShape>;

/// A locally served method.
pub struct Method {
    pub name: &'static str,
    pub params: &'static Schema,
    pub handler: Handler,
}

/// Every method this gateway serves.
pub const METHODS: &[Method] = &[
    Method {
        name: "health",
        params: &schema::Schema::Any,
        handler: health,
    },
    Method {
        name: "status",
        params: &schema::Schema::Any,
        handler: status,
    },
    Method {
        name: "last-heartbeat",
        params: &schema::Schema::Any,
        handler: last_heartbeat,
    },
    Method {
        name: "system-presence",
        params: &schema::Schema::Any,
        handler: system_presence,
    },
    Method {
        name: "device.pair.list",
        params: &EMPTY_OBJECT,
        handler: dm::pair_list,
    },
    Method {
        name: "device.pair.approve",
        params: &dm::REQUEST_ID_PARAMS,
        handler: dm::pair_approve,
    },
    Method {
        name: "device.pair.reject",
        params: &dm::REQUEST_ID_PARAMS,
        handler: dm::pair_reject,
    },
    Method {
        name: "device.pair.remove",
        params: &dm::DEVICE_ID_PARAMS,
        handler: dm::pair_remove,
    },
    Method {
        name: "device.pair.rename",
        params: &dm::RENAME_PARAMS,
        handler: dm::pair_rename,
    },
    Method {
        name: "device.token.rotate",
        params: &dm::ROTATE_PARAMS,
        handler: dm::token_rotate,
    },
    Method {
        name: "device.token.revoke",
        params: &dm::REVOKE_PARAMS,
        handler: dm::token_revoke,
    },
    Method {
        name: "audit.list",
        params: &dm::AUDIT_LIST_PARAMS,
        handler: dm::audit_list,
    },
];

/// The names of [`METHODS`], in order: `hello-ok.features.methods`, and
/// the metrics' per-method slots (indexed by position).
pub fn method_names() -> Vec<&'static str> {
    METHODS.iter().map(|m| m.name).collect()
}

pub fn lookup(name: &str) -> Option<(usize, &'static Method)> {
    METHODS.iter().enumerate().find(|(_, m)| m.name == name)
}

/// Why a request was refused before reaching a handler.
#[derive(Debug)]
pub enum Refusal {
    /// The role may not call this method (counts toward the close-after-10 rule).
    Role(ErrorShape),
    Other(ErrorShape),
}

/// Authorizes and runs one request. Returns the method's static name for
/// metrics ("unknown" for anything not served) and the outcome.
pub fn dispatch(
    state: &GatewayState,
    caller: &Caller,
    method: &str,
    params: Option<Value>,
) -> (&'static str, Result<Value, Refusal>) {
    let started = Instant::now();
    let found = lookup(method);
    let (index, label) = found.map_or((METHODS.len(), "unknown"), |(i, m)| (i, m.name));
    let result = authorize(caller, method).and_then(|()| {
        let Some((_, m)) = found else {
            return Err(Refusal::Other(ErrorShape::invalid_request(format!(
                "unknown method: {method}"
            ))));
        };
        let params = params.unwrap_or_else(|| json!({}));
        if let Some(problems) = schema::validate(&params, m.params) {
            return Err(Refusal::Other(ErrorShape::invalid_request(format!(
                "invalid {} params: {problems}",
                m.name
            ))));
        }
        (m.handler)(state, caller, params).map_err(Refusal::Other)
    });
    state
        .metrics
        .request(index, result.is_ok(), started.elapsed());
    (label, result)
}

fn authorize(caller: &Caller, method: &str) -> Result<(), Refusal> {
    let role_error = || {
        Refusal::Role(ErrorShape::invalid_request(format!(
            "unauthorized role: {}",
            caller.role
        )))
    };
    match scopes::method_access(method) {
        MethodAccess::Anyone => Ok(()),
        MethodAccess::NodeOnly if caller.role == Role::Node => Ok(()),
        MethodAccess::NodeOnly => Err(role_error()),
        MethodAccess::Operator(_) if caller.role != Role::Operator => Err(role_error()),
        MethodAccess::Operator(scope) => {
            if scopes::satisfies(&caller.scopes, scope) {
                Ok(())
            } else {
                Err(Refusal::Other(catalogue::missing_scope(scope)))
            }
        }
    }
}

/// The health summary; also part of the `hello-ok` snapshot.
pub fn health_summary(state: &GatewayState) -> Value {
    json!({
        "ok": true,
        "ts": now_ms(),
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
            "uptimeMs": state.uptime_ms(),
            "connections": state.metrics.connections_open(),
        },
    })
}

/// `eventLoop` of `health` and `status`: the reference's keys, with null
/// for the samples clawgate does not take (it has no JavaScript event loop
/// to measure).
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

fn health(state: &GatewayState, _: &Caller, _: Value) -> Result<Value, ErrorShape> {
    // The method's result has `modelRuntime`; the hello-ok snapshot's health does not.
    let mut summary = health_summary(state);
    summary["modelRuntime"] = model_runtime();
    Ok(summary)
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

fn status(state: &GatewayState, _: &Caller, _: Value) -> Result<Value, ErrorShape> {
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
        },
    }))
}

fn last_heartbeat(_: &GatewayState, _: &Caller, _: Value) -> Result<Value, ErrorShape> {
    Ok(Value::Null)
}

/// The gateway's own presence entry followed by connected clients.
pub fn presence_list(state: &GatewayState) -> Vec<Value> {
    let host = hostname();
    let ip = primary_ipv4();
    let at = ip.map(|ip| format!(" ({ip})")).unwrap_or_default();
    let mut entry = json!({
        "host": host,
        "version": crate::COMPAT_VERSION,
        "platform": host_platform(),
        "deviceFamily": host_device_family(),
        "mode": "gateway",
        "reason": "self",
        "instanceId": state.instance_id,
        "text": format!("Gateway: {host}{at} · clawgate {} · mode gateway · reason self", crate::VERSION),
        "ts": now_ms(),
    });
    if let Some(ip) = ip {
        entry["ip"] = json!(ip.to_string());
    }
    let mut list = vec![entry];
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

fn system_presence(state: &GatewayState, _: &Caller, _: Value) -> Result<Value, ErrorShape> {
    Ok(Value::Array(presence_list(state)))
}

/// The host name, read once: presence is built on every connect that can read it.
fn hostname() -> &'static str {
    static HOSTNAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOSTNAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "localhost".into())
    })
}
