//! clawgate's persistent store.
//!
//! The device registry (paired devices, pending pairing requests, token
//! hashes) and the audit log land here with the pairing work; the gateway
//! foundation keeps no state beyond its config file.
