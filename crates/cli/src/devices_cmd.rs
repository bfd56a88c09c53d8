//! `clawgate devices ...`: list, approve, reject, remove, rename, rotate,
//! revoke and clear paired devices and pending requests.

use std::time::Duration;

use clap::{Args, Subcommand};
use clawgate_client::{ClientError, ConnectOptions, Session};
use clawgate_gateway::config::{self, AuthMode, ConfigFile, EnvOverrides, RunOverrides};
use clawgate_protocol::{Secret, catalogue};
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL};
use serde_json::{Value, json};

use crate::Paths;

/// Where and how to reach the gateway.
#[derive(Debug, Args)]
pub struct Target {
    /// Gateway WebSocket URL (default: the local gateway from the config).
    /// With --url, config credentials are not used: pass --token or --password.
    #[arg(long, global = true)]
    url: Option<String>,
    /// Shared token.
    #[arg(long, global = true)]
    token: Option<String>,
    /// Shared password.
    #[arg(long, global = true)]
    password: Option<String>,
    /// Per-step timeout in milliseconds.
    #[arg(long, global = true, default_value_t = 10_000)]
    timeout: u64,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Pending requests and paired devices.
    List,
    /// Approve a pending request (without an id, or with --latest: show the newest and the exact command).
    Approve {
        request_id: Option<String>,
        #[arg(long)]
        latest: bool,
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
    let json_out = target.json;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(execute(command, &target, paths)) {
        Ok(code) => Ok(code),
        Err(failure) => {
            failure.print(json_out);
            Ok(1)
        }
    }
}

/// A failure shown to the user: what happened and the next command.
struct Failure {
    code: Option<String>,
    message: String,
    details: Option<Box<Value>>,
    next: String,
}

impl Failure {
    fn plain(message: impl Into<String>, next: impl Into<String>) -> Failure {
        Failure {
            code: None,
            message: message.into(),
            details: None,
            next: next.into(),
        }
    }

    fn from_client(err: ClientError, url: &str) -> Failure {
        match err {
            ClientError::Gateway(e) => {
                let code = e.detail_code().map(str::to_owned);
                let entry = code.as_deref().and_then(catalogue::entry);
                let next = match entry {
                    Some(entry) => catalogue::next_command(entry, e.details.as_deref()),
                    None => "Check the request, then run: clawgate devices list".into(),
                };
                Failure {
                    code: code.or(Some(e.code.clone())),
                    message: e.message.clone(),
                    details: e.details.clone(),
                    next,
                }
            }
            ClientError::Unreachable { .. } | ClientError::Timeout(_) => Failure::plain(
                format!("{err}"),
                format!("Start the gateway with: clawgate gateway run (or check the URL {url})"),
            ),
            other => Failure::plain(
                other.to_string(),
                "Retry; if it persists, check the gateway log.",
            ),
        }
    }

    fn print(&self, json_out: bool) {
        if json_out {
            let mut error = json!({"message": self.message, "next": self.next});
            if let Some(c) = &self.code {
                error["code"] = json!(c);
            }
            if let Some(d) = &self.details {
                error["details"] = (**d).clone();
            }
            println!("{}", json!({"ok": false, "error": error}));
        } else {
            match &self.code {
                Some(code) => eprintln!("error: {} [{code}]", self.message),
                None => eprintln!("error: {}", self.message),
            }
            if let Some(meaning) = self
                .code
                .as_deref()
                .and_then(catalogue::entry)
                .map(|e| e.meaning)
            {
                eprintln!("{meaning}");
            }
            eprintln!("next: {}", self.next);
        }
    }
}

fn connect_options(
    target: &Target,
    paths: &Paths,
    scopes: &[&str],
) -> Result<ConnectOptions, Failure> {
    let timeout = Duration::from_millis(target.timeout.max(1));
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    if let Some(url) = &target.url {
        if target.token.is_none() && target.password.is_none() {
            return Err(Failure::plain(
                "pass --token or --password with --url (config credentials are not used for other gateways)",
                format!("clawgate devices list --url {url} --token <token>"),
            ));
        }
        return Ok(ConnectOptions {
            url: url.clone(),
            token: target.token.clone().map(Secret::new),
            password: target.password.clone().map(Secret::new),
            scopes,
            timeout,
        });
    }
    let file = ConfigFile::load(&paths.config)
        .map_err(|e| Failure::plain(e.to_string(), format!("Fix {}", paths.config.display())))?;
    let cfg = config::resolve(
        &file,
        &paths.state_dir,
        &RunOverrides::default(),
        &EnvOverrides::from_process_env(),
    )
    .map_err(|e| {
        Failure::plain(
            format!("cannot use the local config: {e}"),
            "clawgate config get gateway",
        )
    })?;
    let host = if cfg.bind.is_loopback() || cfg.bind.address().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        cfg.bind.address().to_string()
    };
    let (token, password) = match cfg.auth.mode {
        AuthMode::Token => (
            target.token.clone().map(Secret::new).or(cfg.auth.token),
            None,
        ),
        AuthMode::Password => (
            None,
            target
                .password
                .clone()
                .map(Secret::new)
                .or(cfg.auth.password),
        ),
        AuthMode::None => (None, None),
    };
    Ok(ConnectOptions {
        url: format!("ws://{host}:{}/", cfg.port),
        token,
        password,
        scopes,
        timeout,
    })
}

