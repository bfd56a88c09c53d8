//! The in-memory copy of everything but the audit log. Connect-time lookups
//! (token by hash, device by id) read it without touching SQLite.
//!
//! The cache changes only by replaying the [`Op`]s of a committed
//! transaction, in order, so it always equals what SQL holds.

use std::collections::{BTreeMap, HashMap};

use crate::model::{Device, PendingRequest, RoleToken, Seen, TokenHash};

/// One committed change, recorded by `Tx` as it runs the SQL. Effects that
/// SQL decides (which hashes a trim removed) are recorded concretely.
#[derive(Debug)]
pub(crate) enum Op {
    PutDevice(Device),
    /// Also drops the device's role tokens, token hashes and pending requests.
    DeleteDevice(String),
    PutRoleToken(RoleToken),
    TouchToken {
        device_id: String,
        role: String,
        last_used_at_ms: u64,
    },
    MarkSeen {
        device_id: String,
        seen: Seen,
    },
    AddTokenHash(TokenHash),
    RemoveTokenHashes(Vec<[u8; 32]>),
    DeleteTokenHashes {
        device_id: String,
        role: String,
    },
    PutPending(PendingRequest),
    DeletePending {
        request_id: String,
        device_id: String,
    },
}

#[derive(Debug, Default)]
pub(crate) struct Cache {
    devices: HashMap<String, Device>,
    /// device id -> role -> entry.
    role_tokens: HashMap<String, BTreeMap<String, RoleToken>>,
    hashes: HashMap<[u8; 32], TokenHash>,
    /// device id -> role -> hashes, oldest first (by issue time, then
    /// insertion), the same order SQL keeps.
    hashes_by_role: HashMap<String, BTreeMap<String, Vec<[u8; 32]>>>,
    pending: HashMap<String, PendingRequest>,
}

impl Cache {
    /// Builds the cache from full table reads. `hashes` must be ordered
    /// oldest first within each (device, role).
    pub fn load(
        devices: Vec<Device>,
        role_tokens: Vec<RoleToken>,
        hashes: Vec<TokenHash>,
        pending: Vec<PendingRequest>,
    ) -> Cache {
        let mut cache = Cache::default();
        for d in devices {
            cache.devices.insert(d.device_id.clone(), d);
        }
        for t in role_tokens {
            cache.put_role_token(t);
        }
        for h in hashes {
            cache.add_token_hash(h);
        }
        for p in pending {
            cache.pending.insert(p.request_id.clone(), p);
        }
        cache
    }

    pub fn apply(&mut self, ops: Vec<Op>) {
        for op in ops {
            match op {
                Op::PutDevice(d) => {
                    self.devices.insert(d.device_id.clone(), d);
                }
                Op::DeleteDevice(id) => {
                    self.devices.remove(&id);
                    self.role_tokens.remove(&id);
                    if let Some(roles) = self.hashes_by_role.remove(&id) {
                        for hash in roles.into_values().flatten() {
                            self.hashes.remove(&hash);
                        }
                    }
                    self.pending.retain(|_, p| p.device_id != id);
                }
                Op::PutRoleToken(t) => self.put_role_token(t),
                Op::TouchToken {
                    device_id,
                    role,
                    last_used_at_ms,
                } => {
                    if let Some(t) = self
                        .role_tokens
                        .get_mut(&device_id)
                        .and_then(|roles| roles.get_mut(&role))
                    {
                        t.last_used_at_ms = Some(last_used_at_ms);
                    }
                }
                Op::MarkSeen { device_id, seen } => {
                    if let Some(d) = self.devices.get_mut(&device_id) {
                        d.last_seen_at_ms = Some(seen.at_ms);
                        d.last_seen_reason = seen.reason;
                        d.remote_ip = seen.remote_ip;
                    }
                }
                Op::AddTokenHash(h) => self.add_token_hash(h),
                Op::RemoveTokenHashes(hashes) => {
                    for hash in hashes {
                        self.remove_token_hash(&hash);
                    }
                }
                Op::DeleteTokenHashes { device_id, role } => {
                    let removed = self
                        .hashes_by_role
                        .get_mut(&device_id)
                        .and_then(|roles| roles.remove(&role))
                        .unwrap_or_default();
                    for hash in removed {
                        self.hashes.remove(&hash);
                    }
                    self.drop_empty_hash_device(&device_id);
                }
                Op::PutPending(p) => {
                    self.pending.insert(p.request_id.clone(), p);
                }
                Op::DeletePending { request_id, .. } => {
                    self.pending.remove(&request_id);
                }
            }
        }
    }

    /// Replaces everything the cache holds for `ids` with what the
    /// database holds now (rows of devices not listed are ignored).
    pub fn replace_devices(
        &mut self,
        ids: &[String],
        devices: Vec<Device>,
        role_tokens: Vec<RoleToken>,
        hashes: Vec<TokenHash>,
        pending: Vec<PendingRequest>,
    ) {
        let listed: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        self.apply(ids.iter().map(|id| Op::DeleteDevice(id.clone())).collect());
        for d in devices
            .into_iter()
            .filter(|d| listed.contains(d.device_id.as_str()))
        {
            self.devices.insert(d.device_id.clone(), d);
        }
        for t in role_tokens
            .into_iter()
            .filter(|t| listed.contains(t.device_id.as_str()))
        {
            self.put_role_token(t);
        }
        for h in hashes
            .into_iter()
            .filter(|h| listed.contains(h.device_id.as_str()))
        {
            self.add_token_hash(h);
        }
        for p in pending
            .into_iter()
            .filter(|p| listed.contains(p.device_id.as_str()))
        {
            self.pending.insert(p.request_id.clone(), p);
        }
    }

