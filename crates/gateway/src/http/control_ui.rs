//! The Control UI: the static files in `ui/` (HTML, CSS, ES modules), embedded
//! into the binary with `rust-embed` and served under
//! `gateway.controlUi.basePath`.
//!
//! Release builds carry the files; debug builds read them from the checkout
//! at request time (rust-embed's default), so UI work needs no rebuild.
//! `index.html` is a template: `__CLAWGATE_BASE__`, `__CLAWGATE_BUILD_ID__`
//! and `__CLAWGATE_VERSION__` are filled in once, when the gateway starts
//! (in a debug build an edit to `index.html` shows after a restart; the
//! other files on reload). Every response carries a strict
//! Content-Security-Policy (scripts, styles and connections from this origin
//! only, Trusted Types required), `Cache-Control: no-cache` and an `ETag`, so
//! browsers revalidate and get a 304 until the build changes.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clawgate_protocol::hex;
use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};

use crate::config::ControlUiConfig;

#[derive(RustEmbed)]
#[folder = "../../ui/"]
#[exclude = "tests/*"]
#[exclude = "*.md"]
struct Assets;

/// Where clawgate's own UI lives in fronting mode: `/` serves the
/// upstream's Control UI (`proxy.rs`).
pub const FRONTING_BASE: &str = "/clawgate/";

/// The file served for the base path and for client-side routes.
const INDEX: &str = "index.html";

/// The policy for every Control UI response. `connect-src` gets the page's
/// own `ws://` and `wss://` origin appended (see [`csp`]): CSP's `'self'`
/// does not cover WebSocket schemes in every browser.
const CSP_BASE: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; manifest-src 'self'; base-uri 'self'; form-action 'none'; \
     frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

/// The Control UI of one gateway: its base path, build id and the rendered
/// `index.html`.
#[derive(Debug)]
pub struct ControlUi {
    enabled: bool,
    /// Always starts and ends with '/'.
    base: String,
    build_id: String,
    /// `index.html` with the placeholders filled in, and its ETag; `None`
    /// when the build has no UI.
    index: Option<(Bytes, String)>,
}

/// What a request path names.
enum Target {
    /// The base path or a client-side route.
    Index,
    /// An embedded file and its content type.
    File(rust_embed::EmbeddedFile, &'static str),
}

impl ControlUi {
    pub fn new(config: &ControlUiConfig) -> ControlUi {
        ControlUi::at(config.enabled, &config.base_path)
    }

    /// The UI served under `base` (starts and ends with '/').
    pub fn at(enabled: bool, base: &str) -> ControlUi {
        let build_id = build_id();
        let index = Assets::get(INDEX).map(|template| {
            let text = String::from_utf8_lossy(&template.data)
                .replace("__CLAWGATE_BASE__", &html_attr(base))
                .replace("__CLAWGATE_BUILD_ID__", &build_id)
                .replace("__CLAWGATE_VERSION__", crate::VERSION);
            let etag = etag(&build_id, &Sha256::digest(text.as_bytes()));
            (Bytes::from(text), etag)
        });
        ControlUi {
            enabled,
            base: base.to_string(),
            build_id,
            index,
        }
    }

    /// Hash of every file the UI is made of: changes whenever any of them
    /// does (`<html data-build-id>`).
    pub fn build_id(&self) -> &str {
        &self.build_id
    }

    /// Whether the UI is served at all (`gateway.controlUi.enabled`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The path the UI is served under.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether `path` is the UI's to answer.
    pub fn owns(&self, path: &str) -> bool {
        self.enabled && (path.starts_with(&self.base) || path == self.base.trim_end_matches('/'))
    }

