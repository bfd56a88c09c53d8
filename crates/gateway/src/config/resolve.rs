//! Flags, environment and file resolved into one validated
//! [`GatewayConfig`]. Each config section has its own method on the
//! resolver; every problem is recorded with the key (or flag) it is about,
//! and [`resolve_all`] reports them all in a stable order. The auth section
//! is in `resolve/auth.rs`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clawgate_protocol::Secret;
use serde_json::Value;

use super::describe::{describe_kind, describe_value};
use super::file::ConfigFile;
use super::normalize::{normalize_base_path, normalize_host_name, normalize_origin};
use super::types::{
    AuthConfig, AuthMode, BindMode, ConfigError, ControlUiConfig, DEFAULT_PORT, GatewayConfig,
    IpRange, RateLimitConfig, StoreConfig, TICK_INTERVAL_MS_RANGE, TlsConfig, UpstreamConfig,
};

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
    /// `--upstream URL`: front this OpenClaw gateway (beats
    /// `gateway.upstream.url`).
    pub upstream: Option<String>,
    /// `--tls`: serve https:// and wss:// (beats `gateway.tls.enabled`).
    pub tls: bool,
    /// `--store URL`: a PostgreSQL registry shared by replicas (beats
    /// `CLAWGATE_STORE_URL` and `gateway.store.url`).
    pub store: Option<Secret>,
}

/// Environment values that feed the config (read once by the binary, so
/// tests can pass them explicitly).
#[derive(Debug, Clone, Default)]
pub struct EnvOverrides {
    pub token: Option<Secret>,
    pub password: Option<Secret>,
    /// `CLAWGATE_METRICS_TOKEN`: the `/metrics` bearer token.
    pub metrics_token: Option<Secret>,
    /// `CLAWGATE_PORT`, else `OPENCLAW_GATEWAY_PORT` (see `resolve/env.rs`).
    pub port: Option<EnvVar>,
    /// `CLAWGATE_BIND`.
    pub bind: Option<EnvVar>,
    /// `CLAWGATE_STORE_URL`.
    pub store_url: Option<Secret>,
    /// `CLAWGATE_STORE_PASSWORD_FILE`.
    pub store_password_file: Option<PathBuf>,
}

impl EnvOverrides {
    /// Reads `CLAWGATE_GATEWAY_TOKEN` (then `OPENCLAW_GATEWAY_TOKEN`), the
    /// `_PASSWORD` pair and the listen overrides from the process
    /// environment.
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
            metrics_token: std::env::var("CLAWGATE_METRICS_TOKEN")
                .ok()
                .map(Secret::new),
            port: env::first_set(&env::PORT_VARS, |name| std::env::var(name).ok()),
            bind: env::first_set(&env::BIND_VARS, |name| std::env::var(name).ok()),
            store_url: std::env::var("CLAWGATE_STORE_URL")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(Secret::new),
            store_password_file: std::env::var_os("CLAWGATE_STORE_PASSWORD_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }
}

/// The environment with a shared token set (for tests).
#[cfg(test)]
pub(crate) fn env_token(t: &str) -> EnvOverrides {
    EnvOverrides {
        token: Some(Secret::new(t)),
        ..Default::default()
    }
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
/// proxies, allowed hosts, tick interval, upstream, TLS).
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
    r.check_sections();
    let port = r.port(overrides, env);
    let bind = r.bind(overrides, env);
    let auth = r.auth(overrides, env, bind.as_ref());
    let rate_limit = r.rate_limit();
    let control_ui = r.control_ui();
    let auto_approve_local = r.boolean("gateway.nodes.pairing.autoApproveLocal", true);
    let (trusted_proxies, trusted_proxy_ranges) = r.trusted_proxies();
    if auth
        .as_ref()
        .is_some_and(|a| a.mode == AuthMode::TrustedProxy)
        && trusted_proxies.is_empty()
        && trusted_proxy_ranges.is_empty()
    {
        r.fail(
            "gateway.trustedProxies",
            "gateway.auth.mode is trusted-proxy but no proxy address is trusted, so every proxied connect would be refused; add your proxy's address with: clawgate config set gateway.trustedProxies '[\"10.0.0.1\"]'",
        );
    }
    let allowed_hosts = r.allowed_hosts();
    let tick_interval = r.tick_interval();
    let upstream = r.upstream(overrides);
    let metrics_token = r.metrics_token(env);
    let tls = r.tls(overrides);
    let store = r.store(overrides, env);
    if !r.errors.is_empty() {
        return Err(r.errors);
    }
    let auth = auth.expect("auth resolved when there are no errors");
    Ok(GatewayConfig {
        port,
        bind: bind.expect("bind resolved when there are no errors"),
        auth: AuthConfig { rate_limit, ..auth },
        control_ui,
        auto_approve_local,
        trusted_proxies,
        trusted_proxy_ranges,
        allowed_hosts,
        tick_interval,
        upstream,
        metrics_token,
        tls,
        store,
        state_dir: state_dir.to_path_buf(),
        config_path: file.path.clone(),
    })
}

/// How an array setting's refusals describe it.
struct ListRule {
    /// What each entry must be.
    entry: &'static str,
    /// What the array holds.
    holds: &'static str,
    /// One good entry, for the fix hint.
    example: &'static str,
    /// Whether a repeated entry is dropped.
    dedupe: bool,
}

/// Walks the file document section by section, recording every problem.
struct Resolver<'a> {
    doc: &'a Value,
    errors: Vec<ConfigError>,
}

