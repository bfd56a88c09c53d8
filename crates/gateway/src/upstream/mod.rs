//! Fronting mode: clawgate in front of a real OpenClaw gateway (the
//! "upstream", `gateway.upstream.url` / `gateway run --upstream`).
//!
//! clawgate authenticates every client itself; for each authenticated
//! client it opens one upstream socket with its own upstream device
//! identity and device token, asking for exactly the client's approved
//! scopes, and relays frames both ways (`ws::relay`).
//!
//! - `mod.rs`: [`Upstream`] (the configured upstream, its credentials, the
//!   handshake queue, whether it is up, the capability paths handed out)
//!   and the paths and client description `clawgate upstream pair` shares
//!   with the gateway;
//! - `link.rs`: opening one upstream socket for one client;
//! - `policy.rs`: which methods are relayed, answered by clawgate or
//!   refused;
//! - `hello.rs`: the client's `hello-ok` built from the upstream's;
//! - `transport.rs`: the byte stream to the upstream (TCP, pinned TLS) and
//!   the adapter that lets a relayed socket shed its handshake buffers;
//! - `caps.rs`: capability paths (`pluginSurfaceUrls.canvas`) handed to
//!   clients and checked by the HTTP proxy;
//! - `admin_methods.rs`: the upstream methods that need `operator.admin`.
//!
//! Imports `config`, `state` (metrics only), `session`; never `ws`, `rpc`
//! or `http`.

mod admin_methods;
pub mod caps;
pub mod hello;
pub mod link;
pub mod policy;
pub mod transport;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use clawgate_client::{ClientInfo, DeviceIdentity, Endpoint, FileTokenCache, TokenCache, TokenKey};
use clawgate_protocol::Secret;
use clawgate_protocol::scopes;
use tokio::sync::Semaphore;

use crate::config::UpstreamConfig;
use crate::session::now_ms;

pub use admin_methods::needs_admin;

/// Directory (inside the state directory) of clawgate's upstream identity
/// (`identity.json`) and its upstream device token (`device-tokens.json`).
pub const IDENTITY_DIR: &str = "upstream";

/// The upstream identity directory for `state_dir`.
pub fn identity_dir(state_dir: &Path) -> PathBuf {
    state_dir.join(IDENTITY_DIR)
}

/// Every operator scope: clawgate pairs its upstream identity once with all
/// of them and keeps that full-scope token; each relayed client's upstream
/// socket asks for a subset (asking for more than the stored token holds
/// would make the upstream mint a new token and void the old one).
pub const SCOPES: [&str; 5] = [
    scopes::ADMIN,
    scopes::READ,
    scopes::WRITE,
    scopes::APPROVALS,
    scopes::PAIRING,
];

/// The platform clawgate's upstream identity is paired with. The upstream
/// pins it: every upstream connect must send the same value, or the
/// upstream asks for the device to be re-approved.
pub const PLATFORM: &str = std::env::consts::OS;

/// How clawgate describes itself when it pairs (`clawgate upstream pair`,
/// `clawgate upstream status`). Mode `cli`, not `backend`: OpenClaw treats
/// a `gateway-client`/`backend` connect with the shared secret as its own
/// local helper and skips device pairing, so it would issue no device
/// token (measured against 2026.9.6).
pub fn pairing_client_info() -> ClientInfo {
    ClientInfo {
        id: "gateway-client".into(),
        display_name: Some("clawgate".into()),
        version: crate::VERSION.into(),
        platform: PLATFORM.into(),
        device_family: None,
        mode: "cli".into(),
        instance_id: uuid::Uuid::new_v4().to_string(),
    }
}

/// The token cache key of the upstream device token.
pub fn token_key(url: &str, identity: &DeviceIdentity) -> Option<TokenKey> {
    let ep = Endpoint::parse(url).ok()?;
    Some(TokenKey {
        gateway: ep.origin(),
        device_id: identity.device_id().to_string(),
        role: "operator".into(),
    })
}

