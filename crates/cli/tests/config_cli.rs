//! `clawgate config ...` through the real binary, on a temp state dir.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::{Value, json};

const TOKEN: &str = "cli-test-token-0b9d4e";
const PASSWORD: &str = "cli-test-password-51ac";

struct State {
    dir: tempfile::TempDir,
}

/// PATH with the built `clawgate` first.
fn path_with_clawgate() -> std::ffi::OsString {
    let bin = assert_cmd::cargo::cargo_bin("clawgate");
    let dir = bin.parent().unwrap().to_path_buf();
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(dir).chain(std::env::split_paths(&rest))).unwrap()
}

impl State {
    fn new() -> State {
        State {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("clawgate.json")
    }

    /// `clawgate config ARGS`, with the binary's directory first on PATH
    /// (as after `cargo install`), so hints say `clawgate`.
    fn cmd(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        Command::cargo_bin("clawgate")
            .unwrap()
            .env("PATH", path_with_clawgate())
            .env_remove("CLAWGATE_STATE_DIR")
            .env_remove("CLAWGATE_GATEWAY_TOKEN")
            .env_remove("OPENCLAW_GATEWAY_TOKEN")
            .env_remove("CLAWGATE_GATEWAY_PASSWORD")
            .env_remove("OPENCLAW_GATEWAY_PASSWORD")
            .env_remove("CLAWGATE_PORT")
            .env_remove("OPENCLAW_GATEWAY_PORT")
            .env_remove("CLAWGATE_BIND")
            .arg("--state-dir")
            .arg(self.dir.path())
            .arg("config")
            .args(args)
            .assert()
    }

    fn write(&self, text: &str) {
        std::fs::write(self.config_path(), text).unwrap();
    }

    fn doc(&self) -> Value {
        // JSON5: a hand-written file stays JSON5 after an edit.
        json5::from_str(&std::fs::read_to_string(self.config_path()).unwrap()).unwrap()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn assert_no_secret(output: &std::process::Output) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!all.contains(TOKEN) && !all.contains(PASSWORD), "{all}");
}

#[test]
fn path_prints_the_config_file() {
    let s = State::new();
    s.cmd(&["path"])
        .success()
        .stdout(format!("{}\n", s.config_path().display()));
}

#[test]
fn set_get_unset_round_trip() {
    let s = State::new();
    s.cmd(&["set", "gateway.port", "19001"])
        .success()
        .stdout("Updated gateway.port. Restart the gateway to apply.\n");
    s.cmd(&["get", "gateway.port"]).success().stdout("19001\n");
    s.cmd(&["set", "gateway.bind", "lan"]).success();
    s.cmd(&["get", "gateway.bind"]).success().stdout("lan\n");
    s.cmd(&["get", "gateway.bind", "--json"])
        .success()
        .stdout("\"lan\"\n");
    s.cmd(&[
        "set",
        "gateway.controlUi.allowedOrigins",
        r#"["HTTPS://UI.Example.com/"]"#,
    ])
    .success();
    s.cmd(&["set", "gateway.controlUi.enabled", "false"])
        .success();
    assert_eq!(
        s.doc(),
        json!({"gateway": {
            "port": 19001,
            "bind": "lan",
            "controlUi": {"allowedOrigins": ["HTTPS://UI.Example.com/"], "enabled": false}
        }})
    );
    s.cmd(&["get", "gateway.controlUi.enabled"])
        .success()
        .stdout("false\n");

    s.cmd(&["unset", "gateway.port"])
        .success()
        .stdout("Removed gateway.port.\n");
    s.cmd(&["get", "gateway.port"]).code(1).stderr(
        "Config path is valid but unset: gateway.port. Set it with: clawgate config set gateway.port <value>\n",
    );
    assert!(s.doc()["gateway"].get("port").is_none());
}

#[test]
fn get_of_an_unset_key_fails_with_the_next_command() {
    let s = State::new();
    s.cmd(&["get", "gateway.auth.token"]).code(1).stdout("").stderr(
        "Config path is valid but unset: gateway.auth.token. Set it with: clawgate config set gateway.auth.token <value>\n",
    );
    assert!(!s.config_path().exists(), "get never writes");
}

#[test]
fn unset_of_a_missing_key_fails() {
    let s = State::new();
    s.cmd(&["unset", "gateway.bind"])
        .code(1)
        .stderr("Config path is not set: gateway.bind\n");
}

#[test]
fn exact_secret_key_prints_in_clear_but_objects_are_redacted() {
    let s = State::new();
    let out = s.cmd(&["set", "gateway.auth.token", TOKEN]).success();
    assert_no_secret(out.get_output());
    s.cmd(&["set", "gateway.auth.mode", "token"]).success();
    s.cmd(&["get", "gateway.auth.token"])
        .success()
        .stdout(format!("{TOKEN}\n"));

    for key in ["gateway.auth", "gateway"] {
        let out = s.cmd(&["get", key]).success();
        assert_no_secret(out.get_output());
        let shown: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        let auth = if key == "gateway" {
            &shown["auth"]
        } else {
            &shown
        };
        assert_eq!(*auth, json!({"token": "<redacted>", "mode": "token"}));
    }

    let out = s.cmd(&["get", "gateway.auth", "--show-secrets"]).success();
    let shown: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(shown, json!({"token": TOKEN, "mode": "token"}));
}

#[test]
fn set_refuses_a_zero_window_and_leaves_the_file_byte_identical() {
    let s = State::new();
    let original = "// hand-written\n{ gateway: { auth: { token: 'abc-123' } }, agents: {} }\n";
    s.write(original);
    s.cmd(&["set", "gateway.auth.rateLimit.windowMs", "0"])
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("gateway.auth.rateLimit.windowMs"))
        .stderr(predicate::str::contains("abc-123").not());
    assert_eq!(std::fs::read_to_string(s.config_path()).unwrap(), original);
}

