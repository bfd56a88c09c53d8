#!/usr/bin/env bash
# A/B of the connect path and the request path between two release builds
# of clawgate (e.g. before and after a refactor), alternating, one fresh
# gateway per run, the same load tool for both (the "after" build's
# clawgate-bench). Loopback only; every run is bounded in count and time.
#
#   scripts/bench_ab.sh BEFORE_BIN AFTER_BIN [ROUNDS]
#
# Prints one JSON line per run (label "before"/"after") and writes them to
# $OUT (default target/bench/ab.jsonl); BENCHMARKS.md quotes the medians of
# `rate` and `server_cpu_us_per_op` per scenario and label.
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=${1:?before binary}
AFTER=${2:?after binary}
ROUNDS=${3:-3}
BENCH=${BENCH:-$PWD/target/release/clawgate-bench}
OUT=${OUT:-$PWD/target/bench/ab.jsonl}
mkdir -p "$(dirname "$OUT")"
: >"$OUT"
WORK=$(mktemp -d)
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
TOKEN="ab-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

# one LABEL BIN: a fresh gateway, then token handshakes, v3 handshakes and
# pipelined health RPCs against it.
one() {
  local label=$1 bin=$2 port dir
  port=$(free_port)
  dir=$(mktemp -d -p "$WORK")
  CLAWGATE_LOG=warn "$bin" --state-dir "$dir" gateway run --port "$port" --token "$TOKEN" \
    >"$dir/out" 2>"$dir/err" &
  PID=$!
  for _ in $(seq 1 100); do
    ss -ltnH "sport = :$port" | grep -q . && break
    sleep 0.1
  done
  sleep 0.5
  local common=(--label "$label" --url "ws://127.0.0.1:$port" --token "$TOKEN" --server-pid "$PID")
  "$BENCH" "${common[@]}" handshake -n 20000 -c 64 --src-ips 127.0.0.1-8 --max-secs 60 2>/dev/null | tail -1 | tee -a "$OUT"
  "$BENCH" "${common[@]}" handshake -n 20000 -c 64 --device v3 --device-pool 64 --src-ips 127.0.0.1-8 --max-secs 60 2>/dev/null | tail -1 | tee -a "$OUT"
  "$BENCH" "${common[@]}" rpc -c 16 -r 300000 --method health --max-secs 60 2>/dev/null | tail -1 | tee -a "$OUT"
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=""
}

for i in $(seq 1 "$ROUNDS"); do
  echo "round $i/$ROUNDS" >&2
  one before "$BEFORE"
  one after "$AFTER"
done
