//! The little bits of Linux the bench needs: file-descriptor limit, own CPU
//! time, another process's CPU and RSS from /proc, socket options.

use std::io;
use std::os::fd::AsRawFd;

/// Raises the soft RLIMIT_NOFILE to the hard limit (holds and high
/// concurrency need many sockets). Returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|_| rlimit::Resource::NOFILE.get().map(|(soft, _)| soft))
        .unwrap_or(0)
}

/// User + system CPU seconds used by this process so far (all threads).
pub fn own_cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return 0.0;
        }
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Number of CPUs this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// CPU time and resident set size of a process.
#[derive(Debug, Clone)]
pub struct ProcSample {
    /// utime + stime from /proc/PID/stat (clock ticks: 10 ms resolution;
    /// includes threads that have exited).
    pub cpu_secs: f64,
    pub rss_kb: u64,
    /// Per-thread on-CPU nanoseconds from /proc/PID/task/*/schedstat
    /// (precise, but only for live threads).
    pub threads: Vec<(u32, u64)>,
}

impl ProcSample {
    /// CPU seconds used between `self` and a later sample: the precise
    /// per-thread figure when no thread of `self` has gone away meanwhile,
    /// else the tick-based one.
    pub fn cpu_since(&self, before: &ProcSample) -> f64 {
        let ticks = self.cpu_secs - before.cpu_secs;
        if before.threads.is_empty() || self.threads.is_empty() {
            return ticks;
        }
        let mut ns: u64 = 0;
        for (tid, t0) in &before.threads {
            match self.threads.iter().find(|(t, _)| t == tid) {
                Some((_, t1)) => ns += t1.saturating_sub(*t0),
                None => return ticks,
            }
        }
        for (tid, t1) in &self.threads {
            if !before.threads.iter().any(|(t, _)| t == tid) {
                ns += t1;
            }
        }
        ns as f64 / 1e9
    }
}

fn thread_times(pid: u32) -> Vec<(u32, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Ok(s) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = s.split_whitespace().next().and_then(|v| v.parse().ok()) {
            out.push((tid, ns));
        }
    }
    out
}

/// Reads `/proc/PID/stat` (utime, stime) and `/proc/PID/status` (VmRSS).
pub fn proc_sample(pid: u32) -> io::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // split after the last ')'. Then field 3 (state) is index 0, so utime
    // (field 14) is index 11 and stime (field 15) index 12.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("unexpected /proc stat format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other("unexpected /proc stat format"))
    };
    let ticks = num(11)? + num(12)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Ok(ProcSample {
        cpu_secs: ticks as f64 / hz,
        rss_kb: proc_rss_kb(pid)?,
        threads: thread_times(pid),
    })
}

/// VmRSS of a process in KiB (0 for a zombie / kernel thread).
pub fn proc_rss_kb(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// VmRSS summed over a process and all its descendants, in KiB (a gateway
/// may run helpers in child processes).
pub fn tree_rss_kb(pid: u32) -> u64 {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok());
            if let Some(ppid) = ppid {
                parents.push((p, ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree.iter().filter_map(|p| proc_rss_kb(*p).ok()).sum()
}

/// `IP_BIND_ADDRESS_NO_PORT`: with an explicit source address, let
/// `connect()` pick the port for the full 4-tuple instead of `bind()`
/// reserving one per socket (otherwise ~28k binds exhaust the port range).
pub fn bind_address_no_port(sock: &impl AsRawFd) {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads an int we own; failure is harmless.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Sends a signal to a process.
pub fn signal(pid: u32, sig: libc::c_int) -> bool {
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_itself() {
        let s = proc_sample(std::process::id()).unwrap();
        assert!(s.rss_kb > 0);
        assert!(s.cpu_secs >= 0.0);
        assert!(!s.threads.is_empty());
        // CPU time advances in clock ticks (10 ms): spin until it moves,
        // for at most 5 s of wall time.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        let mut later = proc_sample(std::process::id()).unwrap();
        while later.cpu_since(&s) <= 0.0 && start.elapsed() < std::time::Duration::from_secs(5) {
            for i in 0..2_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
            later = proc_sample(std::process::id()).unwrap();
        }
        assert!(
            later.cpu_since(&s) > 0.0,
            "CPU time did not advance while spinning"
        );
        assert!(tree_rss_kb(std::process::id()) >= s.rss_kb / 2);
        assert!(own_cpu_secs() >= 0.0);
    }
}
