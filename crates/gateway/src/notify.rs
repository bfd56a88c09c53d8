//! The service manager's readiness protocol (systemd `sd_notify`): a leaf,
//! it imports no other room.
//!
//! Under `Type=notify` the service manager passes a datagram socket in
//! `NOTIFY_SOCKET` (a path, or an abstract name written `@name`) and reads
//! newline-separated `KEY=VALUE` states from it: `READY=1` once the
//! gateway serves, `STOPPING=1` when shutdown starts, `RELOADING=1` then
//! `READY=1` around a reload, and `WATCHDOG=1` at least every
//! `WATCHDOG_USEC` while the process is healthy. Without `NOTIFY_SOCKET`
//! (a terminal, a container, tests) every call does nothing.
//!
//! The environment is read, never changed (changing it is `unsafe` in
//! Rust 2024), so the variables stay set for the life of the process; the
//! gateway starts no children that could inherit them by mistake.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where states go, if anywhere.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    target: Option<SocketAddr>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// The notifier for this process's environment (`NOTIFY_SOCKET`,
    /// `WATCHDOG_USEC`, `WATCHDOG_PID`).
    pub fn from_env() -> Notifier {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        Notifier::from_vars(
            var("NOTIFY_SOCKET").as_deref(),
            var("WATCHDOG_USEC").and_then(|v| v.into_string().ok()),
            var("WATCHDOG_PID").and_then(|v| v.into_string().ok()),
            std::process::id(),
        )
    }

    fn from_vars(
        socket: Option<&std::ffi::OsStr>,
        watchdog_usec: Option<String>,
        watchdog_pid: Option<String>,
        own_pid: u32,
    ) -> Notifier {
        let target = socket.and_then(socket_addr);
        // A watchdog meant for another process (the variables were
        // inherited) is not ours to feed.
        let for_us = watchdog_pid.is_none_or(|p| p.trim().parse::<u32>().ok() == Some(own_pid));
        let watchdog = watchdog_usec
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|usec| *usec > 0 && for_us && target.is_some())
            .map(Duration::from_micros);
        Notifier { target, watchdog }
    }

    /// Whether a service manager listens.
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// How often to send `WATCHDOG=1` (half the manager's timeout), when a
    /// watchdog is armed for this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|timeout| timeout / 2)
    }

    /// Sends one message (lines of `KEY=VALUE`). Does nothing without a
    /// socket.
    pub fn send(&self, state: &str) -> io::Result<()> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let socket = UnixDatagram::unbound()?;
        socket.send_to_addr(state.as_bytes(), target)?;
        Ok(())
    }

    /// `READY=1` with a one-line status and this process's id.
    pub fn ready(&self, status: &str) {
        self.send_logged(&format!(
            "READY=1\nSTATUS={}\nMAINPID={}",
            one_line(status),
            std::process::id()
        ));
    }

    /// `STOPPING=1`: shutdown has started.
    pub fn stopping(&self) {
        self.send_logged("STOPPING=1\nSTATUS=stopping");
    }

    /// `RELOADING=1`: a reload has started; [`Notifier::ready`] ends it.
    pub fn reloading(&self) {
        self.send_logged("RELOADING=1\nSTATUS=reloading the configuration");
    }

    /// Sends `WATCHDOG=1` every [`Notifier::watchdog_interval`] for as long
    /// as the runtime runs the task: a wedged runtime stops the pings and
    /// the service manager restarts the gateway. Returns at once when no
    /// watchdog is armed.
    pub async fn watchdog_loop(self) {
        let Some(every) = self.watchdog_interval() else {
            return;
        };
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            self.send_logged("WATCHDOG=1");
        }
    }

    fn send_logged(&self, state: &str) {
        if let Err(err) = self.send(state) {
            tracing::warn!(%err, "cannot notify the service manager (NOTIFY_SOCKET)");
        }
    }
}

/// `NOTIFY_SOCKET` as an address: a path, or `@name` for an abstract
/// socket (Linux only).
fn socket_addr(value: &std::ffi::OsStr) -> Option<SocketAddr> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = value.as_bytes();
    match bytes.first()? {
        b'/' => SocketAddr::from_pathname(value).ok(),
        #[cfg(target_os = "linux")]
        b'@' => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(&bytes[1..]).ok()
        }
        _ => None,
    }
}

/// A status value cannot span lines: a newline would start another state.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn no_socket_means_no_notifications_and_no_watchdog() {
        let n = Notifier::from_vars(None, Some("200000".into()), None, 7);
        assert!(!n.is_active());
        assert_eq!(n.watchdog_interval(), None);
        n.send("READY=1").unwrap();
    }

    #[test]
    fn the_watchdog_is_fed_at_half_its_timeout_only_when_it_is_ours() {
        let sock = Some(OsStr::new("/run/x/notify"));
        let n = Notifier::from_vars(sock, Some("200000".into()), None, 7);
        assert_eq!(n.watchdog_interval(), Some(Duration::from_millis(100)));
        let n = Notifier::from_vars(sock, Some("200000".into()), Some("7".into()), 7);
        assert_eq!(n.watchdog_interval(), Some(Duration::from_millis(100)));
        let n = Notifier::from_vars(sock, Some("200000".into()), Some("8".into()), 7);
        assert_eq!(n.watchdog_interval(), None);
        let n = Notifier::from_vars(sock, Some("0".into()), None, 7);
        assert_eq!(n.watchdog_interval(), None);
    }

    #[test]
    fn relative_socket_paths_are_ignored() {
        assert!(socket_addr(OsStr::new("notify")).is_none());
        assert!(socket_addr(OsStr::new("/tmp/notify")).is_some());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_abstract_socket_receives_the_state() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("clawgate-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::from_vars(Some(OsStr::new(&format!("@{name}"))), None, None, 1);
        n.ready("listening on\nws://127.0.0.1:1");
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        let msg = std::str::from_utf8(&buf[..len]).unwrap();
        assert!(msg.starts_with("READY=1\nSTATUS=listening on ws://127.0.0.1:1\nMAINPID="));
    }
}
