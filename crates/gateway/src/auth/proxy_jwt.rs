//! `gateway.auth.trustedProxy.jwt`: the proxy's signed assertion
//! (Pomerium's `x-pomerium-jwt-assertion`, Cloudflare Access's
//! `cf-access-jwt-assertion`) verified against the proxy's JWKS, so the
//! identity is a claim the identity provider signed rather than a header
//! anyone who reaches the port could set.
//!
//! Parsing is bounded and never panics (the fuzz target `proxy_jwt` runs
//! [`parse_jwks`] and [`verify`] on arbitrary bytes). The algorithm is
//! taken from the configured list only: `none` and HMAC are refused by
//! the resolver, and a token naming an algorithm outside the list is
//! refused before any key is looked up. Keys of type `oct` (symmetric)
//! are dropped from a JWKS. Signature checks are `jsonwebtoken` over ring.
//! Values in, values out: fetching the JWKS is `http/jwks.rs`.

use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::Value;

use crate::auth::trusted_proxy::{MAX_ASSERTION_LEN, MAX_USER_LEN};
use crate::config::JwtConfig;

/// The largest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// The most keys kept from one JWKS.
pub const MAX_JWKS_KEYS: usize = 32;

/// Why an assertion (or a key set) was refused: `reason` is the
/// `details.authReason` (`trusted_proxy_jwt_*`, `trusted_proxy_jwks_*`),
/// `message` says what to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtRefusal {
    pub reason: &'static str,
    pub message: String,
}

fn refusal(reason: &'static str, what: &str) -> JwtRefusal {
    JwtRefusal {
        reason,
        message: format!("unauthorized: trusted proxy assertion {what}"),
    }
}

/// The parts of a JOSE header the verifier needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionHeader {
    pub alg: Algorithm,
    pub kid: Option<String>,
}

/// Parses the assertion's header and checks its algorithm against
/// `allowed` (refusing `none`, HMAC and anything unlisted).
pub fn parse_header(token: &str, allowed: &[String]) -> Result<AssertionHeader, JwtRefusal> {
    let malformed = || {
        refusal(
            "trusted_proxy_jwt_malformed",
            "is not a well-formed JWS (header.payload.signature in base64url)",
        )
    };
    if token.len() > MAX_ASSERTION_LEN {
        return Err(malformed());
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(malformed());
    }
    let raw = URL_SAFE_NO_PAD.decode(h).map_err(|_| malformed())?;
    let Ok(Value::Object(header)) = serde_json::from_slice::<Value>(&raw) else {
        return Err(malformed());
    };
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    if !allowed.iter().any(|a| a == alg) {
        return Err(refusal(
            "trusted_proxy_jwt_algorithm",
            "uses an algorithm gateway.auth.trustedProxy.jwt.algorithms does not allow",
        ));
    }
    let alg = Algorithm::from_str(alg).map_err(|_| malformed())?;
    if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        // The resolver never allows these; refuse even if a list did.
        return Err(refusal(
            "trusted_proxy_jwt_algorithm",
            "uses an HMAC algorithm, which a public key set cannot verify",
        ));
    }
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) if k.len() <= 256 => Some(k.clone()),
        Some(_) => return Err(malformed()),
    };
    Ok(AssertionHeader { alg, kid })
}

/// A parsed key set: public keys only, at most [`MAX_JWKS_KEYS`].
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub keys: Vec<Jwk>,
}

impl KeySet {
    /// The key for `kid` that can verify `alg`; without a `kid`, the only
    /// such key when there is exactly one.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&Jwk> {
        let fits = |k: &&Jwk| key_fits(k, alg);
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(fits)
                .find(|k| k.common.key_id.as_deref() == Some(kid)),
            None => {
                let mut it = self.keys.iter().filter(fits);
                let first = it.next();
                if it.next().is_some() { None } else { first }
            }
        }
    }
}

fn key_fits(key: &Jwk, alg: Algorithm) -> bool {
    use Algorithm::*;
    if let Some(key_alg) = &key.common.key_algorithm
        && format!("{key_alg:?}") != format!("{alg:?}")
    {
        return false;
    }
    match &key.algorithm {
        AlgorithmParameters::RSA(_) => {
            matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
        }
        AlgorithmParameters::EllipticCurve(_) => matches!(alg, ES256 | ES384),
        AlgorithmParameters::OctetKeyPair(_) => alg == EdDSA,
        AlgorithmParameters::OctetKey(_) => false,
    }
}

