//! `clawgate store migrate`: copies the SQLite registry into an empty
//! PostgreSQL database, for replicas sharing one registry
//! (docs/replicas.md). The copy and its checks are the store's
//! (`Store::import_sqlite`); this file picks the source, keeps a gateway
//! off it while copying, and says what was copied and what to do next,
//! never showing the PostgreSQL password.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use clawgate_gateway::config::ConfigFile;
use clawgate_store::{
    CopySummary, DB_FILE_NAME, LOCK_FILE_NAME, LockError, PgTarget, StateLock, Store, StoreError,
};
use serde_json::json;

use crate::Paths;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy the SQLite registry into an empty PostgreSQL database (stop the gateway first).
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The SQLite registry to copy (default: <state-dir>/clawgate.sqlite); it is only read.
    #[arg(long, value_name = "PATH")]
    from: Option<PathBuf>,
    /// The empty PostgreSQL database to copy into (postgres://USER@HOST:5432/DB).
    #[arg(long, value_name = "URL")]
    to: String,
    /// A file whose first line is the PostgreSQL password (default:
    /// CLAWGATE_STORE_PASSWORD_FILE, then gateway.store.passwordFile, then
    /// PGPASSFILE or ~/.pgpass).
    #[arg(long, value_name = "PATH")]
    password_file: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(command: StoreCommand, paths: &Paths) -> anyhow::Result<u8> {
    match command {
        StoreCommand::Migrate(args) => Ok(migrate(args, paths)),
    }
}

