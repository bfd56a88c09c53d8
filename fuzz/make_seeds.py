#!/usr/bin/env python3
"""Writes the hand-made seeds of fuzz/corpus/<target>/seed-*.

The seeds are small, valid (or nearly valid) inputs of each target's input
format, so the fuzzers start from the interesting paths; the long runs add
what they discover (minimized with `cargo fuzz cmin`). Re-running this only
rewrites the seed-* files.
"""
import hashlib
import json
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_TOKEN = "fuzz-shared-token-0123456789"


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def ws_frame(payload, opcode=1, fin=True):
    """A client frame, masked with the zero key so the payload stays readable."""
    if isinstance(payload, str):
        payload = payload.encode()
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n <= 0xFFFF:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + b"\0\0\0\0" + payload


def req(id_, method, params=None):
    f = {"type": "req", "id": id_, "method": method}
    if params is not None:
        f["params"] = params
    return json.dumps(f, separators=(",", ":"))


def connect_params(**over):
    p = {
        "minProtocol": 4,
        "maxProtocol": 4,
        "client": {"id": "cli", "version": "1.0.0", "platform": "linux", "mode": "cli"},
        "role": "operator",
        "scopes": ["operator.admin", "operator.read"],
        "auth": {"token": SHARED_TOKEN},
    }
    p.update(over)
    return p


DEVICE = {
    "id": hashlib.sha256(b"\x07" * 32).hexdigest(),
    "publicKey": "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc",
    "signature": "A" * 86,
    "signedAt": 1795596589409,
    "nonce": "d4fdcf73-dee1-4eeb-9372-c3d7b3a9060b",
}

# --- frame: [flags, chunk, websocket bytes...]
session = ws_frame(req("c1", "connect", connect_params()))
for i, (m, p) in enumerate([
    ("health", {}), ("status", None), ("system-presence", {}), ("last-heartbeat", {}),
    ("device.pair.list", {}), ("audit.list", {"limit": 5}),
    ("device.pair.approve", {"requestId": "r1"}), ("device.token.rotate", {"deviceId": "d", "role": "operator"}),
    ("no.such.method", {}),
]):
    session += ws_frame(req(str(i), m, p))
write("frame", "session", b"\x00\x00" + session)
write("frame", "session-chunked", b"\x00\x07" + session)
write("frame", "connect-wrong-token", b"\x00\x00" + ws_frame(req("c1", "connect", connect_params(auth={"token": "nope"}))))
write("frame", "connect-device", b"\x00\x00" + ws_frame(req("c1", "connect", connect_params(device=DEVICE))))
write("frame", "connect-control-ui", b"\x04\x00" + ws_frame(req("c1", "connect", connect_params(client={"id": "openclaw-control-ui", "version": "1", "platform": "web", "mode": "ui"}))))
write("frame", "connect-node-v3", b"\x01\x00" + ws_frame(req("c1", "connect", connect_params(minProtocol=3, maxProtocol=3, role="node", client={"id": "node-host", "version": "1", "platform": "linux", "mode": "node"}))))
write("frame", "not-json", b"\x00\x00" + ws_frame("nope"))
write("frame", "not-a-request", b"\x00\x00" + ws_frame('{"type":"event","event":"x"}'))
write("frame", "not-connect", b"\x00\x00" + ws_frame(req("h", "health", {})))
write("frame", "bad-params", b"\x00\x00" + ws_frame(req("c1", "connect", {"minProtocol": "x", "foo": 1})))
write("frame", "binary-connect", b"\x00\x00" + ws_frame(req("c1", "connect", connect_params()), opcode=2))
text = req("c1", "connect", connect_params())
half = len(text) // 2
write("frame", "fragmented", b"\x00\x00" + ws_frame("", opcode=9) + ws_frame(text[:half], fin=False) + ws_frame(text[half:], opcode=0))
write("frame", "oversize-header", b"\x00\x00" + bytes([0x81, 0xFF]) + struct.pack(">Q", 1 << 20) + b"\0\0\0\0")
write("frame", "cap-fragments", b"\x20\x03" + ws_frame("x" * 20, fin=False) + ws_frame("y" * 20, opcode=0))
write("frame", "close", b"\x00\x00" + ws_frame(struct.pack(">H", 1000) + b"bye", opcode=8))

