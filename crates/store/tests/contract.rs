//! The store's contract, run unchanged against both backends: SQLite (a
//! file in a temp dir) and PostgreSQL (a fresh database on the test
//! cluster), followed by what only a shared PostgreSQL store does
//! (replicas following each other's changes, LISTEN, presence, the change
//! log, copying a SQLite registry in).
//!
//! PostgreSQL comes from `CLAWGATE_TEST_PG_URL` (scripts/test.sh starts a
//! cluster and sets it). Without it these tests fail loudly; they never
//! pass by skipping PostgreSQL.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clawgate_store::{
    AuditQuery, AuditRecord, AuditRow, DB_FILE_NAME, Device, GENESIS_HASH, Passkey, PendingRequest,
    PgTarget, ReplicaPresence, RoleToken, Seen, SetupCode, Store, StoreError, TokenHash, Tx,
    check_database, hash_token, testing,
};
use serde_json::{Value, json};
use tempfile::TempDir;

// ================================================================ fixtures

/// Where a store under test lives.
enum Fixture {
    /// A SQLite file inside its own temp dir.
    Sqlite(TempDir),
    /// A fresh database on the PostgreSQL test cluster.
    Postgres {
        url: String,
        password_file: Option<PathBuf>,
    },
}

impl Fixture {
    fn sqlite() -> Fixture {
        Fixture::Sqlite(TempDir::new().expect("temp dir"))
    }

    fn postgres(prefix: &str) -> Fixture {
        let (url, password_file) = testing::fresh_database(prefix);
        Fixture::Postgres { url, password_file }
    }

    /// Both backends, SQLite first. Panics when PostgreSQL is not
    /// configured (see [`testing::pg_admin`]).
    fn both(prefix: &str) -> [Fixture; 2] {
        [Fixture::sqlite(), Fixture::postgres(prefix)]
    }

    fn name(&self) -> &'static str {
        match self {
            Fixture::Sqlite(_) => "sqlite",
            Fixture::Postgres { .. } => "postgres",
        }
    }

    fn sqlite_path(&self) -> PathBuf {
        match self {
            Fixture::Sqlite(dir) => dir.path().join("state").join(DB_FILE_NAME),
            Fixture::Postgres { .. } => panic!("not a SQLite fixture"),
        }
    }

    fn target(&self) -> PgTarget {
        match self {
            Fixture::Postgres { url, password_file } => {
                PgTarget::parse(url, password_file.as_deref()).expect("test cluster URL")
            }
            Fixture::Sqlite(_) => panic!("not a PostgreSQL fixture"),
        }
    }

    /// Opens a store on the fixture's database. Called again (with or
    /// without the first store still open) it is a second `Store` on the
    /// same file or database, whose cache is loaded from what is stored.
    fn open(&self) -> Store {
        let store = match self {
            Fixture::Sqlite(_) => Store::open(&self.sqlite_path()),
            Fixture::Postgres { .. } => Store::open_postgres(&self.target()),
        };
        let store = store.unwrap_or_else(|e| panic!("{self}: open: {e}"));
        assert_eq!(store.backend_name(), self.name());
        store
    }
}

impl fmt::Display for Fixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `before_ms` cutoff later than every change the tests write.
const EVERYTHING: u64 = 1 << 62;

/// A fresh PostgreSQL database and two replicas on it.
fn pg_pair(prefix: &str) -> (Fixture, Store, Store) {
    let fx = Fixture::postgres(prefix);
    let a = fx.open();
    let b = fx.open();
    assert_ne!(a.replica_id(), b.replica_id());
    (fx, a, b)
}

// ================================================================= records

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
        roles: vec!["operator".into(), "node".into()],
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
        remote_ip: Some("10.0.0.8".into()),
        role: "operator".into(),
        roles: vec!["operator".into()],
        scopes: vec!["operator.read".into()],
        reason: "not-paired".into(),
        silent: false,
        is_repair: true,
        ts,
        refreshed_at_ms: ts,
        pairing_code: None,
    }
}

