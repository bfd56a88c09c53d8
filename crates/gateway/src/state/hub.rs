//! The registry of authenticated connections: targeted sends, scope-guarded
//! broadcasts, presence, and invalidation of live sessions.
//!
//! Each connection owns an unbounded queue drained by its own task; the hub
//! counts the bytes waiting in it and cuts off a connection whose backlog
//! passes `maxBufferedBytes` ("slow consumer") instead of letting memory grow.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use clawgate_protocol::connect::Role;
use clawgate_protocol::wire::{ClientPresence, PresenceEntry};
use clawgate_protocol::{MAX_BUFFERED_BYTES, close_code, scopes};
use serde::Serialize;

/// Something for a connection's writer to send.
#[derive(Debug)]
pub enum Outbound {
    /// A serialized frame (a response).
    Frame(String),
    /// An event; the connection stamps its own `seq`.
    Event { name: Arc<str>, payload: Arc<str> },
    /// Close the socket with this code and reason.
    Close { code: u16, reason: String },
}

impl Outbound {
    fn cost(&self) -> usize {
        match self {
            Outbound::Frame(s) => s.len(),
            Outbound::Event { name, payload } => name.len() + payload.len() + 48,
            Outbound::Close { .. } => 0,
        }
    }
}

/// A connection's outbound queue: a `VecDeque` behind a mutex and a
/// `Notify`. Unlike a channel it allocates nothing until something is
/// queued, which matters with thousands of idle connections.
#[derive(Debug, Default)]
struct Queue {
    items: std::sync::Mutex<VecDeque<Outbound>>,
    notify: tokio::sync::Notify,
    /// Bytes queued and not yet written (the slow-consumer cap).
    queued: AtomicUsize,
    senders: AtomicUsize,
    /// The receiver (the connection) is gone.
    closed: std::sync::atomic::AtomicBool,
}

/// The sending side of a connection's queue.
#[derive(Debug)]
pub struct ConnSender {
    queue: Arc<Queue>,
}

impl Clone for ConnSender {
    fn clone(&self) -> Self {
        self.queue.senders.fetch_add(1, Ordering::Relaxed);
        ConnSender {
            queue: self.queue.clone(),
        }
    }
}

impl Drop for ConnSender {
    fn drop(&mut self) {
        if self.queue.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last sender is gone: wake the receiver so it sees the end.
            self.queue.notify.notify_one();
        }
    }
}

/// The receiving side, owned by the connection.
#[derive(Debug)]
pub struct ConnReceiver {
    queue: Arc<Queue>,
}

/// A queue for one connection.
pub fn conn_channel() -> (ConnSender, ConnReceiver) {
    let queue = Arc::new(Queue::default());
    queue.senders.store(1, Ordering::Relaxed);
    (
        ConnSender {
            queue: queue.clone(),
        },
        ConnReceiver { queue },
    )
}

impl ConnSender {
    /// Queues `out`; if the backlog would pass the cap the connection is told
    /// to close as a slow consumer instead. Returns false if it is gone.
    pub fn send(&self, out: Outbound) -> bool {
        let q = &self.queue;
        if q.closed.load(Ordering::Acquire) {
            return false;
        }
        let cost = out.cost();
        let before = q.queued.fetch_add(cost, Ordering::Relaxed);
        let out = if before + cost > MAX_BUFFERED_BYTES {
            q.queued.fetch_sub(cost, Ordering::Relaxed);
            Outbound::Close {
                code: close_code::POLICY_VIOLATION,
                reason: "slow consumer".into(),
            }
        } else {
            out
        };
        q.items.lock().expect("queue").push_back(out);
        q.notify.notify_one();
        true
    }
}

impl Drop for ConnReceiver {
    fn drop(&mut self) {
        self.queue.closed.store(true, Ordering::Release);
        self.queue.items.lock().expect("queue").clear();
    }
}

impl ConnReceiver {
    /// The next queued item; `None` once every sender is gone and the queue
    /// is empty.
    pub async fn recv(&mut self) -> Option<Outbound> {
        loop {
            if let Some(out) = self.try_recv() {
                return Some(out);
            }
            if self.queue.senders.load(Ordering::Acquire) == 0 {
                return self.try_recv();
            }
            // `notify_one` keeps a permit when nobody waits, so a send
            // between the check above and this await is not lost.
            self.queue.notify.notified().await;
        }
    }

