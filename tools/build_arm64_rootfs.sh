#!/bin/bash
# Build a minimal arm64 Debian bookworm (= Raspberry Pi OS 64-bit base) Python 3.11 root
# file system plus the aarch64 wheels of the torch-free SDK's dependencies, for running the
# SDK under `qemu-aarch64-static -L ROOTFS ROOTFS/usr/bin/python3.11` (no binfmt, no chroot,
# no root needed for the emulation itself).
#
#   tools/build_arm64_rootfs.sh [DEST]      (default DEST: .cache/arm64-rootfs, gitignored)
#
# Result: DEST/root (the file system), DEST/site (aarch64 site-packages, put it on
# PYTHONPATH), DEST/.stamp. Re-running with a complete DEST does nothing.
# Needs: apt-get and dpkg (any Debian/Ubuntu host; it never touches the host's own apt
# state: lists, cache and status live under DEST/apt) and pip; network to the package
# registries (deb.debian.org, PyPI). About 90 MB of downloads, ~15 s here.
# Exit codes: 0 ok, 2 not a Debian/Ubuntu host, 3 resolution failed, 4 a download failed.
set -euo pipefail

DEST="${1:-.cache/arm64-rootfs}"
mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
ROOT="$DEST/root"
SITE="$DEST/site"
STAMP="$DEST/.stamp"
# What the SDK imports on a Pi (pyproject: dependencies + the edge extra).
WHEELS="numpy pillow tifffile click tqdm onnxruntime ai-edge-litert"
PIP="${PIP:-python3 -m pip}"

if [ -f "$STAMP" ] && [ -x "$ROOT/usr/bin/python3.11" ]; then
    echo "arm64 rootfs: up to date in $DEST"
    exit 0
fi
for tool in apt-get dpkg; do
    command -v "$tool" >/dev/null || { echo "arm64 rootfs: needs $tool (a Debian/Ubuntu host)" >&2; exit 2; }
done

rm -rf "$ROOT" "$SITE" "$DEST/apt" "$DEST/debs" "$DEST/wheels"
mkdir -p "$ROOT" "$SITE" "$DEST/apt/lists/partial" "$DEST/apt/cache/archives/partial" "$DEST/debs" "$DEST/wheels"
: > "$DEST/apt/status"   # empty dpkg status: apt resolves the full dependency closure

# Our own sources list: Debian bookworm whatever the host is (an Ubuntu host's mirrors
# have no arm64, and Pi OS is bookworm-based).
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
if [ -f "$KEYRING" ]; then OPT="signed-by=$KEYRING"; else OPT="trusted=yes"; fi
echo "deb [arch=arm64 $OPT] http://deb.debian.org/debian bookworm main" > "$DEST/apt/sources.list"

APT=(apt-get -q
     -oAPT::Architecture=arm64 -oAPT::Architectures=arm64
     -oDir::State::Lists="$DEST/apt/lists" -oDir::State::Status="$DEST/apt/status"
     -oDir::Cache="$DEST/apt/cache" -oDir::Etc::SourceList="$DEST/apt/sources.list"
     -oDir::Etc::SourceParts=/nonexistent -oDebug::NoLocking=1
     -oAPT::Sandbox::User=root)

echo "arm64 rootfs: apt-get update (private lists in $DEST/apt)"
"${APT[@]}" update >/dev/null || { echo "arm64 rootfs: apt-get update failed (no network to deb.debian.org?)" >&2; exit 4; }
# Simulated install on an empty system = every package python3.11 needs at run time.
mapfile -t PKGS < <("${APT[@]}" install -s --no-install-recommends python3.11 libstdc++6 \
                    | awk '/^Inst /{print $2}')
[ "${#PKGS[@]}" -gt 5 ] || { echo "arm64 rootfs: could not resolve python3.11 for arm64" >&2; exit 3; }
echo "arm64 rootfs: downloading ${#PKGS[@]} arm64 packages"
(cd "$DEST/debs" && "${APT[@]}" download "${PKGS[@]/%/:arm64}" >/dev/null) \
    || { echo "arm64 rootfs: apt-get download failed" >&2; exit 4; }
for deb in "$DEST"/debs/*.deb; do
    dpkg -x "$deb" "$ROOT"
done
[ -x "$ROOT/usr/bin/python3.11" ] || { echo "arm64 rootfs: python3.11 missing after unpacking" >&2; exit 3; }

# qemu's -L redirects /proc/cpuinfo into the rootfs; onnxruntime's cpuinfo parser segfaults
# on the host's x86 one, so give it a plausible Cortex-A72 (Raspberry Pi 4) description.
mkdir -p "$ROOT/proc"
{
    for i in 0 1 2 3; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$i"
        printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
    done
} > "$ROOT/proc/cpuinfo"

echo "arm64 rootfs: downloading aarch64 wheels ($WHEELS)"
PLAT=(--only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none
      --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64
      --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 --platform any)
$PIP download -q --disable-pip-version-check "${PLAT[@]}" -d "$DEST/wheels" $WHEELS \
    || { echo "arm64 rootfs: pip download of the aarch64 wheels failed (no network to PyPI?)" >&2; exit 4; }
$PIP install -q --disable-pip-version-check --no-index --find-links "$DEST/wheels" \
    "${PLAT[@]}" --target "$SITE" $WHEELS
rm -rf "$DEST/debs" "$DEST/apt/cache"   # keep the cache small; wheels stay for offline rebuilds
date -u +%FT%TZ > "$STAMP"
echo "arm64 rootfs: ready in $DEST ($(du -sh "$DEST" | cut -f1))"
