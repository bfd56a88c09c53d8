//! Connect-time authentication: decisions as values, no socket I/O.
//!
//! - `connect.rs`: [`authenticate`], the whole decision in the reference's
//!   order, and its results [`Authenticated`] / [`Rejection`];
//! - `shared.rs`: the shared secret (token or password) and the limiter's
//!   verdict on it;
//! - `device_proof.rs`: the device identity's signature over the nonce;
//! - `tokens.rs`: device tokens (mint, verify, scopes);
//! - `pairing.rs`: is this device approved, silent approval, pending
//!   requests;
//! - `issue.rs`: the device token handed out in `hello-ok`;
//! - `bootstrap.rs`: setup codes (`auth.bootstrapToken`): redeem once, pair
//!   with the code's role and scopes, hand the token off;
//! - `origin.rs`: the `Origin` and `Host` rules;
//! - `trusted_proxy.rs`: `gateway.auth.mode = "trusted-proxy"`: the header
//!   rules, the scopes cap, the per-identity grants;
//! - `proxy_jwt.rs`: the proxy's signed assertion (JWKS parsing, JWS
//!   verification, the user claim);
//! - `passkey.rs`: passkeys (WebAuthn): the relying party of an origin,
//!   the ceremonies' options, strict parsing, verification;
//! - `passkey_signin.rs`: a verified passkey sign-in's one transaction
//!   (approve the browser's device with the passkey's scopes, mint its
//!   token) and the refusals' bookkeeping.
//!
//! Imports: `session`, `config`, `state`; never `ws`, `http` or `rpc`.

mod bootstrap;
pub mod connect;
pub mod device_proof;
mod issue;
pub mod origin;
pub mod pairing;
pub mod passkey;
pub mod passkey_signin;
pub mod proxy_jwt;
pub mod shared;
pub mod tokens;
pub mod trusted_proxy;

pub use connect::{Authenticated, Rejection, authenticate};
pub use origin::{check_origin, host_allowed, is_loopback_host};