    /// What the cache holds for one device.
    pub fn view(&self, device_id: &str) -> crate::changes::DeviceView {
        crate::changes::DeviceView {
            device: self.devices.get(device_id).cloned(),
            role_tokens: self.role_tokens(device_id),
            pending: self.pending_for_device(device_id),
        }
    }

    /// Every device id the cache knows of (paired or with a pending request).
    pub fn device_ids(&self) -> std::collections::BTreeSet<String> {
        self.devices
            .keys()
            .cloned()
            .chain(self.pending.values().map(|p| p.device_id.clone()))
            .collect()
    }

    fn put_role_token(&mut self, t: RoleToken) {
        self.role_tokens
            .entry(t.device_id.clone())
            .or_default()
            .insert(t.role.clone(), t);
    }

    fn add_token_hash(&mut self, h: TokenHash) {
        let list = self
            .hashes_by_role
            .entry(h.device_id.clone())
            .or_default()
            .entry(h.role.clone())
            .or_default();
        // After every hash issued at or before it, like SQL's
        // ORDER BY issued_at_ms, id.
        let at = list.partition_point(|k| {
            self.hashes
                .get(k)
                .is_some_and(|o| o.issued_at_ms <= h.issued_at_ms)
        });
        list.insert(at, h.hash);
        self.hashes.insert(h.hash, h);
    }

    fn remove_token_hash(&mut self, hash: &[u8; 32]) {
        let Some(h) = self.hashes.remove(hash) else {
            return;
        };
        if let Some(list) = self
            .hashes_by_role
            .get_mut(&h.device_id)
            .and_then(|roles| roles.get_mut(&h.role))
        {
            list.retain(|k| k != hash);
            if list.is_empty() {
                self.hashes_by_role
                    .get_mut(&h.device_id)
                    .map(|roles| roles.remove(&h.role));
            }
        }
        self.drop_empty_hash_device(&h.device_id);
    }

    fn drop_empty_hash_device(&mut self, device_id: &str) {
        if self
            .hashes_by_role
            .get(device_id)
            .is_some_and(BTreeMap::is_empty)
        {
            self.hashes_by_role.remove(device_id);
        }
    }

    pub fn device(&self, device_id: &str) -> Option<&Device> {
        self.devices.get(device_id)
    }

    /// Sorted by approval time, then device id.
    pub fn devices(&self) -> Vec<Device> {
        let mut out: Vec<Device> = self.devices.values().cloned().collect();
        out.sort_by(|a, b| (a.approved_at_ms, &a.device_id).cmp(&(b.approved_at_ms, &b.device_id)));
        out
    }

    /// Sorted by role.
    pub fn role_tokens(&self, device_id: &str) -> Vec<RoleToken> {
        self.role_tokens
            .get(device_id)
            .map(|roles| roles.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn role_token(&self, device_id: &str, role: &str) -> Option<&RoleToken> {
        self.role_tokens.get(device_id)?.get(role)
    }

    pub fn token_by_hash(&self, hash: &[u8; 32]) -> Option<&TokenHash> {
        self.hashes.get(hash)
    }

    /// Oldest first.
    pub fn token_hashes(&self, device_id: &str, role: &str) -> Vec<TokenHash> {
        self.hashes_by_role
            .get(device_id)
            .and_then(|roles| roles.get(role))
            .map(|list| {
                list.iter()
                    .filter_map(|k| self.hashes.get(k))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn pending(&self, request_id: &str) -> Option<&PendingRequest> {
        self.pending.get(request_id)
    }

    /// The pending request with this pairing code (its shown form).
    pub fn pending_by_code(&self, code: &str) -> Option<&PendingRequest> {
        self.pending
            .values()
            .find(|p| p.pairing_code.as_deref() == Some(code))
    }

    /// Sorted by creation time, then request id.
    pub fn pending_list(&self) -> Vec<PendingRequest> {
        sorted_pending(self.pending.values())
    }

    /// Sorted by creation time, then request id.
    pub fn pending_for_device(&self, device_id: &str) -> Vec<PendingRequest> {
        sorted_pending(self.pending.values().filter(|p| p.device_id == device_id))
    }
}

fn sorted_pending<'a>(it: impl Iterator<Item = &'a PendingRequest>) -> Vec<PendingRequest> {
    let mut out: Vec<PendingRequest> = it.cloned().collect();
    out.sort_by(|a, b| (a.ts, &a.request_id).cmp(&(b.ts, &b.request_id)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u8, issued: u64) -> TokenHash {
        TokenHash {
            hash: [n; 32],
            device_id: "d".into(),
            role: "operator".into(),
            scopes: vec![],
            issued_at_ms: issued,
        }
    }

    #[test]
    fn hashes_stay_ordered_by_issue_time_then_insertion() {
        let mut c = Cache::default();
        c.apply(vec![
            Op::AddTokenHash(hash(1, 20)),
            Op::AddTokenHash(hash(2, 10)),
            Op::AddTokenHash(hash(3, 20)),
        ]);
        let order: Vec<u8> = c
            .token_hashes("d", "operator")
            .iter()
            .map(|h| h.hash[0])
            .collect();
        assert_eq!(order, vec![2, 1, 3]);
        c.apply(vec![Op::RemoveTokenHashes(vec![[2; 32]])]);
        assert!(c.token_by_hash(&[2; 32]).is_none());
        assert_eq!(c.token_hashes("d", "operator").len(), 2);
        c.apply(vec![Op::DeleteTokenHashes {
            device_id: "d".into(),
            role: "operator".into(),
        }]);
        assert!(c.token_hashes("d", "operator").is_empty());
        assert!(c.hashes.is_empty() && c.hashes_by_role.is_empty());
    }
}
