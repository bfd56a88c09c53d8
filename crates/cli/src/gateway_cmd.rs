//! `clawgate gateway ...`: running the gateway.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use clawgate_gateway::config::{self, ConfigFile, EnvOverrides, RunOverrides};
use clawgate_gateway::notify::Notifier;
use clawgate_gateway::{Gateway, RuntimeOptions};
use clawgate_protocol::Secret;
use tracing::{info, warn};

use crate::Paths;

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Run the gateway in the foreground.
    Run(RunArgs),
    /// Print the local gateway's shared token (needs --show and a terminal).
    AuthToken(crate::local_cmd::AuthTokenArgs),
    /// Store the gateway password as an Argon2id hash (prompt, --stdin or --generate).
    SetPassword(crate::password_cmd::SetPasswordArgs),
    /// Call one gateway method and print its result.
    Call(crate::ops_cmd::CallArgs),
    /// Check that the gateway answers and accepts these credentials (exit 1 if not).
    Probe(crate::ops_cmd::NetArgs),
    /// Whether the gateway answers and is healthy.
    Health(crate::ops_cmd::NetArgs),
    /// The gateway's version, uptime, auth mode and connections.
    Status(crate::ops_cmd::NetArgs),
    /// Stay connected and print gateway events; reconnects, and stops on auth failures.
    Watch(crate::ops_cmd::WatchArgs),
    /// Install the gateway as a systemd service (a user unit; --system for a system unit).
    Install(crate::service_cmd::InstallArgs),
    /// Stop, disable and remove the systemd unit (the state directory is kept).
    Uninstall(crate::service_cmd::ServiceArgs),
    /// Start the installed service.
    Start(crate::service_cmd::ServiceArgs),
    /// Stop the installed service.
    Stop(crate::service_cmd::ServiceArgs),
    /// Restart the installed service.
    Restart(crate::service_cmd::ServiceArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Port for HTTP and WebSocket (default 18789; 0 picks a free port).
    #[arg(long)]
    port: Option<u16>,
    /// Where to listen: loopback (127.0.0.1), lan (0.0.0.0) or custom (--host).
    #[arg(long, value_parser = ["loopback", "lan", "custom"])]
    bind: Option<String>,
    /// Address to bind with --bind custom.
    #[arg(long)]
    host: Option<String>,
    /// Auth mode: token, password, trusted-proxy (identity from an SSO proxy
    /// in gateway.trustedProxies; see gateway.auth.trustedProxy) or none
    /// (none only on loopback).
    #[arg(long, value_parser = ["token", "password", "trusted-proxy", "none"])]
    auth: Option<String>,
    /// Shared token (prefer --token-file or CLAWGATE_GATEWAY_TOKEN: flags show up in `ps`).
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Read the shared token from a file.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Shared password (prefer --password-file or CLAWGATE_GATEWAY_PASSWORD).
    #[arg(long, value_name = "PASSWORD")]
    password: Option<String>,
    /// Read the shared password from a file.
    #[arg(long, value_name = "PATH")]
    password_file: Option<PathBuf>,
    /// Front this OpenClaw gateway (ws://127.0.0.1:18790): every
    /// authenticated client is relayed to it (config gateway.upstream.url;
    /// pair first with `clawgate upstream pair`).
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// Serve https:// and wss:// on the same port (config gateway.tls.*;
    /// without gateway.tls.certPath a self-signed certificate is generated
    /// once into <state-dir>/tls).
    #[arg(long)]
    tls: bool,
    /// Keep the device registry in PostgreSQL, shared by replicas
    /// (postgres://USER@HOST:5432/DB; config gateway.store.url or
    /// CLAWGATE_STORE_URL; the password from gateway.store.passwordFile,
    /// CLAWGATE_STORE_PASSWORD_FILE or ~/.pgpass). Default: the SQLite file
    /// in the state directory.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

pub fn run(command: GatewayCommand, paths: &Paths) -> anyhow::Result<u8> {
    match command {
        GatewayCommand::Run(args) => run_gateway(args, paths),
        GatewayCommand::AuthToken(args) => Ok(crate::local_cmd::auth_token(args, paths)),
        GatewayCommand::SetPassword(args) => crate::password_cmd::set_password(args, paths),
        GatewayCommand::Call(args) => crate::ops_cmd::call(args, paths),
        GatewayCommand::Probe(args) => crate::ops_cmd::probe(args, paths),
        GatewayCommand::Health(args) => crate::ops_cmd::health(args, paths),
        GatewayCommand::Status(args) => {
            let json_out = args.target.json;
            let code = crate::ops_cmd::status(args, paths)?;
            // The service manager's view, also (above all) when the gateway
            // does not answer; JSON output stays the status call's alone.
            if !json_out {
                crate::say!("{:<12} {}", "Service", crate::service_cmd::status_line());
            }
            Ok(code)
        }
        GatewayCommand::Watch(args) => crate::ops_cmd::watch(args, paths),
        GatewayCommand::Install(args) => crate::service_cmd::install(args, paths),
        GatewayCommand::Uninstall(args) => crate::service_cmd::uninstall(args),
        GatewayCommand::Start(args) => crate::service_cmd::control("start", args),
        GatewayCommand::Stop(args) => crate::service_cmd::control("stop", args),
        GatewayCommand::Restart(args) => crate::service_cmd::control("restart", args),
    }
}

/// Libraries that log whole frames or requests at debug/trace (tungstenite
/// prints every received message, connect params and tokens included) are
/// capped at info whatever `CLAWGATE_LOG` asks for: a secret must never
/// reach a log line at any level.
const CAPPED_LIBRARIES: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "axum",
    "rusqlite",
];

