//! The invariant checker and the crash-safety behaviour of `Store::open`,
//! against real SQLite files.

use std::path::{Path, PathBuf};

use clawgate_store::{
    AuditRecord, DB_FILE_NAME, Device, PendingRequest, RoleToken, Store, StoreError, TokenHash, Tx,
    check_database, hash_token,
};
use serde_json::{Value, json};
use tempfile::TempDir;

fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join(DB_FILE_NAME)
}

fn id(n: u64) -> String {
    format!("{n:064x}")
}

fn device(n: u64, scopes: &[&str]) -> Device {
    Device {
        device_id: id(n),
        public_key: format!("key-{n}"),
        display_name: None,
        operator_label: None,
        platform: Some("linux".into()),
        device_family: None,
        client_id: Some("cli".into()),
        client_mode: Some("cli".into()),
        browser_origin: None,
        roles: vec!["operator".into()],
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        remote_ip: None,
        approved_via: "owner".into(),
        created_at_ms: 1,
        approved_at_ms: 1,
        last_seen_at_ms: None,
        last_seen_reason: None,
    }
}

fn entry(n: u64, scopes: &[&str]) -> RoleToken {
    RoleToken {
        device_id: id(n),
        role: "operator".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        created_at_ms: 1,
        rotated_at_ms: None,
        revoked_at_ms: None,
        last_used_at_ms: None,
    }
}

fn hash(n: u64, token: &str, scopes: &[&str]) -> TokenHash {
    TokenHash {
        hash: hash_token(token),
        device_id: id(n),
        role: "operator".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        issued_at_ms: 2,
    }
}

fn audit(tx: &mut Tx<'_>, action: &str, n: u64, details: Value) {
    tx.append_audit(&AuditRecord {
        ts_ms: 5,
        action: action.into(),
        actor: json!({"kind": "session"}),
        device_id: Some(id(n)),
        details,
    })
    .unwrap();
}

/// What the gateway does on `device.pair.approve` and the connect after it.
fn approve(store: &Store, n: u64, token: &str) {
    let scopes = ["operator.read", "operator.pairing"];
    let request = format!("r{n}");
    store
        .transact(|tx| {
            tx.put_pending(&pending(&request, n))?;
            audit(tx, "pairing.requested", n, json!({"requestId": request}));
            Ok(())
        })
        .unwrap();
    store
        .transact(|tx| {
            tx.delete_pending(&request)?;
            tx.put_device(&device(n, &scopes))?;
            tx.put_role_token(&entry(n, &scopes))?;
            audit(
                tx,
                "pairing.approved",
                n,
                json!({"requestId": format!("r{n}"), "roles": ["operator"], "scopes": scopes}),
            );
            Ok(())
        })
        .unwrap();
    store
        .transact(|tx| tx.add_token_hash(&hash(n, token, &["operator.read"]), 8))
        .unwrap();
}

fn rules(store: &Store) -> Vec<&'static str> {
    let report = store.check_invariants().unwrap();
    assert_eq!(
        report.audit.ok,
        !report.violations.iter().any(|v| v.rule == "audit-chain")
    );
    report.violations.iter().map(|v| v.rule).collect()
}

#[test]
fn a_store_the_gateway_way_passes() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&db_path(&dir)).unwrap();
    let empty = store.check_invariants().unwrap();
    assert!(empty.ok(), "{:?}", empty.violations);
    approve(&store, 1, "t1");
    approve(&store, 2, "t2");
    // Revoke 2, remove 1: each with its audit row.
    store
        .transact(|tx| {
            tx.delete_token_hashes(&id(2), "operator")?;
            let mut e = entry(2, &["operator.read", "operator.pairing"]);
            e.revoked_at_ms = Some(9);
            tx.put_role_token(&e)?;
            audit(tx, "token.revoked", 2, json!({"role": "operator"}));
            tx.delete_device(&id(1))?;
            audit(tx, "device.removed", 1, json!({}));
            Ok(())
        })
        .unwrap();
    // A pending request with its row.
    store
        .transact(|tx| {
            tx.put_pending(&pending("r3", 3))?;
            audit(tx, "pairing.requested", 3, json!({"requestId": "r3"}));
            Ok(())
        })
        .unwrap();
    let report = store.check_invariants().unwrap();
    assert!(report.ok(), "{:?}", report.violations);
    assert_eq!(
        (
            report.devices,
            report.role_tokens,
            report.token_hashes,
            report.pending
        ),
        (1, 1, 0, 1)
    );
    assert_eq!(report.audit.rows, 7);
    // The same from outside, read-only, while the store is open.
    let outside = check_database(&db_path(&dir)).unwrap();
    assert_eq!(outside, report);
}

