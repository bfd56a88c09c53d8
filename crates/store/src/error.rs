//! Store errors. None of them carries token material: the store never
//! holds a token string, and messages name columns and ids, not values of
//! secret fields.

/// Why a store operation failed. A failed write changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused or failed (constraint, busy, disk full, ...).
    #[error("database error: {0}")]
    Sqlite(String),
    /// The filesystem refused (creating the state directory, permissions).
    #[error("state directory error: {0}")]
    Io(#[from] std::io::Error),
    /// Stored data does not decode (bad JSON column, bad hash hex, ...).
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The caller asked for something the store does not accept.
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// The database file is damaged (truncated, overwritten, not a SQLite
    /// file). Nothing was written to it.
    #[error(
        "the database {p} is damaged ({detail}); it was left as it is. Restore a backup with: clawgate restore <backup file> (it keeps this file beside it), or move it aside with its -wal and -shm files to start with an empty store (every device pairs again): mv {p} {p}.damaged; rows can often be salvaged from the moved file with: sqlite3 {p}.damaged .recover",
        p = path.display()
    )]
    Damaged {
        path: std::path::PathBuf,
        detail: String,
    },
    /// The PostgreSQL store cannot be reached (refused, timed out, the
    /// server refused the session: wrong password, no such database; or
    /// the connection was lost). `target` is `host:port/db`, never a
    /// password.
    #[error("device registry unreachable at {target}: {detail}")]
    Unreachable { target: String, detail: String },
    /// The database was written by a newer clawgate.
    #[error(
        "database schema version {found} is newer than this clawgate supports ({supported}); upgrade clawgate"
    )]
    SchemaTooNew { found: u32, supported: u32 },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::Error as E;
        match e {
            // SQLite found the file itself damaged.
            E::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
                ) =>
            {
                StoreError::Corrupt(e.to_string())
            }
            // A stored value that does not decode as the model says.
            E::FromSqlConversionFailure(..)
            | E::InvalidColumnType(..)
            | E::IntegralValueOutOfRange(..) => StoreError::Corrupt(e.to_string()),
            e => StoreError::Sqlite(e.to_string()),
        }
    }
}