fn setup_code(setup_id: &str, token: &str, expires_at_ms: u64) -> SetupCode {
    SetupCode {
        setup_id: setup_id.into(),
        token_hash: hash_token(token),
        role: "operator".into(),
        scopes: vec!["operator.read".into()],
        label: Some("laptop".into()),
        created_by: Some("shared-secret".into()),
        created_at_ms: 100,
        expires_at_ms,
        used_at_ms: None,
        used_by_device_id: None,
        revoked_at_ms: None,
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

fn append(store: &Store, records: &[AuditRecord]) -> Vec<AuditRow> {
    store
        .transact(|tx| records.iter().map(|r| tx.append_audit(r)).collect())
        .expect("append audit rows")
}

/// Every audit row, ascending (walks the pages).
fn all_audit(store: &Store) -> Vec<AuditRow> {
    let mut rows = Vec::new();
    let mut after_seq = None;
    loop {
        let page = store
            .audit_list(&AuditQuery {
                after_seq,
                limit: AuditQuery::MAX_LIMIT,
                ..AuditQuery::default()
            })
            .expect("audit list");
        rows.extend(page.rows);
        match page.next_cursor {
            Some(c) => after_seq = Some(c),
            None => return rows,
        }
    }
}

/// Device numbers the tests use; snapshots look at all of them.
const DEVICES: std::ops::Range<u64> = 0..100;
const ROLES: [&str; 2] = ["node", "operator"];

/// Everything a store shows: the cached registry (devices, role tokens,
/// token hashes, pending requests) and what is read from the database
/// (setup codes, audit rows).
#[derive(Debug, PartialEq)]
struct Snapshot {
    devices: Vec<Device>,
    role_tokens: Vec<RoleToken>,
    token_hashes: Vec<TokenHash>,
    pending: Vec<PendingRequest>,
    setup_codes: Vec<SetupCode>,
    audit: Vec<AuditRow>,
}

fn snapshot(store: &Store) -> Snapshot {
    let mut role_tokens = Vec::new();
    let mut token_hashes = Vec::new();
    for n in DEVICES {
        role_tokens.extend(store.role_tokens(&id(n)));
        for role in ROLES {
            let hashes = store.token_hashes(&id(n), role);
            for h in &hashes {
                assert_eq!(store.token_by_hash(&h.hash).as_ref(), Some(h));
            }
            token_hashes.extend(hashes);
        }
    }
    let pending = store.pending_list();
    for p in &pending {
        assert_eq!(store.pending(&p.request_id).as_ref(), Some(p));
        if let Some(code) = &p.pairing_code {
            assert_eq!(store.pending_by_code(code).as_ref(), Some(p));
        }
    }
    Snapshot {
        devices: store.devices(),
        role_tokens,
        token_hashes,
        pending,
        setup_codes: store.setup_codes().expect("setup codes"),
        audit: all_audit(store),
    }
}

/// What the database holds: the snapshot of a second store opened on it.
fn stored(fx: &Fixture) -> Snapshot {
    snapshot(&fx.open())
}

/// Polls `f` until it holds, for at most `limit`.
fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// -------------------------------------- a consistent, gateway-like history

fn audit(tx: &mut Tx<'_>, action: &str, n: u64, details: Value) -> Result<(), StoreError> {
    tx.append_audit(&AuditRecord {
        ts_ms: 5,
        action: action.into(),
        actor: json!({"kind": "session"}),
        device_id: Some(id(n)),
        details,
    })
    .map(drop)
}

const PAIRED_SCOPES: [&str; 2] = ["operator.read", "operator.pairing"];

fn paired_device(n: u64) -> Device {
    let mut d = device(n);
    d.roles = vec!["operator".into()];
    d.scopes = PAIRED_SCOPES.map(String::from).to_vec();
    d.created_at_ms = 1;
    d.approved_at_ms = 1;
    d
}

fn paired_entry(n: u64) -> RoleToken {
    let mut t = role_token(n, "operator");
    t.scopes = PAIRED_SCOPES.map(String::from).to_vec();
    t
}

/// What the gateway does on a pairing request, `device.pair.approve` and
/// the connect after it: each step one transaction with its audit row.
fn approve(store: &Store, n: u64, token: &str) {
    let request = format!("r{n}");
    store
        .transact(|tx| {
            tx.put_pending(&pending(&request, n, 1))?;
            audit(tx, "pairing.requested", n, json!({"requestId": request}))
        })
        .unwrap();
    store
        .transact(|tx| {
            tx.delete_pending(&request)?;
            tx.put_device(&paired_device(n))?;
            tx.put_role_token(&paired_entry(n))?;
            audit(
                tx,
                "pairing.approved",
                n,
                json!({"requestId": request, "roles": ["operator"], "scopes": PAIRED_SCOPES}),
            )
        })
        .unwrap();
    store
        .transact(|tx| tx.add_token_hash(&token_hash(n, "operator", token, 2), 8))
        .unwrap();
}

/// A consistent history: two devices paired, one revoked, one removed, one
/// request still pending; 7 audit rows.
fn pairing_history(store: &Store) {
    approve(store, 1, "t1");
    approve(store, 2, "t2");
    store
        .transact(|tx| {
            tx.delete_token_hashes(&id(2), "operator")?;
            let mut e = paired_entry(2);
            e.revoked_at_ms = Some(9);
            tx.put_role_token(&e)?;
            audit(tx, "token.revoked", 2, json!({"role": "operator"}))?;
            tx.delete_device(&id(1))?;
            audit(tx, "device.removed", 1, json!({}))
        })
        .unwrap();
    store
        .transact(|tx| {
            tx.put_pending(&pending("r3", 3, 1))?;
            audit(tx, "pairing.requested", 3, json!({"requestId": "r3"}))
        })
        .unwrap();
}

// ========================================================= contract tests

#[test]
fn reopening_loses_nothing() {
    for fx in Fixture::both("contract_reopen") {
        let mut rt = role_token(1, "operator");
        rt.rotated_at_ms = Some(3500);
        let hashes = [
            token_hash(1, "operator", "tok-a", 10),
            token_hash(1, "operator", "tok-b", 20),
        ];
        let mut coded = pending("req-1", 3, 100);
        coded.pairing_code = Some("BCDF-GHJK".into());
        let before = {
            let store = fx.open();
            store
                .transact(|tx| {
                    tx.put_device(&device(1))?;
                    tx.put_device(&device(2))?;
                    tx.put_role_token(&rt)?;
                    tx.put_role_token(&role_token(1, "node"))?;
                    for h in &hashes {
                        tx.add_token_hash(h, 5)?;
                    }
                    tx.add_token_hash(&token_hash(2, "node", "tok-c", 5), 5)?;
                    tx.put_pending(&coded)?;
                    tx.put_pending(&pending("req-2", 4, 90))?;
                    tx.touch_token(&id(1), "operator", 4000)?;
                    tx.mark_seen(
                        &id(2),
                        &Seen {
                            at_ms: 4100,
                            reason: Some("connect".into()),
                            remote_ip: Some("10.9.9.9".into()),
                        },
                    )?;
                    tx.insert_setup_code(&setup_code("s-live", "boot-1", 10_000))?;
                    tx.insert_setup_code(&setup_code("s-used", "boot-2", 10_000))?;
                    assert!(tx.consume_setup_code("s-used", &id(2), 500)?);
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
            let before = snapshot(&store);
            assert_eq!(before.devices.len(), 2, "{fx}");
            assert_eq!(before.role_tokens.len(), 2, "{fx}");
            assert_eq!(before.token_hashes.len(), 3, "{fx}");
            assert_eq!(before.pending.len(), 2, "{fx}");
            assert_eq!(before.setup_codes.len(), 2, "{fx}");
            assert_eq!(before.audit.len(), 2, "{fx}");
            before
        };

        let store = fx.open();
        assert_eq!(snapshot(&store), before, "{fx}");
        let op = store.role_token(&id(1), "operator").unwrap();
        assert_eq!(
            (op.last_used_at_ms, op.rotated_at_ms),
            (Some(4000), Some(3500)),
            "{fx}"
        );
        assert_eq!(store.token_hashes(&id(1), "operator"), hashes, "{fx}");
        assert_eq!(
            store.device(&id(2)).unwrap().last_seen_reason.as_deref(),
            Some("connect"),
            "{fx}"
        );
        assert_eq!(store.pending_by_code("BCDF-GHJK"), Some(coded), "{fx}");
        let used = store
            .setup_codes()
            .unwrap()
            .into_iter()
            .find(|c| c.setup_id == "s-used")
            .unwrap();
        assert_eq!(used.used_by_device_id, Some(id(2)), "{fx}");
        assert_eq!(used.state(600), "used", "{fx}");
        assert_eq!(
            store.schema_version().unwrap(),
            store.supported_schema_version(),
            "{fx}"
        );

        // The chain continues across restarts.
        append(&store, &[record(3, "token.rotated", Some(1))]);
        let rows = all_audit(&store);
        assert_eq!(rows[2].seq, 3, "{fx}");
        assert_eq!(rows[2].prev_hash, rows[1].hash, "{fx}");
        let v = store.verify_audit().unwrap();
        assert!(v.ok && v.rows == 3, "{fx}: {v:?}");
    }
}

#[test]
fn a_failed_transaction_changes_neither_database_nor_cache() {
    for fx in Fixture::both("contract_failed_tx") {
        let store = fx.open();
        store
            .transact(|tx| {
                tx.put_device(&device(1))?;
                tx.put_role_token(&role_token(1, "operator"))?;
                tx.add_token_hash(&token_hash(1, "operator", "tok-1", 1), 3)?;
                tx.put_pending(&pending("req-1", 9, 50))?;
                tx.insert_setup_code(&setup_code("s-1", "boot-1", 10_000))?;
                tx.append_audit(&record(1, "pairing.approved", Some(1)))?;
                Ok(())
            })
            .unwrap();
        let before = snapshot(&store);
        assert_eq!(stored(&fx), before, "{fx}");

        // The closure gives up after writing everywhere.
        let err = store
            .transact(|tx| -> Result<(), StoreError> {
                let mut changed = device(1);
                changed.display_name = Some("renamed".into());
                tx.put_device(&changed)?;
                tx.put_device(&device(2))?;
                tx.put_role_token(&role_token(2, "operator"))?;
                tx.add_token_hash(&token_hash(1, "operator", "tok-x", 9), 1)?;
                tx.delete_token_hashes(&id(1), "node")?;
                tx.touch_token(&id(1), "operator", 99)?;
                tx.delete_pending("req-1")?;
                tx.put_pending(&pending("req-2", 2, 60))?;
                tx.insert_setup_code(&setup_code("s-2", "boot-2", 10_000))?;
                assert!(tx.consume_setup_code("s-1", &id(1), 500)?);
                tx.append_audit(&record(2, "token.rotated", Some(1)))?;
                tx.announce(json!({"close": id(1)}));
                // Reads inside the transaction see its own writes.
                assert_eq!(
                    tx.device(&id(1))?.unwrap().display_name.as_deref(),
                    Some("renamed")
                );
                assert!(tx.role_token(&id(2), "operator")?.is_some());
                assert!(tx.pending("req-1")?.is_none());
                assert!(tx.setup_code("s-2")?.is_some());
                assert_eq!(
                    tx.setup_code_by_hash(&hash_token("boot-1"))?
                        .unwrap()
                        .used_by_device_id,
                    Some(id(1))
                );
                Err(StoreError::Invalid("caller gave up".into()))
            })
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{fx}: {err}");
        assert_eq!(snapshot(&store), before, "{fx}: cache");
        assert_eq!(stored(&fx), before, "{fx}: database");
        assert!(store.token_by_hash(&hash_token("tok-x")).is_none(), "{fx}");
        assert!(store.token_by_hash(&hash_token("tok-1")).is_some(), "{fx}");

        // A failure at COMMIT (a deferred foreign key) is rolled back too.
        let err = store
            .transact(|tx| {
                tx.put_pending(&pending("req-3", 4, 60))?;
                tx.put_role_token(&role_token(77, "operator"))
            })
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{fx}: {err}");
        assert_eq!(snapshot(&store), before, "{fx}: cache");
        assert_eq!(stored(&fx), before, "{fx}: database");

        // A panicking closure rolls back, and the store stays usable.
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = store.transact(|tx| -> Result<(), StoreError> {
                tx.put_device(&device(3))?;
                panic!("boom");
            });
        }));
        assert!(caught.is_err(), "{fx}");
        assert_eq!(snapshot(&store), before, "{fx}: cache");
        assert_eq!(stored(&fx), before, "{fx}: database");

        store.transact(|tx| tx.put_device(&device(4))).unwrap();
        let after = snapshot(&store);
        assert_eq!(after.devices.len(), 2, "{fx}");
        assert_eq!(stored(&fx), after, "{fx}");
    }
}

#[test]
fn invalid_input_is_refused() {
    for fx in Fixture::both("contract_invalid") {
        let store = fx.open();
        store
            .transact(|tx| {
                tx.put_device(&device(1))?;
                tx.add_token_hash(&token_hash(1, "operator", "tok-dup", 1), 3)
            })
            .unwrap();
        let before = snapshot(&store);

        let mut bad_id = device(2);
        bad_id.device_id = "NOT-HEX".into();
        let mut upper = device(2);
        upper.device_id = id(0xabc).to_uppercase();
        let mut no_key = device(2);
        no_key.public_key.clear();
        let mut bad_pending = pending("req-x", 2, 1);
        bad_pending.device_id = "short".into();
        let no_request_id = pending("", 2, 1);
        let empty_action = AuditRecord {
            action: String::new(),
            ..record(1, "x", None)
        };
        let mut no_setup_role = setup_code("s-x", "boot-x", 10);
        no_setup_role.role.clear();
        let no_setup_id = setup_code("", "boot-y", 10);

        type Attempt<'a> = Box<dyn Fn(&mut Tx<'_>) -> Result<(), StoreError> + 'a>;
        let attempts: Vec<(&str, Attempt<'_>)> = vec![
            ("bad device id", Box::new(|tx| tx.put_device(&bad_id))),
            ("uppercase device id", Box::new(|tx| tx.put_device(&upper))),
            ("empty public key", Box::new(|tx| tx.put_device(&no_key))),
            (
                "empty role (entry)",
                Box::new(|tx| tx.put_role_token(&role_token(1, ""))),
            ),
            (
                "empty role (hash)",
                Box::new(|tx| tx.add_token_hash(&token_hash(1, "", "tok-e", 1), 3)),
            ),
            (
                "duplicate token hash",
                Box::new(|tx| tx.add_token_hash(&token_hash(1, "operator", "tok-dup", 2), 3)),
            ),
            (
                "duplicate token hash, other role",
                Box::new(|tx| tx.add_token_hash(&token_hash(1, "node", "tok-dup", 2), 3)),
            ),
            (
                "bad pending device id",
                Box::new(|tx| tx.put_pending(&bad_pending)),
            ),
            (
                "empty request id",
                Box::new(|tx| tx.put_pending(&no_request_id)),
            ),
            (
                "empty audit action",
                Box::new(|tx| tx.append_audit(&empty_action).map(drop)),
            ),
            (
                "empty setup role",
                Box::new(|tx| tx.insert_setup_code(&no_setup_role)),
            ),
            (
                "empty setup id",
                Box::new(|tx| tx.insert_setup_code(&no_setup_id)),
            ),
        ];
        for (what, attempt) in &attempts {
            // Each attempt follows a valid write in the same transaction,
            // which must be undone with it.
            let err = store
                .transact(|tx| {
                    tx.put_device(&device(5))?;
                    attempt(tx)
                })
                .unwrap_err();
            assert!(
                matches!(err, StoreError::Invalid(_)),
                "{fx}: {what}: {err:?}"
            );
            assert!(!err.to_string().contains("tok-dup"), "{fx}: {what}: {err}");
            assert_eq!(snapshot(&store), before, "{fx}: {what}: cache");
        }
        assert_eq!(stored(&fx), before, "{fx}: database");
        // The store still takes valid writes.
        store.transact(|tx| tx.put_device(&device(5))).unwrap();
        assert!(fx.open().device(&id(5)).is_some(), "{fx}");
    }
}

