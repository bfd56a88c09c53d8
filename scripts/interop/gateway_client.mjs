// The reference's own gateway client (GatewayClient from the openclaw
// package, with its default SQLite-backed device identity and token store)
// driven against a gateway, one phase per run. Each phase asserts what the
// client saw and prints a JSON report; exit 0 only when every assertion held.
//
// usage: node gateway_client.mjs PHASE URL TOKEN
//   OPENCLAW_PACKAGE  the installed openclaw package directory (required)
//   OPENCLAW_STATE_DIR  where the client keeps its identity and device tokens
//
// Phases (run in this order against one gateway and one state dir):
//   first  connect with a device identity and TOKEN; hello-ok must carry a
//          device token, which must then be in the client's store.
//   retry  the gateway's shared token has changed; TOKEN is the old one. The
//          first attempt fails with AUTH_TOKEN_MISMATCH, the one bounded
//          retry with the cached device token succeeds (auth method
//          device-token), and a request works over it.
//   stale  the cached device token has been rotated away as well. The retry
//          fails with AUTH_DEVICE_TOKEN_MISMATCH, the client pauses
//          reconnecting (no further attempts) and clears the stale token.
import { pathToFileURL } from "node:url";
import { DatabaseSync } from "node:sqlite";
import fs from "node:fs";
import path from "node:path";

const [phase, url, token] = process.argv.slice(2);
if (!["first", "retry", "stale"].includes(phase) || !url || !token) {
  console.error("usage: node gateway_client.mjs first|retry|stale URL TOKEN");
  process.exit(2);
}
const pkg = process.env.OPENCLAW_PACKAGE;
const stateDir = process.env.OPENCLAW_STATE_DIR;
if (!pkg || !stateDir) {
  console.error("gateway_client.mjs: set OPENCLAW_PACKAGE and OPENCLAW_STATE_DIR");
  process.exit(2);
}
const { GatewayClient } = await import(
  pathToFileURL(path.join(pkg, "dist/plugin-sdk/gateway-runtime.js")).href
);

const t0 = Date.now();
const events = [];
const failures = [];
const report = { phase, events, failures };
function record(kind, fields) {
  events.push({ ms: Date.now() - t0, kind, ...fields });
}
function expect(cond, what) {
  if (!cond) failures.push(what);
  return cond;
}

// The client's persisted device tokens, read straight from its SQLite store
// (whatever table holds a token column), so persistence is checked in the
// store itself, not through the client.
function storedTokens() {
  const rows = [];
  const files = [];
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".sqlite")) files.push(p);
    }
  };
  if (fs.existsSync(stateDir)) walk(stateDir);
  for (const file of files) {
    const db = new DatabaseSync(file, { readOnly: true });
    try {
      const tables = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%device%token%'")
        .all();
      for (const { name } of tables) {
        for (const row of db.prepare(`SELECT * FROM "${name}"`).all()) {
          rows.push({ table: name, deviceId: row.device_id, role: row.role, token: row.token });
        }
      }
    } finally {
      db.close();
    }
  }
  return rows;
}

let settle;
const settled = new Promise((resolve) => (settle = resolve));
let hello = null;
const client = new GatewayClient({
  url,
  token,
  clientName: "gateway-client",
  mode: "backend",
  clientDisplayName: "clawgate interop",
  role: "operator",
  scopes: ["operator.read", "operator.pairing"],
  onHelloOk: (h) => {
    hello = h;
    record("hello-ok", { method: h.auth?.method, role: h.auth?.role, scopes: h.auth?.scopes, deviceToken: Boolean(h.auth?.deviceToken) });
    settle("hello-ok");
  },
  onConnectError: (err) => {
    record("connect-error", { detailCode: err?.details?.code ?? err?.gatewayCode ?? null, message: String(err?.message ?? err) });
  },
  onReconnectPaused: (info) => {
    record("reconnect-paused", { code: info.code, reason: info.reason, detailCode: info.detailCode });
    settle("paused");
  },
  onClose: (code, reason, info) => {
    record("close", { code, reason, phase: info?.phase });
  },
});

const deadline = setTimeout(() => settle("timeout"), 20000);
client.start();
const outcome = await settled;
clearTimeout(deadline);
const kinds = () => events.map((e) => (e.kind === "connect-error" ? `connect-error:${e.detailCode}` : e.kind));

if (phase === "first") {
  expect(outcome === "hello-ok", `connected (got ${outcome})`);
  if (hello) {
    expect(typeof hello.auth?.deviceToken === "string" && hello.auth.deviceToken.length === 43, "hello-ok carries a 43-char device token");
    expect(hello.auth?.method === "token", `auth method token (got ${hello.auth?.method})`);
    const health = await client.request("health", {}).catch((e) => ({ error: String(e) }));
    expect(health?.ok === true, "health over the new connection");
    await client.stopAndWait({ timeoutMs: 2000 });
    const rows = storedTokens();
    report.deviceId = rows[0]?.deviceId;
    expect(rows.some((r) => r.token === hello.auth.deviceToken && r.role === "operator"),
      "the device token from hello-ok is persisted in the client's store");
  }
} else if (phase === "retry") {
  const before = storedTokens();
  expect(before.length === 1, `one cached device token before the retry (got ${before.length})`);
  expect(outcome === "hello-ok", `connected through the bounded retry (got ${outcome})`);
  const k = kinds();
  expect(k[0] === "connect-error:AUTH_TOKEN_MISMATCH", `first attempt fails with AUTH_TOKEN_MISMATCH (got ${k[0]})`);
  expect(k.filter((x) => x === "connect-error:AUTH_TOKEN_MISMATCH").length === 1, "exactly one AUTH_TOKEN_MISMATCH");
  expect(k.at(-1) === "hello-ok" && events.at(-1).method === "device-token", "the retry is accepted as device-token auth");
  if (hello) {
    const health = await client.request("health", {}).catch((e) => ({ error: String(e) }));
    expect(health?.ok === true, "health over the recovered connection");
  }
  await client.stopAndWait({ timeoutMs: 2000 });
  report.cachedAfter = storedTokens().length;
  expect(report.cachedAfter === 1, "a device token is still cached after the retry");
} else {
  expect(storedTokens().length === 1, "a (stale) device token is cached before the attempt");
  expect(outcome === "paused", `reconnecting paused (got ${outcome})`);
  // Nothing more may happen: no further connect attempts.
  const attempts = () => events.filter((e) => e.kind === "connect-error" || e.kind === "hello-ok").length;
  const seen = attempts();
  await new Promise((r) => setTimeout(r, 3000));
  const k = kinds();
  expect(k[0] === "connect-error:AUTH_TOKEN_MISMATCH", `first attempt fails with AUTH_TOKEN_MISMATCH (got ${k[0]})`);
  expect(k.includes("connect-error:AUTH_DEVICE_TOKEN_MISMATCH"), "the retry fails with AUTH_DEVICE_TOKEN_MISMATCH");
  expect(events.find((e) => e.kind === "reconnect-paused")?.detailCode === "AUTH_DEVICE_TOKEN_MISMATCH",
    "paused with detail code AUTH_DEVICE_TOKEN_MISMATCH");
  expect(k.filter((x) => x.startsWith("connect-error")).length === 2, "exactly two connect attempts");
  expect(attempts() === seen, "no further attempts within 3 s of pausing");
  expect(events.filter((e) => e.kind === "close").length === 2, "two sockets in all");
  expect(!k.includes("hello-ok"), "never connected");
  client.stop();
  expect(storedTokens().length === 0, "the stale device token was cleared from the store");
}

console.log(JSON.stringify(report));
process.exit(failures.length ? 1 : 0);
