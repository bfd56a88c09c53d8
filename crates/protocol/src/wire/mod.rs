//! Typed wire payloads: the results and records the gateway sends, defined
//! once for the gateway (serialising), the client library and the CLI
//! (deserialising) and the Control UI's fixtures.
//!
//! Field order is the order the gateway emits (serde_json keeps it:
//! `preserve_order`), absent optional fields are left out rather than sent
//! as `null` (as the reference does) unless noted. Deserialising is lenient
//! so clients keep working against the reference gateway and newer
//! gateways: lists, flags and numbers default when missing, and fields this
//! version does not know land in `extra` (always empty when clawgate builds
//! the value).

pub mod audit;
pub mod devices;
pub mod hello;
pub mod passkeys;
pub mod presence;

pub use audit::{AuditAction, AuditEntry, AuditList};
pub use devices::{
    PAIR_DECISION_SCHEMA, PairApproved, PairDecisionParams, PairList, PairRejected, PairRemoved,
    PairRenamed, PairTarget, PairedDevice, PendingPairing, TokenDelivery, TokenInfo, TokenRevoked,
    TokenRotated, shown_remote_ip,
};
pub use hello::{
    AuthMethod, HandoffToken, HelloAuth, HelloFeatures, HelloOk, HelloPolicy, HelloServer,
    HelloSnapshot,
};
pub use passkeys::{
    PasskeyInfo, PasskeyList, PasskeyRemoved, SigninDevice, SigninOk, SigninOptionsRequest,
    SigninPasskey, SigninRequest, signin_payload,
};
pub use presence::{ClientPresence, GatewayPresence, PresenceEntry};

/// Unknown fields, kept in arrival order.
pub type Extra = serde_json::Map<String, serde_json::Value>;
