//! Replicas sharing one PostgreSQL registry: what each does so that all of
//! them act as one gateway.
//!
//! - **The change follower** ([`follow`]): LISTENs for the change log's
//!   notifications (with a 1 s poll behind it), catches up in sequence
//!   ([`clawgate_store::Store::catch_up`]) and carries out what other
//!   replicas decided for the sessions held here, exactly as a local
//!   decision does. A removed device, a revoked token or a withdrawn role
//!   closes the device's live sessions with 4001, decided from the devices'
//!   state before and after (nothing is missed when several changes arrive
//!   at once, nor after a resync). A rotation, whose rows look like a
//!   re-issue for broader scopes (which closes nothing), is announced in
//!   its own transaction. The pairing events other replicas sent their
//!   operators reach this replica's operators; lockouts are adopted; a
//!   shared-secret change makes this replica re-read its config. While the
//!   LISTEN connection is down or a catch-up fails, the registry is marked
//!   unreachable (the replica fails closed, see `state/registry.rs`); it is
//!   marked up again only after a catch-up that started after LISTEN was
//!   back in place.
//! - **Presence** ([`presence`]): each replica writes its presence entries
//!   every 2 s and reads the others'; a replica that misses three refreshes
//!   drops out of `system-presence` and `status`.
//! - **Lockouts** ([`lockouts`]): a lockout the limiter decides here is
//!   written to the change log at once; failure counting stays local.
//! - **Events** ([`events`]): the pairing events sent to this replica's
//!   operators are written to the change log as they happen (explicitly,
//!   not inferred from state: a request made and approved between two
//!   catch-ups still reaches every operator as both events).
//!
//! Imported only by `server.rs`; imports the rooms below it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clawgate_store::{CatchUp, DeviceDelta, ReplicaPresence, RoleToken};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::rpc::system::local_presence;
use crate::session::now_ms;
use crate::state::GatewayState;
use crate::state::limiter::{LimitKey, LimitScope, PeerClass};

/// How often a replica rewrites its presence row.
pub const PRESENCE_REFRESH: Duration = Duration::from_secs(2);
/// A presence row older than this many refreshes is a replica that stopped.
const PRESENCE_MISSES: u32 = 3;
/// How long the change log keeps rows (a replica cut off for longer
/// reloads its whole cache when it comes back).
const CHANGE_LOG_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;

/// Follows the change log until the gateway stops.
pub async fn follow(state: Arc<GatewayState>) {
    let Some(mut listen) = state.store.listen() else {
        return;
    };
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = listen.changed() => if changed.is_err() { return },
            _ = poll.tick() => {}
        }
        let signal = *listen.borrow_and_update();
        if !signal.connected {
            if state
                .registry
                .set_down("the change-log connection is down; reconnecting")
            {
                warn!(
                    registry = state.registry.location(),
                    "device registry unreachable: refusing device tokens and pairing until it is back and caught up"
                );
            }
            continue;
        }
        let s = state.clone();
        match tokio::task::spawn_blocking(move || s.store.catch_up()).await {
            Ok(Ok(caught)) => {
                let seq = caught.applied_seq;
                apply(&state, caught);
                if state.registry.set_up() {
                    info!(
                        registry = state.registry.location(),
                        applied_seq = seq,
                        "device registry reachable and caught up"
                    );
                }
            }
            Ok(Err(err)) => {
                if state.registry.set_down(&err.to_string()) {
                    warn!(%err, "device registry unreachable: refusing device tokens and pairing");
                }
            }
            Err(_) => {}
        }
    }
}

/// Carries out what other replicas committed.
fn apply(state: &GatewayState, caught: CatchUp) {
    if caught.resynced {
        warn!(
            applied_seq = caught.applied_seq,
            "this replica was cut off for longer than the change log is kept; reloaded the whole registry"
        );
    }
    for delta in &caught.deltas {
        close_invalidated(state, delta);
    }
    for change in &caught.changes {
        for effect in &change.effects {
            adopt(state, effect);
        }
    }
}

