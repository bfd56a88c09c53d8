//! The resolved configuration and its errors: what the rest of the gateway
//! reads ([`GatewayConfig`] and its parts) and [`ConfigError`], which names
//! the offending key in every refusal.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clawgate_protocol::Secret;

/// Default port.
pub const DEFAULT_PORT: u16 = 18789;
/// Name of the config file inside the state directory.
pub const CONFIG_FILE_NAME: &str = "clawgate.json";
/// Bounds of `gateway.tickIntervalMs` (the default is the protocol's
/// [`clawgate_protocol::TICK_INTERVAL_MS`]).
pub const TICK_INTERVAL_MS_RANGE: std::ops::RangeInclusive<u64> = 1_000..=300_000;

/// How the listener binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindMode {
    /// 127.0.0.1 only (default).
    Loopback,
    /// All interfaces (0.0.0.0).
    Lan,
    /// A specific address (`--bind custom --host ADDR`, or `gateway.customBindHost`).
    Custom(IpAddr),
}

impl BindMode {
    /// The address to listen on.
    pub fn address(&self) -> IpAddr {
        match self {
            BindMode::Loopback => IpAddr::from([127, 0, 0, 1]),
            BindMode::Lan => IpAddr::from([0, 0, 0, 0]),
            BindMode::Custom(ip) => *ip,
        }
    }

    /// Whether only loopback peers can reach the listener (an IPv4-mapped
    /// loopback address such as `::ffff:127.0.0.1` included).
    pub fn is_loopback(&self) -> bool {
        clawgate_protocol::is_loopback_ip(self.address())
    }
}

/// A CIDR range of `gateway.trustedProxies`. IPv4 ranges match IPv4 peers
/// and their IPv4-mapped IPv6 form alike; an IPv4-mapped range
/// (`::ffff:10.0.0.0/104`) is the IPv4 range it maps; native IPv6 peers
/// never match an IPv4 range (as in the reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    /// The network address (IPv4 for IPv4 and mapped ranges).
    pub net: IpAddr,
    /// Prefix length in the network address's family.
    pub prefix: u8,
}

impl IpRange {
    /// Parses `addr/prefix`; the address is masked to the prefix.
    pub fn parse(text: &str) -> Option<IpRange> {
        let (addr, prefix) = text.trim().split_once('/')?;
        let addr: IpAddr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let (net, prefix) = match addr {
            IpAddr::V4(_) if prefix <= 32 => (addr, prefix),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if (96..=128).contains(&prefix) => (IpAddr::V4(v4), prefix - 96),
                Some(_) => return None,
                None if prefix <= 128 => (addr, prefix),
                None => return None,
            },
            _ => return None,
        };
        Some(IpRange {
            net: mask(net, prefix),
            prefix,
        })
    }

    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.prefix) == self.net
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// `gateway.auth.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Token,
    Password,
    None,
    /// `"trusted-proxy"`: the identity comes from a header set by a proxy
    /// in `gateway.trustedProxies` (see [`TrustedProxyConfig`]).
    TrustedProxy,
}

impl AuthMode {
    /// How a session that passed this mode's shared secret authenticated.
    pub fn auth_method(self) -> clawgate_protocol::wire::AuthMethod {
        use clawgate_protocol::wire::AuthMethod;
        match self {
            AuthMode::Token => AuthMethod::Token,
            AuthMode::Password => AuthMethod::Password,
            AuthMode::None => AuthMethod::None,
            // The shared secret of trusted-proxy mode is the local password.
            AuthMode::TrustedProxy => AuthMethod::Password,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Token => "token",
            AuthMode::Password => "password",
            AuthMode::None => "none",
            AuthMode::TrustedProxy => "trusted-proxy",
        }
    }
}

/// `gateway.auth.rateLimit.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Failures within the window that trigger a lockout (default 10).
    pub max_attempts: u32,
    /// Sliding window in ms (default 60 000).
    pub window_ms: u64,
    /// Lockout length in ms (default 300 000).
    pub lockout_ms: u64,
    /// Loopback peers get growing delays instead of lockouts (default true).
    pub exempt_loopback: bool,
    /// clawgate addition (`gateway.auth.rateLimit.globalMaxFailures`):
    /// failures per window across all peers; once they are spent, every
    /// peer that has failed within the window is refused, while peers that
    /// have not keep getting in (default 1000).
    pub global_max_failures: u32,
    /// clawgate addition (`gateway.auth.rateLimit.attackGuard`, default
    /// true): once shared-secret failures across all peers reach
    /// `global_max_failures` within the window, the gateway is "under
    /// attack": shared-secret attempts from peers without a recent success
    /// are refused before any comparison until the episode cools down.
    pub attack_guard: bool,
    /// `gateway.auth.rateLimit.attackCooldownMs` (default 60 000): an
    /// episode ends after this long without a shared-secret failure or a
    /// refused attempt.
    pub attack_cooldown_ms: u64,
    /// `gateway.auth.rateLimit.recentSuccessTtlMs` (default 3 600 000): how
    /// long a peer address (IPv6 by /64) that authenticated stays
    /// "recently successful" and so keeps its shared-secret access during
    /// an episode.
    pub recent_success_ttl_ms: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            max_attempts: 10,
            window_ms: 60_000,
            lockout_ms: 300_000,
            exempt_loopback: true,
            global_max_failures: 1000,
            attack_guard: true,
            attack_cooldown_ms: 60_000,
            recent_success_ttl_ms: 3_600_000,
        }
    }
}