#[test]
fn put_device_updates_in_place_and_keeps_tokens() {
    for fx in Fixture::both("contract_put_device") {
        let store = fx.open();
        store
            .transact(|tx| {
                tx.put_device(&device(1))?;
                tx.put_role_token(&role_token(1, "operator"))?;
                tx.add_token_hash(&token_hash(1, "operator", "tok-1", 1), 3)?;
                tx.put_pending(&pending("req-1", 1, 5))
            })
            .unwrap();
        let mut updated = device(1);
        updated.display_name = Some("renamed".into());
        updated.scopes.push("operator.admin".into());
        updated.last_seen_at_ms = Some(9999);
        updated.last_seen_reason = Some("connect".into());
        store.transact(|tx| tx.put_device(&updated)).unwrap();
        for (which, s) in [("cache", store), ("reopened", fx.open())] {
            assert_eq!(s.devices(), vec![updated.clone()], "{fx}: {which}");
            assert!(s.role_token(&id(1), "operator").is_some(), "{fx}: {which}");
            assert!(
                s.token_by_hash(&hash_token("tok-1")).is_some(),
                "{fx}: {which}"
            );
            assert!(s.pending("req-1").is_some(), "{fx}: {which}");
        }
    }
}

#[test]
fn delete_device_cascades() {
    for fx in Fixture::both("contract_delete_device") {
        let store = fx.open();
        store
            .transact(|tx| {
                for n in [1, 2] {
                    tx.put_device(&device(n))?;
                    tx.put_role_token(&role_token(n, "operator"))?;
                    tx.put_role_token(&role_token(n, "node"))?;
                    tx.add_token_hash(&token_hash(n, "operator", &format!("op-{n}"), 1), 3)?;
                    tx.add_token_hash(&token_hash(n, "node", &format!("node-{n}"), 1), 3)?;
                    tx.put_pending(&pending(&format!("req-{n}"), n, 10))?;
                    tx.put_pending(&pending(&format!("req-{n}b"), n, 11))?;
                }
                Ok(())
            })
            .unwrap();

        assert!(
            store.transact(|tx| tx.delete_device(&id(1))).unwrap(),
            "{fx}"
        );
        let check = |s: &Store, which: &str| {
            assert!(s.device(&id(1)).is_none(), "{fx}: {which}");
            assert!(s.role_tokens(&id(1)).is_empty(), "{fx}: {which}");
            for role in ROLES {
                assert!(s.token_hashes(&id(1), role).is_empty(), "{fx}: {which}");
            }
            assert!(s.token_by_hash(&hash_token("op-1")).is_none(), "{fx}");
            assert!(s.token_by_hash(&hash_token("node-1")).is_none(), "{fx}");
            assert!(s.pending_for_device(&id(1)).is_empty(), "{fx}: {which}");
            // The other device is untouched.
            assert!(s.device(&id(2)).is_some(), "{fx}: {which}");
            assert_eq!(s.role_tokens(&id(2)).len(), 2, "{fx}: {which}");
            assert!(s.token_by_hash(&hash_token("op-2")).is_some(), "{fx}");
            assert_eq!(s.pending_for_device(&id(2)).len(), 2, "{fx}: {which}");
        };
        check(&store, "cache");
        check(&fx.open(), "database");
        assert!(
            !store.transact(|tx| tx.delete_device(&id(1))).unwrap(),
            "{fx}: a second delete finds nothing"
        );
        // Pending requests of a device never paired go too.
        store
            .transact(|tx| tx.put_pending(&pending("req-9", 9, 1)))
            .unwrap();
        assert!(!store.transact(|tx| tx.delete_device(&id(9))).unwrap());
        assert!(store.pending("req-9").is_none(), "{fx}");
        assert!(fx.open().pending("req-9").is_none(), "{fx}");
        assert_eq!(snapshot(&store), stored(&fx), "{fx}");
    }
}

