//! Pairing at connect time: whether a verified device
//! is approved for what it asks, silent approval for direct-local peers, and
//! pending requests (refresh, supersede) otherwise.

use clawgate_protocol::connect::{ClientKind, ConnectParams, Role};
use clawgate_protocol::device_auth::normalize_metadata;
use clawgate_protocol::frames::{ErrorShape, error_code};
use clawgate_protocol::scopes;
use clawgate_protocol::wire::AuditAction;
use clawgate_protocol::wire::AuthMethod;
use clawgate_store::{Device, PendingRequest, StoreError};
use serde_json::{Value, json};
use tracing::info;

use crate::auth::device_proof::VerifiedDevice;
use crate::session::{PeerContext, now_ms as clock_ms};
use crate::state::deferred::only_seen_changed;
use crate::state::{GatewayState, audit};
use crate::views;

/// Pending requests expire this long after their last refresh.
pub const PENDING_TTL_MS: u64 = 5 * 60 * 1000;

/// Whether a pending request has not expired at `now_ms`.
pub fn is_live(p: &PendingRequest, now_ms: u64) -> bool {
    p.refreshed_at_ms + PENDING_TTL_MS > now_ms
}

/// Why a device needs approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairingReason {
    NotPaired,
    RoleUpgrade,
    ScopeUpgrade,
    MetadataUpgrade,
}

impl PairingReason {
    pub fn as_str(self) -> &'static str {
        match self {
            PairingReason::NotPaired => "not-paired",
            PairingReason::RoleUpgrade => "role-upgrade",
            PairingReason::ScopeUpgrade => "scope-upgrade",
            PairingReason::MetadataUpgrade => "metadata-upgrade",
        }
    }

    fn message(self) -> &'static str {
        match self {
            PairingReason::NotPaired => "pairing required: device is not approved yet",
            PairingReason::RoleUpgrade => {
                "pairing required: device is asking for a higher role than currently approved"
            }
            PairingReason::ScopeUpgrade => {
                "pairing required: device is asking for more scopes than currently approved"
            }
            PairingReason::MetadataUpgrade => {
                "pairing required: device identity changed and must be re-approved"
            }
        }
    }

    fn hint(self) -> &'static str {
        match self {
            PairingReason::NotPaired => "Approve this device from the pending pairing requests.",
            PairingReason::RoleUpgrade => {
                "Review the requested role upgrade, then approve the pending request."
            }
            PairingReason::ScopeUpgrade => {
                "Review the requested scopes, then approve the pending upgrade."
            }
            PairingReason::MetadataUpgrade => {
                "Review the refreshed device details, then approve the pending request."
            }
        }
    }
}

/// The outcome of the pairing check.
#[derive(Debug)]
pub enum PairingOutcome {
    /// Approved (already, or silently just now), with its metadata refreshed
    /// from this connect; the caller persists it. `routine`: only the
    /// last-seen fields differ from the stored record (see `deferred.rs`).
    Approved { device: Box<Device>, routine: bool },
    /// Needs an operator: the error to send and its close reason.
    Required {
        error: ErrorShape,
        close_reason: String,
    },
}

/// Roles with an approved, non-revoked token entry.
pub fn effective_roles(state: &GatewayState, device: &Device) -> Vec<String> {
    device
        .roles
        .iter()
        .filter(|r| {
            state
                .store
                .role_token(&device.device_id, r)
                .is_some_and(|t| t.revoked_at_ms.is_none())
        })
        .cloned()
        .collect()
}

fn metadata_changed(device: &Device, params: &ConnectParams) -> bool {
    let differs = |pinned: &Option<String>, now: Option<&str>| match pinned {
        Some(p) => normalize_metadata(p) != normalize_metadata(now.unwrap_or("")),
        None => false,
    };
    differs(&device.platform, Some(&params.client.platform))
        || differs(
            &device.device_family,
            params.client.device_family.as_deref(),
        )
}

