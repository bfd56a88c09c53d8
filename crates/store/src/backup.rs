//! Backup and restore of the registry database.
//!
//! [`backup`] copies the database with SQLite's online backup API from its
//! own read-only connection, so it can run while the gateway serves (in WAL
//! mode a reader never blocks the writer). The copy is written to a temp
//! file beside the destination, checked like a file to be restored, synced,
//! and only then put in place: a backup that exists has verified.
//!
//! [`restore`] checks a backup before anything in the state directory
//! changes (a SQLite file, clawgate's tables, a schema version this build
//! can open, `PRAGMA integrity_check`, the audit chain and the other store
//! invariants), on a private copy inside the state directory, so what was
//! checked is what gets swapped in. The swap is a rename; the previous
//! database is kept beside it, its WAL checkpointed into it first (or moved
//! along with it when that fails), so nothing committed is lost.
//!
//! Neither function knows about the gateway: the caller holds the state
//! directory's [`crate::StateLock`] around a restore.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::error::StoreError;
use crate::schema;

/// Pages copied per backup step (1 MiB at SQLite's default page size).
const STEP_PAGES: i32 = 256;
/// Pause between steps, so the copy never takes the gateway's disk for long.
const STEP_PAUSE: Duration = Duration::from_millis(2);
/// A write by the gateway restarts a stepped copy. After this long, the
/// rest is copied in one step: one read transaction, which in WAL mode
/// still does not block the writer.
const STEPPED_FOR: Duration = Duration::from_secs(2);
/// Give up when the source stays locked (not WAL, held by another writer).
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);

/// The tables every clawgate database has.
const TABLES: &[&str] = &[
    "devices",
    "role_tokens",
    "token_hashes",
    "pending_requests",
    "audit_log",
];

/// What a backup file holds. Counts only: never a token hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    pub schema_version: u32,
    pub devices: usize,
    pub role_tokens: usize,
    pub token_hashes: usize,
    pub pending: usize,
    pub audit_rows: u64,
    /// The file's size in bytes.
    pub bytes: u64,
}

/// A finished restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreOutcome {
    pub summary: BackupSummary,
    /// Where the database that was replaced now is (`None`: there was none).
    pub kept: Option<PathBuf>,
}

/// Why a backup or restore did not happen. Each message is one line naming
/// the file, what is wrong and what to do; none carries a stored value.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "no database at {}: nothing to back up (the gateway creates it when it first starts)",
        .0.display()
    )]
    NoDatabase(PathBuf),
    #[error("{} already exists; pass --force to overwrite it, or choose another file name", .0.display())]
    Exists(PathBuf),
    #[error("no file at {}", .0.display())]
    NoFile(PathBuf),
    #[error(
        "{} has a -wal file beside it, so it is a live database or a copy taken without its WAL; take a consistent copy with: clawgate backup FILE",
        .0.display()
    )]
    LiveWal(PathBuf),
    #[error("{} is not a SQLite database ({detail}); give a file written by clawgate backup", path.display())]
    NotSqlite { path: PathBuf, detail: String },
    #[error(
        "{} is a SQLite database but not a clawgate one (no {missing} table); give a file written by clawgate backup",
        path.display()
    )]
    NotClawgate { path: PathBuf, missing: String },
    #[error(
        "{} has schema version {found}, newer than this clawgate supports ({supported}); restore it with the clawgate that wrote it, or upgrade clawgate",
        path.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{} fails SQLite's integrity check ({detail}); the file is damaged: use another backup", path.display())]
    Damaged { path: PathBuf, detail: String },
    #[error(
        "{}: the audit chain does not verify ({detail}); the file was changed after clawgate wrote it: use another backup",
        path.display()
    )]
    AuditChain { path: PathBuf, detail: String },
    #[error(
        "{}: a store invariant does not hold ({detail}); the file was changed after clawgate wrote it: use another backup",
        path.display()
    )]
    Invariant { path: PathBuf, detail: String },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Store(#[from] StoreError),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io { what, path, source }
}