#[test]
fn add_token_hash_keeps_only_the_newest() {
    for fx in Fixture::both("contract_token_hashes") {
        let store = fx.open();
        store
            .transact(|tx| {
                tx.put_device(&device(1))?;
                tx.add_token_hash(&token_hash(1, "node", "node-tok", 1), 1)
            })
            .unwrap();
        for i in 1..=5u64 {
            store
                .transact(|tx| {
                    tx.add_token_hash(&token_hash(1, "operator", &format!("t{i}"), i), 3)
                })
                .unwrap();
        }
        let expect = |s: &Store, which: &str| {
            assert_eq!(
                s.token_hashes(&id(1), "operator"),
                (3..=5u64)
                    .map(|i| token_hash(1, "operator", &format!("t{i}"), i))
                    .collect::<Vec<_>>(),
                "{fx}: {which}"
            );
            for gone in ["t1", "t2"] {
                assert!(
                    s.token_by_hash(&hash_token(gone)).is_none(),
                    "{fx}: {which}"
                );
            }
            for kept in ["t3", "t4", "t5", "node-tok"] {
                assert_eq!(
                    s.token_by_hash(&hash_token(kept)).map(|h| h.hash),
                    Some(hash_token(kept)),
                    "{fx}: {which}: {kept}"
                );
            }
        };
        expect(&store, "cache");
        expect(&fx.open(), "database");

        // An older issue time than the kept ones: it is added, then trimmed
        // as the oldest; cache and database agree on which went.
        store
            .transact(|tx| tx.add_token_hash(&token_hash(1, "operator", "t0", 0), 3))
            .unwrap();
        assert_eq!(snapshot(&store), stored(&fx), "{fx}");

        // keep_newest 0 still keeps the hash just added.
        store
            .transact(|tx| tx.add_token_hash(&token_hash(1, "operator", "t6", 6), 0))
            .unwrap();
        assert_eq!(store.token_hashes(&id(1), "operator").len(), 1, "{fx}");
        assert!(store.token_by_hash(&hash_token("t6")).is_some(), "{fx}");
        assert_eq!(snapshot(&store), stored(&fx), "{fx}");

        let n = store
            .transact(|tx| tx.delete_token_hashes(&id(1), "operator"))
            .unwrap();
        assert_eq!(n, 1, "{fx}");
        assert!(store.token_by_hash(&hash_token("t6")).is_none(), "{fx}");
        assert!(
            store.token_by_hash(&hash_token("node-tok")).is_some(),
            "{fx}"
        );
        assert_eq!(snapshot(&store), stored(&fx), "{fx}");
    }
}

#[test]
fn touch_token_and_mark_seen_ignore_missing_rows() {
    for fx in Fixture::both("contract_touch") {
        let store = fx.open();
        store
            .transact(|tx| {
                tx.put_device(&device(1))?;
                tx.put_role_token(&role_token(1, "operator"))
            })
            .unwrap();
        let seen = Seen {
            at_ms: 9_000,
            reason: Some("connect".into()),
            remote_ip: Some("10.0.0.9".into()),
        };
        store
            .transact(|tx| {
                tx.touch_token(&id(1), "operator", 777)?;
                tx.touch_token(&id(1), "node", 777)?;
                tx.touch_token(&id(5), "operator", 777)?;
                tx.mark_seen(&id(1), &seen)?;
                tx.mark_seen(&id(2), &seen)
            })
            .unwrap();
        for (which, s) in [("cache", store), ("database", fx.open())] {
            assert_eq!(
                s.role_token(&id(1), "operator").unwrap().last_used_at_ms,
                Some(777),
                "{fx}: {which}"
            );
            assert!(s.role_token(&id(1), "node").is_none(), "{fx}: {which}");
            assert!(s.role_tokens(&id(5)).is_empty(), "{fx}: {which}");
            let d = s.device(&id(1)).unwrap();
            assert_eq!(
                (d.last_seen_at_ms, d.last_seen_reason, d.remote_ip),
                (
                    Some(seen.at_ms),
                    seen.reason.clone(),
                    seen.remote_ip.clone()
                ),
                "{fx}: {which}"
            );
            assert_eq!(d.display_name, device(1).display_name, "{fx}: {which}");
            assert!(s.device(&id(2)).is_none(), "{fx}: {which}");
            assert_eq!(s.devices().len(), 1, "{fx}: {which}");
        }
    }
}

