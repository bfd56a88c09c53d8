//! clawgate's persistent store: paired devices, per-role token entries,
//! issued-token hashes, pending pairing requests and the hash-chained audit
//! log, in one SQLite file (WAL, mode 0600, directory 0700) or, for
//! replicas sharing one registry, in PostgreSQL (see `pg`), where every
//! transaction also appends to a change log the replicas follow.
//!
//! Reads that sit on the connect path ([`Store::device`],
//! [`Store::token_by_hash`], ...) come from an in-memory cache; every write
//! goes through [`Store::transact`], one SQLite transaction whose changes
//! reach the cache only after COMMIT. Device tokens are never stored: only
//! [`hash_token`] of them is.

mod audit;
mod backup;
mod cache;
mod changes;
mod copy;
mod error;
mod invariants;
mod lock;
mod model;
mod pg;
mod schema;
mod store;

use sha2::{Digest, Sha256};

pub use audit::GENESIS_HASH;
pub use backup::{
    BackupError, BackupSummary, RestoreOutcome, backup, check_backup, restore, utc_stamp,
};
pub use changes::{CatchUp, Change, DeviceDelta, DeviceView, ReplicaPresence};
pub use copy::CopySummary;
pub use error::StoreError;
pub use invariants::{InvariantReport, Violation, check_database};
pub use lock::{LOCK_FILE_NAME, LockError, StateLock};
pub use model::{
    AuditPage, AuditQuery, AuditRecord, AuditRow, AuditVerification, Device, Passkey,
    PendingRequest, RoleToken, Seen, SetupCode, TokenHash,
};
pub use pg::{ListenState, PgTarget, is_postgres_url};
pub use store::{Store, Tx};

/// The database file name inside the state directory.
pub const DB_FILE_NAME: &str = "clawgate.sqlite";

/// The schema version this build creates and migrates to.
pub const SCHEMA_VERSION: u32 = schema::SCHEMA_VERSION;

/// SHA-256 of the token's UTF-8 bytes: the only form in which a device
/// token is stored or looked up.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_token_is_sha256() {
        // SHA-256("abc")
        assert_eq!(
            clawgate_protocol::hex::encode(&super::hash_token("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

/// Test support: throwaway PostgreSQL databases on the cluster that
/// `scripts/test.sh` starts (`scripts/pg.sh`). Not for production use.
#[doc(hidden)]
pub mod testing {
    use std::path::PathBuf;

    /// The test cluster's admin URL (no password) and password file, from
    /// `CLAWGATE_TEST_PG_URL` and `CLAWGATE_TEST_PG_PASSWORD_FILE`.
    ///
    /// # Panics
    /// When `CLAWGATE_TEST_PG_URL` is unset: a test that needs PostgreSQL
    /// fails loudly instead of passing without it.
    pub fn pg_admin() -> (String, Option<PathBuf>) {
        let url = std::env::var("CLAWGATE_TEST_PG_URL").unwrap_or_else(|_| {
            panic!(
                "this test needs PostgreSQL: run it through scripts/test.sh, or start a cluster \
                 with `bash scripts/pg.sh start DIR PORT` and set CLAWGATE_TEST_PG_URL (and \
                 CLAWGATE_TEST_PG_PASSWORD_FILE=DIR/password)"
            )
        });
        let password_file = std::env::var_os("CLAWGATE_TEST_PG_PASSWORD_FILE").map(PathBuf::from);
        (url, password_file)
    }

    /// Creates an empty database with a unique name on the cluster at
    /// `admin_url` and returns its URL (no password; the cluster's password
    /// file still applies).
    pub fn create_database(
        admin_url: &str,
        password_file: Option<&std::path::Path>,
        prefix: &str,
    ) -> String {
        let admin = crate::PgTarget::parse(admin_url, password_file).expect("admin URL");
        let io = crate::pg::Io::start().expect("I/O thread");
        let client = crate::pg::connect(&io, &admin).expect("connect to the test cluster");
        let name = format!(
            "{}_{}",
            prefix.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )
        .to_ascii_lowercase();
        crate::pg::block(client.batch_execute(&format!("CREATE DATABASE \"{name}\"")))
            .expect("create database");
        let base = admin_url.split('?').next().unwrap_or(admin_url);
        let (prefix_url, _) = base.rsplit_once('/').expect("URL with a database path");
        format!("{prefix_url}/{name}")
    }

    /// A fresh database on the test cluster: its URL and password file.
    pub fn fresh_database(prefix: &str) -> (String, Option<PathBuf>) {
        let (url, password_file) = pg_admin();
        let db = create_database(&url, password_file.as_deref(), prefix);
        (db, password_file)
    }
}