/// Copies the database at `db` into `file` while the gateway may be
/// writing to it, verifies the copy and returns what it holds. `file` gets
/// mode 0600. Unless `overwrite`, an existing `file` is refused and left
/// as it is.
///
/// `held` is the state directory's lock when the caller could take it (no
/// gateway runs): the source is then opened read-write, so SQLite removes
/// the `-wal` and `-shm` it creates when the copy closes. Without it the
/// source is read-only and the running gateway owns those files.
pub fn backup(
    db: &Path,
    file: &Path,
    overwrite: bool,
    held: Option<&crate::StateLock>,
) -> Result<BackupSummary, BackupError> {
    if !db.is_file() {
        return Err(BackupError::NoDatabase(db.to_path_buf()));
    }
    if !overwrite && fs::symlink_metadata(file).is_ok() {
        return Err(BackupError::Exists(file.to_path_buf()));
    }
    let dir = parent_dir(file);
    if !dir.is_dir() {
        return Err(BackupError::Io {
            what: "cannot write the backup into",
            path: dir.to_path_buf(),
            source: std::io::ErrorKind::NotFound.into(),
        });
    }
    let staged = Staged::create(dir, file)?;
    copy_online(db, staged.path(), held.is_some())?;
    let mut summary = verify(staged.path(), file)?;
    sync_file(staged.path())?;
    staged.publish(file, overwrite)?;
    summary.bytes = fs::metadata(file).map_err(io("cannot read", file))?.len();
    Ok(summary)
}

/// Checks `file` as [`restore`] would, changing nothing: the checks run on
/// a private copy in `scratch_dir`, removed afterwards.
pub fn check_backup(file: &Path, scratch_dir: &Path) -> Result<BackupSummary, BackupError> {
    let staged = stage(file, scratch_dir)?;
    let summary = verify(staged.path(), file);
    drop(staged);
    summary
}

/// Replaces the database at `db` with the backup `file` once the backup
/// has passed every check; the database it replaces (with its WAL) is kept
/// beside it, named `<db>.before-restore-<stamp>`. Any failed check leaves
/// the state directory as it was. The caller holds the state directory's
/// lock, so no gateway has `db` open.
pub fn restore(file: &Path, db: &Path, stamp: &str) -> Result<RestoreOutcome, BackupError> {
    let dir = parent_dir(db);
    crate::store::ensure_private_dir(dir).map_err(io("cannot create", dir))?;
    let staged = stage(file, dir)?;
    let summary = verify(staged.path(), file)?;
    staged.remove_sidecars();
    sync_file(staged.path())?;
    let mut summary = summary;
    summary.bytes = fs::metadata(staged.path())
        .map_err(io("cannot read", staged.path()))?
        .len();
    let kept = if db.exists() {
        Some(keep_previous(db, stamp)?)
    } else {
        None
    };
    fs::rename(staged.path(), db).map_err(io("cannot move the restored database to", db))?;
    staged.disarm();
    sync_dir(dir);
    Ok(RestoreOutcome { summary, kept })
}

/// `YYYYMMDDTHHMMSSZ` for `t` in UTC (file names sort by time).
pub fn utc_stamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01, by
/// counting 400-year eras of 146097 days from 0000-03-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ------------------------------------------------------------------ copy