async fn session(
    target: &Target,
    paths: &Paths,
    scopes: &[&str],
) -> Result<(Session, String), Failure> {
    let opts = connect_options(target, paths, scopes)?;
    let s = Session::connect(&opts)
        .await
        .map_err(|e| Failure::from_client(e, &opts.url))?;
    Ok((s, opts.url))
}

async fn call(s: &mut Session, url: &str, method: &str, params: Value) -> Result<Value, Failure> {
    s.request(method, params)
        .await
        .map_err(|e| Failure::from_client(e, url))
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

async fn execute(command: DevicesCommand, target: &Target, paths: &Paths) -> Result<u8, Failure> {
    use DevicesCommand::*;
    let admin = &["operator.admin"][..];
    let pairing = &["operator.pairing"][..];
    match command {
        List => {
            let (mut s, url) = session(target, paths, pairing).await?;
            let list = call(&mut s, &url, "device.pair.list", json!({})).await?;
            if target.json {
                print_json(&list);
            } else {
                print_list(&list);
            }
            Ok(0)
        }
        Approve { request_id, latest } => {
            let (mut s, url) = session(target, paths, admin).await?;
            let id = match request_id.filter(|_| !latest) {
                Some(id) => id,
                None => {
                    let list = call(&mut s, &url, "device.pair.list", json!({})).await?;
                    let newest = list["pending"]
                        .as_array()
                        .and_then(|p| p.iter().max_by_key(|r| r["ts"].as_u64().unwrap_or(0)))
                        .cloned();
                    let Some(req) = newest else {
                        return Err(Failure::plain(
                            "no pending device pairing requests",
                            "clawgate devices list",
                        ));
                    };
                    let cmd = format!(
                        "clawgate devices approve {}",
                        req["requestId"].as_str().unwrap_or("")
                    );
                    if target.json {
                        print_json(&json!({"selected": req, "approveCommand": cmd}));
                    } else {
                        println!(
                            "Selected pending device request {}",
                            req["requestId"].as_str().unwrap_or("")
                        );
                        println!("  Device: {}", device_name(&req));
                        println!("  Requested: {}", requested_text(&req));
                        println!("Approve this exact request with: {cmd}");
                    }
                    return Ok(1);
                }
            };
            let res = call(
                &mut s,
                &url,
                "device.pair.approve",
                json!({"requestId": id}),
            )
            .await?;
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
            let (mut s, url) = session(target, paths, pairing).await?;
            let res = call(
                &mut s,
                &url,
                "device.pair.reject",
                json!({"requestId": request_id}),
            )
            .await?;
            if target.json {
                print_json(&res);
            } else {
                println!("Rejected {}", res["deviceId"].as_str().unwrap_or(""));
            }
            Ok(0)
        }
        Remove { device_id } => {
            let (mut s, url) = session(target, paths, pairing).await?;
            let res = call(
                &mut s,
                &url,
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
            let (mut s, url) = session(target, paths, pairing).await?;
            let res = call(
                &mut s,
                &url,
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
            let (mut s, url) = session(target, paths, admin).await?;
            let mut params = json!({"deviceId": device, "role": role});
            if no_scopes {
                params["scopes"] = json!([]);
            } else if !scopes.is_empty() {
                params["scopes"] = json!(scopes);
            }
            print_json(&call(&mut s, &url, "device.token.rotate", params).await?);
            Ok(0)
        }
        Revoke { device, role } => {
            let (mut s, url) = session(target, paths, admin).await?;
            print_json(
                &call(
                    &mut s,
                    &url,
                    "device.token.revoke",
                    json!({"deviceId": device, "role": role}),
                )
                .await?,
            );
            Ok(0)
        }
        Clear { yes, pending } => {
            if !yes {
                return Err(Failure::plain(
                    "refusing to clear devices without --yes",
                    "clawgate devices clear --yes",
                ));
            }
            let (mut s, url) = session(target, paths, admin).await?;
            let list = call(&mut s, &url, "device.pair.list", json!({})).await?;
            let mut removed = 0;
            for d in list["paired"].as_array().into_iter().flatten() {
                call(
                    &mut s,
                    &url,
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
                        &mut s,
                        &url,
                        "device.pair.reject",
                        json!({"requestId": r["requestId"]}),
                    )
                    .await?;
                    rejected += 1;
                }
            }
            if target.json {
                print_json(&json!({"removed": removed, "rejected": rejected}));
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
            let status = match approved {
                None if r["isRepair"] == true => "re-approval",
                None => "new pairing",
                Some(d)
                    if !d["roles"]
                        .as_array()
                        .is_some_and(|a| a.contains(&r["role"])) =>
                {
                    "role upgrade"
                }
                Some(_) => "scope upgrade",
            };
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
