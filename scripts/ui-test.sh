#!/usr/bin/env bash
# Browser tests of the Control UI (ui/tests/): Debian's chromium driven by
# playwright-core against real gateways started from the debug build.
#
# Installs what a fresh Debian machine lacks (chromium, Node.js >= 20 and npm,
# the npm packages of ui/tests/package-lock.json), builds the gateway, runs
# every ui/tests/*.test.mjs one file at a time and prints
# "ui: N passed, M failed". Exits non-zero on any failure.
#
#   scripts/ui-test.sh                 # everything
#   scripts/ui-test.sh pairing states  # only ui/tests/pairing.test.mjs and states.test.mjs
#
# Environment: CLAWGATE_BIN (default $CARGO_TARGET_DIR or target, /debug/clawgate; set it to skip
# the build), UI_TEST_NO_BUILD=1 (use the existing binary).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TESTS="$ROOT/ui/tests"
cd "$ROOT"

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
APT_UPDATED=""
apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    $SUDO apt-get update -q >/dev/null
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

if [ ! -x /usr/bin/chromium ]; then
  echo "ui-test: installing chromium (Debian)"
  apt_install chromium
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "ui-test: installing nodejs and npm (Debian)"
  apt_install nodejs npm
fi
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(node_major)" -lt 20 ]; then
  # playwright-core and node --test --test-concurrency need Node >= 20;
  # Debian's nodejs may be older. Use the Node 24 that scripts/interop.sh
  # also uses, from the same cache outside the repository.
  # shellcheck source=node24.sh
  source "$ROOT/scripts/node24.sh"
  use_node24
fi

# npm ci when node_modules is missing or older than the lock file.
STAMP="$TESTS/node_modules/.package-lock.json"
if [ ! -f "$STAMP" ] || [ "$TESTS/package-lock.json" -nt "$STAMP" ] || [ ! -d "$TESTS/node_modules/playwright-core" ]; then
  echo "ui-test: npm ci in ui/tests"
  (cd "$TESTS" && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ -z "${CLAWGATE_BIN:-}" ] && [ -z "${UI_TEST_NO_BUILD:-}" ]; then
  echo "ui-test: cargo build -p clawgate"
  cargo build -q -p clawgate
fi
export CLAWGATE_BIN="${CLAWGATE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/clawgate}"

FILES=()
if [ "$#" -gt 0 ]; then
  for name in "$@"; do FILES+=("$TESTS/${name%.test.mjs}.test.mjs"); done
else
  FILES=("$TESTS"/*.test.mjs)
fi

rm -rf "$TESTS/artifacts"
mkdir -p "$TESTS/artifacts"
set +e
node --test --test-concurrency=1 \
  --test-reporter="$TESTS/reporter.mjs" --test-reporter-destination=stdout \
  "${FILES[@]}"
rc=$?
set -e
echo "ui-test: screenshots and gateway logs in ui/tests/artifacts/"
exit "$rc"
