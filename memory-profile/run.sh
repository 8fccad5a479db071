#!/usr/bin/env bash
# `make memory-profile`: installs heaptrack (Debian, as root) when missing, builds the static musl x86_64 release
# binary (scripts/static.sh, stripped: the RSS runs) and the same code with line tables (`--profile profiling`,
# glibc: heaptrack's LD_PRELOAD cannot enter a static binary), then runs memory-profile/run.py through the
# scenarios. Results: memory-profile/README.md; heaptrack files in target/memory-profile/.
#   MP_SCENARIOS="idle conns-plain" memory-profile/run.sh    some scenarios only
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/need.sh
need heaptrack heaptrack
need heaptrack_print heaptrack
need nginx nginx /usr/sbin/nginx
TARGET_DIR=${CARGO_TARGET_DIR:-target}
STATIC_TARGETS=x86_64 scripts/static.sh >/dev/null
cargo build --profile profiling --locked
exec .venv/bin/python memory-profile/run.py target/static/postern-x86_64 "$TARGET_DIR/profiling/postern"
