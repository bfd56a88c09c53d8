//! The error catalogue: every structured error code the gateway emits, the
//! wire shape of each, and for people a one-sentence meaning, the likely
//! cause and the exact `clawgate` command that fixes it.
//!
//! The gateway builds its errors here, the CLI and client explain them from
//! here, and the Control UI reads [`catalogue_json`].

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::connect::ClientKind;
use crate::frames::{ErrorShape, error_code};

/// `details.recommendedNextStep` values.
pub mod next_step {
    pub const RETRY_WITH_DEVICE_TOKEN: &str = "retry_with_device_token";
    pub const UPDATE_AUTH_CONFIGURATION: &str = "update_auth_configuration";
    pub const UPDATE_AUTH_CREDENTIALS: &str = "update_auth_credentials";
    pub const WAIT_THEN_RETRY: &str = "wait_then_retry";
    pub const REVIEW_AUTH_CONFIGURATION: &str = "review_auth_configuration";
}

/// One catalogue entry.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// `details.code`.
    pub code: &'static str,
    /// Top-level `error.code` it travels under.
    pub error_code: &'static str,
    /// `details.authReason`, for shared-secret and credential failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_reason: Option<&'static str>,
    /// A short title for UIs.
    pub title: &'static str,
    /// One sentence: what happened.
    pub meaning: &'static str,
    /// The usual reason it happens.
    pub cause: &'static str,
    /// What to run or do next. `<requestId>`, `<deviceId>` and `<scope>`
    /// are filled in from the error's details where they are known.
    pub next: &'static str,
}

macro_rules! entry {
    ($code:literal, $err:expr, $reason:expr, $title:literal, $meaning:literal, $cause:literal, $next:literal) => {
        Entry {
            code: $code,
            error_code: $err,
            auth_reason: $reason,
            title: $title,
            meaning: $meaning,
            cause: $cause,
            next: $next,
        }
    };
}

const IR: &str = error_code::INVALID_REQUEST;
const NP: &str = error_code::NOT_PAIRED;
const UA: &str = error_code::UNAVAILABLE;
const FB: &str = error_code::FORBIDDEN;

