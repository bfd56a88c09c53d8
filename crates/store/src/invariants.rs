//! What must hold in a store at every commit, and so after any crash: the
//! gateway can be killed between any two statements and the store must
//! still satisfy all of this when it is opened again.
//!
//! - SQLite's own checks: `PRAGMA integrity_check` is ok, no foreign key
//!   points at a missing row, the schema is the version this build writes.
//! - The audit chain verifies from the first row to the last.
//! - No token without an approved role: every token entry and every valid
//!   token hash belongs to a stored device that has that role approved, a
//!   hash belongs to an entry that is not revoked, and the scopes of both
//!   lie within the device's approved scopes (a hash's also within its
//!   entry's).
//! - No approval without its audit row: a stored device has an approval row
//!   (`pairing.approved` or `pairing.silent_approved`) after its last
//!   `device.removed` row, and every role and scope it holds was granted by
//!   one of those rows. A device whose newest lifecycle row is an approval
//!   is still stored (a removal always writes `device.removed`). A revoked
//!   token entry has its `token.revoked` row.
//! - An operator's approval or rejection decides a request that was open:
//!   requested, and not yet rejected, superseded, approved or dropped by
//!   its device's removal or approval.
//! - Pending requests have their `pairing.requested` row, and none outlives
//!   its approval, rejection, supersession or its device's removal.
//!
//! Every change the gateway makes is one transaction with its audit row,
//! so none of these can be broken by a crash; a violation means a bug (or a
//! file edited by hand).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use clawgate_protocol::scopes;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use serde_json::Value;

use crate::audit::StoredAuditRow;
use crate::audit::{ChainBreak, ChainVerifier};
use crate::error::StoreError;
use crate::model::{AuditVerification, Device, PendingRequest, RoleToken, TokenHash};
use crate::schema;
use clawgate_protocol::hex::{self, is_lower_hex64};

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Which rule: `integrity`, `foreign-key`, `schema-version`, `decode`,
    /// `audit-chain`, `approval-audit`, `removal-audit`, `token-role`,
    /// `token-scope`, `revocation`, `pending`, `device-id`.
    pub rule: &'static str,
    /// What is wrong, naming ids (never token material).
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.rule, self.detail)
    }
}

/// What [`crate::Store::check_invariants`] and [`check_database`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvariantReport {
    pub schema_version: u32,
    pub devices: usize,
    pub role_tokens: usize,
    pub token_hashes: usize,
    pub pending: usize,
    pub audit: AuditVerification,
    /// Empty when every invariant holds.
    pub violations: Vec<Violation>,
}

impl InvariantReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks the database at `path` without changing it: opened read-only,
/// never created, never migrated. Safe while a gateway has it open (WAL
/// readers see the last commit).
pub fn check_database(path: &Path) -> Result<InvariantReport, StoreError> {
    if !path.is_file() {
        return Err(StoreError::Invalid(format!(
            "no database at {}",
            path.display()
        )));
    }
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    schema::configure_reader(&conn)?;
    check(&mut conn)
}

/// Everything the audit log says about one device since it was last removed.
#[derive(Default)]
struct DeviceLog {
    /// Seq of the newest `device.removed` row (0: never removed).
    removed_seq: u64,
    /// Seq of the newest approval row after `removed_seq` (0: none).
    approved_seq: u64,
    roles: BTreeSet<String>,
    scopes: BTreeSet<String>,
    /// Role -> seq of its newest `token.revoked` row after `removed_seq`.
    revoked: HashMap<String, u64>,
}

struct RequestLog {
    device_id: Option<String>,
    /// (seq, action) of the row that resolved it.
    resolved: Option<(u64, String)>,
}

#[derive(Default)]
struct AuditFacts {
    devices: HashMap<String, DeviceLog>,
    requests: HashMap<String, RequestLog>,
    /// Device -> its requests not resolved yet.
    open: HashMap<String, Vec<String>>,
    /// Approvals and rejections of requests that were not open.
    stale_approvals: Vec<String>,
}

fn strings(v: &Value) -> impl Iterator<Item = String> + '_ {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
}

impl AuditFacts {
    /// Marks every open request of `device` resolved by row `seq`.
    fn resolve_all(&mut self, device: &str, seq: u64, action: &str) {
        for id in self.open.remove(device).unwrap_or_default() {
            if let Some(r) = self.requests.get_mut(&id) {
                r.resolved.get_or_insert((seq, action.to_string()));
            }
        }
    }

