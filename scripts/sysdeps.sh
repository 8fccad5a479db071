#!/usr/bin/env bash
# Checks the system tools the tests and the demo need; as root on Debian, installs the missing ones with apt-get.
set -euo pipefail

missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v python3 >/dev/null || missing+=(python3)
if command -v python3 >/dev/null && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  missing+=(python3-venv)
fi
command -v timeout >/dev/null || missing+=(coreutils)

# Chromium for the real-browser tests, and nginx playing DSM's reverse proxy in them: optional; if they cannot be
# installed, the browser tests (or their DSM topology) skip themselves.
optional=()
if [[ ${E2E_BROWSER:-1} != 0 ]] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  optional+=(chromium)
fi
if [[ ${E2E_BROWSER:-1} != 0 ]] && ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
  optional+=(nginx)
fi

if ((${#missing[@]} == 0 && ${#optional[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || echo "sysdeps: apt-get update failed; trying the install anyway" >&2
  if ((${#missing[@]})); then
    echo "sysdeps: installing ${missing[*]} (apt-get)"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if ((${#optional[@]})); then
    echo "sysdeps: installing ${optional[*]} for the browser tests (E2E_BROWSER=0 skips)"
    apt-get install -y -qq --no-install-recommends "${optional[@]}" >/dev/null \
      || echo "sysdeps: could not install ${optional[*]}; the browser tests will be skipped" >&2
  fi
elif ((${#missing[@]} == 0)); then
  echo "sysdeps: ${optional[*]} not installed (not root); the browser tests will be skipped" >&2
else
  echo "sysdeps: missing ${missing[*]}; install them (Debian: apt-get install ${missing[*]})" >&2
  exit 1
fi