fn init_logging(format: LogFormat) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("CLAWGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for lib in CAPPED_LIBRARIES {
        if let Ok(directive) = format!("{lib}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(log_colors(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Colours only on a terminal, and not when `NO_COLOR` is set to anything
/// (no-color.org): a journal, a file or a pipe gets plain text.
fn log_colors(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

fn env_duration_ms(names: &[&str]) -> Option<Duration> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

/// Raises the open-file soft limit to the hard limit: every connection is
/// a descriptor, and the usual soft default (1024) would cap the gateway
/// long before memory does. Returns the limit in force.
fn raise_fd_limit() -> Option<u64> {
    // When raising fails, the limit in force is still worth reporting.
    rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|_| rlimit::Resource::NOFILE.get().map(|(soft, _)| soft))
        .ok()
}

fn run_gateway(args: RunArgs, paths: &Paths) -> anyhow::Result<u8> {
    init_logging(args.log_format);
    if let Some(limit) = raise_fd_limit() {
        tracing::debug!(limit, "open file limit");
        if limit < 4096 {
            warn!(
                limit,
                "open file limit is low; the gateway can hold at most about this many connections (raise it with ulimit -n)"
            );
        }
    }
    let overrides = RunOverrides {
        port: args.port,
        bind: args.bind,
        host: args.host,
        auth: args.auth,
        token: args.token.map(Secret::new),
        token_file: args.token_file,
        password: args.password.map(Secret::new),
        password_file: args.password_file,
        upstream: args.upstream,
        tls: args.tls,
        store: args.store.map(Secret::new),
    };
    let env = EnvOverrides::from_process_env();
    let reload_overrides = overrides.clone();
    let mut file = ConfigFile::load(&paths.config)?;
    let generated = config::ensure_first_run_token(&mut file, &overrides, &env)?;
    let cfg = match config::resolve(&file, &paths.state_dir, &overrides, &env) {
        Ok(cfg) => cfg,
        Err(err) => {
            crate::say_err!("error: refusing to start: {err}");
            crate::say_err!("Config file: {}", paths.config.display());
            return Ok(1);
        }
    };
    let mut options = RuntimeOptions::default();
    if let Some(d) = env_duration_ms(&[
        "CLAWGATE_HANDSHAKE_TIMEOUT_MS",
        "OPENCLAW_HANDSHAKE_TIMEOUT_MS",
    ]) {
        options.handshake_timeout = d;
    }
    options.tick_interval = cfg.tick_interval;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(crate::alloc::on_worker_park)
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let gateway = match Gateway::bind(cfg.clone(), options).await {
            Ok(g) => g,
            // Not a socket error: the store did not open (its message names
            // the file and what to do).
            Err(err) if err.kind() == std::io::ErrorKind::Other => {
                crate::say_err!("error: refusing to start: {err}");
                return Ok(1);
            }
            Err(err) => {
                crate::say_err!(
                    "error: cannot listen on {}:{}: {err}. Is another gateway running? Check with: clawgate status",
                    cfg.bind.address(),
                    cfg.port
                );
                return Ok(1);
            }
        };
        let addr = gateway.local_addr()?;
        let tls = gateway.state().tls().map(|t| t.info());
        let (ws, http) = crate::gateway_tls::schemes(tls.is_some());
        let http = format!("{http}://{addr}/");
        let shutdown = shutdown_signal().context("cannot install the signal handlers")?;
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot install the SIGHUP handler")?;
        let notifier = Notifier::from_env();
        let ready = notifier.clone();
        // The watchdog is fed from READY=1 on (the service manager arms it
        // then), by a task on the same runtime that serves.
        let gateway = gateway.when_serving(move || {
            ready.ready(&format!("listening on {ws}://{addr}"));
            tokio::spawn(ready.watchdog_loop());
        });
        info!(listen = %addr, auth = cfg.auth.mode.as_str(), "gateway listening");
        for warning in cfg.auth.startup_warnings() {
            warn!("{warning}");
        }
        crate::say!("clawgate {} listening on {ws}://{addr}", clawgate_gateway::VERSION);
        if let Some(info) = &tls {
            crate::gateway_tls::announce(info);
        }
        match generated {
            Some(token) if std::io::stdout().is_terminal() => {
                crate::say!("Generated a gateway token and saved it to {}.", paths.config.display());
                crate::say!("Open the dashboard: {http}#token={}", token.expose());
            }
            Some(_) => {
                crate::say!("Generated a gateway token and saved it to {}.", paths.config.display());
                crate::say!("Dashboard: {http} (show the token in a terminal with: clawgate gateway auth-token --show)");
            }
            None => crate::say!("Dashboard: {http}"),
        }
        if cfg.upstream.is_some() {
            // What people open is clawgate's address, never the upstream's
            // (a missing pairing is logged by the gateway at start).
            crate::say!("Fronting an OpenClaw gateway: its Control UI at {http}, clawgate's own at {http}clawgate/");
        }
        let state = gateway.state();
        let reload_paths = paths.clone();
        let reload_notifier = notifier.clone();
        tokio::spawn(reload_on_change(
            state,
            reload_paths,
            reload_overrides,
            hangup,
            reload_notifier,
            addr,
        ));
        gateway
            .serve(async move {
                shutdown.await;
                notifier.stopping();
            })
            .await?;
        info!("gateway stopped");
        Ok::<u8, anyhow::Error>(0)
    })
}

