//! Counted slots for sockets that have not authenticated yet.
//!
//! Two pools use this: upgraded WebSockets waiting for a successful
//! `connect` (`GatewayState::unauth`) and TCP connections still in the HTTP
//! phase (`GatewayState::pending_http`). Over the per-address cap a new
//! socket is refused. At the global cap the oldest socket of the pool is
//! evicted to make room (a slow or idle socket is by then the oldest, while
//! a client that completes its handshake needs its slot only for
//! milliseconds), so sockets from many addresses cannot lock legitimate
//! clients out until their deadlines pass. An evicted socket stops counting
//! at once and is closed when its task next runs (a connect it is already
//! deciding still completes). Until its task drops the slot it counts as
//! lingering, and lingering slots are bounded by the cap too, past which
//! newcomers are refused; the close handshake that follows (up to 2.5 s
//! against a silent peer) is not counted, so sockets closing are bounded
//! only by the rate of evictions.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::state::limiter::limit_peer;

/// Unauthenticated sockets one address may hold.
pub const MAX_UNAUTH_PER_IP: usize = 32;
/// Unauthenticated sockets in total.
pub const MAX_UNAUTH_TOTAL: usize = 4096;

/// One pool of slots.
#[derive(Debug, Default)]
pub struct UnauthSlots {
    table: Mutex<SlotTable>,
    total: AtomicUsize,
}

#[derive(Debug, Default)]
struct SlotTable {
    per_ip: HashMap<IpAddr, usize>,
    /// Live slots by age (ids increase): the first is the oldest.
    order: BTreeMap<u64, (Option<IpAddr>, Arc<Notify>)>,
    next_id: u64,
    /// Evicted slots not yet dropped by their socket's task.
    lingering: usize,
}

/// Why a slot was not granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRefusal {
    /// The address holds its cap already.
    PerIp,
    /// The pool is full of sockets already evicted and not yet gone.
    Global,
}

/// One held slot; released on drop.
#[derive(Debug)]
pub struct UnauthSlot {
    pool: Arc<UnauthSlots>,
    /// The address counted against, if any (trusted proxies are only
    /// counted globally while in the HTTP phase).
    ip: Option<IpAddr>,
    id: u64,
    evict: Arc<Notify>,
}

impl UnauthSlot {
    /// Resolves when this socket is evicted to make room for a newer one.
    pub fn evicted(&self) -> impl Future<Output = ()> + use<> {
        Self::evicted_if_held(Some(self))
    }

    /// [`Self::evicted`] for a slot that may not be held (then it never
    /// resolves). Borrows nothing, so the slot can be dropped meanwhile.
    pub fn evicted_if_held(slot: Option<&UnauthSlot>) -> impl Future<Output = ()> + use<> {
        let evict = slot.map(|s| s.evict.clone());
        async move {
            match evict {
                Some(e) => e.notified().await,
                None => std::future::pending().await,
            }
        }
    }
}

impl Drop for UnauthSlot {
    fn drop(&mut self) {
        self.pool.give_back(self.ip, self.id);
    }
}

impl UnauthSlots {
    /// Takes a slot for a socket from `ip` (counted per address as the
    /// limiter counts it: an IPv6 host by its /64; `None`: only globally).
    /// Returns the slot and whether an older socket was evicted for it.
    pub fn acquire(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        per_ip: usize,
        total: usize,
    ) -> Result<(UnauthSlot, bool), SlotRefusal> {
        let ip = ip.map(limit_peer);
        let mut t = self.table.lock().expect("slots lock");
        if let Some(ip) = ip
            && t.per_ip.get(&ip).copied().unwrap_or(0) >= per_ip
        {
            return Err(SlotRefusal::PerIp);
        }
        let held = self.total.load(Ordering::Relaxed);
        let mut evicted = false;
        if held >= total {
            if t.lingering >= total {
                return Err(SlotRefusal::Global);
            }
            match t.order.pop_first() {
                Some((_, (old_ip, oldest))) => {
                    // Uncounted now; its task closes it when it next runs.
                    self.total.fetch_sub(1, Ordering::Relaxed);
                    if let Some(ip) = old_ip {
                        uncount(&mut t.per_ip, ip);
                    }
                    t.lingering += 1;
                    oldest.notify_one();
                    evicted = true;
                }
                None => return Err(SlotRefusal::Global),
            }
        }
        if let Some(ip) = ip {
            *t.per_ip.entry(ip).or_insert(0) += 1;
        }
        let id = t.next_id;
        t.next_id += 1;
        let evict = Arc::new(Notify::new());
        t.order.insert(id, (ip, evict.clone()));
        self.total.fetch_add(1, Ordering::Relaxed);
        let slot = UnauthSlot {
            pool: self.clone(),
            ip,
            id,
            evict,
        };
        Ok((slot, evicted))
    }

    fn give_back(&self, ip: Option<IpAddr>, id: u64) {
        let mut t = self.table.lock().expect("slots lock");
        if t.order.remove(&id).is_none() {
            // Evicted: already uncounted.
            t.lingering -= 1;
            return;
        }
        self.total.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = ip {
            uncount(&mut t.per_ip, ip);
        }
    }

    /// Sockets held now.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Sockets held now by one address (an IPv6 address: its /64).
    pub fn held_by(&self, ip: IpAddr) -> usize {
        self.table
            .lock()
            .expect("slots lock")
            .per_ip
            .get(&limit_peer(ip))
            .copied()
            .unwrap_or(0)
    }
}

fn uncount(per_ip: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Some(n) = per_ip.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            per_ip.remove(&ip);
        }
    }
}
