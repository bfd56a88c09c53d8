//! `clawgate gateway install|uninstall|start|stop|restart` and the service
//! line of `clawgate gateway status`: the gateway as a systemd service.
//!
//! The unit runs `clawgate gateway run` as `Type=notify` (the gateway
//! reports `READY=1`, `STOPPING=1` and feeds the watchdog; see
//! `clawgate_gateway::notify`), sandboxed so that the state directory is
//! the only place it may write. A secret never goes into the unit: the
//! gateway reads it from the config file or from a file the unit names
//! (for a system unit handed over with `LoadCredential=`).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use clap::Args;
use clawgate_gateway::config::{self, ConfigFile};
use clawgate_gateway::state::slots::MAX_UNAUTH_TOTAL;

use crate::Paths;

/// The unit's file name, the same for user and system units.
pub const UNIT_NAME: &str = "clawgate.service";

/// Authenticated sessions the open-file limit is sized for (they have no
/// cap of their own; this is what a small machine holds comfortably).
const SESSION_BUDGET: u64 = 25_000;
/// Descriptors that are not client sockets: the listener, the SQLite
/// database with its WAL and shared-memory files, the runtime's epoll and
/// wake-up descriptors, stdio, the config file while it is read.
const FD_OVERHEAD: u64 = 64;

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Install a system unit (/etc/systemd/system; needs root) instead of
    /// a user unit (~/.config/systemd/user).
    #[arg(long)]
    system: bool,
    /// The account a --system unit runs as (default: the current user).
    #[arg(long = "user", value_name = "NAME", requires = "system")]
    run_as: Option<String>,
    /// The gateway reads its shared token from this file (a system unit
    /// receives it with LoadCredential=). Not needed when the config file
    /// holds the token.
    #[arg(long, value_name = "PATH", conflicts_with = "password_file")]
    token_file: Option<PathBuf>,
    /// The gateway reads its shared password from this file.
    #[arg(long, value_name = "PATH")]
    password_file: Option<PathBuf>,
    /// Refused: a secret never goes into a unit file (use --token-file).
    #[arg(long, hide = true)]
    token: Option<String>,
    /// Refused: a secret never goes into a unit file (use --password-file).
    #[arg(long, hide = true)]
    password: Option<String>,
    /// Write the unit, but do not run systemctl daemon-reload and enable.
    #[arg(long)]
    no_enable: bool,
    /// Print the unit and change nothing.
    #[arg(long, visible_alias = "print")]
    dry_run: bool,
    /// Write the unit into this directory instead (packaging, tests).
    #[arg(long, hide = true, value_name = "DIR")]
    unit_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// The system unit (default: the user unit if installed, else the system one).
    #[arg(long)]
    system: bool,
    /// Look for the unit in this directory instead (packaging, tests).
    #[arg(long, hide = true, value_name = "DIR")]
    unit_dir: Option<PathBuf>,
}

/// A user unit (the user's own service manager) or a system unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    System,
}

impl Scope {
    fn systemctl_args(self) -> &'static [&'static str] {
        match self {
            Scope::User => &["--user"],
            Scope::System => &[],
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Scope::User => "systemd user unit",
            Scope::System => "systemd system unit",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Scope::User => "",
            Scope::System => " --system",
        }
    }
}

/// Where units of this scope live.
fn unit_dir(scope: Scope) -> anyhow::Result<PathBuf> {
    match scope {
        Scope::System => Ok(PathBuf::from("/etc/systemd/system")),
        Scope::User => {
            let xdg = std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute());
            let config_home = match xdg {
                Some(dir) => dir,
                None => std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .filter(|p| p.is_absolute())
                    .map(|home| home.join(".config"))
                    .context(
                        "HOME is not set, so the user unit directory is unknown; set HOME or use --system",
                    )?,
            };
            Ok(config_home.join("systemd").join("user"))
        }
    }
}

