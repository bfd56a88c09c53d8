//! Passkeys (WebAuthn) for the Control UI: the ceremonies' pure parts over
//! `webauthn_rp` (pure Rust, RustCrypto; no OpenSSL). Values in, values out:
//! the relying party a browser origin stands for, creation and request
//! options, strict parsing of the browser's `toJSON()` of a credential, and
//! verification against a stored passkey. Ceremony state lives in
//! `state/passkeys.rs`; the sign-in endpoints in `http/passkeys.rs`; the
//! registration methods in `rpc/passkeys.rs`.
//!
//! Choices: discoverable credentials (resident keys) with user
//! verification required, so sign-in needs no user name; "none"
//! attestation (the gateway does not decide which authenticators a person
//! may use); each passkey is its own WebAuthn user (a random 64-byte
//! handle), since the person it stands for is "an operator with these
//! scopes", not an account. The signature counter must grow when it is
//! used (a counter that goes backwards means a cloned authenticator: the
//! sign-in is refused and the passkey flagged); synced passkeys that
//! always report 0 are accepted.

use std::net::IpAddr;

use clawgate_protocol::catalogue;
use clawgate_protocol::frames::ErrorShape;
use serde_json::Value;
use webauthn_rp::bin::{Decode, Encode};
use webauthn_rp::request::auth::{
    AuthenticationVerificationOptions, AuthenticatorAttachmentEnforcement,
    SignatureCounterEnforcement,
};
use webauthn_rp::request::register::CredProtect;
use webauthn_rp::request::register::{
    Nickname, PublicKeyCredentialUserEntity, RegistrationVerificationOptions, USER_HANDLE_MAX_LEN,
    UserHandle64, Username,
};
use webauthn_rp::request::{AsciiDomain, BackupReq, ExtensionInfo, RpId};
use webauthn_rp::response::CredentialId;
use webauthn_rp::response::auth::error::AuthCeremonyErr;
use webauthn_rp::response::register::error::RegCeremonyErr;
use webauthn_rp::response::register::{CompressedPubKey, DynamicState, StaticState};
use webauthn_rp::{
    AuthenticatedCredential, DiscoverableAuthentication64, DiscoverableAuthenticationServerState,
    DiscoverableCredentialRequestOptions, PublicKeyCredentialCreationOptions, Registration,
    RegistrationServerState,
};

use crate::config::normalize_origin;

/// How long a ceremony's challenge lives (also the browser's timeout).
pub const CEREMONY_TTL_MS: u64 = 120_000;
/// The most JSON a credential may take (a browser's is about 1-2 KiB).
pub const MAX_CREDENTIAL_JSON: usize = 64 * 1024;
/// Labels: 1 to this many characters.
pub const MAX_LABEL_CHARS: usize = 64;

/// Why a passkey ceremony was refused: `details.reason` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Malformed,
    ChallengeUnknown,
    DeviceMismatch,
    DeviceSignature,
    UnknownCredential,
    Origin,
    RpId,
    Verification,
    SignCount,
    Flagged,
    NotSecure,
}

impl Refused {
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Malformed => "passkey_malformed",
            Refused::ChallengeUnknown => "passkey_challenge_unknown",
            Refused::DeviceMismatch => "passkey_device_mismatch",
            Refused::DeviceSignature => "passkey_device_signature",
            Refused::UnknownCredential => "passkey_unknown_credential",
            Refused::Origin => "passkey_origin",
            Refused::RpId => "passkey_rp_id",
            Refused::Verification => "passkey_verification_failed",
            Refused::SignCount => "passkey_sign_count",
            Refused::Flagged => "passkey_flagged",
            Refused::NotSecure => "passkey_not_secure_context",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refused::Malformed => "the request is not a WebAuthn credential this gateway can read",
            Refused::ChallengeUnknown => {
                "the challenge expired, was already used, or was never issued; start again"
            }
            Refused::DeviceMismatch => "the challenge was issued to another browser identity",
            Refused::DeviceSignature => {
                "the browser's device signature over the challenge does not verify"
            }
            Refused::UnknownCredential => "no passkey with this id is registered (removed?)",
            Refused::Origin => "the ceremony ran on an origin this gateway does not serve",
            Refused::RpId => "the passkey belongs to another host name",
            Refused::Verification => "the authenticator's response does not verify",
            Refused::SignCount => {
                "the authenticator's signature counter went backwards (a cloned key?); the passkey is flagged"
            }
            Refused::Flagged => {
                "this passkey is flagged (its counter went backwards once); remove it and register a new one"
            }
            Refused::NotSecure => {
                "passkeys need https, or http://localhost; browsers refuse IP addresses as host names"
            }
        }
    }

    pub fn error(self) -> ErrorShape {
        catalogue::passkey_refused(self.reason(), self.message())
    }
}

