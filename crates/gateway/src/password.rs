//! A leaf: the gateway password at rest and its strength.
//!
//! - [`PasswordHash`]: `gateway.auth.passwordHash`, an Argon2id PHC string
//!   (validated: it parses, names argon2id and carries usable params);
//!   [`hash_password`] makes one with OWASP's parameters (m = 19 MiB,
//!   t = 2, p = 1).
//! - [`strength`]: the zxcvbn estimate (score 0-4 and its feedback); a score
//!   below [`MIN_SCORE`] is refused on a non-loopback bind.
//! - [`PasswordVerifier`]: Argon2 verification off the async workers, on at
//!   most `permits` blocking threads (half the cores, at least one) with a
//!   bounded queue (a full queue is
//!   answered "busy", never piled up), plus a per-process keyed hash
//!   (HMAC-SHA256 under a random key) of the last verified password so a
//!   repeat login with it skips Argon2. The plaintext is never kept; a
//!   wrong guess never matches the keyed hash, so it always pays Argon2.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::{
    PasswordHash as Phc, PasswordHasher, PasswordVerifier as _, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// The lowest zxcvbn score accepted on a non-loopback bind (0-4; 3 is
/// "safely unguessable: moderate protection from offline slow-hash
/// scenario", which is what an Argon2 hash at rest faces).
pub const MIN_SCORE: u8 = 3;

/// The commands that make a strong password, for refusal messages.
pub const GENERATE_HINT: &str = "generate one with: clawgate gateway set-password --generate (or: openssl rand -base64 24 | clawgate gateway set-password --stdin)";

/// OWASP's Argon2id settings: 19 MiB, 2 passes, 1 lane.
const M_COST_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

/// An Argon2id PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
/// Its `Debug` redacts: it is crackable material.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

impl PasswordHash {
    /// Checks that `s` is an Argon2id PHC string with usable params. The
    /// error never quotes the value.
    pub fn parse(s: &str) -> Result<PasswordHash, String> {
        let s = s.trim();
        let phc = Phc::new(s).map_err(|e| format!("is not a PHC hash string ({e})"))?;
        if phc.algorithm != argon2::ARGON2ID_IDENT {
            return Err(format!(
                "must be an argon2id hash but names {}",
                phc.algorithm.as_str()
            ));
        }
        Params::try_from(&phc).map_err(|e| format!("has unusable argon2 params ({e})"))?;
        if phc.hash.is_none() || phc.salt.is_none() {
            return Err("has no salt or no hash part".into());
        }
        Ok(PasswordHash(s.to_string()))
    }

    /// The PHC string (to write into the config file).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Argon2id verification: slow on purpose (tens of ms). Blocking.
    pub fn verify(&self, password: &str) -> bool {
        let Ok(phc) = Phc::new(&self.0) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &phc)
            .is_ok()
    }
}

/// Hashes `password` with Argon2id (OWASP parameters, random salt).
pub fn hash_password(password: &str) -> PasswordHash {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).expect("OWASP params are valid");
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2id hashing with valid params");
    PasswordHash(hash.to_string())
}

/// A strong random password: 24 random bytes, base64 (32 characters).
pub fn generate_password() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A zxcvbn estimate: the score (0-4) and what it says is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strength {
    pub score: u8,
    /// zxcvbn's warning and suggestions, or a generic sentence.
    pub feedback: String,
}

impl Strength {
    pub fn is_weak(&self) -> bool {
        self.score < MIN_SCORE
    }

    /// One sentence for an error or a warning (never the password).
    pub fn describe(&self) -> String {
        format!(
            "the password is too weak (zxcvbn score {}/4, at least {MIN_SCORE} needed: {}); {GENERATE_HINT}",
            self.score, self.feedback
        )
    }
}

/// The zxcvbn estimate of `password`.
pub fn strength(password: &str) -> Strength {
    let entropy = zxcvbn::zxcvbn(password, &["clawgate", "openclaw", "gateway"]);
    let score = u8::from(entropy.score());
    let mut parts = Vec::new();
    if let Some(fb) = entropy.feedback() {
        if let Some(w) = fb.warning() {
            parts.push(w.to_string());
        }
        parts.extend(fb.suggestions().iter().map(|s| s.to_string()));
    }
    if parts.is_empty() {
        parts.push("it could be guessed with moderate effort".into());
    }
    Strength {
        score,
        feedback: parts.join(" "),
    }
}

/// How a verification came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Match,
    Mismatch,
    /// The queue was full: nothing was computed.
    Busy,
}

