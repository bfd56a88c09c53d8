//! The client's Ed25519 device identity, created on first use and kept in
//! the client state directory (`identity.json`, 0600, directory 0700).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::storage::{self, StorageError};

/// File name of the identity inside the client state directory.
pub const IDENTITY_FILE: &str = "identity.json";

/// A device identity: the key pair and the id the gateway derives from it
/// (hex SHA-256 of the raw public key).
#[derive(Clone)]
pub struct DeviceIdentity {
    device_id: String,
    key: SigningKey,
}

impl std::fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceIdentity")
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityFile {
    version: u32,
    device_id: String,
    /// Raw 32-byte public key, base64url.
    public_key: String,
    /// Raw 32-byte secret seed, base64url.
    private_key: String,
    created_at_ms: u64,
}

impl DeviceIdentity {
    /// A new random identity (not saved).
    pub fn generate() -> DeviceIdentity {
        DeviceIdentity::from_seed(rand::random())
    }

    /// The identity for a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> DeviceIdentity {
        let key = SigningKey::from_bytes(&seed);
        DeviceIdentity {
            device_id: device_id_for(&key.verifying_key()),
            key,
        }
    }

    /// Loads the identity in `dir`, creating and saving one if there is
    /// none. Two processes racing here end up with the same identity.
    pub fn load_or_create(dir: &Path) -> Result<DeviceIdentity, StorageError> {
        if let Some(found) = DeviceIdentity::load(dir)? {
            return Ok(found);
        }
        storage::ensure_private_dir(dir)?;
        let identity = DeviceIdentity::generate();
        let file = IdentityFile {
            version: 1,
            device_id: identity.device_id.clone(),
            public_key: identity.public_key(),
            private_key: URL_SAFE_NO_PAD.encode(identity.key.to_bytes()),
            created_at_ms: storage::now_ms(),
        };
        let body = serde_json::to_vec_pretty(&file).expect("identity serialises");
        // Write a private temp file, then link it into place: the link fails
        // if another process created the identity first, and then theirs wins.
        let path = dir.join(IDENTITY_FILE);
        let tmp = storage::temp_path(&path);
        let mut f = storage::create_private(&tmp)?;
        f.write_all(&body)
            .and_then(|_| f.sync_all())
            .map_err(|e| StorageError::io(&tmp, e))?;
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(identity),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => DeviceIdentity::load(dir)?
                .ok_or_else(|| StorageError::invalid(&path, "identity vanished while loading")),
            Err(e) => Err(StorageError::io(&path, e)),
        }
    }

    /// Loads the identity in `dir` if there is one; never creates one.
    pub fn load(dir: &Path) -> Result<Option<DeviceIdentity>, StorageError> {
        let path = dir.join(IDENTITY_FILE);
        let body = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(&path, e)),
        };
        let file: IdentityFile = serde_json::from_slice(&body)
            .map_err(|e| StorageError::invalid(&path, format!("not an identity file ({e})")))?;
        let seed: [u8; 32] = URL_SAFE_NO_PAD
            .decode(file.private_key.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| StorageError::invalid(&path, "privateKey is not a 32-byte key"))?;
        let identity = DeviceIdentity::from_seed(seed);
        if identity.public_key() != file.public_key.trim() {
            return Err(StorageError::invalid(
                &path,
                "publicKey does not match privateKey",
            ));
        }
        if identity.device_id != file.device_id {
            return Err(StorageError::invalid(
                &path,
                "deviceId is not the SHA-256 of the public key",
            ));
        }
        Ok(Some(identity))
    }

    /// The device id: 64 lower-case hex characters.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The raw public key, base64url without padding (the wire form).
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.verifying_key().as_bytes())
    }

    /// Signs `payload`, returning the base64url signature.
    pub fn sign(&self, payload: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.key.sign(payload.as_bytes()).to_bytes())
    }

    /// Where the identity of a client state directory lives.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(IDENTITY_FILE)
    }
}

/// Hex SHA-256 of the raw public key, as the gateway derives device ids.
pub fn device_id_for(key: &VerifyingKey) -> String {
    clawgate_protocol::device_auth::device_id(key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reloaded_with_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("client");
        let a = DeviceIdentity::load_or_create(&dir).unwrap();
        let b = DeviceIdentity::load_or_create(&dir).unwrap();
        assert_eq!(a.device_id(), b.device_id());
        assert_eq!(a.device_id().len(), 64);
        assert_eq!(a.public_key(), b.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join(IDENTITY_FILE)), 0o600);
        }
    }

    #[test]
    fn load_never_creates() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(DeviceIdentity::load(tmp.path()).unwrap().is_none());
        assert!(!tmp.path().join(IDENTITY_FILE).exists());
    }

    #[test]
    fn a_tampered_file_is_refused_with_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let a = DeviceIdentity::load_or_create(tmp.path()).unwrap();
        let path = tmp.path().join(IDENTITY_FILE);
        let text = fs::read_to_string(&path).unwrap();
        let other = DeviceIdentity::generate();
        fs::write(&path, text.replace(a.device_id(), other.device_id())).unwrap();
        let err = DeviceIdentity::load(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("deviceId"), "{err}");
        assert!(err.contains(IDENTITY_FILE), "{err}");
    }

    #[test]
    fn concurrent_creation_agrees_on_one_identity() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let ids: Vec<String> = (0..8)
            .map(|_| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    DeviceIdentity::load_or_create(&dir)
                        .unwrap()
                        .device_id()
                        .to_string()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    }
}
