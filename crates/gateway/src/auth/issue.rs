//! The device token a successful device connect gets in `hello-ok`: the
//! one it presented, the one this process minted earlier for the same
//! (device, role, scopes) and can hand out again, or a new one.
//!
//! A routine reconnect (only the last-seen fields changed) queues its
//! bookkeeping (`state::deferred`) instead of writing; anything else is one
//! transaction with the refreshed device record, committed before the
//! reply.

use clawgate_protocol::Secret;
use clawgate_protocol::connect::Role;
use clawgate_store::{Device, StoreError};

use crate::auth::tokens;
use crate::state::GatewayState;

/// The token for `hello-ok` and its issue time. `presented`: the device
/// token the connect authenticated with, if it did.
pub(crate) fn hand_out(
    state: &GatewayState,
    device: &Device,
    role: Role,
    requested: &[String],
    presented: Option<(Secret, u64)>,
    routine: bool,
    now: u64,
) -> Result<(Secret, u64), StoreError> {
    let role = role.as_str();
    if let Some(found) = presented {
        if routine {
            state.deferred.seen(device);
            state.deferred.touched(&device.device_id, role, now);
        } else {
            state.store.transact(|tx| {
                tx.put_device(device)?;
                tx.touch_token(&device.device_id, role, now)
            })?;
        }
        return Ok(found);
    }
    let token_scopes = tokens::token_scopes(role, requested, &device.scopes);
    if routine
        && let Some(found) =
            state
                .deferred
                .reusable(&state.store, &device.device_id, role, &token_scopes)
    {
        state.deferred.seen(device);
        return Ok(found);
    }
    let existing = state.store.role_token(&device.device_id, role);
    let (token, issued_at) = state.store.transact(|tx| {
        tx.put_device(device)?;
        tokens::mint(
            tx,
            existing.as_ref(),
            &device.device_id,
            role,
            token_scopes.clone(),
            now,
        )
    })?;
    state
        .deferred
        .remember(&device.device_id, role, &token, &token_scopes, issued_at);
    Ok((token, issued_at))
}