    fn add(&mut self, seq: u64, action: &str, device_id: Option<&str>, details: &Value) {
        let request_id = details.get("requestId").and_then(Value::as_str);
        match action {
            "pairing.requested" => {
                if let Some(id) = request_id {
                    self.requests.insert(
                        id.to_string(),
                        RequestLog {
                            device_id: device_id.map(str::to_owned),
                            resolved: None,
                        },
                    );
                    if let Some(d) = device_id {
                        self.open
                            .entry(d.to_string())
                            .or_default()
                            .push(id.to_string());
                    }
                }
            }
            "pairing.rejected" | "pairing.superseded" => {
                if action == "pairing.rejected"
                    && let Some(id) = request_id
                    && let Some(RequestLog {
                        resolved: Some((at, how)),
                        ..
                    }) = self.requests.get(id)
                {
                    self.stale_approvals.push(format!(
                        "audit row {seq} rejects request {id}, which was already closed by {how} (audit row {at})"
                    ));
                }
                if let Some(id) = request_id {
                    if let Some(r) = self.requests.get_mut(id) {
                        r.resolved.get_or_insert((seq, action.to_string()));
                    }
                    for list in self.open.values_mut() {
                        list.retain(|r| r != id);
                    }
                }
            }
            "pairing.approved" | "pairing.silent_approved" => {
                // An operator approves an open request; the approval
                // resolves every open request of the device (one
                // transaction deletes them all).
                if action == "pairing.approved"
                    && let Some(id) = request_id
                {
                    match self.requests.get(id) {
                        None => self.stale_approvals.push(format!(
                            "audit row {seq} approves request {id}, which was never requested"
                        )),
                        Some(RequestLog {
                            resolved: Some((at, how)),
                            ..
                        }) => self.stale_approvals.push(format!(
                            "audit row {seq} approves request {id}, which was already closed by {how} (audit row {at})"
                        )),
                        Some(_) => {}
                    }
                }
                let Some(d) = device_id else { return };
                self.resolve_all(d, seq, action);
                let log = self.devices.entry(d.to_string()).or_default();
                log.approved_seq = seq;
                log.roles.extend(strings(&details["roles"]));
                if let Some(role) = details["role"].as_str() {
                    log.roles.insert(role.to_string());
                }
                log.scopes.extend(strings(&details["scopes"]));
            }
            "device.removed" => {
                if let Some(d) = device_id {
                    self.resolve_all(d, seq, action);
                    *self.devices.entry(d.to_string()).or_default() = DeviceLog {
                        removed_seq: seq,
                        ..DeviceLog::default()
                    };
                }
            }
            "token.revoked" => {
                if let (Some(d), Some(role)) = (device_id, details["role"].as_str()) {
                    self.devices
                        .entry(d.to_string())
                        .or_default()
                        .revoked
                        .insert(role.to_string(), seq);
                }
            }
            _ => {}
        }
    }
}

#[derive(Default)]
struct Found(Vec<Violation>);

impl Found {
    fn flag(&mut self, rule: &'static str, detail: String) {
        self.0.push(Violation { rule, detail });
    }

    /// The rows, or none and a `decode` violation.
    fn rows<T>(&mut self, table: &str, r: Result<Vec<T>, StoreError>) -> Vec<T> {
        r.unwrap_or_else(|e| {
            self.flag("decode", format!("{table}: {e}"));
            Vec::new()
        })
    }
}

/// Runs every check inside one read transaction (one snapshot).
pub(crate) fn check(conn: &mut Connection) -> Result<InvariantReport, StoreError> {
    let snapshot = conn.transaction()?;
    let mut found = Found::default();

    match schema::integrity_problems(&snapshot) {
        Ok(lines) => lines
            .into_iter()
            .for_each(|l| found.flag("integrity", format!("integrity_check: {l}"))),
        Err(e) => {
            // Nothing else can be read either: one finding, not one per table.
            found.flag("integrity", format!("the file cannot be read: {e}"));
            return Ok(InvariantReport {
                schema_version: 0,
                devices: 0,
                role_tokens: 0,
                token_hashes: 0,
                pending: 0,
                audit: AuditVerification {
                    rows: 0,
                    ok: false,
                    first_bad_seq: None,
                    problem: Some("the file cannot be read".into()),
                },
                violations: found.0,
            });
        }
    }
    match schema::foreign_key_problems(&snapshot) {
        Ok(lines) => lines.into_iter().for_each(|l| found.flag("foreign-key", l)),
        Err(e) => found.flag("foreign-key", format!("foreign_key_check failed: {e}")),
    }
    let schema_version = schema::schema_version(&snapshot).unwrap_or(0);
    if schema_version != schema::SCHEMA_VERSION {
        found.flag(
            "schema-version",
            format!(
                "schema version {schema_version}, this build writes {}",
                schema::SCHEMA_VERSION
            ),
        );
    }

    let devices = found.rows("devices", schema::select_devices(&snapshot));
    let role_tokens = found.rows("role_tokens", schema::select_role_tokens(&snapshot));
    let hashes = found.rows("token_hashes", schema::select_token_hashes(&snapshot));
    let pending = found.rows("pending_requests", schema::select_all_pending(&snapshot));
    let report = check_rows(
        found,
        schema_version,
        |f| schema::scan_audit(&snapshot, f),
        Registry {
            devices,
            role_tokens,
            hashes,
            pending,
        },
    );
    snapshot.finish()?;
    Ok(report)
}

