#!/usr/bin/env bash
# Fuzzing with cargo-fuzz (libFuzzer + AddressSanitizer); targets in fuzz/,
# what each covers in SECURITY.md ("Fuzzing").
#
#   scripts/fuzz.sh               build every target, replay its committed corpus
#                                 and regression inputs, then run a fixed number
#                                 of executions (what scripts/test.sh runs)
#   scripts/fuzz.sh long SECS     run each target for SECS seconds, one after the
#                                 other (the long runs recorded in SECURITY.md);
#                                 new inputs go to $FUZZ_OUT/corpus/<target>,
#                                 logs to $FUZZ_OUT/logs/<target>.log
#   scripts/fuzz.sh merge         fold $FUZZ_OUT/corpus/<target> into the committed
#                                 fuzz/corpus/<target>: the hand-made seed-* files
#                                 plus a set-cover minimized selection
#                                 (libFuzzer -set_cover_merge=1)
#   scripts/fuzz.sh build         build only
#
# Environment: FUZZ_TARGETS (space-separated subset), FUZZ_RUNS (new executions
# per target in the short mode, default 50000), FUZZ_OUT (default
# /tmp/clawgate-fuzz), FUZZ_TOOLCHAIN=stable (use the stable toolchain with
# RUSTC_BOOTSTRAP=1 even when nightly is installed), CARGO_TARGET_DIR (default
# fuzz/target).
#
# Fails when a target crashes; libFuzzer leaves the reproducer in
# fuzz/artifacts/<target>/ (gitignored). Reproducers worth keeping go to
# fuzz/regressions/<target>/, which every run replays.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

MODE=${1:-short}
ALL_TARGETS="frame upgrade_head connect_params device_signature config rpc_params proxy_jwt passkey"
TARGETS=${FUZZ_TARGETS:-$ALL_TARGETS}
RUNS=${FUZZ_RUNS:-50000}
OUT=${FUZZ_OUT:-/tmp/clawgate-fuzz}

case "$MODE" in
  short | build | merge) ;;
  long)
    SECS=${2:?usage: scripts/fuzz.sh long SECONDS}
    ;;
  *)
    echo "usage: scripts/fuzz.sh [short | build | merge | long SECONDS]" >&2
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
if [ "${FUZZ_TOOLCHAIN:-nightly}" = nightly ] && command -v rustup >/dev/null 2>&1 &&
  rustup run nightly rustc --version >/dev/null 2>&1; then
  TOOLCHAIN=(+nightly)
  echo "fuzz: toolchain $(rustup run nightly rustc --version)"
else
  export RUSTC_BOOTSTRAP=1
  echo "fuzz: nightly not used; $(rustc --version) with RUSTC_BOOTSTRAP=1"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# cargo-fuzz's default build: release, with debug assertions and overflow
# checks, AddressSanitizer.
BUILD_LOG=$(mktemp /tmp/clawgate-fuzz-build.XXXXXX)
BUILD_START=$(date +%s)
if ! cargo "${TOOLCHAIN[@]}" fuzz build --fuzz-dir fuzz >"$BUILD_LOG" 2>&1; then
  tail -40 "$BUILD_LOG" >&2
  if [ -n "${RUSTC_BOOTSTRAP:-}" ]; then
    echo "fuzz: the build failed on a stable toolchain with RUSTC_BOOTSTRAP=1; install nightly: rustup toolchain install nightly" >&2
  fi
  echo "fuzz: build failed (log: $BUILD_LOG)" >&2
  exit 1
fi
rm -f "$BUILD_LOG"
echo "fuzz: built in $(($(date +%s) - BUILD_START))s"
[ "$MODE" = build ] && exit 0

# The binaries are run directly (as `cargo fuzz run` does, without its
# rebuild before every target). The long mode runs copies, so edits to the
# checkout during an hour of fuzzing change nothing.
HOST=$(rustc "${TOOLCHAIN[@]}" -vV | sed -n 's/^host: //p')
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/fuzz/target}/$HOST/release"
if [ "$MODE" = long ]; then
  mkdir -p "$OUT/bin"
  for t in $TARGETS; do cp "$BIN_DIR/$t" "$OUT/bin/$t"; done
  BIN_DIR="$OUT/bin"
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0}
DICT="$ROOT/fuzz/dict/protocol.dict"

if [ "$MODE" = merge ]; then
  for t in $TARGETS; do
    found="$OUT/corpus/$t"
    [ -d "$found" ] || continue
    fresh=$(mktemp -d)
    cp "$ROOT/fuzz/corpus/$t"/seed-* "$fresh"/
    "$BIN_DIR/$t" -set_cover_merge=1 -dict="$DICT" "$fresh" "$ROOT/fuzz/corpus/$t" "$found" \
      >"$OUT/merge-$t.log" 2>&1
    rm -rf "$ROOT/fuzz/corpus/$t"
    mv "$fresh" "$ROOT/fuzz/corpus/$t"
    echo "fuzz: $t corpus: $(find "$ROOT/fuzz/corpus/$t" -type f | wc -l) files, $(du -sh --apparent-size "$ROOT/fuzz/corpus/$t" | cut -f1)"
  done
  exit 0
fi

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
  mkdir -p "$corpus" "$regressions" "$ROOT/fuzz/artifacts/$t"
  if [ "$MODE" = long ]; then
    mkdir -p "$OUT/corpus/$t" "$OUT/logs"
    work="$OUT/corpus/$t"
    log="$OUT/logs/$t.log"
    limits=(-max_total_time="$SECS")
  else
    work=$(mktemp -d)
    log=$(mktemp /tmp/clawgate-fuzz-$t.XXXXXX)
    limits=(-runs="$RUNS")
  fi
  start=$(date +%s)
  # libFuzzer's default is one process and one job (the machine is shared;
  # -jobs/-workers would fork workers logging to ./fuzz-N.log). New inputs
  # land in the first directory, never in the committed corpus.
  if "$BIN_DIR/$t" "${limits[@]}" -dict="$DICT" -timeout=20 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$ROOT/fuzz/artifacts/$t/" \
    "$work" "$corpus" "$regressions" >"$log" 2>&1; then
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
