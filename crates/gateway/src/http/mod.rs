//! The HTTP side of the port: the accept loop and its limits
//! (`accept.rs`), the routes and the WebSocket upgrade (`routes.rs`),
//! response and forwarding headers (`headers.rs`), the Control UI
//! (`control_ui.rs`), and in fronting mode the allowlisted reverse proxy
//! to the upstream's Control UI and capability paths (`proxy.rs`); in
//! trusted-proxy mode the upgrade's proxy verdict and the proxy's key set
//! (`jwks.rs`); the pre-auth passkey sign-in endpoints (`passkeys.rs`). Before
//! a socket gets a handshake: the Host check, forwarding headers only from
//! trusted proxies, per-IP and global caps on unauthenticated sockets.
//!
//! The outermost room: imports `ws`, `auth`, `state`, `session`,
//! `upstream`; nothing imports it but the server.

mod accept;
pub mod control_ui;
mod headers;
mod jwks;
mod local_addrs;
mod passkeys;
mod proxy;
mod routes;
pub(crate) mod upgrade;

pub use accept::{LISTEN_BACKLOG, bind, serve_http};
