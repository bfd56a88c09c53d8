//! Failed-auth limiting, keyed on the peer address, never on anything the
//! client chooses (such as `Origin`).
//!
//! Per peer and scope: a sliding window of failures; reaching
//! `max_attempts` locks the key for `lockout_ms`. Loopback peers without an
//! `Origin` header are exempt from lockout (when `exempt_loopback`) and get
//! a growing delay instead (250 ms doubling to 5 s), as in the reference.
//! Across all peers a global failure budget per window: once it is spent,
//! every peer that has failed within the window is refused, exempt or not,
//! while peers that have not failed keep getting in.
//!
//! IPv6 peers are keyed on their /64 (one host usually holds a whole /64,
//! so per-address keys would give it 2^64 fresh budgets); IPv4-mapped IPv6
//! addresses count as the IPv4 address.
//!
//! The table of keys is bounded (`MAX_ENTRIES`). When it is full of live
//! entries a failure from a peer that is not in it cannot be counted
//! against that peer, so from then until the window has passed, and while
//! the global budget is spent, peers that are neither in the table nor
//! recently successful are refused too: a guesser with more addresses than
//! the table holds gets no unlimited guesses from the overflow. Expired
//! entries are swept at most once a second, so a flood of new addresses
//! does not cost a full sweep per failure.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimitConfig;

/// Entries kept before expired ones are pruned.
const MAX_ENTRIES: usize = 10_000;
/// Peers remembered as recently successful (overflow rule, under attack).
const MAX_GOOD: usize = 4_096;
/// Start/end events kept until the gateway drains them.
const MAX_EVENTS: usize = 16;
/// A full table is swept for expired entries at most this often.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Loopback delay schedule.
const LOOPBACK_BASE_DELAY_MS: u64 = 250;
const LOOPBACK_MAX_DELAY_MS: u64 = 5_000;

/// What a failure counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitScope {
    SharedSecret,
    DeviceToken,
    /// Setup codes (`auth.bootstrapToken`).
    BootstrapToken,
    /// Passkey sign-ins and registrations.
    Passkey,
}

impl LimitScope {
    /// The name in audit rows and in the lockouts replicas share.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitScope::SharedSecret => "shared-secret",
            LimitScope::DeviceToken => "device-token",
            LimitScope::BootstrapToken => "bootstrap-token",
            LimitScope::Passkey => "passkey",
        }
    }

    pub fn parse(s: &str) -> Option<LimitScope> {
        [
            LimitScope::SharedSecret,
            LimitScope::DeviceToken,
            LimitScope::BootstrapToken,
            LimitScope::Passkey,
        ]
        .into_iter()
        .find(|scope| scope.as_str() == s)
    }
}

/// What kind of peer a failure is counted for. Only [`PeerClass::Local`]
/// may be loopback-exempt (delays instead of lockouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerClass {
    /// A direct loopback peer without `Origin` (a CLI on the host).
    Local,
    /// A connect with an `Origin` header (a browser page), from anywhere.
    Browser,
    /// Anything else: a remote peer, or a client behind a trusted proxy,
    /// whatever address the proxy claims for it.
    Remote,
}

impl PeerClass {
    /// The name in audit rows and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerClass::Local => "local",
            PeerClass::Browser => "browser",
            PeerClass::Remote => "remote",
        }
    }
}

/// A limiter key: scope, peer address and peer class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LimitKey {
    pub scope: LimitScope,
    pub peer: IpAddr,
    pub class: PeerClass,
}

/// The limiter's answer before credentials are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    Locked { retry_after_ms: u64 },
}

/// What recording a failure decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailureOutcome {
    /// Wait this long before answering (loopback-exempt peers).
    pub delay: Duration,
    /// This failure started a lockout.
    pub locked_now: bool,
}

