"""Wire conformance: the same scenarios against the reference OpenClaw gateway
and clawgate, in one run, compared after normalisation.

usage: conformance.py REF_PORT REF_TOKEN CLAWGATE_PORT CLAWGATE_TOKEN [NAME ...]

Both gateways run on loopback in token mode with default pairing settings
(new loopback devices without an Origin header are paired silently). Each
scenario is a small async function that drives real WebSocket connections
(handshakes signed with fresh Ed25519 device identities) and returns what it
observed: response frames (error.code, message, details, retryable,
retryAfterMs, selected result fields), close codes and reasons, event names.
Volatile values (UUIDs, device ids, tokens, public keys, epoch timestamps,
durations) are masked before the comparison, so equal behaviour compares
equal and anything else is printed as a diff.

A scenario that observes one of the deliberate differences of
../shared/DESIGN.md names it and carries a check: the difference must be
exactly the documented one (the reference does what the spec says, clawgate
does what DESIGN.md says), and everything else in the scenario must match.

Prints one line per scenario, each diff, and "N of M scenarios match";
exits 0 when every scenario matches or is a checked deliberate difference.
Each scenario uses its own loopback source address (127.0.0.N), so failed
auth in one scenario never delays or locks another.
"""
import asyncio
import json
import os
import re
import sys
import time
import uuid

import websockets

from devicekit import Device, b64url, signed_payload

RECV_TIMEOUT = 8.0
# The reference keys its browser failed-auth limiter on the Origin, so every
# scenario sends its own loopback Origin (a port from a per-run base): a
# lockout in one scenario, or in an earlier run, never spills into another.
ORIGIN_BASE = 20000 + (int(time.time()) % 200) * 150


def origin_of(src, extra=0):
    return f"http://127.0.0.1:{ORIGIN_BASE + int(src.rsplit('.', 1)[1]) + extra}"
ADMIN_SCOPES = ["operator.admin", "operator.read", "operator.write", "operator.approvals",
                "operator.pairing"]


# --------------------------------------------------------------------------
# Normalisation


UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# A UUID cut short by the 120-byte close-reason limit.
UUID_PREFIX_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f-]{0,27}")
HEX64_RE = re.compile(r"\b[0-9a-f]{64}\b")
# Display names the scenarios give their devices (cf-<first 8 hex of the id>).
NAME_RE = re.compile(r"^cf-[0-9a-f]{8}$")
B64URL43_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
VOLATILE_NUMBERS = {"durationMs", "uptimeMs", "retryAfterMs", "pid", "elapsedMs"}