#[test]
fn tick_interval_is_validated_on_set() {
    let s = State::new();
    s.write("{ gateway: { auth: { token: 'abc-123' } } }\n");
    for bad in ["999", "300001", "1500.5", "'fast'"] {
        let before = std::fs::read_to_string(s.config_path()).unwrap();
        s.cmd(&["set", "gateway.tickIntervalMs", bad])
            .code(1)
            .stderr(predicate::str::contains("gateway.tickIntervalMs"))
            .stderr(predicate::str::contains("from 1000 to 300000"));
        assert_eq!(std::fs::read_to_string(s.config_path()).unwrap(), before);
    }
    s.cmd(&["set", "gateway.tickIntervalMs", "1000"]).success();
    assert_eq!(s.doc()["gateway"]["tickIntervalMs"], json!(1000));
}

#[test]
fn set_refuses_an_invalid_origin() {
    let s = State::new();
    s.cmd(&[
        "set",
        "gateway.controlUi.allowedOrigins",
        r#"["https://ok.example", "https://bad.example/path"]"#,
    ])
    .code(1)
    .stderr(predicate::str::contains(
        "gateway.controlUi.allowedOrigins[1]",
    ));
    assert!(!s.config_path().exists());
}

#[test]
fn set_refuses_auth_none_on_lan_and_placeholder_secrets() {
    let s = State::new();
    s.cmd(&["set", "gateway.bind", "lan"]).success();
    s.cmd(&["set", "gateway.auth.mode", "none"])
        .code(1)
        .stderr(predicate::str::contains("gateway.auth.mode"))
        .stderr(predicate::str::contains("loopback"));
    s.cmd(&["set", "gateway.auth.token", "undefined"])
        .code(1)
        .stderr(predicate::str::contains("gateway.auth.token"));
    // Trusted-proxy mode needs its identity header first.
    s.cmd(&["set", "gateway.auth.mode", "trusted-proxy"])
        .code(1)
        .stderr(predicate::str::contains("gateway.auth.trustedProxy"));
    assert_eq!(s.doc(), json!({"gateway": {"bind": "lan"}}));
}

