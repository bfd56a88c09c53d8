//! Fronting mode's HTTP side: the upstream's Control UI, reverse-proxied
//! at `/`, and the capability paths handed to relayed clients.
//!
//! An allowlist, not an open door. Whatever clawgate forwards reaches the
//! upstream from loopback, where the upstream may trust a request more than
//! it would trust the browser that sent it. So only `GET` and `HEAD` are
//! forwarded, and only for these paths (the reference 2026.9.6 serves its
//! Control UI from `dist/control-ui/` under its base path, default "/"):
//!
//! - the UI document: `/`, `/index.html` and client-side routes (a last
//!   segment without a dot) are all fetched as `/` from the upstream, so a
//!   deep link never reaches a plugin or API route that shares its path;
//!   `/api`, `/v1`, `/__openclaw__`, `/__openclaw`, `/hooks`, `/tools`,
//!   `/plugins`, `/sessions`, `/oauth`, `/share`, `/j` and `/ui` are not
//!   routes of the UI and answer 404 here;
//! - the bundle: `/assets/<file>` (fingerprinted, immutable);
//! - the root public files: `/favicon.svg`, `/favicon.ico`,
//!   `/favicon-32.png`, `/apple-touch-icon.png`, `/manifest.webmanifest`,
//!   `/sw.js`;
//! - the versioned public folders: `/fonts/`, `/themes/`,
//!   `/provider-icons/`, `/cloud-provider-icons/`, `/file-icons/`,
//!   `/app-art/`, `/community-art/` (files only);
//! - the UI's bootstrap config, `/control-ui-config.json` (and its
//!   `/__openclaw__/` and legacy `/__openclaw/` aliases): the upstream
//!   authorizes it itself, and as no credentials are forwarded an upstream
//!   with token or password auth answers 401, which the UI tolerates;
//! - `/__openclaw__/cap/<token>/...` only while `<token>` is granted to a
//!   live relayed session (`upstream::caps`); otherwise 404.
//!
//! Everything else (the upstream's avatars, media, plugin assets, `/api`,
//! OpenAI-compatible and hook endpoints) needs credentials the browser
//! holds for clawgate, not for the upstream, and is not forwarded.
//!
//! Requests carry only `Accept`, `Accept-Encoding`, `Accept-Language`,
//! `If-None-Match`, `If-Modified-Since`, `If-Range`, `Range` and
//! `User-Agent` from the client, and the client's `Host` (already checked
//! by the Host guard) so the upstream's Content-Security-Policy names
//! clawgate's host rather than its own; never cookies, credentials,
//! forwarding headers or an `Origin`. Responses keep only content and
//! caching headers (no `Set-Cookie`, `Server`, ...), get the listener's
//! security headers, lose any header that names the upstream's address
//! (`Location` on the upstream's origin is rewritten to a path), and are
//! bounded: 10 s to connect and answer, 10 s between body chunks, 64 MiB
//! per body, streamed (never buffered whole).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use axum::response::Response;
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tracing::debug;

use crate::http::headers::{refuse, security_headers};
use crate::upstream::Upstream;
use crate::upstream::caps::{CAP_PREFIX, token_in_path};

/// Connect plus response head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the next body chunk.
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest body forwarded (the reference's biggest UI asset is ~3.5 MB).
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// How long one upstream connection may live at all.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// The answer when the upstream cannot be reached (never names it).
const UNREACHABLE: &str = "the upstream gateway is not reachable right now; try again shortly";

/// Request headers passed on to the upstream; nothing else is.
const FORWARDED_REQUEST_HEADERS: [HeaderName; 8] = [
    header::ACCEPT,
    header::ACCEPT_ENCODING,
    header::ACCEPT_LANGUAGE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_RANGE,
    header::RANGE,
    header::USER_AGENT,
];

/// Response headers passed back to the client; nothing else is
/// (`Location` is handled on its own).
const KEPT_RESPONSE_HEADERS: [HeaderName; 14] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::CONTENT_RANGE,
    header::CONTENT_LANGUAGE,
    header::CONTENT_DISPOSITION,
    header::ACCEPT_RANGES,
    header::ETAG,
    header::LAST_MODIFIED,
    header::CACHE_CONTROL,
    header::VARY,
    header::CONTENT_SECURITY_POLICY,
    header::RETRY_AFTER,
    HeaderName::from_static("permissions-policy"),
];