fn pending(request_id: &str, n: u64) -> PendingRequest {
    PendingRequest {
        request_id: request_id.into(),
        device_id: id(n),
        public_key: format!("key-{n}"),
        display_name: None,
        platform: None,
        device_family: None,
        client_id: None,
        client_mode: None,
        browser_origin: None,
        remote_ip: None,
        role: "operator".into(),
        roles: vec!["operator".into()],
        scopes: vec!["operator.read".into()],
        reason: "not-paired".into(),
        silent: false,
        is_repair: false,
        ts: 1,
        refreshed_at_ms: 1,
        pairing_code: None,
    }
}

#[test]
fn a_device_without_its_approval_row_is_found() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&db_path(&dir)).unwrap();
    store
        .transact(|tx| tx.put_device(&device(1, &["operator.read"])))
        .unwrap();
    assert_eq!(rules(&store), ["approval-audit"]);
}

#[test]
fn a_role_or_scope_no_approval_granted_is_found() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&db_path(&dir)).unwrap();
    approve(&store, 1, "t1");
    let mut d = device(1, &["operator.read", "operator.pairing", "operator.admin"]);
    d.roles.push("node".into());
    store.transact(|tx| tx.put_device(&d)).unwrap();
    assert_eq!(rules(&store), ["approval-audit", "approval-audit"]);
}

#[test]
fn an_approval_after_a_removal_must_come_again() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&db_path(&dir)).unwrap();
    approve(&store, 1, "t1");
    store
        .transact(|tx| {
            audit(tx, "device.removed", 1, json!({}));
            Ok(())
        })
        .unwrap();
    // The row says removed, the device is still there.
    assert_eq!(rules(&store), ["approval-audit"]);
}

#[test]
fn a_device_gone_without_its_removal_row_is_found() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&db_path(&dir)).unwrap();
    approve(&store, 1, "t1");
    store.transact(|tx| tx.delete_device(&id(1))).unwrap();
    assert_eq!(rules(&store), ["removal-audit"]);
}

#[test]
fn a_token_without_an_approved_role_is_found() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&db_path(&dir)).unwrap();
    approve(&store, 1, "t1");
    store
        .transact(|tx| {
            let mut node = entry(1, &[]);
            node.role = "node".into();
            tx.put_role_token(&node)?;
            let mut h = hash(1, "t-node", &[]);
            h.role = "node".into();
            tx.add_token_hash(&h, 8)
        })
        .unwrap();
    assert_eq!(rules(&store), ["token-role", "token-role"]);
}

#[test]
fn a_token_hash_without_its_entry_is_found() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&db_path(&dir)).unwrap();
    approve(&store, 1, "t1");
    store
        .transact(|tx| {
            let mut h = hash(1, "t-node", &[]);
            h.role = "node".into();
            tx.add_token_hash(&h, 8)
        })
        .unwrap();
    assert_eq!(rules(&store), ["token-role", "token-role"]);
}

#[test]
fn scopes_beyond_the_approval_are_found() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&db_path(&dir)).unwrap();
    approve(&store, 1, "t1");
    store
        .transact(|tx| {
            tx.put_role_token(&entry(1, &["operator.read", "operator.write"]))?;
            tx.add_token_hash(&hash(1, "t-wide", &["operator.admin"]), 8)
        })
        .unwrap();
    assert_eq!(rules(&store), ["token-scope", "token-scope"]);
    // Implied scopes are within: admin approved covers write.
    let dir = TempDir::new().unwrap();
    let store = Store::open(&db_path(&dir)).unwrap();
    store
        .transact(|tx| {
            tx.put_device(&device(1, &["operator.admin"]))?;
            tx.put_role_token(&entry(
                1,
                &["operator.admin", "operator.read", "operator.write"],
            ))?;
            audit(
                tx,
                "pairing.silent_approved",
                1,
                json!({"role": "operator", "scopes": ["operator.admin"]}),
            );
            Ok(())
        })
        .unwrap();
    assert!(rules(&store).is_empty());
}

