//! The clawgate gateway: one port serving HTTP (`/healthz`, `/readyz`,
//! `/metrics`, the Control UI) and the OpenClaw WebSocket protocol.
//!
//! Rooms, each with one job; imports run one way (a room imports only
//! rooms listed below it):
//!
//! - `server`: [`Gateway`] (bind, serve, shutdown) and the background loops;
//! - `http`: accept loop, caps, Host check, upgrade, Control UI;
//! - `ws`: one handler per connection: challenge, connect, session loop;
//! - `rpc`: the method table and one file per method family;
//! - `auth`: the connect decision (secret, device proof, tokens, pairing);
//! - `views`: store records as clients see them;
//! - `state`: [`GatewayState`] and its parts (hub, limiter, slots, ...);
//! - `upstream`: fronting mode: the OpenClaw gateway clients are relayed
//!   to, clawgate's identity there, the relay's method policy;
//! - `tls`: https:// and wss:// on the gateway's port (`gateway.tls`): the
//!   certificate from files or self-signed, reloads, its pins;
//! - `config`: the configuration file, its resolution and first run;
//! - `notify`: the service manager's readiness protocol (`sd_notify`);
//! - `session`: who is on the other end, and the clock.
//!
//! A connect flows `http::routes` (upgrade, caps) -> `ws::handler`
//! (challenge, first-frame rules) -> `auth::connect` (limiter, shared
//! secret, device proof, device token, pairing, token issue) ->
//! `ws::hello` -> the session loop -> `rpc` for each request.

pub mod auth;
pub mod config;
pub mod http;
pub mod notify;
pub mod password;
mod replica;
pub mod rpc;
mod server;
pub mod session;
pub mod state;
pub mod tls;
pub mod upstream;
pub mod views;
pub mod ws;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::GatewayConfig;
pub use server::{Gateway, GatewayHandle};
pub use state::{GatewayState, RuntimeOptions};

/// clawgate's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The OpenClaw release whose wire behaviour clawgate follows; reported as
/// `server.version` so clients that gate features on it keep working.
pub const COMPAT_VERSION: &str = "2026.9.6";
/// Events this gateway emits (`hello-ok.features.events`).
pub const EVENTS: &[&str] = &[
    "connect.challenge",
    "tick",
    "presence",
    "shutdown",
    "device.pair.requested",
    "device.pair.resolved",
    "device.pair.changed",
];