/// The account a system unit runs as.
#[derive(Debug, Clone)]
struct Account {
    user: String,
    group: String,
    uid: u32,
    gid: u32,
}

impl Account {
    /// `name`, or the current user; from `id`, which knows every account
    /// source (files, LDAP, ...).
    fn lookup(name: Option<&str>) -> anyhow::Result<Account> {
        let id = |flag: &str| -> Option<String> {
            let mut cmd = Command::new("id");
            cmd.arg(flag);
            if let Some(n) = name {
                cmd.arg(n);
            }
            let out = cmd.output().ok().filter(|o| o.status.success())?;
            Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let found = (|| {
            Some(Account {
                user: id("-un")?,
                group: id("-gn")?,
                uid: id("-u")?.parse().ok()?,
                gid: id("-g")?.parse().ok()?,
            })
        })();
        match (found, name) {
            (Some(account), _) => Ok(account),
            (None, Some(n)) => anyhow::bail!(
                "there is no user named {n:?}; create it first (useradd --system {n}) or pass another --user"
            ),
            (None, None) => anyhow::bail!("cannot tell who the current user is (`id` failed)"),
        }
    }
}

fn effective_uid() -> Option<u32> {
    let out = Command::new("id").arg("-u").output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// How the service gets its shared secret.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SecretSource {
    /// The config file (or first run, which writes one there).
    Config,
    /// `--token-file` / `--password-file` naming this file.
    File { kind: SecretKind, path: PathBuf },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecretKind {
    Token,
    Password,
}

impl SecretKind {
    fn flag(self) -> &'static str {
        match self {
            SecretKind::Token => "--token-file",
            SecretKind::Password => "--password-file",
        }
    }

    /// The credential's name in `LoadCredential=` and `%d/`.
    fn credential(self) -> &'static str {
        match self {
            SecretKind::Token => "gateway-token",
            SecretKind::Password => "gateway-password",
        }
    }
}

/// Everything the unit text depends on.
#[derive(Debug, Clone)]
struct UnitSpec {
    scope: Scope,
    exe: PathBuf,
    state_dir: PathBuf,
    /// Only when it is not `<state dir>/clawgate.json`.
    config: Option<PathBuf>,
    secret: SecretSource,
    account: Option<Account>,
}

/// The open-file limit the unit sets, and how it is made up.
fn nofile_limit() -> (u64, String) {
    let unauth = 2 * MAX_UNAUTH_TOTAL as u64;
    let sessions = 2 * SESSION_BUDGET;
    let sum = unauth + sessions + FD_OVERHEAD;
    let limit = sum.next_power_of_two();
    let why = format!(
        "2 x {MAX_UNAUTH_TOTAL} unauthenticated sockets (the HTTP-phase and WebSocket slot caps) \
         + 2 x {SESSION_BUDGET} authenticated sessions (a fronted one also holds its upstream socket) \
         + {FD_OVERHEAD} for the listener, SQLite and the runtime = {sum}, rounded up to {limit}"
    );
    (limit, why)
}

/// One argument of a unit's command line: `%` and `$` are escaped (no
/// specifier or variable expansion), and quoted when it holds spaces.
fn exec_arg(arg: &str) -> String {
    let escaped = arg
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%")
        .replace('$', "$$");
    if escaped.contains([' ', '\t', '"', '\'']) || escaped.is_empty() {
        format!("\"{escaped}\"")
    } else {
        escaped
    }
}

fn path_arg(path: &Path) -> String {
    exec_arg(&path.to_string_lossy())
}

