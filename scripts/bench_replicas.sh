#!/usr/bin/env bash
# Replicas on PostgreSQL (issue 19): builds release, starts a throwaway
# PostgreSQL with scripts/pg.sh (its defaults: fsync=off,
# synchronous_commit=off, full_page_writes=off), then
#
#   1. handshake CPU: one gateway on SQLite and one on PostgreSQL (its own
#      database, no other replica), the same runs interleaved: shared token,
#      shared token + signed device (v3), signed device + device token only;
#      the gateway's CPU (--server-pid) and the whole PostgreSQL cluster's
#      CPU (postmaster and children, --pg-pid) per handshake, and the
#      cluster's idle CPU with that gateway connected;
#   2. three replicas on one database (autoApproveLocal=false, so pairing
#      needs an operator): `clawgate-bench replicas revoke` pairs, approves,
#      connects and revokes REVOKE_COUNT fresh devices round robin across
#      them and times approval and revocation propagation;
#   3. (FSYNC_ON=1, the default) the revoke runs again after
#      ALTER SYSTEM SET fsync=on, synchronous_commit=on, full_page_writes=on.
#
# Prints the medians over RUNS; one JSON line per run in $OUT.
#
#   scripts/bench_replicas.sh
#   RUNS=5 HS_N=20000 REVOKE_COUNT=200 FSYNC_ON=0 scripts/bench_replicas.sh
#
# Loopback only; every run is bounded in count and time; everything it
# started (gateways, the PostgreSQL cluster, its temp dir) is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-3}
HS_N=${HS_N:-20000}
HS_C=${HS_C:-64}
REVOKE_COUNT=${REVOKE_COUNT:-200}
FSYNC_ON=${FSYNC_ON:-1}
SRC_IPS=127.0.0.1-8

cargo build --release --quiet -p clawgate -p clawgate-bench
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CLAWGATE=$TARGET/release/clawgate
BENCH=$TARGET/release/clawgate-bench
OUT=${OUT:-$TARGET/bench/replicas.jsonl}
mkdir -p "$(dirname "$OUT")"
: >"$OUT"
LOGS=${OUT%.jsonl}-logs
rm -rf "$LOGS"

