//! The PostgreSQL schema and statements: the same tables as the SQLite
//! schema (lists and hashes as the same text), plus the change log that
//! replicas follow and the presence rows they share.

use serde::de::DeserializeOwned;
use tokio_postgres::Row;

use super::PgTx;
use crate::audit::StoredAuditRow;
use crate::changes::{Change, ReplicaPresence};
use crate::error::StoreError;
use crate::model::{
    AuditQuery, Device, Passkey, PendingRequest, RoleToken, Seen, SetupCode, TokenHash,
};

/// Schema migrations; step `i` moves the version from `i` to `i + 1`.
/// Append only.
pub(crate) const MIGRATIONS: &[&str] = &[MIGRATION_1, MIGRATION_2_PASSKEYS];

pub(crate) const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Passkeys, as SQLite's migration 4.
const MIGRATION_2_PASSKEYS: &str = r#"
CREATE TABLE passkeys (
    credential_id   TEXT PRIMARY KEY,
    user_handle     TEXT NOT NULL,
    label           TEXT NOT NULL,
    rp_id           TEXT NOT NULL,
    scopes_json     TEXT NOT NULL,
    public_key      TEXT NOT NULL,
    state           TEXT NOT NULL,
    sign_count      BIGINT NOT NULL,
    created_by      TEXT,
    created_at_ms   BIGINT NOT NULL,
    last_used_at_ms BIGINT,
    flagged_at_ms   BIGINT,
    flagged_reason  TEXT
);
"#;