/// SIGINT and SIGTERM, caught from the moment this is called: installed
/// before the gateway says it listens, so a supervisor (or test) that
/// signals right after that line gets a graceful shutdown, not the
/// default action's abrupt exit.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => info!("SIGINT received, shutting down"),
            _ = term.recv() => info!("SIGTERM received, shutting down"),
        }
    })
}

/// SIGHUP, or a change to the config file, re-reads the auth settings;
/// when the shared secret or mode changed, sessions that authenticated with
/// the old secret are closed with 4001 "gateway auth changed".
async fn reload_on_change(
    state: std::sync::Arc<clawgate_gateway::GatewayState>,
    paths: Paths,
    overrides: RunOverrides,
    mut hup: tokio::signal::unix::Signal,
    notifier: Notifier,
    addr: std::net::SocketAddr,
) {
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen = modified(&paths.config);
    let mut poll = tokio::time::interval(Duration::from_secs(2));
    loop {
        let via = tokio::select! {
            _ = hup.recv() => "SIGHUP",
            _ = state.config_reload_requested() => "another replica's secret change",
            _ = poll.tick() => {
                let now = modified(&paths.config);
                if now == seen {
                    continue;
                }
                seen = now;
                "config file change"
            }
        };
        // The service manager hears of reloads it asked for (SIGHUP is
        // `systemctl reload`), not of edits it did not.
        let signalled = via == "SIGHUP";
        if signalled {
            notifier.reloading();
        }
        let env = EnvOverrides::from_process_env();
        let result = ConfigFile::load(&paths.config)
            .and_then(|f| config::resolve(&f, &paths.state_dir, &overrides, &env));
        match result {
            Ok(cfg) => match state.apply_auth_config(cfg.auth, via) {
                Some(closed) => {
                    info!(
                        closed,
                        via, "shared secret changed; closed sessions that used the old one"
                    )
                }
                None => info!(via, "config reloaded; auth unchanged"),
            },
            Err(err) => warn!(%err, via, "config reload failed; keeping the running settings"),
        }
        if signalled {
            notifier.ready(&format!("listening on ws://{addr}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_colors;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(log_colors(true, None));
        assert!(log_colors(true, Some("".into())));
        assert!(!log_colors(true, Some("1".into())));
        assert!(!log_colors(false, None));
        assert!(!log_colors(false, Some("".into())));
    }
}
