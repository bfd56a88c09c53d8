#!/usr/bin/env bash
# Issue 22: a distributed password guesser (10,000 source addresses in
# 127.1.0.0/16, one wrong password each) against a fresh release gateway in
# password mode (exemptLoopback false, defaults otherwise: global budget
# 1000 per 60 s window), with a returning client (127.0.0.2, right password,
# connects every 20 ms) measured alongside. Then the Argon2 pool: an RPC load
# alone and during a flood of hashed-password guesses with the guard off.
#
#   scripts/bench_attack.sh            # 3 runs of each configuration
#   RUNS=1 scripts/bench_attack.sh
#
# Configurations (each on its own gateway):
#   plain-off   plain password, gateway.auth.rateLimit.attackGuard false (= before)
#   plain-on    plain password, guard on (the default)
#   hash-on     gateway.auth.passwordHash (Argon2id), guard on
#   hash-off    passwordHash, guard off: Argon2 verification throughput/cost
# Loopback only; every run bounded by -m 10000 and --max-secs. One JSON line
# per run in $OUT (default target/bench/attack.jsonl); medians on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-3}
MAX_SECS=${MAX_SECS:-60}
CONC=${CONC:-512}
OUT=${OUT:-$ROOT/target/bench/attack.jsonl}
SRC="127.1.0.0-127.1.15.255,127.1.16.0-127.1.31.255,127.1.32.0-127.1.39.15"

cargo build --release --quiet -p clawgate -p clawgate-bench
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CLAWGATE=$TARGET/release/clawgate
BENCH=$TARGET/release/clawgate-bench
mkdir -p "$(dirname "$OUT")"
: >"$OUT"
WORK=$(mktemp -d)
GW=""
cleanup() {
  [ -n "$GW" ] && kill -TERM "$GW" 2>/dev/null && wait "$GW" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PW="bench-$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"

# start CONFIG: a fresh gateway; sets GW (pid) and PORT.
start() {
  local cfg=$1 dir=$WORK/$1-$RANDOM guard=true
  mkdir -p "$dir"
  case $cfg in *-off) guard=false ;; esac
  if [[ $cfg == hash-* ]]; then
    printf '%s\n' "$PW" | "$CLAWGATE" --state-dir "$dir" gateway set-password --stdin >/dev/null
    "$CLAWGATE" --state-dir "$dir" config set gateway.auth.rateLimit.exemptLoopback false >/dev/null
  else
    printf '{gateway: {auth: {mode: "password", password: "%s", rateLimit: {exemptLoopback: false}}}}\n' "$PW" >"$dir/clawgate.json"
  fi
  "$CLAWGATE" --state-dir "$dir" config set gateway.auth.rateLimit.attackGuard "$guard" >/dev/null
  PORT=$(free_port)
  "$CLAWGATE" --state-dir "$dir" gateway run --port "$PORT" >"$dir/out" 2>"$dir/err" &
  GW=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && return 0
    sleep 0.1
  done
  echo "gateway did not start: $(cat "$dir/err")" >&2
  exit 1
}
stop() { kill -TERM "$GW"; wait "$GW" || true; GW=""; }

attack() {
  local cfg=$1
  start "$cfg"
  "$BENCH" --label "$cfg" --url "ws://127.0.0.1:$PORT" --password "$PW" --server-pid "$GW" \
    attack bruteforce -m 10000 --src-ips "$SRC" --origins none --exempt-loopback false \
    --concurrency "$CONC" --baseline-secs 2 --max-secs "$MAX_SECS" 2>>"$WORK/bench.err" | tail -1 >>"$OUT"
  stop
}

for i in $(seq 1 "$RUNS"); do
  echo "run $i/$RUNS" >&2
  for cfg in plain-off plain-on hash-on; do attack "$cfg"; done
done

# The pool: RPC p99 alone, then while 64 workers send hashed-password guesses
# (guard off, so every guess costs an Argon2 verification).
for i in $(seq 1 "$RUNS"); do
  start hash-off
  "$BENCH" --label rpc-alone --url "ws://127.0.0.1:$PORT" --password "$PW" --server-pid "$GW" \
    rpc -c 16 -r 100000 --method health --max-secs 30 2>>"$WORK/bench.err" | tail -1 >>"$OUT"
  "$BENCH" --label hash-off --url "ws://127.0.0.1:$PORT" --password "$PW" --server-pid "$GW" \
    attack bruteforce -m 100000 --src-ips "$SRC" --origins none --exempt-loopback false \
    --concurrency 64 --baseline-secs 0 --max-secs 25 2>>"$WORK/bench.err" | tail -1 >>"$OUT" &
  ATK=$!
  sleep 3
  "$BENCH" --label rpc-during-flood --url "ws://127.0.0.1:$PORT" --password "$PW" --server-pid "$GW" \
    rpc -c 16 -r 100000 --method health --max-secs 20 2>>"$WORK/bench.err" | tail -1 >>"$OUT"
  wait "$ATK" || true
  stop
done

python3 - "$OUT" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(label, key):
    v = [r.get(key) for r in rows if r.get("label") == label and r.get(key) is not None]
    return statistics.median(v) if v else None
print("| configuration | attempts | evaluated | evaluated/min | refused | server CPU us/refused | legit p99 ms (during) | legit failures |")
print("|---|---|---|---|---|---|---|---|")
for c in ["plain-off", "plain-on", "hash-on", "hash-off"]:
    print(f"| {c} | {med(c,'attempts')} | {med(c,'evaluated')} | {med(c,'evaluated_per_min')} | {med(c,'refused')} | {med(c,'server_cpu_us_per_refused')} | {med(c,'legit_p99_ms')} | {med(c,'legit_failures')} |")
print()
print("| rpc | req/s | p50 ms | p99 ms |")
print("|---|---|---|---|")
for c in ["rpc-alone", "rpc-during-flood"]:
    print(f"| {c} | {med(c,'rate')} | {med(c,'p50_ms')} | {med(c,'p99_ms')} |")
EOF
