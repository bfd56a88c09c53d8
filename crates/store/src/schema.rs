//! All of the store's SQL: connection settings, schema migrations and the
//! statements the store and its transactions run. Nothing else in the crate
//! writes SQL.
//!
//! Lists (`roles`, `scopes`) are JSON text columns; token and audit hashes
//! are lowercase hex text so the file reads well in the sqlite3 shell.

use std::time::Duration;

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::de::DeserializeOwned;

use crate::audit::StoredAuditRow;
use crate::error::StoreError;
use crate::model::{
    AuditQuery, Device, Passkey, PendingRequest, RoleToken, Seen, SetupCode, TokenHash,
};

/// How long a writer waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations; migration `i` (0-based) moves `user_version` from
/// `i` to `i + 1`. Append only: never edit a shipped migration.
const MIGRATIONS: &[&str] = &[
    MIGRATION_1,
    MIGRATION_2_PAIRING_CODES,
    MIGRATION_3_SETUP_CODES,
    MIGRATION_4_PASSKEYS,
];

const MIGRATION_1: &str = r#"
CREATE TABLE devices (
    device_id        TEXT PRIMARY KEY NOT NULL,
    public_key       TEXT NOT NULL,
    display_name     TEXT,
    operator_label   TEXT,
    platform         TEXT,
    device_family    TEXT,
    client_id        TEXT,
    client_mode      TEXT,
    browser_origin   TEXT,
    roles_json       TEXT NOT NULL,
    scopes_json      TEXT NOT NULL,
    remote_ip        TEXT,
    approved_via     TEXT NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    approved_at_ms   INTEGER NOT NULL,
    last_seen_at_ms  INTEGER,
    last_seen_reason TEXT
) STRICT;

