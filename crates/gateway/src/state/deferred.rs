//! Keeping routine connects off the store's write path.
//!
//! A paired device reconnecting changes only when and from where it was
//! last seen (and when its token was last used). Those updates are not
//! acknowledged to anyone, so they are queued and written in one
//! transaction per second (and before `device.pair.list` reads them, and at
//! shutdown) instead of one transaction per connect. Audit rows for refused
//! connects (at most 50 a second) are batched the same way.
//!
//! A device that connects with the shared secret gets a device token in
//! `hello-ok`. Tokens are stored only as hashes, so the gateway cannot
//! re-send a stored one; it keeps the tokens it minted in this process in
//! memory and hands the same one out again while its hash is still valid,
//! not revoked and issued for the same scopes. Rotation, revocation and
//! removal drop it. Only a new token (or a changed device record) needs a
//! synchronous write, and a mint is always committed before `hello-ok`.

use std::collections::HashMap;
use std::sync::Mutex;

use clawgate_protocol::Secret;
use clawgate_store::{AuditRecord, Device, Seen, Store, hash_token};

/// A token this process minted, kept so it can be handed out again.
#[derive(Debug, Clone)]
struct Issued {
    token: Secret,
    scopes: Vec<String>,
    issued_at_ms: u64,
}

#[derive(Debug, Default)]
struct Pending {
    seen: HashMap<String, Seen>,
    touched: HashMap<(String, String), u64>,
    /// Audit rows nobody waits for (refused connects), in order.
    audit: Vec<AuditRecord>,
}

#[derive(Debug, Default)]
pub struct Deferred {
    issued: Mutex<HashMap<(String, String), Issued>>,
    pending: Mutex<Pending>,
}

/// Whether `refreshed` differs from `stored` only in the last-seen fields.
pub fn only_seen_changed(stored: &Device, refreshed: &Device) -> bool {
    let mut a = stored.clone();
    a.last_seen_at_ms = refreshed.last_seen_at_ms;
    a.last_seen_reason = refreshed.last_seen_reason.clone();
    a.remote_ip = refreshed.remote_ip.clone();
    a == *refreshed
}

impl Deferred {
    /// Remembers a token minted (and committed) for (device, role).
    pub fn remember(
        &self,
        device_id: &str,
        role: &str,
        token: &Secret,
        scopes: &[String],
        at: u64,
    ) {
        self.issued.lock().expect("issued").insert(
            (device_id.to_string(), role.to_string()),
            Issued {
                token: token.clone(),
                scopes: scopes.to_vec(),
                issued_at_ms: at,
            },
        );
    }

    /// The token minted earlier for (device, role) if the store still
    /// accepts it for exactly `scopes`: its hash is present, the role entry
    /// is not revoked and carries the same scopes.
    pub fn reusable(
        &self,
        store: &Store,
        device_id: &str,
        role: &str,
        scopes: &[String],
    ) -> Option<(Secret, u64)> {
        let key = (device_id.to_string(), role.to_string());
        let issued = self.issued.lock().expect("issued").get(&key).cloned()?;
        let still_valid = issued.scopes == scopes
            && store
                .token_by_hash(&hash_token(issued.token.expose()))
                .is_some_and(|h| h.device_id == device_id && h.role == role && h.scopes == scopes)
            && store
                .role_token(device_id, role)
                .is_some_and(|rt| rt.revoked_at_ms.is_none() && rt.scopes == scopes);
        if !still_valid {
            self.issued.lock().expect("issued").remove(&key);
            return None;
        }
        Some((issued.token, issued.issued_at_ms))
    }

    /// Drops the kept tokens of a device (one role, or all).
    pub fn forget(&self, device_id: &str, role: Option<&str>) {
        self.issued
            .lock()
            .expect("issued")
            .retain(|(d, r), _| !(d == device_id && role.is_none_or(|role| role == r)));
    }

    /// Queues a last-seen update.
    pub fn seen(&self, device: &Device) {
        let (Some(at_ms), reason) = (device.last_seen_at_ms, device.last_seen_reason.clone())
        else {
            return;
        };
        self.pending.lock().expect("pending").seen.insert(
            device.device_id.clone(),
            Seen {
                at_ms,
                reason,
                remote_ip: device.remote_ip.clone(),
            },
        );
    }

    /// Queues a token-use update.
    pub fn touched(&self, device_id: &str, role: &str, at_ms: u64) {
        self.pending
            .lock()
            .expect("pending")
            .touched
            .insert((device_id.to_string(), role.to_string()), at_ms);
    }

    /// Queues an audit row that no reply depends on (a refused connect):
    /// under a brute-force attack these are written in one transaction a
    /// second instead of one each.
    pub fn audit(&self, record: AuditRecord) {
        self.pending.lock().expect("pending").audit.push(record);
    }

