//! The store: a database (one SQLite file, or PostgreSQL shared by
//! replicas) and the in-memory cache that hot paths read.
//!
//! Writes run inside [`Store::transact`]: every change of one closure is one
//! database transaction, and the cache replays the recorded changes only
//! after COMMIT succeeds. The writer lock is held until the cache is
//! updated, so the cache sees transactions in commit order. On PostgreSQL
//! each such transaction also appends its [`Change`] row, and
//! [`Store::catch_up`] brings other replicas' changes into the cache.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{
    Mutex, MutexGuard, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, TransactionBehavior};

use crate::audit::{ChainVerifier, GENESIS_HASH, StoredAuditRow, canonical_json, chain_hash};
use crate::cache::{Cache, Op};
use crate::changes::{CatchUp, Change, DeviceDelta, ReplicaPresence};
use crate::error::StoreError;
use crate::model::{
    AuditPage, AuditQuery, AuditRecord, AuditRow, AuditVerification, Device, Passkey,
    PendingRequest, RoleToken, Seen, SetupCode, TokenHash,
};
use crate::pg::{self, ListenState, PgTarget, PgTx, sql as pgsql};
use crate::schema;
use clawgate_protocol::hex::is_lower_hex64;

/// The persistent registry of devices, tokens (as hashes), pending pairing
/// requests and the audit log.
pub struct Store {
    /// The SQLite file (empty for PostgreSQL).
    path: PathBuf,
    /// The file's path, or `host:port/db`.
    location: String,
    backend: Backend,
    cache: RwLock<Cache>,
}

// One per store: the size of the SQLite variant does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Backend {
    Sqlite {
        writer: Mutex<Connection>,
        /// Audit reads go here so a long listing or verification never
        /// holds up writers (WAL lets it read a snapshot while the writer
        /// commits).
        reader: Mutex<Connection>,
    },
    Postgres(Box<PgBackend>),
}

