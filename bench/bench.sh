#!/usr/bin/env bash
# `make bench`: installs wrk, nginx and caddy (Debian, as root) when missing, builds the static musl x86_64 release
# binary (scripts/static.sh), and runs bench/run.py: the upstream direct, nginx proxy_pass (one worker), Caddy
# reverse_proxy and postern (public and authorized routes) side by side with wrk. Results: bench/README.md.
#   BENCH_SECONDS=10 BENCH_CONNECTIONS=64 BENCH_ROUNDS=3 bench/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/need.sh
need wrk wrk
need nginx nginx /usr/sbin/nginx
need caddy caddy
STATIC_TARGETS=x86_64 scripts/static.sh >/dev/null
exec .venv/bin/python bench/run.py target/static/postern-x86_64
