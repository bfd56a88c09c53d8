//! The `clawgate` binary: `gateway run` and the operator commands.

mod alloc;
mod backup_cmd;
mod config_cmd;
mod devices_cmd;
mod doctor_cmd;
mod explain_cmd;
mod gateway_cmd;
mod gateway_tls;
mod invocation;
mod local_cmd;
mod manual_cmd;
mod net;
mod ops_cmd;
mod passkeys_cmd;
mod password_cmd;
mod service_cmd;
mod setup_code_cmd;
mod store_cmd;
mod upstream_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// `--version`: the crate version, the git commit (`-dirty` when the tree
/// had changes) and the UTC build date, stamped by build.rs.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("CLAWGATE_GIT_COMMIT"),
    " ",
    env!("CLAWGATE_BUILD_DATE"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "clawgate",
    version = VERSION,
    about = "A fast, hardened OpenClaw gateway control plane",
    propagate_version = true
)]
struct Cli {
    /// State directory (default: $CLAWGATE_STATE_DIR or ~/.clawgate).
    #[arg(long, global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Config file (default: <state-dir>/clawgate.json). An openclaw.json works too.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run and manage the gateway.
    Gateway {
        #[command(subcommand)]
        command: gateway_cmd::GatewayCommand,
    },
    /// Pending pairing requests and paired devices.
    Devices {
        #[command(subcommand)]
        command: devices_cmd::DevicesCommand,
        #[command(flatten)]
        target: net::Target,
    },
    /// Passkeys that sign a browser in to the Control UI: list and remove.
    Passkeys {
        #[command(subcommand)]
        command: passkeys_cmd::PasskeysCommand,
        #[command(flatten)]
        target: net::Target,
    },
    /// Fronting mode: pair clawgate with the OpenClaw gateway it fronts, and check it.
    Upstream {
        #[command(subcommand)]
        command: upstream_cmd::UpstreamCommand,
    },
    /// Read and change the configuration file.
    Config {
        #[command(subcommand)]
        command: config_cmd::ConfigCommand,
    },
    /// The Control UI URL for the local gateway (the token only with --show-token).
    Dashboard(local_cmd::DashboardArgs),
    /// What an error code means, why it happens and the command that fixes it.
    Explain(explain_cmd::ExplainArgs),
    /// Check the local setup end to end and print the command that fixes each problem.
    Doctor(doctor_cmd::DoctorArgs),
    /// Whether the gateway answers and is healthy.
    Health(ops_cmd::NetArgs),
    /// The gateway's version, uptime, auth mode and connections.
    Status(ops_cmd::NetArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(manual_cmd::CompletionsArgs),
    /// Print the man page, or write one per command with --out DIR.
    Man(manual_cmd::ManArgs),
    /// Pair this host's CLI with a gateway by redeeming a setup code once.
    Pair(setup_code_cmd::PairArgs),
    /// Write a consistent copy of the device registry to FILE (safe while the gateway runs).
    Backup(backup_cmd::BackupArgs),
    /// Replace the device registry with a backup (the gateway must be stopped); --check only checks it.
    Restore(backup_cmd::RestoreArgs),
    /// The device registry's database: copy it into PostgreSQL for replicas.
    Store {
        #[command(subcommand)]
        command: store_cmd::StoreCommand,
    },
}

/// Where the state directory and config file are, from the global flags.
#[derive(Debug, Clone)]
pub struct Paths {
    pub state_dir: PathBuf,
    pub config: PathBuf,
}

impl Paths {
    fn from_flags(state_dir: Option<PathBuf>, config: Option<PathBuf>) -> Paths {
        let state_dir = state_dir.unwrap_or_else(clawgate_gateway::config::default_state_dir);
        let config =
            config.unwrap_or_else(|| state_dir.join(clawgate_gateway::config::CONFIG_FILE_NAME));
        Paths { state_dir, config }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let paths = Paths::from_flags(cli.state_dir, cli.config);
    let result = match cli.command {
        Command::Gateway { command } => gateway_cmd::run(command, &paths),
        Command::Config { command } => config_cmd::run(command, &paths),
        Command::Upstream { command } => upstream_cmd::run(command, &paths),
        Command::Devices { command, target } => devices_cmd::run(command, target, &paths),
        Command::Passkeys { command, target } => passkeys_cmd::run(command, target, &paths),
        Command::Dashboard(args) => Ok(local_cmd::dashboard(args, &paths)),
        Command::Explain(args) => Ok(explain_cmd::run(args)),
        Command::Doctor(args) => doctor_cmd::run(args, &paths),
        Command::Health(args) => ops_cmd::health(args, &paths),
        Command::Status(args) => ops_cmd::status(args, &paths),
        Command::Completions(args) => manual_cmd::completions(args, Cli::command()),
        Command::Man(args) => manual_cmd::man(args, Cli::command()),
        Command::Pair(args) => setup_code_cmd::pair(args, &paths),
        Command::Backup(args) => backup_cmd::backup(args, &paths),
        Command::Restore(args) => backup_cmd::restore(args, &paths),
        Command::Store { command } => store_cmd::run(command, &paths),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let text = format!("{err:#}");
            eprintln!("error: {}", invocation::localize(&text));
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Hints are recognised by their subcommand: the list must be complete.
    #[test]
    fn hint_words_are_the_subcommands() {
        let mut names: Vec<String> = super::Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect();
        names.push("help".into());
        names.sort();
        let mut listed: Vec<String> = crate::invocation::SUBCOMMANDS
            .iter()
            .map(|s| s.to_string())
            .collect();
        listed.sort();
        assert_eq!(names, listed);
    }
}