pub(crate) struct PgBackend {
    pub(crate) target: PgTarget,
    /// Declared before `io` so connections close before their runtime.
    pub(crate) writer: pg::Slot,
    pub(crate) reader: pg::Slot,
    pub(crate) io: pg::Io,
    /// This process's id in the change log and presence rows.
    replica_id: String,
    /// Every change up to this sequence number is in the cache. Moves only
    /// under the writer slot's lock.
    applied_seq: AtomicU64,
    listen: OnceLock<tokio::sync::watch::Receiver<ListenState>>,
    /// Other replicas' changes already in the cache (a write transaction
    /// catches up first) that the gateway has not been handed yet.
    stash: Mutex<CatchUp>,
    /// The newest sequence number announced by NOTIFY (maybe not applied).
    announced_seq: std::sync::Arc<AtomicU64>,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
};

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
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
            location: path.display().to_string(),
            backend: Backend::Sqlite {
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
            },
            cache: RwLock::new(cache),
        })
    }

    /// Opens the PostgreSQL store at `target`: connects, migrates the schema
    /// (under an advisory lock, so replicas starting together migrate once)
    /// and loads the cache and the change-log position from one snapshot.
    pub fn open_postgres(target: &PgTarget) -> Result<Store, StoreError> {
        Self::connect_postgres(target, true)
    }

    /// Opens the PostgreSQL store at `target` for inspection (`doctor`):
    /// like [`Store::open_postgres`], but the schema is never created or
    /// migrated: a database without clawgate's schema, or with an older
    /// one, is refused with what to do.
    pub fn inspect_postgres(target: &PgTarget) -> Result<Store, StoreError> {
        Self::connect_postgres(target, false)
    }

    fn connect_postgres(target: &PgTarget, migrate: bool) -> Result<Store, StoreError> {
        let io = pg::Io::start()?;
        let writer = pg::Slot::new(pg::connect(&io, target)?);
        let reader = pg::Slot::new(pg::connect(&io, target)?);
        {
            let mut slot = writer.get(&io, target)?;
            if migrate {
                pg::migrate(&mut slot, target)?;
            } else {
                let found = pg::existing_schema_version(&mut slot, target)?;
                if found > pgsql::SCHEMA_VERSION {
                    return Err(StoreError::SchemaTooNew {
                        found,
                        supported: pgsql::SCHEMA_VERSION,
                    });
                }
                if found < pgsql::SCHEMA_VERSION {
                    return Err(StoreError::Invalid(format!(
                        "{} has clawgate schema version {found}, this clawgate writes {}; \
                         nothing was changed: a replica (clawgate gateway run --store ...) or \
                         clawgate store migrate creates or upgrades it",
                        target.display(),
                        pgsql::SCHEMA_VERSION
                    )));
                }
            }
        }
        let store = Store {
            path: PathBuf::new(),
            location: target.display().to_string(),
            backend: Backend::Postgres(Box::new(PgBackend {
                target: target.clone(),
                writer,
                reader,
                io,
                replica_id: uuid::Uuid::new_v4().simple().to_string(),
                applied_seq: AtomicU64::new(0),
                listen: OnceLock::new(),
                stash: Mutex::new(CatchUp::default()),
                announced_seq: std::sync::Arc::new(AtomicU64::new(0)),
            })),
            cache: RwLock::new(Cache::default()),
        };
        store.reload()?;
        Ok(store)
    }

    pub(crate) fn pg_backend(&self) -> Option<&PgBackend> {
        match &self.backend {
            Backend::Postgres(p) => Some(p),
            Backend::Sqlite { .. } => None,
        }
    }

    /// Reloads the whole cache from the database (PostgreSQL), and moves the
    /// change-log position to the newest change.
    pub(crate) fn reload(&self) -> Result<(), StoreError> {
        let Some(p) = self.pg_backend() else {
            return Ok(());
        };
        let mut slot = p.writer.get(&p.io, &p.target)?;
        let tx = slot.begin(&p.target, pg::Mode::Snapshot)?;
        let cache = Cache::load(
            pgsql::select_devices(&tx, None)?,
            pgsql::select_role_tokens(&tx, None)?,
            pgsql::select_token_hashes(&tx, None)?,
            pgsql::select_all_pending(&tx, None)?,
        );
        let applied = pgsql::last_change_seq(&tx)?;
        tx.commit()?;
        *self.write() = cache;
        p.applied_seq.store(applied, Ordering::Release);
        Ok(())
    }

    /// The SQLite database file; empty for a PostgreSQL store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the store is: the SQLite file, or `host:port/db` (never a
    /// password).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// This process's replica id when the store is shared (PostgreSQL).
    pub fn replica_id(&self) -> Option<&str> {
        match &self.backend {
            Backend::Sqlite { .. } => None,
            Backend::Postgres(p) => Some(&p.replica_id),
        }
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        match &self.backend {
            Backend::Sqlite { reader, .. } => schema::schema_version(&lock(reader)),
            Backend::Postgres(p) => {
                let mut slot = p.reader.get(&p.io, &p.target)?;
                pg::schema_version(&mut slot, &p.target)
            }
        }
    }

    /// The schema version this build writes for this backend.
    pub fn supported_schema_version(&self) -> u32 {
        match self.backend {
            Backend::Sqlite { .. } => schema::SCHEMA_VERSION,
            Backend::Postgres(_) => pgsql::SCHEMA_VERSION,
        }
    }

    /// Runs `f` on a read-only snapshot of the PostgreSQL reader.
    fn pg_read<T>(
        p: &PgBackend,
        f: impl FnOnce(&PgTx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut slot = p.reader.get(&p.io, &p.target)?;
        let result = (|| {
            let tx = slot.begin(&p.target, pg::Mode::Snapshot)?;
            let v = f(&tx)?;
            tx.commit()?;
            Ok(v)
        })();
        slot.settle(result)
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
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                let mut conn = lock(writer);
                let sql = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut tx = Tx {
                    sql: Sql::Lite(sql),
                    ops: Vec::new(),
                    effects: Vec::new(),
                };
                let out = f(&mut tx)?;
                let Tx { sql, ops, .. } = tx;
                let Sql::Lite(sql) = sql else {
                    unreachable!("a SQLite transaction")
                };
                sql.commit().map_err(commit_error)?;
                self.write().apply(ops);
                Ok(out)
            }
            Backend::Postgres(p) => {
                let mut slot = p.writer.get(&p.io, &p.target)?;
                let result = (|| {
                    let mut logged = None;
                    let sql = slot.begin(&p.target, pg::Mode::Write)?;
                    // Under the write lock no other replica commits: bring
                    // the cache up to date first, so reads of the cache in
                    // `f` are as current as reads of the transaction (as on
                    // SQLite, where the cache is always current here).
                    self.apply_changes(p, read_changes(p, &sql)?);
                    let mut tx = Tx {
                        sql: Sql::Pg(sql),
                        ops: Vec::new(),
                        effects: Vec::new(),
                    };
                    let out = f(&mut tx)?;
                    let Tx { sql, ops, effects } = tx;
                    let Sql::Pg(sql) = sql else {
                        unreachable!("a PostgreSQL transaction")
                    };
                    let devices = touched_devices(&ops);
                    if !devices.is_empty() || !effects.is_empty() {
                        // Deferred foreign keys are checked now, not at
                        // COMMIT: a transaction they fail must not have
                        // taken a change-log sequence number first, or the
                        // gap it leaves would look to other replicas like
                        // pruned changes and force a needless resync.
                        sql.batch("SET CONSTRAINTS ALL IMMEDIATE")?;
                        let devices = serde_json::to_string(&devices)
                            .map_err(|e| StoreError::Invalid(e.to_string()))?;
                        let effects = serde_json::to_string(&effects)
                            .map_err(|e| StoreError::Invalid(e.to_string()))?;
                        logged = Some(pgsql::insert_change(
                            &sql,
                            now_ms(),
                            &p.replica_id,
                            &devices,
                            &effects,
                        )?);
                    }
                    sql.commit()?;
                    Ok((out, ops, logged))
                })();
                let (out, ops, logged) = slot.settle(result)?;
                self.write().apply(ops);
                // This replica's own change, right after the position it had
                // applied up to: the cache now holds every change up to it,
                // so move there (a later pruning of the log then finds this
                // replica up to date instead of forcing a resync).
                if let Some(seq) = logged {
                    let _ = p.applied_seq.compare_exchange(
                        seq.saturating_sub(1),
                        seq,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                }
                Ok(out)
            }
        }
    }

    /// Brings other replicas' committed changes into the cache, in
    /// sequence order, from one snapshot: the devices they touched are
    /// re-read whole. Returns those changes (their effects are for the
    /// gateway to carry out). A SQLite store has no other writers and
    /// returns nothing.
    ///
    /// When the change log no longer reaches back to this replica's last
    /// position (it was cut off for longer than the log is kept), the
    /// whole cache is reloaded and `resynced` says so.
    pub fn catch_up(&self) -> Result<CatchUp, StoreError> {
        let Backend::Postgres(p) = &self.backend else {
            return Ok(CatchUp::default());
        };
        self.refresh()?;
        let mut stash = p.stash.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(std::mem::take(&mut *stash))
    }

    /// Whether another replica has announced a change this cache does not
    /// hold yet (one atomic read; always false for SQLite).
    pub fn behind(&self) -> bool {
        match &self.backend {
            Backend::Sqlite { .. } => false,
            Backend::Postgres(p) => {
                p.announced_seq.load(Ordering::Acquire) > p.applied_seq.load(Ordering::Acquire)
            }
        }
    }

    /// Brings other replicas' changes into the cache now (as
    /// [`Store::catch_up`] does), leaving what it found for the next
    /// `catch_up` to hand to the gateway. For a decision that must not be
    /// taken on a cache that is known to be behind (see [`Store::behind`]).
    pub fn refresh(&self) -> Result<(), StoreError> {
        let Backend::Postgres(p) = &self.backend else {
            return Ok(());
        };
        let mut slot = p.writer.get(&p.io, &p.target)?;
        let result = (|| {
            let tx = slot.begin(&p.target, pg::Mode::Snapshot)?;
            let read = read_changes(p, &tx)?;
            tx.commit()?;
            Ok(read)
        })();
        self.apply_changes(p, slot.settle(result)?);
        Ok(())
    }

    /// Brings a read of the change log into the cache and stashes what it
    /// found for the next [`Store::catch_up`] (which hands it to the
    /// gateway). Called with the writer slot held.
    fn apply_changes(&self, p: &PgBackend, read: ChangesRead) {
        let ChangesRead {
            changes,
            refresh,
            resynced,
            last,
        } = read;
        let mut cache = self.write();
        let mut deltas = Vec::new();
        let mut record = |cache: &Cache, ids: &BTreeSet<String>, before: Vec<_>| {
            for (id, before) in ids.iter().zip(before) {
                let after = cache.view(id);
                if after != before {
                    deltas.push(DeviceDelta {
                        device_id: id.clone(),
                        before,
                        after,
                    });
                }
            }
        };
        match refresh {
            Refresh::All(fresh) => {
                let mut ids = cache.device_ids();
                ids.extend(fresh.device_ids());
                let before: Vec<_> = ids.iter().map(|id| cache.view(id)).collect();
                *cache = fresh;
                record(&cache, &ids, before);
            }
            Refresh::Devices(ids, devices, tokens, hashes, pending) => {
                let set: BTreeSet<String> = ids.iter().cloned().collect();
                let before: Vec<_> = set.iter().map(|id| cache.view(id)).collect();
                if !ids.is_empty() {
                    cache.replace_devices(&ids, devices, tokens, hashes, pending);
                }
                record(&cache, &set, before);
            }
        }
        drop(cache);
        p.applied_seq.store(last, Ordering::Release);
        let mut stash = p.stash.lock().unwrap_or_else(PoisonError::into_inner);
        stash.changes.extend(changes);
        // A device changed twice keeps its first "before" and newest "after".
        for d in deltas {
            match stash.deltas.iter_mut().find(|x| x.device_id == d.device_id) {
                Some(x) => x.after = d.after,
                None => stash.deltas.push(d),
            }
        }
        stash.deltas.retain(|d| d.before != d.after);
        stash.deltas.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        stash.resynced |= resynced;
        stash.applied_seq = last;
    }

    /// The change follower's signal: LISTEN state and notification count
    /// (PostgreSQL only). The LISTEN connection is opened on first call and
    /// kept (reconnecting while PostgreSQL is away) for the store's life.
    pub fn listen(&self) -> Option<tokio::sync::watch::Receiver<ListenState>> {
        let Backend::Postgres(p) = &self.backend else {
            return None;
        };
        Some(
            p.listen
                .get_or_init(|| pg::listen(&p.io, p.target.clone(), p.announced_seq.clone()))
                .clone(),
        )
    }

    /// The change-log position this replica has applied up to.
    pub fn applied_seq(&self) -> u64 {
        match &self.backend {
            Backend::Sqlite { .. } => 0,
            Backend::Postgres(p) => p.applied_seq.load(Ordering::Acquire),
        }
    }

    /// Writes this replica's presence row (PostgreSQL only).
    pub fn put_presence(&self, presence: &ReplicaPresence) -> Result<(), StoreError> {
        let Backend::Postgres(p) = &self.backend else {
            return Ok(());
        };
        let mut slot = p.reader.get(&p.io, &p.target)?;
        let tx = slot.begin(&p.target, pg::Mode::Plain)?;
        pgsql::upsert_presence(&tx, presence)?;
        tx.commit()
    }

    /// Presence rows refreshed after `fresh_after_ms`, this replica's
    /// included (PostgreSQL only; empty for SQLite).
    pub fn presence(&self, fresh_after_ms: u64) -> Result<Vec<ReplicaPresence>, StoreError> {
        let Backend::Postgres(p) = &self.backend else {
            return Ok(Vec::new());
        };
        Self::pg_read(p, |tx| pgsql::select_presence(tx, fresh_after_ms))
    }

    /// Deletes this replica's presence row and rows not refreshed since
    /// `stale_before_ms`.
    pub fn drop_presence(&self, stale_before_ms: u64) -> Result<(), StoreError> {
        let Backend::Postgres(p) = &self.backend else {
            return Ok(());
        };
        let mut slot = p.reader.get(&p.io, &p.target)?;
        let tx = slot.begin(&p.target, pg::Mode::Plain)?;
        pgsql::delete_presence(&tx, &p.replica_id, stale_before_ms)?;
        tx.commit()
    }

    /// Deletes change-log rows older than `before_ms` (the newest is always
    /// kept, so the sequence never restarts). PostgreSQL only.
    pub fn prune_changes(&self, before_ms: u64) -> Result<u64, StoreError> {
        let Backend::Postgres(p) = &self.backend else {
            return Ok(0);
        };
        let mut slot = p.reader.get(&p.io, &p.target)?;
        let tx = slot.begin(&p.target, pg::Mode::Plain)?;
        let n = pgsql::prune_changes(&tx, before_ms)?;
        tx.commit()?;
        Ok(n)
    }

    /// Changes after `after_seq`, everyone's (PostgreSQL only): for tools
    /// and tests that watch the log.
    pub fn changes_after(&self, after_seq: u64) -> Result<Vec<Change>, StoreError> {
        let Backend::Postgres(p) = &self.backend else {
            return Ok(Vec::new());
        };
        Self::pg_read(p, |tx| pgsql::changes_after(tx, after_seq, 10_000))
    }

    /// Audit rows matching `q`, ascending by seq, one page at a time.
    pub fn audit_list(&self, q: &AuditQuery) -> Result<AuditPage, StoreError> {
        let limit = q.effective_limit();
        let mut stored = match &self.backend {
            Backend::Sqlite { reader, .. } => schema::select_audit(&lock(reader), q, limit + 1)?,
            Backend::Postgres(p) => Self::pg_read(p, |tx| pgsql::select_audit(tx, q, limit + 1))?,
        };
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
        let mut verifier = ChainVerifier::new();
        let mut broken = None;
        let check = |row: StoredAuditRow| match verifier.check(&row) {
            Ok(()) => true,
            Err(b) => {
                broken = Some(b);
                false
            }
        };
        match &self.backend {
            Backend::Sqlite { reader, .. } => {
                let mut conn = lock(reader);
                let snapshot = conn.transaction()?;
                schema::scan_audit(&snapshot, check)?;
                snapshot.finish()?;
            }
            Backend::Postgres(p) => Self::pg_read(p, |tx| pgsql::scan_audit(tx, check))?,
        }
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
        match &self.backend {
            Backend::Sqlite { reader, .. } => crate::invariants::check(&mut lock(reader)),
            Backend::Postgres(p) => Self::pg_read(p, crate::invariants::check_pg),
        }
    }

    /// The passkey with this credential id.
    pub fn passkey(&self, credential_id: &str) -> Result<Option<Passkey>, StoreError> {
        match &self.backend {
            Backend::Sqlite { reader, .. } => schema::select_passkey(&lock(reader), credential_id),
            Backend::Postgres(p) => Self::pg_read(p, |tx| pgsql::select_passkey(tx, credential_id)),
        }
    }

    /// Every registered passkey, newest first.
    pub fn passkeys(&self) -> Result<Vec<Passkey>, StoreError> {
        match &self.backend {
            Backend::Sqlite { reader, .. } => schema::select_passkeys(&lock(reader)),
            Backend::Postgres(p) => Self::pg_read(p, pgsql::select_passkeys),
        }
    }

    /// Every setup code still stored (live, used, revoked, or expired and not
    /// yet pruned), oldest first.
    pub fn setup_codes(&self) -> Result<Vec<SetupCode>, StoreError> {
        match &self.backend {
            Backend::Sqlite { reader, .. } => schema::select_setup_codes(&lock(reader)),
            Backend::Postgres(p) => Self::pg_read(p, pgsql::select_setup_codes),
        }
    }

    /// Deletes the setup codes that expired before `before_ms`; returns
    /// their ids.
    pub fn prune_expired_setup_codes(&self, before_ms: u64) -> Result<Vec<String>, StoreError> {
        self.transact(|tx| match &tx.sql {
            Sql::Lite(c) => schema::delete_setup_codes_expired_before(c, before_ms),
            Sql::Pg(t) => pgsql::delete_setup_codes_expired_before(t, before_ms),
        })
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

/// Runs the statement function of the transaction's backend: `schema::f`
/// on SQLite, `pg::sql::f` on PostgreSQL (the same name and arguments).
macro_rules! on {
    ($tx:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match &$tx.sql {
            Sql::Lite(c) => schema::$f(c, $($arg),*),
            Sql::Pg(t) => pgsql::$f(t, $($arg),*),
        }
    };
}

enum Sql<'a> {
    Lite(rusqlite::Transaction<'a>),
    Pg(PgTx<'a>),
}

/// What a catch-up read for the cache.
enum Refresh {
    All(Cache),
    Devices(
        Vec<String>,
        Vec<Device>,
        Vec<RoleToken>,
        Vec<TokenHash>,
        Vec<PendingRequest>,
    ),
}

/// What one read of the change log found (not yet in the cache).
struct ChangesRead {
    /// Other replicas' changes, in sequence order.
    changes: Vec<Change>,
    refresh: Refresh,
    resynced: bool,
    /// The newest sequence number read (everyone's).
    last: u64,
}

/// Reads the changes after this replica's position and the current rows of
/// every device they touched (or everything, when the log no longer reaches
/// back that far), within `tx`.
fn read_changes(p: &PgBackend, tx: &PgTx<'_>) -> Result<ChangesRead, StoreError> {
    let applied = p.applied_seq.load(Ordering::Acquire);
    let first = pgsql::first_change_seq(tx)?;
    let mut changes = Vec::new();
    let mut last = applied;
    loop {
        let page = pgsql::changes_after(tx, last, 1000)?;
        let full = page.len() == 1000;
        if let Some(c) = page.last() {
            last = c.seq;
        }
        changes.extend(page.into_iter().filter(|c| c.origin != p.replica_id));
        if !full {
            break;
        }
    }
    let resynced = first > applied.saturating_add(1);
    let refresh = if resynced {
        Refresh::All(Cache::load(
            pgsql::select_devices(tx, None)?,
            pgsql::select_role_tokens(tx, None)?,
            pgsql::select_token_hashes(tx, None)?,
            pgsql::select_all_pending(tx, None)?,
        ))
    } else {
        let ids: Vec<String> = changes
            .iter()
            .flat_map(|c| c.devices.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if ids.is_empty() {
            Refresh::Devices(ids, Vec::new(), Vec::new(), Vec::new(), Vec::new())
        } else {
            Refresh::Devices(
                ids.clone(),
                pgsql::select_devices(tx, Some(&ids))?,
                pgsql::select_role_tokens(tx, Some(&ids))?,
                pgsql::select_token_hashes(tx, Some(&ids))?,
                pgsql::select_all_pending(tx, Some(&ids))?,
            )
        }
    };
    Ok(ChangesRead {
        changes,
        refresh,
        resynced,
        last,
    })
}

/// The devices a transaction's ops changed, sorted.
fn touched_devices(ops: &[Op]) -> Vec<String> {
    let mut ids = BTreeSet::new();
    for op in ops {
        match op {
            Op::PutDevice(d) => ids.insert(d.device_id.clone()),
            Op::DeleteDevice(id) => ids.insert(id.clone()),
            Op::PutRoleToken(t) => ids.insert(t.device_id.clone()),
            Op::TouchToken { device_id, .. }
            | Op::MarkSeen { device_id, .. }
            | Op::DeleteTokenHashes { device_id, .. } => ids.insert(device_id.clone()),
            Op::AddTokenHash(h) => ids.insert(h.device_id.clone()),
            // Always follows the AddTokenHash of the same device.
            Op::RemoveTokenHashes(_) => false,
            Op::PutPending(p) => ids.insert(p.device_id.clone()),
            Op::DeletePending { device_id, .. } => ids.insert(device_id.clone()),
        };
    }
    ids.into_iter().collect()
}

/// An open write transaction. Each write runs its SQL immediately (so
/// later statements and the read methods here see it) and records an
/// [`Op`] for the cache to replay after COMMIT.
pub struct Tx<'a> {
    sql: Sql<'a>,
    ops: Vec<Op>,
    /// Announced with [`Tx::announce`]; part of the change row.
    effects: Vec<serde_json::Value>,
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
    /// Announces an effect of this transaction to the other replicas
    /// sharing the store (sessions to close, events to send): it is written
    /// in this transaction's change row and reaches them only if the
    /// transaction commits. A SQLite store has no other replicas; the
    /// effect is dropped.
    pub fn announce(&mut self, effect: serde_json::Value) {
        if matches!(self.sql, Sql::Pg(_)) {
            self.effects.push(effect);
        }
    }

    /// Inserts the device or replaces its fields (its tokens are kept).
    pub fn put_device(&mut self, d: &Device) -> Result<(), StoreError> {
        require(
            is_lower_hex64(&d.device_id),
            "device id must be 64 lowercase hex characters",
        )?;
        require(!d.public_key.is_empty(), "device public key is empty")?;
        on!(self, upsert_device(d))?;
        self.ops.push(Op::PutDevice(d.clone()));
        Ok(())
    }

    /// Deletes the device with its role tokens, token hashes and pending
    /// requests. Returns whether the device existed.
    pub fn delete_device(&mut self, device_id: &str) -> Result<bool, StoreError> {
        let existed = on!(self, delete_device(device_id))?;
        self.ops.push(Op::DeleteDevice(device_id.to_string()));
        Ok(existed)
    }

    /// Inserts or replaces the (device, role) entry. The device must be
    /// stored by the time the transaction commits.
    pub fn put_role_token(&mut self, t: &RoleToken) -> Result<(), StoreError> {
        require(!t.role.is_empty(), "role is empty")?;
        on!(self, upsert_role_token(t))?;
        self.ops.push(Op::PutRoleToken(t.clone()));
        Ok(())
    }

    /// Records an issued token's hash, then deletes the oldest hashes of
    /// that (device, role) beyond the `keep_newest` newest. The hash just
    /// added is always kept (`keep_newest` 0 counts as 1).
    pub fn add_token_hash(&mut self, t: &TokenHash, keep_newest: usize) -> Result<(), StoreError> {
        require(!t.role.is_empty(), "role is empty")?;
        on!(self, insert_token_hash(t))?;
        self.ops.push(Op::AddTokenHash(t.clone()));
        let removed = on!(
            self,
            trim_token_hashes(&t.device_id, &t.role, keep_newest.max(1))
        )?;
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
        let n = on!(self, delete_token_hashes(device_id, role))?;
        self.ops.push(Op::DeleteTokenHashes {
            device_id: device_id.to_string(),
            role: role.to_string(),
        });
        Ok(n)
    }

    /// Sets a device's last-seen time, reason and address. Does nothing
    /// when the device is gone (removed since it was seen).
    pub fn mark_seen(&mut self, device_id: &str, seen: &Seen) -> Result<(), StoreError> {
        if on!(self, mark_device_seen(device_id, seen))? {
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
        if on!(self, touch_role_token(device_id, role, last_used_at_ms))? {
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
        on!(self, upsert_pending(p))?;
        self.ops.push(Op::PutPending(p.clone()));
        Ok(())
    }

    /// Returns whether the request existed.
    pub fn delete_pending(&mut self, request_id: &str) -> Result<bool, StoreError> {
        let existed = on!(self, delete_pending(request_id))?;
        let found = existed.is_some();
        if let Some(device_id) = existed {
            self.ops.push(Op::DeletePending {
                request_id: request_id.to_string(),
                device_id,
            });
        }
        Ok(found)
    }

    pub(crate) fn prune_pending(
        &mut self,
        older_than_ms: u64,
    ) -> Result<Vec<PendingRequest>, StoreError> {
        let pruned = on!(self, delete_pending_refreshed_before(older_than_ms))?;
        self.ops.extend(pruned.iter().map(|p| Op::DeletePending {
            request_id: p.request_id.clone(),
            device_id: p.device_id.clone(),
        }));
        Ok(pruned)
    }

    /// Appends an audit row, chained to the newest row, and returns it as
    /// stored (`actor` and `details` with their keys sorted).
    pub fn append_audit(&mut self, r: &AuditRecord) -> Result<AuditRow, StoreError> {
        require(!r.action.is_empty(), "audit action is empty")?;
        let (seq, prev_hash) = match on!(self, last_audit())? {
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
        on!(self, insert_audit(&stored))?;
        audit_row(stored)
    }

    /// Records a newly minted setup code.
    pub fn insert_setup_code(&mut self, c: &SetupCode) -> Result<(), StoreError> {
        require(!c.setup_id.is_empty(), "setup id is empty")?;
        require(!c.role.is_empty(), "role is empty")?;
        on!(self, insert_setup_code(c))
    }

    /// The setup code whose bootstrap token hashes to `hash`.
    pub fn setup_code_by_hash(&self, hash: &[u8; 32]) -> Result<Option<SetupCode>, StoreError> {
        on!(self, select_setup_code_by_hash(hash))
    }

    /// The setup code `setup_id`.
    pub fn setup_code(&self, setup_id: &str) -> Result<Option<SetupCode>, StoreError> {
        on!(self, select_setup_code(setup_id))
    }

    /// Marks the code used by `device_id` if it is live at `now_ms`;
    /// returns whether it was (exactly one of two racing redemptions is).
    pub fn consume_setup_code(
        &mut self,
        setup_id: &str,
        device_id: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        on!(self, consume_setup_code(setup_id, device_id, now_ms))
    }

    /// Revokes the code if it is live at `now_ms`; returns whether it was.
    pub fn revoke_setup_code(&mut self, setup_id: &str, now_ms: u64) -> Result<bool, StoreError> {
        on!(self, revoke_setup_code(setup_id, now_ms))
    }

    /// Records a newly registered passkey.
    pub fn insert_passkey(&mut self, p: &Passkey) -> Result<(), StoreError> {
        require(!p.credential_id.is_empty(), "credential id is empty")?;
        require(!p.rp_id.is_empty(), "rp id is empty")?;
        on!(self, insert_passkey(p))
    }

    /// The passkey with this credential id.
    pub fn passkey(&self, credential_id: &str) -> Result<Option<Passkey>, StoreError> {
        on!(self, select_passkey(credential_id))
    }

    /// Stores a sign-in's authenticator state; returns whether the passkey
    /// still existed.
    pub fn update_passkey_use(
        &mut self,
        credential_id: &str,
        state: &[u8],
        sign_count: u32,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        on!(
            self,
            update_passkey_use(credential_id, state, sign_count, now_ms)
        )
    }

    /// Flags the passkey (first time only); returns whether it did.
    pub fn flag_passkey(
        &mut self,
        credential_id: &str,
        now_ms: u64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        on!(self, flag_passkey(credential_id, now_ms, reason))
    }

    /// Removes the passkey; returns whether it existed.
    pub fn delete_passkey(&mut self, credential_id: &str) -> Result<bool, StoreError> {
        on!(self, delete_passkey(credential_id))
    }

    /// The device as this transaction sees it.
    pub fn device(&self, device_id: &str) -> Result<Option<Device>, StoreError> {
        on!(self, select_device(device_id))
    }

    /// The (device, role) entry as this transaction sees it.
    pub fn role_token(&self, device_id: &str, role: &str) -> Result<Option<RoleToken>, StoreError> {
        on!(self, select_role_token(device_id, role))
    }

    /// The pending request as this transaction sees it.
    pub fn pending(&self, request_id: &str) -> Result<Option<PendingRequest>, StoreError> {
        on!(self, select_pending(request_id))
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