fn render_unit(spec: &UnitSpec) -> String {
    let (nofile, nofile_why) = nofile_limit();
    let mut exec = vec![
        path_arg(&spec.exe),
        "gateway".into(),
        "run".into(),
        "--state-dir".into(),
        path_arg(&spec.state_dir),
    ];
    if let Some(config) = &spec.config {
        exec.push("--config".into());
        exec.push(path_arg(config));
    }
    let mut credential = None;
    if let SecretSource::File { kind, path } = &spec.secret {
        exec.push(kind.flag().into());
        match spec.scope {
            // systemd copies the file into a private directory only this
            // service can read (%d), before the sandbox hides anything.
            Scope::System => {
                exec.push(format!("%d/{}", kind.credential()));
                credential = Some(format!(
                    "LoadCredential={}:{}",
                    kind.credential(),
                    path_arg(path)
                ));
            }
            Scope::User => exec.push(path_arg(path)),
        }
    }
    let mut u = String::new();
    let mut line = |s: &str| {
        u.push_str(s);
        u.push('\n');
    };
    line("# Written by `clawgate gateway install`; `clawgate gateway uninstall` removes it.");
    line("# Reinstall rather than edit, or override with `systemctl edit clawgate`.");
    line("[Unit]");
    line("Description=clawgate, the OpenClaw gateway control plane");
    line("Documentation=man:clawgate-gateway-run(1)");
    line("After=network-online.target");
    line("Wants=network-online.target");
    line("");
    line("[Service]");
    line("Type=notify");
    line("NotifyAccess=main");
    line(&format!("ExecStart={}", exec.join(" ")));
    line("# SIGHUP re-reads the auth settings (the gateway reports RELOADING=1, then READY=1).");
    line("ExecReload=/bin/kill -HUP $MAINPID");
    line("WatchdogSec=30");
    line("Restart=on-failure");
    line("RestartSec=2");
    if let Some(credential) = &credential {
        line(&credential.to_string());
    }
    if let Some(account) = &spec.account {
        line(&format!("User={}", account.user));
        line(&format!("Group={}", account.group));
    }
    line("UMask=0077");
    line(&format!("# LimitNOFILE: {nofile_why}."));
    line(&format!("LimitNOFILE={nofile}"));
    line("# Sandbox: the state directory is the only place the gateway writes.");
    line("NoNewPrivileges=yes");
    line("ProtectSystem=strict");
    line("ProtectHome=read-only");
    line(&format!("ReadWritePaths={}", path_arg(&spec.state_dir)));
    line("PrivateTmp=yes");
    line("RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6");
    line("MemoryDenyWriteExecute=yes");
    line("LockPersonality=yes");
    line("RestrictNamespaces=yes");
    line("RestrictRealtime=yes");
    line("SystemCallArchitectures=native");
    line("ProtectKernelTunables=yes");
    line("ProtectKernelModules=yes");
    line("ProtectControlGroups=yes");
    line("");
    line("[Install]");
    line(match spec.scope {
        Scope::User => "WantedBy=default.target",
        Scope::System => "WantedBy=multi-user.target",
    });
    u
}

/// A failure the user fixes: one `error:` line and the fix, exit 1.
fn refuse(message: &str, fix: &str) -> anyhow::Result<u8> {
    crate::say_err!("error: {message}");
    if !fix.is_empty() {
        crate::say_err!("{fix}");
    }
    Ok(1)
}

/// An absolute, normalised path (without resolving symlinks of paths that
/// may not exist yet).
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

/// Paths the sandboxed service cannot use: its /tmp is private.
fn hidden_by_private_tmp(path: &Path) -> bool {
    path.starts_with("/tmp") || path.starts_with("/var/tmp")
}

fn check_secret_file(kind: SecretKind, path: &Path) -> Result<PathBuf, String> {
    let path = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => {
            if m.permissions().mode() & 0o077 != 0 {
                crate::say_err!(
                    "warning: {} is readable by other users; restrict it with: chmod 600 {}",
                    path.display(),
                    path.display()
                );
            }
            Ok(path)
        }
        Ok(_) => Err(format!(
            "{} {} is not a regular file",
            kind.flag(),
            path.display()
        )),
        Err(e) => Err(format!("{} {}: {e}", kind.flag(), path.display())),
    }
}

