//! clawgate's persistent store: paired devices, per-role token entries,
//! issued-token hashes, pending pairing requests and the hash-chained audit
//! log, in one SQLite file (WAL, mode 0600, directory 0700).
//!
//! Reads that sit on the connect path ([`Store::device`],
//! [`Store::token_by_hash`], ...) come from an in-memory cache; every write
//! goes through [`Store::transact`], one SQLite transaction whose changes
//! reach the cache only after COMMIT. Device tokens are never stored: only
//! [`hash_token`] of them is.

mod audit;
mod backup;
mod cache;
mod error;
mod invariants;
mod lock;
mod model;
mod schema;
mod store;

use sha2::{Digest, Sha256};

pub use audit::GENESIS_HASH;
pub use backup::{
    BackupError, BackupSummary, RestoreOutcome, backup, check_backup, restore, utc_stamp,
};
pub use error::StoreError;
pub use invariants::{InvariantReport, Violation, check_database};
pub use lock::{LOCK_FILE_NAME, LockError, StateLock};
pub use model::{
    AuditPage, AuditQuery, AuditRecord, AuditRow, AuditVerification, Device, PendingRequest,
    RoleToken, Seen, SetupCode, TokenHash,
};
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
