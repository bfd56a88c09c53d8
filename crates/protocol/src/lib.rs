//! The OpenClaw gateway protocol (v4, with the v3 window for node and probe
//! clients) as clawgate speaks it.
//!
//! This crate is pure: no I/O, no clocks; its uses of randomness are
//! [`Secret::generate`], the token generator, and
//! [`pairing_code::generate`], the short pairing codes. It owns the vocabulary every
//! other room uses: frame shapes, the closed `connect` schema, the typed
//! wire payloads ([`wire`]), the error catalogue with its recovery hints,
//! roles and scopes, and the device-auth signature payloads.

pub mod catalogue;
pub mod connect;
pub mod device_auth;
pub mod frames;
pub mod hex;
pub mod pairing_code;
pub mod schema;
pub mod scopes;
pub mod secret;
pub mod setup_code;
pub mod wire;

pub use secret::Secret;

/// Whether `ip` is a loopback address, counting the IPv4-mapped IPv6 form
/// (`::ffff:127.0.0.1`, what a dual-stack socket reports for an IPv4
/// loopback peer) as loopback too; std's `IpAddr::is_loopback` does not.
/// The one definition for peers, bind addresses and shown device addresses.
pub fn is_loopback_ip(ip: std::net::IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// The protocol version this gateway speaks (and reports in `hello-ok`).
pub const PROTOCOL_VERSION: u32 = 4;
/// Operator clients must accept protocol 4.
pub const MIN_CLIENT_PROTOCOL_VERSION: u32 = 4;
/// Node clients may still speak the legacy v3 envelope.
pub const MIN_NODE_PROTOCOL_VERSION: u32 = 3;
/// Probe clients may still speak v3.
pub const MIN_PROBE_PROTOCOL_VERSION: u32 = 3;

/// Largest frame accepted before the connection is authenticated.
pub const MAX_PREAUTH_PAYLOAD_BYTES: usize = 64 * 1024;
/// Largest frame accepted after authentication (`policy.maxPayload`).
pub const MAX_PAYLOAD_BYTES: usize = 25 * 1024 * 1024;
/// Outbound bytes a client may leave unread before it is cut off
/// (`policy.maxBufferedBytes`).
pub const MAX_BUFFERED_BYTES: usize = 50 * 1024 * 1024;
/// Interval of the `tick` keepalive event (`policy.tickIntervalMs`).
pub const TICK_INTERVAL_MS: u64 = 30_000;
/// Time a client has from the upgrade to a complete `connect`.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 15_000;
/// Frames a client may queue while its `connect` is being decided.
pub const MAX_PENDING_HANDSHAKE_FRAMES: usize = 15;
/// Close reasons are limited to this many UTF-8 bytes.
pub const MAX_CLOSE_REASON_BYTES: usize = 120;
/// Consecutive role-gated calls before the socket is closed.
pub const MAX_UNAUTHORIZED_ROLE_CALLS: u32 = 10;

/// WebSocket close codes used by the gateway.
pub mod close_code {
    /// Normal close; also the handshake timeout and an unparseable first frame.
    pub const NORMAL: u16 = 1000;
    /// Protocol version negotiation failed.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Every handshake rejection, slow consumers, repeated unauthorized calls.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// Oversize frame.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Internal failure.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// Gateway shutting down or restarting.
    pub const SERVICE_RESTART: u16 = 1012;
    /// Try again later.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// A live session was invalidated (token rotated or revoked, device
    /// removed, shared secret changed).
    pub const SESSION_INVALIDATED: u16 = 4001;
}

/// Cuts `reason` to at most [`MAX_CLOSE_REASON_BYTES`] bytes without
/// splitting a UTF-8 character, as the reference does for close reasons.
pub fn truncate_close_reason(reason: &str) -> &str {
    if reason.len() <= MAX_CLOSE_REASON_BYTES {
        return reason;
    }
    let mut end = MAX_CLOSE_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        let short = "device identity required";
        assert_eq!(truncate_close_reason(short), short);
        let long = "é".repeat(100); // 200 bytes
        let cut = truncate_close_reason(&long);
        assert_eq!(cut.len(), 120);
        assert!(cut.chars().all(|c| c == 'é'));
        let odd = format!("a{}", "é".repeat(100));
        assert_eq!(truncate_close_reason(&odd).len(), 119);
    }
}
