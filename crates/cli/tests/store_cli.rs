//! `clawgate store migrate` and `clawgate doctor --store` with the real
//! binary against a real PostgreSQL (the cluster `scripts/test.sh` starts;
//! without CLAWGATE_TEST_PG_URL these tests fail loudly): a registry a real
//! gateway wrote is copied, checked, refused a second time, and served by
//! `gateway run --store` to the devices paired before the move. No output
//! ever holds the PostgreSQL password.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "store-cli-token-7c6d5e";
const DB: &str = clawgate_store::DB_FILE_NAME;

/// A state directory whose gateway asks the operator to approve every
/// device (so pairing writes pending requests and audit rows).
fn state_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("clawgate.json"),
        format!(r#"{{"gateway": {{"auth": {{"token": "{TOKEN}"}}, "nodes": {{"pairing": {{"autoApproveLocal": false}}}}}}}}"#),
    )
    .unwrap();
    dir
}

/// Starts the gateway and points the CLI's config at its port.
fn start_gateway(state: &Path, extra: &[&str], env: &[(&str, &str)]) -> Running {
    let r = start(state, extra, env);
    let path = state.join("clawgate.json");
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    doc["gateway"]["port"] = json!(r.port);
    std::fs::write(&path, doc.to_string()).unwrap();
    r
}

/// Connects `d` with `auth` (`{"token": ..}` or `{"deviceToken": ..}`) and
/// returns the connect response.
async fn connect(port: u16, d: &Identity, auth: Value) -> Value {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/"))
        .await
        .unwrap();
    let ch: Value =
        serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    let nonce = ch["payload"]["nonce"].as_str().unwrap();
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let scopes = vec!["operator.read".to_string()];
    let presented = auth["token"]
        .as_str()
        .or(auth["deviceToken"].as_str())
        .unwrap()
        .to_string();
    let params = json!({"minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "cli", "version": "1", "platform": "linux", "mode": "cli"},
        "scopes": scopes, "auth": auth,
        "device": d.cli_operator_proof(&scopes, &presented, nonce, ts)});
    ws.send(Message::Text(
        json!({"type": "req", "id": "c", "method": "connect", "params": params})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap()
}

/// Pairs `d` the operator's way (request, `clawgate devices approve`,
/// connect again) and returns its device token.
fn pair(rt: &tokio::runtime::Runtime, state: &Path, port: u16, d: &Identity) -> String {
    let res = rt.block_on(connect(port, d, json!({"token": TOKEN})));
    let rid = res["error"]["details"]["requestId"]
        .as_str()
        .unwrap_or_else(|| panic!("no pairing request: {res}"))
        .to_string();
    let (code, out, err) = clawgate(state, &["devices", "approve", &rid]);
    assert_eq!(code, 0, "{out}{err}");
    let res = rt.block_on(connect(port, d, json!({"token": TOKEN})));
    res["payload"]["auth"]["deviceToken"]
        .as_str()
        .unwrap_or_else(|| panic!("no device token: {res}"))
        .to_string()
}

/// A fresh database on the test cluster: its URL (no password), the
/// password file and the password.
fn fresh_pg(prefix: &str) -> (String, PathBuf, String) {
    let (url, file) = clawgate_store::testing::fresh_database(prefix);
    let file = file.expect("the test cluster's password file (CLAWGATE_TEST_PG_PASSWORD_FILE)");
    let password = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert!(password.len() >= 8, "a test password worth looking for");
    (url, file, password)
}

/// `url` with `password` in it: postgres://USER:PASSWORD@...
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user, rest) = rest.split_once('@').unwrap();
    format!("{scheme}://{user}:{password}@{rest}")
}

