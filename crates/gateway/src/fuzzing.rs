//! Entry points for the cargo-fuzz targets in `fuzz/` (feature
//! `fuzzing`). Not a stable API: everything here forwards to the code the
//! gateway itself runs, so the fuzzers exercise the real parsers and
//! decisions rather than copies.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::session::PeerContext;
use crate::state::GatewayState;
pub use crate::ws::ReadReady;

/// What the accept loop made of a connection's first bytes (see
/// [`first_request`]).
#[derive(Debug)]
pub enum FirstRequest {
    /// An upgrade taken without hyper: the `101` it sends and the bytes
    /// read after the head.
    Upgrade { response: Vec<u8>, rest: Vec<u8> },
    /// Left to hyper, with every byte read so far.
    Hyper(Vec<u8>),
    /// The stream ended before a whole head.
    Closed,
    /// A read failed.
    Error,
}

/// The first request head read off `io` by the accept loop's own reader
/// (`http/upgrade.rs`), for a loopback peer.
pub async fn first_request<S: AsyncRead + Unpin>(state: &GatewayState, io: &mut S) -> FirstRequest {
    use crate::http::upgrade::{self, FirstRequest as Read};
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40_000));
    match upgrade::first_request(state, peer, io).await {
        Ok(Read::Upgrade { response, rest, .. }) => FirstRequest::Upgrade { response, rest },
        Ok(Read::Hyper(read)) => FirstRequest::Hyper(read),
        Ok(Read::Closed) => FirstRequest::Closed,
        Err(_) => FirstRequest::Error,
    }
}

/// Serves one already-upgraded connection over `io` with the real
/// connection code (challenge, pre-auth frame cap, first-frame rules,
/// `auth::authenticate`, `hello-ok`, the request loop) until the stream
/// ends, holding an unauthenticated-socket slot as the listener does.
/// Returns `false` when the per-IP or global slot cap refused the socket.
pub async fn serve_connection<S>(state: Arc<GatewayState>, io: S, peer: PeerContext) -> bool
where
    S: AsyncRead + AsyncWrite + crate::ws::ReadReady + Unpin + Send + 'static,
{
    let Ok(slot) = state.acquire_unauth(peer.ip) else {
        return false;
    };
    crate::ws::serve(state, io, peer, slot, Vec::new()).await;
    true
}

/// The proxy's signed assertion as `gateway.auth.trustedProxy.jwt`
/// checks it: [`crate::auth::proxy_jwt::check_bytes`] (the JOSE header,
/// the JWKS document, the signature, issuer, audience, times and the user
/// claim) under a fixed configuration that allows every asymmetric
/// algorithm, issuer `https://issuer.fuzz`, audience `fuzz-aud`, user
/// claim `email`; then the same bytes as the identity and assertion
/// headers of a trusted proxy ([`crate::auth::trusted_proxy::check_headers`]).
/// Returns the verified user or the refusal's `authReason`.
pub fn proxy_jwt(token: &[u8], jwks: &[u8]) -> Result<String, String> {
    use crate::auth::{proxy_jwt, trusted_proxy};
    use crate::config::{JwksSource, JwtConfig, TrustedProxyConfig};
    let cfg = JwtConfig {
        header: "x-pomerium-jwt-assertion".into(),
        jwks: JwksSource::File("/nonexistent/jwks.json".into()),
        issuer: "https://issuer.fuzz".into(),
        audience: vec!["fuzz-aud".into()],
        algorithms: [
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        clock_skew_secs: 60,
        user_claim: "email".into(),
    };
    let verdict = proxy_jwt::check_bytes(token, jwks, &cfg).map_err(|r| r.reason.to_string());
    if let Ok(value) = axum::http::HeaderValue::from_bytes(token) {
        let tp = TrustedProxyConfig {
            user_header: "x-forwarded-user".into(),
            required_headers: vec!["x-forwarded-proto".into()],
            allow_users: Vec::new(),
            allow_loopback: false,
            device_auto_approve: None,
            jwt: Some(cfg),
        };
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            "x-forwarded-proto",
            axum::http::HeaderValue::from_static("https"),
        );
        headers.append("x-forwarded-user", value.clone());
        headers.append("x-pomerium-jwt-assertion", value.clone());
        headers.append("x-openclaw-scopes", value);
        let peer = std::net::IpAddr::from([10, 0, 0, 1]);
        match trusted_proxy::check_headers(&tp, true, peer, Some(false), &headers) {
            Ok(id) => assert!(!id.user.is_empty() && id.user.len() <= trusted_proxy::MAX_USER_LEN),
            Err(crate::session::ProxyAuth::Refused { reason, .. }) => {
                assert!(reason.starts_with("trusted_proxy_"), "{reason}")
            }
            Err(other) => panic!("not a refusal: {other:?}"),
        }
    }
    verdict
}

/// What a passkey payload parsed as: the fuzz target's view of
/// [`passkey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasskeyParse {
    Registration,
    Assertion,
    SigninBody,
    OptionsBody,
    Nothing,
}

/// The passkey entry points on untrusted bytes: the browser's
/// registration and assertion JSON
/// ([`crate::auth::passkey::parse_registration_bytes`],
/// [`crate::auth::passkey::parse_assertion_bytes`]: CBOR attestation
/// objects, COSE keys, authenticator and client data), the sign-in
/// endpoints' bodies, and a browser origin as a relying party. A
/// registration that parses is then verified against a fresh ceremony for
/// `https://fuzz.example`, and an assertion against a fresh sign-in: an
/// input cannot know those challenges, so verification must refuse
/// (`Err` here means the gateway would have approved something it must
/// not). An accepted origin gives a non-empty RP id taken from its host.
pub fn passkey(data: &[u8]) -> Result<PasskeyParse, String> {
    use crate::auth::passkey::{self as pk, Party};
    use clawgate_protocol::wire::{SigninOptionsRequest, SigninRequest};
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(p) = Party::of_origin(text)
        && (p.rp_id.is_empty() || !p.origin.contains(p.rp_id.as_str()))
    {
        return Err(format!("origin {text:?} gave RP id {:?}", p.rp_id));
    }
    let party = Party::of_origin("https://fuzz.example").expect("a fixed valid origin");
    if let Ok((reg, _)) = pk::parse_registration_bytes(data) {
        let start = pk::begin_registration(&party, "fuzz").map_err(|r| r.reason().to_string())?;
        return match pk::finish_registration(start.server, &party, &reg) {
            Ok(_) => Err("a registration verified against a challenge it could not know".into()),
            Err(_) => Ok(PasskeyParse::Registration),
        };
    }
    if let Ok(assertion) = pk::parse_assertion_bytes(data) {
        let start = pk::begin_signin(&party).map_err(|r| r.reason().to_string())?;
        let stored = pk::StoredCredential {
            credential_id: &assertion.credential_id,
            user_handle: "",
            public_key: &[],
            state: &[0; 7],
        };
        return match pk::finish_signin(start.server, &party, &assertion, &stored) {
            Ok(_) => Err("an assertion verified without a stored key".into()),
            Err(_) => Ok(PasskeyParse::Assertion),
        };
    }
    if serde_json::from_slice::<SigninRequest>(data).is_ok() {
        return Ok(PasskeyParse::SigninBody);
    }
    if serde_json::from_slice::<SigninOptionsRequest>(data).is_ok() {
        return Ok(PasskeyParse::OptionsBody);
    }
    Ok(PasskeyParse::Nothing)
}
