#!/usr/bin/env bash
# Fronting suite: clawgate in front of a real OpenClaw 2026.9.6 gateway
# (scripts/interop/fronting.py). Starts the upstream, a counting TCP
# forwarder and clawgate --upstream on free loopback ports in a temporary
# directory; drives them with the real openclaw CLI, protocol clients and
# clawgate-bench (a 10,000-connect wrong-token storm). Release builds:
# the storm's latency check is about the product, not a debug build.
# Installs Node 24, openclaw and the Python packages when missing.
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
ensure_python_ws
# The Control UI check (scripts/interop/fronting_ui.mjs): Debian's chromium
# and ui/tests' playwright-core, as scripts/ui-test.sh installs them.
if [ ! -x /usr/bin/chromium ]; then
  echo "chromium not found; installing Debian's"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
if [ ! -d "$ROOT/ui/tests/node_modules/playwright-core" ]; then
  (cd "$ROOT/ui/tests" && npm ci --no-audit --no-fund --loglevel=error)
fi

cargo build --quiet --release -p clawgate -p clawgate-bench
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
timeout 900 python3 "$ROOT/scripts/interop/fronting.py" --openclaw "$OPENCLAW" \
  --clawgate "$TARGET/release/clawgate" --bench "$TARGET/release/clawgate-bench" --work "$WORK"
