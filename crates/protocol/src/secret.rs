//! A string that must never be printed: shared tokens, passwords, device
//! tokens. `Debug` and `Display` redact it; only [`Secret::expose`] reads it.

use subtle::ConstantTimeEq;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
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
}
