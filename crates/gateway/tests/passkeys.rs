//! Passkeys (issue 20 part 2) against a real gateway on a loopback port
//! with a real SQLite store: registration over the operator's WebSocket,
//! sign-in over the pre-auth HTTP endpoints, the device token it hands out
//! used to connect, and every refusal (replay, foreign origin, wrong RP,
//! another browser's challenge, a counter that goes backwards, removed
//! passkeys, bad bodies, the limiter). The authenticator is a software
//! one written here: P-256 (ES256) keys, "none" attestation, CBOR and
//! authenticator data built by hand as an authenticator would; the
//! gateway's verifier is the real one. Chromium's virtual authenticator
//! runs the same flow in ui/tests/passkeys.test.mjs.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use clawgate_gateway::config::AuthMode;
use clawgate_gateway::testkit;
use common::*;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

// ------------------------------------------------------------ the authenticator

fn head(out: &mut Vec<u8>, major: u8, v: u64) {
    let m = major << 5;
    if v < 24 {
        out.push(m | v as u8);
    } else if v < 256 {
        out.extend_from_slice(&[m | 24, v as u8]);
    } else if v < 65536 {
        out.push(m | 25);
        out.extend_from_slice(&(v as u16).to_be_bytes());
    } else {
        out.push(m | 26);
        out.extend_from_slice(&(v as u32).to_be_bytes());
    }
}

fn cbor_int(out: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        head(out, 0, v as u64)
    } else {
        head(out, 1, (-1 - v) as u64)
    }
}

fn cbor_bytes(out: &mut Vec<u8>, b: &[u8]) {
    head(out, 2, b.len() as u64);
    out.extend_from_slice(b);
}