/// Every code, in the reference's order, plus `MISSING_SCOPE`.
pub const CATALOGUE: &[Entry] = &[
    entry!(
        "AUTH_REQUIRED",
        IR,
        None,
        "Authentication required",
        "The gateway needs credentials before it accepts this connection.",
        "The client connected without any token, password or device token.",
        "Pass the gateway token with --token (or the password with --password). To print the token, run on the gateway host: clawgate gateway auth-token --show"
    ),
    entry!(
        "AUTH_UNAUTHORIZED",
        IR,
        None,
        "Unauthorized",
        "The gateway refused the credentials for a reason that has no more specific code.",
        "The gateway's auth configuration does not accept this kind of client.",
        "On the gateway host, check the auth settings with: clawgate config get gateway.auth; then run: clawgate doctor"
    ),
    entry!(
        "AUTH_TOKEN_MISSING",
        IR,
        Some("token_missing"),
        "Gateway token missing",
        "The gateway runs in token mode and this connection sent no token.",
        "The client has no gateway token configured, or the Control UI has none saved for this gateway URL.",
        "On the gateway host run: clawgate gateway auth-token --show; then pass it with --token (or paste it in the Control UI)."
    ),
    entry!(
        "AUTH_TOKEN_MISMATCH",
        IR,
        Some("token_mismatch"),
        "Gateway token mismatch",
        "The token this client sent is not the gateway's current token.",
        "The gateway token was changed (or regenerated) and this client still has the old one.",
        "On the gateway host run: clawgate gateway auth-token --show; retry with that token. A paired device may instead retry with its device token."
    ),
    entry!(
        "AUTH_TOKEN_NOT_CONFIGURED",
        IR,
        Some("token_missing_config"),
        "Gateway has no token",
        "The gateway is in token mode but has no token configured.",
        "gateway.auth.mode is token and gateway.auth.token is empty.",
        "On the gateway host run: clawgate doctor --generate-gateway-token, then restart with clawgate gateway run."
    ),
    entry!(
        "AUTH_PASSWORD_MISSING",
        IR,
        Some("password_missing"),
        "Gateway password missing",
        "The gateway runs in password mode and this connection sent no password.",
        "The client has no gateway password configured.",
        "Retry with --password. To print the password, run on the gateway host: clawgate config get gateway.auth.password"
    ),
    entry!(
        "AUTH_PASSWORD_MISMATCH",
        IR,
        Some("password_mismatch"),
        "Gateway password mismatch",
        "The password this client sent is not the gateway's password.",
        "The password was mistyped or changed on the gateway.",
        "Retry with the current password; to set a new one on the gateway host: clawgate config set gateway.auth.password <password>."
    ),
    entry!(
        "AUTH_PASSWORD_NOT_CONFIGURED",
        IR,
        Some("password_missing_config"),
        "Gateway has no password",
        "The gateway is in password mode but has no password configured.",
        "gateway.auth.mode is password and gateway.auth.password is empty.",
        "On the gateway host run: clawgate config set gateway.auth.password <password>, then restart with clawgate gateway run."
    ),
    entry!(
        "AUTH_BOOTSTRAP_TOKEN_INVALID",
        IR,
        Some("bootstrap_token_invalid"),
        "Setup code rejected",
        "The setup code is invalid, expired, revoked or already used.",
        "Setup codes are single-use, short-lived and bound to one role and its scopes: the code was already redeemed, expired, was revoked, never existed, or the device asked for another role or more scopes than the code grants.",
        "Create a new code on the gateway host: clawgate devices setup-code --role <role>, then redeem it once on the device: clawgate pair --setup-code <code>; review devices with: clawgate devices list"
    ),
    entry!(
        "AUTH_DEVICE_TOKEN_MISMATCH",
        IR,
        Some("device_token_mismatch"),
        "Device token rejected",
        "The device token this client sent is not valid for this device and role any more.",
        "The device token was rotated or revoked, or the device was removed from the gateway.",
        "On the gateway host run: clawgate devices rotate --device <deviceId> --role operator; or reconnect with the gateway token so a fresh device token is issued."
    ),
    entry!(
        "AUTH_SCOPE_MISMATCH",
        IR,
        Some("scope_mismatch"),
        "Device token scopes too narrow",
        "The device token does not cover the scopes this connection asked for.",
        "The client asked for more scopes than the device was approved for.",
        "Reconnect with the gateway token to request the upgrade, then approve it on the gateway host: clawgate devices approve <requestId>"
    ),
    entry!(
        "AUTH_RATE_LIMITED",
        IR,
        Some("rate_limited"),
        "Too many failed attempts",
        "Too many failed authentication attempts came from this address; it is locked out for a while.",
        "Repeated wrong tokens or passwords, often a client retrying with a stale secret.",
        "Wait until the lockout ends (retryAfterMs), fix the client's credentials, then retry. Check the gateway with: clawgate status"
    ),
    entry!(
        "AUTH_TAILSCALE_IDENTITY_MISSING",
        IR,
        Some("tailscale_user_missing"),
        "Tailscale identity missing",
        "The connection carried no Tailscale identity.",
        "Tailscale Serve auth is not in front of this gateway.",
        "Use the gateway token or password instead. To print the token, run on the gateway host: clawgate gateway auth-token --show"
    ),
    entry!(
        "AUTH_TAILSCALE_PROXY_MISSING",
        IR,
        Some("tailscale_proxy_missing"),
        "Tailscale proxy headers missing",
        "The connection did not come through Tailscale Serve.",
        "Tailscale Serve auth is not in front of this gateway.",
        "Use the gateway token or password instead. To print the token, run on the gateway host: clawgate gateway auth-token --show"
    ),
    entry!(
        "AUTH_TAILSCALE_WHOIS_FAILED",
        IR,
        Some("tailscale_whois_failed"),
        "Tailscale identity check failed",
        "The gateway could not confirm the Tailscale identity.",
        "The Tailscale daemon did not answer.",
        "Use the gateway token or password instead. To print the token, run on the gateway host: clawgate gateway auth-token --show"
    ),
    entry!(
        "AUTH_TAILSCALE_IDENTITY_MISMATCH",
        IR,
        Some("tailscale_user_mismatch"),
        "Tailscale identity mismatch",
        "The Tailscale identity does not match the allowed user.",
        "Another Tailscale user reached the gateway.",
        "Use the gateway token or password instead. To print the token, run on the gateway host: clawgate gateway auth-token --show"
    ),
    entry!(
        "AUTH_IDENTITY_HEADER_REQUIRED",
        IR,
        None,
        "Identity header required",
        "The trusted proxy did not pass the identity header.",
        "The reverse proxy is not configured to forward the user identity.",
        "Check the proxy's header settings and the trusted proxies: clawgate config get gateway.trustedProxies"
    ),
    entry!(
        "AUTH_VERIFIED_USER_REQUIRED",
        NP,
        None,
        "Verified user required",
        "This gateway requires a verified user for device-token sign-in.",
        "Operator roles are configured but the connection has no verified user.",
        "Reconnect with the gateway token. To print it, run on the gateway host: clawgate gateway auth-token --show"
    ),
    entry!(
        "AUTHENTICATED_PROFILE_UNAVAILABLE",
        UA,
        None,
        "Profile unavailable",
        "The authenticated profile is not available right now.",
        "The gateway is restarting or the profile is suspended.",
        "Retry shortly; check the gateway with: clawgate status"
    ),
    entry!(
        "CONTROL_UI_BUILD_MISMATCH",
        UA,
        None,
        "Control UI out of date",
        "The Control UI page is older than the gateway.",
        "The gateway was upgraded while the page was open.",
        "Reload the Control UI page, or open a fresh one with: clawgate dashboard"
    ),
    entry!(
        "CONTROL_UI_ORIGIN_NOT_ALLOWED",
        IR,
        None,
        "Origin not allowed",
        "The page that opened this connection is not an allowed origin for this gateway.",
        "The Control UI was opened from another host name, or another site tried to connect to the gateway.",
        "Open the Control UI from the gateway host, or allow the origin: clawgate config set gateway.controlUi.allowedOrigins '[\"https://your-host\"]'"
    ),
    entry!(
        "PROTOCOL_MISMATCH",
        IR,
        None,
        "Protocol version mismatch",
        "The client and the gateway do not share a protocol version.",
        "The client is older or newer than this gateway (protocol 4; 3 for nodes and probes).",
        "Upgrade the client (or the gateway) so both speak protocol 4; check the gateway with: clawgate gateway probe"
    ),
    entry!(
        "CONTROL_UI_DEVICE_IDENTITY_REQUIRED",
        IR,
        None,
        "Browser identity required",
        "The Control UI must present a device identity, which needs a secure context.",
        "The page was opened over plain HTTP from a non-localhost address, so the browser withheld WebCrypto.",
        "Open the Control UI over HTTPS or through an SSH tunnel: ssh -N -L 18789:127.0.0.1:18789 user@gateway-host, then open http://127.0.0.1:18789/ (clawgate dashboard --no-open prints the URL)"
    ),
    entry!(
        "DEVICE_IDENTITY_REQUIRED",
        NP,
        None,
        "Device identity required",
        "This connection must present a device identity (a signed key) or valid shared-secret credentials.",
        "A client without a device identity sent no token, or asked for a non-operator role.",
        "Retry with the gateway token (on the gateway host: clawgate gateway auth-token --show) or use a client that has a device identity."
    ),
    entry!(
        "DEVICE_AUTH_INVALID",
        IR,
        None,
        "Device proof invalid",
        "The device identity proof could not be checked.",
        "The client sent a malformed device proof.",
        "Delete the client's identity.json so it makes a new identity, then pair again; list devices with: clawgate devices list"
    ),
    entry!(
        "DEVICE_AUTH_DEVICE_ID_MISMATCH",
        IR,
        None,
        "Device id mismatch",
        "The device id is not the SHA-256 of the public key the client sent.",
        "The client's identity files are corrupt or were edited.",
        "Delete the client's identity.json so it makes a new identity, then pair again; list devices with: clawgate devices list"
    ),
    entry!(
        "DEVICE_AUTH_SIGNATURE_EXPIRED",
        IR,
        None,
        "Device signature expired",
        "The device signature's timestamp is more than two minutes away from the gateway's clock.",
        "The client's or the gateway's clock is wrong.",
        "Fix the clock (enable NTP) on the client and the gateway host, then retry; check with: clawgate gateway probe"
    ),
    entry!(
        "DEVICE_AUTH_NONCE_REQUIRED",
        IR,
        None,
        "Device nonce missing",
        "The device proof did not include the gateway's challenge nonce.",
        "The client did not wait for connect.challenge.",
        "Upgrade the client so it signs the connect.challenge nonce; check the gateway with: clawgate gateway probe"
    ),
    entry!(
        "DEVICE_AUTH_NONCE_MISMATCH",
        IR,
        None,
        "Device nonce mismatch",
        "The device proof signed a nonce from another connection.",
        "The client reused an old challenge, or something replayed a captured connect.",
        "Retry the connection; if it persists, upgrade the client. Check the gateway with: clawgate gateway probe"
    ),
    entry!(
        "DEVICE_AUTH_SIGNATURE_INVALID",
        IR,
        None,
        "Device signature invalid",
        "The device signature does not verify with the device's public key.",
        "The client signed different fields than it sent (often the token slot), or its key is corrupt.",
        "Delete the client's identity.json so it makes a new identity, then pair again; list devices with: clawgate devices list"
    ),
    entry!(
        "DEVICE_AUTH_PUBLIC_KEY_INVALID",
        IR,
        None,
        "Device public key invalid",
        "The device public key is not a valid Ed25519 key.",
        "The client's identity files are corrupt.",
        "Delete the client's identity.json so it makes a new identity, then pair again; list devices with: clawgate devices list"
    ),
    entry!(
        "PAIRING_REQUIRED",
        NP,
        None,
        "Approval required",
        "This device is not approved for what it asked for yet; a pairing request is waiting.",
        "A new device, or a known device asking for a new role, more scopes or with changed details.",
        "On the gateway host run: clawgate devices approve <requestId>"
    ),
    entry!(
        "CLIENT_VERSION_MISMATCH",
        IR,
        None,
        "Client version mismatch",
        "The gateway does not accept this client version.",
        "The client is too old for this gateway.",
        "Upgrade the client; check the gateway with: clawgate gateway probe"
    ),
    entry!(
        "MISSING_SCOPE",
        FB,
        None,
        "Missing scope",
        "This connection is not allowed to call the method: it lacks the required scope.",
        "The client connected with fewer scopes than the method needs (device-less remote connections get none).",
        "Reconnect asking for <scope> (approve the upgrade with clawgate devices approve <requestId>), or rotate the token: clawgate devices rotate --device <deviceId> --role operator --scope <scope>"
    ),
    entry!(
        "UPSTREAM_UNAVAILABLE",
        UA,
        None,
        "Upstream gateway unavailable",
        "clawgate accepted the credentials but could not reach the OpenClaw gateway it fronts.",
        "The upstream OpenClaw gateway is stopped, restarting or overloaded.",
        "Retry shortly; check the upstream with: clawgate upstream status"
    ),
    entry!(
        "UPSTREAM_NOT_PAIRED",
        UA,
        None,
        "clawgate not paired upstream",
        "clawgate accepted the credentials but the OpenClaw gateway it fronts does not accept clawgate's own identity.",
        "clawgate was never paired with the upstream, or the upstream removed or rotated clawgate's device.",
        "Pair the gateway with its upstream: clawgate upstream pair (it needs the upstream's shared token), then: clawgate upstream status"
    ),
    entry!(
        "FRONTED_METHOD_BLOCKED",
        FB,
        None,
        "Method blocked by clawgate",
        "clawgate does not relay this method to the OpenClaw gateway it fronts.",
        "The method would change the upstream's auth, network or secrets settings, or act on the upstream's device and node registry, which clawgate keeps to itself.",
        "Change these settings on the upstream host itself; manage devices with: clawgate devices list"
    ),
    entry!(
        "NODE_NOT_FRONTED",
        IR,
        None,
        "Nodes are not fronted",
        "clawgate does not relay node connections to the OpenClaw gateway it fronts yet.",
        "A node (role node) connected to a clawgate that fronts an OpenClaw gateway.",
        "Connect the node to the OpenClaw gateway directly; see the upstream with: clawgate upstream status"
    ),
    entry!(
        "PAIRING_CODE_UNKNOWN",
        IR,
        None,
        "Unknown pairing code",
        "No pending pairing request has this code; nothing was approved or rejected.",
        "A typo, or the request was already approved, rejected, replaced or expired (requests live 5 minutes after the device last asked).",
        "List the pending requests and their codes with: clawgate devices list"
    ),
    entry!(
        "PASSKEY_REFUSED",
        IR,
        None,
        "Passkey refused",
        "The gateway did not accept this passkey; nothing was approved.",
        "The passkey was removed, belongs to another host name, the sign-in took longer than 2 minutes, or the authenticator's signature counter went backwards (a cloned key).",
        "Sign in with the gateway token instead and check the passkeys with: clawgate passkeys list"
    ),
];

