//! The PostgreSQL backend: where the store lives when several gateways
//! (replicas) share one registry.
//!
//! The driver is tokio-postgres. Its connections are driven by a small
//! runtime on a thread of the store's own ([`Io`]); callers, which may sit
//! on a gateway runtime thread or in a plain CLI, block on the client's
//! futures with [`block`] (inside `block_in_place` on a multi-thread
//! runtime, so the runtime keeps its other tasks moving).
//!
//! No pool: every write transaction takes one cluster-wide advisory lock
//! ([`WRITE_LOCK`]), so writes are serialised across replicas the way one
//! SQLite writer serialises them in a process, and a second write
//! connection per replica would only queue on that lock. A replica holds
//! three connections: the writer, a reader (audit listings, presence) and
//! the LISTEN connection of the change follower ([`listen`]).

pub(crate) mod sql;

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use crate::error::StoreError;

/// Key of the transaction-level advisory lock every write transaction
/// takes first ("clawgate" in ASCII): one writer at a time across all
/// replicas, so audit appends form one chain and change-log sequence
/// numbers follow commit order.
pub(crate) const WRITE_LOCK: i64 = 0x636c_6177_6761_7465;
/// Key of the session advisory lock held while migrating the schema.
const MIGRATE_LOCK: i64 = WRITE_LOCK + 1;
/// The NOTIFY channel of the change log.
pub(crate) const CHANNEL: &str = "clawgate_changes";

/// A PostgreSQL store location: the parsed URL and the password from
/// wherever it came. Displays as `host:port/db`, never with the password.
#[derive(Clone)]
pub struct PgTarget {
    config: Config,
    display: String,
    /// `sslmode=require` (or `verify-ca`/`verify-full`): TLS with the
    /// server's certificate verified against `sslrootcert` (else the
    /// public web roots) and its name checked.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgTarget({})", self.display)
    }
}

impl std::fmt::Display for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

/// Whether `url` names a PostgreSQL store (`postgres://` or
/// `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

impl PgTarget {
    /// Parses a `postgres://user@host:port/db` URL. The password is taken,
    /// in this order, from the URL itself, from `password_file` (its first
    /// line), or from the libpq password file (`PGPASSFILE`, else
    /// `~/.pgpass`). Errors never repeat the URL (it may hold a password).
    pub fn parse(url: &str, password_file: Option<&Path>) -> Result<PgTarget, StoreError> {
        if !is_postgres_url(url) {
            return Err(StoreError::Invalid(
                "a store URL starts with postgres:// or postgresql://".into(),
            ));
        }
        let (url, root_cert, verify) = take_tls_params(url.trim())?;
        let mut config: Config = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("the store URL does not parse: {e}")))?;
        if verify {
            config.ssl_mode(SslMode::Require);
        }
        let tls = match config.get_ssl_mode() {
            SslMode::Require => Some(Arc::new(tls_config(root_cert.as_deref())?)),
            _ if root_cert.is_some() => {
                return Err(StoreError::Invalid(
                    "sslrootcert is set but sslmode is not require (or verify-full): add \
                     sslmode=require to the store URL"
                        .into(),
                ));
            }
            _ => None,
        };
        if config.get_hosts().is_empty() {
            config.host("localhost");
        }
        if config.get_user().is_none() {
            return Err(StoreError::Invalid(
                "the store URL names no user (postgres://USER@host:port/db)".into(),
            ));
        }
        let display = describe(&config);
        if config.get_password().is_none() {
            if let Some(file) = password_file {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    StoreError::Invalid(format!(
                        "the store password file {} cannot be read: {e}",
                        file.display()
                    ))
                })?;
                let password = text.lines().next().unwrap_or("").to_string();
                if password.is_empty() {
                    return Err(StoreError::Invalid(format!(
                        "the store password file {} is empty",
                        file.display()
                    )));
                }
                config.password(password);
            } else if let Some(password) = pgpass_lookup(&config) {
                config.password(password);
            }
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        config.application_name("clawgate");
        Ok(PgTarget {
            config,
            display,
            tls,
        })
    }

    /// `host:port/db`, for messages and logs.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The first host, for messages that name only where the registry is.
    pub fn host(&self) -> String {
        match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        }
    }
}