const MIGRATION_1: &str = r#"
CREATE TABLE devices (
    device_id        TEXT PRIMARY KEY,
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
    created_at_ms    BIGINT NOT NULL,
    approved_at_ms   BIGINT NOT NULL,
    last_seen_at_ms  BIGINT,
    last_seen_reason TEXT
);
CREATE TABLE role_tokens (
    device_id       TEXT NOT NULL
                    REFERENCES devices(device_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    role            TEXT NOT NULL,
    scopes_json     TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    rotated_at_ms   BIGINT,
    revoked_at_ms   BIGINT,
    last_used_at_ms BIGINT,
    PRIMARY KEY (device_id, role)
);
CREATE TABLE token_hashes (
    id           BIGSERIAL PRIMARY KEY,
    hash         TEXT NOT NULL UNIQUE CHECK (length(hash) = 64),
    device_id    TEXT NOT NULL
                 REFERENCES devices(device_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    role         TEXT NOT NULL,
    scopes_json  TEXT NOT NULL,
    issued_at_ms BIGINT NOT NULL
);
CREATE INDEX token_hashes_by_role ON token_hashes (device_id, role, issued_at_ms, id);
CREATE TABLE pending_requests (
    request_id      TEXT PRIMARY KEY,
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
    silent          BOOLEAN NOT NULL,
    is_repair       BOOLEAN NOT NULL,
    ts              BIGINT NOT NULL,
    refreshed_at_ms BIGINT NOT NULL,
    pairing_code    TEXT UNIQUE
);
CREATE INDEX pending_requests_by_device ON pending_requests (device_id);
CREATE INDEX pending_requests_by_refresh ON pending_requests (refreshed_at_ms);
CREATE TABLE audit_log (
    seq          BIGINT PRIMARY KEY,
    ts_ms        BIGINT NOT NULL,
    action       TEXT NOT NULL,
    actor_json   TEXT NOT NULL,
    device_id    TEXT,
    details_json TEXT NOT NULL,
    prev_hash    TEXT NOT NULL CHECK (length(prev_hash) = 64),
    hash         TEXT NOT NULL CHECK (length(hash) = 64)
);
CREATE INDEX audit_log_by_action ON audit_log (action, seq);
CREATE INDEX audit_log_by_device ON audit_log (device_id, seq);
CREATE INDEX audit_log_by_ts ON audit_log (ts_ms, seq);
CREATE FUNCTION clawgate_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS
$fn$ BEGIN RAISE EXCEPTION 'audit log is append-only'; END $fn$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION clawgate_audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION clawgate_audit_append_only();
CREATE TABLE setup_codes (
    setup_id          TEXT PRIMARY KEY,
    token_hash        TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
    role              TEXT NOT NULL,
    scopes_json       TEXT NOT NULL,
    label             TEXT,
    created_by        TEXT,
    created_at_ms     BIGINT NOT NULL,
    expires_at_ms     BIGINT NOT NULL,
    used_at_ms        BIGINT,
    used_by_device_id TEXT,
    revoked_at_ms     BIGINT
);
CREATE INDEX setup_codes_by_expiry ON setup_codes (expires_at_ms);
-- One row per committed auth-relevant transaction, written in it: the
-- devices it touched and what live sessions must see (closes, events).
-- Written only under the write lock, so seq order is commit order.
CREATE TABLE auth_changes (
    seq          BIGSERIAL PRIMARY KEY,
    ts_ms        BIGINT NOT NULL,
    origin       TEXT NOT NULL,
    devices_json TEXT NOT NULL,
    effects_json TEXT NOT NULL
);
CREATE INDEX auth_changes_by_ts ON auth_changes (ts_ms);
-- Each replica's live sessions, refreshed every few seconds.
CREATE TABLE replica_presence (
    replica_id      TEXT PRIMARY KEY,
    host            TEXT NOT NULL,
    started_at_ms   BIGINT NOT NULL,
    refreshed_at_ms BIGINT NOT NULL,
    sessions        BIGINT NOT NULL,
    entries_json    TEXT NOT NULL
)
"#;

fn int(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{v} is out of range")))
}

fn opt_int(v: Option<u64>) -> Result<Option<i64>, StoreError> {
    v.map(int).transpose()
}

fn decode<T>(what: &str, r: Result<T, tokio_postgres::Error>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn get_u64(row: &Row, idx: usize) -> Result<u64, StoreError> {
    let v: i64 = decode("integer column", row.try_get(idx))?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative value {v}")))
}

fn get_opt_u64(row: &Row, idx: usize) -> Result<Option<u64>, StoreError> {
    let v: Option<i64> = decode("integer column", row.try_get(idx))?;
    v.map(|v| u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative value {v}"))))
        .transpose()
}

fn get_str(row: &Row, idx: usize) -> Result<String, StoreError> {
    decode("text column", row.try_get(idx))
}

fn get_opt_str(row: &Row, idx: usize) -> Result<Option<String>, StoreError> {
    decode("text column", row.try_get(idx))
}

fn get_json<T: DeserializeOwned>(row: &Row, idx: usize) -> Result<T, StoreError> {
    let text: String = get_str(row, idx)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("JSON column: {e}")))
}

fn get_hash(row: &Row, idx: usize) -> Result<[u8; 32], StoreError> {
    let text = get_str(row, idx)?;
    clawgate_protocol::hex::decode32(&text)
        .ok_or_else(|| StoreError::Corrupt("token hash is not 64 hex".into()))
}

fn to_json(list: &[String]) -> String {
    serde_json::to_string(list).expect("a list of strings always serialises")
}

// ---------------------------------------------------------------- devices

const DEVICE_COLUMNS: &str = "device_id, public_key, display_name, operator_label, platform, \
     device_family, client_id, client_mode, browser_origin, roles_json, scopes_json, remote_ip, \
     approved_via, created_at_ms, approved_at_ms, last_seen_at_ms, last_seen_reason";

fn device(r: &Row) -> Result<Device, StoreError> {
    Ok(Device {
        device_id: get_str(r, 0)?,
        public_key: get_str(r, 1)?,
        display_name: get_opt_str(r, 2)?,
        operator_label: get_opt_str(r, 3)?,
        platform: get_opt_str(r, 4)?,
        device_family: get_opt_str(r, 5)?,
        client_id: get_opt_str(r, 6)?,
        client_mode: get_opt_str(r, 7)?,
        browser_origin: get_opt_str(r, 8)?,
        roles: get_json(r, 9)?,
        scopes: get_json(r, 10)?,
        remote_ip: get_opt_str(r, 11)?,
        approved_via: get_str(r, 12)?,
        created_at_ms: get_u64(r, 13)?,
        approved_at_ms: get_u64(r, 14)?,
        last_seen_at_ms: get_opt_u64(r, 15)?,
        last_seen_reason: get_opt_str(r, 16)?,
    })
}

pub(crate) fn upsert_device(tx: &PgTx<'_>, d: &Device) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO devices (device_id, public_key, display_name, operator_label, platform, \
         device_family, client_id, client_mode, browser_origin, roles_json, scopes_json, remote_ip, \
         approved_via, created_at_ms, approved_at_ms, last_seen_at_ms, last_seen_reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         ON CONFLICT (device_id) DO UPDATE SET public_key = excluded.public_key, \
         display_name = excluded.display_name, operator_label = excluded.operator_label, \
         platform = excluded.platform, device_family = excluded.device_family, \
         client_id = excluded.client_id, client_mode = excluded.client_mode, \
         browser_origin = excluded.browser_origin, roles_json = excluded.roles_json, \
         scopes_json = excluded.scopes_json, remote_ip = excluded.remote_ip, \
         approved_via = excluded.approved_via, created_at_ms = excluded.created_at_ms, \
         approved_at_ms = excluded.approved_at_ms, last_seen_at_ms = excluded.last_seen_at_ms, \
         last_seen_reason = excluded.last_seen_reason",
        &[
            &d.device_id,
            &d.public_key,
            &d.display_name,
            &d.operator_label,
            &d.platform,
            &d.device_family,
            &d.client_id,
            &d.client_mode,
            &d.browser_origin,
            &to_json(&d.roles),
            &to_json(&d.scopes),
            &d.remote_ip,
            &d.approved_via,
            &int(d.created_at_ms)?,
            &int(d.approved_at_ms)?,
            &opt_int(d.last_seen_at_ms)?,
            &d.last_seen_reason,
        ],
    )?;
    Ok(())
}

pub(crate) fn delete_device(tx: &PgTx<'_>, device_id: &str) -> Result<bool, StoreError> {
    tx.execute(
        "DELETE FROM pending_requests WHERE device_id = $1",
        &[&device_id],
    )?;
    Ok(tx.execute("DELETE FROM devices WHERE device_id = $1", &[&device_id])? > 0)
}

pub(crate) fn select_device(tx: &PgTx<'_>, device_id: &str) -> Result<Option<Device>, StoreError> {
    tx.query_opt(
        "SELECT device_id, public_key, display_name, operator_label, platform, \
         device_family, client_id, client_mode, browser_origin, roles_json, scopes_json, remote_ip, \
         approved_via, created_at_ms, approved_at_ms, last_seen_at_ms, last_seen_reason \
         FROM devices WHERE device_id = $1",
        &[&device_id],
    )?
    .as_ref()
    .map(device)
    .transpose()
}

/// Every device, or (with `only`) those listed; ordered like SQLite's.
pub(crate) fn select_devices(
    tx: &PgTx<'_>,
    only: Option<&[String]>,
) -> Result<Vec<Device>, StoreError> {
    let rows = match only {
        None => tx.query_dynamic(
            &format!("SELECT {DEVICE_COLUMNS} FROM devices ORDER BY approved_at_ms, device_id"),
            &[],
        )?,
        Some(ids) => tx.query_dynamic(
            &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = ANY($1)"),
            &[&ids],
        )?,
    };
    rows.iter().map(device).collect()
}

pub(crate) fn mark_device_seen(
    tx: &PgTx<'_>,
    device_id: &str,
    seen: &Seen,
) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE devices SET last_seen_at_ms = $2, last_seen_reason = $3, remote_ip = $4 \
         WHERE device_id = $1",
        &[&device_id, &int(seen.at_ms)?, &seen.reason, &seen.remote_ip],
    )? > 0)
}

