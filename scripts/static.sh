#!/usr/bin/env bash
# `make static`: static, stripped release binaries of postern for the musl targets, in target/static/:
#   postern-x86_64   x86_64-unknown-linux-musl  (musl-gcc for ring's C; the Rust target ships musl itself)
#   postern-aarch64  aarch64-unknown-linux-musl (clang + llvm-ar for ring's C, rust-lld links; .cargo/config.toml)
# Adds the rustup targets and, as root on Debian, installs musl-tools, clang, lld and llvm when missing.
# STATIC_TARGETS="x86_64 aarch64" picks which ones (default both). armv7: docs/armv7.md.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=target/static
read -r -a arches <<<"${STATIC_TARGETS:-x86_64 aarch64}"

triple() {
  case $1 in
    x86_64) echo x86_64-unknown-linux-musl ;;
    aarch64) echo aarch64-unknown-linux-musl ;;
    *) echo "static: unknown architecture $1 (x86_64 or aarch64)" >&2; return 1 ;;
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
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

mkdir -p "$OUT"
for a in "${arches[@]}"; do
  t=$(triple "$a")
  echo "==> cargo build --release --target $t"
  cargo build --release --locked --target "$t"
  # The release profile strips already (strip = true); copy so target/static/ holds only what ships.
  cp "$TARGET_DIR/$t/release/postern" "$OUT/postern-$a"
done

echo
echo "static binaries in $OUT/:"
for a in "${arches[@]}"; do
  f=$OUT/postern-$a
  printf '  %-24s %8d bytes (%s KiB)\n' "$f" "$(stat -c %s "$f")" "$(( $(stat -c %s "$f") / 1024 ))"
done
for a in "${arches[@]}"; do file "$OUT/postern-$a"; done