    /// Writes what is queued, in one transaction. An update older than
    /// what the store already holds (a later synchronous write) is skipped;
    /// a device removed meanwhile stays removed.
    pub fn flush(&self, store: &Store) -> Result<usize, clawgate_store::StoreError> {
        let pending = std::mem::take(&mut *self.pending.lock().expect("pending"));
        let n = pending.seen.len() + pending.touched.len() + pending.audit.len();
        if n == 0 {
            return Ok(0);
        }
        let result = store.transact(|tx| {
            for (device_id, seen) in &pending.seen {
                let newer = store
                    .device(device_id)
                    .is_some_and(|d| d.last_seen_at_ms.is_none_or(|cur| cur <= seen.at_ms));
                if newer {
                    tx.mark_seen(device_id, seen)?;
                }
            }
            for ((device_id, role), at) in &pending.touched {
                tx.touch_token(device_id, role, *at)?;
            }
            for record in &pending.audit {
                tx.append_audit(record)?;
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(n),
            Err(err) => {
                // A failed transaction changed nothing. When the store may
                // come back (busy, I/O, disk full, PostgreSQL away) the batch is queued again
                // ahead of anything queued meanwhile, so no lockout or
                // refused-connect row is lost; a batch the store refuses as
                // such (invalid, corrupt) would fail forever and is dropped.
                if matches!(
                    err,
                    clawgate_store::StoreError::Sqlite(_)
                        | clawgate_store::StoreError::Io(_)
                        | clawgate_store::StoreError::Unreachable { .. }
                ) {
                    self.requeue(pending);
                }
                Err(err)
            }
        }
    }

    /// Puts a batch that failed to commit back in front of the queue:
    /// updates queued since win (they are newer), audit rows keep their
    /// order, and at most [`MAX_QUEUED_AUDIT`] rows are kept (the newest
    /// beyond that are dropped, with a warning).
    fn requeue(&self, failed: Pending) {
        let mut pending = self.pending.lock().expect("pending");
        for (k, v) in failed.seen {
            pending.seen.entry(k).or_insert(v);
        }
        for (k, v) in failed.touched {
            pending.touched.entry(k).or_insert(v);
        }
        let newer = std::mem::replace(&mut pending.audit, failed.audit);
        pending.audit.extend(newer);
        if pending.audit.len() > MAX_QUEUED_AUDIT {
            let dropped = pending.audit.len() - MAX_QUEUED_AUDIT;
            pending.audit.truncate(MAX_QUEUED_AUDIT);
            tracing::warn!(
                dropped,
                "the store keeps failing; dropped the newest queued audit rows"
            );
        }
    }
}

/// Audit rows kept queued while the store fails.
const MAX_QUEUED_AUDIT: usize = 100_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        Device {
            device_id: "a".repeat(64),
            public_key: "k".into(),
            display_name: Some("Laptop".into()),
            operator_label: None,
            platform: Some("linux".into()),
            device_family: None,
            client_id: Some("cli".into()),
            client_mode: Some("cli".into()),
            browser_origin: None,
            roles: vec!["operator".into()],
            scopes: vec!["operator.read".into()],
            remote_ip: Some("127.0.0.1".into()),
            approved_via: "silent".into(),
            created_at_ms: 1,
            approved_at_ms: 1,
            last_seen_at_ms: Some(5),
            last_seen_reason: Some("connect".into()),
        }
    }

    #[test]
    fn only_last_seen_fields_count_as_routine() {
        let stored = device();
        let mut seen = stored.clone();
        seen.last_seen_at_ms = Some(99);
        seen.remote_ip = Some("127.0.0.2".into());
        assert!(only_seen_changed(&stored, &seen));
        let mut renamed = seen.clone();
        renamed.display_name = Some("Other".into());
        assert!(!only_seen_changed(&stored, &renamed));
        let mut widened = seen;
        widened.scopes.push("operator.write".into());
        assert!(!only_seen_changed(&stored, &widened));
    }

    fn row(action: &str) -> AuditRecord {
        AuditRecord {
            ts_ms: 1,
            action: action.into(),
            actor: serde_json::json!({"kind": "peer", "ip": "127.0.0.9"}),
            device_id: None,
            details: serde_json::json!({}),
        }
    }

    fn actions(store: &Store) -> Vec<String> {
        store
            .audit_list(&clawgate_store::AuditQuery::default())
            .unwrap()
            .rows
            .into_iter()
            .map(|r| r.action)
            .collect()
    }

    #[test]
    fn a_batch_the_store_could_not_commit_is_written_by_the_next_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("clawgate.sqlite")).unwrap();
        let deferred = Deferred::default();
        deferred.audit(row("auth.lockout"));
        deferred.audit(row("auth.failure"));
        // Another writer holds the database: the flush fails (busy).
        let blocker = rusqlite::Connection::open(store.path()).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let err = deferred.flush(&store).unwrap_err();
        assert!(
            matches!(err, clawgate_store::StoreError::Sqlite(_)),
            "{err:?}"
        );
        deferred.audit(row("pairing.requested"));
        blocker.execute_batch("ROLLBACK").unwrap();
        assert_eq!(deferred.flush(&store).unwrap(), 3);
        assert_eq!(
            actions(&store),
            ["auth.lockout", "auth.failure", "pairing.requested"],
            "the failed batch first, in order, then what was queued meanwhile"
        );
        assert_eq!(deferred.flush(&store).unwrap(), 0, "nothing written twice");
    }

    #[test]
    fn a_batch_the_store_refuses_is_dropped_not_retried_forever() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("clawgate.sqlite")).unwrap();
        let deferred = Deferred::default();
        deferred.audit(row(""));
        let err = deferred.flush(&store).unwrap_err();
        assert!(
            matches!(err, clawgate_store::StoreError::Invalid(_)),
            "{err:?}"
        );
        assert_eq!(deferred.flush(&store).unwrap(), 0);
        deferred.audit(row("auth.failure"));
        assert_eq!(deferred.flush(&store).unwrap(), 1);
        assert_eq!(actions(&store), ["auth.failure"]);
    }
}
