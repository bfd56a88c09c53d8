//! Commands that read the local gateway's configuration: `clawgate
//! dashboard` and `clawgate gateway auth-token`.

use clap::Args;

use crate::Paths;

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Print the URL without opening a browser.
    #[arg(long)]
    no_open: bool,
    /// Put the gateway token in the URL fragment (#token=...).
    #[arg(long)]
    show_token: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct AuthTokenArgs {
    /// Confirm that the token may be printed to this terminal.
    #[arg(long)]
    show: bool,
}

pub fn dashboard(args: DashboardArgs, paths: &Paths) -> u8 {
    let _ = (args, paths);
    eprintln!("not built yet");
    1
}

pub fn auth_token(args: AuthTokenArgs, paths: &Paths) -> u8 {
    let _ = (args, paths);
    eprintln!("not built yet");
    1
}