/// The UI's root public files (`CONTROL_UI_ROOT_PUBLIC_ASSETS`).
const ROOT_FILES: [&str; 6] = [
    "apple-touch-icon.png",
    "favicon-32.png",
    "favicon.ico",
    "favicon.svg",
    "manifest.webmanifest",
    "sw.js",
];

/// Folders of the UI's versioned public files.
const PUBLIC_DIRS: [&str; 7] = [
    "fonts",
    "themes",
    "provider-icons",
    "cloud-provider-icons",
    "file-icons",
    "app-art",
    "community-art",
];

/// The bootstrap config and its aliases.
const BOOTSTRAP_PATHS: [&str; 3] = [
    "/control-ui-config.json",
    "/__openclaw__/control-ui-config.json",
    "/__openclaw/control-ui-config.json",
];

/// First path segments that are not client-side routes of the UI.
const NOT_UI_ROUTES: [&str; 12] = [
    "api",
    "v1",
    "__openclaw__",
    "__openclaw",
    "hooks",
    "tools",
    "plugins",
    "sessions",
    "oauth",
    "share",
    "j",
    "ui",
];

/// What a request path is forwarded as.
#[derive(Debug, PartialEq, Eq)]
enum Forward {
    /// A Control UI file or the UI document: fetched at this path and
    /// query from the upstream.
    Ui(String),
    /// A capability path (fetched as requested, no-store).
    Cap(String),
}

/// Decides what `path` (and `query`) is forwarded as, if at all; `caps`
/// says whether a capability token is granted.
fn classify(path: &str, query: Option<&str>, granted: impl Fn(&str) -> bool) -> Option<Forward> {
    if !clean_path(path) || !query.is_none_or(clean_query) {
        return None;
    }
    let with_query = |p: &str| match query {
        Some(q) if !q.is_empty() => format!("{p}?{q}"),
        _ => p.to_string(),
    };
    if path.starts_with(CAP_PREFIX) {
        let token = token_in_path(path)?;
        return granted(token).then(|| Forward::Cap(with_query(path)));
    }
    if BOOTSTRAP_PATHS.contains(&path) {
        return Some(Forward::Ui(path.to_string()));
    }
    let rel = &path[1..];
    let last = rel.rsplit('/').next().unwrap_or(rel);
    let first = rel.split('/').next().unwrap_or(rel);
    if let Some(file) = rel.strip_prefix("assets/") {
        return (!file.is_empty() && last.contains('.')).then(|| Forward::Ui(with_query(path)));
    }
    if ROOT_FILES.contains(&rel) {
        return Some(Forward::Ui(with_query(path)));
    }
    if PUBLIC_DIRS.contains(&first) && rel.len() > first.len() + 1 && last.contains('.') {
        return Some(Forward::Ui(with_query(path)));
    }
    if rel == "index.html" || (!last.contains('.') && !NOT_UI_ROUTES.contains(&first)) {
        // The document, whatever client-side route it is opened at.
        return Some(Forward::Ui("/".to_string()));
    }
    None
}

/// Plain path segments only: no dot segments, hidden names, escapes,
/// backslashes or empty segments (but a trailing slash).
fn clean_path(path: &str) -> bool {
    let Some(rel) = path.strip_prefix('/') else {
        return false;
    };
    if rel.len() > 1024 {
        return false;
    }
    let rel = rel.strip_suffix('/').unwrap_or(rel);
    rel.is_empty()
        || rel.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.~@+=,".contains(&b))
        })
}

/// A query of unreserved characters, `=`, `&` and percent escapes.
fn clean_query(query: &str) -> bool {
    query.len() <= 1024
        && query
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~=&%+,:".contains(&b))
}

/// The proxy to one upstream.
pub(crate) struct UpstreamProxy {
    upstream: Arc<Upstream>,
    /// `http://host:port` (or `https://`).
    origin: String,
    /// `host:port` as it would appear in a URL.
    authority: String,
}

impl UpstreamProxy {
    pub(crate) fn new(upstream: Arc<Upstream>) -> UpstreamProxy {
        let origin = upstream.http_origin();
        let authority = origin
            .split_once("://")
            .map(|(_, a)| a.to_string())
            .unwrap_or_default();
        UpstreamProxy {
            upstream,
            origin,
            authority,
        }
    }

