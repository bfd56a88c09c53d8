#!/usr/bin/env bash
# The README's test command: installs what a fresh machine lacks, then runs
# every test (unit, integration against real gateways, CLI with the real
# binary, and the interop smoke with the real openclaw CLI).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (install Rust with rustup)" >&2
  exit 1
fi
# Integration tests bind extra loopback source addresses (127.0.0.x) and
# need nothing else from the system. The browser tests need Debian's
# chromium, Node and the npm packages of ui/tests (scripts/ui-test.sh
# installs them when missing). The interop and fronting suites need Node 24
# and the real openclaw package; scripts/interop.sh and scripts/fronting.sh
# install both into a cache.

# The service tests check the generated systemd unit with systemd-analyze
# (Debian's systemd package; systemd need not be running).
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "installing systemd (for systemd-analyze verify)"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq systemd; else sudo apt-get update -qq && sudo apt-get install -y -qq systemd; fi
fi

# The trusted-proxy test puts a real nginx in front of the gateway
# (crates/gateway/tests/trusted_proxy.rs; it fails without one).
if [ ! -x /usr/sbin/nginx ]; then
  echo "installing nginx-light (for the trusted-proxy end-to-end test)"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx-light; else sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends nginx-light; fi
fi

export CARGO_TERM_COLOR=never
# Snapshots are reviewed and committed; a missing or changed one fails.
export INSTA_UPDATE=no

echo "== hygiene: rustfmt, clippy, cargo-deny"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# cargo-deny checks licences, duplicate/wildcard dependencies and sources
# against deny.toml. Advisories are left out: they need the RustSec database
# download, which this machine's closed network does not allow.
if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "installing cargo-deny (once; about 5 minutes on 2 cores)"
  cargo install --locked cargo-deny
fi
cargo deny --log-level error check licenses bans sources

echo "== PostgreSQL (throwaway cluster for the store and replica tests)"
# One cluster for the whole run (scripts/pg.sh: fsync off, superuser
# clawgate, password in a file). Tests that must stop or start PostgreSQL
# start their own cluster with CLAWGATE_TEST_PG_SCRIPT. pg.sh installs
# PostgreSQL when the machine lacks it. The EXIT trap (the only one in
# this script; chain it if you add another) removes the cluster whether
# the run passes or fails.
pg_script="$(pwd)/scripts/pg.sh"
pg_dir=$(mktemp -d)
trap 'bash "$pg_script" destroy "$pg_dir" || true' EXIT
pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pg_url=$(bash "$pg_script" start "$pg_dir" "$pg_port")
export CLAWGATE_TEST_PG_URL="$pg_url"
export CLAWGATE_TEST_PG_PASSWORD_FILE="$pg_dir/password"
export CLAWGATE_TEST_PG_SCRIPT="$pg_script"
echo "PostgreSQL at $CLAWGATE_TEST_PG_URL (password in $CLAWGATE_TEST_PG_PASSWORD_FILE)"

echo "== cargo test (workspace)"
cargo test --workspace --all-targets 2>&1 | tee /tmp/clawgate-cargo-test.log
grep -E '^test result:' /tmp/clawgate-cargo-test.log | awk '
  { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?/) p += $(i-1); if ($i ~ /^failed;?/) f += $(i-1) } }
  END { printf "cargo: %d passed, %d failed\n", p, f }'

echo "== install (the README's cargo install, into a scratch root)"
# The same command a user runs, in debug to reuse the test build; then the
# installed binary answers and, with its directory on PATH, names itself
# `clawgate` in hints.
install_root=$(mktemp -d)
cargo install --quiet --locked --debug --path crates/cli --root "$install_root" \
  --target-dir "${CARGO_TARGET_DIR:-target}"
"$install_root/bin/clawgate" --version | grep -E '^clawgate [0-9]+\.[0-9]+\.[0-9]+ \([0-9a-f]{7,}(-dirty)? [0-9]{4}-[0-9]{2}-[0-9]{2}\)$'
hint=$(PATH="$install_root/bin:$PATH" clawgate --state-dir "$install_root/state" config get gateway.port 2>&1 || true)
echo "$hint" | grep -q 'Set it with: clawgate config set gateway.port' \
  || { echo "installed binary's hint does not name clawgate: $hint" >&2; exit 1; }
rm -rf "$install_root"

echo "== fuzz (short fixed iterations)"
# Every cargo-fuzz target over its committed corpus and regression inputs,
# then a fixed number of new executions; one summary line per target.
bash scripts/fuzz.sh

echo "== Control UI in headless Chromium (ui/tests)"
bash scripts/ui-test.sh

echo "== interop smoke (real openclaw CLI against clawgate)"
bash scripts/interop.sh

echo "== fronting (clawgate in front of a real OpenClaw gateway)"
bash scripts/fronting.sh
