//! The audit hash chain.
//!
//! Each row's hash is SHA-256 over the previous row's hash (hex) and a
//! length-prefixed encoding of the row's fields. `actor` and `details` are
//! stored as canonical JSON text (object keys sorted, no whitespace) and the
//! hash covers exactly that stored text, so verification never depends on
//! re-serialising parsed JSON (floats, key order).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use clawgate_protocol::hex;

/// `prev_hash` of the first row.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Domain separator so an audit hash can never be confused with another
/// SHA-256 in the system (token hashes, device ids).
const DOMAIN: &[u8] = b"clawgate-audit-v1";

/// An audit row exactly as it sits in SQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredAuditRow {
    pub seq: u64,
    pub ts_ms: u64,
    pub action: String,
    pub actor_json: String,
    pub device_id: Option<String>,
    pub details_json: String,
    pub prev_hash: String,
    pub hash: String,
}

/// `value` as JSON text with every object's keys sorted and no whitespace.
pub(crate) fn canonical_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = Map::with_capacity(map.len());
                for k in keys {
                    out.insert(k.clone(), sorted(&map[k]));
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// The chain hash (lowercase hex) of a row's content given its predecessor.
pub(crate) fn chain_hash(
    prev_hash: &str,
    seq: u64,
    ts_ms: u64,
    action: &str,
    actor_json: &str,
    device_id: Option<&str>,
    details_json: &str,
) -> String {
    fn field(h: &mut Sha256, bytes: &[u8]) {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    }
    let mut h = Sha256::new();
    field(&mut h, DOMAIN);
    field(&mut h, prev_hash.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(ts_ms.to_be_bytes());
    field(&mut h, action.as_bytes());
    field(&mut h, actor_json.as_bytes());
    match device_id {
        None => h.update([0u8]),
        Some(d) => {
            h.update([1u8]);
            field(&mut h, d.as_bytes());
        }
    }
    field(&mut h, details_json.as_bytes());
    hex::encode(&h.finalize())
}

impl StoredAuditRow {
    /// The hash this row should carry given its own `prev_hash`.
    pub fn expected_hash(&self) -> String {
        chain_hash(
            &self.prev_hash,
            self.seq,
            self.ts_ms,
            &self.action,
            &self.actor_json,
            self.device_id.as_deref(),
            &self.details_json,
        )
    }
}

/// Walks rows in ascending `seq` order and reports the first break.
pub(crate) struct ChainVerifier {
    expected_seq: u64,
    prev_hash: String,
    pub rows: u64,
}

/// Where and why the chain broke.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ChainBreak {
    pub seq: u64,
    pub problem: String,
}

impl ChainVerifier {
    pub fn new() -> Self {
        ChainVerifier {
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_string(),
            rows: 0,
        }
    }

    /// Checks the next row.
    pub fn check(&mut self, row: &StoredAuditRow) -> Result<(), ChainBreak> {
        self.rows += 1;
        if row.seq != self.expected_seq {
            let problem = if row.seq > self.expected_seq {
                format!(
                    "rows {}..{} are missing (row {} follows row {})",
                    self.expected_seq,
                    row.seq - 1,
                    row.seq,
                    self.expected_seq - 1
                )
            } else {
                format!("row {} is out of order", row.seq)
            };
            return Err(ChainBreak {
                seq: self.expected_seq.min(row.seq),
                problem,
            });
        }
        if row.prev_hash != self.prev_hash {
            return Err(ChainBreak {
                seq: row.seq,
                problem: format!(
                    "row {} does not link to the hash of row {}",
                    row.seq,
                    row.seq - 1
                ),
            });
        }
        if row.hash != row.expected_hash() {
            return Err(ChainBreak {
                seq: row.seq,
                problem: format!("row {} content does not match its hash", row.seq),
            });
        }
        self.expected_seq += 1;
        self.prev_hash = row.hash.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(n: u64) -> Vec<StoredAuditRow> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|seq| {
                let mut row = StoredAuditRow {
                    seq,
                    ts_ms: 1000 + seq,
                    action: "pairing.requested".into(),
                    actor_json: canonical_json(&json!({"kind": "peer"})),
                    device_id: (seq % 2 == 0).then(|| "ab".repeat(32)),
                    details_json: canonical_json(&json!({"n": seq})),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                row.hash = row.expected_hash();
                prev = row.hash.clone();
                row
            })
            .collect()
    }

    fn verify(rows: &[StoredAuditRow]) -> Result<(), ChainBreak> {
        let mut v = ChainVerifier::new();
        rows.iter().try_for_each(|r| v.check(r))
    }

    #[test]
    fn canonical_json_sorts_keys_recursively() {
        let v = json!({"b": 1, "a": {"z": [ {"y": 1, "x": 2} ], "c": null}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":null,"z":[{"x":2,"y":1}]},"b":1}"#
        );
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(()));
    }

    #[test]
    fn changed_content_is_caught_at_that_row() {
        let mut rows = chain(5);
        rows[2].details_json = canonical_json(&json!({"n": 99}));
        assert_eq!(verify(&rows).unwrap_err().seq, 3);
    }

    #[test]
    fn device_id_presence_is_hashed() {
        let mut rows = chain(3);
        rows[1].device_id = None;
        assert_eq!(verify(&rows).unwrap_err().seq, 2);
    }

    #[test]
    fn missing_row_is_caught() {
        let mut rows = chain(5);
        rows.remove(1);
        let err = verify(&rows).unwrap_err();
        assert_eq!(err.seq, 2);
        assert!(err.problem.contains("missing"), "{}", err.problem);
    }

    #[test]
    fn rewritten_chain_suffix_is_caught_by_link() {
        let mut rows = chain(4);
        rows[2].prev_hash = GENESIS_HASH.into();
        rows[2].hash = rows[2].expected_hash();
        assert_eq!(verify(&rows).unwrap_err().seq, 3);
    }
}