/// Looks a code up.
/// The codes on which a client stops reconnecting (clients.md 1.4): a
/// retry with the same credentials cannot succeed, so a person must act.
/// `AUTH_TOKEN_MISMATCH` and `AUTH_IDENTITY_HEADER_REQUIRED` stop it only
/// when no device-token retry is pending; `PAIRING_REQUIRED` unless the
/// details say `pauseReconnect: false` or `wait_then_retry`;
/// `PROTOCOL_MISMATCH` and `CLIENT_VERSION_MISMATCH` are terminal.
pub const PAUSE_RECONNECT: &[&str] = &[
    "AUTH_TOKEN_MISSING",
    "AUTH_BOOTSTRAP_TOKEN_INVALID",
    "AUTH_PASSWORD_MISSING",
    "AUTH_PASSWORD_MISMATCH",
    "AUTH_RATE_LIMITED",
    "AUTH_DEVICE_TOKEN_MISMATCH",
    "AUTH_SCOPE_MISMATCH",
    "AUTH_VERIFIED_USER_REQUIRED",
    "CONTROL_UI_BUILD_MISMATCH",
    "CONTROL_UI_DEVICE_IDENTITY_REQUIRED",
    "DEVICE_IDENTITY_REQUIRED",
    "PAIRING_REQUIRED",
    "AUTH_TOKEN_MISMATCH",
    "AUTH_IDENTITY_HEADER_REQUIRED",
    "PROTOCOL_MISMATCH",
    "CLIENT_VERSION_MISMATCH",
];

