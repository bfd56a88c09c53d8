//! `clawgate explain [CODE]`: meaning, likely cause and next command for an
//! error code, from the one catalogue.

use clap::Args;

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// An error code such as AUTH_TOKEN_MISMATCH (case-insensitive). Without one, every code is listed.
    code: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ExplainArgs) -> u8 {
    let _ = (args.code, args.json);
    eprintln!("not built yet");
    1
}