// ------------------------------------------------------------ role tokens

const ROLE_TOKEN_COLUMNS: &str =
    "device_id, role, scopes_json, created_at_ms, rotated_at_ms, revoked_at_ms, last_used_at_ms";

fn role_token(r: &Row) -> Result<RoleToken, StoreError> {
    Ok(RoleToken {
        device_id: get_str(r, 0)?,
        role: get_str(r, 1)?,
        scopes: get_json(r, 2)?,
        created_at_ms: get_u64(r, 3)?,
        rotated_at_ms: get_opt_u64(r, 4)?,
        revoked_at_ms: get_opt_u64(r, 5)?,
        last_used_at_ms: get_opt_u64(r, 6)?,
    })
}

pub(crate) fn upsert_role_token(tx: &PgTx<'_>, t: &RoleToken) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO role_tokens (device_id, role, scopes_json, created_at_ms, rotated_at_ms, \
         revoked_at_ms, last_used_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (device_id, role) DO UPDATE SET scopes_json = excluded.scopes_json, \
         created_at_ms = excluded.created_at_ms, rotated_at_ms = excluded.rotated_at_ms, \
         revoked_at_ms = excluded.revoked_at_ms, last_used_at_ms = excluded.last_used_at_ms",
        &[
            &t.device_id,
            &t.role,
            &to_json(&t.scopes),
            &int(t.created_at_ms)?,
            &opt_int(t.rotated_at_ms)?,
            &opt_int(t.revoked_at_ms)?,
            &opt_int(t.last_used_at_ms)?,
        ],
    )?;
    Ok(())
}

pub(crate) fn touch_role_token(
    tx: &PgTx<'_>,
    device_id: &str,
    role: &str,
    last_used_at_ms: u64,
) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE role_tokens SET last_used_at_ms = $3 WHERE device_id = $1 AND role = $2",
        &[&device_id, &role, &int(last_used_at_ms)?],
    )? > 0)
}

pub(crate) fn select_role_token(
    tx: &PgTx<'_>,
    device_id: &str,
    role: &str,
) -> Result<Option<RoleToken>, StoreError> {
    tx.query_opt(
        "SELECT device_id, role, scopes_json, created_at_ms, rotated_at_ms, revoked_at_ms, \
         last_used_at_ms FROM role_tokens WHERE device_id = $1 AND role = $2",
        &[&device_id, &role],
    )?
    .as_ref()
    .map(role_token)
    .transpose()
}

pub(crate) fn select_role_tokens(
    tx: &PgTx<'_>,
    only: Option<&[String]>,
) -> Result<Vec<RoleToken>, StoreError> {
    let rows = match only {
        None => tx.query_dynamic(
            &format!("SELECT {ROLE_TOKEN_COLUMNS} FROM role_tokens ORDER BY device_id, role"),
            &[],
        )?,
        Some(ids) => tx.query_dynamic(
            &format!(
                "SELECT {ROLE_TOKEN_COLUMNS} FROM role_tokens WHERE device_id = ANY($1) \
                 ORDER BY device_id, role"
            ),
            &[&ids],
        )?,
    };
    rows.iter().map(role_token).collect()
}

// ----------------------------------------------------------- token hashes

const TOKEN_HASH_COLUMNS: &str = "hash, device_id, role, scopes_json, issued_at_ms";

