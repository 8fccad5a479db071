#!/usr/bin/env bash
# `make static`: static, stripped release binaries of postern for the musl targets, in target/static/:
#   postern-x86_64   x86_64-unknown-linux-musl  (musl-gcc for ring's C; the Rust target ships musl itself)
#   postern-aarch64  aarch64-unknown-linux-musl (clang + llvm-ar for ring's C, rust-lld links; .cargo/config.toml)
# Adds the rustup targets and, as root on Debian, installs musl-tools, clang, lld and llvm when missing.
#   postern-armv7    armv7-unknown-linux-musleabihf, only when asked (`make static-armv7`, ~6 min): rustup has no
#                    rust-std for it, so std is built from rust-src (RUSTC_BOOTSTRAP=1 -Zbuild-std on stable) and
#                    cargo-zigbuild links against zig's musl (PyPI ziglang + cargo-zigbuild, in target/zig-venv/).
# STATIC_TARGETS="x86_64 aarch64 armv7" picks which ones (default x86_64 aarch64). More: docs/armv7.md.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=target/static
read -r -a arches <<<"${STATIC_TARGETS:-x86_64 aarch64}"

triple() {
  case $1 in
    x86_64) echo x86_64-unknown-linux-musl ;;
    aarch64) echo aarch64-unknown-linux-musl ;;
    armv7) echo armv7-unknown-linux-musleabihf ;;
    *) echo "static: unknown architecture $1 (x86_64, aarch64 or armv7)" >&2; return 1 ;;
  esac
}

# Debian packages: musl-gcc (x86_64 ring C), clang (aarch64 ring C and assembly), llvm-ar, lld (rust-lld's
# siblings are not needed, but ld.lld is the fallback linker some setups pick).
missing=()
command -v musl-gcc >/dev/null || missing+=(musl-tools)
command -v clang >/dev/null || missing+=(clang)
command -v llvm-ar >/dev/null || missing+=(llvm)
command -v ld.lld >/dev/null || missing+=(lld)
command -v file >/dev/null || missing+=(file)
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "static: installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || echo "static: apt-get update failed; trying the install anyway" >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "static: missing ${missing[*]}; install them (Debian: apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

installed=$(rustup target list --installed)
for a in "${arches[@]}"; do
  t=$(triple "$a")
  [[ $a == armv7 ]] && continue # std comes from rust-src, below
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

# armv7: rust-src for -Zbuild-std, and zig (its musl and linker) through cargo-zigbuild, both from PyPI.
ZIG_VENV=$PWD/target/zig-venv
if [[ " ${arches[*]} " == *" armv7 "* ]]; then
  rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src
  if [[ ! -x $ZIG_VENV/bin/cargo-zigbuild ]]; then
    echo "static: installing ziglang and cargo-zigbuild (PyPI) into $ZIG_VENV"
    python3 -m venv "$ZIG_VENV"
    "$ZIG_VENV/bin/pip" install --quiet ziglang cargo-zigbuild
  fi
fi

mkdir -p "$OUT"
for a in "${arches[@]}"; do
  t=$(triple "$a")
  if [[ $a == armv7 ]]; then
    echo "==> cargo zigbuild --release --target $t -Zbuild-std=std,panic_abort (RUSTC_BOOTSTRAP=1)"
    # link-self-contained=no: zig supplies musl's crt objects and libc, not the (absent) rust-std.
    PATH=$ZIG_VENV/bin:$PATH RUSTC_BOOTSTRAP=1 RUSTFLAGS="${RUSTFLAGS:-} -C link-self-contained=no" \
      cargo zigbuild --release --locked --target "$t" -Zbuild-std=std,panic_abort
  else
    echo "==> cargo build --release --target $t"
    cargo build --release --locked --target "$t"
  fi
  # The release profile strips already (strip = true); copy so target/static/ holds only what ships.
  cp "$TARGET_DIR/$t/release/postern" "$OUT/postern-$a"
done

echo
echo "static binaries in $OUT/:"
for a in "${arches[@]}"; do
  f=$OUT/postern-$a
  printf '  %-30s %8d bytes (%s KiB)\n' "$f" "$(stat -c %s "$f")" "$(( $(stat -c %s "$f") / 1024 ))"
done
for a in "${arches[@]}"; do file "$OUT/postern-$a"; done
