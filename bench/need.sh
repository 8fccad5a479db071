# Sourced by bench/bench.sh and memory-profile/run.sh: `need COMMAND DEBIAN_PACKAGE [PATH]` installs the package
# with apt-get when COMMAND is missing (as root on Debian), else says what to install and exits.
need() {
  local cmd=$1 pkg=$2 path=${3:-}
  command -v "$cmd" >/dev/null && return 0
  [[ -n $path && -x $path ]] && return 0
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing $pkg (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null 2>&1 || {
      apt-get update -qq || true
      apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
    }
  else
    echo "missing $cmd: install it (Debian: apt-get install $pkg)" >&2
    exit 1
  fi
}
