//! Property tests: random sequences of connect, approve, reject, rotate,
//! revoke, remove and rename, by callers with random scopes, against the
//! real auth, pairing, token and method code and a real SQLite store (no
//! sockets). After every step the invariants hold:
//!
//! 1. every stored token (hash) and role entry carries scopes within its
//!    device's approved scopes (none for non-operator roles), for a role the
//!    device is approved for;
//! 2. every token minted was within what its minter held: a rotated token
//!    within the rotating caller's scopes, a connect-issued token within the
//!    session's (approved) scopes; approvals grant only what the approver holds;
//! 3. a rotated, revoked, removed (or trimmed) token never authenticates
//!    again, while the others keep working;
//! 4. no token string is ever written to the database or its WAL;
//! 5. the audit chain verifies.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use clawgate_gateway::auth;
use clawgate_gateway::auth::tokens::{self, TOKENS_KEPT_PER_ROLE};
use clawgate_gateway::config::{AuthMode, RateLimitConfig};
use clawgate_gateway::rpc::{self, Caller, Refusal};
use clawgate_gateway::session::PeerContext;
use clawgate_gateway::testkit;
use clawgate_gateway::{GatewayState, RuntimeOptions};
use clawgate_protocol::connect::{Role, parse_connect_params};
use clawgate_protocol::scopes::{self, ADMIN, OPERATOR_SCOPES, PAIRING, READ, WRITE};
use clawgate_store::{DB_FILE_NAME, Store, hash_token};
use common::{TOKEN, TestDevice};
use proptest::prelude::*;
use proptest::sample::subsequence;
use serde_json::{Value, json};

const NONCE: &str = "9d0c3a52-0f3e-4f51-9a55-6a3b8f0e2c11";
const POOL: usize = 3;
const UNKNOWN_REQUEST: &str = "00000000-0000-4000-8000-000000000000";
const LABELS: &[&str] = &["desk", "phone", "lab"];

/// How a connect authenticates. Indices pick a previously issued token of
/// the connecting device (any device's when it has none), counted from the
/// newest, so it may be stale.
#[derive(Debug, Clone)]
enum Cred {
    Shared,
    DeviceToken(usize),
    /// Any device's token in `auth.deviceToken`.
    AnyToken(usize),
    /// A device token in the `auth.token` slot.
    TokenSlot(usize),
    /// A wrong shared token plus `auth.deviceToken` (the bounded retry).
    WrongSharedAndDeviceToken(usize),
}

/// The request id an approve or reject names, counted from the newest.
#[derive(Debug, Clone)]
enum Pick {
    /// A pending request (any seen request when none is pending).
    Pending(usize),
    /// Any request id seen, perhaps approved, rejected or superseded since.
    Seen(usize),
    Unknown,
}

/// Who calls an RPC.
#[derive(Debug, Clone)]
enum Who {
    /// A device-less operator session holding `operator.admin`.
    Admin,
    /// A device-less (shared-secret) operator session with these scopes.
    Shared(Vec<&'static str>),
    /// An open device-token operator session (newest first); falls back to
    /// a device-less `operator.pairing` session when there is none.
    Session(usize),
}

#[derive(Debug, Clone)]
enum Op {
    Connect {
        device: usize,
        node: bool,
        /// `None`: the device's usual scopes for this case.
        scopes: Option<Vec<&'static str>>,
        cred: Cred,
        local: bool,
        darwin: bool,
    },
    Approve {
        who: Who,
        request: Pick,
    },
    Reject {
        who: Who,
        request: Pick,
    },
    /// In the RPCs below, `device` is a target (see [`target`]).
    Rotate {
        who: Who,
        device: usize,
        node: bool,
        scopes: Option<Vec<&'static str>>,
    },
    Revoke {
        who: Who,
        device: usize,
        node: bool,
    },
    Remove {
        who: Who,
        device: usize,
    },
    Rename {
        who: Who,
        device: usize,
        label: usize,
    },
}

fn scope_set() -> impl Strategy<Value = Vec<&'static str>> {
    (subsequence(OPERATOR_SCOPES.to_vec(), 0..=3), any::<bool>()).prop_map(|(mut s, pairing)| {
        if pairing && !s.contains(&PAIRING) {
            s.push(PAIRING);
        }
        s
    })
}

