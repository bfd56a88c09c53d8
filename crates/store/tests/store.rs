//! The store against real SQLite files in temp dirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clawgate_store::{
    AuditQuery, AuditRecord, DB_FILE_NAME, Device, PendingRequest, RoleToken, Store, StoreError,
    TokenHash, hash_token,
};
use serde_json::json;
use tempfile::TempDir;

fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("state").join(DB_FILE_NAME)
}

fn open(dir: &TempDir) -> Store {
    Store::open(&db_path(dir)).expect("open store")
}

fn id(n: u64) -> String {
    format!("{n:064x}")
}

fn device(n: u64) -> Device {
    Device {
        device_id: id(n),
        public_key: format!("key-{n}"),
        display_name: Some(format!("device {n}")),
        operator_label: None,
        platform: Some("linux".into()),
        device_family: None,
        client_id: Some("cli".into()),
        client_mode: Some("cli".into()),
        browser_origin: None,
        roles: vec!["operator".into()],
        scopes: vec!["operator.read".into(), "operator.write".into()],
        remote_ip: Some("10.0.0.7".into()),
        approved_via: "owner".into(),
        created_at_ms: 1000 + n,
        approved_at_ms: 2000 + n,
        last_seen_at_ms: None,
        last_seen_reason: None,
    }
}

fn role_token(n: u64, role: &str) -> RoleToken {
    RoleToken {
        device_id: id(n),
        role: role.into(),
        scopes: vec!["operator.read".into()],
        created_at_ms: 3000,
        rotated_at_ms: None,
        revoked_at_ms: None,
        last_used_at_ms: None,
    }
}

fn token_hash(n: u64, role: &str, token: &str, issued_at_ms: u64) -> TokenHash {
    TokenHash {
        hash: hash_token(token),
        device_id: id(n),
        role: role.into(),
        scopes: vec!["operator.read".into()],
        issued_at_ms,
    }
}

fn pending(request_id: &str, n: u64, ts: u64) -> PendingRequest {
    PendingRequest {
        request_id: request_id.into(),
        device_id: id(n),
        public_key: format!("key-{n}"),
        display_name: Some("probe".into()),
        platform: Some("linux".into()),
        device_family: None,
        client_id: Some("cli".into()),
        client_mode: Some("cli".into()),
        browser_origin: None,
        remote_ip: None,
        role: "operator".into(),
        roles: vec!["operator".into()],
        scopes: vec!["operator.read".into()],
        reason: "not-paired".into(),
        silent: false,
        is_repair: false,
        ts,
        refreshed_at_ms: ts,
        pairing_code: None,
    }
}

fn record(ts_ms: u64, action: &str, device: Option<u64>) -> AuditRecord {
    AuditRecord {
        ts_ms,
        action: action.into(),
        actor: json!({"kind": "peer", "ip": "127.0.0.1"}),
        device_id: device.map(id),
        details: json!({"n": ts_ms, "nested": {"b": 2, "a": 1}}),
    }
}

fn append(store: &Store, records: &[AuditRecord]) {
    store
        .transact(|tx| {
            for r in records {
                tx.append_audit(r)?;
            }
            Ok(())
        })
        .unwrap();
}

fn all_audit(store: &Store) -> Vec<clawgate_store::AuditRow> {
    store
        .audit_list(&AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        })
        .unwrap()
        .rows
}

/// A second, raw connection to the same file (what an attacker with file
/// access would use).
fn raw(dir: &TempDir) -> rusqlite::Connection {
    rusqlite::Connection::open(db_path(dir)).unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
#[cfg(unix)]
fn open_creates_private_directory_and_file() {
    let dir = TempDir::new().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).unwrap();
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&path), 0o600);
    store.transact(|tx| tx.put_device(&device(1))).unwrap();
    for suffix in ["-wal", "-shm"] {
        let sidecar = PathBuf::from(format!("{}{suffix}", path.display()));
        if sidecar.exists() {
            assert_eq!(mode(&sidecar), 0o600, "{suffix}");
        }
    }
    assert_eq!(
        store.schema_version().unwrap(),
        clawgate_store::SCHEMA_VERSION
    );
}

