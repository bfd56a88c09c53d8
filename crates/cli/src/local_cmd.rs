//! Commands that read the local gateway's configuration: `clawgate
//! dashboard` and `clawgate gateway auth-token`.
//!
//! Neither talks to a running gateway: both resolve the same config the
//! gateway would (file + environment, no `gateway run` flags). The shared
//! token leaves the process in exactly two places: the single stdout line of
//! `gateway auth-token --show` on an interactive terminal, and the
//! `#token=` fragment of `dashboard --show-token`.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use clap::Args;
use clawgate_gateway::config::{
    self, AuthMode, BindMode, ConfigError, ConfigFile, EnvOverrides, GatewayConfig, RunOverrides,
};
use clawgate_protocol::Secret;
use serde_json::json;

use crate::Paths;

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Print the URL without opening a browser.
    #[arg(long)]
    no_open: bool,
    /// Put the gateway token in the URL fragment (#token=...).
    #[arg(long)]
    show_token: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct AuthTokenArgs {
    /// Confirm that the token may be printed to this terminal.
    #[arg(long)]
    show: bool,
}

const SHOW_COMMAND: &str = "clawgate gateway auth-token --show";

/// What the local config says about the gateway's secret.
enum Auth {
    /// Token mode with a token.
    Token(Secret),
    /// Token mode, but no token anywhere yet (fresh install).
    TokenMissing,
    /// Password mode (with or without a password set).
    Password { set: bool },
    /// `gateway.auth.mode: "none"`.
    None,
}

/// The resolved local config, minus the secret, plus the secret's state.
struct Local {
    cfg: GatewayConfig,
    auth: Auth,
}

/// Reads and resolves the config the way `gateway run` would without flags.
/// A missing secret is not an error here: it is reported as such by the
/// callers (the gateway creates a token on its first run).
fn load_local(paths: &Paths, env: &EnvOverrides) -> Result<Local, String> {
    let file = ConfigFile::load(&paths.config).map_err(|e| e.to_string())?;
    let describe = |e: ConfigError| {
        format!(
            "the gateway configuration in {} cannot be used: {e}",
            paths.config.display()
        )
    };
    match config::resolve(&file, &paths.state_dir, &RunOverrides::default(), env) {
        Ok(cfg) => {
            let auth = match cfg.auth.mode {
                AuthMode::Token => match cfg.auth.token.clone() {
                    Some(t) => Auth::Token(t),
                    None => Auth::TokenMissing,
                },
                // Trusted-proxy mode: local callers use its password.
                AuthMode::Password | AuthMode::TrustedProxy => Auth::Password {
                    set: cfg.auth.password.is_some(),
                },
                AuthMode::None => Auth::None,
            };
            Ok(Local { cfg, auth })
        }
        Err(e) if e.is_missing_secret() => {
            // Resolve the rest of the config with a stand-in secret of the
            // missing kind; it is dropped right away and never shown.
            let token_missing = e.key() == Some("gateway.auth.token");
            let stand_in = Some(Secret::new("stand-in"));
            let overrides = if token_missing {
                RunOverrides {
                    token: stand_in,
                    ..Default::default()
                }
            } else {
                RunOverrides {
                    password: stand_in,
                    ..Default::default()
                }
            };
            let mut cfg =
                config::resolve(&file, &paths.state_dir, &overrides, env).map_err(describe)?;
            cfg.auth.token = None;
            cfg.auth.password = None;
            let auth = if token_missing {
                Auth::TokenMissing
            } else {
                Auth::Password { set: false }
            };
            Ok(Local { cfg, auth })
        }
        Err(e) => Err(describe(e)),
    }
}

/// Where the effective token came from, for the note on stderr.
fn token_origin(paths: &Paths) -> String {
    for var in ["CLAWGATE_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_TOKEN"] {
        if std::env::var_os(var).is_some() {
            return format!(
                "the {var} environment variable (it overrides gateway.auth.token in {})",
                paths.config.display()
            );
        }
    }
    format!("gateway.auth.token in {}", paths.config.display())
}

