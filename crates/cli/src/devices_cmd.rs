//! `clawgate devices ...`: list, approve, reject, remove, rename, rotate,
//! revoke and clear paired devices and pending requests.

use clap::Subcommand;
use clawgate_protocol::wire::{
    PairApproved, PairDecisionParams, PairList, PairRejected, PairRenamed, PairedDevice,
    PendingPairing, TokenRotated,
};
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL};
use serde_json::{Value, json};

use crate::Paths;
use crate::net::{self, Failure, Target, call, decode, print_json};

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Pending requests and paired devices.
    List,
    /// Approve a pending request by its pairing code (XXXX-XXXX, any case, dash optional) or request id
    /// (without one, or with --latest: show the newest and the exact command).
    Approve {
        #[arg(value_name = "CODE_OR_REQUEST_ID")]
        request_id: Option<String>,
        #[arg(long)]
        latest: bool,
        /// With --latest: wait up to this many seconds for a request to arrive.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
    /// Reject a pending request by its pairing code or request id.
    Reject {
        #[arg(value_name = "CODE_OR_REQUEST_ID")]
        request_id: String,
    },
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
    /// Mint a single-use setup code (with its QR) that pairs one device with a
    /// role and scopes; `setup-code list` and `setup-code revoke <setupId>`.
    SetupCode(crate::setup_code_cmd::SetupCodeArgs),
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
        SetupCode(args) => crate::setup_code_cmd::execute(args, target, paths).await,
        List => {
            let (s, ctx) = net::connect(target, paths, pairing).await?;
            let list = call(&s, &ctx, "device.pair.list", json!({})).await?;
            if target.json {
                print_json(&list);
            } else {
                print_list(&decode("device.pair.list", &list)?);
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
            let res = match s.request("device.pair.approve", decision_params(&id)).await {
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
                let approved: PairApproved = decode("device.pair.approve", &res)?;
                let d = &approved.device;
                crate::say!("Approved {} ({id})", d.device_id);
                crate::say!("  Device:    {}", d.name());
                crate::say!("  Approved:  {}", requested_text(&d.roles, &d.scopes));
            }
            Ok(0)
        }
        Reject { request_id } => {
            let (s, ctx) = net::connect(target, paths, pairing).await?;
            let res = match s
                .request("device.pair.reject", decision_params(&request_id))
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
                let rejected: PairRejected = decode("device.pair.reject", &res)?;
                crate::say!("Rejected {}", rejected.device_id);
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
                crate::say!("Removed {device_id}");
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
                let renamed: PairRenamed = decode("device.pair.rename", &res)?;
                let label = Some(renamed.label.as_str()).filter(|l| !l.is_empty());
                crate::say!("Renamed {device} → {}", label.unwrap_or(&name));
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
                let rotated: TokenRotated = decode("device.token.rotate", &res)?;
                crate::say!(
                    "Rotated the {role} token of {device} (scopes: {}).",
                    list_text(&rotated.scopes)
                );
                if rotated.token.is_none() {
                    crate::say!(
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
                crate::say!(
                    "Revoked the {role} token of {device}; its {role} sessions were closed."
                );
                crate::say!(
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
            let list: PairList = decode("device.pair.list", &list)?;
            let mut removed = 0;
            for d in &list.paired {
                call(
                    &s,
                    &ctx,
                    "device.pair.remove",
                    json!({"deviceId": d.device_id}),
                )
                .await?;
                removed += 1;
            }
            let mut rejected = 0;
            if pending {
                for r in &list.pending {
                    call(
                        &s,
                        &ctx,
                        "device.pair.reject",
                        json!({"requestId": r.request_id}),
                    )
                    .await?;
                    rejected += 1;
                }
            }
            if target.json {
                print_json(&json!({"removedDevices": removed, "rejectedPending": rejected}));
            } else {
                crate::say!(
                    "Cleared {removed} paired device{}",
                    if removed == 1 { "" } else { "s" }
                );
                if pending {
                    crate::say!(
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

/// `device.pair.approve`/`reject` params for what the operator typed: a
/// pairing code when it has a code's shape, a request id otherwise.
fn decision_params(typed: &str) -> Value {
    serde_json::to_value(PairDecisionParams::from_input(typed)).unwrap_or_default()
}

/// The gateway's answer to an approve/reject for a request it does not have.
fn is_unknown_request(e: &clawgate_client::ClientError) -> bool {
    e.gateway_error()
        .is_some_and(|g| g.message.contains("unknown requestId"))
}

/// `approve --latest` / `approve` without an id: shows the newest pending
/// request and the exact command that approves it; exits 1 (nothing was
/// approved). `raw` is the `device.pair.list` result as received: `--json`
/// shows the selected request exactly as the gateway sent it.
fn preview_latest(raw: &Value, target: &Target) -> Result<u8, Failure> {
    let list: PairList = decode("device.pair.list", raw)?;
    let Some((index, req)) = list.pending.iter().enumerate().max_by_key(|(_, r)| r.ts) else {
        return Err(Failure::plain(
            "No pending device pairing requests to approve",
            "Have the device connect (it creates a request), then: clawgate devices approve --latest",
        ));
    };
    let rid = &req.request_id;
    let approved = list.paired.iter().find(|d| d.device_id == req.device_id);
    let kind = request_kind(req, approved);
    // The code is what the device shows; a reference gateway has none.
    let mut cmd = format!(
        "clawgate devices approve {}",
        req.pairing_code.as_deref().unwrap_or(rid)
    );
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
            "selected": raw["pending"][index],
            "approvalState": {
                "kind": kind,
                "requested": {"roles": req.roles, "scopes": req.scopes},
                "approved": approved.map(|d| json!({"roles": d.roles, "scopes": d.scopes})),
            },
            "approveCommand": cmd,
            "requiresAuthFlags": {"token": target.token.is_some(), "password": target.password.is_some()},
        }));
    } else {
        crate::say!("Selected pending device request {rid}");
        if let Some(code) = &req.pairing_code {
            crate::say!("  Code:      {code}");
        }
        crate::say!("  Device:    {}", req.name());
        crate::say!("  Requested: {}", requested_text(&req.roles, &req.scopes));
        if let Some(d) = approved {
            crate::say!("  Approved:  {}", requested_text(&d.roles, &d.scopes));
        }
        if let Some(ip) = &req.remote_ip {
            crate::say!("  IP:        {ip}");
        }
        crate::say!("  Note:      {note}");
        crate::say!("Approve this exact request with: {cmd}");
        if target.token.is_some() || target.password.is_some() {
            crate::say!("(Pass the same --token/--password value when you run it.)");
        }
    }
    Ok(1)
}

fn request_kind(req: &PendingPairing, approved: Option<&PairedDevice>) -> &'static str {
    match approved {
        None if req.is_repair => "re-approval",
        None => "new pairing",
        Some(d) if !d.roles.contains(&req.role) => "role upgrade",
        Some(_) => "scope upgrade",
    }
}

fn list_text(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

fn requested_text(roles: &[String], scopes: &[String]) -> String {
    format!("roles: {}; scopes: {}", list_text(roles), list_text(scopes))
}

/// How long ago `ts` (ms since the epoch) was: "just now", "5m ago"...
pub(crate) fn age(ts: u64) -> String {
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

fn print_list(list: &PairList) {
    let (pending, paired) = (&list.pending, &list.paired);
    if pending.is_empty() && paired.is_empty() {
        crate::say!("No device pairing entries.");
        return;
    }
    if !pending.is_empty() {
        crate::say!("Pending ({})", pending.len());
        let mut t = table(&[
            "Code",
            "Request",
            "Device",
            "Requested",
            "Approved",
            "Age",
            "Status",
        ]);
        for r in pending {
            let approved = paired
                .iter()
                .find(|d| d.device_id == r.device_id && d.public_key == r.public_key);
            let status = request_kind(r, approved);
            let mut device = r.name().to_string();
            if let Some(ip) = &r.remote_ip {
                device = format!("{device} · {ip}");
            }
            t.add_row(vec![
                r.pairing_code.clone().unwrap_or_else(|| "-".into()),
                r.request_id.clone(),
                device,
                requested_text(&r.roles, &r.scopes),
                approved
                    .map(|d| requested_text(&d.roles, &d.scopes))
                    .unwrap_or_else(|| "none".into()),
                age(r.ts),
                status.to_string(),
            ]);
        }
        crate::say!("{t}");
    }
    if !paired.is_empty() {
        crate::say!("Paired ({})", paired.len());
        let mut t = table(&[
            "Device",
            "Device ID",
            "Roles",
            "Scopes",
            "Tokens",
            "Last seen",
            "IP",
        ]);
        for d in paired {
            let tokens = d
                .tokens
                .iter()
                .map(|t| {
                    if t.is_revoked() {
                        format!("{} (revoked)", t.role)
                    } else {
                        t.role.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            let seen = match (d.connected, d.last_seen_at_ms) {
                (Some(true), _) => "connected".to_string(),
                (_, Some(ts)) => age(ts),
                _ => "never".to_string(),
            };
            t.add_row(vec![
                d.name().to_string(),
                d.device_id.clone(),
                list_text(&d.roles),
                list_text(&d.scopes),
                tokens,
                seen,
                d.remote_ip.clone().unwrap_or_default(),
            ]);
        }
        crate::say!("{t}");
        crate::say!("Full device IDs");
        for d in paired {
            crate::say!("  {}  {}", d.device_id, d.name());
        }
    }
}