/// The resolved auth settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub token: Option<Secret>,
    pub password: Option<Secret>,
    /// `gateway.auth.passwordHash`: the password as an Argon2id hash (used
    /// instead of `password`, which is then `None`).
    pub password_hash: Option<crate::password::PasswordHash>,
    pub rate_limit: RateLimitConfig,
    /// `gateway.auth.trustedProxy.*` (only with mode `trusted-proxy`).
    pub trusted_proxy: Option<TrustedProxyConfig>,
    /// `gateway.auth.identityScopes`: extra session scopes per verified
    /// proxy identity (keys with an `@` lowercased: emails match
    /// case-insensitively).
    pub identity_scopes: Vec<(String, Vec<String>)>,
}

/// The scopes `deviceAutoApprove` grants when its list is not set.
pub const DEFAULT_AUTO_APPROVE_SCOPES: &[&str] = &[
    "operator.read",
    "operator.write",
    "operator.approvals",
    "operator.questions",
];

/// `gateway.auth.trustedProxy.*` (the reference's keys, plus `jwt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxyConfig {
    /// `userHeader`, lowercase.
    pub user_header: String,
    /// `requiredHeaders`, lowercase, as written (the refusal reason names
    /// them as configured).
    pub required_headers: Vec<String>,
    /// `allowUsers` (exact match after trimming; empty: everyone).
    pub allow_users: Vec<String>,
    /// `allowLoopback` (default false).
    pub allow_loopback: bool,
    /// `deviceAutoApprove`: `Some(scopes)` when enabled.
    pub device_auto_approve: Option<AutoApprove>,
    /// `jwt` (clawgate addition): verify the proxy's signed assertion.
    pub jwt: Option<JwtConfig>,
}

/// `gateway.auth.trustedProxy.deviceAutoApprove` when enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoApprove {
    /// The most an auto-approved device gets.
    pub scopes: Vec<String>,
    /// `scopes` was set explicitly (the default list also adds
    /// `operator.questions`; an explicit list is never widened).
    pub explicit: bool,
}

/// Where the assertion's signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// `jwksUrl`: fetched, cached for its `Cache-Control: max-age`
    /// (bounded), fetched again for an unknown `kid` (rate-limited).
    Url(String),
    /// `jwksFile`: read at start and whenever its modification time changes.
    File(PathBuf),
}

/// `gateway.auth.trustedProxy.jwt.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// `header`, lowercase: the header carrying the assertion
    /// (`x-pomerium-jwt-assertion`, `cf-access-jwt-assertion`).
    pub header: String,
    pub jwks: JwksSource,
    /// `issuer`: the `iss` the assertion must carry.
    pub issuer: String,
    /// `audience`: the assertion's `aud` must contain one of these.
    pub audience: Vec<String>,
    /// `algorithms` (default `["RS256", "ES256"]`): asymmetric only.
    pub algorithms: Vec<String>,
    /// `clockSkewSeconds` (default 60, at most 300).
    pub clock_skew_secs: u64,
    /// `userClaim` (default `"email"`): the claim that is the user.
    pub user_claim: String,
}

/// `gateway.controlUi.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlUiConfig {
    /// Serve the Control UI (default true).
    pub enabled: bool,
    /// URL prefix of the UI (default "/"); always starts and ends with '/'.
    pub base_path: String,
    /// Extra origins allowed to open WebSockets (exact `scheme://host[:port]`
    /// strings, or "*").
    pub allowed_origins: Vec<String>,
}

impl Default for ControlUiConfig {
    fn default() -> Self {
        ControlUiConfig {
            enabled: true,
            base_path: "/".into(),
            allowed_origins: Vec::new(),
        }
    }
}

