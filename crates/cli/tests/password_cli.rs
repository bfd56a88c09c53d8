//! Issue 22 with the real binary: a weak password is refused at start on a
//! LAN bind and warned about on loopback; `gateway set-password` stores
//! only an Argon2id hash (comments kept, the plain password removed) that
//! the gateway then verifies; the password never shows in the file, the
//! logs or `config get`.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;
use serde_json::{Value, json};

const WEAK: &str = "hunter22";
const STRONG: &str = "tusk-Marble-quietly-47-orbit";

async fn connect_password(port: u16, password: &str) -> Value {
    connect_raw(port, json!({"password": password}), &["operator.read"]).await
}

fn set_password_stdin(state: &std::path::Path, password: &str) -> (i32, String, String) {
    let mut child = bin()
        .arg("--state-dir")
        .arg(state)
        .args(["gateway", "set-password", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_weak_password_is_refused_on_a_lan_bind_and_warned_about_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = clawgate(
        dir.path(),
        &[
            "gateway", "run", "--port", "0", "--bind", "lan", "--auth", "password",
        ],
    );
    // No password at all: the missing-secret refusal names set-password.
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("clawgate gateway set-password"), "{err}");

    let mut cmd = bin();
    let out = cmd
        .arg("--state-dir")
        .arg(dir.path())
        .args([
            "gateway", "run", "--port", "0", "--bind", "lan", "--auth", "password",
        ])
        .env("CLAWGATE_GATEWAY_PASSWORD", WEAK)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("zxcvbn score"), "{err}");
    assert!(
        err.contains("clawgate gateway set-password --generate"),
        "{err}"
    );
    assert!(err.contains("openssl rand -base64 24"), "{err}");
    assert!(!err.contains(WEAK), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(WEAK));

    // On loopback it starts, with the warnings (weak, and plain text).
    let r = start(
        dir.path(),
        &["--auth", "password"],
        &[("CLAWGATE_GATEWAY_PASSWORD", WEAK)],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(connect_password(r.port, WEAK))["ok"], true);
    let stdout = r.stdout.clone();
    let (code, err) = stop(r);
    assert_eq!(code, 0);
    assert!(err.contains("zxcvbn score"), "{err}");
    assert!(err.contains("clawgate gateway set-password"), "{err}");
    assert!(!err.contains(WEAK), "{err}");
    assert!(!stdout.contains(WEAK), "{stdout}");

    // `config set` applies the same check: refused on a LAN bind.
    let (code, _, _) = clawgate(dir.path(), &["config", "set", "gateway.bind", "lan"]);
    assert_eq!(code, 0);
    let (code, out, err) = clawgate(
        dir.path(),
        &["config", "set", "gateway.auth.password", WEAK],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("zxcvbn score"), "{err}");
    assert!(!err.contains(WEAK) && !out.contains(WEAK), "{err}");
    let text = std::fs::read_to_string(dir.path().join("clawgate.json")).unwrap();
    assert!(!text.contains(WEAK), "{text}");
}

#[test]
fn set_password_stores_a_verifiable_hash_and_never_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("clawgate.json");
    std::fs::write(
        &config,
        format!(
            "// my gateway\n{{\n  gateway: {{\n    // kept\n    auth: {{ mode: \"password\", password: \"{WEAK}\" }},\n  }},\n}}\n"
        ),
    )
    .unwrap();
    // A weak one is refused on a LAN bind, accepted with a warning on loopback.
    let (code, _, _) = clawgate(dir.path(), &["config", "set", "gateway.bind", "lan"]);
    assert_eq!(code, 1, "the weak plain password blocks a LAN bind");
    let (code, out, err) = set_password_stdin(dir.path(), WEAK);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("warning") && err.contains("zxcvbn score"),
        "{err}"
    );

    let (code, out, err) = set_password_stdin(dir.path(), STRONG);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains(STRONG) && !err.contains(STRONG), "{out}{err}");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("// my gateway") && text.contains("// kept"),
        "{text}"
    );
    assert!(
        text.contains("passwordHash") && text.contains("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{text}"
    );
    assert!(!text.contains(STRONG) && !text.contains(WEAK), "{text}");
    assert!(
        !text.contains(" password:"),
        "the plain key is gone: {text}"
    );

    // `config get` never prints the hash without --show-secrets.
    let (code, out, _) = clawgate(dir.path(), &["config", "get", "gateway.auth.passwordHash"]);
    assert_eq!(code, 0);
    assert!(!out.contains("$argon2id"), "{out}");
    let (_, out, _) = clawgate(dir.path(), &["config", "get", "gateway.auth"]);
    assert!(!out.contains("$argon2id"), "{out}");
    let (_, out, _) = clawgate(dir.path(), &["config", "get", "gateway"]);
    assert!(!out.contains("$argon2id"), "{out}");

    // The hash is strong enough for a LAN bind now... but the test gateway
    // stays on loopback; it verifies the password and refuses a wrong one.
    let r = start(
        dir.path(),
        &["--log-format", "json"],
        &[("CLAWGATE_LOG", "debug")],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ok = rt.block_on(connect_password(r.port, STRONG));
    assert_eq!(ok["ok"], true, "{ok}");
    let bad = rt.block_on(connect_password(r.port, "wrong-guess-9d8c"));
    assert_eq!(
        bad["error"]["details"]["code"], "AUTH_PASSWORD_MISMATCH",
        "{bad}"
    );
    // The repeat login is served by the keyed-hash cache, same answer.
    assert_eq!(rt.block_on(connect_password(r.port, STRONG))["ok"], true);
    let stdout = r.stdout.clone();
    let (code, err) = stop(r);
    assert_eq!(code, 0);
    for secret in [STRONG, "wrong-guess-9d8c", "$argon2id"] {
        assert!(!err.contains(secret), "{secret} in the log: {err}");
        assert!(!stdout.contains(secret), "{secret} on stdout: {stdout}");
    }
    assert!(
        !err.contains("plain text"),
        "no plain-text warning with a hash: {err}"
    );
}
