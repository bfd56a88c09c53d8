//! Gateway configuration: the JSON5 file `clawgate.json` in the state
//! directory (or `--config PATH`), environment variables and `gateway run`
//! flags, resolved into one validated [`GatewayConfig`].
//!
//! Keys keep the reference names (`gateway.port`, `gateway.bind`,
//! `gateway.auth.mode|token|password|rateLimit.*`,
//! `gateway.controlUi.enabled|basePath|allowedOrigins`,
//! `gateway.nodes.pairing.autoApproveLocal`, `gateway.trustedProxies`) so an
//! existing `openclaw.json` can be pointed at with `--config`; keys clawgate
//! does not use are kept untouched on write. clawgate's own additions:
//! `gateway.auth.rateLimit.globalMaxFailures` and `gateway.allowedHosts`.
//!
//! Precedence, highest first: `gateway run` flags, environment
//! (`CLAWGATE_GATEWAY_TOKEN`, `OPENCLAW_GATEWAY_TOKEN`,
//! `CLAWGATE_GATEWAY_PASSWORD`, `OPENCLAW_GATEWAY_PASSWORD`), the file,
//! defaults.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clawgate_protocol::Secret;
use serde_json::{Map, Value};

/// Default port.
pub const DEFAULT_PORT: u16 = 18789;
/// Name of the config file inside the state directory.
pub const CONFIG_FILE_NAME: &str = "clawgate.json";

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

    /// Whether only loopback peers can reach the listener.
    pub fn is_loopback(&self) -> bool {
        self.address().is_loopback()
    }
}

/// `gateway.auth.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Token,
    Password,
    None,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Token => "token",
            AuthMode::Password => "password",
            AuthMode::None => "none",
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
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            max_attempts: 10,
            window_ms: 60_000,
            lockout_ms: 300_000,
            exempt_loopback: true,
            global_max_failures: 1000,
        }
    }
}

/// The resolved auth settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub token: Option<Secret>,
    pub password: Option<Secret>,
    pub rate_limit: RateLimitConfig,
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

/// Everything the gateway needs to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    pub port: u16,
    pub bind: BindMode,
    pub auth: AuthConfig,
    pub control_ui: ControlUiConfig,
    /// `gateway.nodes.pairing.autoApproveLocal` (default true).
    pub auto_approve_local: bool,
    /// `gateway.trustedProxies`: peers allowed to send forwarding headers.
    pub trusted_proxies: Vec<IpAddr>,
    /// `gateway.allowedHosts` (clawgate addition): `Host` names the gateway
    /// answers to besides loopback names (lowercase, no port; `"*"` turns
    /// the check off). See `auth::host_allowed`: on a loopback bind every
    /// other name is refused, which defeats DNS rebinding.
    pub allowed_hosts: Vec<String>,
    /// The state directory (config, database).
    pub state_dir: PathBuf,
    /// The config file in use.
    pub config_path: PathBuf,
}

impl GatewayConfig {
    /// A loopback gateway with `auth`, state in `state_dir` and every other
    /// setting at its default (port 18789, Control UI on, local devices
    /// approved silently, no trusted proxies). For embedding the gateway in
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
            allowed_hosts: Vec::new(),
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
            rate_limit: RateLimitConfig::default(),
        }
    }
}

/// `gateway run` flags and other per-invocation overrides.
#[derive(Debug, Clone, Default)]
pub struct RunOverrides {
    pub port: Option<u16>,
    /// "loopback" | "lan" | "custom"
    pub bind: Option<String>,
    /// With `bind == "custom"`.
    pub host: Option<String>,
    /// "token" | "password" | "none"
    pub auth: Option<String>,
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
}

/// Environment values that feed the config (read once by the binary, so
/// tests can pass them explicitly).
#[derive(Debug, Clone, Default)]
pub struct EnvOverrides {
    pub token: Option<Secret>,
    pub password: Option<Secret>,
}

impl EnvOverrides {
    /// Reads `CLAWGATE_GATEWAY_TOKEN` (then `OPENCLAW_GATEWAY_TOKEN`) and the
    /// `_PASSWORD` pair from the process environment.
    pub fn from_process_env() -> Self {
        let read = |a: &str, b: &str| {
            std::env::var(a)
                .ok()
                .or_else(|| std::env::var(b).ok())
                .map(Secret::new)
        };
        EnvOverrides {
            token: read("CLAWGATE_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_TOKEN"),
            password: read("CLAWGATE_GATEWAY_PASSWORD", "OPENCLAW_GATEWAY_PASSWORD"),
        }
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
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// The config file as a JSON document, edited by dotted key paths.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub doc: Value,
    /// Whether the file existed when loaded.
    pub existed: bool,
}

/// The state directory: `$CLAWGATE_STATE_DIR`, else `~/.clawgate`.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CLAWGATE_STATE_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".clawgate")
}