#[test]
#[cfg(unix)]
fn open_tightens_an_existing_loose_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().unwrap();
    let path = dir.path().join(DB_FILE_NAME);
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(Store::open(&path).unwrap());
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn reopening_loses_nothing() {
    let dir = TempDir::new().unwrap();
    let mut rt = role_token(1, "operator");
    rt.rotated_at_ms = Some(3500);
    let hashes = [
        token_hash(1, "operator", "tok-a", 10),
        token_hash(1, "operator", "tok-b", 20),
    ];
    let (before_devices, before_audit) = {
        let store = open(&dir);
        store
            .transact(|tx| {
                tx.put_device(&device(1))?;
                tx.put_device(&device(2))?;
                tx.put_role_token(&rt)?;
                tx.put_role_token(&role_token(1, "node"))?;
                for h in &hashes {
                    tx.add_token_hash(h, 5)?;
                }
                tx.put_pending(&pending("req-1", 3, 100))?;
                tx.touch_token(&id(1), "operator", 4000)?;
                Ok(())
            })
            .unwrap();
        append(
            &store,
            &[
                record(1, "pairing.requested", Some(3)),
                record(2, "pairing.approved", Some(1)),
            ],
        );
        (store.devices(), all_audit(&store))
    };

    let store = open(&dir);
    assert_eq!(store.devices(), before_devices);
    assert_eq!(store.devices().len(), 2);
    let tokens = store.role_tokens(&id(1));
    assert_eq!(
        tokens.iter().map(|t| t.role.as_str()).collect::<Vec<_>>(),
        ["node", "operator"]
    );
    let op = store.role_token(&id(1), "operator").unwrap();
    assert_eq!(op.last_used_at_ms, Some(4000));
    assert_eq!(op.rotated_at_ms, Some(3500));
    assert_eq!(store.token_hashes(&id(1), "operator"), hashes.to_vec());
    assert_eq!(
        store.token_by_hash(&hash_token("tok-b")),
        Some(hashes[1].clone())
    );
    assert_eq!(store.pending("req-1"), Some(pending("req-1", 3, 100)));
    assert_eq!(store.pending_for_device(&id(3)).len(), 1);
    assert_eq!(all_audit(&store), before_audit);
    assert_eq!(before_audit.len(), 2);
    assert!(store.verify_audit().unwrap().ok);

    // The chain continues across restarts.
    append(&store, &[record(3, "token.rotated", Some(1))]);
    let rows = all_audit(&store);
    assert_eq!(rows[2].seq, 3);
    assert_eq!(rows[2].prev_hash, rows[1].hash);
    assert!(store.verify_audit().unwrap().ok);
}

#[test]
fn failed_transaction_leaves_database_and_cache_unchanged() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    store
        .transact(|tx| {
            tx.put_device(&device(1))?;
            tx.put_pending(&pending("req-1", 9, 50))?;
            tx.append_audit(&record(1, "pairing.approved", Some(1)))?;
            Ok(())
        })
        .unwrap();
    let snapshot = |s: &Store| {
        (
            s.devices(),
            s.pending_list(),
            s.role_tokens(&id(1)),
            s.token_hashes(&id(1), "operator"),
            all_audit(s),
        )
    };
    let before = snapshot(&store);

    let err = store
        .transact(|tx| -> Result<(), StoreError> {
            let mut changed = device(1);
            changed.display_name = Some("renamed".into());
            tx.put_device(&changed)?;
            tx.put_device(&device(2))?;
            tx.put_role_token(&role_token(1, "operator"))?;
            tx.add_token_hash(&token_hash(1, "operator", "tok-x", 1), 3)?;
            tx.delete_pending("req-1")?;
            tx.append_audit(&record(2, "token.rotated", Some(1)))?;
            // Reads inside the transaction see its own writes.
            assert_eq!(
                tx.device(&id(1))?.unwrap().display_name.as_deref(),
                Some("renamed")
            );
            assert!(tx.role_token(&id(1), "operator")?.is_some());
            assert!(tx.pending("req-1")?.is_none());
            Err(StoreError::Invalid("caller gave up".into()))
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)));
    assert_eq!(snapshot(&store), before);
    assert!(store.token_by_hash(&hash_token("tok-x")).is_none());

    // A failure at COMMIT (deferred foreign key) is rolled back as well.
    let err = store
        .transact(|tx| {
            tx.put_pending(&pending("req-2", 4, 60))?;
            tx.put_role_token(&role_token(77, "operator"))
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(snapshot(&store), before);

    // A panicking closure rolls back and the store stays usable.
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = store.transact(|tx| -> Result<(), StoreError> {
            tx.put_device(&device(3))?;
            panic!("boom");
        });
    }));
    assert!(caught.is_err());
    assert_eq!(snapshot(&store), before);
    store.transact(|tx| tx.put_device(&device(4))).unwrap();

    drop(store);
    let store = open(&dir);
    assert_eq!(store.devices().len(), 2);
    assert!(store.device(&id(2)).is_none() && store.device(&id(3)).is_none());
    assert_eq!(store.pending_list(), before.1);
    assert_eq!(all_audit(&store), before.4);
}

