//! Setup codes: `clawgate devices setup-code [list|revoke]` mints, lists and
//! revokes them through the gateway (`device.setup.*`, operator.admin);
//! `clawgate pair --setup-code CODE` redeems one from this host, pairing the
//! CLI's own device identity and keeping the device token it is handed.

use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use clawgate_client::{
    Client, ClientInfo, ConnectOptions, DeviceIdentity, Endpoint, FileTokenCache, SetupPayload,
};
use serde_json::{Value, json};

use crate::Paths;
use crate::net::{self, Failure, Target, call, print_json};

/// `devices setup-code`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SetupCodeArgs {
    #[command(subcommand)]
    action: Option<SetupCodeAction>,
    /// The role the code pairs a device with.
    #[arg(long, value_parser = ["operator", "node"], default_value = "operator")]
    role: String,
    /// Operator scopes the code grants (comma-separated; default
    /// operator.read,operator.write; none for a node).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    scopes: Vec<String>,
    /// How long the code stays valid: 10m, 1h, 90s (1 minute to 24 hours).
    #[arg(long, default_value = "10m", value_parser = parse_ttl)]
    ttl: u64,
    /// A label shown in `devices setup-code list` and the audit log.
    #[arg(long, value_name = "LABEL")]
    name: Option<String>,
    /// The URL the device reaches the gateway at (default: the URL this
    /// command connects to).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Print no QR code.
    #[arg(long)]
    no_qr: bool,
}

#[derive(Debug, Subcommand)]
enum SetupCodeAction {
    /// Setup codes the gateway holds (live, used, revoked, not yet purged).
    List,
    /// Revoke a live setup code.
    Revoke { setup_id: String },
}

/// `10m`, `1h`, `90s`, `600` (seconds) as milliseconds.
fn parse_ttl(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 10m, 1h or 90s"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: use s, m or h (10m, 1h, 90s)")),
    };
    if !(60..=86_400).contains(&secs) {
        return Err("a setup code lives between 1 minute and 24 hours".into());
    }
    Ok(secs * 1000)
}

pub async fn execute(args: SetupCodeArgs, target: &Target, paths: &Paths) -> Result<u8, Failure> {
    let admin = &["operator.admin"][..];
    let (client, ctx) = net::connect(target, paths, admin).await?;
    match args.action {
        Some(SetupCodeAction::List) => {
            let list = call(&client, &ctx, "device.setup.list", json!({})).await?;
            if target.json {
                print_json(&list);
            } else {
                print_list(&list);
            }
            Ok(0)
        }
        Some(SetupCodeAction::Revoke { setup_id }) => {
            let res = call(
                &client,
                &ctx,
                "device.setup.revoke",
                json!({"setupId": setup_id}),
            )
            .await?;
            if target.json {
                print_json(&res);
            } else {
                crate::say!("Revoked setup code {setup_id}");
            }
            Ok(0)
        }
        None => {
            let scopes = if args.role == "operator" && args.scopes.is_empty() {
                vec!["operator.read".to_string(), "operator.write".to_string()]
            } else {
                args.scopes
            };
            let url = match args.public_url {
                Some(u) => Endpoint::parse(&u)
                    .map_err(|e| {
                        Failure::plain(e, "Pass --public-url ws://<host>:<port> or wss://...")
                    })?
                    .url(),
                None => ctx.url.clone(),
            };
            let mut params = json!({
                "role": args.role,
                "scopes": scopes,
                "ttlMs": args.ttl,
                "gatewayUrl": url,
            });
            if let Some(name) = args.name {
                params["label"] = json!(name);
            }
            let mut res = call(&client, &ctx, "device.setup.create", params).await?;
            let loopback = Endpoint::parse(&url).is_ok_and(|ep| ep.is_loopback());
            if target.json {
                if let Some(m) = res.as_object_mut() {
                    m.remove("qr");
                }
                print_json(&res);
            } else {
                print_created(&res, args.no_qr, loopback);
            }
            Ok(0)
        }
    }
}

