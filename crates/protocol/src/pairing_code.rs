//! Short pairing codes (clawgate's own, not in the reference): every pending
//! pairing request gets a code both screens show, so an operator types
//! `clawgate devices approve BCDF-GHJK` instead of copying a 36-character
//! request id. The alphabet and shape are RFC 8628's user codes (section
//! 6.1): 20 consonants without vowels (no words, no 0/O or 1/I confusion),
//! 8 characters (20^8, about 34.6 bits), shown as `XXXX-XXXX`.
//!
//! A code only names a pending request; it grants nothing by itself. The
//! gateway draws it here from the OS CSPRNG and keeps it with its request.

use rand::TryRngCore;

/// RFC 8628's recommended alphabet: `BCDFGHJKLMNPQRSTVWXZ`.
pub const ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Characters in a code (without the dash).
pub const LEN: usize = 8;

/// A fresh code in its shown form (`XXXX-XXXX`), each character drawn
/// uniformly from [`ALPHABET`] with the operating system's CSPRNG
/// (rejection sampling: bytes of 240 and above are redrawn, so no
/// character is more likely than another).
pub fn generate() -> String {
    let mut chars = Vec::with_capacity(LEN);
    let mut buf = [0u8; 16];
    while chars.len() < LEN {
        rand::rngs::OsRng
            .try_fill_bytes(&mut buf)
            .expect("the operating system's random number generator failed");
        for b in buf {
            // 240 = 12 * 20: the largest multiple of 20 a byte reaches.
            if b < 240 && chars.len() < LEN {
                chars.push(ALPHABET[usize::from(b % 20)]);
            }
        }
    }
    shown(&chars)
}

fn shown(chars: &[u8]) -> String {
    let (a, b) = chars.split_at(LEN / 2);
    format!(
        "{}-{}",
        String::from_utf8_lossy(a),
        String::from_utf8_lossy(b)
    )
}

/// The canonical (shown) form of what a person typed: any case, the dash
/// (or spaces) optional. `None` when it cannot be a code, so a request id
/// or a typo with a character outside the alphabet is never looked up as one.
pub fn normalize(input: &str) -> Option<String> {
    let chars: Vec<u8> = input
        .trim()
        .bytes()
        .filter(|b| !matches!(b, b'-' | b' '))
        .map(|b| b.to_ascii_uppercase())
        .collect();
    (chars.len() == LEN && chars.iter().all(|c| ALPHABET.contains(c))).then(|| shown(&chars))
}

/// Whether `input` looks like a pairing code (see [`normalize`]).
pub fn looks_like_code(input: &str) -> bool {
    normalize(input).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_have_the_shape_and_alphabet() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let code = generate();
            assert_eq!(code.len(), 9, "{code}");
            assert_eq!(&code[4..5], "-");
            assert!(
                code.bytes()
                    .filter(|b| *b != b'-')
                    .all(|b| ALPHABET.contains(&b)),
                "{code}"
            );
            assert_eq!(normalize(&code).as_deref(), Some(code.as_str()));
            seen.insert(code);
        }
        // 2000 draws from 20^8 values: a repeat would mean a broken source.
        assert_eq!(seen.len(), 2000);
    }

    #[test]
    fn every_character_of_the_alphabet_is_drawn() {
        let mut counts = [0u32; 20];
        for _ in 0..500 {
            for b in generate().bytes().filter(|b| *b != b'-') {
                counts[ALPHABET.iter().position(|c| *c == b).unwrap()] += 1;
            }
        }
        // 4000 characters, 200 expected each.
        assert!(counts.iter().all(|n| (100..320).contains(n)), "{counts:?}");
    }

    #[test]
    fn typed_forms_normalize() {
        assert_eq!(normalize("bcdf-ghjk").as_deref(), Some("BCDF-GHJK"));
        assert_eq!(normalize("BCDFGHJK").as_deref(), Some("BCDF-GHJK"));
        assert_eq!(normalize(" bcdf ghjk ").as_deref(), Some("BCDF-GHJK"));
        // Vowels and digits are not in the alphabet; lengths must match.
        for bad in [
            "ABCD-EFGH",
            "BCDF-GHJ0",
            "BCDF-GHJ",
            "BCDF-GHJKL",
            "",
            "45565c50-6178-4690-9cbe-8dfc1449e4a7",
        ] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }
}
