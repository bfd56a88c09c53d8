//! Normalisers for the values that are compared with request headers:
//! allowed origins, host names and the Control UI base path.

use std::net::IpAddr;

/// Normalises an allowed origin: `"*"`, or `http(s)://host[:port]` in
/// lowercase with no trailing slash and no default port. `None` when the
/// string is not such an origin.
pub fn normalize_origin(origin: &str) -> Option<String> {
    if origin == "*" {
        return Some("*".into());
    }
    let lower = origin.to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://")?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty()
        || authority.chars().any(|c| {
            matches!(c, '/' | '?' | '#' | '@' | '\\') || c.is_whitespace() || c.is_control()
        })
    {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6.split_once(']')?;
        addr.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{addr}]"), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !host.split('.').all(label_ok) {
            return None;
        }
        (host.to_string(), port)
    };
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let n: u32 = p.parse().ok()?;
            if n == 0 || n > 65535 {
                return None;
            }
            (n != default_port).then_some(n)
        }
    };
    Some(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

/// Normalises `gateway.controlUi.basePath` to "/", "/ui/", ... ; `None`
/// when it holds characters that do not belong in a URL path prefix.
pub(super) fn normalize_base_path(raw: &str) -> Option<String> {
    if raw
        .chars()
        .any(|c| matches!(c, '?' | '#' | '\\' | '%') || c.is_whitespace() || c.is_control())
    {
        return None;
    }
    let segments: Vec<&str> = raw.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return None;
    }
    if segments.is_empty() {
        return Some("/".into());
    }
    Some(format!("/{}/", segments.join("/")))
}

/// Normalises a host name for `gateway.allowedHosts` and for comparing a
/// `Host` header with it: `"*"`, or a DNS name or IP address in lowercase,
/// without brackets or a trailing dot. `None` for anything else (a port, a
/// scheme, a path, an empty label).
pub fn normalize_host_name(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw == "*" {
        return Some("*".into());
    }
    let lower = raw.to_ascii_lowercase();
    let unbracketed = lower
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(&lower);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    (!name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok))
        .then(|| name.to_string())
}
