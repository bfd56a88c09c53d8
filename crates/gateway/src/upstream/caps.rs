//! Capability paths: the upstream hands each connection a capability URL
//! for its plugin surfaces (`hello-ok.pluginSurfaceUrls.canvas`, e.g.
//! `http://127.0.0.1:18790/__openclaw__/cap/<token>`). clawgate never shows
//! a client the upstream's address: it rewrites the URL to its own origin
//! and records the token for the client's session; the HTTP proxy serves
//! `/__openclaw__/cap/<token>/...` only while that session is open.

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

    /// How many tokens are live.
    pub fn len(&self) -> usize {
        self.granted.lock().expect("caps lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

#[cfg(test)]
mod tests {
    use super::*;

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
