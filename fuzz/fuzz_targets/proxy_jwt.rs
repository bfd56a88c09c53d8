//! The trusted proxy's signed assertion (`gateway.auth.trustedProxy.jwt`):
//! JWS parsing, JWKS parsing and the verification the gateway runs
//! (`clawgate_gateway::fuzzing::proxy_jwt` -> `auth::proxy_jwt::check_bytes`),
//! and the same bytes as proxy identity headers (`trusted_proxy::check_headers`).
//!
//! Input: `[token length: u16 LE][token][JWKS document]`. Properties:
//! nothing panics; every refusal is a `trusted_proxy_*` reason; a verified
//! user is non-blank and at most 512 bytes; a JWKS larger than 64 KiB is
//! refused as too large.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = usize::from(u16::from_le_bytes([data[0], data[1]]));
    let rest = &data[2..];
    let (token, jwks) = rest.split_at(n.min(rest.len()));
    match clawgate_gateway::fuzzing::proxy_jwt(token, jwks) {
        Ok(user) => assert!(!user.trim().is_empty() && user.len() <= 512, "{user:?}"),
        Err(reason) => {
            assert!(reason.starts_with("trusted_proxy_"), "{reason}");
            if jwks.len() > 64 * 1024 && reason.starts_with("trusted_proxy_jwks") {
                assert_eq!(reason, "trusted_proxy_jwks_too_large");
            }
        }
    }
});
