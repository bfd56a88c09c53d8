//! The store: one SQLite writer, one SQLite reader for the audit log, and
//! the in-memory cache that hot paths read.
//!
//! Writes run inside [`Store::transact`]: every change of one closure is one
//! SQLite transaction, and the cache replays the recorded changes only after
//! COMMIT succeeds. The writer lock is held until the cache is updated, so
//! the cache sees transactions in commit order.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, TransactionBehavior};

use crate::audit::{ChainVerifier, GENESIS_HASH, StoredAuditRow, canonical_json, chain_hash};
use crate::cache::{Cache, Op};
use crate::error::StoreError;
use crate::model::{
    AuditPage, AuditQuery, AuditRecord, AuditRow, AuditVerification, Device, PendingRequest,
    RoleToken, Seen, SetupCode, TokenHash,
};
use crate::schema;
use clawgate_protocol::hex::is_lower_hex64;

/// The persistent registry of devices, tokens (as hashes), pending pairing
/// requests and the audit log.
pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    /// Audit reads go here so a long listing or verification never holds
    /// up writers (WAL lets it read a snapshot while the writer commits).
    reader: Mutex<Connection>,
    cache: RwLock<Cache>,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
};

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic inside a transaction closure rolled the transaction back as it
    // unwound, so the connection behind a poisoned lock is still sound.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// Opens (creating if needed) the database at `path`: the parent
    /// directory is created with mode 0700 when missing, the database and
    /// its WAL files get mode 0600, the schema is migrated, and the cache
    /// is loaded. A WAL left by a killed process is recovered (every
    /// committed transaction is in it). A damaged file (truncated, not a
    /// database, pages SQLite cannot read) is refused with
    /// [`StoreError::Damaged`] and left exactly as it was.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        prepare_files(path)?;
        check_size(path)?;
        Self::open_sqlite(path).map_err(|e| match e {
            StoreError::Corrupt(detail) => StoreError::Damaged {
                path: path.to_path_buf(),
                detail,
            },
            e => e,
        })
    }

    fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        let mut writer = Connection::open(path)?;
        // Until the file has proved readable, closing must not checkpoint
        // the WAL into it: a damaged file is left as it was found.
        writer.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        schema::configure(&writer)?;
        schema::migrate(&mut writer)?;
        restrict_sidecars(path)?;

        let reader = Connection::open(path)?;
        reader.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        schema::configure(&reader)?;
        reader.execute_batch("PRAGMA query_only = ON")?;

        let cache = Cache::load(
            schema::select_devices(&writer)?,
            schema::select_role_tokens(&writer)?,
            schema::select_token_hashes(&writer)?,
            schema::select_all_pending(&writer)?,
        );
        // Read (and discarded) so that a damaged newest audit row, where
        // the next append links to, refuses the open instead of the first
        // write.
        schema::last_audit(&writer)?;
        for conn in [&writer, &reader] {
            conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)?;
        }
        Ok(Store {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            cache: RwLock::new(cache),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        schema::schema_version(&lock(&self.reader))
    }

    fn read(&self) -> RwLockReadGuard<'_, Cache> {
        // Cache updates cannot panic halfway (they only move owned data),
        // so a poisoned lock still guards a consistent cache.
        self.cache.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn device(&self, device_id: &str) -> Option<Device> {
        self.read().device(device_id).cloned()
    }

    /// Sorted by `approved_at_ms`, then `device_id`.
    pub fn devices(&self) -> Vec<Device> {
        self.read().devices()
    }

    /// Sorted by role.
    pub fn role_tokens(&self, device_id: &str) -> Vec<RoleToken> {
        self.read().role_tokens(device_id)
    }

    pub fn role_token(&self, device_id: &str, role: &str) -> Option<RoleToken> {
        self.read().role_token(device_id, role).cloned()
    }

    /// The token whose SHA-256 is `hash` (see [`crate::hash_token`]).
    pub fn token_by_hash(&self, hash: &[u8; 32]) -> Option<TokenHash> {
        self.read().token_by_hash(hash).cloned()
    }

    /// Oldest first.
    pub fn token_hashes(&self, device_id: &str, role: &str) -> Vec<TokenHash> {
        self.read().token_hashes(device_id, role)
    }

    pub fn pending(&self, request_id: &str) -> Option<PendingRequest> {
        self.read().pending(request_id).cloned()
    }

    /// The pending request with this pairing code (its shown form).
    pub fn pending_by_code(&self, code: &str) -> Option<PendingRequest> {
        self.read().pending_by_code(code).cloned()
    }

    /// Sorted by `ts`, then `request_id`.
    pub fn pending_list(&self) -> Vec<PendingRequest> {
        self.read().pending_list()
    }

    /// Sorted by `ts`, then `request_id`.
    pub fn pending_for_device(&self, device_id: &str) -> Vec<PendingRequest> {
        self.read().pending_for_device(device_id)
    }

    /// Runs `f` inside one SQLite transaction. If `f` fails (or panics) or
    /// COMMIT fails, the transaction is rolled back, the cache is left as
    /// it was, and the error is returned.
    pub fn transact<T>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = lock(&self.writer);
        let sql = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut tx = Tx {
            sql,
            ops: Vec::new(),
        };
        let out = f(&mut tx)?;
        let Tx { sql, ops } = tx;
        sql.commit().map_err(commit_error)?;
        self.write().apply(ops);
        Ok(out)
    }

    /// Audit rows matching `q`, ascending by seq, one page at a time.
    pub fn audit_list(&self, q: &AuditQuery) -> Result<AuditPage, StoreError> {
        let limit = q.effective_limit();
        let mut stored = schema::select_audit(&lock(&self.reader), q, limit + 1)?;
        let more = stored.len() > limit;
        stored.truncate(limit);
        let rows = stored
            .into_iter()
            .map(audit_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if more {
            rows.last().map(|r| r.seq)
        } else {
            None
        };
        Ok(AuditPage { rows, next_cursor })
    }

    /// Walks the whole audit chain (one consistent snapshot) and recomputes
    /// every hash. Reports the first missing or altered row.
    pub fn verify_audit(&self) -> Result<AuditVerification, StoreError> {
        let mut conn = lock(&self.reader);
        let snapshot = conn.transaction()?;
        let mut verifier = ChainVerifier::new();
        let mut broken = None;
        schema::scan_audit(&snapshot, |row| match verifier.check(&row) {
            Ok(()) => true,
            Err(b) => {
                broken = Some(b);
                false
            }
        })?;
        snapshot.finish()?;
        Ok(AuditVerification {
            rows: verifier.rows,
            ok: broken.is_none(),
            first_bad_seq: broken.as_ref().map(|b| b.seq),
            problem: broken.map(|b| b.problem),
        })
    }

    /// Checks every invariant the store keeps (see [`crate::check_database`]
    /// for the list) on one snapshot. Reads only; writers are not held up.
    pub fn check_invariants(&self) -> Result<crate::InvariantReport, StoreError> {
        crate::invariants::check(&mut lock(&self.reader))
    }

    /// Every setup code still stored (live, used, revoked, or expired and not
    /// yet pruned), oldest first.
    pub fn setup_codes(&self) -> Result<Vec<SetupCode>, StoreError> {
        schema::select_setup_codes(&lock(&self.reader))
    }

    /// Deletes the setup codes that expired before `before_ms`; returns
    /// their ids.
    pub fn prune_expired_setup_codes(&self, before_ms: u64) -> Result<Vec<String>, StoreError> {
        self.transact(|tx| schema::delete_setup_codes_expired_before(&tx.sql, before_ms))
    }

    /// Deletes the pending requests last refreshed before `older_than_ms`
    /// and returns them (sorted by `ts`).
    pub fn prune_expired_pending(
        &self,
        older_than_ms: u64,
    ) -> Result<Vec<PendingRequest>, StoreError> {
        self.transact(|tx| tx.prune_pending(older_than_ms))
    }
}

