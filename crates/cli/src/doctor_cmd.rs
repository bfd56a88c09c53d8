//! `clawgate doctor`: checks the local setup end to end and prints each
//! problem with the exact command that fixes it. It never prints a secret.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use clawgate_client::{
    Client, ClientError, ConnectOptions, DeviceIdentity, Endpoint, FileTokenCache,
};
use clawgate_gateway::config::{self, AuthMode, ConfigFile, EnvOverrides, RunOverrides};
use clawgate_protocol::{Secret, catalogue, scopes};
use serde_json::{Value, json};

use crate::Paths;
use crate::net::{self, Failure, Target};
use crate::upstream_cmd::{self, Upstream};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Generate a new gateway token and save it in the config (never printed).
    #[arg(long)]
    generate_gateway_token: bool,
    /// Check this PostgreSQL store (postgres://USER@HOST:5432/DB) instead
    /// of the configured one (CLAWGATE_STORE_URL, then gateway.store.url;
    /// none: the SQLite file in the state directory). The password from
    /// CLAWGATE_STORE_PASSWORD_FILE, gateway.store.passwordFile or ~/.pgpass.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug)]
struct Check {
    name: &'static str,
    ok: bool,
    /// Warnings are problems that do not make the setup fail.
    warn: bool,
    detail: String,
    fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: true,
            warn: false,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            ok: false,
            warn: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            warn: true,
            ..Check::fail(name, detail, fix)
        }
    }
}

struct Progress {
    on: bool,
}

impl Progress {
    fn step(&self, what: &str) {
        if self.on {
            eprint!("\r\x1b[2K… {what}");
            let _ = std::io::stderr().flush();
        }
    }

    fn done(&self) {
        if self.on {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}

pub fn run(args: DoctorArgs, paths: &Paths) -> anyhow::Result<u8> {
    if args.generate_gateway_token {
        return Ok(generate_token(paths));
    }
    let json_out = args.target.json;
    let progress = Progress {
        on: !json_out && std::io::stderr().is_terminal(),
    };
    let checks = net::runtime().block_on(async {
        let mut checks = diagnose(&args.target, args.store.as_deref(), paths, &progress).await;
        // Fronting mode: the upstream clawgate relays to.
        if args.target.url.is_none()
            && let Ok(Some(upstream)) = upstream_cmd::configured_upstream(paths)
        {
            progress.step("checking the upstream gateway");
            checks.extend(upstream_checks(upstream, paths).await);
        }
        checks
    });
    progress.done();
    let failed = checks.iter().any(|c| !c.ok && !c.warn);
    if json_out {
        let list: Vec<Value> = checks
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "ok": c.ok,
                    "severity": if c.ok { "ok" } else if c.warn { "warning" } else { "error" },
                    "detail": c.detail,
                    "fix": c.fix,
                })
            })
            .collect();
        net::print_json(&json!({"ok": !failed, "checks": list}));
    } else {
        for c in &checks {
            let mark = if c.ok {
                "ok  "
            } else if c.warn {
                "warn"
            } else {
                "FAIL"
            };
            crate::say!("[{mark}] {}: {}", c.name, c.detail);
            if let Some(fix) = &c.fix {
                crate::say!("       fix: {fix}");
            }
        }
        if failed {
            crate::say!("Some checks failed; run the fix commands above, then: clawgate doctor");
        } else {
            crate::say!("All checks passed.");
        }
    }
    Ok(u8::from(failed))
}

fn generate_token(paths: &Paths) -> u8 {
    let mut file = match ConfigFile::load(&paths.config) {
        Ok(f) => f,
        Err(e) => {
            crate::say_err!("error: {e}");
            crate::say_err!("next: fix {} and retry", paths.config.display());
            return 1;
        }
    };
    let token = Secret::generate();
    let saved = file
        .set("gateway.auth.mode", json!("token"))
        .and_then(|_| file.set("gateway.auth.token", json!(token.expose())))
        .and_then(|_| file.save());
    if let Err(e) = saved {
        crate::say_err!("error: {e}");
        return 1;
    }
    crate::say!(
        "Generated a new gateway token and saved it in {} (gateway.auth.token).",
        paths.config.display()
    );
    crate::say!(
        "A running gateway applies it within seconds; clients using the old token must update."
    );
    crate::say!("Show it in a terminal on this host with: clawgate gateway auth-token --show");
    0
}