pub fn entry(code: &str) -> Option<&'static Entry> {
    CATALOGUE.iter().find(|e| e.code == code)
}

/// The whole catalogue as JSON, for the Control UI.
pub fn catalogue_json() -> String {
    serde_json::to_string_pretty(CATALOGUE).expect("catalogue serializes")
}

/// The client rules the Control UI needs synchronously, as an ES module
/// (`ui/js/protocol.js`): the pause list, which scope grants which, and
/// the scope each of `methods` needs (`null`: any authenticated socket).
/// A gateway test keeps the file equal to this.
pub fn control_ui_rules_module(methods: &[&str]) -> String {
    use crate::scopes::{self, MethodAccess};
    let grants: Map<String, Value> = scopes::OPERATOR_SCOPES
        .iter()
        .map(|held| {
            let granted: Vec<&str> = scopes::OPERATOR_SCOPES
                .iter()
                .copied()
                .filter(|required| required != held && scopes::scope_grants(held, required))
                .collect();
            (held.to_string(), json!(granted))
        })
        .collect();
    let method_scopes: Map<String, Value> = methods
        .iter()
        .map(|m| {
            let scope = match scopes::method_access(m) {
                MethodAccess::Operator(scope) => json!(scope),
                MethodAccess::Anyone | MethodAccess::NodeOnly => Value::Null,
            };
            (m.to_string(), scope)
        })
        .collect();
    let pretty = |v: &Value| serde_json::to_string_pretty(v).expect("rules serialize");
    format!(
        "// Generated from crates/protocol (catalogue::PAUSE_RECONNECT, scopes::scope_grants,\n\
         // scopes::method_access); do not edit. Regenerate with:\n\
         // UPDATE_CATALOGUE=1 cargo test -p clawgate-gateway --test control_ui\n\n\
         /** Codes on which a client stops reconnecting (see pausesReconnect in gateway.js). */\n\
         export const PAUSE_RECONNECT = {};\n\n\
         /** For each operator scope, the other scopes it grants. */\n\
         export const SCOPE_GRANTS = {};\n\n\
         /** The scope each method needs; null: any authenticated socket. */\n\
         export const METHOD_SCOPES = {};\n",
        pretty(&json!(PAUSE_RECONNECT)),
        pretty(&Value::Object(grants)),
        pretty(&Value::Object(method_scopes)),
    )
}

/// Why shared-secret or credential authentication failed (`authReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthFailure {
    TokenMissing,
    TokenMismatch,
    TokenMissingConfig,
    PasswordMissing,
    PasswordMismatch,
    PasswordMissingConfig,
    DeviceTokenMismatch,
    ScopeMismatch,
    BootstrapTokenInvalid,
    /// Token mode, only a device token offered, and it failed.
    DeviceTokenRejected,
    /// No more specific reason.
    Unauthorized,
}

