//! The `Origin` and `Host` rules: which browser origins may connect, and
//! which host names the gateway answers to (against DNS rebinding). Pure
//! functions of the request's headers and the configuration.

use std::net::IpAddr;

use clawgate_protocol::catalogue::OriginRefusal;

use crate::config::{GatewayConfig, normalize_host_name, normalize_origin};
use crate::session::PeerContext;

/// Checks an `Origin` header. Allowed: an origin listed in
/// `gateway.controlUi.allowedOrigins` (or `*`), the gateway's own origin
/// (same host as the request's `Host`), or any loopback origin when the
/// peer itself is direct loopback.
pub fn check_origin(
    origin: &str,
    peer: &PeerContext,
    allowed: &[String],
) -> Result<(), OriginRefusal> {
    // The same normaliser as `gateway.controlUi.allowedOrigins`, so a
    // configured origin and a header always compare alike.
    let Some(normalized) = normalize_origin(origin.trim()).filter(|o| o != "*") else {
        return Err(OriginRefusal::MissingOrInvalid);
    };
    if allowed.iter().any(|a| a == "*" || *a == normalized) {
        return Ok(());
    }
    let (scheme, authority) = normalized.split_once("://").unwrap_or(("", ""));
    // The gateway's own origin: same scheme, the request's Host.
    if let Some(host) = &peer.host
        && normalize_origin(&format!("{scheme}://{host}")).as_ref() == Some(&normalized)
    {
        return Ok(());
    }
    if peer.direct_local && is_loopback_host(host_without_port(authority)) {
        return Ok(());
    }
    Err(OriginRefusal::NotAllowed)
}

/// Whether the gateway answers a request carrying `Host: host`.
///
/// DNS rebinding: a page on `http://attacker.example:18789` whose name the
/// attacker re-points at 127.0.0.1 is, for the browser, same-origin with a
/// loopback gateway on that port, so the `Origin` check alone passes; only
/// the `Host` header gives it away. A loopback-bound gateway therefore
/// answers only loopback names (`localhost`, `127.0.0.0/8`, `[::1]`) and the
/// names in `gateway.allowedHosts`. On any other bind the check applies
/// once `gateway.allowedHosts` is set (listed names, loopback names and IP
/// addresses: an IP address cannot be re-pointed). `"*"` turns it off. A
/// request without `Host` (HTTP/1.0; never a browser) is answered.
pub fn host_allowed(config: &GatewayConfig, host: Option<&str>) -> bool {
    let Some(host) = host else {
        return true;
    };
    let allowed = &config.allowed_hosts;
    if allowed.iter().any(|h| h == "*") {
        return true;
    }
    let Some(name) = normalize_host_name(host_without_port(host.trim())) else {
        return false;
    };
    if is_loopback_host(&name) || allowed.contains(&name) {
        return true;
    }
    if config.bind.is_loopback() {
        return false;
    }
    allowed.is_empty() || name.parse::<IpAddr>().is_ok()
}

fn host_without_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// Whether a host name is a loopback name or address, parsed strictly:
/// `localhost`, `127.0.0.0/8`, `::1`; not `127.evil.com`.
pub fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    // Strict on purpose: an IPv4-mapped name (`[::ffff:7f00:1]`) is a
    // look-alike here, unlike a mapped peer address (`session::is_loopback`).
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(local: bool, host: Option<&str>) -> PeerContext {
        PeerContext {
            ip: if local {
                IpAddr::from([127, 0, 0, 1])
            } else {
                IpAddr::from([10, 0, 0, 5])
            },
            direct_local: local,
            origin: None,
            host: host.map(str::to_owned),
            proxy: Default::default(),
        }
    }

    #[test]
    fn host_rules() {
        use crate::config::{AuthConfig, AuthMode, BindMode};
        let mut cfg =
            GatewayConfig::loopback("/tmp/x", AuthConfig::new(AuthMode::None, None, None));
        for ok in [
            None,
            Some("127.0.0.1:18789"),
            Some("localhost:18789"),
            Some("LOCALHOST"),
            Some("localhost."),
            Some("[::1]:18789"),
            Some("127.1.2.3"),
        ] {
            assert!(host_allowed(&cfg, ok), "{ok:?}");
        }
        for bad in [
            "evil.example:18789",
            "attacker.com",
            "127.0.0.1.evil.example",
            "localhost.evil.example:18789",
            "10.0.0.5:18789",
            "",
            "evil example",
        ] {
            assert!(!host_allowed(&cfg, Some(bad)), "{bad}");
        }
        cfg.allowed_hosts = vec!["gw.example".into()];
        assert!(host_allowed(&cfg, Some("GW.example:18789")));
        assert!(!host_allowed(&cfg, Some("evil.example")));
        cfg.allowed_hosts = vec!["*".into()];
        assert!(host_allowed(&cfg, Some("evil.example")));
        // LAN bind: no list, no check; with a list, names must be listed.
        cfg.bind = BindMode::Lan;
        cfg.allowed_hosts = vec![];
        assert!(host_allowed(&cfg, Some("whatever.local:18789")));
        cfg.allowed_hosts = vec!["gw.example".into()];
        assert!(host_allowed(&cfg, Some("192.168.1.5:18789")));
        assert!(host_allowed(&cfg, Some("gw.example")));
        assert!(!host_allowed(&cfg, Some("evil.example")));
    }

    #[test]
    fn origin_rules() {
        let none: Vec<String> = vec![];
        assert!(check_origin("http://localhost:1", &peer(true, None), &none).is_ok());
        assert!(check_origin("http://127.0.0.1:18789", &peer(true, None), &none).is_ok());
        assert!(check_origin("http://[::1]:5", &peer(true, None), &none).is_ok());
        assert_eq!(
            check_origin("http://127.evil.com", &peer(true, None), &none),
            Err(OriginRefusal::NotAllowed)
        );
        assert_eq!(
            check_origin("http://evil.example", &peer(true, None), &none),
            Err(OriginRefusal::NotAllowed)
        );
        assert_eq!(
            check_origin("null", &peer(true, None), &none),
            Err(OriginRefusal::MissingOrInvalid)
        );
        assert_eq!(
            check_origin("http://localhost:1", &peer(false, None), &none),
            Err(OriginRefusal::NotAllowed)
        );
        assert!(
            check_origin(
                "https://gw.example:8443",
                &peer(false, Some("gw.example:8443")),
                &none
            )
            .is_ok()
        );
        let allowed = vec!["https://ui.example".to_string()];
        assert!(check_origin("https://UI.example/", &peer(false, None), &allowed).is_ok());
    }
}