/// Argon2 verification on a bounded pool (see the module comment).
#[derive(Debug)]
pub struct PasswordVerifier {
    permits: std::sync::Arc<Semaphore>,
    /// Verifications running or waiting for a permit.
    in_flight: AtomicUsize,
    max_in_flight: usize,
    /// Key of the keyed hash; random per process, never stored.
    key: [u8; 32],
    /// (PHC string, HMAC of the password last verified against it).
    last_ok: Mutex<Option<(String, [u8; 32])>>,
}

impl PasswordVerifier {
    /// `permits` verifications at once (the cores), `queue` more waiting.
    pub fn new(permits: usize, queue: usize) -> PasswordVerifier {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let permits = permits.max(1);
        PasswordVerifier {
            permits: std::sync::Arc::new(Semaphore::new(permits)),
            in_flight: AtomicUsize::new(0),
            max_in_flight: permits + queue,
            key,
            last_ok: Mutex::new(None),
        }
    }

    /// One permit per two cores (at least one), so verifications never
    /// take every core from the async workers, and a queue of eight per
    /// permit.
    pub fn for_this_machine() -> PasswordVerifier {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let permits = (cores / 2).max(1);
        PasswordVerifier::new(permits, permits * 8)
    }

    /// Verifications running plus queued at most.
    pub fn capacity(&self) -> usize {
        self.max_in_flight
    }

    fn keyed(&self, password: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Whether `password` is the last one verified against `hash` (cheap,
    /// constant-time on the keyed hashes).
    fn recently_verified(&self, hash: &PasswordHash, password: &str) -> bool {
        let guard = self.last_ok.lock().expect("verifier lock");
        match &*guard {
            Some((phc, mac)) if phc == hash.as_str() => {
                bool::from(mac.ct_eq(&self.keyed(password)))
            }
            _ => false,
        }
    }

    /// Verifies `password` against `hash` on a blocking thread, waiting
    /// for a permit; [`Verdict::Busy`] when the queue is full.
    pub async fn verify(&self, hash: &PasswordHash, password: &str) -> Verdict {
        if self.recently_verified(hash, password) {
            return Verdict::Match;
        }
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Verdict::Busy;
        }
        let _slot = InFlight(&self.in_flight);
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return Verdict::Busy;
        };
        let (h, p) = (hash.clone(), zeroize::Zeroizing::new(password.to_string()));
        let ok = tokio::task::spawn_blocking(move || h.verify(&p))
            .await
            .unwrap_or(false);
        if ok {
            *self.last_ok.lock().expect("verifier lock") =
                Some((hash.as_str().to_string(), self.keyed(password)));
            Verdict::Match
        } else {
            Verdict::Mismatch
        }
    }
}

/// Releases an in-flight place when the verification ends (or is dropped).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_parse_and_verify() {
        let h = hash_password("correct horse battery staple 42!");
        assert!(h.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let parsed = PasswordHash::parse(h.as_str()).unwrap();
        assert!(parsed.verify("correct horse battery staple 42!"));
        assert!(!parsed.verify("correct horse battery staple 43!"));
        assert_eq!(format!("{parsed:?}"), "PasswordHash(<redacted>)");
    }

    #[test]
    fn only_argon2id_phc_strings_parse() {
        assert!(PasswordHash::parse("hunter2").is_err());
        let i = "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        let err = PasswordHash::parse(i).unwrap_err();
        assert!(err.contains("argon2id"), "{err}");
        assert!(PasswordHash::parse("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ").is_err());
    }

    #[test]
    fn weak_and_strong_passwords() {
        let weak = strength("password1");
        assert!(weak.is_weak());
        assert!(weak.describe().contains("set-password --generate"));
        assert!(!weak.describe().contains("password1"));
        assert!(!strength(&generate_password()).is_weak());
    }

    #[tokio::test]
    async fn the_pool_verifies_caches_only_a_match_and_refuses_when_full() {
        let v = PasswordVerifier::new(1, 0);
        let h = hash_password("a long enough pass phrase 77");
        assert_eq!(v.verify(&h, "nope").await, Verdict::Mismatch);
        assert_eq!(
            v.verify(&h, "a long enough pass phrase 77").await,
            Verdict::Match
        );
        assert!(v.recently_verified(&h, "a long enough pass phrase 77"));
        assert!(!v.recently_verified(&h, "nope"));
        // One in flight, no queue: the next is busy.
        v.in_flight.fetch_add(1, Ordering::AcqRel);
        assert_eq!(v.verify(&h, "other").await, Verdict::Busy);
    }
}
