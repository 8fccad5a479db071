#!/usr/bin/env bash
# `make test`: every check CI runs, each bounded in time, then one summary. Exits 1 if anything failed.
# Steps: install test needs -> cargo fmt --check -> cargo build -> cargo clippy -> cargo test -> e2e (pytest)
# -> test-arm (the static aarch64 binary under qemu).
# A failing step does not stop the later ones (except that e2e needs the build), so one run shows everything.
set -uo pipefail
cd "$(dirname "$0")/.."

MAKE=${MAKE:-make}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=target/test-output
mkdir -p "$OUT"
export POSTERN_BIN=${POSTERN_BIN:-$(cd "$(dirname "$TARGET_DIR/x")" && pwd)/debug/postern}

names=() states=() notes=()
tests_passed=0 tests_failed=0 steps_failed=0
other_failed=0 # failures not counted as tests: a failed fmt/build/clippy/deps step, or a test step with no count

# step NAME SECONDS CMD...: runs CMD with a time limit, output to the terminal and $OUT/NAME.log.
step() {
  local name=$1 limit=$2
  shift 2
  echo
  echo "==> $name: $*"
  local t0=$SECONDS rc
  timeout --kill-after=15 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  rc=${PIPESTATUS[0]}
  local took=$((SECONDS - t0))s
  names+=("$name")
  if ((rc != 0)) && [[ $name != unit && $name != e2e ]]; then other_failed=$((other_failed + 1)); fi
  if ((rc == 0)); then
    states+=(ok)
  elif ((rc == 124 || rc == 137)); then
    states+=(FAIL); notes+=("$name: timed out after ${limit}s"); steps_failed=$((steps_failed + 1))
  else
    states+=(FAIL); steps_failed=$((steps_failed + 1))
  fi
  notes+=("$name took $took")
  return "$rc"
}

skip() {
  names+=("$1"); states+=(SKIP); notes+=("$1: skipped ($2)")
  steps_failed=$((steps_failed + 1)); other_failed=$((other_failed + 1))
}

step deps 900 "$MAKE" --no-print-directory deps
deps_ok=$?
step fmt 120 cargo fmt --check
step build 1200 cargo build
build_ok=$?
step clippy 1200 cargo clippy --all-targets -- -D warnings
# The design card forbids these runtimes/clients anywhere in the tree (normal, build and dev dependencies).
step no-tokio 120 bash -c '! cargo tree --prefix none -e normal,build,dev | grep -E "^(tokio|hyper|reqwest|async-std) " '

step unit 900 cargo test
unit_ok=$?
# "test result: ok. 12 passed; 0 failed; ..." once per test binary.
unit_failed=0
while read -r p f; do
  tests_passed=$((tests_passed + p)); unit_failed=$((unit_failed + f))
done < <(sed -nE 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/p' "$OUT/unit.log")
tests_failed=$((tests_failed + unit_failed))
((unit_ok != 0 && unit_failed == 0)) && other_failed=$((other_failed + 1))

if ((build_ok != 0)); then
  skip e2e "the build failed"
elif ((deps_ok != 0)); then
  skip e2e "installing the test needs failed"
else
  rm -f "$OUT/e2e-junit.xml"
  step e2e 1200 .venv/bin/python -m pytest tests/e2e --junitxml="$OUT/e2e-junit.xml" -o junit_family=xunit2
  e2e_ok=$?
  f=0
  if [[ -f $OUT/e2e-junit.xml ]]; then
    read -r p f < <(.venv/bin/python - "$OUT/e2e-junit.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
print(t - bad - skipped, bad)
PY
)
    tests_passed=$((tests_passed + p)); tests_failed=$((tests_failed + f))
  fi
  ((e2e_ok != 0 && f == 0)) && other_failed=$((other_failed + 1))
fi

# The static aarch64 binary under qemu (make test-arm; about 70 s from a cold build, 5 s when built). A failure
# counts as one failed step; its passed tests count with the others.
if ((deps_ok != 0)); then
  skip test-arm "installing the test needs failed"
else
  step test-arm 600 scripts/test-arm.sh
  p=$(grep -oE '[0-9]+ passed' "$OUT/test-arm.log" | tail -n1 | cut -d' ' -f1)
  tests_passed=$((tests_passed + ${p:-0}))
fi

echo
echo "==================== make test: summary ===================="
for i in "${!names[@]}"; do
  printf '  %-5s %s\n' "${states[$i]}" "${names[$i]}"
done
for n in "${notes[@]}"; do echo "  - $n"; done
echo "  logs: $OUT/ (per step), target/e2e-logs/ (IdP, httpbin, postern)"
if ((steps_failed == 0 && tests_failed == 0)); then
  echo "make test: OK"
else
  echo "make test: FAILED ($steps_failed step(s) failed)"
fi
# Tests from cargo test and pytest; a failed step without its own test count (fmt, build, clippy...) counts as one.
echo "total: $tests_passed passed, $((tests_failed + other_failed)) failed"
((steps_failed == 0 && tests_failed == 0))
