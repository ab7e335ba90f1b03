#!/bin/sh
# System packages the edge tests need, installed only when missing (idempotent, fast when
# everything is there):
#   qemu-user-static : runs the arm64 (Raspberry Pi OS) Python under emulation (tests/edge/test_qemu_arm64.py)
#   xvfb             : a virtual X server for the windowed demo test (tests/edge/test_demo_pi.py)
#   chromium         : the headless browser that drives sr-serve's pages (tests/serve, through
#                      playwright, which talks to it directly: no chromedriver, no browser download)
# Without root or apt-get it only warns: the tests that need these then skip and say why.
set -u

need=""
command -v qemu-aarch64-static >/dev/null 2>&1 || need="$need qemu-user-static"
command -v Xvfb >/dev/null 2>&1 || need="$need xvfb"
command -v chromium >/dev/null 2>&1 || need="$need chromium"

if [ -z "$need" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-deps: no apt-get here; missing:$need (the tests that need them will skip)" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "apt-deps: not root and no password-less sudo; missing:$need (the tests that need them will skip)" >&2
        exit 0
    fi
fi
echo "apt-deps: installing$need"
export DEBIAN_FRONTEND=noninteractive
# A stale or empty package list makes 'install' fail: update first (once, only when installing).
$SUDO apt-get update -qq || echo "apt-deps: apt-get update failed" >&2
# shellcheck disable=SC2086 # word splitting of $need is wanted
$SUDO apt-get install -y -qq --no-install-recommends $need \
    || echo "apt-deps: could not install$need (the tests that need them will skip)" >&2
exit 0