/// `gateway.upstream.*`: the OpenClaw gateway clawgate fronts. Without it
/// clawgate is a standalone gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// `ws://host:port/` or `wss://...`, normalised (a trailing slash, the
    /// default port filled in).
    pub url: String,
    /// `gateway.upstream.tlsFingerprint`: the SHA-256 of the upstream's
    /// certificate, pinned for `wss://`.
    pub tls_fingerprint: Option<[u8; 32]>,
}

/// `gateway.tls.*` (the reference's keys): serve `https://` and `wss://` on
/// the gateway's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// `gateway.tls.enabled` / `gateway run --tls` (default false).
    pub enabled: bool,
    /// `gateway.tls.autoGenerate` (default true): without `certPath` and
    /// `keyPath`, use a self-signed certificate generated once into
    /// `<state>/tls/`.
    pub auto_generate: bool,
    /// `gateway.tls.certPath`: the PEM certificate (chain), leaf first.
    pub cert_path: Option<PathBuf>,
    /// `gateway.tls.keyPath`: the PEM private key of that certificate.
    pub key_path: Option<PathBuf>,
    /// `gateway.tls.caPath`: PEM CA certificates sent after the leaf (the
    /// chain up to, not necessarily including, the root).
    pub ca_path: Option<PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            enabled: false,
            auto_generate: true,
            cert_path: None,
            key_path: None,
            ca_path: None,
        }
    }
}

/// Where the registry lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreConfig {
    /// A `postgres://` URL (a [`Secret`]: it may hold a password); `None`
    /// for the SQLite file in the state directory.
    pub url: Option<Secret>,
    /// `gateway.store.passwordFile` / `CLAWGATE_STORE_PASSWORD_FILE`: the
    /// PostgreSQL password, first line of the file.
    pub password_file: Option<PathBuf>,
}

impl StoreConfig {
    /// The PostgreSQL target, when one is configured (already validated by
    /// the resolver; a password file that became unreadable since fails
    /// here).
    pub fn postgres(&self) -> Result<Option<clawgate_store::PgTarget>, clawgate_store::StoreError> {
        self.url
            .as_ref()
            .map(|u| clawgate_store::PgTarget::parse(u.expose(), self.password_file.as_deref()))
            .transpose()
    }
}

/// Everything the gateway needs to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    pub port: u16,
    pub bind: BindMode,
    pub auth: AuthConfig,
    pub control_ui: ControlUiConfig,
    /// `gateway.nodes.pairing.autoApproveLocal` (default true).
    pub auto_approve_local: bool,
    /// `gateway.trustedProxies`: peers allowed to send forwarding headers
    /// (the entries that are single addresses).
    pub trusted_proxies: Vec<IpAddr>,
    /// The `gateway.trustedProxies` entries that are CIDR ranges
    /// (`10.0.0.0/8`, `fd00::/8`, `::ffff:10.0.0.0/104`).
    pub trusted_proxy_ranges: Vec<IpRange>,
    /// `gateway.allowedHosts` (clawgate addition): `Host` names the gateway
    /// answers to besides loopback names (lowercase, no port; `"*"` turns
    /// the check off). See `auth::host_allowed`: on a loopback bind every
    /// other name is refused, which defeats DNS rebinding.
    pub allowed_hosts: Vec<String>,
    /// `gateway.tickIntervalMs` (clawgate addition): how often `tick`
    /// events (each with a keepalive ping) go out, and what `hello-ok`
    /// announces as `policy.tickIntervalMs` (default 30 s).
    pub tick_interval: Duration,
    /// `gateway.upstream.*` / `gateway run --upstream`: front this OpenClaw
    /// gateway (every authenticated client is relayed to it).
    pub upstream: Option<UpstreamConfig>,
    /// `gateway.metrics.token` (or `CLAWGATE_METRICS_TOKEN`): the bearer
    /// token `/metrics` asks for on a non-loopback bind. Without one,
    /// `/metrics` is off there; on a loopback bind it is open.
    pub metrics_token: Option<Secret>,
    /// `gateway.tls.*`: https:// and wss:// on the same port.
    pub tls: TlsConfig,
    /// `gateway.store.*` / `--store` / `CLAWGATE_STORE_URL`: where the
    /// registry lives (the SQLite file in the state directory unless a
    /// PostgreSQL URL is set).
    pub store: StoreConfig,
    /// The state directory (config, database).
    pub state_dir: PathBuf,
    /// The config file in use.
    pub config_path: PathBuf,
}

