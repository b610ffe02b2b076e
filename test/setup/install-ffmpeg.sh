#!/bin/sh
# Installs Debian's ffmpeg (ffmpeg + ffprobe: AV1 decoding with libdav1d, AV1 encoding with libsvtav1,
# H.264 with libx264) for the camera and video tests (test/datasets/video, test/sim/camera*). Does
# nothing when it is already there; says so and exits 0 when apt is not available (those tests then
# skip with a message). Needs root for apt-get.
set -eu
if command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; then
  echo "ffmpeg: $(ffmpeg -hide_banner -version 2>/dev/null | head -1)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-ffmpeg: apt-get not available; the video tests will be skipped" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-ffmpeg: not root and no sudo; the video tests will be skipped" >&2
    exit 0
  fi
fi
# Another apt run (or unattended upgrades) may hold the dpkg lock: wait for it up to 10 minutes.
$SUDO apt-get -o DPkg::Lock::Timeout=600 update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends ffmpeg
ffmpeg -hide_banner -version | head -1
