//! Whether the device registry can be trusted right now. A SQLite store is
//! in the process and always is; a replica on a shared PostgreSQL store is
//! only while its change follower is connected and caught up (see
//! `replica.rs`). While it is not, the replica fails closed: device-token
//! auth, setup codes, pairing and device decisions are refused with
//! UNAVAILABLE, and `/readyz` answers 503.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use clawgate_protocol::frames::ErrorShape;

#[derive(Debug)]
pub struct RegistryHealth {
    up: AtomicBool,
    /// `host:port/db` of a shared store (never a password).
    location: String,
    /// Why it is down, for `/readyz` and `status`.
    why: Mutex<String>,
    /// The other live replicas' presence rows (empty for SQLite), and their
    /// entries parsed once per refresh (every hello-ok lists them).
    peers: Mutex<Peers>,
    /// Shared registry: events sent to this replica's operators that the
    /// other replicas' operators must get too, waiting to be written to
    /// the change log (see `replica::events`).
    outbox: Option<Mutex<Vec<(String, serde_json::Value)>>>,
    outbox_ready: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Peers {
    rows: Vec<clawgate_store::ReplicaPresence>,
    entries: Vec<clawgate_protocol::wire::PresenceEntry>,
}

/// Events queued beyond this many between two writes are not shared (the
/// other replicas' operators still see the state on their next listing).
const MAX_OUTBOX: usize = 4096;

impl RegistryHealth {
    /// A local store: always up. A shared one starts down until the
    /// follower's first catch-up.
    pub fn new(store: &clawgate_store::Store) -> Self {
        let shared = store.replica_id().is_some();
        RegistryHealth {
            up: AtomicBool::new(!shared),
            location: store.location().to_string(),
            why: Mutex::new(if shared {
                "not caught up with the change log yet".into()
            } else {
                String::new()
            }),
            peers: Mutex::new(Peers::default()),
            outbox: shared.then(|| Mutex::new(Vec::new())),
            outbox_ready: tokio::sync::Notify::new(),
        }
    }

    /// Queues an operator event for the other replicas (no-op for SQLite).
    pub fn share_event(&self, event: &str, payload: serde_json::Value) {
        if let Some(outbox) = &self.outbox {
            let mut queue = outbox.lock().expect("registry lock");
            if queue.len() < MAX_OUTBOX {
                queue.push((event.to_string(), payload));
                self.outbox_ready.notify_one();
            }
        }
    }

    /// The queued events, oldest first.
    pub fn drain_events(&self) -> Vec<(String, serde_json::Value)> {
        self.outbox
            .as_ref()
            .map(|o| std::mem::take(&mut *o.lock().expect("registry lock")))
            .unwrap_or_default()
    }

    /// Resolves when an event was queued.
    pub async fn events_queued(&self) {
        self.outbox_ready.notified().await;
    }

    /// Replaces the other replicas' presence rows.
    pub fn set_peers(&self, rows: Vec<clawgate_store::ReplicaPresence>) {
        let entries = rows
            .iter()
            .filter_map(|p| p.entries.as_array())
            .flatten()
            .filter_map(|e| serde_json::from_value(e.clone()).ok())
            .collect();
        *self.peers.lock().expect("registry lock") = Peers { rows, entries };
    }

    pub fn peers(&self) -> Vec<clawgate_store::ReplicaPresence> {
        self.peers.lock().expect("registry lock").rows.clone()
    }

    /// Sessions held by the other replicas.
    pub fn peer_sessions(&self) -> u64 {
        self.peers
            .lock()
            .expect("registry lock")
            .rows
            .iter()
            .map(|p| p.sessions)
            .sum()
    }

    /// The other replicas' presence entries (their gateway entry first,
    /// then their clients), for `system-presence` and hello-ok.
    pub fn peer_entries(&self) -> Vec<clawgate_protocol::wire::PresenceEntry> {
        self.peers.lock().expect("registry lock").entries.clone()
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Marks it up; returns whether it was down.
    pub fn set_up(&self) -> bool {
        let was = self.up.swap(true, Ordering::AcqRel);
        if !was {
            self.why.lock().expect("registry lock").clear();
        }
        !was
    }

    /// Marks it down for `why`; returns whether it was up.
    pub fn set_down(&self, why: &str) -> bool {
        *self.why.lock().expect("registry lock") = why.to_string();
        self.up.swap(false, Ordering::AcqRel)
    }

    pub fn why(&self) -> String {
        self.why.lock().expect("registry lock").clone()
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// The refusal while it is down (`None` while it is up).
    pub fn refusal(&self) -> Option<ErrorShape> {
        (!self.is_up()).then(|| clawgate_protocol::catalogue::registry_unreachable(&self.location))
    }
}
