#!/usr/bin/env bash
# `make fuzz`: runs every cargo-fuzz target for FUZZ_SECONDS (default 60) each on its corpus in fuzz/corpus/,
# two at a time. A crash leaves its input in fuzz/artifacts/<target>/ and fails the run; make each one a test
# (tests of src/fuzzing.rs or the module at fault) before fixing it. cargo-fuzz needs nightly features: the
# stable toolchain provides them with RUSTC_BOOTSTRAP=1 (only for this build, never for postern's own).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH=${FUZZ_SECONDS:-60}
TARGETS=${FUZZ_TARGETS:-config request_head cookie handoff}
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo fuzz build -O
mkdir -p logs
pids=() names=()
for t in $TARGETS; do
  mkdir -p "corpus/$t"
  echo "fuzz: $t for ${SECONDS_EACH}s (log fuzz/logs/$t.log)"
  cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 \
    > "logs/$t.log" 2>&1 &
  pids+=($!) names+=("$t")
  # Two at a time: this machine has two cores.
  if ((${#pids[@]} % 2 == 0)); then wait "${pids[-2]}" "${pids[-1]}" || true; fi
done
wait || true
fail=0
for t in "${names[@]}"; do
  line=$(grep -E "^Done [0-9]+ runs" "logs/$t.log" | tail -1 || true)
  if [[ -n $line ]] && ! grep -qE "ERROR: libFuzzer|panicked|deadly signal" "logs/$t.log"; then
    echo "fuzz: $t ok: $line"
  else
    echo "fuzz: $t FAILED: see fuzz/logs/$t.log and fuzz/artifacts/$t/"; fail=1
  fi
done
exit $fail