fn migrate(args: MigrateArgs, paths: &Paths) -> u8 {
    let (shown_url, mut secrets) = redact_url(&args.to);
    let url_had_password = !secrets.is_empty();
    let password_file = args
        .password_file
        .clone()
        .or_else(|| {
            std::env::var_os("CLAWGATE_STORE_PASSWORD_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| configured_password_file(paths));
    if let Some(file) = &password_file
        && let Ok(text) = std::fs::read_to_string(file)
    {
        secrets.push(text.lines().next().unwrap_or("").to_string());
    }
    let fail = |message: String| -> u8 {
        let message = scrub(&message, &secrets);
        if args.json {
            crate::net::print_json(&json!({"ok": false, "error": {"message": message}}));
        } else {
            crate::say_err!("error: nothing copied: {message}");
        }
        1
    };

    let source = args
        .from
        .clone()
        .unwrap_or_else(|| paths.state_dir.join(DB_FILE_NAME));
    let retry = format!(
        "clawgate store migrate --from {} --to {shown_url}",
        source.display()
    );
    if !source.is_file() {
        return fail(format!(
            "there is no SQLite registry at {}; name it with --from PATH",
            source.display()
        ));
    }
    // A gateway running on the source could commit a change (a revoke, a
    // rotation, an approval) after the copy's snapshot: PostgreSQL would
    // never see it, and a revoked token would work again there. So the
    // source's gateway must be stopped, and stays off (we hold its state
    // directory) until the copy is done. A file outside any state directory
    // (no lock file beside it: a backup) has no gateway.
    let _lock = match source_lock(&source) {
        Ok(lock) => lock,
        Err(e @ LockError::Held { .. }) => {
            return fail(format!(
                "{e}: a change it made during the copy would be lost; then run: {retry}"
            ));
        }
        Err(e) => return fail(format!("{e}; then run: {retry}")),
    };

    let target = match PgTarget::parse(&args.to, password_file.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            return fail(format!(
                "{}; the URL looks like postgres://USER@HOST:5432/DB (the password in --password-file or ~/.pgpass)",
                describe(&e)
            ));
        }
    };
    let store = match Store::open_postgres(&target) {
        Ok(s) => s,
        Err(e) => return fail(describe(&e)),
    };
    let summary = match store.import_sqlite(&source) {
        Ok(s) => s,
        Err(e) => return fail(describe(&e)),
    };
    drop(store);

    let head = summary
        .audit_head
        .as_deref()
        .map(|h| h.chars().take(12).collect::<String>());
    let set_url = format!("clawgate config set gateway.store.url {shown_url}");
    let set_password = match &args.password_file {
        Some(file) => Some(format!(
            "clawgate config set gateway.store.passwordFile {}",
            file.display()
        )),
        None if url_had_password => Some(
            "clawgate config set gateway.store.passwordFile <file holding only the password>"
                .to_string(),
        ),
        None => None,
    };
    let next: Vec<&str> = [
        Some(set_url.as_str()),
        set_password.as_deref(),
        Some("clawgate gateway run"),
    ]
    .into_iter()
    .flatten()
    .collect();

    if args.json {
        crate::net::print_json(&json!({
            "ok": true,
            "from": source.display().to_string(),
            "to": target.display(),
            "copied": summary,
            "auditHeadPrefix": head,
            "verified": true,
            "next": next,
        }));
        return 0;
    }
    crate::say!(
        "Copied {} into PostgreSQL at {}",
        source.display(),
        target.display()
    );
    crate::say!("  {}", contents(&summary));
    crate::say!(
        "  verified: the same row counts on both sides, the audit chain verifies{}, every store invariant holds",
        match &head {
            Some(h) => format!(" to the same head {h}…"),
            None => String::new(),
        }
    );
    crate::say!("Next, point the gateway (every replica) at it: {set_url}");
    if let Some(set_password) = &set_password {
        crate::say!("  and the password (kept out of the URL): {set_password}");
    }
    crate::say!(
        "Then start the gateway: clawgate gateway run (as a service: clawgate gateway restart). {} is unchanged; keep it as a backup.",
        source.display()
    );
    0
}

/// Holds the state directory `source` is in, when it is one (a
/// `gateway.lock` beside it); `None` for a file outside any state
/// directory.
fn source_lock(source: &Path) -> Result<Option<StateLock>, LockError> {
    let dir = match source.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.join(LOCK_FILE_NAME).exists() {
        return Ok(None);
    }
    StateLock::acquire(&dir).map(Some)
}

fn configured_password_file(paths: &Paths) -> Option<PathBuf> {
    let file = ConfigFile::load(&paths.config).ok()?;
    file.get("gateway.store.passwordFile")?
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

/// The store's message without the error kind's prefix where it only adds
/// noise.
fn describe(e: &StoreError) -> String {
    match e {
        StoreError::Invalid(m) => m.clone(),
        e => e.to_string(),
    }
}

fn contents(s: &CopySummary) -> String {
    let n = |count: u64, one: &str, many: &str| {
        format!("{count} {}", if count == 1 { one } else { many })
    };
    format!(
        "{}, {}, {} (tokens themselves are never stored), {}, {}, {}, {}",
        n(s.devices, "device", "devices"),
        n(s.role_tokens, "role token", "role tokens"),
        n(s.token_hashes, "token hash", "token hashes"),
        n(s.pending, "pending request", "pending requests"),
        n(s.setup_codes, "setup code", "setup codes"),
        n(s.passkeys, "passkey", "passkeys"),
        n(s.audit_rows, "audit row", "audit rows"),
    )
}

/// `url` without its password (the `user:password@` part and a
/// `password=` parameter), and the password(s) taken out, raw and
/// percent-decoded. The credentials end at the first `@`, as the driver
/// parses them.
pub(crate) fn redact_url(url: &str) -> (String, Vec<String>) {
    let url = url.trim();
    let mut secrets = Vec::new();
    let Some(i) = url.find("://") else {
        return (url.to_string(), secrets);
    };
    let (scheme, rest) = url.split_at(i + 3);
    let rest = match rest.find('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, password)) => {
                secrets.push(password.to_string());
                format!("{user}{}", &rest[at..])
            }
            None => rest.to_string(),
        },
        None => rest.to_string(),
    };
    let rest = match rest.split_once('?') {
        Some((base, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|kv| match kv.strip_prefix("password=") {
                    Some(v) => {
                        secrets.push(v.to_string());
                        false
                    }
                    None => true,
                })
                .collect();
            if kept.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{}", kept.join("&"))
            }
        }
        None => rest,
    };
    let decoded: Vec<String> = secrets
        .iter()
        .map(|s| percent_decode(s))
        .filter(|d| !secrets.contains(d))
        .collect();
    secrets.extend(decoded);
    secrets.retain(|s| !s.is_empty());
    (format!("{scheme}{rest}"), secrets)
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` with every secret replaced (a driver or server message should
/// never hold the password, but an error line must not be where it leaks).
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        out = out.replace(s.as_str(), "<password>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password() {
        let (shown, secrets) = redact_url("postgres://alice:s%40cret@db:5432/reg");
        assert_eq!(shown, "postgres://alice@db:5432/reg");
        assert_eq!(secrets, ["s%40cret", "s@cret"]);
        let (shown, secrets) =
            redact_url("postgresql://alice@db/reg?connect_timeout=3&password=hunter22");
        assert_eq!(shown, "postgresql://alice@db/reg?connect_timeout=3");
        assert_eq!(secrets, ["hunter22"]);
        let (shown, secrets) = redact_url(" postgres://alice@db:5432/reg ");
        assert_eq!(shown, "postgres://alice@db:5432/reg");
        assert!(secrets.is_empty());
        assert_eq!(
            scrub("auth failed for s@cret", &["s@cret".into()]),
            "auth failed for <password>"
        );
    }
}