# --- connect_params: [flags, json...]
valid = [
    ("cli", 0x00, connect_params()),
    ("cli-remote", 0x01, connect_params()),
    ("backend", 0x00, connect_params(client={"id": "gateway-client", "version": "1", "platform": "linux", "mode": "backend"})),
    ("password", 0x00, connect_params(auth={"password": SHARED_TOKEN})),
    ("wrong-token", 0x00, connect_params(auth={"token": "wrong"})),
    ("planted", 0x80, connect_params(auth={"token": "t", "deviceToken": "d", "bootstrapToken": "b", "password": "p"})),
    ("device", 0x00, connect_params(device=DEVICE)),
    ("device-token", 0x00, connect_params(device=DEVICE, auth={"deviceToken": "abc"})),
    ("device-other-nonce", 0x40, connect_params(device=DEVICE)),
    ("control-ui-origin", 0x04, connect_params(client={"id": "openclaw-control-ui", "version": "1", "platform": "web", "mode": "ui"})),
    ("node", 0x00, connect_params(role="node", minProtocol=3, maxProtocol=3, client={"id": "node-host", "version": "1", "platform": "linux", "mode": "node"})),
    ("probe", 0x00, connect_params(minProtocol=3, maxProtocol=3, client={"id": "openclaw-probe", "version": "1", "platform": "linux", "mode": "probe"})),
    ("full", 0x00, connect_params(caps=["a"], commands=["b"], permissions={"x": True}, pathEnv="/bin", locale="en", userAgent="ua",
                                  client={"id": "openclaw-macos", "displayName": "Mac", "version": "1", "buildId": "b", "platform": "macos",
                                          "deviceFamily": "Mac", "modelIdentifier": "m", "timeZone": "UTC", "mode": "ui", "instanceId": "i"})),
    ("invalid", 0x00, {"foo": 1, "minProtocol": "x"}),
    ("protocol-mismatch", 0x00, connect_params(minProtocol=5, maxProtocol=9)),
    ("bad-role", 0x00, connect_params(role="admin")),
]
for name, flags, p in valid:
    write("connect_params", name, bytes([flags]) + json.dumps(p).encode())

# --- device_signature: arbitrary-derived; random bytes of a few sizes.
rng = random.Random(8)
for n in (64, 200, 600):
    write("device_signature", "random-%d" % n, bytes(rng.randrange(256) for _ in range(n)))

# --- config: [flags, json5 text...]
configs = [
    ("empty", ""),
    ("token", '{ gateway: { auth: { mode: "token", token: "abc-123-secret" } } }'),
    ("full", """// clawgate.json
{
  gateway: {
    port: 18789, bind: "custom", customBindHost: "10.0.0.5",
    auth: { mode: "password", password: "hunter2-hunter2",
            rateLimit: { maxAttempts: 10, windowMs: 60000, lockoutMs: 300000, exemptLoopback: true, globalMaxFailures: 1000 } },
    controlUi: { enabled: true, basePath: "/ui/", allowedOrigins: ["https://Host.Example:443/", "http://[::1]:8080", "*"] },
    nodes: { pairing: { autoApproveLocal: false } },
    trustedProxies: ["10.0.0.1", "::1"],
  },
  other: { kept: [1, 2, 3] },
}"""),
    ("errors", '{gateway: {port: 0, bind: "wan", auth: {mode: "Token", token: ""}, controlUi: {basePath: "/../x", allowedOrigins: ["ftp://x"]}, trustedProxies: ["10.0.0.0/8"]}}'),
    ("none-on-lan", '{gateway: {bind: "lan", auth: {mode: "none"}}}'),
    ("both-secrets", '{gateway: {auth: {token: "a-token-1", password: "a-password-1"}}}'),
    ("not-object", '[1, 2]'),
    ("wrong-kinds", '{gateway: {auth: "x", controlUi: [], nodes: {pairing: 1}, port: "18789"}}'),
    ("placeholder", '{gateway: {auth: {mode: "token", token: "undefined"}}}'),
    ("numbers", '{gateway: {port: 65536, auth: {token: "t0ken-value", rateLimit: {maxAttempts: 1e3, windowMs: -1, lockoutMs: 1.5}}}}'),
]
for i, (name, text) in enumerate(configs):
    write("config", name, bytes([i * 9 % 256]) + text.encode())

# --- rpc_params: [method index, caller, params json...]
METHODS = ["health", "status", "last-heartbeat", "system-presence", "device.pair.list", "device.pair.approve",
           "device.pair.reject", "device.pair.remove", "device.pair.rename", "device.token.rotate",
           "device.token.revoke", "audit.list"]


