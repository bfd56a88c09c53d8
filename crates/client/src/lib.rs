//! Async client for OpenClaw-protocol gateways (clawgate and OpenClaw).
//!
//! [`Client::connect`] opens a connection, answers the challenge (signing it
//! with the client's Ed25519 [`DeviceIdentity`] when there is one), caches
//! the device token the gateway issues, and keeps the connection up:
//!
//! - credentials are chosen in the reference's order ([`auth::select`]);
//! - when the gateway says the shared token no longer matches and the
//!   client holds a cached device token for a trusted endpoint, it retries
//!   once, 250 ms later, with both (a success is reported as
//!   [`ClientEvent::Recovered`], not as an error);
//! - on the auth failures a retry cannot fix (the pause list) it stops and
//!   hands the caller the gateway's structured error;
//! - dropped connections are re-opened with exponential backoff (1 s to
//!   30 s, full jitter), honouring the gateway's `retryAfterMs`;
//! - a silent gateway (no frame for two tick intervals) is closed with 4000
//!   and re-opened.
//!
//! ```no_run
//! # async fn demo() -> Result<(), clawgate_client::ClientError> {
//! use clawgate_client::{Client, ConnectOptions};
//! let opts = ConnectOptions::new("ws://127.0.0.1:18789")
//!     .token("my-gateway-token")
//!     .state_dir(clawgate_client::default_client_dir())?;
//! let client = Client::connect(opts).await?;
//! let health = client.request("health", serde_json::json!({})).await?;
//! println!("{health}");
//! client.close().await;
//! # Ok(()) }
//! ```

pub mod auth;
mod client;
mod conn;
pub mod endpoint;
pub mod identity;
pub mod methods;
mod storage;
pub mod tls;
pub mod token_cache;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clawgate_protocol::Secret;
use clawgate_protocol::frames::ErrorShape;
pub use clawgate_protocol::setup_code::{SetupCodeError, SetupPayload};
use serde_json::Value;

pub use client::Client;
pub use conn::{Ws, open_socket};
pub use endpoint::{Endpoint, Fingerprint, PresentedCert, TlsPin, is_trusted_retry_endpoint};
pub use identity::DeviceIdentity;
pub use storage::{StorageError, default_client_dir};
pub use token_cache::{CachedToken, FileTokenCache, MemoryTokenCache, TokenCache, TokenKey};

/// How the client describes itself in `connect`.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// One of the protocol's client ids (`gateway-client`, `cli`, ...).
    pub id: String,
    pub display_name: Option<String>,
    pub version: String,
    pub platform: String,
    pub device_family: Option<String>,
    /// One of the protocol's modes (`backend`, `cli`, `ui`, ...).
    pub mode: String,
    pub instance_id: String,
}

impl Default for ClientInfo {
    fn default() -> Self {
        ClientInfo {
            id: "gateway-client".into(),
            display_name: None,
            version: env!("CARGO_PKG_VERSION").into(),
            platform: std::env::consts::OS.into(),
            device_family: None,
            mode: "backend".into(),
            instance_id: uuid::Uuid::new_v4().to_string(),
        }
    }
}

/// Everything [`Client::connect`] needs.
#[derive(Clone)]
pub struct ConnectOptions {
    /// `ws://host:port/` or `wss://...`.
    pub url: String,
    /// Shared gateway token.
    pub token: Option<Secret>,
    /// Shared gateway password.
    pub password: Option<Secret>,
    /// A device token given explicitly (beats the cached one).
    pub device_token: Option<Secret>,
    pub bootstrap_token: Option<Secret>,
    pub prefer_bootstrap_token: bool,
    /// Scopes to ask for; `None`: the cached token's, else `operator.admin`.
    pub scopes: Option<Vec<String>>,
    pub role: String,
    pub client: ClientInfo,
    /// The device identity to present; `None` connects device-less.
    pub identity: Option<DeviceIdentity>,
    /// Where device tokens are cached; `None` keeps none.
    pub token_cache: Option<Arc<dyn TokenCache>>,
    /// Pin the `wss://` server certificate: its SHA-256, or its public
    /// key's (`sha256/<base64>`, survives renewals that keep the key).
    pub tls_fingerprint: Option<TlsPin>,
    /// From opening the socket to `hello-ok` (default 15 s).
    pub handshake_timeout: Duration,
    /// Default per-request timeout (default 30 s).
    pub request_timeout: Duration,
    /// Re-open the connection when it drops (default true). The first
    /// connect never retries except for the one device-token retry.
    pub reconnect: bool,
    /// First reconnect delay (default 1 s); doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Pause before the one device-token retry (default 250 ms).
    pub retry_delay: Duration,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("url", &self.url)
            .field("token", &self.token)
            .field("password", &self.password)
            .field("device_token", &self.device_token)
            .field("scopes", &self.scopes)
            .field("role", &self.role)
            .field("client", &self.client)
            .field("identity", &self.identity)
            .field("tls_fingerprint", &self.tls_fingerprint)
            .finish_non_exhaustive()
    }
}