/// An "under attack" episode started or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttackEvent {
    Started {
        /// Shared-secret failures within the window when it started.
        failures: u64,
        /// Distinct peers (limiter keys) with failures in the table.
        peers: u64,
    },
    Ended {
        /// How long it lasted.
        duration: Duration,
        /// Shared-secret attempts refused unevaluated during it.
        refused: u64,
        /// Shared-secret failures evaluated during it (peers with a recent
        /// success, and attempts already under way when it started).
        failures: u64,
    },
}

/// The under-attack state as `status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttackStatus {
    pub active: bool,
    /// How long the current episode has lasted.
    pub active_for: Duration,
    /// Refused in the current episode.
    pub refused: u64,
    /// Episodes started since the gateway started.
    pub episodes: u64,
    /// Addresses in the recent-success set.
    pub recent_successes: usize,
}

#[derive(Debug)]
struct Episode {
    started: Instant,
    last_activity: Instant,
    refused: u64,
    failures: u64,
}

#[derive(Debug, Default)]
struct Entry {
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

#[derive(Debug)]
struct Inner {
    entries: HashMap<LimitKey, Entry>,
    /// Failure times across all peers, at most `global_max_failures`.
    global: VecDeque<Instant>,
    /// Until when the overflow rule applies (the table was full).
    overflow_until: Option<Instant>,
    /// No sweep of a full table before this.
    next_sweep: Option<Instant>,
    /// Peers that authenticated recently, and when.
    good: HashMap<IpAddr, Instant>,
    /// Shared-secret failure times across all peers, at most
    /// `global_max_failures` (the under-attack trigger).
    shared_global: VecDeque<Instant>,
    attack: Option<Episode>,
    episodes: u64,
    events: VecDeque<AttackEvent>,
    /// Lockouts decided here since the last drain, for replicas sharing a
    /// registry (kept only while `share_lockouts` is on; bounded).
    decided: Vec<(LimitKey, Duration)>,
    share_lockouts: bool,
}

/// The most lockouts queued between two drains; beyond it, the oldest are
/// not shared (each replica still counts its own failures).
const MAX_QUEUED_LOCKOUTS: usize = 1024;

/// The limiter. Cheap to consult: one mutex, no allocation on the allowed path.
#[derive(Debug)]
pub struct AuthLimiter {
    config: Mutex<RateLimitConfig>,
    inner: Mutex<Inner>,
    capacity: usize,
    /// Woken when a lockout is queued for the other replicas.
    lockout_queued: tokio::sync::Notify,
}

/// The address a peer is counted under: IPv4 as is (also when mapped into
/// IPv6), IPv6 loopback as is, other IPv6 addresses by their /64.
pub fn limit_peer(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            if v6.is_loopback() {
                return ip;
            }
            let mut seg = v6.segments();
            seg[4..].fill(0);
            IpAddr::V6(std::net::Ipv6Addr::from(seg))
        }
    }
}

fn normalized(key: &LimitKey) -> LimitKey {
    LimitKey {
        peer: limit_peer(key.peer),
        ..*key
    }
}