async fn diagnose(
    target: &Target,
    store: Option<&str>,
    paths: &Paths,
    progress: &Progress,
) -> Vec<Check> {
    let mut checks = Vec::new();

    // 1. The config file.
    progress.step("reading the config");
    let remote = target.url.is_some();
    let cfg = if remote {
        None
    } else {
        match config_check(paths, store) {
            Ok((check, cfg)) => {
                checks.push(check);
                Some(cfg)
            }
            Err((check, store_at_fault)) => {
                checks.push(check);
                // The store named by --store can be checked without a
                // config (unless --store itself is what is wrong).
                if let Some(url) = store
                    && !store_at_fault
                {
                    progress.step("checking the store");
                    checks.push(pg_store_check(url, env_password_file().as_deref()));
                }
                return checks;
            }
        }
    };
    // The store, read-only: it opens, and every invariant holds.
    match (&cfg, store) {
        (Some(cfg), _) => {
            progress.step("checking the store");
            checks.push(match &cfg.store.url {
                Some(url) => pg_store_check(url.expose(), cfg.store.password_file.as_deref()),
                None => store_check(&cfg.state_dir.join(clawgate_store::DB_FILE_NAME)),
            });
        }
        (None, Some(url)) => {
            progress.step("checking the store");
            checks.push(pg_store_check(url, env_password_file().as_deref()));
        }
        (None, None) => {}
    }
    if let Some(cfg) = &cfg
        && cfg.auth.mode == AuthMode::Token
        && cfg.auth.token.is_none()
    {
        checks.push(Check::fail(
            "Gateway token",
            "the gateway is in token mode but no token is configured",
            "clawgate doctor --generate-gateway-token",
        ));
        return checks;
    }

    // 2. Reachable, and 3. the shared secret accepted (device-less, as the
    // gateway host's own CLI connects).
    progress.step("connecting to the gateway");
    let (mut opts, ctx) = match net::options(target, paths, &[scopes::ADMIN]) {
        Ok(x) => x,
        Err(f) => {
            checks.push(Check::fail("Gateway", f.message, f.next));
            return checks;
        }
    };
    let identity = opts.identity.take();
    let cache = opts.token_cache.take();
    opts.handshake_timeout = opts.handshake_timeout.min(Duration::from_secs(5));
    let shared = Client::connect(opts.clone()).await;
    let client = match shared {
        Ok(c) => {
            checks.push(Check::ok("Gateway", format!("reachable at {}", ctx.url)));
            let mode = if opts.password.is_some() {
                "password"
            } else if opts.token.is_some() {
                "token"
            } else {
                "none"
            };
            checks.push(Check::ok(
                "Shared secret",
                format!(
                    "the gateway accepts the {mode} {}",
                    if remote { "given" } else { "from the config" }
                ),
            ));
            Some(c)
        }
        Err(e @ (ClientError::Unreachable { .. } | ClientError::Timeout(_))) => {
            let f = Failure::from_client(e, &ctx);
            checks.push(Check::fail("Gateway", f.message, f.next));
            None
        }
        Err(e) => {
            checks.push(Check::ok("Gateway", format!("reachable at {}", ctx.url)));
            let code = e.detail_code().map(str::to_owned);
            let f = Failure::from_client(e, &ctx);
            let check = match code.as_deref() {
                Some("AUTH_TOKEN_MISMATCH") | Some("AUTH_PASSWORD_MISMATCH") if !remote => {
                    Check::fail(
                        "Shared secret",
                        format!(
                            "token drift: the running gateway does not accept the secret in {} ({}); it was started with another one (--token, --token-file or CLAWGATE_GATEWAY_TOKEN)",
                            paths.config.display(),
                            code.as_deref().unwrap_or_default()
                        ),
                        "Restart the gateway so it uses the config: stop it, then run: clawgate gateway run",
                    )
                }
                _ => Check::fail(
                    "Shared secret",
                    format!("{} [{}]", f.message, code.as_deref().unwrap_or("?")),
                    f.next,
                ),
            };
            checks.push(check);
            None
        }
    };

    // 4. This client's identity.
    progress.step("checking this client's identity");
    let dir = net::client_dir(paths);
    let identity = match identity {
        Some(id) => Some(id),
        None => match DeviceIdentity::load(&dir) {
            Ok(id) => id,
            Err(e) => {
                checks.push(Check::fail(
                    "Client identity",
                    e.to_string(),
                    format!(
                        "mv {path} {path}.bad (a new identity is created on next use; it needs approval again)",
                        path = DeviceIdentity::path_in(&dir).display(),
                    ),
                ));
                None
            }
        },
    };
    match &identity {
        Some(id) => checks.push(Check::ok(
            "Client identity",
            format!("device {} ({})", id.device_id(), dir.display()),
        )),
        None if !checks.iter().any(|c| c.name == "Client identity") => checks.push(Check::ok(
            "Client identity",
            "none yet; the CLI creates one the first time it connects to a remote --url (or with --device-identity)",
        )),
        None => {}
    }

    // 5. The cached device token for this gateway.
    let origin = Endpoint::parse(&ctx.url)
        .map(|e| e.origin())
        .unwrap_or_default();
    let cache = cache.unwrap_or_else(|| Arc::new(FileTokenCache::new(&dir)));
    if let Some(id) = &identity {
        progress.step("checking the cached device token");
        let key = clawgate_client::TokenKey {
            gateway: origin.clone(),
            device_id: id.device_id().to_string(),
            role: "operator".into(),
        };
        match cache.load(&key) {
            Err(e) => checks.push(Check::fail(
                "Device token",
                e.to_string(),
                format!(
                    "mv {path} {path}.bad",
                    path = FileTokenCache::new(&dir).path().display(),
                ),
            )),
            Ok(None) => checks.push(Check::ok(
                "Device token",
                format!("none cached for {origin}"),
            )),
            Ok(Some(cached)) => {
                let mut dev = ConnectOptions::new(ctx.url.clone());
                dev.client = opts.client.clone();
                dev.identity = Some(id.clone());
                dev.device_token = Some(Secret::new(cached.token.expose()));
                dev.scopes = Some(cached.scopes.clone());
                dev.tls_fingerprint = opts.tls_fingerprint.clone();
                dev.handshake_timeout = opts.handshake_timeout;
                dev.reconnect = false;
                match Client::connect(dev).await {
                    Ok(c) => {
                        c.close().await;
                        checks.push(Check::ok(
                            "Device token",
                            format!("the cached token for {origin} is accepted"),
                        ));
                    }
                    Err(e) if e.detail_code().is_some() => {
                        let code = e.detail_code().unwrap_or_default().to_string();
                        let fix = if code == "AUTH_DEVICE_TOKEN_MISMATCH" {
                            format!(
                                "The cached device token is stale (rotated or revoked). Reconnect with the current shared secret to get a new one: clawgate health --url {} --token <token>; or, on the gateway host: clawgate devices rotate --device {} --role operator",
                                ctx.url,
                                id.device_id()
                            )
                        } else {
                            catalogue::entry(&code)
                                .map(|entry| {
                                    catalogue::next_command(
                                        entry,
                                        e.gateway_error().and_then(|g| g.details.as_deref()),
                                    )
                                    .replace("<deviceId>", id.device_id())
                                })
                                .unwrap_or_else(|| format!("clawgate explain {code}"))
                        };
                        checks.push(Check::fail(
                            "Device token",
                            format!("the gateway refused the cached token [{code}]"),
                            fix,
                        ));
                    }
                    Err(_) => {}
                }
            }
        }
    }

    // 6. Pending requests for this device.
    if let (Some(client), Some(id)) = (&client, &identity) {
        progress.step("looking for pending pairing requests");
        if let Ok(list) = client.device_pair_list().await {
            for req in &list.pending {
                if req.device_id == id.device_id() {
                    let rid = &req.request_id;
                    checks.push(Check::warn(
                        "Pairing",
                        format!("this device has a pending request {rid}"),
                        format!("On the gateway host run: clawgate devices approve {rid}"),
                    ));
                }
            }
        }
    }
    if let Some(client) = client {
        client.close().await;
    }
    checks
}

