#!/usr/bin/env bash
# TLS cost on the gateway port (scripts/bench_tls.py): token handshakes over
# ws:// vs wss:// against the release binary, same run.
#   scripts/bench_tls.sh                 # 3 rounds of 1000 handshakes per mode
#   ROUNDS=5 N=2000 HOLD=500 scripts/bench_tls.sh
# Loopback only; bounded counts.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=node24.sh
source "$ROOT/scripts/node24.sh"
ensure_python_ws
cargo build --quiet --release -p clawgate
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
python3 "$ROOT/scripts/bench_tls.py" --clawgate "$TARGET/release/clawgate" \
  --rounds "${ROUNDS:-3}" -n "${N:-1000}" --hold "${HOLD:-300}"
