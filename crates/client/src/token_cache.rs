//! Device tokens the client was issued, keyed by (gateway origin, device
//! id, role) with the scopes they were issued for. Writes and deletes are
//! compare-and-swap, so a token a concurrent connect or rotation stored is
//! never overwritten with an older one.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use clawgate_protocol::Secret;
use serde::{Deserialize, Serialize};

use crate::storage::{self, StorageError};

/// File name of the token cache inside the client state directory.
pub const TOKENS_FILE: &str = "device-tokens.json";
const LOCK_FILE: &str = "device-tokens.lock";

/// Which token: the gateway origin (`ws://127.0.0.1:18789`), the device and
/// the role.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub gateway: String,
    pub device_id: String,
    pub role: String,
}

/// A cached device token.
#[derive(Debug, Clone)]
pub struct CachedToken {
    pub token: Secret,
    /// The scopes it was issued for.
    pub scopes: Vec<String>,
    pub updated_at_ms: u64,
}

impl CachedToken {
    pub fn new(token: impl Into<String>, scopes: Vec<String>) -> CachedToken {
        let mut scopes = scopes;
        scopes.sort();
        scopes.dedup();
        CachedToken {
            token: Secret::new(token),
            scopes,
            updated_at_ms: storage::now_ms(),
        }
    }
}

/// Where device tokens are kept. Implement it to keep tokens in your own
/// storage (a keychain, a database).
pub trait TokenCache: Send + Sync {
    /// The token for `key`, if any.
    fn load(&self, key: &TokenKey) -> Result<Option<CachedToken>, StorageError>;
    /// Stores `new` if the current token for `key` is `expected` (`None`:
    /// there is none). Returns whether it was stored.
    fn store(
        &self,
        key: &TokenKey,
        expected: Option<&str>,
        new: CachedToken,
    ) -> Result<bool, StorageError>;
    /// Deletes the token for `key` if it is still `expected`. Returns whether
    /// it was deleted.
    fn remove(&self, key: &TokenKey, expected: &str) -> Result<bool, StorageError>;
}

/// Tokens in memory only (tests, short-lived tools).
#[derive(Debug, Default)]
pub struct MemoryTokenCache {
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
}

impl TokenCache for MemoryTokenCache {
    fn load(&self, key: &TokenKey) -> Result<Option<CachedToken>, StorageError> {
        Ok(self.tokens.lock().expect("token cache").get(key).cloned())
    }

    fn store(
        &self,
        key: &TokenKey,
        expected: Option<&str>,
        new: CachedToken,
    ) -> Result<bool, StorageError> {
        let mut tokens = self.tokens.lock().expect("token cache");
        if tokens.get(key).map(|t| t.token.expose()) != expected {
            return Ok(false);
        }
        tokens.insert(key.clone(), new);
        Ok(true)
    }

    fn remove(&self, key: &TokenKey, expected: &str) -> Result<bool, StorageError> {
        let mut tokens = self.tokens.lock().expect("token cache");
        if tokens.get(key).map(|t| t.token.expose()) != Some(expected) {
            return Ok(false);
        }
        tokens.remove(key);
        Ok(true)
    }
}