-- Token rows reference their device; the check is deferred to COMMIT so a
-- transaction may write a device and its tokens in any order.
CREATE TABLE role_tokens (
    device_id       TEXT NOT NULL
                    REFERENCES devices(device_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    role            TEXT NOT NULL,
    scopes_json     TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    rotated_at_ms   INTEGER,
    revoked_at_ms   INTEGER,
    last_used_at_ms INTEGER,
    PRIMARY KEY (device_id, role)
) STRICT;

CREATE TABLE token_hashes (
    id           INTEGER PRIMARY KEY,
    hash         TEXT NOT NULL UNIQUE CHECK (length(hash) = 64),
    device_id    TEXT NOT NULL
                 REFERENCES devices(device_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    role         TEXT NOT NULL,
    scopes_json  TEXT NOT NULL,
    issued_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX token_hashes_by_role ON token_hashes (device_id, role, issued_at_ms, id);

-- Pending requests usually belong to devices that are not paired yet, so
-- they carry no foreign key; deleting a device deletes them explicitly.
CREATE TABLE pending_requests (
    request_id      TEXT PRIMARY KEY NOT NULL,
    device_id       TEXT NOT NULL,
    public_key      TEXT NOT NULL,
    display_name    TEXT,
    platform        TEXT,
    device_family   TEXT,
    client_id       TEXT,
    client_mode     TEXT,
    browser_origin  TEXT,
    remote_ip       TEXT,
    role            TEXT NOT NULL,
    roles_json      TEXT NOT NULL,
    scopes_json     TEXT NOT NULL,
    reason          TEXT NOT NULL,
    silent          INTEGER NOT NULL CHECK (silent IN (0, 1)),
    is_repair       INTEGER NOT NULL CHECK (is_repair IN (0, 1)),
    ts              INTEGER NOT NULL,
    refreshed_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX pending_requests_by_device ON pending_requests (device_id);
CREATE INDEX pending_requests_by_refresh ON pending_requests (refreshed_at_ms);

CREATE TABLE audit_log (
    seq          INTEGER PRIMARY KEY,
    ts_ms        INTEGER NOT NULL,
    action       TEXT NOT NULL,
    actor_json   TEXT NOT NULL,
    device_id    TEXT,
    details_json TEXT NOT NULL,
    prev_hash    TEXT NOT NULL CHECK (length(prev_hash) = 64),
    hash         TEXT NOT NULL CHECK (length(hash) = 64)
) STRICT;
CREATE INDEX audit_log_by_action ON audit_log (action, seq);
CREATE INDEX audit_log_by_device ON audit_log (device_id, seq);
CREATE INDEX audit_log_by_ts ON audit_log (ts_ms, seq);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;
"#;

/// Short pairing codes: kept with their request (and deleted with it),
/// unique among pending requests (NULL for rows written before).
const MIGRATION_2_PAIRING_CODES: &str = r#"
ALTER TABLE pending_requests ADD COLUMN pairing_code TEXT;
CREATE UNIQUE INDEX pending_requests_by_code ON pending_requests (pairing_code);
"#;

/// Setup codes (bootstrap tokens): single-use, bound to one role and its
/// scopes, kept only as the SHA-256 of the token. `setup_id` is the
/// non-secret handle that lists and revocations use.
const MIGRATION_3_SETUP_CODES: &str = r#"
CREATE TABLE setup_codes (
    setup_id          TEXT PRIMARY KEY NOT NULL,
    token_hash        TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
    role              TEXT NOT NULL,
    scopes_json       TEXT NOT NULL,
    label             TEXT,
    created_by        TEXT,
    created_at_ms     INTEGER NOT NULL,
    expires_at_ms     INTEGER NOT NULL,
    used_at_ms        INTEGER,
    used_by_device_id TEXT,
    revoked_at_ms     INTEGER
) STRICT;
CREATE INDEX setup_codes_by_expiry ON setup_codes (expires_at_ms);
"#;

/// Passkeys (WebAuthn credentials) that sign browsers in as operators.
/// `public_key` and `state` are the WebAuthn library's encodings, as hex.
const MIGRATION_4_PASSKEYS: &str = r#"
CREATE TABLE passkeys (
    credential_id   TEXT PRIMARY KEY NOT NULL,
    user_handle     TEXT NOT NULL,
    label           TEXT NOT NULL,
    rp_id           TEXT NOT NULL,
    scopes_json     TEXT NOT NULL,
    public_key      TEXT NOT NULL,
    state           TEXT NOT NULL,
    sign_count      INTEGER NOT NULL,
    created_by      TEXT,
    created_at_ms   INTEGER NOT NULL,
    last_used_at_ms INTEGER,
    flagged_at_ms   INTEGER,
    flagged_reason  TEXT
) STRICT;
"#;

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Per-connection settings: WAL, NORMAL sync (durable at checkpoints,
/// never corrupt), foreign keys, and a busy timeout.
pub(crate) fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Sqlite(format!(
            "could not switch the database to WAL mode (got {mode})"
        )));
    }
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
    Ok(())
}

/// Settings for a read-only connection opened by a checker: it waits for
/// locks and changes nothing (not even the journal mode).
pub(crate) fn configure_reader(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch("PRAGMA query_only = ON")?;
    Ok(())
}

/// Brings the schema up to [`SCHEMA_VERSION`], one transaction per step.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
    }
    Ok(())
}

pub(crate) fn schema_version(conn: &Connection) -> Result<u32, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

fn json_col<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

fn hash_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<[u8; 32]> {
    let text: String = row.get(idx)?;
    clawgate_protocol::hex::decode32(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            Type::Text,
            "token hash is not 64 hex".into(),
        )
    })
}

fn to_json(list: &[String]) -> String {
    serde_json::to_string(list).expect("a list of strings always serialises")
}

// ---------------------------------------------------------------- devices

const DEVICE_COLUMNS: &str = "device_id, public_key, display_name, operator_label, platform, \
     device_family, client_id, client_mode, browser_origin, roles_json, scopes_json, remote_ip, \
     approved_via, created_at_ms, approved_at_ms, last_seen_at_ms, last_seen_reason";