/// The relying party a browser origin stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    /// The host name (RP id).
    pub rp_id: String,
    /// The normalised origin the browser reports (`scheme://host[:port]`).
    pub origin: String,
}

impl Party {
    /// The relying party of `origin`: its host, which must be a domain
    /// name (browsers refuse IP addresses as RP ids), over https, or over
    /// http only for `localhost` (the one insecure secure context with a
    /// domain name).
    pub fn of_origin(origin: &str) -> Result<Party, Refused> {
        let normalized = normalize_origin(origin.trim())
            .filter(|o| o != "*")
            .ok_or(Refused::Origin)?;
        let (scheme, authority) = normalized.split_once("://").ok_or(Refused::Origin)?;
        if authority.starts_with('[') {
            return Err(Refused::NotSecure);
        }
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(h, _)| h)
            .trim_end_matches('.');
        if host.parse::<IpAddr>().is_ok() {
            return Err(Refused::NotSecure);
        }
        let local = host == "localhost" || host.ends_with(".localhost");
        if scheme != "https" && !local {
            return Err(Refused::NotSecure);
        }
        rp(host)?;
        Ok(Party {
            rp_id: host.to_string(),
            origin: normalized,
        })
    }

    fn rp(&self) -> Result<RpId, Refused> {
        rp(&self.rp_id)
    }
}

fn rp(host: &str) -> Result<RpId, Refused> {
    AsciiDomain::try_from(host.to_owned())
        .map(RpId::Domain)
        .map_err(|_| Refused::RpId)
}

/// base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.as_bytes())
        .ok()
}

/// A registration begun: what the gateway keeps, and what the browser gets.
pub struct RegistrationStart {
    pub server: RegistrationServerState<USER_HANDLE_MAX_LEN>,
    pub user_handle: Vec<u8>,
    /// `PublicKeyCredentialCreationOptionsJSON`.
    pub options: Value,
    /// The challenge's id (its 128 bits).
    pub challenge: u128,
}

/// Creation options for a new passkey named `label` on `party`.
pub fn begin_registration(party: &Party, label: &str) -> Result<RegistrationStart, Refused> {
    use webauthn_rp::request::TimedCeremony as _;
    let rp_id = party.rp()?;
    let user_handle = UserHandle64::new();
    // The WebAuthn user name must be an RFC 8265 user name (no spaces):
    // a name derived from the label; the label itself is the display name.
    let account = user_name(label);
    let name = Username::try_from(account.as_str()).map_err(|_| Refused::Malformed)?;
    let display = Nickname::try_from(label).map_err(|_| Refused::Malformed)?;
    let user = PublicKeyCredentialUserEntity {
        name,
        id: &user_handle,
        display_name: Some(display),
    };
    // No exclude list: each passkey is its own WebAuthn user, so a second
    // one on the same authenticator is a separate credential by design.
    let mut creation = PublicKeyCredentialCreationOptions::passkey(&rp_id, user, Vec::new());
    creation.timeout = ttl();
    // Ask for credProtect where the authenticator has it, but do not make
    // the browser refuse authenticators without it (CTAP 2.0 keys): user
    // verification is required at every sign-in anyway.
    creation.extensions.cred_protect =
        CredProtect::UserVerificationRequired(ExtensionInfo::AllowDontEnforceValue);
    let (server, client) = creation.start_ceremony().map_err(|_| Refused::Malformed)?;
    let options = serde_json::to_value(&client).map_err(|_| Refused::Malformed)?;
    let challenge = server.sent_challenge().0;
    Ok(RegistrationStart {
        server,
        user_handle: user_handle.as_ref().to_vec(),
        options,
        challenge,
    })
}

