#!/usr/bin/env bash
# Installs the Debian Python packages the bridge tests talk to (msgpack + numpy for the codec's
# cross-checks, zmq for the ZeroMQ client test, websockets for the openpi-style client test, PIL for the
# resize_with_pad cross-check).
# Without apt (or without permission) it warns and exits 0: those tests then skip with a message.
set -uo pipefail
if /usr/bin/python3 -c "import msgpack, numpy, zmq, websockets, PIL" 2>/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "warning: no apt-get; the Python client tests in test/bridge will be skipped" >&2
  exit 0
fi
if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  python3-msgpack python3-numpy python3-zmq python3-websockets python3-pil >/dev/null); then
  exit 0
fi
echo "warning: could not install python3-msgpack/numpy/zmq/websockets/pil; the Python client tests will be skipped" >&2
exit 0