#[test]
fn invalid_input_is_refused() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    let mut bad = device(1);
    bad.device_id = "NOT-HEX".into();
    let err = store.transact(|tx| tx.put_device(&bad)).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)));
    assert!(store.devices().is_empty());

    store
        .transact(|tx| {
            tx.put_device(&device(1))?;
            tx.add_token_hash(&token_hash(1, "operator", "tok-dup", 1), 3)
        })
        .unwrap();
    let err = store
        .transact(|tx| tx.add_token_hash(&token_hash(1, "operator", "tok-dup", 2), 3))
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)));
    assert!(!err.to_string().contains("tok-dup"));
}

#[test]
fn put_device_updates_in_place_and_keeps_tokens() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    store
        .transact(|tx| {
            tx.put_device(&device(1))?;
            tx.put_role_token(&role_token(1, "operator"))?;
            tx.add_token_hash(&token_hash(1, "operator", "tok-1", 1), 3)
        })
        .unwrap();
    let mut updated = device(1);
    updated.last_seen_at_ms = Some(9999);
    updated.last_seen_reason = Some("connect".into());
    store.transact(|tx| tx.put_device(&updated)).unwrap();
    assert_eq!(store.device(&id(1)), Some(updated.clone()));
    assert!(store.role_token(&id(1), "operator").is_some());
    assert!(store.token_by_hash(&hash_token("tok-1")).is_some());
    drop(store);
    let store = open(&dir);
    assert_eq!(store.device(&id(1)), Some(updated));
    assert!(store.role_token(&id(1), "operator").is_some());
    assert!(store.token_by_hash(&hash_token("tok-1")).is_some());
}

#[test]
fn delete_device_cascades() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    store
        .transact(|tx| {
            for n in [1, 2] {
                tx.put_device(&device(n))?;
                tx.put_role_token(&role_token(n, "operator"))?;
                tx.put_role_token(&role_token(n, "node"))?;
                tx.add_token_hash(&token_hash(n, "operator", &format!("op-{n}"), 1), 3)?;
                tx.add_token_hash(&token_hash(n, "node", &format!("node-{n}"), 1), 3)?;
                tx.put_pending(&pending(&format!("req-{n}"), n, 10))?;
            }
            Ok(())
        })
        .unwrap();

    assert!(store.transact(|tx| tx.delete_device(&id(1))).unwrap());
    let check = |store: &Store| {
        assert!(store.device(&id(1)).is_none());
        assert!(store.role_tokens(&id(1)).is_empty());
        assert!(store.token_hashes(&id(1), "operator").is_empty());
        assert!(store.token_by_hash(&hash_token("op-1")).is_none());
        assert!(store.token_by_hash(&hash_token("node-1")).is_none());
        assert!(store.pending("req-1").is_none());
        // The other device is untouched.
        assert!(store.device(&id(2)).is_some());
        assert_eq!(store.role_tokens(&id(2)).len(), 2);
        assert!(store.token_by_hash(&hash_token("op-2")).is_some());
        assert!(store.pending("req-2").is_some());
    };
    check(&store);
    let raw = raw(&dir);
    for table in ["role_tokens", "token_hashes", "pending_requests"] {
        let n: i64 = raw
            .query_row(
                &format!("SELECT count(*) FROM {table} WHERE device_id = ?1"),
                [id(1)],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    drop(raw);
    assert!(!store.transact(|tx| tx.delete_device(&id(1))).unwrap());
    drop(store);
    check(&open(&dir));
}

#[test]
fn delete_then_put_in_one_transaction_repairs_a_device() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    store
        .transact(|tx| {
            tx.put_device(&device(1))?;
            tx.put_role_token(&role_token(1, "operator"))?;
            tx.add_token_hash(&token_hash(1, "operator", "old", 1), 3)
        })
        .unwrap();
    let mut repaired = device(1);
    repaired.public_key = "new-key".into();
    store
        .transact(|tx| {
            tx.delete_device(&repaired.device_id)?;
            tx.put_device(&repaired)?;
            tx.put_role_token(&role_token(1, "operator"))?;
            tx.add_token_hash(&token_hash(1, "operator", "new", 2), 3)
        })
        .unwrap();
    for store in [store, open(&dir)] {
        assert_eq!(store.device(&id(1)).unwrap().public_key, "new-key");
        assert!(store.token_by_hash(&hash_token("old")).is_none());
        assert!(store.token_by_hash(&hash_token("new")).is_some());
    }
}

