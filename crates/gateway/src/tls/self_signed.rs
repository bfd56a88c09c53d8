//! The self-signed certificate for `gateway.tls.autoGenerate`: generated
//! once (ECDSA P-256) into `<state>/tls/` and reused on every later start,
//! so the pins users copied keep working.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::config::GatewayConfig;

use super::TlsError;

/// The folder in the state directory.
pub const TLS_DIR_NAME: &str = "tls";
pub const CERT_FILE_NAME: &str = "gateway-cert.pem";
/// Written with mode 0600.
pub const KEY_FILE_NAME: &str = "gateway-key.pem";

/// Validity of a generated certificate, in years.
const VALID_YEARS: i32 = 10;

pub(super) fn cert_path(state_dir: &Path) -> PathBuf {
    state_dir.join(TLS_DIR_NAME).join(CERT_FILE_NAME)
}

/// The generated pair's paths; generates it when either file is missing.
pub(super) fn ensure(config: &GatewayConfig) -> Result<(PathBuf, PathBuf), TlsError> {
    let dir = config.state_dir.join(TLS_DIR_NAME);
    let (cert, key) = (dir.join(CERT_FILE_NAME), dir.join(KEY_FILE_NAME));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let failed = |what: String| TlsError {
        key: "gateway.tls.autoGenerate",
        problem: what,
        fix: format!(
            "make {} writable, or set gateway.tls.certPath and gateway.tls.keyPath",
            config.state_dir.display()
        ),
    };
    let (cert_pem, key_pem) = generate(&names(config))
        .map_err(|e| failed(format!("cannot generate a certificate: {e}")))?;
    create_private_dir(&dir)
        .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
    // The key first: a certificate on disk always has its key.
    write_atomically(&key, key_pem.as_bytes(), 0o600)
        .map_err(|e| failed(format!("cannot write {}: {e}", key.display())))?;
    write_atomically(&cert, cert_pem.as_bytes(), 0o644)
        .map_err(|e| failed(format!("cannot write {}: {e}", cert.display())))?;
    tracing::info!(path = %cert.display(), "generated a self-signed TLS certificate");
    Ok((cert, key))
}

/// The names a generated certificate is valid for: loopback, the bind
/// address (unless a wildcard) and this host's name.
fn names(config: &GatewayConfig) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    let bind = config.bind.address();
    if !bind.is_unspecified() && !bind.is_loopback() {
        names.push(bind.to_string());
    }
    if let Some(host) = host_name()
        && !names.contains(&host)
    {
        names.push(host);
    }
    names
}

/// This host's name, when it is a usable DNS name.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()?
        .trim()
        .to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.parse::<IpAddr>().is_err()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    (valid && name != "localhost").then_some(name)
}

/// (certificate PEM, private key PEM).
fn generate(names: &[String]) -> Result<(String, String), rcgen::Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "clawgate gateway (self-signed)");
    let year = current_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + VALID_YEARS, 1, 1);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn current_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Average Gregorian year; a day off at a year boundary does not matter
    // with a year of slack on both ends.
    1970 + (secs / 31_556_952) as i32
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Writes `bytes` to a temporary file in the same folder (created with
/// `mode`) and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("pem.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_is_reused_and_its_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let config = GatewayConfig::loopback(
            dir.path(),
            crate::config::AuthConfig::new(crate::config::AuthMode::None, None, None),
        );
        let (cert, key) = ensure(&config).unwrap();
        let first = std::fs::read(&cert).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        ensure(&config).unwrap();
        assert_eq!(std::fs::read(&cert).unwrap(), first, "generated once");
        let text = String::from_utf8(first).unwrap();
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(!text.contains("PRIVATE KEY"));
    }
}
