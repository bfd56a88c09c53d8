//! Reaching a gateway from the CLI: the common flags, credentials, the
//! client identity, and failures printed with the next command to run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use clawgate_client::{
    Client, ClientError, ClientInfo, ConnectOptions, DeviceIdentity, Endpoint, FileTokenCache,
    Fingerprint,
};
use clawgate_gateway::config::{self, AuthMode, ConfigFile, EnvOverrides, RunOverrides};
use clawgate_protocol::{Secret, catalogue, scopes};
use serde_json::{Value, json};

use crate::Paths;

/// Where and how to reach the gateway.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Gateway WebSocket URL (default: the local gateway from the config).
    /// With --url, config credentials are not used: pass --token or --password.
    #[arg(long, global = true, env = "CLAWGATE_GATEWAY_URL")]
    pub url: Option<String>,
    /// Shared gateway token (the environment variable keeps it out of `ps`).
    #[arg(
        long,
        global = true,
        env = "CLAWGATE_GATEWAY_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Shared gateway password.
    #[arg(
        long,
        global = true,
        env = "CLAWGATE_GATEWAY_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Timeout in milliseconds for connecting and for each request.
    #[arg(long, global = true, default_value_t = 10_000)]
    pub timeout: u64,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Pin the wss:// certificate to this SHA-256 fingerprint (hex, colons allowed).
    #[arg(long, global = true, value_name = "SHA256")]
    pub tls_fingerprint: Option<String>,
}

/// The CLI's client state: `<state-dir>/client` (identity and device tokens).
pub fn client_dir(paths: &Paths) -> PathBuf {
    paths.state_dir.join("client")
}

/// A failure shown to the user: what happened and the next command.
#[derive(Debug)]
pub struct Failure {
    pub code: Option<String>,
    pub message: String,
    pub details: Option<Box<Value>>,
    pub retry_after_ms: Option<u64>,
    pub next: String,
}

impl Failure {
    pub fn plain(message: impl Into<String>, next: impl Into<String>) -> Failure {
        Failure {
            code: None,
            message: message.into(),
            details: None,
            retry_after_ms: None,
            next: next.into(),
        }
    }

    /// A client error, with the next command for this gateway and device.
    pub fn from_client(err: ClientError, ctx: &Context) -> Failure {
        match err {
            ClientError::Gateway(e) => {
                let code = e.detail_code().map(str::to_owned);
                let entry = code.as_deref().and_then(catalogue::entry);
                let mut next = match entry {
                    Some(entry) => catalogue::next_command(entry, e.details.as_deref()),
                    None => format!(
                        "See what the gateway allows: clawgate explain {}",
                        code.as_deref().unwrap_or(&e.code)
                    ),
                };
                if let Some(id) = &ctx.device_id {
                    next = next.replace("<deviceId>", id);
                }
                if let Some(after) = e.retry_after_ms {
                    next = format!("Retry in {} s. {next}", after.div_ceil(1000));
                }
                Failure {
                    code: code.or(Some(e.code.clone())),
                    message: e.message.clone(),
                    details: e.details.clone(),
                    retry_after_ms: e.retry_after_ms,
                    next,
                }
            }
            ClientError::Unreachable { .. } | ClientError::Timeout(_)
                if ctx.local || Endpoint::parse(&ctx.url).is_ok_and(|ep| ep.is_loopback()) =>
            {
                Failure::plain(
                    err.to_string(),
                    format!(
                        "Start the gateway on this host with: clawgate gateway run (or check the URL {})",
                        ctx.url
                    ),
                )
            }
            ClientError::Unreachable { .. } | ClientError::Timeout(_) => Failure::plain(
                err.to_string(),
                format!(
                    "Check that the gateway runs at {} and the URL is right (on its host: clawgate gateway status)",
                    ctx.url
                ),
            ),
            ClientError::Rejected { status: 403, .. } => Failure::plain(
                err.to_string(),
                "The gateway refused forwarded requests from this address; connect directly or add the proxy to gateway.trustedProxies: clawgate config set gateway.trustedProxies '[\"<proxy-ip>\"]'",
            ),
            ClientError::Rejected { status: 503, .. } => Failure::plain(
                err.to_string(),
                "The gateway is at its connection limit; retry in a few seconds.",
            ),
            ClientError::Tls(_) => Failure::plain(
                err.to_string(),
                "Check the certificate: pass its SHA-256 with --tls-fingerprint, or fix the URL",
            ),
            ClientError::Storage(_) => Failure::plain(
                err.to_string(),
                format!(
                    "Fix or move aside the files in {} (the device will need approval again)",
                    ctx.client_dir.display()
                ),
            ),
            other => Failure::plain(
                other.to_string(),
                "Retry; if it keeps failing, run: clawgate doctor",
            ),
        }
    }

