//! `clawgate upstream ...`: fronting mode's one-time setup. `pair` pairs
//! clawgate's own upstream device identity (`<state-dir>/upstream/`) with
//! the OpenClaw gateway it fronts, with all five operator scopes; `status`
//! says whether that identity and its device token still work.
//!
//! The upstream's shared secret is only needed to pair: it is read from a
//! flag, a file or the environment, sent to the upstream once, and never
//! printed, logged or stored by clawgate (only the device token the
//! upstream hands out is kept, in `<state-dir>/upstream/device-tokens.json`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use clawgate_client::{
    Client, ClientError, ConnectOptions, DeviceIdentity, Endpoint, FileTokenCache, Fingerprint,
    TlsPin, TokenCache,
};
use clawgate_gateway::config::{self, ConfigFile, EnvOverrides, RunOverrides};
use clawgate_gateway::upstream::{self as up, SCOPES};
use clawgate_protocol::{PROTOCOL_VERSION, Secret, catalogue};
use serde_json::{Value, json};

use crate::Paths;
use crate::net::{self, Failure};

/// The config command that sets the upstream.
const SET_URL: &str = "clawgate config set gateway.upstream.url ws://127.0.0.1:18790";

/// Exit code of `upstream pair` when the upstream waits for an approval.
const EXIT_PAIRING_REQUIRED: u8 = 2;

/// How often `upstream pair --wait` asks again.
const WAIT_STEP: Duration = Duration::from_secs(2);

#[derive(Debug, Subcommand)]
pub enum UpstreamCommand {
    /// Pair clawgate's upstream identity with the OpenClaw gateway it fronts
    /// (once, with the upstream's shared token or password).
    Pair(PairArgs),
    /// Whether the upstream answers and clawgate's identity is paired with it
    /// (exit 0 only when reachable and paired with all five operator scopes).
    Status(UpstreamTarget),
}

/// Which upstream, and how to print.
#[derive(Debug, Clone, Args)]
pub struct UpstreamTarget {
    /// The upstream OpenClaw gateway (default: gateway.upstream.url from the config).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Pin the upstream's wss:// certificate to this SHA-256 (default:
    /// gateway.upstream.tlsFingerprint when the URL is the configured one).
    #[arg(long, value_name = "SHA256")]
    tls_fingerprint: Option<String>,
    /// Timeout in milliseconds for each connect.
    #[arg(long, default_value_t = 10_000)]
    timeout: u64,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct PairArgs {
    #[command(flatten)]
    target: UpstreamTarget,
    /// The upstream's shared gateway token (prefer --token-file or
    /// CLAWGATE_UPSTREAM_TOKEN: flags show up in `ps`). Used once, never stored.
    #[arg(long, value_name = "TOKEN", group = "secret")]
    token: Option<String>,
    /// Read the upstream's shared token from a file.
    #[arg(long, value_name = "PATH", group = "secret")]
    token_file: Option<PathBuf>,
    /// The upstream's shared password (or CLAWGATE_UPSTREAM_PASSWORD).
    #[arg(long, value_name = "PASSWORD", group = "secret")]
    password: Option<String>,
    /// Read the upstream's shared password from a file.
    #[arg(long, value_name = "PATH", group = "secret")]
    password_file: Option<PathBuf>,
    /// When the upstream asks for approval, keep asking every 2 s for up to
    /// SECS seconds (approve on the upstream host meanwhile).
    #[arg(long, value_name = "SECS")]
    wait: Option<u64>,
}

pub fn run(command: UpstreamCommand, paths: &Paths) -> anyhow::Result<u8> {
    match command {
        UpstreamCommand::Pair(args) => {
            let json_out = args.target.json;
            net::finish(net::runtime().block_on(pair(args, paths)), json_out)
        }
        UpstreamCommand::Status(target) => {
            let json_out = target.json;
            net::finish(net::runtime().block_on(status(target, paths)), json_out)
        }
    }
}

/// The upstream to talk to: its URL (normalised), certificate pin and
/// clawgate's identity directory for it.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub url: String,
    pub endpoint: Endpoint,
    pub fingerprint: Option<Fingerprint>,
    pub dir: PathBuf,
    pub timeout: Duration,
}