/// Closes the sessions a remote decision invalidated, with the reasons a
/// local decision gives.
fn close_invalidated(state: &GatewayState, d: &DeviceDelta) {
    let id = &d.device_id;
    if d.before.device.is_some() && d.after.device.is_none() {
        state.hub.close_device_sessions(id, None, "device removed");
        return;
    }
    let after: BTreeMap<&str, &RoleToken> = d
        .after
        .role_tokens
        .iter()
        .map(|t| (t.role.as_str(), t))
        .collect();
    for before in &d.before.role_tokens {
        let role = before.role.as_str();
        // A rotation is announced explicitly (see `adopt`): its rows look
        // like a re-issue for broader scopes, which closes nothing.
        let reason = match after.get(role) {
            None => Some("device token revoked"),
            Some(now) if before.revoked_at_ms.is_none() && now.revoked_at_ms.is_some() => {
                Some("device token revoked")
            }
            _ => None,
        };
        if let Some(reason) = reason {
            state.hub.close_device_sessions(id, Some(role), reason);
        }
    }
    if let (Some(b), Some(a)) = (&d.before.device, &d.after.device) {
        for role in b.roles.iter().filter(|r| !a.roles.contains(r)) {
            state
                .hub
                .close_device_sessions(id, Some(role), "device removed");
        }
    }
}

/// An effect another replica announced: a lockout (as written by
/// [`lockouts`]) is adopted; a shared-secret change makes this replica
/// re-read its own config (replicas are meant to share one).
fn adopt(state: &GatewayState, effect: &Value) {
    match effect.get("kind").and_then(Value::as_str) {
        Some("lockout") => {}
        Some("close") => {
            let device = effect.get("deviceId").and_then(Value::as_str);
            let role = effect.get("role").and_then(Value::as_str);
            let reason = effect.get("reason").and_then(Value::as_str);
            if let (Some(device), Some(reason)) = (device, reason) {
                state.hub.close_device_sessions(device, role, reason);
            }
            return;
        }
        Some("event") => {
            if let (Some(name), Some(payload)) = (
                effect.get("event").and_then(Value::as_str),
                effect.get("payload"),
            ) && PAIRING_EVENTS.contains(&name)
            {
                state.hub.broadcast(name, payload);
            }
            return;
        }
        Some("auth.changed") => {
            info!("another replica changed the shared secret; re-reading this replica's config");
            state.request_config_reload();
            return;
        }
        _ => return,
    }
    let Some(key) = parse_key(effect) else {
        return;
    };
    let until = effect.get("untilMs").and_then(Value::as_u64).unwrap_or(0);
    let remaining = until.saturating_sub(now_ms());
    if remaining > 0 {
        state
            .limiter
            .adopt_lockout(&key, Duration::from_millis(remaining), Instant::now());
    }
}

fn parse_key(v: &Value) -> Option<LimitKey> {
    let scope = LimitScope::parse(v.get("scope")?.as_str()?)?;
    let class = match v.get("class")?.as_str()? {
        "local" => PeerClass::Local,
        "browser" => PeerClass::Browser,
        "remote" => PeerClass::Remote,
        _ => return None,
    };
    let peer: IpAddr = v.get("peer")?.as_str()?.parse().ok()?;
    Some(LimitKey { scope, peer, class })
}

/// The events other replicas may ask this one to send to its operators.
const PAIRING_EVENTS: &[&str] = &[
    "device.pair.requested",
    "device.pair.resolved",
    "device.pair.changed",
    "device.pair.setup.completed",
];