fn cbor_text(out: &mut Vec<u8>, s: &str) {
    head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// What a browser would put in clientDataJSON (in the spec's key order).
fn client_data(kind: &str, challenge: &str, origin: &str) -> String {
    format!(
        r#"{{"type":"{kind}","challenge":"{challenge}","origin":"{origin}","crossOrigin":false}}"#
    )
}

/// One discoverable ES256 credential.
struct Authenticator {
    key: SigningKey,
    cred_id: Vec<u8>,
    user: Vec<u8>,
    count: u32,
    /// The RP id whose hash goes into authenticator data (a phishing site
    /// would make it its own).
    rp_id: String,
    /// The origin the "browser" reports.
    origin: String,
}

impl Authenticator {
    /// `navigator.credentials.create` with `options` (the gateway's
    /// creation options JSON); returns the authenticator and `toJSON()`.
    fn create(options: &Value, origin: &str) -> (Authenticator, Value) {
        let key = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let mut cred_id = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut cred_id);
        let rp_id = options["rp"]["id"].as_str().unwrap().to_string();
        let user = B64.decode(options["user"]["id"].as_str().unwrap()).unwrap();
        let cd = client_data(
            "webauthn.create",
            options["challenge"].as_str().unwrap(),
            origin,
        );
        let point = key.verifying_key().to_encoded_point(false);
        let mut cose = Vec::new();
        head(&mut cose, 5, 5);
        cbor_int(&mut cose, 1);
        cbor_int(&mut cose, 2);
        cbor_int(&mut cose, 3);
        cbor_int(&mut cose, -7);
        cbor_int(&mut cose, -1);
        cbor_int(&mut cose, 1);
        cbor_int(&mut cose, -2);
        cbor_bytes(&mut cose, point.x().unwrap());
        cbor_int(&mut cose, -3);
        cbor_bytes(&mut cose, point.y().unwrap());
        let mut ad = Sha256::digest(rp_id.as_bytes()).to_vec();
        ad.push(0x01 | 0x04 | 0x40); // UP, UV, AT
        ad.extend_from_slice(&0u32.to_be_bytes());
        ad.extend_from_slice(&[0u8; 16]);
        ad.extend_from_slice(&(cred_id.len() as u16).to_be_bytes());
        ad.extend_from_slice(&cred_id);
        ad.extend_from_slice(&cose);
        let mut att = Vec::new();
        head(&mut att, 5, 3);
        cbor_text(&mut att, "fmt");
        cbor_text(&mut att, "none");
        cbor_text(&mut att, "attStmt");
        head(&mut att, 5, 0);
        cbor_text(&mut att, "authData");
        cbor_bytes(&mut att, &ad);
        let mut spki = hex("3059301306072a8648ce3d020106082a8648ce3d030107034200").to_vec();
        spki.extend_from_slice(point.as_bytes());
        let json = json!({
            "id": B64.encode(cred_id), "rawId": B64.encode(cred_id), "type": "public-key",
            "response": {
                "clientDataJSON": B64.encode(cd.as_bytes()),
                "attestationObject": B64.encode(&att),
                "transports": ["internal"],
                "publicKeyAlgorithm": -7,
                "publicKey": B64.encode(&spki),
                "authenticatorData": B64.encode(&ad),
            },
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
        });
        let auth = Authenticator {
            key,
            cred_id: cred_id.to_vec(),
            user,
            count: 0,
            rp_id,
            origin: origin.to_string(),
        };
        (auth, json)
    }

    /// `navigator.credentials.get` with `options`, counter `count`.
    fn get_with(&self, options: &Value, count: u32) -> Value {
        let cd = client_data(
            "webauthn.get",
            options["challenge"].as_str().unwrap(),
            &self.origin,
        );
        let mut ad = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        ad.push(0x01 | 0x04);
        ad.extend_from_slice(&count.to_be_bytes());
        let mut msg = ad.clone();
        msg.extend_from_slice(&Sha256::digest(cd.as_bytes()));
        let sig: Signature = self.key.sign(&msg);
        json!({
            "id": B64.encode(&self.cred_id), "rawId": B64.encode(&self.cred_id), "type": "public-key",
            "response": {
                "clientDataJSON": B64.encode(cd.as_bytes()),
                "authenticatorData": B64.encode(&ad),
                "signature": B64.encode(sig.to_der().as_bytes()),
                "userHandle": B64.encode(&self.user),
            },
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
        })
    }

    fn get(&mut self, options: &Value) -> Value {
        self.count += 1;
        self.get_with(options, self.count)
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// ------------------------------------------------------------ HTTP and helpers

struct Http {
    status: u16,
    headers: String,
    body: Value,
}

async fn post_raw(
    gw: &TestGateway,
    path: &str,
    origin: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> Http {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost:{}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        gw.addr.port(),
        body.len()
    );
    if let Some(o) = origin {
        head.push_str(&format!("Origin: {o}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text[9..12].parse().unwrap();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Http {
        status,
        headers: headers.to_ascii_lowercase(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

fn origin(gw: &TestGateway) -> String {
    format!("http://localhost:{}", gw.addr.port())
}

async fn post(gw: &TestGateway, path: &str, body: &Value) -> Http {
    let o = origin(gw);
    post_raw(
        gw,
        path,
        Some(&o),
        "application/json",
        body.to_string().as_bytes(),
    )
    .await
}

/// An operator session from the browser's origin (a page on localhost
/// holding the shared token; the real Control UI also presents its device
/// identity, which is beside the point here).
async fn ui_operator(gw: &TestGateway, scopes: &[&str]) -> Client {
    let o = origin(gw);
    let mut c = gw.client_with(&[("Origin", &o)]).await;
    let res = c.connect_with(cli_params(TOKEN, scopes)).await;
    assert_eq!(res["ok"], true, "{res}");
    c
}

async fn register(
    op: &mut Client,
    gw: &TestGateway,
    label: &str,
    scopes: Option<&[&str]>,
) -> Authenticator {
    let mut params = json!({"label": label});
    if let Some(s) = scopes {
        params["scopes"] = json!(s);
    }
    let begun = op
        .request("b", "passkey.register.begin", Some(params))
        .await;
    assert_eq!(begun["ok"], true, "{begun}");
    let options = &begun["payload"]["publicKey"];
    assert_eq!(options["rp"]["id"], "localhost");
    assert_eq!(options["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(
        options["authenticatorSelection"]["userVerification"],
        "required"
    );
    let (auth, credential) = Authenticator::create(options, &origin(gw));
    let done = op
        .request(
            "f",
            "passkey.register.finish",
            Some(json!({"credential": credential})),
        )
        .await;
    assert_eq!(done["ok"], true, "{done}");
    assert_eq!(done["payload"]["passkey"]["label"], label);
    auth
}

fn signin_device(device: &TestDevice, challenge: &str) -> Value {
    use ed25519_dalek::Signer;
    let signed_at = now_ms();
    let payload = clawgate_protocol::wire::signin_payload(&device.id, challenge, signed_at);
    let sig = device.key.sign(payload.as_bytes());
    json!({
        "id": device.id,
        "publicKey": device.public_key,
        "signature": B64.encode(sig.to_bytes()),
        "signedAt": signed_at,
    })
}

async fn options_for(gw: &TestGateway, device: &TestDevice) -> Value {
    let res = post(
        gw,
        "/api/passkeys/options",
        &json!({"device": {"id": device.id, "publicKey": device.public_key}}),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["ok"], true);
    assert!(
        res.headers.contains("cache-control: no-store"),
        "{}",
        res.headers
    );
    res.body["publicKey"].clone()
}

/// The whole sign-in of `device` with `auth`; the signin reply.
async fn sign_in(gw: &TestGateway, device: &TestDevice, auth: &mut Authenticator) -> Http {
    let options = options_for(gw, device).await;
    assert_eq!(options["rpId"], "localhost");
    assert_eq!(options["allowCredentials"], json!([]));
    let credential = auth.get(&options);
    let challenge = options["challenge"].as_str().unwrap();
    post(
        gw,
        "/api/passkeys/signin",
        &json!({"credential": credential, "device": signin_device(device, challenge)}),
    )
    .await
}

fn reason(res: &Http) -> &str {
    res.body["error"]["details"]["reason"]
        .as_str()
        .unwrap_or("")
}

fn assert_refused(res: &Http, status: u16, why: &str) {
    assert_eq!(res.status, status, "{}", res.body);
    assert_eq!(res.body["ok"], false);
    assert_eq!(
        res.body["error"]["details"]["code"], "PASSKEY_REFUSED",
        "{}",
        res.body
    );
    assert_eq!(reason(res), why, "{}", res.body);
}

/// Connects `device` with only its device token (no shared secret).
async fn connect_with_device_token(
    gw: &TestGateway,
    device: &TestDevice,
    token: &str,
    scopes: &[&str],
) -> (Client, Value) {
    let o = origin(gw);
    let mut c = gw.client_with(&[("Origin", &o)]).await;
    let mut p = params(
        "openclaw-control-ui",
        "webchat",
        json!({"deviceToken": token}),
        scopes,
    );
    p["client"]["platform"] = json!("web");
    let res = c.connect_device(device, p).await;
    (c, res)
}

async fn roomy_gateway() -> TestGateway {
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.auto_approve_local = false;
    cfg.auth.rate_limit.max_attempts = 1000;
    TestGateway::start_with(cfg, fast_options(), dir).await
}

// ------------------------------------------------------------ tests

#[tokio::test]
async fn register_sign_in_connect_remove() {
    let gw = roomy_gateway().await;
    let mut op = ui_operator(&gw, &["operator.admin"]).await;
    let mut auth = register(&mut op, &gw, "ui laptop", Some(&["operator.read"])).await;

    let listed = op.request("l", "passkey.list", None).await;
    let list = listed["payload"]["passkeys"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{listed}");
    let pk = &list[0];
    assert_eq!(pk["label"], "ui laptop");
    assert_eq!(pk["scopes"], json!(["operator.read"]));
    assert_eq!(pk["rpId"], "localhost");
    assert_eq!(pk["createdBy"], "shared-secret");
    assert!(pk["lastUsedAtMs"].is_null());
    assert_eq!(pk["id"], B64.encode(&auth.cred_id));
    for secretish in ["publicKey", "state", "userHandle"] {
        assert!(pk.get(secretish).is_none(), "{pk}");
    }

    // A fresh browser identity signs in; it never sees the shared token.
    // An operator watching with pairing rights hears of it.
    let mut watcher = operator(&gw, &["operator.pairing"]).await;
    let browser = TestDevice::new();
    let res = sign_in(&gw, &browser, &mut auth).await;
    let event = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let frame = watcher.next().await.expect("socket open");
            if frame["type"] == "event" && frame["event"] == "device.pair.changed" {
                return frame;
            }
        }
    })
    .await
    .expect("device.pair.changed after a passkey sign-in");
    assert_eq!(event["event"], "device.pair.changed");
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["deviceId"], browser.id.as_str());
    assert_eq!(res.body["role"], "operator");
    assert_eq!(res.body["scopes"], json!(["operator.read"]));
    assert_eq!(res.body["passkey"]["label"], "ui laptop");
    let token = res.body["deviceToken"].as_str().unwrap().to_string();
    assert!(!token.contains(TOKEN));

    let (mut session, hello) =
        connect_with_device_token(&gw, &browser, &token, &["operator.read"]).await;
    assert_eq!(hello["ok"], true, "{hello}");
    assert_eq!(hello["payload"]["auth"]["scopes"], json!(["operator.read"]));
    let status = session.request("s", "status", None).await;
    assert_eq!(status["ok"], true, "{status}");
    // Exactly the passkey's scopes: no pairing rights.
    let denied = session.request("d", "device.pair.list", None).await;
    assert_eq!(
        denied["error"]["details"]["code"], "MISSING_SCOPE",
        "{denied}"
    );
    // Asking for more than the passkey granted needs an operator.
    let (_, wider) = connect_with_device_token(&gw, &browser, &token, &["operator.admin"]).await;
    assert_eq!(wider["ok"], false, "{wider}");

    let paired = op.request("p", "device.pair.list", None).await;
    let dev = paired["payload"]["paired"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deviceId"] == browser.id.as_str())
        .cloned()
        .expect("the browser's device is paired");
    assert_eq!(dev["approvedVia"], "passkey", "{dev}");

    let listed = op.request("l", "passkey.list", None).await;
    assert!(listed["payload"]["passkeys"][0]["lastUsedAtMs"].is_u64());
    assert_eq!(listed["payload"]["passkeys"][0]["signCount"], 1);

    // Removed: the next sign-in is refused and approves nothing.
    let removed = op
        .request("r", "passkey.remove", Some(json!({"id": pk["id"]})))
        .await;
    assert_eq!(removed["payload"], json!({"removed": true, "id": pk["id"]}));
    let again = op
        .request("r", "passkey.remove", Some(json!({"id": pk["id"]})))
        .await;
    assert_eq!(again["ok"], false);
    let other = TestDevice::new();
    let res = sign_in(&gw, &other, &mut auth).await;
    assert_refused(&res, 401, "passkey_unknown_credential");
    assert!(testkit::store(&gw.state).device(&other.id).is_none());

    let actions = audit_actions(&mut op).await;
    let names: Vec<&str> = actions.iter().map(|(a, _)| a.as_str()).collect();
    for a in ["passkey.registered", "passkey.signin", "passkey.removed"] {
        assert!(names.contains(&a), "{a} in {names:?}");
    }
    gw.state.flush_deferred();
    let actions = audit_actions(&mut op).await;
    assert!(
        actions
            .iter()
            .any(|(a, d)| a == "passkey.refused" && d["reason"] == "passkey_unknown_credential"),
        "{actions:?}"
    );
    // No audit row carries the device token.
    assert!(!serde_json::to_string(&actions).unwrap().contains(&token));
}

#[tokio::test]
async fn replayed_foreign_and_misbound_assertions_are_refused() {
    let gw = roomy_gateway().await;
    let mut op = ui_operator(&gw, &["operator.admin"]).await;
    let mut auth = register(&mut op, &gw, "key", None).await;
    let browser = TestDevice::new();

    // Replay: the same answer twice.
    let options = options_for(&gw, &browser).await;
    let credential = auth.get(&options);
    let body = json!({"credential": credential, "device": signin_device(&browser, options["challenge"].as_str().unwrap())});
    assert_eq!(post(&gw, "/api/passkeys/signin", &body).await.status, 200);
    let replay = post(&gw, "/api/passkeys/signin", &body).await;
    assert_refused(&replay, 401, "passkey_challenge_unknown");

    // A challenge issued to another browser identity.
    let thief = TestDevice::new();
    let options = options_for(&gw, &browser).await;
    let credential = auth.get(&options);
    let res = post(
        &gw,
        "/api/passkeys/signin",
        &json!({"credential": credential, "device": signin_device(&thief, options["challenge"].as_str().unwrap())}),
    )
    .await;
    assert_refused(&res, 401, "passkey_device_mismatch");
    assert!(testkit::store(&gw.state).device(&thief.id).is_none());

    // The right identity, but its signature over another challenge.
    let options = options_for(&gw, &browser).await;
    let credential = auth.get(&options);
    let res = post(
        &gw,
        "/api/passkeys/signin",
        &json!({"credential": credential, "device": signin_device(&browser, "not-the-challenge")}),
    )
    .await;
    assert_refused(&res, 401, "passkey_device_signature");

    // An assertion made on another origin (a phishing page relaying).
    let options = options_for(&gw, &browser).await;
    auth.origin = "https://evil.example".into();
    let credential = auth.get(&options);
    auth.origin = origin(&gw);
    let res = post(
        &gw,
        "/api/passkeys/signin",
        &json!({"credential": credential, "device": signin_device(&browser, options["challenge"].as_str().unwrap())}),
    )
    .await;
    assert_refused(&res, 401, "passkey_origin");

    // An authenticator answering for another relying party.
    let options = options_for(&gw, &browser).await;
    auth.rp_id = "evil.example".into();
    let credential = auth.get(&options);
    auth.rp_id = "localhost".into();
    let res = post(
        &gw,
        "/api/passkeys/signin",
        &json!({"credential": credential, "device": signin_device(&browser, options["challenge"].as_str().unwrap())}),
    )
    .await;
    assert_refused(&res, 401, "passkey_rp_id");

    // A forged signature.
    let options = options_for(&gw, &browser).await;
    let mut credential = auth.get(&options);
    let other_key = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let sig: Signature = other_key.sign(b"something else");
    credential["response"]["signature"] = json!(B64.encode(sig.to_der().as_bytes()));
    let res = post(
        &gw,
        "/api/passkeys/signin",
        &json!({"credential": credential, "device": signin_device(&browser, options["challenge"].as_str().unwrap())}),
    )
    .await;
    assert_refused(&res, 401, "passkey_verification_failed");

    // After all that, a proper sign-in still works.
    let res = sign_in(&gw, &browser, &mut auth).await;
    assert_eq!(res.status, 200, "{}", res.body);
}

#[tokio::test]
async fn a_counter_that_goes_backwards_is_refused_and_flags_the_passkey() {
    let gw = roomy_gateway().await;
    let mut op = ui_operator(&gw, &["operator.admin"]).await;
    let auth = register(&mut op, &gw, "yubikey", None).await;
    let browser = TestDevice::new();
    let options = options_for(&gw, &browser).await;
    let c = auth.get_with(&options, 5);
    let res = post(&gw, "/api/passkeys/signin", &json!({"credential": c, "device": signin_device(&browser, options["challenge"].as_str().unwrap())})).await;
    assert_eq!(res.status, 200, "{}", res.body);

    // A clone still at 3.
    let options = options_for(&gw, &browser).await;
    let c = auth.get_with(&options, 3);
    let res = post(&gw, "/api/passkeys/signin", &json!({"credential": c, "device": signin_device(&browser, options["challenge"].as_str().unwrap())})).await;
    assert_refused(&res, 401, "passkey_sign_count");

    let listed = op.request("l", "passkey.list", None).await;
    let pk = &listed["payload"]["passkeys"][0];
    assert!(pk["flaggedAtMs"].is_u64(), "{pk}");
    assert_eq!(pk["signCount"], 5);

    // Flagged: even the genuine authenticator is refused until removed.
    let options = options_for(&gw, &browser).await;
    let c = auth.get_with(&options, 6);
    let res = post(&gw, "/api/passkeys/signin", &json!({"credential": c, "device": signin_device(&browser, options["challenge"].as_str().unwrap())})).await;
    assert_refused(&res, 401, "passkey_flagged");
    let actions = audit_actions(&mut op).await;
    assert!(
        actions
            .iter()
            .any(|(a, d)| a == "passkey.refused" && d["flagged"] == true),
        "{actions:?}"
    );
}

#[tokio::test]
async fn registration_rules() {
    let gw = roomy_gateway().await;
    // Beyond the session's own scopes.
    let mut reader = ui_operator(&gw, &["operator.pairing", "operator.read"]).await;
    let res = reader
        .request(
            "b",
            "passkey.register.begin",
            Some(json!({"label": "x", "scopes": ["operator.admin"]})),
        )
        .await;
    assert_eq!(res["error"]["code"], "FORBIDDEN", "{res}");
    assert_eq!(
        res["error"]["details"]["reason"],
        "passkey_scopes_exceed_caller"
    );
    // Without pairing rights at all.
    let mut plain = ui_operator(&gw, &["operator.read"]).await;
    let res = plain
        .request("b", "passkey.register.begin", Some(json!({"label": "x"})))
        .await;
    assert_eq!(res["error"]["details"]["code"], "MISSING_SCOPE", "{res}");
    // Defaults to the caller's own operator scopes.
    let _ = register(&mut reader, &gw, "mine", None).await;
    let listed = reader.request("l", "passkey.list", None).await;
    assert_eq!(
        listed["payload"]["passkeys"][0]["scopes"],
        json!(["operator.pairing", "operator.read"])
    );
    // A CLI session (no Origin) cannot register.
    let mut cli = operator(&gw, &["operator.admin"]).await;
    let res = cli
        .request("b", "passkey.register.begin", Some(json!({"label": "x"})))
        .await;
    assert_eq!(res["ok"], false);
    assert!(
        res["error"]["message"]
            .as_str()
            .unwrap()
            .contains("browser"),
        "{res}"
    );
    // An IP-address origin has no relying party.
    let ip_origin = format!("http://127.0.0.1:{}", gw.addr.port());
    let mut tab = gw.client_with(&[("Origin", &ip_origin)]).await;
    assert_eq!(
        tab.connect_with(cli_params(TOKEN, &["operator.admin"]))
            .await["ok"],
        true
    );
    let res = tab
        .request("b", "passkey.register.begin", Some(json!({"label": "x"})))
        .await;
    assert_eq!(
        res["error"]["details"]["reason"], "passkey_not_secure_context",
        "{res}"
    );
    // Another session cannot finish this session's ceremony.
    let mut a = ui_operator(&gw, &["operator.admin"]).await;
    let mut b = ui_operator(&gw, &["operator.admin"]).await;
    let begun = a
        .request("b", "passkey.register.begin", Some(json!({"label": "a"})))
        .await;
    let (_, credential) = Authenticator::create(&begun["payload"]["publicKey"], &origin(&gw));
    let res = b
        .request(
            "f",
            "passkey.register.finish",
            Some(json!({"credential": credential.clone()})),
        )
        .await;
    assert_eq!(
        res["error"]["details"]["reason"], "passkey_challenge_unknown",
        "{res}"
    );
    let res = a
        .request(
            "f",
            "passkey.register.finish",
            Some(json!({"credential": credential})),
        )
        .await;
    assert_eq!(res["ok"], true, "{res}");
    // Garbage is a structured refusal.
    let res = a
        .request(
            "f",
            "passkey.register.finish",
            Some(json!({"credential": {"id": 1}})),
        )
        .await;
    assert_eq!(
        res["error"]["details"]["reason"], "passkey_malformed",
        "{res}"
    );
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let gw = roomy_gateway().await;
    let o = origin(&gw);
    let path = "/api/passkeys/options";
    let res = post_raw(&gw, path, Some(&o), "application/json", b"{not json").await;
    assert_refused(&res, 400, "passkey_malformed");
    assert!(
        res.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not JSON")
    );
    let res = post_raw(
        &gw,
        path,
        Some(&o),
        "application/json",
        br#"{"device":{"id":"x","publicKey":"y"},"extra":1}"#,
    )
    .await;
    assert_refused(&res, 400, "passkey_malformed");
    let res = post_raw(
        &gw,
        path,
        Some(&o),
        "application/json",
        br#"{"device":{"id":"00","publicKey":"AAAA"}}"#,
    )
    .await;
    assert_refused(&res, 400, "passkey_malformed");
    let res = post_raw(&gw, path, Some(&o), "text/plain", b"{}").await;
    assert_eq!(res.status, 415);
    let res = post_raw(&gw, path, None, "application/json", b"{}").await;
    assert_eq!(res.status, 403);
    assert_eq!(
        res.body["error"]["details"]["code"],
        "CONTROL_UI_ORIGIN_NOT_ALLOWED"
    );
    let res = post_raw(
        &gw,
        path,
        Some("https://evil.example"),
        "application/json",
        b"{}",
    )
    .await;
    assert_eq!(res.status, 403);
    let big = vec![b' '; 70 * 1024];
    let res = post_raw(&gw, path, Some(&o), "application/json", &big).await;
    assert_eq!(res.status, 413);
    let (status, _) = http_get(gw.addr, path).await;
    assert_eq!(status, 405);
    // The sign-in endpoint with a credential that is not one.
    let browser = TestDevice::new();
    let res = post(
        &gw,
        "/api/passkeys/signin",
        &json!({"credential": {"id": "AAAA", "response": 7}, "device": signin_device(&browser, "x")}),
    )
    .await;
    assert_refused(&res, 400, "passkey_malformed");
    // An IP-address origin: browsers cannot run WebAuthn there.
    let ip = format!("http://127.0.0.1:{}", gw.addr.port());
    let res = post_raw(
        &gw,
        path,
        Some(&ip),
        "application/json",
        json!({"device": {"id": browser.id, "publicKey": browser.public_key}})
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_refused(&res, 401, "passkey_not_secure_context");
}

#[tokio::test]
async fn failures_lock_the_peer_out() {
    // Default limiter: 10 failures a minute for a browser peer.
    let (mut cfg, dir) = config(AuthMode::Token);
    cfg.auto_approve_local = false;
    let gw = TestGateway::start_with(cfg, fast_options(), dir).await;
    let browser = TestDevice::new();
    let mut limited = None;
    for i in 0..20 {
        let res = post(
            &gw,
            "/api/passkeys/signin",
            &json!({"credential": {"id": "AAAA"}, "device": signin_device(&browser, "x")}),
        )
        .await;
        if res.status == 429 {
            limited = Some((i, res));
            break;
        }
        assert_refused(&res, 400, "passkey_malformed");
    }
    let (i, res) = limited.expect("the limiter locks the peer out");
    assert!(i >= 10, "locked after {i} failures");
    assert_eq!(res.body["error"]["details"]["code"], "AUTH_RATE_LIMITED");
    assert!(res.headers.contains("retry-after:"), "{}", res.headers);
    // Locked out: even a well-formed request is refused before any work.
    let res = post(
        &gw,
        "/api/passkeys/options",
        &json!({"device": {"id": browser.id, "publicKey": browser.public_key}}),
    )
    .await;
    assert_eq!(res.status, 429);
}