impl Upstream {
    fn resolve(target: &UpstreamTarget, paths: &Paths) -> Result<Upstream, Failure> {
        let configured = configured_upstream(paths)?;
        let (url, mut fingerprint) = match (&target.url, &configured) {
            (Some(url), _) => {
                let ep = Endpoint::parse(url).map_err(|e| {
                    Failure::plain(
                        format!("bad upstream URL {url}: {e}"),
                        "Pass the OpenClaw gateway's URL, such as --url ws://127.0.0.1:18790",
                    )
                })?;
                let url = ep.url();
                let pin = configured
                    .as_ref()
                    .filter(|c| c.url == url)
                    .and_then(|c| c.tls_fingerprint)
                    .map(Fingerprint);
                (url, pin)
            }
            (None, Some(c)) => (c.url.clone(), c.tls_fingerprint.map(Fingerprint)),
            (None, None) => {
                return Err(Failure::plain(
                    "no upstream configured: clawgate does not know which OpenClaw gateway it fronts",
                    format!("Set it with: {SET_URL} (or pass --url)"),
                ));
            }
        };
        if let Some(fp) = &target.tls_fingerprint {
            fingerprint = Some(Fingerprint::parse(fp).map_err(|e| {
                Failure::plain(e, "Pass --tls-fingerprint <64 hex digits> (colons allowed)")
            })?);
        }
        Upstream::new(
            url,
            fingerprint,
            paths,
            Duration::from_millis(target.timeout),
        )
    }

    /// The upstream at `url` (already normalised).
    pub fn new(
        url: String,
        fingerprint: Option<Fingerprint>,
        paths: &Paths,
        timeout: Duration,
    ) -> Result<Upstream, Failure> {
        let endpoint = Endpoint::parse(&url).map_err(|e| {
            Failure::plain(
                format!("bad upstream URL {url}: {e}"),
                format!("Fix it with: {SET_URL}"),
            )
        })?;
        if fingerprint.is_some() && !endpoint.is_tls() {
            return Err(Failure::plain(
                format!("a TLS fingerprint pins a wss:// upstream, but {url} is ws://"),
                "Drop --tls-fingerprint, or use the upstream's wss:// URL",
            ));
        }
        Ok(Upstream {
            url,
            endpoint,
            fingerprint,
            dir: up::identity_dir(&paths.state_dir),
            timeout: timeout.max(Duration::from_millis(1)),
        })
    }

    /// Options shared by every connect to the upstream.
    fn options(&self) -> ConnectOptions {
        let mut opts = ConnectOptions::new(self.url.clone());
        opts.client = up::pairing_client_info();
        opts.role = "operator".into();
        opts.tls_fingerprint = self.fingerprint.clone().map(TlsPin::Certificate);
        opts.handshake_timeout = self.timeout;
        opts.request_timeout = self.timeout;
        opts.reconnect = false;
        opts
    }

