//! TLS to PostgreSQL (`sslmode=require` / `verify-full`, `sslrootcert`)
//! against a real cluster of its own (`scripts/pg.sh`), switched to
//! certificate-only (`hostssl`) connections with a test CA.
//!
//! Needs `CLAWGATE_TEST_PG_SCRIPT` (set by scripts/test.sh): without it the
//! test fails, saying how to run it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use clawgate_store::{PgTarget, Store, StoreError};

fn pg_script() -> PathBuf {
    std::env::var_os("CLAWGATE_TEST_PG_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "this test needs scripts/pg.sh: run it through scripts/test.sh, or set \
                 CLAWGATE_TEST_PG_SCRIPT=<checkout>/scripts/pg.sh"
            )
        })
}

fn pg(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(pg_script())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct Cluster(PathBuf);

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(pg_script())
            .args(["destroy", self.0.to_str().unwrap()])
            .output();
    }
}

/// A CA and a server certificate for `localhost` only, signed by it.
fn certificates() -> (String, String, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "clawgate test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let server = server_params.signed_by(&server_key, &issuer).unwrap();
    (ca.pem(), server.pem(), server_key.serialize_pem())
}

/// Writes `text` as a file owned by the cluster's user (the owner of
/// `data`), mode `mode`.
fn write_owned(data: &Path, name: &str, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let path = data.join(name);
    std::fs::write(&path, text).unwrap();
    let meta = std::fs::metadata(data).unwrap();
    std::os::unix::fs::chown(&path, Some(meta.uid()), Some(meta.gid())).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn psql(url: &str, password: &str, sql: &str) {
    let out = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-qc", sql])
        .env("PGPASSWORD", password)
        .output()
        .expect("psql (Debian's postgresql-client)");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn open(url: &str, password_file: &Path) -> Result<Store, StoreError> {
    Store::open_postgres(&PgTarget::parse(url, Some(password_file))?)
}

#[test]
fn tls_to_postgresql_verifies_the_server() {
    let dir = tempfile::Builder::new()
        .prefix("clawgate-pgtls-")
        .tempdir_in("/tmp")
        .unwrap();
    let root = dir.path().join("c");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin = pg(&["start", root.to_str().unwrap(), &port.to_string()]);
    let _cluster = Cluster(root.clone());
    let password_file = root.join("password");
    let password = std::fs::read_to_string(&password_file).unwrap();
    let data = root.join("data");

    // TLS on, plain host connections refused from now on.
    let (ca, cert, key) = certificates();
    write_owned(&data, "server.crt", &cert, 0o644);
    write_owned(&data, "server.key", &key, 0o600);
    let hba = std::fs::read_to_string(data.join("pg_hba.conf")).unwrap();
    let hba: String = hba
        .lines()
        .map(|l| match l.strip_prefix("host ") {
            Some(rest) => format!("hostssl {rest}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    write_owned(&data, "pg_hba.conf", &hba, 0o600);
    for sql in [
        "ALTER SYSTEM SET ssl = on",
        "ALTER SYSTEM SET ssl_cert_file = 'server.crt'",
        "ALTER SYSTEM SET ssl_key_file = 'server.key'",
    ] {
        psql(&admin, &password, sql);
    }
    psql(&admin, &password, "SELECT pg_reload_conf()");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let ca_path = ca_file.to_str().unwrap();

    // The certificate checks out and its name matches: a working store.
    let good = format!(
        "postgres://clawgate@localhost:{port}/postgres?sslmode=require&sslrootcert={ca_path}"
    );
    let mut opened = None;
    for _ in 0..50 {
        match open(&good, &password_file) {
            Ok(store) => {
                opened = Some(store);
                break;
            }
            // The reload takes effect a moment after pg_reload_conf().
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
    let store = opened.expect("TLS connection with the right CA");
    store
        .transact(|tx| {
            tx.append_audit(&clawgate_store::AuditRecord {
                ts_ms: 1,
                action: "test.tls".into(),
                actor: serde_json::json!({"kind": "test"}),
                device_id: None,
                details: serde_json::json!({}),
            })
            .map(|_| ())
        })
        .unwrap();
    assert!(store.verify_audit().unwrap().ok);
    // The change follower listens over TLS too.
    let listen = store.listen().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !listen.borrow().connected {
        assert!(std::time::Instant::now() < deadline, "LISTEN over TLS");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(store);
    let same = format!(
        "postgres://clawgate@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={ca_path}"
    );
    open(&same, &password_file).expect("verify-full means the same");

    // Without TLS the server refuses (hostssl only), so the above was TLS.
    let plain = format!("postgres://clawgate@localhost:{port}/postgres");
    let err = open(&plain, &password_file).expect_err("plain refused");
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");

    // A certificate from another CA, or for another name, is refused.
    let (other_ca, _, _) = certificates();
    let other_file = dir.path().join("other.pem");
    std::fs::write(&other_file, other_ca).unwrap();
    let wrong_ca = format!(
        "postgres://clawgate@localhost:{port}/postgres?sslmode=require&sslrootcert={}",
        other_file.display()
    );
    let err = open(&wrong_ca, &password_file).expect_err("wrong CA refused");
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");
    let wrong_name = format!(
        "postgres://clawgate@127.0.0.1:{port}/postgres?sslmode=require&sslrootcert={ca_path}"
    );
    let err =
        open(&wrong_name, &password_file).expect_err("a certificate for another name refused");
    let text = err.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{port}/postgres")),
        "{text}"
    );
    assert!(!text.contains(password.trim()), "{text}");
}