fn device_from_row(r: &Row<'_>) -> rusqlite::Result<Device> {
    Ok(Device {
        device_id: r.get(0)?,
        public_key: r.get(1)?,
        display_name: r.get(2)?,
        operator_label: r.get(3)?,
        platform: r.get(4)?,
        device_family: r.get(5)?,
        client_id: r.get(6)?,
        client_mode: r.get(7)?,
        browser_origin: r.get(8)?,
        roles: json_col(r, 9)?,
        scopes: json_col(r, 10)?,
        remote_ip: r.get(11)?,
        approved_via: r.get(12)?,
        created_at_ms: r.get(13)?,
        approved_at_ms: r.get(14)?,
        last_seen_at_ms: r.get(15)?,
        last_seen_reason: r.get(16)?,
    })
}

/// Insert or update in place. (Not `INSERT OR REPLACE`: that deletes the
/// old row first, and the delete would cascade to the device's tokens.)
pub(crate) fn upsert_device(conn: &Connection, d: &Device) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO devices (device_id, public_key, display_name, operator_label, platform, \
         device_family, client_id, client_mode, browser_origin, roles_json, scopes_json, remote_ip, \
         approved_via, created_at_ms, approved_at_ms, last_seen_at_ms, last_seen_reason) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
         ON CONFLICT (device_id) DO UPDATE SET public_key = excluded.public_key, \
         display_name = excluded.display_name, operator_label = excluded.operator_label, \
         platform = excluded.platform, device_family = excluded.device_family, \
         client_id = excluded.client_id, client_mode = excluded.client_mode, \
         browser_origin = excluded.browser_origin, roles_json = excluded.roles_json, \
         scopes_json = excluded.scopes_json, remote_ip = excluded.remote_ip, \
         approved_via = excluded.approved_via, created_at_ms = excluded.created_at_ms, \
         approved_at_ms = excluded.approved_at_ms, last_seen_at_ms = excluded.last_seen_at_ms, \
         last_seen_reason = excluded.last_seen_reason",
    )?
    .execute(params![
        d.device_id,
        d.public_key,
        d.display_name,
        d.operator_label,
        d.platform,
        d.device_family,
        d.client_id,
        d.client_mode,
        d.browser_origin,
        to_json(&d.roles),
        to_json(&d.scopes),
        d.remote_ip,
        d.approved_via,
        d.created_at_ms,
        d.approved_at_ms,
        d.last_seen_at_ms,
        d.last_seen_reason,
    ])?;
    Ok(())
}

/// Deletes the device (its role tokens and token hashes cascade) and its
/// pending requests. Returns whether the device existed.
pub(crate) fn delete_device(conn: &Connection, device_id: &str) -> Result<bool, StoreError> {
    conn.prepare_cached("DELETE FROM pending_requests WHERE device_id = ?1")?
        .execute([device_id])?;
    let n = conn
        .prepare_cached("DELETE FROM devices WHERE device_id = ?1")?
        .execute([device_id])?;
    Ok(n > 0)
}

pub(crate) fn select_device(
    conn: &Connection,
    device_id: &str,
) -> Result<Option<Device>, StoreError> {
    let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([device_id], device_from_row)
        .optional()?)
}

pub(crate) fn select_devices(conn: &Connection) -> Result<Vec<Device>, StoreError> {
    let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices ORDER BY approved_at_ms, device_id");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], device_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

// ------------------------------------------------------------ role tokens

const ROLE_TOKEN_COLUMNS: &str =
    "device_id, role, scopes_json, created_at_ms, rotated_at_ms, revoked_at_ms, last_used_at_ms";

fn role_token_from_row(r: &Row<'_>) -> rusqlite::Result<RoleToken> {
    Ok(RoleToken {
        device_id: r.get(0)?,
        role: r.get(1)?,
        scopes: json_col(r, 2)?,
        created_at_ms: r.get(3)?,
        rotated_at_ms: r.get(4)?,
        revoked_at_ms: r.get(5)?,
        last_used_at_ms: r.get(6)?,
    })
}

pub(crate) fn upsert_role_token(conn: &Connection, t: &RoleToken) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO role_tokens (device_id, role, scopes_json, created_at_ms, rotated_at_ms, \
         revoked_at_ms, last_used_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (device_id, role) DO UPDATE SET scopes_json = excluded.scopes_json, \
         created_at_ms = excluded.created_at_ms, rotated_at_ms = excluded.rotated_at_ms, \
         revoked_at_ms = excluded.revoked_at_ms, last_used_at_ms = excluded.last_used_at_ms",
    )?
    .execute(params![
        t.device_id,
        t.role,
        to_json(&t.scopes),
        t.created_at_ms,
        t.rotated_at_ms,
        t.revoked_at_ms,
        t.last_used_at_ms,
    ])?;
    Ok(())
}