/// What devices ask for at connect: each device has usual scopes for a case
/// (one of a few fixed sets), so that repeated connects find their approval;
/// sometimes a connect asks for another set.
const PROFILES: &[&[&str]] = &[
    &[],
    &[READ],
    &[READ, PAIRING],
    &[WRITE, PAIRING],
    &[PAIRING],
    &[ADMIN],
];

fn connect_scopes() -> impl Strategy<Value = Vec<&'static str>> {
    prop_oneof![
        4 => prop::sample::select(PROFILES).prop_map(<[&str]>::to_vec),
        1 => scope_set(),
    ]
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        3 => Just(Who::Admin),
        4 => scope_set().prop_map(Who::Shared),
        4 => (0..4usize).prop_map(Who::Session),
    ]
}

fn cred() -> impl Strategy<Value = Cred> {
    prop_oneof![
        4 => Just(Cred::Shared),
        4 => (0..4usize).prop_map(Cred::DeviceToken),
        1 => (0..8usize).prop_map(Cred::AnyToken),
        1 => (0..4usize).prop_map(Cred::TokenSlot),
        1 => (0..4usize).prop_map(Cred::WrongSharedAndDeviceToken),
    ]
}

fn request() -> impl Strategy<Value = Pick> {
    prop_oneof![
        6 => (0..3usize).prop_map(Pick::Pending),
        2 => (0..4usize).prop_map(Pick::Seen),
        1 => Just(Pick::Unknown),
    ]
}

fn node() -> impl Strategy<Value = bool> {
    prop::bool::weighted(0.15)
}

/// The device an RPC targets: below [`POOL`], a paired device (when there
/// is one); else a pool device, paired or not.
fn target() -> impl Strategy<Value = usize> {
    0..2 * POOL
}