    /// A failure reaching or authenticating to the upstream, with what to
    /// check next.
    fn failure(&self, err: ClientError) -> Failure {
        let url = &self.url;
        match err {
            ClientError::Unreachable { .. } | ClientError::Timeout(_) => Failure::plain(
                format!("the upstream OpenClaw gateway is not reachable: {err}"),
                format!(
                    "Check that the upstream gateway runs (on its host: openclaw gateway status) and listens at {url}; fix the URL with: {SET_URL}"
                ),
            ),
            ClientError::Tls(_) | ClientError::TlsPinMismatch(_) => Failure::plain(
                format!("TLS to the upstream failed: {err}"),
                "Check the upstream certificate's SHA-256: pass it with --tls-fingerprint or set it with: clawgate config set gateway.upstream.tlsFingerprint <sha256>",
            ),
            ClientError::Rejected { .. } => Failure::plain(
                format!("the upstream refused the connection: {err}"),
                format!(
                    "Check that {url} is the OpenClaw gateway's WebSocket URL and that it accepts connections from this host"
                ),
            ),
            ClientError::Gateway(e) => {
                let code = e.detail_code().unwrap_or(&e.code).to_string();
                let next = match code.as_str() {
                    "AUTH_TOKEN_MISMATCH" | "AUTH_TOKEN_MISSING" | "AUTH_PASSWORD_MISMATCH"
                    | "AUTH_PASSWORD_MISSING" | "AUTH_UNAUTHORIZED" => {
                        "Pass the upstream gateway's own shared secret (its gateway.auth.token, not clawgate's): --token-file <path> or CLAWGATE_UPSTREAM_TOKEN (--password-file or CLAWGATE_UPSTREAM_PASSWORD in password mode)".to_string()
                    }
                    "AUTH_RATE_LIMITED" => format!(
                        "The upstream is rate-limiting failed attempts; retry in {} s with the right secret",
                        e.retry_after_ms.unwrap_or(60_000).div_ceil(1000)
                    ),
                    "AUTH_DEVICE_TOKEN_MISMATCH" | "NOT_PAIRED" | "PAIRING_REQUIRED" => {
                        "Pair clawgate with the upstream: clawgate upstream pair --token-file <path>".to_string()
                    }
                    _ => match catalogue::entry(&code) {
                        Some(_) => format!("See what it means: clawgate explain {code}"),
                        None => "Check the upstream gateway's logs on its host".to_string(),
                    },
                };
                Failure {
                    code: Some(code),
                    message: format!("the upstream refused: {}", e.message),
                    details: e.details.clone(),
                    retry_after_ms: e.retry_after_ms,
                    next,
                }
            }
            ClientError::Storage(_) => Failure::plain(
                format!("clawgate's upstream identity: {err}"),
                format!(
                    "Fix or move aside the files in {} (the identity then needs pairing again: clawgate upstream pair)",
                    self.dir.display()
                ),
            ),
            other => Failure::plain(
                format!("upstream {url}: {other}"),
                "Retry; if it keeps failing, run: clawgate doctor",
            ),
        }
    }
}

/// `gateway.upstream` from the config file, if set. Only that section is
/// validated (with the gateway's own rules): pairing the upstream must not
/// wait for the rest of the front door's config (its token, say) to exist.
pub fn configured_upstream(paths: &Paths) -> Result<Option<config::UpstreamConfig>, Failure> {
    let file = crate::net::load_config_file(paths)?;
    let Some(section) = file.get("gateway.upstream") else {
        return Ok(None);
    };
    let only_upstream = json!({"gateway": {"auth": {"mode": "none"}, "upstream": section}});
    let file = ConfigFile::from_text(&paths.config, &only_upstream.to_string())
        .map_err(|e| Failure::plain(e.to_string(), format!("Fix it with: {SET_URL}")))?;
    config::resolve(
        &file,
        &paths.state_dir,
        &RunOverrides::default(),
        &EnvOverrides::default(),
    )
    .map(|cfg| cfg.upstream)
    .map_err(|e| {
        let key = e.key().unwrap_or("gateway.upstream.url").to_string();
        Failure::plain(
            format!("cannot use the config: {e}"),
            format!("Check it with: clawgate config get {key} (or pass --url)"),
        )
    })
}

/// What a device-token connect to the upstream found.
#[derive(Debug, Default)]
pub struct Probe {
    /// The upstream answered (a WebSocket handshake completed).
    pub reachable: bool,
    /// clawgate's upstream device id, when it has an identity.
    pub device_id: Option<String>,
    /// A device token for this upstream is stored.
    pub has_token: bool,
    /// The upstream accepted the device token.
    pub paired: bool,
    /// `hello-ok.server.version`.
    pub version: Option<String>,
    /// `hello-ok.protocol`.
    pub protocol: Option<u32>,
    /// `hello-ok.auth.scopes`.
    pub scopes: Vec<String>,
    /// Why it is not reachable or not paired.
    pub problem: Option<Failure>,
}

impl Probe {
    pub fn missing_scopes(&self) -> Vec<&'static str> {
        SCOPES
            .iter()
            .copied()
            .filter(|s| !self.scopes.iter().any(|g| g == s))
            .collect()
    }

    pub fn fully_paired(&self) -> bool {
        self.paired && self.missing_scopes().is_empty()
    }

    fn json(&self, url: &str) -> Value {
        json!({
            "ok": self.reachable && self.fully_paired(),
            "url": url,
            "reachable": self.reachable,
            "version": self.version,
            "protocol": self.protocol,
            "protocolCompatible": self.protocol.map(|p| p == PROTOCOL_VERSION),
            "identity": self.device_id.is_some(),
            "deviceId": self.device_id,
            "deviceToken": self.has_token,
            "paired": self.paired,
            "scopes": self.scopes,
            "missingScopes": self.missing_scopes(),
        })
    }
}

