#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a set time and prints target → executions → result.
#   bash scripts/fuzz.sh            # 60 s per target
#   bash scripts/fuzz.sh 5          # CI: 5 s per target, so the targets cannot rot
#   FUZZ_TARGETS="jwt ring" bash scripts/fuzz.sh 300
#
# Needs the nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz (installed
# here when missing). Each target starts from its committed seeds (fuzz/corpus/<target>) and
# keeps what it learns in fuzz/target/corpus/<target> (ignored by git). A crash, timeout or
# out-of-memory input is saved under fuzz/artifacts/<target>/; turn each one into a test in
# tests/fuzz_regressions.rs. Replay one with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
# Exits non-zero if any target failed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
case $seconds in '' | *[!0-9]*) echo "usage: $0 [seconds_per_target]" >&2; exit 2 ;; esac

if ! cargo +nightly --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}
printf '==> building fuzz targets (%s)\n' "${targets//$'\n'/ }"
# Built once (release, debug assertions, ASan, coverage), then each binary is run directly.
cargo +nightly fuzz build
bin=fuzz/target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release

logs=fuzz/target/logs
mkdir -p "$logs"
rows=()
failed=0
for t in $targets; do
  work=fuzz/target/corpus/$t
  mkdir -p "$work" "fuzz/corpus/$t" "fuzz/artifacts/$t"
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1)
  [ -f "fuzz/dicts/$t.dict" ] && args+=(-dict="fuzz/dicts/$t.dict")
  # shellcheck disable=SC2206
  args+=(${FUZZ_ARGS:-})
  printf '==> %s: %ss\n' "$t" "$seconds"
  status=0
  "$bin/$t" "${args[@]}" -artifact_prefix="fuzz/artifacts/$t/" "$work" "fuzz/corpus/$t" >"$logs/$t.log" 2>&1 || status=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" | grep -o '[0-9]*$' | tail -1)
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$logs/$t.log" | grep -o '[0-9]*$' | tail -1)
  corpus=$(find "$work" -type f | wc -l | tr -d ' ')
  if [ "$status" -eq 0 ]; then
    result=ok
  else
    failed=1
    artifact=$(grep -o 'Test unit written to [^ ]*' "$logs/$t.log" | tail -1 | sed 's/Test unit written to //')
    kind=$(grep -oE 'ERROR: libFuzzer: [a-z-]+|panicked at [^ ]*' "$logs/$t.log" | head -1)
    result="FAILED (${kind:-exit $status}) ${artifact:-see $logs/$t.log}"
    grep -m1 -A3 'panicked at' "$logs/$t.log" || tail -20 "$logs/$t.log"
  fi
  rows+=("$(printf '%-14s %14s %10s %8s  %s' "$t" "${execs:-?}" "${speed:-?}" "$corpus" "$result")")
done

printf '\n%-14s %14s %10s %8s  %s\n' target executions 'exec/s' corpus result
printf '%s\n' "${rows[@]}"
exit $failed