fn token_hash(r: &Row) -> Result<TokenHash, StoreError> {
    Ok(TokenHash {
        hash: get_hash(r, 0)?,
        device_id: get_str(r, 1)?,
        role: get_str(r, 2)?,
        scopes: get_json(r, 3)?,
        issued_at_ms: get_u64(r, 4)?,
    })
}

pub(crate) fn insert_token_hash(tx: &PgTx<'_>, t: &TokenHash) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO token_hashes (hash, device_id, role, scopes_json, issued_at_ms) \
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &clawgate_protocol::hex::encode(&t.hash),
            &t.device_id,
            &t.role,
            &to_json(&t.scopes),
            &int(t.issued_at_ms)?,
        ],
    )?;
    Ok(())
}

pub(crate) fn trim_token_hashes(
    tx: &PgTx<'_>,
    device_id: &str,
    role: &str,
    keep: usize,
) -> Result<Vec<[u8; 32]>, StoreError> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    tx.query(
        "DELETE FROM token_hashes WHERE id IN ( \
             SELECT id FROM token_hashes WHERE device_id = $1 AND role = $2 \
             ORDER BY issued_at_ms DESC, id DESC OFFSET $3) \
         RETURNING hash",
        &[&device_id, &role, &keep],
    )?
    .iter()
    .map(|r| get_hash(r, 0))
    .collect()
}

pub(crate) fn delete_token_hashes(
    tx: &PgTx<'_>,
    device_id: &str,
    role: &str,
) -> Result<usize, StoreError> {
    let n = tx.execute(
        "DELETE FROM token_hashes WHERE device_id = $1 AND role = $2",
        &[&device_id, &role],
    )?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Oldest first within each (device, role).
pub(crate) fn select_token_hashes(
    tx: &PgTx<'_>,
    only: Option<&[String]>,
) -> Result<Vec<TokenHash>, StoreError> {
    let rows = match only {
        None => tx.query_dynamic(
            &format!(
                "SELECT {TOKEN_HASH_COLUMNS} FROM token_hashes \
                 ORDER BY device_id, role, issued_at_ms, id"
            ),
            &[],
        )?,
        Some(ids) => tx.query_dynamic(
            &format!(
                "SELECT {TOKEN_HASH_COLUMNS} FROM token_hashes WHERE device_id = ANY($1) \
                 ORDER BY device_id, role, issued_at_ms, id"
            ),
            &[&ids],
        )?,
    };
    rows.iter().map(token_hash).collect()
}

// -------------------------------------------------------- pending requests

const PENDING_COLUMNS: &str = "request_id, device_id, public_key, display_name, platform, \
     device_family, client_id, client_mode, browser_origin, remote_ip, role, roles_json, \
     scopes_json, reason, silent, is_repair, ts, refreshed_at_ms, pairing_code";

fn pending(r: &Row) -> Result<PendingRequest, StoreError> {
    Ok(PendingRequest {
        request_id: get_str(r, 0)?,
        device_id: get_str(r, 1)?,
        public_key: get_str(r, 2)?,
        display_name: get_opt_str(r, 3)?,
        platform: get_opt_str(r, 4)?,
        device_family: get_opt_str(r, 5)?,
        client_id: get_opt_str(r, 6)?,
        client_mode: get_opt_str(r, 7)?,
        browser_origin: get_opt_str(r, 8)?,
        remote_ip: get_opt_str(r, 9)?,
        role: get_str(r, 10)?,
        roles: get_json(r, 11)?,
        scopes: get_json(r, 12)?,
        reason: get_str(r, 13)?,
        silent: decode("silent", r.try_get(14))?,
        is_repair: decode("is_repair", r.try_get(15))?,
        ts: get_u64(r, 16)?,
        refreshed_at_ms: get_u64(r, 17)?,
        pairing_code: get_opt_str(r, 18)?,
    })
}

pub(crate) fn upsert_pending(tx: &PgTx<'_>, p: &PendingRequest) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO pending_requests (request_id, device_id, public_key, display_name, platform, \
         device_family, client_id, client_mode, browser_origin, remote_ip, role, roles_json, \
         scopes_json, reason, silent, is_repair, ts, refreshed_at_ms, pairing_code) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
         ON CONFLICT (request_id) DO UPDATE SET device_id = excluded.device_id, \
         public_key = excluded.public_key, display_name = excluded.display_name, \
         platform = excluded.platform, device_family = excluded.device_family, \
         client_id = excluded.client_id, client_mode = excluded.client_mode, \
         browser_origin = excluded.browser_origin, remote_ip = excluded.remote_ip, \
         role = excluded.role, roles_json = excluded.roles_json, \
         scopes_json = excluded.scopes_json, reason = excluded.reason, silent = excluded.silent, \
         is_repair = excluded.is_repair, ts = excluded.ts, \
         refreshed_at_ms = excluded.refreshed_at_ms, pairing_code = excluded.pairing_code",
        &[
            &p.request_id,
            &p.device_id,
            &p.public_key,
            &p.display_name,
            &p.platform,
            &p.device_family,
            &p.client_id,
            &p.client_mode,
            &p.browser_origin,
            &p.remote_ip,
            &p.role,
            &to_json(&p.roles),
            &to_json(&p.scopes),
            &p.reason,
            &p.silent,
            &p.is_repair,
            &int(p.ts)?,
            &int(p.refreshed_at_ms)?,
            &p.pairing_code,
        ],
    )?;
    Ok(())
}

