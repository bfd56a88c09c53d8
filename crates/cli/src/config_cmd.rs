//! `clawgate config get|set|unset|path`.
//!
//! Edits go through [`ConfigFile`]: validated against [`config::resolve_all`]
//! before anything is written, then saved atomically with mode 0600 by
//! editing the file's text in place (comments and formatting kept).

use clap::Subcommand;
use clawgate_gateway::config::{self, ConfigError, ConfigFile, EnvOverrides, RunOverrides};
use serde_json::Value;

use crate::Paths;

/// What `get` prints in place of a secret inside an object.
const REDACTED: &str = "<redacted>";

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the config file's path.
    Path,
    /// Print the value at a dotted key, e.g. `gateway.port`.
    ///
    /// When an environment variable overrides the key (CLAWGATE_PORT,
    /// OPENCLAW_GATEWAY_PORT, CLAWGATE_BIND), the effective value is printed
    /// with its source: `18790 (from CLAWGATE_PORT; the file says 18789)`;
    /// with --json the value alone, the source on stderr.
    ///
    /// A secret asked for by its exact key (`gateway.auth.token`) prints in
    /// clear; secrets inside a printed object are redacted unless
    /// --show-secrets.
    Get {
        /// Dotted key, e.g. gateway.auth.token.
        key: String,
        /// Print the value as JSON (strings quoted).
        #[arg(long)]
        json: bool,
        /// Do not redact tokens and passwords inside objects.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Set a dotted key. The file is only written if the result is valid.
    Set {
        /// Dotted key, e.g. gateway.port.
        key: String,
        /// The value. Objects, arrays, numbers and true/false are parsed as
        /// JSON5; anything else is a string.
        #[arg(allow_hyphen_values = true)]
        value: String,
        /// Always parse the value as JSON5 (e.g. '"123"' for a string).
        #[arg(long)]
        json_value: bool,
    },
    /// Remove a dotted key.
    Unset {
        /// Dotted key, e.g. gateway.bind.
        key: String,
    },
}

pub fn run(command: ConfigCommand, paths: &Paths) -> anyhow::Result<u8> {
    match command {
        ConfigCommand::Path => {
            crate::say!("{}", paths.config.display());
            Ok(0)
        }
        ConfigCommand::Get {
            key,
            json,
            show_secrets,
        } => get(paths, &key, json, show_secrets),
        ConfigCommand::Set {
            key,
            value,
            json_value,
        } => set(paths, &key, &value, json_value),
        ConfigCommand::Unset { key } => unset(paths, &key),
    }
}

/// Loads the config file, or prints why it cannot be read (exit 1).
fn load(paths: &Paths) -> Result<ConfigFile, u8> {
    ConfigFile::load(&paths.config).map_err(|err| {
        crate::say_err!("error: {err}");
        if matches!(err, ConfigError::Parse { .. }) {
            crate::say_err!("The file was not changed; fix it in an editor (JSON5: comments and trailing commas are fine).");
        }
        1
    })
}

/// Checks the key is a dotted path, or prints why not.
fn check_key(key: &str) -> Result<(), u8> {
    if config::is_valid_key(key) {
        Ok(())
    } else {
        crate::say_err!(
            "error: {key:?} is not a valid config path; use dot-separated names such as gateway.auth.mode"
        );
        Err(1)
    }
}

fn get(paths: &Paths, key: &str, json: bool, show_secrets: bool) -> anyhow::Result<u8> {
    if let Err(code) = check_key(key) {
        return Ok(code);
    }
    let file = match load(paths) {
        Ok(file) => file,
        Err(code) => return Ok(code),
    };
    match config::env_override(key, &EnvOverrides::from_process_env()) {
        Ok(Some(from_env)) => {
            print_overridden(&file, key, &from_env, json);
            return Ok(0);
        }
        Ok(None) => {}
        Err(err) => {
            crate::say_err!("error: {err}");
            return Ok(1);
        }
    }
    let Some(value) = file.get(key) else {
        crate::say_err!(
            "Config path is valid but unset: {key}. Set it with: clawgate config set {key} <value>"
        );
        return Ok(1);
    };
    match value {
        Value::Object(_) | Value::Array(_) => {
            let mut shown = value.clone();
            if !show_secrets {
                redact(&mut shown);
            }
            crate::say!("{}", serde_json::to_string_pretty(&shown)?);
        }
        // A password hash has no use outside the config file and is
        // crackable material: printed only with --show-secrets.
        Value::String(_) if key.to_ascii_lowercase().ends_with("passwordhash") && !show_secrets => {
            crate::say!("{REDACTED} (an Argon2id hash; print it with --show-secrets)");
        }
        // A scalar asked for by its exact key prints in clear, secrets
        // included: this is how the token is recovered for the Control UI.
        Value::String(s) if !json => crate::say!("{s}"),
        scalar => crate::say!("{scalar}"),
    }
    Ok(0)
}

