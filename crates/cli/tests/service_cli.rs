//! The gateway as a systemd service, with the real binary: the units
//! `clawgate gateway install` writes pass `systemd-analyze verify`, the
//! gateway speaks the notify protocol (READY, WATCHDOG, RELOADING,
//! STOPPING) to a socket the test listens on, install and uninstall
//! against a scratch HOME, secrets never in the unit, and the refusals.
//!
//! Needs `systemd-analyze` (Debian package `systemd`).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

const SECRET: &str = "svc-test-secret-token-0123456789abcdef";

/// A scratch directory outside /tmp: the units refuse paths the
/// service's private /tmp would hide.
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("svc")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

fn text(out: &Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `clawgate --state-dir STATE ARGS` with HOME in `home`, no
/// XDG_CONFIG_HOME, and PATH as given (an empty directory hides systemctl).
fn service_cmd(home: &Path, state: &Path, path_env: &str, args: &[&str]) -> (i32, String, String) {
    let out = bin()
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env("PATH", path_env)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .unwrap();
    text(&out)
}

fn write_token_config(state: &Path) {
    std::fs::create_dir_all(state).unwrap();
    std::fs::write(
        state.join("clawgate.json"),
        // Port 1: `gateway status` finds no gateway there, quickly.
        format!("{{ gateway: {{ port: 1, auth: {{ mode: 'token', token: '{SECRET}' }} }} }}"),
    )
    .unwrap();
}

fn analyze_verify(unit: &Path, user: bool, runtime_dir: &Path) -> (i32, String, String) {
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify").arg("--man=no");
    if user {
        // The user manager's runtime directory; a scratch one will do.
        cmd.arg("--user").env("XDG_RUNTIME_DIR", runtime_dir);
    }
    let out = match cmd.arg(unit).output() {
        Ok(out) => out,
        Err(e) => panic!(
            "systemd-analyze is needed for this test (Debian package `systemd`; scripts/test.sh installs it): {e}"
        ),
    };
    text(&out)
}

#[test]
fn the_units_pass_systemd_analyze_verify_and_a_broken_one_does_not() {
    let dir = scratch();
    let state = dir.path().join("state");
    write_token_config(&state);
    let runtime = dir.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, SECRET).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let cases: [(&str, bool, Vec<&str>); 3] = [
        ("user", true, vec!["gateway", "install", "--dry-run"]),
        (
            "user-token-file",
            true,
            vec![
                "gateway",
                "install",
                "--print",
                "--token-file",
                token_file.to_str().unwrap(),
            ],
        ),
        (
            "system",
            false,
            vec![
                "gateway",
                "install",
                "--system",
                "--dry-run",
                "--token-file",
                token_file.to_str().unwrap(),
            ],
        ),
    ];
    for (name, user, args) in cases {
        let (code, unit, err) = clawgate(&state, &args);
        assert_eq!(code, 0, "{name}: {err}");
        assert!(
            !unit.contains(SECRET),
            "{name}: the secret is in the unit:\n{unit}"
        );
        let exe = assert_cmd::cargo::cargo_bin("clawgate")
            .canonicalize()
            .unwrap();
        assert!(
            unit.contains(&format!(
                "ExecStart={} gateway run --state-dir {}",
                exe.display(),
                state.display()
            )),
            "{name}:\n{unit}"
        );
        let unit_dir = dir.path().join(name);
        std::fs::create_dir(&unit_dir).unwrap();
        let path = unit_dir.join("clawgate.service");
        std::fs::write(&path, &unit).unwrap();
        let (code, out, err) = analyze_verify(&path, user, &runtime);
        assert!(
            code == 0 && err.trim().is_empty(),
            "{name}: systemd-analyze verify: {code}\n{out}\n{err}\n{unit}"
        );

        // The same unit with a misspelt setting and a missing binary: the
        // check above would have noticed.
        let broken = unit
            .replace("NotifyAccess=main", "NotifyAccess=mian")
            .replace(&exe.display().to_string(), "/nonexistent/clawgate");
        let broken_path = unit_dir.join("broken.service");
        std::fs::write(&broken_path, broken).unwrap();
        let (code, _, err) = analyze_verify(&broken_path, user, &runtime);
        assert!(code != 0 && err.contains("mian"), "{name}: {code} {err}");
    }

    let (_, system, _) = clawgate(
        &state,
        &[
            "gateway",
            "install",
            "--system",
            "--dry-run",
            "--token-file",
            token_file.to_str().unwrap(),
        ],
    );
    assert!(system.contains(&format!(
        "LoadCredential=gateway-token:{}\n",
        token_file.display()
    )));
    assert!(system.contains(" --token-file %d/gateway-token\n"));
    assert!(system.contains("\nUser=") && system.contains("\nGroup="));
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30",
        "Restart=on-failure",
        "RestartSec=2",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        &format!("ReadWritePaths={}", state.display()),
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "MemoryDenyWriteExecute=yes",
        "UMask=0077",
        "LimitNOFILE=65536",
    ] {
        assert!(
            system.lines().any(|l| l == line),
            "missing {line}:\n{system}"
        );
    }
}