impl AuthLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        Self::with_capacity(config, MAX_ENTRIES)
    }

    /// A limiter whose key table holds `capacity` entries (tests).
    pub fn with_capacity(config: RateLimitConfig, capacity: usize) -> Self {
        AuthLimiter {
            config: Mutex::new(config),
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                global: VecDeque::new(),
                overflow_until: None,
                next_sweep: None,
                good: HashMap::new(),
                shared_global: VecDeque::new(),
                attack: None,
                episodes: 0,
                events: VecDeque::new(),
                decided: Vec::new(),
                share_lockouts: false,
            }),
            capacity: capacity.max(1),
            lockout_queued: tokio::sync::Notify::new(),
        }
    }

    /// Keys tracked now (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.inner.lock().expect("limiter lock").entries.len()
    }

    /// Applies new settings (config reload); existing lockouts stay.
    pub fn reconfigure(&self, config: RateLimitConfig) {
        *self.config.lock().expect("limiter config lock") = config;
    }

    fn exempt(cfg: &RateLimitConfig, key: &LimitKey) -> bool {
        cfg.exempt_loopback && key.class == PeerClass::Local
    }

    /// Whether `key` may try to authenticate now.
    pub fn check(&self, key: &LimitKey, now: Instant) -> Admission {
        let key = &normalized(key);
        let cfg = self.config.lock().expect("limiter config lock").clone();
        let window = Duration::from_millis(cfg.window_ms);
        let mut inner = self.inner.lock().expect("limiter lock");
        prune(&mut inner.global, now, window);
        let global_spent = inner.global.len() >= cfg.global_max_failures as usize;
        let global_retry = inner
            .global
            .front()
            .map(|t| (*t + window).saturating_duration_since(now))
            .unwrap_or_default();
        let overflow = inner.overflow_until.is_some_and(|u| u > now);
        let Inner { entries, good, .. } = &mut *inner;
        let Some(entry) = entries.get_mut(key) else {
            // The table overflowed: this peer's failures may have gone
            // uncounted, so while the budget is spent only peers that
            // authenticated recently get in.
            let ttl = Duration::from_millis(cfg.recent_success_ttl_ms).max(window);
            if overflow
                && global_spent
                && good
                    .get(&key.peer)
                    .is_none_or(|t| now.saturating_duration_since(*t) >= ttl)
            {
                return Admission::Locked {
                    retry_after_ms: ms_ceil(global_retry).max(1),
                };
            }
            return Admission::Allowed;
        };
        if let Some(until) = entry.locked_until {
            if until > now {
                return Admission::Locked {
                    retry_after_ms: ms_ceil(until - now),
                };
            }
            entry.locked_until = None;
            entry.failures.clear();
        }
        prune(&mut entry.failures, now, window);
        if global_spent && !entry.failures.is_empty() {
            return Admission::Locked {
                retry_after_ms: ms_ceil(global_retry).max(1),
            };
        }
        Admission::Allowed
    }

    /// Records a failed attempt.
    pub fn record_failure(&self, key: &LimitKey, now: Instant) -> FailureOutcome {
        let key = &normalized(key);
        let cfg = self.config.lock().expect("limiter config lock").clone();
        let window = Duration::from_millis(cfg.window_ms);
        let mut inner = self.inner.lock().expect("limiter lock");
        prune(&mut inner.global, now, window);
        // Bounded by the budget: only its oldest entry and its length matter.
        inner.global.push_back(now);
        while inner.global.len() > cfg.global_max_failures.max(1) as usize {
            inner.global.pop_front();
        }
        if key.scope == LimitScope::SharedSecret && cfg.attack_guard {
            Self::count_shared_failure(&mut inner, key, &cfg, now, window);
        }
        if inner.entries.len() >= self.capacity && !inner.entries.contains_key(key) {
            if inner.next_sweep.is_none_or(|t| t <= now) {
                inner.next_sweep = Some(now + SWEEP_INTERVAL);
                inner.entries.retain(|_, e| {
                    prune(&mut e.failures, now, window);
                    !e.failures.is_empty() || e.locked_until.is_some_and(|u| u > now)
                });
            }
            if inner.entries.len() >= self.capacity {
                // Still full of live entries: this failure counts only in
                // the global budget, and the overflow rule (see `check`)
                // applies for a window.
                inner.overflow_until = Some(now + window);
                return FailureOutcome::default();
            }
        }
        let entry = inner.entries.entry(*key).or_default();
        prune(&mut entry.failures, now, window);
        entry.failures.push_back(now);
        let n = entry.failures.len();
        if Self::exempt(&cfg, key) {
            // Keep history bounded; the delay saturates long before this.
            while entry.failures.len() > cfg.max_attempts.max(16) as usize {
                entry.failures.pop_front();
            }
            let exp = (n.saturating_sub(1)).min(16) as u32;
            let delay = (LOOPBACK_BASE_DELAY_MS << exp).min(LOOPBACK_MAX_DELAY_MS);
            return FailureOutcome {
                delay: Duration::from_millis(delay),
                locked_now: false,
            };
        }
        if n >= cfg.max_attempts as usize {
            let lockout = Duration::from_millis(cfg.lockout_ms);
            entry.locked_until = Some(now + lockout);
            if inner.share_lockouts && inner.decided.len() < MAX_QUEUED_LOCKOUTS {
                inner.decided.push((*key, lockout));
                self.lockout_queued.notify_one();
            }
            return FailureOutcome {
                delay: Duration::ZERO,
                locked_now: true,
            };
        }
        FailureOutcome::default()
    }

    /// Replicas: queue every lockout decided from now on for
    /// [`AuthLimiter::drain_lockouts`].
    pub fn share_lockouts(&self) {
        self.inner.lock().expect("limiter lock").share_lockouts = true;
    }

    /// Resolves when a lockout was queued (see [`AuthLimiter::share_lockouts`]).
    pub async fn lockout_queued(&self) {
        self.lockout_queued.notified().await;
    }

    /// The lockouts decided here since the last call, with their length.
    pub fn drain_lockouts(&self) -> Vec<(LimitKey, Duration)> {
        std::mem::take(&mut self.inner.lock().expect("limiter lock").decided)
    }

    /// Applies a lockout another replica decided: `key` stays locked for
    /// `remaining` (an existing longer lockout is kept). Failure counts are
    /// not shared; only the decision is.
    pub fn adopt_lockout(&self, key: &LimitKey, remaining: Duration, now: Instant) {
        let key = normalized(key);
        let mut inner = self.inner.lock().expect("limiter lock");
        if inner.entries.len() >= self.capacity && !inner.entries.contains_key(&key) {
            return;
        }
        let until = now + remaining;
        let entry = inner.entries.entry(key).or_default();
        if entry.locked_until.is_none_or(|u| u < until) {
            entry.locked_until = Some(until);
        }
    }

    /// A shared-secret failure for the under-attack trigger: may start an
    /// episode, and keeps a running one going.
    fn count_shared_failure(
        inner: &mut Inner,
        key: &LimitKey,
        cfg: &RateLimitConfig,
        now: Instant,
        window: Duration,
    ) {
        Self::expire_attack(inner, cfg, now);
        let budget = cfg.global_max_failures.max(1) as usize;
        prune(&mut inner.shared_global, now, window);
        inner.shared_global.push_back(now);
        while inner.shared_global.len() > budget {
            inner.shared_global.pop_front();
        }
        if let Some(ep) = &mut inner.attack {
            ep.last_activity = now;
            ep.failures += 1;
        } else if inner.shared_global.len() >= budget {
            inner.attack = Some(Episode {
                started: now,
                last_activity: now,
                refused: 0,
                failures: 0,
            });
            inner.episodes += 1;
            let peers = inner
                .entries
                .keys()
                .filter(|k| k.scope == LimitScope::SharedSecret)
                .count() as u64
                + u64::from(!inner.entries.contains_key(key));
            Self::push_event(
                inner,
                AttackEvent::Started {
                    failures: inner.shared_global.len() as u64,
                    peers,
                },
            );
        }
    }

    fn push_event(inner: &mut Inner, event: AttackEvent) {
        if inner.events.len() >= MAX_EVENTS {
            inner.events.pop_front();
        }
        inner.events.push_back(event);
    }

    /// Ends the episode if it has been quiet for the cooldown.
    fn expire_attack(inner: &mut Inner, cfg: &RateLimitConfig, now: Instant) {
        let cooldown = Duration::from_millis(cfg.attack_cooldown_ms);
        let quiet = inner
            .attack
            .as_ref()
            .is_some_and(|ep| now.saturating_duration_since(ep.last_activity) >= cooldown);
        if quiet || (!cfg.attack_guard && inner.attack.is_some()) {
            let ep = inner.attack.take().expect("episode");
            Self::push_event(
                inner,
                AttackEvent::Ended {
                    duration: now.saturating_duration_since(ep.started),
                    refused: ep.refused,
                    failures: ep.failures,
                },
            );
        }
    }

    /// Whether an under-attack episode is running.
    pub fn is_under_attack(&self) -> bool {
        self.inner.lock().expect("limiter lock").attack.is_some()
    }

    /// Under attack: whether a shared-secret attempt from `key`'s peer is
    /// refused before any comparison (the peer has no recent success).
    /// Call only when a shared secret was offered and [`Self::check`]
    /// allowed the key. A refusal keeps the episode going.
    pub fn check_attack(&self, key: &LimitKey, now: Instant) -> Admission {
        let key = &normalized(key);
        let cfg = self.config.lock().expect("limiter config lock").clone();
        let mut inner = self.inner.lock().expect("limiter lock");
        Self::expire_attack(&mut inner, &cfg, now);
        if inner.attack.is_none() || Self::exempt(&cfg, key) {
            return Admission::Allowed;
        }
        let ttl = Duration::from_millis(cfg.recent_success_ttl_ms);
        if inner
            .good
            .get(&key.peer)
            .is_some_and(|t| now.saturating_duration_since(*t) < ttl)
        {
            return Admission::Allowed;
        }
        let ep = inner.attack.as_mut().expect("episode");
        ep.refused += 1;
        ep.last_activity = now;
        Admission::Locked {
            retry_after_ms: cfg.attack_cooldown_ms.max(1),
        }
    }

    /// Ends a quiet episode and hands over the start/end events queued
    /// since the last call (the gateway calls this once a second).
    pub fn drain_attack_events(&self, now: Instant) -> Vec<AttackEvent> {
        let cfg = self.config.lock().expect("limiter config lock").clone();
        let mut inner = self.inner.lock().expect("limiter lock");
        Self::expire_attack(&mut inner, &cfg, now);
        inner.events.drain(..).collect()
    }

    /// The under-attack state now.
    pub fn attack_status(&self, now: Instant) -> AttackStatus {
        let inner = self.inner.lock().expect("limiter lock");
        AttackStatus {
            active: inner.attack.is_some(),
            active_for: inner
                .attack
                .as_ref()
                .map(|ep| now.saturating_duration_since(ep.started))
                .unwrap_or_default(),
            refused: inner.attack.as_ref().map_or(0, |ep| ep.refused),
            episodes: inner.episodes,
            recent_successes: inner.good.len(),
        }
    }

    /// Forgets a key's failures after a successful authentication.
    pub fn record_success(&self, key: &LimitKey) {
        self.record_success_at(key, Instant::now());
    }

    /// [`Self::record_success`] at a given time.
    pub fn record_success_at(&self, key: &LimitKey, now: Instant) {
        let key = &normalized(key);
        let ttl = {
            let cfg = self.config.lock().expect("limiter config lock");
            Duration::from_millis(cfg.recent_success_ttl_ms.max(cfg.window_ms))
        };
        let mut inner = self.inner.lock().expect("limiter lock");
        if let Some(e) = inner.entries.get(key)
            && e.locked_until.is_none()
        {
            inner.entries.remove(key);
        }
        if inner.good.len() >= MAX_GOOD && !inner.good.contains_key(&key.peer) {
            inner
                .good
                .retain(|_, t| now.saturating_duration_since(*t) < ttl);
            if inner.good.len() >= MAX_GOOD {
                // Still full: the least recent success makes room (only
                // successes get in, so an attacker cannot fill it).
                if let Some(oldest) = inner.good.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k) {
                    inner.good.remove(&oldest);
                }
            }
        }
        inner.good.insert(key.peer, now);
    }
}