    /// The next queued item, without waiting.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        let mut items = self.queue.items.lock().expect("queue");
        let out = items.pop_front();
        if items.is_empty() && items.capacity() > 64 {
            // A burst grew the queue; give the memory back when it drains.
            items.shrink_to_fit();
        }
        out
    }

    /// Marks a dequeued item as written.
    pub fn written(&self, out: &Outbound) {
        self.queue.queued.fetch_sub(out.cost(), Ordering::Relaxed);
    }
}

/// What the hub knows about an authenticated connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub conn_id: String,
    pub role: Role,
    pub scopes: Vec<String>,
    pub client_id: String,
    pub client_mode: String,
    pub display_name: Option<String>,
    pub version: String,
    pub platform: String,
    pub device_family: Option<String>,
    pub model_identifier: Option<String>,
    pub instance_id: Option<String>,
    pub device_id: Option<String>,
    pub remote_ip: IpAddr,
    pub connected_at_ms: u64,
    /// The shared-secret generation this session authenticated under, when
    /// it authenticated with the shared secret.
    pub shared_auth_generation: Option<u64>,
}

impl ConnInfo {
    fn is_operator_with(&self, scope: &str) -> bool {
        self.role == Role::Operator && scopes::satisfies(&self.scopes, scope)
    }

    /// Short-lived control-plane clients (CLI calls, backend helpers,
    /// probes) do not show up in presence, as in the reference.
    fn in_presence(&self) -> bool {
        !matches!(self.client_mode.as_str(), "cli" | "backend" | "probe")
    }

    fn presence_entry(&self) -> PresenceEntry {
        let mut entry = ClientPresence::new(
            &self.client_id,
            &self.client_mode,
            self.role,
            self.display_name.as_deref(),
            &self.version,
            &self.platform,
            self.connected_at_ms,
        );
        entry.scopes = self.scopes.clone();
        entry.device_family = self.device_family.clone();
        entry.model_identifier = self.model_identifier.clone();
        entry.instance_id = self.instance_id.clone();
        entry.device_id = self.device_id.clone();
        entry.into()
    }
}

/// Who receives an event, by the reference's event scope guard.
pub fn event_audience(event: &str, info: &ConnInfo) -> bool {
    match event {
        "tick" | "health" | "heartbeat" | "shutdown" | "gateway.suspension"
        | "update.available" => true,
        "presence" => info.is_operator_with(scopes::READ),
        e if e.starts_with("device.pair.") || e.starts_with("node.pair.") => {
            info.is_operator_with(scopes::PAIRING)
        }
        _ => false,
    }
}

#[derive(Debug)]
struct Registered {
    info: ConnInfo,
    sender: ConnSender,
}

/// The registry.
#[derive(Debug, Default)]
pub struct Hub {
    /// Boxed records: the table's slots stay small (it is sized for the
    /// peak number of sessions, and keeps that size).
    conns: Mutex<HashMap<u64, Box<Registered>>>,
    /// The presence entries of the sessions that show in presence, by key
    /// (connect order): built once at registration, so listing presence
    /// costs nothing per hidden session (CLI calls, probes) and a connect
    /// or disconnect does no work per other session.
    visible: Mutex<BTreeMap<u64, PresenceEntry>>,
    next_key: AtomicU64,
    presence_version: AtomicU64,
}

impl Hub {
    /// Adds an authenticated connection; returns its registry key.
    pub fn register(&self, info: ConnInfo, sender: ConnSender) -> u64 {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let entry = info.in_presence().then(|| info.presence_entry());
        self.conns
            .lock()
            .expect("hub lock")
            .insert(key, Box::new(Registered { info, sender }));
        if let Some(entry) = entry {
            self.visible.lock().expect("hub lock").insert(key, entry);
            self.presence_changed();
        }
        key
    }

    pub fn unregister(&self, key: u64) {
        let removed = self.conns.lock().expect("hub lock").remove(&key);
        if removed.is_some_and(|r| r.info.in_presence()) {
            self.visible.lock().expect("hub lock").remove(&key);
            self.presence_changed();
        }
    }

