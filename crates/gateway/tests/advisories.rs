//! Advisory regressions (issue 8, item 7): one test per class of the 2026
//! OpenClaw gateway-auth advisories (the published GHSA/CVE entries for
//! its gateway auth; SECURITY.md lists them) that applies to clawgate, against a real gateway on a loopback
//! port with a real SQLite store. Each test is named after the class and
//! quotes the advisory's description.
//!
//! The dashboard class (PR #50615) and the reload class through the real
//! binary (SIGHUP and a config file edit) are in
//! `crates/cli/tests/advisories_cli.rs`; CVE-2026-25253 (the Control UI's
//! `gatewayUrl`) in `ui/tests/`; setup and bootstrap codes
//! (GHSA-7h7g-x2px-94hj, the bootstrap replay, CVE-2026-41386) in
//! `setup_codes.rs`. Not applicable, because clawgate has no such surface:
//! `/tools/invoke` (GHSA-943q-mwmv-hhvh), relay headers on CDP probes
//! (CVE-2026-22174).

mod common;

use clawgate_gateway::config::{AuthConfig, AuthMode, GatewayConfig};
use clawgate_protocol::Secret;
use common::*;
use serde_json::{Value, json};

fn device_params(auth: Value, scopes: &[&str]) -> Value {
    params("cli", "cli", auth, scopes)
}

async fn manual_gateway() -> TestGateway {
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.auto_approve_local = false;
    TestGateway::start_with(cfg, fast_options(), dir).await
}

/// `device` asks with the shared token; returns the pending request id.
async fn request_pairing(gw: &TestGateway, device: &TestDevice, scopes: &[&str]) -> String {
    let mut c = gw.client().await;
    let res = c
        .connect_device(device, device_params(json!({"token": TOKEN}), scopes))
        .await;
    res["error"]["details"]["requestId"]
        .as_str()
        .unwrap_or_else(|| panic!("no pairing request: {res}"))
        .to_string()
}

/// Approves `device` for `scopes` as `admin`, then connects it: the
/// session and its device token.
async fn approved(
    gw: &TestGateway,
    admin: &mut Client,
    device: &TestDevice,
    scopes: &[&str],
) -> (Client, String) {
    let id = request_pairing(gw, device, scopes).await;
    let res = admin
        .request("a", "device.pair.approve", Some(json!({"requestId": id})))
        .await;
    assert_eq!(res["ok"], true, "{res}");
    let mut c = gw.client().await;
    let res = c
        .connect_device(device, device_params(json!({"token": TOKEN}), scopes))
        .await;
    assert_eq!(res["ok"], true, "{res}");
    let token = res["payload"]["auth"]["deviceToken"]
        .as_str()
        .unwrap()
        .to_string();
    (c, token)
}

/// A connect with `auth` for `device`: the response.
async fn connect_as(gw: &TestGateway, device: &TestDevice, auth: Value, scopes: &[&str]) -> Value {
    let mut c = gw.client().await;
    c.connect_device(device, device_params(auth, scopes)).await
}

fn code(res: &Value) -> &str {
    res["error"]["details"]["code"].as_str().unwrap_or("")
}