impl ConnectOptions {
    /// Options that redeem a setup code (bare or `oc-pair://`): its gateway
    /// URL, its bootstrap token sent alone, its TLS fingerprint as the pin,
    /// and no scopes asked (the session gets the code's). Set `identity`
    /// and `token_cache` so the device token from `hello-ok` is kept; later
    /// connects use it.
    pub fn from_setup_code(code: &str) -> Result<ConnectOptions, SetupCodeError> {
        let payload = SetupPayload::decode(code)?;
        let mut opts = ConnectOptions::new(payload.url);
        opts.bootstrap_token = Some(payload.bootstrap_token);
        opts.prefer_bootstrap_token = true;
        opts.scopes = Some(Vec::new());
        opts.tls_fingerprint = payload
            .tls_fingerprint
            .and_then(|hex| TlsPin::parse(&hex).ok());
        Ok(opts)
    }

    pub fn new(url: impl Into<String>) -> ConnectOptions {
        ConnectOptions {
            url: url.into(),
            token: None,
            password: None,
            device_token: None,
            bootstrap_token: None,
            prefer_bootstrap_token: false,
            scopes: None,
            role: "operator".into(),
            client: ClientInfo::default(),
            identity: None,
            token_cache: None,
            tls_fingerprint: None,
            handshake_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(30),
            reconnect: true,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            retry_delay: Duration::from_millis(250),
        }
    }

    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Secret::new(token));
        self
    }

    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Secret::new(password));
        self
    }

    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// Uses the identity and token cache in `dir`, creating the identity on
    /// first use (`identity.json` and `device-tokens.json`, files 0600,
    /// directory 0700).
    pub fn state_dir(mut self, dir: impl AsRef<Path>) -> Result<Self, ClientError> {
        let dir = dir.as_ref();
        self.identity = Some(DeviceIdentity::load_or_create(dir)?);
        self.token_cache = Some(Arc::new(FileTokenCache::new(dir)));
        Ok(self)
    }

    /// The token cache key for `role` on this gateway, when the client has
    /// an identity.
    pub fn token_key(&self) -> Option<TokenKey> {
        let id = self.identity.as_ref()?;
        let ep = Endpoint::parse(&self.url).ok()?;
        Some(TokenKey {
            gateway: ep.origin(),
            device_id: id.device_id().to_string(),
            role: self.role.clone(),
        })
    }
}

/// What went wrong.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered at the URL.
    #[error("gateway not reachable at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The HTTP upgrade was refused.
    #[error("gateway rejected the websocket upgrade (HTTP {status}){}", if .body.is_empty() { String::new() } else { format!(": {}", .body) })]
    Rejected { status: u16, body: String },
    #[error("TLS failed: {0}")]
    Tls(String),
    /// The `wss://` certificate does not match the pin; carries what the
    /// server presented.
    #[error("TLS failed: {0}")]
    TlsPinMismatch(tls::PinMismatch),
    /// The gateway refused the connect or a request, with its structured error.
    #[error("{}", .0.message)]
    Gateway(Box<ErrorShape>),
    /// The socket closed without an error response.
    #[error("gateway closed the connection ({code}{})", if .reason.is_empty() { String::new() } else { format!(": {}", .reason) })]
    Closed { code: u16, reason: String },
    #[error("gateway did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// Between connections: the client is reconnecting.
    #[error("not connected to the gateway (reconnecting)")]
    NotConnected,
    #[error("unexpected reply from the gateway: {0}")]
    Protocol(String),
    #[error("client state: {0}")]
    Storage(String),
    #[error("{0}")]
    InvalidOptions(String),
    /// The client was closed.
    #[error("client closed")]
    Stopped,
}