/// Whether the gateway may approve without an operator (the reference's
/// `shouldAllowSilentLocalPairing`).
fn silent_allowed(
    state: &GatewayState,
    reason: PairingReason,
    ask: &Ask<'_>,
    auth_method: AuthMethod,
) -> bool {
    let Ask {
        params, role, peer, ..
    } = *ask;
    if !peer.direct_local || !state.config.auto_approve_local {
        return false;
    }
    let ui_or_webchat = matches!(
        params.client_kind(),
        ClientKind::OperatorUi | ClientKind::Webchat
    );
    if peer.origin.is_some() && !ui_or_webchat {
        return false;
    }
    match reason {
        PairingReason::MetadataUpgrade => peer.origin.is_none() && !ui_or_webchat,
        PairingReason::ScopeUpgrade => matches!(
            auth_method,
            AuthMethod::None | AuthMethod::Token | AuthMethod::Password
        ),
        PairingReason::RoleUpgrade => role == Role::Operator,
        PairingReason::NotPaired => true,
    }
}

/// What a connect asks for, and from where.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub verified: &'a VerifiedDevice,
    pub params: &'a ConnectParams,
    pub role: Role,
    /// Requested scopes, deduplicated.
    pub requested: &'a [String],
    pub peer: &'a PeerContext,
    pub now_ms: u64,
}

/// Decides pairing for a verified device.
pub fn evaluate(
    state: &GatewayState,
    ask: &Ask<'_>,
    auth_method: AuthMethod,
) -> Result<PairingOutcome, StoreError> {
    evaluate_with(state, ask, auth_method, None)
}

/// [`evaluate`], with `gateway.auth.trustedProxy.deviceAutoApprove` in
/// force for this connect: `proxy_user` is the verified proxy identity,
/// and a new device or a same-key scope upgrade is approved at once
/// (`approvedVia: "trusted-proxy"`) for the ask, which the caller has
/// already narrowed to what auto-approval may grant. Role and metadata
/// changes still need an operator.
pub fn evaluate_with(
    state: &GatewayState,
    ask: &Ask<'_>,
    auth_method: AuthMethod,
    proxy_user: Option<&str>,
) -> Result<PairingOutcome, StoreError> {
    let Ask {
        verified,
        params,
        role,
        requested,
        peer,
        now_ms,
    } = *ask;
    let stored = state.store.device(&verified.device_id);
    let same_key = stored
        .as_ref()
        .filter(|d| d.public_key == verified.public_key);
    // As in the reference: any request from a device that has a paired record.
    let is_repair = stored.is_some();
    let reason = match same_key {
        None => Some(PairingReason::NotPaired),
        Some(d) if metadata_changed(d, params) => Some(PairingReason::MetadataUpgrade),
        Some(d) if !effective_roles(state, d).iter().any(|r| r == role.as_str()) => {
            Some(PairingReason::RoleUpgrade)
        }
        Some(d) if !scopes::covers(&d.scopes, requested) => Some(PairingReason::ScopeUpgrade),
        Some(_) => None,
    };
    let Some(reason) = reason else {
        let mut device = same_key.cloned().expect("approved device");
        device.display_name = params.client.display_name.clone().or(device.display_name);
        device.remote_ip = Some(peer.ip.to_string());
        device.last_seen_at_ms = Some(now_ms);
        device.last_seen_reason = Some("connect".into());
        // Not written here: the caller saves the refreshed record in the
        // same transaction as the device-token change, or queues it.
        let routine = same_key.is_some_and(|s| only_seen_changed(s, &device));
        return Ok(PairingOutcome::Approved {
            device: Box::new(device),
            routine,
        });
    };

    // A request already waiting for an operator is not side-stepped by a
    // local reconnect: the operator decides (as the reference does after a
    // revoke).
    let awaiting_operator = state
        .store
        .pending_for_device(&verified.device_id)
        .iter()
        .any(|p| !p.silent && is_live(p, now_ms));
    let auto = proxy_user.filter(|_| {
        matches!(
            reason,
            PairingReason::NotPaired | PairingReason::ScopeUpgrade
        ) && (stored.is_none() || same_key.is_some())
            && role == Role::Operator
    });
    if let Some(user) = auto {
        let device = approve_silently(state, ask, reason, same_key, Some(user))?;
        return Ok(PairingOutcome::Approved {
            device: Box::new(device),
            routine: true,
        });
    }
    if !awaiting_operator && silent_allowed(state, reason, ask, auth_method) {
        // `approve_silently` has just stored this very record.
        let device = approve_silently(state, ask, reason, same_key, None)?;
        return Ok(PairingOutcome::Approved {
            device: Box::new(device),
            routine: true,
        });
    }

    let request = open_request(state, ask, reason, is_repair)?;
    let mut details = serde_json::Map::new();
    details.insert("code".into(), json!("PAIRING_REQUIRED"));
    details.insert("reason".into(), json!(reason.as_str()));
    details.insert("requestId".into(), json!(request.request_id));
    details.insert("remediationHint".into(), json!(reason.hint()));
    details.insert("deviceId".into(), json!(verified.device_id));
    details.insert("requestedRole".into(), json!(role.as_str()));
    if !requested.is_empty() {
        details.insert("requestedScopes".into(), json!(requested));
    }
    if let Some(d) = same_key {
        let roles = effective_roles(state, d);
        if !roles.is_empty() {
            details.insert("approvedRoles".into(), json!(roles));
        }
        if !d.scopes.is_empty() {
            details.insert("approvedScopes".into(), json!(d.scopes));
        }
    }
    // clawgate's extra key, after every reference key (their order is
    // kept, so reference clients read the same details).
    if let Some(code) = &request.pairing_code {
        details.insert("pairingCode".into(), json!(code));
    }
    let message = reason.message();
    Ok(PairingOutcome::Required {
        error: ErrorShape::new(error_code::NOT_PAIRED, message)
            .with_details(Value::Object(details)),
        close_reason: format!("{message} (requestId: {})", request.request_id),
    })
}