/// Runs `clawgate --state-dir <state> <args>` with `env` and no store
/// settings inherited: (exit code, stdout, stderr).
fn run(state: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = bin();
    for var in [
        "CLAWGATE_STORE_URL",
        "CLAWGATE_STORE_PASSWORD_FILE",
        "PGPASSFILE",
    ] {
        cmd.env_remove(var);
    }
    // No ~/.pgpass of the machine running the tests.
    cmd.env("HOME", state);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Waits until the gateway on `port` answers `/readyz` with 200: a replica
/// on a shared registry refuses device tokens (UNAVAILABLE) until its
/// change follower is in place.
fn wait_ready(port: u16) {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s
                .write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            last.clear();
            let _ = s.read_to_string(&mut last);
            if last.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the gateway on {port} never became ready: {last}");
}

fn one_line(err: &str) -> &str {
    let line = err.trim_end();
    assert!(
        line.starts_with("error: ") && !line.contains('\n'),
        "not one line: {err:?}"
    );
    line
}

fn store_check(doctor_json: &str) -> Value {
    let v: Value =
        serde_json::from_str(doctor_json).unwrap_or_else(|e| panic!("{e}: {doctor_json}"));
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Store")
        .unwrap_or_else(|| panic!("no Store check: {v}"))
        .clone()
}

#[test]
fn a_served_registry_moves_to_postgres_and_its_devices_keep_connecting() {
    let (url, password_file, password) = fresh_pg("storecli_move");
    let pw_file = password_file.to_str().unwrap();
    let secret_url = with_password(&url, &password);
    let dir = state_dir();
    let state = dir.path();
    let rt = tokio::runtime::Runtime::new().unwrap();

    // A registry written by a real gateway: two paired devices, one
    // pending request, their audit rows.
    let r = start_gateway(state, &[], &[]);
    let a = Identity::random();
    let b = Identity::random();
    let c = Identity::random();
    let token_a = pair(&rt, state, r.port, &a);
    let token_b = pair(&rt, state, r.port, &b);
    let res = rt.block_on(connect(r.port, &c, json!({"token": TOKEN})));
    assert_eq!(res["ok"], false, "C must wait for approval: {res}");

    // Refused while the gateway runs on the source: a change it made during
    // the copy would be lost.
    let (code, out, err) = run(state, &["store", "migrate", "--to", &secret_url], &[]);
    assert_eq!(code, 1, "{out}{err}");
    let line = one_line(&err);
    assert!(line.contains("nothing copied"), "{line}");
    assert!(line.contains("running clawgate gateway"), "{line}");
    assert!(line.contains("clawgate store migrate"), "{line}");
    assert!(
        !err.contains(&password) && !out.contains(&password),
        "{out}{err}"
    );
    let (_, stderr) = stop(r);
    assert!(!stderr.contains(&password));

    let source = clawgate_store::check_database(&state.join(DB)).unwrap();
    assert!(source.ok(), "{:?}", source.violations);
    assert_eq!((source.devices, source.pending), (2, 1));
    assert!(source.audit.rows >= 4, "{}", source.audit.rows);

    // The copy: --from defaults to the state directory's database; the
    // password is in the URL, and is printed nowhere.
    let (code, out, err) = run(state, &["store", "migrate", "--to", &secret_url], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !out.contains(&password) && !err.contains(&password),
        "{out}{err}"
    );
    assert!(out.contains("2 devices"), "{out}");
    assert!(
        out.contains(&format!("{} role tokens", source.role_tokens)),
        "{out}"
    );
    assert!(
        out.contains(&format!("{} token hashes", source.token_hashes)),
        "{out}"
    );
    assert!(out.contains("1 pending request,"), "{out}");
    assert!(out.contains("0 setup codes"), "{out}");
    assert!(
        out.contains(&format!("{} audit rows", source.audit.rows)),
        "{out}"
    );
    assert!(out.contains("verifies to the same head "), "{out}");
    assert!(
        out.contains(&format!("clawgate config set gateway.store.url {url}\n")),
        "the URL without its password: {out}"
    );
    assert!(
        out.contains("clawgate config set gateway.store.passwordFile <file"),
        "{out}"
    );
    assert!(out.contains("clawgate gateway run"), "{out}");
    // The source is only read.
    let after = clawgate_store::check_database(&state.join(DB)).unwrap();
    assert_eq!(after.audit.rows, source.audit.rows);

    // A second copy into the same database is refused, in text and JSON.
    let (code, out, err) = run(
        state,
        &["store", "migrate", "--to", &url, "--password-file", pw_file],
        &[],
    );
    assert_eq!(code, 1, "{out}{err}");
    let line = one_line(&err);
    assert!(line.contains("already holds a registry"), "{line}");
    assert!(line.contains("empty database"), "{line}");
    assert!(!err.contains(&password));
    let (code, out, _) = run(
        state,
        &["store", "migrate", "--to", &url, "--json"],
        &[("CLAWGATE_STORE_PASSWORD_FILE", pw_file)],
    );
    assert_eq!(code, 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already holds a registry"),
        "{v}"
    );

    // doctor --store, with no gateway running: the Store check reads the
    // PostgreSQL copy (the Gateway check fails, the gateway is stopped).
    let (_, out, err) = run(state, &["doctor", "--json", "--store", &secret_url], &[]);
    assert!(
        !out.contains(&password) && !err.contains(&password),
        "{out}{err}"
    );
    let check = store_check(&out);
    assert_eq!(check["ok"], true, "{check}");
    let detail = check["detail"].as_str().unwrap();
    assert!(detail.contains("PostgreSQL"), "{detail}");
    assert!(detail.contains("2 paired devices"), "{detail}");
    assert!(detail.contains("1 pending requests"), "{detail}");
    assert!(
        detail.contains(&format!(
            "audit chain of {} rows verifies",
            source.audit.rows
        )),
        "{detail}"
    );

    // The gateway on the PostgreSQL copy: tokens issued before the move
    // still connect.
    let env = [("CLAWGATE_STORE_PASSWORD_FILE", pw_file)];
    let r = start_gateway(state, &["--store", &url], &env);
    wait_ready(r.port);
    let res = rt.block_on(connect(r.port, &a, json!({"deviceToken": token_a})));
    assert_eq!(res["ok"], true, "A's token from before the move: {res}");
    let res = rt.block_on(connect(r.port, &b, json!({"deviceToken": token_b})));
    assert_eq!(res["ok"], true, "B's token from before the move: {res}");
    let res = rt.block_on(connect(
        r.port,
        &a,
        json!({"deviceToken": "not-a-token-this-gateway-issued"}),
    ));
    assert_eq!(res["ok"], false, "{res}");

    // doctor while it runs, the store named by CLAWGATE_STORE_URL this time:
    // every check passes, the store's among them.
    let (code, out, err) = run(
        state,
        &["doctor"],
        &[
            ("CLAWGATE_STORE_URL", &url),
            ("CLAWGATE_STORE_PASSWORD_FILE", pw_file),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("[ok  ] Store: PostgreSQL "), "{out}");
    assert!(out.contains("every invariant holds"), "{out}");
    assert!(out.contains("All checks passed."), "{out}");
    let (code, _) = stop(r);
    assert_eq!(code, 0);

    // SQLite stays what doctor checks when no store URL is named.
    let (_, out, _) = run(state, &["doctor", "--json"], &[]);
    let check = store_check(&out);
    assert_eq!(check["ok"], true, "{check}");
    assert!(check["detail"].as_str().unwrap().contains(DB), "{check}");
}

#[test]
fn migrate_errors_are_one_line_and_never_show_the_password() {
    let (url, _password_file, password) = fresh_pg("storecli_errors");
    let dir = state_dir();
    let state = dir.path();
    // A sound (empty) registry made by the store itself, outside any state
    // directory.
    let files = tempfile::tempdir().unwrap();
    let source = files.path().join("registry.sqlite");
    drop(clawgate_store::Store::open(&source).unwrap());
    let from = source.to_str().unwrap();
    let host = url.split('@').nth(1).unwrap();
    let user = url.split("://").nth(1).unwrap().split('@').next().unwrap();

    let wrong = format!("postgres://{user}:wrong-pw-8812kq@{host}");
    let unreachable = "postgres://clawgate:unreach-pw-5531zx@127.0.0.1:1/clawgate";
    let bad_port = "postgres://clawgate:badport-pw-7731yy@127.0.0.1:notaport/clawgate";
    let no_user = "postgres://127.0.0.1:5432/clawgate?password=nouser-pw-1122ab";
    let cases: [(&str, &str, &[&str]); 4] = [
        (
            &wrong,
            "wrong-pw-8812kq",
            &["password authentication failed"],
        ),
        (
            unreachable,
            "unreach-pw-5531zx",
            &["unreachable", "127.0.0.1:1/clawgate"],
        ),
        (
            bad_port,
            "badport-pw-7731yy",
            &["postgres://USER@HOST:5432/DB"],
        ),
        (no_user, "nouser-pw-1122ab", &["names no user"]),
    ];
    for (to, secret, says) in cases {
        let (code, out, err) = run(
            state,
            &["store", "migrate", "--from", from, "--to", to],
            &[],
        );
        assert_eq!(code, 1, "{to}: {out}{err}");
        let line = one_line(&err);
        assert!(line.starts_with("error: nothing copied: "), "{line}");
        for s in says {
            assert!(line.contains(s), "{to}: {line}");
        }
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "{to}: {out}{err}"
        );
        assert!(!err.contains(&password));
    }

    // The right password from a file, but the source is missing, or not a
    // database at all.
    let pw = files.path().join("pw");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    let pw = pw.to_str().unwrap();
    let missing = files.path().join("missing.sqlite");
    let garbage = files.path().join("garbage.sqlite");
    std::fs::write(&garbage, b"this is not a SQLite database, not at all").unwrap();
    for (from, says) in [
        (missing.to_str().unwrap(), "no SQLite registry at"),
        (garbage.to_str().unwrap(), "garbage.sqlite"),
    ] {
        let (code, out, err) = run(
            state,
            &[
                "store",
                "migrate",
                "--from",
                from,
                "--to",
                &url,
                "--password-file",
                pw,
            ],
            &[],
        );
        assert_eq!(code, 1, "{out}{err}");
        let line = one_line(&err);
        assert!(line.contains(says), "{line}");
        assert!(!err.contains(&password) && !out.contains(&password));
    }

    // JSON errors are JSON, on stdout.
    let (code, out, _) = run(
        state,
        &[
            "store",
            "migrate",
            "--from",
            from,
            "--to",
            unreachable,
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert!(!out.contains("unreach-pw-5531zx"), "{out}");

    // doctor on a store it cannot reach: the Store check fails, names the
    // place and not the password.
    let (code, out, err) = run(state, &["doctor", "--json", "--store", unreachable], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(!out.contains("unreach-pw-5531zx") && !err.contains("unreach-pw-5531zx"));
    let check = store_check(&out);
    assert_eq!(check["ok"], false, "{check}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:1/clawgate"),
        "{check}"
    );

    // And the empty registry copies fine into the fresh database.
    let (code, out, err) = run(
        state,
        &[
            "store",
            "migrate",
            "--from",
            from,
            "--to",
            &url,
            "--password-file",
            pw,
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["copied"]["devices"], 0, "{v}");
    assert_eq!(
        v["next"][0],
        format!("clawgate config set gateway.store.url {url}"),
        "{v}"
    );
    assert!(!out.contains(&password));
}

#[test]
fn doctor_changes_nothing_in_a_database_without_the_schema() {
    let dir = state_dir();
    let state = dir.path();
    let (url, file, _) = fresh_pg("doctor_empty");
    let file_env = file.to_str().unwrap();
    let env = [("CLAWGATE_STORE_PASSWORD_FILE", file_env)];
    let (code, out, err) = run(state, &["doctor", "--json", "--store", &url], &env);
    assert_eq!(code, 1, "{out}{err}");
    let check = store_check(&out);
    assert_eq!(check["ok"], false, "{check}");
    let detail = check["detail"].as_str().unwrap();
    assert!(
        detail.contains("schema version 0") && detail.contains("nothing was changed"),
        "{check}"
    );
    assert!(
        check["fix"]
            .as_str()
            .is_some_and(|f| f.contains("clawgate store migrate")),
        "{check}"
    );
    // Still no schema: a second look finds the same, and a replica would
    // create it.
    let (_, out, _) = run(state, &["doctor", "--json", "--store", &url], &env);
    assert!(
        store_check(&out)["detail"]
            .as_str()
            .unwrap()
            .contains("schema version 0"),
        "{out}"
    );
}
