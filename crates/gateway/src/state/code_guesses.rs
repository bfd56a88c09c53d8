//! Unknown pairing codes per operator connection: a connection that names
//! [`MAX_UNKNOWN`] codes no pending request has within [`WINDOW_MS`] is
//! refused code lookups until [`WINDOW_MS`] after the last of them. A
//! typo costs one try; guessing 34.6-bit codes goes nowhere (and a code
//! grants nothing by itself anyway: the caller is an authenticated
//! operator with the scopes the approval needs).

use std::collections::HashMap;
use std::sync::Mutex;

/// Unknown codes a connection may name per window.
pub const MAX_UNKNOWN: usize = 5;
/// The window, and how long the refusal lasts.
pub const WINDOW_MS: u64 = 60_000;

/// What a recorded miss did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// Counted; the connection may still look codes up.
    Counted,
    /// This miss reached the limit: lookups are refused from now on.
    LimitReached,
}

/// Per connection id: the times of its recent unknown codes.
#[derive(Debug, Default)]
pub struct CodeGuesses {
    misses: Mutex<HashMap<String, Vec<u64>>>,
}

impl CodeGuesses {
    /// `Some(retry_after_ms)` while `conn` is refused code lookups.
    pub fn refused(&self, conn: &str, now_ms: u64) -> Option<u64> {
        let mut map = self.misses.lock().expect("code guesses lock");
        let times = map.get_mut(conn)?;
        times.retain(|t| t + WINDOW_MS > now_ms);
        (times.len() >= MAX_UNKNOWN).then(|| {
            let last = times.iter().max().copied().unwrap_or(now_ms);
            (last + WINDOW_MS).saturating_sub(now_ms).max(1)
        })
    }

    /// Records an unknown code named by `conn`.
    pub fn record_miss(&self, conn: &str, now_ms: u64) -> Miss {
        let mut map = self.misses.lock().expect("code guesses lock");
        // Forget connections whose misses are all old (closed ones included).
        map.retain(|_, times| times.iter().any(|t| t + WINDOW_MS > now_ms));
        let times = map.entry(conn.to_string()).or_default();
        times.retain(|t| t + WINDOW_MS > now_ms);
        times.push(now_ms);
        if times.len() >= MAX_UNKNOWN {
            Miss::LimitReached
        } else {
            Miss::Counted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_misses_in_a_window_refuse_that_connection_only() {
        let g = CodeGuesses::default();
        for i in 0..4 {
            assert_eq!(g.record_miss("a", 1_000 + i), Miss::Counted);
            assert_eq!(g.refused("a", 1_000 + i), None);
        }
        assert_eq!(g.record_miss("a", 1_004), Miss::LimitReached);
        assert_eq!(g.refused("a", 1_005), Some(WINDOW_MS - 1));
        assert_eq!(g.refused("b", 1_005), None);
        // A minute after the last miss the window has room again.
        assert_eq!(g.refused("a", 1_004 + WINDOW_MS), None);
    }

    #[test]
    fn misses_spread_over_more_than_a_window_do_not_add_up() {
        let g = CodeGuesses::default();
        for i in 0..10 {
            assert_eq!(g.record_miss("a", i * 20_000), Miss::Counted);
        }
    }
}