/// Merges an approval into the device record (or starts one).
pub fn merged_device(
    existing: Option<&Device>,
    request: &PendingRequest,
    approved_via: &str,
    now_ms: u64,
) -> Device {
    let mut roles = existing.map(|d| d.roles.clone()).unwrap_or_default();
    for r in &request.roles {
        if !roles.contains(r) {
            roles.push(r.clone());
        }
    }
    let mut scopes = existing.map(|d| d.scopes.clone()).unwrap_or_default();
    for s in &request.scopes {
        if !scopes.contains(s) {
            scopes.push(s.clone());
        }
    }
    Device {
        device_id: request.device_id.clone(),
        public_key: request.public_key.clone(),
        display_name: request.display_name.clone(),
        operator_label: existing.and_then(|d| d.operator_label.clone()),
        platform: request.platform.clone(),
        device_family: request.device_family.clone(),
        client_id: request.client_id.clone(),
        client_mode: request.client_mode.clone(),
        browser_origin: request.browser_origin.clone(),
        roles,
        scopes,
        remote_ip: request.remote_ip.clone(),
        approved_via: approved_via.to_string(),
        created_at_ms: existing.map_or(now_ms, |d| d.created_at_ms),
        approved_at_ms: now_ms,
        last_seen_at_ms: existing.and_then(|d| d.last_seen_at_ms),
        last_seen_reason: existing.and_then(|d| d.last_seen_reason.clone()),
    }
}

fn request_for(ask: &Ask<'_>, reason: PairingReason, is_repair: bool) -> PendingRequest {
    let Ask {
        verified,
        params,
        role,
        requested,
        peer,
        now_ms,
    } = *ask;
    PendingRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        device_id: verified.device_id.clone(),
        public_key: verified.public_key.clone(),
        display_name: params.client.display_name.clone(),
        platform: Some(params.client.platform.clone()),
        device_family: params.client.device_family.clone(),
        client_id: Some(params.client.id.clone()),
        client_mode: Some(params.client.mode.clone()),
        browser_origin: browser_origin(params, peer),
        remote_ip: Some(peer.ip.to_string()),
        role: role.as_str().to_string(),
        roles: vec![role.as_str().to_string()],
        scopes: requested.to_vec(),
        reason: reason.as_str().to_string(),
        silent: false,
        is_repair,
        ts: now_ms,
        refreshed_at_ms: now_ms,
        pairing_code: None,
    }
}

