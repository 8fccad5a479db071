#!/usr/bin/env bash
# `make bench-stream`: postern's memory while it streams big bodies. Not a timed test: it runs the 2 GiB download
# and upload of tests/e2e/test_bigfile.py (real IdP, TLS, alice's session, the bigfile.py test upstream) and records
# postern's VmRSS/VmHWM from /proc before and after each transfer, with the time it took.
#   GIB=8 bench/stream-rss.sh      another size (default 2)
# Results: target/bench/stream-rss.jsonl (one JSON line per transfer, appended) and a summary on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_DIR=${CARGO_TARGET_DIR:-target}
export POSTERN_BIN=${POSTERN_BIN:-$(cd "$(dirname "$TARGET_DIR/x")" && pwd)/debug/postern}
OUT=target/bench/stream-rss.jsonl
mkdir -p target/bench
run=$(mktemp)
trap 'rm -f "$run"' EXIT
BENCH_OUT=$run E2E_BIG_GIB=${GIB:-2} .venv/bin/python -m pytest tests/e2e/test_bigfile.py -q \
  -k "download_2gib or upload_2gib" -p no:cacheprovider
binary="$POSTERN_BIN ($(git describe --always --dirty 2>/dev/null || echo unknown))"
.venv/bin/python - "$run" "$binary" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"postern: {sys.argv[2]}")
print(f"{'transfer':<10} {'MiB':>7} {'s':>6} {'MiB/s':>7} {'VmRSS before':>13} {'VmHWM after':>12} {'peak growth':>12}")
for r in rows:
    mib = r["bytes"] / 2**20
    grew = r["after"]["VmHWM"] - r["before"]["VmRSS"]
    print(f"{r['test']:<10} {mib:>7.0f} {r['seconds']:>6.1f} {mib / max(r['seconds'], 0.1):>7.0f} "
          f"{r['before']['VmRSS']:>10} KiB {r['after']['VmHWM']:>8} KiB {grew:>8} KiB")
PY
sed "s|^|{\"binary\": \"$POSTERN_BIN\", \"at\": \"$(date -u +%FT%TZ)\", \"row\": |; s|\$|}|" "$run" >> "$OUT"
echo "appended to $OUT"