fn ttl() -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(CEREMONY_TTL_MS as u32).expect("non-zero")
}

/// The browser's registration response, parsed strictly, and the
/// challenge it answers.
pub fn parse_registration(credential: &Value) -> Result<(Registration, u128), Refused> {
    let text = serde_json::to_vec(credential).map_err(|_| Refused::Malformed)?;
    parse_registration_bytes(&text)
}

/// [`parse_registration`] from bytes (the fuzz entry point).
pub fn parse_registration_bytes(text: &[u8]) -> Result<(Registration, u128), Refused> {
    if text.len() > MAX_CREDENTIAL_JSON {
        return Err(Refused::Malformed);
    }
    let reg: Registration = serde_json::from_slice(text).map_err(|_| Refused::Malformed)?;
    let challenge = reg.challenge().map_err(|_| Refused::Malformed)?.0;
    Ok((reg, challenge))
}

/// A verified new credential, in the store's encodings.
#[derive(Debug, Clone)]
pub struct NewCredential {
    pub credential_id: String,
    pub user_handle: String,
    pub public_key: Vec<u8>,
    pub state: Vec<u8>,
    pub sign_count: u32,
}

/// Verifies a registration response against the ceremony it answers.
pub fn finish_registration(
    server: RegistrationServerState<USER_HANDLE_MAX_LEN>,
    party: &Party,
    reg: &Registration,
) -> Result<NewCredential, Refused> {
    let rp_id = party.rp()?;
    let origins = [party.origin.as_str()];
    let options = RegistrationVerificationOptions::<&str, &str> {
        allowed_origins: &origins,
        ..RegistrationVerificationOptions::default()
    };
    let cred = server
        .verify(&rp_id, reg, &options)
        .map_err(registration_refusal)?;
    let (id, _transports, user, static_state, dynamic_state, _metadata) = cred.into_parts();
    let public_key = static_state.encode().map_err(|_| Refused::Malformed)?;
    let state = dynamic_state.encode().map_err(|_| Refused::Malformed)?;
    Ok(NewCredential {
        credential_id: b64(id.as_ref()),
        user_handle: b64(user.as_ref()),
        public_key,
        state: state.to_vec(),
        sign_count: dynamic_state.sign_count,
    })
}

fn registration_refusal(e: RegCeremonyErr) -> Refused {
    match e {
        RegCeremonyErr::OriginMismatch
        | RegCeremonyErr::CrossOrigin
        | RegCeremonyErr::TopOriginMismatch => Refused::Origin,
        RegCeremonyErr::RpIdHashMismatch => Refused::RpId,
        RegCeremonyErr::Timeout => Refused::ChallengeUnknown,
        RegCeremonyErr::CollectedClientData(_) | RegCeremonyErr::AttestationObject(_) => {
            Refused::Malformed
        }
        _ => Refused::Verification,
    }
}

/// A sign-in begun.
pub struct SigninStart {
    pub server: DiscoverableAuthenticationServerState,
    /// `PublicKeyCredentialRequestOptionsJSON`.
    pub options: Value,
    /// The challenge as the browser sees it (base64url), which the
    /// device signature covers.
    pub challenge_text: String,
    pub challenge: u128,
}

/// Request options for a discoverable-credential sign-in on `party`.
pub fn begin_signin(party: &Party) -> Result<SigninStart, Refused> {
    use webauthn_rp::request::TimedCeremony as _;
    let rp_id = party.rp()?;
    let mut request = DiscoverableCredentialRequestOptions::passkey(&rp_id);
    request.0.timeout = ttl();
    let (server, client) = request.start_ceremony().map_err(|_| Refused::Malformed)?;
    let options = serde_json::to_value(&client).map_err(|_| Refused::Malformed)?;
    let challenge_text = options
        .get("challenge")
        .and_then(Value::as_str)
        .ok_or(Refused::Malformed)?
        .to_string();
    let challenge = server.sent_challenge().0;
    Ok(SigninStart {
        server,
        options,
        challenge_text,
        challenge,
    })
}