# The fixture's paired devices (rpc_params.rs): the ids of the Ed25519 keys
# whose seeds are [1; 32] and [2; 32].
d1 = "34750f98bd59fcfc946da45aaabe933be154a4b5094e1c4abf42866505f3c97e"
d2 = "6a3803d5f059902a1c6dafbc9ba4729212f7caac08634cc3ae76b27529f03827"
rpc = [
    ("health", 0, {}), ("status", 1, None), ("last-heartbeat", 2, {}), ("system-presence", 5, {}),
    ("device.pair.list", 3, {}), ("device.pair.list", 0, {"x": 1}),
    ("device.pair.approve", 0, {"requestId": "fuzz-request-op"}),
    ("device.pair.approve", 3, {"requestId": "fuzz-request-node"}),
    ("device.pair.reject", 2, {"requestId": "fuzz-request-op"}),
    ("device.pair.remove", 4, {"deviceId": d1}),
    ("device.pair.remove", 3, {"deviceId": d2}),
    ("device.pair.rename", 0, {"deviceId": d1, "label": "kitchen"}),
    ("device.pair.rename", 0, {"deviceId": d1, "label": "x" * 65}),
    ("device.token.rotate", 3, {"deviceId": d1, "role": "operator", "scopes": ["operator.read"]}),
    ("device.token.rotate", 0, {"deviceId": d1, "role": "node"}),
    ("device.token.rotate", 2, {"deviceId": d2, "role": "operator", "scopes": ["operator.admin"]}),
    ("device.token.revoke", 0, {"deviceId": d2, "role": "operator"}),
    ("device.token.revoke", 3, {"deviceId": d1, "role": "node"}),
    ("audit.list", 0, {"action": "token.rotated", "deviceId": d1, "sinceMs": 0, "untilMs": 9e15, "cursor": 1, "limit": 1000}),
    ("audit.list", 0, {"limit": 0}),
]
for i, (m, who, p) in enumerate(rpc):
    data = bytes([METHODS.index(m), who]) + (b"" if p is None else json.dumps(p).encode())
    write("rpc_params", "%02d-%s" % (i, m), data)
write("rpc_params", "unknown-method", bytes([len(METHODS), 0]) + b"{}")
write("rpc_params", "node-calls-operator", bytes([4, 5]) + b"{}")

# ---- proxy_jwt: [token length u16 LE][token][JWKS] ----


def b64u(data):
    import base64

    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_seed(name, token, jwks):
    if isinstance(token, str):
        token = token.encode()
    if not isinstance(jwks, (bytes, str)):
        jwks = json.dumps(jwks)
    if isinstance(jwks, str):
        jwks = jwks.encode()
    write("proxy_jwt", name, struct.pack("<H", len(token)) + token + jwks)


try:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives import serialization

    key = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
    x = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    jwk = {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "k1", "x": b64u(x)}
    jwks = {"keys": [jwk]}

    def signed(header, claims):
        head = b64u(json.dumps(header, separators=(",", ":")))
        body = b64u(json.dumps(claims, separators=(",", ":")))
        sig = key.sign(f"{head}.{body}".encode())
        return f"{head}.{body}.{b64u(sig)}"

    good = {"iss": "https://issuer.fuzz", "aud": "fuzz-aud", "email": "nick@example.com", "exp": 4102444800}
    jwt_seed("good", signed({"alg": "EdDSA", "kid": "k1"}, good), jwks)
    jwt_seed("no-kid", signed({"alg": "EdDSA"}, good), jwks)
    jwt_seed("expired", signed({"alg": "EdDSA", "kid": "k1"}, dict(good, exp=1)), jwks)
    jwt_seed("aud-list", signed({"alg": "EdDSA", "kid": "k1"}, dict(good, aud=["x", "fuzz-aud"])), jwks)
    jwt_seed("wrong-iss", signed({"alg": "EdDSA", "kid": "k1"}, dict(good, iss="evil")), jwks)
    jwt_seed("unknown-kid", signed({"alg": "EdDSA", "kid": "k2"}, good), jwks)
    jwt_seed("no-user", signed({"alg": "EdDSA", "kid": "k1"}, {k: v for k, v in good.items() if k != "email"}), jwks)
except ImportError:
    pass

