//! Reading the certificate chain, key and CA bundle from PEM files. Every
//! refusal names the config key of the file at fault and how to fix it;
//! none quotes the files' contents.

use std::path::Path;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::sign::CertifiedKey;

use super::{Source, TlsError};

/// The config keys of the three files, or (for a generated certificate)
/// the setting that made them.
struct Keys {
    cert: &'static str,
    key: &'static str,
}

impl Keys {
    fn of(source: &Source) -> Keys {
        if source.self_signed {
            Keys {
                cert: "gateway.tls.autoGenerate",
                key: "gateway.tls.autoGenerate",
            }
        } else {
            Keys {
                cert: "gateway.tls.certPath",
                key: "gateway.tls.keyPath",
            }
        }
    }
}

/// The fix for a bad file: point the key at a good one (or, for the
/// generated pair, let it be generated again).
fn fix(source: &Source, key: &'static str) -> String {
    if source.self_signed {
        let dir = source.cert.parent().unwrap_or(Path::new("."));
        format!(
            "move {} aside and restart to generate a new self-signed certificate",
            dir.display()
        )
    } else {
        format!(
            "fix the file or point the setting at another with: clawgate config set {key} /path/to/file.pem"
        )
    }
}

fn read(path: &Path, key: &'static str, source: &Source) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError {
        key,
        problem: format!("cannot read {}: {e}", path.display()),
        fix: fix(source, key),
    })
}

fn certificates(
    path: &Path,
    key: &'static str,
    source: &Source,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path, key, source)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError {
            key,
            problem: format!("{} is not valid PEM: {e}", path.display()),
            fix: fix(source, key),
        })?;
    if certs.is_empty() {
        return Err(TlsError {
            key,
            problem: format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
            fix: fix(source, key),
        });
    }
    Ok(certs)
}

/// The chain (leaf, then the CA bundle) and the key, checked to belong
/// together.
pub(super) fn certified_key(
    source: &Source,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let keys = Keys::of(source);
    let mut chain = certificates(&source.cert, keys.cert, source)?;
    if clawgate_client::tls::spki_fingerprint_of(chain[0].as_ref()).is_none() {
        return Err(TlsError {
            key: keys.cert,
            problem: format!(
                "the first certificate in {} is not a valid X.509 certificate",
                source.cert.display()
            ),
            fix: fix(source, keys.cert),
        });
    }
    if let Some(ca) = &source.ca {
        chain.extend(certificates(ca, "gateway.tls.caPath", source)?);
    }
    let bytes = read(&source.key, keys.key, source)?;
    let private = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError {
        key: keys.key,
        problem: match e {
            rustls::pki_types::pem::Error::NoItemsFound => format!(
                "{} holds no PEM private key (-----BEGIN PRIVATE KEY-----)",
                source.key.display()
            ),
            e => format!(
                "{} is not a valid PEM private key: {e}",
                source.key.display()
            ),
        },
        fix: fix(source, keys.key),
    })?;
    CertifiedKey::from_der(chain, private, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError {
            key: keys.key,
            problem: format!(
                "the key in {} does not belong to the certificate in {}",
                source.key.display(),
                source.cert.display()
            ),
            fix: if source.self_signed {
                fix(source, keys.key)
            } else {
                format!("point {} and {} at a matching pair", keys.cert, keys.key)
            },
        },
        _ => TlsError {
            key: keys.key,
            problem: format!(
                "{} is not a usable private key (ECDSA P-256/P-384, Ed25519 or RSA): {e}",
                source.key.display()
            ),
            fix: fix(source, keys.key),
        },
    })
}

/// The first certificate in a PEM file, if it can be read.
pub(super) fn first_certificate(path: &Path) -> Option<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path).ok()?.next()?.ok()
}