/// Reads notify messages until one satisfies `want`, or fails after
/// `within`; returns it and every message read on the way.
fn await_message(
    sock: &UnixDatagram,
    within: Duration,
    want: impl Fn(&str) -> bool,
) -> (String, Vec<String>) {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no matching notify message; got {seen:?}");
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if want(&msg) {
                    return (msg, seen);
                }
                seen.push(msg);
            }
            Err(e) => panic!("no matching notify message ({e}); got {seen:?}"),
        }
    }
}

fn healthz(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn the_gateway_reports_ready_feeds_the_watchdog_reloads_and_stopping() {
    let dir = scratch();
    let state = dir.path().join("state");
    write_token_config(&state);
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let running = start(
        &state,
        &[],
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let pid = running.child.id();
    let port = running.port;

    let (ready, before) = await_message(&sock, Duration::from_secs(10), |m| m.contains("READY=1"));
    assert!(before.is_empty(), "messages before READY=1: {before:?}");
    assert_eq!(
        ready,
        format!("READY=1\nSTATUS=listening on ws://127.0.0.1:{port}\nMAINPID={pid}")
    );
    // Ready means serving: the port answers HTTP.
    assert!(
        healthz(port).starts_with("HTTP/1.1 200"),
        "healthz after READY=1"
    );

    // The watchdog is fed every WATCHDOG_USEC/2 (100 ms): several pings
    // within a second, and nothing else meanwhile.
    let started = Instant::now();
    for _ in 0..4 {
        let (msg, other) = await_message(&sock, Duration::from_secs(2), |_| true);
        assert!(other.is_empty());
        assert_eq!(msg, "WATCHDOG=1");
    }
    assert!(started.elapsed() < Duration::from_secs(3));

    // SIGHUP: RELOADING=1, then READY=1 again.
    unsafe_kill(pid, "HUP");
    let (reloading, _) = await_message(&sock, Duration::from_secs(10), |m| m != "WATCHDOG=1");
    assert!(reloading.starts_with("RELOADING=1\n"), "{reloading}");
    let (ready, _) = await_message(&sock, Duration::from_secs(10), |m| m != "WATCHDOG=1");
    assert!(ready.starts_with("READY=1\n"), "{ready}");

    // SIGTERM: STOPPING=1 once shutdown starts, then a clean exit.
    unsafe_kill(pid, "TERM");
    let (stopping, _) = await_message(&sock, Duration::from_secs(10), |m| m != "WATCHDOG=1");
    assert!(stopping.starts_with("STOPPING=1"), "{stopping}");
    let (code, stderr) = stop(running);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains(SECRET));
}

#[test]
fn without_a_notify_socket_the_gateway_runs_as_before() {
    let dir = scratch();
    let state = dir.path().join("state");
    write_token_config(&state);
    // A watchdog without a socket is ignored, not an error.
    let running = start(&state, &[], &[("WATCHDOG_USEC", "200000")]);
    assert!(healthz(running.port).starts_with("HTTP/1.1 200"));
    let (code, stderr) = stop(running);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("NOTIFY_SOCKET"), "{stderr}");
}