/// Primitives: reading a value and checking its type.
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

    /// The sections that hold other keys must be objects when present.
    fn check_sections(&mut self) {
        for section in [
            "gateway",
            "gateway.auth",
            "gateway.auth.rateLimit",
            "gateway.auth.trustedProxy",
            "gateway.auth.trustedProxy.deviceAutoApprove",
            "gateway.controlUi",
            "gateway.nodes",
            "gateway.nodes.pairing",
            "gateway.upstream",
            "gateway.metrics",
            "gateway.tls",
            "gateway.store",
        ] {
            self.check_object(section);
        }
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

    /// An array setting whose entries `parse` accepts; a bad entry is
    /// refused as `key[i]`, anything but an array as `key`.
    fn list<T: PartialEq>(
        &mut self,
        key: &str,
        rule: ListRule,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Vec<T> {
        let fix = format!("clawgate config set {key} '[{}]'", rule.example);
        let mut entries = Vec::new();
        match self.value(key).cloned() {
            None => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_str().and_then(&parse) {
                        Some(entry) => {
                            if !(rule.dedupe && entries.contains(&entry)) {
                                entries.push(entry);
                            }
                        }
                        None => {
                            let found = describe_value(item);
                            self.fail(
                                format!("{key}[{i}]"),
                                format!(
                                    "must be {} (found {found}); fix the entry with: {fix}",
                                    rule.entry
                                ),
                            );
                        }
                    }
                }
            }
            Some(other) => {
                let kind = describe_kind(&other);
                self.fail(
                    key,
                    format!(
                        "must be an array of {} but is {kind}; fix it with: {fix}",
                        rule.holds
                    ),
                );
            }
        }
        entries
    }
}

