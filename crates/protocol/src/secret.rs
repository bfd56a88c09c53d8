//! A string that must never be printed: shared tokens, passwords, device
//! tokens. `Debug` and `Display` redact it; only [`Secret::expose`] reads it.
//! The value is zeroed when the `Secret` is dropped. It deserialises from a
//! plain string but does not implement `Serialize`: a wire field that must
//! carry one in clear says so with `#[serde(serialize_with =
//! "secret::expose_opt")]`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// Bytes of OS randomness in a generated token.
pub const GENERATED_TOKEN_BYTES: usize = 32;
/// Length of a generated token: 32 bytes as base64url without padding.
pub const GENERATED_TOKEN_LEN: usize = 43;

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// A fresh token: 32 bytes from the operating system's CSPRNG,
    /// base64url without padding (43 characters). The one generator for
    /// shared tokens and device tokens.
    pub fn generate() -> Self {
        let mut bytes = [0u8; GENERATED_TOKEN_BYTES];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .expect("the operating system's random number generator failed");
        let token = URL_SAFE_NO_PAD.encode(bytes);
        bytes.zeroize();
        Secret(token)
    }

    /// The secret's value. Call sites are the only places a secret is read.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with `candidate` in time independent of where they differ:
    /// both are zero-padded to the longer length and the lengths must match.
    pub fn matches(&self, candidate: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), candidate.as_bytes())
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// `serialize_with` for an `Option<Secret>` wire field that carries the
/// secret in clear (a device token handed out in `hello-ok` or a rotate
/// reply). Use with `skip_serializing_if = "Option::is_none"`.
pub fn expose_opt<S: serde::Serializer>(value: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(secret) => s.serialize_str(secret.expose()),
        None => s.serialize_none(),
    }
}

/// `serialize_with` for a `Secret` wire field carried in clear (a
/// `hello-ok.auth.deviceTokens[]` entry, a setup code's bootstrap token).
pub fn expose_one<S: serde::Serializer>(value: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.expose())
}

/// Constant-time equality of two byte strings of possibly different length.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut pa = vec![0u8; len];
    let mut pb = vec![0u8; len];
    pa[..a.len()].copy_from_slice(a);
    pb[..b.len()].copy_from_slice(b);
    let same_bytes: bool = pa.ct_eq(&pb).into();
    same_bytes & (a.len() == b.len())
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_and_compares() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<redacted> Secret(<redacted>)");
        assert!(s.matches("hunter2"));
        assert!(!s.matches("hunter2\0"));
        assert!(!s.matches("hunter"));
        assert!(!s.matches(""));
    }

    #[test]
    fn generated_tokens_are_43_base64url_chars_and_differ() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert_eq!(a.expose().len(), GENERATED_TOKEN_LEN);
        assert!(
            a.expose()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
            "not base64url without padding"
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(a.expose()).unwrap().len(), 32);
        assert_ne!(a, b);
        assert!(!format!("{a:?} {a}").contains(a.expose()));
    }

    #[test]
    fn deserialises_from_a_string_and_serialises_only_on_request() {
        let s: Secret = serde_json::from_str("\"tok-1\"").unwrap();
        assert_eq!(s.expose(), "tok-1");
        #[derive(serde::Serialize)]
        struct Wire {
            #[serde(serialize_with = "expose_opt", skip_serializing_if = "Option::is_none")]
            token: Option<Secret>,
        }
        let wire = Wire { token: Some(s) };
        assert_eq!(
            serde_json::to_string(&wire).unwrap(),
            r#"{"token":"tok-1"}"#
        );
        let none = Wire { token: None };
        assert_eq!(serde_json::to_string(&none).unwrap(), "{}");
    }
}