pub fn install(args: InstallArgs, paths: &Paths) -> anyhow::Result<u8> {
    let scope = if args.system {
        Scope::System
    } else {
        Scope::User
    };
    if args.token.is_some() || args.password.is_some() {
        let (flag, key) = if args.token.is_some() {
            ("--token-file", "gateway.auth.token")
        } else {
            ("--password-file", "gateway.auth.password")
        };
        return refuse(
            "a secret never goes into a unit file; nothing was written",
            &format!(
                "Put it in a file only you can read and pass {flag} PATH, or keep it in the config: clawgate config set {key} <value>"
            ),
        );
    }
    let sudo_fix =
        "Run: sudo clawgate gateway install --system (or drop --system to install a user unit)";
    // Asked before anything else, so a missing `sudo` is what gets named.
    if scope == Scope::System
        && !args.dry_run
        && args.unit_dir.is_none()
        && effective_uid() != Some(0)
    {
        return refuse(
            "installing a system unit needs root; nothing was written",
            sudo_fix,
        );
    }
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context("cannot find the path of this clawgate binary")?;
    let state_dir = absolute(&paths.state_dir)?;
    let default_config = state_dir.join(config::CONFIG_FILE_NAME);
    let config_path = absolute(&paths.config)?;
    let config = (config_path != default_config).then_some(config_path.clone());

    let secret = match (&args.token_file, &args.password_file) {
        (Some(p), _) | (None, Some(p)) => {
            let kind = if args.token_file.is_some() {
                SecretKind::Token
            } else {
                SecretKind::Password
            };
            match check_secret_file(kind, p) {
                Ok(path) => SecretSource::File { kind, path },
                Err(message) => {
                    return refuse(
                        &message,
                        "Pass a file that exists and holds only the secret.",
                    );
                }
            }
        }
        (None, None) => {
            let file = match ConfigFile::load(&config_path) {
                Ok(f) => f,
                Err(err) => {
                    return refuse(
                        &err.to_string(),
                        "Fix the config file, or check it with: clawgate doctor",
                    );
                }
            };
            let in_file = ["gateway.auth.token", "gateway.auth.password"]
                .iter()
                .any(|k| file.get(k).is_some_and(|v| !v.is_null()));
            let in_env = [
                "CLAWGATE_GATEWAY_TOKEN",
                "OPENCLAW_GATEWAY_TOKEN",
                "CLAWGATE_GATEWAY_PASSWORD",
            ]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
            if !in_file && in_env {
                crate::say_err!(
                    "note: the secret in this shell's environment does not reach the service; save it to a file (chmod 600) and pass --token-file PATH, or the gateway generates a new token on its first start"
                );
            }
            SecretSource::Config
        }
    };

    let mut checked: Vec<(&str, &Path)> = vec![
        ("the clawgate binary", &exe),
        ("the state directory", &state_dir),
    ];
    if let Some(c) = &config {
        checked.push(("the config file", c));
    }
    if let (Scope::User, SecretSource::File { path, .. }) = (scope, &secret) {
        checked.push(("the secret file", path));
    }
    for (what, path) in &checked {
        if path.to_string_lossy().contains(['\n', '\r']) {
            return refuse(
                &format!("{what} has a line break in its path"),
                "Use another path.",
            );
        }
        if hidden_by_private_tmp(path) {
            return refuse(
                &format!(
                    "{what} ({}) is under /tmp, which the service does not see (PrivateTmp=yes)",
                    path.display()
                ),
                "Use a path outside /tmp and /var/tmp, e.g. --state-dir ~/.clawgate",
            );
        }
    }

    let account = match scope {
        Scope::System => match Account::lookup(args.run_as.as_deref()) {
            Ok(a) => Some(a),
            Err(err) => return refuse(&format!("{err:#}"), ""),
        },
        Scope::User => None,
    };
    let spec = UnitSpec {
        scope,
        exe,
        state_dir: state_dir.clone(),
        config,
        secret,
        account: account.clone(),
    };
    let unit = render_unit(&spec);
    if args.dry_run {
        print!("{unit}");
        return Ok(0);
    }

    let dir = match &args.unit_dir {
        Some(d) => absolute(d)?,
        None => unit_dir(scope)?,
    };
    let path = dir.join(UNIT_NAME);
    let existed = path.exists();
    if let Err(err) = write_unit(&dir, &path, &unit) {
        let fix = if scope == Scope::System {
            sudo_fix.to_string()
        } else {
            format!(
                "Make {} writable, or install a system unit with: sudo clawgate gateway install --system",
                dir.display()
            )
        };
        return refuse(
            &format!(
                "cannot write {}: {err}; nothing was written",
                path.display()
            ),
            &fix,
        );
    }
    if let Err(err) = ensure_state_dir(&state_dir, account.as_ref()) {
        let _ = std::fs::remove_file(&path);
        return refuse(
            &format!(
                "cannot create the state directory {}: {err}; the unit was not installed",
                state_dir.display()
            ),
            "Create it (mode 700) for the account the service runs as, then install again.",
        );
    }
    crate::say!(
        "{} {} ({})",
        if existed { "Updated" } else { "Wrote" },
        path.display(),
        scope.describe()
    );
    if args.no_enable {
        crate::say!(
            "Not enabled (--no-enable). Enable and start it with: systemctl{} daemon-reload && systemctl{} enable --now {UNIT_NAME}",
            user_flag(scope),
            user_flag(scope)
        );
        return Ok(0);
    }
    // A container, or a machine with another init: systemctl may be
    // installed but has no systemd to talk to (sd_booted()'s test).
    if !Path::new("/run/systemd/system").is_dir() {
        crate::say!(
            "systemd is not running here: the unit is written but not enabled. Run the gateway with: clawgate gateway run"
        );
        return Ok(0);
    }
    for step in [&["daemon-reload"][..], &["enable", UNIT_NAME][..]] {
        match systemctl(scope, step, true) {
            Ok(()) => {}
            Err(SystemctlError::Missing) => {
                crate::say!(
                    "systemctl not found (no systemd here?): the unit is written but not enabled. Run the gateway with: clawgate gateway run"
                );
                return Ok(0);
            }
            Err(SystemctlError::Failed(why)) => {
                return refuse(
                    &format!(
                        "systemctl{} {} failed: {why}",
                        user_flag(scope),
                        step.join(" ")
                    ),
                    &format!(
                        "The unit is written to {}; once systemd runs, enable it with: systemctl{} daemon-reload && systemctl{} enable --now {UNIT_NAME}",
                        path.display(),
                        user_flag(scope),
                        user_flag(scope)
                    ),
                );
            }
        }
    }
    crate::say!(
        "Enabled. Start it with: clawgate gateway start{}",
        scope.flag()
    );
    match scope {
        Scope::User => crate::say!(
            "Logs: journalctl --user -u clawgate. To keep it running while you are logged out: loginctl enable-linger"
        ),
        Scope::System => crate::say!("Logs: journalctl -u clawgate"),
    }
    Ok(0)
}