    /// Answers a request for `path` (already known to be [`owns`](Self::owns)).
    pub fn serve(&self, method: &Method, path: &str, headers: &HeaderMap) -> Response {
        if method != Method::GET && method != Method::HEAD {
            let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        let Some(rel) = path.strip_prefix(&self.base) else {
            // The base path without its trailing slash: relative asset URLs
            // only resolve under the slash.
            let mut resp = plain(StatusCode::PERMANENT_REDIRECT, "moved");
            if let Ok(location) = HeaderValue::from_str(&self.base) {
                resp.headers_mut().insert(header::LOCATION, location);
            }
            return resp;
        };
        let (etag, body, mime) = match resolve(rel) {
            None => return plain(StatusCode::NOT_FOUND, "not found"),
            Some(Target::Index) => match &self.index {
                Some((body, etag)) => (etag.clone(), Body::from(body.clone()), INDEX_TYPE),
                None => {
                    return plain(
                        StatusCode::NOT_FOUND,
                        "the Control UI is not part of this build",
                    );
                }
            },
            Some(Target::File(file, mime)) => (
                etag(&self.build_id, &file.metadata.sha256_hash()),
                Body::from(file.data),
                mime,
            ),
        };
        let fresh = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        let mut resp = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut resp = Response::new(body);
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
            resp
        };
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&etag) {
            h.insert(header::ETAG, v);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        ui_policy(h, headers);
        resp
    }
}

const INDEX_TYPE: &str = "text/html; charset=utf-8";

/// What a request path (relative to the base) names: an embedded file, or
/// `index.html` for the base and for client-side routes (a last segment
/// without a dot). `None` for anything else, including any path that tries
/// to leave the UI folder or reach the excluded files.
fn resolve(rel: &str) -> Option<Target> {
    if rel.is_empty() {
        return Some(Target::Index);
    }
    let clean = rel
        .split('/')
        .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && !seg.starts_with('.'))
        && !rel.contains(['\\', '%', '\0']);
    if !clean {
        return None;
    }
    let last = rel.rsplit('/').next().unwrap_or(rel);
    if !last.contains('.') || rel == INDEX {
        return Some(Target::Index);
    }
    Assets::get(rel).map(|file| Target::File(file, content_type(rel)))
}

fn content_type(file: &str) -> &'static str {
    match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("webmanifest") => "application/manifest+json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The Content-Security-Policy for a page loaded through `Host: host`.
fn csp(request: &HeaderMap) -> String {
    let host = request
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    match host {
        Some(host) => format!("{CSP_BASE}; connect-src 'self' ws://{host} wss://{host}"),
        None => format!("{CSP_BASE}; connect-src 'self'"),
    }
}

/// The listener's headers plus the UI's policy: the CSP, and no sharing
/// of the window or the resources with other origins.
fn ui_policy(h: &mut HeaderMap, request: &HeaderMap) {
    crate::http::headers::security_headers(h);
    if let Ok(v) = HeaderValue::from_str(&csp(request)) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), usb=()"),
    );
}

/// A plain-text refusal (as the listener sends) under the UI's policy.
fn plain(status: StatusCode, message: &str) -> Response {
    let mut resp = crate::http::headers::refuse(status, message);
    ui_policy(resp.headers_mut(), &HeaderMap::new());
    resp
}

/// The build id: the first 12 hex digits of a hash over every file's path
/// and content hash, in path order.
pub fn build_id() -> String {
    let mut files: Vec<_> = Assets::iter().collect();
    files.sort();
    let mut hasher = Sha256::new();
    for path in files {
        if let Some(file) = Assets::get(&path) {
            hasher.update(path.as_bytes());
            hasher.update([0]);
            hasher.update(file.metadata.sha256_hash());
        }
    }
    hex::encode(&hasher.finalize()[..6])
}

/// `"<build id>-<first 16 hex digits of the content hash>"`.
fn etag(build_id: &str, content_hash: &[u8]) -> String {
    format!("\"{build_id}-{}\"", hex::encode(&content_hash[..8]))
}

/// The base path is validated by the config loader; escaping keeps the
/// template safe whatever it holds.
fn html_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_files_or_the_index() {
        let named = |rel: &str| match resolve(rel) {
            Some(Target::Index) => Some(INDEX),
            Some(Target::File(_, mime)) => Some(mime),
            None => None,
        };
        assert_eq!(named(""), Some(INDEX));
        assert_eq!(named("devices"), Some(INDEX));
        assert_eq!(named("settings/devices"), Some(INDEX));
        assert_eq!(named("catalogue.json"), Some("application/json"));
        for bad in [
            "../Cargo.toml",
            "js/../../Cargo.toml",
            "./index.html",
            "a//b",
            ".git/config",
            "%2e%2e/x",
            "js\\main.js",
            "tests/package.json",
            "README.md",
            "missing.js",
        ] {
            assert_eq!(named(bad), None, "{bad}");
        }
    }

    #[test]
    fn csp_takes_only_a_plain_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:18789"));
        assert!(csp(&h).ends_with("connect-src 'self' ws://127.0.0.1:18789 wss://127.0.0.1:18789"));
        h.insert(header::HOST, HeaderValue::from_static("evil; script-src *"));
        assert!(csp(&h).ends_with("connect-src 'self'"));
    }
}
