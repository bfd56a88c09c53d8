//! Setup codes: the text (and QR content) that hands a device a gateway URL
//! and a single-use bootstrap token, in the reference's format so the
//! OpenClaw apps can scan clawgate's codes: base64url without padding of the
//! UTF-8 JSON `{"url", "bootstrapToken", "expiresAtMs", "tlsFingerprint"?}`,
//! optionally prefixed `oc-pair://`.
//!
//! A setup code never carries the shared secret or a long-lived token: the
//! bootstrap token it holds is redeemed once, for the role and scopes it was
//! minted for, and is worth nothing afterwards.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::Secret;

/// The URL form's prefix (`oc-pair://<setup code>`).
pub const URL_PREFIX: &str = "oc-pair://";

/// Longest setup code accepted (characters, after the prefix). A clawgate
/// code is about 180; the reference's with several fallback URLs stays well
/// under this.
pub const MAX_SETUP_CODE_LEN: usize = 4096;

/// Longest bootstrap token accepted on a connect (`auth.bootstrapToken`).
/// Minted ones are 43 characters.
pub const MAX_BOOTSTRAP_TOKEN_LEN: usize = 512;

/// The decoded content of a setup code.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetupPayload {
    /// The gateway's WebSocket URL (`ws://` or `wss://`).
    pub url: String,
    /// The single-use bootstrap token.
    #[serde(serialize_with = "crate::secret::expose_one")]
    pub bootstrap_token: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// SHA-256 of the gateway's TLS certificate, 64 lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_fingerprint: Option<String>,
}

impl std::fmt::Debug for SetupPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetupPayload")
            .field("url", &self.url)
            .field("bootstrap_token", &self.bootstrap_token)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("tls_fingerprint", &self.tls_fingerprint)
            .finish()
    }
}

/// Why a text is not a usable setup code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SetupCodeError {
    #[error("the setup code is empty")]
    Empty,
    #[error("the setup code is longer than {MAX_SETUP_CODE_LEN} characters")]
    TooLong,
    #[error("the setup code is not base64url text")]
    NotBase64,
    #[error("the setup code does not hold a gateway URL and a bootstrap token")]
    BadPayload,
}

impl SetupPayload {
    /// The setup code text (no prefix).
    pub fn encode(&self) -> String {
        let json = serde_json::to_string(self).expect("a setup payload serialises");
        URL_SAFE_NO_PAD.encode(json.as_bytes())
    }

    /// Reads a setup code, bare or as an `oc-pair://` URL, surrounding
    /// whitespace ignored. Expiry is not checked here: the gateway decides.
    pub fn decode(input: &str) -> Result<SetupPayload, SetupCodeError> {
        let trimmed = input.trim();
        let code = match trimmed.get(..URL_PREFIX.len()) {
            Some(p) if p.eq_ignore_ascii_case(URL_PREFIX) => &trimmed[URL_PREFIX.len()..],
            _ => trimmed,
        };
        if code.is_empty() {
            return Err(SetupCodeError::Empty);
        }
        if code.len() > MAX_SETUP_CODE_LEN {
            return Err(SetupCodeError::TooLong);
        }
        if !code
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err(SetupCodeError::NotBase64);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(code)
            .map_err(|_| SetupCodeError::NotBase64)?;
        let payload: SetupPayload =
            serde_json::from_slice(&bytes).map_err(|_| SetupCodeError::BadPayload)?;
        let url_ok = payload.url.starts_with("ws://") || payload.url.starts_with("wss://");
        let token = payload.bootstrap_token.expose();
        if !url_ok || token.trim().is_empty() || token.len() > MAX_BOOTSTRAP_TOKEN_LEN {
            return Err(SetupCodeError::BadPayload);
        }
        Ok(payload)
    }
}

/// The gateway URL as the reference writes it into a setup code (and
/// checks it when decoding: a URL in another form is refused by the OpenClaw
/// apps and CLI): `ws|wss://host[:port][path]`, the scheme and host in lower
/// case, no credentials, query or fragment, no default port, no lone `/`
/// path. `None` for anything else.
pub fn normalize_gateway_url(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let lower = trimmed.to_ascii_lowercase();
    let (scheme, rest) = if lower.starts_with("ws://") {
        ("ws", &trimmed[5..])
    } else if lower.starts_with("wss://") {
        ("wss", &trimmed[6..])
    } else {
        return None;
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty()
        || authority.contains('@')
        || authority.contains(char::is_whitespace)
        || path.contains(char::is_whitespace)
    {
        return None;
    }
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) => {
            let n: u16 = p.parse().ok()?;
            let default = if scheme == "ws" { 80 } else { 443 };
            (n != default).then_some(n)
        }
    };
    let path = if path == "/" { "" } else { path };
    Some(format!(
        "{scheme}://{}{}{path}",
        host.to_ascii_lowercase(),
        port.map(|p| format!(":{p}")).unwrap_or_default()
    ))
}

