//! TLS for `wss://`: the web PKI by default, or a pin (for gateways with
//! self-signed certificates): the certificate's SHA-256, or its public
//! key's (`sha256/<base64>` of the SubjectPublicKeyInfo, which survives a
//! renewal that keeps the key).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::endpoint::{Fingerprint, PresentedCert, TlsPin};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls configuration for a connection.
pub fn client_config(pin: Option<&TlsPin>) -> Arc<ClientConfig> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let config = match pin {
        Some(fp) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                pin: fp.clone(),
                provider,
            }))
            .with_no_client_auth(),
        None => {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Arc::new(config)
}

/// The SHA-256 fingerprint of a DER certificate.
pub fn fingerprint_of(der: &[u8]) -> Fingerprint {
    Fingerprint(Sha256::digest(der).into())
}

/// The SHA-256 of a DER certificate's SubjectPublicKeyInfo (the public-key
/// pin), or `None` when it does not parse as an X.509 certificate.
pub fn spki_fingerprint_of(der: &[u8]) -> Option<Fingerprint> {
    let cert = CertificateDer::from(der);
    let parsed = webpki::EndEntityCert::try_from(&cert).ok()?;
    let spki = parsed.subject_public_key_info();
    Some(Fingerprint(Sha256::digest(spki.as_ref()).into()))
}

/// Both pins of a DER certificate.
pub fn presented(der: &[u8]) -> PresentedCert {
    PresentedCert {
        certificate: fingerprint_of(der),
        public_key: spki_fingerprint_of(der),
    }
}

/// A `wss://` server presented a certificate that does not match the pin;
/// says what it did present, so the user can check it and pin that.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the gateway's certificate does not match the pinned {pinned}: it presented {presented}")]
pub struct PinMismatch {
    pub pinned: TlsPin,
    pub presented: PresentedCert,
}

/// Accepts exactly the server certificate the pin names; the handshake
/// signatures are still verified against that certificate's key.
#[derive(Debug)]
struct PinnedVerifier {
    pin: TlsPin,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = presented(end_entity.as_ref());
        if self.pin.matches(&presented) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::Other(rustls::OtherError(Arc::new(
                PinMismatch {
                    pinned: self.pin.clone(),
                    presented,
                },
            ))))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two certificates for one key (a renewal: new serial, new validity)
    /// have different certificate pins and the same public-key pin.
    #[test]
    fn the_public_key_pin_survives_a_renewal_with_the_same_key() {
        use rcgen::PublicKeyData;
        let key = rcgen::KeyPair::generate().unwrap();
        let issue = |serial: u64| {
            let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
            params.serial_number = Some(rcgen::SerialNumber::from(serial));
            params.self_signed(&key).unwrap().der().to_vec()
        };
        let (first, renewed) = (issue(1), issue(2));
        let (a, b) = (presented(&first), presented(&renewed));
        assert_ne!(a.certificate, b.certificate);
        let spki = a.public_key.clone().expect("an X.509 certificate");
        assert_eq!(Some(&spki), b.public_key.as_ref());
        // The pin is the SHA-256 of the key's SubjectPublicKeyInfo DER.
        assert_eq!(
            spki.0,
            <[u8; 32]>::from(Sha256::digest(key.subject_public_key_info()))
        );

        let pin = TlsPin::PublicKey(spki);
        assert!(pin.matches(&a) && pin.matches(&b));
        let cert_pin = TlsPin::Certificate(a.certificate.clone());
        assert!(cert_pin.matches(&a) && !cert_pin.matches(&b));

        // Another key: neither pin matches.
        let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let c = presented(other.cert.der());
        assert!(!pin.matches(&c) && !cert_pin.matches(&c));
        // Not a certificate at all: no public key, so a public-key pin fails.
        assert_eq!(presented(b"junk").public_key, None);
        assert!(!pin.matches(&presented(b"junk")));
    }
}