/// Connects to the upstream with clawgate's stored device token only (no
/// shared secret), asking for the scopes the token was issued for (all
/// five once paired): read-only, it never changes what is stored.
pub async fn probe(upstream: &Upstream) -> Probe {
    let mut probe = Probe::default();
    let identity = match DeviceIdentity::load(&upstream.dir) {
        Ok(id) => id,
        Err(e) => {
            probe.problem = Some(upstream.failure(ClientError::from(e)));
            return probe;
        }
    };
    probe.device_id = identity.as_ref().map(|id| id.device_id().to_string());
    let cached = match &identity {
        Some(id) => up::token_key(&upstream.url, id)
            .and_then(|key| FileTokenCache::new(&upstream.dir).load(&key).transpose())
            .transpose(),
        None => Ok(None),
    };
    let cached = match cached {
        Ok(c) => c,
        Err(e) => {
            probe.problem = Some(upstream.failure(ClientError::from(e)));
            return probe;
        }
    };
    let (Some(identity), Some(cached)) = (identity, cached) else {
        // Nothing to authenticate with: a credential-less connect only
        // tells whether the upstream answers (refusing it costs the
        // upstream nothing and counts against no rate limit).
        match Client::connect(upstream.options()).await {
            Ok(c) => {
                probe.reachable = true;
                c.close().await;
            }
            Err(ClientError::Gateway(_)) => probe.reachable = true,
            Err(e) => probe.problem = Some(upstream.failure(e)),
        }
        if probe.reachable {
            let why = if probe.device_id.is_none() {
                format!(
                    "clawgate has no upstream identity yet (in {})",
                    upstream.dir.display()
                )
            } else {
                format!(
                    "clawgate's upstream identity has no device token for {}",
                    upstream.endpoint.origin()
                )
            };
            probe.problem = Some(Failure::plain(
                why,
                "Pair it once with the upstream's shared token: clawgate upstream pair --token-file <path> (or CLAWGATE_UPSTREAM_TOKEN)",
            ));
        }
        return probe;
    };
    probe.has_token = true;
    let mut opts = upstream.options();
    let asked: Vec<String> = if !cached.scopes.is_empty()
        && cached.scopes.iter().all(|s| SCOPES.contains(&s.as_str()))
    {
        cached.scopes.clone()
    } else {
        SCOPES.iter().map(|s| s.to_string()).collect()
    };
    opts.scopes = Some(asked);
    opts.device_token = Some(Secret::new(cached.token.expose()));
    opts.identity = Some(identity);
    match Client::connect(opts).await {
        Ok(client) => {
            probe.reachable = true;
            probe.paired = true;
            if let Some(hello) = client.hello_ok() {
                probe.version = Some(hello.server.version.clone());
                probe.protocol = Some(hello.protocol);
                probe.scopes = hello.auth.scopes.clone();
            }
            client.close().await;
            let missing = probe.missing_scopes();
            if !missing.is_empty() {
                probe.problem = Some(scopes_failure(
                    &missing,
                    probe.device_id.as_deref().unwrap_or("<deviceId>"),
                ));
            }
        }
        Err(e) => {
            probe.reachable = matches!(e, ClientError::Gateway(_));
            probe.problem = Some(match e.detail_code() {
                Some("AUTH_DEVICE_TOKEN_MISMATCH") | Some("PAIRING_REQUIRED") => Failure {
                    code: e.detail_code().map(str::to_owned),
                    message: format!(
                        "the upstream no longer accepts clawgate's device token ({})",
                        e.gateway_error().map(|g| g.message.as_str()).unwrap_or("")
                    ),
                    details: None,
                    retry_after_ms: None,
                    next: "Pair again with the upstream's shared token: clawgate upstream pair --token-file <path> (or CLAWGATE_UPSTREAM_TOKEN)".into(),
                },
                _ => upstream.failure(e),
            });
        }
    }
    probe
}