fn connect() -> impl Strategy<Value = Op> {
    (
        0..POOL,
        node(),
        prop::option::weighted(0.25, connect_scopes()),
        cred(),
        any::<bool>(),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(device, node, scopes, cred, local, darwin)| Op::Connect {
            device,
            node,
            scopes,
            cred,
            local,
            darwin,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => connect(),
        4 => (who(), request()).prop_map(|(who, request)| Op::Approve { who, request }),
        1 => (who(), request()).prop_map(|(who, request)| Op::Reject { who, request }),
        2 => (who(), target(), node(), prop::option::of(scope_set()))
            .prop_map(|(who, device, node, scopes)| Op::Rotate { who, device, node, scopes }),
        1 => (who(), target(), node()).prop_map(|(who, device, node)| Op::Revoke { who, device, node }),
        1 => (who(), target()).prop_map(|(who, device)| Op::Remove { who, device }),
        1 => (who(), target(), 0..LABELS.len())
            .prop_map(|(who, device, label)| Op::Rename { who, device, label }),
    ]
}

/// A pool device with a fixed key, so failing cases replay identically.
fn pool_device(seed: u8) -> TestDevice {
    TestDevice::from_seed([seed; 32])
}

fn role_of(node: bool) -> Role {
    if node { Role::Node } else { Role::Operator }
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

fn loopback() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

/// A token the test has seen.
#[derive(Debug)]
struct Issued {
    device: usize,
    role: Role,
    token: String,
}

/// An open device-token operator session.
#[derive(Debug)]
struct Session {
    device: usize,
    scopes: Vec<String>,
}

struct Harness {
    state: Arc<GatewayState>,
    _dir: tempfile::TempDir,
    devices: Vec<TestDevice>,
    usual_scopes: Vec<Vec<&'static str>>,
    /// Request ids from `PAIRING_REQUIRED` answers, oldest first.
    requests: Vec<String>,
    issued: Vec<Issued>,
    /// Per (device, role), the tokens minted since its tokens last died, in
    /// order (`None`: minted but withheld from the test); at most
    /// [`TOKENS_KEPT_PER_ROLE`]. Known tokens listed here are alive.
    minted: HashMap<(usize, Role), Vec<Option<usize>>>,
    /// Indices into `issued` of tokens that must never authenticate again.
    dead: HashSet<usize>,
    /// Died in the current step (checked through `authenticate` too).
    newly_dead: Vec<usize>,
    sessions: Vec<Session>,
    next_conn: u64,
}

impl Harness {
    fn new(auto_approve_local: bool, usual_scopes: Vec<Vec<&'static str>>) -> Harness {
        let (mut cfg, dir) = common::config(AuthMode::Token);
        cfg.auto_approve_local = auto_approve_local;
        // Loopback peers are exempt from lockouts; keep the global budget out
        // of the way too, so that only token validity decides.
        cfg.auth.rate_limit = RateLimitConfig {
            global_max_failures: u32::MAX,
            ..RateLimitConfig::default()
        };
        let store = Store::open(&dir.path().join(DB_FILE_NAME)).expect("open store");
        let state = GatewayState::new(cfg, RuntimeOptions::default(), Arc::new(store));
        Harness {
            state,
            _dir: dir,
            devices: (1..=POOL as u8).map(pool_device).collect(),
            usual_scopes,
            requests: Vec::new(),
            issued: Vec::new(),
            minted: HashMap::new(),
            dead: HashSet::new(),
            newly_dead: Vec::new(),
            sessions: Vec::new(),
            next_conn: 0,
        }
    }

    /// A known token (alive or not), newest first: the device's own when
    /// `device` is given and it has any, else any device's.
    fn pick_token(&self, device: Option<usize>, i: usize) -> Option<String> {
        let own: Vec<&Issued> = self
            .issued
            .iter()
            .filter(|t| Some(t.device) == device)
            .collect();
        let list: Vec<&Issued> = if own.is_empty() {
            self.issued.iter().collect()
        } else {
            own
        };
        let n = list.len();
        (n > 0).then(|| list[n - 1 - i % n].token.clone())
    }

    fn pick_request(&self, pick: &Pick) -> String {
        let pending: Vec<String> = testkit::store(&self.state)
            .pending_list()
            .into_iter()
            .map(|p| p.request_id)
            .collect();
        let (list, i) = match pick {
            Pick::Pending(i) if !pending.is_empty() => (&pending, *i),
            Pick::Pending(i) | Pick::Seen(i) => (&self.requests, *i),
            Pick::Unknown => return UNKNOWN_REQUEST.to_string(),
        };
        match list.len() {
            0 => UNKNOWN_REQUEST.to_string(),
            n => list[n - 1 - i % n].clone(),
        }
    }

    /// The pool index an RPC's `target` names (see [`target`]).
    fn target(&self, t: usize) -> usize {
        let paired: Vec<usize> = (0..POOL)
            .filter(|&d| {
                testkit::store(&self.state)
                    .device(&self.devices[d].id)
                    .is_some()
            })
            .collect();
        if t < POOL && !paired.is_empty() {
            paired[t % paired.len()]
        } else {
            t % POOL
        }
    }

    fn caller(&mut self, who: &Who) -> Caller {
        self.next_conn += 1;
        let (scopes, device_id) = match who {
            Who::Admin => (vec![ADMIN.to_string()], None),
            Who::Shared(s) => (strings(s), None),
            Who::Session(i) if !self.sessions.is_empty() => {
                let n = self.sessions.len();
                let s = &self.sessions[n - 1 - i % n];
                (s.scopes.clone(), Some(self.devices[s.device].id.clone()))
            }
            Who::Session(_) => (vec![PAIRING.to_string()], None),
        };
        Caller {
            role: Role::Operator,
            scopes,
            device_id,
            conn_id: format!("conn-{}", self.next_conn),
            ip: loopback(),
            origin: None,
        }
    }

    fn dispatch(&self, caller: &Caller, method: &str, params: Value) -> Result<Value, String> {
        match rpc::dispatch(&self.state, caller, method, Some(params)).1 {
            Ok(v) => Ok(v.into_value()),
            Err(Refusal::Role(e) | Refusal::Other(e)) => Err(e.message),
        }
    }

    /// Every token of (device, role) dies (rotate, revoke, remove).
    fn kill(&mut self, device: usize, role: Role) {
        for idx in self.minted.remove(&(device, role)).unwrap_or_default() {
            if let Some(idx) = idx
                && self.dead.insert(idx)
            {
                self.newly_dead.push(idx);
            }
        }
    }

    /// A token was minted for (device, role); the oldest beyond the kept
    /// number fall off and die.
    fn minted(&mut self, device: usize, role: Role, token: Option<String>) {
        let idx = token.map(|token| {
            self.issued.push(Issued {
                device,
                role,
                token,
            });
            self.issued.len() - 1
        });
        let list = self.minted.entry((device, role)).or_default();
        list.push(idx);
        while list.len() > TOKENS_KEPT_PER_ROLE {
            if let Some(old) = list.remove(0)
                && self.dead.insert(old)
            {
                self.newly_dead.push(old);
            }
        }
    }

    fn close_sessions(&mut self, device: usize) {
        self.sessions.retain(|s| s.device != device);
    }

    fn is_alive(&self, idx: usize) -> bool {
        let t = &self.issued[idx];
        self.minted
            .get(&(t.device, t.role))
            .is_some_and(|l| l.contains(&Some(idx)))
    }

    fn connect_params(
        &self,
        device: usize,
        role: Role,
        scopes: &[&str],
        auth: Value,
        darwin: bool,
    ) -> clawgate_protocol::connect::ConnectParams {
        let (id, mode) = match role {
            Role::Node => ("node-host", "node"),
            Role::Operator => ("cli", "cli"),
        };
        let mut params = json!({
            "minProtocol": 4,
            "maxProtocol": 4,
            "client": {
                "id": id,
                "version": "1.0.0",
                "platform": if darwin { "darwin" } else { "linux" },
                "mode": mode,
            },
            "role": role.as_str(),
            "scopes": scopes,
            "auth": auth,
        });
        self.devices[device].sign(&mut params, NONCE);
        parse_connect_params(Some(&params)).expect("valid connect params")
    }

    fn authenticate(
        &self,
        params: &clawgate_protocol::connect::ConnectParams,
        role: Role,
        local: bool,
    ) -> Result<auth::Authenticated, auth::Rejection> {
        let peer = PeerContext {
            ip: loopback(),
            direct_local: local,
            origin: None,
            host: None,
            proxy: Default::default(),
        };
        auth::authenticate(
            &self.state,
            params,
            role,
            &peer,
            NONCE,
            auth::shared::PasswordVerdict::NotChecked,
        )
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Connect {
                device,
                node,
                scopes,
                cred,
                local,
                darwin,
            } => {
                let scopes = scopes
                    .clone()
                    .unwrap_or_else(|| self.usual_scopes[*device].clone());
                self.connect(*device, role_of(*node), &scopes, cred, *local, *darwin)?
            }
            Op::Approve { who, request } => {
                let caller = self.caller(who);
                let id = self.pick_request(request);
                let pending = testkit::store(&self.state).pending(&id);
                let before = pending
                    .as_ref()
                    .and_then(|p| testkit::store(&self.state).device(&p.device_id));
                let res = self.dispatch(&caller, "device.pair.approve", json!({"requestId": id}));
                if res.is_ok() {
                    let p = pending.expect("approved a stored request");
                    check_authorized(&caller, &p.device_id)?;
                    let admin = scopes::satisfies(&caller.scopes, ADMIN);
                    prop_assert!(
                        admin || p.roles.iter().all(|r| r == "operator"),
                        "non-admin approved roles {:?}",
                        p.roles
                    );
                    prop_assert!(
                        scopes::covers(&caller.scopes, &p.scopes),
                        "approver {:?} granted {:?}",
                        caller.scopes,
                        p.scopes
                    );
                    let after = testkit::store(&self.state)
                        .device(&p.device_id)
                        .expect("approved");
                    let old: Vec<String> = before.map(|d| d.scopes).unwrap_or_default();
                    let added: Vec<&String> =
                        after.scopes.iter().filter(|s| !old.contains(s)).collect();
                    prop_assert!(
                        scopes::covers(&caller.scopes, &added),
                        "approver {:?} added {:?}",
                        caller.scopes,
                        added
                    );
                }
            }
            Op::Reject { who, request } => {
                let caller = self.caller(who);
                let id = self.pick_request(request);
                let pending = testkit::store(&self.state).pending(&id);
                let res = self.dispatch(&caller, "device.pair.reject", json!({"requestId": id}));
                if res.is_ok() {
                    let p = pending.expect("rejected a stored request");
                    check_authorized(&caller, &p.device_id)?;
                    prop_assert!(testkit::store(&self.state).pending(&id).is_none());
                }
            }
            Op::Rotate {
                who,
                device,
                node,
                scopes: requested,
            } => {
                let caller = self.caller(who);
                let role = role_of(*node);
                let device = self.target(*device);
                let id = self.devices[device].id.clone();
                let mut params = json!({"deviceId": id, "role": role.as_str()});
                if let Some(s) = requested {
                    params["scopes"] = json!(s);
                }
                if let Ok(payload) = self.dispatch(&caller, "device.token.rotate", params) {
                    check_authorized(&caller, &id)?;
                    check_role_admin(&caller, role)?;
                    let granted: Vec<String> =
                        serde_json::from_value(payload["scopes"].clone()).expect("scopes");
                    prop_assert!(
                        scopes::covers(&caller.scopes, &granted),
                        "rotate by {:?} minted {:?}",
                        caller.scopes,
                        granted
                    );
                    let dev = testkit::store(&self.state)
                        .device(&id)
                        .expect("rotated device");
                    prop_assert!(scopes::covers(&dev.scopes, &granted));
                    let in_band = caller.device_id.as_deref() == Some(id.as_str());
                    let token = payload["token"].as_str().map(str::to_owned);
                    prop_assert_eq!(token.is_some(), in_band, "{}", payload);
                    if let Some(t) = &token {
                        let entry = testkit::store(&self.state).token_by_hash(&hash_token(t));
                        prop_assert!(entry.is_some_and(|e| e.scopes == granted));
                    }
                    self.kill(device, role);
                    self.sessions
                        .retain(|s| !(s.device == device && role == Role::Operator));
                    self.minted(device, role, token);
                }
            }
            Op::Revoke { who, device, node } => {
                let caller = self.caller(who);
                let role = role_of(*node);
                let device = self.target(*device);
                let id = self.devices[device].id.clone();
                let params = json!({"deviceId": id, "role": role.as_str()});
                if self
                    .dispatch(&caller, "device.token.revoke", params)
                    .is_ok()
                {
                    check_authorized(&caller, &id)?;
                    check_role_admin(&caller, role)?;
                    self.kill(device, role);
                    self.sessions
                        .retain(|s| !(s.device == device && role == Role::Operator));
                }
            }
            Op::Remove { who, device } => {
                let caller = self.caller(who);
                let device = self.target(*device);
                let id = self.devices[device].id.clone();
                let before = testkit::store(&self.state).device(&id);
                let res = self.dispatch(&caller, "device.pair.remove", json!({"deviceId": id}));
                if res.is_ok() {
                    check_authorized(&caller, &id)?;
                    check_session_non_operator(&caller, before.as_ref())?;
                    prop_assert!(testkit::store(&self.state).device(&id).is_none());
                    self.kill(device, Role::Operator);
                    self.kill(device, Role::Node);
                    self.close_sessions(device);
                }
            }
            Op::Rename { who, device, label } => {
                let caller = self.caller(who);
                let device = self.target(*device);
                let id = self.devices[device].id.clone();
                let before = testkit::store(&self.state).device(&id);
                let params = json!({"deviceId": id, "label": LABELS[*label]});
                if self.dispatch(&caller, "device.pair.rename", params).is_ok() {
                    check_authorized(&caller, &id)?;
                    check_session_non_operator(&caller, before.as_ref())?;
                    let after = testkit::store(&self.state)
                        .device(&id)
                        .expect("renamed device");
                    prop_assert_eq!(after.operator_label.as_deref(), Some(LABELS[*label]));
                }
            }
        }
        Ok(())
    }

    fn connect(
        &mut self,
        device: usize,
        role: Role,
        scopes: &[&'static str],
        cred: &Cred,
        local: bool,
        darwin: bool,
    ) -> Result<(), TestCaseError> {
        let (auth, presented) = match cred {
            Cred::Shared => (json!({"token": TOKEN}), None),
            Cred::DeviceToken(i) => match self.pick_token(Some(device), *i) {
                Some(t) => (json!({"deviceToken": t}), Some(t)),
                None => (json!({"token": TOKEN}), None),
            },
            Cred::AnyToken(i) => match self.pick_token(None, *i) {
                Some(t) => (json!({"deviceToken": t}), Some(t)),
                None => (json!({"token": TOKEN}), None),
            },
            Cred::TokenSlot(i) => match self.pick_token(Some(device), *i) {
                Some(t) => (json!({"token": t}), Some(t)),
                None => (json!({"token": TOKEN}), None),
            },
            Cred::WrongSharedAndDeviceToken(i) => match self.pick_token(Some(device), *i) {
                Some(t) => (
                    json!({"token": "not-the-shared-token", "deviceToken": t}),
                    Some(t),
                ),
                None => (json!({"token": TOKEN}), None),
            },
        };
        let params = self.connect_params(device, role, scopes, auth, darwin);
        let dev_id = self.devices[device].id.clone();
        // The live role entry before the connect: a token minted with
        // broader scopes replaces every earlier one (as in the reference).
        let live_before = testkit::store(&self.state)
            .role_token(&dev_id, role.as_str())
            .filter(|rt| rt.revoked_at_ms.is_none());
        match self.authenticate(&params, role, local) {
            Ok(a) => {
                prop_assert_eq!(a.device_id.as_deref(), Some(dev_id.as_str()));
                let stored = testkit::store(&self.state).device(&dev_id);
                prop_assert!(stored.is_some(), "authenticated an unpaired device");
                let stored = stored.unwrap();
                prop_assert!(stored.roles.iter().any(|r| r == role.as_str()));
                prop_assert!(
                    scopes::covers(&stored.scopes, &a.scopes),
                    "session scopes {:?} beyond approved {:?}",
                    a.scopes,
                    stored.scopes
                );
                let (token, _) = a
                    .issued_token
                    .clone()
                    .map(|(t, at)| (t.expose().to_string(), at))
                    .expect("a device session has a token");
                if a.device_token_auth {
                    // Invariant 3: only a live token of this (device, role).
                    prop_assert_eq!(Some(&token), presented.as_ref());
                    let idx = self.issued.iter().position(|t| t.token == token);
                    prop_assert!(idx.is_some());
                    let idx = idx.unwrap();
                    prop_assert!(
                        !self.dead.contains(&idx),
                        "a dead token authenticated: {:?}",
                        self.issued[idx]
                    );
                    prop_assert!(self.is_alive(idx));
                    prop_assert_eq!(self.issued[idx].device, device);
                    prop_assert_eq!(self.issued[idx].role, role);
                    if role == Role::Operator {
                        self.sessions.push(Session {
                            device,
                            scopes: a.scopes.clone(),
                        });
                    }
                } else if let Some(idx) = self.issued.iter().position(|t| t.token == token) {
                    // Handed out again (the gateway keeps the tokens it
                    // minted): only a live token of this (device, role),
                    // still stored, within this session's scopes.
                    prop_assert!(
                        !self.dead.contains(&idx) && self.is_alive(idx),
                        "a dead token was handed out again: {:?}",
                        self.issued[idx]
                    );
                    prop_assert_eq!(self.issued[idx].device, device);
                    prop_assert_eq!(self.issued[idx].role, role);
                    let entry = testkit::store(&self.state).token_by_hash(&hash_token(&token));
                    prop_assert!(entry.is_some(), "reused token not stored");
                    let entry = entry.unwrap();
                    prop_assert!(scopes::covers(&a.scopes, &entry.scopes));
                    prop_assert!(scopes::covers(&stored.scopes, &entry.scopes));
                } else {
                    let entry = testkit::store(&self.state).token_by_hash(&hash_token(&token));
                    prop_assert!(entry.is_some(), "issued token not stored");
                    let entry = entry.unwrap();
                    prop_assert_eq!(&entry.device_id, &dev_id);
                    prop_assert_eq!(entry.role.as_str(), role.as_str());
                    // Invariant 2: within what the minting session holds.
                    prop_assert!(
                        scopes::covers(&a.scopes, &entry.scopes),
                        "token scopes {:?} beyond session {:?}",
                        entry.scopes,
                        a.scopes
                    );
                    prop_assert!(scopes::covers(&stored.scopes, &entry.scopes));
                    if live_before.is_some_and(|rt| !scopes::covers(&rt.scopes, &entry.scopes)) {
                        self.kill(device, role);
                    }
                    self.minted(device, role, Some(token));
                }
            }
            Err(r) => {
                let details = r.error.details.as_deref();
                if details.and_then(|d| d.get("code")) == Some(&json!("PAIRING_REQUIRED")) {
                    let id = details.unwrap()["requestId"].as_str().expect("requestId");
                    if !self.requests.iter().any(|r| r == id) {
                        self.requests.push(id.to_string());
                    }
                }
            }
        }
        Ok(())
    }

    /// Invariants 1 and 3, checked after every step.
    fn check(&mut self) -> Result<(), TestCaseError> {
        let store = testkit::store(&self.state);
        let pool: Vec<&str> = self.devices.iter().map(|d| d.id.as_str()).collect();
        for d in store.devices() {
            prop_assert!(pool.contains(&d.device_id.as_str()), "stray device");
        }
        for dev in &self.devices {
            let stored = store.device(&dev.id);
            for role in ["operator", "node"] {
                let hashes = store.token_hashes(&dev.id, role);
                let Some(d) = &stored else {
                    prop_assert!(hashes.is_empty(), "token of a removed device");
                    prop_assert!(store.role_token(&dev.id, role).is_none());
                    continue;
                };
                prop_assert!(hashes.len() <= TOKENS_KEPT_PER_ROLE);
                for h in &hashes {
                    prop_assert!(
                        d.roles.iter().any(|r| r == role),
                        "token for role {} not in {:?}",
                        role,
                        d.roles
                    );
                    prop_assert!(
                        scopes::covers(&d.scopes, &h.scopes),
                        "token scopes {:?} beyond approved {:?}",
                        h.scopes,
                        d.scopes
                    );
                    prop_assert!(role == "operator" || h.scopes.is_empty());
                    prop_assert!(h.scopes.iter().all(|s| scopes::is_operator_scope(s)));
                }
            }
            if let Some(d) = &stored {
                for rt in store.role_tokens(&dev.id) {
                    prop_assert!(d.roles.contains(&rt.role), "role entry {}", rt.role);
                    prop_assert!(scopes::covers(&d.scopes, &rt.scopes));
                    prop_assert!(rt.role == "operator" || rt.scopes.is_empty());
                }
            }
        }
        for (idx, t) in self.issued.iter().enumerate() {
            let dev = &self.devices[t.device];
            let verdict = tokens::verify(
                store,
                &dev.id,
                &dev.public_key,
                t.role.as_str(),
                &t.token,
                &[],
            );
            if self.dead.contains(&idx) {
                prop_assert!(verdict.is_err(), "dead token verifies: {:?}", t);
                prop_assert!(store.token_by_hash(&hash_token(&t.token)).is_none());
            } else if self.is_alive(idx) {
                prop_assert!(verdict.is_ok(), "live token refused: {:?} {:?}", t, verdict);
            }
        }
        for idx in std::mem::take(&mut self.newly_dead) {
            self.check_dead_connect(idx)?;
        }
        Ok(())
    }

    /// A dead token presented alone (`auth.deviceToken`) is refused.
    fn check_dead_connect(&self, idx: usize) -> Result<(), TestCaseError> {
        let t = &self.issued[idx];
        let params = self.connect_params(
            t.device,
            t.role,
            &[],
            json!({"deviceToken": t.token}),
            false,
        );
        for local in [true, false] {
            let res = self.authenticate(&params, t.role, local);
            prop_assert!(res.is_err(), "dead token authenticated: {:?}", t);
        }
        Ok(())
    }

    /// Invariants 3 (again, for every dead token), 4 and 5.
    fn finish(&self) -> Result<(), TestCaseError> {
        for &idx in &self.dead {
            self.check_dead_connect(idx)?;
        }
        let dir: &Path = self._dir.path();
        let mut files = 0;
        for entry in std::fs::read_dir(dir).expect("state dir") {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !name.starts_with(DB_FILE_NAME) {
                continue;
            }
            files += 1;
            let bytes = std::fs::read(&path).expect("read db file");
            let text = String::from_utf8_lossy(&bytes);
            for t in &self.issued {
                prop_assert!(!text.contains(&t.token), "token stored in {}", name);
            }
        }
        prop_assert!(files >= 1);
        let audit = testkit::store(&self.state)
            .verify_audit()
            .expect("verify audit");
        prop_assert!(audit.ok, "audit chain broken: {:?}", audit);
        Ok(())
    }
}

/// A non-admin device-token session acts only on its own device, and only
/// through `operator.pairing` (or admin).
fn check_authorized(caller: &Caller, target: &str) -> Result<(), TestCaseError> {
    let admin = scopes::satisfies(&caller.scopes, ADMIN);
    prop_assert!(scopes::satisfies(&caller.scopes, PAIRING));
    prop_assert!(
        admin || caller.device_id.as_deref().is_none_or(|own| own == target),
        "cross-device action by a non-admin session"
    );
    Ok(())
}

/// Only admins manage non-operator roles.
fn check_role_admin(caller: &Caller, role: Role) -> Result<(), TestCaseError> {
    prop_assert!(
        role == Role::Operator || scopes::satisfies(&caller.scopes, ADMIN),
        "non-admin managed role {}",
        role
    );
    Ok(())
}

/// A non-admin device session does not remove or rename a device that holds
/// a non-operator role.
fn check_session_non_operator(
    caller: &Caller,
    device: Option<&clawgate_store::Device>,
) -> Result<(), TestCaseError> {
    let admin = scopes::satisfies(&caller.scopes, ADMIN);
    let has_other_role = device.is_some_and(|d| d.roles.iter().any(|r| r != "operator"));
    prop_assert!(admin || caller.device_id.is_none() || !has_other_role);
    Ok(())
}

fn run(
    auto_approve_local: bool,
    usual_scopes: Vec<Vec<&'static str>>,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let mut h = Harness::new(auto_approve_local, usual_scopes);
    for (i, op) in ops.iter().enumerate() {
        h.step(op)
            .and_then(|()| h.check())
            .map_err(|e| TestCaseError::fail(format!("step {i} ({op:?}): {e}")))?;
    }
    h.finish()
}

proptest! {
    #![proptest_config(ProptestConfig {
        // PROPTEST_CASES runs a longer search locally.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(48),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn device_token_lifecycle_invariants(
        auto_approve_local in any::<bool>(),
        usual_scopes in prop::collection::vec(connect_scopes(), POOL),
        ops in prop::collection::vec(op(), 10..40),
    ) {
        run(auto_approve_local, usual_scopes, &ops)?;
    }
}
