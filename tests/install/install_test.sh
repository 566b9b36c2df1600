#!/usr/bin/env bash
# cmake --install into a temporary prefix, build a consumer with find_package(ferry), and run it
# with no FERRY_* variable set: the installed core must find the installed plugins by itself.
# Then build the example out-of-tree transport plugin (examples/plugin) against the installed
# SDK with ferry_add_transport_plugin(), see that the installed `ferry` loads it, and run the
# whole conformance suite on it.
set -euo pipefail
build=$1; source_dir=$2
prefix=$(mktemp -d /tmp/ferry-install-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
cmake -S "$source_dir/tests/install/consumer" -B "$prefix/consumer-build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer-build" >/dev/null
env -u FERRY_PLUGIN_PATH -u FERRY_CONFIG FERRY_DOMAIN="t$$_install" "$prefix/consumer-build/consumer" | tee "$prefix/out.txt"
grep -q "hello from an installed ferry on uds" "$prefix/out.txt"
ls "$prefix"/lib*/ferry/plugins/ferry_plugin_uds.so >/dev/null

# A third-party transport: built, installed next to ferry's own plugins, found without
# FERRY_PLUGIN_PATH, and held to the same conformance suite as the built-in ones.
cmake -S "$source_dir/examples/plugin" -B "$prefix/plugin-build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_INSTALL_PREFIX="$prefix" >/dev/null
cmake --build "$prefix/plugin-build" >/dev/null
cmake --install "$prefix/plugin-build" >/dev/null
env -u FERRY_PLUGIN_PATH "$prefix/bin/ferry" plugin list | tee "$prefix/plugins.txt"
grep -E "^dgram +ok" "$prefix/plugins.txt" >/dev/null
FERRY_PLUGIN_PATH="$prefix/plugin-build" "$build/bin/test_conformance" "[dgram]"