/// The upstream granted fewer than the five operator scopes.
fn scopes_failure(missing: &[&str], device_id: &str) -> Failure {
    Failure::plain(
        format!(
            "the upstream granted clawgate's identity only part of the operator scopes (missing: {}); fronted clients asking for them would be refused",
            missing.join(", ")
        ),
        format!(
            "On the upstream host remove the device (openclaw devices remove {device_id}), then run clawgate upstream pair again and approve its request with all five operator scopes"
        ),
    )
}

async fn status(target: UpstreamTarget, paths: &Paths) -> Result<u8, Failure> {
    let upstream = Upstream::resolve(&target, paths)?;
    let probe = probe(&upstream).await;
    let ok = probe.reachable && probe.fully_paired();
    if target.json {
        let mut out = probe.json(&upstream.url);
        if let Some(p) = &probe.problem {
            out["error"] = json!({"code": p.code, "message": p.message, "next": p.next});
        }
        net::print_json(&out);
        return Ok(u8::from(!ok));
    }
    crate::say!("Upstream:  {}", upstream.url);
    if probe.reachable {
        match (&probe.version, probe.protocol) {
            (Some(v), Some(p)) => {
                let compat = if p == PROTOCOL_VERSION {
                    String::new()
                } else {
                    format!(" (clawgate speaks protocol {PROTOCOL_VERSION})")
                };
                crate::say!("Reachable: yes (OpenClaw {v}, protocol {p}{compat})");
            }
            _ => crate::say!("Reachable: yes"),
        }
    } else {
        crate::say!("Reachable: no");
    }
    match &probe.device_id {
        Some(id) => crate::say!("Identity:  {id} ({})", upstream.dir.display()),
        None => crate::say!("Identity:  none yet ({})", upstream.dir.display()),
    }
    let paired = if probe.fully_paired() {
        "yes"
    } else if probe.paired {
        "yes, with missing scopes"
    } else if probe.reachable {
        "no"
    } else {
        "unknown (upstream not reachable)"
    };
    crate::say!("Paired:    {paired}");
    if probe.paired {
        crate::say!("Scopes:    {}", list_text(&probe.scopes));
    }
    if let Some(p) = &probe.problem {
        match &p.code {
            Some(code) => crate::say_err!("error: {} [{code}]", p.message),
            None => crate::say_err!("error: {}", p.message),
        }
        crate::say_err!("next: {}", p.next);
    } else if ok {
        crate::say!("clawgate gateway run relays authenticated clients to this upstream.");
    }
    Ok(u8::from(!ok))
}

fn list_text(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// The upstream's shared secret for pairing: a flag, a file, then the
/// environment.
enum SharedSecret {
    Token(Secret),
    Password(Secret),
}

fn read_secret_file(path: &Path, what: &str) -> Result<Secret, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::plain(
            format!(
                "cannot read the upstream {what} from {}: {e}",
                path.display()
            ),
            format!("Check the path given with --{what}-file"),
        )
    })?;
    let value = text.trim();
    if value.is_empty() {
        return Err(Failure::plain(
            format!("{} is empty", path.display()),
            format!("Write the upstream gateway's shared {what} into it"),
        ));
    }
    Ok(Secret::new(value))
}

fn shared_secret(args: &PairArgs) -> Result<Option<SharedSecret>, Failure> {
    let non_empty = |s: &str| Some(Secret::new(s.trim())).filter(|s| !s.expose().is_empty());
    if let Some(t) = args.token.as_deref().and_then(non_empty) {
        return Ok(Some(SharedSecret::Token(t)));
    }
    if let Some(p) = &args.token_file {
        return Ok(Some(SharedSecret::Token(read_secret_file(p, "token")?)));
    }
    if let Some(p) = args.password.as_deref().and_then(non_empty) {
        return Ok(Some(SharedSecret::Password(p)));
    }
    if let Some(p) = &args.password_file {
        return Ok(Some(SharedSecret::Password(read_secret_file(
            p, "password",
        )?)));
    }
    let env = |name: &str| std::env::var(name).ok().as_deref().and_then(non_empty);
    if let Some(t) = env("CLAWGATE_UPSTREAM_TOKEN") {
        return Ok(Some(SharedSecret::Token(t)));
    }
    if let Some(p) = env("CLAWGATE_UPSTREAM_PASSWORD") {
        return Ok(Some(SharedSecret::Password(p)));
    }
    Ok(None)
}