/// Approves without an operator: a direct local peer (`proxy_user`
/// `None`, approved via "silent") or a trusted-proxy identity under
/// `deviceAutoApprove` (approved via "trusted-proxy", the user audited).
fn approve_silently(
    state: &GatewayState,
    ask: &Ask<'_>,
    reason: PairingReason,
    existing: Option<&Device>,
    proxy_user: Option<&str>,
) -> Result<Device, StoreError> {
    let via = if proxy_user.is_some() {
        "trusted-proxy"
    } else {
        "silent"
    };
    let Ask {
        verified,
        role,
        requested,
        peer,
        now_ms,
        ..
    } = *ask;
    let mut request = request_for(ask, reason, false);
    request.silent = true;
    let mut device = merged_device(existing, &request, via, now_ms);
    device.last_seen_at_ms = Some(now_ms);
    device.last_seen_reason = Some("connect".into());
    let superseded = state.store.pending_for_device(&verified.device_id);
    let key_changed = state
        .store
        .device(&verified.device_id)
        .is_some_and(|d| d.public_key != verified.public_key);
    let saved = device.clone();
    state.store.transact(|tx| {
        if key_changed {
            tx.delete_device(&saved.device_id)?;
        }
        tx.put_device(&saved)?;
        for p in &superseded {
            tx.delete_pending(&p.request_id)?;
        }
        tx.append_audit(&audit::record(
            AuditAction::PairingSilentApproved,
            audit::peer_actor(peer),
            Some(&saved.device_id),
            {
                let mut d = json!({"requestId": request.request_id, "reason": reason.as_str(), "role": role.as_str(), "scopes": requested, "approvedVia": via});
                if let Some(user) = proxy_user {
                    d["proxyUser"] = json!(user);
                }
                d
            },
        ))?;
        Ok(())
    })?;
    for p in &superseded {
        broadcast_resolved(state, &p.request_id, &p.device_id, "rejected");
    }
    info!(device = %device.device_id, role = %role, via, "device approved without an operator");
    broadcast_resolved(state, &request.request_id, &device.device_id, "approved");
    Ok(device)
}

/// Keeps one stable request per device and role: a retry for the same role
/// (from the same key: the device id is the key's hash) reuses the pending
/// request, its id and its pairing code, and the request then shows this
/// latest ask, never a union; when the ask changed, operators get
/// `device.pair.requested` again with the same id. (The reference opens a
/// new request when the ask is not covered; see "Pairing codes" in the
/// README.) An ask for another role opens a new request that supersedes
/// the device's others, so an approver never grants more than
/// `devices list` shows.
fn open_request(
    state: &GatewayState,
    ask: &Ask<'_>,
    reason: PairingReason,
    is_repair: bool,
) -> Result<PendingRequest, StoreError> {
    let Ask {
        verified,
        role,
        peer,
        now_ms,
        ..
    } = *ask;
    let same_role = state
        .store
        .pending_for_device(&verified.device_id)
        .into_iter()
        .filter(|p| is_live(p, now_ms))
        .find(|p| {
            p.public_key == verified.public_key
                && p.role == role.as_str()
                && p.roles.iter().all(|r| r == role.as_str())
        });
    if let Some(p) = same_role {
        return update_request(state, ask, reason, is_repair, p);
    }
    let mut request = request_for(ask, reason, is_repair);
    let all_old = state.store.pending_for_device(&verified.device_id);
    let saved = state.store.transact(|tx| {
        for old in &all_old {
            tx.delete_pending(&old.request_id)?;
            tx.append_audit(&audit::record(
                AuditAction::PairingSuperseded,
                audit::peer_actor(peer),
                Some(&old.device_id),
                json!({"requestId": old.request_id, "supersededBy": request.request_id}),
            ))?;
        }
        // Under the writer lock the cache is current: the code is unique
        // among pending requests (the store's unique index says so too).
        request.pairing_code = Some(fresh_code(state));
        tx.put_pending(&request)?;
        tx.append_audit(&audit::record(
            AuditAction::PairingRequested,
            audit::peer_actor(peer),
            Some(&request.device_id),
            json!({"requestId": request.request_id, "pairingCode": request.pairing_code, "reason": reason.as_str(), "role": request.role, "scopes": request.scopes, "isRepair": is_repair}),
        ))?;
        Ok(request.clone())
    })?;
    for old in &all_old {
        broadcast_resolved(state, &old.request_id, &old.device_id, "rejected");
    }
    info!(device = %saved.device_id, request = %saved.request_id, reason = reason.as_str(), "pairing request opened");
    state.pairing_event(
        "device.pair.requested",
        views::json(&views::pending(&saved)),
    );
    Ok(saved)
}

