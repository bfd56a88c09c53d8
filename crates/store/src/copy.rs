//! `clawgate store migrate`: copies a SQLite registry into an empty
//! PostgreSQL store, then checks the copy.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::audit::StoredAuditRow;
use crate::error::StoreError;
use crate::pg::{self, sql as pgsql};
use crate::schema;
use crate::store::Store;

/// What was copied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CopySummary {
    pub devices: u64,
    pub role_tokens: u64,
    pub token_hashes: u64,
    pub pending: u64,
    pub setup_codes: u64,
    pub audit_rows: u64,
    pub passkeys: u64,
    /// The newest audit hash, the same on both sides.
    pub audit_head: Option<String>,
}

impl CopySummary {
    fn counts(&self) -> [u64; 7] {
        [
            self.devices,
            self.role_tokens,
            self.token_hashes,
            self.pending,
            self.setup_codes,
            self.audit_rows,
            self.passkeys,
        ]
    }
}

fn len(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Store {
    /// Copies the SQLite registry at `source` (devices, role tokens, token
    /// hashes, pending requests, setup codes, passkeys, the audit chain row for row)
    /// into this PostgreSQL store, which must be empty, in one transaction;
    /// then checks the copy: the same row counts, the audit chain verifies
    /// to the same head, and every store invariant holds. The source is
    /// only read, and must pass its own checks first.
    pub fn import_sqlite(&self, source: &Path) -> Result<CopySummary, StoreError> {
        let Some(p) = self.pg_backend() else {
            return Err(StoreError::Invalid(
                "the copy target must be a PostgreSQL store".into(),
            ));
        };
        let report = crate::check_database(source)?;
        if report.schema_version != schema::SCHEMA_VERSION {
            return Err(StoreError::Invalid(format!(
                "{} has schema version {}, this clawgate copies version {}; open it once with this \
                 clawgate (clawgate doctor --state-dir <its directory>) to migrate it",
                source.display(),
                report.schema_version,
                schema::SCHEMA_VERSION
            )));
        }
        if !report.ok() {
            let first = report
                .violations
                .first()
                .map(ToString::to_string)
                .unwrap_or_default();
            return Err(StoreError::Invalid(format!(
                "{} fails its own checks ({} problems, first: {first}); run clawgate doctor on it \
                 and copy a sound registry",
                source.display(),
                report.violations.len()
            )));
        }

        let conn = Connection::open_with_flags(
            source,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        schema::configure_reader(&conn)?;
        let snapshot = conn.unchecked_transaction()?;
        let devices = schema::select_devices(&snapshot)?;
        let role_tokens = schema::select_role_tokens(&snapshot)?;
        let hashes = schema::select_token_hashes(&snapshot)?;
        let pending = schema::select_all_pending(&snapshot)?;
        let setup_codes = schema::select_setup_codes(&snapshot)?;
        let passkeys = schema::select_passkeys(&snapshot)?;
        let mut audit: Vec<StoredAuditRow> = Vec::new();
        schema::scan_audit(&snapshot, |r| {
            audit.push(r);
            true
        })?;
        snapshot.finish()?;
        let source_summary = CopySummary {
            devices: len(devices.len()),
            role_tokens: len(role_tokens.len()),
            token_hashes: len(hashes.len()),
            pending: len(pending.len()),
            setup_codes: len(setup_codes.len()),
            audit_rows: len(audit.len()),
            passkeys: len(passkeys.len()),
            audit_head: audit.last().map(|r| r.hash.clone()),
        };

        {
            let mut slot = p.writer.get(&p.io, &p.target)?;
            let tx = slot.begin(&p.target, pg::Mode::Write)?;
            let found = pgsql::counts(&tx)?;
            if found.iter().any(|&n| n > 0) {
                return Err(StoreError::Invalid(format!(
                    "{} already holds a registry ({} devices, {} audit rows); copy into an empty \
                     database",
                    p.target.display(),
                    found[0],
                    found[5]
                )));
            }
            for d in &devices {
                pgsql::upsert_device(&tx, d)?;
            }
            for t in &role_tokens {
                pgsql::upsert_role_token(&tx, t)?;
            }
            for h in &hashes {
                pgsql::insert_token_hash(&tx, h)?;
            }
            for r in &pending {
                pgsql::upsert_pending(&tx, r)?;
            }
            for c in &setup_codes {
                pgsql::insert_setup_code(&tx, c)?;
            }
            for k in &passkeys {
                pgsql::insert_passkey(&tx, k)?;
            }
            for r in &audit {
                pgsql::insert_audit(&tx, r)?;
            }
            tx.commit()?;
        }
        self.reload()?;

        // The check reads back what PostgreSQL committed.
        let copied = {
            let mut slot = p.reader.get(&p.io, &p.target)?;
            let tx = slot.begin(&p.target, pg::Mode::Snapshot)?;
            let c = pgsql::counts(&tx)?;
            let head = pgsql::last_audit(&tx)?.map(|(_, h)| h);
            tx.commit()?;
            (c, head)
        };
        if copied.0 != source_summary.counts() || copied.1 != source_summary.audit_head {
            return Err(StoreError::Corrupt(format!(
                "the copy does not match its source: counts {:?} (source {:?})",
                copied.0,
                source_summary.counts()
            )));
        }
        let verification = self.verify_audit()?;
        if !verification.ok || verification.rows != source_summary.audit_rows {
            return Err(StoreError::Corrupt(format!(
                "the copied audit chain does not verify: {}",
                verification.problem.unwrap_or_default()
            )));
        }
        let invariants = self.check_invariants()?;
        if let Some(v) = invariants.violations.first() {
            return Err(StoreError::Corrupt(format!(
                "the copy breaks a store invariant: {v}"
            )));
        }
        Ok(source_summary)
    }
}