/// A deferred foreign key fails at COMMIT; say what it means.
fn commit_error(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
        {
            StoreError::Invalid(
                "a role token or token hash refers to a device that is not stored".into(),
            )
        }
        _ => e.into(),
    }
}

fn audit_row(r: StoredAuditRow) -> Result<AuditRow, StoreError> {
    let parse = |what: &str, text: &str| {
        serde_json::from_str(text)
            .map_err(|e| StoreError::Corrupt(format!("audit row {} {what}: {e}", r.seq)))
    };
    Ok(AuditRow {
        seq: r.seq,
        ts_ms: r.ts_ms,
        actor: parse("actor", &r.actor_json)?,
        details: parse("details", &r.details_json)?,
        action: r.action,
        device_id: r.device_id,
        prev_hash: r.prev_hash,
        hash: r.hash,
    })
}

/// An open write transaction. Each write runs its SQL immediately (so
/// later statements and the read methods here see it) and records an
/// [`Op`] for the cache to replay after COMMIT.
pub struct Tx<'a> {
    sql: rusqlite::Transaction<'a>,
    ops: Vec<Op>,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("staged_ops", &self.ops.len())
            .finish()
    }
}

fn require(ok: bool, msg: &str) -> Result<(), StoreError> {
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(msg.to_string()))
    }
}