/// Parses a JWKS document (`{"keys": [...]}`): refused when it is larger
/// than [`MAX_JWKS_BYTES`] or not a JSON object with a `keys` array; keys
/// that do not parse, symmetric keys and keys past [`MAX_JWKS_KEYS`] are
/// dropped. A set with no usable key is refused.
pub fn parse_jwks(bytes: &[u8]) -> Result<KeySet, JwtRefusal> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(refusal(
            "trusted_proxy_jwks_too_large",
            "cannot be checked: the proxy's key set is larger than 64 KiB",
        ));
    }
    let bad = || {
        refusal(
            "trusted_proxy_jwks_invalid",
            "cannot be checked: the proxy's key set is not a JWKS document ({\"keys\": [...]})",
        )
    };
    let Ok(Value::Object(mut doc)) = serde_json::from_slice::<Value>(bytes) else {
        return Err(bad());
    };
    let Some(Value::Array(entries)) = doc.remove("keys") else {
        return Err(bad());
    };
    let keys: Vec<Jwk> = entries
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
        .filter(|k| !matches!(k.algorithm, AlgorithmParameters::OctetKey(_)))
        .take(MAX_JWKS_KEYS)
        .collect();
    if keys.is_empty() {
        return Err(refusal(
            "trusted_proxy_jwks_invalid",
            "cannot be checked: the proxy's key set holds no usable public key",
        ));
    }
    Ok(KeySet { keys })
}

/// Verifies `token` with `key` against `cfg` (issuer, audience, expiry
/// with the configured skew, the algorithm of `header`) and returns the
/// user claim.
pub fn verify(
    token: &str,
    header: &AssertionHeader,
    key: &Jwk,
    cfg: &JwtConfig,
) -> Result<String, JwtRefusal> {
    let decoding = DecodingKey::from_jwk(key).map_err(|_| {
        refusal(
            "trusted_proxy_jwks_invalid",
            "cannot be checked: the proxy's signing key is not usable",
        )
    })?;
    let mut validation = Validation::new(header.alg);
    validation.algorithms = vec![header.alg];
    validation.leeway = cfg.clock_skew_secs;
    validation.validate_nbf = true;
    validation.set_issuer(&[cfg.issuer.as_str()]);
    validation.set_audience(&cfg.audience);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let data =
        jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &decoding, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => refusal(
                    "trusted_proxy_jwt_expired",
                    "has expired (sign in again at the proxy; check the gateway host's clock)",
                ),
                ErrorKind::ImmatureSignature => refusal(
                    "trusted_proxy_jwt_not_yet_valid",
                    "is not valid yet (check the clocks of the proxy and the gateway host)",
                ),
                ErrorKind::InvalidAudience => refusal(
                    "trusted_proxy_jwt_audience",
                    "is for another audience (check gateway.auth.trustedProxy.jwt.audience)",
                ),
                ErrorKind::InvalidIssuer => refusal(
                    "trusted_proxy_jwt_issuer",
                    "comes from another issuer (check gateway.auth.trustedProxy.jwt.issuer)",
                ),
                ErrorKind::MissingRequiredClaim(_) => refusal(
                    "trusted_proxy_jwt_claims",
                    "lacks a required claim (exp, iss and aud are required)",
                ),
                ErrorKind::InvalidSignature | ErrorKind::Crypto(_) => refusal(
                    "trusted_proxy_jwt_signature",
                    "has a signature that does not verify with the proxy's key",
                ),
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => refusal(
                    "trusted_proxy_jwt_algorithm",
                    "uses an algorithm gateway.auth.trustedProxy.jwt.algorithms does not allow",
                ),
                _ => refusal(
                    "trusted_proxy_jwt_malformed",
                    "is not a well-formed JWS (header.payload.signature in base64url)",
                ),
            })?;
    match data.claims.get(&cfg.user_claim) {
        Some(Value::String(u)) if !u.trim().is_empty() && u.trim().len() <= MAX_USER_LEN => {
            Ok(u.trim().to_string())
        }
        _ => Err(refusal(
            "trusted_proxy_jwt_user_claim",
            "does not carry the user claim (check gateway.auth.trustedProxy.jwt.userClaim)",
        )),
    }
}

/// The user header must name the same user as the verified claim (emails
/// case-insensitively).
pub fn same_user(header_user: &str, claim_user: &str) -> bool {
    if header_user.contains('@') || claim_user.contains('@') {
        header_user.to_lowercase() == claim_user.to_lowercase()
    } else {
        header_user == claim_user
    }
}