/// `gateway.port`, `gateway.bind` and `gateway.customBindHost`, with
/// `--port`, `--bind` and `--host`.
impl Resolver<'_> {
    fn port(&mut self, overrides: &RunOverrides, env: &EnvOverrides) -> u16 {
        if let Some(port) = overrides.port {
            return port;
        }
        if let Some(var) = &env.port {
            return env::env_port(var).unwrap_or_else(|err| {
                self.errors.push(err);
                DEFAULT_PORT
            });
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

    fn bind(&mut self, overrides: &RunOverrides, env: &EnvOverrides) -> Option<BindMode> {
        let (mode, key) = match &env.bind {
            Some(var) if overrides.bind.is_none() => match env::env_bind(var) {
                Ok(mode) => (mode, var.name),
                Err(err) => {
                    self.errors.push(err);
                    return None;
                }
            },
            _ => self.bind_mode(overrides)?,
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
                let (host, host_key) = self.custom_bind_host(overrides, from_flag)?;
                self.custom_bind_address(host, host_key)
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

    /// The bind mode as written and where: `--bind`, else `gateway.bind`
    /// (default "loopback").
    fn bind_mode(&mut self, overrides: &RunOverrides) -> Option<(String, &'static str)> {
        if let Some(b) = &overrides.bind {
            return Some((b.clone(), "--bind"));
        }
        match self.value("gateway.bind") {
            None => Some(("loopback".to_string(), "gateway.bind")),
            Some(Value::String(s)) => Some((s.clone(), "gateway.bind")),
            Some(other) => {
                let found = describe_value(other);
                self.fail(
                    "gateway.bind",
                    format!("must be \"loopback\", \"lan\" or \"custom\" (found {found}); fix it with: clawgate config set gateway.bind loopback"),
                );
                None
            }
        }
    }

    /// The address text for a custom bind and where: `--host`, else (unless
    /// the mode came from `--bind`) `gateway.customBindHost`.
    fn custom_bind_host(
        &mut self,
        overrides: &RunOverrides,
        from_flag: bool,
    ) -> Option<(String, &'static str)> {
        if let Some(h) = &overrides.host {
            return Some((h.clone(), "--host"));
        }
        if from_flag {
            self.fail(
                "--host",
                "--bind custom needs the address to listen on; add --host ADDR, e.g. --host 192.168.1.10",
            );
            return None;
        }
        match self.value("gateway.customBindHost") {
            Some(Value::String(h)) => Some((h.clone(), "gateway.customBindHost")),
            Some(other) => {
                let found = describe_value(other);
                self.fail(
                    "gateway.customBindHost",
                    format!("must be an IP address string (found {found}); fix it with: clawgate config set gateway.customBindHost 192.168.1.10"),
                );
                None
            }
            None => {
                self.fail(
                    "gateway.customBindHost",
                    "gateway.bind is \"custom\" but no address is set; set one with: clawgate config set gateway.customBindHost 192.168.1.10",
                );
                None
            }
        }
    }

    fn custom_bind_address(&mut self, host: String, host_key: &str) -> Option<BindMode> {
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
}

/// The remaining sections: `gateway.auth.rateLimit.*`,
/// `gateway.controlUi.*`, `gateway.trustedProxies`, `gateway.allowedHosts`,
/// `gateway.tickIntervalMs`.
impl Resolver<'_> {
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
            attack_guard: self.boolean("gateway.auth.rateLimit.attackGuard", d.attack_guard),
            // At most a day: a longer cooldown only keeps new addresses out
            // for longer after an attack stops.
            attack_cooldown_ms: self.positive_int(
                "gateway.auth.rateLimit.attackCooldownMs",
                d.attack_cooldown_ms,
                24 * 3_600_000,
            ),
            // At most 30 days: the set is bounded anyway (4096 addresses).
            recent_success_ttl_ms: self.positive_int(
                "gateway.auth.rateLimit.recentSuccessTtlMs",
                d.recent_success_ttl_ms,
                30 * 24 * 3_600_000,
            ),
        }
    }

    fn control_ui(&mut self) -> ControlUiConfig {
        let rule = ListRule {
            entry: "\"*\" or an origin like \"https://host.example:8443\" (http or https, no path)",
            holds: "origins",
            example: "\"https://host.example\"",
            dedupe: true,
        };
        ControlUiConfig {
            enabled: self.boolean("gateway.controlUi.enabled", true),
            base_path: self.base_path(),
            allowed_origins: self.list("gateway.controlUi.allowedOrigins", rule, normalize_origin),
        }
    }

    fn base_path(&mut self) -> String {
        let key = "gateway.controlUi.basePath";
        match self.value(key) {
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
        }
    }

    /// `gateway.trustedProxies`: single addresses and CIDR ranges.
    fn trusted_proxies(&mut self) -> (Vec<IpAddr>, Vec<IpRange>) {
        #[derive(PartialEq)]
        enum Entry {
            Addr(IpAddr),
            Range(IpRange),
        }
        let rule = ListRule {
            entry: "an IP address such as \"10.0.0.1\" or a CIDR range such as \"10.0.0.0/24\" (host names are not supported)",
            holds: "IP addresses or CIDR ranges",
            example: "\"10.0.0.1\"",
            dedupe: true,
        };
        let entries = self.list("gateway.trustedProxies", rule, |s| {
            if s.contains('/') {
                IpRange::parse(s).map(Entry::Range)
            } else {
                s.trim().parse::<IpAddr>().ok().map(Entry::Addr)
            }
        });
        let mut addrs = Vec::new();
        let mut ranges = Vec::new();
        for e in entries {
            match e {
                Entry::Addr(a) => addrs.push(a),
                Entry::Range(r) => ranges.push(r),
            }
        }
        (addrs, ranges)
    }

    fn allowed_hosts(&mut self) -> Vec<String> {
        let rule = ListRule {
            entry: "\"*\", a host name such as \"gateway.example\" or an IP address, without scheme, port or path",
            holds: "host names",
            example: "\"gateway.example\"",
            dedupe: true,
        };
        self.list("gateway.allowedHosts", rule, normalize_host_name)
    }

    fn tick_interval(&mut self) -> Duration {
        let key = "gateway.tickIntervalMs";
        let default = clawgate_protocol::TICK_INTERVAL_MS;
        let ms = match self.value(key) {
            None => default,
            Some(v) => match v.as_u64() {
                Some(n) if TICK_INTERVAL_MS_RANGE.contains(&n) => n,
                _ => {
                    let found = describe_value(v);
                    let (min, max) = TICK_INTERVAL_MS_RANGE.into_inner();
                    self.fail(
                        key,
                        format!("must be a whole number of milliseconds from {min} to {max} (found {found}); fix it with: clawgate config set {key} {default}"),
                    );
                    default
                }
            },
        };
        Duration::from_millis(ms)
    }

    /// `gateway.upstream.url` (or `--upstream`) and
    /// `gateway.upstream.tlsFingerprint`.
    fn upstream(&mut self, overrides: &RunOverrides) -> Option<UpstreamConfig> {
        let url_key = "gateway.upstream.url";
        let (url, key) = match &overrides.upstream {
            Some(u) => (u.clone(), "--upstream"),
            None => match self.value(url_key) {
                None => {
                    if self.value("gateway.upstream.tlsFingerprint").is_some() {
                        self.fail(
                            "gateway.upstream.tlsFingerprint",
                            format!("is set but {url_key} is not; set the upstream with: clawgate config set {url_key} ws://127.0.0.1:18790"),
                        );
                    }
                    return None;
                }
                Some(Value::String(s)) => (s.clone(), url_key),
                Some(v) => {
                    let found = describe_value(v);
                    self.fail(
                        url_key,
                        format!("must be a ws:// or wss:// URL such as \"ws://127.0.0.1:18790\" (found {found}); fix it with: clawgate config set {url_key} ws://127.0.0.1:18790"),
                    );
                    return None;
                }
            },
        };
        let endpoint = match clawgate_client::Endpoint::parse(&url) {
            Ok(ep) if url.contains("://") => ep,
            Ok(_) => {
                self.fail(
                    key,
                    format!("{url:?} has no scheme: write ws://{url} (or wss:// for TLS)"),
                );
                return None;
            }
            Err(e) => {
                self.fail(
                    key,
                    format!("{e}; an upstream is a URL such as ws://127.0.0.1:18790"),
                );
                return None;
            }
        };
        let fp_key = "gateway.upstream.tlsFingerprint";
        let tls_fingerprint = match self.value(fp_key) {
            None => None,
            Some(Value::String(s)) => match clawgate_client::Fingerprint::parse(s) {
                Ok(fp) if endpoint.is_tls() => Some(fp.0),
                Ok(_) => {
                    self.fail(fp_key, format!("pins a certificate but the upstream {} is not wss://; remove it with: clawgate config unset {fp_key}", endpoint.url()));
                    None
                }
                Err(e) => {
                    self.fail(fp_key, e);
                    None
                }
            },
            Some(v) => {
                let found = describe_value(v);
                self.fail(
                    fp_key,
                    format!("must be the certificate's SHA-256 as 64 hex digits (found {found})"),
                );
                None
            }
        };
        Some(UpstreamConfig {
            url: endpoint.url(),
            tls_fingerprint,
        })
    }
}

/// `gateway.tls.*` with `--tls`. Whether the files exist and hold a
/// matching certificate and key is checked when the gateway loads them
/// (`tls::ServerTls::load`), so `config set` can name files made later.
impl Resolver<'_> {
    fn tls(&mut self, overrides: &RunOverrides) -> TlsConfig {
        let d = TlsConfig::default();
        let enabled = overrides.tls || self.boolean("gateway.tls.enabled", d.enabled);
        let auto_generate = self.boolean("gateway.tls.autoGenerate", d.auto_generate);
        let cert_path = self.path("gateway.tls.certPath");
        let key_path = self.path("gateway.tls.keyPath");
        let ca_path = self.path("gateway.tls.caPath");
        if enabled {
            match (&cert_path, &key_path) {
                (Some(_), None) => self.fail(
                    "gateway.tls.keyPath",
                    "gateway.tls.certPath is set but the key is not; set it with: clawgate config set gateway.tls.keyPath /path/to/key.pem",
                ),
                (None, Some(_)) => self.fail(
                    "gateway.tls.certPath",
                    "gateway.tls.keyPath is set but the certificate is not; set it with: clawgate config set gateway.tls.certPath /path/to/cert.pem",
                ),
                (None, None) if !auto_generate => self.fail(
                    "gateway.tls.autoGenerate",
                    "TLS is on but autoGenerate is false and no certificate is set; set gateway.tls.certPath and gateway.tls.keyPath, or allow a self-signed one with: clawgate config set gateway.tls.autoGenerate true",
                ),
                _ => {}
            }
            if ca_path.is_some() && cert_path.is_none() {
                self.fail(
                    "gateway.tls.caPath",
                    "is set but gateway.tls.certPath is not (a CA chain goes with your own certificate); remove it with: clawgate config unset gateway.tls.caPath",
                );
            }
        }
        TlsConfig {
            enabled,
            auto_generate,
            cert_path,
            key_path,
            ca_path,
        }
    }

    /// A non-empty file path string (`~/` is the home directory).
    fn path(&mut self, key: &str) -> Option<PathBuf> {
        match self.value(key) {
            None => None,
            Some(Value::String(s)) if !s.trim().is_empty() => {
                let s = s.trim();
                match (s.strip_prefix("~/"), std::env::var_os("HOME")) {
                    (Some(rest), Some(home)) => Some(PathBuf::from(home).join(rest)),
                    _ => Some(PathBuf::from(s)),
                }
            }
            Some(other) => {
                let found = describe_value(other);
                self.fail(
                    key,
                    format!("must be a file path such as \"/etc/clawgate/cert.pem\" (found {found}); fix it with: clawgate config set {key} /path/to/file.pem"),
                );
                None
            }
        }
    }
}