/// Sets the last-seen fields of a device; returns whether it exists.
pub(crate) fn mark_device_seen(
    conn: &Connection,
    device_id: &str,
    seen: &Seen,
) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE devices SET last_seen_at_ms = ?2, last_seen_reason = ?3, remote_ip = ?4 \
             WHERE device_id = ?1",
        )?
        .execute(params![device_id, seen.at_ms, seen.reason, seen.remote_ip])?;
    Ok(n > 0)
}

/// Sets `last_used_at_ms`; returns whether the entry exists.
pub(crate) fn touch_role_token(
    conn: &Connection,
    device_id: &str,
    role: &str,
    last_used_at_ms: u64,
) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE role_tokens SET last_used_at_ms = ?3 WHERE device_id = ?1 AND role = ?2",
        )?
        .execute(params![device_id, role, last_used_at_ms])?;
    Ok(n > 0)
}

pub(crate) fn select_role_token(
    conn: &Connection,
    device_id: &str,
    role: &str,
) -> Result<Option<RoleToken>, StoreError> {
    let sql =
        format!("SELECT {ROLE_TOKEN_COLUMNS} FROM role_tokens WHERE device_id = ?1 AND role = ?2");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([device_id, role], role_token_from_row)
        .optional()?)
}

pub(crate) fn select_role_tokens(conn: &Connection) -> Result<Vec<RoleToken>, StoreError> {
    let sql = format!("SELECT {ROLE_TOKEN_COLUMNS} FROM role_tokens ORDER BY device_id, role");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], role_token_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

// ----------------------------------------------------------- token hashes

const TOKEN_HASH_COLUMNS: &str = "hash, device_id, role, scopes_json, issued_at_ms";

fn token_hash_from_row(r: &Row<'_>) -> rusqlite::Result<TokenHash> {
    Ok(TokenHash {
        hash: hash_col(r, 0)?,
        device_id: r.get(1)?,
        role: r.get(2)?,
        scopes: json_col(r, 3)?,
        issued_at_ms: r.get(4)?,
    })
}

