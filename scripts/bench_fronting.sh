#!/usr/bin/env bash
# Fronting benchmarks (scripts/bench_fronting.py): clawgate in front of a
# real OpenClaw 2026.9.6 vs the same upstream reached directly, same run.
#   scripts/bench_fronting.sh              # 3 rounds
#   ROUNDS=5 RPC_R=50000 scripts/bench_fronting.sh
# Loopback only; every run bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=node24.sh
source "$ROOT/scripts/node24.sh"
use_node24
ensure_openclaw 2026.9.6
ensure_python_ws
cargo build --quiet --release -p clawgate -p clawgate-bench
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 "$ROOT/scripts/bench_fronting.py" --openclaw "$OPENCLAW" --clawgate "$TARGET/release/clawgate" \
  --bench "$TARGET/release/clawgate-bench" --work "$WORK"