fn no_token_help() -> String {
    "No gateway token is set yet. The gateway creates one on its first start (clawgate gateway run) and saves it to the config file; or set one yourself with: clawgate config set gateway.auth.token <token> (or generate one with: clawgate doctor --generate-gateway-token)".to_string()
}

pub fn auth_token(args: AuthTokenArgs, paths: &Paths) -> u8 {
    let env = EnvOverrides::from_process_env();
    let local = match load_local(paths, &env) {
        Ok(local) => local,
        Err(message) => {
            crate::say_err!("error: {message}");
            crate::say_err!("next: fix the file, then check it with: clawgate config get gateway");
            return 1;
        }
    };
    let token = match local.auth {
        Auth::Token(token) => token,
        Auth::TokenMissing => {
            crate::say_err!("error: {}", no_token_help());
            return 1;
        }
        Auth::Password { set } => {
            crate::say_err!(
                "error: this gateway uses a password (gateway.auth.password), not a token; there is no token to print."
            );
            if set {
                crate::say_err!(
                    "The password is never printed. Look it up where you keep it, or change it with: clawgate config set gateway.auth.password <password> (then restart the gateway)."
                );
            } else {
                crate::say_err!(
                    "No password is set yet; set one with: clawgate config set gateway.auth.password <password>"
                );
            }
            return 1;
        }
        Auth::None => {
            crate::say_err!(
                "error: this gateway has no secret to print: gateway.auth.mode is \"none\", so clients connect without a token (loopback only)."
            );
            crate::say_err!(
                "To require a token: clawgate config set gateway.auth.mode token, then restart the gateway (it creates one)."
            );
            return 1;
        }
    };
    if !args.show {
        crate::say_err!(
            "error: Pass --show to confirm that you want to print the gateway token to this terminal: {SHOW_COMMAND}"
        );
        return 1;
    }
    if !std::io::stdout().is_terminal() {
        crate::say_err!(
            "error: Refusing to print the gateway token outside an interactive terminal. Run `{SHOW_COMMAND}` directly in a terminal on the gateway host."
        );
        return 1;
    }
    crate::say_err!(
        "Gateway token from {} - treat it like a password:",
        token_origin(paths)
    );
    crate::say!("{}", token.expose());
    0
}

