//! Reaching a gateway from the CLI: the common flags, credentials, the
//! client identity, and failures printed with the next command to run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use clawgate_client::{
    Client, ClientError, ClientInfo, ConnectOptions, DeviceIdentity, Endpoint, FileTokenCache,
    TlsPin,
};
use clawgate_gateway::config::{self, AuthMode, ConfigFile, EnvOverrides, RunOverrides};
use clawgate_protocol::{Secret, catalogue, scopes};
use serde_json::{Value, json};

use crate::Paths;

/// Where and how to reach the gateway.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Gateway WebSocket URL (default: the local gateway from the config).
    /// With --url, config credentials are not used: pass --token or --password.
    #[arg(long, global = true, env = "CLAWGATE_GATEWAY_URL")]
    pub url: Option<String>,
    /// Shared gateway token (the environment variable keeps it out of `ps`).
    #[arg(
        long,
        global = true,
        env = "CLAWGATE_GATEWAY_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Shared gateway password.
    #[arg(
        long,
        global = true,
        env = "CLAWGATE_GATEWAY_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Timeout in milliseconds for connecting and for each request.
    #[arg(long, global = true, default_value_t = 10_000)]
    pub timeout: u64,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Pin the wss:// certificate: its SHA-256 (hex, colons allowed), or its
    /// public key's as sha256/<base64> (survives renewals that keep the key).
    #[arg(long, global = true, value_name = "PIN")]
    pub tls_fingerprint: Option<String>,
    /// Present this CLI's device identity (and so need pairing) even on a
    /// loopback --url with a shared secret, where it connects device-less
    /// by default, as the gateway host's operator.
    #[arg(long, global = true, env = "CLAWGATE_CLI_DEVICE_IDENTITY")]
    pub device_identity: bool,
}

/// How long a CLI connection lives: one command, or a session that
/// reconnects (`gateway watch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    OneShot,
    LongLived,
}

/// Whether a `--url` connection presents the CLI's device identity.
///
/// As the reference CLI: a one-shot command on a loopback URL (127.0.0.0/8,
/// ::1, localhost) with a shared secret connects device-less, so the
/// gateway host's operator is never asked to pair the CLI (with
/// `autoApproveLocal` off nobody else could approve it). A remote URL, a
/// loopback URL without a shared secret, a long-lived session (which keeps
/// a device token across secret changes) and `--device-identity` present
/// the identity.
pub fn presents_identity(
    endpoint: &Endpoint,
    has_shared_secret: bool,
    session: Session,
    forced: bool,
) -> bool {
    forced || session == Session::LongLived || !(endpoint.is_loopback() && has_shared_secret)
}

/// The next step after `PAIRING_REQUIRED` from a gateway reached with
/// `--url`: approval happens on that gateway's host (or its Control UI),
/// not where this CLI runs.
/// With clawgate's pairing code (`pairing_code`) the command names the code,
/// which is what both screens show.
pub fn remote_pairing_next(
    url: &str,
    request_id: Option<&str>,
    pairing_code: Option<&str>,
) -> String {
    let rid = pairing_code.or(request_id).unwrap_or("<requestId>");
    let what = if pairing_code.is_some() {
        "code"
    } else {
        "request"
    };
    format!(
        "Approve this CLI on the gateway host: run clawgate devices approve {rid} there (list requests with: clawgate devices list), or approve {what} {rid} in the Devices page of the gateway's Control UI ({url}); then run this command again."
    )
}

/// `details.pairingCode` of a `PAIRING_REQUIRED` error (clawgate gateways).
pub fn pairing_code_of(details: Option<&Value>) -> Option<&str> {
    details?.get("pairingCode")?.as_str()
}

/// The CLI's client state: `<state-dir>/client` (identity and device tokens).
pub fn client_dir(paths: &Paths) -> PathBuf {
    paths.state_dir.join("client")
}

/// A failure shown to the user: what happened and the next command.
#[derive(Debug)]
pub struct Failure {
    pub code: Option<String>,
    pub message: String,
    pub details: Option<Box<Value>>,
    pub retry_after_ms: Option<u64>,
    pub next: String,
}

impl Failure {
    pub fn plain(message: impl Into<String>, next: impl Into<String>) -> Failure {
        Failure {
            code: None,
            message: message.into(),
            details: None,
            retry_after_ms: None,
            next: next.into(),
        }
    }