/// Opens the gateway's database read-only (safe while the gateway runs)
/// and checks its invariants: SQLite integrity, the audit chain, no token
/// without an approved role, no approval without its audit row.
fn store_check(path: &std::path::Path) -> Check {
    if !path.exists() {
        return Check::ok(
            "Store",
            format!("no store yet at {}; the gateway creates it", path.display()),
        );
    }
    let p = path.display();
    let keep = format!(
        "Stop the gateway and restore your last good backup: clawgate restore <backup file> (it checks the backup first and keeps the current database beside it; clawgate restore --check <backup file> only checks). Without a backup, move the files aside (mv {p} {p}.damaged, the same for {p}-wal and {p}-shm) and start again: every device pairs again"
    );
    match clawgate_store::check_database(path) {
        Ok(r) if r.ok() => Check::ok(
            "Store",
            format!(
                "{p}: {} paired devices, {} valid tokens, {} pending requests; integrity ok; audit chain of {} rows verifies",
                r.devices, r.token_hashes, r.pending, r.audit.rows
            ),
        ),
        Ok(r) => Check::fail("Store", format!("{p}: {}", problems(&r)), keep),
        Err(e) => Check::fail("Store", format!("{p}: {e}"), keep),
    }
}

/// The first violations of a failed store check, and how many more.
fn problems(r: &clawgate_store::InvariantReport) -> String {
    let shown: Vec<String> = r.violations.iter().take(5).map(|v| v.to_string()).collect();
    let more = r.violations.len().saturating_sub(shown.len());
    let more = if more > 0 {
        format!(" (and {more} more; all with: clawgate doctor --json)")
    } else {
        String::new()
    };
    format!(
        "{} problems: {}{more}",
        r.violations.len(),
        shown.join("; ")
    )
}

