//! `clawgate passkeys list|remove`: the passkeys that sign a browser in to
//! the Control UI (`passkey.list`, `passkey.remove`; operator.pairing).
//! Registering one happens in the Control UI itself, in the browser that
//! holds the authenticator.

use clap::Subcommand;
use clawgate_protocol::wire::{PasskeyList, PasskeyRemoved};
use comfy_table::presets::UTF8_FULL;
use comfy_table::{ContentArrangement, Table};
use serde_json::json;

use crate::Paths;
use crate::net::{self, Failure, Target, call, decode, print_json};

#[derive(Debug, Subcommand)]
pub enum PasskeysCommand {
    /// Registered passkeys: label, scopes, host name, created, last used, flags.
    List,
    /// Remove a passkey: browsers can no longer sign in with it (devices it
    /// already approved stay paired; remove those with clawgate devices remove).
    Remove {
        /// The passkey's id, as `clawgate passkeys list` prints it. Ids are
        /// base64url and may begin with `-`; they are taken as they are.
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
}

pub fn run(command: PasskeysCommand, target: Target, paths: &Paths) -> anyhow::Result<u8> {
    net::finish(
        net::runtime().block_on(execute(command, &target, paths)),
        target.json,
    )
}

async fn execute(command: PasskeysCommand, target: &Target, paths: &Paths) -> Result<u8, Failure> {
    let pairing = &["operator.pairing"][..];
    let (client, ctx) = net::connect(target, paths, pairing).await?;
    match command {
        PasskeysCommand::List => {
            let res = call(&client, &ctx, "passkey.list", json!({})).await?;
            if target.json {
                print_json(&res);
            } else {
                print_list(&decode("passkey.list", &res)?);
            }
            Ok(0)
        }
        PasskeysCommand::Remove { id } => {
            let res = call(&client, &ctx, "passkey.remove", json!({"id": id})).await?;
            if target.json {
                print_json(&res);
            } else {
                let removed: PasskeyRemoved = decode("passkey.remove", &res)?;
                crate::say!(
                    "Removed passkey {}; browsers can no longer sign in with it. Devices it approved stay paired: see clawgate devices list",
                    removed.id
                );
            }
            Ok(0)
        }
    }
}

fn when(ts: Option<u64>) -> String {
    ts.map_or_else(|| "never".into(), crate::devices_cmd::age)
}

fn print_list(list: &PasskeyList) {
    if list.passkeys.is_empty() {
        crate::say!(
            "No passkeys. Register one in the Control UI (Devices page) while signed in; open it with: clawgate dashboard"
        );
        return;
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec![
            "Label",
            "Scopes",
            "Host",
            "Created",
            "Last used",
            "Flag",
            "ID",
        ]);
    let mut flagged = 0;
    for p in &list.passkeys {
        let flag = match (&p.flagged_at_ms, &p.flagged_reason) {
            (Some(_), reason) => {
                flagged += 1;
                format!("FLAGGED: {}", reason.as_deref().unwrap_or("refused"))
            }
            _ => String::new(),
        };
        t.add_row(vec![
            p.label.clone(),
            p.scopes.join(", "),
            p.rp_id.clone(),
            when(Some(p.created_at_ms)),
            when(p.last_used_at_ms),
            flag,
            p.id.clone(),
        ]);
    }
    crate::say!("{t}");
    if flagged > 0 {
        crate::say!(
            "A flagged passkey's authenticator reported a signature counter lower than before (a cloned key?); sign-ins with it are refused. Remove it: clawgate passkeys remove <id>"
        );
    }
}
