//! What `gateway run` says about TLS at start: the schemes of the URLs it
//! prints and the certificate's two pins.

use clawgate_gateway::tls::CertInfo;
use tracing::info;

/// (WebSocket scheme, dashboard scheme).
pub fn schemes(tls: bool) -> (&'static str, &'static str) {
    if tls {
        ("wss", "https")
    } else {
        ("ws", "http")
    }
}

/// Prints and logs both pins of the certificate served, so clients can be
/// pinned to it (`--tls-fingerprint` takes either).
pub fn announce(info: &CertInfo) {
    let kind = if info.self_signed { "self-signed " } else { "" };
    crate::say!(
        "TLS: {kind}certificate {} (SHA-256 {})",
        info.cert_path.display(),
        info.certificate_pin()
    );
    crate::say!(
        "TLS public key pin: {} (clients: --tls-fingerprint with either pin; this one survives renewals that keep the key)",
        info.public_key_pin()
    );
    info!(
        certificate = %info.cert_path.display(),
        certificate_sha256 = %info.certificate_pin(),
        public_key_pin = %info.public_key_pin(),
        "TLS on"
    );
}
