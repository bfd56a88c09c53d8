//! `gateway.auth.mode = "trusted-proxy"`: the reference's header rules, in
//! its order (untrusted source, loopback source, required headers, user
//! header, `allowUsers`), clawgate's checks on the header values
//! themselves (one value, visible ASCII, bounded), the `x-openclaw-scopes`
//! cap, and the per-identity scope grants. The assertion check
//! (`proxy_jwt.rs`) runs between the user header and `allowUsers` when
//! `gateway.auth.trustedProxy.jwt` is set; fetching its keys is `http`'s.
//! Values in, values out.

use std::net::IpAddr;

use axum::http::HeaderMap;
use clawgate_protocol::scopes;

use crate::config::{AuthConfig, TrustedProxyConfig};
use crate::session::{ProxyAuth, is_loopback};

/// The longest user identity accepted from a header or a claim.
pub const MAX_USER_LEN: usize = 512;
/// The longest assertion accepted (Cloudflare's are about 1 KiB).
pub const MAX_ASSERTION_LEN: usize = 16 * 1024;
/// The scopes header a proxy may send to narrow a session.
pub const SCOPES_HEADER: &str = "x-openclaw-scopes";

/// A refusal, as [`ProxyAuth::Refused`].
pub fn refused(reason: impl Into<String>, message: Option<String>) -> ProxyAuth {
    ProxyAuth::Refused {
        reason: reason.into(),
        message,
    }
}

/// What the headers alone established: the user the proxy names, the
/// assertion when one is to be verified, and the scopes cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderIdentity {
    pub user: String,
    pub assertion: Option<String>,
    pub scopes_cap: Option<Vec<String>>,
}

/// The single value of header `name`: `Ok(None)` when absent or blank,
/// `Err(reason)` when repeated, not visible ASCII, or longer than `max`.
fn single_value(headers: &HeaderMap, name: &str, max: usize) -> Result<Option<String>, String> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("duplicated".into());
    }
    let Ok(text) = first.to_str() else {
        return Err("malformed".into());
    };
    let text = text.trim();
    if text.len() > max {
        return Err("too_long".into());
    }
    Ok((!text.is_empty()).then(|| text.to_string()))
}

fn header_problem(which: &str, name: &str, problem: &str) -> ProxyAuth {
    let what = match problem {
        "duplicated" => "was sent more than once",
        "malformed" => "is not visible ASCII text",
        _ => "is too long",
    };
    refused(
        format!("trusted_proxy_{which}_header_{problem}"),
        Some(format!(
            "unauthorized: trusted proxy header {name} {what} (make the proxy overwrite it with exactly one value)"
        )),
    )
}

/// The reference's header rules. `trusted`: the TCP peer is in
/// `gateway.trustedProxies`; `local_interface`: whether a non-loopback
/// peer is one of this host's own addresses (`None`: unknown).
pub fn check_headers(
    cfg: &TrustedProxyConfig,
    trusted: bool,
    tcp_peer: IpAddr,
    local_interface: Option<bool>,
    headers: &HeaderMap,
) -> Result<HeaderIdentity, ProxyAuth> {
    if !trusted {
        return Err(refused("trusted_proxy_untrusted_source", None));
    }
    if is_loopback(tcp_peer) {
        if !cfg.allow_loopback {
            return Err(refused("trusted_proxy_loopback_source", None));
        }
    } else {
        // A spoofing guard: traffic from this host's own (non-loopback)
        // address is another local process, not the proxy.
        match local_interface {
            None => return Err(refused("trusted_proxy_local_interface_check_failed", None)),
            Some(true) => return Err(refused("trusted_proxy_local_interface_source", None)),
            Some(false) => {}
        }
    }
    for name in &cfg.required_headers {
        match single_value(headers, name, 8 * 1024) {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(refused(
                    format!("trusted_proxy_missing_header_{name}"),
                    None,
                ));
            }
            Err(problem) => return Err(header_problem("required", name, &problem)),
        }
    }
    let user = match single_value(headers, &cfg.user_header, MAX_USER_LEN) {
        Ok(Some(u)) => u,
        Ok(None) => return Err(refused("trusted_proxy_user_missing", None)),
        Err(problem) => return Err(header_problem("user", &cfg.user_header, &problem)),
    };
    let assertion = match &cfg.jwt {
        None => None,
        Some(jwt) => match single_value(headers, &jwt.header, MAX_ASSERTION_LEN) {
            Ok(Some(a)) => Some(a),
            Ok(None) => {
                return Err(refused(
                    "trusted_proxy_jwt_missing",
                    Some(format!(
                        "unauthorized: the proxy's signed assertion ({}) is missing (make the proxy send it on WebSocket upgrades)",
                        jwt.header
                    )),
                ));
            }
            Err(problem) => return Err(header_problem("jwt", &jwt.header, &problem)),
        },
    };
    let scopes_cap = match single_value(headers, SCOPES_HEADER, 4 * 1024) {
        // Present but empty: no scopes at all.
        Ok(None) if headers.contains_key(SCOPES_HEADER) => Some(Vec::new()),
        Ok(None) => None,
        Ok(Some(list)) => Some(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        Err(problem) => return Err(header_problem("scopes", SCOPES_HEADER, &problem)),
    };
    Ok(HeaderIdentity {
        user,
        assertion,
        scopes_cap,
    })
}