    /// A client error, with the next command for this gateway and device.
    pub fn from_client(err: ClientError, ctx: &Context) -> Failure {
        match err {
            ClientError::Gateway(e) => {
                let code = e.detail_code().map(str::to_owned);
                let entry = code.as_deref().and_then(catalogue::entry);
                let mut next = match entry {
                    Some(entry) => catalogue::next_command(entry, e.details.as_deref()),
                    None => format!(
                        "See what the gateway allows: clawgate explain {}",
                        code.as_deref().unwrap_or(&e.code)
                    ),
                };
                if code.as_deref() == Some("PAIRING_REQUIRED") && !ctx.local {
                    let rid = e
                        .details
                        .as_deref()
                        .and_then(|d| d.get("requestId"))
                        .and_then(Value::as_str);
                    let code = pairing_code_of(e.details.as_deref());
                    next = remote_pairing_next(&ctx.url, rid, code);
                }
                if let Some(id) = &ctx.device_id {
                    next = next.replace("<deviceId>", id);
                }
                if let Some(after) = e.retry_after_ms {
                    next = format!("Retry in {} s. {next}", after.div_ceil(1000));
                }
                Failure {
                    code: code.or(Some(e.code.clone())),
                    message: e.message.clone(),
                    details: e.details.clone(),
                    retry_after_ms: e.retry_after_ms,
                    next,
                }
            }
            ClientError::Unreachable { .. } | ClientError::Timeout(_)
                if ctx.local || Endpoint::parse(&ctx.url).is_ok_and(|ep| ep.is_loopback()) =>
            {
                Failure::plain(
                    err.to_string(),
                    format!(
                        "Start the gateway on this host with: clawgate gateway run (or check the URL {})",
                        ctx.url
                    ),
                )
            }
            ClientError::Unreachable { .. } | ClientError::Timeout(_) => Failure::plain(
                err.to_string(),
                format!(
                    "Check that the gateway runs at {} and the URL is right (on its host: clawgate gateway status)",
                    ctx.url
                ),
            ),
            ClientError::Rejected { status: 403, .. } => Failure::plain(
                err.to_string(),
                "The gateway refused forwarded requests from this address; connect directly or add the proxy to gateway.trustedProxies: clawgate config set gateway.trustedProxies '[\"<proxy-ip>\"]'",
            ),
            ClientError::Rejected { status: 503, .. } => Failure::plain(
                err.to_string(),
                "The gateway is at its connection limit; retry in a few seconds.",
            ),
            ClientError::TlsPinMismatch(ref m) => {
                Failure::plain(err.to_string(), pin_mismatch_hint(m))
            }
            ClientError::Tls(_) => Failure::plain(
                err.to_string(),
                "Check the certificate: pass its SHA-256 with --tls-fingerprint, or fix the URL",
            ),
            ClientError::Storage(_) => Failure::plain(
                err.to_string(),
                format!(
                    "Fix or move aside the files in {} (the device will need approval again)",
                    ctx.client_dir.display()
                ),
            ),
            other => Failure::plain(
                other.to_string(),
                "Retry; if it keeps failing, run: clawgate doctor",
            ),
        }
    }

    pub fn print(&self, json_out: bool) {
        let meaning = self
            .code
            .as_deref()
            .and_then(catalogue::entry)
            .map(|e| e.meaning);
        if json_out {
            let mut error = json!({"message": self.message});
            if let Some(c) = &self.code {
                error["code"] = json!(c);
            }
            if let Some(m) = meaning {
                error["meaning"] = json!(m);
            }
            error["next"] = json!(self.next);
            if let Some(d) = &self.details {
                error["details"] = (**d).clone();
            }
            if let Some(ms) = self.retry_after_ms {
                error["retryAfterMs"] = json!(ms);
            }
            crate::say!("{}", json!({"ok": false, "error": error}));
        } else {
            match &self.code {
                Some(code) => crate::say_err!("error: {} [{code}]", self.message),
                None => crate::say_err!("error: {}", self.message),
            }
            if let Some(meaning) = meaning {
                crate::say_err!("{meaning}");
            }
            if self.code.as_deref() == Some("PAIRING_REQUIRED")
                && let Some(code) = pairing_code_of(self.details.as_deref())
            {
                crate::say_err!("Pairing code: {code}");
            }
            crate::say_err!("next: {}", self.next);
        }
    }
}

