#!/usr/bin/env bash
# `make test-arm`: builds the static aarch64 binary (scripts/static.sh) and runs tests/e2e/test_arm.py with it
# under qemu-aarch64-static (ARM_ARCH=armv7, `make test-armv7`: the armv7 binary under qemu-arm-static): --version, --check on examples/postern.yaml, /ping, healthcheck, a public route to
# httpbin and a sign-in through the real IdP. Installs Debian's qemu-user-static as root when missing.
# Logs: target/e2e-logs-arm/. Expects `make deps` done (the Makefile target depends on it).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS

if ! command -v qemu-aarch64-static >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "test-arm: installing qemu-user-static (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || echo "test-arm: apt-get update failed; trying the install anyway" >&2
    apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null
  else
    echo "test-arm: qemu-aarch64-static is missing (Debian: apt-get install qemu-user-static)" >&2
    exit 1
  fi
fi

ARM_ARCH=${ARM_ARCH:-aarch64}
STATIC_TARGETS=$ARM_ARCH scripts/static.sh
built=$((SECONDS - t0))

export POSTERN_ARM_BIN=$PWD/target/static/postern-$ARM_ARCH
export E2E_LOG_DIR=$PWD/target/e2e-logs-arm
rc=0
.venv/bin/python -m pytest tests/e2e/test_arm.py "$@" || rc=$?
# Every test there skips without the binary or qemu; a run where nothing ran is no pass.
echo "test-arm: build ${built}s, total $((SECONDS - t0))s"
exit "$rc"
