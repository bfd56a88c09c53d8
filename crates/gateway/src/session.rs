//! Who is on the other end of a socket, and the clock. A leaf: imports
//! nothing else of the crate, so every room can use it.
//!
//! - [`PeerContext`]: facts about the peer fixed at upgrade time (address,
//!   whether it is a direct loopback peer, `Origin`, `Host`).
//! - [`Caller`]: an authenticated session as the method handlers see it.
//! - [`now_ms`]: wall-clock milliseconds, the unit of every stored time.
//! - [`is_loopback`]: loopback including the IPv4-mapped form.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use clawgate_protocol::connect::Role;

/// Facts about the peer, fixed at upgrade time.
#[derive(Debug, Clone)]
pub struct PeerContext {
    /// The client's address (the TCP peer, or the forwarded client address
    /// when the peer is a trusted proxy).
    pub ip: IpAddr,
    /// TCP peer is loopback and no forwarding headers were present.
    pub direct_local: bool,
    /// The upgrade's `Origin` header, if any.
    pub origin: Option<String>,
    /// The upgrade's `Host` header, if any.
    pub host: Option<String>,
    /// `gateway.auth.mode = "trusted-proxy"`: what the upgrade's proxy
    /// headers (and the proxy's signed assertion) established.
    pub proxy: ProxyAuth,
}

/// The trusted-proxy verdict on an upgrade request, decided before the
/// socket is upgraded (headers and the assertion are only there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProxyAuth {
    /// Not in trusted-proxy mode.
    #[default]
    NotApplicable,
    /// A trusted proxy vouched for `user` (and its assertion verified, when
    /// `gateway.auth.trustedProxy.jwt` is set).
    Verified {
        user: String,
        /// `x-openclaw-scopes`: a cap on the session's (and an auto-approved
        /// device's) scopes; `Some(empty)` when the header is present but
        /// empty.
        scopes_cap: Option<Vec<String>>,
    },
    /// Refused: the reason (`trusted_proxy_*`) and, for clawgate's own
    /// reasons, a message that says what to fix.
    Refused {
        reason: String,
        message: Option<String>,
    },
}

/// The session a request comes from.
#[derive(Debug, Clone)]
pub struct Caller {
    pub role: Role,
    pub scopes: Vec<String>,
    /// The caller's device, when it authenticated with a device token (the
    /// reference's "device session": it may manage only its own device
    /// unless it holds `operator.admin`).
    pub device_id: Option<String>,
    pub conn_id: String,
    pub ip: IpAddr,
    /// The connection's `Origin` header (browsers), already checked at
    /// connect: the origin a passkey registration must come from.
    pub origin: Option<String>,
}

impl Caller {
    /// Holds `operator.admin`.
    pub fn is_admin(&self) -> bool {
        self.scopes
            .iter()
            .any(|s| s == clawgate_protocol::scopes::ADMIN)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whether `ip` is a loopback address, the IPv4-mapped form
/// (`::ffff:127.0.0.1`) included.
pub use clawgate_protocol::is_loopback_ip as is_loopback;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv4_loopback_is_loopback() {
        for ip in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.1", "::ffff:10.0.0.1", "::2", "203.0.113.5"] {
            assert!(!is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }
}
