#!/bin/sh
# Installs Debian's chromium for the report tests (test/eval/report.test.ts drives /usr/bin/chromium
# through playwright-core). Does nothing when it is already there; says so and exits 0 when apt is
# not available (the browser test then skips with a message). Needs root for apt-get.
set -eu
if [ -x /usr/bin/chromium ]; then
  echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: apt-get not available; the report browser test will be skipped" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-chromium: not root and no sudo; the report browser test will be skipped" >&2
    exit 0
  fi
fi
# Another apt run (or unattended upgrades) may hold the dpkg lock: wait for it up to 10 minutes.
$SUDO apt-get -o DPkg::Lock::Timeout=600 update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends chromium
/usr/bin/chromium --version
