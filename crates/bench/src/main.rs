//! clawgate-bench: a load generator for any OpenClaw-protocol gateway on
//! this machine (clawgate or the reference). Every run is bounded in count
//! and time and prints one JSON line on stdout and a short summary on
//! stderr, including the bench's own CPU so a saturated load tool is not
//! mistaken for a slow server.

mod attack;
mod badauth;
mod conn;
mod floor;
mod handshake;
mod hold;
mod replicas;
mod report;
mod rpc;
mod soak;
mod startup;
// The one place unsafe code is allowed (workspace lint `unsafe_code = "deny"`):
// getrusage, sysconf, setsockopt and kill through libc.
#[allow(unsafe_code)]
mod sys;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use conn::{Auth, Target};

#[derive(Parser, Debug)]
#[command(
    name = "clawgate-bench",
    version,
    about = "Load generator for OpenClaw-protocol gateways on loopback (clawgate, OpenClaw)",
    after_help = "Prints one JSON line per run on stdout and a summary on stderr.\n\
                  Exit status: 0 the run completed, 1 nothing succeeded or the gateway was unreachable, 2 usage error."
)]
struct Cli {
    /// Gateway WebSocket URL; the host must be a loopback address.
    #[arg(long, global = true, default_value = "ws://127.0.0.1:18789")]
    url: String,
    /// Shared gateway token.
    #[arg(
        long,
        global = true,
        env = "CLAWGATE_BENCH_TOKEN",
        hide_env_values = true,
        conflicts_with = "password"
    )]
    token: Option<String>,
    /// Shared gateway password.
    #[arg(
        long,
        global = true,
        env = "CLAWGATE_BENCH_PASSWORD",
        hide_env_values = true
    )]
    password: Option<String>,
    /// Sample this process's CPU (/proc/PID/stat) and RSS (/proc/PID/status) around the run.
    #[arg(long, global = true, value_name = "PID")]
    server_pid: Option<u32>,
    /// Name copied into the JSON (e.g. clawgate, openclaw).
    #[arg(long, global = true, value_name = "NAME")]
    label: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// N full handshakes (TCP, upgrade, challenge, connect, hello-ok) with C workers.
    Handshake(HandshakeArgs),
    /// Hold K authenticated idle connections for T seconds; count survivors and server RSS.
    Hold(HoldArgs),
    /// R requests over C authenticated connections, up to 32 in flight on each.
    Rpc(RpcArgs),
    /// M wrong-token connects, sequential per source address; outcomes and server CPU per rejection.
    Badauth(BadauthArgs),
    /// Spawn a gateway command and time it to the first hello-ok.
    Startup(StartupArgs),
    /// Attacks on loopback: brute force and connection exhaustion, with a legitimate client measured alongside.
    Attack(attack::AttackArgs),
    /// Hold many authenticated connections with ticks, churn and RPCs; sample server RSS and fds.
    Soak(soak::SoakArgs),
    /// Replicas on one PostgreSQL registry: revocation/approval propagation, handshake CPU with PostgreSQL CPU.
    Replicas(replicas::ReplicasArgs),
    /// Serve handshakes doing only the socket work (the cost floor); measure it with the other subcommands.
    Floor(floor::FloorArgs),
}

#[derive(Args, Debug)]
pub struct HandshakeArgs {
    /// Number of handshakes.
    #[arg(short = 'n')]
    pub n: u64,
    /// Concurrent workers.
    #[arg(short = 'c')]
    pub c: usize,
    /// Present a signed device identity (v3 payload).
    #[arg(long, value_enum)]
    pub device: Option<DeviceMode>,
    /// Number of device keys (deterministic seeds, paired during warm-up).
    #[arg(long, default_value_t = 64)]
    pub device_pool: usize,
    /// Source addresses, round-robin, e.g. 127.0.0.1-8.
    #[arg(long, value_name = "RANGE")]
    pub src_ips: Option<String>,
    /// Stop starting handshakes after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub max_secs: f64,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceMode {
    V3,
}

#[derive(Args, Debug)]
pub struct HoldArgs {
    /// Connections to hold.
    #[arg(short = 'k')]
    pub k: u64,
    /// Seconds to hold them once connected.
    #[arg(long)]
    pub secs: f64,
    /// Source addresses, round-robin, e.g. 127.0.0.1-8.
    #[arg(long, value_name = "RANGE")]
    pub src_ips: Option<String>,
    /// Concurrent connects while opening.
    #[arg(long, default_value_t = 64)]
    pub connect_c: usize,
    /// Stop opening new connections after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub max_secs: f64,
    /// After closing them, sample the server's RSS for this many seconds
    /// (once a second): does the memory go back?
    #[arg(long, default_value_t = 0.0)]
    pub after_secs: f64,
}