#[test]
fn trusted_proxy_mode_is_set_up_key_by_key() {
    let s = State::new();
    s.cmd(&["set", "gateway.trustedProxies", r#"["10.0.0.1"]"#])
        .success();
    s.cmd(&[
        "set",
        "gateway.auth.trustedProxy.userHeader",
        "x-forwarded-user",
    ])
    .success();
    s.cmd(&["set", "gateway.auth.mode", "trusted-proxy"])
        .success();
    s.cmd(&[
        "set",
        "gateway.auth.trustedProxy.jwt.algorithms",
        r#"["none"]"#,
    ])
    .code(1)
    .stderr(predicate::str::contains("gateway.auth.trustedProxy.jwt"));
    s.cmd(&["set", "gateway.auth.token", "a-token-that-is-long-enough"])
        .code(1)
        .stderr(predicate::str::contains("mutually exclusive"));
    assert_eq!(
        s.doc(),
        json!({"gateway": {"trustedProxies": ["10.0.0.1"], "auth": {"trustedProxy": {"userHeader": "x-forwarded-user"}, "mode": "trusted-proxy"}}})
    );
}

#[test]
fn auth_can_be_set_up_one_key_at_a_time() {
    let s = State::new();
    // Password mode without a password yet is not a reason to refuse.
    s.cmd(&["set", "gateway.auth.mode", "password"]).success();
    let out = s.cmd(&["set", "gateway.auth.password", PASSWORD]).success();
    assert_no_secret(out.get_output());
    assert_eq!(
        s.doc(),
        json!({"gateway": {"auth": {"mode": "password", "password": PASSWORD}}})
    );
}

#[test]
fn numeric_looking_token_stays_a_string() {
    let s = State::new();
    s.cmd(&["set", "gateway.auth.token", "1234567890"])
        .success();
    assert_eq!(s.doc()["gateway"]["auth"]["token"], json!("1234567890"));
}

#[test]
fn set_writes_a_private_file_in_a_private_dir() {
    let parent = tempfile::tempdir().unwrap();
    let state_dir = parent.path().join("fresh-state");
    Command::cargo_bin("clawgate")
        .unwrap()
        .arg("--state-dir")
        .arg(&state_dir)
        .args(["config", "set", "gateway.auth.token", TOKEN])
        .assert()
        .success();
    let file = state_dir.join("clawgate.json");
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&state_dir), 0o700);

    // An existing world-readable file becomes private on the next write.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    Command::cargo_bin("clawgate")
        .unwrap()
        .arg("--state-dir")
        .arg(&state_dir)
        .args(["config", "set", "gateway.port", "19002"])
        .assert()
        .success();
    assert_eq!(mode(&file), 0o600);
}

#[test]
fn unknown_keys_survive_a_set() {
    let s = State::new();
    s.write("{ agents: { defaults: { model: 'a/b' } }, /* c */ gateway: { port: 18790 } }");
    s.cmd(&["set", "gateway.bind", "loopback"]).success();
    assert_eq!(
        s.doc(),
        json!({"agents": {"defaults": {"model": "a/b"}}, "gateway": {"port": 18790, "bind": "loopback"}})
    );
}

#[test]
fn bad_json5_is_reported_with_the_path_and_left_alone() {
    let s = State::new();
    let broken = "{ gateway: { port: 1 ";
    s.write(broken);
    let path = s.config_path().display().to_string();
    s.cmd(&["get", "gateway.port"])
        .code(1)
        .stderr(predicate::str::contains(path.clone()));
    s.cmd(&["set", "gateway.port", "2"])
        .code(1)
        .stderr(predicate::str::contains(path));
    s.cmd(&["unset", "gateway.port"]).code(1);
    assert_eq!(std::fs::read_to_string(s.config_path()).unwrap(), broken);
}

#[test]
fn explicit_config_path_is_used() {
    let s = State::new();
    let other = s.dir.path().join("openclaw.json");
    std::fs::write(&other, "{ gateway: { port: 18790 } }").unwrap();
    Command::cargo_bin("clawgate")
        .unwrap()
        .arg("--config")
        .arg(&other)
        .args(["config", "get", "gateway.port"])
        .assert()
        .success()
        .stdout("18790\n");
}

// ---- a real, commented openclaw.json passed with --config ----

const FIXTURE: &str = include_str!("fixtures/openclaw.json");
const NEW_TOKEN: &str = "cli-fixture-new-token-7d21";