impl GatewayConfig {
    /// A loopback gateway with `auth`, state in `state_dir` and every other
    /// setting at its default (port 18789, Control UI on, local devices
    /// approved silently, no trusted proxies, 30 s ticks). For embedding the gateway in
    /// another program; set `port` to 0 for a free port.
    pub fn loopback(state_dir: impl Into<PathBuf>, auth: AuthConfig) -> GatewayConfig {
        let state_dir = state_dir.into();
        GatewayConfig {
            port: DEFAULT_PORT,
            bind: BindMode::Loopback,
            auth,
            control_ui: ControlUiConfig::default(),
            auto_approve_local: true,
            trusted_proxies: Vec::new(),
            trusted_proxy_ranges: Vec::new(),
            allowed_hosts: Vec::new(),
            tick_interval: Duration::from_millis(clawgate_protocol::TICK_INTERVAL_MS),
            upstream: None,
            metrics_token: None,
            tls: TlsConfig::default(),
            store: StoreConfig::default(),
            config_path: state_dir.join(CONFIG_FILE_NAME),
            state_dir,
        }
    }
}

impl AuthConfig {
    /// `mode` with the given secrets and the default rate limits.
    pub fn new(mode: AuthMode, token: Option<Secret>, password: Option<Secret>) -> AuthConfig {
        AuthConfig {
            mode,
            token,
            password,
            password_hash: None,
            rate_limit: RateLimitConfig::default(),
            trusted_proxy: None,
            identity_scopes: Vec::new(),
        }
    }

    /// `trusted-proxy` mode with `proxy`, an optional local password, and
    /// the default rate limits.
    pub fn trusted_proxy(proxy: TrustedProxyConfig, password: Option<Secret>) -> AuthConfig {
        AuthConfig {
            trusted_proxy: Some(proxy),
            ..AuthConfig::new(AuthMode::TrustedProxy, None, password)
        }
    }

    /// Password mode with an Argon2id hash and the default rate limits.
    pub fn with_password_hash(hash: crate::password::PasswordHash) -> AuthConfig {
        AuthConfig {
            password_hash: Some(hash),
            ..AuthConfig::new(AuthMode::Password, None, None)
        }
    }

    /// What `gateway run` warns about at start (never with the secret): a
    /// plain-text password (the fix is `clawgate gateway set-password`),
    /// and a weak one (refused by the resolver on a non-loopback bind).
    pub fn startup_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(tp) = &self.trusted_proxy {
            out.push("gateway.auth.mode is trusted-proxy: whoever reaches this port from a gateway.trustedProxies address with the user header is that user; keep the port reachable only through the proxy".to_string());
            if tp.allow_users.is_empty() {
                out.push("gateway.auth.trustedProxy.allowUsers is empty: every user the proxy lets through is accepted".to_string());
            }
            if tp.device_auto_approve.as_ref().is_some_and(|a| {
                a.scopes
                    .iter()
                    .any(|s| s == clawgate_protocol::scopes::ADMIN)
            }) {
                out.push("gateway.auth.trustedProxy.deviceAutoApprove.scopes lists operator.admin: every proxy-authenticated user can enrol a full-admin device without approval".to_string());
            }
            if tp.jwt.is_none() {
                out.push("gateway.auth.trustedProxy.jwt is not set: the identity header is trusted as sent; set jwt to verify the proxy's signed assertion".to_string());
            }
        }
        if self.mode != AuthMode::Password {
            return out;
        }
        if let Some(p) = &self.password {
            out.push("the gateway password is held in plain text (gateway.auth.password, --password or CLAWGATE_GATEWAY_PASSWORD); store only its Argon2id hash with: clawgate gateway set-password".to_string());
            let strength = crate::password::strength(p.expose());
            if strength.is_weak() {
                out.push(format!(
                    "{} (accepted only because the gateway is bound to loopback)",
                    strength.describe()
                ));
            }
        }
        out
    }
}

/// A configuration problem. Every variant names the offending key (or
/// flag) so the user knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid JSON5: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write config file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An in-place edit that could not be made without disturbing the rest
    /// of the file; nothing was written.
    #[error(
        "cannot change config file {path} in place: {problem}; the file was not changed, so make this change in an editor"
    )]
    Edit { path: PathBuf, problem: String },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

impl ConfigError {
    /// Whether this is only "the selected auth mode has no secret yet":
    /// `config set` lets unrelated keys be written while auth is unfinished.
    pub fn is_missing_secret(&self) -> bool {
        matches!(self, ConfigError::Invalid { problem, .. }
            if problem.starts_with(MISSING_TOKEN) || problem.starts_with(MISSING_PASSWORD))
    }

    /// The key or flag this error is about, for `Invalid` errors.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

pub(super) const MISSING_TOKEN: &str = "token auth needs a shared token but none is set";
pub(super) const MISSING_PASSWORD: &str = "password auth needs a password but none is set";