#[test]
fn add_token_hash_keeps_only_the_newest() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    store
        .transact(|tx| {
            tx.put_device(&device(1))?;
            tx.add_token_hash(&token_hash(1, "node", "node-tok", 1), 1)
        })
        .unwrap();
    for i in 1..=5u64 {
        store
            .transact(|tx| tx.add_token_hash(&token_hash(1, "operator", &format!("t{i}"), i), 3))
            .unwrap();
    }
    let expect = |store: &Store| {
        let kept: Vec<TokenHash> = store.token_hashes(&id(1), "operator");
        assert_eq!(
            kept,
            (3..=5u64)
                .map(|i| token_hash(1, "operator", &format!("t{i}"), i))
                .collect::<Vec<_>>()
        );
        assert!(store.token_by_hash(&hash_token("t1")).is_none());
        assert!(store.token_by_hash(&hash_token("t2")).is_none());
        assert!(store.token_by_hash(&hash_token("t5")).is_some());
        // Other roles are not trimmed.
        assert!(store.token_by_hash(&hash_token("node-tok")).is_some());
    };
    expect(&store);
    drop(store);
    let store = open(&dir);
    expect(&store);

    // keep_newest 0 still keeps the hash just added.
    store
        .transact(|tx| tx.add_token_hash(&token_hash(1, "operator", "t6", 6), 0))
        .unwrap();
    assert_eq!(store.token_hashes(&id(1), "operator").len(), 1);
    assert!(store.token_by_hash(&hash_token("t6")).is_some());

    assert_eq!(
        store
            .transact(|tx| tx.delete_token_hashes(&id(1), "operator"))
            .unwrap(),
        1
    );
    assert!(store.token_hashes(&id(1), "operator").is_empty());
    assert!(store.token_by_hash(&hash_token("t6")).is_none());
    drop(store);
    assert!(open(&dir).token_hashes(&id(1), "operator").is_empty());
}

#[test]
fn touch_token_updates_last_used_and_ignores_missing_entries() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    store
        .transact(|tx| {
            tx.put_device(&device(1))?;
            tx.put_role_token(&role_token(1, "operator"))
        })
        .unwrap();
    store
        .transact(|tx| {
            tx.touch_token(&id(1), "operator", 777)?;
            tx.touch_token(&id(1), "node", 777)?;
            tx.touch_token(&id(5), "operator", 777)
        })
        .unwrap();
    assert_eq!(
        store
            .role_token(&id(1), "operator")
            .unwrap()
            .last_used_at_ms,
        Some(777)
    );
    assert!(store.role_token(&id(1), "node").is_none());
}

#[test]
fn audit_chain_verifies_and_detects_a_modified_row() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    for i in 1..=5 {
        append(&store, &[record(i, "pairing.requested", Some(i))]);
    }
    let v = store.verify_audit().unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!((v.rows, v.first_bad_seq), (5, None));

    let raw = raw(&dir);
    // With the trigger in place the log cannot be changed.
    let err = raw
        .execute("UPDATE audit_log SET details_json = '{}' WHERE seq = 3", [])
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    assert!(
        raw.execute("DELETE FROM audit_log WHERE seq = 3", [])
            .is_err()
    );
    assert!(store.verify_audit().unwrap().ok);

    raw.execute_batch(
        "DROP TRIGGER audit_log_no_update;
         UPDATE audit_log SET details_json = '{\"n\":999}' WHERE seq = 3;",
    )
    .unwrap();
    let v = store.verify_audit().unwrap();
    assert!(!v.ok);
    assert_eq!(v.first_bad_seq, Some(3));
    assert!(v.problem.unwrap().contains('3'));
}