pub(crate) fn insert_token_hash(conn: &Connection, t: &TokenHash) -> Result<(), StoreError> {
    let result = conn
        .prepare_cached(
            "INSERT INTO token_hashes (hash, device_id, role, scopes_json, issued_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            clawgate_protocol::hex::encode(&t.hash),
            t.device_id,
            t.role,
            to_json(&t.scopes),
            t.issued_at_ms,
        ]);
    match result {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            Err(StoreError::Invalid("token hash already recorded".into()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes all but the `keep` newest hashes of (device, role) and returns
/// the deleted hashes.
pub(crate) fn trim_token_hashes(
    conn: &Connection,
    device_id: &str,
    role: &str,
    keep: usize,
) -> Result<Vec<[u8; 32]>, StoreError> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "DELETE FROM token_hashes WHERE id IN ( \
             SELECT id FROM token_hashes WHERE device_id = ?1 AND role = ?2 \
             ORDER BY issued_at_ms DESC, id DESC LIMIT -1 OFFSET ?3) \
         RETURNING hash",
    )?;
    let rows = stmt.query_map(params![device_id, role, keep], |r| hash_col(r, 0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn delete_token_hashes(
    conn: &Connection,
    device_id: &str,
    role: &str,
) -> Result<usize, StoreError> {
    Ok(conn
        .prepare_cached("DELETE FROM token_hashes WHERE device_id = ?1 AND role = ?2")?
        .execute([device_id, role])?)
}

/// Every token hash, oldest first within each (device, role).
pub(crate) fn select_token_hashes(conn: &Connection) -> Result<Vec<TokenHash>, StoreError> {
    let sql = format!(
        "SELECT {TOKEN_HASH_COLUMNS} FROM token_hashes ORDER BY device_id, role, issued_at_ms, id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], token_hash_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

// -------------------------------------------------------- pending requests

const PENDING_COLUMNS: &str = "request_id, device_id, public_key, display_name, platform, \
     device_family, client_id, client_mode, browser_origin, remote_ip, role, roles_json, \
     scopes_json, reason, silent, is_repair, ts, refreshed_at_ms, pairing_code";

fn pending_from_row(r: &Row<'_>) -> rusqlite::Result<PendingRequest> {
    Ok(PendingRequest {
        request_id: r.get(0)?,
        device_id: r.get(1)?,
        public_key: r.get(2)?,
        display_name: r.get(3)?,
        platform: r.get(4)?,
        device_family: r.get(5)?,
        client_id: r.get(6)?,
        client_mode: r.get(7)?,
        browser_origin: r.get(8)?,
        remote_ip: r.get(9)?,
        role: r.get(10)?,
        roles: json_col(r, 11)?,
        scopes: json_col(r, 12)?,
        reason: r.get(13)?,
        silent: r.get(14)?,
        is_repair: r.get(15)?,
        ts: r.get(16)?,
        refreshed_at_ms: r.get(17)?,
        pairing_code: r.get(18)?,
    })
}

pub(crate) fn upsert_pending(conn: &Connection, p: &PendingRequest) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO pending_requests (request_id, device_id, public_key, display_name, platform, \
         device_family, client_id, client_mode, browser_origin, remote_ip, role, roles_json, \
         scopes_json, reason, silent, is_repair, ts, refreshed_at_ms, pairing_code) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19) \
         ON CONFLICT (request_id) DO UPDATE SET device_id = excluded.device_id, \
         public_key = excluded.public_key, display_name = excluded.display_name, \
         platform = excluded.platform, device_family = excluded.device_family, \
         client_id = excluded.client_id, client_mode = excluded.client_mode, \
         browser_origin = excluded.browser_origin, remote_ip = excluded.remote_ip, \
         role = excluded.role, roles_json = excluded.roles_json, \
         scopes_json = excluded.scopes_json, reason = excluded.reason, silent = excluded.silent, \
         is_repair = excluded.is_repair, ts = excluded.ts, \
         refreshed_at_ms = excluded.refreshed_at_ms, pairing_code = excluded.pairing_code",
    )?
    .execute(params![
        p.request_id,
        p.device_id,
        p.public_key,
        p.display_name,
        p.platform,
        p.device_family,
        p.client_id,
        p.client_mode,
        p.browser_origin,
        p.remote_ip,
        p.role,
        to_json(&p.roles),
        to_json(&p.scopes),
        p.reason,
        p.silent,
        p.is_repair,
        p.ts,
        p.refreshed_at_ms,
        p.pairing_code,
    ])?;
    Ok(())
}

/// Deletes the request; returns its device id when it existed.
pub(crate) fn delete_pending(
    conn: &Connection,
    request_id: &str,
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("DELETE FROM pending_requests WHERE request_id = ?1 RETURNING device_id")?
        .query_row([request_id], |r| r.get(0))
        .optional()?)
}

/// Deletes and returns the requests last refreshed before `older_than_ms`.
pub(crate) fn delete_pending_refreshed_before(
    conn: &Connection,
    older_than_ms: u64,
) -> Result<Vec<PendingRequest>, StoreError> {
    let sql = format!(
        "DELETE FROM pending_requests WHERE refreshed_at_ms < ?1 RETURNING {PENDING_COLUMNS}"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([older_than_ms], pending_from_row)?;
    let mut out: Vec<PendingRequest> = rows.collect::<Result<_, _>>()?;
    out.sort_by(|a, b| (a.ts, &a.request_id).cmp(&(b.ts, &b.request_id)));
    Ok(out)
}

pub(crate) fn select_pending(
    conn: &Connection,
    request_id: &str,
) -> Result<Option<PendingRequest>, StoreError> {
    let sql = format!("SELECT {PENDING_COLUMNS} FROM pending_requests WHERE request_id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([request_id], pending_from_row)
        .optional()?)
}

pub(crate) fn select_all_pending(conn: &Connection) -> Result<Vec<PendingRequest>, StoreError> {
    let sql = format!("SELECT {PENDING_COLUMNS} FROM pending_requests ORDER BY ts, request_id");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], pending_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

// -------------------------------------------------------------- audit log

const AUDIT_COLUMNS: &str =
    "seq, ts_ms, action, actor_json, device_id, details_json, prev_hash, hash";

fn audit_from_row(r: &Row<'_>) -> rusqlite::Result<StoredAuditRow> {
    Ok(StoredAuditRow {
        seq: r.get(0)?,
        ts_ms: r.get(1)?,
        action: r.get(2)?,
        actor_json: r.get(3)?,
        device_id: r.get(4)?,
        details_json: r.get(5)?,
        prev_hash: r.get(6)?,
        hash: r.get(7)?,
    })
}

/// `(seq, hash)` of the newest audit row.
pub(crate) fn last_audit(conn: &Connection) -> Result<Option<(u64, String)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

pub(crate) fn insert_audit(conn: &Connection, row: &StoredAuditRow) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO audit_log (seq, ts_ms, action, actor_json, device_id, details_json, \
         prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        row.seq,
        row.ts_ms,
        row.action,
        row.actor_json,
        row.device_id,
        row.details_json,
        row.prev_hash,
        row.hash,
    ])?;
    Ok(())
}

fn sql_int(v: u64) -> Result<rusqlite::types::Value, StoreError> {
    i64::try_from(v)
        .map(rusqlite::types::Value::Integer)
        .map_err(|_| StoreError::Invalid(format!("{v} is out of range")))
}

/// Up to `limit` rows matching `q`, ascending by seq. The WHERE clause
/// names only the filters in use so SQLite can pick the matching index.
pub(crate) fn select_audit(
    conn: &Connection,
    q: &AuditQuery,
    limit: usize,
) -> Result<Vec<StoredAuditRow>, StoreError> {
    let mut clauses: Vec<&str> = vec!["seq > ?"];
    let mut args: Vec<rusqlite::types::Value> = vec![sql_int(q.after_seq.unwrap_or(0))?];
    if let Some(action) = &q.action {
        clauses.push("action = ?");
        args.push(action.clone().into());
    }
    if let Some(device_id) = &q.device_id {
        clauses.push("device_id = ?");
        args.push(device_id.clone().into());
    }
    if let Some(since) = q.since_ms {
        clauses.push("ts_ms >= ?");
        args.push(sql_int(since)?);
    }
    if let Some(until) = q.until_ms {
        clauses.push("ts_ms <= ?");
        args.push(sql_int(until)?);
    }
    args.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
    let sql = format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE {} ORDER BY seq LIMIT ?",
        clauses.join(" AND ")
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), audit_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Feeds every audit row, ascending by seq, to `f` until it returns false.
pub(crate) fn scan_audit(
    conn: &Connection,
    mut f: impl FnMut(StoredAuditRow) -> bool,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY seq"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        if !f(audit_from_row(r)?) {
            break;
        }
    }
    Ok(())
}