/// The host a local browser or client should use for the configured bind.
fn connect_host(bind: &BindMode) -> String {
    let ip = bind.address();
    if matches!(bind, BindMode::Loopback) || ip.is_unspecified() {
        return "127.0.0.1".into();
    }
    // A custom loopback address (127.0.0.2, ::1) is only reachable as itself.
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Percent-encodes everything except RFC 3986 unreserved characters.
fn encode_fragment_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a browser could be shown on this machine.
fn display_available() -> bool {
    if cfg!(target_os = "macos") {
        return true;
    }
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// Hands the URL to the desktop's opener without waiting for it. Returns
/// whether the opener could be started.
fn open_browser(url: &str) -> bool {
    if !display_available() {
        return false;
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    // Detached from our stdio so nothing it prints mixes with our output
    // (in particular --json); dropping the Child does not wait for it.
    Command::new(opener)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .is_ok()
}

fn dashboard_error(json_out: bool, message: &str, next: &str) -> u8 {
    crate::net::Failure::plain(message, next).print(json_out);
    1
}

pub fn dashboard(args: DashboardArgs, paths: &Paths) -> u8 {
    let env = EnvOverrides::from_process_env();
    let local = match load_local(paths, &env) {
        Ok(local) => local,
        Err(message) => {
            return dashboard_error(
                args.json,
                &message,
                "fix the file, then check it with: clawgate config get gateway",
            );
        }
    };
    let cfg = &local.cfg;
    if !cfg.control_ui.enabled {
        return dashboard_error(
            args.json,
            &format!(
                "the Control UI is disabled (gateway.controlUi.enabled is false in {})",
                paths.config.display()
            ),
            "clawgate config set gateway.controlUi.enabled true, then restart the gateway",
        );
    }
    let host = connect_host(&cfg.bind);
    let base_path = cfg.control_ui.base_path.clone();
    let (ws, http) = crate::gateway_tls::schemes(cfg.tls.enabled);
    let http_url = format!("{http}://{host}:{}{base_path}", cfg.port);
    let ws_url = format!("{ws}://{host}:{}{base_path}", cfg.port);
    let fragment_token = match (&local.auth, args.show_token) {
        (Auth::Token(token), true) => Some(token),
        _ => None,
    };
    let url = match fragment_token {
        Some(token) => format!("{http_url}#token={}", encode_fragment_value(token.expose())),
        None => http_url.clone(),
    };
    let opened = !args.no_open && open_browser(&url);

    if args.json {
        crate::say!(
            "{}",
            json!({
                "ok": true,
                "url": url,
                "httpUrl": http_url,
                "wsUrl": ws_url,
                "port": cfg.port,
                "basePath": base_path,
                "tokenIncluded": fragment_token.is_some(),
                "opened": opened,
            })
        );
        return 0;
    }

    crate::say!("Dashboard URL: {url}");
    match (&local.auth, args.show_token) {
        (Auth::Token(_), true) => {
            crate::say!(
                "The URL carries the gateway token in its #token= fragment, which the browser never sends to the server. Treat the URL like a password: do not paste it into chats, tickets or logs."
            );
        }
        (Auth::Token(_), false) => {
            crate::say!(
                "The Control UI will ask for the gateway secret. Get the token on this host with: {SHOW_COMMAND}"
            );
            crate::say!(
                "Or run `clawgate dashboard --show-token` for a URL that carries it in the #token= fragment (never sent to the server)."
            );
        }
        (Auth::TokenMissing, show) => {
            crate::say!("{}", no_token_help());
            if show {
                crate::say!("--show-token added nothing: there is no token to put in the URL yet.");
            }
        }
        (Auth::Password { set }, show) => {
            crate::say!(
                "The Control UI will ask for the gateway secret: this gateway uses a password (gateway.auth.password); type it into the Gateway secret field."
            );
            if !set {
                crate::say!(
                    "No password is set yet; set one with: clawgate config set gateway.auth.password <password>"
                );
            }
            if show {
                crate::say!(
                    "--show-token added nothing: passwords are never put in URLs, and this gateway has no token."
                );
            }
        }
        (Auth::None, show) => {
            crate::say!(
                "This gateway has no auth (gateway.auth.mode is \"none\"): the Control UI connects without a secret."
            );
            if show {
                crate::say!("--show-token added nothing: there is no token.");
            }
        }
    }
    if opened {
        crate::say!("Opened it in your browser.");
    } else {
        crate::say!("Open it in your browser.");
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_encoding_keeps_unreserved_and_escapes_the_rest() {
        assert_eq!(encode_fragment_value("aZ09-._~"), "aZ09-._~");
        assert_eq!(
            encode_fragment_value("a b&c=d#e/é"),
            "a%20b%26c%3Dd%23e%2F%C3%A9"
        );
    }

    #[test]
    fn connect_host_per_bind() {
        assert_eq!(connect_host(&BindMode::Loopback), "127.0.0.1");
        assert_eq!(connect_host(&BindMode::Lan), "127.0.0.1");
        let custom = |s: &str| BindMode::Custom(s.parse().unwrap());
        assert_eq!(connect_host(&custom("::")), "127.0.0.1");
        assert_eq!(connect_host(&custom("::1")), "[::1]");
        assert_eq!(connect_host(&custom("127.0.0.2")), "127.0.0.2");
        assert_eq!(connect_host(&custom("192.168.1.10")), "192.168.1.10");
        assert_eq!(connect_host(&custom("fd00::5")), "[fd00::5]");
    }
}