/// What to do when the server's certificate is not the pinned one: check
/// it on the gateway host, then pin what it presented (the public key
/// first: that pin survives renewals that keep the key).
fn pin_mismatch_hint(m: &clawgate_client::tls::PinMismatch) -> String {
    let check = "If this is your gateway (on its host, clawgate gateway status shows its pins)";
    let cert = m.presented.certificate.to_colon_hex();
    match &m.presented.public_key {
        Some(pk) => format!(
            "{check}, pin what it presented: --tls-fingerprint {} (public key) or --tls-fingerprint {cert} (this certificate)",
            pk.to_spki_pin()
        ),
        None => format!("{check}, pin what it presented: --tls-fingerprint {cert}"),
    }
}

/// What a failure message needs to know about the connection.
#[derive(Debug, Clone)]
pub struct Context {
    pub url: String,
    /// The local gateway from the config (not --url).
    pub local: bool,
    pub device_id: Option<String>,
    pub client_dir: PathBuf,
    /// The connect only succeeded through the one device-token retry, after
    /// the gateway refused the shared secret with this code.
    pub recovered: Option<String>,
}

/// Connection options for a one-shot command on `target`, asking for
/// `needed` scopes.
///
/// Without `--url` this is the local gateway from the config, with its
/// secret, and no device identity (as the reference CLI does on loopback:
/// the gateway host's operator needs no pairing). With `--url` config
/// credentials are not reused; the CLI presents its own device identity
/// (created on first use in `<state-dir>/client`) when `presents_identity`
/// says so, so it can be paired, holds a device token and can recover from
/// a changed shared token.
pub fn options(
    target: &Target,
    paths: &Paths,
    needed: &[&str],
) -> Result<(ConnectOptions, Context), Failure> {
    session_options(target, paths, needed, Session::OneShot)
}

/// Connection options for `target` for a session of the given kind.
pub fn session_options(
    target: &Target,
    paths: &Paths,
    needed: &[&str],
    session: Session,
) -> Result<(ConnectOptions, Context), Failure> {
    if let Some(t) = &target.token
        && clawgate_protocol::setup_code::is_setup_code(t)
    {
        return Err(setup_code_as_token());
    }
    let timeout = Duration::from_millis(target.timeout.max(1));
    let dir = client_dir(paths);
    let mut ctx = Context {
        url: String::new(),
        local: target.url.is_none(),
        device_id: None,
        client_dir: dir.clone(),
        recovered: None,
    };
    let fingerprint = match &target.tls_fingerprint {
        Some(fp) => Some(TlsPin::parse(fp).map_err(|e| {
            Failure::plain(
                e,
                "Pass --tls-fingerprint sha256/<base64> (public key) or <64 hex digits> (certificate); the gateway prints both at start and in: clawgate gateway status",
            )
        })?),
        None => None,
    };
    let opts = match &target.url {
        Some(url) => {
            let ep = Endpoint::parse(url).map_err(|e| {
                Failure::plain(e, "Pass a gateway URL such as --url ws://127.0.0.1:18789")
            })?;
            if target.token.is_none()
                && target.password.is_none()
                && let Some(opts) = paired_by_setup_code(&ep, &dir)
            {
                // Paired earlier (`clawgate pair --setup-code`): the cached
                // device token is the credential.
                ctx.device_id = opts.identity.as_ref().map(|i| i.device_id().to_string());
                return Ok(finish_options(opts, ctx, fingerprint, timeout, needed));
            }
            if target.token.is_none() && target.password.is_none() {
                return Err(Failure::plain(
                    "gateway URL override requires explicit credentials: pass --token or --password with --url, or set CLAWGATE_GATEWAY_TOKEN (config credentials are not used for other gateways)",
                    format!(
                        "Retry with the gateway's token: --url {} --token <token> (on the gateway host: clawgate gateway auth-token --show)",
                        ep.url()
                    ),
                ));
            }
            let mut opts = ConnectOptions::new(ep.url());
            opts.token = target.token.clone().map(Secret::new);
            opts.password = target.password.clone().map(Secret::new);
            let has_secret = opts.token.is_some() || opts.password.is_some();
            if !presents_identity(&ep, has_secret, session, target.device_identity) {
                return Ok(finish_options(opts, ctx, fingerprint, timeout, needed));
            }
            let identity = DeviceIdentity::load_or_create(&dir).map_err(|e| {
                Failure::plain(
                    e.to_string(),
                    format!("Fix or move aside {}", dir.display()),
                )
            })?;
            ctx.device_id = Some(identity.device_id().to_string());
            opts.identity = Some(identity);
            opts.token_cache = Some(Arc::new(FileTokenCache::new(&dir)));
            opts
        }
        None => local_options(target, paths)?,
    };
    Ok(finish_options(opts, ctx, fingerprint, timeout, needed))
}