fn user_flag(scope: Scope) -> &'static str {
    match scope {
        Scope::User => " --user",
        Scope::System => "",
    }
}

/// Writes the unit through a temporary file in the same directory, so a
/// failed write leaves whatever was there before.
fn write_unit(dir: &Path, path: &Path, unit: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{UNIT_NAME}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        // Explicit: the umask must not decide whether systemd can read it.
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.write_all(unit.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The state directory must exist for `ReadWritePaths=`; a new one is
/// private to the account the service runs as.
fn ensure_state_dir(dir: &Path, account: Option<&Account>) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    if let Some(a) = account {
        std::os::unix::fs::chown(dir, Some(a.uid), Some(a.gid))?;
    }
    Ok(())
}

#[derive(Debug)]
enum SystemctlError {
    Missing,
    Failed(String),
}

/// Runs `systemctl [--user] ARGS`, echoing the command when `echo`.
fn systemctl(scope: Scope, args: &[&str], echo: bool) -> Result<(), SystemctlError> {
    if echo {
        crate::say!("$ systemctl{} {}", user_flag(scope), args.join(" "));
    }
    let out = Command::new("systemctl")
        .args(scope.systemctl_args())
        .args(args)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SystemctlError::Missing,
            _ => SystemctlError::Failed(e.to_string()),
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why = stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no reason given")
        .to_string();
    Err(SystemctlError::Failed(why))
}

/// One word from `systemctl [--user] QUERY clawgate.service` (`active`,
/// `enabled`, ...), or why there is none.
fn systemctl_query(scope: Scope, query: &str) -> Result<String, SystemctlError> {
    let out = Command::new("systemctl")
        .args(scope.systemctl_args())
        .args([query, UNIT_NAME])
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SystemctlError::Missing,
            _ => SystemctlError::Failed(e.to_string()),
        })?;
    // These queries exit non-zero for "inactive" and "disabled" too: the
    // word on stdout is the answer, stderr says why there is none.
    let word = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !word.is_empty() && !word.contains(char::is_whitespace) {
        return Ok(word);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(SystemctlError::Failed(
        stderr
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no answer")
            .to_string(),
    ))
}