impl ConfigFile {
    /// Loads the file (JSON5); a missing file is an empty document.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ConfigFile {
                    path: path.to_path_buf(),
                    doc: Value::Object(Map::new()),
                    existed: false,
                });
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        ConfigFile::from_text(path, &text)
    }

    /// Parses the text of a config file found at `path` (what [`ConfigFile::load`]
    /// does once the file is read).
    pub fn from_text(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
        // An empty file (e.g. made with `touch`) is an empty document.
        let doc = if text.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            // json5's messages name the problem and its position, never the
            // surrounding text, so a secret in the file cannot leak here.
            json5::from_str::<Value>(text).map_err(|err| ConfigError::Parse {
                path: path.to_path_buf(),
                message: err.to_string(),
            })?
        };
        if !doc.is_object() {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                message: format!(
                    "the top level is {}, but it must be an object ({{ ... }})",
                    describe_kind(&doc)
                ),
            });
        }
        Ok(ConfigFile {
            path: path.to_path_buf(),
            doc,
            existed: true,
        })
    }

    /// The value at a dotted key (`gateway.auth.token`). A numeric part
    /// indexes into an array (`gateway.trustedProxies.0`).
    pub fn get(&self, key: &str) -> Option<&Value> {
        let mut current = &self.doc;
        for part in key_parts(key)? {
            current = match current {
                Value::Object(map) => map.get(part)?,
                Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(current)
    }

    /// Sets a dotted key, creating objects on the way.
    pub fn set(&mut self, key: &str, value: Value) -> Result<(), ConfigError> {
        let parts = key_parts(key).ok_or_else(|| invalid_key_error(key))?;
        let (last, parents) = parts.split_last().expect("key_parts is never empty");
        if !self.doc.is_object() {
            self.doc = Value::Object(Map::new());
        }
        let blocked = |depth: usize, found: &Value| {
            let prefix = parts[..depth].join(".");
            ConfigError::invalid(
                key,
                format!(
                    "cannot be set because {prefix} is {}, not an object; remove it first with: clawgate config unset {prefix}",
                    describe_kind(found)
                ),
            )
        };
        let mut current = &mut self.doc;
        for (depth, part) in parents.iter().enumerate() {
            current = match current {
                Value::Object(map) => map
                    .entry(part.to_string())
                    .or_insert_with(|| Value::Object(Map::new())),
                Value::Array(items) => match part.parse::<usize>() {
                    Ok(index) if index < items.len() => &mut items[index],
                    _ => return Err(array_index_error(key, &parts[..depth], items.len())),
                },
                other => return Err(blocked(depth, other)),
            };
        }
        match current {
            Value::Object(map) => {
                map.insert(last.to_string(), value);
                Ok(())
            }
            Value::Array(items) => match last.parse::<usize>() {
                Ok(index) if index < items.len() => {
                    items[index] = value;
                    Ok(())
                }
                _ => Err(array_index_error(key, parents, items.len())),
            },
            other => Err(blocked(parents.len(), other)),
        }
    }

    /// Removes a dotted key; returns whether it was present.
    pub fn unset(&mut self, key: &str) -> bool {
        let Some(parts) = key_parts(key) else {
            return false;
        };
        let (last, parents) = parts.split_last().expect("key_parts is never empty");
        let mut current = &mut self.doc;
        for part in parents {
            current = match current {
                Value::Object(map) => match map.get_mut(*part) {
                    Some(next) => next,
                    None => return false,
                },
                Value::Array(items) => {
                    match part.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                        Some(next) => next,
                        None => return false,
                    }
                }
                _ => return false,
            };
        }
        match current {
            // shift_remove keeps the order of the remaining keys in the file.
            Value::Object(map) => map.shift_remove(*last).is_some(),
            Value::Array(items) => match last.parse::<usize>() {
                Ok(index) if index < items.len() => {
                    items.remove(index);
                    true
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// Writes the document atomically (temp file + rename), file mode 0600,
    /// parent directory created with 0700.
    pub fn save(&self) -> Result<(), ConfigError> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

        let write_err = |source: std::io::Error| ConfigError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(write_err)?;
            // The umask may have removed bits we did not ask for anyway, but
            // never trust it to have left the directory private.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(write_err)?;
        }
        let file_name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| CONFIG_FILE_NAME.to_string());
        let tmp = dir.join(format!(".{file_name}.tmp-{:016x}", rand::random::<u64>()));
        let mut text = serde_json::to_string_pretty(&self.doc)
            .map_err(|err| write_err(std::io::Error::other(err)))?;
        text.push('\n');

        let result = (|| {
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            out.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            out.write_all(text.as_bytes())?;
            out.sync_all()?;
            drop(out);
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(err) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(write_err(err));
        }
        // Make the rename itself durable; a failure here leaves a correct file.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
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

const MISSING_TOKEN: &str = "token auth needs a shared token but none is set";
const MISSING_PASSWORD: &str = "password auth needs a password but none is set";

/// Parses one JSON5 value (what `config set` stores). The error names the
/// problem and its position only, never the input.
pub fn parse_json5_value(text: &str) -> Result<Value, String> {
    json5::from_str::<Value>(text).map_err(|err| err.to_string())
}

/// Whether `key` is a well-formed dotted key path (no empty parts).
pub fn is_valid_key(key: &str) -> bool {
    key_parts(key).is_some()
}

fn key_parts(key: &str) -> Option<Vec<&str>> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        None
    } else {
        Some(parts)
    }
}

fn invalid_key_error(key: &str) -> ConfigError {
    ConfigError::invalid(
        key,
        "is not a valid config path; use dot-separated names such as gateway.auth.mode",
    )
}

fn array_index_error(key: &str, array_parts: &[&str], len: usize) -> ConfigError {
    ConfigError::invalid(
        key,
        format!(
            "cannot be set because {} is an array of {len} items and the next part is not an index below {len}; set the whole array instead",
            array_parts.join(".")
        ),
    )
}

/// "a string", "a number", ... for messages that must not echo a value.
fn describe_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A short rendering of a non-secret value for error messages.
fn describe_value(value: &Value) -> String {
    match value {
        Value::Array(_) | Value::Object(_) | Value::Null => describe_kind(value).to_string(),
        other => {
            let text = other.to_string();
            if text.chars().count() > 40 {
                format!("{}...", text.chars().take(40).collect::<String>())
            } else {
                text
            }
        }
    }
}

/// Normalises an allowed origin: `"*"`, or `http(s)://host[:port]` in
/// lowercase with no trailing slash and no default port. `None` when the
/// string is not such an origin.
pub fn normalize_origin(origin: &str) -> Option<String> {
    if origin == "*" {
        return Some("*".into());
    }
    let lower = origin.to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://")?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty()
        || authority.chars().any(|c| {
            matches!(c, '/' | '?' | '#' | '@' | '\\') || c.is_whitespace() || c.is_control()
        })
    {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6.split_once(']')?;
        addr.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{addr}]"), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !host.split('.').all(label_ok) {
            return None;
        }
        (host.to_string(), port)
    };
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let n: u32 = p.parse().ok()?;
            if n == 0 || n > 65535 {
                return None;
            }
            (n != default_port).then_some(n)
        }
    };
    Some(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

/// Normalises `gateway.controlUi.basePath` to "/", "/ui/", ... ; `None`
/// when it holds characters that do not belong in a URL path prefix.
fn normalize_base_path(raw: &str) -> Option<String> {
    if raw
        .chars()
        .any(|c| matches!(c, '?' | '#' | '\\' | '%') || c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let segments: Vec<&str> = raw.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return None;
    }
    if segments.is_empty() {
        return Some("/".into());
    }
    Some(format!("/{}/", segments.join("/")))
}

/// Resolves and validates the configuration.
pub fn resolve(
    file: &ConfigFile,
    state_dir: &Path,
    overrides: &RunOverrides,
    env: &EnvOverrides,
) -> Result<GatewayConfig, ConfigError> {
    resolve_all(file, state_dir, overrides, env)
        .map_err(|errors| errors.into_iter().next().expect("at least one error"))
}

/// Like [`resolve`], but reports every problem found instead of the first
/// (in a stable order: port, bind, auth, rate limit, Control UI, nodes,
/// proxies).
pub fn resolve_all(
    file: &ConfigFile,
    state_dir: &Path,
    overrides: &RunOverrides,
    env: &EnvOverrides,
) -> Result<GatewayConfig, Vec<ConfigError>> {
    let mut r = Resolver {
        doc: &file.doc,
        errors: Vec::new(),
    };
    for section in [
        "gateway",
        "gateway.auth",
        "gateway.auth.rateLimit",
        "gateway.controlUi",
        "gateway.nodes",
        "gateway.nodes.pairing",
    ] {
        r.check_object(section);
    }
    let port = r.port(overrides);
    let bind = r.bind(overrides);
    let auth = r.auth(overrides, env, bind.as_ref());
    let rate_limit = r.rate_limit();
    let control_ui = r.control_ui();
    let auto_approve_local = r.boolean("gateway.nodes.pairing.autoApproveLocal", true);
    let trusted_proxies = r.trusted_proxies();
    let allowed_hosts = r.allowed_hosts();
    if !r.errors.is_empty() {
        return Err(r.errors);
    }
    let (mode, token, password) = auth.expect("auth resolved when there are no errors");
    Ok(GatewayConfig {
        port,
        bind: bind.expect("bind resolved when there are no errors"),
        auth: AuthConfig {
            mode,
            token,
            password,
            rate_limit,
        },
        control_ui,
        auto_approve_local,
        trusted_proxies,
        allowed_hosts,
        state_dir: state_dir.to_path_buf(),
        config_path: file.path.clone(),
    })
}

/// Where a secret came from, to name it in an error.
struct SecretFrom {
    secret: Secret,
    origin: String,
}

struct Resolver<'a> {
    doc: &'a Value,
    errors: Vec<ConfigError>,
}

