#!/usr/bin/env bash
# Builds ferry and runs the demo: a listener and a talker, separate processes, over every
# transport plugin that was built. Usage: examples/demo.sh [build-dir]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
"$root/tools/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target talker listener ferry_plugins
export FERRY_PLUGIN_PATH=$build/lib/ferry/plugins
export FERRY_DOMAIN=demo$$
for plugin in "$build"/lib/ferry/plugins/ferry_plugin_*.so; do
  transport=$(basename "$plugin" .so); transport=${transport#ferry_plugin_}
  config=$root/examples/configs/$transport.toml
  [ -f "$config" ] || continue
  echo "=== transport: $transport (config $config)"
  FERRY_CONFIG=$config "$build/bin/listener" --topic chatter --count 5 --timeout 10 &
  listener=$!
  FERRY_CONFIG=$config "$build/bin/talker" --topic chatter --count 5 --size 64 --rate 20 --wait-subscribers 1
  wait "$listener"
  echo
done