/// `--token` holds a setup code (recognised by its format, before anything
/// is sent).
fn setup_code_as_token() -> Failure {
    Failure::plain(
        "--token holds a setup code, not the gateway token: a setup code pairs a device once and is not a login",
        "Redeem it on the device that should be paired: clawgate pair --setup-code <code> (or scan its QR code in the OpenClaw app); the gateway token is shown on the gateway host by: clawgate gateway auth-token --show",
    )
}

/// Gateways (origins, one a line) this CLI was paired with by a setup code:
/// only for those does `--url` without a secret use the cached device token.
pub const SETUP_PAIRED_FILE: &str = "setup-code-gateways";

/// Options that use this CLI's cached device token for `ep`, when `clawgate
/// pair --setup-code` paired it there (it has no shared secret) and the
/// token is cached.
fn paired_by_setup_code(ep: &Endpoint, dir: &std::path::Path) -> Option<ConnectOptions> {
    let listed = std::fs::read_to_string(dir.join(SETUP_PAIRED_FILE)).ok()?;
    if !listed.lines().any(|l| l.trim() == ep.origin()) {
        return None;
    }
    let identity = DeviceIdentity::load(dir).ok().flatten()?;
    let mut opts = ConnectOptions::new(ep.url());
    opts.identity = Some(identity);
    let cache = Arc::new(FileTokenCache::new(dir));
    let key = opts.token_key()?;
    clawgate_client::TokenCache::load(cache.as_ref(), &key)
        .ok()
        .flatten()?;
    opts.token_cache = Some(cache);
    Some(opts)
}

/// The settings every CLI connection shares.
fn finish_options(
    mut opts: ConnectOptions,
    mut ctx: Context,
    fingerprint: Option<TlsPin>,
    timeout: Duration,
    needed: &[&str],
) -> (ConnectOptions, Context) {
    ctx.url = opts.url.clone();
    opts.client = ClientInfo {
        id: "cli".into(),
        display_name: Some("clawgate CLI".into()),
        mode: "cli".into(),
        ..ClientInfo::default()
    };
    // --tls-fingerprint beats the local gateway's own pin (local_options).
    if fingerprint.is_some() {
        opts.tls_fingerprint = fingerprint;
    }
    opts.handshake_timeout = timeout;
    opts.request_timeout = timeout;
    opts.reconnect = false;
    opts.scopes = Some(requested_scopes(&opts, needed));
    (opts, ctx)
}

/// The scopes to ask for: what the command needs plus what the cached
/// device token already holds, so a command never asks for less than the
/// device was approved for (which would churn its token) and a device that
/// already holds a scope is not sent back for approval.
fn requested_scopes(opts: &ConnectOptions, needed: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = needed.iter().map(|s| s.to_string()).collect();
    if let (Some(key), Some(cache)) = (opts.token_key(), &opts.token_cache)
        && let Ok(Some(cached)) = cache.load(&key)
    {
        out.extend(cached.scopes);
    }
    out.sort();
    out.dedup();
    out
}

/// The config file, or a failure that names it and the next step.
pub fn load_config_file(paths: &Paths) -> Result<ConfigFile, Failure> {
    ConfigFile::load(&paths.config).map_err(|e| {
        Failure::plain(
            e.to_string(),
            format!(
                "Fix {} (check it with: clawgate doctor)",
                paths.config.display()
            ),
        )
    })
}