    /// Answers a request that neither clawgate's routes nor its own UI
    /// took (not a WebSocket upgrade).
    pub(crate) async fn serve(&self, req: Request<Body>, ui_enabled: bool) -> Response {
        let path = req.uri().path();
        let Some(forward) = classify(path, req.uri().query(), |t| {
            self.upstream.caps.is_granted(t)
        }) else {
            return refuse(StatusCode::NOT_FOUND, "not found");
        };
        let (target, is_cap) = match forward {
            Forward::Ui(_) if !ui_enabled => return refuse(StatusCode::NOT_FOUND, "not found"),
            Forward::Ui(t) => (t, false),
            Forward::Cap(t) => (t, true),
        };
        let method = req.method().clone();
        if method != Method::GET && method != Method::HEAD {
            let mut resp = refuse(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        let mut out = Request::builder().method(method).uri(target.as_str());
        let h = out.headers_mut().expect("a fresh builder");
        for name in FORWARDED_REQUEST_HEADERS {
            if let Some(v) = req.headers().get(&name) {
                h.insert(name, v.clone());
            }
        }
        // The Host guard already checked the client's Host; without one,
        // a name that is neither clawgate's nor the upstream's.
        let host = req
            .headers()
            .get(header::HOST)
            .cloned()
            .unwrap_or(HeaderValue::from_static("localhost"));
        h.insert(header::HOST, host);
        let out = out.body(Body::empty()).expect("a valid request");
        match tokio::time::timeout(HEAD_TIMEOUT, self.send(out)).await {
            Ok(Ok(resp)) => {
                self.upstream.set_up(true);
                self.answer(resp, is_cap)
            }
            Ok(Err(err)) => {
                debug!(%err, "upstream HTTP request failed");
                refuse(StatusCode::BAD_GATEWAY, UNREACHABLE)
            }
            Err(_) => {
                debug!("upstream HTTP request timed out");
                refuse(StatusCode::BAD_GATEWAY, UNREACHABLE)
            }
        }
    }

    /// One request on a new connection to the upstream.
    async fn send(
        &self,
        req: Request<Body>,
    ) -> Result<Response<hyper::body::Incoming>, Box<dyn std::error::Error + Send + Sync>> {
        // TCP (and pinned TLS for https), as the relay opens it. Up only
        // once it answers (see `forward`): a TCP connect alone would call a
        // hung upstream, or a proxy before a stopped one, up.
        let io = match self.upstream.transport().await {
            Ok(io) => io,
            Err(err) => {
                self.upstream.set_up(false);
                return Err(err.into());
            }
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                Ok(Err(err)) => debug!(%err, "upstream HTTP connection ended"),
                Err(_) => debug!("upstream HTTP connection outlived its limit"),
                Ok(Ok(())) => {}
            }
        });
        Ok(sender.send_request(req).await?)
    }

    /// The upstream's answer as clawgate returns it.
    fn answer(&self, resp: Response<hyper::body::Incoming>, is_cap: bool) -> Response {
        let (parts, body) = resp.into_parts();
        if parts.status.is_informational() {
            return refuse(StatusCode::BAD_GATEWAY, UNREACHABLE);
        }
        let too_big = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > MAX_BODY_BYTES);
        if too_big {
            return refuse(
                StatusCode::BAD_GATEWAY,
                "the upstream's answer is too large",
            );
        }
        let mut out = Response::new(Body::new(Bounded::new(body)));
        *out.status_mut() = parts.status;
        let h = out.headers_mut();
        for name in KEPT_RESPONSE_HEADERS {
            for v in parts.headers.get_all(&name) {
                if !self.names_upstream(v.as_bytes()) {
                    h.append(name.clone(), v.clone());
                }
            }
        }
        if let Some(location) = parts.headers.get(header::LOCATION)
            && let Some(location) = self.rewrite_location(location)
        {
            h.insert(header::LOCATION, location);
        }
        security_headers(h);
        if is_cap || !h.contains_key(header::CACHE_CONTROL) || parts.status.as_u16() >= 400 {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        out
    }

