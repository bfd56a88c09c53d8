//! Private files in the client state directory.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

/// Reading or writing the client state failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: {reason}; move the file aside to start over (this device will need approval again)"
    )]
    Invalid { path: String, reason: String },
}

impl StorageError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> StorageError {
        StorageError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn invalid(path: &Path, reason: impl Into<String>) -> StorageError {
        StorageError::Invalid {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }
}

/// The default client state directory: `$CLAWGATE_CLIENT_DIR`, else
/// `~/.clawgate/client`.
pub fn default_client_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CLAWGATE_CLIENT_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".clawgate").join("client")
}

/// Creates `dir` (and parents) and makes it 0700.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<(), StorageError> {
    fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| StorageError::io(dir, e))?;
    }
    Ok(())
}

/// Creates (truncating) a file only its owner can read.
pub(crate) fn create_private(path: &Path) -> Result<File, StorageError> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path).map_err(|e| StorageError::io(path, e))
}

/// A sibling temp path unique to this process and call.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ))
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