/// The installed unit: `--system` picks the system one; otherwise the user
/// unit if there is one, else the system unit if there is one.
fn find_unit(args: &ServiceArgs) -> anyhow::Result<Option<(Scope, PathBuf)>> {
    let scopes: &[Scope] = if args.system {
        &[Scope::System]
    } else {
        &[Scope::User, Scope::System]
    };
    for &scope in scopes {
        let dir = match &args.unit_dir {
            Some(d) => d.clone(),
            None => match unit_dir(scope) {
                Ok(d) => d,
                Err(_) if scope == Scope::User => continue,
                Err(e) => return Err(e),
            },
        };
        let path = dir.join(UNIT_NAME);
        if path.is_file() {
            return Ok(Some((scope, path)));
        }
    }
    Ok(None)
}

fn not_installed(system: bool) -> anyhow::Result<u8> {
    refuse(
        &format!("{UNIT_NAME} is not installed"),
        &format!(
            "Install it with: clawgate gateway install{}",
            if system { " --system" } else { "" }
        ),
    )
}

pub fn uninstall(args: ServiceArgs) -> anyhow::Result<u8> {
    let Some((scope, path)) = find_unit(&args)? else {
        crate::say!("{UNIT_NAME} is not installed; nothing to do.");
        return Ok(0);
    };
    if scope == Scope::System && args.unit_dir.is_none() && effective_uid() != Some(0) {
        return refuse(
            "removing the system unit needs root; nothing was changed",
            "Run: sudo clawgate gateway uninstall --system",
        );
    }
    // Stop and disable first, while systemd still knows the unit.
    let systemd = match systemctl(scope, &["disable", "--now", UNIT_NAME], true) {
        Ok(()) => true,
        Err(SystemctlError::Missing) => false,
        Err(SystemctlError::Failed(why)) => {
            crate::say_err!("warning: systemctl could not stop and disable it: {why}");
            true
        }
    };
    if let Err(err) = std::fs::remove_file(&path) {
        return refuse(
            &format!("cannot remove {}: {err}", path.display()),
            if scope == Scope::System {
                "Run: sudo clawgate gateway uninstall --system"
            } else {
                ""
            },
        );
    }
    if systemd {
        let _ = systemctl(scope, &["daemon-reload"], true);
    }
    crate::say!(
        "Removed {} ({}). The state directory is kept.",
        path.display(),
        scope.describe()
    );
    Ok(0)
}

