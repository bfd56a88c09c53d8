//! `connect` params as the gateway decides them before a session exists.
//!
//! Input: `[flags, json...]`. The JSON is the `params` of the first frame;
//! it goes through `parse_connect_params`, the protocol window, the role,
//! the Origin check and `auth::authenticate` (shared secret, device proof,
//! pairing, device tokens) on an in-process gateway in token mode, in the
//! order `connection.rs` applies them. Properties checked:
//!
//! - nothing panics; every refusal is a structured error with a code;
//! - with `flags & 0x80`, every credential in `auth` is replaced by a
//!   marker: no error message, close reason or `Debug` output shows it;
//! - a device-less session is only ever granted with the right shared
//!   secret, only as an operator, and keeps scopes only for a direct local
//!   cli or backend client; no session holds a scope it did not request.

#![no_main]

use std::sync::Arc;

use clawgate_fuzz::{ORIGINS, SHARED_TOKEN, gateway_state, peer};
use clawgate_gateway::GatewayState;
use clawgate_gateway::config::AuthMode;
use clawgate_protocol::connect::{ClientKind, Role, parse_connect_params};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const MARKER: &str = "SECRET-MARKER-4be1c97d";
const CREDENTIALS: &[&str] = &[
    "token",
    "bootstrapToken",
    "deviceToken",
    "password",
    "approvalRuntimeToken",
    "agentRuntimeIdentityToken",
];

struct Ctx {
    state: Arc<GatewayState>,
    _dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

thread_local! {
    static CTX: Ctx = {
        let (state, dir) = gateway_state(AuthMode::Token);
        Ctx { state, _dir: dir, _rt: clawgate_fuzz::paused_runtime() }
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, json)) = data.split_first() else {
        return;
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    let mut planted = false;
    if flags & 0x80 != 0
        && !String::from_utf8_lossy(json).contains(MARKER)
        && let Some(auth) = value.get_mut("auth").and_then(Value::as_object_mut)
    {
        for key in CREDENTIALS {
            if let Some(v @ Value::String(_)) = auth.get_mut(*key) {
                *v = Value::String(MARKER.into());
                planted = true;
            }
        }
    }
    let params = match parse_connect_params(Some(&value)) {
        Ok(p) => p,
        Err(message) => {
            assert!(message.starts_with("invalid connect params: "), "{message}");
            assert!(
                !(planted && message.contains(MARKER)),
                "secret in: {message}"
            );
            return;
        }
    };
    if planted {
        assert!(!format!("{params:?}").contains(MARKER), "secret in Debug");
    }
    let _ = params.protocol_mismatch_details();
    let _ = params.client_kind();
    if !params.protocol_accepted() {
        return;
    }
    let Some(role) = params.role() else {
        return;
    };
    let origin = ORIGINS[usize::from(flags >> 2 & 7) % ORIGINS.len()];
    let peer = peer(flags & 3, origin);
    CTX.with(|ctx| {
        let _guard = ctx._rt.enter();
        let state = &ctx.state;
        if let Some(origin) = &peer.origin
            && clawgate_gateway::auth::check_origin(
                origin,
                &peer,
                &state.config().control_ui.allowed_origins,
            )
            .is_err()
        {
            return;
        }
        // The challenge the client answers: its own nonce (so the proof
        // reaches the signature check) or, with flags & 0x40, another one.
        let nonce = match (&params.device, flags & 0x40) {
            (Some(d), 0) => d.nonce.trim().to_string(),
            _ => "5f0e8a58-0000-4000-8000-000000000000".to_string(),
        };
        let password = clawgate_gateway::auth::shared::PasswordVerdict::NotChecked;
        match clawgate_gateway::auth::authenticate(state, &params, role, &peer, &nonce, password) {
            Ok(session) => {
                let requested = params.requested_scopes();
                for s in &session.scopes {
                    assert!(requested.contains(s), "scope {s} was not requested");
                }
                if params.device.is_none() {
                    let shared = [&params.auth.token, &params.auth.password]
                        .iter()
                        .any(|v| v.as_deref() == Some(SHARED_TOKEN));
                    assert!(shared, "device-less session without the shared secret");
                    assert_eq!(session.role, Role::Operator);
                    assert!(!ClientKind::is_browser_ui(&params.client));
                    if !session.scopes.is_empty() {
                        assert!(peer.direct_local);
                        assert!(matches!(
                            (params.client.id.as_str(), params.client.mode.as_str()),
                            ("cli", "cli") | ("gateway-client", "backend")
                        ));
                    }
                }
            }
            Err(rejection) => {
                assert!(!rejection.error.code.is_empty());
                assert!(!rejection.error.message.is_empty());
                if planted {
                    let shown = serde_json::to_string(&rejection.error).unwrap();
                    assert!(!shown.contains(MARKER), "secret in {shown}");
                    assert!(
                        !rejection
                            .close_reason
                            .as_deref()
                            .is_some_and(|r| r.contains(MARKER))
                    );
                }
            }
        }
    });
});
