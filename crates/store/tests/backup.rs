//! Backup, restore and the state directory lock, on real SQLite files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clawgate_store::{
    AuditRecord, BackupError, DB_FILE_NAME, Device, LockError, RoleToken, StateLock, Store,
    TokenHash, backup, check_backup, hash_token, restore,
};
use serde_json::json;
use tempfile::TempDir;

fn id(n: u64) -> String {
    format!("{n:064x}")
}

/// A device approved the way the gateway does it: the device, its token
/// entry and a token hash, with the approval's audit row, in one
/// transaction.
fn approve(store: &Store, n: u64) {
    let scopes = vec!["operator.read".to_string()];
    store
        .transact(|tx| {
            tx.put_device(&Device {
                device_id: id(n),
                public_key: format!("key-{n}"),
                display_name: None,
                operator_label: None,
                platform: None,
                device_family: None,
                client_id: None,
                client_mode: None,
                browser_origin: None,
                roles: vec!["operator".into()],
                scopes: scopes.clone(),
                remote_ip: None,
                approved_via: "owner".into(),
                created_at_ms: 1,
                approved_at_ms: 1,
                last_seen_at_ms: None,
                last_seen_reason: None,
            })?;
            tx.put_role_token(&RoleToken {
                device_id: id(n),
                role: "operator".into(),
                scopes: scopes.clone(),
                created_at_ms: 1,
                rotated_at_ms: None,
                revoked_at_ms: None,
                last_used_at_ms: None,
            })?;
            tx.add_token_hash(
                &TokenHash {
                    hash: hash_token(&format!("token-{n}")),
                    device_id: id(n),
                    role: "operator".into(),
                    scopes: scopes.clone(),
                    issued_at_ms: 2,
                },
                8,
            )?;
            tx.append_audit(&AuditRecord {
                ts_ms: 5,
                action: "pairing.silent_approved".into(),
                actor: json!({"kind": "peer"}),
                device_id: Some(id(n)),
                details: json!({"roles": ["operator"], "scopes": scopes}),
            })?;
            Ok(())
        })
        .unwrap();
}