impl AuthFailure {
    /// `details.code`.
    pub fn code(self) -> &'static str {
        match self {
            AuthFailure::TokenMissing => "AUTH_TOKEN_MISSING",
            AuthFailure::TokenMismatch => "AUTH_TOKEN_MISMATCH",
            AuthFailure::TokenMissingConfig => "AUTH_TOKEN_NOT_CONFIGURED",
            AuthFailure::PasswordMissing => "AUTH_PASSWORD_MISSING",
            AuthFailure::PasswordMismatch => "AUTH_PASSWORD_MISMATCH",
            AuthFailure::PasswordMissingConfig => "AUTH_PASSWORD_NOT_CONFIGURED",
            AuthFailure::DeviceTokenMismatch | AuthFailure::DeviceTokenRejected => {
                "AUTH_DEVICE_TOKEN_MISMATCH"
            }
            AuthFailure::ScopeMismatch => "AUTH_SCOPE_MISMATCH",
            AuthFailure::BootstrapTokenInvalid => "AUTH_BOOTSTRAP_TOKEN_INVALID",
            AuthFailure::Unauthorized => "AUTH_UNAUTHORIZED",
        }
    }

    /// `details.authReason`.
    pub fn reason(self) -> &'static str {
        match self {
            AuthFailure::TokenMissing => "token_missing",
            AuthFailure::TokenMismatch => "token_mismatch",
            AuthFailure::TokenMissingConfig => "token_missing_config",
            AuthFailure::PasswordMissing => "password_missing",
            AuthFailure::PasswordMismatch => "password_mismatch",
            AuthFailure::PasswordMissingConfig => "password_missing_config",
            AuthFailure::DeviceTokenMismatch | AuthFailure::DeviceTokenRejected => {
                "device_token_mismatch"
            }
            AuthFailure::ScopeMismatch => "scope_mismatch",
            AuthFailure::BootstrapTokenInvalid => "bootstrap_token_invalid",
            AuthFailure::Unauthorized => "unauthorized",
        }
    }

    /// `details.recommendedNextStep` when no device-token retry is offered.
    fn default_next_step(self) -> &'static str {
        match self {
            AuthFailure::TokenMissing
            | AuthFailure::TokenMissingConfig
            | AuthFailure::PasswordMissing
            | AuthFailure::PasswordMissingConfig => next_step::UPDATE_AUTH_CONFIGURATION,
            AuthFailure::TokenMismatch
            | AuthFailure::PasswordMismatch
            | AuthFailure::DeviceTokenMismatch
            | AuthFailure::DeviceTokenRejected => next_step::UPDATE_AUTH_CREDENTIALS,
            AuthFailure::ScopeMismatch
            | AuthFailure::BootstrapTokenInvalid
            | AuthFailure::Unauthorized => next_step::REVIEW_AUTH_CONFIGURATION,
        }
    }
}

/// Who is asking, for the wording of the hint in parentheses.
#[derive(Debug, Clone, Copy)]
pub struct Audience {
    pub kind: ClientKind,
    /// Whether the peer is a direct loopback connection.
    pub local: bool,
}

impl Audience {
    fn token_hint(self) -> &'static str {
        match self.kind {
            ClientKind::Cli if self.local => {
                "use this gateway's gateway.auth.token or pair the device"
            }
            ClientKind::Cli => "set gateway.remote.token to match gateway.auth.token",
            ClientKind::OperatorUi | ClientKind::Webchat => {
                "open the dashboard URL and paste the token in Control UI settings"
            }
            ClientKind::Other => "provide gateway auth token",
        }
    }

    fn missing_token_hint(self) -> &'static str {
        match self.kind {
            ClientKind::OperatorUi | ClientKind::Webchat => {
                "paste in Control UI settings or clawgate doctor --generate-gateway-token; restart"
            }
            _ => self.token_hint(),
        }
    }

    fn password_hint(self) -> &'static str {
        match self.kind {
            ClientKind::Cli if self.local => "use this gateway's gateway.auth.password",
            ClientKind::Cli => "set gateway.remote.password to match gateway.auth.password",
            ClientKind::OperatorUi | ClientKind::Webchat => {
                "enter the password in Control UI settings"
            }
            ClientKind::Other => "provide gateway auth password",
        }
    }
}

/// The human message of a credential failure, worded for `audience`.
pub fn auth_failure_message(failure: AuthFailure, audience: Audience) -> String {
    match failure {
        AuthFailure::TokenMissing => format!(
            "unauthorized: gateway token missing ({})",
            audience.missing_token_hint()
        ),
        AuthFailure::TokenMismatch => {
            format!("unauthorized: gateway token mismatch ({})", audience.token_hint())
        }
        AuthFailure::TokenMissingConfig => {
            "unauthorized: gateway token not configured on gateway (set gateway.auth.token)".into()
        }
        AuthFailure::PasswordMissing => format!(
            "unauthorized: gateway password missing ({})",
            audience.password_hint()
        ),
        AuthFailure::PasswordMismatch => format!(
            "unauthorized: gateway password mismatch ({})",
            audience.password_hint()
        ),
        AuthFailure::PasswordMissingConfig => {
            "unauthorized: gateway password not configured on gateway (set gateway.auth.password)"
                .into()
        }
        AuthFailure::DeviceTokenMismatch => {
            "unauthorized: device token mismatch (rotate/reissue device token)".into()
        }
        AuthFailure::DeviceTokenRejected => {
            "unauthorized: device token rejected (pair/repair this device, or provide gateway token)"
                .into()
        }
        AuthFailure::ScopeMismatch => {
            "unauthorized: device token scope mismatch (re-pair or approve scope upgrade)".into()
        }
        AuthFailure::BootstrapTokenInvalid => "unauthorized: setup code invalid, expired, revoked, or already used (create a new code; review `clawgate devices list`)".into(),
        AuthFailure::Unauthorized => "unauthorized".into(),
    }
}

/// A credential failure. `can_retry_with_device_token` must be true exactly
/// when the reason is a token mismatch, a device was presented, the
/// credential was a token (not a password) and no device token was sent.
pub fn auth_failure(
    failure: AuthFailure,
    audience: Audience,
    can_retry_with_device_token: bool,
) -> ErrorShape {
    let can_retry = can_retry_with_device_token && failure == AuthFailure::TokenMismatch;
    let step = if can_retry {
        next_step::RETRY_WITH_DEVICE_TOKEN
    } else {
        failure.default_next_step()
    };
    ErrorShape::invalid_request(auth_failure_message(failure, audience)).with_details(json!({
        "code": failure.code(),
        "authReason": failure.reason(),
        "canRetryWithDeviceToken": can_retry,
        "recommendedNextStep": step,
    }))
}