/// The registry's rows, read from one snapshot.
pub(crate) struct Registry {
    pub devices: Vec<Device>,
    pub role_tokens: Vec<RoleToken>,
    pub hashes: Vec<TokenHash>,
    pub pending: Vec<PendingRequest>,
}

/// The same checks on a PostgreSQL store: one REPEATABLE READ snapshot;
/// PostgreSQL keeps its own pages and foreign keys sound, so the
/// file-level checks are SQLite's alone.
pub(crate) fn check_pg(tx: &crate::pg::PgTx<'_>) -> Result<InvariantReport, StoreError> {
    use crate::pg::sql;
    let mut found = Found::default();
    let devices = found.rows("devices", sql::select_devices(tx, None));
    let role_tokens = found.rows("role_tokens", sql::select_role_tokens(tx, None));
    let hashes = found.rows("token_hashes", sql::select_token_hashes(tx, None));
    let pending = found.rows("pending_requests", sql::select_all_pending(tx, None));
    Ok(check_rows(
        found,
        sql::SCHEMA_VERSION,
        |f| sql::scan_audit(tx, f),
        Registry {
            devices,
            role_tokens,
            hashes,
            pending,
        },
    ))
}

/// The checks on the rows themselves (the audit chain and what it says,
/// devices, tokens, pending requests), whatever database they came from.
/// `scan` feeds the audit rows in seq order.
fn check_rows(
    mut found: Found,
    schema_version: u32,
    scan: impl FnOnce(&mut dyn FnMut(StoredAuditRow) -> bool) -> Result<(), StoreError>,
    registry: Registry,
) -> InvariantReport {
    let Registry {
        devices,
        role_tokens,
        hashes,
        pending,
    } = registry;
    // The audit chain, and what it says about devices and requests.
    let mut verifier = ChainVerifier::new();
    let mut broken = None;
    let mut facts = AuditFacts::default();
    let scanned = scan(&mut |row| {
        if let Err(b) = verifier.check(&row) {
            broken = Some(b);
            return false;
        }
        match serde_json::from_str::<Value>(&row.details_json) {
            Ok(details) => facts.add(row.seq, &row.action, row.device_id.as_deref(), &details),
            Err(e) => {
                broken = Some(ChainBreak {
                    seq: row.seq,
                    problem: format!("row {} details do not decode: {e}", row.seq),
                })
            }
        }
        broken.is_none()
    });
    if let Err(e) = &scanned {
        found.flag("audit-chain", format!("reading the audit log failed: {e}"));
    }
    if let Some(b) = &broken {
        found.flag("audit-chain", b.problem.clone());
    }
    for p in std::mem::take(&mut facts.stale_approvals) {
        found.flag("approval-audit", p);
    }
    let audit = AuditVerification {
        rows: verifier.rows,
        ok: broken.is_none() && scanned.is_ok(),
        first_bad_seq: broken.as_ref().map(|b| b.seq),
        problem: broken.map(|b| b.problem),
    };

    let by_id: HashMap<&str, &Device> = devices.iter().map(|d| (d.device_id.as_str(), d)).collect();
    let entries: HashMap<(&str, &str), &RoleToken> = role_tokens
        .iter()
        .map(|t| ((t.device_id.as_str(), t.role.as_str()), t))
        .collect();
    let none = DeviceLog::default();
    let log_of = |id: &str| facts.devices.get(id).unwrap_or(&none);

    for d in &devices {
        let id = &d.device_id;
        if !is_lower_hex64(id) {
            found.flag(
                "device-id",
                format!("device id {id:?} is not 64 lowercase hex"),
            );
        }
        let log = log_of(id);
        if log.approved_seq == 0 {
            let since = match log.removed_seq {
                0 => String::new(),
                n => format!(" since its removal (audit row {n})"),
            };
            found.flag(
                "approval-audit",
                format!("device {id} is paired but the audit log has no approval for it{since}"),
            );
            continue;
        }
        for role in d.roles.iter().filter(|r| !log.roles.contains(*r)) {
            found.flag(
                "approval-audit",
                format!("device {id} holds role {role}, which no audited approval granted"),
            );
        }
        for scope in d.scopes.iter().filter(|s| !log.scopes.contains(*s)) {
            found.flag(
                "approval-audit",
                format!("device {id} holds scope {scope}, which no audited approval granted"),
            );
        }
    }
    let mut gone: Vec<(&String, u64)> = facts
        .devices
        .iter()
        .filter(|(id, log)| log.approved_seq > 0 && !by_id.contains_key(id.as_str()))
        .map(|(id, log)| (id, log.approved_seq))
        .collect();
    gone.sort();
    for (id, seq) in gone {
        found.flag(
            "removal-audit",
            format!(
                "device {id} was approved (audit row {seq}) and is not stored, but no device.removed row follows"
            ),
        );
    }

    for t in &role_tokens {
        let (id, role) = (&t.device_id, &t.role);
        let Some(d) = by_id.get(id.as_str()) else {
            found.flag(
                "token-role",
                format!("token entry ({id}, {role}) belongs to a device that is not stored"),
            );
            continue;
        };
        if !d.roles.contains(role) {
            found.flag(
                "token-role",
                format!(
                    "token entry ({id}, {role}) exists but the device is not approved for {role}"
                ),
            );
        }
        match t.revoked_at_ms {
            None if !scopes::covers(&d.scopes, &t.scopes) => found.flag(
                "token-scope",
                format!(
                    "token entry ({id}, {role}) holds scopes {:?} beyond the approved {:?}",
                    t.scopes, d.scopes
                ),
            ),
            Some(_) if !log_of(id).revoked.contains_key(role) => found.flag(
                "revocation",
                format!("token entry ({id}, {role}) is revoked but has no token.revoked audit row"),
            ),
            _ => {}
        }
    }

    for h in &hashes {
        let (id, role) = (&h.device_id, &h.role);
        // A prefix names the token for a human; it cannot be used to connect.
        let short = &hex::encode(&h.hash)[..12];
        let Some(d) = by_id.get(id.as_str()) else {
            found.flag(
                "token-role",
                format!("token {short}… belongs to device {id}, which is not stored"),
            );
            continue;
        };
        if !d.roles.contains(role) {
            found.flag(
                "token-role",
                format!("token {short}… of device {id} is for role {role}, which is not approved"),
            );
        }
        let Some(entry) = entries.get(&(id.as_str(), role.as_str())) else {
            found.flag(
                "token-role",
                format!("token {short}… of ({id}, {role}) has no token entry"),
            );
            continue;
        };
        if entry.revoked_at_ms.is_some() {
            found.flag(
                "revocation",
                format!(
                    "token {short}… of ({id}, {role}) is still valid after the role was revoked"
                ),
            );
        }
        if !scopes::covers(&d.scopes, &h.scopes) || !scopes::covers(&entry.scopes, &h.scopes) {
            found.flag(
                "token-scope",
                format!(
                    "token {short}… of ({id}, {role}) holds scopes {:?} beyond its entry's {:?} or the approved {:?}",
                    h.scopes, entry.scopes, d.scopes
                ),
            );
        }
    }

    for p in &pending {
        let (rid, id) = (&p.request_id, &p.device_id);
        if !is_lower_hex64(id) {
            found.flag(
                "device-id",
                format!("pending request {rid} names device id {id:?}, not 64 lowercase hex"),
            );
        }
        let Some(r) = facts.requests.get(rid) else {
            found.flag(
                "pending",
                format!("pending request {rid} has no pairing.requested audit row"),
            );
            continue;
        };
        if r.device_id.as_deref() != Some(id.as_str()) {
            found.flag(
                "pending",
                format!("pending request {rid} is for device {id} but its audit row names another"),
            );
        }
        if let Some((seq, action)) = &r.resolved {
            found.flag(
                "pending",
                format!("pending request {rid} is still stored after {action} (audit row {seq})"),
            );
        }
    }

    InvariantReport {
        schema_version,
        devices: devices.len(),
        role_tokens: role_tokens.len(),
        token_hashes: hashes.len(),
        pending: pending.len(),
        audit,
        violations: found.0,
    }
}
