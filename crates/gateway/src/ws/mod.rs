//! The WebSocket protocol on an upgraded socket: one [`handler`] per
//! connection (challenge -> first frame -> connect -> authenticated loop),
//! `hello.rs` building `hello-ok`, `connection.rs` hiding the framing and
//! `preauth_io.rs` enforcing the pre-auth frame cap under the codec.
//!
//! In fronting mode, `relay.rs` is the session loop instead: frames move
//! between the client and its own upstream socket (`upstream::link`).
//!
//! Imports `auth` (the decision), `rpc` (requests), `upstream`, `state`,
//! `session`; never `http`.

mod connection;
mod handler;
mod hello;
pub mod preauth_io;
mod relay;

pub use connection::ReadReady;
pub use handler::serve;