fn local_options(target: &Target, paths: &Paths) -> Result<ConnectOptions, Failure> {
    let file = load_config_file(paths)?;
    let cfg = config::resolve(
        &file,
        &paths.state_dir,
        &RunOverrides::default(),
        &EnvOverrides::from_process_env(),
    )
    .map_err(|e| {
        Failure::plain(
            format!("cannot use the local config: {e}"),
            "Check it with: clawgate doctor",
        )
    })?;
    // A wildcard bind is reached on loopback; any other address as bound
    // (a gateway bound to 127.0.0.2 or ::1 only listens there).
    let host = match cfg.bind.address() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    // With TLS on, the local gateway is pinned to the public key of the
    // certificate it serves, read from its file on this host.
    let local_pin = clawgate_gateway::tls::local_pin(&cfg);
    let scheme = if cfg.tls.enabled { "wss" } else { "ws" };
    let mut opts = ConnectOptions::new(format!("{scheme}://{host}:{}/", cfg.port));
    opts.tls_fingerprint = local_pin;
    match cfg.auth.mode {
        AuthMode::Token => {
            opts.token = target.token.clone().map(Secret::new).or(cfg.auth.token);
        }
        // Trusted-proxy mode: a direct local caller uses the password (as
        // the reference CLI does); the proxy's identity is for browsers.
        AuthMode::Password | AuthMode::TrustedProxy => {
            opts.password = target
                .password
                .clone()
                .map(Secret::new)
                .or(cfg.auth.password);
            // Only a hash in the config (`gateway set-password`): ask on a
            // terminal; elsewhere pass --password or CLAWGATE_GATEWAY_PASSWORD.
            if opts.password.is_none()
                && cfg.auth.password_hash.is_some()
                && std::io::IsTerminal::is_terminal(&std::io::stdin())
                && let Ok(p) = rpassword::prompt_password("Gateway password: ")
            {
                opts.password = Some(Secret::new(p));
            }
        }
        AuthMode::None => {}
    }
    Ok(opts)
}

/// Connects for a command that needs `needed` scopes.
pub async fn connect(
    target: &Target,
    paths: &Paths,
    needed: &[&str],
) -> Result<(Client, Context), Failure> {
    let (opts, mut ctx) = options(target, paths, needed)?;
    match Client::connect(opts).await {
        Ok(c) => {
            ctx.recovered = recovered(&c);
            if let Some(code) = &ctx.recovered {
                crate::say_err!(
                    "note: the gateway refused the shared secret ({code}); connected with this device's cached device token instead."
                );
                crate::say_err!(
                    "      Update the secret you pass (on the gateway host: clawgate gateway auth-token --show)."
                );
            }
            Ok((c, ctx))
        }
        Err(e) => Err(Failure::from_client(e, &ctx)),
    }
}

/// The code of the first failure when the connect only succeeded through
/// the one device-token retry (takes the client's event stream).
fn recovered(client: &Client) -> Option<String> {
    let mut events = client.events()?;
    let mut code = None;
    while let Ok(event) = events.try_recv() {
        if let clawgate_client::ClientEvent::Recovered { error, .. } = event {
            code = Some(error.detail_code().unwrap_or(&error.code).to_string());
        }
    }
    code
}

/// The scope a method needs (least privilege), for `gateway call`.
pub fn scopes_for_method(method: &str) -> Vec<&'static str> {
    match scopes::method_access(method) {
        scopes::MethodAccess::Anyone => vec![scopes::READ],
        scopes::MethodAccess::NodeOnly => vec![],
        scopes::MethodAccess::Operator(s) => vec![s],
    }
}

/// Runs one request and maps its failure.
pub async fn call(
    client: &Client,
    ctx: &Context,
    method: &str,
    params: Value,
) -> Result<Value, Failure> {
    client
        .request(method, params)
        .await
        .map_err(|e| Failure::from_client(e, ctx))
}

/// A result read as its protocol type (`clawgate_protocol::wire`).
pub fn decode<T: serde::de::DeserializeOwned>(method: &str, v: &Value) -> Result<T, Failure> {
    T::deserialize(v).map_err(|e| {
        Failure::plain(
            format!("unexpected {method} result from the gateway: {e}"),
            "Check that --url points at a clawgate or OpenClaw gateway, then retry",
        )
    })
}

