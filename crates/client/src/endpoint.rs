//! Gateway URLs: parsing, the origin tokens are cached under, and whether
//! an endpoint is trusted enough for the one device-token retry.

use std::net::IpAddr;

use tokio_tungstenite::tungstenite::http::Uri;

/// A parsed gateway URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `ws` or `wss` (`http`/`https` are accepted and mapped).
    pub scheme: String,
    /// Host without IPv6 brackets, lower-cased.
    pub host: String,
    pub port: u16,
    /// Path without a trailing slash ("" for the root).
    pub path: String,
}

impl Endpoint {
    /// Parses `ws://host:port/path` (also `wss`, `http`, `https`). A bare
    /// `host:port` is taken as `ws://`.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let url = url.trim();
        let with_scheme = if url.contains("://") {
            url.to_string()
        } else {
            format!("ws://{url}")
        };
        let uri: Uri = with_scheme
            .parse()
            .map_err(|e| format!("invalid gateway URL {url:?}: {e}"))?;
        let scheme = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("ws") | Some("http") => "ws",
            Some("wss") | Some("https") => "wss",
            other => {
                return Err(format!(
                    "invalid gateway URL {url:?}: scheme {} is not ws:// or wss://",
                    other.unwrap_or("(none)")
                ));
            }
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("invalid gateway URL {url:?}: no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "wss" { 443 } else { 80 });
        let path = uri.path().trim_end_matches('/').to_string();
        Ok(Endpoint {
            scheme: scheme.into(),
            host,
            port,
            path,
        })
    }

    /// `scheme://host:port[/path]`: the key device tokens are cached under.
    pub fn origin(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority(), self.path)
    }

    /// The URL to open: the origin with a trailing slash when there is no path.
    pub fn url(&self) -> String {
        if self.path.is_empty() {
            format!("{}://{}/", self.scheme, self.authority())
        } else {
            self.origin()
        }
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Whether the host is loopback: `localhost`, or an address in
    /// 127.0.0.0/8 or `::1` (parsed as an address: `127.evil.com` is not).
    pub fn is_loopback(&self) -> bool {
        if self.host == "localhost" {
            return true;
        }
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => v4.is_loopback(),
            Ok(IpAddr::V6(v6)) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
            Err(_) => false,
        }
    }

    pub fn is_tls(&self) -> bool {
        self.scheme == "wss"
    }
}

/// Whether a client may send its cached device token together with the
/// shared token for the one retry: a loopback host, or `wss://` with a
/// pin of either kind ([`TlsPin`]: the certificate's SHA-256 or its public
/// key's). Anything else (plain `ws://` to another host, `wss://` without a
/// pin, an unparseable URL) is untrusted.
pub fn is_trusted_retry_endpoint(url: &str, pinned: bool) -> bool {
    match Endpoint::parse(url) {
        Ok(ep) => ep.is_loopback() || (ep.is_tls() && pinned),
        Err(_) => false,
    }
}

/// What a `wss://` connection is pinned to: either kind is a "pinned"
/// endpoint for [`is_trusted_retry_endpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsPin {
    /// The SHA-256 of the whole certificate (DER): changes with every
    /// renewal, even one that keeps the key.
    Certificate(Fingerprint),
    /// The SHA-256 of the certificate's SubjectPublicKeyInfo (DER), written
    /// `sha256/<base64>`: survives a renewal that keeps the key.
    PublicKey(Fingerprint),
}

impl TlsPin {
    /// Parses `sha256/<base64 of 32 bytes>` as a public-key pin and anything
    /// [`Fingerprint::parse`] accepts as a certificate pin.
    pub fn parse(text: &str) -> Result<TlsPin, String> {
        use base64::Engine;
        let t = text.trim();
        if let Some(b64) = t
            .strip_prefix("sha256/")
            .or_else(|| t.strip_prefix("SHA256/"))
            && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64)
            && let Ok(hash) = <[u8; 32]>::try_from(bytes.as_slice())
        {
            return Ok(TlsPin::PublicKey(Fingerprint(hash)));
        }
        Fingerprint::parse(t).map(TlsPin::Certificate).map_err(|_| {
            "a TLS pin is the certificate's SHA-256 (64 hex digits, colons allowed) or the public key's sha256/<base64> (44 characters)".to_string()
        })
    }

    /// Whether the certificate the server presented matches.
    pub fn matches(&self, presented: &PresentedCert) -> bool {
        use clawgate_protocol::secret::constant_time_eq;
        match self {
            TlsPin::Certificate(fp) => constant_time_eq(&fp.0, &presented.certificate.0),
            TlsPin::PublicKey(fp) => presented
                .public_key
                .as_ref()
                .is_some_and(|pk| constant_time_eq(&fp.0, &pk.0)),
        }
    }
}

impl From<Fingerprint> for TlsPin {
    fn from(fp: Fingerprint) -> TlsPin {
        TlsPin::Certificate(fp)
    }
}

impl std::fmt::Display for TlsPin {
    /// The form [`TlsPin::parse`] reads back: colon hex, or `sha256/<base64>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsPin::Certificate(fp) => f.write_str(&fp.to_colon_hex()),
            TlsPin::PublicKey(fp) => f.write_str(&fp.to_spki_pin()),
        }
    }
}