/// The paired record of `device_id` from `device.pair.list`.
async fn paired_record(admin: &mut Client, device_id: &str) -> Value {
    let list = admin.request("l", "device.pair.list", None).await;
    list["payload"]["paired"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deviceId"] == device_id)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn rotate(c: &mut Client, device_id: &str, role: &str, scopes: Option<&[&str]>) -> Value {
    let mut p = json!({"deviceId": device_id, "role": role});
    if let Some(s) = scopes {
        p["scopes"] = json!(s);
    }
    c.request("rot", "device.token.rotate", Some(p)).await
}

/// GHSA-4jpw-hj22-2xmc (critical, fixed in OpenClaw 2026.3.11): "A caller
/// holding only `operator.pairing` could use `device.token.rotate` to mint
/// an `operator.admin` token for another device (no caller-scope
/// subsetting)."
#[tokio::test]
async fn pairing_scoped_caller_minting_admin_tokens() {
    let gw = manual_gateway().await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let mut pairer = operator(&gw, &["operator.pairing"]).await;

    // A device legitimately approved for admin by an admin.
    let target = TestDevice::new();
    let (_t, target_token) = approved(&gw, &mut admin, &target, &["operator.admin"]).await;

    // The pairing-only caller cannot mint admin for it, whether it asks
    // explicitly or takes the default (the current token's scopes).
    for scopes in [
        None,
        Some(&["operator.admin"][..]),
        Some(&["operator.admin", "operator.pairing"][..]),
        Some(&["operator.write"][..]),
        Some(&["operator.read"][..]),
    ] {
        let res = rotate(&mut pairer, &target.id, "operator", scopes).await;
        assert_eq!(
            res["error"]["message"], "device token rotation denied",
            "{scopes:?}: {res}"
        );
    }
    // Nor for a non-operator role.
    let res = rotate(&mut pairer, &target.id, "node", None).await;
    assert_eq!(res["error"]["message"], "device token rotation denied");
    // The refusals changed nothing: the token still works, still admin.
    let res = connect_as(
        &gw,
        &target,
        json!({"deviceToken": target_token}),
        &["operator.admin"],
    )
    .await;
    assert_eq!(res["payload"]["auth"]["method"], "device-token", "{res}");

    // Nor approve a request for admin.
    let other = TestDevice::new();
    let id = request_pairing(&gw, &other, &["operator.admin"]).await;
    let res = pairer
        .request("a", "device.pair.approve", Some(json!({"requestId": id})))
        .await;
    assert_eq!(res["error"]["message"], "missing scope: operator.admin");
    let res = connect_as(&gw, &other, json!({"token": TOKEN}), &["operator.admin"]).await;
    assert_eq!(code(&res), "PAIRING_REQUIRED");

    // A pairing-scoped *device* session cannot either: not its own token
    // into admin, not another device's token at all.
    let own = TestDevice::new();
    let (_o, own_token) = approved(&gw, &mut admin, &own, &["operator.pairing"]).await;
    let mut session = gw.client().await;
    let res = session
        .connect_device(
            &own,
            device_params(json!({"deviceToken": own_token}), &["operator.pairing"]),
        )
        .await;
    assert_eq!(res["payload"]["auth"]["method"], "device-token", "{res}");
    for (id, scopes) in [
        (own.id.as_str(), Some(&["operator.admin"][..])),
        (target.id.as_str(), Some(&["operator.pairing"][..])),
    ] {
        let res = rotate(&mut session, id, "operator", scopes).await;
        assert_eq!(
            res["error"]["message"], "device token rotation denied",
            "{res}"
        );
    }

    // What the pairing scope may do: rotate within what it holds.
    let res = rotate(
        &mut pairer,
        &target.id,
        "operator",
        Some(&["operator.pairing"]),
    )
    .await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["scopes"], json!(["operator.pairing"]));
    // The audit log shows that one rotation and no admin mint.
    let audit = admin
        .request(
            "au",
            "audit.list",
            Some(json!({"action": "token.rotated", "limit": 100})),
        )
        .await;
    let rows = audit["payload"]["entries"].as_array().cloned().unwrap();
    let text = Value::Array(rows.clone()).to_string();
    assert!(!rows.is_empty(), "{audit}");
    assert!(!text.contains("operator.admin"), "{text}");
    gw.stop().await;
}