/// clawgate's paired upstream identity and its device token.
#[derive(Clone)]
pub struct Credentials {
    pub identity: DeviceIdentity,
    pub token: Secret,
    /// The scopes the stored token was issued for.
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("device_id", &self.identity.device_id())
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Why there are no usable upstream credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "clawgate has no upstream identity in {dir} yet: pair it once with `clawgate upstream pair` (it needs the upstream's shared token)"
    )]
    NoIdentity { dir: String },
    #[error(
        "clawgate's upstream identity {device_id} has no device token for {url}: pair it with `clawgate upstream pair`"
    )]
    NoToken { device_id: String, url: String },
    #[error("cannot read clawgate's upstream identity in {dir}: {reason}")]
    Unreadable { dir: String, reason: String },
}

/// Reads clawgate's upstream identity and device token from `dir`.
pub fn load_credentials(dir: &Path, url: &str) -> Result<Credentials, CredentialsError> {
    let unreadable = |reason: String| CredentialsError::Unreadable {
        dir: dir.display().to_string(),
        reason,
    };
    let identity = DeviceIdentity::load(dir)
        .map_err(|e| unreadable(e.to_string()))?
        .ok_or_else(|| CredentialsError::NoIdentity {
            dir: dir.display().to_string(),
        })?;
    let key =
        token_key(url, &identity).ok_or_else(|| unreadable(format!("bad upstream URL {url}")))?;
    let cached = FileTokenCache::new(dir)
        .load(&key)
        .map_err(|e| unreadable(e.to_string()))?
        .ok_or_else(|| CredentialsError::NoToken {
            device_id: identity.device_id().to_string(),
            url: key.gateway.clone(),
        })?;
    Ok(Credentials {
        identity,
        token: cached.token,
        scopes: cached.scopes,
    })
}

/// Upstream handshakes in flight at once: the upstream refuses more than 32
/// unfinished handshakes per peer address (HTTP 503), and every relayed
/// client shares clawgate's address. Further handshakes wait their turn.
pub const MAX_PARALLEL_HANDSHAKES: usize = 16;

/// The upstream a fronting gateway relays to.
#[derive(Debug)]
pub struct Upstream {
    pub config: UpstreamConfig,
    pub endpoint: Endpoint,
    dir: PathBuf,
    credentials: RwLock<Result<Credentials, CredentialsError>>,
    /// When the credentials were last read from disk (ms).
    loaded_at_ms: AtomicU64,
    /// Caps the upstream handshakes in flight.
    pub(crate) handshakes: Semaphore,
    /// Whether the last upstream connect or probe succeeded.
    up: AtomicBool,
    /// Readiness probes made (each one upstream connection).
    probes: AtomicU64,
    /// Capability paths handed to relayed clients.
    pub caps: caps::Capabilities,
    /// TLS for a `wss://` upstream.
    tls: Option<transport::Tls>,
}

impl Upstream {
    /// The upstream of `config`, with the credentials in `state_dir` (read
    /// again on use while they are missing, so `clawgate upstream pair`
    /// takes effect without a restart).
    pub fn new(config: UpstreamConfig, state_dir: &Path) -> Arc<Upstream> {
        let endpoint = Endpoint::parse(&config.url).expect("the config resolver checked the URL");
        let dir = identity_dir(state_dir);
        let credentials = load_credentials(&dir, &config.url);
        let tls = endpoint.is_tls().then(|| {
            let pin = config
                .tls_fingerprint
                .map(|fp| clawgate_client::TlsPin::Certificate(clawgate_client::Fingerprint(fp)));
            transport::Tls::for_upstream(&endpoint.host, pin.as_ref())
        });
        Arc::new(Upstream {
            tls,
            config,
            endpoint,
            dir,
            credentials: RwLock::new(credentials),
            loaded_at_ms: AtomicU64::new(now_ms()),
            handshakes: Semaphore::new(MAX_PARALLEL_HANDSHAKES),
            up: AtomicBool::new(false),
            probes: AtomicU64::new(0),
            caps: caps::Capabilities::default(),
        })
    }

