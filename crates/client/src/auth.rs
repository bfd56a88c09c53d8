//! Which credentials a connect attempt sends (clients.md 1.2): explicit
//! shared token or password, then an explicit device token, then the cached
//! device token, then a bootstrap token.

use clawgate_protocol::Secret;

/// The inputs of one attempt.
#[derive(Debug, Default, Clone, Copy)]
pub struct AuthInputs<'a> {
    pub token: Option<&'a Secret>,
    pub password: Option<&'a Secret>,
    pub device_token: Option<&'a Secret>,
    pub bootstrap_token: Option<&'a Secret>,
    pub prefer_bootstrap_token: bool,
    /// The cached device token for (gateway, device, role) and its scopes.
    pub stored: Option<(&'a Secret, &'a [String])>,
    /// The one device-token retry is due and the endpoint is trusted.
    pub retry_with_stored: bool,
    /// Scopes the caller asked for.
    pub scopes: Option<&'a [String]>,
}

/// What to send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthPlan {
    pub token: Option<String>,
    pub password: Option<String>,
    pub device_token: Option<String>,
    pub bootstrap_token: Option<String>,
    /// The token slot of the signed device payload ("" when none).
    pub signature_token: String,
    pub scopes: Vec<String>,
    /// The device token sent is the cached one.
    pub used_stored: bool,
}

/// The library's default scopes when neither the caller nor a cached token
/// says otherwise.
pub const DEFAULT_SCOPES: &[&str] = &["operator.admin"];

/// Assembles the credentials for one attempt.
pub fn select(i: &AuthInputs<'_>) -> AuthPlan {
    let expose = |s: Option<&Secret>| {
        s.map(|s| s.expose().to_string())
            .filter(|s| !s.trim().is_empty())
    };
    let token = expose(i.token);
    let password = expose(i.password);
    let explicit_device = expose(i.device_token);
    let bootstrap = expose(i.bootstrap_token);
    let stored = i
        .stored
        .filter(|(t, _)| !t.expose().is_empty())
        .map(|(t, s)| (t.expose().to_string(), s));

    if i.prefer_bootstrap_token
        && let Some(b) = bootstrap.clone()
    {
        return AuthPlan {
            signature_token: b.clone(),
            bootstrap_token: Some(b),
            scopes: scopes_or_default(i.scopes, None),
            ..AuthPlan::default()
        };
    }

    let mut plan = AuthPlan {
        token: token.clone(),
        password: password.clone(),
        ..AuthPlan::default()
    };
    let mut stored_scopes = None;
    if let Some(d) = explicit_device {
        plan.device_token = Some(d);
    } else if let Some((t, s)) = &stored {
        let retry = i.retry_with_stored && token.is_some();
        let stored_only = token.is_none() && password.is_none();
        if retry || stored_only {
            plan.device_token = Some(t.clone());
            plan.used_stored = true;
            stored_scopes = Some(*s);
        }
    }
    if token.is_none() && password.is_none() && plan.device_token.is_none() {
        plan.bootstrap_token = bootstrap;
    }
    plan.signature_token = token
        .or_else(|| plan.device_token.clone())
        .or_else(|| plan.bootstrap_token.clone())
        .unwrap_or_default();
    plan.scopes = scopes_or_default(i.scopes, stored_scopes);
    plan
}

fn scopes_or_default(explicit: Option<&[String]>, stored: Option<&[String]>) -> Vec<String> {
    explicit
        .or(stored)
        .map(<[String]>::to_vec)
        .unwrap_or_else(|| DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Secret {
        Secret::new(v)
    }

    #[test]
    fn precedence_follows_the_reference() {
        let shared = s("shared");
        let pw = s("pw");
        let dev = s("explicit-dev");
        let boot = s("boot");
        let cached = s("cached");
        let cached_scopes = vec!["operator.read".to_string()];
        let stored = Some((&cached, &cached_scopes[..]));

        // Shared token alone: no device token, default scopes.
        let p = select(&AuthInputs {
            token: Some(&shared),
            stored,
            ..Default::default()
        });
        assert_eq!(p.token.as_deref(), Some("shared"));
        assert_eq!(p.device_token, None);
        assert_eq!(p.signature_token, "shared");
        assert_eq!(p.scopes, vec!["operator.admin"]);
        assert!(!p.used_stored);

        // The retry sends both, with the cached token's scopes.
        let p = select(&AuthInputs {
            token: Some(&shared),
            stored,
            retry_with_stored: true,
            ..Default::default()
        });
        assert_eq!(p.token.as_deref(), Some("shared"));
        assert_eq!(p.device_token.as_deref(), Some("cached"));
        assert_eq!(p.signature_token, "shared");
        assert_eq!(p.scopes, cached_scopes);
        assert!(p.used_stored);

        // Explicit scopes win over cached ones.
        let mine = vec!["operator.pairing".to_string()];
        let p = select(&AuthInputs {
            token: Some(&shared),
            stored,
            retry_with_stored: true,
            scopes: Some(&mine),
            ..Default::default()
        });
        assert_eq!(p.scopes, mine);

        // Password clients never use the cached token alongside.
        let p = select(&AuthInputs {
            password: Some(&pw),
            stored,
            retry_with_stored: true,
            ..Default::default()
        });
        assert_eq!(p.device_token, None);
        assert_eq!(p.signature_token, "");

        // No shared secret: the cached token, signed with it.
        let p = select(&AuthInputs {
            stored,
            bootstrap_token: Some(&boot),
            ..Default::default()
        });
        assert_eq!(p.device_token.as_deref(), Some("cached"));
        assert_eq!(p.bootstrap_token, None);
        assert_eq!(p.signature_token, "cached");

        // An explicit device token beats the cached one.
        let p = select(&AuthInputs {
            device_token: Some(&dev),
            stored,
            ..Default::default()
        });
        assert_eq!(p.device_token.as_deref(), Some("explicit-dev"));
        assert!(!p.used_stored);

        // Nothing else: the bootstrap token.
        let p = select(&AuthInputs {
            bootstrap_token: Some(&boot),
            ..Default::default()
        });
        assert_eq!(p.bootstrap_token.as_deref(), Some("boot"));
        assert_eq!(p.signature_token, "boot");

        // Preferring the bootstrap token sends it alone.
        let p = select(&AuthInputs {
            token: Some(&shared),
            bootstrap_token: Some(&boot),
            prefer_bootstrap_token: true,
            ..Default::default()
        });
        assert_eq!(p.token, None);
        assert_eq!(p.bootstrap_token.as_deref(), Some("boot"));
    }
}
