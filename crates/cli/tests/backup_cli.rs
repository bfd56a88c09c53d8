//! `clawgate backup` and `clawgate restore` with the real binary against a
//! real gateway process, and the state directory lock that keeps a second
//! gateway (and a restore) off a state directory a gateway runs on.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "backup-cli-token-5a4b3c";
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
fn start_gateway(state: &Path) -> Running {
    let r = start(state, &[], &[]);
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

/// Every file in `dir` with its bytes, sorted by name; the gateway's WAL
/// index and the lock file (which only holds a pid) are left out.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_file())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(e.path()).unwrap();
            (name, bytes)
        })
        .filter(|(n, _)| !n.ends_with("-shm") && n != clawgate_store::LOCK_FILE_NAME)
        .collect();
    out.sort();
    out
}

fn names(dir: &Path) -> Vec<String> {
    files(dir).into_iter().map(|(n, _)| n).collect()
}

fn one_line(err: &str) -> &str {
    let line = err.trim_end();
    assert!(
        line.starts_with("error: ") && !line.contains('\n'),
        "not one line: {err:?}"
    );
    line
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn backup_while_serving_then_restore_after_stopping() {
    let dir = state_dir();
    let state = dir.path();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("registry.backup");
    let file_arg = file.to_str().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = start_gateway(state);

    let a = Identity::random();
    let token_a = pair(&rt, state, r.port, &a);

    // New devices keep asking to pair (a pending request and an audit row
    // each) while the backup runs.
    let stop_load = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop_load, requests, port) = (stop_load.clone(), requests.clone(), r.port);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            while !stop_load.load(Ordering::SeqCst) {
                let res = rt.block_on(connect(port, &Identity::random(), json!({"token": TOKEN})));
                assert!(res["error"]["details"]["requestId"].is_string(), "{res}");
                requests.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while requests.load(Ordering::SeqCst) < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = requests.load(Ordering::SeqCst);
    assert!(before >= 5, "the load did not start");
    let (code, stdout, err) = clawgate(state, &["backup", file_arg]);
    let during = requests.load(Ordering::SeqCst);
    stop_load.store(true, Ordering::SeqCst);
    load.join().unwrap();
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(
        stdout.contains(&format!("Wrote {file_arg}"))
            && stdout.contains("1 paired device,")
            && stdout.contains(&format!(
                "schema version {}",
                clawgate_store::SCHEMA_VERSION
            ))
            && stdout.contains("audit chain of")
            && stdout.contains("Not in the backup: the config file"),
        "{stdout}"
    );
    assert_eq!(mode(&file), 0o600);

    // The backup opens on its own and has the rows of one moment: the
    // paired device, the requests made before it started, every audit row
    // chained.
    let report = clawgate_store::check_database(&file).unwrap();
    assert!(report.ok(), "{:?}", report.violations);
    assert_eq!(report.devices, 1);
    assert!(
        report.pending >= before && report.pending <= during,
        "{} pending, {before}..{during} requested",
        report.pending
    );
    assert!(report.audit.rows >= 2 + before as u64, "{report:?}");
    let bytes = std::fs::read(&file).unwrap();
    let hash = clawgate_protocol::hex::encode(&clawgate_store::hash_token(&token_a));
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains(&hash), "the backup has the token's hash");
    assert!(!text.contains(&token_a) && !stdout.contains(&hash) && !err.contains(&hash));

    // Never over an existing file unless asked.
    let other = out.path().join("other");
    std::fs::write(&other, b"precious").unwrap();
    let (code, _, err) = clawgate(state, &["backup", other.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(one_line(&err).contains("--force"), "{err}");
    assert_eq!(std::fs::read(&other).unwrap(), b"precious");
    let (code, _, err) = clawgate(state, &["backup", "--force", other.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(clawgate_store::check_database(&other).unwrap().ok());

    // A device paired after the backup.
    let b = Identity::random();
    let token_b = pair(&rt, state, r.port, &b);

    // A second gateway on this state directory is refused.
    let mut second = bin()
        .arg("--state-dir")
        .arg(state)
        .args(["gateway", "run", "--port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = second.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second gateway started on the same state directory");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    let pid = r.child.id();
    let line = one_line(&err);
    assert!(
        line.contains(&format!("pid {pid}")) && line.contains(&format!("kill {pid}")),
        "{line}"
    );

    // Restore is refused while the gateway runs, and changes nothing.
    std::thread::sleep(Duration::from_millis(1500)); // let the once-a-second flush settle
    let untouched = files(state);
    let (code, _, err) = clawgate(state, &["restore", file_arg]);
    assert_eq!(code, 1);
    let line = one_line(&err);
    assert!(
        line.contains(&format!("pid {pid}")) && line.contains("clawgate restore"),
        "{line}"
    );
    assert_eq!(
        files(state),
        untouched,
        "restore changed the state directory"
    );

    let (code, stderr) = stop(r);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, err) = clawgate(state, &["restore", file_arg]);
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(
        stdout.contains("1 paired device,") && stdout.contains("previous database is kept as"),
        "{stdout}"
    );
    let kept: Vec<_> = names(state)
        .into_iter()
        .filter(|n| n.starts_with(&format!("{DB}.before-restore-")))
        .collect();
    assert_eq!(kept.len(), 1, "{:?}", names(state));
    assert!(stdout.contains(&kept[0]), "{stdout}");
    assert!(
        !names(state).iter().any(|n| n.starts_with('.')),
        "temp files left: {:?}",
        names(state)
    );
    assert_eq!(mode(&state.join(DB)), 0o600);
    // The kept database is the one that was replaced: it has device B.
    let previous = clawgate_store::check_database(&state.join(&kept[0])).unwrap();
    assert!(previous.ok(), "{:?}", previous.violations);
    assert_eq!(previous.devices, 2);

    // A gateway started afterwards serves the restored registry.
    let r = start_gateway(state);
    let res = rt.block_on(connect(r.port, &a, json!({"deviceToken": token_a})));
    assert_eq!(res["ok"], true, "A's token from before the backup: {res}");
    let res = rt.block_on(connect(r.port, &b, json!({"deviceToken": token_b})));
    assert_eq!(res["ok"], false, "B was paired after the backup: {res}");
    let (code, list, _) = clawgate(state, &["devices", "list", "--json"]);
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&list).unwrap();
    let paired: Vec<&str> = list["paired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["deviceId"].as_str().unwrap())
        .collect();
    assert_eq!(paired, [a.id.as_str()]);
    let (code, stderr) = stop(r);
    assert_eq!(code, 0, "{stderr}");
}

/// `clawgate restore --check FILE` and `clawgate restore FILE` on a bad
/// file: exit 1, one line naming what failed, the state directory as it was.
fn refused(state: &Path, file: &Path, expect: &str) {
    let before = files(state);
    for args in [vec!["restore", "--check"], vec!["restore"]] {
        let mut args = args.clone();
        args.push(file.to_str().unwrap());
        let (code, out, err) = clawgate(state, &args);
        assert_eq!(code, 1, "{args:?} {out}{err}");
        let line = one_line(&err);
        assert!(line.contains(expect), "{args:?}: {line}");
        assert!(line.contains(&file.display().to_string()), "{line}");
        assert_eq!(files(state), before, "{args:?} changed the state directory");
    }
}

#[test]
fn restore_refuses_files_that_are_not_good_clawgate_backups() {
    let dir = state_dir();
    let state = dir.path();
    let out = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = start_gateway(state);
    pair(&rt, state, r.port, &Identity::random());
    let good = out.path().join("good.sqlite");
    let (code, _, err) = clawgate(state, &["backup", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, stderr) = stop(r);
    assert_eq!(code, 0, "{stderr}");
    let variant = |name: &str, sql: &str| {
        let path = out.path().join(name);
        std::fs::copy(&good, &path).unwrap();
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
        path
    };

    let text = out.path().join("notes.txt");
    std::fs::write(&text, "not a database\n".repeat(20)).unwrap();
    refused(state, &text, "is not a SQLite database");

    let foreign = out.path().join("foreign.sqlite");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('x');")
        .unwrap();
    refused(state, &foreign, "not a clawgate one");

    let tampered = variant(
        "tampered.sqlite",
        "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET ts_ms = ts_ms + 1 WHERE seq = 1;",
    );
    refused(state, &tampered, "the audit chain does not verify");

    let newer = variant("newer.sqlite", "PRAGMA user_version = 7;");
    refused(
        state,
        &newer,
        "schema version 7, newer than this clawgate supports",
    );

    let (code, out_text, err) = clawgate(state, &["restore", "--check", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out_text.contains("can be restored"), "{out_text}");

    // The live registry itself edited by hand: doctor points at restore
    // (not at copying files), and restoring the good backup fixes it.
    rusqlite::Connection::open(state.join(DB))
        .unwrap()
        .execute_batch(
            "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET ts_ms = ts_ms + 1 WHERE seq = 1;",
        )
        .unwrap();
    let (_, report, _) = clawgate(state, &["doctor"]);
    let store_line = report
        .lines()
        .skip_while(|l| !l.contains("Store:"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        store_line.starts_with("[FAIL] Store:")
            && store_line.contains("clawgate restore <backup file>")
            && !store_line.contains("cp "),
        "{report}"
    );
    let (code, _, err) = clawgate(state, &["restore", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (_, report, _) = clawgate(state, &["doctor"]);
    assert!(report.contains("[ok  ] Store:"), "{report}");
}