    pub fn print(&self, json_out: bool) {
        let meaning = self
            .code
            .as_deref()
            .and_then(catalogue::entry)
            .map(|e| e.meaning);
        if json_out {
            let mut error = json!({"message": self.message});
            if let Some(c) = &self.code {
                error["code"] = json!(c);
            }
            if let Some(m) = meaning {
                error["meaning"] = json!(m);
            }
            error["next"] = json!(self.next);
            if let Some(d) = &self.details {
                error["details"] = (**d).clone();
            }
            if let Some(ms) = self.retry_after_ms {
                error["retryAfterMs"] = json!(ms);
            }
            println!("{}", json!({"ok": false, "error": error}));
        } else {
            match &self.code {
                Some(code) => eprintln!("error: {} [{code}]", self.message),
                None => eprintln!("error: {}", self.message),
            }
            if let Some(meaning) = meaning {
                eprintln!("{meaning}");
            }
            eprintln!("next: {}", self.next);
        }
    }
}

/// What a failure message needs to know about the connection.
#[derive(Debug, Clone)]
pub struct Context {
    pub url: String,
    /// The local gateway from the config (not --url).
    pub local: bool,
    pub device_id: Option<String>,
    pub client_dir: PathBuf,
    /// The connect only succeeded through the one device-token retry, after
    /// the gateway refused the shared secret with this code.
    pub recovered: Option<String>,
}

/// Connection options for `target`, asking for `needed` scopes.
///
/// Without `--url` this is the local gateway from the config, with its
/// secret, and no device identity (as the reference CLI does on loopback:
/// the gateway host's operator needs no pairing). With `--url` the CLI
/// presents its own device identity (created on first use in
/// `<state-dir>/client`), so it can be paired, holds a device token and can
/// recover from a changed shared token; config credentials are not reused.
pub fn options(
    target: &Target,
    paths: &Paths,
    needed: &[&str],
) -> Result<(ConnectOptions, Context), Failure> {
    let timeout = Duration::from_millis(target.timeout.max(1));
    let dir = client_dir(paths);
    let mut ctx = Context {
        url: String::new(),
        local: target.url.is_none(),
        device_id: None,
        client_dir: dir.clone(),
        recovered: None,
    };
    let fingerprint = match &target.tls_fingerprint {
        Some(fp) => Some(
            Fingerprint::parse(fp)
                .map_err(|e| Failure::plain(e, "Pass --tls-fingerprint <64 hex digits>"))?,
        ),
        None => None,
    };
    let mut opts = match &target.url {
        Some(url) => {
            let ep = Endpoint::parse(url).map_err(|e| {
                Failure::plain(e, "Pass a gateway URL such as --url ws://127.0.0.1:18789")
            })?;
            if target.token.is_none() && target.password.is_none() {
                return Err(Failure::plain(
                    "gateway URL override requires explicit credentials: pass --token or --password with --url, or set CLAWGATE_GATEWAY_TOKEN (config credentials are not used for other gateways)",
                    format!(
                        "Retry with the gateway's token: --url {} --token <token> (on the gateway host: clawgate gateway auth-token --show)",
                        ep.url()
                    ),
                ));
            }
            let mut opts = ConnectOptions::new(ep.url());
            opts.token = target.token.clone().map(Secret::new);
            opts.password = target.password.clone().map(Secret::new);
            let identity = DeviceIdentity::load_or_create(&dir).map_err(|e| {
                Failure::plain(
                    e.to_string(),
                    format!("Fix or move aside {}", dir.display()),
                )
            })?;
            ctx.device_id = Some(identity.device_id().to_string());
            opts.identity = Some(identity);
            opts.token_cache = Some(Arc::new(FileTokenCache::new(&dir)));
            opts
        }
        None => local_options(target, paths)?,
    };
    ctx.url = opts.url.clone();
    opts.client = ClientInfo {
        id: "cli".into(),
        display_name: Some("clawgate CLI".into()),
        mode: "cli".into(),
        ..ClientInfo::default()
    };
    opts.tls_fingerprint = fingerprint;
    opts.handshake_timeout = timeout;
    opts.request_timeout = timeout;
    opts.reconnect = false;
    opts.scopes = Some(requested_scopes(&opts, needed));
    Ok((opts, ctx))
}