#[test]
fn pending_requests_lifecycle() {
    for fx in Fixture::both("contract_pending") {
        let store = fx.open();
        let mut a = pending("req-a", 1, 10);
        a.pairing_code = Some("BCDF-GHJK".into());
        store.transact(|tx| tx.put_pending(&a)).unwrap();
        assert_eq!(store.pending("req-a"), Some(a.clone()), "{fx}");
        assert_eq!(store.pending_by_code("BCDF-GHJK"), Some(a.clone()), "{fx}");
        assert_eq!(store.pending_for_device(&id(1)), vec![a.clone()], "{fx}");
        assert!(store.pending_by_code("XXXX-XXXX").is_none(), "{fx}");

        // Another request cannot take the same code.
        let mut b = pending("req-b", 2, 11);
        b.pairing_code = a.pairing_code.clone();
        assert!(store.transact(|tx| tx.put_pending(&b)).is_err(), "{fx}");
        assert!(store.pending("req-b").is_none(), "{fx}");
        assert_eq!(store.pending_by_code("BCDF-GHJK"), Some(a.clone()), "{fx}");
        assert!(fx.open().pending("req-b").is_none(), "{fx}");

        // A put with the same request id replaces it (code kept or changed).
        let mut refreshed = a.clone();
        refreshed.refreshed_at_ms = 900;
        refreshed.scopes.push("operator.write".into());
        refreshed.pairing_code = Some("MNPQ-RSTV".into());
        store.transact(|tx| tx.put_pending(&refreshed)).unwrap();
        assert_eq!(store.pending("req-a"), Some(refreshed.clone()), "{fx}");
        assert!(store.pending_by_code("BCDF-GHJK").is_none(), "{fx}");
        assert_eq!(
            store.pending_by_code("MNPQ-RSTV"),
            Some(refreshed.clone()),
            "{fx}"
        );
        // The old code is free again.
        store.transact(|tx| tx.put_pending(&b)).unwrap();
        assert_eq!(store.pending_by_code("BCDF-GHJK"), Some(b.clone()), "{fx}");

        // Pruning deletes what was last refreshed before the cutoff.
        store
            .transact(|tx| {
                tx.put_pending(&pending("stale-1", 3, 100))?;
                tx.put_pending(&pending("stale-2", 4, 200))?;
                tx.put_pending(&pending("fresh", 5, 600))
            })
            .unwrap();
        let pruned = store.prune_expired_pending(600).unwrap();
        assert_eq!(
            pruned
                .iter()
                .map(|p| p.request_id.as_str())
                .collect::<Vec<_>>(),
            ["req-b", "stale-1", "stale-2"],
            "{fx}"
        );
        assert_eq!(pruned[0], b, "{fx}: pruned rows are returned whole");
        let left = |s: &Store| {
            s.pending_list()
                .into_iter()
                .map(|p| p.request_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(left(&store), ["req-a", "fresh"], "{fx}");
        assert!(store.pending_by_code("BCDF-GHJK").is_none(), "{fx}");
        assert!(store.prune_expired_pending(600).unwrap().is_empty(), "{fx}");
        assert_eq!(left(&fx.open()), ["req-a", "fresh"], "{fx}");

        // Delete says whether it found the request.
        assert!(store.transact(|tx| tx.delete_pending("req-a")).unwrap());
        assert!(!store.transact(|tx| tx.delete_pending("req-a")).unwrap());
        assert!(store.pending_by_code("MNPQ-RSTV").is_none(), "{fx}");
        assert_eq!(left(&store), ["fresh"], "{fx}");
        assert_eq!(snapshot(&store), stored(&fx), "{fx}");
    }
}

#[test]
fn setup_codes_are_used_once_revoked_and_pruned() {
    for fx in Fixture::both("contract_setup_codes") {
        let store = fx.open();
        store
            .transact(|tx| {
                tx.insert_setup_code(&setup_code("s-live", "boot-live", 10_000))?;
                tx.insert_setup_code(&setup_code("s-revoke", "boot-revoke", 10_000))?;
                tx.insert_setup_code(&setup_code("s-expired", "boot-expired", 500))
            })
            .unwrap();
        // The same id, or the same token, cannot be minted twice.
        assert!(
            store
                .transact(|tx| tx.insert_setup_code(&setup_code("s-live", "other", 10_000)))
                .is_err(),
            "{fx}"
        );
        assert!(
            store
                .transact(|tx| tx.insert_setup_code(&setup_code("s-new", "boot-live", 10_000)))
                .is_err(),
            "{fx}"
        );
        assert_eq!(store.setup_codes().unwrap().len(), 3, "{fx}");

        let found = store
            .transact(|tx| tx.setup_code_by_hash(&hash_token("boot-live")))
            .unwrap();
        assert_eq!(
            found,
            Some(setup_code("s-live", "boot-live", 10_000)),
            "{fx}"
        );
        assert!(
            store
                .transact(|tx| tx.setup_code_by_hash(&hash_token("nope")))
                .unwrap()
                .is_none(),
            "{fx}"
        );

        // Consumed exactly once; an expired or revoked code never.
        assert!(
            store
                .transact(|tx| tx.consume_setup_code("s-live", &id(1), 1000))
                .unwrap(),
            "{fx}"
        );
        assert!(
            !store
                .transact(|tx| tx.consume_setup_code("s-live", &id(2), 1001))
                .unwrap(),
            "{fx}: second consume"
        );
        assert!(
            !store
                .transact(|tx| tx.consume_setup_code("s-expired", &id(2), 1000))
                .unwrap(),
            "{fx}: expired"
        );
        assert!(
            store
                .transact(|tx| tx.revoke_setup_code("s-revoke", 1000))
                .unwrap(),
            "{fx}"
        );
        assert!(
            !store
                .transact(|tx| tx.revoke_setup_code("s-revoke", 1001))
                .unwrap(),
            "{fx}: second revoke"
        );
        assert!(
            !store
                .transact(|tx| tx.consume_setup_code("s-revoke", &id(2), 1002))
                .unwrap(),
            "{fx}: consume revoked"
        );
        assert!(
            !store
                .transact(|tx| tx.revoke_setup_code("s-live", 1003))
                .unwrap(),
            "{fx}: revoke used"
        );
        assert!(
            !store
                .transact(|tx| tx.consume_setup_code("s-missing", &id(2), 1))
                .unwrap(),
            "{fx}: missing"
        );

        let codes = fx.open().setup_codes().unwrap();
        let state = |sid: &str| {
            let c = codes.iter().find(|c| c.setup_id == sid).unwrap();
            (c.state(2000), c.used_at_ms, c.used_by_device_id.clone())
        };
        assert_eq!(state("s-live"), ("used", Some(1000), Some(id(1))), "{fx}");
        assert_eq!(state("s-revoke"), ("revoked", None, None), "{fx}");
        assert_eq!(state("s-expired"), ("expired", None, None), "{fx}");
        assert_eq!(
            codes
                .iter()
                .find(|c| c.setup_id == "s-revoke")
                .unwrap()
                .revoked_at_ms,
            Some(1000),
            "{fx}"
        );

        // Pruning deletes only what expired before the cutoff.
        assert_eq!(
            store.prune_expired_setup_codes(500).unwrap(),
            Vec::<String>::new(),
            "{fx}"
        );
        assert_eq!(
            store.prune_expired_setup_codes(2000).unwrap(),
            ["s-expired"],
            "{fx}"
        );
        let left = |s: &Store| {
            s.setup_codes()
                .unwrap()
                .into_iter()
                .map(|c| c.setup_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(left(&store), ["s-live", "s-revoke"], "{fx}");
        assert_eq!(left(&fx.open()), ["s-live", "s-revoke"], "{fx}");
    }
}

fn passkey(id: &str, label: &str, created_at_ms: u64) -> Passkey {
    Passkey {
        credential_id: id.into(),
        user_handle: format!("user-{id}"),
        label: label.into(),
        rp_id: "localhost".into(),
        scopes: vec!["operator.read".into()],
        public_key: vec![1, 2, 3, 0xff],
        state: vec![1, 0, 0, 0, 0, 0, 1],
        sign_count: 0,
        created_by: Some("shared-secret".into()),
        created_at_ms,
        last_used_at_ms: None,
        flagged_at_ms: None,
        flagged_reason: None,
    }
}

#[test]
fn passkeys_are_stored_used_flagged_and_removed() {
    for fx in Fixture::both("contract_passkeys") {
        let store = fx.open();
        store
            .transact(|tx| {
                tx.insert_passkey(&passkey("cred-a", "laptop", 100))?;
                tx.insert_passkey(&passkey("cred-b", "phone", 200))
            })
            .unwrap();
        // One credential id, once.
        assert!(
            store
                .transact(|tx| tx.insert_passkey(&passkey("cred-a", "again", 300)))
                .is_err(),
            "{fx}"
        );
        // Newest first; the bytes come back as written.
        let all = store.passkeys().unwrap();
        assert_eq!(
            all.iter().map(|p| p.label.as_str()).collect::<Vec<_>>(),
            ["phone", "laptop"],
            "{fx}"
        );
        assert_eq!(
            store.passkey("cred-a").unwrap(),
            Some(passkey("cred-a", "laptop", 100)),
            "{fx}"
        );
        assert_eq!(store.passkey("nope").unwrap(), None, "{fx}");

        let state = vec![1, 0, 7, 0, 0, 0, 1];
        assert!(
            store
                .transact(|tx| tx.update_passkey_use("cred-a", &state, 7, 1_000))
                .unwrap(),
            "{fx}"
        );
        assert!(
            !store
                .transact(|tx| tx.update_passkey_use("nope", &state, 7, 1_000))
                .unwrap(),
            "{fx}"
        );
        // A second reader (another replica) sees the update: not cached.
        let other = fx.open();
        let used = other.passkey("cred-a").unwrap().unwrap();
        assert_eq!(
            (used.state.clone(), used.sign_count, used.last_used_at_ms),
            (state, 7, Some(1_000)),
            "{fx}"
        );

        // Flagged once; the first reason stays.
        assert!(
            store
                .transact(|tx| tx.flag_passkey("cred-b", 2_000, "counter"))
                .unwrap()
        );
        assert!(
            !store
                .transact(|tx| tx.flag_passkey("cred-b", 3_000, "again"))
                .unwrap()
        );
        let flagged = store.passkey("cred-b").unwrap().unwrap();
        assert_eq!(
            (flagged.flagged_at_ms, flagged.flagged_reason.as_deref()),
            (Some(2_000), Some("counter")),
            "{fx}"
        );

        // A failed transaction leaves the row alone.
        let failed: Result<(), StoreError> = store.transact(|tx| {
            tx.delete_passkey("cred-a")?;
            Err(StoreError::Invalid("roll back".into()))
        });
        assert!(failed.is_err());
        assert!(other.passkey("cred-a").unwrap().is_some(), "{fx}");

        assert!(store.transact(|tx| tx.delete_passkey("cred-a")).unwrap());
        assert!(!store.transact(|tx| tx.delete_passkey("cred-a")).unwrap());
        assert_eq!(other.passkeys().unwrap().len(), 1, "{fx}");
        assert!(store.check_invariants().unwrap().ok(), "{fx}");
        drop(other);
    }
}

#[test]
fn audit_chain_verifies_and_lists_with_filters_and_pages() {
    for fx in Fixture::both("contract_audit") {
        let store = fx.open();
        let empty = store.verify_audit().unwrap();
        assert!(empty.ok && empty.rows == 0, "{fx}: {empty:?}");
        assert!(
            store
                .audit_list(&AuditQuery::default())
                .unwrap()
                .rows
                .is_empty(),
            "{fx}"
        );

        let first = append(&store, &[record(42, "pairing.requested", Some(1))]);
        assert_eq!(first[0].seq, 1, "{fx}");
        assert_eq!(first[0].prev_hash, GENESIS_HASH, "{fx}");
        assert_eq!(
            first[0].details,
            json!({"n": 42, "nested": {"a": 1, "b": 2}}),
            "{fx}"
        );
        assert_eq!(all_audit(&store), first, "{fx}");

        let records: Vec<AuditRecord> = (2..=30u64)
            .map(|i| {
                let action = if i % 3 == 0 {
                    "auth.failure"
                } else {
                    "pairing.requested"
                };
                record(i * 10, action, Some(i % 2))
            })
            .collect();
        let appended = append(&store, &records);
        let rows = all_audit(&store);
        assert_eq!(rows.len(), 30, "{fx}");
        assert_eq!(rows[1..], appended[..], "{fx}");
        for w in rows.windows(2) {
            assert_eq!(w[1].seq, w[0].seq + 1, "{fx}");
            assert_eq!(w[1].prev_hash, w[0].hash, "{fx}");
        }
        let v = store.verify_audit().unwrap();
        assert!(
            v.ok && v.rows == 30 && v.first_bad_seq.is_none(),
            "{fx}: {v:?}"
        );

        let q = |f: &dyn Fn(&mut AuditQuery)| {
            let mut q = AuditQuery {
                limit: 1000,
                ..AuditQuery::default()
            };
            f(&mut q);
            store.audit_list(&q).unwrap()
        };
        let failures = q(&|q| q.action = Some("auth.failure".into()));
        assert_eq!(failures.rows.len(), 10, "{fx}");
        assert!(failures.rows.iter().all(|r| r.action == "auth.failure"));
        assert_eq!(failures.next_cursor, None, "{fx}");

        let dev1 = q(&|q| q.device_id = Some(id(1)));
        assert_eq!(dev1.rows.len(), 15, "{fx}");
        assert!(dev1.rows.iter().all(|r| r.device_id == Some(id(1))));

        let window = q(&|q| {
            q.since_ms = Some(50);
            q.until_ms = Some(100);
        });
        assert_eq!(
            window.rows.iter().map(|r| r.ts_ms).collect::<Vec<_>>(),
            [50, 60, 70, 80, 90, 100],
            "{fx}"
        );
        let combined = q(&|q| {
            q.action = Some("auth.failure".into());
            q.device_id = Some(id(0));
            q.since_ms = Some(100);
        });
        assert_eq!(
            combined.rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [12, 18, 24, 30],
            "{fx}"
        );
        assert!(q(&|q| q.action = Some("nope".into())).rows.is_empty());

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
                    assert_eq!(Some(c), page.rows.last().map(|r| r.seq), "{fx}");
                    cursor = Some(c);
                }
                None => break,
            }
        }
        assert_eq!(seen, (1..=30).collect::<Vec<_>>(), "{fx}");
        assert_eq!(pages, 5, "{fx}");
        // Filtered pages carry the filter across the cursor.
        let page = store
            .audit_list(&AuditQuery {
                action: Some("auth.failure".into()),
                limit: 4,
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(
            page.rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [3, 6, 9, 12]
        );
        assert_eq!(page.next_cursor, Some(12), "{fx}");
        let page = store
            .audit_list(&AuditQuery {
                action: Some("auth.failure".into()),
                after_seq: page.next_cursor,
                limit: 6,
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(
            page.rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [15, 18, 21, 24, 27, 30]
        );
        assert_eq!(page.next_cursor, None, "{fx}: an exactly full last page");

        // The default page is 100 rows; larger limits are capped at 1000.
        let many: Vec<AuditRecord> = (0..1100)
            .map(|i| record(1000 + i, "auth.failure", None))
            .collect();
        append(&store, &many);
        assert_eq!(
            store.audit_list(&AuditQuery::default()).unwrap().rows.len(),
            100,
            "{fx}"
        );
        let capped = store
            .audit_list(&AuditQuery {
                limit: 5000,
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(capped.rows.len(), 1000, "{fx}");
        assert_eq!(capped.next_cursor, Some(1000), "{fx}");
        let v = fx.open().verify_audit().unwrap();
        assert!(v.ok && v.rows == 1130, "{fx}: {v:?}");
    }
}

#[test]
fn concurrent_writers_keep_one_chain() {
    const THREADS: u64 = 4;
    const EACH: u64 = 15;
    for fx in Fixture::both("contract_concurrent") {
        let store = Arc::new(fx.open());
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        let rid = format!("r-{t}-{i}");
                        store
                            .transact(|tx| {
                                tx.put_pending(&pending(&rid, t, i))?;
                                tx.append_audit(&record(i, "pairing.requested", Some(t)))
                            })
                            .unwrap();
                        assert!(store.pending(&rid).is_some());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let total = THREADS * EACH;
        assert_eq!(store.pending_list().len() as u64, total, "{fx}");
        let v = store.verify_audit().unwrap();
        assert!(v.ok && v.rows == total, "{fx}: {v:?}");
        let seqs: Vec<u64> = all_audit(&store).iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=total).collect::<Vec<_>>(), "{fx}: no gaps");
        assert_eq!(snapshot(&store), stored(&fx), "{fx}");
    }
}

#[test]
fn invariants_hold_after_a_pairing_history() {
    for fx in Fixture::both("contract_invariants") {
        let store = fx.open();
        let empty = store.check_invariants().unwrap();
        assert!(empty.ok(), "{fx}: {:?}", empty.violations);
        pairing_history(&store);
        let report = store.check_invariants().unwrap();
        assert!(report.ok(), "{fx}: {:?}", report.violations);
        assert_eq!(report.schema_version, store.supported_schema_version());
        assert_eq!(
            (
                report.devices,
                report.role_tokens,
                report.token_hashes,
                report.pending
            ),
            (1, 1, 0, 1),
            "{fx}"
        );
        assert!(report.audit.ok && report.audit.rows == 7, "{fx}");
        assert_eq!(fx.open().check_invariants().unwrap(), report, "{fx}");

        // And a device written without its approval row is found.
        store.transact(|tx| tx.put_device(&device(9))).unwrap();
        let report = store.check_invariants().unwrap();
        assert!(
            report.violations.iter().any(|v| v.rule == "approval-audit"),
            "{fx}: {:?}",
            report.violations
        );
    }
}

// ===================================================== PostgreSQL only

#[test]
fn pg_a_replica_catches_up_with_another_replicas_change() {
    let (fx, a, b) = pg_pair("pg_catch_up");
    let start = b.applied_seq();
    assert_eq!(a.applied_seq(), start);
    let effect = json!({"closeSessions": {"deviceId": id(1)}, "reason": "rotated"});
    a.transact(|tx| {
        tx.put_device(&device(1))?;
        tx.put_role_token(&role_token(1, "operator"))?;
        tx.add_token_hash(&token_hash(1, "operator", "tok-1", 1), 3)?;
        let mut p = pending("req-2", 2, 5);
        p.pairing_code = Some("BCDF-GHJK".into());
        tx.put_pending(&p)?;
        tx.append_audit(&record(1, "pairing.approved", Some(1)))?;
        tx.announce(effect.clone());
        tx.announce(json!("second"));
        Ok(())
    })
    .unwrap();
    // Not in B's cache until B catches up.
    assert!(b.device(&id(1)).is_none());
    // A, which had applied everything before it, is at its own change.
    let logged = a.changes_after(start).unwrap();
    assert_eq!(logged.len(), 1);
    assert_eq!(a.applied_seq(), logged[0].seq);

    let caught = b.catch_up().unwrap();
    assert!(!caught.resynced);
    assert_eq!(caught.changes.len(), 1, "{:?}", caught.changes);
    let change = &caught.changes[0];
    assert_eq!(change.origin, a.replica_id().unwrap());
    assert_eq!(change.devices, vec![id(1), id(2)]);
    assert_eq!(change.effects, vec![effect, json!("second")]);
    assert_eq!(caught.applied_seq, change.seq);
    assert_eq!(b.applied_seq(), change.seq);
    assert!(change.seq > start);

    assert_eq!(b.device(&id(1)), a.device(&id(1)));
    assert_eq!(b.role_tokens(&id(1)), a.role_tokens(&id(1)));
    assert_eq!(
        b.token_by_hash(&hash_token("tok-1")),
        Some(token_hash(1, "operator", "tok-1", 1))
    );
    assert_eq!(b.pending("req-2"), a.pending("req-2"));
    assert_eq!(b.pending_by_code("BCDF-GHJK"), a.pending("req-2"));
    assert_eq!(snapshot(&b), snapshot(&a));
    assert_eq!(snapshot(&b), stored(&fx));

    // Nothing new: an empty catch-up at the same position.
    let again = b.catch_up().unwrap();
    assert!(again.changes.is_empty() && !again.resynced);
    assert_eq!(again.applied_seq, change.seq);

    // A does not get its own change back, but moves past it.
    let own = a.catch_up().unwrap();
    assert!(own.changes.is_empty(), "{:?}", own.changes);
    assert_eq!(own.applied_seq, change.seq);

    // Deletions, trims and touches travel too.
    b.transact(|tx| {
        tx.add_token_hash(&token_hash(1, "operator", "tok-2", 2), 1)?;
        tx.touch_token(&id(1), "operator", 77)?;
        tx.delete_pending("req-2")
    })
    .unwrap();
    let caught = a.catch_up().unwrap();
    assert_eq!(caught.changes.len(), 1);
    assert_eq!(caught.changes[0].origin, b.replica_id().unwrap());
    assert_eq!(caught.changes[0].devices, vec![id(1), id(2)]);
    assert!(caught.changes[0].effects.is_empty());
    assert!(a.token_by_hash(&hash_token("tok-1")).is_none());
    assert!(a.token_by_hash(&hash_token("tok-2")).is_some());
    assert!(a.pending("req-2").is_none());
    assert_eq!(
        a.role_token(&id(1), "operator").unwrap().last_used_at_ms,
        Some(77)
    );
    a.transact(|tx| tx.delete_device(&id(1))).unwrap();
    let caught = b.catch_up().unwrap();
    assert_eq!(caught.changes[0].devices, vec![id(1)]);
    assert!(b.device(&id(1)).is_none());
    assert!(b.role_tokens(&id(1)).is_empty());
    assert!(b.token_by_hash(&hash_token("tok-2")).is_none());
    assert_eq!(snapshot(&b), snapshot(&a));
    assert_eq!(snapshot(&b), stored(&fx));

    // Several changes from several replicas arrive in order.
    let c = fx.open();
    a.transact(|tx| tx.put_device(&device(3))).unwrap();
    c.transact(|tx| tx.put_device(&device(4))).unwrap();
    a.transact(|tx| tx.put_device(&device(5))).unwrap();
    let caught = b.catch_up().unwrap();
    assert_eq!(
        caught
            .changes
            .iter()
            .map(|c| c.devices.clone())
            .collect::<Vec<_>>(),
        [[id(3)], [id(4)], [id(5)]]
    );
    assert!(caught.changes.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(snapshot(&b), stored(&fx));
}

#[test]
fn pg_only_committed_changes_reach_the_log() {
    let (_fx, a, b) = pg_pair("pg_rollback");
    let start = a.applied_seq();
    // The closure fails: nothing, not even the announced effect, is logged.
    let _ = a
        .transact(|tx| -> Result<(), StoreError> {
            tx.put_device(&device(1))?;
            tx.announce(json!({"close": id(1)}));
            Err(StoreError::Invalid("gave up".into()))
        })
        .unwrap_err();
    // COMMIT fails (a deferred foreign key).
    let _ = a
        .transact(|tx| {
            tx.announce(json!({"close": id(2)}));
            tx.put_role_token(&role_token(2, "operator"))
        })
        .unwrap_err();
    // A transaction that changed nothing logs nothing either.
    a.transact(|tx| {
        tx.touch_token(&id(3), "operator", 1)?;
        tx.mark_seen(
            &id(3),
            &Seen {
                at_ms: 1,
                reason: None,
                remote_ip: None,
            },
        )?;
        tx.delete_pending("nope")?;
        tx.append_audit(&record(1, "auth.failure", None))
    })
    .unwrap();
    assert!(a.changes_after(start).unwrap().is_empty());
    let caught = b.catch_up().unwrap();
    assert!(caught.changes.is_empty() && !caught.resynced, "{caught:?}");

    // An effect alone is a change.
    a.transact(|tx| {
        tx.announce(json!({"event": "lockout"}));
        Ok(())
    })
    .unwrap();
    let log = a.changes_after(start).unwrap();
    assert_eq!(log.len(), 1);
    assert!(log[0].devices.is_empty());
    assert_eq!(log[0].effects, [json!({"event": "lockout"})]);
    // After the failed transactions above, B follows on without a resync.
    let caught = b.catch_up().unwrap();
    assert!(
        !caught.resynced,
        "a rolled-back transaction is not a lost change"
    );
    assert_eq!(caught.changes, log);
}

#[test]
fn pg_listen_reports_commits_of_other_replicas() {
    let (_fx, a, b) = pg_pair("pg_listen");
    let rx = b.listen().expect("PostgreSQL stores listen");
    assert!(
        wait_until(Duration::from_secs(10), || rx.borrow().connected),
        "LISTEN never connected: {:?}",
        *rx.borrow()
    );
    let state = *rx.borrow();
    assert!(state.epoch >= 1);
    a.transact(|tx| tx.put_device(&device(1))).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || rx.borrow().notified
            > state.notified),
        "no notification: {:?}",
        *rx.borrow()
    );
    let caught = b.catch_up().unwrap();
    assert_eq!(caught.changes.len(), 1);
    assert!(b.device(&id(1)).is_some());
    // A transaction that changed nothing announces nothing.
    let seen = rx.borrow().notified;
    a.transact(|tx| tx.append_audit(&record(1, "auth.failure", None)).map(drop))
        .unwrap();
    a.transact(|tx| tx.put_device(&device(2))).unwrap();
    assert!(wait_until(Duration::from_secs(10), || rx.borrow().notified > seen));
    assert_eq!(
        rx.borrow().notified,
        seen + 1,
        "one change, one notification"
    );
    // A second call shares the same follower.
    assert_eq!(b.listen().unwrap().borrow().epoch, rx.borrow().epoch);
}

#[test]
fn pg_replicas_opening_together_migrate_once() {
    let fx = Arc::new(Fixture::postgres("pg_concurrent_open"));
    let barrier = Arc::new(std::sync::Barrier::new(3));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let fx = Arc::clone(&fx);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let target = fx.target();
                barrier.wait();
                Store::open_postgres(&target)
            })
        })
        .collect();
    let stores: Vec<Store> = threads
        .into_iter()
        .map(|t| t.join().unwrap().expect("every replica opens"))
        .collect();
    for s in &stores {
        assert_eq!(s.schema_version().unwrap(), s.supported_schema_version());
    }
    stores[0].transact(|tx| tx.put_device(&device(1))).unwrap();
    stores[2].catch_up().unwrap();
    assert!(stores[2].device(&id(1)).is_some());
    assert!(stores[1].check_invariants().unwrap().audit.ok);
}