/// The browser's assertion, parsed strictly, with the challenge it
/// answers and the credential id it names.
pub struct Assertion {
    pub auth: DiscoverableAuthentication64,
    pub challenge: u128,
    pub credential_id: String,
}

pub fn parse_assertion(credential: &Value) -> Result<Assertion, Refused> {
    let text = serde_json::to_vec(credential).map_err(|_| Refused::Malformed)?;
    parse_assertion_bytes(&text)
}

/// [`parse_assertion`] from bytes (the fuzz entry point).
pub fn parse_assertion_bytes(text: &[u8]) -> Result<Assertion, Refused> {
    if text.len() > MAX_CREDENTIAL_JSON {
        return Err(Refused::Malformed);
    }
    let auth: DiscoverableAuthentication64 =
        serde_json::from_slice(text).map_err(|_| Refused::Malformed)?;
    let challenge = auth.challenge().map_err(|_| Refused::Malformed)?.0;
    let credential_id = b64(auth.raw_id().as_ref());
    Ok(Assertion {
        auth,
        challenge,
        credential_id,
    })
}

/// A stored passkey's credential, as the store keeps it.
pub struct StoredCredential<'a> {
    pub credential_id: &'a str,
    pub user_handle: &'a str,
    pub public_key: &'a [u8],
    pub state: &'a [u8],
}

/// What a verified sign-in changes in the stored passkey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Used {
    pub state: Vec<u8>,
    pub sign_count: u32,
}

/// Verifies an assertion against the ceremony and the stored passkey.
pub fn finish_signin(
    server: DiscoverableAuthenticationServerState,
    party: &Party,
    assertion: &Assertion,
    stored: &StoredCredential<'_>,
) -> Result<Used, Refused> {
    let rp_id = party.rp()?;
    let id_raw = unb64(stored.credential_id).ok_or(Refused::Malformed)?;
    let id = CredentialId::<&[u8]>::decode(id_raw.as_slice()).map_err(|_| Refused::Malformed)?;
    let user_raw = unb64(stored.user_handle).ok_or(Refused::Malformed)?;
    let user_arr: [u8; 64] = user_raw.try_into().map_err(|_| Refused::Malformed)?;
    let user = UserHandle64::decode(user_arr).map_err(|_| Refused::Malformed)?;
    type Key = CompressedPubKey<[u8; 32], [u8; 32], [u8; 48], Vec<u8>>;
    let static_state =
        StaticState::<Key>::decode(stored.public_key).map_err(|_| Refused::Malformed)?;
    let dyn_arr: [u8; 7] = stored.state.try_into().map_err(|_| Refused::Malformed)?;
    let dynamic_state = DynamicState::decode(dyn_arr).map_err(|_| Refused::Malformed)?;
    let mut cred = AuthenticatedCredential::new(id, &user, static_state, dynamic_state)
        .map_err(|_| Refused::Malformed)?;
    let origins = [party.origin.as_str()];
    let options = AuthenticationVerificationOptions::<&str, &str> {
        allowed_origins: &origins,
        backup_requirement: Some(BackupReq::None),
        auth_attachment_enforcement: AuthenticatorAttachmentEnforcement::Ignore(false),
        sig_counter_enforcement: SignatureCounterEnforcement::Fail,
        ..AuthenticationVerificationOptions::default()
    };
    server
        .verify(&rp_id, &assertion.auth, &mut cred, &options)
        .map_err(signin_refusal)?;
    let after = cred.dynamic_state();
    let state = after.encode().map_err(|_| Refused::Malformed)?;
    Ok(Used {
        state: state.to_vec(),
        sign_count: after.sign_count,
    })
}