/// The scopes to ask for: what the command needs plus what the cached
/// device token already holds, so a command never asks for less than the
/// device was approved for (which would churn its token) and a device that
/// already holds a scope is not sent back for approval.
fn requested_scopes(opts: &ConnectOptions, needed: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = needed.iter().map(|s| s.to_string()).collect();
    if let (Some(key), Some(cache)) = (opts.token_key(), &opts.token_cache)
        && let Ok(Some(cached)) = cache.load(&key)
    {
        out.extend(cached.scopes);
    }
    out.sort();
    out.dedup();
    out
}

fn local_options(target: &Target, paths: &Paths) -> Result<ConnectOptions, Failure> {
    let file = ConfigFile::load(&paths.config).map_err(|e| {
        Failure::plain(
            e.to_string(),
            format!(
                "Fix {} (check it with: clawgate doctor)",
                paths.config.display()
            ),
        )
    })?;
    let cfg = config::resolve(
        &file,
        &paths.state_dir,
        &RunOverrides::default(),
        &EnvOverrides::from_process_env(),
    )
    .map_err(|e| {
        Failure::plain(
            format!("cannot use the local config: {e}"),
            "Check it with: clawgate doctor",
        )
    })?;
    // A wildcard bind is reached on loopback; any other address as bound
    // (a gateway bound to 127.0.0.2 or ::1 only listens there).
    let host = match cfg.bind.address() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    let mut opts = ConnectOptions::new(format!("ws://{host}:{}/", cfg.port));
    match cfg.auth.mode {
        AuthMode::Token => {
            opts.token = target.token.clone().map(Secret::new).or(cfg.auth.token);
        }
        AuthMode::Password => {
            opts.password = target
                .password
                .clone()
                .map(Secret::new)
                .or(cfg.auth.password);
        }
        AuthMode::None => {}
    }
    Ok(opts)
}

/// Connects for a command that needs `needed` scopes.
pub async fn connect(
    target: &Target,
    paths: &Paths,
    needed: &[&str],
) -> Result<(Client, Context), Failure> {
    let (opts, mut ctx) = options(target, paths, needed)?;
    match Client::connect(opts).await {
        Ok(c) => {
            ctx.recovered = recovered(&c);
            if let Some(code) = &ctx.recovered {
                eprintln!(
                    "note: the gateway refused the shared secret ({code}); connected with this device's cached device token instead."
                );
                eprintln!(
                    "      Update the secret you pass (on the gateway host: clawgate gateway auth-token --show)."
                );
            }
            Ok((c, ctx))
        }
        Err(e) => Err(Failure::from_client(e, &ctx)),
    }
}

/// The code of the first failure when the connect only succeeded through
/// the one device-token retry (takes the client's event stream).
fn recovered(client: &Client) -> Option<String> {
    let mut events = client.events()?;
    let mut code = None;
    while let Ok(event) = events.try_recv() {
        if let clawgate_client::ClientEvent::Recovered { error, .. } = event {
            code = Some(error.detail_code().unwrap_or(&error.code).to_string());
        }
    }
    code
}

/// The scope a method needs (least privilege), for `gateway call`.
pub fn scopes_for_method(method: &str) -> Vec<&'static str> {
    match scopes::method_access(method) {
        scopes::MethodAccess::Anyone => vec![scopes::READ],
        scopes::MethodAccess::NodeOnly => vec![],
        scopes::MethodAccess::Operator(s) => vec![s],
    }
}

/// Runs one request and maps its failure.
pub async fn call(
    client: &Client,
    ctx: &Context,
    method: &str,
    params: Value,
) -> Result<Value, Failure> {
    client
        .request(method, params)
        .await
        .map_err(|e| Failure::from_client(e, ctx))
}

/// A result read as its protocol type (`clawgate_protocol::wire`).
pub fn decode<T: serde::de::DeserializeOwned>(method: &str, v: &Value) -> Result<T, Failure> {
    T::deserialize(v).map_err(|e| {
        Failure::plain(
            format!("unexpected {method} result from the gateway: {e}"),
            "Check that --url points at a clawgate or OpenClaw gateway, then retry",
        )
    })
}

pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// A command's exit code: 0/1 from the command, or 1 after printing its
/// failure.
pub fn finish(result: Result<u8, Failure>, json_out: bool) -> anyhow::Result<u8> {
    match result {
        Ok(code) => Ok(code),
        Err(failure) => {
            failure.print(json_out);
            Ok(1)
        }
    }
}

/// A current-thread runtime for one command.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}