/// Prints the success of `pair` (or that it was already done).
fn print_paired(upstream: &Upstream, probe: &Probe, already: bool, json_out: bool) {
    let device_id = probe.device_id.as_deref().unwrap_or_default();
    if json_out {
        let mut out = probe.json(&upstream.url);
        out["alreadyPaired"] = json!(already);
        net::print_json(&out);
        return;
    }
    if already {
        crate::say!(
            "clawgate is already paired with the upstream {}; its device token works.",
            upstream.url
        );
    } else {
        crate::say!("Paired clawgate with the upstream {}.", upstream.url);
    }
    crate::say!("  Device:   {device_id}");
    if let Some(v) = &probe.version {
        crate::say!("  Upstream: OpenClaw {v}");
    }
    crate::say!("  Scopes:   {}", list_text(&probe.scopes));
    crate::say!(
        "clawgate gateway run will now use this device token (stored in {}) for the upstream.",
        upstream.dir.display()
    );
}

async fn pair(args: PairArgs, paths: &Paths) -> Result<u8, Failure> {
    let json_out = args.target.json;
    let upstream = Upstream::resolve(&args.target, paths)?;

    // Already paired, and the token works: nothing to do (no secret needed).
    let existing = probe(&upstream).await;
    if !existing.reachable
        && let Some(problem) = existing.problem
    {
        return Err(problem);
    }
    if existing.fully_paired() {
        print_paired(&upstream, &existing, true, json_out);
        return Ok(0);
    }

    let Some(secret) = shared_secret(&args)? else {
        return Err(Failure::plain(
            "pairing needs the upstream gateway's shared token or password (used once, never stored)",
            "Pass it with --token-file <path> or CLAWGATE_UPSTREAM_TOKEN=... clawgate upstream pair (--password-file / CLAWGATE_UPSTREAM_PASSWORD in password mode); it is the upstream's gateway.auth.token, on its host",
        ));
    };
    let identity = DeviceIdentity::load_or_create(&upstream.dir).map_err(|e| {
        Failure::plain(
            format!("cannot create clawgate's upstream identity: {e}"),
            format!("Fix or move aside {}", upstream.dir.display()),
        )
    })?;
    let device_id = identity.device_id().to_string();
    let mut opts = upstream.options();
    match secret {
        SharedSecret::Token(t) => opts.token = Some(t),
        SharedSecret::Password(p) => opts.password = Some(p),
    }
    opts.scopes = Some(SCOPES.iter().map(|s| s.to_string()).collect());
    opts.identity = Some(identity);
    opts.token_cache = Some(Arc::new(FileTokenCache::new(&upstream.dir)) as Arc<dyn TokenCache>);

    let started = Instant::now();
    let limit = Duration::from_secs(args.wait.unwrap_or(0));
    let mut announced: Option<String> = None;
    loop {
        match Client::connect(opts.clone()).await {
            Ok(client) => {
                client.close().await;
                break;
            }
            Err(e) if e.detail_code() == Some("PAIRING_REQUIRED") => {
                let details = e.gateway_error().and_then(|g| g.details.clone());
                let rid = details
                    .as_deref()
                    .and_then(|d| d.get("requestId"))
                    .and_then(Value::as_str)
                    .unwrap_or("<requestId>")
                    .to_string();
                let command = format!("openclaw devices approve {rid}");
                if announced.as_deref() != Some(rid.as_str()) {
                    announce_pairing(&upstream, &device_id, &rid, &command, args.wait, json_out);
                    announced = Some(rid.clone());
                }
                if started.elapsed() + WAIT_STEP > limit {
                    if args.wait.is_some() {
                        let f = Failure {
                            code: Some("PAIRING_REQUIRED".into()),
                            message: format!(
                                "the upstream did not approve request {rid} within {} s",
                                limit.as_secs()
                            ),
                            details: details.clone(),
                            retry_after_ms: None,
                            next: format!(
                                "On the upstream host run: {command}; then run clawgate upstream pair again"
                            ),
                        };
                        f.print(json_out);
                    } else if json_out {
                        net::print_json(&json!({
                            "ok": false,
                            "pairingRequired": true,
                            "url": upstream.url,
                            "deviceId": device_id,
                            "requestId": rid,
                            "approveCommand": command,
                        }));
                    }
                    return Ok(EXIT_PAIRING_REQUIRED);
                }
                tokio::time::sleep(WAIT_STEP).await;
            }
            Err(e) => return Err(upstream.failure(e)),
        }
    }

    // The device token is in the cache now: check it the way the gateway
    // will use it (device token only, every scope).
    if let Err(e) = up::load_credentials(&upstream.dir, &upstream.url) {
        return Err(Failure::plain(
            format!("the upstream accepted clawgate but handed out no device token: {e}"),
            "Check that the upstream is an OpenClaw gateway (clawgate upstream status), then run clawgate upstream pair again",
        ));
    }
    let paired = probe(&upstream).await;
    if !paired.fully_paired() {
        return Err(paired.problem.unwrap_or_else(|| {
            Failure::plain(
                "the upstream refused the new device token",
                "Run clawgate upstream status, then clawgate upstream pair again",
            )
        }));
    }
    print_paired(&upstream, &paired, false, json_out);
    Ok(0)
}