fn print_created(res: &Value, no_qr: bool, loopback: bool) {
    let text = res["setupCode"].as_str().unwrap_or_default();
    let scopes: Vec<&str> = res["scopes"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let minutes = res["expiresAtMs"]
        .as_u64()
        .zip(res["createdAtMs"].as_u64())
        .map_or(0, |(e, c)| e.saturating_sub(c) / 60_000);
    crate::say!(
        "Setup code for role {} ({}), single use, valid for {minutes} min{}:",
        res["role"].as_str().unwrap_or("?"),
        if scopes.is_empty() {
            "no scopes".to_string()
        } else {
            scopes.join(", ")
        },
        res["label"]
            .as_str()
            .map(|l| format!(", label {l:?}"))
            .unwrap_or_default(),
    );
    if !no_qr && let Some(qr) = clawgate_protocol::setup_code::qr_terminal(text) {
        crate::say!("\n{qr}");
    }
    crate::say!("\n{text}\n");
    crate::say!(
        "Redeem it once on the device: scan the QR code in the OpenClaw app, or run there: clawgate pair --setup-code <code>"
    );
    crate::say!(
        "It carries {} and a one-time bootstrap token, never the gateway token.",
        res["gatewayUrl"].as_str().unwrap_or("?")
    );
    if loopback {
        crate::say!(
            "note: the URL in it is a loopback address, reachable only from this host; for a phone pass --public-url ws://<lan-address>:<port> (or wss://)."
        );
    }
    crate::say!(
        "Revoke it: clawgate devices setup-code revoke {}",
        res["setupId"].as_str().unwrap_or("?")
    );
}

fn print_list(list: &Value) {
    let codes = list["setupCodes"].as_array().cloned().unwrap_or_default();
    if codes.is_empty() {
        crate::say!("No setup codes. Create one with: clawgate devices setup-code --role operator");
        return;
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL);
    table.set_header(["Setup ID", "Label", "Role", "Scopes", "State", "Used by"]);
    for c in codes {
        let scopes: Vec<&str> = c["scopes"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        table.add_row([
            c["setupId"].as_str().unwrap_or(""),
            c["label"].as_str().unwrap_or(""),
            c["role"].as_str().unwrap_or(""),
            &scopes.join(", "),
            c["state"].as_str().unwrap_or(""),
            c["usedByDeviceId"].as_str().unwrap_or(""),
        ]);
    }
    crate::say!("{table}");
}

/// Records that this CLI was paired with `url`'s gateway by a setup code,
/// so `--url` there works with the cached device token alone (best effort:
/// without it, `--token` is still asked for).
fn remember_gateway(dir: &std::path::Path, url: &str) {
    let Ok(origin) = Endpoint::parse(url).map(|ep| ep.origin()) else {
        return;
    };
    let path = dir.join(net::SETUP_PAIRED_FILE);
    let mut lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    if !lines.contains(&origin) {
        lines.push(origin);
        let _ = std::fs::write(&path, lines.join("\n") + "\n");
    }
}

/// `clawgate pair --setup-code CODE`.
#[derive(Debug, Args)]
pub struct PairArgs {
    /// The setup code (or its oc-pair:// URL) from `clawgate devices setup-code`.
    #[arg(long, env = "CLAWGATE_SETUP_CODE", hide_env_values = true)]
    setup_code: String,
    /// The role the code was minted for.
    #[arg(long, value_parser = ["operator", "node"], default_value = "operator")]
    role: String,
    /// Timeout in milliseconds for the connect.
    #[arg(long, default_value_t = 10_000)]
    timeout: u64,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

pub fn pair(args: PairArgs, paths: &Paths) -> anyhow::Result<u8> {
    let json_out = args.json;
    net::finish(net::runtime().block_on(redeem(args, paths)), json_out)
}

async fn redeem(args: PairArgs, paths: &Paths) -> Result<u8, Failure> {
    let mut opts = ConnectOptions::from_setup_code(&args.setup_code).map_err(|e| {
        Failure::plain(
            format!("not a setup code: {e}"),
            "Copy the whole code printed by clawgate devices setup-code on the gateway host (or its oc-pair:// URL)",
        )
    })?;
    let url = SetupPayload::decode(&args.setup_code)
        .map(|p| p.url)
        .unwrap_or_default();
    let dir = net::client_dir(paths);
    let identity = DeviceIdentity::load_or_create(&dir).map_err(|e| {
        Failure::plain(
            e.to_string(),
            format!("Fix or move aside {}", dir.display()),
        )
    })?;
    let device_id = identity.device_id().to_string();
    opts.identity = Some(identity);
    opts.token_cache = Some(Arc::new(FileTokenCache::new(&dir)));
    opts.role = args.role.clone();
    opts.client = ClientInfo {
        id: "cli".into(),
        display_name: Some("clawgate CLI".into()),
        mode: "cli".into(),
        ..ClientInfo::default()
    };
    let timeout = Duration::from_millis(args.timeout.max(1));
    opts.handshake_timeout = timeout;
    opts.request_timeout = timeout;
    opts.reconnect = false;
    let ctx = net::Context {
        url: url.clone(),
        local: false,
        device_id: Some(device_id.clone()),
        client_dir: dir.clone(),
        recovered: None,
    };
    let client = Client::connect(opts)
        .await
        .map_err(|e| Failure::from_client(e, &ctx))?;
    let hello = client.hello();
    let auth = &hello["auth"];
    let scopes: Vec<String> = auth["scopes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    client.close().await;
    remember_gateway(&dir, &url);
    if args.json {
        print_json(&json!({
            "ok": true,
            "gatewayUrl": url,
            "deviceId": device_id,
            "role": auth["role"],
            "scopes": scopes,
            "tokenSaved": auth["deviceToken"].is_string(),
        }));
    } else {
        crate::say!(
            "Paired this device ({device_id}) with {url} as {} ({}); its device token is saved in {}.",
            auth["role"].as_str().unwrap_or("?"),
            if scopes.is_empty() {
                "no scopes".into()
            } else {
                scopes.join(", ")
            },
            dir.display()
        );
        crate::say!("Use it with: clawgate status --url {url}");
    }
    Ok(0)
}