    /// Whether a header value names the upstream's address.
    fn names_upstream(&self, value: &[u8]) -> bool {
        let needle = self.authority.as_bytes();
        !needle.is_empty()
            && value
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle))
    }

    /// A `Location` on the upstream's origin becomes a path on clawgate's;
    /// a relative one stays; any other that names the upstream is dropped.
    fn rewrite_location(&self, location: &HeaderValue) -> Option<HeaderValue> {
        let text = location.to_str().ok()?;
        if let Some(rest) = text
            .get(..self.origin.len())
            .filter(|p| p.eq_ignore_ascii_case(&self.origin))
            .map(|_| &text[self.origin.len()..])
        {
            let path = if rest.is_empty() { "/" } else { rest };
            return (path.starts_with('/') && !path.starts_with("//"))
                .then(|| HeaderValue::from_str(path).ok())
                .flatten();
        }
        (!self.names_upstream(location.as_bytes())).then(|| location.clone())
    }
}

/// A response body passed through as it arrives, cut off past
/// [`MAX_BODY_BYTES`] or when the upstream stalls for
/// [`BODY_IDLE_TIMEOUT`].
struct Bounded {
    inner: hyper::body::Incoming,
    seen: u64,
    idle: Pin<Box<tokio::time::Sleep>>,
}

impl Bounded {
    fn new(inner: hyper::body::Incoming) -> Bounded {
        Bounded {
            inner,
            seen: 0,
            idle: Box::pin(tokio::time::sleep(BODY_IDLE_TIMEOUT)),
        }
    }
}

impl hyper::body::Body for Bounded {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.seen > MAX_BODY_BYTES {
                        return Poll::Ready(Some(Err("upstream body too large".into())));
                    }
                }
                this.idle
                    .as_mut()
                    .reset(tokio::time::Instant::now() + BODY_IDLE_TIMEOUT);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err("upstream body stalled".into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Header names of a request as the proxy would forward them (for tests).
#[cfg(test)]
fn forwarded(headers: &axum::http::HeaderMap) -> Vec<&str> {
    FORWARDED_REQUEST_HEADERS
        .iter()
        .filter(|n| headers.contains_key(*n))
        .map(|n| n.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(path: &str) -> Option<Forward> {
        classify(path, None, |t| t == "good")
    }
    fn ui(p: &str) -> Option<Forward> {
        Some(Forward::Ui(p.to_string()))
    }

    #[test]
    fn only_the_ui_and_granted_caps_are_forwarded() {
        assert_eq!(c("/"), ui("/"));
        assert_eq!(c("/index.html"), ui("/"));
        assert_eq!(c("/chat"), ui("/"));
        assert_eq!(c("/settings/devices/"), ui("/"));
        assert_eq!(c("/assets/index-AbC123.js"), ui("/assets/index-AbC123.js"));
        assert_eq!(c("/favicon.svg"), ui("/favicon.svg"));
        assert_eq!(c("/sw.js"), ui("/sw.js"));
        assert_eq!(c("/fonts/inter.woff2"), ui("/fonts/inter.woff2"));
        assert_eq!(c("/file-icons/a/b.svg"), ui("/file-icons/a/b.svg"));
        assert_eq!(c("/control-ui-config.json"), ui("/control-ui-config.json"));
        assert_eq!(
            classify("/favicon.svg", Some("v=2026.9.6-abc"), |_| false),
            ui("/favicon.svg?v=2026.9.6-abc")
        );
        assert_eq!(
            c("/__openclaw__/cap/good/index.html"),
            Some(Forward::Cap("/__openclaw__/cap/good/index.html".into()))
        );
        for refused in [
            "/__openclaw__/cap/bad/index.html",
            "/__openclaw__/cap/",
            "/api/users/x/avatar",
            "/api",
            "/v1/chat/completions",
            "/tools/invoke",
            "/hooks/agent",
            "/sessions/x/kill",
            "/avatar/main.png",
            "/__openclaw__/assistant-media",
            "/__openclaw__/plugins/control-ui/x/a.js",
            "/app.css",
            "/assets/",
            "/assets/../secret.js",
            "/assets/%2e%2e/x.js",
            "/assets/.env",
            "/a//b",
            "relative",
            "/x\\y",
        ] {
            assert_eq!(c(refused), None, "{refused}");
        }
        assert_eq!(classify("/", Some("a=<script>"), |_| true), None);
    }

    #[test]
    fn only_listed_request_headers_are_forwarded() {
        let mut h = axum::http::HeaderMap::new();
        for (k, v) in [
            ("cookie", "a=b"),
            ("authorization", "Bearer x"),
            ("x-forwarded-for", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("origin", "http://evil"),
            ("accept", "text/html"),
            ("range", "bytes=0-1"),
        ] {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        assert_eq!(forwarded(&h), vec!["accept", "range"]);
    }
}
