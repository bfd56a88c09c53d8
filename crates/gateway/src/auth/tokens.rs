//! Device tokens: minted as 32 random bytes (base64url, 43 chars), handed
//! out once, stored only as SHA-256 hashes.
//!
//! Because the gateway cannot hand a stored token out again, a device that
//! authenticates with the shared secret gets an additional token for its
//! (device, role); the newest [`TOKENS_KEPT_PER_ROLE`] stay valid so that
//! concurrent sessions of one device are not cut off. Rotate and revoke
//! drop all of them.

use clawgate_protocol::{Secret, scopes};
use clawgate_store::{RoleToken, Store, StoreError, TokenHash, Tx, hash_token};

/// Valid tokens kept per (device, role).
pub const TOKENS_KEPT_PER_ROLE: usize = 8;

/// Why a presented device token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    /// Unknown, rotated, revoked, for another device or role, or the device
    /// is not paired (all `AUTH_DEVICE_TOKEN_MISMATCH`); the reason is for logs.
    Mismatch(&'static str),
    /// Valid, but narrower than what the connect asked for (`AUTH_SCOPE_MISMATCH`).
    ScopeMismatch,
}

/// Checks a presented token for (device, role) and the requested scopes.
pub fn verify(
    store: &Store,
    device_id: &str,
    public_key: &str,
    role: &str,
    presented: &str,
    requested: &[String],
) -> Result<TokenHash, TokenRejection> {
    if presented.trim().is_empty() {
        return Err(TokenRejection::Mismatch("token-missing"));
    }
    let Some(entry) = store.token_by_hash(&hash_token(presented)) else {
        return Err(TokenRejection::Mismatch("token-mismatch"));
    };
    if entry.device_id != device_id || entry.role != role {
        return Err(TokenRejection::Mismatch("token-mismatch"));
    }
    let Some(device) = store.device(device_id) else {
        return Err(TokenRejection::Mismatch("device-not-paired"));
    };
    if device.public_key != public_key {
        return Err(TokenRejection::Mismatch("device-not-paired"));
    }
    if !device.roles.iter().any(|r| r == role) {
        return Err(TokenRejection::Mismatch("role-missing"));
    }
    match store.role_token(device_id, role) {
        None => return Err(TokenRejection::Mismatch("token-missing")),
        Some(rt) if rt.revoked_at_ms.is_some() => {
            return Err(TokenRejection::Mismatch("token-revoked"));
        }
        Some(_) => {}
    }
    if !scopes::covers(&device.scopes, &entry.scopes) || !scopes::covers(&entry.scopes, requested) {
        return Err(TokenRejection::ScopeMismatch);
    }
    Ok(entry)
}

/// The scopes a token for `role` may carry: operator tokens hold only
/// operator scopes within the approved baseline, normalised as the
/// reference stores them ([`scopes::token_normalised`]); other roles hold
/// none.
pub fn token_scopes(role: &str, requested: &[String], approved: &[String]) -> Vec<String> {
    if role != "operator" {
        return Vec::new();
    }
    scopes::token_normalised(requested)
        .into_iter()
        .filter(|s| scopes::is_operator_scope(s) && scopes::satisfies(approved, s))
        .map(str::to_owned)
        .collect()
}

/// Mints a token for (device, role) inside `tx` and returns it with its
/// issue time. The role entry is created when missing.
pub fn mint(
    tx: &mut Tx<'_>,
    existing: Option<&RoleToken>,
    device_id: &str,
    role: &str,
    token_scopes: Vec<String>,
    now_ms: u64,
) -> Result<(Secret, u64), StoreError> {
    let token = Secret::generate();
    // Broader scopes than the live entry replace its tokens, as the
    // reference replaces its one token; narrower or equal ones are one more
    // token beside them (this gateway cannot hand a stored token out again).
    let broader = existing
        .is_some_and(|rt| rt.revoked_at_ms.is_none() && !scopes::covers(&rt.scopes, &token_scopes));
    if broader {
        tx.delete_token_hashes(device_id, role)?;
    }
    tx.add_token_hash(
        &TokenHash {
            hash: hash_token(token.expose()),
            device_id: device_id.to_string(),
            role: role.to_string(),
            scopes: token_scopes.clone(),
            issued_at_ms: now_ms,
        },
        TOKENS_KEPT_PER_ROLE,
    )?;
    let entry = match existing {
        Some(rt) if rt.revoked_at_ms.is_none() => {
            let mut rt = rt.clone();
            if broader {
                rt.scopes = token_scopes;
                rt.rotated_at_ms = Some(now_ms);
            }
            rt
        }
        // Re-issued after a revoke: the entry keeps its creation and
        // last-use times and records the re-issue, as in the reference.
        Some(rt) => RoleToken {
            scopes: token_scopes,
            rotated_at_ms: Some(now_ms),
            revoked_at_ms: None,
            ..rt.clone()
        },
        None => RoleToken {
            device_id: device_id.to_string(),
            role: role.to_string(),
            scopes: token_scopes,
            created_at_ms: now_ms,
            rotated_at_ms: None,
            revoked_at_ms: None,
            last_used_at_ms: None,
        },
    };
    tx.put_role_token(&entry)?;
    Ok((token, now_ms))
}