/// Takes the TLS parameters tokio-postgres does not know out of the URL's
/// query: `sslrootcert=PATH`, and `sslmode=verify-full|verify-ca` (clawgate
/// always verifies the certificate and the host name when it uses TLS, so
/// both mean `require` here). Returns the rest of the URL.
fn take_tls_params(url: &str) -> Result<(String, Option<PathBuf>, bool), StoreError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None, false));
    };
    let mut root = None;
    let mut verify = false;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (k, v) {
            ("sslrootcert", path) => {
                let decoded = percent_decode(path);
                if decoded.is_empty() {
                    return Err(StoreError::Invalid("sslrootcert is empty".into()));
                }
                root = Some(PathBuf::from(decoded));
            }
            ("sslmode", "verify-full" | "verify-ca") => verify = true,
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, root, verify))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The rustls client for `sslmode=require`: the CA certificates of
/// `root_cert` (PEM), else the public web roots; ring, TLS 1.2 and 1.3.
fn tls_config(root_cert: Option<&Path>) -> Result<rustls::ClientConfig, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| {
                StoreError::Invalid(format!(
                    "sslrootcert {} cannot be read: {e}",
                    path.display()
                ))
            })?;
            for cert in CertificateDer::pem_slice_iter(&bytes) {
                let cert = cert.map_err(|e| {
                    StoreError::Invalid(format!(
                        "sslrootcert {} is not PEM certificates: {e}",
                        path.display()
                    ))
                })?;
                roots.add(cert).map_err(|e| {
                    StoreError::Invalid(format!(
                        "sslrootcert {} holds a certificate rustls refuses: {e}",
                        path.display()
                    ))
                })?;
            }
            if roots.is_empty() {
                return Err(StoreError::Invalid(format!(
                    "sslrootcert {} holds no certificate",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| StoreError::Invalid(format!("TLS setup: {e}")))
}

fn describe(config: &Config) -> String {
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) if h.contains(':') => format!("[{h}]:{port}"),
        Some(Host::Tcp(h)) => format!("{h}:{port}"),
        Some(Host::Unix(p)) => format!("{}:{port}", p.display()),
        None => format!("localhost:{port}"),
    };
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}/{db}")
}

/// The password libpq would use from its password file
/// (`host:port:database:user:password`, `*` matches anything).
fn pgpass_lookup(config: &Config) -> Option<String> {
    let file = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        _ => "localhost".into(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or("");
    let db = config.get_dbname().unwrap_or(user);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(split_pgpass)
        .find(|f| {
            let m = |pat: &str, v: &str| pat == "*" || pat == v;
            m(&f[0], &host) && m(&f[1], &port) && m(&f[2], db) && m(&f[3], user)
        })
        .map(|f| f[4].clone())
}

/// Splits a pgpass line on unescaped `:` (`\:` and `\\` are escapes).
fn split_pgpass(line: &str) -> Option<[String; 5]> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut()?.push(chars.next()?),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    fields.try_into().ok()
}

/// Runs `fut` to completion on this thread. On a multi-thread tokio
/// runtime the wait happens inside `block_in_place`, so the runtime moves
/// this worker's other tasks elsewhere meanwhile.
pub(crate) fn block<F: Future>(fut: F) -> F::Output {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| futures_executor::block_on(fut))
        }
        _ => futures_executor::block_on(fut),
    }
}