/// The last rule: `allowUsers` (exact match), then the verdict.
pub fn admit(cfg: &TrustedProxyConfig, user: String, scopes_cap: Option<Vec<String>>) -> ProxyAuth {
    if !cfg.allow_users.is_empty() && !cfg.allow_users.contains(&user) {
        return refused("trusted_proxy_user_not_allowed", None);
    }
    ProxyAuth::Verified { user, scopes_cap }
}

/// `gateway.auth.identityScopes` for `user` (emails case-insensitively).
pub fn identity_grant(auth: &AuthConfig, user: &str) -> Vec<String> {
    let key = if user.contains('@') {
        user.to_lowercase()
    } else {
        user.to_string()
    };
    auth.identity_scopes
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, s)| s.clone())
        .unwrap_or_default()
}

/// `scopes` within the proxy's cap (all of them without one). A held
/// scope that implies a capped one does not pass: the cap names scopes.
pub fn capped(scopes: Vec<String>, cap: Option<&[String]>) -> Vec<String> {
    match cap {
        None => scopes,
        Some(cap) => scopes
            .into_iter()
            .filter(|s| cap.iter().any(|c| scopes::scope_grants(c, s)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> TrustedProxyConfig {
        TrustedProxyConfig {
            user_header: "x-forwarded-user".into(),
            required_headers: vec!["x-forwarded-proto".into()],
            allow_users: vec!["nick@example.com".into()],
            allow_loopback: false,
            device_auto_approve: None,
            jwt: None,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                axum::http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        h
    }

    fn reason(r: Result<HeaderIdentity, ProxyAuth>) -> String {
        match r {
            Err(ProxyAuth::Refused { reason, .. }) => reason,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn the_reference_order() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let good = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-user", " nick@example.com "),
        ]);
        assert_eq!(
            reason(check_headers(&cfg(), false, proxy, Some(false), &good)),
            "trusted_proxy_untrusted_source"
        );
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            reason(check_headers(&cfg(), true, lo, Some(false), &headers(&[]))),
            "trusted_proxy_loopback_source"
        );
        assert_eq!(
            reason(check_headers(
                &cfg(),
                true,
                proxy,
                Some(false),
                &headers(&[("x-forwarded-user", "a")])
            )),
            "trusted_proxy_missing_header_x-forwarded-proto"
        );
        assert_eq!(
            reason(check_headers(
                &cfg(),
                true,
                proxy,
                Some(false),
                &headers(&[("x-forwarded-proto", "https"), ("x-forwarded-user", "  ")])
            )),
            "trusted_proxy_user_missing"
        );
        let id = check_headers(&cfg(), true, proxy, Some(false), &good).unwrap();
        assert_eq!(id.user, "nick@example.com");
        assert_eq!(
            reason(check_headers(&cfg(), true, proxy, Some(true), &good)),
            "trusted_proxy_local_interface_source"
        );
        assert_eq!(
            reason(check_headers(&cfg(), true, proxy, None, &good)),
            "trusted_proxy_local_interface_check_failed"
        );
        assert_eq!(
            admit(&cfg(), id.user, None),
            ProxyAuth::Verified {
                user: "nick@example.com".into(),
                scopes_cap: None
            }
        );
        assert!(
            matches!(admit(&cfg(), "eve@example.com".into(), None), ProxyAuth::Refused { reason, .. } if reason == "trusted_proxy_user_not_allowed")
        );
    }

    #[test]
    fn bad_header_values_are_refused_by_name() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let dup = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-user", "a"),
            ("x-forwarded-user", "b"),
        ]);
        assert_eq!(
            reason(check_headers(&cfg(), true, proxy, Some(false), &dup)),
            "trusted_proxy_user_header_duplicated"
        );
        let long = "a".repeat(MAX_USER_LEN + 1);
        let long = headers(&[("x-forwarded-proto", "https"), ("x-forwarded-user", &long)]);
        assert_eq!(
            reason(check_headers(&cfg(), true, proxy, Some(false), &long)),
            "trusted_proxy_user_header_too_long"
        );
        let mut bin = headers(&[("x-forwarded-proto", "https")]);
        bin.insert(
            "x-forwarded-user",
            axum::http::HeaderValue::from_bytes(b"n\xffck").unwrap(),
        );
        assert_eq!(
            reason(check_headers(&cfg(), true, proxy, Some(false), &bin)),
            "trusted_proxy_user_header_malformed"
        );
    }

    #[test]
    fn scopes_cap_narrows_and_empty_means_none() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let h = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-user", "a"),
            ("x-openclaw-scopes", ""),
        ]);
        assert_eq!(
            check_headers(&cfg(), true, proxy, Some(false), &h)
                .unwrap()
                .scopes_cap,
            Some(vec![])
        );
        let held = vec!["operator.read".to_string(), "operator.admin".to_string()];
        assert_eq!(
            capped(held.clone(), Some(&["operator.read".to_string()])),
            vec!["operator.read"]
        );
        assert_eq!(capped(held.clone(), None), held);
    }
}
