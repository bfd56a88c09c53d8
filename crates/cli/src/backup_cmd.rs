//! `clawgate backup FILE` and `clawgate restore FILE`: a consistent copy
//! of the registry database taken while the gateway runs, and putting one
//! back while it does not. The work is the store's
//! (`clawgate_store::{backup, restore}`); this file takes the state
//! directory's lock for a restore and says what happened and what the
//! backup does not hold.

use std::path::PathBuf;

use clap::Args;
use clawgate_store::{BackupError, BackupSummary, DB_FILE_NAME, LockError, StateLock};

use crate::Paths;

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write the backup (refused if it exists, unless --force).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A file written by `clawgate backup`.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Only check FILE (what restore checks before it swaps); change nothing.
    #[arg(long, visible_alias = "dry-run")]
    check: bool,
}

pub fn backup(args: BackupArgs, paths: &Paths) -> anyhow::Result<u8> {
    let db = paths.state_dir.join(DB_FILE_NAME);
    // With no gateway running, hold the state directory for the copy (a
    // gateway starting meanwhile is refused until it is done), so the copy may tidy up
    // the WAL files it opens. A running gateway keeps it: copy alongside.
    let lock = db
        .is_file()
        .then(|| StateLock::acquire(&paths.state_dir).ok())
        .flatten();
    let summary = match clawgate_store::backup(&db, &args.file, args.force, lock.as_ref()) {
        Ok(s) => s,
        Err(e) => return Ok(refuse("no backup written", &e)),
    };
    let file = args.file.display();
    crate::say!("Wrote {file} ({}, mode 0600)", size(summary.bytes));
    crate::say!("  {}", contents(&summary));
    crate::say!(
        "  verified: integrity ok, audit chain of {} rows verifies",
        summary.audit_rows
    );
    crate::say!("{}", not_included(paths));
    crate::say!(
        "It holds token hashes: keep it private. Restore it with the gateway stopped: clawgate restore {file}"
    );
    Ok(0)
}

pub fn restore(args: RestoreArgs, paths: &Paths) -> anyhow::Result<u8> {
    let file = args.file.display();
    if args.check {
        let scratch = if paths.state_dir.is_dir() {
            paths.state_dir.clone()
        } else {
            std::env::temp_dir()
        };
        return Ok(match clawgate_store::check_backup(&args.file, &scratch) {
            Ok(summary) => {
                crate::say!("{file} can be restored");
                crate::say!("  {}", contents(&summary));
                crate::say!(
                    "  integrity ok, audit chain of {} rows verifies",
                    summary.audit_rows
                );
                crate::say!("Restore it with the gateway stopped: clawgate restore {file}");
                0
            }
            Err(e) => refuse("it cannot be restored", &e),
        });
    }
    let _lock = match StateLock::acquire(&paths.state_dir) {
        Ok(lock) => lock,
        Err(e @ LockError::Held { .. }) => {
            crate::say_err!(
                "error: cannot restore while the gateway runs: {e}; then run: clawgate restore {file}"
            );
            return Ok(1);
        }
        Err(e) => {
            crate::say_err!("error: cannot restore: {e}");
            return Ok(1);
        }
    };
    let db = paths.state_dir.join(DB_FILE_NAME);
    let stamp = clawgate_store::utc_stamp(std::time::SystemTime::now());
    let outcome = match clawgate_store::restore(&args.file, &db, &stamp) {
        Ok(o) => o,
        Err(e) => return Ok(refuse("nothing restored", &e)),
    };
    crate::say!("Restored {file} to {}", db.display());
    crate::say!("  {}", contents(&outcome.summary));
    crate::say!(
        "  checked first: integrity ok, audit chain of {} rows verifies",
        outcome.summary.audit_rows
    );
    match &outcome.kept {
        Some(kept) => crate::say!("The previous database is kept as {}", kept.display()),
        None => crate::say!("There was no database before."),
    }
    crate::say!(
        "Devices paired and tokens issued after the backup was taken no longer work; they pair again."
    );
    crate::say!("Start the gateway: clawgate gateway run");
    Ok(0)
}

/// One line on stderr, exit 1.
fn refuse(outcome: &str, e: &BackupError) -> u8 {
    crate::say_err!("error: {outcome}: {e}");
    1
}

fn contents(s: &BackupSummary) -> String {
    format!(
        "{} paired {}, {} device tokens (as hashes), {} pending {}, {} audit rows, schema version {}",
        s.devices,
        plural(s.devices, "device", "devices"),
        s.token_hashes,
        s.pending,
        plural(s.pending, "request", "requests"),
        s.audit_rows,
        s.schema_version
    )
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// What a backup of the registry does not hold, named so users keep
/// copies of those themselves.
fn not_included(paths: &Paths) -> String {
    let upstream = clawgate_gateway::upstream::identity_dir(&paths.state_dir);
    let mut line = format!(
        "Not in the backup: the config file {} (it holds the gateway's shared token or password)",
        paths.config.display()
    );
    if upstream.exists() {
        line.push_str(&format!(
            " and clawgate's upstream identity {}/ (its key and device token; or pair again with: clawgate upstream pair)",
            upstream.display()
        ));
    }
    line
}

fn size(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let kib = bytes as f64 / 1024.0;
    if kib < 1024.0 {
        format!("{kib:.1} KiB")
    } else {
        format!("{:.1} MiB", kib / 1024.0)
    }
}