fn env_password_file() -> Option<std::path::PathBuf> {
    std::env::var_os("CLAWGATE_STORE_PASSWORD_FILE")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
}

/// The PostgreSQL store replicas share: it answers, its schema is one this
/// clawgate reads, and on one snapshot the audit chain verifies and every
/// invariant holds. Only reads (safe while replicas run), except that
/// opening brings an older schema up to date as a starting replica would.
/// Never shows the password.
fn pg_store_check(url: &str, password_file: Option<&std::path::Path>) -> Check {
    let (_, mut secrets) = crate::store_cmd::redact_url(url);
    if let Some(text) = password_file.and_then(|f| std::fs::read_to_string(f).ok()) {
        secrets.push(text.lines().next().unwrap_or("").to_string());
    }
    let fail = |detail: String, fix: String| {
        Check::fail(
            "Store",
            crate::store_cmd::scrub(&detail, &secrets),
            crate::store_cmd::scrub(&fix, &secrets),
        )
    };
    let target = match clawgate_store::PgTarget::parse(url, password_file) {
        Ok(t) => t,
        Err(e) => {
            return fail(
                format!("the store URL is not usable: {e}"),
                "Give the store as postgres://USER@HOST:5432/DB (--store, CLAWGATE_STORE_URL or: clawgate config set gateway.store.url <url>), the password in gateway.store.passwordFile, CLAWGATE_STORE_PASSWORD_FILE or ~/.pgpass".into(),
            );
        }
    };
    let at = format!("PostgreSQL {}", target.display());
    let reach = format!(
        "Check that PostgreSQL at {} runs and accepts clawgate's user and password (gateway.store.passwordFile, CLAWGATE_STORE_PASSWORD_FILE or ~/.pgpass; test with: pg_isready -h {}), then: clawgate doctor",
        target.display(),
        target.host()
    );
    let store = match clawgate_store::Store::inspect_postgres(&target) {
        Ok(s) => s,
        Err(e @ clawgate_store::StoreError::SchemaTooNew { .. }) => {
            return fail(
                format!("{at}: {e}"),
                format!(
                    "Run the clawgate version the replicas run (this is {})",
                    clawgate_gateway::VERSION
                ),
            );
        }
        Err(e @ clawgate_store::StoreError::Invalid(_)) => {
            // An empty database or an older schema: doctor changes nothing.
            return fail(
                format!("{at}: {e}"),
                "Start a replica on it (clawgate gateway run --store <url>) or copy a registry into it (clawgate store migrate --to <url>), then: clawgate doctor".into(),
            );
        }
        Err(e) => return fail(format!("{at}: {e}"), reach),
    };
    let keep = "The shared registry is inconsistent: stop the replicas and restore the database from your PostgreSQL backup (pg_restore), or copy a sound SQLite registry into an empty database with: clawgate store migrate --to <empty database URL>".to_string();
    let version = match store.schema_version() {
        Ok(v) => v,
        Err(e) => return fail(format!("{at}: {e}"), reach),
    };
    match store.check_invariants() {
        Ok(r) if r.ok() => Check::ok(
            "Store",
            format!(
                "{at}: schema version {version}; {} paired devices, {} valid tokens, {} pending requests; audit chain of {} rows verifies; every invariant holds",
                r.devices, r.token_hashes, r.pending, r.audit.rows
            ),
        ),
        Ok(r) => fail(format!("{at}: {}", problems(&r)), keep),
        Err(e @ clawgate_store::StoreError::Unreachable { .. }) => {
            fail(format!("{at}: {e}"), reach)
        }
        Err(e) => fail(format!("{at}: {e}"), keep),
    }
}