#[derive(Args, Debug)]
pub struct RpcArgs {
    /// Connections.
    #[arg(short = 'c')]
    pub c: usize,
    /// Total requests.
    #[arg(short = 'r')]
    pub r: u64,
    /// Method to call.
    #[arg(long, default_value = "health")]
    pub method: String,
    /// Params as JSON.
    #[arg(long, default_value = "{}")]
    pub params: String,
    /// Stop sending after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub max_secs: f64,
}

#[derive(Args, Debug)]
pub struct BadauthArgs {
    /// Wrong-token attempts.
    #[arg(short = 'm')]
    pub m: u64,
    /// Source addresses (one sequential worker each), e.g. 127.0.0.1-8.
    #[arg(long, value_name = "RANGE")]
    pub src_ips: Option<String>,
    /// Stop after this many seconds and report what was done.
    #[arg(long, default_value_t = 60.0)]
    pub max_secs: f64,
    /// With --server-pid: first measure the server's idle CPU over this
    /// many seconds, and also report the CPU per rejection without it
    /// (`server_cpu_us_per_op_net`): the loopback delays stretch a run
    /// over seconds in which the server's own timers also run. 0: skip.
    #[arg(long, default_value_t = 5.0)]
    pub idle_secs: f64,
}

#[derive(Args, Debug)]
pub struct StartupArgs {
    /// Give up when no hello-ok arrived within this many seconds.
    #[arg(long, default_value_t = 60.0)]
    pub ready_timeout_secs: f64,
    /// The gateway command and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// What every subcommand gets.
pub struct Ctx {
    pub url: String,
    pub auth: Auth,
    pub server_pid: Option<u32>,
    pub label: Option<String>,
}

#[derive(Debug)]
pub enum BenchError {
    /// Bad flags or arguments: exit 2.
    Usage(String),
    /// Nothing succeeded, or the gateway was unreachable: exit 1.
    Failed(String),
}

pub fn usage(msg: impl Into<String>) -> BenchError {
    BenchError::Usage(msg.into())
}

/// Rejects non-positive or non-finite durations.
pub fn check_secs(flag: &str, v: f64) -> Result<Duration, BenchError> {
    if !(v.is_finite() && v > 0.0 && v < 1e7) {
        return Err(usage(format!(
            "{flag} must be a positive number of seconds"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

pub fn check_pos(flag: &str, v: u64) -> Result<(), BenchError> {
    if v == 0 {
        return Err(usage(format!("{flag} must be at least 1")));
    }
    Ok(())
}

/// A target for this run (URL already validated in `main`).
pub fn target(ctx: &Ctx, src_ips: Option<&str>) -> Result<Target, BenchError> {
    Target::new(&ctx.url, src_ips).map_err(usage)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = conn::parse_url(&cli.url) {
        eprintln!("clawgate-bench: {e}");
        return ExitCode::from(2);
    }
    if let Some(pid) = cli.server_pid
        && let Err(e) = sys::proc_sample(pid)
    {
        eprintln!("clawgate-bench: --server-pid {pid}: cannot read /proc/{pid}: {e}");
        return ExitCode::from(2);
    }
    sys::raise_nofile_limit();
    let auth = match (cli.token, cli.password) {
        (Some(t), _) => Auth::Token(t),
        (None, Some(p)) => Auth::Password(p),
        (None, None) => Auth::None,
    };
    let ctx = Ctx {
        url: cli.url,
        auth,
        server_pid: cli.server_pid,
        label: cli.label,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("clawgate-bench: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        match cli.cmd {
            Cmd::Handshake(a) => handshake::run(&ctx, a).await,
            Cmd::Hold(a) => hold::run(&ctx, a).await,
            Cmd::Rpc(a) => rpc::run(&ctx, a).await,
            Cmd::Badauth(a) => badauth::run(&ctx, a).await,
            Cmd::Startup(a) => startup::run(&ctx, a).await,
            Cmd::Attack(a) => attack::run(&ctx, a).await,
            Cmd::Soak(a) => soak::run(&ctx, a).await,
            Cmd::Replicas(a) => replicas::run(&ctx, a).await,
            Cmd::Floor(a) => floor::run(&ctx, a).await,
        }
    });
    // Sockets still closing in the background must not delay the exit.
    rt.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(BenchError::Usage(m)) => {
            eprintln!("clawgate-bench: {m}");
            ExitCode::from(2)
        }
        Err(BenchError::Failed(m)) => {
            eprintln!("clawgate-bench: {m}");
            ExitCode::from(1)
        }
    }
}