#[test]
fn audit_chain_detects_a_deleted_row() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    for i in 1..=5 {
        append(&store, &[record(i, "auth.failure", None)]);
    }
    raw(&dir)
        .execute_batch(
            "DROP TRIGGER audit_log_no_delete;
             DELETE FROM audit_log WHERE seq = 2;",
        )
        .unwrap();
    let v = store.verify_audit().unwrap();
    assert!(!v.ok);
    assert_eq!(v.first_bad_seq, Some(2));
    assert_eq!(v.rows, 2);
    assert!(v.problem.unwrap().contains("missing"));
}

#[test]
fn audit_chain_detects_a_recomputed_row() {
    // Rewriting a row and its own hash still breaks the link to the next row.
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    for i in 1..=4 {
        append(&store, &[record(i, "auth.failure", None)]);
    }
    let rows = all_audit(&store);
    raw(&dir)
        .execute_batch(&format!(
            "DROP TRIGGER audit_log_no_update;
             UPDATE audit_log SET hash = '{}' WHERE seq = 2;",
            "f".repeat(64)
        ))
        .unwrap();
    let v = store.verify_audit().unwrap();
    assert_eq!(v.first_bad_seq, Some(2));
    assert_ne!(rows[1].hash, "f".repeat(64));
}

#[test]
fn append_audit_returns_the_stored_row() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    let row = store
        .transact(|tx| tx.append_audit(&record(42, "auth.lockout", Some(7))))
        .unwrap();
    assert_eq!(row.seq, 1);
    assert_eq!(row.prev_hash, clawgate_store::GENESIS_HASH);
    assert_eq!(row.hash.len(), 64);
    assert_eq!(row.details, json!({"n": 42, "nested": {"a": 1, "b": 2}}));
    assert_eq!(all_audit(&store), vec![row]);
}

