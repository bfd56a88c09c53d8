#!/usr/bin/env bash
# The standard benchmark: builds release, runs every scenario against
# clawgate and, when an OpenClaw 2026.9.6 install is available, against the
# reference in the same run; prints medians and ratios.
#
#   scripts/bench.sh                 # 3 runs of each scenario, reference if installed
#   RUNS=5 scripts/bench.sh
#   BENCH_REFERENCE=0 scripts/bench.sh        # clawgate only
#   BENCH_INSTALL_REFERENCE=1 scripts/bench.sh # install openclaw into the cache first
#   HOLD_K=10000 HOLD_SECS=60 scripts/bench.sh
#   CLAWGATE_BIN=/path/to/clawgate BENCH_BUILD=0 scripts/bench.sh  # another build (an A/B "before")
#   BENCH_FLOOR=0 scripts/bench.sh            # skip the cost floor (clawgate-bench floor)
#
# Loopback only. Every run is bounded in count and time. Results: one JSON
# line per run in $OUT (default target/bench/results.jsonl), the summary
# table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-3}
HS_N=${HS_N:-20000}
HS_C=${HS_C:-64}
RPC_R=${RPC_R:-300000}
HOLD_K=${HOLD_K:-10000}
HOLD_SECS=${HOLD_SECS:-60}
BAD_M=${BAD_M:-2000}
# A burst of connections, closed, then the RSS sampled for BURST_AFTER s.
BURST_K=${BURST_K:-8000}
BURST_AFTER=${BURST_AFTER:-30}
REF_HS_N=${REF_HS_N:-3000}
REF_RPC_R=${REF_RPC_R:-60000}
REF_HOLD_K=${REF_HOLD_K:-10000}
# shellcheck source=node24.sh
source "$ROOT/scripts/node24.sh" # sets CACHE
OUT=${OUT:-$ROOT/target/bench/results.jsonl}
SRC_IPS=127.0.0.1-8

# BENCH_BUILD=0: use the binaries as they are (e.g. with CLAWGATE_BIN).
if [ "${BENCH_BUILD:-1}" = 1 ]; then
  cargo build --release --quiet -p clawgate -p clawgate-bench
fi
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CLAWGATE=${CLAWGATE_BIN:-$TARGET/release/clawgate}
BENCH=$TARGET/release/clawgate-bench
mkdir -p "$(dirname "$OUT")"
: >"$OUT"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  # Each server runs in its own process group (setsid): end the whole group.
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill -TERM -- "-$p" 2>/dev/null || true
  done
  sleep 1
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill -KILL -- "-$p" 2>/dev/null || true
  done
  rm -rf "$WORK" 2>/dev/null || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# The pid of the process listening on a port (the reference's CLI may
