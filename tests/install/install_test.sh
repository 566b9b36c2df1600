#!/usr/bin/env bash
# cmake --install into a temporary prefix, build a consumer with find_package(ferry), and run it
# with no FERRY_* variable set: the installed core must find the installed plugins by itself.
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