/// Whether `text` (say, pasted into a token field) is a setup code. Says
/// nothing about whether its bootstrap token is valid.
pub fn is_setup_code(text: &str) -> bool {
    SetupPayload::decode(text).is_ok()
}

/// The QR code of `text` as rows of `'1'` (dark) and `'0'` (light)
/// modules, without the quiet zone: what the Control UI draws (as SVG
/// rectangles built with DOM calls) and the terminal renders.
pub fn qr_rows(text: &str) -> Option<Vec<String>> {
    let code =
        qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::L).ok()?;
    let width = code.width();
    let colors = code.to_colors();
    Some(
        colors
            .chunks(width)
            .map(|row| {
                row.iter()
                    .map(|c| if *c == qrcode::Color::Dark { '1' } else { '0' })
                    .collect()
            })
            .collect(),
    )
}

/// The QR code of `text` for a terminal: two module rows per line with
/// half blocks, dark on light, with a quiet zone.
pub fn qr_terminal(text: &str) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    let code =
        qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::L).ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

/// The hint given where a setup code was used as the gateway token.
pub const PASTED_AS_TOKEN_HINT: &str = "This is a setup code, not the gateway token: redeem it once on the device that should be paired (scan its QR code in the OpenClaw app, or run: clawgate pair --setup-code <code>).";

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> SetupPayload {
        SetupPayload {
            url: "ws://192.168.1.5:18789".into(),
            bootstrap_token: Secret::new("kn40rTKVkdha6Qair0SBUPriKYmCEchWmVHxVF-0b-w"),
            expires_at_ms: Some(1_800_000_000_000),
            tls_fingerprint: None,
        }
    }

    #[test]
    fn encodes_the_reference_json_in_base64url() {
        let code = payload().encode();
        assert!(!code.contains('=') && !code.contains('+') && !code.contains('/'));
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(&code).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"url":"ws://192.168.1.5:18789","bootstrapToken":"kn40rTKVkdha6Qair0SBUPriKYmCEchWmVHxVF-0b-w","expiresAtMs":1800000000000}"#
        );
        assert_eq!(SetupPayload::decode(&code).unwrap(), payload());
        assert_eq!(
            SetupPayload::decode(&format!("  OC-PAIR://{code}\n")).unwrap(),
            payload()
        );
    }

    #[test]
    fn refuses_what_is_not_a_setup_code() {
        use SetupCodeError::*;
        assert_eq!(SetupPayload::decode(" "), Err(Empty));
        assert_eq!(SetupPayload::decode("a+b"), Err(NotBase64));
        assert_eq!(SetupPayload::decode(&"A".repeat(5000)), Err(TooLong));
        // A gateway token (43 base64url chars) decodes to bytes, not JSON.
        assert_eq!(
            SetupPayload::decode("kn40rTKVkdha6Qair0SBUPriKYmCEchWmVHxVF-0b-w"),
            Err(BadPayload)
        );
        let http = URL_SAFE_NO_PAD.encode(r#"{"url":"http://x","bootstrapToken":"t"}"#);
        assert_eq!(SetupPayload::decode(&http), Err(BadPayload));
        assert!(!is_setup_code("test-token-5f1c2a9e"));
        assert!(is_setup_code(&payload().encode()));
    }

    #[test]
    fn qr_matrix_is_square() {
        let rows = qr_rows(&payload().encode()).unwrap();
        assert!(rows.len() >= 21);
        assert!(rows.iter().all(|r| r.len() == rows.len()));
        // The finder pattern's top-left corner is dark.
        assert!(rows[0].starts_with("1111111"));
        assert!(qr_terminal("x").unwrap().contains('\u{2588}'));
    }

    #[test]
    fn gateway_urls_are_normalised_as_the_reference_does() {
        let n = |s: &str| normalize_gateway_url(s);
        assert_eq!(
            n("ws://127.0.0.1:18789/").as_deref(),
            Some("ws://127.0.0.1:18789")
        );
        assert_eq!(
            n(" WSS://GW.Example:443/ ").as_deref(),
            Some("wss://gw.example")
        );
        assert_eq!(n("ws://h:80/x/?q=1#f").as_deref(), Some("ws://h/x/"));
        assert_eq!(n("ws://[::1]:18789").as_deref(), Some("ws://[::1]:18789"));
        assert_eq!(n("wss://gw/openclaw").as_deref(), Some("wss://gw/openclaw"));
        for bad in ["http://h", "ws://", "ws://u:p@h", "ws://h:99999", "h:1"] {
            assert_eq!(n(bad), None, "{bad}");
        }
    }

    #[test]
    fn debug_redacts_the_token() {
        assert!(!format!("{:?}", payload()).contains("kn40rTK"));
    }
}