/// The store's own I/O runtime: one thread that drives the PostgreSQL
/// connections. Stopped when the store is dropped.
pub(crate) struct Io {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Io {
    pub(crate) fn start() -> Result<Io, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("clawgate-pg")
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("clawgate-pg".into())
            .spawn(move || {
                rt.block_on(async move {
                    let _ = stopped.await;
                });
            })?;
        Ok(Io {
            handle,
            stop: Some(stop),
        })
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Maps a driver error: a lost or refused connection is
/// [`StoreError::Unreachable`] (naming `host:port/db`, never the
/// password); a server error keeps its SQLSTATE.
pub(crate) fn pg_error(target: &PgTarget, e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => match db.code().code() {
            "23505" if db.table() == Some("token_hashes") => {
                StoreError::Invalid("token hash already recorded".into())
            }
            "23503" => StoreError::Invalid(
                "a role token or token hash refers to a device that is not stored".into(),
            ),
            code => StoreError::Sqlite(format!("PostgreSQL {code}: {}", db.message())),
        },
        None => StoreError::Unreachable {
            target: target.display.clone(),
            detail: e.to_string(),
        },
    }
}

/// Maps a failure to connect. The server refusing the session
/// (authentication failed, no such database, too many connections) leaves
/// the registry as unreachable as a refused TCP connection does, and the
/// message must say which registry: both are [`StoreError::Unreachable`],
/// naming `host:port/db` (never the password) and, for a server refusal,
/// its SQLSTATE.
fn connect_error(target: &PgTarget, e: tokio_postgres::Error) -> StoreError {
    let detail = match e.as_db_error() {
        Some(db) => format!("PostgreSQL {}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    };
    StoreError::Unreachable {
        target: target.display.clone(),
        detail,
    }
}

/// One connection and the statements prepared on it.
pub(crate) struct Conn {
    client: Client,
    stmts: HashMap<&'static str, Statement>,
}

/// Opens a connection; its driver runs on `io`.
pub(crate) fn connect(io: &Io, target: &PgTarget) -> Result<Client, StoreError> {
    let config = target.config.clone();
    let tls = target.tls.clone();
    let task = io.handle.spawn(async move {
        let client = match tls {
            None => {
                let (client, connection) = config.connect(NoTls).await?;
                tokio::spawn(connection);
                client
            }
            Some(tls) => {
                let maker = tokio_postgres_rustls::MakeRustlsConnect::new((*tls).clone());
                let (client, connection) = config.connect(maker).await?;
                tokio::spawn(connection);
                client
            }
        };
        Ok::<_, tokio_postgres::Error>(client)
    });
    match block(task) {
        Ok(r) => r.map_err(|e| connect_error(target, e)),
        Err(e) => Err(StoreError::Unreachable {
            target: target.display.clone(),
            detail: format!("the connection task failed: {e}"),
        }),
    }
}

/// A connection slot that reconnects when its connection was lost.
pub(crate) struct Slot {
    conn: Mutex<Option<Conn>>,
}

pub(crate) struct SlotGuard<'a>(MutexGuard<'a, Option<Conn>>);

impl Slot {
    pub(crate) fn new(client: Client) -> Slot {
        Slot {
            conn: Mutex::new(Some(Conn {
                client,
                stmts: HashMap::new(),
            })),
        }
    }

    /// The connection, reconnecting first if it was closed.
    pub(crate) fn get(&self, io: &Io, target: &PgTarget) -> Result<SlotGuard<'_>, StoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.as_ref().is_none_or(|c| c.client.is_closed()) {
            *guard = None;
            let client = connect(io, target)?;
            *guard = Some(Conn {
                client,
                stmts: HashMap::new(),
            });
        }
        Ok(SlotGuard(guard))
    }
}

impl SlotGuard<'_> {
    fn conn(&mut self) -> &mut Conn {
        self.0
            .as_mut()
            .expect("a slot guard always holds a connection")
    }

    /// Starts a transaction of the given [`Mode`].
    pub(crate) fn begin<'g>(
        &'g mut self,
        target: &'g PgTarget,
        mode: Mode,
    ) -> Result<PgTx<'g>, StoreError> {
        let conn = self.conn();
        let builder = conn.client.build_transaction();
        let builder = match mode {
            Mode::Write | Mode::Plain => builder,
            Mode::Snapshot => builder
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true),
        };
        let write = mode == Mode::Write;
        let tx = block(builder.start()).map_err(|e| pg_error(target, e))?;
        let tx = PgTx {
            tx,
            stmts: RefCell::new(&mut conn.stmts),
            target,
        };
        if write {
            tx.execute("SELECT pg_advisory_xact_lock($1)::text", &[&WRITE_LOCK])?;
        }
        Ok(tx)
    }

    /// Runs a batch of statements outside any transaction.
    pub(crate) fn batch(&mut self, target: &PgTarget, sql: &str) -> Result<(), StoreError> {
        block(self.conn().client.batch_execute(sql)).map_err(|e| pg_error(target, e))
    }

    /// A query outside any transaction.
    pub(crate) fn query(
        &mut self,
        target: &PgTarget,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        block(self.conn().client.query(sql, params)).map_err(|e| pg_error(target, e))
    }

    /// Passes `result` through; after a lost connection the slot forgets it
    /// (the next use reconnects).
    pub(crate) fn settle<T>(mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if matches!(result, Err(StoreError::Unreachable { .. })) {
            *self.0 = None;
        }
        result
    }
}

/// What a transaction is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A registry write: takes the cluster-wide write lock first.
    Write,
    /// A read-only REPEATABLE READ snapshot.
    Snapshot,
    /// READ COMMITTED without the write lock (presence, log pruning).
    Plain,
}

/// An open PostgreSQL transaction with the connection's statement cache.
pub(crate) struct PgTx<'a> {
    tx: tokio_postgres::Transaction<'a>,
    stmts: RefCell<&'a mut HashMap<&'static str, Statement>>,
    target: &'a PgTarget,
}

