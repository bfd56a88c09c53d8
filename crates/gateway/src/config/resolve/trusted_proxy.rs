//! `gateway.auth.trustedProxy.*` and `gateway.auth.identityScopes`: the
//! reference's trusted-proxy keys, and clawgate's `jwt` block that makes
//! the proxy's signed assertion, not the bare header, the identity.

use std::collections::HashSet;

use clawgate_protocol::scopes;
use serde_json::Value;

use super::Resolver;
use crate::config::describe::{describe_kind, describe_value};
use crate::config::types::{
    AutoApprove, DEFAULT_AUTO_APPROVE_SCOPES, JwksSource, JwtConfig, TrustedProxyConfig,
};

const TP: &str = "gateway.auth.trustedProxy";

/// Asymmetric JWS algorithms an assertion may use. `none` and the HMAC
/// family are never accepted: the keys come from a public JWKS.
const JWT_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Most seconds of clock skew `jwt.clockSkewSeconds` may allow.
const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// Whether `name` is a usable HTTP header name (RFC 9110 token).
fn header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Resolver<'_> {
    /// `gateway.auth.trustedProxy` for mode `trusted-proxy` (`None` with
    /// the problems recorded when it is missing or wrong).
    pub(super) fn trusted_proxy(&mut self) -> Option<TrustedProxyConfig> {
        let Some(section) = self.value(TP) else {
            self.fail(
                TP,
                format!("gateway.auth.mode is trusted-proxy but {TP} is not set; set at least the identity header with: clawgate config set {TP}.userHeader x-forwarded-user"),
            );
            return None;
        };
        if !section.is_object() {
            return None; // reported by check_sections
        }
        let errors_before = self.errors.len();
        let user_header = self.header_name(&format!("{TP}.userHeader"), true);
        let required_headers = self.header_list(&format!("{TP}.requiredHeaders"));
        let allow_users = self.string_list(&format!("{TP}.allowUsers"), "\"nick@example.com\"");
        let allow_loopback = self.boolean(&format!("{TP}.allowLoopback"), false);
        let device_auto_approve = self.auto_approve();
        let jwt = self.jwt();
        if self.errors.len() > errors_before {
            return None;
        }
        Some(TrustedProxyConfig {
            user_header: user_header?,
            required_headers,
            allow_users,
            allow_loopback,
            device_auto_approve,
            jwt,
        })
    }

    /// A header name (lowercased); `required` refuses a missing one.
    fn header_name(&mut self, key: &str, required: bool) -> Option<String> {
        match self.value(key) {
            None if required => {
                self.fail(
                    key,
                    format!("trusted-proxy auth needs the header that carries the user; set it with: clawgate config set {key} x-forwarded-user"),
                );
                None
            }
            None => None,
            Some(Value::String(s)) if header_name_ok(s.trim()) => {
                Some(s.trim().to_ascii_lowercase())
            }
            Some(other) => {
                let found = describe_value(other);
                self.fail(
                    key,
                    format!("must be an HTTP header name such as \"x-forwarded-user\" (found {found}); fix it with: clawgate config set {key} x-forwarded-user"),
                );
                None
            }
        }
    }

    fn header_list(&mut self, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        match self.value(key).cloned() {
            None => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_str().map(str::trim).filter(|s| header_name_ok(s)) {
                        Some(h) => {
                            let h = h.to_ascii_lowercase();
                            if !out.contains(&h) {
                                out.push(h);
                            }
                        }
                        None => {
                            let found = describe_value(item);
                            self.fail(
                                format!("{key}[{i}]"),
                                format!("must be an HTTP header name such as \"x-forwarded-proto\" (found {found}); fix it with: clawgate config set {key} '[\"x-forwarded-proto\"]'"),
                            );
                        }
                    }
                }
            }
            Some(other) => {
                let kind = describe_kind(&other);
                self.fail(
                    key,
                    format!("must be an array of header names but is {kind}; fix it with: clawgate config set {key} '[\"x-forwarded-proto\"]'"),
                );
            }
        }
        out
    }

    /// An array of non-blank strings (trimmed, each once).
    fn string_list(&mut self, key: &str, example: &str) -> Vec<String> {
        let value = self.value(key).cloned();
        self.string_list_of(key, value, example)
    }

    /// [`Resolver::string_list`] of a value already read (`key` names it).
    fn string_list_of(&mut self, key: &str, value: Option<Value>, example: &str) -> Vec<String> {
        let mut out = Vec::new();
        match value {
            None => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_str().map(str::trim).filter(|s| !s.is_empty()) {
                        Some(s) => {
                            if !out.iter().any(|o| o == s) {
                                out.push(s.to_string());
                            }
                        }
                        None => {
                            let found = describe_value(item);
                            self.fail(
                                format!("{key}[{i}]"),
                                format!("must be a non-blank string (found {found}); fix it with: clawgate config set {key} '[{example}]'"),
                            );
                        }
                    }
                }
            }
            Some(other) => {
                let kind = describe_kind(&other);
                self.fail(
                    key,
                    format!("must be an array of strings but is {kind}; fix it with: clawgate config set {key} '[{example}]'"),
                );
            }
        }
        out
    }

    /// An array of operator scope names (each once).
    fn scope_list(&mut self, key: &str) -> Vec<String> {
        let value = self.value(key).cloned();
        self.scope_list_of(key, value)
    }

    fn scope_list_of(&mut self, key: &str, value: Option<Value>) -> Vec<String> {
        let list = self.string_list_of(key, value, "\"operator.read\"");
        for (i, s) in list.iter().enumerate() {
            if !scopes::is_operator_scope(s) {
                let known = scopes::OPERATOR_SCOPES.join(", ");
                self.fail(
                    format!("{key}[{i}]"),
                    format!("\"{s}\" is not an operator scope (known: {known}); fix it with: clawgate config set {key} '[\"operator.read\"]'"),
                );
            }
        }
        list
    }

    fn auto_approve(&mut self) -> Option<AutoApprove> {
        let key = format!("{TP}.deviceAutoApprove");
        if !self.boolean(&format!("{key}.enabled"), false) {
            return None;
        }
        let scopes_key = format!("{key}.scopes");
        if self.value(&scopes_key).is_some() {
            Some(AutoApprove {
                scopes: self.scope_list(&scopes_key),
                explicit: true,
            })
        } else {
            Some(AutoApprove {
                scopes: DEFAULT_AUTO_APPROVE_SCOPES
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                explicit: false,
            })
        }
    }

    /// `gateway.auth.identityScopes`: `{ "<identity>": ["<scope>", ...] }`.
    pub(super) fn identity_scopes(&mut self) -> Vec<(String, Vec<String>)> {
        let key = "gateway.auth.identityScopes";
        let Some(value) = self.value(key).cloned() else {
            return Vec::new();
        };
        let Value::Object(map) = value else {
            let kind = describe_kind(&value);
            self.fail(
                key,
                format!("must be an object mapping an identity to its scopes but is {kind}; fix it with: clawgate config set {key} '{{\"admin@example.com\": [\"operator.admin\"]}}'"),
            );
            return Vec::new();
        };
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for (identity, scopes_value) in map.iter() {
            let id = identity.trim();
            if id.is_empty() {
                self.fail(key, "has a blank identity as a key; remove it");
                continue;
            }
            // Emails match case-insensitively, other identities exactly.
            let id = if id.contains('@') {
                id.to_lowercase()
            } else {
                id.to_string()
            };
            let scopes = self.scope_list_of(
                &format!("{key}[\"{identity}\"]"),
                Some(scopes_value.clone()),
            );
            if let Some(existing) = out.iter_mut().find(|(k, _)| *k == id) {
                existing.1.extend(scopes);
            } else {
                out.push((id, scopes));
            }
        }
        out
    }

    fn jwt(&mut self) -> Option<JwtConfig> {
        let key = format!("{TP}.jwt");
        let section = self.value(&key)?;
        if !section.is_object() {
            let kind = describe_kind(section);
            self.fail(
                &key,
                format!("must be an object ({{ header, jwksUrl or jwksFile, issuer, audience }}) but is {kind}; fix it with: clawgate config unset {key}"),
            );
            return None;
        }
        let errors_before = self.errors.len();
        let header = self.header_name(&format!("{key}.header"), false);
        if header.is_none() && self.errors.len() == errors_before {
            self.fail(
                format!("{key}.header"),
                format!("the header that carries the proxy's assertion is not set; set it with: clawgate config set {key}.header x-pomerium-jwt-assertion (Cloudflare Access: cf-access-jwt-assertion)"),
            );
        }
        let jwks = self.jwks_source(&key);
        let issuer =
            self.required_string(&format!("{key}.issuer"), "https://authenticate.example.com");
        let audience = match self.value(&format!("{key}.audience")).cloned() {
            Some(Value::String(s)) if !s.trim().is_empty() => vec![s.trim().to_string()],
            Some(Value::Array(_)) => {
                self.string_list(&format!("{key}.audience"), "\"gateway.example.com\"")
            }
            _ => Vec::new(),
        };
        if audience.is_empty() {
            self.fail(
                format!("{key}.audience"),
                format!("the audience the assertion must be for is not set (a string or an array of strings); set it with: clawgate config set {key}.audience gateway.example.com"),
            );
        }
        let algorithms = self.algorithms(&format!("{key}.algorithms"));
        let clock_skew_secs = match self.value(&format!("{key}.clockSkewSeconds")) {
            None => 60,
            Some(v) => match v.as_u64() {
                Some(n) if n <= MAX_CLOCK_SKEW_SECS => n,
                _ => {
                    let found = describe_value(v);
                    self.fail(
                        format!("{key}.clockSkewSeconds"),
                        format!("must be a whole number of seconds from 0 to {MAX_CLOCK_SKEW_SECS} (found {found}); fix it with: clawgate config set {key}.clockSkewSeconds 60"),
                    );
                    60
                }
            },
        };
        let user_claim = match self.value(&format!("{key}.userClaim")) {
            None => "email".to_string(),
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            Some(other) => {
                let found = describe_value(other);
                self.fail(
                    format!("{key}.userClaim"),
                    format!("must be the name of a claim such as \"email\" or \"sub\" (found {found}); fix it with: clawgate config set {key}.userClaim email"),
                );
                String::new()
            }
        };
        if self.errors.len() > errors_before {
            return None;
        }
        Some(JwtConfig {
            header: header?,
            jwks: jwks?,
            issuer: issuer?,
            audience,
            algorithms,
            clock_skew_secs,
            user_claim,
        })
    }

    fn required_string(&mut self, key: &str, example: &str) -> Option<String> {
        match self.value(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            None => {
                self.fail(
                    key,
                    format!("is required when the assertion is verified; set it with: clawgate config set {key} {example}"),
                );
                None
            }
            Some(other) => {
                let found = describe_value(other);
                self.fail(
                    key,
                    format!("must be a non-blank string (found {found}); fix it with: clawgate config set {key} {example}"),
                );
                None
            }
        }
    }

    fn jwks_source(&mut self, jwt_key: &str) -> Option<JwksSource> {
        let url_key = format!("{jwt_key}.jwksUrl");
        let file_key = format!("{jwt_key}.jwksFile");
        let url = self.value(&url_key).cloned();
        let file = self.value(&file_key).cloned();
        match (url, file) {
            (Some(_), Some(_)) => {
                self.fail(
                    &url_key,
                    format!("is set together with {file_key}; keep one with: clawgate config unset {file_key}"),
                );
                None
            }
            (None, None) => {
                self.fail(
                    &url_key,
                    format!("the assertion's signing keys have no source; set one with: clawgate config set {url_key} https://authenticate.example.com/.well-known/pomerium/jwks.json (or set {file_key})"),
                );
                None
            }
            (Some(Value::String(u)), None) => {
                let u = u.trim();
                let scheme_ok = u.starts_with("http://") || u.starts_with("https://");
                match u.parse::<axum::http::Uri>() {
                    Ok(uri) if scheme_ok && uri.host().is_some() => {
                        Some(JwksSource::Url(u.to_string()))
                    }
                    _ => {
                        self.fail(
                            &url_key,
                            format!("must be an http:// or https:// URL with a host; fix it with: clawgate config set {url_key} https://authenticate.example.com/.well-known/pomerium/jwks.json"),
                        );
                        None
                    }
                }
            }
            (Some(other), None) => {
                let kind = describe_kind(&other);
                self.fail(
                    &url_key,
                    format!("must be a URL string but is {kind}; fix it with: clawgate config set {url_key} https://authenticate.example.com/.well-known/pomerium/jwks.json"),
                );
                None
            }
            (None, Some(_)) => self.path(&file_key).map(JwksSource::File),
        }
    }

    fn algorithms(&mut self, key: &str) -> Vec<String> {
        if self.value(key).is_none() {
            return vec!["RS256".into(), "ES256".into()];
        }
        let list = self.string_list(key, "\"RS256\"");
        for (i, alg) in list.iter().enumerate() {
            if !JWT_ALGORITHMS.contains(&alg.as_str()) {
                let why = if alg.eq_ignore_ascii_case("none") {
                    "\"none\" would accept unsigned assertions".to_string()
                } else if alg.to_ascii_uppercase().starts_with("HS") {
                    format!("\"{alg}\" is an HMAC algorithm, whose key would be the public JWKS")
                } else {
                    format!("\"{alg}\" is not a supported algorithm")
                };
                self.fail(
                    format!("{key}[{i}]"),
                    format!(
                        "{why}; use one of {}: clawgate config set {key} '[\"RS256\"]'",
                        JWT_ALGORITHMS.join(", ")
                    ),
                );
            }
        }
        if list.is_empty() {
            self.fail(
                key,
                format!("is empty, so no assertion could ever pass; fix it with: clawgate config set {key} '[\"RS256\"]'"),
            );
        }
        let mut seen = HashSet::new();
        list.into_iter()
            .filter(|a| seen.insert(a.clone()))
            .collect()
    }
}
