//! `clawgate gateway set-password`: the gateway password stored only as an
//! Argon2id hash (`gateway.auth.passwordHash`).
//!
//! The password comes from a no-echo prompt (asked twice), one line of
//! stdin (`--stdin`) or is generated (`--generate`, shown once). It must
//! pass the strength check when the configured bind is not loopback (a
//! warning otherwise). The file is edited in place (comments kept): the
//! hash is set, `gateway.auth.mode` becomes "password", and a plain
//! `gateway.auth.password` it replaces is removed. The password itself is
//! never printed (except the generated one, once) nor written anywhere.

use std::io::{BufRead, IsTerminal};

use clap::Args;
use clawgate_gateway::config::{ConfigFile, EnvOverrides, RunOverrides};
use clawgate_gateway::password;
use serde_json::Value;

use crate::Paths;

#[derive(Debug, Args)]
pub struct SetPasswordArgs {
    /// Read the password from the first line of standard input.
    #[arg(long, conflicts_with = "generate")]
    stdin: bool,
    /// Generate a strong random password, store its hash and print it once.
    #[arg(long)]
    generate: bool,
}

/// A password string wiped when dropped.
type Wipe = zeroize::Zeroizing<String>;

pub fn set_password(args: SetPasswordArgs, paths: &Paths) -> anyhow::Result<u8> {
    let mut file = match ConfigFile::load(&paths.config) {
        Ok(f) => f,
        Err(err) => {
            crate::say_err!("error: {err}");
            return Ok(1);
        }
    };
    let generated = args.generate;
    let pw = if generated {
        Wipe::new(password::generate_password())
    } else if args.stdin {
        let mut line = String::new();
        if let Err(err) = std::io::stdin().lock().read_line(&mut line) {
            crate::say_err!("error: cannot read the password from standard input: {err}");
            return Ok(1);
        }
        let w = Wipe::new(line.trim_end_matches(['\r', '\n']).to_string());
        zeroize::Zeroize::zeroize(&mut line);
        w
    } else {
        if !std::io::stdin().is_terminal() {
            crate::say_err!(
                "error: no terminal to prompt on; pipe the password with --stdin or use --generate"
            );
            return Ok(1);
        }
        let first = match rpassword::prompt_password("New gateway password: ") {
            Ok(p) => Wipe::new(p),
            Err(err) => {
                crate::say_err!("error: cannot read the password: {err}");
                return Ok(1);
            }
        };
        let again = match rpassword::prompt_password("Repeat it: ") {
            Ok(p) => Wipe::new(p),
            Err(err) => {
                crate::say_err!("error: cannot read the password: {err}");
                return Ok(1);
            }
        };
        if *first != *again {
            crate::say_err!("error: the two passwords differ; nothing was changed");
            return Ok(1);
        }
        first
    };
    if pw.trim().is_empty() {
        crate::say_err!("error: the password is empty; nothing was changed");
        return Ok(1);
    }
    let strength = password::strength(&pw);
    if strength.is_weak() {
        if bind_is_loopback(&file) {
            crate::say_err!(
                "warning: {} (accepted because the configured bind is loopback)",
                strength.describe()
            );
        } else {
            crate::say_err!(
                "error: {} (refused because gateway.bind is not loopback); {} was not changed",
                strength.describe(),
                paths.config.display()
            );
            return Ok(1);
        }
    }
    let hash = password::hash_password(&pw);
    let replaced_plain = file.get("gateway.auth.password").is_some();
    let edits = [
        file.set(
            "gateway.auth.passwordHash",
            Value::String(hash.as_str().to_string()),
        ),
        file.set("gateway.auth.mode", Value::String("password".into())),
    ];
    if let Some(err) = edits.into_iter().find_map(Result::err) {
        crate::say_err!("error: {err}");
        return Ok(1);
    }
    file.unset("gateway.auth.password");
    // A token left in the file is not used in password mode; kept, so
    // switching back is one `config set gateway.auth.mode token`.
    let check = clawgate_gateway::config::resolve_all(
        &file,
        &paths.state_dir,
        &RunOverrides::default(),
        &EnvOverrides::default(),
    );
    if let Err(errors) = check
        && let Some(err) = errors.iter().find(|e| {
            e.key()
                .is_some_and(|k| k.starts_with("gateway.auth.password") || k == "gateway.auth.mode")
        })
    {
        crate::say_err!("error: {err}; nothing was changed");
        return Ok(1);
    }
    if let Err(err) = file.save() {
        crate::say_err!("error: {err}");
        return Ok(1);
    }
    crate::say!(
        "Stored the gateway password as an Argon2id hash in {} (gateway.auth.passwordHash; auth mode password).",
        paths.config.display()
    );
    if replaced_plain {
        crate::say!("Removed the plain-text gateway.auth.password it replaces.");
    }
    if generated {
        crate::say!(
            "Generated password (shown once, keep it in a password manager): {}",
            pw.as_str()
        );
    }
    crate::say!(
        "Restart the gateway to apply: clawgate gateway restart (or stop and run it again)."
    );
    Ok(0)
}

/// Whether the configured bind (file only) is loopback: no `gateway.bind`,
/// "loopback", or "custom" with a loopback `gateway.customBindHost`.
pub fn bind_is_loopback(file: &ConfigFile) -> bool {
    match file.get("gateway.bind").and_then(Value::as_str) {
        None | Some("loopback") => true,
        Some("custom") => file
            .get("gateway.customBindHost")
            .and_then(Value::as_str)
            .and_then(|h| h.trim().parse::<std::net::IpAddr>().ok())
            .is_some_and(|ip| ip.is_loopback()),
        Some(_) => false,
    }
}