/// Writes the pairing events sent to this replica's operators to the change
/// log as they happen, so every other replica's operators get them too
/// (each in order, after the change that caused it).
pub async fn events(state: Arc<GatewayState>) {
    loop {
        let _ = tokio::time::timeout(Duration::from_secs(1), state.registry.events_queued()).await;
        let queued = state.registry.drain_events();
        if queued.is_empty() {
            continue;
        }
        let count = queued.len();
        let s = state.clone();
        let written = tokio::task::spawn_blocking(move || {
            s.store.transact(|tx| {
                for (event, payload) in queued {
                    tx.announce(json!({"kind": "event", "event": event, "payload": payload}));
                }
                Ok(())
            })
        })
        .await;
        if let Ok(Err(err)) = written {
            warn!(%err, count, "sharing pairing events with the other replicas failed");
        }
    }
}

/// Writes the lockouts decided here to the change log as they are decided
/// (several at once while a write is in flight; a 1 s sweep behind it).
pub async fn lockouts(state: Arc<GatewayState>) {
    state.limiter.share_lockouts();
    loop {
        let _ = tokio::time::timeout(Duration::from_secs(1), state.limiter.lockout_queued()).await;
        let decided = state.limiter.drain_lockouts();
        if decided.is_empty() {
            continue;
        }
        let now = now_ms();
        let effects: Vec<Value> = decided
            .iter()
            .map(|(key, lockout)| {
                json!({
                    "kind": "lockout",
                    "scope": key.scope.as_str(),
                    "class": key.class.as_str(),
                    "peer": key.peer.to_string(),
                    "untilMs": now + u64::try_from(lockout.as_millis()).unwrap_or(u64::MAX),
                })
            })
            .collect();
        let s = state.clone();
        let written = tokio::task::spawn_blocking(move || {
            s.store.transact(|tx| {
                for e in effects {
                    tx.announce(e);
                }
                Ok(())
            })
        })
        .await;
        if let Ok(Err(err)) = written {
            warn!(%err, count = decided.len(), "sharing lockouts with the other replicas failed");
        }
    }
}

/// Writes this replica's presence row every [`PRESENCE_REFRESH`] and reads
/// the other replicas' (and prunes the change log once an hour).
pub async fn presence(state: Arc<GatewayState>) {
    let started = now_ms();
    let host = crate::rpc::system::hostname().to_string();
    let mut interval = tokio::time::interval(PRESENCE_REFRESH);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = 0u64;
    loop {
        interval.tick().await;
        let now = now_ms();
        let Some(replica_id) = state.store.replica_id().map(str::to_string) else {
            return;
        };
        let entries = serde_json::to_value(local_presence(&state)).unwrap_or(Value::Null);
        let row = ReplicaPresence {
            replica_id: replica_id.clone(),
            host: host.clone(),
            started_at_ms: started,
            refreshed_at_ms: now,
            sessions: u64::try_from(state.hub.len()).unwrap_or(u64::MAX),
            entries,
        };
        let prune = now.saturating_sub(last_prune) > 60 * 60 * 1000;
        let s = state.clone();
        let fresh_after = now.saturating_sub(
            u64::try_from((PRESENCE_REFRESH * PRESENCE_MISSES).as_millis()).unwrap_or(6000),
        );
        let result = tokio::task::spawn_blocking(move || {
            s.store.put_presence(&row)?;
            if prune {
                s.store
                    .prune_changes(now.saturating_sub(CHANGE_LOG_RETENTION_MS))?;
            }
            s.store.presence(fresh_after)
        })
        .await;
        match result {
            Ok(Ok(rows)) => {
                if prune {
                    last_prune = now;
                }
                let before = state.registry.peer_sessions();
                state.registry.set_peers(
                    rows.into_iter()
                        .filter(|r| r.replica_id != replica_id)
                        .collect(),
                );
                if state.registry.peer_sessions() != before {
                    state.hub.bump_presence();
                }
            }
            Ok(Err(err)) => tracing::debug!(%err, "presence refresh failed"),
            Err(_) => {}
        }
    }
}

/// Removes this replica's presence row (at shutdown).
pub fn leave(state: &GatewayState) {
    let stale = now_ms().saturating_sub(60_000);
    if let Err(err) = state.store.drop_presence(stale) {
        tracing::debug!(%err, "removing this replica's presence row failed");
    }
}