impl Tx<'_> {
    /// Inserts the device or replaces its fields (its tokens are kept).
    pub fn put_device(&mut self, d: &Device) -> Result<(), StoreError> {
        require(
            is_lower_hex64(&d.device_id),
            "device id must be 64 lowercase hex characters",
        )?;
        require(!d.public_key.is_empty(), "device public key is empty")?;
        schema::upsert_device(&self.sql, d)?;
        self.ops.push(Op::PutDevice(d.clone()));
        Ok(())
    }

    /// Deletes the device with its role tokens, token hashes and pending
    /// requests. Returns whether the device existed.
    pub fn delete_device(&mut self, device_id: &str) -> Result<bool, StoreError> {
        let existed = schema::delete_device(&self.sql, device_id)?;
        self.ops.push(Op::DeleteDevice(device_id.to_string()));
        Ok(existed)
    }

    /// Inserts or replaces the (device, role) entry. The device must be
    /// stored by the time the transaction commits.
    pub fn put_role_token(&mut self, t: &RoleToken) -> Result<(), StoreError> {
        require(!t.role.is_empty(), "role is empty")?;
        schema::upsert_role_token(&self.sql, t)?;
        self.ops.push(Op::PutRoleToken(t.clone()));
        Ok(())
    }

    /// Records an issued token's hash, then deletes the oldest hashes of
    /// that (device, role) beyond the `keep_newest` newest. The hash just
    /// added is always kept (`keep_newest` 0 counts as 1).
    pub fn add_token_hash(&mut self, t: &TokenHash, keep_newest: usize) -> Result<(), StoreError> {
        require(!t.role.is_empty(), "role is empty")?;
        schema::insert_token_hash(&self.sql, t)?;
        self.ops.push(Op::AddTokenHash(t.clone()));
        let removed =
            schema::trim_token_hashes(&self.sql, &t.device_id, &t.role, keep_newest.max(1))?;
        if !removed.is_empty() {
            self.ops.push(Op::RemoveTokenHashes(removed));
        }
        Ok(())
    }

    /// Forgets every issued token of (device, role); returns how many.
    pub fn delete_token_hashes(
        &mut self,
        device_id: &str,
        role: &str,
    ) -> Result<usize, StoreError> {
        let n = schema::delete_token_hashes(&self.sql, device_id, role)?;
        self.ops.push(Op::DeleteTokenHashes {
            device_id: device_id.to_string(),
            role: role.to_string(),
        });
        Ok(n)
    }

    /// Sets a device's last-seen time, reason and address. Does nothing
    /// when the device is gone (removed since it was seen).
    pub fn mark_seen(&mut self, device_id: &str, seen: &Seen) -> Result<(), StoreError> {
        if schema::mark_device_seen(&self.sql, device_id, seen)? {
            self.ops.push(Op::MarkSeen {
                device_id: device_id.to_string(),
                seen: seen.clone(),
            });
        }
        Ok(())
    }

    /// Sets the entry's `last_used_at_ms`. Does nothing when the entry is
    /// gone (the device was removed since the token was checked).
    pub fn touch_token(
        &mut self,
        device_id: &str,
        role: &str,
        last_used_at_ms: u64,
    ) -> Result<(), StoreError> {
        if schema::touch_role_token(&self.sql, device_id, role, last_used_at_ms)? {
            self.ops.push(Op::TouchToken {
                device_id: device_id.to_string(),
                role: role.to_string(),
                last_used_at_ms,
            });
        }
        Ok(())
    }

    /// Inserts or replaces the pending request with this `request_id`.
    pub fn put_pending(&mut self, p: &PendingRequest) -> Result<(), StoreError> {
        require(!p.request_id.is_empty(), "request id is empty")?;
        require(
            is_lower_hex64(&p.device_id),
            "device id must be 64 lowercase hex characters",
        )?;
        schema::upsert_pending(&self.sql, p)?;
        self.ops.push(Op::PutPending(p.clone()));
        Ok(())
    }

    /// Returns whether the request existed.
    pub fn delete_pending(&mut self, request_id: &str) -> Result<bool, StoreError> {
        let existed = schema::delete_pending(&self.sql, request_id)?;
        if existed {
            self.ops.push(Op::DeletePending(request_id.to_string()));
        }
        Ok(existed)
    }

    pub(crate) fn prune_pending(
        &mut self,
        older_than_ms: u64,
    ) -> Result<Vec<PendingRequest>, StoreError> {
        let pruned = schema::delete_pending_refreshed_before(&self.sql, older_than_ms)?;
        self.ops.extend(
            pruned
                .iter()
                .map(|p| Op::DeletePending(p.request_id.clone())),
        );
        Ok(pruned)
    }

    /// Appends an audit row, chained to the newest row, and returns it as
    /// stored (`actor` and `details` with their keys sorted).
    pub fn append_audit(&mut self, r: &AuditRecord) -> Result<AuditRow, StoreError> {
        require(!r.action.is_empty(), "audit action is empty")?;
        let (seq, prev_hash) = match schema::last_audit(&self.sql)? {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, GENESIS_HASH.to_string()),
        };
        let actor_json = canonical_json(&r.actor);
        let details_json = canonical_json(&r.details);
        let hash = chain_hash(
            &prev_hash,
            seq,
            r.ts_ms,
            &r.action,
            &actor_json,
            r.device_id.as_deref(),
            &details_json,
        );
        let stored = StoredAuditRow {
            seq,
            ts_ms: r.ts_ms,
            action: r.action.clone(),
            actor_json,
            device_id: r.device_id.clone(),
            details_json,
            prev_hash,
            hash,
        };
        schema::insert_audit(&self.sql, &stored)?;
        audit_row(stored)
    }

    /// Records a newly minted setup code.
    pub fn insert_setup_code(&mut self, c: &SetupCode) -> Result<(), StoreError> {
        require(!c.setup_id.is_empty(), "setup id is empty")?;
        require(!c.role.is_empty(), "role is empty")?;
        schema::insert_setup_code(&self.sql, c)
    }

    /// The setup code whose bootstrap token hashes to `hash`.
    pub fn setup_code_by_hash(&self, hash: &[u8; 32]) -> Result<Option<SetupCode>, StoreError> {
        schema::select_setup_code_by_hash(&self.sql, hash)
    }

    /// The setup code `setup_id`.
    pub fn setup_code(&self, setup_id: &str) -> Result<Option<SetupCode>, StoreError> {
        schema::select_setup_code(&self.sql, setup_id)
    }

    /// Marks the code used by `device_id` if it is live at `now_ms`;
    /// returns whether it was (exactly one of two racing redemptions is).
    pub fn consume_setup_code(
        &mut self,
        setup_id: &str,
        device_id: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        schema::consume_setup_code(&self.sql, setup_id, device_id, now_ms)
    }

    /// Revokes the code if it is live at `now_ms`; returns whether it was.
    pub fn revoke_setup_code(&mut self, setup_id: &str, now_ms: u64) -> Result<bool, StoreError> {
        schema::revoke_setup_code(&self.sql, setup_id, now_ms)
    }

    /// The device as this transaction sees it.
    pub fn device(&self, device_id: &str) -> Result<Option<Device>, StoreError> {
        schema::select_device(&self.sql, device_id)
    }

    /// The (device, role) entry as this transaction sees it.
    pub fn role_token(&self, device_id: &str, role: &str) -> Result<Option<RoleToken>, StoreError> {
        schema::select_role_token(&self.sql, device_id, role)
    }

    /// The pending request as this transaction sees it.
    pub fn pending(&self, request_id: &str) -> Result<Option<PendingRequest>, StoreError> {
        schema::select_pending(&self.sql, request_id)
    }
}

