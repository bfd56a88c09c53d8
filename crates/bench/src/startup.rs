//! `startup -- <command...>`: spawn a gateway, time spawn to the first
//! hello-ok, sample its RSS, then stop it (SIGTERM, SIGKILL after 5 s).

use std::io::{Read, Seek, SeekFrom};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::conn::{self, CLOSE_WAIT, Credentials, Failure, Target};
use crate::report::{self, round};
use crate::sys;
use crate::{BenchError, Ctx, StartupArgs, check_secs};

/// Time between readiness attempts.
const POLL: Duration = Duration::from_millis(5);
/// Bound of one readiness attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Grace period between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// The child's output file, removed on drop.
struct LogFile {
    path: std::path::PathBuf,
    file: std::fs::File,
}

impl LogFile {
    fn create() -> std::io::Result<LogFile> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "clawgate-bench-startup-{}-{nanos}.log",
            std::process::id()
        ));
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)?;
        Ok(LogFile { path, file })
    }

    /// The last 4 KiB of the child's output.
    fn tail(&mut self) -> String {
        let len = self.file.seek(SeekFrom::End(0)).unwrap_or(0);
        let _ = self.file.seek(SeekFrom::Start(len.saturating_sub(4096)));
        let mut buf = Vec::new();
        let _ = self.file.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).trim_end().to_string()
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// SIGTERM, then SIGKILL after the grace period; returns how it ended and
/// how long stopping took.
async fn stop(child: &mut Child) -> (String, f64) {
    let t = Instant::now();
    if let Ok(Some(st)) = child.try_wait() {
        return (describe(st), 0.0);
    }
    sys::signal(child.id(), libc::SIGTERM);
    while t.elapsed() < TERM_GRACE {
        if let Ok(Some(st)) = child.try_wait() {
            return (describe(st), t.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = child.kill();
    let st = child.wait();
    (
        format!(
            "killed with SIGKILL after {} s ({})",
            TERM_GRACE.as_secs(),
            st.map(describe).unwrap_or_else(|e| e.to_string())
        ),
        t.elapsed().as_secs_f64(),
    )
}

fn describe(st: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => st.to_string(),
    }
}

/// Handshake attempts every [`POLL`] until hello-ok (Ok: ms since `t0`),
/// the child's exit, a credential refusal or the timeout.
async fn wait_ready(
    target: &Target,
    creds: &Credentials,
    child: &mut Child,
    t0: Instant,
    timeout: Duration,
    attempts: &mut u64,
) -> Result<f64, String> {
    let mut last = String::from("no attempt yet");
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!(
                "exited ({}) after {} ms before any hello-ok at {} (last attempt: {last})",
                describe(st),
                t0.elapsed().as_millis(),
                target.url,
            ));
        }
        if t0.elapsed() >= timeout {
            return Err(format!(
                "not ready within {} s: no hello-ok at {} after {attempts} attempts (last: {last})",
                timeout.as_secs_f64(),
                target.url,
            ));
        }
        *attempts += 1;
        let r = tokio::time::timeout(
            ATTEMPT_TIMEOUT,
            conn::handshake(target, creds, None, None, conn::ws_config(4096)),
        )
        .await;
        match r {
            Ok(Ok(ws)) => {
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                conn::finish(ws, CLOSE_WAIT).await;
                return Ok(ms);
            }
            Ok(Err((f, ws))) => {
                last = format!("{}: {}", f.kind(), f.detail());
                if let Some(ws) = ws {
                    conn::finish(ws, CLOSE_WAIT).await;
                }
                if matches!(f, Failure::Rejected { .. }) && f.kind().starts_with("AUTH_") {
                    // A listening gateway that refuses the credentials will
                    // not change its mind: say so rather than spin.
                    return Err(format!(
                        "answered but refused the connect: {last} (check --token/--password)"
                    ));
                }
            }
            Err(_) => last = "timeout".into(),
        }
        tokio::time::sleep(POLL).await;
    }
}

pub async fn run(ctx: &Ctx, a: StartupArgs) -> Result<(), BenchError> {
    let timeout = check_secs("--ready-timeout-secs", a.ready_timeout_secs)?;
    let target = crate::target(ctx, None)?;
    let creds = Credentials::new(&ctx.auth);
    let mut log = LogFile::create()
        .map_err(|e| BenchError::Failed(format!("cannot create a log file: {e}")))?;
    let out_file = log
        .file
        .try_clone()
        .map_err(|e| BenchError::Failed(e.to_string()))?;
    let err_file = log
        .file
        .try_clone()
        .map_err(|e| BenchError::Failed(e.to_string()))?;
    let program = a.command[0].clone();

    let t0 = Instant::now();
    let mut child = Command::new(&program)
        .args(&a.command[1..])
        .stdin(Stdio::null())
        .stdout(out_file)
        .stderr(err_file)
        .spawn()
        .map_err(|e| crate::usage(format!("cannot run {program:?}: {e}")))?;
    let pid = child.id();

    let mut attempts = 0u64;
    let ready = wait_ready(&target, &creds, &mut child, t0, timeout, &mut attempts).await;
    let ready_ms = match ready {
        Ok(ms) => ms,
        Err(why) => {
            let how = stop(&mut child).await.0;
            let mut f = serde_json::Map::new();
            f.insert("program".into(), json!(program));
            f.insert("pid".into(), json!(pid));
            f.insert("ready_ms".into(), json!(null));
            f.insert("attempts".into(), json!(attempts));
            f.insert("stop".into(), json!(how));
            let msg = format!(
                "{program} {why}; stopped it ({how}); its output:\n{}",
                log.tail()
            );
            return Err(report::failed(ctx, "startup", f, msg));
        }
    };
    let rss = sys::proc_rss_kb(pid).ok();
    let rss_tree = sys::tree_rss_kb(pid);
    let (how, stop_secs) = stop(&mut child).await;

    let mut out = report::header(ctx, "startup");
    out.insert("program".into(), json!(program));
    out.insert("pid".into(), json!(pid));
    out.insert("ready_ms".into(), json!(round(ready_ms, 2)));
    out.insert("attempts".into(), json!(attempts));
    out.insert("server_rss_kb".into(), json!(rss));
    out.insert("server_rss_kb_tree".into(), json!(rss_tree));
    out.insert("stop".into(), json!(how));
    out.insert("stop_ms".into(), json!(round(stop_secs * 1000.0, 1)));
    let summary = format!(
        "{}: first hello-ok {:.1} ms after spawn ({attempts} attempts), RSS {} KiB ({rss_tree} KiB with child processes); stopped: {how} in {:.0} ms",
        report::label_prefix(ctx, "startup"),
        ready_ms,
        rss.map(|r| r.to_string()).unwrap_or_else(|| "?".into()),
        stop_secs * 1000.0
    );
    report::emit(out, &summary);
    Ok(())
}