#[test]
fn a_revocation_is_checked_both_ways() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&db_path(&dir)).unwrap();
    approve(&store, 1, "t1");
    // Revoked without its audit row, and its token still valid.
    store
        .transact(|tx| {
            let mut e = entry(1, &["operator.read"]);
            e.revoked_at_ms = Some(9);
            tx.put_role_token(&e)
        })
        .unwrap();
    assert_eq!(rules(&store), ["revocation", "revocation"]);
}

#[test]
fn pending_requests_are_checked_against_the_log() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&db_path(&dir)).unwrap();
    store
        .transact(|tx| tx.put_pending(&pending("r-no-row", 5)))
        .unwrap();
    assert_eq!(rules(&store), ["pending"]);

    let dir = TempDir::new().unwrap();
    let store = Store::open(&db_path(&dir)).unwrap();
    store
        .transact(|tx| {
            tx.put_pending(&pending("r1", 5))?;
            audit(tx, "pairing.requested", 5, json!({"requestId": "r1"}));
            audit(tx, "pairing.rejected", 5, json!({"requestId": "r1"}));
            Ok(())
        })
        .unwrap();
    assert_eq!(rules(&store), ["pending"]);

    let dir = TempDir::new().unwrap();
    let store = Store::open(&db_path(&dir)).unwrap();
    store
        .transact(|tx| {
            tx.put_pending(&pending("r1", 5))?;
            audit(tx, "pairing.requested", 5, json!({"requestId": "r1"}));
            audit(tx, "device.removed", 5, json!({}));
            Ok(())
        })
        .unwrap();
    assert_eq!(rules(&store), ["pending"]);
}

#[test]
fn an_approval_of_a_closed_request_is_found() {
    // What a stale read in an approve racing a reject (or a removal) leaves.
    let dir = TempDir::new().unwrap();
    let store = Store::open(&db_path(&dir)).unwrap();
    approve(&store, 1, "t1");
    store
        .transact(|tx| {
            tx.put_pending(&pending("r9", 2))?;
            audit(tx, "pairing.requested", 2, json!({"requestId": "r9"}));
            Ok(())
        })
        .unwrap();
    store
        .transact(|tx| {
            tx.delete_pending("r9")?;
            audit(tx, "pairing.rejected", 2, json!({"requestId": "r9"}));
            Ok(())
        })
        .unwrap();
    store
        .transact(|tx| {
            tx.put_device(&device(2, &["operator.read"]))?;
            audit(
                tx,
                "pairing.approved",
                2,
                json!({"requestId": "r9", "roles": ["operator"], "scopes": ["operator.read"]}),
            );
            Ok(())
        })
        .unwrap();
    let report = store.check_invariants().unwrap();
    assert_eq!(report.violations.len(), 1, "{:?}", report.violations);
    assert!(
        report.violations[0]
            .detail
            .contains("approves request r9, which was already closed by pairing.rejected"),
        "{:?}",
        report.violations
    );
    // And the other order: a rejection of a request already closed.
    store
        .transact(|tx| {
            audit(tx, "pairing.rejected", 2, json!({"requestId": "r9"}));
            Ok(())
        })
        .unwrap();
    let report = store.check_invariants().unwrap();
    assert_eq!(report.violations.len(), 2, "{:?}", report.violations);
    assert!(
        report.violations[1]
            .detail
            .contains("rejects request r9, which was already closed"),
        "{:?}",
        report.violations
    );
}

#[test]
fn a_broken_audit_chain_is_found() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&db_path(&dir)).unwrap();
    approve(&store, 1, "t1");
    approve(&store, 2, "t2");
    let raw = rusqlite::Connection::open(db_path(&dir)).unwrap();
    raw.execute_batch(
        "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET ts_ms = 6 WHERE seq = 1;",
    )
    .unwrap();
    let report = store.check_invariants().unwrap();
    assert_eq!(report.audit.first_bad_seq, Some(1));
    assert!(!report.audit.ok);
    assert!(
        report.violations.iter().any(|v| v.rule == "audit-chain"),
        "{:?}",
        report.violations
    );
}