pub fn print_json(v: &Value) {
    crate::say!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// A command's exit code: 0/1 from the command, or 1 after printing its
/// failure.
pub fn finish(result: Result<u8, Failure>, json_out: bool) -> anyhow::Result<u8> {
    match result {
        Ok(code) => Ok(code),
        Err(failure) => {
            failure.print(json_out);
            Ok(1)
        }
    }
}

/// A current-thread runtime for one command.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(url: &str) -> Endpoint {
        Endpoint::parse(url).unwrap()
    }

    #[test]
    fn a_one_shot_loopback_command_with_the_secret_connects_device_less() {
        for url in [
            "ws://127.0.0.1:18789",
            "ws://127.4.5.6:18789",
            "ws://[::1]:18789",
            "ws://localhost:18789",
            "wss://LOCALHOST:18789",
        ] {
            assert!(
                !presents_identity(&ep(url), true, Session::OneShot, false),
                "{url}"
            );
        }
    }

    #[test]
    fn remote_urls_no_secret_long_sessions_and_the_flag_present_the_identity() {
        for url in [
            "ws://192.168.1.20:18789",
            "wss://gateway.example.com",
            "ws://[2001:db8::1]:18789",
            "ws://vm:18789",
        ] {
            assert!(
                presents_identity(&ep(url), true, Session::OneShot, false),
                "{url}"
            );
        }
        let lo = ep("ws://127.0.0.1:18789");
        assert!(presents_identity(&lo, false, Session::OneShot, false));
        assert!(presents_identity(&lo, true, Session::LongLived, false));
        assert!(presents_identity(&lo, true, Session::OneShot, true));
    }

    fn target(url: &str) -> Target {
        Target {
            url: Some(url.into()),
            token: Some("t".into()),
            password: None,
            timeout: 1000,
            json: false,
            tls_fingerprint: None,
            device_identity: false,
        }
    }

    #[test]
    fn the_options_carry_an_identity_only_where_presents_identity_says() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            state_dir: dir.path().to_path_buf(),
            config: dir.path().join("clawgate.json"),
        };
        let (opts, ctx) =
            options(&target("ws://127.0.0.1:9/"), &paths, &["operator.read"]).unwrap();
        assert!(opts.identity.is_none() && opts.token_cache.is_none());
        assert!(ctx.device_id.is_none());
        assert!(
            !client_dir(&paths).join("identity.json").exists(),
            "none created"
        );
        let (opts, ctx) =
            options(&target("ws://192.0.2.7:9/"), &paths, &["operator.read"]).unwrap();
        assert!(opts.identity.is_some() && opts.token_cache.is_some());
        assert!(ctx.device_id.is_some());
        let mut forced = target("ws://127.0.0.1:9/");
        forced.device_identity = true;
        assert!(options(&forced, &paths, &[]).unwrap().0.identity.is_some());
    }

    #[test]
    fn a_remote_pairing_failure_says_where_and_how_to_approve() {
        let ctx = Context {
            url: "wss://gw.example.com/".into(),
            local: false,
            device_id: Some("d".repeat(64)),
            client_dir: PathBuf::from("/tmp/x"),
            recovered: None,
        };
        let err = clawgate_protocol::frames::ErrorShape {
            details: Some(Box::new(
                json!({"code": "PAIRING_REQUIRED", "requestId": "r-123"}),
            )),
            ..clawgate_protocol::frames::ErrorShape::new(
                "NOT_PAIRED",
                "pairing required: device is not approved yet",
            )
        };
        let f = Failure::from_client(ClientError::Gateway(Box::new(err)), &ctx);
        assert_eq!(f.code.as_deref(), Some("PAIRING_REQUIRED"));
        assert_eq!(
            f.next,
            "Approve this CLI on the gateway host: run clawgate devices approve r-123 there (list requests with: clawgate devices list), or approve request r-123 in the Devices page of the gateway's Control UI (wss://gw.example.com/); then run this command again."
        );
    }

    #[test]
    fn a_pairing_failure_names_the_code_when_the_gateway_gave_one() {
        let err = |url: &str, local: bool| {
            let ctx = Context {
                url: url.into(),
                local,
                device_id: None,
                client_dir: PathBuf::from("/tmp/x"),
                recovered: None,
            };
            let err = clawgate_protocol::frames::ErrorShape {
                details: Some(Box::new(json!({
                    "code": "PAIRING_REQUIRED", "requestId": "r-123", "pairingCode": "BCDF-GHJK"
                }))),
                ..clawgate_protocol::frames::ErrorShape::new("NOT_PAIRED", "pairing required")
            };
            Failure::from_client(ClientError::Gateway(Box::new(err)), &ctx)
        };
        let remote = err("wss://gw.example.com/", false);
        assert!(
            remote
                .next
                .contains("run clawgate devices approve BCDF-GHJK there"),
            "{}",
            remote.next
        );
        assert!(
            remote
                .next
                .contains("approve code BCDF-GHJK in the Devices page")
        );
        let local = err("ws://127.0.0.1:18789/", true);
        assert_eq!(
            local.next,
            "On the gateway host run: clawgate devices approve BCDF-GHJK"
        );
    }
}
