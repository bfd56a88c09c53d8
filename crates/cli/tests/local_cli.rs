//! `clawgate dashboard` and `clawgate gateway auth-token` through the real
//! binary, on a temp state dir with a config file written by the test.
//! No gateway runs: both commands only read the local config.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TOKEN: &str = "local-cli-token-7f3a9c";
/// Needs URL encoding: '/', '+', '=' and a space.
const ODD_TOKEN: &str = "odd/tok+en= 42";
const ODD_TOKEN_ENCODED: &str = "odd%2Ftok%2Ben%3D%2042";
const ENV_TOKEN: &str = "env-token-5e1d22";
const PASSWORD: &str = "local-cli-password-c04e11";

struct State {
    dir: tempfile::TempDir,
}

impl State {
    fn new() -> State {
        State {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn with_config(doc: Value) -> State {
        let s = State::new();
        std::fs::write(s.config_path(), doc.to_string()).unwrap();
        s
    }

    fn token_mode() -> State {
        State::with_config(
            json!({"gateway": {"port": 18999, "auth": {"mode": "token", "token": TOKEN}}}),
        )
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("clawgate.json")
    }

    /// The binary with this state dir and no display, so no browser opens.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = common::bin();
        cmd.env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .arg("--state-dir")
            .arg(self.dir.path())
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs the binary on a pseudo-terminal (util-linux `script`); returns
    /// the exit code and everything the terminal showed, with `\r\n` turned
    /// into `\n`. `shell_suffix` is appended to the command line (e.g.
    /// `2>/dev/null` to see stdout only).
    fn run_on_tty(&self, args: &[&str], env: &[(&str, &str)], shell_suffix: &str) -> (i32, String) {
        let bin = common::bin();
        let mut line = shell_quote(Path::new(bin.get_program()));
        line.push_str(" --state-dir ");
        line.push_str(&shell_quote(self.dir.path()));
        for a in args {
            line.push(' ');
            line.push_str(&shell_quote(Path::new(a)));
        }
        line.push(' ');
        line.push_str(shell_suffix);
        let mut cmd = Command::new("script");
        // The same clean environment as the binary gets from common::bin().
        for (k, v) in bin.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd
            .args(["-qec", &line, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .expect("util-linux `script` is installed");
        let shown = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
        (out.status.code().unwrap_or(-1), shown)
    }
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.to_str().unwrap().replace('\'', r"'\''"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn all(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

fn assert_absent(o: &Output, secrets: &[&str]) {
    let text = all(o);
    for s in secrets {
        assert!(!text.contains(s), "secret {s:?} leaked: {text}");
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn json_out(o: &Output) -> Value {
    serde_json::from_str(stdout(o).trim()).unwrap_or_else(|e| panic!("{e}: {}", all(o)))
}

// ---- gateway auth-token ----

#[test]
fn auth_token_without_show_refuses_and_never_prints_the_token() {
    let s = State::token_mode();
    let o = s.run(&["gateway", "auth-token"]);
    assert_eq!(code(&o), 1, "{}", all(&o));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains(
            "Pass --show to confirm that you want to print the gateway token to this terminal: clawgate gateway auth-token --show"
        ),
        "{}",
        stderr(&o)
    );
    assert_absent(&o, &[TOKEN]);
}

#[test]
fn auth_token_show_without_a_terminal_refuses() {
    let s = State::token_mode();
    let o = s.run(&["gateway", "auth-token", "--show"]);
    assert_eq!(code(&o), 1, "{}", all(&o));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("Refusing to print the gateway token outside an interactive terminal. Run `clawgate gateway auth-token --show` directly in a terminal on the gateway host."),
        "{}",
        stderr(&o)
    );
    assert_absent(&o, &[TOKEN]);
}

#[test]
fn auth_token_show_on_a_terminal_prints_the_token_alone_on_stdout() {
    let s = State::token_mode();
    // stdout only: exactly the token line.
    let (rc, shown) = s.run_on_tty(&["gateway", "auth-token", "--show"], &[], "2>/dev/null");
    assert_eq!(rc, 0, "{shown}");
    assert_eq!(shown, format!("{TOKEN}\n"));

    // With stderr: a note naming where the token came from, then the token.
    let (rc, shown) = s.run_on_tty(&["gateway", "auth-token", "--show"], &[], "");
    assert_eq!(rc, 0, "{shown}");
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 2, "{shown}");
    assert!(lines[0].contains("gateway.auth.token"), "{shown}");
    assert!(
        lines[0].contains(s.config_path().to_str().unwrap()),
        "{shown}"
    );
    assert!(lines[0].contains("treat it like a password"), "{shown}");
    assert!(!lines[0].contains(TOKEN), "{shown}");
    assert_eq!(lines[1], TOKEN);
    assert_eq!(shown.matches(TOKEN).count(), 1, "{shown}");
}

#[test]
fn auth_token_show_piped_inside_a_terminal_still_refuses() {
    // stderr is the terminal but stdout goes into a pipe.
    let s = State::token_mode();
    let (_, shown) = s.run_on_tty(&["gateway", "auth-token", "--show"], &[], "| cat");
    assert!(
        shown.contains("Refusing to print the gateway token"),
        "{shown}"
    );
    assert!(!shown.contains(TOKEN), "{shown}");
}

#[test]
fn auth_token_env_token_overrides_the_config_token() {
    let s = State::token_mode();
    let (rc, shown) = s.run_on_tty(
        &["gateway", "auth-token", "--show"],
        &[("CLAWGATE_GATEWAY_TOKEN", ENV_TOKEN)],
        "",
    );
    assert_eq!(rc, 0, "{shown}");
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 2, "{shown}");
    assert!(lines[0].contains("CLAWGATE_GATEWAY_TOKEN"), "{shown}");
    assert_eq!(lines[1], ENV_TOKEN);
    assert!(!shown.contains(TOKEN), "{shown}");

    // The reference's variable name works too.
    let (rc, shown) = s.run_on_tty(
        &["gateway", "auth-token", "--show"],
        &[("OPENCLAW_GATEWAY_TOKEN", ENV_TOKEN)],
        "2>/dev/null",
    );
    assert_eq!(rc, 0, "{shown}");
    assert_eq!(shown, format!("{ENV_TOKEN}\n"));
}

#[test]
fn auth_token_password_mode_never_prints_the_password() {
    let s = State::with_config(
        json!({"gateway": {"auth": {"mode": "password", "password": PASSWORD}}}),
    );
    for args in [
        &["gateway", "auth-token"][..],
        &["gateway", "auth-token", "--show"][..],
    ] {
        let o = s.run(args);
        assert_eq!(code(&o), 1, "{}", all(&o));
        assert!(stdout(&o).is_empty());
        assert!(
            stderr(&o).contains("uses a password (gateway.auth.password), not a token"),
            "{}",
            stderr(&o)
        );
        assert_absent(&o, &[PASSWORD]);
    }
    // Not even on a terminal.
    let (rc, shown) = s.run_on_tty(&["gateway", "auth-token", "--show"], &[], "");
    assert_eq!(rc, 1, "{shown}");
    assert!(shown.contains("gateway.auth.password"), "{shown}");
    assert!(!shown.contains(PASSWORD), "{shown}");
    // A password from the environment neither.
    let (rc, shown) = s.run_on_tty(
        &["gateway", "auth-token", "--show"],
        &[("CLAWGATE_GATEWAY_PASSWORD", "env-password-99ab")],
        "",
    );
    assert_eq!(rc, 1, "{shown}");
    assert!(!shown.contains("env-password-99ab"), "{shown}");
}

#[test]
fn auth_token_mode_none_explains_there_is_no_secret() {
    let s = State::with_config(json!({"gateway": {"auth": {"mode": "none"}}}));
    let (rc, shown) = s.run_on_tty(&["gateway", "auth-token", "--show"], &[], "");
    assert_eq!(rc, 1, "{shown}");
    assert!(shown.contains("no secret"), "{shown}");
    assert!(shown.contains("\"none\""), "{shown}");
}

#[test]
fn auth_token_without_a_configured_token_says_how_to_get_one() {
    // A fresh state dir: no config file at all.
    let s = State::new();
    let (rc, shown) = s.run_on_tty(&["gateway", "auth-token", "--show"], &[], "");
    assert_eq!(rc, 1, "{shown}");
    for needle in [
        "clawgate gateway run",
        "clawgate config set gateway.auth.token <token>",
        "clawgate doctor --generate-gateway-token",
    ] {
        assert!(shown.contains(needle), "{needle}: {shown}");
    }
    assert!(!s.config_path().exists(), "nothing is written");
}

#[test]
fn auth_token_invalid_config_names_the_file_and_the_problem() {
    let s = State::new();
    std::fs::write(
        s.config_path(),
        format!("{{gateway: {{auth: {{token: \"{TOKEN}\""),
    )
    .unwrap();
    let o = s.run(&["gateway", "auth-token", "--show"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains(s.config_path().to_str().unwrap()),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("JSON5"), "{}", stderr(&o));
    assert_absent(&o, &[TOKEN]);

    let s = State::with_config(json!({"gateway": {"port": "x", "auth": {"token": TOKEN}}}));
    let o = s.run(&["gateway", "auth-token", "--show"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains(s.config_path().to_str().unwrap()),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("gateway.port"), "{}", stderr(&o));
    assert_absent(&o, &[TOKEN]);
}

// ---- dashboard ----

#[test]
fn dashboard_text_never_contains_the_token() {
    let s = State::token_mode();
    let o = s.run(&["dashboard", "--no-open"]);
    assert_eq!(code(&o), 0, "{}", all(&o));
    let out = stdout(&o);
    assert_eq!(
        out.lines().next(),
        Some("Dashboard URL: http://127.0.0.1:18999/")
    );
    assert!(out.contains("clawgate gateway auth-token --show"), "{out}");
    assert!(out.contains("--show-token"), "{out}");
    assert!(!out.contains("/#token="), "{out}");
    assert_absent(&o, &[TOKEN]);
}

#[test]
fn dashboard_json_without_show_token() {
    let s = State::token_mode();
    let o = s.run(&["dashboard", "--no-open", "--json"]);
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert_absent(&o, &[TOKEN]);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    assert_eq!(
        json_out(&o),
        json!({
            "ok": true,
            "url": "http://127.0.0.1:18999/",
            "httpUrl": "http://127.0.0.1:18999/",
            "wsUrl": "ws://127.0.0.1:18999/",
            "port": 18999,
            "basePath": "/",
            "tokenIncluded": false,
            "opened": false,
        })
    );
}

#[test]
fn dashboard_show_token_puts_the_encoded_token_in_the_fragment() {
    let s = State::with_config(json!({"gateway": {"port": 18999, "auth": {"token": ODD_TOKEN}}}));
    let o = s.run(&["dashboard", "--no-open", "--show-token"]);
    assert_eq!(code(&o), 0, "{}", all(&o));
    let out = stdout(&o);
    assert_eq!(
        out.lines().next().unwrap(),
        format!("Dashboard URL: http://127.0.0.1:18999/#token={ODD_TOKEN_ENCODED}")
    );
    assert_eq!(out.matches(ODD_TOKEN_ENCODED).count(), 1, "{out}");
    assert!(out.contains("like a password"), "{out}");

    let o = s.run(&["dashboard", "--no-open", "--show-token", "--json"]);
    assert_eq!(code(&o), 0, "{}", all(&o));
    let v = json_out(&o);
    assert_eq!(
        v["url"],
        format!("http://127.0.0.1:18999/#token={ODD_TOKEN_ENCODED}")
    );
    assert_eq!(v["httpUrl"], "http://127.0.0.1:18999/");
    assert_eq!(v["tokenIncluded"], true);
    // Only the url field carries it.
    let mut rest = v.clone();
    rest.as_object_mut().unwrap().remove("url");
    assert!(!rest.to_string().contains("odd"), "{rest}");
}

#[test]
fn dashboard_honours_base_path_and_bind() {
    let s = State::with_config(json!({"gateway": {
        "port": 18998, "bind": "custom", "customBindHost": "192.168.77.5",
        "controlUi": {"basePath": "ui//admin"},
        "auth": {"token": TOKEN}
    }}));
    let o = s.run(&["dashboard", "--no-open", "--json"]);
    assert_eq!(code(&o), 0, "{}", all(&o));
    let v = json_out(&o);
    assert_eq!(v["url"], "http://192.168.77.5:18998/ui/admin/");
    assert_eq!(v["wsUrl"], "ws://192.168.77.5:18998/ui/admin/");
    assert_eq!(v["basePath"], "/ui/admin/");

    let o = s.run(&["dashboard", "--no-open", "--show-token"]);
    assert!(
        stdout(&o).starts_with(&format!(
            "Dashboard URL: http://192.168.77.5:18998/ui/admin/#token={TOKEN}\n"
        )),
        "{}",
        stdout(&o)
    );

    // IPv6 custom address in brackets; lan (0.0.0.0) is reached on 127.0.0.1.
    let s = State::with_config(json!({"gateway": {
        "bind": "custom", "customBindHost": "fd00::5", "auth": {"token": TOKEN}
    }}));
    let v = json_out(&s.run(&["dashboard", "--no-open", "--json"]));
    assert_eq!(v["httpUrl"], "http://[fd00::5]:18789/");
    let s = State::with_config(json!({"gateway": {"bind": "lan", "auth": {"token": TOKEN}}}));
    let v = json_out(&s.run(&["dashboard", "--no-open", "--json"]));
    assert_eq!(v["httpUrl"], "http://127.0.0.1:18789/");
}

#[test]
fn dashboard_env_token_overrides_the_config_token() {
    let s = State::token_mode();
    let o = s
        .cmd(&["dashboard", "--no-open", "--show-token", "--json"])
        .env("CLAWGATE_GATEWAY_TOKEN", ENV_TOKEN)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert_eq!(
        json_out(&o)["url"],
        format!("http://127.0.0.1:18999/#token={ENV_TOKEN}")
    );
    assert_absent(&o, &[TOKEN]);

    // Without --show-token the env token stays out of the output too.
    let o = s
        .cmd(&["dashboard", "--no-open"])
        .env("CLAWGATE_GATEWAY_TOKEN", ENV_TOKEN)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0);
    assert_absent(&o, &[TOKEN, ENV_TOKEN]);
}

#[test]
fn dashboard_control_ui_disabled_fails_and_says_how_to_enable_it() {
    let s = State::with_config(json!({"gateway": {
        "controlUi": {"enabled": false}, "auth": {"token": TOKEN}
    }}));
    let o = s.run(&["dashboard", "--no-open", "--show-token"]);
    assert_eq!(code(&o), 1, "{}", all(&o));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("clawgate config set gateway.controlUi.enabled true"),
        "{}",
        stderr(&o)
    );
    assert_absent(&o, &[TOKEN]);

    let o = s.run(&["dashboard", "--no-open", "--json"]);
    assert_eq!(code(&o), 1);
    let v = json_out(&o);
    assert_eq!(v["ok"], false);
    assert!(
        v["error"]["next"]
            .as_str()
            .unwrap()
            .contains("gateway.controlUi.enabled true"),
        "{v}"
    );
}

#[test]
fn dashboard_password_mode_show_token_adds_nothing() {
    let s = State::with_config(
        json!({"gateway": {"auth": {"mode": "password", "password": PASSWORD}}}),
    );
    let o = s.run(&["dashboard", "--no-open", "--show-token"]);
    assert_eq!(code(&o), 0, "{}", all(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("Dashboard URL: http://127.0.0.1:18789/\n"),
        "{out}"
    );
    assert!(out.contains("password"), "{out}");
    assert!(out.contains("--show-token added nothing"), "{out}");
    assert!(!out.contains("/#token="), "{out}");
    assert_absent(&o, &[PASSWORD]);

    let o = s.run(&["dashboard", "--no-open", "--show-token", "--json"]);
    let v = json_out(&o);
    assert_eq!(v["url"], "http://127.0.0.1:18789/");
    assert_eq!(v["tokenIncluded"], false);
    assert_absent(&o, &[PASSWORD]);
}

#[test]
fn dashboard_on_a_fresh_state_dir_explains_the_missing_token() {
    let s = State::new();
    let o = s.run(&["dashboard", "--no-open", "--show-token"]);
    assert_eq!(code(&o), 0, "{}", all(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("Dashboard URL: http://127.0.0.1:18789/\n"),
        "{out}"
    );
    assert!(out.contains("clawgate gateway run"), "{out}");
    assert!(!out.contains("/#token="), "{out}");
    assert!(!s.config_path().exists(), "nothing is written");
}

#[test]
fn dashboard_invalid_config_names_the_file() {
    let s =
        State::with_config(json!({"gateway": {"bind": "everywhere", "auth": {"token": TOKEN}}}));
    let o = s.run(&["dashboard", "--no-open"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains(s.config_path().to_str().unwrap()),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("gateway.bind"), "{}", stderr(&o));
    assert_absent(&o, &[TOKEN]);
}

#[test]
fn dashboard_without_a_display_does_not_try_to_open() {
    let s = State::token_mode();
    let o = s.run(&["dashboard", "--json"]);
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert_eq!(json_out(&o)["opened"], false);
    let o = s.run(&["dashboard"]);
    assert!(
        stdout(&o).contains("Open it in your browser."),
        "{}",
        stdout(&o)
    );
}

/// A fake `xdg-open` on PATH that records its arguments; never a browser.
fn fake_opener(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin_dir = dir.join("fake-bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let record = dir.join("opened.txt");
    let script = bin_dir.join("xdg-open");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{0}.tmp' && mv '{0}.tmp' '{0}'\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin_dir
}

fn wait_for(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{} never appeared", path.display());
}

#[cfg(target_os = "linux")]
#[test]
fn dashboard_opens_the_url_with_the_desktop_opener_when_a_display_exists() {
    let s = State::token_mode();
    let work = tempfile::tempdir().unwrap();
    let bin_dir = fake_opener(work.path());
    let path = format!("{}:/usr/bin:/bin", bin_dir.display());
    let record = work.path().join("opened.txt");

    let o = s
        .cmd(&["dashboard", "--json"])
        .env("DISPLAY", ":99")
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert_eq!(json_out(&o)["opened"], true);
    assert_eq!(wait_for(&record), "http://127.0.0.1:18999/\n");
    assert_absent(&o, &[TOKEN]);
    std::fs::remove_file(&record).unwrap();

    // --no-open wins over a display.
    let o = s
        .cmd(&["dashboard", "--no-open", "--json"])
        .env("WAYLAND_DISPLAY", "wayland-0")
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(json_out(&o)["opened"], false);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!record.exists());

    // No opener installed: exit 0 and say so.
    let o = s
        .cmd(&["dashboard"])
        .env("DISPLAY", ":99")
        .env("PATH", work.path().join("empty"))
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(
        stdout(&o).contains("Open it in your browser."),
        "{}",
        stdout(&o)
    );
}