// ------------------------------------------------------------- self-checks

/// `PRAGMA integrity_check`: empty when the file is sound, otherwise what
/// SQLite found (at most 20 lines).
pub(crate) fn integrity_problems(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare("PRAGMA integrity_check(20)")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let lines: Vec<String> = rows.collect::<Result<_, _>>()?;
    Ok(if lines.len() == 1 && lines[0] == "ok" {
        Vec::new()
    } else {
        lines
    })
}

/// `PRAGMA foreign_key_check`: one line per row whose parent is missing.
pub(crate) fn foreign_key_problems(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
    let rows = stmt.query_map([], |r| {
        Ok(format!(
            "{} row {} refers to a missing {} row",
            r.get::<_, String>(0)?,
            r.get::<_, Option<i64>>(1)?.unwrap_or(-1),
            r.get::<_, String>(2)?,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

// ------------------------------------------------------------ setup codes

const SETUP_CODE_COLUMNS: &str = "setup_id, token_hash, role, scopes_json, label, created_by, \
     created_at_ms, expires_at_ms, used_at_ms, used_by_device_id, revoked_at_ms";

fn setup_code_from_row(r: &Row<'_>) -> rusqlite::Result<SetupCode> {
    Ok(SetupCode {
        setup_id: r.get(0)?,
        token_hash: hash_col(r, 1)?,
        role: r.get(2)?,
        scopes: json_col(r, 3)?,
        label: r.get(4)?,
        created_by: r.get(5)?,
        created_at_ms: r.get(6)?,
        expires_at_ms: r.get(7)?,
        used_at_ms: r.get(8)?,
        used_by_device_id: r.get(9)?,
        revoked_at_ms: r.get(10)?,
    })
}

pub(crate) fn insert_setup_code(conn: &Connection, c: &SetupCode) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO setup_codes ({SETUP_CODE_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))?
    .execute(params![
        c.setup_id,
        clawgate_protocol::hex::encode(&c.token_hash),
        c.role,
        to_json(&c.scopes),
        c.label,
        c.created_by,
        sql_int(c.created_at_ms)?,
        sql_int(c.expires_at_ms)?,
        c.used_at_ms.map(sql_int).transpose()?,
        c.used_by_device_id,
        c.revoked_at_ms.map(sql_int).transpose()?,
    ])?;
    Ok(())
}

pub(crate) fn select_setup_code_by_hash(
    conn: &Connection,
    hash: &[u8; 32],
) -> Result<Option<SetupCode>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SETUP_CODE_COLUMNS} FROM setup_codes WHERE token_hash = ?1"
        ))?
        .query_row([clawgate_protocol::hex::encode(hash)], setup_code_from_row)
        .optional()?)
}

