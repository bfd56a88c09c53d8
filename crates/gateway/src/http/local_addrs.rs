//! The gateway host's own interface addresses, for the reference's
//! trusted-proxy spoofing guard: a non-loopback source that is one of them
//! is refused (`trusted_proxy_local_interface_source`), and when they
//! cannot be read, every such source is (`..._check_failed`).
//!
//! Read from Linux's `/proc/net/fib_trie` (IPv4 `/32 host LOCAL` entries)
//! and `/proc/net/if_inet6`, without `unsafe`; cached for 5 s.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(5);

static CACHE: Mutex<Option<(Instant, Option<Vec<IpAddr>>)>> = Mutex::new(None);

/// Whether `ip` is an address of this host (`None`: the addresses cannot
/// be read). IPv4-mapped addresses are compared as IPv4.
pub(crate) fn is_local_interface(ip: IpAddr) -> Option<bool> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let fresh = cache.as_ref().is_some_and(|(at, _)| at.elapsed() < TTL);
    if !fresh {
        *cache = Some((Instant::now(), read()));
    }
    let addrs = cache.as_ref().and_then(|(_, a)| a.as_ref())?;
    Some(addrs.contains(&ip))
}

fn read() -> Option<Vec<IpAddr>> {
    let v4 = std::fs::read_to_string("/proc/net/fib_trie").ok()?;
    let mut out = parse_fib_trie(&v4);
    // A host without IPv6 has no if_inet6: that is no error.
    if let Ok(v6) = std::fs::read_to_string("/proc/net/if_inet6") {
        out.extend(parse_if_inet6(&v6));
    }
    Some(out)
}

/// IPv4 addresses with a `/32 host LOCAL` line under them.
fn parse_fib_trie(text: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut last: Option<IpAddr> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(addr) = t.strip_prefix("|-- ") {
            last = addr.trim().parse().ok();
        } else if t.starts_with("/32 host LOCAL")
            && let Some(a) = last
            && !out.contains(&a)
        {
            out.push(a);
        }
    }
    out
}

/// The first column of each line: 32 hex digits.
fn parse_if_inet6(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|h| h.len() == 32)
        .filter_map(|h| u128::from_str_radix(h, 16).ok())
        .map(|n| IpAddr::V6(Ipv6Addr::from(n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net() {
        let fib = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     +-- 127.0.0.0/8 2 0 2\n           |-- 127.0.0.1\n              /32 host LOCAL\n        |-- 127.255.255.255\n           /32 link BROADCAST\n           |-- 192.0.2.2\n              /32 host LOCAL\n";
        assert_eq!(
            parse_fib_trie(fib),
            vec![
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "192.0.2.2".parse().unwrap()
            ]
        );
        let v6 = "fd000000000000000000000000000002 04 40 00 82     eth0\n00000000000000000000000000000001 01 80 10 80       lo\n";
        assert_eq!(
            parse_if_inet6(v6),
            vec!["fd00::2".parse::<IpAddr>().unwrap(), "::1".parse().unwrap()]
        );
        if std::path::Path::new("/proc/net/fib_trie").exists() {
            assert_eq!(is_local_interface("127.0.0.1".parse().unwrap()), Some(true));
            assert_eq!(
                is_local_interface("203.0.113.250".parse().unwrap()),
                Some(false)
            );
        }
    }
}
