//! Which client requests are relayed to the upstream, answered by clawgate
//! or refused.
//!
//! - Answered by clawgate (never relayed: upstream they would act on
//!   clawgate's own upstream identity; measured against OpenClaw 2026.9.6,
//!   `device.pair.remove` unpaired the proxy and `device.token.rotate`
//!   handed its upstream token to the caller): `device.*` (pairing, tokens,
//!   scope upgrades, setup codes act on clawgate's registry), `passkey.*`, `audit.list`
//!   (clawgate's audit chain) and a second `connect`.
//! - Refused, with a reason: `node.pair.*` and `node.rename` (nodes are not
//!   fronted yet); `secrets.*`; config writes that touch the upstream's
//!   `gateway.auth`, `gateway.trustedProxies`, `gateway.bind`,
//!   `gateway.customBindHost`, `gateway.port`, `gateway.tls` or `secrets`
//!   (a `config.patch` that stays clear of them is relayed; `config.set`
//!   and `config.apply` replace the whole file, auth included, so they are
//!   refused: change those on the upstream host).
//! - Everything else is relayed; the upstream enforces scopes, since each
//!   relayed socket holds exactly the client's scopes. Calls to methods
//!   that need `operator.admin` are audited with the client's device.

use clawgate_protocol::catalogue;
use clawgate_protocol::frames::ErrorShape;
use serde_json::Value;

use super::needs_admin;

/// What happens to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// clawgate answers it itself (`rpc::dispatch`).
    Local,
    /// Refused with this error.
    Blocked(ErrorShape),
    /// Relayed to the upstream; `audit`: the call uses `operator.admin`.
    Relay { audit: bool },
}

/// Config paths a relayed config write may not touch.
const PROTECTED_PATHS: &[&str] = &[
    "gateway.auth",
    "gateway.trustedProxies",
    "gateway.bind",
    "gateway.customBindHost",
    "gateway.port",
    "gateway.tls",
    "secrets",
];

/// The route of `method` with `params` (the request's params, when the
/// method's route depends on them).
pub fn route(method: &str, params: Option<&Value>) -> Route {
    if method.starts_with("device.")
        || method.starts_with("passkey.")
        || method == "audit.list"
        || method == "connect"
    {
        return Route::Local;
    }
    if method.starts_with("node.pair.") || method == "node.rename" {
        return Route::Blocked(catalogue::fronted_method_blocked(
            method,
            "nodes are not fronted by clawgate yet; manage them on the upstream host",
        ));
    }
    if method.starts_with("secrets.") {
        return Route::Blocked(catalogue::fronted_method_blocked(
            method,
            "the upstream's secrets are managed on its own host",
        ));
    }
    match method {
        "config.set" | "config.apply" => {
            return Route::Blocked(catalogue::fronted_method_blocked(
                method,
                "it replaces the upstream's whole config, gateway.auth included; use config.patch for other settings, or change the file on the upstream host",
            ));
        }
        "config.patch" => {
            if let Some(path) = patch_touches_protected(params) {
                return Route::Blocked(catalogue::fronted_method_blocked(
                    method,
                    &format!("it changes {path}, which only the upstream host may change"),
                ));
            }
        }
        _ => {}
    }
    Route::Relay {
        audit: needs_admin(method),
    }
}

/// Whether methods whose route needs the params: the relay parses them
/// only for these.
pub fn needs_params(method: &str) -> bool {
    method == "config.patch"
}

/// The first protected path a `config.patch` would change (or the reason
/// it cannot tell), `None` when it stays clear of them.
fn patch_touches_protected(params: Option<&Value>) -> Option<String> {
    let params = params?.as_object()?;
    if let Some(paths) = params.get("replacePaths").and_then(Value::as_array) {
        for p in paths.iter().filter_map(Value::as_str) {
            if let Some(hit) = overlapping(p) {
                return Some(hit.to_string());
            }
        }
    }
    // `raw` is required upstream; without it the upstream refuses the call.
    let raw = params.get("raw").and_then(Value::as_str)?;
    let Ok(doc) = json5::from_str::<Value>(raw) else {
        // What cannot be read cannot be checked.
        return Some("an unreadable patch".into());
    };
    for path in PROTECTED_PATHS {
        let mut current = &doc;
        let mut touched = true;
        for part in path.split('.') {
            match current.as_object() {
                Some(map) => match map.get(part) {
                    Some(v) => current = v,
                    None => {
                        touched = false;
                        break;
                    }
                },
                // A non-object (null deletes, a value replaces) on the way
                // down replaces everything under it.
                None => break,
            }
        }
        if touched {
            return Some((*path).to_string());
        }
    }
    None
}

/// The protected path `path` overlaps (one is a prefix of the other).
fn overlapping(path: &str) -> Option<&'static str> {
    let covers = |outer: &str, inner: &str| {
        inner == outer
            || (inner.starts_with(outer) && inner.as_bytes().get(outer.len()) == Some(&b'.'))
    };
    PROTECTED_PATHS
        .iter()
        .copied()
        .find(|p| covers(p, path) || covers(path, p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(raw: &str) -> Route {
        route("config.patch", Some(&json!({"raw": raw, "baseHash": "x"})))
    }

    #[test]
    fn registry_methods_stay_local() {
        for m in [
            "device.pair.list",
            "device.pair.remove",
            "device.token.rotate",
            "device.scopes.requestUpgrade",
            "device.pair.setupCode",
            "passkey.register.begin",
            "passkey.list",
            "audit.list",
            "connect",
        ] {
            assert_eq!(route(m, None), Route::Local, "{m}");
        }
    }

    #[test]
    fn blocked_methods_say_why() {
        for m in [
            "node.pair.approve",
            "node.rename",
            "secrets.resolve",
            "config.set",
            "config.apply",
        ] {
            let Route::Blocked(e) = route(m, None) else {
                panic!("{m} not blocked")
            };
            assert_eq!(e.code, "FORBIDDEN");
            assert_eq!(e.detail_code(), Some("FRONTED_METHOD_BLOCKED"));
            assert!(e.message.starts_with(m), "{}", e.message);
        }
    }

    #[test]
    fn config_patches_are_checked() {
        assert_eq!(
            patch(r##"{ui: {seamColor: "#123456"}}"##),
            Route::Relay { audit: true }
        );
        for raw in [
            r#"{gateway: {auth: {token: "x"}}}"#,
            r#"{gateway: {trustedProxies: ["10.0.0.1"]}}"#,
            r#"{gateway: {port: 1}}"#,
            r#"{gateway: {bind: "lan"}}"#,
            r#"{gateway: null}"#,
            r#"{secrets: {}}"#,
            "not json5 {",
        ] {
            assert!(matches!(patch(raw), Route::Blocked(_)), "{raw}");
        }
        let replace = route(
            "config.patch",
            Some(&json!({"raw": "{}", "replacePaths": ["gateway"]})),
        );
        assert!(matches!(replace, Route::Blocked(_)));
        let replace = route(
            "config.patch",
            Some(&json!({"raw": "{}", "replacePaths": ["gateway.controlUi"]})),
        );
        assert_eq!(replace, Route::Relay { audit: true });
    }

    #[test]
    fn everything_else_is_relayed() {
        assert_eq!(route("sessions.list", None), Route::Relay { audit: false });
        assert_eq!(route("health", None), Route::Relay { audit: false });
        assert_eq!(
            route("exec.approvals.get", None),
            Route::Relay { audit: true }
        );
    }
}