pub(crate) fn select_setup_code(
    conn: &Connection,
    setup_id: &str,
) -> Result<Option<SetupCode>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SETUP_CODE_COLUMNS} FROM setup_codes WHERE setup_id = ?1"
        ))?
        .query_row([setup_id], setup_code_from_row)
        .optional()?)
}

pub(crate) fn select_setup_codes(conn: &Connection) -> Result<Vec<SetupCode>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SETUP_CODE_COLUMNS} FROM setup_codes ORDER BY created_at_ms, setup_id"
    ))?;
    let rows = stmt.query_map([], setup_code_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Marks the code used by `device_id` if it is still live at `now_ms`
/// (unused, not revoked, not expired): the one conditional UPDATE that
/// makes redemption single-use. Returns whether it did.
pub(crate) fn consume_setup_code(
    conn: &Connection,
    setup_id: &str,
    device_id: &str,
    now_ms: u64,
) -> Result<bool, StoreError> {
    let now = sql_int(now_ms)?;
    let n = conn
        .prepare_cached(
            "UPDATE setup_codes SET used_at_ms = ?1, used_by_device_id = ?2 \
             WHERE setup_id = ?3 AND used_at_ms IS NULL AND revoked_at_ms IS NULL \
             AND expires_at_ms > ?1",
        )?
        .execute(params![now, device_id, setup_id])?;
    Ok(n == 1)
}

/// Revokes the code if it is still live; returns whether it did.
pub(crate) fn revoke_setup_code(
    conn: &Connection,
    setup_id: &str,
    now_ms: u64,
) -> Result<bool, StoreError> {
    let now = sql_int(now_ms)?;
    let n = conn
        .prepare_cached(
            "UPDATE setup_codes SET revoked_at_ms = ?1 \
             WHERE setup_id = ?2 AND used_at_ms IS NULL AND revoked_at_ms IS NULL \
             AND expires_at_ms > ?1",
        )?
        .execute(params![now, setup_id])?;
    Ok(n == 1)
}

/// Deletes the codes that expired before `before_ms` (used, revoked or
/// not) and returns their ids.
pub(crate) fn delete_setup_codes_expired_before(
    conn: &Connection,
    before_ms: u64,
) -> Result<Vec<String>, StoreError> {
    let mut stmt =
        conn.prepare_cached("DELETE FROM setup_codes WHERE expires_at_ms < ?1 RETURNING setup_id")?;
    let rows = stmt.query_map([sql_int(before_ms)?], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

// ------------------------------------------------------------ passkeys

const PASSKEY_COLUMNS: &str = "credential_id, user_handle, label, rp_id, scopes_json, public_key, \
     state, sign_count, created_by, created_at_ms, last_used_at_ms, flagged_at_ms, flagged_reason";

fn hex_col(r: &Row<'_>, idx: usize) -> rusqlite::Result<Vec<u8>> {
    let text: String = r.get(idx)?;
    clawgate_protocol::hex::decode(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Text,
            "not hex".into(),
        )
    })
}

fn passkey_from_row(r: &Row<'_>) -> rusqlite::Result<Passkey> {
    Ok(Passkey {
        credential_id: r.get(0)?,
        user_handle: r.get(1)?,
        label: r.get(2)?,
        rp_id: r.get(3)?,
        scopes: json_col(r, 4)?,
        public_key: hex_col(r, 5)?,
        state: hex_col(r, 6)?,
        sign_count: r.get(7)?,
        created_by: r.get(8)?,
        created_at_ms: r.get(9)?,
        last_used_at_ms: r.get(10)?,
        flagged_at_ms: r.get(11)?,
        flagged_reason: r.get(12)?,
    })
}

pub(crate) fn insert_passkey(conn: &Connection, p: &Passkey) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO passkeys ({PASSKEY_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    ))?
    .execute(params![
        p.credential_id,
        p.user_handle,
        p.label,
        p.rp_id,
        to_json(&p.scopes),
        clawgate_protocol::hex::encode(&p.public_key),
        clawgate_protocol::hex::encode(&p.state),
        p.sign_count,
        p.created_by,
        sql_int(p.created_at_ms)?,
        p.last_used_at_ms.map(sql_int).transpose()?,
        p.flagged_at_ms.map(sql_int).transpose()?,
        p.flagged_reason,
    ])?;
    Ok(())
}

