//! What replicas sharing a PostgreSQL store tell each other.
//!
//! Every write transaction that changed something (or announced an
//! effect) appends one [`Change`] in the same transaction: the devices it
//! touched, so other replicas refresh those devices in their caches, and
//! the effects live sessions must see (the gateway's own JSON: sessions to
//! close, events to send, lockouts). SQLite stores, which serve one
//! gateway, keep no change log.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One committed transaction, as another replica learns of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// Commit order across all replicas.
    pub seq: u64,
    pub ts_ms: u64,
    /// The replica that committed it ([`crate::Store::replica_id`]).
    pub origin: String,
    /// Devices whose rows (device, role tokens, token hashes, pending
    /// requests) the transaction changed.
    pub devices: Vec<String>,
    /// What the gateway announced with [`crate::Tx::announce`], in order.
    pub effects: Vec<Value>,
}

/// One replica's live sessions, as it last wrote them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaPresence {
    pub replica_id: String,
    /// The host name it runs on.
    pub host: String,
    pub started_at_ms: u64,
    pub refreshed_at_ms: u64,
    /// Authenticated sessions it holds.
    pub sessions: u64,
    /// Its presence entries (the gateway's JSON, one per session).
    pub entries: Value,
}

/// What this replica's cache held for one device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceView {
    pub device: Option<crate::Device>,
    /// Sorted by role.
    pub role_tokens: Vec<crate::RoleToken>,
    /// Sorted by `ts`, then request id.
    pub pending: Vec<crate::PendingRequest>,
}

/// One device another replica changed: the cache before and after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceDelta {
    pub device_id: String,
    pub before: DeviceView,
    pub after: DeviceView,
}

/// What [`crate::Store::catch_up`] found.
#[derive(Debug, Default)]
pub struct CatchUp {
    /// Changes committed by other replicas, in sequence order.
    pub changes: Vec<Change>,
    /// Every device those changes touched whose cached state differs now,
    /// sorted by device id (after a resync: every device that differs).
    pub deltas: Vec<DeviceDelta>,
    /// The change log no longer reaches back to where this replica left
    /// off (it was cut off for longer than the log is kept): the whole
    /// cache was reloaded, and every live session should be checked
    /// against it.
    pub resynced: bool,
    /// The sequence number this replica has now applied up to.
    pub applied_seq: u64,
}