/// The refusal for an assertion about another user than the header names.
pub fn user_mismatch() -> JwtRefusal {
    refusal(
        "trusted_proxy_jwt_user_mismatch",
        "names another user than the identity header (the proxy must set both for the same user)",
    )
}

/// The refusal for an assertion whose `kid` the key set does not hold
/// (after one refetch).
pub fn unknown_key() -> JwtRefusal {
    refusal(
        "trusted_proxy_jwt_unknown_key",
        "is signed by a key the proxy's key set does not hold (check gateway.auth.trustedProxy.jwt.jwksUrl)",
    )
}

/// The refusal while the key set cannot be had (fail closed).
pub fn jwks_unavailable(why: &str) -> JwtRefusal {
    JwtRefusal {
        reason: "trusted_proxy_jwks_unavailable",
        message: format!(
            "unauthorized: trusted proxy assertion cannot be checked: the proxy's key set is unavailable ({why})"
        ),
    }
}

/// The whole check on bytes, for the fuzz target: a header, a key set and
/// a configuration; never panics, whatever the input.
pub fn check_bytes(token: &[u8], jwks: &[u8], cfg: &JwtConfig) -> Result<String, JwtRefusal> {
    let token = std::str::from_utf8(token)
        .map_err(|_| refusal("trusted_proxy_jwt_malformed", "is not a well-formed JWS"))?;
    let header = parse_header(token, &cfg.algorithms)?;
    let keys = parse_jwks(jwks)?;
    let key = keys
        .find(header.kid.as_deref(), header.alg)
        .ok_or_else(unknown_key)?;
    verify(token, &header, key, cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JwksSource;

    fn cfg() -> JwtConfig {
        JwtConfig {
            header: "x-pomerium-jwt-assertion".into(),
            jwks: JwksSource::File("/nonexistent".into()),
            issuer: "https://issuer.fuzz".into(),
            audience: vec!["fuzz-aud".into()],
            algorithms: vec!["EdDSA".into(), "ES256".into()],
            clock_skew_secs: 60,
            user_claim: "email".into(),
        }
    }

    /// The fuzz target's seeds reach the success path and each refusal.
    #[test]
    fn fuzz_seeds_verify_as_labelled() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/proxy_jwt");
        let run = |name: &str| {
            let data = std::fs::read(dir.join(format!("seed-{name}"))).unwrap();
            let n = usize::from(u16::from_le_bytes([data[0], data[1]]));
            let (token, jwks) = data[2..].split_at(n);
            check_bytes(token, jwks, &cfg())
        };
        assert_eq!(run("good").unwrap(), "nick@example.com");
        assert_eq!(run("no-kid").unwrap(), "nick@example.com");
        assert_eq!(run("aud-list").unwrap(), "nick@example.com");
        for (name, reason) in [
            ("expired", "trusted_proxy_jwt_expired"),
            ("wrong-iss", "trusted_proxy_jwt_issuer"),
            ("unknown-kid", "trusted_proxy_jwt_unknown_key"),
            ("no-user", "trusted_proxy_jwt_user_claim"),
            ("alg-none", "trusted_proxy_jwt_malformed"),
            ("alg-hs256", "trusted_proxy_jwt_algorithm"),
            ("broken", "trusted_proxy_jwt_malformed"),
        ] {
            assert_eq!(run(name).unwrap_err().reason, reason, "{name}");
        }
    }

    #[test]
    fn key_sets_are_bounded_and_public_only() {
        let big = format!(
            "{{\"keys\": [], \"pad\": \"{}\"}}",
            "p".repeat(MAX_JWKS_BYTES)
        );
        assert_eq!(
            parse_jwks(big.as_bytes()).unwrap_err().reason,
            "trusted_proxy_jwks_too_large"
        );
        let oct = br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#;
        assert_eq!(
            parse_jwks(oct).unwrap_err().reason,
            "trusted_proxy_jwks_invalid"
        );
        for bad in [&b"[]"[..], b"{}", b"{\"keys\": 1}", b"\xff\xfe", b""] {
            assert_eq!(
                parse_jwks(bad).unwrap_err().reason,
                "trusted_proxy_jwks_invalid"
            );
        }
        let many: Vec<String> = (0..100)
            .map(|i| format!(r#"{{"kty":"OKP","crv":"Ed25519","kid":"k{i}","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}}"#))
            .collect();
        let doc = format!("{{\"keys\": [{}]}}", many.join(","));
        assert_eq!(
            parse_jwks(doc.as_bytes()).unwrap().keys.len(),
            MAX_JWKS_KEYS
        );
    }
}
