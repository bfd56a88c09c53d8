//! The trusted-proxy verdict of an upgrade request, and the proxy's key
//! set (`gateway.auth.trustedProxy.jwt.jwksUrl` or `.jwksFile`) behind it.
//!
//! The key set is fetched with hyper's HTTP/1 client (https with the web
//! PKI roots clawgate-client uses), 5 s to connect and answer, at most
//! 64 KiB of body, and kept for its `Cache-Control: max-age` bounded to
//! 60 s .. 24 h (5 min without one). An assertion whose `kid` the cached
//! set lacks triggers one refetch, at most every 30 s, so random `kid`s
//! cannot make the gateway hammer the identity provider. Any fetch
//! failure with no fresh set fails closed. A file is read again when its
//! modification time or size changes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::http::{HeaderMap, Request, header};
use hyper::body::Body as _;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tracing::warn;

use crate::auth::proxy_jwt::{self, JwtRefusal, KeySet};
use crate::auth::trusted_proxy;
use crate::config::{AuthMode, JwksSource, JwtConfig};
use crate::session::ProxyAuth;
use crate::state::GatewayState;

const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MIN_MAX_AGE: Duration = Duration::from_secs(60);
const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Unknown-`kid` refetches are at most this frequent.
const UNKNOWN_KID_REFETCH: Duration = Duration::from_secs(30);

/// The cached key set of one source.
struct Cached {
    source: JwksSource,
    keys: Arc<KeySet>,
    /// Fetched keys: fresh until then. Files: `None` (checked by stamp).
    fresh_until: Option<Instant>,
    /// Files: modification time and size when read.
    stamp: Option<(SystemTime, u64)>,
}

/// The proxy's key set, fetched or read on demand.
#[derive(Default)]
pub(crate) struct JwksCache {
    cached: Mutex<Option<Cached>>,
    /// When an unknown `kid` last caused a refetch.
    last_forced: std::sync::Mutex<Option<Instant>>,
}

impl JwksCache {
    /// The key set for `source`: the cached one while fresh, else fetched
    /// (or read) now; `force` refetches a URL (rate-limited).
    async fn keys(&self, source: &JwksSource, force: bool) -> Result<Arc<KeySet>, JwtRefusal> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && &c.source == source
        {
            let fresh = match source {
                JwksSource::Url(_) => !force && c.fresh_until.is_some_and(|t| Instant::now() < t),
                JwksSource::File(path) => file_stamp(path) == c.stamp,
            };
            if fresh {
                return Ok(c.keys.clone());
            }
        }
        let (keys, fresh_until, stamp) = match source {
            JwksSource::Url(url) => {
                let (body, max_age) = fetch(url).await.map_err(|why| {
                    warn!(%url, %why, "trusted proxy: JWKS fetch failed; assertions are refused until it works");
                    proxy_jwt::jwks_unavailable(&why)
                })?;
                let keys = proxy_jwt::parse_jwks(&body)?;
                (keys, Some(Instant::now() + max_age), None)
            }
            JwksSource::File(path) => {
                let stamp = file_stamp(path);
                let body = read_bounded(path).map_err(|why| {
                    warn!(path = %path.display(), %why, "trusted proxy: cannot read the JWKS file");
                    proxy_jwt::jwks_unavailable(&why)
                })?;
                (proxy_jwt::parse_jwks(&body)?, None, stamp)
            }
        };
        let keys = Arc::new(keys);
        *cached = Some(Cached {
            source: source.clone(),
            keys: keys.clone(),
            fresh_until,
            stamp,
        });
        Ok(keys)
    }

    /// Whether an unknown `kid` may refetch now (and records that it did).
    fn may_force(&self) -> bool {
        let mut last = self.last_forced.lock().expect("not poisoned");
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < UNKNOWN_KID_REFETCH) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Verifies an assertion: the user its claim names.
    pub(crate) async fn verify(&self, cfg: &JwtConfig, token: &str) -> Result<String, JwtRefusal> {
        let header = proxy_jwt::parse_header(token, &cfg.algorithms)?;
        let keys = self.keys(&cfg.jwks, false).await?;
        let keys = match keys.find(header.kid.as_deref(), header.alg) {
            Some(_) => keys,
            None if matches!(cfg.jwks, JwksSource::Url(_)) && self.may_force() => {
                self.keys(&cfg.jwks, true).await?
            }
            None => return Err(proxy_jwt::unknown_key()),
        };
        let key = keys
            .find(header.kid.as_deref(), header.alg)
            .ok_or_else(proxy_jwt::unknown_key)?;
        proxy_jwt::verify(token, &header, key, cfg)
    }
}