/// Deletes the request; returns its device id when it existed.
pub(crate) fn delete_pending(
    tx: &PgTx<'_>,
    request_id: &str,
) -> Result<Option<String>, StoreError> {
    tx.query_opt(
        "DELETE FROM pending_requests WHERE request_id = $1 RETURNING device_id",
        &[&request_id],
    )?
    .map(|r| get_str(&r, 0))
    .transpose()
}

pub(crate) fn delete_pending_refreshed_before(
    tx: &PgTx<'_>,
    older_than_ms: u64,
) -> Result<Vec<PendingRequest>, StoreError> {
    let mut out = tx
        .query(
            "DELETE FROM pending_requests WHERE refreshed_at_ms < $1 RETURNING request_id, \
             device_id, public_key, display_name, platform, device_family, client_id, \
             client_mode, browser_origin, remote_ip, role, roles_json, scopes_json, reason, \
             silent, is_repair, ts, refreshed_at_ms, pairing_code",
            &[&int(older_than_ms)?],
        )?
        .iter()
        .map(pending)
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by(|a, b| (a.ts, &a.request_id).cmp(&(b.ts, &b.request_id)));
    Ok(out)
}

pub(crate) fn select_pending(
    tx: &PgTx<'_>,
    request_id: &str,
) -> Result<Option<PendingRequest>, StoreError> {
    tx.query_opt(
        "SELECT request_id, device_id, public_key, display_name, platform, device_family, \
         client_id, client_mode, browser_origin, remote_ip, role, roles_json, scopes_json, \
         reason, silent, is_repair, ts, refreshed_at_ms, pairing_code \
         FROM pending_requests WHERE request_id = $1",
        &[&request_id],
    )?
    .as_ref()
    .map(pending)
    .transpose()
}

pub(crate) fn select_all_pending(
    tx: &PgTx<'_>,
    only: Option<&[String]>,
) -> Result<Vec<PendingRequest>, StoreError> {
    let rows = match only {
        None => tx.query_dynamic(
            &format!("SELECT {PENDING_COLUMNS} FROM pending_requests ORDER BY ts, request_id"),
            &[],
        )?,
        Some(ids) => tx.query_dynamic(
            &format!(
                "SELECT {PENDING_COLUMNS} FROM pending_requests WHERE device_id = ANY($1) \
                 ORDER BY ts, request_id"
            ),
            &[&ids],
        )?,
    };
    rows.iter().map(pending).collect()
}

// -------------------------------------------------------------- audit log

fn audit(r: &Row) -> Result<StoredAuditRow, StoreError> {
    Ok(StoredAuditRow {
        seq: get_u64(r, 0)?,
        ts_ms: get_u64(r, 1)?,
        action: get_str(r, 2)?,
        actor_json: get_str(r, 3)?,
        device_id: get_opt_str(r, 4)?,
        details_json: get_str(r, 5)?,
        prev_hash: get_str(r, 6)?,
        hash: get_str(r, 7)?,
    })
}

pub(crate) fn last_audit(tx: &PgTx<'_>) -> Result<Option<(u64, String)>, StoreError> {
    tx.query_opt(
        "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
        &[],
    )?
    .map(|r| Ok((get_u64(&r, 0)?, get_str(&r, 1)?)))
    .transpose()
}

pub(crate) fn insert_audit(tx: &PgTx<'_>, row: &StoredAuditRow) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO audit_log (seq, ts_ms, action, actor_json, device_id, details_json, \
         prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &int(row.seq)?,
            &int(row.ts_ms)?,
            &row.action,
            &row.actor_json,
            &row.device_id,
            &row.details_json,
            &row.prev_hash,
            &row.hash,
        ],
    )?;
    Ok(())
}

pub(crate) fn select_audit(
    tx: &PgTx<'_>,
    q: &AuditQuery,
    limit: usize,
) -> Result<Vec<StoredAuditRow>, StoreError> {
    let after = int(q.after_seq.unwrap_or(0))?;
    let since = opt_int(q.since_ms)?;
    let until = opt_int(q.until_ms)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut clauses = vec!["seq > $1".to_string()];
    let mut args: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&after];
    if let Some(action) = &q.action {
        args.push(action);
        clauses.push(format!("action = ${}", args.len()));
    }
    if let Some(device_id) = &q.device_id {
        args.push(device_id);
        clauses.push(format!("device_id = ${}", args.len()));
    }
    if let Some(since) = &since {
        args.push(since);
        clauses.push(format!("ts_ms >= ${}", args.len()));
    }
    if let Some(until) = &until {
        args.push(until);
        clauses.push(format!("ts_ms <= ${}", args.len()));
    }
    args.push(&limit);
    let sql = format!(
        "SELECT seq, ts_ms, action, actor_json, device_id, details_json, prev_hash, hash \
         FROM audit_log WHERE {} ORDER BY seq LIMIT ${}",
        clauses.join(" AND "),
        args.len()
    );
    tx.query_dynamic(&sql, &args)?.iter().map(audit).collect()
}

