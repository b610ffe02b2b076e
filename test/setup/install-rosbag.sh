#!/bin/sh
# Installs Debian's ROS 1 bag library for Python (python3-rosbag, python3-roslz4 for lz4 chunks) with
# the message packages the bag tests write (std_msgs, sensor_msgs, trajectory_msgs), for
# test/bridge/record/convert-bag.test.ts. Does nothing when they import already; says so and exits 0
# when apt is not available (those tests then skip with a message). Needs root for apt-get.
set -eu
PY=/usr/bin/python3
check() {
  "$PY" -c "import rosbag, roslz4; from std_msgs.msg import String; from sensor_msgs.msg import JointState; from trajectory_msgs.msg import JointTrajectory" 2>/dev/null
}
if check; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-rosbag: apt-get not available; the ROS 1 bag tests will be skipped" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-rosbag: not root and no sudo; the ROS 1 bag tests will be skipped" >&2
    exit 0
  fi
fi
# Another apt run (or unattended upgrades) may hold the dpkg lock: wait for it up to 10 minutes.
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
  python3-rosbag python3-roslz4 python3-std-msgs python3-sensor-msgs python3-trajectory-msgs >/dev/null
check