impl PgTx<'_> {
    fn err(&self, e: tokio_postgres::Error) -> StoreError {
        pg_error(self.target, e)
    }

    fn stmt(&self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(s) = self.stmts.borrow().get(sql) {
            return Ok(s.clone());
        }
        let s = block(self.tx.prepare(sql)).map_err(|e| self.err(e))?;
        self.stmts.borrow_mut().insert(sql, s.clone());
        Ok(s)
    }

    pub(crate) fn query(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let s = self.stmt(sql)?;
        block(self.tx.query(&s, params)).map_err(|e| self.err(e))
    }

    /// A statement built at run time (not cached).
    pub(crate) fn query_dynamic(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        block(self.tx.query(sql, params)).map_err(|e| self.err(e))
    }

    pub(crate) fn query_opt(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    pub(crate) fn execute(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let s = self.stmt(sql)?;
        block(self.tx.execute(&s, params)).map_err(|e| self.err(e))
    }

    /// Runs statements without parameters (not prepared, not cached).
    pub(crate) fn batch(&self, sql: &str) -> Result<(), StoreError> {
        block(self.tx.batch_execute(sql)).map_err(|e| self.err(e))
    }

    pub(crate) fn commit(self) -> Result<(), StoreError> {
        let target = self.target;
        block(self.tx.commit()).map_err(|e| pg_error(target, e))
    }
}

/// Brings the schema up to [`sql::SCHEMA_VERSION`] under a session
/// advisory lock, so replicas starting together migrate once: the others
/// wait for the lock, then find nothing left to do.
pub(crate) fn migrate(slot: &mut SlotGuard<'_>, target: &PgTarget) -> Result<u32, StoreError> {
    slot.query(
        target,
        "SELECT pg_advisory_lock($1)::text",
        &[&MIGRATE_LOCK],
    )?;
    let result = migrate_locked(slot, target);
    let unlocked = slot.query(target, "SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK]);
    let version = result?;
    unlocked?;
    Ok(version)
}

fn migrate_locked(slot: &mut SlotGuard<'_>, target: &PgTarget) -> Result<u32, StoreError> {
    slot.batch(
        target,
        "CREATE TABLE IF NOT EXISTS clawgate_schema (\
             id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL); \
         INSERT INTO clawgate_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;",
    )?;
    let found = schema_version(slot, target)?;
    if found > sql::SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: sql::SCHEMA_VERSION,
        });
    }
    for (i, step) in sql::MIGRATIONS.iter().enumerate().skip(found as usize) {
        slot.batch(
            target,
            &format!(
                "BEGIN; {step}; UPDATE clawgate_schema SET version = {}; COMMIT;",
                i + 1
            ),
        )
        .inspect_err(|_| {
            let _ = slot.batch(target, "ROLLBACK");
        })?;
    }
    Ok(sql::SCHEMA_VERSION)
}

/// The schema version without creating anything: 0 when the database has
/// no clawgate schema table.
pub(crate) fn existing_schema_version(
    slot: &mut SlotGuard<'_>,
    target: &PgTarget,
) -> Result<u32, StoreError> {
    let rows = slot.query(
        target,
        "SELECT to_regclass('clawgate_schema') IS NOT NULL",
        &[],
    )?;
    let exists: bool = rows
        .first()
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("schema table: {e}")))?
        .unwrap_or(false);
    if !exists {
        return Ok(0);
    }
    schema_version(slot, target)
}

pub(crate) fn schema_version(
    slot: &mut SlotGuard<'_>,
    target: &PgTarget,
) -> Result<u32, StoreError> {
    let rows = slot.query(
        target,
        "SELECT version FROM clawgate_schema WHERE id = 1",
        &[],
    )?;
    let v: i32 = rows
        .first()
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("schema version: {e}")))?
        .unwrap_or(0);
    Ok(u32::try_from(v).unwrap_or(0))
}

/// What the change follower's LISTEN connection is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenState {
    /// LISTEN is in place: every change committed from now on is announced.
    pub connected: bool,
    /// Bumped each time the LISTEN connection is (re)established; a change
    /// means notifications may have been missed and the follower must
    /// catch up from its last sequence number.
    pub epoch: u64,
    /// Bumped on every notification.
    pub notified: u64,
}