impl From<StorageError> for ClientError {
    fn from(e: StorageError) -> Self {
        ClientError::Storage(e.to_string())
    }
}

impl ClientError {
    /// The gateway's error, if this is one.
    pub fn gateway_error(&self) -> Option<&ErrorShape> {
        match self {
            ClientError::Gateway(e) => Some(e),
            _ => None,
        }
    }

    /// `details.code` of a gateway error.
    pub fn detail_code(&self) -> Option<&str> {
        self.gateway_error().and_then(ErrorShape::detail_code)
    }
}

/// What happens on the connection, in order.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// `hello-ok` arrived. `auth_method` is `token`, `password`,
    /// `device-token`, ...
    Connected {
        auth_method: String,
        hello: Arc<Value>,
    },
    /// The shared token was refused, and the one retry with the cached
    /// device token succeeded.
    Recovered {
        error: Box<ErrorShape>,
        auth_method: String,
    },
    /// The connection dropped.
    Disconnected { code: u16, reason: String },
    /// A reconnect is scheduled.
    Reconnecting {
        attempt: u32,
        delay: Duration,
        error: String,
    },
    /// Reconnecting stopped for good; the error says why.
    Paused(ClientError),
    /// An event frame from the gateway.
    Event {
        event: String,
        payload: Value,
        seq: Option<u64>,
    },
}

/// Auth failures that stop reconnecting
/// ([`clawgate_protocol::catalogue::PAUSE_RECONNECT`]): a retry with the same
/// credentials cannot succeed, so the caller must act.
pub fn pauses_reconnect(error: &ErrorShape) -> bool {
    let Some(code) = error.detail_code() else {
        return false;
    };
    if code == "PAIRING_REQUIRED" {
        let details = error.details.as_deref();
        let keep_going = details
            .and_then(|d| d.get("pauseReconnect"))
            .and_then(Value::as_bool)
            == Some(false)
            || details
                .and_then(|d| d.get("recommendedNextStep"))
                .and_then(Value::as_str)
                == Some("wait_then_retry");
        return !keep_going;
    }
    clawgate_protocol::catalogue::PAUSE_RECONNECT.contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_from_a_setup_code() {
        let code = SetupPayload {
            url: "wss://gw.example:18789".into(),
            bootstrap_token: Secret::new("boot-token"),
            expires_at_ms: Some(1),
            tls_fingerprint: Some("ab".repeat(32)),
        }
        .encode();
        let opts = ConnectOptions::from_setup_code(&format!("oc-pair://{code}")).unwrap();
        assert_eq!(opts.url, "wss://gw.example:18789");
        assert_eq!(
            opts.bootstrap_token.as_ref().map(Secret::expose),
            Some("boot-token")
        );
        assert!(opts.prefer_bootstrap_token);
        assert_eq!(opts.scopes, Some(Vec::new()));
        assert!(opts.token.is_none() && opts.password.is_none());
        assert!(matches!(opts.tls_fingerprint, Some(TlsPin::Certificate(_))));
        assert!(ConnectOptions::from_setup_code("not-a-code").is_err());
    }

    fn error(details: Value) -> ErrorShape {
        let mut e = ErrorShape::new("NOT_PAIRED", "x");
        e.details = Some(Box::new(details));
        e
    }

    #[test]
    fn pause_list_with_its_pairing_exceptions() {
        assert!(pauses_reconnect(&error(
            json!({"code": "AUTH_DEVICE_TOKEN_MISMATCH"})
        )));
        assert!(pauses_reconnect(&error(
            json!({"code": "PAIRING_REQUIRED"})
        )));
        assert!(!pauses_reconnect(&error(
            json!({"code": "PAIRING_REQUIRED", "pauseReconnect": false})
        )));
        assert!(!pauses_reconnect(&error(
            json!({"code": "PAIRING_REQUIRED", "recommendedNextStep": "wait_then_retry"})
        )));
        // Unknown codes and errors without a code keep reconnecting.
        assert!(!pauses_reconnect(&error(json!({"code": "SOMETHING_NEW"}))));
        assert!(!pauses_reconnect(&ErrorShape::new("UNAVAILABLE", "busy")));
    }
}