impl Resolver<'_> {
    fn fail(&mut self, key: impl Into<String>, problem: impl Into<String>) {
        self.errors.push(ConfigError::invalid(key, problem));
    }

    /// A value in the file; `null` counts as unset.
    fn value(&self, key: &str) -> Option<&Value> {
        let mut current = self.doc;
        for part in key.split('.') {
            current = current.as_object()?.get(part)?;
        }
        (!current.is_null()).then_some(current)
    }

    fn check_object(&mut self, key: &str) {
        if let Some(v) = self.value(key)
            && !v.is_object()
        {
            let kind = describe_kind(v);
            self.fail(
                key,
                format!("must be an object ({{ ... }}) but is {kind}; fix it with: clawgate config unset {key}"),
            );
        }
    }

    fn boolean(&mut self, key: &str, default: bool) -> bool {
        match self.value(key) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                let found = describe_value(other);
                self.fail(
                    key,
                    format!("must be true or false (found {found}); fix it with: clawgate config set {key} {default}"),
                );
                default
            }
        }
    }

    fn port(&mut self, overrides: &RunOverrides) -> u16 {
        if let Some(port) = overrides.port {
            return port;
        }
        let key = "gateway.port";
        match self.value(key) {
            None => DEFAULT_PORT,
            Some(v) => match v.as_u64() {
                Some(n @ 1..=65535) => n as u16,
                _ => {
                    let found = describe_value(v);
                    self.fail(
                        key,
                        format!("must be a whole number from 1 to 65535 (found {found}); fix it with: clawgate config set {key} {DEFAULT_PORT}"),
                    );
                    DEFAULT_PORT
                }
            },
        }
    }

    fn bind(&mut self, overrides: &RunOverrides) -> Option<BindMode> {
        let (mode, key) = match &overrides.bind {
            Some(b) => (b.clone(), "--bind"),
            None => match self.value("gateway.bind") {
                None => ("loopback".to_string(), "gateway.bind"),
                Some(Value::String(s)) => (s.clone(), "gateway.bind"),
                Some(other) => {
                    let found = describe_value(other);
                    self.fail(
                        "gateway.bind",
                        format!("must be \"loopback\", \"lan\" or \"custom\" (found {found}); fix it with: clawgate config set gateway.bind loopback"),
                    );
                    return None;
                }
            },
        };
        let from_flag = key == "--bind";
        if mode != "custom" && overrides.host.is_some() {
            self.fail(
                "--host",
                "only applies with --bind custom; add --bind custom or drop --host",
            );
            return None;
        }
        match mode.as_str() {
            "loopback" => Some(BindMode::Loopback),
            "lan" => Some(BindMode::Lan),
            "custom" => {
                let (host, host_key) = match &overrides.host {
                    Some(h) => (h.clone(), "--host"),
                    None if from_flag => {
                        self.fail(
                            "--host",
                            "--bind custom needs the address to listen on; add --host ADDR, e.g. --host 192.168.1.10",
                        );
                        return None;
                    }
                    None => match self.value("gateway.customBindHost") {
                        Some(Value::String(h)) => (h.clone(), "gateway.customBindHost"),
                        Some(other) => {
                            let found = describe_value(other);
                            self.fail(
                                "gateway.customBindHost",
                                format!("must be an IP address string (found {found}); fix it with: clawgate config set gateway.customBindHost 192.168.1.10"),
                            );
                            return None;
                        }
                        None => {
                            self.fail(
                                "gateway.customBindHost",
                                "gateway.bind is \"custom\" but no address is set; set one with: clawgate config set gateway.customBindHost 192.168.1.10",
                            );
                            return None;
                        }
                    },
                };
                match host.trim().parse::<IpAddr>() {
                    Ok(ip) => Some(BindMode::Custom(ip)),
                    Err(_) => {
                        let shown = describe_value(&Value::String(host));
                        let fix = if host_key == "--host" {
                            "pass an IP address such as --host 192.168.1.10".to_string()
                        } else {
                            format!("fix it with: clawgate config set {host_key} 192.168.1.10")
                        };
                        self.fail(
                            host_key,
                            format!("must be an IP address (found {shown}); {fix}"),
                        );
                        None
                    }
                }
            }
            other => {
                let shown = describe_value(&Value::String(other.to_string()));
                let fix = if from_flag {
                    "use --bind loopback, lan or custom".to_string()
                } else {
                    "fix it with: clawgate config set gateway.bind loopback".to_string()
                };
                self.fail(
                    key,
                    format!("must be \"loopback\", \"lan\" or \"custom\" (found {shown}); {fix}"),
                );
                None
            }
        }
    }

    /// The effective secret of one kind, by precedence flag, flag file,
    /// environment, config file. Problems are recorded, never with the value.
    fn secret(
        &mut self,
        flag: (&Option<Secret>, &str),
        flag_file: (&Option<PathBuf>, &str),
        env: (&Option<Secret>, &str),
        key: &str,
    ) -> Option<SecretFrom> {
        let found = if let Some(s) = flag.0 {
            Some(SecretFrom {
                secret: s.clone(),
                origin: flag.1.to_string(),
            })
        } else if let Some(path) = flag_file.0 {
            match std::fs::read_to_string(path) {
                Ok(text) => Some(SecretFrom {
                    secret: Secret::new(text.trim()),
                    origin: flag_file.1.to_string(),
                }),
                Err(err) => {
                    self.fail(
                        flag_file.1,
                        format!(
                            "cannot read {} ({err}); check the path and that this user may read it",
                            path.display()
                        ),
                    );
                    return None;
                }
            }
        } else if let Some(s) = env.0 {
            Some(SecretFrom {
                secret: s.clone(),
                origin: env.1.to_string(),
            })
        } else {
            match self.value(key) {
                None => None,
                Some(Value::String(s)) => Some(SecretFrom {
                    secret: Secret::new(s.clone()),
                    origin: key.to_string(),
                }),
                Some(other) => {
                    let kind = describe_kind(other);
                    self.fail(
                        key,
                        format!("must be a string but is {kind}; set it with: clawgate config set {key} <value>"),
                    );
                    return None;
                }
            }
        };
        let found = found?;
        let value = found.secret.expose().trim();
        if value.is_empty() || value == "undefined" || value == "null" {
            let fix = if found.origin == key {
                format!("set a real value with: clawgate config set {key} <value>")
            } else {
                format!("give {} a real value", found.origin)
            };
            self.fail(
                found.origin.clone(),
                format!("is blank or a placeholder such as \"undefined\" or \"null\"; {fix}"),
            );
            return None;
        }
        Some(found)
    }

    #[allow(clippy::type_complexity)]
    fn auth(
        &mut self,
        overrides: &RunOverrides,
        env: &EnvOverrides,
        bind: Option<&BindMode>,
    ) -> Option<(AuthMode, Option<Secret>, Option<Secret>)> {
        let errors_before = self.errors.len();
        let (mode_text, mode_key) = match &overrides.auth {
            Some(m) => (Some(m.clone()), "--auth"),
            None => match self.value("gateway.auth.mode") {
                None => (None, "gateway.auth.mode"),
                Some(Value::String(s)) => (Some(s.clone()), "gateway.auth.mode"),
                Some(other) => {
                    let kind = describe_kind(other);
                    self.fail(
                        "gateway.auth.mode",
                        format!("must be \"token\", \"password\" or \"none\" but is {kind}; fix it with: clawgate config set gateway.auth.mode token"),
                    );
                    (None, "gateway.auth.mode")
                }
            },
        };
        let explicit = match mode_text.as_deref() {
            None => None,
            Some("token") => Some(AuthMode::Token),
            Some("password") => Some(AuthMode::Password),
            Some("none") => Some(AuthMode::None),
            Some(other) => {
                // The value is not echoed: a secret pasted into the wrong
                // auth key must not end up in logs.
                let why = if other == "trusted-proxy" {
                    "trusted-proxy mode is not supported by clawgate; use \"token\", \"password\" or \"none\""
                } else {
                    "must be \"token\", \"password\" or \"none\" (lowercase)"
                };
                self.fail(
                    mode_key,
                    format!("{why}; fix it with: clawgate config set gateway.auth.mode token"),
                );
                None
            }
        };
        let token = self.secret(
            (&overrides.token, "--token"),
            (&overrides.token_file, "--token-file"),
            (
                &env.token,
                "CLAWGATE_GATEWAY_TOKEN (or OPENCLAW_GATEWAY_TOKEN)",
            ),
            "gateway.auth.token",
        );
        let password = self.secret(
            (&overrides.password, "--password"),
            (&overrides.password_file, "--password-file"),
            (
                &env.password,
                "CLAWGATE_GATEWAY_PASSWORD (or OPENCLAW_GATEWAY_PASSWORD)",
            ),
            "gateway.auth.password",
        );
        if self.errors.len() > errors_before {
            return None;
        }
        let mode = match explicit {
            Some(mode) => mode,
            None => match (&token, &password) {
                (Some(_), Some(_)) => {
                    self.fail(
                        "gateway.auth.mode",
                        "both a token and a password are set but no auth mode is chosen; pick one with: clawgate config set gateway.auth.mode token (or password)",
                    );
                    return None;
                }
                (None, Some(_)) => AuthMode::Password,
                _ => AuthMode::Token,
            },
        };
        match mode {
            AuthMode::Token if token.is_none() => {
                self.fail(
                    "gateway.auth.token",
                    format!("{MISSING_TOKEN}; set one with: clawgate config set gateway.auth.token <token> (or pass --token-file, or set CLAWGATE_GATEWAY_TOKEN)"),
                );
                return None;
            }
            AuthMode::Password if password.is_none() => {
                self.fail(
                    "gateway.auth.password",
                    format!("{MISSING_PASSWORD}; set one with: clawgate config set gateway.auth.password <password> (or pass --password-file, or set CLAWGATE_GATEWAY_PASSWORD)"),
                );
                return None;
            }
            AuthMode::None => {
                if let Some(bind) = bind
                    && !bind.is_loopback()
                {
                    let addr = bind.address();
                    self.fail(
                        mode_key,
                        format!("auth mode \"none\" is only allowed on a loopback bind, because anyone who can reach {addr} could control the gateway; use token auth or bind to loopback"),
                    );
                    return None;
                }
            }
            _ => {}
        }
        // Only the secret of the chosen mode is kept: the other one is never
        // checked, so a change to it must not count as an auth change.
        let (token, password) = match mode {
            AuthMode::Token => (token.map(|t| t.secret), None),
            AuthMode::Password => (None, password.map(|p| p.secret)),
            AuthMode::None => (None, None),
        };
        Some((mode, token, password))
    }

    fn positive_int(&mut self, key: &str, default: u64, max: u64) -> u64 {
        match self.value(key) {
            None => default,
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 && n <= max => n,
                too_big => {
                    let found = describe_value(v);
                    let range = if too_big.is_some() {
                        format!("at most {max}")
                    } else {
                        "a whole number greater than 0".to_string()
                    };
                    self.fail(
                        key,
                        format!("must be {range} (found {found}); fix it with: clawgate config set {key} {default}"),
                    );
                    default
                }
            },
        }
    }

    fn rate_limit(&mut self) -> RateLimitConfig {
        let d = RateLimitConfig::default();
        let max_u32 = u64::from(u32::MAX);
        // Durations up to ~100 years keep Instant arithmetic far from overflow.
        let max_ms = 100 * 365 * 24 * 3_600_000;
        RateLimitConfig {
            max_attempts: self.positive_int(
                "gateway.auth.rateLimit.maxAttempts",
                d.max_attempts.into(),
                max_u32,
            ) as u32,
            window_ms: self.positive_int("gateway.auth.rateLimit.windowMs", d.window_ms, max_ms),
            lockout_ms: self.positive_int("gateway.auth.rateLimit.lockoutMs", d.lockout_ms, max_ms),
            exempt_loopback: self
                .boolean("gateway.auth.rateLimit.exemptLoopback", d.exempt_loopback),
            global_max_failures: self.positive_int(
                "gateway.auth.rateLimit.globalMaxFailures",
                d.global_max_failures.into(),
                max_u32,
            ) as u32,
        }
    }

    fn control_ui(&mut self) -> ControlUiConfig {
        let enabled = self.boolean("gateway.controlUi.enabled", true);
        let key = "gateway.controlUi.basePath";
        let base_path = match self.value(key) {
            None => "/".to_string(),
            Some(Value::String(s)) => match normalize_base_path(s) {
                Some(p) => p,
                None => {
                    let shown = describe_value(&Value::String(s.clone()));
                    self.fail(
                        key,
                        format!("must be a URL path such as \"/\" or \"/ui/\" without spaces, '?', '#', '%', '\\\\' or '..' (found {shown}); fix it with: clawgate config set {key} /"),
                    );
                    "/".to_string()
                }
            },
            Some(other) => {
                let kind = describe_kind(other);
                self.fail(
                    key,
                    format!("must be a string such as \"/\" or \"/ui/\" but is {kind}; fix it with: clawgate config set {key} /"),
                );
                "/".to_string()
            }
        };
        let key = "gateway.controlUi.allowedOrigins";
        let mut allowed_origins = Vec::new();
        match self.value(key).cloned() {
            None => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let normalized = item.as_str().and_then(normalize_origin);
                    match normalized {
                        Some(o) => {
                            if !allowed_origins.contains(&o) {
                                allowed_origins.push(o);
                            }
                        }
                        None => {
                            let found = describe_value(item);
                            self.fail(
                                format!("{key}[{i}]"),
                                format!("must be \"*\" or an origin like \"https://host.example:8443\" (http or https, no path) (found {found}); fix the entry with: clawgate config set {key} '[\"https://host.example\"]'"),
                            );
                        }
                    }
                }
            }
            Some(other) => {
                let kind = describe_kind(&other);
                self.fail(
                    key,
                    format!("must be an array of origins but is {kind}; fix it with: clawgate config set {key} '[\"https://host.example\"]'"),
                );
            }
        }
        ControlUiConfig {
            enabled,
            base_path,
            allowed_origins,
        }
    }

    fn trusted_proxies(&mut self) -> Vec<IpAddr> {
        let key = "gateway.trustedProxies";
        let mut proxies = Vec::new();
        match self.value(key).cloned() {
            None => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_str().and_then(|s| s.trim().parse::<IpAddr>().ok()) {
                        Some(ip) => proxies.push(ip),
                        None => {
                            let found = describe_value(item);
                            self.fail(
                                format!("{key}[{i}]"),
                                format!("must be an IP address such as \"10.0.0.1\" (CIDR ranges and host names are not supported) (found {found}); fix the entry with: clawgate config set {key} '[\"10.0.0.1\"]'"),
                            );
                        }
                    }
                }
            }
            Some(other) => {
                let kind = describe_kind(&other);
                self.fail(
                    key,
                    format!("must be an array of IP addresses but is {kind}; fix it with: clawgate config set {key} '[\"10.0.0.1\"]'"),
                );
            }
        }
        proxies
    }

    fn allowed_hosts(&mut self) -> Vec<String> {
        let key = "gateway.allowedHosts";
        let mut hosts = Vec::new();
        match self.value(key).cloned() {
            None => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_str().and_then(normalize_host_name) {
                        Some(h) => {
                            if !hosts.contains(&h) {
                                hosts.push(h);
                            }
                        }
                        None => {
                            let found = describe_value(item);
                            self.fail(
                                format!("{key}[{i}]"),
                                format!("must be \"*\", a host name such as \"gateway.example\" or an IP address, without scheme, port or path (found {found}); fix the entry with: clawgate config set {key} '[\"gateway.example\"]'"),
                            );
                        }
                    }
                }
            }
            Some(other) => {
                let kind = describe_kind(&other);
                self.fail(
                    key,
                    format!("must be an array of host names but is {kind}; fix it with: clawgate config set {key} '[\"gateway.example\"]'"),
                );
            }
        }
        hosts
    }
}