#[test]
fn audit_list_filters_and_pages() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    let mut records = Vec::new();
    for i in 1..=30u64 {
        let action = if i % 3 == 0 {
            "auth.failure"
        } else {
            "pairing.requested"
        };
        records.push(record(i * 10, action, Some(i % 2)));
    }
    append(&store, &records);

    let q = |f: &dyn Fn(&mut AuditQuery)| {
        let mut q = AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        };
        f(&mut q);
        store.audit_list(&q).unwrap()
    };

    let failures = q(&|q| q.action = Some("auth.failure".into()));
    assert_eq!(failures.rows.len(), 10);
    assert!(failures.rows.iter().all(|r| r.action == "auth.failure"));
    assert_eq!(failures.next_cursor, None);

    let dev1 = q(&|q| q.device_id = Some(id(1)));
    assert_eq!(dev1.rows.len(), 15);
    assert!(dev1.rows.iter().all(|r| r.device_id == Some(id(1))));

    let window = q(&|q| {
        q.since_ms = Some(50);
        q.until_ms = Some(100);
    });
    assert_eq!(
        window.rows.iter().map(|r| r.ts_ms).collect::<Vec<_>>(),
        [50, 60, 70, 80, 90, 100]
    );

    let combined = q(&|q| {
        q.action = Some("auth.failure".into());
        q.device_id = Some(id(0));
        q.since_ms = Some(100);
    });
    assert_eq!(
        combined.rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [12, 18, 24, 30]
    );

    // Cursor pagination walks every row once, in order.
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = store
            .audit_list(&AuditQuery {
                after_seq: cursor,
                limit: 7,
                ..AuditQuery::default()
            })
            .unwrap();
        pages += 1;
        seen.extend(page.rows.iter().map(|r| r.seq));
        match page.next_cursor {
            Some(c) => {
                assert_eq!(Some(c), page.rows.last().map(|r| r.seq));
                cursor = Some(c);
            }
            None => break,
        }
    }
    assert_eq!(seen, (1..=30).collect::<Vec<_>>());
    assert_eq!(pages, 5);

    // An exactly full last page has no cursor.
    let page = store
        .audit_list(&AuditQuery {
            after_seq: Some(20),
            limit: 10,
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(page.rows.len(), 10);
    assert_eq!(page.next_cursor, None);

    // Default limit is 100, and limits are capped at 1000.
    let many: Vec<AuditRecord> = (0..1100)
        .map(|i| record(1000 + i, "auth.failure", None))
        .collect();
    append(&store, &many);
    assert_eq!(
        store.audit_list(&AuditQuery::default()).unwrap().rows.len(),
        100
    );
    let capped = store
        .audit_list(&AuditQuery {
            limit: 5000,
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(capped.rows.len(), 1000);
    assert_eq!(capped.next_cursor, Some(1000));
    assert!(store.verify_audit().unwrap().ok);
}

#[test]
fn prune_expired_pending_deletes_only_stale_requests() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    let mut refreshed = pending("old-but-refreshed", 2, 100);
    refreshed.refreshed_at_ms = 900;
    store
        .transact(|tx| {
            tx.put_pending(&pending("stale-1", 1, 100))?;
            tx.put_pending(&pending("stale-2", 3, 200))?;
            tx.put_pending(&refreshed)?;
            tx.put_pending(&pending("fresh", 4, 600))
        })
        .unwrap();
    let pruned = store.prune_expired_pending(600).unwrap();
    assert_eq!(
        pruned
            .iter()
            .map(|p| p.request_id.as_str())
            .collect::<Vec<_>>(),
        ["stale-1", "stale-2"]
    );
    let left = |s: &Store| {
        s.pending_list()
            .into_iter()
            .map(|p| p.request_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(left(&store), ["old-but-refreshed", "fresh"]);
    assert!(store.prune_expired_pending(600).unwrap().is_empty());
    drop(store);
    assert_eq!(left(&open(&dir)), ["old-but-refreshed", "fresh"]);
}

#[test]
fn a_token_string_never_reaches_the_database_files() {
    let dir = TempDir::new().unwrap();
    let path = db_path(&dir);
    let token = "tok-SECRET-abc";
    let store = Store::open(&path).unwrap();
    store
        .transact(|tx| {
            tx.put_device(&device(1))?;
            tx.put_role_token(&role_token(1, "operator"))?;
            tx.add_token_hash(&token_hash(1, "operator", token, 1), 3)?;
            tx.append_audit(&record(1, "token.rotated", Some(1)))?;
            Ok(())
        })
        .unwrap();
    assert!(store.token_by_hash(&hash_token(token)).is_some());

    let wal = PathBuf::from(format!("{}-wal", path.display()));
    assert!(wal.exists(), "the write should still sit in the WAL");
    let mut files = vec![path.clone(), wal];
    let shm = PathBuf::from(format!("{}-shm", path.display()));
    if shm.exists() {
        files.push(shm);
    }
    let contains = |f: &Path, needle: &[u8]| {
        let bytes = std::fs::read(f).unwrap();
        bytes.windows(needle.len()).any(|w| w == needle)
    };
    // The grep itself works: plain, non-secret fields are visible.
    assert!(files.iter().any(|f| contains(f, b"key-1")));
    let needle = token.as_bytes();
    for f in &files {
        assert!(
            !contains(f, needle),
            "token string found in {}",
            f.display()
        );
    }
    // The hash itself is what is stored.
    let hex = clawgate_protocol::hex::encode(&hash_token(token));
    let all: Vec<u8> = files
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect();
    assert!(all.windows(64).any(|w| w == hex.as_bytes()));
}

#[test]
fn concurrent_writers_keep_one_chain() {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(open(&dir));
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..25u64 {
                    store
                        .transact(|tx| {
                            tx.put_pending(&pending(&format!("r-{t}-{i}"), t, i))?;
                            tx.append_audit(&record(i, "pairing.requested", Some(t)))
                        })
                        .unwrap();
                    assert!(store.pending(&format!("r-{t}-{i}")).is_some());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(store.pending_list().len(), 200);
    let v = store.verify_audit().unwrap();
    assert!(v.ok && v.rows == 200, "{v:?}");
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = TempDir::new().unwrap();
    drop(open(&dir));
    raw(&dir).execute_batch("PRAGMA user_version = 99").unwrap();
    match Store::open(&db_path(&dir)) {
        Err(StoreError::SchemaTooNew { found: 99, .. }) => {}
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[test]
fn corrupt_rows_are_reported_not_panicked() {
    let dir = TempDir::new().unwrap();
    {
        let store = open(&dir);
        store.transact(|tx| tx.put_device(&device(1))).unwrap();
    }
    raw(&dir)
        .execute("UPDATE devices SET roles_json = 'not json'", [])
        .unwrap();
    // Refused at open as a damaged file, naming it; not a panic.
    match Store::open(&db_path(&dir)) {
        Err(e @ StoreError::Damaged { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&db_path(&dir).display().to_string()),
                "{text}"
            );
        }
        other => panic!("expected Damaged, got {other:?}"),
    }
}

#[test]
fn mark_seen_updates_only_devices_that_still_exist() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    store.transact(|tx| tx.put_device(&device(1))).unwrap();
    let seen = clawgate_store::Seen {
        at_ms: 9_000,
        reason: Some("connect".into()),
        remote_ip: Some("10.0.0.9".into()),
    };
    store
        .transact(|tx| {
            tx.mark_seen(&id(1), &seen)?;
            // A device removed before its seen-update is flushed stays gone.
            tx.mark_seen(&id(2), &seen)
        })
        .unwrap();
    let d = store.device(&id(1)).unwrap();
    assert_eq!(d.last_seen_at_ms, Some(9_000));
    assert_eq!(d.last_seen_reason.as_deref(), Some("connect"));
    assert_eq!(d.remote_ip.as_deref(), Some("10.0.0.9"));
    assert_eq!(
        d.display_name,
        device(1).display_name,
        "other fields untouched"
    );
    assert!(store.device(&id(2)).is_none());
    // The same on disk.
    drop(store);
    let again = open(&dir);
    assert_eq!(again.device(&id(1)).unwrap().last_seen_at_ms, Some(9_000));
    assert!(again.device(&id(2)).is_none());
}

#[test]
fn pairing_codes_live_and_die_with_their_request_and_are_unique() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    let mut a = pending("req-a", 1, 10);
    a.pairing_code = Some("BCDF-GHJK".into());
    store.transact(|tx| tx.put_pending(&a)).unwrap();
    assert_eq!(store.pending_by_code("BCDF-GHJK"), Some(a.clone()));
    // Another pending request cannot take the same code.
    let mut b = pending("req-b", 2, 11);
    b.pairing_code = a.pairing_code.clone();
    assert!(store.transact(|tx| tx.put_pending(&b)).is_err());
    assert!(store.pending("req-b").is_none());
    drop(store);
    // Kept across a restart, with its request.
    let store = open(&dir);
    assert_eq!(
        store.pending("req-a").unwrap().pairing_code.as_deref(),
        Some("BCDF-GHJK")
    );
    store
        .transact(|tx| tx.delete_pending("req-a").map(|_| ()))
        .unwrap();
    assert!(store.pending_by_code("BCDF-GHJK").is_none());
    // Free again once its request is gone.
    store.transact(|tx| tx.put_pending(&b)).unwrap();
    assert_eq!(
        store.pending_by_code("BCDF-GHJK").unwrap().request_id,
        "req-b"
    );
}

#[test]
fn a_schema_1_database_is_migrated_and_keeps_its_pending_requests() {
    let dir = TempDir::new().unwrap();
    drop(open(&dir));
    // Make it what a schema-1 build wrote: no code column, one request.
    let conn = raw(&dir);
    conn.execute_batch(
        "DROP INDEX pending_requests_by_code;
         ALTER TABLE pending_requests DROP COLUMN pairing_code;
         DROP TABLE setup_codes;
         DROP TABLE passkeys;
         INSERT INTO pending_requests (request_id, device_id, public_key, role, roles_json,
             scopes_json, reason, silent, is_repair, ts, refreshed_at_ms)
         VALUES ('old-req', printf('%064d', 7), 'key', 'operator', '[\"operator\"]', '[]',
             'not-paired', 0, 0, 5, 5);
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);
    let store = open(&dir);
    let old = store.pending("old-req").unwrap();
    assert_eq!(old.pairing_code, None);
    let version: u32 = raw(&dir)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, clawgate_store::SCHEMA_VERSION);
    let mut coded = old.clone();
    coded.pairing_code = Some("WXZB-QRST".into());
    store.transact(|tx| tx.put_pending(&coded)).unwrap();
    assert_eq!(
        store.pending_by_code("WXZB-QRST").unwrap().request_id,
        "old-req"
    );
}