/// A trusted-proxy refusal (`gateway.auth.mode = "trusted-proxy"`):
/// `reason` is the reference's `trusted_proxy_*` reason (or clawgate's
/// `trusted_proxy_jwt_*` / `trusted_proxy_jwks_*` / `..._header_*` ones).
/// A missing required header is `AUTH_IDENTITY_HEADER_REQUIRED`, anything
/// else `AUTH_UNAUTHORIZED`, as in the reference; its message is
/// "unauthorized" unless clawgate has a more specific one.
pub fn trusted_proxy_failure(reason: &str, message: Option<&str>) -> ErrorShape {
    let code = if reason.starts_with("trusted_proxy_missing_header_") {
        "AUTH_IDENTITY_HEADER_REQUIRED"
    } else {
        "AUTH_UNAUTHORIZED"
    };
    ErrorShape::invalid_request(message.unwrap_or("unauthorized")).with_details(json!({
        "code": code,
        "authReason": reason,
        "canRetryWithDeviceToken": false,
        "recommendedNextStep": next_step::REVIEW_AUTH_CONFIGURATION,
    }))
}

/// The failed-auth lockout.
pub fn rate_limited(retry_after_ms: u64) -> ErrorShape {
    let mut e = ErrorShape::invalid_request(
        "unauthorized: too many failed authentication attempts (retry later)",
    )
    .with_details(json!({
        "code": "AUTH_RATE_LIMITED",
        "authReason": "rate_limited",
        "canRetryWithDeviceToken": false,
        "recommendedNextStep": next_step::WAIT_THEN_RETRY,
    }));
    e.retryable = Some(true);
    e.retry_after_ms = Some(retry_after_ms);
    e
}

/// A passkey registration or sign-in refused; `reason` is one of the
/// `passkey_*` reasons of docs/passkeys.md.
pub fn passkey_refused(reason: &str, message: &str) -> ErrorShape {
    ErrorShape::invalid_request(format!("passkey refused: {message}"))
        .with_details(json!({"code": "PASSKEY_REFUSED", "reason": reason}))
}

/// A connection named too many unknown pairing codes: the failed-auth
/// lockout's shape (`AUTH_RATE_LIMITED`, `retryAfterMs`), its own message.
pub fn pairing_code_rate_limited(retry_after_ms: u64) -> ErrorShape {
    let mut e = rate_limited(retry_after_ms);
    e.message = "too many unknown pairing codes on this connection (retry later)".into();
    e
}

/// No pending request has the pairing code `code` (shown form, or as typed).
pub fn pairing_code_unknown(code: &str) -> ErrorShape {
    ErrorShape::invalid_request(format!(
        "unknown pairing code {code}: no pending request has it (run clawgate devices list)"
    ))
    .with_details(json!({"code": "PAIRING_CODE_UNKNOWN", "pairingCode": code}))
}

/// The store could not answer (a write failed, the database is busy):
/// retryable after a second. One text for every place the gateway reports
/// it (connect, device and audit methods).
pub fn store_unavailable() -> ErrorShape {
    let mut e = ErrorShape::new(
        error_code::UNAVAILABLE,
        "gateway store unavailable; retry shortly",
    );
    e.retryable = Some(true);
    e.retry_after_ms = Some(1000);
    e
}

/// A replica on a shared PostgreSQL registry cannot reach it, or has not
/// caught up with its change log since it came back: device-token auth,
/// setup codes, pairing and device decisions wait (fail closed). `location`
/// is `host:port/db`, never a password.
pub fn registry_unreachable(location: &str) -> ErrorShape {
    let mut e = ErrorShape::new(
        error_code::UNAVAILABLE,
        format!(
            "device registry unreachable ({location}); this replica refuses device tokens and \
             pairing until it is back; retry shortly (another replica may answer)"
        ),
    );
    e.retryable = Some(true);
    e.retry_after_ms = Some(2000);
    e
}

/// A `connect` that arrived while the gateway shuts down or restarts.
pub fn gateway_restarting() -> ErrorShape {
    let mut e = ErrorShape::new(
        error_code::UNAVAILABLE,
        "connect unavailable during gateway restart",
    );
    e.retryable = Some(true);
    e.retry_after_ms = Some(1000);
    e
}

/// Fronting mode: the upstream OpenClaw gateway could not be reached (or
/// closed the relayed socket) for an authenticated client. `reason` says
/// what happened, without the upstream's address.
pub fn upstream_unavailable(reason: &str) -> ErrorShape {
    let mut e = ErrorShape::new(
        error_code::UNAVAILABLE,
        format!("upstream gateway unavailable: {reason}; retry shortly"),
    )
    .with_details(json!({"code": "UPSTREAM_UNAVAILABLE", "reason": reason}));
    e.retryable = Some(true);
    e.retry_after_ms = Some(2000);
    e
}

/// Fronting mode: the upstream does not accept clawgate's own identity
/// (never paired, removed, or its token rotated). `upstream_code` is the
/// upstream's detail code, when it gave one.
pub fn upstream_not_paired(upstream_code: Option<&str>) -> ErrorShape {
    let mut e = ErrorShape::new(
        error_code::UNAVAILABLE,
        "upstream gateway does not accept clawgate's identity (an operator runs `clawgate upstream pair` on the clawgate host)",
    )
    .with_details(json!({"code": "UPSTREAM_NOT_PAIRED", "upstreamCode": upstream_code}));
    e.retryable = Some(false);
    e
}

/// Fronting mode: a method clawgate does not relay, and why.
pub fn fronted_method_blocked(method: &str, why: &str) -> ErrorShape {
    ErrorShape::new(
        error_code::FORBIDDEN,
        format!("{method} is not relayed by clawgate: {why}"),
    )
    .with_details(json!({"code": "FRONTED_METHOD_BLOCKED", "method": method}))
}

