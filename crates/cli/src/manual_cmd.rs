//! `clawgate completions SHELL` and `clawgate man`: shell completions and
//! man pages generated from the same clap definitions the parser uses, so
//! they cannot drift from the real flags.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use clap_complete::Shell;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command (clawgate.1, clawgate-gateway.1,
    /// clawgate-gateway-run.1, ...) into this directory; without it the
    /// top page goes to stdout.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Prints the completion script for `args.shell` to stdout.
pub fn completions(args: CompletionsArgs, mut cmd: clap::Command) -> anyhow::Result<u8> {
    let name = cmd.get_name().to_string();
    clap_complete::generate(args.shell, &mut cmd, name, &mut std::io::stdout());
    Ok(0)
}

/// Writes the man pages.
pub fn man(args: ManArgs, cmd: clap::Command) -> anyhow::Result<u8> {
    let Some(dir) = args.out else {
        clap_mangen::Man::new(cmd)
            .render(&mut std::io::stdout())
            .context("cannot write the man page")?;
        return Ok(0);
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(cmd, &dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
    let mut pages: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("clawgate") && n.ends_with(".1"))
        .collect();
    pages.sort();
    println!("Wrote {} man pages to {}", pages.len(), dir.display());
    println!("Read one with: man -l {}", dir.join("clawgate.1").display());
    Ok(0)
}