/// Creates the parent directory (0700) when missing and the database file
/// (0600); tightens an existing file to 0600.
fn prepare_files(path: &Path) -> Result<(), StoreError> {
    if let Some(dir) = path.parent() {
        ensure_private_dir(dir)?;
    }
    let mut options = fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?;
    restrict(path)
}

/// Creates `dir` (and its parents) with mode 0700 when it is missing; an
/// existing directory is left as it is.
pub(crate) fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    #[cfg(not(unix))]
    builder.create(dir)?;
    Ok(())
}

/// Refuses a database file that is shorter than its own header says, when
/// no WAL could supply the missing pages (after a clean shutdown the WAL is
/// gone). This runs before SQLite opens the file, which would otherwise
/// fail only when a query reaches a missing page.
fn check_size(path: &Path) -> Result<(), StoreError> {
    let damaged = |detail: String| StoreError::Damaged {
        path: path.to_path_buf(),
        detail,
    };
    let len = fs::metadata(path)?.len();
    if len == 0 {
        return Ok(()); // a new database
    }
    let mut header = [0u8; 100];
    let read = {
        use std::io::Read;
        let mut f = fs::File::open(path)?;
        let mut n = 0;
        while n < header.len() {
            match f.read(&mut header[n..])? {
                0 => break,
                k => n += k,
            }
        }
        n
    };
    if read < header.len() {
        return Err(damaged(format!(
            "{len} bytes, shorter than a SQLite header"
        )));
    }
    if &header[..16] != b"SQLite format 3\0" {
        return Err(damaged("not a SQLite database: the header is wrong".into()));
    }
    let be32 = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        n => u64::from(n),
    };
    // The page count in the header is valid only when it was written by
    // the same change as the change counter.
    let pages = u64::from(be32(28));
    let counted = be32(24) == be32(92) && pages > 0;
    let sidecar_in_use = ["-wal", "-journal"].iter().any(|suffix| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        fs::metadata(PathBuf::from(name)).is_ok_and(|m| m.len() > 0)
    });
    if counted && !sidecar_in_use && len < pages * page_size {
        return Err(damaged(format!(
            "truncated: {len} bytes where its header says {}",
            pages * page_size
        )));
    }
    Ok(())
}

/// SQLite gives `-wal` and `-shm` the database file's mode; set it anyway
/// in case they were left behind by an older, looser file.
fn restrict_sidecars(path: &Path) -> Result<(), StoreError> {
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let sidecar = PathBuf::from(name);
        if sidecar.exists() {
            restrict(&sidecar)?;
        }
    }
    Ok(())
}

fn restrict(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