    /// The credentials to connect with, or why there are none (re-read
    /// from disk at most once a second while they are missing or after
    /// [`Upstream::reload_credentials`]).
    pub fn credentials(&self) -> Result<Credentials, CredentialsError> {
        {
            let current = self.credentials.read().expect("credentials lock");
            let fresh = now_ms().saturating_sub(self.loaded_at_ms.load(Ordering::Relaxed)) < 1000;
            if current.is_ok() || fresh {
                return current.clone();
            }
        }
        self.reload_credentials()
    }

    /// Reads the credentials from disk now.
    pub fn reload_credentials(&self) -> Result<Credentials, CredentialsError> {
        let loaded = load_credentials(&self.dir, &self.config.url);
        self.loaded_at_ms.store(now_ms(), Ordering::Relaxed);
        *self.credentials.write().expect("credentials lock") = loaded.clone();
        loaded
    }

    /// The pinned certificate of a `wss://` upstream.
    pub fn pin(&self) -> Option<clawgate_client::TlsPin> {
        self.config
            .tls_fingerprint
            .map(|fp| clawgate_client::TlsPin::Certificate(clawgate_client::Fingerprint(fp)))
    }

    /// Whether the upstream answered the last connect or probe.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub(crate) fn set_up(&self, up: bool) {
        let was = self.up.swap(up, Ordering::Relaxed);
        if was != up {
            if up {
                tracing::info!(upstream = %self.endpoint.origin(), "upstream gateway reachable");
            } else {
                tracing::warn!(upstream = %self.endpoint.origin(), "upstream gateway unreachable");
            }
        }
    }

    /// The upstream's own metrics lines (`/metrics` in fronting mode).
    pub fn render_metrics(&self) -> String {
        format!(
            "# HELP clawgate_upstream_up Fronting mode: 1 when the upstream answered the last connect or probe.\n# TYPE clawgate_upstream_up gauge\nclawgate_upstream_up {}\n# HELP clawgate_upstream_probes_total Fronting mode: readiness probes made (one upstream connection each).\n# TYPE clawgate_upstream_probes_total counter\nclawgate_upstream_probes_total {}\n",
            u8::from(self.is_up()),
            self.probes.load(Ordering::Relaxed)
        )
    }

    /// `http://host:port` (or `https://`) of the upstream: where its
    /// Control UI and plugin surfaces are served.
    pub fn http_origin(&self) -> String {
        let scheme = if self.endpoint.is_tls() {
            "https"
        } else {
            "http"
        };
        let host = if self.endpoint.host.contains(':') {
            format!("[{}]", self.endpoint.host)
        } else {
            self.endpoint.host.clone()
        };
        format!("{scheme}://{host}:{}", self.endpoint.port)
    }

    /// Probes the upstream and records the result: a WebSocket upgrade
    /// and its `connect.challenge` (the upstream does no auth work for it),
    /// then a close. A TCP connect alone would call a hung upstream, or a
    /// proxy in front of a stopped one, up.
    pub async fn probe(&self) -> bool {
        self.probes.fetch_add(1, Ordering::Relaxed);
        let ok = tokio::time::timeout(Duration::from_secs(2), self.challenge())
            .await
            .unwrap_or(false);
        self.set_up(ok);
        ok
    }

    async fn challenge(&self) -> bool {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(4096)
            .max_message_size(Some(64 * 1024));
        let Ok(mut ws) =
            clawgate_client::open_socket(&self.endpoint, self.pin().as_ref(), config).await
        else {
            return false;
        };
        let ok = loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let head = clawgate_protocol::frames::FrameHead::parse(t.as_str());
                    break head.is_some_and(|h| {
                        h.is_event() && h.event.as_deref() == Some("connect.challenge")
                    });
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => break false,
            }
        };
        let _ = ws.close(None).await;
        ok
    }
}