/// GHSA-rqpp-rjj8-7wv8 (critical, fixed in OpenClaw 2026.3.12):
/// "Device-less shared-token/password connections kept self-declared
/// scopes such as `operator.admin`."
#[tokio::test]
async fn device_less_sessions_keeping_declared_scopes() {
    let declared = ["operator.admin", "operator.pairing", "operator.read"];
    for mode in [AuthMode::Token, AuthMode::Password] {
        let (mut cfg, dir) = config(mode);
        cfg.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        let gw = TestGateway::start_with(cfg, fast_options(), dir).await;
        let secret = if mode == AuthMode::Token {
            json!({"token": TOKEN})
        } else {
            json!({"password": PASSWORD})
        };
        // (client id, mode, via a proxy)
        let cases = [
            ("test", "test", false),
            ("openclaw-probe", "probe", false),
            ("webchat", "webchat", false),
            ("openclaw-macos", "ui", false),
            ("openclaw-tui", "ui", false),
            ("cli", "cli", true),
            ("gateway-client", "backend", true),
        ];
        for (id, client_mode, remote) in cases {
            let headers: Vec<(&str, &str)> = if remote {
                vec![("x-forwarded-for", "198.51.100.7")]
            } else {
                vec![]
            };
            let mut c = gw.client_with(&headers).await;
            let res = c
                .connect_with(params(id, client_mode, secret.clone(), &declared))
                .await;
            let what = format!("{mode:?} {id}/{client_mode} remote={remote}");
            assert_eq!(res["ok"], true, "{what}: {res}");
            assert_eq!(res["payload"]["auth"]["scopes"], json!([]), "{what}");
            assert!(
                res["payload"]["snapshot"].get("authMode").is_none(),
                "{what}: admin-only snapshot fields"
            );
            for (method, scope) in [
                ("device.pair.list", "operator.pairing"),
                ("audit.list", "operator.admin"),
                ("status", "operator.read"),
                ("config.apply", "operator.admin"),
            ] {
                let res = c.request("m", method, Some(json!({}))).await;
                assert_eq!(code(&res), "MISSING_SCOPE", "{what} {method}: {res}");
                assert_eq!(res["error"]["details"]["missingScope"], scope, "{what}");
            }
        }
        // Browser UIs get no device-less session at all.
        for (id, client_mode) in [
            ("openclaw-control-ui", "webchat"),
            ("openclaw-browser-copilot", "ui"),
        ] {
            let mut c = gw.client().await;
            let res = c
                .connect_with(params(id, client_mode, secret.clone(), &declared))
                .await;
            assert_eq!(code(&res), "CONTROL_UI_DEVICE_IDENTITY_REQUIRED", "{id}");
        }
        // The one exception (as in the reference): the operator's own CLI
        // or backend on the gateway host, direct loopback, with the secret.
        for (id, client_mode) in [("cli", "cli"), ("gateway-client", "backend")] {
            let mut c = gw.client().await;
            let res = c
                .connect_with(params(id, client_mode, secret.clone(), &declared))
                .await;
            assert_eq!(res["payload"]["auth"]["scopes"], json!(declared), "{id}");
        }
        gw.stop().await;
    }
    // auth none (loopback only): nothing to prove, so nothing kept either.
    let gw = TestGateway::start(AuthMode::None).await;
    let mut c = gw.client().await;
    let res = c
        .connect_with(params("test", "test", json!({}), &declared))
        .await;
    assert_eq!(res["payload"]["auth"]["scopes"], json!([]));
    gw.stop().await;
}