#[test]
fn check_database_changes_nothing_and_creates_nothing() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("nothing-here.sqlite");
    let err = check_database(&missing).unwrap_err();
    assert!(err.to_string().contains("nothing-here.sqlite"), "{err}");
    assert!(!missing.exists());

    let path = db_path(&dir);
    {
        let store = Store::open(&path).unwrap();
        approve(&store, 1, "t1");
    }
    let before = std::fs::read(&path).unwrap();
    let report = check_database(&path).unwrap();
    assert!(report.ok(), "{:?}", report.violations);
    assert_eq!(report.devices, 1);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

/// Copies the database and its sidecars as they are on disk right now: what
/// a process killed at this moment leaves behind.
fn snapshot_files(from: &Path, to_dir: &Path) -> PathBuf {
    let to = to_dir.join(DB_FILE_NAME);
    for suffix in ["", "-wal", "-shm"] {
        let src = PathBuf::from(format!("{}{suffix}", from.display()));
        if src.exists() {
            std::fs::copy(&src, format!("{}{suffix}", to.display())).unwrap();
        }
    }
    to
}

#[test]
fn a_killed_process_leaves_a_wal_that_the_next_open_recovers() {
    let dir = TempDir::new().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).unwrap();
    for n in 1..=20 {
        approve(&store, n, &format!("t{n}"));
    }
    // Not closed: the commits are in the WAL, not yet in the main file.
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    let copy_dir = TempDir::new().unwrap();
    let copy = snapshot_files(&path, copy_dir.path());
    drop(store);

    let reopened = Store::open(&copy).unwrap();
    assert_eq!(reopened.devices().len(), 20);
    assert!(reopened.token_by_hash(&hash_token("t20")).is_some());
    let report = reopened.check_invariants().unwrap();
    assert!(report.ok(), "{:?}", report.violations);
    assert_eq!(report.audit.rows, 40);
}

fn damaged(err: StoreError, path: &Path) -> String {
    let text = err.to_string();
    assert!(matches!(err, StoreError::Damaged { .. }), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("mv "), "{text}");
    text
}

/// A store of `n` approved devices, closed cleanly (no WAL left).
fn closed_store(dir: &TempDir, n: u64) -> PathBuf {
    let path = db_path(dir);
    let store = Store::open(&path).unwrap();
    for i in 1..=n {
        approve(&store, i, &format!("t{i}"));
    }
    drop(store);
    assert!(!PathBuf::from(format!("{}-wal", path.display())).exists());
    path
}

#[test]
fn a_truncated_database_is_refused_and_left_as_it_is() {
    let dir = TempDir::new().unwrap();
    let path = closed_store(&dir, 200);
    let full = std::fs::read(&path).unwrap();
    assert!(full.len() > 8192, "{}", full.len());
    let cut = &full[..full.len() / 2];
    std::fs::write(&path, cut).unwrap();
    let text = damaged(Store::open(&path).unwrap_err(), &path);
    assert!(text.contains("truncated"), "{text}");
    assert_eq!(std::fs::read(&path).unwrap(), cut);
}

#[test]
fn a_database_with_a_bad_header_is_refused_and_left_as_it_is() {
    let dir = TempDir::new().unwrap();
    let path = closed_store(&dir, 3);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..16].copy_from_slice(b"not a database!!");
    std::fs::write(&path, &bytes).unwrap();
    damaged(Store::open(&path).unwrap_err(), &path);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);

    // Shorter than a header.
    std::fs::write(&path, b"SQLite").unwrap();
    damaged(Store::open(&path).unwrap_err(), &path);
    assert_eq!(std::fs::read(&path).unwrap(), b"SQLite");
}

#[test]
fn damaged_pages_are_refused_at_open_and_found_by_the_checker() {
    let dir = TempDir::new().unwrap();
    let path = closed_store(&dir, 200);
    let mut bytes = std::fs::read(&path).unwrap();
    let page = 4096;
    // Overwrite every page but the first (the schema) with noise.
    for (i, b) in bytes.iter_mut().enumerate().skip(page) {
        *b = (i % 251) as u8;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = Store::open(&path).unwrap_err();
    damaged(err, &path);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let report = check_database(&path).unwrap();
    assert!(
        report.violations.iter().any(|v| v.rule == "integrity"),
        "{:?}",
        report.violations
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}