# Short: the cluster's unix socket lives in it (sun_path is 107 bytes).
WORK=$(mktemp -d /tmp/cgrep.XXXXXX)
chmod 0755 "$WORK" # the cluster may run as another user (pg.sh as root)
PGDIR=$WORK/pg
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill -TERM -- "-$p" 2>/dev/null || true
  done
  sleep 1
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill -KILL -- "-$p" 2>/dev/null || true
  done
  # Keep the gateways' logs next to the results.
  mkdir -p "$LOGS" && cp "$WORK"/*.err "$LOGS"/ 2>/dev/null || true
  bash "$ROOT/scripts/pg.sh" destroy "$PGDIR" >/dev/null 2>&1 || true
  rm -rf "$WORK" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
listener_pid() { ss -ltnpH "sport = :$1" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1; }
wait_port() {
  for _ in $(seq 1 300); do
    if [ -n "$(listener_pid "$1")" ]; then return 0; fi
    sleep 0.1
  done
  return 1
}

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

# start_gw NAME PORT ARGS...: a gateway in its own process group; sets GW_PID.
start_gw() {
  local name=$1 port=$2; shift 2
  CLAWGATE_STORE_PASSWORD_FILE=$PGDIR/password CLAWGATE_LOG=warn setsid "$CLAWGATE" \
    --state-dir "$WORK/$name" gateway run --port "$port" --token "$TOKEN" "$@" \
    >"$WORK/$name.out" 2>"$WORK/$name.err" &
  GW_PID=$!
  PIDS+=("$GW_PID")
  wait_port "$port" || { echo "gateway $name did not start"; cat "$WORK/$name.err"; exit 1; }
}
stop_gw() { kill -TERM -- "-$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# --- PostgreSQL -----------------------------------------------------------------------
PG_URL=$(bash "$ROOT/scripts/pg.sh" start "$PGDIR")
PG_BASE=${PG_URL%/postgres}
PG_PID=$(head -1 "$PGDIR/data/postmaster.pid")
psql_su() { PGPASSWORD=$(cat "$PGDIR/password") psql -X -q -v ON_ERROR_STOP=1 "$PG_URL" "$@"; }
psql_su -c 'CREATE DATABASE hs' -c 'CREATE DATABASE rep'
echo "{\"bench\":\"pg-settings\",\"label\":\"fsync-off\",\"settings\":$(psql_su -At -c "SELECT json_object_agg(name, setting) FROM pg_settings WHERE name IN ('fsync','synchronous_commit','full_page_writes','server_version')")}" >>"$OUT"

# CPU seconds of the cluster: postmaster (with reaped children) + live children.
pg_cpu() {
  python3 - "$PG_PID" <<'EOF'
import os, sys
pm = int(sys.argv[1])
def stat(pid):
    try:
        s = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    f = s.rsplit(")", 1)[1].split()
    return int(f[1]), int(f[11]) + int(f[12]), int(f[13]) + int(f[14])
_, own, reaped = stat(pm)
t = own + reaped
for p in os.listdir("/proc"):
    if p.isdigit():
        st = stat(int(p))
        if st and st[0] == pm:
            t += st[1] + st[2]
print(t / os.sysconf("SC_CLK_TCK"))
EOF
}

TOKEN="bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

# --- 1. handshake CPU: SQLite vs PostgreSQL ----------------------------------------------
SQ_PORT=$(free_port)
start_gw sqlite "$SQ_PORT"
SQ_PID=$GW_PID
PG_PORT=$(free_port)
start_gw pg-single "$PG_PORT" --store "$PG_BASE/hs"
PGG_PID=$GW_PID
sleep 1
# The cluster's idle CPU with the PostgreSQL gateway connected (presence
# refreshes, background workers), over 10 s.
c0=$(pg_cpu); sleep 10; c1=$(pg_cpu)
echo "{\"bench\":\"pg-idle\",\"label\":\"postgres\",\"secs\":10,\"pg_cpu_secs\":$(python3 -c "print(round($c1-$c0,3))")}" >>"$OUT"
for i in $(seq 1 "$RUNS"); do
  echo "[handshake] run $i/$RUNS" >&2
  for mode in token v3 device-token; do
    run sqlite --url "ws://127.0.0.1:$SQ_PORT" --token "$TOKEN" --server-pid "$SQ_PID" \
      replicas handshake -n "$HS_N" -c "$HS_C" --mode "$mode" --device-pool 64 --src-ips "$SRC_IPS" --max-secs 60
    run postgres --url "ws://127.0.0.1:$PG_PORT" --token "$TOKEN" --server-pid "$PGG_PID" \
      replicas handshake -n "$HS_N" -c "$HS_C" --mode "$mode" --device-pool 64 --src-ips "$SRC_IPS" --max-secs 60 --pg-pid "$PG_PID"
  done
done
stop_gw "$SQ_PID"
stop_gw "$PGG_PID"

# --- 2. three replicas: approval and revocation propagation ------------------------------
URLS=()
for r in a b c; do
  "$CLAWGATE" --state-dir "$WORK/replica-$r" config set gateway.nodes.pairing.autoApproveLocal false >/dev/null
  P=$(free_port)
  start_gw "replica-$r" "$P" --store "$PG_BASE/rep"
  URLS+=("ws://127.0.0.1:$P")
done
URL_LIST=$(IFS=,; echo "${URLS[*]}")
sleep 1
revoke_runs() { # LABEL
  for i in $(seq 1 "$RUNS"); do
    echo "[revoke $1] run $i/$RUNS" >&2
    run "$1" --token "$TOKEN" replicas revoke --urls "$URL_LIST" --count "$REVOKE_COUNT" --timeout-secs 5 --max-secs 120
  done
}
revoke_runs fsync-off
if [ "$FSYNC_ON" = 1 ]; then
  psql_su -c 'ALTER SYSTEM SET fsync = on' -c 'ALTER SYSTEM SET synchronous_commit = on' \
    -c 'ALTER SYSTEM SET full_page_writes = on' -c 'SELECT pg_reload_conf()' >/dev/null
  sleep 1
  echo "{\"bench\":\"pg-settings\",\"label\":\"fsync-on\",\"settings\":$(psql_su -At -c "SELECT json_object_agg(name, setting) FROM pg_settings WHERE name IN ('fsync','synchronous_commit','full_page_writes','server_version')")}" >>"$OUT"
  revoke_runs fsync-on
fi
for r in a b c; do
  if grep -qiE 'panic|error' "$WORK/replica-$r.err"; then
    echo "--- replica $r log (errors) ---" >&2
    grep -iE 'panic|error' "$WORK/replica-$r.err" | tail -5 >&2
  fi
done

python3 "$ROOT/scripts/bench_replicas.py" "$OUT"
