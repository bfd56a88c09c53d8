"""Fronting suite: clawgate in front of a real OpenClaw gateway.

Starts, on free loopback ports and in temporary directories:
  - the real OpenClaw gateway (the upstream; token auth, loopback);
  - a TCP forwarder between clawgate and the upstream that counts every
    connection clawgate opens to the upstream;
  - clawgate with --upstream pointing at the forwarder, after
    `clawgate upstream pair` paired its identity once;
then checks what issue 16 asks for, with the real `openclaw` CLI where a
CLI is in the story. Prints one `ok`/`FAIL` line per check and exits 1 if
any failed. A component that cannot start fails the run.

usage: fronting.py --openclaw BIN --clawgate BIN --bench BIN --work DIR
"""
import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from devicekit import Device, signed_payload  # noqa: E402

ALL_SCOPES = ["operator.admin", "operator.read", "operator.write", "operator.approvals", "operator.pairing"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rand_token(prefix):
    return f"{prefix}-{os.urandom(12).hex()}"


class Failed(Exception):
    pass


def expect(cond, why):
    if not cond:
        raise Failed(why)


# ---------------------------------------------------------------- processes

class Upstream:
    """The real OpenClaw gateway, its own HOME and state dir."""

    def __init__(self, openclaw, work, token):
        self.openclaw, self.token = openclaw, token
        self.home = os.path.join(work, "upstream-home")
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.log = os.path.join(work, "upstream.out")
        self.proc = None
        os.makedirs(os.path.join(self.home, ".openclaw"), exist_ok=True)
        cfg = os.path.join(self.home, ".openclaw", "openclaw.json")
        if not os.path.exists(cfg):
            with open(cfg, "w") as f:
                json.dump({"logging": {"file": os.path.join(work, "upstream-gateway.log")}}, f)

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
        env.update(HOME=self.home, OPENCLAW_STATE_DIR=os.path.join(self.home, ".openclaw"),
                   OPENCLAW_CONFIG_PATH=os.path.join(self.home, ".openclaw", "openclaw.json"), NO_COLOR="1")
        out = open(self.log, "a")
        self.proc = subprocess.Popen(
            [self.openclaw, "gateway", "run", "--allow-unconfigured", "--port", str(self.port),
             "--auth", "token", "--token", self.token, "--bind", "loopback"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.home, start_new_session=True)
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise Failed(f"the OpenClaw gateway exited during startup (see {self.log})")
            text = re.sub(r"\x1b\[[0-9;]*m", "", open(self.log).read())
            if re.search(r"\[gateway\] ready$", text, re.M) and port_open(self.port):
                return
            time.sleep(0.2)
        raise Failed(f"the OpenClaw gateway did not get ready on port {self.port} within 90 s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Forwarder:
    """A TCP relay in front of the upstream, counting connections."""

    def __init__(self, target_port):
        self.target = target_port
        self.port = free_port()
        self.accepted = 0
        self.server = None

    async def start(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader, writer):
        self.accepted += 1
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return

        async def pipe(r, w):
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                try:
                    w.close()
                except Exception:
                    pass

        try:
            await asyncio.gather(pipe(reader, uw), pipe(ur, writer))
        except asyncio.CancelledError:
            pass  # the suite is ending


class Clawgate:
    def __init__(self, binary, work, token, upstream_url):
        self.binary, self.token = binary, token
        self.state = os.path.join(work, "clawgate-state")
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.http = f"http://127.0.0.1:{self.port}"
        self.upstream_url = upstream_url
        self.out = os.path.join(work, "clawgate.out")
        self.err = os.path.join(work, "clawgate.err")
        self.proc = None
        os.makedirs(self.state, exist_ok=True)

    async def cli(self, *args, env=None, timeout=60):
        """Runs the clawgate CLI in a thread (the forwarder keeps serving)."""
        e = dict(os.environ)
        e.update(env or {})
        return await asyncio.to_thread(subprocess.run, [self.binary, "--state-dir", self.state, *args], capture_output=True,
                              text=True, env=e, timeout=timeout)

    def start(self):
        env = dict(os.environ, CLAWGATE_GATEWAY_TOKEN=self.token)
        self.proc = subprocess.Popen(
            [self.binary, "--state-dir", self.state, "gateway", "run", "--port", str(self.port),
             "--upstream", self.upstream_url],
            stdout=open(self.out, "w"), stderr=open(self.err, "w"), env=env)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise Failed(f"clawgate exited at start: {open(self.err).read()[-2000:]}")
            if "listening on" in open(self.out).read():
                return
            time.sleep(0.1)
        raise Failed("clawgate did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


# ---------------------------------------------------------------- clients

class Conn:
    """A protocol client: shared token, optionally a device identity."""

    def __init__(self, ws, hello):
        self.ws, self.hello, self.n = ws, hello, 0
        self.events = []

    @classmethod
    async def open(cls, url, token=None, scopes=(), client_id="cli", mode="cli", device=None,
                   origin=None, display_name="fronting-suite", device_token=None, instance_id=None):
        headers = {"Origin": origin} if origin else {}
        ws = await websockets.connect(url + "/", additional_headers=headers, max_size=None)
        challenge = json.loads(await ws.recv())
        nonce = challenge["payload"]["nonce"]
        client = {"id": client_id, "version": "1", "platform": "linux", "mode": mode,
                  "displayName": display_name}
        if instance_id:
            client["instanceId"] = instance_id
        auth = {}
        if token:
            auth["token"] = token
        if device_token:
            auth["deviceToken"] = device_token
        params = {"minProtocol": 4, "maxProtocol": 4, "client": client, "role": "operator",
                  "scopes": list(scopes), "auth": auth}
        if device:
            signed_at = int(time.time() * 1000)
            payload = signed_payload("v3", device.id, client, "operator", list(scopes), signed_at,
                                     token or device_token, nonce)
            params["device"] = {"id": device.id, "publicKey": device.public_key,
                                "signature": device.sign(payload), "signedAt": signed_at, "nonce": nonce}
        await ws.send(json.dumps({"type": "req", "id": "c1", "method": "connect", "params": params}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if frame.get("type") == "res":
                return cls(ws, frame)

    @property
    def ok(self):
        return self.hello.get("ok") is True

    async def call(self, method, params=None, timeout=30):
        self.n += 1
        rid = f"r{self.n}"
        frame = {"type": "req", "id": rid, "method": method}
        if params is not None:
            frame["params"] = params
        await self.ws.send(json.dumps(frame))
        deadline = time.time() + timeout
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), max(0.1, deadline - time.time())))
            if frame.get("type") == "res" and frame.get("id") == rid:
                return frame
            self.events.append(frame)

    async def event(self, name, timeout=10):
        for i, e in enumerate(self.events):
            if e.get("event") == name:
                return self.events.pop(i)
        deadline = time.time() + timeout
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), max(0.1, deadline - time.time())))
            if frame.get("type") == "event" and frame.get("event") == name:
                return frame
            self.events.append(frame)

    async def closed(self, timeout=5):
        """(code, reason) of the close, within `timeout`."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout)
        except websockets.ConnectionClosed as e:
            rcvd = e.rcvd
            return (rcvd.code, rcvd.reason) if rcvd else (1006, "")

    async def close(self):
        await self.ws.close()


# ---------------------------------------------------------------- the suite

class Suite:
    def __init__(self, args):
        self.args = args
        self.work = args.work
        self.oc_home = os.path.join(self.work, "openclaw-cli-home")
        os.makedirs(self.oc_home, exist_ok=True)
        self.passed = self.failed = 0

    async def openclaw(self, *args, timeout=90):
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
        env.update(HOME=self.oc_home, NO_COLOR="1")
        return await asyncio.to_thread(subprocess.run, [self.args.openclaw, *args], capture_output=True,
                                       text=True, env=env, timeout=timeout)

    async def oc_json(self, *args):
        r = await self.openclaw(*args)
        text = r.stdout
        try:
            return r.returncode, json.loads(text[text.index("{"):]) if "{" in text else None, r
        except ValueError:
            return r.returncode, None, r

    async def check(self, name, fn):
        try:
            await fn()
            print(f"ok   {name}", flush=True)
            self.passed += 1
        except Failed as e:
            text = str(e)
            if len(text) > 1500:
                text = text[:1500] + f" [... {len(text)} characters]"
            print(f"FAIL {name}: {text}", flush=True)
            self.failed += 1
        except Exception as e:  # a crash in a check is a failure, not a pass
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            self.failed += 1

    # -- setup

    async def setup(self):
        self.up_token = rand_token("up")
        self.cg_token = rand_token("cg")
        self.upstream = Upstream(self.args.openclaw, self.work, self.up_token)
        await asyncio.to_thread(self.upstream.start)
        self.fwd = Forwarder(self.upstream.port)
        await self.fwd.start()
        self.cg = Clawgate(self.args.clawgate, self.work, self.cg_token, f"ws://127.0.0.1:{self.fwd.port}")
        r = await self.cg.cli("upstream", "pair", "--url", self.cg.upstream_url,
                        env={"CLAWGATE_UPSTREAM_TOKEN": self.up_token})
        expect(r.returncode == 0, f"clawgate upstream pair exited {r.returncode}: {r.stdout}{r.stderr}")
        self.pair_output = r.stdout + r.stderr
        await asyncio.to_thread(self.cg.start)
        # The proxy identity, as the upstream lists it.
        admin = await self.upstream_admin()
        listed = await admin.call("device.pair.list", {})
        await admin.close()
        paired = listed["payload"]["paired"]
        expect(len(paired) == 1, f"the upstream should list clawgate's identity only: {paired}")
        self.proxy_id = paired[0]["deviceId"]

    async def upstream_admin(self):
        c = await Conn.open(self.upstream.url, token=self.up_token, scopes=ALL_SCOPES)
        expect(c.ok, f"direct admin connect to the upstream failed: {c.hello}")
        return c

    async def front(self, scopes=ALL_SCOPES, **kw):
        kw.setdefault("token", self.cg_token)
        return await Conn.open(self.cg.url, scopes=scopes, **kw)

    # -- checks

    async def pair_and_status(self):
        expect(self.up_token not in self.pair_output, "pair printed the upstream token")
        r = await self.cg.cli("upstream", "status", "--url", self.cg.upstream_url, "--json")
        expect(r.returncode == 0, f"upstream status exited {r.returncode}: {r.stdout}{r.stderr}")
        d = json.loads(r.stdout)
        expect("2026.9.6" in json.dumps(d), f"status does not name OpenClaw 2026.9.6: {d}")
        for scope in ALL_SCOPES:
            expect(scope in json.dumps(d), f"status lacks {scope}: {d}")
        expect(self.up_token not in r.stdout, "status printed the upstream token")

    async def cli_agents_and_sessions(self):
        for method in ("agents.list", "sessions.list"):
            rc, through, r = await self.oc_json("gateway", "call", method, "--url", self.cg.url,
                                          "--token", self.cg_token, "--json")
            expect(rc == 0 and through, f"openclaw gateway call {method} through clawgate: rc {rc} {r.stderr[-500:]}")
            rc, direct, r = await self.oc_json("gateway", "call", method, "--url", self.upstream.url,
                                         "--token", self.up_token, "--json")
            expect(rc == 0 and direct, f"openclaw gateway call {method} direct: rc {rc}")
            volatile = ("ts",)
            strip = lambda d: {k: v for k, v in d.items() if k not in volatile}
            expect(strip(through) == strip(direct), f"{method} differs through clawgate:\n{through}\n{direct}")

    async def hello_hides_the_upstream(self):
        c = await self.front(["operator.read"], client_id="openclaw-tui", mode="ui", device=Device())
        expect(c.ok, f"connect: {c.hello}")
        text = json.dumps(c.hello)
        for port in (self.upstream.port, self.fwd.port):
            expect(f":{port}" not in text, f"hello-ok names the upstream's port {port}")
        payload = c.hello["payload"]
        expect(payload["server"]["version"] == "2026.9.6", f"not the upstream's server block: {payload['server']}")
        expect(len(payload["features"]["methods"]) > 400, "not the upstream's method list")
        expect(payload["policy"]["tickIntervalMs"] == 30000, f"policy: {payload['policy']}")
        canvas = payload.get("pluginSurfaceUrls", {}).get("canvas")
        expect(canvas and canvas.startswith(f"{self.cg.http}/__openclaw__/cap/"),
               f"the canvas capability URL is not clawgate's: {canvas}")
        path = canvas[len(self.cg.http):]
        through, _ = await asyncio.to_thread(http_status, canvas)
        direct, _ = await asyncio.to_thread(http_status, f"http://127.0.0.1:{self.upstream.port}{path}")
        expect(through == direct, f"the capability path answered {through} through clawgate, {direct} directly")
        # A fresh capability URL later in the session is rewritten too.
        refreshed = await c.call("plugin.surface.refresh", {"surface": "canvas"})
        text = json.dumps(refreshed)
        for port in (self.upstream.port, self.fwd.port):
            expect(f":{port}" not in text, f"plugin.surface.refresh names the upstream's port: {refreshed}")
        fresh = re.findall(r'http://127\.0\.0\.1:\d+/__openclaw__/cap/[A-Za-z0-9_-]+', text)
        expect(refreshed.get("ok") and fresh, f"plugin.surface.refresh gave no capability URL: {refreshed}")
        for url in fresh:
            expect(url.startswith(self.cg.http), f"a capability URL not on clawgate: {url}")
            status, _ = await asyncio.to_thread(http_status, url)
            expect(status == through, f"the refreshed capability URL answered {status}")
        await c.close()
        for _ in range(20):
            after, _ = await asyncio.to_thread(http_status, canvas)
            if after == 404:
                break
            await asyncio.sleep(0.1)
        expect(after == 404, f"the capability path still answers {after} after the session closed")

    async def upstream_control_ui(self):
        # scripts/interop/fronting_ui.mjs: Debian's chromium (playwright-core
        # from ui/tests) uses the upstream's own UI at clawgate's origin.
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fronting_ui.mjs")
        r = await asyncio.to_thread(
            subprocess.run, ["node", script, "--url", self.cg.http, "--token", self.cg_token,
                             "--upstream-port", str(self.upstream.port), "--forwarder-port", str(self.fwd.port),
                             "--artifacts", os.path.join(self.work, "ui-artifacts")],
            capture_output=True, text=True, timeout=90)
        expect(r.returncode == 0, f"fronting_ui.mjs exited {r.returncode}: {r.stderr.strip()[-700:]} {r.stdout.strip()[-700:]}")
        d = json.loads([l for l in r.stdout.splitlines() if l.startswith("{")][-1])
        print(f"     ui: login gate -> hello-ok {d.get('serverVersion')} ({d.get('methods')} methods), relayed "
              f"{', '.join(d.get('relayedOk', []))}; \"{d.get('domConnected')}\"; #token= handoff ok; /clawgate/ "
              f"{d.get('clawgateUi')}; {d.get('httpRequests')} requests, none to the upstream; HTTP errors "
              f"{json.dumps(d.get('httpErrors'))}", flush=True)
        if r.stderr.strip():
            print(f"     ui: {r.stderr.strip()[-400:]}", flush=True)

    async def sessions_changed_relayed(self):
        a = await self.front(["operator.read", "operator.write"])
        b = await self.front(["operator.read", "operator.write"])
        expect(a.ok and b.ok, f"connects failed: {a.hello} {b.hello}")
        sub = await a.call("sessions.subscribe", {})
        expect(sub.get("ok"), f"sessions.subscribe: {sub}")
        key = f"agent:main:fronting-{os.urandom(3).hex()}"
        created = await b.call("sessions.create", {"key": key, "label": "fronting suite"})
        expect(created.get("ok"), f"sessions.create: {created}")
        patched = await b.call("sessions.patch", {"key": key, "label": "fronting suite, patched"})
        expect(patched.get("ok"), f"sessions.patch: {patched}")
        seen = []
        deadline = time.time() + 10
        while time.time() < deadline:
            ev = await a.event("sessions.changed", timeout=max(0.1, deadline - time.time()))
            seen.append(ev)
            if ev["payload"].get("sessionKey") == key and ev["payload"].get("reason") == "patch":
                break
        else:
            raise Failed(f"no sessions.changed for the patch reached the subscriber: {seen}")
        seqs = [e["seq"] for e in a.events + seen if e.get("type") == "event" and "seq" in e]
        expect(seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"seq not one increasing sequence: {seqs}")
        await a.close()
        await b.close()

    async def upstream_secret_refused(self):
        rc, d, r = await self.oc_json("gateway", "call", "health", "--url", self.cg.url, "--token", self.up_token, "--json")
        expect(rc != 0, "the upstream's token was accepted at clawgate's door")
        expect("AUTH_TOKEN_MISMATCH" in (r.stdout + r.stderr) or "token mismatch" in (r.stdout + r.stderr),
               f"not a token mismatch: {r.stdout[-400:]}{r.stderr[-400:]}")

    async def devices_list_is_clawgates(self):
        dev = Device()
        c = await self.front(["operator.read"], device=dev, client_id="openclaw-tui", mode="ui")
        expect(c.ok, f"device connect: {c.hello}")
        await c.close()
        rc, d, r = await self.oc_json("devices", "list", "--url", self.cg.url, "--token", self.cg_token, "--json")
        expect(rc == 0 and d is not None, f"openclaw devices list through clawgate: rc {rc} {r.stderr[-300:]}")
        ids = [p["deviceId"] for p in d.get("paired", [])]
        expect(dev.id in ids, f"clawgate's device {dev.id} not listed: {ids}")
        expect(self.proxy_id not in ids, "the upstream's registry (clawgate's own identity) was listed")

    async def read_only_device_gets_missing_scope(self):
        dev = Device()
        # An Origin header: this device waits for an operator's approval.
        first = await self.front(["operator.read"], device=dev, origin=self.cg.http)
        err = first.hello.get("error") or {}
        expect(err.get("details", {}).get("code") == "PAIRING_REQUIRED", f"expected PAIRING_REQUIRED: {first.hello}")
        rid = err["details"]["requestId"]
        r = await self.cg.cli("devices", "approve", rid, "--url", self.cg.url, "--token", self.cg_token)
        expect(r.returncode == 0, f"clawgate devices approve: {r.stdout}{r.stderr}")
        c = await self.front(["operator.read"], device=dev, origin=self.cg.http)
        expect(c.ok, f"approved device connect: {c.hello}")
        expect(c.hello["payload"]["auth"]["scopes"] == ["operator.read"], c.hello["payload"]["auth"])
        admin_call = await c.call("exec.approvals.get", {})
        expect(not admin_call.get("ok"), f"an admin method worked with operator.read: {admin_call}")
        details = admin_call.get("error", {}).get("details", {})
        expect(details.get("code") == "MISSING_SCOPE" and details.get("missingScope") == "operator.admin",
               f"not the upstream's MISSING_SCOPE: {admin_call}")
        read_call = await c.call("sessions.list", {})
        expect(read_call.get("ok"), f"a read method failed: {read_call}")
        self.read_device = dev
        await c.close()

    async def revoke_closes_both(self):
        dev = Device()
        instance = f"fronting-{os.urandom(4).hex()}"
        c = await self.front(["operator.read"], device=dev, client_id="openclaw-tui", mode="ui",
                             instance_id=instance, display_name="Revoked Laptop")
        expect(c.ok, f"connect: {c.hello}")
        admin = await self.upstream_admin()

        async def upstream_entry():
            pres = await admin.call("system-presence", {})
            for e in pres.get("payload", []) if isinstance(pres.get("payload"), list) else []:
                if e.get("instanceId") == instance:
                    return e
            return None

        entry = await upstream_entry()
        expect(entry and entry.get("reason") != "disconnect", f"the relayed client is not in the upstream's presence: {entry}")
        expect(entry.get("host") == "Revoked Laptop", f"the upstream does not show the client's name: {entry}")
        r = await self.cg.cli("devices", "revoke", "--device", dev.id, "--role", "operator", "--url", self.cg.url,
                        "--token", self.cg_token)
        expect(r.returncode == 0, f"clawgate devices revoke: {r.stdout}{r.stderr}")
        started = time.time()
        code, reason = await c.closed(timeout=2)
        expect(code == 4001, f"client closed with {code} {reason!r}, not 4001")
        expect(time.time() - started < 1.5, "the close took more than a second")
        for _ in range(20):
            entry = await upstream_entry()
            if entry is None or entry.get("reason") == "disconnect":
                break
            await asyncio.sleep(0.1)
        expect(entry is None or entry.get("reason") == "disconnect",
               f"the upstream still shows the revoked client connected: {entry}")
        await admin.close()

    async def blocked_methods_leave_the_upstream_alone(self):
        admin = await self.upstream_admin()
        before = (await admin.call("device.pair.list", {}))["payload"]
        c = await self.front(ALL_SCOPES)
        expect(c.ok, f"admin connect: {c.hello}")
        answers = {}
        for method, params in [
            ("device.pair.remove", {"deviceId": self.proxy_id}),
            ("device.token.rotate", {"deviceId": self.proxy_id, "role": "operator", "scopes": ["operator.read"]}),
            ("device.token.revoke", {"deviceId": self.proxy_id, "role": "operator"}),
            ("device.scopes.requestUpgrade", {"scopes": ["operator.read", "operator.write"]}),
            ("device.pair.setupCode", {}),
            ("node.pair.list", {}),
            ("node.rename", {"nodeId": "x", "displayName": "y"}),
            ("secrets.resolve", {}),
            ("config.set", {"raw": "{}"}),
            ("config.apply", {"raw": "{}"}),
            ("config.patch", {"raw": '{"gateway": {"auth": {"mode": "none"}}}'}),
            ("config.patch", {"raw": '{"gateway": {"trustedProxies": ["10.0.0.1"]}}'}),
        ]:
            res = await c.call(method, params)
            answers[method] = res
            expect(not res.get("ok"), f"{method} succeeded through clawgate: {res}")
            expect("token" not in json.dumps(res.get("payload", {})), f"{method} returned a token: {res}")
        blocked = answers["config.set"]["error"]
        expect(blocked["details"]["code"] == "FRONTED_METHOD_BLOCKED", f"config.set: {blocked}")
        after = (await admin.call("device.pair.list", {}))["payload"]
        # The upstream refreshes a paired record's displayName and last-seen
        # fields on every connect (its own behaviour): those may change.
        volatile = ("lastSeenAtMs", "lastSeenReason", "lastUsedAtMs", "tokens", "displayName", "connected")
        strip = lambda d: json.dumps([{k: v for k, v in p.items() if k not in volatile}
                                      for p in d["paired"]], sort_keys=True) + json.dumps(d["pending"], sort_keys=True)
        expect(strip(before) == strip(after), f"the upstream registry changed:\n{before}\n{after}")
        tokens = lambda d: [(t.get("role"), t.get("scopes"), t.get("rotatedAtMs")) for p in d["paired"] for t in p.get("tokens", [])]
        expect(tokens(before) == tokens(after), "the proxy's upstream token changed")
        # A config patch clear of the protected keys is relayed (and audited).
        cfg = await c.call("config.get", {})
        expect(cfg.get("ok"), f"config.get: {cfg}")
        ok = await c.call("config.patch", {"raw": '{"ui": {"seamColor": "#123456"}}',
                                           "baseHash": cfg["payload"].get("hash")})
        expect(ok.get("ok"), f"an allowed config.patch was not relayed: {ok}")
        await asyncio.sleep(1.5)  # the audit batch is written once a second
        audit = await c.call("audit.list", {"action": "upstream.admin_call"})
        methods = [e["details"].get("method") for e in audit["payload"]["entries"]]
        expect("config.patch" in methods, f"the relayed admin call was not audited: {audit}")
        await c.close()
        await admin.close()

    def metric(self, name):
        with urllib.request.urlopen(self.cg.http + "/metrics", timeout=5) as r:
            text = r.read().decode()
        total = 0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += int(float(line.rsplit(" ", 1)[1]))
        return total

    async def wrong_token_storm(self):
        # A legitimate client already connected keeps calling through the
        # relay while the storm runs; the bench's own legitimate client
        # keeps making full connects (each one through to the upstream).
        legit = await self.front(["operator.read"], client_id="openclaw-tui", mode="ui", device=Device())
        expect(legit.ok, f"legitimate connect: {legit.hello}")
        links_before = await asyncio.to_thread(self.metric, "clawgate_upstream_links_total")
        probes_before = await asyncio.to_thread(self.metric, "clawgate_upstream_probes_total")
        before = self.fwd.accepted
        latencies = []
        storm_done = asyncio.Event()

        async def keep_calling():
            while not storm_done.is_set():
                t0 = time.perf_counter()
                res = await legit.call("last-heartbeat", {})
                latencies.append((time.perf_counter() - t0) * 1000)
                expect(res.get("ok"), f"a legitimate call failed during the storm: {res}")
                await asyncio.sleep(0.02)

        caller = asyncio.create_task(keep_calling())
        cmd = [self.args.bench, "--url", self.cg.url, "--token", self.cg_token, "attack", "bruteforce",
               "-m", "10000", "--src-ips", "127.0.0.10-250", "--origins", "none", "--workers-per-key", "4",
               "--legit-src", "127.0.0.2", "--legit-pause-ms", "50", "--baseline-secs", "2",
               "--max-secs", "240"]
        try:
            r = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=300)
        finally:
            storm_done.set()
            await caller
        await legit.close()
        expect(r.returncode == 0, f"clawgate-bench exited {r.returncode}: {r.stderr[-800:]}")
        line = [l for l in r.stdout.splitlines() if l.startswith("{")][-1]
        d = json.loads(line)
        self.storm = d
        expect(d["attempts"] == 10000, f"attempts {d['attempts']}")
        expect(d["accepted"] == 0, f"{d['accepted']} wrong-token connects were accepted")
        legit_ok = sum(v for k, v in d.items() if k.startswith("legit") and k.endswith("_ok") and isinstance(v, int))
        reached = self.fwd.accepted - before
        links = await asyncio.to_thread(self.metric, "clawgate_upstream_links_total") - links_before
        probes = await asyncio.to_thread(self.metric, "clawgate_upstream_probes_total") - probes_before
        # Every upstream connection is a legitimate client's or a readiness probe.
        expect(links == legit_ok, f"{links} upstream links for {legit_ok} legitimate connects")
        expect(reached == links + probes,
               f"{reached} upstream connections during the storm: {links} legitimate, {probes} probes")
        latencies.sort()
        rpc_p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)] if latencies else None
        print(f"     storm: {d['attempts']} wrong-token connects in {d.get('secs')} s, {d['accepted']} accepted; "
              f"{reached} upstream connections = {links} legitimate + {probes} probes; legitimate calls on an "
              f"open connection p99 {rpc_p99 and round(rpc_p99, 1)} ms ({len(latencies)} calls); legitimate full "
              f"connects p50/p99 {d.get('legit_baseline_p50_ms')}/{d.get('legit_baseline_p99_ms')} ms before, "
              f"{d.get('legit_p50_ms')}/{d.get('legit_p99_ms')} ms during", flush=True)
        expect(d.get("legit_failures") == 0, f"legitimate connects failed during the storm: {d.get('legit_failure_kinds')}")
        expect(len(latencies) >= 50, f"only {len(latencies)} legitimate calls during the storm")
        expect(rpc_p99 < 50, f"legitimate calls had p99 {rpc_p99:.1f} ms during the storm")

    async def upstream_down_and_back(self):
        c = await self.front(["operator.read"])
        expect(c.ok, f"connect: {c.hello}")
        await asyncio.to_thread(self.upstream.kill)
        code, reason = await c.closed(timeout=10)
        expect(code == 1012, f"client closed with {code} {reason!r}, not 1012")
        expect("upstream" in reason and "127.0.0.1" not in reason, f"close reason {reason!r}")
        for _ in range(30):
            status, body = await asyncio.to_thread(http_status, self.cg.http + "/readyz")
            if status == 503:
                break
            await asyncio.sleep(0.1)
        expect(status == 503, f"/readyz answered {status} with the upstream down")
        expect(str(self.upstream.port) not in body and str(self.fwd.port) not in body, f"/readyz names the upstream: {body}")
        status, _ = await asyncio.to_thread(http_status, self.cg.http + "/healthz")
        expect(status == 200, f"clawgate's /healthz answered {status}")
        down = await self.front(["operator.read"])
        err = down.hello.get("error") or {}
        expect(err.get("code") == "UNAVAILABLE" and err.get("details", {}).get("code") == "UPSTREAM_UNAVAILABLE",
               f"not UPSTREAM_UNAVAILABLE: {down.hello}")
        await asyncio.to_thread(self.upstream.start)
        for _ in range(50):
            status, _ = await asyncio.to_thread(http_status, self.cg.http + "/readyz")
            if status == 200:
                break
            await asyncio.sleep(0.2)
        expect(status == 200, f"/readyz stayed {status} after the upstream came back")
        # The upstream refuses connects for a moment after it says ready
        # (its startup gate): clients retry, as the reference's do.
        for _ in range(30):
            again = await self.front(["operator.read"])
            if again.ok:
                break
            await asyncio.sleep(0.5)
        expect(again.ok, f"no connect after the upstream came back: {again.hello}")
        health = await again.call("health", {})
        expect(health.get("ok"), f"health after restart: {health}")
        await again.close()

    async def no_secret_in_logs(self):
        text = open(self.cg.out).read() + open(self.cg.err).read()
        for secret in (self.up_token, self.cg_token):
            expect(secret not in text, "a shared secret is in clawgate's output")
        store = os.path.join(self.cg.state, "upstream")
        for name in os.listdir(store):
            expect(self.up_token not in open(os.path.join(store, name), errors="replace").read(),
                   f"the upstream's shared token is stored in {name}")

    async def run(self):
        try:
            await self.check("OpenClaw upstream, clawgate upstream pair, clawgate --upstream start", self.setup)
            if self.failed:
                return
            await self.check("clawgate upstream status: reachable, OpenClaw 2026.9.6, paired with all five scopes",
                             self.pair_and_status)
            await self.check("openclaw gateway call agents.list / sessions.list through clawgate = direct",
                             self.cli_agents_and_sessions)
            await self.check("relayed hello-ok: the upstream's, no upstream address, canvas URL served only while open",
                             self.hello_hides_the_upstream)
            await self.check("the upstream's Control UI through clawgate in Chromium: authenticated, relayed, upstream address never contacted", self.upstream_control_ui)
            await self.check("sessions.subscribe on one client, sessions.patch on another: sessions.changed relayed",
                             self.sessions_changed_relayed)
            await self.check("the upstream's shared secret is refused at clawgate's door", self.upstream_secret_refused)
            await self.check("openclaw devices list through clawgate lists clawgate's devices", self.devices_list_is_clawgates)
            await self.check("a device approved with operator.read: upstream MISSING_SCOPE on admin, reads work",
                             self.read_only_device_gets_missing_scope)
            await self.check("revoke in clawgate: client closed 4001 within a second, gone from upstream presence",
                             self.revoke_closes_both)
            await self.check("blocked methods answer locally or refuse; the upstream registry is unchanged",
                             self.blocked_methods_leave_the_upstream_alone)
            await self.check("10,000 wrong-token connects: none reach the upstream; legitimate calls p99 < 50 ms, connects all succeed",
                             self.wrong_token_storm)
            await self.check("upstream killed: 1012, /readyz 503, clawgate up; restarted: clients get through",
                             self.upstream_down_and_back)
            await self.check("no shared secret in clawgate's output or its upstream identity files", self.no_secret_in_logs)
        finally:
            self.cg_stop()
            print(f"fronting: {self.passed} passed, {self.failed} failed", flush=True)

    def cg_stop(self):
        for stop in (getattr(getattr(self, "cg", None), "stop", None),
                     getattr(getattr(self, "upstream", None), "stop", None)):
            if stop:
                try:
                    stop()
                except Exception as e:
                    print(f"cleanup: {e}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--openclaw", required=True)
    ap.add_argument("--clawgate", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    suite = Suite(args)
    asyncio.run(suite.run())
    sys.exit(1 if suite.failed or suite.passed == 0 else 0)


if __name__ == "__main__":
    main()