fn file_stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read_bounded(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    file.take(proxy_jwt::MAX_JWKS_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    Ok(body)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// GETs `url`: the body (at most one byte over the limit, so a larger
/// one is refused by the parser) and how long it may be kept.
async fn fetch(url: &str) -> Result<(Vec<u8>, Duration), String> {
    tokio::time::timeout(FETCH_TIMEOUT, fetch_inner(url))
        .await
        .map_err(|_| "timed out".to_string())?
}

async fn fetch_inner(url: &str) -> Result<(Vec<u8>, Duration), String> {
    let uri: axum::http::Uri = url.parse().map_err(|_| "bad URL".to_string())?;
    let https = uri.scheme_str() == Some("https");
    let host = uri.host().ok_or("no host")?.to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let io: Box<dyn Io> = if https {
        let config = clawgate_client::tls::client_config(None);
        let name = rustls_name(&host)?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("http: {e}"))?;
    tokio::spawn(async move {
        let _ = tokio::time::timeout(FETCH_TIMEOUT, conn).await;
    });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri
        .authority()
        .map_or(host.as_str(), |a| a.as_str())
        .to_string();
    let req = Request::get(path)
        .header(header::HOST, authority)
        .header(header::ACCEPT, "application/json")
        .header(header::USER_AGENT, "clawgate")
        .body(axum::body::Body::empty())
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("http: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status().as_u16()));
    }
    let max_age = max_age(resp.headers());
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        if let Ok(data) = frame.into_data() {
            let data: Bytes = data;
            out.extend_from_slice(&data);
            if out.len() > proxy_jwt::MAX_JWKS_BYTES {
                break;
            }
        }
    }
    Ok((out, max_age))
}

fn rustls_name(host: &str) -> Result<tokio_rustls::rustls::pki_types::ServerName<'static>, String> {
    tokio_rustls::rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
        .map_err(|_| "bad host name".to_string())
}

/// `Cache-Control: max-age=N` bounded to [`MIN_MAX_AGE`]..[`MAX_MAX_AGE`];
/// `no-store`/`no-cache` count as the minimum.
fn max_age(headers: &HeaderMap) -> Duration {
    let Some(cc) = headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
    else {
        return DEFAULT_MAX_AGE;
    };
    let mut age = None;
    for part in cc.split(',').map(str::trim) {
        let lower = part.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return MIN_MAX_AGE;
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            age = n
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age.unwrap_or(DEFAULT_MAX_AGE)
        .clamp(MIN_MAX_AGE, MAX_MAX_AGE)
}

/// The trusted-proxy verdict for an upgrade from TCP peer `tcp_peer`
/// (`NotApplicable` outside trusted-proxy mode).
pub(crate) async fn proxy_verdict(
    state: &GatewayState,
    jwks: &JwksCache,
    tcp_peer: IpAddr,
    headers: &HeaderMap,
) -> ProxyAuth {
    let auth = state.auth();
    if auth.config.mode != AuthMode::TrustedProxy {
        return ProxyAuth::NotApplicable;
    }
    let Some(cfg) = auth.config.trusted_proxy.clone() else {
        return trusted_proxy::refused("trusted_proxy_config_missing", None);
    };
    drop(auth);
    let trusted = state.is_trusted_proxy(tcp_peer);
    let local_interface = if trusted && !crate::session::is_loopback(tcp_peer) {
        crate::http::local_addrs::is_local_interface(tcp_peer)
    } else {
        Some(false)
    };
    let id = match trusted_proxy::check_headers(&cfg, trusted, tcp_peer, local_interface, headers) {
        Ok(id) => id,
        Err(refusal) => return refusal,
    };
    let user = match (&cfg.jwt, &id.assertion) {
        (Some(jwt), Some(token)) => match jwks.verify(jwt, token).await {
            Ok(claim) if proxy_jwt::same_user(&id.user, &claim) => claim,
            Ok(_) => {
                let r = proxy_jwt::user_mismatch();
                return trusted_proxy::refused(r.reason, Some(r.message));
            }
            Err(r) => return trusted_proxy::refused(r.reason, Some(r.message)),
        },
        _ => id.user,
    };
    trusted_proxy::admit(&cfg, user, id.scopes_cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_lifetime_is_bounded() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::CACHE_CONTROL, v.parse().unwrap());
            m
        };
        assert_eq!(max_age(&HeaderMap::new()), DEFAULT_MAX_AGE);
        assert_eq!(
            max_age(&h("public, max-age=3600")),
            Duration::from_secs(3600)
        );
        assert_eq!(max_age(&h("max-age=1")), MIN_MAX_AGE);
        assert_eq!(max_age(&h("max-age=99999999")), MAX_MAX_AGE);
        assert_eq!(max_age(&h("no-store")), MIN_MAX_AGE);
    }
}
