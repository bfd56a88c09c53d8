//! Passkeys (WebAuthn): the browser's registration and assertion JSON
//! (CBOR attestation objects, COSE keys, authenticator data, client data),
//! the sign-in endpoints' bodies and origins as relying parties
//! (`clawgate_gateway::fuzzing::passkey` -> `auth::passkey`).
//!
//! Properties: nothing panics; nothing an input can build verifies against
//! a challenge it cannot know (no approval from garbage); oversized JSON
//! is refused before parsing.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match clawgate_gateway::fuzzing::passkey(data) {
        Ok(parsed) => {
            if data.len() > 64 * 1024 {
                assert!(
                    !matches!(
                        parsed,
                        clawgate_gateway::fuzzing::PasskeyParse::Registration
                            | clawgate_gateway::fuzzing::PasskeyParse::Assertion
                    ),
                    "oversized credential parsed"
                );
            }
        }
        Err(problem) => panic!("{problem}"),
    }
});