/// A pairing code no pending request has (codes are drawn from the OS
/// CSPRNG; a collision among the few pending requests is redrawn).
fn fresh_code(state: &GatewayState) -> String {
    loop {
        let code = clawgate_protocol::pairing_code::generate();
        if state.store.pending_by_code(&code).is_none() {
            return code;
        }
    }
}

/// The device asked again for the role of its pending request `p`: the
/// request keeps its id, code and creation time and now shows this ask.
fn update_request(
    state: &GatewayState,
    ask: &Ask<'_>,
    reason: PairingReason,
    is_repair: bool,
    p: PendingRequest,
) -> Result<PendingRequest, StoreError> {
    let Ask {
        params,
        requested,
        peer,
        now_ms,
        ..
    } = *ask;
    let mut updated = p.clone();
    updated.display_name = params.client.display_name.clone().or(updated.display_name);
    updated.platform = Some(params.client.platform.clone());
    updated.device_family = params.client.device_family.clone();
    updated.client_id = Some(params.client.id.clone());
    updated.client_mode = Some(params.client.mode.clone());
    updated.browser_origin = browser_origin(params, peer);
    updated.remote_ip = Some(peer.ip.to_string());
    updated.scopes = requested.to_vec();
    updated.reason = reason.as_str().to_string();
    updated.is_repair |= is_repair;
    updated.refreshed_at_ms = now_ms;
    // What an approver sees changed: operators' lists must show it.
    let ask_changed = !same_set(&p.scopes, &updated.scopes)
        || p.reason != updated.reason
        || p.browser_origin != updated.browser_origin;
    // Only while it is still open (under the writer lock the cache is
    // current): an approval or rejection that committed since the read
    // above must not be undone by writing the request back.
    let saved = state.store.transact(|tx| {
        let Some(current) = state.store.pending(&updated.request_id) else {
            return Ok(None);
        };
        if current.pairing_code.is_none() {
            // A request stored before pairing codes existed gets one now.
            updated.pairing_code = Some(fresh_code(state));
        }
        tx.put_pending(&updated)?;
        if ask_changed {
            tx.append_audit(&audit::record(
                AuditAction::PairingUpdated,
                audit::peer_actor(peer),
                Some(&updated.device_id),
                json!({"requestId": updated.request_id, "pairingCode": updated.pairing_code, "reason": updated.reason, "role": updated.role, "scopes": updated.scopes, "previousScopes": p.scopes}),
            ))?;
        }
        Ok(Some(updated.clone()))
    })?;
    let Some(saved) = saved else {
        // Decided meanwhile: the device's next connect sees the decision.
        return Ok(updated);
    };
    if ask_changed {
        info!(device = %saved.device_id, request = %saved.request_id, "pairing request updated");
        state.pairing_event(
            "device.pair.requested",
            views::json(&views::pending(&saved)),
        );
    }
    Ok(saved)
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x)) && b.iter().all(|x| a.contains(x))
}

/// The page origin recorded for browser clients (the Control UI and
/// webchat); other clients that happen to send `Origin` record none.
fn browser_origin(params: &ConnectParams, peer: &PeerContext) -> Option<String> {
    matches!(
        params.client_kind(),
        ClientKind::OperatorUi | ClientKind::Webchat
    )
    .then(|| peer.origin.clone())
    .flatten()
}

/// Broadcasts `device.pair.resolved`.
pub fn broadcast_resolved(state: &GatewayState, request_id: &str, device_id: &str, decision: &str) {
    state.pairing_event(
        "device.pair.resolved",
        json!({"requestId": request_id, "deviceId": device_id, "decision": decision, "ts": clock_ms()}),
    );
}
