//! The gateway config: the JSON5 file text through `ConfigFile::from_text`
//! (what `ConfigFile::load` runs on the file's contents), `resolve_all`
//! under a few flag/environment combinations, and the dotted-key editor
//! (`get`, `set`, `unset`) that `clawgate config` uses, followed by the
//! validation `config set` runs before it writes.
//!
//! Input: `[flags, text...]`. Properties: nothing panics; every refusal
//! names a key; the shared token and password never appear in an error
//! (they are replaced by a marker before resolving); a resolved config
//! holds only normalised origins and base paths.

#![no_main]

use std::path::Path;

use clawgate_gateway::config::{
    ConfigError, ConfigFile, EnvOverrides, RunOverrides, is_valid_key, normalize_origin,
    parse_json5_value, resolve_all,
};
use clawgate_protocol::Secret;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const MARKER: &str = "SECRET-MARKER-0c6f2e91";

/// Keys `clawgate config set|unset` is typically given, good and bad.
const KEYS: &[&str] = &[
    "gateway.port",
    "gateway.bind",
    "gateway.customBindHost",
    "gateway.auth.mode",
    "gateway.auth.token",
    "gateway.auth.rateLimit.windowMs",
    "gateway.controlUi.basePath",
    "gateway.controlUi.allowedOrigins",
    "gateway.controlUi.allowedOrigins.0",
    "gateway.trustedProxies.1",
    "gateway.nodes.pairing.autoApproveLocal",
    "gateway.tickIntervalMs",
    "gateway",
    "a.b.c",
    "gateway..port",
    "",
];

fn overrides(flags: u8) -> (RunOverrides, EnvOverrides) {
    let mut o = RunOverrides::default();
    let mut env = EnvOverrides::default();
    match flags & 7 {
        0 => {}
        1 => o.bind = Some("lan".into()),
        2 => o.auth = Some("none".into()),
        3 => {
            o.bind = Some("custom".into());
            o.host = Some("10.0.0.1".into());
        }
        4 => env.token = Some(Secret::new(MARKER)),
        5 => {
            o.auth = Some("password".into());
            env.password = Some(Secret::new(MARKER));
        }
        6 => o.port = Some(0),
        _ => o.token = Some(Secret::new(" ")),
    }
    (o, env)
}

fn check(result: Result<clawgate_gateway::GatewayConfig, Vec<ConfigError>>, planted: bool) {
    match result {
        Ok(config) => {
            let base = &config.control_ui.base_path;
            assert!(base.starts_with('/') && base.ends_with('/'), "{base}");
            for origin in &config.control_ui.allowed_origins {
                assert_eq!(normalize_origin(origin).as_deref(), Some(origin.as_str()));
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in errors {
                assert!(e.key().is_some_and(|k| !k.is_empty()), "{e}");
                if planted {
                    assert!(!e.to_string().contains(MARKER), "secret in: {e}");
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    // `load` reads the file with read_to_string: it is UTF-8 or a read error.
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let _ = parse_json5_value(text);
    let path = Path::new("/nonexistent/clawgate.json");
    let Ok(mut file) = ConfigFile::from_text(path, text) else {
        return;
    };
    assert!(file.doc.is_object());
    let planted = !text.contains(MARKER);
    if planted {
        for key in ["gateway.auth.token", "gateway.auth.password"] {
            if let Some(Value::String(_)) = file.get(key) {
                file.set(key, Value::String(MARKER.into())).unwrap();
            }
        }
    }
    let (o, env) = overrides(flags);
    let state_dir = Path::new("/nonexistent");
    check(resolve_all(&file, state_dir, &o, &env), planted);

    // `config set KEY VALUE`, then the validation before the write.
    let key = KEYS[usize::from(flags >> 3) % KEYS.len()];
    let _ = is_valid_key(key);
    let _ = file.get(key);
    let value = file
        .doc
        .as_object()
        .and_then(|m| m.values().next().cloned())
        .unwrap_or(Value::Null);
    let value = if value == Value::String(MARKER.into()) {
        Value::Null
    } else {
        value
    };
    let mut edited = file.clone();
    if edited.set(key, value).is_ok() {
        check(resolve_all(&edited, state_dir, &o, &env), planted);
    }
    if file.unset(key) {
        check(resolve_all(&file, state_dir, &o, &env), planted);
    }
});
