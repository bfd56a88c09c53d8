//! Environment overrides of the listen settings: `CLAWGATE_PORT` (else the
//! reference's `OPENCLAW_GATEWAY_PORT`) for `gateway.port` and
//! `CLAWGATE_BIND` for `gateway.bind`. They beat the file and lose to
//! `--port` / `--bind`. A bad value is refused naming the variable, never
//! the key, since the key is not what needs fixing.

use serde_json::Value;

use super::EnvOverrides;
use crate::config::describe::describe_value;
use crate::config::types::{ConfigError, DEFAULT_PORT};

/// One environment variable that was set (non-empty), by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: &'static str,
    pub value: String,
}

/// The variables read for `gateway.port`, highest precedence first.
pub const PORT_VARS: [&str; 2] = ["CLAWGATE_PORT", "OPENCLAW_GATEWAY_PORT"];
/// The variables read for `gateway.bind`.
pub const BIND_VARS: [&str; 1] = ["CLAWGATE_BIND"];

/// The first of `names` set to something other than blanks (an empty
/// variable counts as unset, as `VAR= clawgate ...` means in a shell).
pub(super) fn first_set(
    names: &[&'static str],
    lookup: impl Fn(&str) -> Option<String>,
) -> Option<EnvVar> {
    names.iter().find_map(|&name| {
        let value = lookup(name)?;
        (!value.trim().is_empty()).then_some(EnvVar { name, value })
    })
}

/// The port an environment variable sets.
pub(super) fn env_port(var: &EnvVar) -> Result<u16, ConfigError> {
    match var.value.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(ConfigError::invalid(
            var.name,
            format!(
                "must be a whole number from 1 to 65535 (found {}); fix it with: export {}={DEFAULT_PORT} (or unset it)",
                describe_value(&Value::String(var.value.clone())),
                var.name
            ),
        )),
    }
}

/// The bind mode an environment variable sets.
pub(super) fn env_bind(var: &EnvVar) -> Result<String, ConfigError> {
    let mode = var.value.trim();
    if matches!(mode, "loopback" | "lan" | "custom") {
        Ok(mode.to_string())
    } else {
        Err(ConfigError::invalid(
            var.name,
            format!(
                "must be \"loopback\", \"lan\" or \"custom\" (found {}); fix it with: export {}=loopback (or unset it)",
                describe_value(&Value::String(var.value.clone())),
                var.name
            ),
        ))
    }
}

/// An environment override of a config key: the variable and the value it
/// gives the key.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvOverride {
    pub var: &'static str,
    pub value: Value,
}

/// Which environment variable overrides `key` and with what value
/// (`Ok(None)` when none does); a bad value is the error the gateway would
/// refuse to start with. For `config get`.
pub fn env_override(key: &str, env: &EnvOverrides) -> Result<Option<EnvOverride>, ConfigError> {
    match key {
        "gateway.port" => env
            .port
            .as_ref()
            .map(|var| {
                env_port(var).map(|port| EnvOverride {
                    var: var.name,
                    value: Value::from(port),
                })
            })
            .transpose(),
        "gateway.bind" => env
            .bind
            .as_ref()
            .map(|var| {
                env_bind(var).map(|mode| EnvOverride {
                    var: var.name,
                    value: Value::String(mode),
                })
            })
            .transpose(),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(name: &'static str, value: &str) -> EnvVar {
        EnvVar {
            name,
            value: value.to_string(),
        }
    }

    #[test]
    fn ports_and_bind_modes_are_checked_naming_the_variable() {
        assert_eq!(env_port(&var("CLAWGATE_PORT", " 18790 ")).unwrap(), 18790);
        for bad in ["0", "65536", "-1", "80.5", "http"] {
            let err = env_port(&var("CLAWGATE_PORT", bad)).unwrap_err();
            assert_eq!(err.key(), Some("CLAWGATE_PORT"));
            let text = err.to_string();
            assert!(text.starts_with("CLAWGATE_PORT: must be"), "{text}");
            assert!(!text.contains('\n'), "{text}");
        }
        assert_eq!(env_bind(&var("CLAWGATE_BIND", "lan")).unwrap(), "lan");
        let err = env_bind(&var("CLAWGATE_BIND", "0.0.0.0")).unwrap_err();
        assert!(err.to_string().contains("export CLAWGATE_BIND=loopback"));
    }

    #[test]
    fn clawgate_port_wins_over_openclaw_gateway_port_and_blank_is_unset() {
        fn lookup(set: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
            move |name: &str| {
                set.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        }
        let both = [("OPENCLAW_GATEWAY_PORT", "1"), ("CLAWGATE_PORT", "2")];
        assert_eq!(
            first_set(&PORT_VARS, lookup(&both)),
            Some(var("CLAWGATE_PORT", "2"))
        );
        let blank = [("OPENCLAW_GATEWAY_PORT", "1"), ("CLAWGATE_PORT", " ")];
        assert_eq!(
            first_set(&PORT_VARS, lookup(&blank)),
            Some(var("OPENCLAW_GATEWAY_PORT", "1"))
        );
        assert_eq!(first_set(&BIND_VARS, lookup(&both)), None);
    }

    #[test]
    fn env_override_names_the_variable_for_the_keys_it_covers() {
        let env = EnvOverrides {
            port: Some(var("OPENCLAW_GATEWAY_PORT", "18800")),
            ..Default::default()
        };
        assert_eq!(
            env_override("gateway.port", &env).unwrap(),
            Some(EnvOverride {
                var: "OPENCLAW_GATEWAY_PORT",
                value: Value::from(18800)
            })
        );
        assert_eq!(env_override("gateway.bind", &env).unwrap(), None);
        assert_eq!(env_override("gateway.auth.token", &env).unwrap(), None);
    }
}