/// Feeds every audit row, ascending by seq, to `f` until it returns false;
/// reads in pages so a long chain is never all in memory.
pub(crate) fn scan_audit(
    tx: &PgTx<'_>,
    mut f: impl FnMut(StoredAuditRow) -> bool,
) -> Result<(), StoreError> {
    let mut after = 0i64;
    loop {
        let rows = tx.query(
            "SELECT seq, ts_ms, action, actor_json, device_id, details_json, prev_hash, hash \
             FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT 5000",
            &[&after],
        )?;
        if rows.is_empty() {
            return Ok(());
        }
        for r in &rows {
            let row = audit(r)?;
            after = int(row.seq)?;
            if !f(row) {
                return Ok(());
            }
        }
    }
}

// ------------------------------------------------------------ setup codes

fn setup_code(r: &Row) -> Result<SetupCode, StoreError> {
    Ok(SetupCode {
        setup_id: get_str(r, 0)?,
        token_hash: get_hash(r, 1)?,
        role: get_str(r, 2)?,
        scopes: get_json(r, 3)?,
        label: get_opt_str(r, 4)?,
        created_by: get_opt_str(r, 5)?,
        created_at_ms: get_u64(r, 6)?,
        expires_at_ms: get_u64(r, 7)?,
        used_at_ms: get_opt_u64(r, 8)?,
        used_by_device_id: get_opt_str(r, 9)?,
        revoked_at_ms: get_opt_u64(r, 10)?,
    })
}

pub(crate) fn insert_setup_code(tx: &PgTx<'_>, c: &SetupCode) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO setup_codes (setup_id, token_hash, role, scopes_json, label, created_by, \
         created_at_ms, expires_at_ms, used_at_ms, used_by_device_id, revoked_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            &c.setup_id,
            &clawgate_protocol::hex::encode(&c.token_hash),
            &c.role,
            &to_json(&c.scopes),
            &c.label,
            &c.created_by,
            &int(c.created_at_ms)?,
            &int(c.expires_at_ms)?,
            &opt_int(c.used_at_ms)?,
            &c.used_by_device_id,
            &opt_int(c.revoked_at_ms)?,
        ],
    )?;
    Ok(())
}

pub(crate) fn select_setup_code_by_hash(
    tx: &PgTx<'_>,
    hash: &[u8; 32],
) -> Result<Option<SetupCode>, StoreError> {
    tx.query_opt(
        "SELECT setup_id, token_hash, role, scopes_json, label, created_by, created_at_ms, \
         expires_at_ms, used_at_ms, used_by_device_id, revoked_at_ms \
         FROM setup_codes WHERE token_hash = $1",
        &[&clawgate_protocol::hex::encode(hash)],
    )?
    .as_ref()
    .map(setup_code)
    .transpose()
}

pub(crate) fn select_setup_code(
    tx: &PgTx<'_>,
    setup_id: &str,
) -> Result<Option<SetupCode>, StoreError> {
    tx.query_opt(
        "SELECT setup_id, token_hash, role, scopes_json, label, created_by, created_at_ms, \
         expires_at_ms, used_at_ms, used_by_device_id, revoked_at_ms \
         FROM setup_codes WHERE setup_id = $1",
        &[&setup_id],
    )?
    .as_ref()
    .map(setup_code)
    .transpose()
}

pub(crate) fn select_setup_codes(tx: &PgTx<'_>) -> Result<Vec<SetupCode>, StoreError> {
    tx.query(
        "SELECT setup_id, token_hash, role, scopes_json, label, created_by, created_at_ms, \
         expires_at_ms, used_at_ms, used_by_device_id, revoked_at_ms \
         FROM setup_codes ORDER BY created_at_ms, setup_id",
        &[],
    )?
    .iter()
    .map(setup_code)
    .collect()
}

pub(crate) fn consume_setup_code(
    tx: &PgTx<'_>,
    setup_id: &str,
    device_id: &str,
    now_ms: u64,
) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE setup_codes SET used_at_ms = $1, used_by_device_id = $2 \
         WHERE setup_id = $3 AND used_at_ms IS NULL AND revoked_at_ms IS NULL \
         AND expires_at_ms > $1",
        &[&int(now_ms)?, &device_id, &setup_id],
    )? == 1)
}

pub(crate) fn revoke_setup_code(
    tx: &PgTx<'_>,
    setup_id: &str,
    now_ms: u64,
) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE setup_codes SET revoked_at_ms = $1 \
         WHERE setup_id = $2 AND used_at_ms IS NULL AND revoked_at_ms IS NULL \
         AND expires_at_ms > $1",
        &[&int(now_ms)?, &setup_id],
    )? == 1)
}

