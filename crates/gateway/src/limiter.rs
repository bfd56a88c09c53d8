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

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimitConfig;

/// Entries kept before expired ones are pruned.
const MAX_ENTRIES: usize = 10_000;
/// Loopback delay schedule.
const LOOPBACK_BASE_DELAY_MS: u64 = 250;
const LOOPBACK_MAX_DELAY_MS: u64 = 5_000;

/// What a failure counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitScope {
    SharedSecret,
    DeviceToken,
}

/// A limiter key: scope, peer, and whether the connect came from a browser
/// (an `Origin` header). Browser connects are never loopback-exempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LimitKey {
    pub scope: LimitScope,
    pub peer: IpAddr,
    pub browser: bool,
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

#[derive(Debug, Default)]
struct Entry {
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

#[derive(Debug)]
struct Inner {
    entries: HashMap<LimitKey, Entry>,
    global: VecDeque<Instant>,
}

/// The limiter. Cheap to consult: one mutex, no allocation on the allowed path.
#[derive(Debug)]
pub struct AuthLimiter {
    config: Mutex<RateLimitConfig>,
    inner: Mutex<Inner>,
}

impl AuthLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        AuthLimiter {
            config: Mutex::new(config),
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                global: VecDeque::new(),
            }),
        }
    }

    /// Applies new settings (config reload); existing lockouts stay.
    pub fn reconfigure(&self, config: RateLimitConfig) {
        *self.config.lock().expect("limiter config lock") = config;
    }

    fn exempt(cfg: &RateLimitConfig, key: &LimitKey) -> bool {
        cfg.exempt_loopback && !key.browser && key.peer.is_loopback()
    }

    /// Whether `key` may try to authenticate now.
    pub fn check(&self, key: &LimitKey, now: Instant) -> Admission {
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
        let Some(entry) = inner.entries.get_mut(key) else {
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
        let cfg = self.config.lock().expect("limiter config lock").clone();
        let window = Duration::from_millis(cfg.window_ms);
        let mut inner = self.inner.lock().expect("limiter lock");
        prune(&mut inner.global, now, window);
        inner.global.push_back(now);
        while inner.global.len() > cfg.global_max_failures as usize {
            inner.global.pop_front();
        }
        if inner.entries.len() >= MAX_ENTRIES && !inner.entries.contains_key(key) {
            inner.entries.retain(|_, e| {
                prune(&mut e.failures, now, window);
                !e.failures.is_empty() || e.locked_until.is_some_and(|u| u > now)
            });
            if inner.entries.len() >= MAX_ENTRIES {
                // Still full of live entries: the global budget still counts
                // this failure, which is what protects us under a flood.
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
            entry.locked_until = Some(now + Duration::from_millis(cfg.lockout_ms));
            return FailureOutcome {
                delay: Duration::ZERO,
                locked_now: true,
            };
        }
        FailureOutcome::default()
    }

    /// Forgets a key's failures after a successful authentication.
    pub fn record_success(&self, key: &LimitKey) {
        let mut inner = self.inner.lock().expect("limiter lock");
        if let Some(e) = inner.entries.get(key)
            && e.locked_until.is_none()
        {
            inner.entries.remove(key);
        }
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

    fn key(ip: [u8; 4], browser: bool) -> LimitKey {
        LimitKey {
            scope: LimitScope::SharedSecret,
            peer: IpAddr::from(ip),
            browser,
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
}