/// `clawgate --config <path> config <args>`, with `env` set.
fn with_config(path: &Path, env: &[(&str, &str)], args: &[&str]) -> assert_cmd::assert::Assert {
    let mut cmd = Command::cargo_bin("clawgate").unwrap();
    for var in [
        "CLAWGATE_STATE_DIR",
        "CLAWGATE_GATEWAY_TOKEN",
        "OPENCLAW_GATEWAY_TOKEN",
        "CLAWGATE_GATEWAY_PASSWORD",
        "OPENCLAW_GATEWAY_PASSWORD",
        "CLAWGATE_PORT",
        "OPENCLAW_GATEWAY_PORT",
        "CLAWGATE_BIND",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    // The state dir beside the config, so nothing reaches ~/.clawgate.
    cmd.arg("--state-dir")
        .arg(path.parent().unwrap().join("state"))
        .arg("--config")
        .arg(path)
        .arg("config")
        .args(args)
        .assert()
}

/// The fixture copied into a temp dir: (guard, path).
fn fixture_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openclaw.json");
    std::fs::write(&path, FIXTURE).unwrap();
    (dir, path)
}

#[test]
fn edits_change_only_their_own_spans_of_a_commented_openclaw_json() {
    let (_dir, path) = fixture_copy();
    let text = || std::fs::read_to_string(&path).unwrap();
    let mut expected = FIXTURE.to_string();
    let mut expect = |from: &str, to: &str| {
        assert_eq!(expected.matches(from).count(), 1, "{from}");
        expected = expected.replace(from, to);
        expected.clone()
    };

    with_config(&path, &[], &["set", "gateway.port", "18800"])
        .success()
        .stdout("Updated gateway.port. Restart the gateway to apply.\n");
    assert_eq!(text(), expect("    port: 18789, //", "    port: 18800, //"));

    // The secret is written in the file's quoting style and never echoed.
    let out = with_config(&path, &[], &["set", "gateway.auth.token", NEW_TOKEN]).success();
    let shown = format!("{:?}", out.get_output());
    assert!(!shown.contains(NEW_TOKEN), "{shown}");
    assert_eq!(
        text(),
        expect(
            "token: 'f3c1e9a07b5d42e8a6c0d9b1e7f24a58', //",
            &format!("token: '{NEW_TOKEN}', //")
        )
    );

    // A new key goes last among the properties, before the object's
    // closing comment, with the siblings' indentation, key style and quotes.
    with_config(&path, &[], &["set", "gateway.controlUi.basePath", "/ui/"]).success();
    assert_eq!(
        text(),
        expect(
            "      enabled: true,\n      // allowedOrigins",
            "      enabled: true,\n      basePath: '/ui/',\n      // allowedOrigins"
        )
    );

    // A new nested object at the end of its parent.
    with_config(
        &path,
        &[],
        &["set", "gateway.nodes.pairing.autoApproveLocal", "false"],
    )
    .success();
    assert_eq!(
        text(),
        expect(
            "    trustedProxies: ['127.0.0.1'], // the local Caddy\n  },",
            "    trustedProxies: ['127.0.0.1'], // the local Caddy\n    nodes: {\n      pairing: {\n        autoApproveLocal: false,\n      },\n    },\n  },"
        )
    );

    // Unset takes the property, its comma and its same-line comment.
    with_config(&path, &[], &["unset", "gateway.trustedProxies"])
        .success()
        .stdout("Removed gateway.trustedProxies.\n");
    assert_eq!(
        text(),
        expect(
            "    trustedProxies: ['127.0.0.1'], // the local Caddy\n",
            ""
        )
    );
    with_config(&path, &[], &["unset", "channels.whatsapp"]).success();
    assert_eq!(
        text(),
        expect(
            "    whatsapp: { allowFrom: ['+15555550123'] }, // my phone\n",
            ""
        )
    );

    // Reads agree with the text.
    with_config(&path, &[], &["get", "gateway.port"])
        .success()
        .stdout("18800\n");
    with_config(&path, &[], &["get", "gateway.auth.token"])
        .success()
        .stdout(format!("{NEW_TOKEN}\n"));
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn a_refused_set_leaves_the_commented_file_byte_identical() {
    let (_dir, path) = fixture_copy();
    with_config(&path, &[], &["set", "gateway.port", "70000"])
        .code(1)
        .stderr(predicate::str::contains("gateway.port"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), FIXTURE);
}

#[test]
fn first_run_into_a_commented_config_keeps_its_comments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openclaw.json");
    let original = "// my gateway, no auth yet\n{\n  gateway: {\n    port: 18789, // default\n  },\n  agents: {}, /* none yet */\n}\n";
    std::fs::write(&path, original).unwrap();
    let config = path.to_str().unwrap();
    let state = dir.path().join("state");
    let running = common::start(&state, &["--config", config], &[]);
    drop(running);
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: Value = json5::from_str(&text).unwrap();
    let token = doc["gateway"]["auth"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        text,
        original.replace(
            "    port: 18789, // default\n  },",
            &format!("    port: 18789, // default\n    auth: {{\n      mode: \"token\",\n      token: \"{token}\",\n    }},\n  }},")
        )
    );
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn get_shows_an_environment_override_with_its_source() {
    let (_dir, path) = fixture_copy();
    let port = ["get", "gateway.port"];
    with_config(&path, &[], &port).success().stdout("18789\n");
    with_config(&path, &[("CLAWGATE_PORT", "18790")], &port)
        .success()
        .stdout("18790 (from CLAWGATE_PORT; the file says 18789)\n");
    with_config(&path, &[("OPENCLAW_GATEWAY_PORT", "18791")], &port)
        .success()
        .stdout("18791 (from OPENCLAW_GATEWAY_PORT; the file says 18789)\n");
    with_config(
        &path,
        &[
            ("OPENCLAW_GATEWAY_PORT", "18791"),
            ("CLAWGATE_PORT", "18790"),
        ],
        &["get", "gateway.port", "--json"],
    )
    .success()
    .stdout("18790\n")
    .stderr("note: from CLAWGATE_PORT; the file says 18789\n");
    with_config(&path, &[("CLAWGATE_BIND", "lan")], &["get", "gateway.bind"])
        .success()
        .stdout("lan (from CLAWGATE_BIND; the file says loopback)\n");

    let s = State::new();
    s.cmd(&["set", "gateway.bind", "lan"]).success();
    with_config(&s.config_path(), &[("CLAWGATE_PORT", "18790")], &port)
        .success()
        .stdout("18790 (from CLAWGATE_PORT; not set in the file)\n");
}

#[test]
fn a_bad_port_in_the_environment_is_one_line_naming_the_variable() {
    let (_dir, path) = fixture_copy();
    with_config(&path, &[("CLAWGATE_PORT", "eighty")], &["get", "gateway.port"])
        .code(1)
        .stdout("")
        .stderr(
            "error: CLAWGATE_PORT: must be a whole number from 1 to 65535 (found \"eighty\"); fix it with: export CLAWGATE_PORT=18789 (or unset it)\n",
        );
    // The gateway refuses to start with the same words.
    let out = common::bin()
        .arg("--state-dir")
        .arg(path.parent().unwrap().join("state"))
        .arg("--config")
        .arg(&path)
        .args(["gateway", "run"])
        .env("CLAWGATE_PORT", "eighty")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: refusing to start: CLAWGATE_PORT: must be a whole number"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), FIXTURE);
}

/// Hints name the command the user can run: `clawgate` when PATH finds this
/// binary, its path otherwise (a fresh build, `cargo run`).
#[test]
fn hints_name_the_binary_the_user_can_run() {
    let s = State::new();
    let bin = assert_cmd::cargo::cargo_bin("clawgate");
    let hint = |path: &std::ffi::OsStr| {
        let out = Command::new(&bin)
            .env("PATH", path)
            .arg("--state-dir")
            .arg(s.dir.path())
            .args(["config", "get", "gateway.port"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8(out.stderr).unwrap()
    };
    let installed = hint(&path_with_clawgate());
    assert!(
        installed.contains("Set it with: clawgate config set gateway.port"),
        "{installed}"
    );
    let not_on_path = hint(std::ffi::OsStr::new("/usr/bin:/bin"));
    let expected = format!(
        "Set it with: {} config set gateway.port",
        bin.canonicalize().unwrap().display()
    );
    assert!(not_on_path.contains(&expected), "{not_on_path}");
}