/// The two hashes of a server certificate a client may pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedCert {
    /// SHA-256 of the certificate DER.
    pub certificate: Fingerprint,
    /// SHA-256 of its SubjectPublicKeyInfo DER (`None`: the certificate
    /// does not parse as X.509).
    pub public_key: Option<Fingerprint>,
}

impl std::fmt::Display for PresentedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "certificate SHA-256 {}", self.certificate.to_colon_hex())?;
        match &self.public_key {
            Some(pk) => write!(f, ", public key {}", pk.to_spki_pin()),
            None => Ok(()),
        }
    }
}

/// A SHA-256 certificate fingerprint to pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Parses 64 hex digits, with or without `:` separators and an optional
    /// `sha256:` / `sha256/` prefix, case-insensitive.
    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        let t = text.trim();
        let t = t
            .strip_prefix("sha256:")
            .or_else(|| t.strip_prefix("SHA256:"))
            .or_else(|| t.strip_prefix("sha256/"))
            .unwrap_or(t);
        let hex: String = t.chars().filter(|c| *c != ':').collect();
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(
                "a TLS fingerprint is the certificate's SHA-256: 64 hex digits, colons allowed"
                    .into(),
            );
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).expect("checked hex");
        }
        Ok(Fingerprint(out))
    }

    /// `sha256/<base64>`: the form of a public-key (SPKI) pin.
    pub fn to_spki_pin(&self) -> String {
        use base64::Engine;
        format!(
            "sha256/{}",
            base64::engine::general_purpose::STANDARD.encode(self.0)
        )
    }

    /// `AB:CD:...` form.
    pub fn to_colon_hex(&self) -> String {
        self.0
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_endpoints() {
        for url in [
            "ws://127.0.0.1:18789",
            "ws://127.1.2.3:18789/",
            "ws://localhost:18789",
            "ws://LOCALHOST:18789",
            "ws://[::1]:18789",
            "ws://[::ffff:127.0.0.1]:18789",
            "http://127.0.0.1:18789",
            "wss://127.0.0.1:18789",
        ] {
            assert!(is_trusted_retry_endpoint(url, false), "{url}");
        }
        for url in [
            "ws://127.evil.com:18789",
            "ws://localhost.evil.com:18789",
            "ws://10.0.0.5:18789",
            "ws://gateway.example:18789",
            "wss://gateway.example",
            "ws://[::2]:18789",
            "ws://0.0.0.0:18789",
            "not a url at all",
            "ftp://127.0.0.1/",
            "",
        ] {
            assert!(!is_trusted_retry_endpoint(url, false), "{url}");
        }
        // wss with a pinned fingerprint is trusted; ws to a remote host never is.
        assert!(is_trusted_retry_endpoint("wss://gateway.example", true));
        assert!(is_trusted_retry_endpoint(
            "https://gateway.example:8443",
            true
        ));
        assert!(!is_trusted_retry_endpoint("ws://gateway.example", true));
        assert!(!is_trusted_retry_endpoint("ws://127.evil.com", true));
    }

    #[test]
    fn origins_are_normalised() {
        let o = |u: &str| Endpoint::parse(u).unwrap().origin();
        assert_eq!(o("ws://127.0.0.1:18789/"), "ws://127.0.0.1:18789");
        assert_eq!(o("WS://Example.COM:1/x/?q=1"), "ws://example.com:1/x");
        assert_eq!(o("https://example.com"), "wss://example.com:443");
        assert_eq!(o("127.0.0.1:18789"), "ws://127.0.0.1:18789");
        assert_eq!(o("ws://[::1]:18789"), "ws://[::1]:18789");
        assert!(Endpoint::parse("ws://:80").is_err());
    }

    #[test]
    fn fingerprints_parse_in_common_forms() {
        let hex = "ab".repeat(32);
        let colon = vec!["AB"; 32].join(":");
        assert_eq!(Fingerprint::parse(&hex), Fingerprint::parse(&colon));
        assert_eq!(
            Fingerprint::parse(&format!("sha256:{colon}")).unwrap().0,
            [0xab; 32]
        );
        assert!(Fingerprint::parse("abcd").is_err());
        assert!(Fingerprint::parse(&"zz".repeat(32)).is_err());
        // A public-key pin: sha256/ and base64 of 32 bytes; the same prefix
        // with hex is still a certificate pin.
        let spki = Fingerprint([0xab; 32]).to_spki_pin();
        assert_eq!(spki.len(), "sha256/".len() + 44);
        assert_eq!(
            TlsPin::parse(&spki),
            Ok(TlsPin::PublicKey(Fingerprint([0xab; 32])))
        );
        assert_eq!(TlsPin::parse(&spki).unwrap().to_string(), spki);
        assert_eq!(
            TlsPin::parse(&format!("sha256/{hex}")),
            Ok(TlsPin::Certificate(Fingerprint([0xab; 32])))
        );
        assert!(TlsPin::parse("sha256/AAAA").is_err());
        assert!(TlsPin::parse("").is_err());
        assert_eq!(Fingerprint::parse(&colon).unwrap().to_colon_hex(), colon);
    }
}