/// The config file, resolved as `gateway run` resolves it (with `--store`
/// as its flag). The error says whether the store URL is what is wrong.
fn config_check(
    paths: &Paths,
    store: Option<&str>,
) -> Result<(Check, config::GatewayConfig), (Check, bool)> {
    let path = &paths.config;
    if !path.exists() {
        return Err((
            Check::fail(
                "Config",
                format!("no config at {}", path.display()),
                "Create it by starting the gateway once: clawgate gateway run",
            ),
            false,
        ));
    }
    let file = ConfigFile::load(path).map_err(|e| {
        (
            Check::fail(
                "Config",
                e.to_string(),
                format!(
                    "Fix the file {} (or move it aside and run: clawgate gateway run)",
                    path.display()
                ),
            ),
            false,
        )
    })?;
    let overrides = RunOverrides {
        store: store.map(Secret::new),
        ..RunOverrides::default()
    };
    let cfg = config::resolve(
        &file,
        &paths.state_dir,
        &overrides,
        &EnvOverrides::from_process_env(),
    )
    .map_err(|e| {
        let key = e.key().unwrap_or("the file").to_string();
        let store_at_fault = key.starts_with("gateway.store.")
            || key == "--store"
            || key == "CLAWGATE_STORE_URL";
        let fix = match key.as_str() {
            "--store" | "CLAWGATE_STORE_URL" => format!(
                "Give {key} as postgres://USER@HOST:5432/DB (the password in gateway.store.passwordFile, CLAWGATE_STORE_PASSWORD_FILE or ~/.pgpass)"
            ),
            _ => format!("clawgate config get {key} (then: clawgate config set {key} <value>)"),
        };
        (Check::fail("Config", e.to_string(), fix), store_at_fault)
    })?;
    Ok((
        Check::ok("Config", format!("{} is valid", path.display())),
        cfg,
    ))
}