pub(crate) fn delete_setup_codes_expired_before(
    tx: &PgTx<'_>,
    before_ms: u64,
) -> Result<Vec<String>, StoreError> {
    tx.query(
        "DELETE FROM setup_codes WHERE expires_at_ms < $1 RETURNING setup_id",
        &[&int(before_ms)?],
    )?
    .iter()
    .map(|r| get_str(r, 0))
    .collect()
}

// ------------------------------------------------------------- change log

/// Appends a change row and announces its sequence number (delivered at
/// COMMIT, only if the transaction commits).
pub(crate) fn insert_change(
    tx: &PgTx<'_>,
    ts_ms: u64,
    origin: &str,
    devices_json: &str,
    effects_json: &str,
) -> Result<u64, StoreError> {
    let row = tx.query_opt(
        "INSERT INTO auth_changes (ts_ms, origin, devices_json, effects_json) \
         VALUES ($1, $2, $3, $4) RETURNING seq",
        &[&int(ts_ms)?, &origin, &devices_json, &effects_json],
    )?;
    let seq = row
        .as_ref()
        .map(|r| get_u64(r, 0))
        .transpose()?
        .unwrap_or(0);
    tx.execute(
        "SELECT pg_notify('clawgate_changes', $1)::text",
        &[&seq.to_string()],
    )?;
    Ok(seq)
}

pub(crate) fn last_change_seq(tx: &PgTx<'_>) -> Result<u64, StoreError> {
    let row = tx.query_opt("SELECT COALESCE(MAX(seq), 0) FROM auth_changes", &[])?;
    row.as_ref().map(|r| get_u64(r, 0)).unwrap_or(Ok(0))
}

/// The oldest change still kept (0 when the log is empty).
pub(crate) fn first_change_seq(tx: &PgTx<'_>) -> Result<u64, StoreError> {
    let row = tx.query_opt("SELECT COALESCE(MIN(seq), 0) FROM auth_changes", &[])?;
    row.as_ref().map(|r| get_u64(r, 0)).unwrap_or(Ok(0))
}

pub(crate) fn changes_after(
    tx: &PgTx<'_>,
    after: u64,
    limit: i64,
) -> Result<Vec<Change>, StoreError> {
    tx.query(
        "SELECT seq, ts_ms, origin, devices_json, effects_json FROM auth_changes \
         WHERE seq > $1 ORDER BY seq LIMIT $2",
        &[&int(after)?, &limit],
    )?
    .iter()
    .map(|r| {
        Ok(Change {
            seq: get_u64(r, 0)?,
            ts_ms: get_u64(r, 1)?,
            origin: get_str(r, 2)?,
            devices: get_json(r, 3)?,
            effects: get_json(r, 4)?,
        })
    })
    .collect()
}

pub(crate) fn prune_changes(tx: &PgTx<'_>, before_ms: u64) -> Result<u64, StoreError> {
    tx.execute(
        "DELETE FROM auth_changes WHERE ts_ms < $1 \
         AND seq < (SELECT MAX(seq) FROM auth_changes)",
        &[&int(before_ms)?],
    )
}

// --------------------------------------------------------------- presence

pub(crate) fn upsert_presence(tx: &PgTx<'_>, p: &ReplicaPresence) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO replica_presence (replica_id, host, started_at_ms, refreshed_at_ms, \
         sessions, entries_json) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (replica_id) DO UPDATE SET host = excluded.host, \
         started_at_ms = excluded.started_at_ms, refreshed_at_ms = excluded.refreshed_at_ms, \
         sessions = excluded.sessions, entries_json = excluded.entries_json",
        &[
            &p.replica_id,
            &p.host,
            &int(p.started_at_ms)?,
            &int(p.refreshed_at_ms)?,
            &int(p.sessions)?,
            &p.entries.to_string(),
        ],
    )?;
    Ok(())
}

pub(crate) fn select_presence(
    tx: &PgTx<'_>,
    fresh_after_ms: u64,
) -> Result<Vec<ReplicaPresence>, StoreError> {
    tx.query(
        "SELECT replica_id, host, started_at_ms, refreshed_at_ms, sessions, entries_json \
         FROM replica_presence WHERE refreshed_at_ms > $1 ORDER BY started_at_ms, replica_id",
        &[&int(fresh_after_ms)?],
    )?
    .iter()
    .map(|r| {
        Ok(ReplicaPresence {
            replica_id: get_str(r, 0)?,
            host: get_str(r, 1)?,
            started_at_ms: get_u64(r, 2)?,
            refreshed_at_ms: get_u64(r, 3)?,
            sessions: get_u64(r, 4)?,
            entries: get_json(r, 5)?,
        })
    })
    .collect()
}

/// Deletes this replica's row and rows no replica refreshed since
/// `stale_before_ms`.
pub(crate) fn delete_presence(
    tx: &PgTx<'_>,
    replica_id: &str,
    stale_before_ms: u64,
) -> Result<u64, StoreError> {
    tx.execute(
        "DELETE FROM replica_presence WHERE replica_id = $1 OR refreshed_at_ms < $2",
        &[&replica_id, &int(stale_before_ms)?],
    )
}