/// A key an environment variable overrides: the effective value and where
/// it comes from. Plain output says both on one line; `--json` prints the
/// value alone (still one JSON document) and the source on stderr.
fn print_overridden(file: &ConfigFile, key: &str, from_env: &config::EnvOverride, json: bool) {
    let file_says = match file.get(key) {
        Some(Value::String(s)) => format!("the file says {s}"),
        Some(other) => format!("the file says {other}"),
        None => "not set in the file".to_string(),
    };
    let source = format!("from {}; {file_says}", from_env.var);
    match (&from_env.value, json) {
        (value, true) => {
            crate::say!("{value}");
            crate::say_err!("note: {source}");
        }
        (Value::String(s), false) => crate::say!("{s} ({source})"),
        (value, false) => crate::say!("{value} ({source})"),
    }
}

/// Whether a key holds a secret: `token`, `password` and names ending in
/// them (`botToken`, `gatewayPassword`), plus `secret` and `apiKey` kinds.
fn is_secret_key(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "token",
        "password",
        "passwordhash",
        "secret",
        "apikey",
        "api_key",
    ]
    .iter()
    .any(|s| lower.ends_with(s))
}

/// Replaces every secret-named scalar inside `value` with [`REDACTED`].
fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (name, v) in map.iter_mut() {
                if is_secret_key(name) && !v.is_object() && !v.is_array() && !v.is_null() {
                    *v = Value::String(REDACTED.into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// The value to store: JSON5 when asked or when it looks like JSON, else the
/// string as typed. A secret-named key always takes the string as typed
/// unless --json-value, so a numeric token stays a string.
fn parse_value(key: &str, raw: &str, json_value: bool) -> Result<Value, String> {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    let looks_like_json = raw.starts_with('[')
        || raw.starts_with('{')
        || raw == "true"
        || raw == "false"
        || serde_json::from_str::<serde_json::Number>(raw).is_ok();
    if json_value || (looks_like_json && !is_secret_key(leaf)) {
        config::parse_json5_value(raw).map_err(|err| {
            format!(
                "the value for {key} is not valid JSON5 ({err}); quote strings, e.g. '\"text\"', or drop --json-value"
            )
        })
    } else {
        Ok(Value::String(raw.to_string()))
    }
}

/// Whether an error about `error_key` concerns `key`: the same key, one
/// inside it (`key.x`, `key[0]`) or one containing it.
fn concerns(error_key: &str, key: &str) -> bool {
    error_key == key
        || error_key.starts_with(&format!("{key}."))
        || error_key.starts_with(&format!("{key}["))
        || key.starts_with(&format!("{error_key}."))
}

fn set(paths: &Paths, key: &str, raw: &str, json_value: bool) -> anyhow::Result<u8> {
    if let Err(code) = check_key(key) {
        return Ok(code);
    }
    let file = match load(paths) {
        Ok(file) => file,
        Err(code) => return Ok(code),
    };
    let value = match parse_value(key, raw, json_value) {
        Ok(value) => value,
        Err(message) => {
            crate::say_err!("error: {message}");
            return Ok(1);
        }
    };
    let mut updated = file.clone();
    if let Err(err) = updated.set(key, value) {
        crate::say_err!("error: {err}");
        return Ok(1);
    }

    // Refuse what would stop the gateway from starting: any problem with
    // this key, and any new problem elsewhere it causes. A missing token or
    // password is allowed so auth can be set up one key at a time.
    let (overrides, env) = (RunOverrides::default(), EnvOverrides::default());
    let before: Vec<String> = config::resolve_all(&file, &paths.state_dir, &overrides, &env)
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect();
    let after = config::resolve_all(&updated, &paths.state_dir, &overrides, &env)
        .err()
        .unwrap_or_default();
    let blocking: Vec<&ConfigError> = after
        .iter()
        .filter(|err| {
            err.key().is_some_and(|k| concerns(k, key))
                || (!err.is_missing_secret() && !before.contains(&err.to_string()))
        })
        .collect();
    if !blocking.is_empty() {
        for err in blocking {
            crate::say_err!("error: {err}");
        }
        crate::say_err!("{} was not changed.", paths.config.display());
        return Ok(1);
    }

    if key == "gateway.auth.password"
        && let Some(Value::String(p)) = updated.get(key)
    {
        // The same check as `gateway set-password`: refused on a
        // non-loopback configured bind, a warning on loopback. Never the
        // password itself.
        let strength = clawgate_gateway::password::strength(p);
        if strength.is_weak() {
            if !crate::password_cmd::bind_is_loopback(&updated) {
                crate::say_err!(
                    "error: {} (refused because gateway.bind is not loopback)",
                    strength.describe()
                );
                crate::say_err!("{} was not changed.", paths.config.display());
                return Ok(1);
            }
            crate::say_err!(
                "warning: {} (accepted because the configured bind is loopback)",
                strength.describe()
            );
        }
        crate::say_err!(
            "note: gateway.auth.password is stored in plain text; store only its hash with: clawgate gateway set-password"
        );
    }
    if let Err(err) = updated.save() {
        crate::say_err!("error: {err}");
        return Ok(1);
    }
    crate::say!("Updated {key}. Restart the gateway to apply.");
    Ok(0)
}

fn unset(paths: &Paths, key: &str) -> anyhow::Result<u8> {
    if let Err(code) = check_key(key) {
        return Ok(code);
    }
    let mut file = match load(paths) {
        Ok(file) => file,
        Err(code) => return Ok(code),
    };
    if !file.unset(key) {
        crate::say_err!("Config path is not set: {key}");
        return Ok(1);
    }
    if let Err(err) = file.save() {
        crate::say_err!("error: {err}");
        return Ok(1);
    }
    crate::say!("Removed {key}.");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_secret_names_at_any_depth() {
        let mut v = json!({
            "auth": {"mode": "token", "token": "t", "password": "p", "passwordHash": "$argon2id$x"},
            "channels": [{"botToken": "b", "maxTokens": 5}],
            "nested": {"token": {"inner": 1}}
        });
        redact(&mut v);
        assert_eq!(
            v,
            json!({
                "auth": {"mode": "token", "token": REDACTED, "password": REDACTED, "passwordHash": REDACTED},
                "channels": [{"botToken": REDACTED, "maxTokens": 5}],
                "nested": {"token": {"inner": 1}}
            })
        );
    }

    #[test]
    fn values_parse_as_json_only_when_they_look_like_it() {
        assert_eq!(parse_value("a.b", "19000", false).unwrap(), json!(19000));
        assert_eq!(parse_value("a.b", "-5", false).unwrap(), json!(-5));
        assert_eq!(parse_value("a.b", "true", false).unwrap(), json!(true));
        assert_eq!(parse_value("a.b", "['x',]", false).unwrap(), json!(["x"]));
        assert_eq!(parse_value("a.b", "lan", false).unwrap(), json!("lan"));
        assert_eq!(parse_value("a.b", "null", false).unwrap(), json!("null"));
        assert_eq!(parse_value("a.b", "null", true).unwrap(), json!(null));
        assert_eq!(
            parse_value("a.token", "12345", false).unwrap(),
            json!("12345")
        );
        assert_eq!(parse_value("a.token", "12345", true).unwrap(), json!(12345));
        assert!(parse_value("a.b", "[1,", false).is_err());
    }

    #[test]
    fn related_keys() {
        assert!(concerns("gateway.port", "gateway.port"));
        assert!(concerns(
            "gateway.trustedProxies[1]",
            "gateway.trustedProxies"
        ));
        assert!(concerns("gateway.auth.rateLimit.windowMs", "gateway.auth"));
        assert!(concerns("gateway.auth", "gateway.auth.mode"));
        assert!(!concerns("gateway.auth.token", "gateway.auth.mode"));
        assert!(!concerns("gateway.portal", "gateway.port"));
    }
}
