// Generated from crates/protocol (catalogue::PAUSE_RECONNECT, scopes::scope_grants,
// scopes::method_access); do not edit. Regenerate with:
// UPDATE_CATALOGUE=1 cargo test -p clawgate-gateway --test control_ui

/** Codes on which a client stops reconnecting (see pausesReconnect in gateway.js). */
export const PAUSE_RECONNECT = [
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
  "CLIENT_VERSION_MISMATCH"
];

/** For each operator scope, the other scopes it grants. */
export const SCOPE_GRANTS = {
  "operator.admin": [
    "operator.read",
    "operator.write",
    "operator.sessions.read",
    "operator.sessions.write",
    "operator.approvals",
    "operator.questions",
    "operator.pairing",
    "operator.talk",
    "operator.talk.secrets"
  ],
  "operator.read": [
    "operator.sessions.read"
  ],
  "operator.write": [
    "operator.read",
    "operator.sessions.read",
    "operator.sessions.write",
    "operator.talk"
  ],
  "operator.sessions.read": [],
  "operator.sessions.write": [
    "operator.sessions.read"
  ],
  "operator.approvals": [],
  "operator.questions": [],
  "operator.pairing": [],
  "operator.talk": [],
  "operator.talk.secrets": []
};

/** The scope each method needs; null: any authenticated socket. */
export const METHOD_SCOPES = {
  "health": null,
  "status": "operator.read",
  "last-heartbeat": "operator.read",
  "system-presence": "operator.read",
  "device.pair.list": "operator.pairing",
  "device.pair.approve": "operator.pairing",
  "device.pair.reject": "operator.pairing",
  "device.pair.remove": "operator.pairing",
  "device.pair.rename": "operator.pairing",
  "device.token.rotate": "operator.pairing",
  "device.token.revoke": "operator.pairing",
  "device.setup.create": "operator.admin",
  "device.setup.list": "operator.admin",
  "device.setup.revoke": "operator.admin",
  "passkey.register.begin": "operator.pairing",
  "passkey.register.finish": "operator.pairing",
  "passkey.list": "operator.pairing",
  "passkey.remove": "operator.pairing",
  "audit.list": "operator.admin"
};