/// Tokens in `device-tokens.json` in the client state directory (0600,
/// directory 0700). Every change holds an exclusive lock on a sibling lock
/// file and replaces the file atomically, so processes sharing the
/// directory see each other's writes and never interleave them.
#[derive(Debug, Clone)]
pub struct FileTokenCache {
    dir: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokensFile {
    version: u32,
    tokens: Vec<TokenRow>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenRow {
    gateway: String,
    device_id: String,
    role: String,
    token: String,
    scopes: Vec<String>,
    updated_at_ms: u64,
}

impl TokenRow {
    fn into_entry(self) -> (TokenKey, CachedToken) {
        (
            TokenKey {
                gateway: self.gateway,
                device_id: self.device_id,
                role: self.role,
            },
            CachedToken {
                token: Secret::new(self.token),
                scopes: self.scopes,
                updated_at_ms: self.updated_at_ms,
            },
        )
    }

    fn is(&self, key: &TokenKey) -> bool {
        self.gateway == key.gateway && self.device_id == key.device_id && self.role == key.role
    }
}

impl FileTokenCache {
    pub fn new(dir: impl Into<PathBuf>) -> FileTokenCache {
        FileTokenCache { dir: dir.into() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(TOKENS_FILE)
    }

    /// Every cached token (for diagnostics such as `clawgate doctor`).
    pub fn list(&self) -> Result<Vec<(TokenKey, CachedToken)>, StorageError> {
        Ok(self
            .read()?
            .tokens
            .into_iter()
            .map(TokenRow::into_entry)
            .collect())
    }

    fn read(&self) -> Result<TokensFile, StorageError> {
        let path = self.path();
        match fs::read(&path) {
            Ok(body) => serde_json::from_slice(&body)
                .map_err(|e| StorageError::invalid(&path, format!("not a token cache ({e})"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokensFile {
                version: 1,
                tokens: Vec::new(),
            }),
            Err(e) => Err(StorageError::io(&path, e)),
        }
    }

    fn write(&self, file: &TokensFile) -> Result<(), StorageError> {
        let path = self.path();
        let tmp = storage::temp_path(&path);
        let body = serde_json::to_vec_pretty(file).expect("tokens serialise");
        let mut f = storage::create_private(&tmp)?;
        f.write_all(&body)
            .and_then(|_| f.sync_all())
            .map_err(|e| StorageError::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            StorageError::io(&path, e)
        })
    }

    /// Runs `change` on the file under the exclusive lock; writes the file
    /// back when `change` returns true.
    fn locked<T>(
        &self,
        change: impl FnOnce(&mut TokensFile) -> (bool, T),
    ) -> Result<T, StorageError> {
        storage::ensure_private_dir(&self.dir)?;
        let lock_path = self.dir.join(LOCK_FILE);
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let lock = opts
            .open(&lock_path)
            .map_err(|e| StorageError::io(&lock_path, e))?;
        lock.lock().map_err(|e| StorageError::io(&lock_path, e))?;
        let mut file = self.read()?;
        let (dirty, out) = change(&mut file);
        if dirty {
            file.version = 1;
            self.write(&file)?;
        }
        drop(lock);
        Ok(out)
    }
}

impl TokenCache for FileTokenCache {
    fn load(&self, key: &TokenKey) -> Result<Option<CachedToken>, StorageError> {
        Ok(self
            .read()?
            .tokens
            .into_iter()
            .find(|r| r.is(key))
            .map(|r| r.into_entry().1))
    }

    fn store(
        &self,
        key: &TokenKey,
        expected: Option<&str>,
        new: CachedToken,
    ) -> Result<bool, StorageError> {
        self.locked(|file| {
            let at = file.tokens.iter().position(|r| r.is(key));
            let current = at.map(|i| file.tokens[i].token.as_str());
            if current != expected {
                return (false, false);
            }
            let row = TokenRow {
                gateway: key.gateway.clone(),
                device_id: key.device_id.clone(),
                role: key.role.clone(),
                token: new.token.expose().to_string(),
                scopes: new.scopes,
                updated_at_ms: new.updated_at_ms,
            };
            match at {
                Some(i) => file.tokens[i] = row,
                None => file.tokens.push(row),
            }
            (true, true)
        })
    }

    fn remove(&self, key: &TokenKey, expected: &str) -> Result<bool, StorageError> {
        if !Path::new(&self.path()).exists() {
            return Ok(false);
        }
        self.locked(|file| {
            match file
                .tokens
                .iter()
                .position(|r| r.is(key) && r.token == expected)
            {
                Some(i) => {
                    file.tokens.remove(i);
                    (true, true)
                }
                None => (false, false),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(role: &str) -> TokenKey {
        TokenKey {
            gateway: "ws://127.0.0.1:18789".into(),
            device_id: "d".repeat(64),
            role: role.into(),
        }
    }

    fn exercise(cache: &dyn TokenCache) {
        let k = key("operator");
        assert!(cache.load(&k).unwrap().is_none());
        assert!(
            cache
                .store(
                    &k,
                    None,
                    CachedToken::new("t1", vec!["operator.read".into()])
                )
                .unwrap()
        );
        // A writer that saw no token loses against the stored one.
        assert!(
            !cache
                .store(&k, None, CachedToken::new("t0", vec![]))
                .unwrap()
        );
        // A writer that saw t1 replaces it.
        assert!(
            cache
                .store(&k, Some("t1"), CachedToken::new("t2", vec![]))
                .unwrap()
        );
        // A stale writer (saw t1) does not overwrite t2.
        assert!(
            !cache
                .store(&k, Some("t1"), CachedToken::new("t3", vec![]))
                .unwrap()
        );
        assert_eq!(cache.load(&k).unwrap().unwrap().token.expose(), "t2");
        // Deleting a token that was already replaced does nothing.
        assert!(!cache.remove(&k, "t1").unwrap());
        assert!(cache.load(&key("node")).unwrap().is_none());
        assert!(cache.remove(&k, "t2").unwrap());
        assert!(cache.load(&k).unwrap().is_none());
    }

    #[test]
    fn memory_cache_is_compare_and_swap() {
        exercise(&MemoryTokenCache::default());
    }

    #[test]
    fn file_cache_is_compare_and_swap_and_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("client");
        let cache = FileTokenCache::new(&dir);
        exercise(&cache);
        cache
            .store(
                &key("operator"),
                None,
                CachedToken::new("kept", vec!["operator.admin".into()]),
            )
            .unwrap();
        let again = FileTokenCache::new(&dir).load(&key("operator")).unwrap();
        assert_eq!(again.unwrap().scopes, vec!["operator.admin".to_string()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join(TOKENS_FILE)), 0o600);
        }
    }

    #[test]
    fn concurrent_writers_each_win_exactly_once() {
        // Eight threads all try to replace "seed": CAS lets exactly one win.
        let tmp = tempfile::tempdir().unwrap();
        let cache = FileTokenCache::new(tmp.path());
        let k = key("operator");
        cache
            .store(&k, None, CachedToken::new("seed", vec![]))
            .unwrap();
        let wins: usize = (0..8)
            .map(|i| {
                let cache = cache.clone();
                let k = k.clone();
                std::thread::spawn(move || {
                    cache
                        .store(&k, Some("seed"), CachedToken::new(format!("w{i}"), vec![]))
                        .unwrap() as usize
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(wins, 1);
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(TOKENS_FILE), "{not json").unwrap();
        let err = FileTokenCache::new(tmp.path())
            .load(&key("operator"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(TOKENS_FILE), "{err}");
    }
}