/// GHSA-whf9-3hcx-gq54 (fixed in OpenClaw 2026.4.8): "Token rotation could
/// mint or keep roles/scopes that never passed approval."
#[tokio::test]
async fn rotation_minting_unapproved_roles() {
    let gw = manual_gateway().await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let d = TestDevice::new();
    let (_s, token) = approved(&gw, &mut admin, &d, &["operator.read"]).await;

    // A role it was never approved for, even by an admin.
    let res = rotate(&mut admin, &d.id, "node", None).await;
    assert_eq!(res["error"]["message"], "device token rotation denied");
    // Scopes outside the approved baseline, even by an admin.
    for scopes in [
        &["operator.admin"][..],
        &["operator.write"],
        &["operator.read", "operator.pairing"],
        &["node.invoke"],
    ] {
        let res = rotate(&mut admin, &d.id, "operator", Some(scopes)).await;
        assert_eq!(
            res["error"]["message"], "device token rotation denied",
            "{scopes:?}"
        );
    }
    // A pending (not yet approved) upgrade does not widen the baseline.
    let mut c = gw.client().await;
    let res = c
        .connect_device(
            &d,
            device_params(
                json!({"token": TOKEN}),
                &["operator.read", "operator.admin"],
            ),
        )
        .await;
    assert_eq!(code(&res), "PAIRING_REQUIRED", "{res}");
    let res = rotate(&mut admin, &d.id, "operator", Some(&["operator.admin"])).await;
    assert_eq!(res["error"]["message"], "device token rotation denied");
    // A node-role request that is pending does not make "node" rotatable.
    let mut c = gw.client().await;
    let mut p = params("node-host", "node", json!({"token": TOKEN}), &[]);
    p["role"] = json!("node");
    let res = c.connect_device(&d, p).await;
    assert_eq!(code(&res), "PAIRING_REQUIRED", "{res}");
    let res = rotate(&mut admin, &d.id, "node", None).await;
    assert_eq!(res["error"]["message"], "device token rotation denied");

    // The record holds only what was approved; the old token still works.
    let rec = paired_record(&mut admin, &d.id).await;
    assert_eq!(rec["roles"], json!(["operator"]), "{rec}");
    assert_eq!(rec["scopes"], json!(["operator.read"]), "{rec}");
    let tokens = rec["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1, "{rec}");
    assert_eq!(tokens[0]["scopes"], json!(["operator.read"]));
    let res = connect_as(&gw, &d, json!({"deviceToken": token}), &["operator.read"]).await;
    assert_eq!(res["payload"]["auth"]["method"], "device-token", "{res}");
    // No token for an unapproved role or scope authenticates.
    for (role, scopes) in [("operator", &["operator.admin"][..]), ("node", &[])] {
        let mut c = gw.client().await;
        let mut p = params("cli", "cli", json!({"deviceToken": token}), scopes);
        p["role"] = json!(role);
        let res = c.connect_device(&d, p).await;
        assert_ne!(res["ok"], true, "{role} {scopes:?}: {res}");
    }

    // A revoked role comes back only through someone who could approve it:
    // a pairing-only caller cannot re-issue a read token it does not hold.
    let res = admin
        .request(
            "rv",
            "device.token.revoke",
            Some(json!({"deviceId": d.id, "role": "operator"})),
        )
        .await;
    assert_eq!(res["ok"], true, "{res}");
    let mut pairer = operator(&gw, &["operator.pairing"]).await;
    let res = rotate(&mut pairer, &d.id, "operator", None).await;
    assert_eq!(res["error"]["message"], "device token rotation denied");
    let res = rotate(&mut admin, &d.id, "operator", Some(&["operator.write"])).await;
    assert_eq!(res["error"]["message"], "device token rotation denied");
    gw.stop().await;
}

/// A gateway on `dir` (kept by the caller, so it can be restarted on the
/// same store) with `auth`.
async fn gateway_on(dir: &std::path::Path, auth: AuthConfig) -> TestGateway {
    let mut cfg = GatewayConfig::loopback(dir, auth);
    cfg.port = 0;
    TestGateway::start_with(cfg, fast_options(), tempfile::tempdir().unwrap()).await
}

fn token_auth(token: &str) -> AuthConfig {
    AuthConfig::new(AuthMode::Token, Some(Secret::new(token)), None)
}

/// GHSA-68x5-xx89-w9mm (fixed in OpenClaw 2026.4.8): "Auth closure not
/// refreshed on config reload → revoked credentials still accepted until
/// restart."
#[tokio::test]
async fn revoked_credentials_accepted_after_a_config_reload() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_on(dir.path(), token_auth(TOKEN)).await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    // Two devices paired silently (loopback); one revoked, one removed.
    let revoked = TestDevice::new();
    let removed = TestDevice::new();
    let kept = TestDevice::new();
    let mut tokens = Vec::new();
    for d in [&revoked, &removed, &kept] {
        let res = connect_as(&gw, d, json!({"token": TOKEN}), &["operator.read"]).await;
        tokens.push(
            res["payload"]["auth"]["deviceToken"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let res = admin
        .request(
            "rv",
            "device.token.revoke",
            Some(json!({"deviceId": revoked.id, "role": "operator"})),
        )
        .await;
    assert_eq!(res["ok"], true, "{res}");
    let res = admin
        .request(
            "rm",
            "device.pair.remove",
            Some(json!({"deviceId": removed.id})),
        )
        .await;
    assert_eq!(res["ok"], true, "{res}");
    let dead = [(&revoked, tokens[0].clone()), (&removed, tokens[1].clone())];
    let check_dead = |gw: &TestGateway| {
        let dead = dead.clone();
        let addr = gw.url();
        async move {
            for (d, t) in dead {
                let mut c = Client::connect(&addr, &[]).await.unwrap();
                let res = c
                    .connect_device(
                        d,
                        device_params(json!({"deviceToken": t}), &["operator.read"]),
                    )
                    .await;
                assert_eq!(code(&res), "AUTH_DEVICE_TOKEN_MISMATCH", "{res}");
            }
        }
    };
    check_dead(&gw).await;

    // A reload that changes nothing, then one that changes the secret.
    assert_eq!(
        gw.state.apply_auth_config(token_auth(TOKEN), "SIGHUP"),
        None
    );
    check_dead(&gw).await;
    let mut shared_session = operator(&gw, &["operator.read"]).await;
    let mut device_session = gw.client().await;
    let res = device_session
        .connect_device(
            &kept,
            device_params(json!({"deviceToken": tokens[2]}), &["operator.read"]),
        )
        .await;
    assert_eq!(res["ok"], true, "{res}");
    let new_token = "advisory-new-token-6b1f";
    let closed = gw
        .state
        .apply_auth_config(token_auth(new_token), "config file change");
    assert!(closed.is_some_and(|n| n >= 2), "{closed:?}");
    assert_eq!(
        shared_session.closed().await,
        Closed {
            code: 4001,
            reason: "gateway auth changed".into()
        }
    );
    check_dead(&gw).await;
    // The old shared secret is refused at once, the new one works, and the
    // kept device's token is unaffected.
    let mut c = gw.client().await;
    let res = c.connect_with(cli_params(TOKEN, &[])).await;
    assert_eq!(code(&res), "AUTH_TOKEN_MISMATCH", "{res}");
    let mut c = gw.client().await;
    assert_eq!(c.connect_with(cli_params(new_token, &[])).await["ok"], true);
    let res = device_session.request("h", "health", Some(json!({}))).await;
    assert_eq!(res["ok"], true, "a device-token session was closed: {res}");
    // Neither a reload nor a restart brings the dead tokens back.
    gw.stop().await;
    let gw = gateway_on(dir.path(), token_auth(new_token)).await;
    check_dead(&gw).await;
    let mut c = gw.client().await;
    let res = c.connect_with(cli_params(TOKEN, &[])).await;
    assert_eq!(code(&res), "AUTH_TOKEN_MISMATCH");
    let res = connect_as(
        &gw,
        &kept,
        json!({"deviceToken": tokens[2]}),
        &["operator.read"],
    )
    .await;
    assert_eq!(res["payload"]["auth"]["method"], "device-token", "{res}");
    gw.stop().await;
}

/// GHSA-m8wm-r5vq-qjpg: "Bearer resolved from SecretRef only at startup →
/// rotated secrets not honored by HTTP/WS upgrade handlers."
#[tokio::test]
async fn rotated_secrets_not_honoured_by_the_upgrade_path() {
    let gw = TestGateway::start(AuthMode::Token).await;
    // Token -> another token -> password mode: every next upgrade sees the
    // secret in force, none sees the one before.
    let steps = [
        (
            token_auth("rotated-token-1"),
            json!({"token": "rotated-token-1"}),
            json!({"token": TOKEN}),
        ),
        (
            AuthConfig::new(AuthMode::Password, None, Some(Secret::new("rotated pw 2"))),
            json!({"password": "rotated pw 2"}),
            json!({"token": "rotated-token-1"}),
        ),
    ];
    for (auth, good, stale) in steps {
        assert!(gw.state.apply_auth_config(auth, "SIGHUP").is_some());
        let mut c = gw.client().await;
        let res = c
            .connect_with(params("cli", "cli", stale.clone(), &[]))
            .await;
        assert!(
            code(&res).ends_with("_MISMATCH"),
            "stale {stale} accepted: {res}"
        );
        let mut c = gw.client().await;
        let res = c
            .connect_with(params("cli", "cli", good.clone(), &[]))
            .await;
        assert_eq!(res["ok"], true, "{good}: {res}");
    }
    gw.stop().await;
}

/// PR #1795 (merged): "Behind an unconfigured reverse proxy every request
/// looked local → auth/pairing bypass." (The class: loopback trust
/// derived from proxy headers.)
#[tokio::test]
async fn loopback_trust_through_proxy_headers() {
    // Unconfigured: a proxy on loopback forwarding a remote client is
    // refused outright, never mistaken for the local operator.
    let gw = TestGateway::start(AuthMode::Token).await;
    for (name, value) in [
        ("x-forwarded-for", "203.0.113.50"),
        ("x-real-ip", "203.0.113.50"),
        ("forwarded", "for=203.0.113.50"),
        ("x-forwarded-host", "localhost"),
    ] {
        match Client::connect(&gw.url(), &[(name, value)]).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status(), 403, "{name}")
            }
            Ok(_) => panic!("{name} from an unconfigured proxy was accepted"),
            Err(e) => panic!("{name}: {e}"),
        }
    }
    gw.stop().await;

    // Configured: forwarded clients are remote, whatever address the
    // header names (a loopback address included).
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let gw = TestGateway::start_with(cfg, fast_options(), dir).await;
    let mut admin = operator(&gw, &["operator.admin"]).await;
    for client in ["203.0.113.50", "127.0.0.1", "::1"] {
        let via = [("x-forwarded-for", client)];
        // No silent pairing.
        let d = TestDevice::new();
        let mut c = gw.client_with(&via).await;
        let res = c
            .connect_device(
                &d,
                device_params(json!({"token": TOKEN}), &["operator.admin"]),
            )
            .await;
        assert_eq!(code(&res), "PAIRING_REQUIRED", "{client}: {res}");
        // No kept device-less scopes; the remote wording of hints.
        let mut c = gw.client_with(&via).await;
        let res = c.connect_with(cli_params(TOKEN, &["operator.admin"])).await;
        assert_eq!(res["payload"]["auth"]["scopes"], json!([]), "{client}");
        let mut c = gw.client_with(&via).await;
        let res = c.connect_with(cli_params("wrong", &[])).await;
        assert!(
            res["error"]["message"]
                .as_str()
                .unwrap()
                .contains("gateway.remote.token"),
            "{client}: {res}"
        );
    }
    // The pending requests name the forwarded client, not loopback.
    let list = admin.request("l", "device.pair.list", None).await;
    let pending = list["payload"]["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 3, "{list}");
    // No loopback exemption from lockouts for a forwarded 127.0.0.1 (a
    // direct loopback peer would only be delayed): one failure from the
    // loop above, nine more lock it out.
    let via = [("x-forwarded-for", "127.0.0.1")];
    for _ in 0..9 {
        let mut c = gw.client_with(&via).await;
        let res = c.connect_with(cli_params("wrong", &[])).await;
        assert_eq!(code(&res), "AUTH_TOKEN_MISMATCH");
    }
    let mut c = gw.client_with(&via).await;
    let res = c.connect_with(cli_params(TOKEN, &[])).await;
    assert_eq!(code(&res), "AUTH_RATE_LIMITED", "{res}");
    // The same claim as an IPv4-mapped IPv6 address is the same locked
    // address, not an exempt one.
    let via = [("x-forwarded-for", "::ffff:127.0.0.1")];
    let mut c = gw.client_with(&via).await;
    let res = c.connect_with(cli_params(TOKEN, &[])).await;
    assert_eq!(code(&res), "AUTH_RATE_LIMITED", "{res}");
    gw.stop().await;
}

/// CVE-2026-25593 / GHSA-g55j-c2v4-pjcg (fixed in OpenClaw 2026.1.20):
/// "Unauthenticated local client could call `config.apply` over the WS API
/// and set an executable path → RCE." clawgate has no `config.apply`; the
/// class is a local client without credentials or scopes reaching an
/// admin method.
#[tokio::test]
async fn unauthenticated_local_client_calling_admin_methods() {
    let gw = TestGateway::start(AuthMode::Token).await;
    // No credentials: no session at all.
    for p in [
        params("cli", "cli", json!({}), &["operator.admin"]),
        params("gateway-client", "backend", json!({}), &["operator.admin"]),
        params("test", "test", json!({}), &["operator.admin"]),
    ] {
        let mut c = gw.client().await;
        let res = c.connect_with(p).await;
        assert_eq!(code(&res), "DEVICE_IDENTITY_REQUIRED", "{res}");
        assert_eq!(c.closed().await.code, 1008);
    }
    // A device without credentials: not paired, no session.
    let d = TestDevice::new();
    let res = connect_as(&gw, &d, json!({}), &["operator.admin"]).await;
    assert_eq!(code(&res), "AUTH_TOKEN_MISSING", "{res}");
    // The secret but no scope (a non-CLI local client): admin methods,
    // known or not, are refused for the missing scope.
    let mut c = gw.client().await;
    let res = c
        .connect_with(params(
            "test",
            "test",
            json!({"token": TOKEN}),
            &["operator.admin"],
        ))
        .await;
    assert_eq!(res["payload"]["auth"]["scopes"], json!([]));
    for method in [
        "config.apply",
        "config.set",
        "device.pair.approve",
        "audit.list",
    ] {
        let res = c.request("m", method, Some(json!({}))).await;
        assert_eq!(code(&res), "MISSING_SCOPE", "{method}: {res}");
    }
    // Even an admin finds no such method.
    let mut admin = operator(&gw, &["operator.admin"]).await;
    let res = admin.request("m", "config.apply", Some(json!({}))).await;
    assert_eq!(
        res["error"]["message"], "unknown method: config.apply",
        "{res}"
    );
    gw.stop().await;
}