/// SQLite's online backup from a connection on `db` (read-only unless
/// `exclusive`) into the empty file `dest`, in steps; `dest` ends in
/// rollback-journal mode, so it is one self-contained file.
fn copy_online(db: &Path, dest: &Path, exclusive: bool) -> Result<(), StoreError> {
    let access = if exclusive {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    };
    let src = Connection::open_with_flags(db, access | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    schema::configure_reader(&src)?;
    let mut dst = Connection::open(dest)?;
    {
        let backup = Backup::new(&src, &mut dst)?;
        let started = Instant::now();
        loop {
            let pages = if started.elapsed() < STEPPED_FOR {
                STEP_PAGES
            } else {
                -1
            };
            match backup.step(pages)? {
                StepResult::Done => break,
                StepResult::More => std::thread::sleep(STEP_PAUSE),
                StepResult::Busy | StepResult::Locked => {
                    if started.elapsed() > GIVE_UP_AFTER {
                        return Err(StoreError::Sqlite(
                            "the database stayed locked for 30 s; try again".into(),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => std::thread::sleep(STEP_PAUSE),
            }
        }
    }
    // The copy carries the source's WAL flag in its header; a backup is a
    // single file, so switch it to a rollback journal.
    let mode: String = dst.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(StoreError::Sqlite(format!(
            "the backup copy stayed in {mode} journal mode"
        )));
    }
    dst.close().map_err(|(_, e)| e)?;
    src.close().map_err(|(_, e)| e)?;
    Ok(())
}

// ---------------------------------------------------------------- checks

/// Checks the file at `path` (a private copy of `shown`, which messages
/// name) and counts what it holds.
fn verify(path: &Path, shown: &Path) -> Result<BackupSummary, BackupError> {
    let not_sqlite = |detail: &str| BackupError::NotSqlite {
        path: shown.to_path_buf(),
        detail: detail.to_string(),
    };
    let mut header = [0u8; 100];
    let mut read = 0;
    {
        let mut f = File::open(path).map_err(io("cannot read", path))?;
        while read < header.len() {
            match f
                .read(&mut header[read..])
                .map_err(io("cannot read", path))?
            {
                0 => break,
                n => read += n,
            }
        }
    }
    if read == 0 {
        return Err(not_sqlite("the file is empty"));
    }
    if read < header.len() || &header[..16] != b"SQLite format 3\0" {
        return Err(not_sqlite("its header is not SQLite's"));
    }

    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| not_sqlite(&e.to_string()))?;
    let result = verify_open(conn, shown);
    remove_sidecars(path);
    result
}

fn verify_open(mut conn: Connection, shown: &Path) -> Result<BackupSummary, BackupError> {
    let path = shown.to_path_buf();
    schema::configure_reader(&conn)?;
    // A file SQLite cannot read past its header is damaged, not missing.
    let unreadable = |e: StoreError| match e {
        StoreError::Corrupt(detail) => BackupError::Damaged {
            path: path.clone(),
            detail,
        },
        e => BackupError::Store(e),
    };
    let found = schema::schema_version(&conn).map_err(unreadable)?;
    if found > schema::SCHEMA_VERSION {
        return Err(BackupError::SchemaTooNew {
            path,
            found,
            supported: schema::SCHEMA_VERSION,
        });
    }
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| unreadable(e.into()))?;
    if let Some(missing) = TABLES.iter().find(|t| !tables.iter().any(|n| n == *t)) {
        return Err(BackupError::NotClawgate {
            path,
            missing: (*missing).to_string(),
        });
    }
    if found == 0 {
        // The tables without a version: not written by clawgate's migrations.
        return Err(BackupError::NotClawgate {
            path,
            missing: "schema version".into(),
        });
    }

    let report = crate::invariants::check(&mut conn).map_err(unreadable)?;
    let first = |rule: &str| {
        report
            .violations
            .iter()
            .filter(|v| v.rule == rule)
            .map(|v| v.detail.clone())
            .next()
    };
    if let Some(detail) = first("integrity") {
        return Err(BackupError::Damaged { path, detail });
    }
    if let Some(detail) = first("audit-chain") {
        return Err(BackupError::AuditChain { path, detail });
    }
    // An older schema is migrated when the gateway opens the file.
    let others: Vec<_> = report
        .violations
        .iter()
        .filter(|v| v.rule != "schema-version")
        .collect();
    if let Some(v) = others.first() {
        let more = others.len() - 1;
        let detail = if more > 0 {
            format!("{v}, and {more} more")
        } else {
            v.to_string()
        };
        return Err(BackupError::Invariant { path, detail });
    }
    drop(conn);
    Ok(BackupSummary {
        schema_version: found,
        devices: report.devices,
        role_tokens: report.role_tokens,
        token_hashes: report.token_hashes,
        pending: report.pending,
        audit_rows: report.audit.rows,
        bytes: 0,
    })
}

// ------------------------------------------------------------------ files

/// A temp file this module owns until it is published; removed (with any
/// SQLite sidecar) when dropped unpublished.
struct Staged {
    path: PathBuf,
    armed: std::cell::Cell<bool>,
}

impl Staged {
    /// A new, empty, mode 0600 file in `dir`, named after `target`.
    fn create(dir: &Path, target: &Path) -> Result<Staged, BackupError> {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "clawgate-backup".into());
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = dir.join(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options
            .open(&path)
            .map_err(io("cannot create a temp file", &path))?;
        Ok(Staged {
            path,
            armed: std::cell::Cell::new(true),
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn remove_sidecars(&self) {
        remove_sidecars(&self.path);
    }

    /// The file is someone else's now: do not remove it.
    fn disarm(&self) {
        self.armed.set(false);
    }

    /// Moves the staged file to `file`: over it when `overwrite`, else
    /// only if `file` still does not exist (a hard link cannot replace).
    fn publish(self, file: &Path, overwrite: bool) -> Result<(), BackupError> {
        self.remove_sidecars();
        if overwrite {
            fs::rename(&self.path, file).map_err(io("cannot write", file))?;
        } else {
            match fs::hard_link(&self.path, file) {
                Ok(()) => {
                    let _ = fs::remove_file(&self.path);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(BackupError::Exists(file.to_path_buf()));
                }
                // A filesystem without hard links: check, then rename.
                Err(_) => {
                    if fs::symlink_metadata(file).is_ok() {
                        return Err(BackupError::Exists(file.to_path_buf()));
                    }
                    fs::rename(&self.path, file).map_err(io("cannot write", file))?;
                }
            }
        }
        self.disarm();
        sync_dir(parent_dir(file));
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.armed.get() {
            let _ = fs::remove_file(&self.path);
            remove_sidecars(&self.path);
        }
    }
}

/// A private byte copy of `file` in `dir` (mode 0600, synced). A file with
/// a WAL beside it is refused: its committed pages may be in the WAL.
fn stage(file: &Path, dir: &Path) -> Result<Staged, BackupError> {
    if !file.is_file() {
        return Err(BackupError::NoFile(file.to_path_buf()));
    }
    if fs::metadata(sidecar(file, "-wal")).is_ok_and(|m| m.len() > 0) {
        return Err(BackupError::LiveWal(file.to_path_buf()));
    }
    let staged = Staged::create(dir, Path::new("clawgate-restore"))?;
    let mut from = File::open(file).map_err(io("cannot read", file))?;
    let mut to = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(staged.path())
        .map_err(io("cannot write", staged.path()))?;
    std::io::copy(&mut from, &mut to).map_err(io("cannot copy", file))?;
    to.sync_all().map_err(io("cannot sync", staged.path()))?;
    Ok(staged)
}

/// Moves the database at `db` aside as `<db>.before-restore-<stamp>`, its
/// WAL checkpointed into it first; a WAL (or hot journal) that cannot be
/// checkpointed goes along with it under the new name, so the kept copy
/// opens with everything that was committed.
fn keep_previous(db: &Path, stamp: &str) -> Result<PathBuf, BackupError> {
    let has_sidecar = ["-wal", "-journal"]
        .iter()
        .any(|s| fs::metadata(sidecar(db, s)).is_ok());
    if has_sidecar {
        // Closing the last connection checkpoints the WAL and deletes it.
        let _ = Connection::open(db).and_then(|c| {
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            c.close().map_err(|(_, e)| e)
        });
    }
    let mut n = 1;
    let kept = loop {
        let mut name = db.as_os_str().to_owned();
        name.push(format!(".before-restore-{stamp}"));
        if n > 1 {
            name.push(format!("-{n}"));
        }
        let candidate = PathBuf::from(name);
        // A hard link first: until the rename below, `db` is still there.
        match fs::hard_link(db, &candidate) {
            Ok(()) => break candidate,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(_) if fs::symlink_metadata(&candidate).is_err() => {
                let mut to = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&candidate)
                    .map_err(io("cannot keep the previous database as", &candidate))?;
                let mut from = File::open(db).map_err(io("cannot read", db))?;
                std::io::copy(&mut from, &mut to).map_err(io("cannot copy", db))?;
                to.sync_all().map_err(io("cannot sync", &candidate))?;
                break candidate;
            }
            Err(_) => n += 1,
        }
    };
    for suffix in ["-wal", "-shm", "-journal"] {
        let from = sidecar(db, suffix);
        if fs::symlink_metadata(&from).is_ok() {
            let to = sidecar(&kept, suffix);
            fs::rename(&from, &to).map_err(io("cannot move aside", &from))?;
        }
    }
    Ok(kept)
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_sidecars(path: &Path) {
    for suffix in ["-wal", "-shm", "-journal"] {
        let _ = fs::remove_file(sidecar(path, suffix));
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn sync_file(path: &Path) -> Result<(), BackupError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io("cannot sync", path))
}

/// Makes a rename in `dir` durable. Best effort: not every filesystem
/// lets a directory be synced.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        let at = |s| utc_stamp(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "19700101T000000Z");
        // 2000-02-29 23:59:59 (a leap day in a century year divisible by 400)
        assert_eq!(at(951_868_799), "20000229T235959Z");
        assert_eq!(at(951_868_800), "20000301T000000Z");
        // 2024-12-31 12:34:56
        assert_eq!(at(1_735_648_496), "20241231T123456Z");
    }
}
