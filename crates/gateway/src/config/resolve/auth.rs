//! The auth section of the resolver: `gateway.auth.mode|token|password`
//! with `--auth`, the secret flags and files, and the environment, into
//! the mode and the one secret it uses.

use std::path::PathBuf;

use clawgate_protocol::Secret;
use serde_json::Value;

use super::{EnvOverrides, Resolver, RunOverrides};
use crate::config::describe::describe_kind;
use crate::config::types::{AuthConfig, AuthMode, BindMode, MISSING_PASSWORD, MISSING_TOKEN};
use crate::password::PasswordHash;

/// Where a secret came from, to name it in an error.
struct SecretFrom {
    secret: Secret,
    origin: String,
}

/// `gateway.auth.mode|token|password`, with `--auth`, the secret flags and
/// the environment.
impl Resolver<'_> {
    /// The auth mode and the secret it uses (rate limits at their defaults:
    /// they are resolved by [`Resolver::rate_limit`]). `None` when anything
    /// about auth is wrong.
    pub(super) fn auth(
        &mut self,
        overrides: &RunOverrides,
        env: &EnvOverrides,
        bind: Option<&BindMode>,
    ) -> Option<AuthConfig> {
        let errors_before = self.errors.len();
        let (explicit, mode_key) = self.auth_mode(overrides);
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
        let mut password_hash = self.password_hash();
        if self.errors.len() > errors_before {
            return None;
        }
        // A password from a flag or the environment is explicit and wins
        // over the file's hash; both in the file is ambiguous.
        if let Some(p) = &password
            && password_hash.is_some()
        {
            if p.origin == "gateway.auth.password" {
                self.fail(
                    "gateway.auth.password",
                    "is set together with gateway.auth.passwordHash; keep only the hash with: clawgate config unset gateway.auth.password",
                );
                return None;
            }
            password_hash = None;
        }
        let has_password = password.is_some() || password_hash.is_some();
        let mode = match explicit {
            Some(mode) => mode,
            None => self.implied_auth_mode(token.is_some(), has_password)?,
        };
        if mode == AuthMode::TrustedProxy
            && let Some(t) = &token
        {
            // The reference refuses this too: a shared token would be a
            // second way in that bypasses the proxy's identity.
            let fix = if t.origin == "gateway.auth.token" {
                "remove it with: clawgate config unset gateway.auth.token".to_string()
            } else {
                format!("remove {}", t.origin)
            };
            self.fail(
                t.origin.clone(),
                format!("gateway auth mode is trusted-proxy, but a shared token is also configured; trusted-proxy and token auth are mutually exclusive, so {fix} (a local password for direct callers is allowed)"),
            );
            return None;
        }
        let trusted_proxy = if mode == AuthMode::TrustedProxy {
            Some(self.trusted_proxy()?)
        } else {
            None
        };
        let identity_scopes = if mode == AuthMode::TrustedProxy {
            self.identity_scopes()
        } else {
            Vec::new()
        };
        if !self.auth_mode_usable(mode, mode_key, token.is_some(), has_password, bind) {
            return None;
        }
        if mode == AuthMode::Password
            && let Some(p) = &password
            && bind.is_some_and(|b| !b.is_loopback())
        {
            let strength = crate::password::strength(p.secret.expose());
            if strength.is_weak() {
                self.fail(
                    p.origin.clone(),
                    format!(
                        "{} (a password is refused on a non-loopback bind when it is this easy to guess)",
                        strength.describe()
                    ),
                );
                return None;
            }
        }
        // Only the secret of the chosen mode is kept: the other one is never
        // checked, so a change to it must not count as an auth change.
        let (token, password, password_hash) = match mode {
            AuthMode::Token => (token.map(|t| t.secret), None, None),
            // trusted-proxy: the password of direct local callers.
            AuthMode::Password | AuthMode::TrustedProxy => {
                (None, password.map(|p| p.secret), password_hash)
            }
            AuthMode::None => (None, None, None),
        };
        Some(AuthConfig {
            password_hash,
            trusted_proxy,
            identity_scopes,
            ..AuthConfig::new(mode, token, password)
        })
    }

    /// `gateway.auth.passwordHash`: an Argon2id PHC string (never quoted in
    /// an error: it is crackable material).
    fn password_hash(&mut self) -> Option<PasswordHash> {
        let key = "gateway.auth.passwordHash";
        match self.value(key)? {
            Value::String(s) => match PasswordHash::parse(s) {
                Ok(h) => Some(h),
                Err(why) => {
                    self.fail(
                        key,
                        format!("{why}; set it with: clawgate gateway set-password"),
                    );
                    None
                }
            },
            other => {
                let kind = describe_kind(other);
                self.fail(
                    key,
                    format!("must be an Argon2id PHC string but is {kind}; set it with: clawgate gateway set-password"),
                );
                None
            }
        }
    }

    /// The chosen mode (`--auth`, else `gateway.auth.mode`; `None` when
    /// neither is set or it is invalid) and the key it is named by.
    fn auth_mode(&mut self, overrides: &RunOverrides) -> (Option<AuthMode>, &'static str) {
        let (mode_text, mode_key) = match &overrides.auth {
            Some(m) => (Some(m.clone()), "--auth"),
            None => match self.value("gateway.auth.mode") {
                None => (None, "gateway.auth.mode"),
                Some(Value::String(s)) => (Some(s.clone()), "gateway.auth.mode"),
                Some(other) => {
                    let kind = describe_kind(other);
                    self.fail(
                        "gateway.auth.mode",
                        format!("must be \"token\", \"password\", \"trusted-proxy\" or \"none\" but is {kind}; fix it with: clawgate config set gateway.auth.mode token"),
                    );
                    (None, "gateway.auth.mode")
                }
            },
        };
        let mode = match mode_text.as_deref() {
            None => None,
            Some("token") => Some(AuthMode::Token),
            Some("password") => Some(AuthMode::Password),
            Some("none") => Some(AuthMode::None),
            Some("trusted-proxy") => Some(AuthMode::TrustedProxy),
            Some(_) => {
                // The value is not echoed: a secret pasted into the wrong
                // auth key must not end up in logs.
                let why =
                    "must be \"token\", \"password\", \"trusted-proxy\" or \"none\" (lowercase)";
                self.fail(
                    mode_key,
                    format!("{why}; fix it with: clawgate config set gateway.auth.mode token"),
                );
                None
            }
        };
        (mode, mode_key)
    }

    /// With no mode chosen: password when only a password is set, else
    /// token; both secrets set is ambiguous.
    fn implied_auth_mode(&mut self, has_token: bool, has_password: bool) -> Option<AuthMode> {
        match (has_token, has_password) {
            (true, true) => {
                self.fail(
                    "gateway.auth.mode",
                    "both a token and a password are set but no auth mode is chosen; pick one with: clawgate config set gateway.auth.mode token (or password)",
                );
                None
            }
            (false, true) => Some(AuthMode::Password),
            _ => Some(AuthMode::Token),
        }
    }

    /// Whether `mode` can run: its secret is set, and "none" only on a
    /// loopback bind.
    fn auth_mode_usable(
        &mut self,
        mode: AuthMode,
        mode_key: &str,
        has_token: bool,
        has_password: bool,
        bind: Option<&BindMode>,
    ) -> bool {
        match mode {
            AuthMode::Token if !has_token => {
                self.fail(
                    "gateway.auth.token",
                    format!("{MISSING_TOKEN}; set one with: clawgate config set gateway.auth.token <token> (or pass --token-file, or set CLAWGATE_GATEWAY_TOKEN)"),
                );
                false
            }
            AuthMode::Password if !has_password => {
                self.fail(
                    "gateway.auth.password",
                    format!("{MISSING_PASSWORD}; set one with: clawgate gateway set-password (or pass --password-file, or set CLAWGATE_GATEWAY_PASSWORD)"),
                );
                false
            }
            AuthMode::None => match bind {
                Some(bind) if !bind.is_loopback() => {
                    let addr = bind.address();
                    self.fail(
                        mode_key,
                        format!("auth mode \"none\" is only allowed on a loopback bind, because anyone who can reach {addr} could control the gateway; use token auth or bind to loopback"),
                    );
                    false
                }
                _ => true,
            },
            _ => true,
        }
    }

    /// The effective secret of one kind, by precedence flag, flag file,
    /// environment, config file; a blank or placeholder value is refused.
    /// Problems are recorded, never with the value.
    fn secret(
        &mut self,
        flag: (&Option<Secret>, &str),
        flag_file: (&Option<PathBuf>, &str),
        env: (&Option<Secret>, &str),
        key: &str,
    ) -> Option<SecretFrom> {
        let found = self.secret_source(flag, flag_file, env, key)?;
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

    /// The first source of [`Resolver::secret`] that is set, whatever its
    /// value.
    fn secret_source(
        &mut self,
        flag: (&Option<Secret>, &str),
        flag_file: (&Option<PathBuf>, &str),
        env: (&Option<Secret>, &str),
        key: &str,
    ) -> Option<SecretFrom> {
        if let Some(s) = flag.0 {
            return Some(SecretFrom {
                secret: s.clone(),
                origin: flag.1.to_string(),
            });
        }
        if let Some(path) = flag_file.0 {
            return match std::fs::read_to_string(path) {
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
                    None
                }
            };
        }
        if let Some(s) = env.0 {
            return Some(SecretFrom {
                secret: s.clone(),
                origin: env.1.to_string(),
            });
        }
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
                None
            }
        }
    }
}
