#!/usr/bin/env bash
# Installs what the Triton config test parses config.pbtxt with: Debian's protobuf-compiler (protoc
# compiles the model_config.proto subset in bridge/kserve/proto/) and python3-protobuf (the official
# text_format parser). Without apt (or without permission) it warns and exits 0: that test then skips
# with a message.
set -uo pipefail
if command -v protoc >/dev/null 2>&1 && /usr/bin/python3 -c "import google.protobuf.text_format" 2>/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "warning: no apt-get; the config.pbtxt parse test in test/policy/onnx will be skipped" >&2
  exit 0
fi
if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler python3-protobuf >/dev/null); then
  exit 0
fi
echo "warning: could not install protobuf-compiler/python3-protobuf; the config.pbtxt parse test will be skipped" >&2
exit 0