/// Fronting mode: the upstream answers, clawgate's identity is paired with
/// all five operator scopes, the protocols match, and the upstream cannot
/// be reached around clawgate.
async fn upstream_checks(config: config::UpstreamConfig, paths: &Paths) -> Vec<Check> {
    let mut checks = Vec::new();
    let upstream = match Upstream::new(
        config.url,
        config.tls_fingerprint.map(clawgate_client::Fingerprint),
        paths,
        Duration::from_secs(5),
    ) {
        Ok(u) => u,
        Err(f) => {
            checks.push(Check::fail("Upstream", f.message, f.next));
            return checks;
        }
    };
    let url = upstream.url.clone();
    let probe = upstream_cmd::probe(&upstream).await;
    if probe.reachable {
        let version = probe
            .version
            .as_deref()
            .map(|v| format!(" (OpenClaw {v})"))
            .unwrap_or_default();
        checks.push(Check::ok(
            "Upstream",
            format!("reachable at {url}{version}"),
        ));
    } else {
        let (detail, fix) = match &probe.problem {
            Some(p) => (p.message.clone(), p.next.clone()),
            None => (
                format!("not reachable at {url}"),
                "Start the upstream OpenClaw gateway (on its host: openclaw gateway status)".into(),
            ),
        };
        checks.push(Check::fail("Upstream", detail, fix));
    }

    // Pairing: known only when the upstream answers.
    let pair_fix = "clawgate upstream pair --token-file <path> (the upstream's shared token; or CLAWGATE_UPSTREAM_TOKEN)";
    if probe.fully_paired() {
        checks.push(Check::ok(
            "Upstream pairing",
            format!(
                "identity {} is paired with all five operator scopes",
                probe.device_id.as_deref().unwrap_or_default()
            ),
        ));
    } else if probe.reachable {
        let (detail, fix) = match &probe.problem {
            Some(p) => (p.message.clone(), p.next.clone()),
            None => ("not paired".into(), pair_fix.into()),
        };
        checks.push(Check::fail("Upstream pairing", detail, fix));
    } else if probe.has_token {
        checks.push(Check::warn(
            "Upstream pairing",
            "not checked: the upstream is not reachable (a device token is stored)",
            "Once the upstream runs: clawgate upstream status",
        ));
    } else {
        checks.push(Check::fail(
            "Upstream pairing",
            format!(
                "clawgate has no upstream device token in {} yet",
                upstream.dir.display()
            ),
            pair_fix,
        ));
    }

    if let Some(p) = probe.protocol {
        if p == clawgate_protocol::PROTOCOL_VERSION {
            checks.push(Check::ok(
                "Upstream protocol",
                format!("protocol {p}, as clawgate"),
            ));
        } else {
            checks.push(Check::fail(
                "Upstream protocol",
                format!(
                    "the upstream speaks protocol {p}, clawgate {}",
                    clawgate_protocol::PROTOCOL_VERSION
                ),
                format!(
                    "Run an OpenClaw version that speaks protocol {} (clawgate {} is compatible with OpenClaw 2026.9.6)",
                    clawgate_protocol::PROTOCOL_VERSION,
                    clawgate_gateway::VERSION
                ),
            ));
        }
    }

    // A loopback upstream that is down has no side door to look for.
    if probe.reachable || !upstream.endpoint.is_loopback() {
        checks.push(side_door_check(&upstream).await);
    }
    checks
}

/// Whether clients can reach the upstream around clawgate: a non-loopback
/// upstream URL, or the upstream's port also open on this machine's
/// non-loopback address.
async fn side_door_check(upstream: &Upstream) -> Check {
    let name = "Upstream bind";
    let ep = &upstream.endpoint;
    let bind_fix = "Run the upstream on loopback only (openclaw gateway run --bind loopback), so clients can reach it only through clawgate";
    if !ep.is_loopback() {
        return Check::warn(
            name,
            format!(
                "the upstream host {} is not loopback: clients that reach it directly bypass clawgate",
                ep.host
            ),
            format!(
                "Run clawgate on the upstream's host with the upstream bound to loopback (openclaw gateway run --bind loopback), then: clawgate config set gateway.upstream.url ws://127.0.0.1:{}",
                ep.port
            ),
        );
    }
    let Some(ip) = primary_ipv4() else {
        return Check::ok(
            name,
            "the upstream is on loopback (this host has no other IPv4 address to check)",
        );
    };
    let addr = std::net::SocketAddr::from((ip, ep.port));
    let open = matches!(
        tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(addr)
        )
        .await,
        Ok(Ok(_))
    );
    if open {
        Check::warn(
            name,
            format!(
                "the upstream's port {} also accepts connections on {ip}: clients on the network can bypass clawgate (a side door)",
                ep.port
            ),
            bind_fix,
        )
    } else {
        Check::ok(
            name,
            format!(
                "the upstream's port {} is not reachable on {ip}: loopback only",
                ep.port
            ),
        )
    }
}

/// This machine's primary non-loopback IPv4 address: the source address of
/// the default route (a UDP "connect" sends nothing).
fn primary_ipv4() -> Option<std::net::Ipv4Addr> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.connect("192.0.2.1:9").ok()?;
    match sock.local_addr().ok()?.ip() {
        std::net::IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_unspecified() => Some(v4),
        _ => None,
    }
}