/// Fronting mode: a node connect (nodes are not relayed yet).
pub fn node_not_fronted() -> ErrorShape {
    ErrorShape::invalid_request(
        "nodes are not relayed by clawgate yet: connect the node to the OpenClaw gateway directly",
    )
    .with_details(json!({"code": "NODE_NOT_FRONTED"}))
}

/// A device-less connection that may not be device-less.
pub fn device_identity_required() -> ErrorShape {
    ErrorShape::new(error_code::NOT_PAIRED, "device identity required")
        .with_details(json!({"code": "DEVICE_IDENTITY_REQUIRED"}))
}

/// The Control UI without a device identity.
pub fn control_ui_device_identity_required() -> ErrorShape {
    ErrorShape::invalid_request(
        "control ui requires device identity (use HTTPS or localhost secure context)",
    )
    .with_details(json!({"code": "CONTROL_UI_DEVICE_IDENTITY_REQUIRED"}))
}

/// Why an `Origin` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginRefusal {
    NotAllowed,
    MissingOrInvalid,
}

/// An `Origin` the gateway does not accept.
pub fn origin_not_allowed(why: OriginRefusal) -> ErrorShape {
    let reason = match why {
        OriginRefusal::NotAllowed => "origin not allowed",
        OriginRefusal::MissingOrInvalid => "origin missing or invalid",
    };
    ErrorShape::invalid_request("origin not allowed (open the Control UI from the gateway host or allow it in gateway.controlUi.allowedOrigins)")
        .with_details(json!({"code": "CONTROL_UI_ORIGIN_NOT_ALLOWED", "reason": reason}))
}

/// No shared protocol version.
pub fn protocol_mismatch(details: Value) -> ErrorShape {
    ErrorShape::invalid_request("protocol mismatch").with_details(details)
}

/// A method the socket's scopes do not allow.
pub fn missing_scope(scope: &str) -> ErrorShape {
    ErrorShape::new(error_code::FORBIDDEN, format!("missing scope: {scope}")).with_details(
        json!({"code": "MISSING_SCOPE", "missingScope": scope, "requiredScopes": [scope]}),
    )
}

/// Device-proof failures, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceAuthFailure {
    DeviceIdMismatch,
    SignatureExpired,
    NonceRequired,
    NonceMismatch,
    SignatureInvalid,
    PublicKeyInvalid,
}

impl DeviceAuthFailure {
    fn parts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            DeviceAuthFailure::DeviceIdMismatch => (
                "device identity mismatch",
                "DEVICE_AUTH_DEVICE_ID_MISMATCH",
                "device-id-mismatch",
            ),
            DeviceAuthFailure::SignatureExpired => (
                "device signature expired",
                "DEVICE_AUTH_SIGNATURE_EXPIRED",
                "device-signature-stale",
            ),
            DeviceAuthFailure::NonceRequired => (
                "device nonce required",
                "DEVICE_AUTH_NONCE_REQUIRED",
                "device-nonce-missing",
            ),
            DeviceAuthFailure::NonceMismatch => (
                "device nonce mismatch",
                "DEVICE_AUTH_NONCE_MISMATCH",
                "device-nonce-mismatch",
            ),
            DeviceAuthFailure::SignatureInvalid => (
                "device signature invalid",
                "DEVICE_AUTH_SIGNATURE_INVALID",
                "device-signature",
            ),
            DeviceAuthFailure::PublicKeyInvalid => (
                "device public key invalid",
                "DEVICE_AUTH_PUBLIC_KEY_INVALID",
                "device-public-key",
            ),
        }
    }

    pub fn code(self) -> &'static str {
        self.parts().1
    }
}

/// A device-proof failure.
pub fn device_auth_failure(failure: DeviceAuthFailure) -> ErrorShape {
    let (message, code, reason) = failure.parts();
    ErrorShape::invalid_request(message).with_details(json!({"code": code, "reason": reason}))
}

