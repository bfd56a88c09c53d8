//! What integration tests (and the benches and fuzzers) may look at
//! inside a running gateway, without reaching into its fields. Compiled
//! only with the `testkit` feature, which the crate's own dev-dependency
//! and the test crates turn on; the shipped binary does not have it.

use clawgate_store::Store;

use crate::state::GatewayState;

/// The device registry and audit log, for reading what a test did.
pub fn store(state: &GatewayState) -> &Store {
    &state.store
}

/// Upgraded sockets that have not authenticated yet, in total.
pub fn unauth_sockets(state: &GatewayState) -> usize {
    state.unauth.total()
}

/// Unauthenticated sockets held by one address (IPv6: its /64).
pub fn unauth_sockets_of(state: &GatewayState, ip: std::net::IpAddr) -> usize {
    state.unauth.held_by(ip)
}

/// Connections still in the HTTP phase, in total.
pub fn pending_http(state: &GatewayState) -> usize {
    state.pending_http.total()
}

/// Connections in the HTTP phase held by one address.
pub fn pending_http_of(state: &GatewayState, ip: std::net::IpAddr) -> usize {
    state.pending_http.held_by(ip)
}

/// Authenticated sessions.
pub fn sessions(state: &GatewayState) -> usize {
    state.hub.len()
}

/// Sockets open (authenticated or not).
pub fn open_connections(state: &GatewayState) -> i64 {
    state.metrics.connections_open()
}

/// `/metrics` as the endpoint renders it.
pub fn metrics_text(state: &GatewayState) -> String {
    state.metrics.render()
}

/// The Control UI's build id (`<html data-build-id>`, ETags).
pub fn control_ui_build_id() -> String {
    crate::http::control_ui::build_id()
}

/// Shared secrets compared (or password hashes verified) so far.
pub fn shared_evaluations(state: &GatewayState) -> u64 {
    state.metrics.shared_evaluations()
}

/// Whether the gateway is in the under-attack state now.
pub fn under_attack(state: &GatewayState) -> bool {
    state
        .limiter
        .attack_status(std::time::Instant::now())
        .active
}

/// Password verifications that may be under way at once (running plus
/// queued): how far past the global budget evaluations can go when an
/// episode starts.
pub fn password_pool_capacity(state: &GatewayState) -> usize {
    state.passwords.capacity()
}