def mask(value, key=None):
    """Replaces values that differ from run to run with placeholders."""
    if isinstance(value, dict):
        return {k: mask(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        if key in VOLATILE_NUMBERS:
            return "<n>"
        if isinstance(value, int) and value > 1_000_000_000_000:
            return "<epoch-ms>"
        return value
    if isinstance(value, str):
        if B64URL43_RE.match(value):
            return "<b64url43>"
        if NAME_RE.match(value):
            return "cf-<device>"
        s = UUID_RE.sub("<uuid>", value)
        s = UUID_PREFIX_RE.sub("<uuid-prefix>", s)
        return HEX64_RE.sub("<hex64>", s)
    return value


def diff(a, b, path=""):
    """Human-readable differences between two normalised observations."""
    out = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            p = f"{path}.{k}" if path else str(k)
            if k not in a:
                out.append(f"  {p}: only clawgate has it: {json.dumps(b[k])[:300]}")
            elif k not in b:
                out.append(f"  {p}: only the reference has it: {json.dumps(a[k])[:300]}")
            else:
                out += diff(a[k], b[k], p)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            out += diff(x, y, f"{path}[{i}]")
    elif a != b:
        out.append(f"  {path}: reference {json.dumps(a)[:300]} | clawgate {json.dumps(b)[:300]}")
    return out


def get(d, dotted):
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def strip(d, *dotted):
    """A deep copy of d without the given dotted paths (for deliberate-difference checks)."""
    d = json.loads(json.dumps(d))
    for path in dotted:
        parts = path.split(".")
        cur = d
        for p in parts[:-1]:
            cur = cur.get(p) if isinstance(cur, dict) else None
            if cur is None:
                break
        if isinstance(cur, dict):
            cur.pop(parts[-1], None)
    return d


# --------------------------------------------------------------------------
# Shapes: key sets and value types, recursively


def shape(value):
    """A value's shape: objects keep their keys, lists the shape of their
    first element ([] when empty), scalars become their JSON type name."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "string"


# Objects whose keys are data (plugin ids, channel ids), not a schema.
RECORD_KEYS = {"pluginSurfaceUrls", "channels", "channelLabels", "workerPools", "byStatus", "byRuntime",
               "byCode"}


# Fields the reference's own schema declares nullable and fills from its
# runtime state: `eventLoop.degradedSinceMs` is null until its event loop
# is degraded (on a busy machine it is a timestamp). Null on either side
# matches a value there.
NULLABLE_IN_REFERENCE = ("eventLoop.degradedSinceMs",)


def shape_diffs(ref, cg, path=""):
    """How two shapes differ: (path, kind) pairs, kind one of "missing"
    (only the reference has the key), "extra" (only clawgate has it), "null"
    (clawgate has null where the reference has a value) or "type:<ref>/<cg>".
    An empty list matches a list of anything (no elements, no element type),
    and so does an empty record (an object keyed by data: RECORD_KEYS) any
    record; non-empty records compare the shape of one value."""
    if isinstance(ref, dict) and isinstance(cg, dict) and path.rsplit(".", 1)[-1] in RECORD_KEYS:
        if not ref or not cg:
            return []
        return shape_diffs(next(iter(ref.values())), next(iter(cg.values())), f"{path}{{}}")
    if isinstance(ref, dict) and isinstance(cg, dict):
        out = []
        for k in sorted(set(ref) | set(cg)):
            p = f"{path}.{k}" if path else k
            if k not in cg:
                out.append((p, "missing"))
            elif k not in ref:
                out.append((p, "extra"))
            else:
                out += shape_diffs(ref[k], cg[k], p)
        return out
    if isinstance(ref, list) and isinstance(cg, list):
        return shape_diffs(ref[0], cg[0], f"{path}[]") if ref and cg else []
    if ref == cg:
        return []
    if "null" in (ref, cg) and path.endswith(NULLABLE_IN_REFERENCE):
        return []
    if cg == "null":
        return [(path, "null")]
    kind = lambda v: "object" if isinstance(v, dict) else "array" if isinstance(v, list) else v
    return [(path, f"type:{kind(ref)}/{kind(cg)}")]


def shapes_match(ref, cg):
    return [f"  {p}: {k}" for p, k in shape_diffs(ref, cg)]


def named_shape_differences(allowed, values=None):
    """A check for a scenario whose observation holds shapes: every shape
    difference must be one of `allowed` ({(path, kind): why}) and every
    allowed one must still occur (a fixed difference is dropped from the
    list, not left behind). `values` ({key: (ref value, clawgate value)})
    names observation keys compared by value instead, with both values
    pinned."""
    values = values or {}

    def check(ref, cg):
        problems = []
        for key, (want_ref, want_cg) in values.items():
            if ref.get(key) != want_ref:
                problems.append(f"reference {key}: {json.dumps(ref.get(key))[:300]}")
            if cg.get(key) != want_cg:
                problems.append(f"clawgate {key}: {json.dumps(cg.get(key))[:300]}")
        r, c = strip(ref, *values), strip(cg, *values)
        seen = set(shape_diffs(r, c))
        problems += [f"  {p}: {k} (not a named difference)" for p, k in sorted(seen - set(allowed))]
        problems += [f"  {p}: {k} no longer differs: drop it from the named differences"
                     for p, k in sorted(set(allowed) - seen)]
        return problems
    return check


def describe(allowed, extra=()):
    whys = list(extra)
    for why in allowed.values():
        if why not in whys:
            whys.append(why)
    return "; ".join(whys)


# Where clawgate's health differs in shape, on purpose: it has no agents,
# no session store and does not sample an event loop or CPU, so those
# fields are null (never invented), and it adds its own "gateway" object.
NO_AGENTS = "no agents: defaultAgentId is null"
NO_SESSIONS = "no session store: sessions.path is null"
NO_SAMPLES = ("eventLoop samples (intervalMs, delayP99Ms, delayMaxMs, utilization, cpuCoreRatio, "
              "cpuBreakdown) are null: clawgate does not sample an event loop or CPU")
GATEWAY_OBJECT = "an extra \"gateway\" object (clawgate's uptime and connections)"


def health_differences(prefix=""):
    allowed = {(prefix + "defaultAgentId", "null"): NO_AGENTS,
               (prefix + "sessions.path", "null"): NO_SESSIONS,
               (prefix + "gateway", "extra"): GATEWAY_OBJECT}
    for k in ("intervalMs", "delayP99Ms", "delayMaxMs", "utilization", "cpuCoreRatio", "cpuBreakdown"):
        allowed[(prefix + "eventLoop." + k, "null")] = NO_SAMPLES
    return allowed


# --------------------------------------------------------------------------
# Gateway connections


class Gateway:
    def __init__(self, name, port, token):
        self.name, self.port, self.token = name, int(port), token
        self.url = f"ws://127.0.0.1:{self.port}/"


class Conn:
    """One WebSocket to a gateway, opened from a chosen loopback source address."""

    def __init__(self, ws):
        self.ws = ws
        self.challenge = None
        self.seq = 0

    @classmethod
    async def open(cls, gw, src, origin=None, headers=None):
        hdrs = dict(headers or {})
        if origin:
            hdrs["Origin"] = origin
        ws = await websockets.connect(gw.url, additional_headers=hdrs, local_addr=(src, 0),
                                      max_size=None, open_timeout=RECV_TIMEOUT, ping_interval=None,
                                      compression=None)
        c = cls(ws)
        c.events = []
        c.challenge = await c.recv()
        return c

    async def send(self, frame):
        await self.ws.send(frame if isinstance(frame, (str, bytes)) else json.dumps(frame))

    async def recv(self, timeout=RECV_TIMEOUT):
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def request(self, method, params=None, rid=None):
        self.seq += 1
        rid = rid or f"r{self.seq}"
        frame = {"type": "req", "id": rid, "method": method}
        if params is not None:
            frame["params"] = params
        await self.send(frame)
        return await self.response(rid)

    async def response(self, rid, timeout=RECV_TIMEOUT):
        """The response to rid; events that arrive first are kept."""
        deadline = time.monotonic() + timeout
        while True:
            f = await self.recv(max(0.05, deadline - time.monotonic()))
            if f.get("type") == "res" and f.get("id") == rid:
                return f
            self.events.append(f)

    async def closed(self, timeout=RECV_TIMEOUT):
        """Waits for the close; (code, reason). Frames before it are dropped."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.ws.recv()
        except websockets.ConnectionClosed as e:
            return [e.rcvd.code, e.rcvd.reason] if e.rcvd else [1006, ""]
        except TimeoutError:
            return ["still open"]

    async def close(self):
        await self.ws.close()


async def wait_event(conn, name, timeout=RECV_TIMEOUT):
    """The next event frame called name (others are skipped)."""
    for i, f in enumerate(conn.events):
        if f.get("event") == name:
            return conn.events.pop(i)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            f = await conn.recv(left)
        except (TimeoutError, asyncio.TimeoutError):
            return None
        if f.get("type") == "event" and f.get("event") == name:
            return f
        conn.events.append(f)


def client_info(**over):
    c = {"id": "cli", "version": "1.0.0", "platform": "linux", "mode": "cli"}
    c.update(over)
    return c


def connect_params(gw, conn, device=None, *, role="operator", scopes=("operator.read",),
                   token=..., password=None, device_token=None, client=None, sign_token=...,
                   signed_at=None, nonce=None, version="v3", min_protocol=4, max_protocol=4,
                   public_key=None, device_id=None, signature=None, extra=None):
    client = client or client_info()
    params = {"minProtocol": min_protocol, "maxProtocol": max_protocol, "client": client,
              "role": role, "scopes": list(scopes)}
    auth = {}
    token = gw.token if token is ... else token
    if token is not None:
        auth["token"] = token
    if password is not None:
        auth["password"] = password
    if device_token is not None:
        auth["deviceToken"] = device_token
    if auth:
        params["auth"] = auth
    if device is not None:
        ch_nonce = conn.challenge["payload"]["nonce"]
        signed_at = int(time.time() * 1000) if signed_at is None else signed_at
        if sign_token is ...:
            sign_token = token if token is not None else (device_token or "")
        did = device_id or device.id
        payload = signed_payload(version, did, client, role, scopes, signed_at, sign_token, ch_nonce)
        params["device"] = {"id": did, "publicKey": public_key or device.public_key,
                            "signature": signature or device.sign(payload),
                            "signedAt": signed_at, "nonce": ch_nonce if nonce is None else nonce}
    if extra:
        params.update(extra)
    return params


def summarize_response(f):
    """The comparable part of a response frame."""
    if f is None:
        return None
    out = {"type": f.get("type"), "ok": f.get("ok")}
    if "error" in f:
        out["error"] = f["error"]
    return out


def hello_summary(payload):
    """The parts of hello-ok that clients read and clawgate owns."""
    return {
        "type": payload.get("type"),
        "protocol": payload.get("protocol"),
        "auth": payload.get("auth"),
        "server": sorted(payload.get("server", {})),
        "policy": {k: payload.get("policy", {}).get(k) for k in
                   ("maxPayload", "maxBufferedBytes", "tickIntervalMs")},
        "snapshotKeys": sorted(k for k in ("presence", "health", "stateVersion", "uptimeMs", "authMode")
                               if k in payload.get("snapshot", {})),
    }


async def handshake(gw, src, device=None, *, origin=None, headers=None, keep=False, **kw):
    """Opens a socket, sends connect, and returns (observation, conn-or-None).

    On failure the observation has the response and the close; on success it
    has the hello-ok summary (and the socket is returned when keep=True)."""
    conn = await Conn.open(gw, src, origin=origin, headers=headers)
    conn.events = []
    params = connect_params(gw, conn, device, **kw)
    await conn.send({"type": "req", "id": "c1", "method": "connect", "params": params})
    try:
        res = await conn.response("c1")
    except websockets.ConnectionClosed as e:
        return {"response": None, "close": [e.rcvd.code, e.rcvd.reason] if e.rcvd else [1006, ""]}, None
    if res.get("ok"):
        obs = {"response": {"ok": True}, "hello": hello_summary(res["payload"])}
        obs["_raw"] = res["payload"]
        if keep:
            return obs, conn
        await conn.close()
        return obs, None
    obs = {"response": summarize_response(res), "close": await conn.closed()}
    return obs, None


async def admin(gw, src):
    """A device-less CLI-style operator session with the shared token (as the openclaw CLI opens)."""
    obs, conn = await handshake(gw, src, None, scopes=ADMIN_SCOPES, keep=True)
    if conn is None:
        raise RuntimeError(f"{gw.name}: admin connect failed: {obs}")
    return conn


async def paired(gw, src, scopes=("operator.read",), **kw):
    """A new device, paired silently from loopback; returns (device, hello payload)."""
    dev = Device()
    obs, _ = await handshake(gw, src, dev, scopes=scopes, client=client_info(displayName=f"cf-{dev.id[:8]}"), **kw)
    if not obs["response"].get("ok"):
        raise RuntimeError(f"{gw.name}: silent pairing failed: {obs}")
    return dev, obs["_raw"]


def named(dev):
    return client_info(displayName=f"cf-{dev.id[:8]}")


async def raw_first_frame(gw, src, frame):
    conn = await Conn.open(gw, src)
    await conn.send(frame)
    try:
        f = await conn.recv()
    except websockets.ConnectionClosed as e:
        return {"response": None, "close": [e.rcvd.code, e.rcvd.reason] if e.rcvd else [1006, ""]}
    except (TimeoutError, asyncio.TimeoutError):
        return {"response": "none within 8 s", "close": await conn.closed(2)}
    return {"response": summarize_response(f), "close": await conn.closed()}


def drop_raw(obs):
    if isinstance(obs, dict):
        return {k: drop_raw(v) for k, v in obs.items() if k != "_raw"}
    if isinstance(obs, list):
        return [drop_raw(v) for v in obs]
    return obs


# clawgate's short pairing codes (README "Pairing codes"): an extra
# `pairingCode` key in PAIRING_REQUIRED details (after every reference key)
# and in pending records. A well-formed one, in its place, is dropped from
# clawgate's observations before the comparison; anything else stays and
# shows as a difference.
PAIRING_CODE_RE = re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")


def drop_pairing_codes(obs):
    if isinstance(obs, dict):
        keys = list(obs)
        out = {}
        for k, v in obs.items():
            if k == "pairingCode" and isinstance(v, str) and PAIRING_CODE_RE.match(v) \
                    and (obs.get("code") != "PAIRING_REQUIRED" or keys[-1] == "pairingCode"):
                continue
            out[k] = drop_pairing_codes(v)
        return out
    if isinstance(obs, list):
        return [drop_pairing_codes(v) for v in obs]
    return obs


# --------------------------------------------------------------------------
# Scenarios. Each takes (gateway, source address) and returns an observation.

SCENARIOS = []


def scenario(name, deliberate=None, check=None, compare=None):
    """Registers a scenario; deliberate names a DESIGN.md difference and
    check(ref, clawgate) -> list of problems verifies it is exactly that.
    There is no third kind: a difference is a decision or a failure.
    compare(ref, clawgate) -> problems replaces plain equality (shapes)."""
    def wrap(fn):
        SCENARIOS.append({"name": name, "fn": fn, "deliberate": deliberate, "check": check,
                          "compare": compare})
        return fn
    return wrap


def challenge_check(ref, cg):
    problems = []
    if ref["capabilities"] != ["model-catalog-snapshot"]:
        problems.append(f"reference capabilities {ref['capabilities']}")
    if cg["capabilities"] != []:
        problems.append(f"clawgate capabilities {cg['capabilities']}")
    if strip(ref, "capabilities") != strip(cg, "capabilities"):
        problems += diff(strip(ref, "capabilities"), strip(cg, "capabilities"))
    return problems


@scenario("connect.challenge event", deliberate="the challenge advertises no capabilities (no model catalog)",
          check=challenge_check)
async def s_challenge(gw, src):
    conn = await Conn.open(gw, src)
    ch = conn.challenge
    await conn.close()
    p = ch.get("payload", {})
    return {"frame": sorted(ch), "event": ch.get("event"), "payloadKeys": sorted(p),
            "payloadShape": shape({k: v for k, v in p.items() if k != "capabilities"}),
            "nonceIsUuid": bool(UUID_RE.fullmatch(p.get("nonce", ""))),
            "tsIsNow": abs(p.get("ts", 0) - time.time() * 1000) < 60000,
            "capabilities": p.get("capabilities")}


@scenario("first frame not JSON")
async def s_not_json(gw, src):
    return await raw_first_frame(gw, src, "this is not json")


@scenario("first frame not a request")
async def s_not_request(gw, src):
    return await raw_first_frame(gw, src, {"type": "event", "event": "x"})


@scenario("first request is not connect")
async def s_not_connect(gw, src):
    return await raw_first_frame(gw, src, {"type": "req", "id": "h1", "method": "health", "params": {}})


@scenario("connect params: unknown client id")
async def s_bad_client_id(gw, src):
    conn = await Conn.open(gw, src)
    p = connect_params(gw, conn, None, client=client_info(id="not-a-client"))
    await conn.close()
    return await raw_first_frame(gw, src, {"type": "req", "id": "c1", "method": "connect", "params": p})


@scenario("connect params: unexpected property")
async def s_extra_prop(gw, src):
    return await raw_first_frame(gw, src, {"type": "req", "id": "c1", "method": "connect", "params": {
        "minProtocol": 4, "maxProtocol": 4, "client": client_info(), "foo": 1,
        "auth": {"token": gw.token}}})


@scenario("connect params: invalid role")
async def s_bad_role(gw, src):
    return (await handshake(gw, src, None, role="admin"))[0]


@scenario("protocol mismatch (5..5)")
async def s_proto5(gw, src):
    return (await handshake(gw, src, None, min_protocol=5, max_protocol=5))[0]


@scenario("protocol mismatch: cli asking for 3..3")
async def s_proto3(gw, src):
    return (await handshake(gw, src, None, min_protocol=3, max_protocol=3))[0]


@scenario("probe client with protocol 3..3")
async def s_probe3(gw, src):
    obs, _ = await handshake(gw, src, None, min_protocol=3, max_protocol=3,
                             client=client_info(id="openclaw-probe", mode="probe"), scopes=[])
    return obs


@scenario("pre-auth frame over 64 KiB: close code and (empty) reason")
async def s_oversize(gw, src):
    return await raw_first_frame(gw, src, json.dumps({"type": "req", "id": "c1", "method": "connect",
                                                      "params": {"pad": "x" * 70000}}))


@scenario("no auth, no device")
async def s_noauth_nodevice(gw, src):
    return (await handshake(gw, src, None, token=None))[0]


@scenario("no auth, with device")
async def s_noauth_device(gw, src):
    return (await handshake(gw, src, Device(), token=None))[0]


@scenario("wrong token, no device")
async def s_wrong_nodevice(gw, src):
    return (await handshake(gw, src, None, token="wrong-token"))[0]


@scenario("wrong token, new (unpaired) device")
async def s_wrong_newdevice(gw, src):
    return (await handshake(gw, src, Device(), token="wrong-token"))[0]


@scenario("wrong token, paired device, no device token")
async def s_wrong_paired(gw, src):
    dev, _ = await paired(gw, src)
    return (await handshake(gw, src, dev, token="wrong-token", client=named(dev)))[0]


@scenario("wrong secret in auth.password on a token gateway")
async def s_password_wrong(gw, src):
    return (await handshake(gw, src, None, token=None, password="wrong-password"))[0]


@scenario("correct token in auth.password")
async def s_password_right(gw, src):
    return (await handshake(gw, src, None, token=None, password=gw.token, scopes=["operator.read"]))[0]


@scenario("device-less cli with the shared token keeps its scopes")
async def s_deviceless_cli(gw, src):
    obs, conn = await handshake(gw, src, None, scopes=["operator.read", "operator.pairing"], keep=True)
    if conn:
        obs["health"] = summarize_response(await conn.request("health", {}))["ok"]
        await conn.close()
    return obs


@scenario("device-less test/test client gets no scopes")
async def s_deviceless_test(gw, src):
    obs, conn = await handshake(gw, src, None, client=client_info(id="test", mode="test"), keep=True)
    if conn:
        obs["health"] = summarize_response(await conn.request("health", {}))
        await conn.close()
    return obs


@scenario("node role without a device identity")
async def s_node_nodevice(gw, src):
    return (await handshake(gw, src, None, role="node", scopes=[],
                            client=client_info(id="node-host", mode="node")))[0]


@scenario("Origin not allowed")
async def s_origin_evil(gw, src):
    return (await handshake(gw, src, Device(), origin="http://evil.example"))[0]


@scenario("Origin: null")
async def s_origin_null(gw, src):
    return (await handshake(gw, src, Device(), origin="null"))[0]


@scenario("X-Forwarded-For from a loopback peer without trusted proxies")
async def s_xff(gw, src):
    try:
        await Conn.open(gw, src, headers={"X-Forwarded-For": "203.0.113.7"})
    except websockets.InvalidStatus as e:
        return {"upgrade": e.response.status_code}
    return {"upgrade": 101}


@scenario("device id does not match the public key")
async def s_id_mismatch(gw, src):
    return (await handshake(gw, src, Device(), device_id="0" * 64))[0]


@scenario("device signature expired (signedAt 121 s ago)")
async def s_expired(gw, src):
    return (await handshake(gw, src, Device(), signed_at=int(time.time() * 1000) - 121_000))[0]


@scenario("device signedAt 110 s ahead is accepted")
async def s_future_ok(gw, src):
    dev = Device()
    return (await handshake(gw, src, dev, signed_at=int(time.time() * 1000) + 110_000, client=named(dev)))[0]


@scenario("blank device nonce")
async def s_blank_nonce(gw, src):
    return (await handshake(gw, src, Device(), nonce=" "))[0]


@scenario("device nonce from another connection")
async def s_nonce_mismatch(gw, src):
    return (await handshake(gw, src, Device(), nonce=str(uuid.uuid4())))[0]


@scenario("bad device signature")
async def s_bad_sig(gw, src):
    return (await handshake(gw, src, Device(), signature=b64url(b"\x01" * 64)))[0]


@scenario("signature over an empty token slot while auth.token is sent")
async def s_sig_empty_slot(gw, src):
    return (await handshake(gw, src, Device(), sign_token=""))[0]


@scenario("wrong token and a bad signature: the device error wins")
async def s_wrong_and_bad_sig(gw, src):
    return (await handshake(gw, src, Device(), token="wrong-token", signature=b64url(b"\x02" * 64)))[0]


@scenario("v2 signature payload accepted")
async def s_v2(gw, src):
    dev = Device()
    return (await handshake(gw, src, dev, version="v2", client=named(dev)))[0]


@scenario("PEM public key accepted")
async def s_pem(gw, src):
    dev = Device()
    return (await handshake(gw, src, dev, public_key=dev.pem, client=named(dev)))[0]


@scenario("new loopback device is paired silently, with a device token")
async def s_silent(gw, src):
    dev = Device()
    obs, _ = await handshake(gw, src, dev, scopes=["operator.read"], client=named(dev))
    a = await admin(gw, src)
    lst = (await a.request("device.pair.list", {}))["payload"]
    await a.close()
    obs["paired"] = [p for p in lst["paired"] if p["deviceId"] == dev.id]
    for p in obs["paired"]:
        p.pop("lastSeenReason", None)  # compared in "paired record after a device-token connect"
    return obs


def wait_ok(res):
    return summarize_response(res)


@scenario("new device with an Origin header waits for approval; the retry reuses the request")
async def s_pairing_required(gw, src):
    dev = Device()
    origin = origin_of(src)
    a = await admin(gw, src)
    first, _ = await handshake(gw, src, dev, origin=origin, client=named(dev))
    ev = await wait_event(a, "device.pair.requested")
    second, _ = await handshake(gw, src, dev, origin=origin, client=named(dev))
    rid1 = get(first, "response.error.details.requestId")
    rid2 = get(second, "response.error.details.requestId")
    lst = (await a.request("device.pair.list", {}))["payload"]
    await a.close()
    return {"first": first, "secondReusesRequestId": rid1 == rid2 and rid1 is not None,
            "requestedEvent": ev and {"event": ev["event"], "payload": ev["payload"], "hasSeq": "seq" in ev},
            "eventRequestIdMatches": bool(ev) and ev["payload"].get("requestId") == rid1,
            "pending": [p for p in lst["pending"] if p["deviceId"] == dev.id]}


async def pending_request(gw, src, dev, origin=True, **kw):
    o = origin_of(src) if origin else None
    obs, _ = await handshake(gw, src, dev, origin=o, client=kw.pop("client", named(dev)), **kw)
    return obs, get(obs, "response.error.details.requestId")


@scenario("approve a request; resolved event; the device connects with a device token")
async def s_approve(gw, src):
    dev = Device()
    a = await admin(gw, src)
    _, rid = await pending_request(gw, src, dev, scopes=["operator.read", "operator.write"])
    res = await a.request("device.pair.approve", {"requestId": rid})
    ev = await wait_event(a, "device.pair.resolved")
    again = await a.request("device.pair.approve", {"requestId": rid})
    after, _ = await handshake(gw, src, dev, origin=origin_of(src),
                               scopes=["operator.read", "operator.write"], client=named(dev))
    await a.close()
    return {"approve": wait_ok(res), "payload": res.get("payload"),
            "resolvedEvent": ev and ev["payload"], "approveAgain": wait_ok(again), "connect": after}


@scenario("reject a request, twice")
async def s_reject(gw, src):
    dev = Device()
    a = await admin(gw, src)
    _, rid = await pending_request(gw, src, dev)
    res = await a.request("device.pair.reject", {"requestId": rid})
    ev = await wait_event(a, "device.pair.resolved")
    again = await a.request("device.pair.reject", {"requestId": rid})
    lst = (await a.request("device.pair.list", {}))["payload"]
    await a.close()
    return {"reject": wait_ok(res), "payload": res.get("payload"), "resolvedEvent": ev and ev["payload"],
            "rejectAgain": wait_ok(again), "stillPending": [p for p in lst["pending"] if p["deviceId"] == dev.id]}


@scenario("approve with an unknown requestId")
async def s_approve_unknown(gw, src):
    a = await admin(gw, src)
    res = await a.request("device.pair.approve", {"requestId": str(uuid.uuid4())})
    await a.close()
    return wait_ok(res)


@scenario("approve without params")
async def s_approve_noparams(gw, src):
    a = await admin(gw, src)
    res = await a.request("device.pair.approve", {})
    await a.close()
    return wait_ok(res)


@scenario("role upgrade to node waits for approval")
async def s_role_upgrade(gw, src):
    dev, _ = await paired(gw, src)
    obs, _ = await handshake(gw, src, dev, role="node", scopes=[], client=named(dev))
    return obs


@scenario("scope upgrade with an Origin header waits for approval")
async def s_scope_upgrade(gw, src):
    dev = Device()
    a = await admin(gw, src)
    _, rid = await pending_request(gw, src, dev, scopes=["operator.read"])
    await a.request("device.pair.approve", {"requestId": rid})
    obs, _ = await pending_request(gw, src, dev, scopes=["operator.read", "operator.write"])
    await a.close()
    return obs


@scenario("scope upgrade from loopback with the shared token is approved silently, with a new token")
async def s_scope_upgrade_silent(gw, src):
    dev, hello1 = await paired(gw, src, scopes=["operator.read"])
    obs, _ = await handshake(gw, src, dev, scopes=["operator.read", "operator.write"], client=named(dev))
    hello2 = obs.get("_raw", {})
    old = await handshake(gw, src, dev, token=None, device_token=hello1["auth"]["deviceToken"],
                          scopes=["operator.read"], client=named(dev))
    return {"upgrade": obs, "newToken": get(hello2, "auth.deviceToken") != hello1["auth"]["deviceToken"],
            "oldTokenAfterwards": old[0]}


@scenario("requested scopes within the approved ones: no request")
async def s_scope_subset(gw, src):
    dev, _ = await paired(gw, src, scopes=["operator.read", "operator.write"])
    return (await handshake(gw, src, dev, origin=origin_of(src), scopes=["operator.read"],
                            client=named(dev)))[0]


@scenario("platform change needs re-approval (metadata upgrade)")
async def s_metadata_upgrade(gw, src):
    dev, _ = await paired(gw, src)
    return (await handshake(gw, src, dev, origin=origin_of(src),
                            client=client_info(platform="windows", displayName=f"cf-{dev.id[:8]}")))[0]


def supersede_check(ref, cg):
    problems = []
    if get(ref, "second.response.error.details.reason") != "role-upgrade":
        problems.append("no role-upgrade request on the reference")
    rp, cp = ref["pending"], cg["pending"]
    if len(rp) != 1 or sorted(rp[0]["roles"]) != ["node", "operator"]:
        problems.append(f"reference pending roles {rp and rp[0].get('roles')}, expected the union [operator, node]")
    if len(cp) != 1 or cp[0]["roles"] != ["node"]:
        problems.append(f"clawgate pending roles {cp and cp[0].get('roles')}, expected only [node]")
    rest = diff(strip(ref, "pending"), strip(cg, "pending"))
    return problems + rest


@scenario("a superseding request (role upgrade after a scope upgrade)",
          deliberate="a superseding pairing request does not union earlier requests' roles and scopes",
          check=supersede_check)
async def s_supersede(gw, src):
    dev = Device()
    a = await admin(gw, src)
    _, rid = await pending_request(gw, src, dev, scopes=["operator.read"])
    await a.request("device.pair.approve", {"requestId": rid})
    first, _ = await pending_request(gw, src, dev, scopes=["operator.read", "operator.write"])
    second, _ = await pending_request(gw, src, dev, role="node", scopes=[])
    evs = []
    while (e := await wait_event(a, "device.pair.resolved", 1.0)) is not None:
        evs.append(e["payload"]["decision"])
    lst = (await a.request("device.pair.list", {}))["payload"]
    await a.close()
    pend = [{"roles": p["roles"], "scopes": p["scopes"], "role": p["role"]}
            for p in lst["pending"] if p["deviceId"] == dev.id]
    return {"first": first, "second": second, "newRequestId":
            get(first, "response.error.details.requestId") != get(second, "response.error.details.requestId"),
            "supersededEvents": evs, "pending": pend}


def stable_request_check(ref, cg):
    problems = []
    if ref.get("sameRequestId") is not False:
        problems.append("the reference kept the request; expected a new (superseding) one")
    if ref.get("pendingScopes") != ["operator.read", "operator.write"]:
        problems.append(f"reference pending scopes {ref.get('pendingScopes')}, expected the union")
    if cg.get("sameRequestId") is not True or cg.get("sameCode") is not True:
        problems.append("clawgate did not keep the request id and pairing code")
    if cg.get("pendingScopes") != ["operator.write"]:
        problems.append(f"clawgate pending scopes {cg.get('pendingScopes')}, expected only the latest ask")
    if cg.get("resolvedEvents") != []:
        problems.append(f"clawgate resolved the kept request: {cg.get('resolvedEvents')}")
    if cg.get("requestedAgainSameId") is not True:
        problems.append("clawgate did not announce the updated ask with the same id")
    keep = ("first", "secondReason")
    return problems + diff({k: ref.get(k) for k in keep}, {k: cg.get(k) for k in keep})


@scenario("a retry for the same role with other scopes while pending",
          deliberate="one stable request per device and role: the same id and pairing code, the latest ask shown, "
                     "never a union (the reference supersedes it with a new request)",
          check=stable_request_check)
async def s_stable_request(gw, src):
    dev = Device()
    a = await admin(gw, src)
    first, rid1 = await pending_request(gw, src, dev, scopes=["operator.read"])
    await wait_event(a, "device.pair.requested")
    second, rid2 = await pending_request(gw, src, dev, scopes=["operator.write"])
    again = await wait_event(a, "device.pair.requested", 3.0)
    evs = []
    while (e := await wait_event(a, "device.pair.resolved", 1.0)) is not None:
        evs.append(e["payload"]["decision"])
    lst = (await a.request("device.pair.list", {}))["payload"]
    await a.close()
    pend = [p for p in lst["pending"] if p["deviceId"] == dev.id]
    code1 = get(first, "response.error.details.pairingCode")
    return {"first": first, "secondReason": get(second, "response.error.details.reason"),
            "sameRequestId": rid1 == rid2,
            "sameCode": code1 is not None and code1 == get(second, "response.error.details.pairingCode"),
            "requestedAgainSameId": bool(again) and again["payload"].get("requestId") == rid1,
            "resolvedEvents": evs,
            "pendingScopes": sorted(pend[0]["scopes"]) if len(pend) == 1 else [p["scopes"] for p in pend]}


@scenario("wrong shared token plus a valid device token (the bounded retry)")
async def s_retry(gw, src):
    dev, hello = await paired(gw, src)
    return (await handshake(gw, src, dev, token="wrong-token", device_token=hello["auth"]["deviceToken"],
                            sign_token="wrong-token", client=named(dev)))[0]


def echo_check(ref, cg):
    """clawgate hands a device-token connect its own token back; the reference re-sends its stored one."""
    problems = []
    if ref.get("sameTokenBack") is not True:
        problems.append("the reference did not echo the stored token")
    if cg.get("sameTokenBack") is not True:
        problems.append("clawgate did not echo the presented token")
    return problems + diff(strip(ref, "sameTokenBack"), strip(cg, "sameTokenBack"))


@scenario("device token alone (no shared token)")
async def s_device_token_only(gw, src):
    dev, hello = await paired(gw, src)
    obs, _ = await handshake(gw, src, dev, token=None, device_token=hello["auth"]["deviceToken"], client=named(dev))
    obs["sameTokenBack"] = get(obs, "_raw.auth.deviceToken") == hello["auth"]["deviceToken"]
    return obs


@scenario("device token in the auth.token slot")
async def s_device_token_in_token_slot(gw, src):
    dev, hello = await paired(gw, src)
    obs, _ = await handshake(gw, src, dev, token=hello["auth"]["deviceToken"], client=named(dev))
    return obs


@scenario("bogus device token")
async def s_bogus_device_token(gw, src):
    dev, _ = await paired(gw, src)
    return (await handshake(gw, src, dev, token=None, device_token="A" * 43, client=named(dev)))[0]


@scenario("device token asking for broader scopes")
async def s_scope_mismatch(gw, src):
    dev, hello = await paired(gw, src)
    return (await handshake(gw, src, dev, token=None, device_token=hello["auth"]["deviceToken"],
                            scopes=["operator.read", "operator.admin"], client=named(dev)))[0]


@scenario("reconnect with the shared token and no device token")
async def s_reconnect_shared(gw, src):
    dev, hello = await paired(gw, src)
    obs, _ = await handshake(gw, src, dev, client=named(dev))
    obs["sameTokenAsFirst"] = get(obs, "_raw.auth.deviceToken") == hello["auth"]["deviceToken"]
    # Both tokens work afterwards.
    old, _ = await handshake(gw, src, dev, token=None, device_token=hello["auth"]["deviceToken"], client=named(dev))
    obs["firstTokenStillWorks"] = old["response"]
    return obs


@scenario("rotate another device's token (admin)")
async def s_rotate(gw, src):
    dev, hello = await paired(gw, src)
    _, live = await handshake(gw, src, dev, token=None, device_token=hello["auth"]["deviceToken"],
                              client=named(dev), keep=True)
    a = await admin(gw, src)
    res = await a.request("device.token.rotate", {"deviceId": dev.id, "role": "operator"})
    live_close = await live.closed() if live else None
    old, _ = await handshake(gw, src, dev, token=None, device_token=hello["auth"]["deviceToken"], client=named(dev))
    await a.close()
    return {"rotate": wait_ok(res), "payload": res.get("payload"), "liveSession": live_close, "oldToken": old}


def close_reason_check(expected_ref, expected_cg, field):
    def check(ref, cg):
        problems = []
        if get(ref, field) != expected_ref:
            problems.append(f"reference {field} {get(ref, field)}, expected {expected_ref}")
        if get(cg, field) != expected_cg:
            problems.append(f"clawgate {field} {get(cg, field)}, expected {expected_cg}")
        return problems + diff(strip(ref, field), strip(cg, field))
    return check


SCENARIOS[-1]["deliberate"] = "close reasons say what happened (device token rotated)"
SCENARIOS[-1]["check"] = close_reason_check([4001, "device removed"], [4001, "device token rotated"], "liveSession")


@scenario("a device rotates its own token over its device-token session")
async def s_rotate_self(gw, src):
    dev, hello = await paired(gw, src, scopes=["operator.read", "operator.pairing"])
    obs, conn = await handshake(gw, src, dev, token=None, device_token=hello["auth"]["deviceToken"],
                                scopes=["operator.read", "operator.pairing"], client=named(dev), keep=True)
    if conn is None:
        return {"connect": obs}
    res = await conn.request("device.token.rotate", {"deviceId": dev.id, "role": "operator"})
    close = await conn.closed()
    token = get(res, "payload.token")
    new, _ = await handshake(gw, src, dev, token=None, device_token=token or "x",
                             scopes=["operator.read", "operator.pairing"], client=named(dev))
    return {"rotate": wait_ok(res), "payload": res.get("payload"), "ownSession": close, "newTokenWorks": new["response"]}


SCENARIOS[-1]["deliberate"] = "close reasons say what happened (device token rotated)"
SCENARIOS[-1]["check"] = close_reason_check([4001, "device removed"], [4001, "device token rotated"], "ownSession")


@scenario("revoke a device's token; a shared-token connect from loopback re-issues it")
async def s_revoke(gw, src):
    dev, hello = await paired(gw, src)
    _, live = await handshake(gw, src, dev, token=None, device_token=hello["auth"]["deviceToken"],
                              client=named(dev), keep=True)
    a = await admin(gw, src)
    res = await a.request("device.token.revoke", {"deviceId": dev.id, "role": "operator"})
    live_close = await live.closed() if live else None
    old, _ = await handshake(gw, src, dev, token=None, device_token=hello["auth"]["deviceToken"], client=named(dev))
    shared, _ = await handshake(gw, src, dev, client=named(dev))
    lst = (await a.request("device.pair.list", {}))["payload"]
    await a.close()
    rec = [p for p in lst["paired"] if p["deviceId"] == dev.id]
    return {"revoke": wait_ok(res), "payload": res.get("payload"), "liveSession": live_close,
            "oldToken": old, "sharedTokenConnect": shared,
            "tokensInList": rec and rec[0].get("tokens")}


SCENARIOS[-1]["deliberate"] = "close reasons say what happened (device token revoked)"
SCENARIOS[-1]["check"] = close_reason_check([4001, "device removed"], [4001, "device token revoked"], "liveSession")


@scenario("remove a device, twice; its live session closes")
async def s_remove(gw, src):
    dev, hello = await paired(gw, src)
    _, live = await handshake(gw, src, dev, token=None, device_token=hello["auth"]["deviceToken"],
                              client=named(dev), keep=True)
    a = await admin(gw, src)
    res = await a.request("device.pair.remove", {"deviceId": dev.id})
    live_close = await live.closed() if live else None
    again = await a.request("device.pair.remove", {"deviceId": dev.id})
    old, _ = await handshake(gw, src, dev, token=None, device_token=hello["auth"]["deviceToken"], client=named(dev))
    await a.close()
    return {"remove": wait_ok(res), "payload": res.get("payload"), "liveSession": live_close,
            "removeAgain": wait_ok(again), "oldToken": old}


@scenario("rename a device")
async def s_rename(gw, src):
    dev, _ = await paired(gw, src)
    a = await admin(gw, src)
    res = await a.request("device.pair.rename", {"deviceId": dev.id, "label": "Conformance Laptop"})
    lst = (await a.request("device.pair.list", {}))["payload"]
    await a.close()
    rec = [p for p in lst["paired"] if p["deviceId"] == dev.id]
    return {"rename": wait_ok(res), "payload": res.get("payload"),
            "operatorLabel": rec and rec[0].get("operatorLabel")}


@scenario("rotate / revoke / remove / rename an unknown device")
async def s_unknown_device(gw, src):
    a = await admin(gw, src)
    ghost = "f" * 64
    out = {
        "rotate": wait_ok(await a.request("device.token.rotate", {"deviceId": ghost, "role": "operator"})),
        "revoke": wait_ok(await a.request("device.token.revoke", {"deviceId": ghost, "role": "operator"})),
        "remove": wait_ok(await a.request("device.pair.remove", {"deviceId": ghost})),
        "rename": wait_ok(await a.request("device.pair.rename", {"deviceId": ghost, "label": "x"})),
    }
    await a.close()
    return out


@scenario("device RPCs need operator.pairing")
async def s_missing_scope(gw, src):
    obs, conn = await handshake(gw, src, None, scopes=["operator.read"], keep=True)
    if conn is None:
        return obs
    out = {}
    for method, params in [("device.pair.list", {}), ("device.pair.approve", {"requestId": "x"}),
                           ("device.pair.reject", {"requestId": "x"}), ("device.pair.remove", {"deviceId": "x"}),
                           ("device.pair.rename", {"deviceId": "x", "label": "y"}),
                           ("device.token.rotate", {"deviceId": "x", "role": "operator"}),
                           ("device.token.revoke", {"deviceId": "x", "role": "operator"})]:
        out[method] = wait_ok(await conn.request(method, params))
    out["stillOpen"] = wait_ok(await conn.request("health", {}))["ok"]
    await conn.close()
    return out


@scenario("a paired non-admin device sees only itself and cannot manage others")
async def s_non_admin_device(gw, src):
    other, _ = await paired(gw, src)
    dev, hello = await paired(gw, src, scopes=["operator.read", "operator.pairing"])
    obs, conn = await handshake(gw, src, dev, token=None, device_token=hello["auth"]["deviceToken"],
                                scopes=["operator.read", "operator.pairing"], client=named(dev), keep=True)
    if conn is None:
        return {"connect": obs}
    lst = (await conn.request("device.pair.list", {}))
    ids = sorted({p["deviceId"] for p in lst.get("payload", {}).get("paired", [])} - {dev.id, other.id})
    seen = {p["deviceId"] for p in lst.get("payload", {}).get("paired", [])}
    out = {"list": {"ok": lst.get("ok"), "seesSelf": dev.id in seen, "seesOther": other.id in seen,
                    "seesAnyoneElse": bool(ids)},
           "rotateOther": wait_ok(await conn.request("device.token.rotate", {"deviceId": other.id, "role": "operator"})),
           "revokeOther": wait_ok(await conn.request("device.token.revoke", {"deviceId": other.id, "role": "operator"})),
           "removeOther": wait_ok(await conn.request("device.pair.remove", {"deviceId": other.id})),
           "rotateOwnNode": wait_ok(await conn.request("device.token.rotate", {"deviceId": dev.id, "role": "node"}))}
    await conn.close()
    return out


@scenario("unknown method, bad frame and bad JSON after the handshake")
async def s_post_auth_frames(gw, src):
    obs, conn = await handshake(gw, src, None, scopes=ADMIN_SCOPES, keep=True)
    out = {"unknown": wait_ok(await conn.request("no.such.method", {}))}
    await conn.send({"type": "req", "id": "b1"})
    out["noMethod"] = summarize_response(await conn.response("b1"))
    await conn.send("{not json")
    out["afterBadJson"] = wait_ok(await conn.request("health", {}))["ok"]
    await conn.close()
    return out


def extra_gateway_check(ref, cg):
    problems = []
    for m in ("health", "status"):
        keys = cg[m]["keys"]
        if "gateway" not in keys:
            problems.append(f"clawgate {m} has no gateway object")
        cg = json.loads(json.dumps(cg))
        cg[m]["keys"] = [k for k in keys if k != "gateway"]
    return problems + diff(ref, cg)


@scenario("health and status results",
          deliberate="health and status results carry an extra \"gateway\" object (clawgate's version, uptime, "
                     "auth mode and connection counts, read by the clawgate CLI); every reference key is present",
          check=extra_gateway_check)
async def s_health_status(gw, src):
    a = await admin(gw, src)
    h = await a.request("health", {})
    s = await a.request("status", {})
    hb = await a.request("last-heartbeat", {})
    sp = await a.request("system-presence", {})
    await a.close()
    return {"health": {"ok": h.get("ok"), "keys": sorted(h.get("payload", {})),
                       "payloadOk": get(h, "payload.ok")},
            "status": {"ok": s.get("ok"), "keys": sorted(s.get("payload", {})),
                       "tokenAbsent": gw.token not in json.dumps(s)},
            "last-heartbeat": {"ok": hb.get("ok")},
            "system-presence": {"ok": sp.get("ok"), "isList": isinstance(sp.get("payload"), list)}}


@scenario("hello-ok for an admin CLI session")
async def s_admin_hello(gw, src):
    obs, conn = await handshake(gw, src, None, scopes=ADMIN_SCOPES, keep=True)
    raw = obs.pop("_raw")
    await conn.close()
    snap = raw.get("snapshot", {})
    # Fields of parts clawgate does not have (features lists, plugin and UI
    # widget fields, appliedConfigHash, updateSchedule) are not compared.
    owned = ("suspension", "presence", "health", "stateVersion", "uptimeMs", "sessionDefaults", "authMode",
             "configPath", "stateDir")
    return {"hello": obs["hello"], "snapshot": {k: k in snap for k in owned},
            "suspension": snap.get("suspension"), "sessionDefaults": snap.get("sessionDefaults"),
            "authMode": snap.get("authMode"), "featureKeys": sorted(raw.get("features", {}))}


HEALTH_SHAPE = health_differences("shape.")


@scenario("health result: key sets and value types", deliberate=describe(HEALTH_SHAPE),
          check=named_shape_differences(HEALTH_SHAPE))
async def s_health_shape(gw, src):
    a = await admin(gw, src)
    h = await a.request("health", {})
    await a.close()
    return {"ok": h.get("ok"), "shape": shape(h.get("payload"))}


@scenario("system-presence: the gateway's own entry (key set and value types)",
          compare=lambda ref, cg: shapes_match(ref, cg))
async def s_presence_self(gw, src):
    a = await admin(gw, src)
    res = await a.request("system-presence", {})
    await a.close()
    own = [e for e in res.get("payload") or [] if e.get("reason") == "self"]
    return {"selfEntries": len(own), "self": shape(own[0]) if own else "absent"}


NO_USERS = "presence entries carry no \"user\": clawgate has no user profiles"
PRESENCE_SHAPE = {("ui.user", "missing"): NO_USERS}


@scenario("system-presence: connected clients (cli and backend helper with a deviceFamily, a UI app)",
          deliberate=describe(PRESENCE_SHAPE), check=named_shape_differences(PRESENCE_SHAPE))
async def s_presence_clients(gw, src):
    kinds = {"cli": client_info(deviceFamily="Laptop"),
             "backend": client_info(id="gateway-client", mode="backend", deviceFamily="Server"),
             "ui": client_info(id="openclaw-linux", mode="ui", deviceFamily="Laptop",
                               modelIdentifier="XPS13,9", instanceId=str(uuid.uuid4()))}
    live = {}
    for name, client in kinds.items():
        dev = Device()
        client["displayName"] = f"cf-{dev.id[:8]}"
        obs, conn = await handshake(gw, src, dev, client=client, keep=True)
        if conn is None:
            return {"connect": {name: obs}}
        live[name] = (dev, conn)
    a = await admin(gw, src)
    entries = (await a.request("system-presence", {})).get("payload") or []
    await a.close()
    out = {}
    for name, (dev, conn) in live.items():
        mine = [e for e in entries if e.get("deviceId") == dev.id]
        out[name] = shape(mine[0]) if mine else "absent"
        await conn.close()
    return out


HELLO_SHAPE = dict(health_differences("shape.snapshot.health."))
HELLO_SHAPE.update({
    ("shape.snapshot.updateSchedule", "missing"): "no self-update: snapshot.updateSchedule is absent",
    ("shape.snapshot.appliedConfigHash", "null"):
        "no config revision hash: snapshot.appliedConfigHash is null (the reference's schema allows null)",
})
NO_CAPABILITIES = ("features.capabilities is empty: clawgate implements none of the reference's "
                   "feature capabilities (chat, sessions, model catalog, node workers)")


def hello_shape_check(ref, cg):
    problems = []
    if not ref.get("capabilities"):
        problems.append("the reference advertises no capabilities")
    if cg.get("capabilities") != []:
        problems.append(f"clawgate capabilities {cg.get('capabilities')}")
    return problems + named_shape_differences(HELLO_SHAPE)(strip(ref, "capabilities"),
                                                           strip(cg, "capabilities"))


@scenario("hello-ok: key sets and value types (top level, server, auth, policy, features, snapshot)",
          deliberate=describe(HELLO_SHAPE, [NO_CAPABILITIES]), check=hello_shape_check)
async def s_hello_shape(gw, src):
    obs, conn = await handshake(gw, src, None, scopes=ADMIN_SCOPES, keep=True)
    raw = obs.pop("_raw")
    await conn.close()
    return {"capabilities": raw.get("features", {}).get("capabilities"), "shape": shape(raw)}


@scenario("token scopes are normalised (implied scopes added, sorted)")
async def s_scope_normalisation(gw, src):
    dev, hello = await paired(gw, src, scopes=["operator.write", "operator.pairing"])
    a = await admin(gw, src)
    rot = await a.request("device.token.rotate", {"deviceId": dev.id, "role": "operator"})
    lst = (await a.request("device.pair.list", {}))["payload"]
    await a.close()
    rec = [p for p in lst["paired"] if p["deviceId"] == dev.id]
    return {"helloScopes": hello["auth"]["scopes"], "pairedScopes": rec and rec[0]["scopes"],
            "tokenScopes": rec and [t["scopes"] for t in rec[0]["tokens"]],
            "rotateScopes": get(rot, "payload.scopes")}


def backend_helper_check(ref, cg):
    problems = []
    if get(ref, "auth.deviceToken") is not None or ref.get("paired") is not False:
        problems.append(f"the reference paired the backend helper or gave it a token: {ref}")
    if get(cg, "auth.deviceToken") != "<b64url43>" or cg.get("paired") is not True:
        problems.append(f"clawgate did not pair it silently with a token: {cg}")
    return problems + diff(strip(ref, "auth", "paired"), strip(cg, "auth", "paired"))


@scenario("local gateway-client/backend helper with a device identity and the shared token",
          deliberate="a local gateway-client/backend client with a device identity is paired (silently on "
                     "loopback) and gets a device token, so it shows in devices list and can be revoked; the "
                     "reference skips pairing for it (no record, no token)",
          check=backend_helper_check)
async def s_backend_helper(gw, src):
    dev = Device()
    obs, _ = await handshake(gw, src, dev, client=client_info(id="gateway-client", mode="backend",
                                                                displayName=f"cf-{dev.id[:8]}"))
    a = await admin(gw, src)
    lst = (await a.request("device.pair.list", {}))["payload"]
    await a.close()
    return {"response": obs["response"], "auth": get(obs, "_raw.auth"),
            "paired": any(p["deviceId"] == dev.id for p in lst["paired"])}


@scenario("paired record after a device-token connect")
async def s_paired_record(gw, src):
    dev, hello = await paired(gw, src, scopes=["operator.read"])
    await handshake(gw, src, dev, token=None, device_token=hello["auth"]["deviceToken"], client=named(dev))
    a = await admin(gw, src)
    lst = (await a.request("device.pair.list", {}))["payload"]
    await a.close()
    return {"record": [p for p in lst["paired"] if p["deviceId"] == dev.id]}


def limiter_check(ref, cg):
    problems = []
    if get(ref, "otherOriginPort.response.ok") is not True:
        problems.append("the reference did not give a fresh budget to another Origin port")
    if get(cg, "otherOriginPort.response.error.details.code") != "AUTH_RATE_LIMITED":
        problems.append("clawgate did not keep the peer locked for another Origin port")
    return problems + diff(strip(ref, "otherOriginPort"), strip(cg, "otherOriginPort"))


@scenario("failed-auth lockout for a browser Origin",
          deliberate="the failed-auth limiter is keyed on the peer address, never on Origin",
          check=limiter_check)
async def s_rate_limit(gw, src):
    origin = origin_of(src)
    codes = []
    for _ in range(10):
        o, _ = await handshake(gw, src, None, token="wrong-token", origin=origin)
        codes.append(get(o, "response.error.details.code"))
    locked, _ = await handshake(gw, src, None, token="wrong-token", origin=origin)
    right, _ = await handshake(gw, src, None, origin=origin)
    no_origin, _ = await handshake(gw, src, None)
    other, _ = await handshake(gw, src, None, origin=origin_of(src, 1000))
    return {"firstTen": codes, "eleventh": locked, "correctTokenSameOrigin": right,
            "correctTokenNoOrigin": no_origin["response"], "otherOriginPort": other}


@scenario("handshake timeout: nothing sent after the challenge")
async def s_preauth_timeout(gw, src):
    conn = await Conn.open(gw, src)
    t = time.monotonic()
    close = await conn.closed(timeout=25)
    return {"close": close, "afterAbout15s": 13 < time.monotonic() - t < 18}


SLOW = {"handshake timeout: nothing sent after the challenge"}


# --------------------------------------------------------------------------


async def run_one(sc, ref, cg, src):
    async def side(gw):
        try:
            return drop_raw(await asyncio.wait_for(sc["fn"](gw, src), 40))
        except Exception as e:  # an exception is an observation too
            return {"exception": f"{type(e).__name__}: {e}"}
    r, c = await asyncio.gather(side(ref), side(cg))
    # Scenarios that need the codes read them while they run (e.g. "sameCode").
    return mask(r), mask(drop_pairing_codes(c))


async def main():
    args = sys.argv[1:]
    if len(args) < 4:
        sys.exit(__doc__)
    ref = Gateway("reference", args[0], args[1])
    cg = Gateway("clawgate", args[2], args[3])
    only = set(args[4:])
    chosen = [s for s in SCENARIOS if not only or s["name"] in only]
    srcs = {s["name"]: f"127.0.0.{10 + i}" for i, s in enumerate(SCENARIOS)}
    slow = [s for s in chosen if s["name"] in SLOW]
    slow_tasks = {s["name"]: asyncio.create_task(run_one(s, ref, cg, srcs[s["name"]])) for s in slow}
    results = {}
    for s in chosen:
        if s["name"] not in SLOW:
            results[s["name"]] = await run_one(s, ref, cg, srcs[s["name"]])
    for name, t in slow_tasks.items():
        results[name] = await t

    matched, deliberate, failed = 0, [], []
    for s in chosen:
        r, c = results[s["name"]]
        if s["deliberate"]:
            problems = s["check"](r, c)
            if not problems:
                deliberate.append(s)
                print(f"diff  {s['name']}  [deliberate: {s['deliberate']}; checked]")
            else:
                failed.append(s)
                print(f"FAIL  {s['name']}  [deliberate: {s['deliberate']}; check failed]")
                for p in problems:
                    print(f"  {p}" if not p.startswith("  ") else p)
                if r == c:
                    print("  (the two gateways now behave the same: drop the deliberate difference)")
        elif not (s["compare"](r, c) if s["compare"] else r != c):
            matched += 1
            print(f"ok    {s['name']}")
        else:
            failed.append(s)
            print(f"FAIL  {s['name']}")
            for line in (s["compare"](r, c) if s["compare"] else diff(r, c)):
                print(line)
    total = len(chosen)
    print(f"conformance: {matched} of {total} scenarios match; {len(deliberate)} are named deliberate "
          f"differences (checked); {len(failed)} differ")
    if os.environ.get("CONFORMANCE_DUMP"):
        with open(os.environ["CONFORMANCE_DUMP"], "w") as f:
            json.dump(results, f, indent=1)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
