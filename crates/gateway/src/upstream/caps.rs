//! Capability paths: the upstream hands each connection a capability URL
//! for its plugin surfaces (`hello-ok.pluginSurfaceUrls.canvas`, e.g.
//! `http://127.0.0.1:18790/__openclaw__/cap/<token>`). clawgate never shows
//! a client the upstream's address: it rewrites the URL to its own origin
//! and records the token for the client's session; the HTTP proxy serves
//! `/__openclaw__/cap/<token>/...` only while that session is open.
//!
//! Capability URLs arrive in `hello-ok` and later too (a
//! `plugin.surface.refresh` answer hands out a fresh one): every relayed
//! frame that names the upstream's HTTP origin is rewritten
//! ([`rewrite_origin`]).

use std::collections::HashMap;
use std::sync::Mutex;

/// The path prefix of capability URLs, on the upstream and on clawgate.
pub const CAP_PREFIX: &str = "/__openclaw__/cap/";

/// Capability tokens granted to live relayed sessions.
#[derive(Debug, Default)]
pub struct Capabilities {
    /// token -> the hub key of the session it was handed to.
    granted: Mutex<HashMap<String, u64>>,
}

impl Capabilities {
    /// Records `token` for session `key`.
    pub fn grant(&self, token: &str, key: u64) {
        self.granted
            .lock()
            .expect("caps lock")
            .insert(token.to_string(), key);
    }

    /// Forgets every token of session `key` (it closed).
    pub fn revoke_session(&self, key: u64) {
        self.granted
            .lock()
            .expect("caps lock")
            .retain(|_, k| *k != key);
    }

    /// Whether `token` belongs to a live session.
    pub fn is_granted(&self, token: &str) -> bool {
        self.granted.lock().expect("caps lock").contains_key(token)
    }
}

/// The capability token in a path under [`CAP_PREFIX`]
/// (`/__openclaw__/cap/<token>[/rest]`), if it is one.
pub fn token_in_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(CAP_PREFIX)?;
    let token = rest.split('/').next().unwrap_or("");
    (!token.is_empty()).then_some(token)
}

/// Splits an upstream capability URL into its token, when it is one on
/// the upstream's own HTTP origin.
pub fn token_in_url<'a>(url: &'a str, upstream_http_origin: &str) -> Option<&'a str> {
    let path = url.strip_prefix(upstream_http_origin)?;
    token_in_path(path)
}

/// Rewrites every JSON string in `value` that names the upstream's HTTP
/// origin: a capability URL becomes the same path on `public` and its
/// token is granted to session `key`; any other mention of the origin is
/// replaced by `public` (or by "[upstream]" when there is none), so the
/// upstream's address never reaches a client. Returns whether anything
/// changed.
pub fn rewrite_origin(
    caps: &Capabilities,
    value: &mut serde_json::Value,
    origin: &str,
    public: Option<&str>,
    key: u64,
) -> bool {
    use serde_json::Value;
    match value {
        Value::String(text) if text.contains(origin) => {
            if let Some(token) = token_in_url(text, origin) {
                caps.grant(token, key);
            }
            *text = text.replace(origin, public.unwrap_or("[upstream]"));
            true
        }
        Value::Array(items) => items.iter_mut().fold(false, |changed, v| {
            rewrite_origin(caps, v, origin, public, key) | changed
        }),
        Value::Object(map) => map.values_mut().fold(false, |changed, v| {
            rewrite_origin(caps, v, origin, public, key) | changed
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_naming_the_upstream_are_rewritten() {
        let caps = Capabilities::default();
        let origin = "http://127.0.0.1:18790";
        let mut v = serde_json::json!({"type": "res", "payload": {
            "canvas": "http://127.0.0.1:18790/__openclaw__/cap/NEWTOKEN",
            "note": "see http://127.0.0.1:18790/docs",
            "n": 1
        }});
        assert!(rewrite_origin(
            &caps,
            &mut v,
            origin,
            Some("http://gw.example"),
            9
        ));
        assert_eq!(
            v["payload"]["canvas"],
            "http://gw.example/__openclaw__/cap/NEWTOKEN"
        );
        assert_eq!(v["payload"]["note"], "see http://gw.example/docs");
        assert!(caps.is_granted("NEWTOKEN"));
        let mut v = serde_json::json!({"url": "http://127.0.0.1:18790/x"});
        rewrite_origin(&caps, &mut v, origin, None, 9);
        assert!(!v.to_string().contains("18790"));
    }

    #[test]
    fn tokens_are_found_and_checked() {
        let caps = Capabilities::default();
        caps.grant("abc", 7);
        assert!(caps.is_granted("abc"));
        assert!(!caps.is_granted("abd"));
        caps.revoke_session(7);
        assert!(!caps.is_granted("abc"));
        assert_eq!(
            token_in_path("/__openclaw__/cap/abc/index.html"),
            Some("abc")
        );
        assert_eq!(token_in_path("/__openclaw__/cap/"), None);
        assert_eq!(token_in_path("/other"), None);
        assert_eq!(
            token_in_url(
                "http://127.0.0.1:18790/__openclaw__/cap/XYZ",
                "http://127.0.0.1:18790"
            ),
            Some("XYZ")
        );
        assert_eq!(
            token_in_url(
                "http://evil:1/__openclaw__/cap/XYZ",
                "http://127.0.0.1:18790"
            ),
            None
        );
    }
}