fn signin_refusal(e: AuthCeremonyErr) -> Refused {
    match e {
        AuthCeremonyErr::OriginMismatch
        | AuthCeremonyErr::CrossOrigin
        | AuthCeremonyErr::TopOriginMismatch => Refused::Origin,
        AuthCeremonyErr::RpIdHashMismatch => Refused::RpId,
        AuthCeremonyErr::SignatureCounter => Refused::SignCount,
        AuthCeremonyErr::Timeout => Refused::ChallengeUnknown,
        AuthCeremonyErr::CredentialIdMismatch
        | AuthCeremonyErr::UserHandleMismatch
        | AuthCeremonyErr::MissingUserHandle => Refused::UnknownCredential,
        AuthCeremonyErr::CollectedClientData(_) | AuthCeremonyErr::AuthenticatorData(_) => {
            Refused::Malformed
        }
        _ => Refused::Verification,
    }
}

/// The WebAuthn user name for a passkey labelled `label`: `clawgate-`
/// and the label's letters and digits, other characters as `-` (some
/// password managers show it beside the display name).
pub fn user_name(label: &str) -> String {
    let mut out = String::from("clawgate");
    let mut dash = false;
    for c in label.chars() {
        if c.is_ascii_alphanumeric() {
            if !dash {
                out.push('-');
                dash = true;
            }
            out.push(c.to_ascii_lowercase());
        } else {
            dash = false;
        }
        if out.len() >= 64 {
            break;
        }
    }
    out
}

/// A passkey label: trimmed, 1 to [`MAX_LABEL_CHARS`] characters, no
/// control characters.
pub fn label(raw: &str) -> Option<String> {
    let t = raw.trim();
    let n = t.chars().count();
    ((1..=MAX_LABEL_CHARS).contains(&n) && !t.chars().any(char::is_control)).then(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parties() {
        let p = Party::of_origin("http://localhost:18789").unwrap();
        assert_eq!(p.rp_id, "localhost");
        assert_eq!(p.origin, "http://localhost:18789");
        assert_eq!(
            Party::of_origin("https://gw.example.com").unwrap().rp_id,
            "gw.example.com"
        );
        assert_eq!(
            Party::of_origin("http://127.0.0.1:18789"),
            Err(Refused::NotSecure)
        );
        assert_eq!(Party::of_origin("http://[::1]:1"), Err(Refused::NotSecure));
        assert_eq!(
            Party::of_origin("http://gw.example.com"),
            Err(Refused::NotSecure)
        );
        assert_eq!(
            Party::of_origin("https://10.0.0.1"),
            Err(Refused::NotSecure)
        );
        assert_eq!(Party::of_origin("null"), Err(Refused::Origin));
        assert_eq!(Party::of_origin("ftp://x"), Err(Refused::Origin));
    }

    #[test]
    fn malformed_credentials_are_refused_not_panics() {
        for text in [
            &b""[..],
            b"{}",
            b"null",
            b"[1,2]",
            b"{\"id\":\"AA\",\"rawId\":\"AA\",\"type\":\"public-key\",\"response\":{}}",
        ] {
            assert_eq!(
                parse_registration_bytes(text).err(),
                Some(Refused::Malformed)
            );
            assert!(parse_assertion_bytes(text).is_err());
        }
        assert!(parse_assertion_bytes(&vec![b' '; MAX_CREDENTIAL_JSON + 1]).is_err());
    }

    #[test]
    fn user_names() {
        assert_eq!(user_name("ui laptop"), "clawgate-ui-laptop");
        assert_eq!(user_name("Büro PC #2"), "clawgate-b-ro-pc-2");
        assert_eq!(user_name("   "), "clawgate");
        assert!(user_name(&"x".repeat(200)).len() <= 65);
        let party = Party::of_origin("http://localhost:1").unwrap();
        for label in ["ui laptop", "Büro PC #2", "📱 phone", "a"] {
            let start = begin_registration(&party, label).unwrap();
            assert_eq!(start.options["user"]["displayName"], label);
            assert_eq!(
                start.options["extensions"]["enforceCredentialProtectionPolicy"], false,
                "{}",
                start.options
            );
        }
    }

    #[test]
    fn labels() {
        assert_eq!(label("  laptop "), Some("laptop".into()));
        assert_eq!(label(""), None);
        assert_eq!(label("a\u{7}b"), None);
        assert_eq!(label(&"x".repeat(65)), None);
    }
}
