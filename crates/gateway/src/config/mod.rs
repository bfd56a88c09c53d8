//! Gateway configuration: the JSON5 file `clawgate.json` in the state
//! directory (or `--config PATH`), environment variables and `gateway run`
//! flags, resolved into one validated [`GatewayConfig`].
//!
//! Keys keep the reference names (`gateway.port`, `gateway.bind`,
//! `gateway.auth.mode|token|password|rateLimit.*`,
//! `gateway.controlUi.enabled|basePath|allowedOrigins`,
//! `gateway.nodes.pairing.autoApproveLocal`, `gateway.trustedProxies`
//! (addresses or CIDR ranges), `gateway.auth.trustedProxy.userHeader|
//! requiredHeaders|allowUsers|allowLoopback|deviceAutoApprove.*`,
//! `gateway.auth.identityScopes`,
//! `gateway.tls.enabled|autoGenerate|certPath|keyPath|caPath`) so an
//! existing `openclaw.json` can be pointed at with `--config`; keys clawgate
//! does not use are kept untouched on write. clawgate's own additions:
//! `gateway.auth.rateLimit.globalMaxFailures|attackGuard|attackCooldownMs|
//! recentSuccessTtlMs`, `gateway.auth.passwordHash`, `gateway.allowedHosts`,
//! `gateway.tickIntervalMs`, `gateway.upstream.url|tlsFingerprint` (the
//! OpenClaw gateway clawgate fronts) and `gateway.auth.trustedProxy.jwt.*`
//! (the proxy's signed assertion; `resolve/trusted_proxy.rs`).
//!
//! Precedence, highest first: `gateway run` flags, environment
//! (`CLAWGATE_GATEWAY_TOKEN`, `OPENCLAW_GATEWAY_TOKEN`,
//! `CLAWGATE_GATEWAY_PASSWORD`, `OPENCLAW_GATEWAY_PASSWORD`,
//! `CLAWGATE_PORT`, `OPENCLAW_GATEWAY_PORT`, `CLAWGATE_BIND`), the file,
//! defaults.
//!
//! This module only declares its files and re-exports their public items;
//! it is a leaf of the crate (nothing here imports the rest of the gateway).
//!
//! - `types.rs`: the resolved settings ([`GatewayConfig`], [`AuthConfig`],
//!   [`AuthMode`], [`BindMode`], [`RateLimitConfig`], [`ControlUiConfig`])
//!   and [`ConfigError`];
//! - `file.rs`: [`ConfigFile`], the JSON5 document with dotted-key
//!   `get`/`set`/`unset` and atomic 0600 writes that edit the text in
//!   place; [`default_state_dir`], [`is_valid_key`], [`parse_json5_value`];
//! - `edit.rs`: the in-place text editor under `ConfigFile::save` (a CST
//!   of the JSON5 text: comments and formatting kept);
//! - `resolve.rs`: flags ([`RunOverrides`]), environment ([`EnvOverrides`])
//!   and file into a validated [`GatewayConfig`] ([`resolve`],
//!   [`resolve_all`]), one resolver method per config section; the auth
//!   section (mode, secrets from flags, files, environment and file) is in
//!   `resolve/auth.rs`, the port and bind environment overrides
//!   ([`env_override`]) in `resolve/env.rs`;
//! - `normalize.rs`: [`normalize_origin`], [`normalize_host_name`] and the
//!   Control UI base path;
//! - `first_run.rs`: [`ensure_first_run_token`] (the token itself is
//!   `clawgate_protocol::Secret::generate`);
//! - `describe.rs`: how values are named in error messages without echoing
//!   secrets.
//!
//! Dependencies point one way: `types` and `normalize` import nothing here;
//! `describe` nothing; `edit` nothing; `file` uses `types`, `describe` and
//! `edit`; `resolve` uses
//! `types`, `file`, `normalize` and `describe`; `first_run` uses `types`,
//! `file` and `resolve`.

mod describe;
mod edit;
mod file;
mod first_run;
mod normalize;
mod resolve;
#[cfg(test)]
mod test_support;
mod types;

pub use file::{ConfigFile, default_state_dir, is_valid_key, parse_json5_value};
pub use first_run::ensure_first_run_token;
pub use normalize::{normalize_host_name, normalize_origin};
pub use resolve::{
    BIND_VARS, EnvOverride, EnvOverrides, EnvVar, PORT_VARS, RunOverrides, env_override, resolve,
    resolve_all,
};
pub use types::{
    AuthConfig, AuthMode, AutoApprove, BindMode, CONFIG_FILE_NAME, ConfigError, ControlUiConfig,
    DEFAULT_AUTO_APPROVE_SCOPES, DEFAULT_PORT, GatewayConfig, IpRange, JwksSource, JwtConfig,
    RateLimitConfig, StoreConfig, TICK_INTERVAL_MS_RANGE, TlsConfig, TrustedProxyConfig,
    UpstreamConfig,
};