# start its gateway in a child process).
listener_pid() { ss -ltnpH "sport = :$1" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1; }
wait_port() {
  for _ in $(seq 1 600); do
    if [ -n "$(listener_pid "$1")" ]; then return 0; fi
    sleep 0.1
  done
  return 1
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# run LABEL BENCH-ARGS...: one bench run, its JSON line appended to $OUT.
run() {
  local label=$1; shift
  local line
  if line=$("$BENCH" --label "$label" "$@" 2>>"$WORK/bench.err" | tail -1) && [ -n "$line" ]; then
    echo "$line" >>"$OUT"
  else
    echo "bench run failed: $label $*" >&2
    tail -5 "$WORK/bench.err" >&2 || true
  fi
}

# scenarios LABEL URL TOKEN PID HS_N RPC_R HOLD_K
scenarios() {
  local label=$1 url=$2 token=$3 pid=$4 n=$5 rpc_r=$6 hold_k=$7
  local common=(--url "$url" --token "$token" --server-pid "$pid")
  # First, on the fresh gateway: does the memory of a closed burst go back?
  run "$label" "${common[@]}" hold -k "$BURST_K" --secs 1 --after-secs "$BURST_AFTER" --src-ips "$SRC_IPS"
  for i in $(seq 1 "$RUNS"); do
    echo "[$label] run $i/$RUNS" >&2
    run "$label" "${common[@]}" handshake -n "$n" -c "$HS_C" --src-ips "$SRC_IPS" --max-secs 60
    run "$label" "${common[@]}" handshake -n "$n" -c "$HS_C" --device v3 --device-pool 64 --src-ips "$SRC_IPS" --max-secs 60
    run "$label" "${common[@]}" rpc -c 16 -r "$rpc_r" --method health --max-secs 60
  done
  run "$label" "${common[@]}" badauth -m "$BAD_M" --src-ips 127.0.0.9-250 --max-secs 20
  run "$label" "${common[@]}" hold -k "$hold_k" --secs "$HOLD_SECS" --src-ips "$SRC_IPS"
}

# --- clawgate ---------------------------------------------------------------
TOKEN="bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
for i in $(seq 1 "$RUNS"); do
  P=$(free_port)
  run clawgate --url "ws://127.0.0.1:$P" --token "$TOKEN" startup -- \
    "$CLAWGATE" --state-dir "$WORK/startup-$i" gateway run --port "$P" --token "$TOKEN"
done
CG_PORT=$(free_port)
CLAWGATE_LOG=warn setsid "$CLAWGATE" --state-dir "$WORK/clawgate" gateway run --port "$CG_PORT" --token "$TOKEN" \
  >"$WORK/clawgate.out" 2>"$WORK/clawgate.err" &
CG_PID=$!
PIDS+=("$CG_PID")
wait_port "$CG_PORT" || { echo "clawgate did not start"; cat "$WORK/clawgate.err"; exit 1; }
sleep 1
echo "{\"bench\":\"idle\",\"label\":\"clawgate\",\"rss_kb\":$(rss_kb "$CG_PID")}" >>"$OUT"
scenarios clawgate "ws://127.0.0.1:$CG_PORT" "$TOKEN" "$CG_PID" "$HS_N" "$RPC_R" "$HOLD_K"
kill "$CG_PID" 2>/dev/null || true; wait "$CG_PID" 2>/dev/null || true
echo "{\"bench\":\"binary\",\"label\":\"clawgate\",\"bytes\":$(stat -c %s "$CLAWGATE")}" >>"$OUT"

# --- the floor ---------------------------------------------------------------
# `clawgate-bench floor` serves the same handshakes and refusals doing only
# the socket work (and, for v3, one Ed25519 key decode and verify): its
# server CPU per operation is what no gateway code can take away.
if [ "${BENCH_FLOOR:-1}" = 1 ]; then
  FL_PORT=$(free_port)
  setsid "$BENCH" --token "$TOKEN" floor --port "$FL_PORT" --verify-ed25519 --secs 3600 \
    >"$WORK/floor.out" 2>"$WORK/floor.err" &
  FL_PID=$!
  PIDS+=("$FL_PID")
  wait_port "$FL_PORT" || { echo "the floor server did not start"; cat "$WORK/floor.err"; exit 1; }
  fl=(--url "ws://127.0.0.1:$FL_PORT" --token "$TOKEN" --server-pid "$FL_PID")
  for i in $(seq 1 "$RUNS"); do
    echo "[floor] run $i/$RUNS" >&2
    run floor "${fl[@]}" handshake -n "$HS_N" -c "$HS_C" --src-ips "$SRC_IPS" --max-secs 60
    run floor "${fl[@]}" handshake -n "$HS_N" -c "$HS_C" --device v3 --device-pool 64 --src-ips "$SRC_IPS" --max-secs 60
  done
  run floor "${fl[@]}" badauth -m "$BAD_M" --src-ips 127.0.0.9-250 --max-secs 20
  kill -TERM -- "-$FL_PID" 2>/dev/null || true
fi

# --- reference ----------------------------------------------------------------
OPENCLAW=$CACHE/node_modules/.bin/openclaw
if [ "${BENCH_INSTALL_REFERENCE:-0}" = 1 ] && [ ! -x "$OPENCLAW" ]; then
  use_node24
  npm install --prefix "$CACHE" --no-audit --no-fund --silent --ignore-scripts openclaw@2026.9.6 >/dev/null
fi
if [ "${BENCH_REFERENCE:-1}" = 1 ] && [ -x "$OPENCLAW" ]; then
  use_node24
  REF_TOKEN="ref-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  ref_cmd() { # PORT HOME
    mkdir -p "$2/.openclaw"
    printf '{"logging": {"file": "%s"}}\n' "$2/gateway.log" >"$2/.openclaw/openclaw.json"
    env -u OPENCLAW_HOME -u OPENCLAW_PROFILE -u OPENCLAW_GATEWAY_TOKEN -u OPENCLAW_GATEWAY_PASSWORD \
      -u OPENCLAW_GATEWAY_PORT HOME="$2" OPENCLAW_STATE_DIR="$2/.openclaw" \
      OPENCLAW_CONFIG_PATH="$2/.openclaw/openclaw.json" NO_COLOR=1 \
      "$OPENCLAW" gateway run --allow-unconfigured --port "$1" --auth token --token "$REF_TOKEN" --bind loopback
  }
  export -f ref_cmd
  export OPENCLAW REF_TOKEN
  for i in $(seq 1 "$RUNS"); do
    P=$(free_port)
    # The reference CLI starts its gateway and workers as child processes:
    # run it in its own process group, and end the whole group on SIGTERM.
    run openclaw --url "ws://127.0.0.1:$P" --token "$REF_TOKEN" startup --ready-timeout-secs 90 -- \
      setsid bash -c "trap 'kill -KILL 0' TERM; ref_cmd $P $WORK/ref-startup-$i & wait"
  done
  REF_PORT=$(free_port)
  setsid bash -c "ref_cmd $REF_PORT $WORK/ref" >"$WORK/ref.out" 2>&1 &
  REF_GROUP=$!
  PIDS+=("$REF_GROUP")
  wait_port "$REF_PORT" || { echo "reference did not start"; tail -20 "$WORK/ref.out"; exit 1; }
  REF_PID=$(listener_pid "$REF_PORT")
  sleep 5
  echo "{\"bench\":\"idle\",\"label\":\"openclaw\",\"rss_kb\":$(rss_kb "$REF_PID")}" >>"$OUT"
  scenarios openclaw "ws://127.0.0.1:$REF_PORT" "$REF_TOKEN" "$REF_PID" "$REF_HS_N" "$REF_RPC_R" "$REF_HOLD_K"
  kill -TERM -- "-$REF_GROUP" 2>/dev/null || true
else
  echo "reference not installed at $OPENCLAW (BENCH_INSTALL_REFERENCE=1 installs it); clawgate only" >&2
fi

python3 "$ROOT/scripts/bench_summary.py" "$OUT"