/// Normalises a host name for `gateway.allowedHosts` and for comparing a
/// `Host` header with it: `"*"`, or a DNS name or IP address in lowercase,
/// without brackets or a trailing dot. `None` for anything else (a port, a
/// scheme, a path, an empty label).
pub fn normalize_host_name(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw == "*" {
        return Some("*".into());
    }
    let lower = raw.to_ascii_lowercase();
    let unbracketed = lower
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(&lower);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    (!name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok))
        .then(|| name.to_string())
}

/// A fresh shared token: 32 random bytes, base64url without padding.
pub fn generate_token() -> Secret {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    Secret::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// First run: when nothing configures auth at all (no `gateway.auth.mode`,
/// `token` or `password` in the file, no auth flags, no environment
/// secret), generates a token, writes `gateway.auth.mode = "token"` and
/// `gateway.auth.token` to the file and returns the token. Otherwise
/// returns `None` and writes nothing.
pub fn ensure_first_run_token(
    file: &mut ConfigFile,
    overrides: &RunOverrides,
    env: &EnvOverrides,
) -> Result<Option<Secret>, ConfigError> {
    let flags = overrides.auth.is_some()
        || overrides.token.is_some()
        || overrides.token_file.is_some()
        || overrides.password.is_some()
        || overrides.password_file.is_some();
    let from_env = env.token.is_some() || env.password.is_some();
    let in_file = [
        "gateway.auth.mode",
        "gateway.auth.token",
        "gateway.auth.password",
    ]
    .iter()
    .any(|k| file.get(k).is_some_and(|v| !v.is_null()));
    // A `gateway` or `gateway.auth` that is not an object is a config error
    // that `resolve` reports; do not paper over it here.
    let malformed = ["gateway", "gateway.auth"]
        .iter()
        .any(|k| file.get(k).is_some_and(|v| !v.is_object() && !v.is_null()));
    if flags || from_env || in_file || malformed {
        return Ok(None);
    }
    let token = generate_token();
    let mut updated = file.clone();
    updated.set("gateway.auth.mode", Value::String("token".into()))?;
    updated.set(
        "gateway.auth.token",
        Value::String(token.expose().to_string()),
    )?;
    updated.save()?;
    *file = updated;
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    const TOKEN: &str = "s3cret-token-value-9f2b";
    const PASSWORD: &str = "s3cret-password-value-77ac";

    fn file_with(doc: Value) -> (ConfigFile, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let file = ConfigFile {
            path: dir.path().join(CONFIG_FILE_NAME),
            doc,
            existed: true,
        };
        (file, dir)
    }

    fn with_token(mut doc: Value) -> Value {
        if doc.get("gateway").is_none() {
            doc["gateway"] = json!({});
        }
        if doc["gateway"].get("auth").is_none() {
            doc["gateway"]["auth"] = json!({});
        }
        if doc["gateway"]["auth"].get("token").is_none() {
            doc["gateway"]["auth"]["token"] = json!(TOKEN);
        }
        doc
    }

    fn resolve_doc(doc: Value, overrides: &RunOverrides) -> Result<GatewayConfig, ConfigError> {
        let (file, dir) = file_with(doc);
        resolve(&file, dir.path(), overrides, &EnvOverrides::default())
    }

    fn ok(doc: Value) -> GatewayConfig {
        resolve_doc(with_token(doc), &RunOverrides::default()).expect("config resolves")
    }

    /// The key of the error for `doc` (with a token added) and its message.
    fn err_with(doc: Value, overrides: &RunOverrides) -> (String, String) {
        let err = resolve_doc(doc, overrides).expect_err("config must be refused");
        let message = err.to_string();
        assert!(
            !message.contains(TOKEN) && !message.contains(PASSWORD),
            "{message}"
        );
        (err.key().unwrap_or_default().to_string(), message)
    }

    fn err(doc: Value) -> (String, String) {
        err_with(with_token(doc), &RunOverrides::default())
    }

    fn env_token(t: &str) -> EnvOverrides {
        EnvOverrides {
            token: Some(Secret::new(t)),
            password: None,
        }
    }

    // ---- load / get / set / unset / save ----

    #[test]
    fn missing_file_is_an_empty_document() {
        let dir = tempfile::tempdir().unwrap();
        let file = ConfigFile::load(&dir.path().join("nope.json")).unwrap();
        assert!(!file.existed);
        assert_eq!(file.doc, json!({}));
    }

    #[test]
    fn loads_json5_with_comments_and_trailing_commas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(
            &path,
            "// comment\n{ gateway: { port: 19000, /* inline */ bind: 'lan', }, }\n",
        )
        .unwrap();
        let file = ConfigFile::load(&path).unwrap();
        assert!(file.existed);
        assert_eq!(file.get("gateway.port"), Some(&json!(19000)));
        assert_eq!(file.get("gateway.bind"), Some(&json!("lan")));
    }

    #[test]
    fn bad_json5_and_non_object_are_parse_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for text in ["{ gateway: ", "[1, 2]", "\"text\"", "42"] {
            let path = dir.path().join("bad.json");
            std::fs::write(&path, text).unwrap();
            match ConfigFile::load(&path) {
                Err(e @ ConfigError::Parse { .. }) => {
                    assert!(e.to_string().contains(&path.display().to_string()))
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn parse_error_does_not_echo_the_file_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        std::fs::write(
            &path,
            format!("{{ gateway: {{ auth: {{ token: {TOKEN} }} }} }}"),
        )
        .unwrap();
        let e = ConfigFile::load(&path).unwrap_err();
        assert!(!e.to_string().contains(TOKEN), "{e}");
    }

    #[test]
    fn get_set_unset_by_dotted_keys() {
        let (mut file, _dir) = file_with(json!({"gateway": {"port": 1}, "list": [1, 2]}));
        assert_eq!(file.get("gateway.port"), Some(&json!(1)));
        assert_eq!(file.get("list.1"), Some(&json!(2)));
        assert_eq!(file.get("gateway.missing"), None);
        assert_eq!(file.get("gateway.port.deeper"), None);
        assert_eq!(file.get(""), None);
        assert_eq!(file.get("gateway..port"), None);

        file.set("gateway.auth.rateLimit.windowMs", json!(5))
            .unwrap();
        assert_eq!(
            file.doc["gateway"]["auth"]["rateLimit"]["windowMs"],
            json!(5)
        );
        file.set("list.0", json!("x")).unwrap();
        assert_eq!(file.doc["list"], json!(["x", 2]));

        assert!(file.unset("gateway.auth.rateLimit.windowMs"));
        assert_eq!(file.doc["gateway"]["auth"]["rateLimit"], json!({}));
        assert!(!file.unset("gateway.auth.rateLimit.windowMs"));
        assert!(!file.unset("nothing.here"));
        assert!(file.unset("list.1"));
        assert_eq!(file.doc["list"], json!(["x"]));
    }

    #[test]
    fn set_through_a_non_object_is_an_error_naming_the_key() {
        let (mut file, _dir) = file_with(json!({"gateway": {"port": 1}}));
        let before = file.doc.clone();
        let e = file.set("gateway.port.x", json!(1)).unwrap_err();
        assert_eq!(e.key(), Some("gateway.port.x"));
        assert!(e.to_string().contains("gateway.port is a number"), "{e}");
        assert!(
            e.to_string().contains("clawgate config unset gateway.port"),
            "{e}"
        );
        assert_eq!(file.doc, before);
        assert!(file.set("a..b", json!(1)).is_err());
        assert!(file.set("", json!(1)).is_err());
    }

    #[test]
    fn unset_keeps_key_order() {
        let (mut file, _dir) = file_with(json!({"a": 1, "b": 2, "c": 3}));
        file.unset("a");
        let keys: Vec<_> = file.doc.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["b", "c"]);
    }

    #[test]
    fn save_is_private_and_creates_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state").join("nested");
        let path = state.join(CONFIG_FILE_NAME);
        let mut file = ConfigFile::load(&path).unwrap();
        file.set("gateway.port", json!(19001)).unwrap();
        file.save().unwrap();
        let file_mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(file_mode, 0o600);
        let dir_mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [CONFIG_FILE_NAME]);
        // Output is JSON (and so JSON5) and loads back.
        let text = std::fs::read_to_string(&path).unwrap();
        let _: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap().doc, file.doc);
    }

    #[test]
    fn save_replaces_a_world_readable_file_with_a_private_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE_NAME);
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut file = ConfigFile::load(&path).unwrap();
        file.set("gateway.auth.token", json!(TOKEN)).unwrap();
        file.save().unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn unknown_keys_survive_load_set_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openclaw.json");
        std::fs::write(
            &path,
            r#"// written by hand
{
  agents: { defaults: { model: "x/y", maxTokens: 8192 } }, // trailing comment
  channels: { telegram: { enabled: true } },
  gateway: { port: 18790, customThing: [1, 2, 3] },
}"#,
        )
        .unwrap();
        let mut file = ConfigFile::load(&path).unwrap();
        file.set("gateway.bind", json!("lan")).unwrap();
        file.save().unwrap();
        let back = ConfigFile::load(&path).unwrap();
        assert_eq!(
            back.doc,
            json!({
                "agents": {"defaults": {"model": "x/y", "maxTokens": 8192}},
                "channels": {"telegram": {"enabled": true}},
                "gateway": {"port": 18790, "customThing": [1, 2, 3], "bind": "lan"}
            })
        );
        let keys: Vec<_> = back.doc.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["agents", "channels", "gateway"]);
    }

    #[test]
    fn generated_tokens_are_43_url_safe_chars_and_distinct() {
        let a = generate_token();
        let b = generate_token();
        assert_eq!(a.expose().len(), 43);
        assert!(
            a.expose()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(a, b);
    }

    // ---- resolve: defaults, port, bind ----

    #[test]
    fn defaults() {
        let cfg = ok(json!({}));
        assert_eq!(cfg.port, DEFAULT_PORT);
        assert_eq!(cfg.bind, BindMode::Loopback);
        assert_eq!(cfg.auth.mode, AuthMode::Token);
        assert_eq!(cfg.auth.token, Some(Secret::new(TOKEN)));
        assert_eq!(cfg.auth.password, None);
        assert_eq!(cfg.auth.rate_limit, RateLimitConfig::default());
        assert_eq!(cfg.control_ui, ControlUiConfig::default());
        assert!(cfg.auto_approve_local);
        assert!(cfg.trusted_proxies.is_empty());
    }

    #[test]
    fn state_dir_and_config_path() {
        let (file, dir) = file_with(with_token(json!({})));
        let state = dir.path().join("state");
        let cfg = resolve(
            &file,
            &state,
            &RunOverrides::default(),
            &EnvOverrides::default(),
        )
        .unwrap();
        assert_eq!(cfg.state_dir, state);
        assert_eq!(cfg.config_path, file.path);
    }

    #[test]
    fn port_from_file_flag_and_errors() {
        assert_eq!(ok(json!({"gateway": {"port": 19000}})).port, 19000);
        let flag = RunOverrides {
            port: Some(0),
            ..Default::default()
        };
        let cfg = resolve_doc(with_token(json!({"gateway": {"port": 19000}})), &flag).unwrap();
        assert_eq!(cfg.port, 0, "port 0 is allowed from the flag");
        for bad in [
            json!(0),
            json!(65536),
            json!(-1),
            json!(1.5),
            json!("18789"),
            json!(true),
        ] {
            let (key, msg) = err(json!({"gateway": {"port": bad}}));
            assert_eq!(key, "gateway.port", "{msg}");
            assert!(msg.contains("clawgate config set gateway.port"), "{msg}");
        }
    }

    #[test]
    fn bind_modes() {
        assert_eq!(
            ok(json!({"gateway": {"bind": "loopback"}})).bind,
            BindMode::Loopback
        );
        assert_eq!(ok(json!({"gateway": {"bind": "lan"}})).bind, BindMode::Lan);
        let cfg = ok(json!({"gateway": {"bind": "custom", "customBindHost": "10.1.2.3"}}));
        assert_eq!(cfg.bind, BindMode::Custom("10.1.2.3".parse().unwrap()));
        assert!(!cfg.bind.is_loopback());

        let flag = RunOverrides {
            bind: Some("custom".into()),
            host: Some("::1".into()),
            ..Default::default()
        };
        let cfg = resolve_doc(with_token(json!({"gateway": {"bind": "lan"}})), &flag).unwrap();
        assert_eq!(cfg.bind, BindMode::Custom("::1".parse().unwrap()));
        assert!(cfg.bind.is_loopback());
    }

    #[test]
    fn bind_errors() {
        let (key, msg) = err(json!({"gateway": {"bind": "everywhere"}}));
        assert_eq!(key, "gateway.bind");
        assert!(
            msg.contains("clawgate config set gateway.bind loopback"),
            "{msg}"
        );
        assert_eq!(err(json!({"gateway": {"bind": 3}})).0, "gateway.bind");
        assert_eq!(
            err(json!({"gateway": {"bind": "custom"}})).0,
            "gateway.customBindHost"
        );
        assert_eq!(
            err(json!({"gateway": {"bind": "custom", "customBindHost": "example.com"}})).0,
            "gateway.customBindHost"
        );

        let t = with_token(json!({}));
        let flag = |bind: &str, host: Option<&str>| RunOverrides {
            bind: Some(bind.into()),
            host: host.map(String::from),
            ..Default::default()
        };
        assert_eq!(err_with(t.clone(), &flag("wide", None)).0, "--bind");
        assert_eq!(err_with(t.clone(), &flag("custom", None)).0, "--host");
        assert_eq!(
            err_with(t.clone(), &flag("custom", Some("nope"))).0,
            "--host"
        );
        assert_eq!(err_with(t, &flag("lan", Some("10.0.0.1"))).0, "--host");
    }

    // ---- resolve: auth ----

    #[test]
    fn auth_mode_inference() {
        let cfg = resolve_doc(
            json!({"gateway": {"auth": {"token": TOKEN}}}),
            &RunOverrides::default(),
        )
        .unwrap();
        assert_eq!(cfg.auth.mode, AuthMode::Token);
        let cfg = resolve_doc(
            json!({"gateway": {"auth": {"password": PASSWORD}}}),
            &RunOverrides::default(),
        )
        .unwrap();
        assert_eq!(cfg.auth.mode, AuthMode::Password);
        assert_eq!(cfg.auth.password, Some(Secret::new(PASSWORD)));
        assert_eq!(cfg.auth.token, None);

        let (key, msg) = err_with(
            json!({"gateway": {"auth": {"token": TOKEN, "password": PASSWORD}}}),
            &RunOverrides::default(),
        );
        assert_eq!(key, "gateway.auth.mode");
        assert!(
            msg.contains("clawgate config set gateway.auth.mode"),
            "{msg}"
        );

        let cfg = resolve_doc(
            json!({"gateway": {"auth": {"mode": "password", "token": TOKEN, "password": PASSWORD}}}),
            &RunOverrides::default(),
        )
        .unwrap();
        assert_eq!(cfg.auth.mode, AuthMode::Password);
        assert_eq!(
            cfg.auth.token, None,
            "only the chosen mode's secret is kept"
        );
    }

    #[test]
    fn nothing_configured_means_token_mode_which_needs_a_token() {
        let (key, msg) = err_with(json!({}), &RunOverrides::default());
        assert_eq!(key, "gateway.auth.token");
        assert!(
            msg.contains("clawgate config set gateway.auth.token"),
            "{msg}"
        );
        let e = resolve_doc(json!({}), &RunOverrides::default()).unwrap_err();
        assert!(e.is_missing_secret());
    }

    #[test]
    fn auth_mode_errors() {
        for bad in ["trusted-proxy", "foo", "Token"] {
            let (key, msg) = err(json!({"gateway": {"auth": {"mode": bad}}}));
            assert_eq!(key, "gateway.auth.mode", "{msg}");
        }
        let (_, msg) = err(json!({"gateway": {"auth": {"mode": "trusted-proxy"}}}));
        assert!(msg.contains("not supported"), "{msg}");
        assert_eq!(
            err(json!({"gateway": {"auth": {"mode": 1}}})).0,
            "gateway.auth.mode"
        );

        let (key, msg) = err_with(
            json!({"gateway": {"auth": {"mode": "token", "password": PASSWORD}}}),
            &RunOverrides::default(),
        );
        assert_eq!(key, "gateway.auth.token", "{msg}");
        let (key, msg) = err(json!({"gateway": {"auth": {"mode": "password"}}}));
        assert_eq!(key, "gateway.auth.password", "{msg}");
        assert!(
            msg.contains("clawgate config set gateway.auth.password"),
            "{msg}"
        );
        let (key, _) = err_with(
            json!({"gateway": {"auth": "token"}}),
            &RunOverrides::default(),
        );
        assert_eq!(key, "gateway.auth");
    }

    #[test]
    fn auth_none_only_on_loopback() {
        let cfg = ok(json!({"gateway": {"auth": {"mode": "none"}}}));
        assert_eq!(cfg.auth.mode, AuthMode::None);
        assert_eq!(cfg.auth.token, None);

        let (key, msg) = err(json!({"gateway": {"bind": "lan", "auth": {"mode": "none"}}}));
        assert_eq!(key, "gateway.auth.mode");
        assert!(msg.contains("loopback") && msg.contains("anyone"), "{msg}");

        let flag = RunOverrides {
            auth: Some("none".into()),
            bind: Some("lan".into()),
            ..Default::default()
        };
        assert_eq!(err_with(json!({}), &flag).0, "--auth");
        let flag = RunOverrides {
            auth: Some("none".into()),
            bind: Some("custom".into()),
            host: Some("127.0.0.2".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve_doc(json!({}), &flag).unwrap().auth.mode,
            AuthMode::None
        );
    }

    #[test]
    fn secret_precedence_flag_file_env_config() {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("tok");
        std::fs::write(&token_file, "from-file\n").unwrap();
        let (file, d) = file_with(json!({"gateway": {"auth": {"token": "from-config"}}}));
        let run = |o: &RunOverrides, e: &EnvOverrides| {
            resolve(&file, d.path(), o, e)
                .unwrap()
                .auth
                .token
                .unwrap()
                .expose()
                .to_string()
        };
        let none = EnvOverrides::default();
        assert_eq!(run(&RunOverrides::default(), &none), "from-config");
        assert_eq!(
            run(&RunOverrides::default(), &env_token("from-env")),
            "from-env"
        );
        let with_file = RunOverrides {
            token_file: Some(token_file.clone()),
            ..Default::default()
        };
        assert_eq!(run(&with_file, &env_token("from-env")), "from-file");
        let with_flag = RunOverrides {
            token: Some(Secret::new("from-flag")),
            token_file: Some(token_file),
            ..Default::default()
        };
        assert_eq!(run(&with_flag, &env_token("from-env")), "from-flag");

        let pw_file = dir.path().join("pw");
        std::fs::write(&pw_file, "  pw-from-file  \n").unwrap();
        let o = RunOverrides {
            auth: Some("password".into()),
            password_file: Some(pw_file),
            ..Default::default()
        };
        let cfg = resolve(&file, d.path(), &o, &none).unwrap();
        assert_eq!(cfg.auth.password.unwrap().expose(), "pw-from-file");
    }

    #[test]
    fn unreadable_secret_file_names_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let o = RunOverrides {
            token_file: Some(dir.path().join("missing")),
            ..Default::default()
        };
        assert_eq!(err_with(json!({}), &o).0, "--token-file");
        let o = RunOverrides {
            auth: Some("password".into()),
            password_file: Some(dir.path().join("missing")),
            ..Default::default()
        };
        assert_eq!(err_with(json!({}), &o).0, "--password-file");
    }

    #[test]
    fn blank_and_placeholder_secrets_are_refused_naming_their_source() {
        for bad in ["", "   ", "undefined", "null", " null "] {
            let (key, _) = err_with(
                json!({"gateway": {"auth": {"token": bad}}}),
                &RunOverrides::default(),
            );
            assert_eq!(key, "gateway.auth.token", "{bad:?}");
            let (key, _) = err_with(
                json!({"gateway": {"auth": {"mode": "password", "password": bad}}}),
                &RunOverrides::default(),
            );
            assert_eq!(key, "gateway.auth.password", "{bad:?}");
            let o = RunOverrides {
                token: Some(Secret::new(bad)),
                ..Default::default()
            };
            assert_eq!(err_with(json!({}), &o).0, "--token");

            let (file, d) = file_with(json!({}));
            let e =
                resolve(&file, d.path(), &RunOverrides::default(), &env_token(bad)).unwrap_err();
            assert!(e.key().unwrap().contains("CLAWGATE_GATEWAY_TOKEN"), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let blank = dir.path().join("blank");
        std::fs::write(&blank, "\n\n").unwrap();
        let o = RunOverrides {
            token_file: Some(blank),
            ..Default::default()
        };
        assert_eq!(err_with(json!({}), &o).0, "--token-file");
        let (key, _) = err_with(
            json!({"gateway": {"auth": {"token": 12345}}}),
            &RunOverrides::default(),
        );
        assert_eq!(key, "gateway.auth.token");
    }

    #[test]
    fn no_error_message_contains_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, TOKEN).unwrap();
        let both = json!({"gateway": {"auth": {"token": TOKEN, "password": PASSWORD}}});
        let cases: Vec<(Value, RunOverrides, EnvOverrides)> = vec![
            (
                both.clone(),
                RunOverrides::default(),
                EnvOverrides::default(),
            ),
            (
                json!({"gateway": {"bind": "lan", "auth": {"mode": "none", "token": TOKEN}}}),
                RunOverrides::default(),
                EnvOverrides::default(),
            ),
            (
                json!({"gateway": {"auth": {"mode": "password", "token": TOKEN}}}),
                RunOverrides::default(),
                EnvOverrides::default(),
            ),
            (
                json!({"gateway": {"auth": {"token": {"value": TOKEN}}}}),
                RunOverrides::default(),
                EnvOverrides::default(),
            ),
            (
                json!({"gateway": {"auth": {"mode": TOKEN}}}),
                RunOverrides::default(),
                EnvOverrides::default(),
            ),
            (
                json!({"gateway": {"port": 0, "auth": {"token": TOKEN}}}),
                RunOverrides::default(),
                EnvOverrides::default(),
            ),
            (
                json!({}),
                RunOverrides {
                    auth: Some("none".into()),
                    bind: Some("lan".into()),
                    token: Some(Secret::new(TOKEN)),
                    password_file: Some(secret_file),
                    ..Default::default()
                },
                EnvOverrides {
                    token: Some(Secret::new(TOKEN)),
                    password: Some(Secret::new(PASSWORD)),
                },
            ),
        ];
        for (doc, o, e) in cases {
            let (file, d) = file_with(doc.clone());
            let errors = resolve_all(&file, d.path(), &o, &e).expect_err("refused");
            for err in errors {
                let msg = format!("{err} {err:?}");
                assert!(
                    !msg.contains(TOKEN) && !msg.contains(PASSWORD),
                    "{doc}: {msg}"
                );
            }
        }
    }

    // ---- resolve: rate limit, Control UI, nodes, proxies ----

    #[test]
    fn rate_limit_values() {
        let cfg = ok(json!({"gateway": {"auth": {"rateLimit": {
            "maxAttempts": 3, "windowMs": 1000, "lockoutMs": 2000,
            "exemptLoopback": false, "globalMaxFailures": 50
        }}}}));
        assert_eq!(
            cfg.auth.rate_limit,
            RateLimitConfig {
                max_attempts: 3,
                window_ms: 1000,
                lockout_ms: 2000,
                exempt_loopback: false,
                global_max_failures: 50,
            }
        );
    }

    #[test]
    fn rate_limit_errors_name_the_full_key() {
        for field in ["maxAttempts", "windowMs", "lockoutMs", "globalMaxFailures"] {
            for bad in [
                json!(0),
                json!(-5),
                json!(1.5),
                json!("10"),
                json!(true),
                json!([1]),
            ] {
                let (key, msg) = err(json!({"gateway": {"auth": {"rateLimit": {field: bad}}}}));
                assert_eq!(key, format!("gateway.auth.rateLimit.{field}"), "{msg}");
                assert!(msg.contains("clawgate config set"), "{msg}");
            }
        }
        let (key, _) =
            err(json!({"gateway": {"auth": {"rateLimit": {"maxAttempts": 5_000_000_000u64}}}}));
        assert_eq!(key, "gateway.auth.rateLimit.maxAttempts");
        let (key, _) = err(json!({"gateway": {"auth": {"rateLimit": {"exemptLoopback": "yes"}}}}));
        assert_eq!(key, "gateway.auth.rateLimit.exemptLoopback");
        let (key, _) = err(json!({"gateway": {"auth": {"rateLimit": 5}}}));
        assert_eq!(key, "gateway.auth.rateLimit");
    }

    #[test]
    fn control_ui_values() {
        let cfg = ok(json!({"gateway": {"controlUi": {
            "enabled": false,
            "basePath": "ui//admin",
            "allowedOrigins": ["HTTPS://Example.COM/", "http://10.0.0.5:8080", "https://x.example:443", "*", "http://[::1]:3000"]
        }}}));
        assert!(!cfg.control_ui.enabled);
        assert_eq!(cfg.control_ui.base_path, "/ui/admin/");
        assert_eq!(
            cfg.control_ui.allowed_origins,
            [
                "https://example.com",
                "http://10.0.0.5:8080",
                "https://x.example",
                "*",
                "http://[::1]:3000"
            ]
        );
        for (raw, want) in [
            ("", "/"),
            ("/", "/"),
            ("ui", "/ui/"),
            ("/ui", "/ui/"),
            ("/ui/", "/ui/"),
        ] {
            let cfg = ok(json!({"gateway": {"controlUi": {"basePath": raw}}}));
            assert_eq!(cfg.control_ui.base_path, want, "{raw:?}");
        }
    }

    #[test]
    fn control_ui_errors() {
        assert_eq!(
            err(json!({"gateway": {"controlUi": {"enabled": "no"}}})).0,
            "gateway.controlUi.enabled"
        );
        for bad in [json!("/a b/"), json!("/ui?x"), json!("/../etc"), json!(3)] {
            assert_eq!(
                err(json!({"gateway": {"controlUi": {"basePath": bad}}})).0,
                "gateway.controlUi.basePath"
            );
        }
        assert_eq!(
            err(json!({"gateway": {"controlUi": {"allowedOrigins": "https://a.example"}}})).0,
            "gateway.controlUi.allowedOrigins"
        );
        for bad in [
            json!("example.com"),
            json!("ftp://example.com"),
            json!("https://example.com/path"),
            json!("https://"),
            json!("https://user@example.com"),
            json!("https://example.com:99999"),
            json!("https://exa mple.com"),
            json!("https://example.com?x=1"),
            json!(5),
            json!("null"),
        ] {
            let (key, msg) = err(json!({"gateway": {"controlUi": {"allowedOrigins": ["*", bad]}}}));
            assert_eq!(key, "gateway.controlUi.allowedOrigins[1]", "{msg}");
        }
    }

    #[test]
    fn nodes_and_trusted_proxies() {
        let cfg = ok(json!({"gateway": {
            "nodes": {"pairing": {"autoApproveLocal": false}},
            "trustedProxies": ["10.0.0.1", "::1"]
        }}));
        assert!(!cfg.auto_approve_local);
        assert_eq!(
            cfg.trusted_proxies,
            vec![
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );

        assert_eq!(
            err(json!({"gateway": {"nodes": {"pairing": {"autoApproveLocal": 1}}}})).0,
            "gateway.nodes.pairing.autoApproveLocal"
        );
        let (key, msg) = err(json!({"gateway": {"trustedProxies": ["10.0.0.1", "10.0.0.0/8"]}}));
        assert_eq!(key, "gateway.trustedProxies[1]", "{msg}");
        assert_eq!(
            err(json!({"gateway": {"trustedProxies": ["10.0.0.1", 7]}})).0,
            "gateway.trustedProxies[1]"
        );
        assert_eq!(
            err(json!({"gateway": {"trustedProxies": "10.0.0.1"}})).0,
            "gateway.trustedProxies"
        );
    }

    #[test]
    fn allowed_hosts_values_and_errors() {
        assert!(ok(json!({})).allowed_hosts.is_empty());
        let cfg = ok(json!({"gateway": {
            "allowedHosts": ["Gateway.Example.", "gateway.example", "[::1]", "10.0.0.5", "*"]
        }}));
        assert_eq!(
            cfg.allowed_hosts,
            vec!["gateway.example", "::1", "10.0.0.5", "*"]
        );
        for bad in [
            json!("gateway.example:18789"),
            json!("http://gateway.example"),
            json!("gateway.example/ui"),
            json!("a..b"),
            json!(""),
            json!(5),
        ] {
            let (key, msg) = err(json!({"gateway": {"allowedHosts": ["ok.example", bad]}}));
            assert_eq!(key, "gateway.allowedHosts[1]", "{msg}");
        }
        assert_eq!(
            err(json!({"gateway": {"allowedHosts": "gateway.example"}})).0,
            "gateway.allowedHosts"
        );
    }

    #[test]
    fn resolve_all_reports_every_problem() {
        let (file, d) = file_with(json!({"gateway": {
            "port": "x", "bind": "nowhere",
            "auth": {"rateLimit": {"windowMs": 0}},
            "trustedProxies": ["bad"]
        }}));
        let errors = resolve_all(
            &file,
            d.path(),
            &RunOverrides::default(),
            &EnvOverrides::default(),
        )
        .unwrap_err();
        let keys: Vec<_> = errors.iter().filter_map(|e| e.key()).collect();
        assert_eq!(
            keys,
            [
                "gateway.port",
                "gateway.bind",
                "gateway.auth.token",
                "gateway.auth.rateLimit.windowMs",
                "gateway.trustedProxies[0]"
            ]
        );
        let first = resolve(
            &file,
            d.path(),
            &RunOverrides::default(),
            &EnvOverrides::default(),
        )
        .unwrap_err();
        assert_eq!(first.key(), Some("gateway.port"));
    }

    #[test]
    fn null_values_count_as_unset() {
        let cfg = ok(json!({"gateway": {"port": null, "bind": null, "controlUi": null}}));
        assert_eq!(cfg.port, DEFAULT_PORT);
        assert_eq!(cfg.bind, BindMode::Loopback);
    }

    // ---- first run ----

    #[test]
    fn first_run_generates_and_saves_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join(CONFIG_FILE_NAME);
        let mut file = ConfigFile::load(&path).unwrap();
        let token = ensure_first_run_token(
            &mut file,
            &RunOverrides::default(),
            &EnvOverrides::default(),
        )
        .unwrap()
        .expect("a token is generated");
        assert_eq!(token.expose().len(), 43);
        assert_eq!(file.get("gateway.auth.mode"), Some(&json!("token")));
        assert_eq!(file.get("gateway.auth.token"), Some(&json!(token.expose())));
        let saved = ConfigFile::load(&path).unwrap();
        assert_eq!(saved.doc, file.doc);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let cfg = resolve(
            &saved,
            dir.path(),
            &RunOverrides::default(),
            &EnvOverrides::default(),
        )
        .unwrap();
        assert_eq!(cfg.auth.token, Some(token));

        // A second run finds the token and writes nothing.
        let mut again = ConfigFile::load(&path).unwrap();
        assert!(
            ensure_first_run_token(
                &mut again,
                &RunOverrides::default(),
                &EnvOverrides::default()
            )
            .unwrap()
            .is_none()
        );
    }

    #[test]
    fn first_run_does_nothing_when_anything_configures_auth() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE_NAME);
        let overrides = [
            RunOverrides {
                auth: Some("none".into()),
                ..Default::default()
            },
            RunOverrides {
                token: Some(Secret::new("t")),
                ..Default::default()
            },
            RunOverrides {
                token_file: Some("/x".into()),
                ..Default::default()
            },
            RunOverrides {
                password: Some(Secret::new("p")),
                ..Default::default()
            },
            RunOverrides {
                password_file: Some("/x".into()),
                ..Default::default()
            },
        ];
        for o in &overrides {
            let mut file = ConfigFile::load(&path).unwrap();
            assert!(
                ensure_first_run_token(&mut file, o, &EnvOverrides::default())
                    .unwrap()
                    .is_none()
            );
        }
        let envs = [
            env_token("t"),
            EnvOverrides {
                token: None,
                password: Some(Secret::new("p")),
            },
        ];
        for e in &envs {
            let mut file = ConfigFile::load(&path).unwrap();
            assert!(
                ensure_first_run_token(&mut file, &RunOverrides::default(), e)
                    .unwrap()
                    .is_none()
            );
        }
        for doc in [
            json!({"gateway": {"auth": {"mode": "none"}}}),
            json!({"gateway": {"auth": {"token": "t"}}}),
            json!({"gateway": {"auth": {"password": "p"}}}),
            json!({"gateway": {"auth": "broken"}}),
        ] {
            let (mut file, _d) = file_with(doc.clone());
            assert!(
                ensure_first_run_token(
                    &mut file,
                    &RunOverrides::default(),
                    &EnvOverrides::default()
                )
                .unwrap()
                .is_none()
            );
            assert_eq!(file.doc, doc);
        }
        assert!(!path.exists(), "nothing was written");
    }
}