#[test]
fn pg_replicas_writing_together_keep_one_chain() {
    const REPLICAS: u64 = 3;
    const EACH: u64 = 10;
    let fx = Arc::new(Fixture::postgres("pg_concurrent_replicas"));
    let threads: Vec<_> = (0..REPLICAS)
        .map(|t| {
            let store = fx.open();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    store
                        .transact(|tx| {
                            tx.put_pending(&pending(&format!("r-{t}-{i}"), t, i))?;
                            tx.append_audit(&record(i, "pairing.requested", Some(t)))
                        })
                        .unwrap();
                }
                store.catch_up().unwrap();
                snapshot(&store)
            })
        })
        .collect();
    let snapshots: Vec<Snapshot> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let store = fx.open();
    let total = REPLICAS * EACH;
    let v = store.verify_audit().unwrap();
    assert!(v.ok && v.rows == total, "{v:?}");
    let seqs: Vec<u64> = all_audit(&store).iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
    let log = store.changes_after(0).unwrap();
    assert_eq!(log.len() as u64, total);
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
    // Each replica saw the others' requests once it caught up (the last
    // writer's snapshot is complete; all agree on their own rows).
    assert_eq!(store.pending_list().len() as u64, total);
    let latest = snapshot(&store);
    for s in &snapshots {
        for p in &s.pending {
            assert!(latest.pending.contains(p));
        }
    }
    for s in [fx.open(), fx.open()] {
        assert_eq!(snapshot(&s), latest);
    }
}