pub(crate) fn select_passkey(
    conn: &Connection,
    credential_id: &str,
) -> Result<Option<Passkey>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = ?1"
        ))?
        .query_row([credential_id], passkey_from_row)
        .optional()?)
}

pub(crate) fn select_passkeys(conn: &Connection) -> Result<Vec<Passkey>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PASSKEY_COLUMNS} FROM passkeys ORDER BY created_at_ms DESC, credential_id"
    ))?;
    let rows = stmt.query_map([], passkey_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records a successful sign-in: the new authenticator state and when.
pub(crate) fn update_passkey_use(
    conn: &Connection,
    credential_id: &str,
    state: &[u8],
    sign_count: u32,
    now_ms: u64,
) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE passkeys SET state = ?1, sign_count = ?2, last_used_at_ms = ?3 \
             WHERE credential_id = ?4",
        )?
        .execute(params![
            clawgate_protocol::hex::encode(state),
            sign_count,
            sql_int(now_ms)?,
            credential_id
        ])?;
    Ok(n == 1)
}

pub(crate) fn flag_passkey(
    conn: &Connection,
    credential_id: &str,
    now_ms: u64,
    reason: &str,
) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE passkeys SET flagged_at_ms = ?1, flagged_reason = ?2 \
             WHERE credential_id = ?3 AND flagged_at_ms IS NULL",
        )?
        .execute(params![sql_int(now_ms)?, reason, credential_id])?;
    Ok(n == 1)
}

pub(crate) fn delete_passkey(conn: &Connection, credential_id: &str) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached("DELETE FROM passkeys WHERE credential_id = ?1")?
        .execute([credential_id])?;
    Ok(n == 1)
}