/// The upstream waits for an approval: say where and how.
fn announce_pairing(
    upstream: &Upstream,
    device_id: &str,
    rid: &str,
    command: &str,
    wait: Option<u64>,
    json_out: bool,
) {
    if json_out {
        if wait.is_some() {
            crate::say_err!(
                "{}",
                json!({"pairingRequired": true, "requestId": rid, "deviceId": device_id, "approveCommand": command})
            );
        }
        return;
    }
    crate::say_err!(
        "The upstream {} asks for approval of clawgate's identity {device_id} (pairing request {rid}).",
        upstream.url
    );
    crate::say_err!("On the upstream host run: {command}");
    match wait {
        Some(secs) => crate::say_err!("Waiting up to {secs} s for the approval…"),
        None => crate::say_err!(
            "Then run clawgate upstream pair again (or pass --wait 120 to wait for the approval)."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fully_paired_needs_every_operator_scope() {
        let mut p = Probe {
            paired: true,
            scopes: SCOPES.iter().rev().map(|s| s.to_string()).collect(),
            ..Probe::default()
        };
        assert!(p.fully_paired() && p.missing_scopes().is_empty());
        p.scopes.retain(|s| s != "operator.admin");
        assert!(!p.fully_paired());
        assert_eq!(p.missing_scopes(), vec!["operator.admin"]);
        p.scopes = SCOPES.iter().map(|s| s.to_string()).collect();
        p.paired = false;
        assert!(!p.fully_paired());
    }

    #[test]
    fn a_fingerprint_needs_a_wss_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            state_dir: dir.path().to_path_buf(),
            config: dir.path().join("clawgate.json"),
        };
        let fp = Fingerprint([7; 32]);
        let f = Upstream::new(
            "ws://127.0.0.1:18790/".into(),
            Some(fp.clone()),
            &paths,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(f.message.contains("wss://"), "{}", f.message);
        let u = Upstream::new(
            "wss://127.0.0.1:18790/".into(),
            Some(fp),
            &paths,
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(u.dir, dir.path().join("upstream"));
    }

    #[test]
    fn the_configured_url_is_used_and_a_missing_one_names_the_config_command() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            state_dir: dir.path().to_path_buf(),
            config: dir.path().join("clawgate.json"),
        };
        let target = UpstreamTarget {
            url: None,
            tls_fingerprint: None,
            timeout: 1000,
            json: false,
        };
        let f = Upstream::resolve(&target, &paths).unwrap_err();
        assert!(f.next.contains(SET_URL), "{}", f.next);
        std::fs::write(
            &paths.config,
            r#"{"gateway": {"upstream": {"url": "ws://127.0.0.1:18790"}}}"#,
        )
        .unwrap();
        let u = Upstream::resolve(&target, &paths).unwrap();
        assert_eq!(u.url, "ws://127.0.0.1:18790/");
        assert!(u.fingerprint.is_none());
        std::fs::write(
            &paths.config,
            r#"{"gateway": {"upstream": {"url": "127.0.0.1:18790"}}}"#,
        )
        .unwrap();
        let f = Upstream::resolve(&target, &paths).unwrap_err();
        assert!(f.message.contains("ws://127.0.0.1:18790"), "{}", f.message);
    }
}