    fn presence_changed(&self) {
        self.presence_version.fetch_add(1, Ordering::Relaxed);
    }

    /// Increases each time the presence list changes.
    /// Marks the presence list changed from outside the hub (another
    /// replica's sessions), so the next presence broadcast goes out.
    pub fn bump_presence(&self) {
        self.presence_version.fetch_add(1, Ordering::Relaxed);
    }

    pub fn presence_version(&self) -> u64 {
        self.presence_version.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.conns.lock().expect("hub lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends an event to every connection its guard admits. The payload is
    /// serialized once.
    pub fn broadcast(&self, event: &str, payload: &impl Serialize) {
        let name: Arc<str> = Arc::from(event);
        let payload: Arc<str> =
            Arc::from(serde_json::to_string(payload).expect("event payloads serialize"));
        let conns = self.conns.lock().expect("hub lock");
        for r in conns.values() {
            if event_audience(event, &r.info) {
                r.sender.send(Outbound::Event {
                    name: name.clone(),
                    payload: payload.clone(),
                });
            }
        }
    }

    /// Closes every connection matching `pred`; returns how many.
    pub fn close_where(&self, pred: impl Fn(&ConnInfo) -> bool, code: u16, reason: &str) -> usize {
        let conns = self.conns.lock().expect("hub lock");
        let mut n = 0;
        for r in conns.values().filter(|r| pred(&r.info)) {
            r.sender.send(Outbound::Close {
                code,
                reason: reason.to_string(),
            });
            n += 1;
        }
        n
    }

    /// Whether any live session belongs to `device_id`.
    pub fn device_connected(&self, device_id: &str) -> bool {
        self.conns
            .lock()
            .expect("hub lock")
            .values()
            .any(|r| r.info.device_id.as_deref() == Some(device_id))
    }

    /// Closes the live sessions of a device (optionally only one role) with
    /// 4001 and `reason`; returns how many.
    pub fn close_device_sessions(
        &self,
        device_id: &str,
        role: Option<&str>,
        reason: &str,
    ) -> usize {
        self.close_where(
            |c| {
                c.device_id.as_deref() == Some(device_id)
                    && role.is_none_or(|r| c.role.as_str() == r)
            },
            close_code::SESSION_INVALIDATED,
            reason,
        )
    }

    /// The presence entries of connected clients.
    pub fn presence(&self) -> Vec<PresenceEntry> {
        self.visible
            .lock()
            .expect("hub lock")
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlog_past_the_cap_turns_into_a_slow_consumer_close() {
        let (tx, mut rx) = conn_channel();
        let big = "x".repeat(MAX_BUFFERED_BYTES / 2);
        assert!(tx.send(Outbound::Frame(big.clone())));
        assert!(tx.send(Outbound::Frame(big.clone())));
        // The third would pass 50 MiB: the connection is told to close instead.
        assert!(tx.send(Outbound::Frame(big)));
        let mut got = Vec::new();
        while let Some(out) = rx.try_recv() {
            rx.written(&out);
            got.push(out);
        }
        assert_eq!(got.len(), 3);
        match &got[2] {
            Outbound::Close { code, reason } => {
                assert_eq!(*code, close_code::POLICY_VIOLATION);
                assert_eq!(reason, "slow consumer");
            }
            other => panic!("expected close, got {other:?}"),
        }
        assert_eq!(rx.queue.queued.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn the_queue_ends_when_senders_or_the_receiver_go() {
        let (tx, mut rx) = conn_channel();
        let tx2 = tx.clone();
        assert!(tx.send(Outbound::Frame("a".into())));
        drop(tx);
        assert!(tx2.send(Outbound::Frame("b".into())));
        // A waiting receiver is woken by a send from another task.
        let waiter = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(Outbound::Frame(f)) = rx.recv().await {
                got.push(f);
            }
            got
        });
        tokio::task::yield_now().await;
        assert!(tx2.send(Outbound::Frame("c".into())));
        drop(tx2);
        // Every queued item is delivered, then the end.
        assert_eq!(waiter.await.unwrap(), vec!["a", "b", "c"]);

        let (tx, rx) = conn_channel();
        drop(rx);
        assert!(!tx.send(Outbound::Frame("lost".into())), "no receiver");
    }
}