#[test]
fn pg_import_copies_a_sqlite_registry_once() {
    // A consistent SQLite registry, written through the SQLite store.
    let lite = Fixture::sqlite();
    let source = lite.open();
    pairing_history(&source);
    approve(&source, 4, "t4");
    source
        .transact(|tx| {
            tx.add_token_hash(&token_hash(4, "operator", "t4-b", 3), 8)?;
            tx.insert_setup_code(&setup_code("s-live", "boot-1", 10_000))?;
            tx.insert_setup_code(&setup_code("s-used", "boot-2", 10_000))?;
            assert!(tx.consume_setup_code("s-used", &id(4), 500)?);
            tx.insert_passkey(&passkey("cred-1", "laptop", 100))?;
            for i in 0..5 {
                tx.append_audit(&record(100 + i, "auth.failure", None))?;
            }
            Ok(())
        })
        .unwrap();
    let check = check_database(&lite.sqlite_path()).unwrap();
    assert!(check.ok(), "{:?}", check.violations);
    let expected = snapshot(&source);
    assert_eq!(expected.audit.len(), 14);

    // A SQLite store cannot be a copy target.
    let other = Fixture::sqlite().open();
    assert!(matches!(
        other.import_sqlite(&lite.sqlite_path()),
        Err(StoreError::Invalid(_))
    ));

    let fx = Fixture::postgres("pg_import");
    let pg = fx.open();
    let bystander = fx.open();
    let summary = pg.import_sqlite(&lite.sqlite_path()).unwrap();
    assert_eq!(
        (
            summary.devices,
            summary.role_tokens,
            summary.token_hashes,
            summary.pending,
            summary.setup_codes,
            summary.audit_rows,
            summary.passkeys,
        ),
        (2, 2, 2, 1, 2, 14, 1)
    );
    assert_eq!(
        pg.passkey("cred-1").unwrap(),
        Some(passkey("cred-1", "laptop", 100))
    );
    assert_eq!(
        summary.audit_head.as_deref(),
        Some(expected.audit.last().unwrap().hash.as_str())
    );
    let v = pg.verify_audit().unwrap();
    assert!(v.ok && v.rows == 14, "{v:?}");
    assert_eq!(snapshot(&pg), expected, "the importing store's cache");
    assert_eq!(stored(&fx), expected, "the database");
    assert!(pg.check_invariants().unwrap().ok());
    assert!(pg.token_by_hash(&hash_token("t4-b")).is_some());
    // The audit chain goes on from the copied head.
    let next = append(&pg, &[record(200, "auth.failure", None)]);
    assert_eq!(next[0].seq, 15);
    assert_eq!(next[0].prev_hash, summary.audit_head.clone().unwrap());

    // A second import into the now non-empty database is refused, and
    // changes nothing.
    let before = stored(&fx);
    let err = pg.import_sqlite(&lite.sqlite_path()).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("already holds a registry"), "{text}");
    assert!(text.contains(fx.target().display()), "{text}");
    assert_eq!(stored(&fx), before);
    drop(bystander);
}