fn store_with(dir: &Path, devices: u64) -> (Store, PathBuf) {
    let path = dir.join(DB_FILE_NAME);
    let store = Store::open(&path).unwrap();
    for n in 1..=devices {
        approve(&store, n);
    }
    (store, path)
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every file in `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_backup_of_a_store_being_written_is_consistent_and_private() {
    let state = TempDir::new().unwrap();
    let (store, db) = store_with(state.path(), 300);
    let store = Arc::new(store);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 1000;
            while !stop.load(Ordering::SeqCst) {
                approve(&store, n);
                n += 1;
            }
            n - 1000
        })
    };
    let out = TempDir::new().unwrap();
    let file = out.path().join("registry.backup");
    let summary = backup(&db, &file, false, None).unwrap();
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().unwrap();
    assert!(written > 0, "nothing was written during the backup");
    // One snapshot: every device with its audit row, whatever moment it was.
    assert!(summary.devices >= 300, "{summary:?}");
    assert_eq!(summary.audit_rows, summary.devices as u64);
    assert_eq!(summary.token_hashes, summary.devices);
    assert_eq!(summary.bytes, std::fs::metadata(&file).unwrap().len());
    assert_eq!(mode(&file), 0o600);
    // A single file: no WAL flag, no sidecars, no temp files.
    let names: Vec<_> = snapshot(out.path()).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["registry.backup"]);
    let reopened = clawgate_store::check_database(&file).unwrap();
    assert!(reopened.ok(), "{:?}", reopened.violations);
    assert_eq!(reopened.devices, summary.devices);
}

#[test]
fn a_backup_never_replaces_a_file_unless_forced() {
    let state = TempDir::new().unwrap();
    let (_store, db) = store_with(state.path(), 2);
    let out = TempDir::new().unwrap();
    let file = out.path().join("b.sqlite");
    std::fs::write(&file, b"keep me").unwrap();
    let err = backup(&db, &file, false, None).unwrap_err();
    assert!(matches!(err, BackupError::Exists(_)), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    assert_eq!(snapshot(out.path()).len(), 1, "no temp file left");

    let summary = backup(&db, &file, true, None).unwrap();
    assert_eq!(summary.devices, 2);
    assert_eq!(mode(&file), 0o600);

    let missing = state.path().join("none").join(DB_FILE_NAME);
    let err = backup(&missing, &out.path().join("c"), false, None).unwrap_err();
    assert!(matches!(err, BackupError::NoDatabase(_)), "{err}");
}

#[test]
fn a_backup_under_the_lock_leaves_the_state_directory_as_it_was() {
    let state = TempDir::new().unwrap();
    let (store, db) = store_with(state.path(), 4);
    drop(store);
    let lock = StateLock::acquire(state.path()).unwrap();
    let before = snapshot(state.path());
    let out = TempDir::new().unwrap();
    let file = out.path().join("b.sqlite");
    let summary = backup(&db, &file, false, Some(&lock)).unwrap();
    assert_eq!(summary.devices, 4);
    assert_eq!(
        snapshot(state.path()),
        before,
        "no -wal or -shm left behind"
    );
}

#[test]
fn restore_swaps_the_backup_in_and_keeps_the_previous_database() {
    let state = TempDir::new().unwrap();
    let (store, db) = store_with(state.path(), 3);
    let out = TempDir::new().unwrap();
    let file = out.path().join("b.sqlite");
    backup(&db, &file, false, None).unwrap();
    // After the backup: two more devices, committed to the WAL only
    // (the store is still open, so nothing was checkpointed).
    approve(&store, 4);
    approve(&store, 5);
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    // The gateway's shutdown leaves nothing open; a kill can leave the WAL:
    // keep it by copying the files as they are now.
    let killed = TempDir::new().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let from = format!("{}{suffix}", db.display());
        std::fs::copy(
            &from,
            format!("{}/{DB_FILE_NAME}{suffix}", killed.path().display()),
        )
        .unwrap();
    }
    drop(store);
    let db = killed.path().join(DB_FILE_NAME);

    let outcome = restore(&file, &db, "20240101T000000Z").unwrap();
    assert_eq!(outcome.summary.devices, 3);
    let kept = outcome.kept.unwrap();
    assert_eq!(
        kept,
        killed
            .path()
            .join(format!("{DB_FILE_NAME}.before-restore-20240101T000000Z"))
    );
    assert_eq!(mode(&db), 0o600);
    let restored = Store::open(&db).unwrap();
    assert_eq!(restored.devices().len(), 3);
    assert!(restored.device(&id(5)).is_none());
    drop(restored);
    // The kept database has everything it had, WAL included.
    let previous = Store::open(&kept).unwrap();
    assert_eq!(previous.devices().len(), 5);
    drop(previous);

    // A second restore in the same second keeps another file.
    let again = restore(&file, &db, "20240101T000000Z").unwrap();
    assert!(
        again.kept.unwrap().to_string_lossy().ends_with("-2"),
        "{:?}",
        snapshot(killed.path())
            .into_iter()
            .map(|(n, _)| n)
            .collect::<Vec<_>>()
    );
}

/// Restores `file` into a state directory holding a store, and checks the
/// directory did not change at all.
fn refused(file: &Path) -> BackupError {
    let state = TempDir::new().unwrap();
    let (store, db) = store_with(state.path(), 2);
    drop(store);
    let before = snapshot(state.path());
    let err = restore(file, &db, "20240101T000000Z").unwrap_err();
    assert_eq!(snapshot(state.path()), before, "{err}");
    let checked = check_backup(file, state.path()).unwrap_err();
    assert_eq!(checked.to_string(), err.to_string());
    assert_eq!(snapshot(state.path()), before);
    let text = err.to_string();
    assert!(!text.contains('\n'), "{text}");
    assert!(text.contains(&file.display().to_string()), "{text}");
    err
}

/// A good backup of a 3-device store, to be damaged by the caller.
fn good_backup(dir: &Path) -> PathBuf {
    let state = TempDir::new().unwrap();
    let (_store, db) = store_with(state.path(), 3);
    let file = dir.join("b.sqlite");
    backup(&db, &file, false, None).unwrap();
    file
}

#[test]
fn restore_refuses_what_is_not_a_good_clawgate_backup() {
    let dir = TempDir::new().unwrap();

    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "these are not the rows you are looking for\n".repeat(10),
    )
    .unwrap();
    assert!(matches!(refused(&text), BackupError::NotSqlite { .. }));
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(refused(&empty), BackupError::NotSqlite { .. }));
    let missing = dir.path().join("missing");
    assert!(matches!(refused(&missing), BackupError::NoFile(_)));

    let other = dir.path().join("other.sqlite");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('hi');")
        .unwrap();
    let err = refused(&other);
    assert!(matches!(err, BackupError::NotClawgate { .. }), "{err}");

    let newer = good_backup(&dir.path().join("n").tap_mkdir());
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let err = refused(&newer);
    assert!(
        matches!(err, BackupError::SchemaTooNew { found: 99, .. }),
        "{err}"
    );

    let tampered = good_backup(&dir.path().join("t").tap_mkdir());
    rusqlite::Connection::open(&tampered)
        .unwrap()
        .execute_batch(
            "DROP TRIGGER audit_log_no_update; \
             UPDATE audit_log SET details_json = '{\"roles\":[\"operator\"],\"scopes\":[\"operator.admin\"]}' WHERE seq = 2;",
        )
        .unwrap();
    let err = refused(&tampered);
    assert!(matches!(err, BackupError::AuditChain { .. }), "{err}");
    assert!(err.to_string().contains("row 2"), "{err}");

    // A device added by hand, without its approval row.
    let forged = good_backup(&dir.path().join("f").tap_mkdir());
    rusqlite::Connection::open(&forged)
        .unwrap()
        .execute_batch(&format!(
            "INSERT INTO devices SELECT '{}', public_key, display_name, operator_label, platform, \
             device_family, client_id, client_mode, browser_origin, roles_json, scopes_json, \
             remote_ip, approved_via, created_at_ms, approved_at_ms, last_seen_at_ms, \
             last_seen_reason FROM devices LIMIT 1",
            id(77)
        ))
        .unwrap();
    let err = refused(&forged);
    assert!(matches!(err, BackupError::Invariant { .. }), "{err}");

    let damaged = good_backup(&dir.path().join("d").tap_mkdir());
    let mut bytes = std::fs::read(&damaged).unwrap();
    for (i, b) in bytes.iter_mut().enumerate().skip(4096) {
        *b = (i % 251) as u8;
    }
    std::fs::write(&damaged, &bytes).unwrap();
    let err = refused(&damaged);
    assert!(matches!(err, BackupError::Damaged { .. }), "{err}");

    // A live database with committed rows only in its WAL.
    let live_dir = TempDir::new().unwrap();
    let (_live, live) = store_with(live_dir.path(), 2);
    let err = refused(&live);
    assert!(matches!(err, BackupError::LiveWal(_)), "{err}");
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn the_state_lock_is_exclusive_and_names_its_holder() {
    let state = TempDir::new().unwrap();
    let dir = state.path().join("fresh");
    let held = StateLock::acquire(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(held.path()), 0o600);
    let err = StateLock::acquire(&dir).unwrap_err();
    let pid = std::process::id();
    assert!(
        matches!(err, LockError::Held { pid: Some(p), .. } if p == pid),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("pid {pid}")) && text.contains(&format!("kill {pid}")),
        "{text}"
    );
    drop(held);
    let again = StateLock::acquire(&dir).unwrap();
    assert_eq!(
        std::fs::read_to_string(again.path()).unwrap().trim(),
        pid.to_string()
    );
}