mod auth;
mod env;
#[cfg(test)]
mod tests;
mod trusted_proxy;

/// `gateway.metrics.token`, with `CLAWGATE_METRICS_TOKEN`.
impl Resolver<'_> {
    fn metrics_token(&mut self, env: &EnvOverrides) -> Option<Secret> {
        let key = "gateway.metrics.token";
        let (value, source) = match &env.metrics_token {
            Some(secret) => (secret.expose().to_owned(), "CLAWGATE_METRICS_TOKEN"),
            None => match self.value(key) {
                None => return None,
                Some(Value::String(s)) => (s.clone(), key),
                Some(other) => {
                    let kind = describe_kind(other);
                    self.fail(
                        key,
                        format!("must be a string but is {kind}; fix it with: clawgate config set {key} \"$(openssl rand -hex 32)\""),
                    );
                    return None;
                }
            },
        };
        let trimmed = value.trim();
        if trimmed.len() < METRICS_TOKEN_MIN_LEN {
            self.fail(
                source,
                format!("must be at least {METRICS_TOKEN_MIN_LEN} characters (a scraper token is a secret); generate one with: openssl rand -hex 32"),
            );
            return None;
        }
        Some(Secret::new(trimmed))
    }
}

/// `gateway.store.url` and `.passwordFile`, with `--store`,
/// `CLAWGATE_STORE_URL` and `CLAWGATE_STORE_PASSWORD_FILE`.
impl Resolver<'_> {
    fn store(&mut self, overrides: &RunOverrides, env: &EnvOverrides) -> StoreConfig {
        let string = |r: &mut Self, key: &str| match r.value(key) {
            None => None,
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(other) => {
                let found = describe_kind(other);
                r.fail(
                    key,
                    format!("must be a non-empty string but is {found}; fix it with: clawgate config unset {key}"),
                );
                None
            }
        };
        let file_url = string(self, "gateway.store.url");
        let file_password = string(self, "gateway.store.passwordFile");
        let (url, source) = if let Some(u) = &overrides.store {
            (Some(u.expose().trim().to_string()), "--store")
        } else if let Some(u) = &env.store_url {
            (Some(u.expose().trim().to_string()), "CLAWGATE_STORE_URL")
        } else {
            (file_url, "gateway.store.url")
        };
        let password_file = env
            .store_password_file
            .clone()
            .or(file_password.map(PathBuf::from));
        let Some(url) = url else {
            return StoreConfig::default();
        };
        if let Err(e) = clawgate_store::PgTarget::parse(&url, password_file.as_deref()) {
            self.fail(
                source,
                format!("{e}; the store URL looks like postgres://USER@HOST:5432/DB (the password in gateway.store.passwordFile or ~/.pgpass)"),
            );
            return StoreConfig::default();
        }
        StoreConfig {
            url: Some(Secret::new(url)),
            password_file,
        }
    }
}

/// The shortest `/metrics` bearer token accepted.
const METRICS_TOKEN_MIN_LEN: usize = 16;
pub use env::{BIND_VARS, EnvOverride, EnvVar, PORT_VARS, env_override};
