#!/usr/bin/env bash
# Fuzzing with cargo-fuzz (libFuzzer + AddressSanitizer); targets in fuzz/.
#
#   scripts/fuzz.sh               build every target, then run each for a fixed
#                                 number of executions over the committed corpus
#                                 and regression inputs (what scripts/test.sh runs)
#   scripts/fuzz.sh long SECS     run each target for SECS seconds, one after the
#                                 other (the long runs recorded in SECURITY.md);
#                                 new inputs go to $FUZZ_OUT/corpus/<target>
#   scripts/fuzz.sh build         build only
#
# Environment: FUZZ_TARGETS (space-separated subset), FUZZ_RUNS (executions per
# target in the short mode), FUZZ_OUT (long mode output, default
# /tmp/clawgate-fuzz). Fails when any target crashes; the reproducer is left
# in fuzz/artifacts/<target>/ (gitignored). Reproducers worth keeping go to
# fuzz/regressions/<target>/, which every run replays.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

MODE=${1:-short}
ALL_TARGETS="frame connect_params device_signature config rpc_params"
TARGETS=${FUZZ_TARGETS:-$ALL_TARGETS}
RUNS=${FUZZ_RUNS:-20000}
OUT=${FUZZ_OUT:-/tmp/clawgate-fuzz}

case "$MODE" in
  short | build) ;;
  long)
    SECS=${2:?usage: scripts/fuzz.sh long SECONDS}
    ;;
  *)
    echo "usage: scripts/fuzz.sh [short | build | long SECONDS]" >&2
    exit 2
    ;;
esac

if ! command -v cargo >/dev/null 2>&1; then
  echo "fuzz: cargo is required (install Rust with rustup)" >&2
  exit 1
fi

# cargo-fuzz passes -Z flags (sanitizers, coverage) to rustc: nightly, or a
# stable toolchain told to accept them with RUSTC_BOOTSTRAP=1.
TOOLCHAIN=()
if command -v rustup >/dev/null 2>&1 && rustup run nightly rustc --version >/dev/null 2>&1; then
  TOOLCHAIN=(+nightly)
  echo "fuzz: toolchain $(rustup run nightly rustc --version)"
else
  export RUSTC_BOOTSTRAP=1
  echo "fuzz: no nightly toolchain; using $(rustc --version) with RUSTC_BOOTSTRAP=1"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Debug assertions and overflow checks stay on (cargo-fuzz's default build).
BUILD_START=$(date +%s)
if ! cargo "${TOOLCHAIN[@]}" fuzz build --fuzz-dir fuzz >/tmp/clawgate-fuzz-build.log 2>&1; then
  tail -40 /tmp/clawgate-fuzz-build.log >&2
  if [ -n "${RUSTC_BOOTSTRAP:-}" ]; then
    echo "fuzz: the build failed on a stable toolchain with RUSTC_BOOTSTRAP=1; install nightly: rustup toolchain install nightly" >&2
  fi
  echo "fuzz: build failed (log: /tmp/clawgate-fuzz-build.log)" >&2
  exit 1
fi
echo "fuzz: built in $(($(date +%s) - BUILD_START))s"
[ "$MODE" = build ] && exit 0

summary() { # target log seconds
  local execs cov ft corpus
  execs=$(grep -E 'stat::number_of_executed_units' "$2" | tail -1 | awk '{print $2}')
  cov=$(grep -oE 'cov: [0-9]+' "$2" | tail -1 | awk '{print $2}')
  ft=$(grep -oE 'ft: [0-9]+' "$2" | tail -1 | awk '{print $2}')
  corpus=$(grep -oE 'corp: [0-9]+' "$2" | tail -1 | awk '{print $2}')
  printf '%s: %s executions in %ss, cov %s, ft %s, corpus %s' "$1" "${execs:-?}" "$3" "${cov:-?}" "${ft:-?}" "${corpus:-?}"
}

FAILED=()
for t in $TARGETS; do
  corpus="$ROOT/fuzz/corpus/$t"
  regressions="$ROOT/fuzz/regressions/$t"
  mkdir -p "$corpus" "$regressions"
  if [ "$MODE" = long ]; then
    mkdir -p "$OUT/corpus/$t" "$OUT/logs"
    work="$OUT/corpus/$t"
    log="$OUT/logs/$t.log"
    limits=(-max_total_time="$SECS")
  else
    work=$(mktemp -d)
    log=$(mktemp)
    limits=(-runs="$RUNS")
  fi
  start=$(date +%s)
  # libFuzzer's default is one process and one job (the machine is shared;
  # -jobs/-workers would fork workers logging to ./fuzz-N.log). New inputs
  # land in the first directory, never in the committed corpus.
  if cargo "${TOOLCHAIN[@]}" fuzz run --fuzz-dir fuzz "$t" "$work" "$corpus" "$regressions" -- \
    "${limits[@]}" -dict="$ROOT/fuzz/dict/protocol.dict" -timeout=20 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result=CRASH
    FAILED+=("$t")
  fi
  echo "$(summary "$t" "$log" $(($(date +%s) - start))): $result"
  if [ "$result" != ok ]; then
    grep -E 'ERROR|panicked|Test unit written|SUMMARY' "$log" | head -20 >&2 || true
    echo "fuzz: $t log: $log" >&2
  fi
  if [ "$MODE" = short ]; then
    rm -rf "$work"
    [ "$result" = ok ] && rm -f "$log"
  fi
done

if [ "${#FAILED[@]}" -gt 0 ]; then
  echo "fuzz: crashes in: ${FAILED[*]} (reproducers in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: no crashes"