/// Row counts of every registry table, for a copy's check.
pub(crate) fn counts(tx: &PgTx<'_>) -> Result<[u64; 7], StoreError> {
    let row = tx.query_opt(
        "SELECT (SELECT COUNT(*) FROM devices), (SELECT COUNT(*) FROM role_tokens), \
         (SELECT COUNT(*) FROM token_hashes), (SELECT COUNT(*) FROM pending_requests), \
         (SELECT COUNT(*) FROM setup_codes), (SELECT COUNT(*) FROM audit_log), \
         (SELECT COUNT(*) FROM passkeys)",
        &[],
    )?;
    let row = row.ok_or_else(|| StoreError::Corrupt("no counts".into()))?;
    let mut out = [0u64; 7];
    for (i, v) in out.iter_mut().enumerate() {
        *v = get_u64(&row, i)?;
    }
    Ok(out)
}

// ------------------------------------------------------------ passkeys

macro_rules! passkey_columns {
    () => {
        "credential_id, user_handle, label, rp_id, scopes_json, public_key, state, sign_count, \
         created_by, created_at_ms, last_used_at_ms, flagged_at_ms, flagged_reason"
    };
}

fn get_hex(r: &Row, idx: usize) -> Result<Vec<u8>, StoreError> {
    let text = get_str(r, idx)?;
    clawgate_protocol::hex::decode(&text)
        .ok_or_else(|| StoreError::Corrupt(format!("column {idx} is not hex")))
}

fn passkey(r: &Row) -> Result<Passkey, StoreError> {
    Ok(Passkey {
        credential_id: get_str(r, 0)?,
        user_handle: get_str(r, 1)?,
        label: get_str(r, 2)?,
        rp_id: get_str(r, 3)?,
        scopes: get_json(r, 4)?,
        public_key: get_hex(r, 5)?,
        state: get_hex(r, 6)?,
        sign_count: u32::try_from(get_u64(r, 7)?)
            .map_err(|_| StoreError::Corrupt("sign_count out of range".into()))?,
        created_by: get_opt_str(r, 8)?,
        created_at_ms: get_u64(r, 9)?,
        last_used_at_ms: get_opt_u64(r, 10)?,
        flagged_at_ms: get_opt_u64(r, 11)?,
        flagged_reason: get_opt_str(r, 12)?,
    })
}

pub(crate) fn insert_passkey(tx: &PgTx<'_>, p: &Passkey) -> Result<(), StoreError> {
    tx.execute(
        concat!(
            "INSERT INTO passkeys (",
            passkey_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ),
        &[
            &p.credential_id,
            &p.user_handle,
            &p.label,
            &p.rp_id,
            &to_json(&p.scopes),
            &clawgate_protocol::hex::encode(&p.public_key),
            &clawgate_protocol::hex::encode(&p.state),
            &i64::from(p.sign_count),
            &p.created_by,
            &int(p.created_at_ms)?,
            &opt_int(p.last_used_at_ms)?,
            &opt_int(p.flagged_at_ms)?,
            &p.flagged_reason,
        ],
    )?;
    Ok(())
}

pub(crate) fn select_passkey(
    tx: &PgTx<'_>,
    credential_id: &str,
) -> Result<Option<Passkey>, StoreError> {
    tx.query_opt(
        concat!(
            "SELECT ",
            passkey_columns!(),
            " FROM passkeys WHERE credential_id = $1"
        ),
        &[&credential_id],
    )?
    .as_ref()
    .map(passkey)
    .transpose()
}

pub(crate) fn select_passkeys(tx: &PgTx<'_>) -> Result<Vec<Passkey>, StoreError> {
    tx.query(
        concat!(
            "SELECT ",
            passkey_columns!(),
            " FROM passkeys ORDER BY created_at_ms DESC, credential_id"
        ),
        &[],
    )?
    .iter()
    .map(passkey)
    .collect()
}

pub(crate) fn update_passkey_use(
    tx: &PgTx<'_>,
    credential_id: &str,
    state: &[u8],
    sign_count: u32,
    now_ms: u64,
) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE passkeys SET state = $1, sign_count = $2, last_used_at_ms = $3 \
         WHERE credential_id = $4",
        &[
            &clawgate_protocol::hex::encode(state),
            &i64::from(sign_count),
            &int(now_ms)?,
            &credential_id,
        ],
    )? == 1)
}

pub(crate) fn flag_passkey(
    tx: &PgTx<'_>,
    credential_id: &str,
    now_ms: u64,
    reason: &str,
) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE passkeys SET flagged_at_ms = $1, flagged_reason = $2 \
         WHERE credential_id = $3 AND flagged_at_ms IS NULL",
        &[&int(now_ms)?, &reason, &credential_id],
    )? == 1)
}

pub(crate) fn delete_passkey(tx: &PgTx<'_>, credential_id: &str) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "DELETE FROM passkeys WHERE credential_id = $1",
        &[&credential_id],
    )? == 1)
}