fn prune(q: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while let Some(front) = q.front() {
        if now.saturating_duration_since(*front) >= window {
            q.pop_front();
        } else {
            break;
        }
    }
}

fn ms_ceil(d: Duration) -> u64 {
    let ms = d.as_millis() as u64;
    if Duration::from_millis(ms) < d {
        ms + 1
    } else {
        ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key as the gateway builds it for a direct peer at `ip`, with or
    /// without `Origin`.
    fn key(ip: [u8; 4], browser: bool) -> LimitKey {
        let peer = IpAddr::from(ip);
        let class = match (browser, peer.is_loopback()) {
            (true, _) => PeerClass::Browser,
            (false, true) => PeerClass::Local,
            (false, false) => PeerClass::Remote,
        };
        LimitKey {
            scope: LimitScope::SharedSecret,
            peer,
            class,
        }
    }

    #[test]
    fn locks_after_max_attempts_and_expires() {
        let lim = AuthLimiter::new(RateLimitConfig::default());
        let k = key([10, 0, 0, 1], false);
        let t0 = Instant::now();
        for i in 0..9 {
            assert!(
                !lim.record_failure(&k, t0 + Duration::from_millis(i))
                    .locked_now
            );
            assert_eq!(lim.check(&k, t0), Admission::Allowed);
        }
        assert!(
            lim.record_failure(&k, t0 + Duration::from_millis(9))
                .locked_now
        );
        match lim.check(&k, t0 + Duration::from_millis(10)) {
            Admission::Locked { retry_after_ms } => assert_eq!(retry_after_ms, 299_999),
            a => panic!("{a:?}"),
        }
        assert_eq!(
            lim.check(&k, t0 + Duration::from_millis(300_010)),
            Admission::Allowed
        );
        // Other peers are unaffected.
        assert_eq!(
            lim.check(&key([10, 0, 0, 2], false), t0),
            Admission::Allowed
        );
    }

    #[test]
    fn loopback_gets_delays_not_lockouts() {
        let lim = AuthLimiter::new(RateLimitConfig::default());
        let k = key([127, 0, 0, 1], false);
        let t0 = Instant::now();
        let delays: Vec<u64> = (0..8)
            .map(|i| {
                lim.record_failure(&k, t0 + Duration::from_millis(i))
                    .delay
                    .as_millis() as u64
            })
            .collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        assert_eq!(lim.check(&k, t0), Admission::Allowed);
        // A browser connect from loopback is not exempt.
        let b = key([127, 0, 0, 1], true);
        for i in 0..10 {
            lim.record_failure(&b, t0 + Duration::from_millis(i));
        }
        assert!(matches!(lim.check(&b, t0), Admission::Locked { .. }));
    }

    #[test]
    fn global_budget_refuses_failing_peers_only() {
        let cfg = RateLimitConfig {
            global_max_failures: 5,
            ..RateLimitConfig::default()
        };
        let lim = AuthLimiter::new(cfg);
        let t0 = Instant::now();
        for i in 0..5u8 {
            lim.record_failure(&key([10, 0, 1, i], false), t0);
        }
        assert!(matches!(
            lim.check(&key([10, 0, 1, 0], false), t0),
            Admission::Locked { .. }
        ));
        assert_eq!(
            lim.check(&key([10, 0, 2, 0], false), t0),
            Admission::Allowed
        );
    }

    #[test]
    fn global_history_stays_bounded_under_a_flood() {
        let cfg = RateLimitConfig {
            global_max_failures: 50,
            ..RateLimitConfig::default()
        };
        let lim = AuthLimiter::new(cfg);
        let t0 = Instant::now();
        for i in 0..100_000u32 {
            let [_, a, b, c] = i.to_be_bytes();
            lim.record_failure(&key([10, a, b, c], true), t0);
        }
        let inner = lim.inner.lock().unwrap();
        assert_eq!(inner.global.len(), 50);
        assert_eq!(inner.entries.len(), MAX_ENTRIES);
    }

    #[test]
    fn overflowing_the_table_does_not_give_free_guesses() {
        let cfg = RateLimitConfig {
            global_max_failures: 2,
            exempt_loopback: false,
            ..RateLimitConfig::default()
        };
        let lim = AuthLimiter::with_capacity(cfg, 3);
        let t0 = Instant::now();
        // A peer that authenticated before the attack.
        let regular = key([10, 9, 9, 9], false);
        lim.record_success_at(&regular, t0);
        for i in 0..3u8 {
            lim.record_failure(&key([10, 0, 0, i], false), t0);
        }
        assert_eq!(lim.tracked(), 3);
        // The fourth address does not fit: its failure is not counted
        // against it, yet it is refused while the budget is spent.
        let extra = key([10, 0, 0, 3], false);
        lim.record_failure(&extra, t0);
        assert_eq!(lim.tracked(), 3);
        assert!(matches!(lim.check(&extra, t0), Admission::Locked { .. }));
        // So is any address outside the table (the price of the rule) ...
        assert!(matches!(
            lim.check(&key([10, 7, 7, 7], false), t0),
            Admission::Locked { .. }
        ));
        // ... but not a peer that authenticated within the window.
        assert_eq!(lim.check(&regular, t0), Admission::Allowed);
        // After the window everything is back to normal, and the sweep
        // makes room.
        let later = t0 + Duration::from_millis(60_001);
        assert_eq!(lim.check(&extra, later), Admission::Allowed);
        lim.record_failure(&extra, later);
        assert_eq!(lim.tracked(), 1);
    }

    #[test]
    fn a_full_table_is_swept_at_most_once_a_second() {
        let cfg = RateLimitConfig {
            window_ms: 100,
            ..RateLimitConfig::default()
        };
        let lim = AuthLimiter::with_capacity(cfg, 2);
        let t0 = Instant::now();
        lim.record_failure(&key([10, 0, 0, 1], true), t0);
        lim.record_failure(&key([10, 0, 0, 2], true), t0);
        // Full: the sweep runs (nothing expired yet) and is not due again
        // for a second, even once the entries have expired.
        lim.record_failure(&key([10, 0, 0, 3], true), t0);
        let t1 = t0 + Duration::from_millis(500);
        lim.record_failure(&key([10, 0, 0, 4], true), t1);
        assert_eq!(lim.tracked(), 2);
        let t2 = t0 + Duration::from_millis(1_001);
        lim.record_failure(&key([10, 0, 0, 5], true), t2);
        assert_eq!(lim.tracked(), 1);
    }

    #[test]
    fn ipv6_peers_are_keyed_on_their_slash_64() {
        let lim = AuthLimiter::new(RateLimitConfig::default());
        let t0 = Instant::now();
        let k6 = |s: &str| LimitKey {
            scope: LimitScope::SharedSecret,
            peer: s.parse().unwrap(),
            class: PeerClass::Remote,
        };
        for i in 0..10u16 {
            lim.record_failure(&k6(&format!("2001:db8:1:2::{i:x}")), t0);
        }
        assert!(matches!(
            lim.check(&k6("2001:db8:1:2:ffff:1:2:3"), t0),
            Admission::Locked { .. }
        ));
        assert_eq!(lim.check(&k6("2001:db8:1:3::1"), t0), Admission::Allowed);
        // An IPv4-mapped address is the IPv4 address.
        for _ in 0..10 {
            lim.record_failure(&key([10, 1, 1, 1], false), t0);
        }
        assert!(matches!(
            lim.check(&k6("::ffff:10.1.1.1"), t0),
            Admission::Locked { .. }
        ));
        // Loopback stays loopback (and exempt).
        assert_eq!(
            limit_peer("::1".parse().unwrap()),
            "::1".parse::<IpAddr>().unwrap()
        );
    }

    fn attack_cfg() -> RateLimitConfig {
        RateLimitConfig {
            global_max_failures: 5,
            exempt_loopback: false,
            attack_cooldown_ms: 1_000,
            ..RateLimitConfig::default()
        }
    }

    #[test]
    fn spending_the_budget_refuses_new_peers_until_it_cools_down() {
        let lim = AuthLimiter::new(attack_cfg());
        let t0 = Instant::now();
        let regular = key([10, 9, 9, 9], false);
        lim.record_success_at(&regular, t0);
        for i in 0..4u8 {
            lim.record_failure(&key([10, 0, 0, i], false), t0);
        }
        assert_eq!(
            lim.check_attack(&key([10, 1, 1, 1], false), t0),
            Admission::Allowed
        );
        lim.record_failure(&key([10, 0, 0, 4], false), t0);
        // Under attack: a brand-new peer is refused, the regular is not.
        let fresh = key([10, 1, 1, 1], false);
        assert_eq!(
            lim.check_attack(&fresh, t0),
            Admission::Locked {
                retry_after_ms: 1_000
            }
        );
        assert_eq!(lim.check_attack(&regular, t0), Admission::Allowed);
        // IPv6: the regular's /64 counts as the regular.
        let v6 = |s: &str| LimitKey {
            scope: LimitScope::SharedSecret,
            peer: s.parse().unwrap(),
            class: PeerClass::Remote,
        };
        lim.record_success_at(&v6("2001:db8::1"), t0);
        assert_eq!(
            lim.check_attack(&v6("2001:db8::ffff"), t0),
            Admission::Allowed
        );
        assert!(matches!(
            lim.check_attack(&v6("2001:db8:0:1::1"), t0),
            Admission::Locked { .. }
        ));
        let status = lim.attack_status(t0);
        assert!(status.active);
        assert_eq!((status.refused, status.episodes), (2, 1));
        assert_eq!(
            lim.drain_attack_events(t0),
            vec![AttackEvent::Started {
                failures: 5,
                peers: 5
            }]
        );
        // Refusals keep it going: still on 900 ms after the last one.
        let t1 = t0 + Duration::from_millis(900);
        assert!(matches!(
            lim.check_attack(&fresh, t1),
            Admission::Locked { .. }
        ));
        let t2 = t1 + Duration::from_millis(900);
        assert!(lim.drain_attack_events(t2).is_empty());
        // Quiet for the cooldown: over, and reported once.
        let t3 = t1 + Duration::from_millis(1_000);
        let ended = lim.drain_attack_events(t3);
        assert!(
            matches!(ended[..], [AttackEvent::Ended { refused: 3, .. }]),
            "{ended:?}"
        );
        assert_eq!(lim.check_attack(&fresh, t3), Admission::Allowed);
        assert!(!lim.attack_status(t3).active);
    }

    #[test]
    fn device_token_failures_and_the_guard_off_start_no_episode() {
        let lim = AuthLimiter::new(attack_cfg());
        let t0 = Instant::now();
        for i in 0..20u8 {
            let k = LimitKey {
                scope: LimitScope::DeviceToken,
                ..key([10, 0, 0, i], false)
            };
            lim.record_failure(&k, t0);
        }
        assert!(!lim.attack_status(t0).active);
        let lim = AuthLimiter::new(RateLimitConfig {
            attack_guard: false,
            ..attack_cfg()
        });
        for i in 0..20u8 {
            lim.record_failure(&key([10, 0, 0, i], false), t0);
        }
        assert!(!lim.attack_status(t0).active);
        assert_eq!(
            lim.check_attack(&key([10, 1, 1, 1], false), t0),
            Admission::Allowed
        );
    }

    #[test]
    fn exempt_loopback_peers_are_not_refused_by_the_episode() {
        let lim = AuthLimiter::new(RateLimitConfig {
            exempt_loopback: true,
            ..attack_cfg()
        });
        let t0 = Instant::now();
        for i in 0..5u8 {
            lim.record_failure(&key([10, 0, 0, i], false), t0);
        }
        assert!(lim.attack_status(t0).active);
        assert_eq!(
            lim.check_attack(&key([127, 0, 0, 1], false), t0),
            Admission::Allowed
        );
        assert!(matches!(
            lim.check_attack(&key([127, 0, 0, 1], true), t0),
            Admission::Locked { .. }
        ));
    }
}