/// Fills the placeholders of an entry's `next` text from an error's details.
pub fn next_command(entry: &Entry, details: Option<&Value>) -> String {
    let get = |key: &str| {
        details
            .and_then(|d| d.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut text = entry.next.to_string();
    // clawgate's short code, when the gateway gave one, is what a person types.
    if let Some(code) = get("pairingCode") {
        text = text.replace(
            "clawgate devices approve <requestId>",
            &format!("clawgate devices approve {code}"),
        );
    }
    if let Some(id) = get("requestId") {
        text = text.replace("<requestId>", &id);
    }
    if let Some(id) = get("deviceId") {
        text = text.replace("<deviceId>", &id);
    }
    if let Some(scope) = get("missingScope") {
        text = text.replace("<scope>", &scope);
    }
    text
}

/// A plain explanation of an error for people: code, meaning, next step.
pub fn explain(error: &ErrorShape) -> Option<Map<String, Value>> {
    let entry = entry(error.detail_code()?)?;
    let mut m = Map::new();
    m.insert("code".into(), entry.code.into());
    m.insert("meaning".into(), entry.meaning.into());
    m.insert(
        "next".into(),
        next_command(entry, error.details.as_deref()).into(),
    );
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLI_LOCAL: Audience = Audience {
        kind: ClientKind::Cli,
        local: true,
    };

    #[test]
    fn unavailable_errors_are_retryable_after_a_second() {
        assert_eq!(
            serde_json::to_value(store_unavailable()).unwrap(),
            json!({"code": "UNAVAILABLE", "message": "gateway store unavailable; retry shortly",
                   "retryable": true, "retryAfterMs": 1000})
        );
        assert_eq!(
            serde_json::to_value(gateway_restarting()).unwrap(),
            json!({"code": "UNAVAILABLE", "message": "connect unavailable during gateway restart",
                   "retryable": true, "retryAfterMs": 1000})
        );
    }

    #[test]
    fn every_emitted_code_is_in_the_catalogue() {
        let failures = [
            AuthFailure::TokenMissing,
            AuthFailure::TokenMismatch,
            AuthFailure::TokenMissingConfig,
            AuthFailure::PasswordMissing,
            AuthFailure::PasswordMismatch,
            AuthFailure::PasswordMissingConfig,
            AuthFailure::DeviceTokenMismatch,
            AuthFailure::DeviceTokenRejected,
            AuthFailure::ScopeMismatch,
            AuthFailure::BootstrapTokenInvalid,
            AuthFailure::Unauthorized,
        ];
        for f in failures {
            assert!(entry(f.code()).is_some(), "{} missing", f.code());
        }
        for e in CATALOGUE {
            assert!(
                !e.meaning.is_empty() && !e.cause.is_empty() && !e.next.is_empty(),
                "{}",
                e.code
            );
            assert!(e.meaning.ends_with('.'), "{}: one sentence", e.code);
            assert!(
                !e.next.contains("openclaw "),
                "{}: names the clawgate command",
                e.code
            );
        }
        for d in [
            DeviceAuthFailure::DeviceIdMismatch,
            DeviceAuthFailure::SignatureExpired,
            DeviceAuthFailure::NonceRequired,
            DeviceAuthFailure::NonceMismatch,
            DeviceAuthFailure::SignatureInvalid,
            DeviceAuthFailure::PublicKeyInvalid,
        ] {
            assert!(entry(d.code()).is_some());
        }
        let mut codes: Vec<_> = CATALOGUE.iter().map(|e| e.code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), CATALOGUE.len(), "duplicate catalogue code");
    }

    #[test]
    fn retry_hint_only_for_token_mismatch() {
        let e = auth_failure(AuthFailure::TokenMismatch, CLI_LOCAL, true);
        assert_eq!(
            e.details.as_ref().unwrap()["recommendedNextStep"],
            "retry_with_device_token"
        );
        let e = auth_failure(AuthFailure::PasswordMismatch, CLI_LOCAL, true);
        assert_eq!(
            e.details.as_ref().unwrap()["canRetryWithDeviceToken"],
            false
        );
    }

    /// The `clawgate` commands and flags a `next` text may name.
    const COMMANDS: &[(&str, &[&str])] = &[
        (
            "gateway run",
            &[
                "--port",
                "--bind",
                "--host",
                "--auth",
                "--token",
                "--token-file",
                "--password",
                "--password-file",
            ],
        ),
        ("gateway auth-token", &["--show"]),
        ("gateway call", &["--params"]),
        ("gateway probe", &[]),
        ("gateway health", &[]),
        ("gateway status", &[]),
        ("devices list", &[]),
        ("devices approve", &["--latest"]),
        ("devices reject", &[]),
        ("devices remove", &[]),
        ("devices rename", &["--device", "--name"]),
        (
            "devices rotate",
            &["--device", "--role", "--scope", "--no-scopes"],
        ),
        ("devices revoke", &["--device", "--role"]),
        ("devices clear", &["--yes", "--pending"]),
        (
            "devices setup-code",
            &[
                "--role",
                "--scopes",
                "--ttl",
                "--name",
                "--public-url",
                "--no-qr",
            ],
        ),
        ("pair", &["--setup-code", "--role"]),
        ("dashboard", &["--no-open", "--json", "--show-token"]),
        ("explain", &[]),
        ("doctor", &["--json", "--generate-gateway-token"]),
        ("config path", &[]),
        ("config get", &[]),
        ("config set", &[]),
        ("config unset", &[]),
        ("health", &[]),
        ("status", &[]),
        ("passkeys list", &[]),
        ("passkeys remove", &[]),
        ("upstream pair", &["--wait"]),
        ("upstream status", &[]),
    ];
    const NETWORK_FLAGS: &[&str] = &[
        "--url",
        "--token",
        "--password",
        "--timeout",
        "--json",
        "--tls-fingerprint",
    ];

    #[test]
    fn every_next_names_a_real_clawgate_command() {
        for e in CATALOGUE {
            let mut named = 0;
            for (at, _) in e.next.match_indices("clawgate ") {
                let rest = &e.next[at + "clawgate ".len()..];
                let (cmd, flags) = COMMANDS
                    .iter()
                    .find(|(c, _)| {
                        rest.starts_with(c)
                            && rest[c.len()..]
                                .chars()
                                .next()
                                .is_none_or(|ch| !ch.is_alphanumeric() && ch != '-')
                    })
                    .unwrap_or_else(|| {
                        panic!("{}: `clawgate {rest}` is not a clawgate command", e.code)
                    });
                // The command's own words, up to the end of the sentence.
                let args = rest[cmd.len()..]
                    .split([';', ',', '(', ')'])
                    .next()
                    .unwrap_or("");
                for word in args.split_whitespace().filter(|w| w.starts_with("--")) {
                    assert!(
                        flags.contains(&word) || NETWORK_FLAGS.contains(&word),
                        "{}: `clawgate {cmd}` has no flag {word}",
                        e.code
                    );
                }
                named += 1;
            }
            assert!(named > 0, "{}: next names no clawgate command", e.code);
            assert!(
                !e.next.contains("config get gateway.auth.token"),
                "{}: print the token with clawgate gateway auth-token --show",
                e.code
            );
        }
    }

    #[test]
    fn next_command_fills_placeholders() {
        let e = entry("PAIRING_REQUIRED").unwrap();
        let d = json!({"requestId": "abc"});
        assert_eq!(
            next_command(e, Some(&d)),
            "On the gateway host run: clawgate devices approve abc"
        );
    }
}
