//! `clawgate devices ...`: list, approve, reject, remove, rename, rotate,
//! revoke and clear paired devices and pending requests.

use clap::Subcommand;
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL};
use serde_json::{Value, json};

use crate::Paths;
use crate::net::{self, Failure, Target, call, print_json};

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Pending requests and paired devices.
    List,
    /// Approve a pending request (without an id, or with --latest: show the newest and the exact command).
    Approve {
        request_id: Option<String>,
        #[arg(long)]
        latest: bool,
        /// With --latest: wait up to this many seconds for a request to arrive.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
    /// Reject a pending request.
    Reject { request_id: String },
    /// Remove a paired device (its tokens stop working, its sessions close).
    Remove { device_id: String },
    /// Set a device's label.
    Rename {
        #[arg(long)]
        device: String,
        #[arg(long)]
        name: String,
    },
    /// Issue a new token for a device role (old ones stop working).
    Rotate {
        #[arg(long)]
        device: String,
        #[arg(long)]
        role: String,
        /// Scopes for the new token (default: the current token's).
        #[arg(long = "scope", num_args = 1..)]
        scopes: Vec<String>,
        /// A token without scopes.
        #[arg(long, conflicts_with = "scopes")]
        no_scopes: bool,
    },
    /// Revoke a device role's tokens.
    Revoke {
        #[arg(long)]
        device: String,
        #[arg(long)]
        role: String,
    },
    /// Remove every paired device (and with --pending, reject every request).
    Clear {
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        pending: bool,
    },
}

pub fn run(command: DevicesCommand, target: Target, paths: &Paths) -> anyhow::Result<u8> {
    net::finish(
        net::runtime().block_on(execute(command, &target, paths)),
        target.json,
    )
}

async fn execute(command: DevicesCommand, target: &Target, paths: &Paths) -> Result<u8, Failure> {
    use DevicesCommand::*;
    let admin = &["operator.admin"][..];
    let pairing = &["operator.pairing"][..];
    match command {
        List => {
            let (s, ctx) = net::connect(target, paths, pairing).await?;
            let list = call(&s, &ctx, "device.pair.list", json!({})).await?;
            if target.json {
                print_json(&list);
            } else {
                print_list(&list);
            }
            Ok(0)
        }
        Approve {
            request_id,
            latest,
            wait,
        } => {
            let (s, ctx) = net::connect(target, paths, admin).await?;
            let id = match request_id.filter(|_| !latest) {
                Some(id) => id,
                None => {
                    let list = wait_for_pending(&s, &ctx, wait, target.json).await?;
                    return preview_latest(&list, target);
                }
            };
            let res = match s
                .request("device.pair.approve", json!({"requestId": id}))
                .await
            {
                Ok(res) => res,
                Err(e) if is_unknown_request(&e) => {
                    return Err(Failure::plain(
                        format!("No pending device request matches {id}."),
                        "Run clawgate devices list and retry with the current request ID: clawgate devices approve <requestId>",
                    ));
                }
                Err(e) => return Err(Failure::from_client(e, &ctx)),
            };
            if target.json {
                print_json(&res);
            } else {
                println!(
                    "Approved {} ({id})",
                    res["device"]["deviceId"].as_str().unwrap_or("")
                );
            }
            Ok(0)
        }
        Reject { request_id } => {
            let (s, ctx) = net::connect(target, paths, pairing).await?;
            let res = match s
                .request("device.pair.reject", json!({"requestId": request_id}))
                .await
            {
                Ok(res) => res,
                Err(e) if is_unknown_request(&e) => {
                    return Err(Failure::plain(
                        format!(
                            "unknown requestId: no pending device request matches {request_id}."
                        ),
                        "Run clawgate devices list and retry with the current request ID: clawgate devices reject <requestId>",
                    ));
                }
                Err(e) => return Err(Failure::from_client(e, &ctx)),
            };
            if target.json {
                print_json(&res);
            } else {
                println!("Rejected {}", res["deviceId"].as_str().unwrap_or(""));
            }
            Ok(0)
        }
        Remove { device_id } => {
            let (s, ctx) = net::connect(target, paths, pairing).await?;
            let res = call(
                &s,
                &ctx,
                "device.pair.remove",
                json!({"deviceId": device_id}),
            )
            .await?;
            if target.json {
                print_json(&res);
            } else {
                println!("Removed {device_id}");
            }
            Ok(0)
        }
        Rename { device, name } => {
            let (s, ctx) = net::connect(target, paths, pairing).await?;
            let res = call(
                &s,
                &ctx,
                "device.pair.rename",
                json!({"deviceId": device, "label": name}),
            )
            .await?;
            if target.json {
                print_json(&res);
            } else {
                println!(
                    "Renamed {device} → {}",
                    res["label"].as_str().unwrap_or(&name)
                );
            }
            Ok(0)
        }
        Rotate {
            device,
            role,
            scopes,
            no_scopes,
        } => {
            let (s, ctx) = net::connect(target, paths, admin).await?;
            let mut params = json!({"deviceId": device, "role": role});
            if no_scopes {
                params["scopes"] = json!([]);
            } else if !scopes.is_empty() {
                params["scopes"] = json!(scopes);
            }
            let res = call(&s, &ctx, "device.token.rotate", params).await?;
            if target.json {
                print_json(&res);
            } else {
                println!(
                    "Rotated the {role} token of {device} (scopes: {}).",
                    list_text(&res["scopes"])
                );
                if res.get("token").is_none() {
                    println!(
                        "The new token is not shown here: the device gets it the next time it connects with the gateway's shared secret."
                    );
                }
            }
            Ok(0)
        }
        Revoke { device, role } => {
            let (s, ctx) = net::connect(target, paths, admin).await?;
            let res = call(
                &s,
                &ctx,
                "device.token.revoke",
                json!({"deviceId": device, "role": role}),
            )
            .await?;
            if target.json {
                print_json(&res);
            } else {
                println!("Revoked the {role} token of {device}; its {role} sessions were closed.");
                println!(
                    "To let it back in: clawgate devices rotate --device {device} --role {role}"
                );
            }
            Ok(0)
        }
        Clear { yes, pending } => {
            if !yes {
                return Err(Failure::plain(
                    "refusing to clear devices without --yes",
                    "clawgate devices clear --yes",
                ));
            }
            let (s, ctx) = net::connect(target, paths, admin).await?;
            let list = call(&s, &ctx, "device.pair.list", json!({})).await?;
            let mut removed = 0;
            for d in list["paired"].as_array().into_iter().flatten() {
                call(
                    &s,
                    &ctx,
                    "device.pair.remove",
                    json!({"deviceId": d["deviceId"]}),
                )
                .await?;
                removed += 1;
            }
            let mut rejected = 0;
            if pending {
                for r in list["pending"].as_array().into_iter().flatten() {
                    call(
                        &s,
                        &ctx,
                        "device.pair.reject",
                        json!({"requestId": r["requestId"]}),
                    )
                    .await?;
                    rejected += 1;
                }
            }
            if target.json {
                print_json(&json!({"removedDevices": removed, "rejectedPending": rejected}));
            } else {
                println!(
                    "Cleared {removed} paired device{}",
                    if removed == 1 { "" } else { "s" }
                );
                if pending {
                    println!(
                        "Rejected {rejected} pending request{}",
                        if rejected == 1 { "" } else { "s" }
                    );
                }
            }
            Ok(0)
        }
    }
}