#[test]
fn install_writes_a_user_unit_without_the_secret_and_uninstall_removes_it() {
    let dir = scratch();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let state = dir.path().join("state");
    write_token_config(&state);
    // An empty PATH: no systemctl, as in a container.
    let no_path = dir.path().join("empty-path");
    std::fs::create_dir(&no_path).unwrap();
    let no_path = no_path.to_str().unwrap();
    let unit_path = home.join(".config/systemd/user/clawgate.service");

    let (code, out, err) = service_cmd(&home, &state, no_path, &["gateway", "install"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("Wrote {}", unit_path.display())),
        "{out}"
    );
    assert!(
        out.contains("systemctl not found") || out.contains("systemd is not running here"),
        "{out}"
    );
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    assert!(!unit.contains(SECRET), "{unit}");
    assert!(unit.contains("WantedBy=default.target"));
    let mode = std::fs::metadata(&unit_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    assert!(!out.contains(SECRET) && !err.contains(SECRET));

    // gateway status names the unit, whether or not the gateway answers.
    let (_, out, _) = service_cmd(
        &home,
        &state,
        no_path,
        &["gateway", "status", "--timeout", "2000"],
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("Service"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("installed (systemd user unit")
            && line.contains(&unit_path.display().to_string()),
        "{line}"
    );

    // Installing again replaces it, with --no-enable even where systemctl is.
    let system_path = std::env::var("PATH").unwrap_or_default();
    let (code, out, err) = service_cmd(
        &home,
        &state,
        &system_path,
        &["gateway", "install", "--no-enable"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("Updated {}", unit_path.display())),
        "{out}"
    );
    assert!(
        !out.contains("$ systemctl"),
        "--no-enable ran systemctl: {out}"
    );

    let (code, out, err) = service_cmd(&home, &state, no_path, &["gateway", "uninstall"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("Removed {}", unit_path.display())),
        "{out}"
    );
    assert!(!unit_path.exists());
    let (code, out, _) = service_cmd(&home, &state, no_path, &["gateway", "uninstall"]);
    assert_eq!(code, 0);
    assert!(out.contains("not installed"), "{out}");
    let (_, out, _) = service_cmd(
        &home,
        &state,
        no_path,
        &["gateway", "status", "--timeout", "2000"],
    );
    assert!(out.contains("Service      not installed"), "{out}");

    // start without a unit says how to install one.
    let (code, _, err) = service_cmd(&home, &state, no_path, &["gateway", "start"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: clawgate.service is not installed\n"),
        "{err}"
    );
    assert!(err.contains("clawgate gateway install"), "{err}");
}

#[test]
fn install_references_a_token_file_and_refuses_an_inline_secret() {
    let dir = scratch();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let state = dir.path().join("state");
    let no_path = dir.path().join("empty-path");
    std::fs::create_dir(&no_path).unwrap();
    let no_path = no_path.to_str().unwrap();
    let unit_path = home.join(".config/systemd/user/clawgate.service");

    // An inline secret: refused, nothing written.
    for flag in ["--token", "--password"] {
        let (code, out, err) = service_cmd(
            &home,
            &state,
            no_path,
            &["gateway", "install", flag, SECRET],
        );
        assert_eq!(code, 1, "{out}{err}");
        assert!(
            err.starts_with("error: a secret never goes into a unit file"),
            "{err}"
        );
        assert_eq!(err.matches("error:").count(), 1, "{err}");
        assert!(err.contains("-file PATH"), "{err}");
        assert!(!err.contains(SECRET) && !out.contains(SECRET));
        assert!(!home.join(".config").exists());
        assert!(!state.exists());
    }

    // A token file that does not exist: refused.
    let token_file = dir.path().join("token");
    let (code, _, err) = service_cmd(
        &home,
        &state,
        no_path,
        &[
            "gateway",
            "install",
            "--token-file",
            token_file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1);
    assert!(err.starts_with("error: --token-file"), "{err}");
    assert!(!home.join(".config").exists());

    std::fs::write(&token_file, SECRET).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out, err) = service_cmd(
        &home,
        &state,
        no_path,
        &[
            "gateway",
            "install",
            "--token-file",
            token_file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    assert!(
        unit.contains(&format!(" --token-file {}\n", token_file.display())),
        "{unit}"
    );
    assert!(!unit.contains(SECRET));
    // The state directory now exists, private, for ReadWritePaths=.
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);

    // A state directory the sandbox would hide.
    let (code, _, err) = service_cmd(
        &home,
        Path::new("/tmp/clawgate-svc-state"),
        no_path,
        &["gateway", "install", "--dry-run"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("PrivateTmp"), "{err}");
}

/// Runs the binary as `nobody` when the tests run as root, so the
/// permission checks are real.
fn as_unprivileged(args: &[&str], home: &Path, state: &Path) -> (i32, String, String) {
    let exe = assert_cmd::cargo::cargo_bin("clawgate");
    let root = String::from_utf8_lossy(&Command::new("id").arg("-u").output().unwrap().stdout)
        .trim()
        == "0";
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.env("HOME", home)
        .arg("--state-dir")
        .arg(state)
        .args(args);
    text(&cmd.output().unwrap())
}

fn world_accessible(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_system_unit_without_root_is_refused_and_nothing_is_written() {
    let dir = scratch();
    world_accessible(dir.path());
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let state = dir.path().join("state");
    let system_unit = PathBuf::from("/etc/systemd/system/clawgate.service");
    let existed = system_unit.exists();

    let (code, out, err) = as_unprivileged(&["gateway", "install", "--system"], &home, &state);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.starts_with("error: installing a system unit needs root; nothing was written\n"),
        "{err}"
    );
    // The binary is not on PATH here, so the hint names its path.
    let exe = assert_cmd::cargo::cargo_bin("clawgate");
    assert!(
        err.contains(&format!(
            "sudo {} gateway install --system",
            exe.canonicalize().unwrap().display()
        )),
        "{err}"
    );
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    assert_eq!(system_unit.exists(), existed);
    assert!(!state.exists());

    // A unit directory this user cannot write (root-owned, 0755).
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    world_accessible(&locked);
    let (code, out, err) = as_unprivileged(
        &[
            "gateway",
            "install",
            "--system",
            "--unit-dir",
            locked.to_str().unwrap(),
        ],
        &home,
        &state,
    );
    if Command::new("id")
        .arg("-u")
        .output()
        .unwrap()
        .stdout
        .starts_with(b"0")
    {
        assert_eq!(code, 1, "{out}{err}");
        assert!(
            err.starts_with(&format!(
                "error: cannot write {}/clawgate.service: ",
                locked.display()
            )),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "sudo {} gateway install --system",
                exe.canonicalize().unwrap().display()
            )),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(&locked).unwrap().count(), 0);
        assert!(!state.exists());
    }
}