#[test]
fn pg_presence_is_shared_filtered_and_dropped() {
    let (_fx, a, b) = pg_pair("pg_presence");
    assert!(b.presence(0).unwrap().is_empty());
    let mine = ReplicaPresence {
        replica_id: a.replica_id().unwrap().into(),
        host: "host-a".into(),
        started_at_ms: 1_000,
        refreshed_at_ms: 50_000,
        sessions: 2,
        entries: json!([{"deviceId": id(1), "role": "operator"}, {"deviceId": id(2)}]),
    };
    a.put_presence(&mine).unwrap();
    assert_eq!(b.presence(40_000).unwrap(), vec![mine.clone()]);
    assert_eq!(
        a.presence(40_000).unwrap(),
        vec![mine.clone()],
        "its own row"
    );

    // B's row, last refreshed long ago, is filtered by the cutoff.
    let stale = ReplicaPresence {
        replica_id: b.replica_id().unwrap().into(),
        host: "host-b".into(),
        started_at_ms: 500,
        refreshed_at_ms: 10_000,
        sessions: 0,
        entries: json!([]),
    };
    b.put_presence(&stale).unwrap();
    assert_eq!(a.presence(40_000).unwrap(), vec![mine.clone()]);
    assert_eq!(a.presence(0).unwrap(), vec![stale.clone(), mine.clone()]);
    assert_eq!(
        a.presence(50_000).unwrap(),
        Vec::new(),
        "refreshed exactly at the cutoff is stale"
    );

    // A refresh replaces the row.
    let refreshed = ReplicaPresence {
        refreshed_at_ms: 60_000,
        sessions: 3,
        ..mine.clone()
    };
    a.put_presence(&refreshed).unwrap();
    assert_eq!(b.presence(40_000).unwrap(), vec![refreshed.clone()]);

    // Dropping removes the replica's own row and every stale one.
    a.drop_presence(20_000).unwrap();
    assert!(b.presence(0).unwrap().is_empty());
    b.put_presence(&stale).unwrap();
    a.put_presence(&refreshed).unwrap();
    b.drop_presence(0).unwrap();
    assert_eq!(a.presence(0).unwrap(), vec![refreshed]);
}

#[test]
fn pg_pruned_log_keeps_its_newest_row_and_forces_a_resync() {
    let (fx, a, b) = pg_pair("pg_prune");
    assert_eq!(a.prune_changes(EVERYTHING).unwrap(), 0, "an empty log");
    a.transact(|tx| {
        tx.put_device(&device(1))?;
        tx.put_role_token(&role_token(1, "operator"))?;
        tx.add_token_hash(&token_hash(1, "operator", "tok-1", 1), 3)
    })
    .unwrap();
    b.catch_up().unwrap();
    assert!(b.device(&id(1)).is_some());

    // B falls behind: A removes device 1 and adds two more.
    a.transact(|tx| tx.delete_device(&id(1))).unwrap();
    a.transact(|tx| tx.put_device(&device(2))).unwrap();
    a.transact(|tx| {
        tx.put_device(&device(3))?;
        tx.put_pending(&pending("req-3", 3, 1))
    })
    .unwrap();
    let log = a.changes_after(0).unwrap();
    assert_eq!(log.len(), 4);
    assert_eq!(a.prune_changes(0).unwrap(), 0, "nothing is that old");

    // Pruning everything keeps the newest row: the sequence goes on.
    assert_eq!(a.prune_changes(EVERYTHING).unwrap(), 3);
    let kept = a.changes_after(0).unwrap();
    assert_eq!(kept, log[3..]);
    assert_eq!(a.prune_changes(EVERYTHING).unwrap(), 0);

    let caught = b.catch_up().unwrap();
    assert!(caught.resynced, "the log no longer reaches B's position");
    assert_eq!(caught.applied_seq, log[3].seq);
    assert!(b.device(&id(1)).is_none(), "the removal was applied");
    assert!(b.token_by_hash(&hash_token("tok-1")).is_none());
    assert!(b.device(&id(2)).is_some() && b.device(&id(3)).is_some());
    assert!(b.pending("req-3").is_some());
    assert_eq!(snapshot(&b), stored(&fx));
    assert_eq!(snapshot(&b), snapshot(&a));

    // From there on, B follows normally.
    a.transact(|tx| tx.put_device(&device(4))).unwrap();
    let caught = b.catch_up().unwrap();
    assert!(!caught.resynced);
    assert_eq!(caught.changes.len(), 1);
    assert!(b.device(&id(4)).is_some());
    // A replica that was up to date is not resynced by a prune.
    assert!(a.prune_changes(EVERYTHING).unwrap() >= 1);
    let own = a.catch_up().unwrap();
    assert!(!own.resynced && own.changes.is_empty());
    let caught = b.catch_up().unwrap();
    assert!(!caught.resynced && caught.changes.is_empty());
    let seq = a.changes_after(0).unwrap().last().unwrap().seq;
    a.transact(|tx| tx.put_device(&device(5))).unwrap();
    assert_eq!(a.changes_after(seq).unwrap()[0].seq, seq + 1);
}

#[test]
fn pg_connection_errors_name_the_target_never_the_password() {
    let fx = Fixture::postgres("pg_bad_password");
    let Fixture::Postgres { url, .. } = &fx else {
        unreachable!()
    };
    let good = fx.target();
    let dir = TempDir::new().unwrap();
    let secret = "not-the-password-Qz7x";
    let wrong = dir.path().join("wrong-password");
    std::fs::write(&wrong, format!("{secret}\n")).unwrap();

    let check = |e: &StoreError, target: &str| {
        let text = e.to_string();
        assert!(
            matches!(e, StoreError::Unreachable { .. } | StoreError::Sqlite(_)),
            "{e:?}"
        );
        assert!(text.contains(target), "{text}");
        assert!(!text.contains(secret), "{text}");
        assert!(!format!("{e:?}").contains(secret), "{e:?}");
    };

    // A wrong password from the password file.
    let target = PgTarget::parse(url, Some(&wrong)).unwrap();
    assert_eq!(target.display(), good.display());
    assert!(!format!("{target} {target:?}").contains(secret));
    let err = Store::open_postgres(&target).unwrap_err();
    check(&err, good.display());

    // A wrong password in the URL itself.
    let with_password = url.replacen("://clawgate@", &format!("://clawgate:{secret}@"), 1);
    assert_ne!(&with_password, url, "the test cluster's user is clawgate");
    let target = PgTarget::parse(&with_password, None).unwrap();
    let err = Store::open_postgres(&target).unwrap_err();
    check(&err, good.display());

    // Nothing listening: unreachable, naming where it looked.
    let (_, db) = url.rsplit_once('/').unwrap();
    let nowhere = format!("postgres://clawgate:{secret}@127.0.0.1:1/{db}");
    let target = PgTarget::parse(&nowhere, None).unwrap();
    let err = Store::open_postgres(&target).unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    check(&err, &format!("127.0.0.1:1/{db}"));
}