none = b64u('{"alg":"none"}') + "." + b64u('{"email":"a"}') + "."
jwt_seed("alg-none", none, {"keys": []})
jwt_seed("alg-hs256", b64u('{"alg":"HS256","kid":"k"}') + "." + b64u("{}") + ".AAAA", {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "k"}]})
jwt_seed("rsa-jwks", b64u('{"alg":"RS256","kid":"r"}') + "." + b64u("{}") + ".AAAA", {"keys": [{"kty": "RSA", "kid": "r", "n": "AQAB" * 64, "e": "AQAB"}]})
jwt_seed("ec-jwks", b64u('{"alg":"ES256","kid":"e"}') + "." + b64u("{}") + ".AAAA", {"keys": [{"kty": "EC", "crv": "P-256", "kid": "e", "x": b64u(bytes(32)), "y": b64u(bytes(32))}]})
jwt_seed("broken", "a.b", "{")
jwt_seed("huge-jwks", "x.y.z", '{"keys": [], "pad": "' + "p" * 70000 + '"}')

# ---- passkey: the browser's toJSON() of a credential, sign-in bodies ----


def cbor_head(major, v):
    m = major << 5
    if v < 24:
        return bytes([m | v])
    if v < 256:
        return bytes([m | 24, v])
    if v < 65536:
        return bytes([m | 25]) + struct.pack(">H", v)
    return bytes([m | 26]) + struct.pack(">I", v)


def cbor_int(v):
    return cbor_head(0, v) if v >= 0 else cbor_head(1, -1 - v)


def cbor_bytes(b):
    return cbor_head(2, len(b)) + b


def cbor_text(s):
    return cbor_head(3, len(s)) + s.encode()


def client_data(kind, challenge, origin):
    return ('{"type":"%s","challenge":"%s","origin":"%s","crossOrigin":false}' % (kind, challenge, origin)).encode()


try:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives import hashes, serialization

    pkey = ec.derive_private_key(7, ec.SECP256R1())
    nums = pkey.public_key().public_numbers()
    x, y = nums.x.to_bytes(32, "big"), nums.y.to_bytes(32, "big")
    cred_id = bytes(range(32))
    rp_hash = hashlib.sha256(b"fuzz.example").digest()
    origin = "https://fuzz.example"
    challenge = b64u(bytes(16))
    cose = cbor_head(5, 5) + cbor_int(1) + cbor_int(2) + cbor_int(3) + cbor_int(-7) + cbor_int(-1) + cbor_int(1) + cbor_int(-2) + cbor_bytes(x) + cbor_int(-3) + cbor_bytes(y)
    auth_data = rp_hash + bytes([0x45]) + struct.pack(">I", 0) + bytes(16) + struct.pack(">H", len(cred_id)) + cred_id + cose
    att = cbor_head(5, 3) + cbor_text("fmt") + cbor_text("none") + cbor_text("attStmt") + cbor_head(5, 0) + cbor_text("authData") + cbor_bytes(auth_data)
    spki = pkey.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    registration = {
        "id": b64u(cred_id), "rawId": b64u(cred_id), "type": "public-key",
        "response": {
            "clientDataJSON": b64u(client_data("webauthn.create", challenge, origin)),
            "attestationObject": b64u(att), "transports": ["internal"],
            "publicKeyAlgorithm": -7, "publicKey": b64u(spki), "authenticatorData": b64u(auth_data),
        },
        "authenticatorAttachment": "platform", "clientExtensionResults": {},
    }
    write("passkey", "registration", json.dumps(registration))
    get_data = rp_hash + bytes([0x05]) + struct.pack(">I", 7)
    cd = client_data("webauthn.get", challenge, origin)
    sig = pkey.sign(get_data + hashlib.sha256(cd).digest(), ec.ECDSA(hashes.SHA256()))
    assertion = {
        "id": b64u(cred_id), "rawId": b64u(cred_id), "type": "public-key",
        "response": {
            "clientDataJSON": b64u(cd), "authenticatorData": b64u(get_data),
            "signature": b64u(sig), "userHandle": b64u(bytes(64)),
        },
        "authenticatorAttachment": "platform", "clientExtensionResults": {},
    }
    write("passkey", "assertion", json.dumps(assertion))
    device = {"id": "0" * 64, "publicKey": b64u(bytes(32)), "signature": b64u(bytes(64)), "signedAt": 1}
    write("passkey", "signin-body", json.dumps({"credential": assertion, "device": device}))
except ImportError:
    pass

write("passkey", "options-body", json.dumps({"device": {"id": "0" * 64, "publicKey": b64u(bytes(32))}}))
write("passkey", "origin-localhost", "http://localhost:18789")
write("passkey", "origin-ip", "http://127.0.0.1:18789")
write("passkey", "broken", '{"id":"AA","rawId":"AA","type":"public-key","response":{"clientDataJSON":"e30"}}')
