//! The state directory lock: `<state-dir>/gateway.lock`, held (an exclusive
//! advisory lock, `flock` on Unix) by the gateway that runs on the directory
//! for as long as it runs, by `clawgate restore` while it swaps the
//! database, and by `clawgate backup` while it copies one no gateway runs
//! on. A second gateway, or a restore under a running gateway, is
//! refused with the holder's pid.
//!
//! The kernel drops the lock when its holder exits, however it exits
//! (`kill -9` included), so a stale lock file never blocks anything: only a
//! live holder does. The file itself is left in place (removing it would
//! race with a process that has just opened it).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the state directory.
pub const LOCK_FILE_NAME: &str = "gateway.lock";

/// An exclusive hold on a state directory; released when dropped.
#[derive(Debug)]
pub struct StateLock {
    path: PathBuf,
    // Holding the open file is holding the lock.
    _file: File,
}

/// Why the state directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "the state directory {dir} is in use by a running clawgate gateway, backup or restore ({who}); stop it first{fix}",
        dir = dir.display(),
        who = match pid { Some(p) => format!("pid {p}"), None => "pid unknown".to_string() },
        fix = match pid { Some(p) => format!(" (kill {p}, or stop its service)"), None => format!(" (see: fuser -v {})", dir.join(LOCK_FILE_NAME).display()) },
    )]
    Held { dir: PathBuf, pid: Option<u32> },
    /// The lock file could not be created, opened or locked.
    #[error("cannot lock the state directory ({path}): {source}", path = path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StateLock {
    /// Takes the lock on `state_dir` (created with mode 0700 when missing)
    /// without waiting, and writes this process's pid into the lock file.
    pub fn acquire(state_dir: &Path) -> Result<StateLock, LockError> {
        let path = state_dir.join(LOCK_FILE_NAME);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        crate::store::ensure_private_dir(state_dir).map_err(io)?;
        let mut options = OpenOptions::new();
        // Not truncated on open: the holder's pid must survive our attempt.
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    dir: state_dir.to_path_buf(),
                    pid: read_pid(&mut file),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let pid = std::process::id();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(format!("{pid}\n").as_bytes()))
            .and_then(|()| file.flush())
            .map_err(io)?;
        Ok(StateLock { path, _file: file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}
