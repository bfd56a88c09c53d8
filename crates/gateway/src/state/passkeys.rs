//! Passkey ceremonies in flight: each challenge the gateway issued, with
//! what it was issued for, until it is answered (taken: single use) or
//! expires. In memory and per process: a replica behind a load balancer
//! needs the two requests of one sign-in to reach the same replica (they
//! come within two minutes from one browser; see docs/passkeys.md).
//!
//! Bounded: at most [`MAX_SIGNINS`] sign-ins in flight in all, and
//! [`MAX_SIGNINS_PER_PEER`] per address; [`MAX_REGISTRATIONS`]
//! registrations, [`MAX_REGISTRATIONS_PER_CONN`] per connection. Expired
//! entries are dropped on every insert.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use webauthn_rp::request::register::USER_HANDLE_MAX_LEN;
use webauthn_rp::{DiscoverableAuthenticationServerState, RegistrationServerState};

pub const MAX_SIGNINS: usize = 4096;
pub const MAX_SIGNINS_PER_PEER: usize = 16;
pub const MAX_REGISTRATIONS: usize = 256;
pub const MAX_REGISTRATIONS_PER_CONN: usize = 4;

/// A registration begun by an operator session.
pub struct RegistrationCeremony {
    pub server: RegistrationServerState<USER_HANDLE_MAX_LEN>,
    pub rp_id: String,
    pub origin: String,
    pub label: String,
    pub scopes: Vec<String>,
    /// The session that began it; only it may finish it.
    pub conn_id: String,
    pub created_by: Option<String>,
    pub expires_at_ms: u64,
}

/// A sign-in begun by a browser that is not authenticated yet.
pub struct SigninCeremony {
    pub server: DiscoverableAuthenticationServerState,
    /// The challenge as the browser sees it (base64url): the device
    /// signature covers it.
    pub challenge_text: String,
    /// The browser's device identity the challenge is bound to.
    pub device_id: String,
    /// Its raw key, base64url (the stored form).
    pub public_key: String,
    pub rp_id: String,
    pub origin: String,
    pub peer: IpAddr,
    pub expires_at_ms: u64,
}

/// Why a ceremony could not be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// Too many in flight for this peer or connection.
    Yours,
    /// Too many in flight in all.
    Everyone,
}

#[derive(Default)]
pub struct Ceremonies {
    registrations: Mutex<HashMap<u128, RegistrationCeremony>>,
    signins: Mutex<HashMap<u128, SigninCeremony>>,
}

impl Ceremonies {
    pub fn begin_signin(
        &self,
        challenge: u128,
        c: SigninCeremony,
        now_ms: u64,
    ) -> Result<(), Full> {
        let mut map = self.signins.lock().expect("signin ceremonies");
        map.retain(|_, v| v.expires_at_ms > now_ms);
        if map.values().filter(|v| v.peer == c.peer).count() >= MAX_SIGNINS_PER_PEER {
            return Err(Full::Yours);
        }
        if map.len() >= MAX_SIGNINS {
            return Err(Full::Everyone);
        }
        map.insert(challenge, c);
        Ok(())
    }

    /// The live sign-in ceremony for `challenge`, removed (single use).
    pub fn take_signin(&self, challenge: u128, now_ms: u64) -> Option<SigninCeremony> {
        let c = self
            .signins
            .lock()
            .expect("signin ceremonies")
            .remove(&challenge)?;
        (c.expires_at_ms > now_ms).then_some(c)
    }

    pub fn begin_registration(
        &self,
        challenge: u128,
        c: RegistrationCeremony,
        now_ms: u64,
    ) -> Result<(), Full> {
        let mut map = self.registrations.lock().expect("registration ceremonies");
        map.retain(|_, v| v.expires_at_ms > now_ms);
        if map.values().filter(|v| v.conn_id == c.conn_id).count() >= MAX_REGISTRATIONS_PER_CONN {
            return Err(Full::Yours);
        }
        if map.len() >= MAX_REGISTRATIONS {
            return Err(Full::Everyone);
        }
        map.insert(challenge, c);
        Ok(())
    }

    /// The live registration for `challenge` begun by `conn_id`, removed.
    /// Another session's challenge stays where it is.
    pub fn take_registration(
        &self,
        challenge: u128,
        conn_id: &str,
        now_ms: u64,
    ) -> Option<RegistrationCeremony> {
        let mut map = self.registrations.lock().expect("registration ceremonies");
        if map.get(&challenge)?.conn_id != conn_id {
            return None;
        }
        let c = map.remove(&challenge)?;
        (c.expires_at_ms > now_ms).then_some(c)
    }

    /// How many sign-ins are in flight (tests, metrics).
    pub fn signins_in_flight(&self) -> usize {
        self.signins.lock().expect("signin ceremonies").len()
    }
}

impl std::fmt::Debug for Ceremonies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ceremonies")
            .field("signins", &self.signins_in_flight())
            .finish_non_exhaustive()
    }
}