/// `start`, `stop` and `restart`: systemctl's own output and exit status.
pub fn control(verb: &str, args: ServiceArgs) -> anyhow::Result<u8> {
    let Some((scope, _)) = find_unit(&args)? else {
        return not_installed(args.system);
    };
    crate::say!("$ systemctl{} {verb} {UNIT_NAME}", user_flag(scope));
    let status = Command::new("systemctl")
        .args(scope.systemctl_args())
        .args([verb, UNIT_NAME])
        .status();
    match status {
        Ok(s) if s.success() => {
            if verb != "stop" {
                crate::say!("Check it with: clawgate gateway status");
            }
            Ok(0)
        }
        Ok(_) => refuse(
            &format!("systemctl {verb} failed"),
            &format!(
                "See why with: systemctl{} status clawgate (or journalctl{} -u clawgate)",
                user_flag(scope),
                user_flag(scope)
            ),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => refuse(
            "systemctl not found (no systemd here?)",
            "Run the gateway in the foreground with: clawgate gateway run",
        ),
        Err(e) => refuse(&format!("cannot run systemctl: {e}"), ""),
    }
}

/// The `Service` line of `clawgate gateway status`.
pub fn status_line() -> String {
    let args = ServiceArgs {
        system: false,
        unit_dir: None,
    };
    let Ok(Some((scope, path))) = find_unit(&args) else {
        return "not installed (set it up with: clawgate gateway install)".into();
    };
    let unit = format!("{} {}", scope.describe(), path.display());
    match (
        systemctl_query(scope, "is-enabled"),
        systemctl_query(scope, "is-active"),
    ) {
        (Ok(enabled), Ok(active)) => format!("installed, {enabled}, {active} ({unit})"),
        (_, Err(SystemctlError::Missing)) | (Err(SystemctlError::Missing), _) => {
            format!("installed ({unit}; systemctl not found)")
        }
        (_, Err(SystemctlError::Failed(why))) | (Err(SystemctlError::Failed(why)), _) => {
            format!("installed ({unit}; state unknown: {why})")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(scope: Scope, secret: SecretSource) -> UnitSpec {
        UnitSpec {
            scope,
            exe: "/usr/local/bin/clawgate".into(),
            state_dir: "/var/lib/claw gate".into(),
            config: None,
            secret,
            account: None,
        }
    }

    #[test]
    fn arguments_are_escaped_for_systemd() {
        assert_eq!(exec_arg("/a/b"), "/a/b");
        assert_eq!(exec_arg("/a b"), "\"/a b\"");
        assert_eq!(exec_arg("/50%/$HOME"), "/50%%/$$HOME");
        assert_eq!(exec_arg("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn a_system_unit_takes_the_secret_file_as_a_credential() {
        let unit = render_unit(&spec(
            Scope::System,
            SecretSource::File {
                kind: SecretKind::Token,
                path: "/etc/clawgate/token".into(),
            },
        ));
        assert!(unit.contains("LoadCredential=gateway-token:/etc/clawgate/token\n"));
        assert!(unit.contains(" --token-file %d/gateway-token\n"));
        assert!(unit.contains("ReadWritePaths=\"/var/lib/claw gate\"\n"));
        assert!(unit.contains("WantedBy=multi-user.target"));
    }

    #[test]
    fn a_user_unit_names_the_secret_file() {
        let unit = render_unit(&spec(
            Scope::User,
            SecretSource::File {
                kind: SecretKind::Password,
                path: "/home/a/pw".into(),
            },
        ));
        assert!(!unit.contains("LoadCredential"));
        assert!(unit.contains(" --password-file /home/a/pw\n"));
        assert!(unit.contains("WantedBy=default.target"));
    }

    #[test]
    fn the_open_file_limit_covers_the_slot_caps_with_room_for_sessions() {
        let (limit, why) = nofile_limit();
        assert!(limit >= 2 * MAX_UNAUTH_TOTAL as u64 + 2 * SESSION_BUDGET + FD_OVERHEAD);
        assert!(limit.is_power_of_two());
        assert!(why.ends_with(&limit.to_string()));
    }
}
