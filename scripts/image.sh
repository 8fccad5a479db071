#!/usr/bin/env bash
# `make image`: the FROM-scratch image of Dockerfile.musl for linux/amd64 and linux/arm64, built with buildah
# (no Docker engine, vfs storage, no RUN steps so no emulation), written as docker-archive tars that DSM's
# Docker / Container Manager loads (Image > Add > From file) and `docker load -i` takes:
#   target/image/postern-amd64.tar, target/image/postern-arm64.tar   (image postern:VERSION)
#   target/image/postern-arm.tar (linux/arm/v7) too when target/static/postern-armv7 exists (`make static-armv7`)
# Expects target/static/postern-x86_64 and postern-aarch64 (`make static`; the Makefile target depends on it).
# Installs Debian's buildah as root when missing. Storage stays under target/image/ (nothing system-wide).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v buildah >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "image: installing buildah (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || echo "image: apt-get update failed; trying the install anyway" >&2
    apt-get install -y -qq --no-install-recommends buildah >/dev/null
  else
    echo "image: buildah is missing (Debian: apt-get install buildah)" >&2
    exit 1
  fi
fi

OUT=$PWD/target/image
VERSION=$(sed -nE 's/^version = "([^"]+)"/\1/p' Cargo.toml | head -n1)
BUILDAH=(buildah --storage-driver vfs --root "$OUT/storage" --runroot "$OUT/run")
mkdir -p "$OUT"

# The build context: <docker arch>/postern, as Dockerfile.musl's COPY expects.
declare -A rust_arch=([amd64]=x86_64 [arm64]=aarch64 [arm]=armv7)
declare -A platform=([amd64]=linux/amd64 [arm64]=linux/arm64 [arm]=linux/arm/v7)
arches=(amd64 arm64)
[[ -f target/static/postern-armv7 ]] && arches+=(arm)
rm -rf "$OUT/context"
for arch in "${arches[@]}"; do
  src=target/static/postern-${rust_arch[$arch]}
  [[ -f $src ]] || { echo "image: $src is missing: run \`make static\`" >&2; exit 1; }
  mkdir -p "$OUT/context/$arch"
  cp "$src" "$OUT/context/$arch/postern"
done

for arch in "${arches[@]}"; do
  tag=localhost/postern:$VERSION-$arch
  echo "==> buildah bud --platform ${platform[$arch]} -> $tag"
  "${BUILDAH[@]}" rmi -f "$tag" >/dev/null 2>&1 || true
  "${BUILDAH[@]}" bud --quiet --format docker --platform "${platform[$arch]}" -f Dockerfile.musl -t "$tag" \
    "$OUT/context" >/dev/null
  rm -f "$OUT/postern-$arch.tar"
  # The archive's one tag is what DSM lists: postern:VERSION (one archive per architecture, same name). Pushed
  # under that name so the per-architecture working tag does not end up in the archive too.
  name=docker.io/library/postern:$VERSION
  "${BUILDAH[@]}" tag "$tag" "$name"
  "${BUILDAH[@]}" push --quiet "$name" "docker-archive:$OUT/postern-$arch.tar:postern:$VERSION"
  "${BUILDAH[@]}" rmi "$name" >/dev/null
done

echo
echo "images (docker-archive, load with DSM's Image > Add > From file, or docker load -i):"
for arch in "${arches[@]}"; do
  tar=$OUT/postern-$arch.tar
  plat=$("${BUILDAH[@]}" inspect --type image \
    --format '{{.OCIv1.OS}}/{{.OCIv1.Architecture}}{{if .OCIv1.Variant}}/{{.OCIv1.Variant}}{{end}}' \
    "localhost/postern:$VERSION-$arch")
  printf '  %-32s %8d bytes (%s KiB), %s\n' "${tar#"$PWD"/}" "$(stat -c %s "$tar")" \
    "$(( $(stat -c %s "$tar") / 1024 ))" "$plat"
done