/// `device.pair.list`, polled until a request is pending or `wait` seconds
/// pass; a terminal shows how long it has waited.
async fn wait_for_pending(
    s: &clawgate_client::Client,
    ctx: &net::Context,
    wait: Option<u64>,
    json_out: bool,
) -> Result<Value, Failure> {
    use std::io::{IsTerminal, Write};
    let started = std::time::Instant::now();
    let limit = std::time::Duration::from_secs(wait.unwrap_or(0));
    let tty = !json_out && std::io::stderr().is_terminal();
    loop {
        let list = call(s, ctx, "device.pair.list", json!({})).await?;
        let has_pending = list["pending"].as_array().is_some_and(|p| !p.is_empty());
        if has_pending || started.elapsed() >= limit {
            if tty && !limit.is_zero() {
                eprint!("\r\x1b[2K");
            }
            return Ok(list);
        }
        if tty {
            eprint!(
                "\r\x1b[2KWaiting for a pairing request… {}s of {}s (have the device connect now)",
                started.elapsed().as_secs(),
                limit.as_secs()
            );
            let _ = std::io::stderr().flush();
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// The gateway's answer to an approve/reject for a request it does not have.
fn is_unknown_request(e: &clawgate_client::ClientError) -> bool {
    e.gateway_error()
        .is_some_and(|g| g.message.contains("unknown requestId"))
}

/// `approve --latest` / `approve` without an id: shows the newest pending
/// request and the exact command that approves it; exits 1 (nothing was
/// approved).
fn preview_latest(list: &Value, target: &Target) -> Result<u8, Failure> {
    let pending = list["pending"].as_array().cloned().unwrap_or_default();
    let Some(req) = pending
        .iter()
        .max_by_key(|r| r["ts"].as_u64().unwrap_or(0))
        .cloned()
    else {
        return Err(Failure::plain(
            "No pending device pairing requests to approve",
            "Have the device connect (it creates a request), then: clawgate devices approve --latest",
        ));
    };
    let rid = req["requestId"].as_str().unwrap_or("");
    let paired = list["paired"].as_array().cloned().unwrap_or_default();
    let approved = paired
        .iter()
        .find(|d| d["deviceId"] == req["deviceId"])
        .cloned();
    let kind = request_kind(&req, approved.as_ref());
    let mut cmd = format!("clawgate devices approve {rid}");
    if let Some(url) = &target.url {
        cmd.push_str(&format!(" --url {url}"));
    }
    if target.token.is_some() {
        cmd.push_str(" --token <token>");
    } else if target.password.is_some() {
        cmd.push_str(" --password <password>");
    }
    let note = match kind {
        "new pairing" => "First-time device pairing request.",
        "re-approval" => {
            "Approval-bound device details changed, so the gateway created a fresh request instead of silently reusing the old approval."
        }
        _ => {
            "Already paired. The requested role or scopes exceed the current approval, so reconnecting stays blocked until you approve this upgrade."
        }
    };
    if target.json {
        print_json(&json!({
            "selected": req,
            "approvalState": {
                "kind": kind,
                "requested": {"roles": req["roles"], "scopes": req["scopes"]},
                "approved": approved.as_ref().map(|d| json!({"roles": d["roles"], "scopes": d["scopes"]})),
            },
            "approveCommand": cmd,
            "requiresAuthFlags": {"token": target.token.is_some(), "password": target.password.is_some()},
        }));
    } else {
        println!("Selected pending device request {rid}");
        println!("  Device:    {}", device_name(&req));
        println!("  Requested: {}", requested_text(&req));
        if let Some(d) = &approved {
            println!("  Approved:  {}", requested_text(d));
        }
        if let Some(ip) = req["remoteIp"].as_str() {
            println!("  IP:        {ip}");
        }
        println!("  Note:      {note}");
        println!("Approve this exact request with: {cmd}");
        if target.token.is_some() || target.password.is_some() {
            println!("(Pass the same --token/--password value when you run it.)");
        }
    }
    Ok(1)
}

fn request_kind(req: &Value, approved: Option<&Value>) -> &'static str {
    match approved {
        None if req["isRepair"] == true => "re-approval",
        None => "new pairing",
        Some(d)
            if !d["roles"]
                .as_array()
                .is_some_and(|a| a.contains(&req["role"])) =>
        {
            "role upgrade"
        }
        Some(_) => "scope upgrade",
    }
}

fn device_name(v: &Value) -> String {
    for key in ["operatorLabel", "displayName", "clientId", "deviceId"] {
        if let Some(s) = v[key].as_str() {
            return s.to_string();
        }
    }
    String::new()
}

fn list_text(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "none".into())
}

fn requested_text(req: &Value) -> String {
    format!(
        "roles: {}; scopes: {}",
        list_text(&req["roles"]),
        list_text(&req["scopes"])
    )
}

fn age(ts: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let secs = now.saturating_sub(ts) / 1000;
    match secs {
        0..=59 => "just now".into(),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86_399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    t
}

fn print_list(list: &Value) {
    let pending = list["pending"].as_array().cloned().unwrap_or_default();
    let paired = list["paired"].as_array().cloned().unwrap_or_default();
    if pending.is_empty() && paired.is_empty() {
        println!("No device pairing entries.");
        return;
    }
    if !pending.is_empty() {
        println!("Pending ({})", pending.len());
        let mut t = table(&[
            "Request",
            "Device",
            "Requested",
            "Approved",
            "Age",
            "Status",
        ]);
        for r in &pending {
            let approved = paired
                .iter()
                .find(|d| d["deviceId"] == r["deviceId"] && d["publicKey"] == r["publicKey"]);
            let status = request_kind(r, approved);
            let mut device = device_name(r);
            if let Some(ip) = r["remoteIp"].as_str() {
                device = format!("{device} · {ip}");
            }
            t.add_row(vec![
                r["requestId"].as_str().unwrap_or("").to_string(),
                device,
                requested_text(r),
                approved
                    .map(requested_text)
                    .unwrap_or_else(|| "none".into()),
                age(r["ts"].as_u64().unwrap_or(0)),
                status.to_string(),
            ]);
        }
        println!("{t}");
    }
    if !paired.is_empty() {
        println!("Paired ({})", paired.len());
        let mut t = table(&[
            "Device",
            "Device ID",
            "Roles",
            "Scopes",
            "Tokens",
            "Last seen",
            "IP",
        ]);
        for d in &paired {
            let tokens = d["tokens"]
                .as_array()
                .map(|ts| {
                    ts.iter()
                        .map(|t| {
                            let role = t["role"].as_str().unwrap_or("");
                            if t.get("revokedAtMs").is_some() {
                                format!("{role} (revoked)")
                            } else {
                                role.to_string()
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let seen = match (d["connected"].as_bool(), d["lastSeenAtMs"].as_u64()) {
                (Some(true), _) => "connected".to_string(),
                (_, Some(ts)) => age(ts),
                _ => "never".to_string(),
            };
            t.add_row(vec![
                device_name(d),
                d["deviceId"].as_str().unwrap_or("").to_string(),
                list_text(&d["roles"]),
                list_text(&d["scopes"]),
                tokens,
                seen,
                d["remoteIp"].as_str().unwrap_or("").to_string(),
            ]);
        }
        println!("{t}");
        println!("Full device IDs");
        for d in &paired {
            println!(
                "  {}  {}",
                d["deviceId"].as_str().unwrap_or(""),
                device_name(d)
            );
        }
    }
}