/// Keeps a LISTEN connection open (reconnecting with backoff while
/// PostgreSQL is away) and reports through `tx`. Runs on the store's I/O
/// runtime until every receiver is gone.
pub(crate) fn listen(
    io: &Io,
    target: PgTarget,
    latest: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> watch::Receiver<ListenState> {
    let (tx, rx) = watch::channel(ListenState::default());
    io.handle.spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            if tx.is_closed() {
                return;
            }
            let session = match &target.tls {
                None => match target.config.connect(NoTls).await {
                    Ok((client, connection)) => {
                        Some(listen_session(client, connection, &tx, &latest).await)
                    }
                    Err(_) => None,
                },
                Some(tls) => {
                    let maker = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                    match target.config.connect(maker).await {
                        Ok((client, connection)) => {
                            Some(listen_session(client, connection, &tx, &latest).await)
                        }
                        Err(_) => None,
                    }
                }
            };
            match session {
                Some(listened) => {
                    if listened {
                        backoff = Duration::from_millis(100);
                    }
                    tx.send_modify(|s| s.connected = false);
                }
                None => {
                    tx.send_if_modified(|s| std::mem::replace(&mut s.connected, false));
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    });
    rx
}

/// One LISTEN session on an open connection: reports through `tx` until
/// the connection is lost (or nobody listens any more). Returns whether
/// LISTEN was in place.
async fn listen_session<S, T>(
    client: Client,
    mut connection: tokio_postgres::Connection<S, T>,
    tx: &watch::Sender<ListenState>,
    latest: &std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use futures_util::StreamExt;
    let (note_tx, mut note_rx) = tokio::sync::mpsc::unbounded_channel();
    let latest = latest.clone();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    // The payload is the change's sequence number: how far
                    // the log is known to reach before it is read.
                    if let Ok(seq) = n.payload().parse::<u64>() {
                        latest.fetch_max(seq, std::sync::atomic::Ordering::AcqRel);
                    }
                    if note_tx.send(()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let listening = client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .is_ok();
    if listening {
        tx.send_modify(|s| {
            s.connected = true;
            s.epoch += 1;
        });
        let mut check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                note = note_rx.recv() => match note {
                    Some(()) => tx.send_modify(|s| s.notified += 1),
                    None => break,
                },
                _ = check.tick() => {
                    // A cheap round trip notices a silent connection loss
                    // within a second.
                    let probe = tokio::time::timeout(
                        Duration::from_secs(2),
                        client.simple_query("SELECT 1"),
                    ).await;
                    if !matches!(probe, Ok(Ok(_))) || tx.is_closed() {
                        break;
                    }
                }
            }
        }
    }
    driver.abort();
    listening
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_from_the_url() {
        let (rest, root, verify) = take_tls_params(
            "postgres://u@h/d?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u@h/d?application_name=x");
        assert_eq!(root.as_deref(), Some(Path::new("/tmp/ca.pem")));
        assert!(verify);
        let e = PgTarget::parse("postgres://u@h/d?sslrootcert=/nonexistent.pem", None).unwrap_err();
        assert!(e.to_string().contains("sslmode"), "{e}");
        let e = PgTarget::parse(
            "postgres://u@h/d?sslmode=require&sslrootcert=/nonexistent.pem",
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("cannot be read"), "{e}");
        let t = PgTarget::parse("postgres://u@h/d?sslmode=require", None).unwrap();
        assert!(t.tls.is_some());
        let t = PgTarget::parse("postgres://u@h/d", None).unwrap();
        assert!(t.tls.is_none());
    }

    #[test]
    fn urls_display_without_password() {
        let t = PgTarget::parse("postgres://u:sekrit@db.example:6543/reg", None).unwrap();
        assert_eq!(t.display(), "db.example:6543/reg");
        assert!(!format!("{t:?} {t}").contains("sekrit"));
        let e = PgTarget::parse("postgres://u:sekrit@db.example:notaport/reg", None).unwrap_err();
        assert!(!e.to_string().contains("sekrit"), "{e}");
        assert!(PgTarget::parse("postgres://db.example/reg", None).is_err());
        assert!(PgTarget::parse("mysql://u@h/d", None).is_err());
    }

    #[test]
    fn password_file_and_pgpass() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "from-file\n").unwrap();
        let t = PgTarget::parse("postgres://u@h:5/d", Some(&f)).unwrap();
        assert_eq!(t.config.get_password(), Some(&b"from-file"[..]));
        assert_eq!(
            split_pgpass(r"h:5:d:u:a\:b\\c"),
            Some(["h", "5", "d", "u", r"a:b\c"].map(String::from))
        );
        assert_eq!(split_pgpass("h:5:d"), None);
    }
}
