//! The WebSocket protocol on an upgraded socket: one [`handler`] per
//! connection (challenge -> first frame -> connect -> authenticated loop),
//! `hello.rs` building `hello-ok`, `connection.rs` hiding the framing and
//! `preauth_io.rs` enforcing the pre-auth frame cap under the codec.
//!
//! Imports `auth` (the decision), `rpc` (requests), `state`, `session`;
//! never `http`.

mod connection;
mod handler;
mod hello;
pub mod preauth_io;

pub use handler::serve;
