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

# The Python binding, when built: the installed package, imported from the documented
# <prefix>/lib/python3.X/dist-packages with nothing of the build tree in reach (no
# FERRY_PLUGIN_PATH, no build dir on PYTHONPATH), carries a message between two Python processes
# over shm, and the libferry and shm plugin those processes map are the installed ones.
if grep -q '^FERRY_BUILD_PYTHON:BOOL=ON' "$build/CMakeCache.txt"; then
  python=$(sed -n 's/^Python3_EXECUTABLE:FILEPATH=//p' "$build/CMakeCache.txt")
  python=${python:-/usr/bin/python3}
  pydir=$prefix/$(sed -n 's/^FERRY_PYTHON_INSTALL_DIR:STRING=//p' "$build/CMakeCache.txt")
  version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  [ "$pydir" = "$prefix/lib/python$version/dist-packages" ] || { echo "python package not in the documented place: $pydir" >&2; exit 1; }
  ls "$pydir"/ferry/__init__.py "$pydir"/ferry/__init__.pyi "$pydir"/ferry/_ferry*.so >/dev/null
  printf '[defaults]\ntransport = "shm"\n' > "$prefix/py.toml"
  cat > "$prefix/py_listener.py" <<'PY'
import os, sys, ferry
prefix = os.path.realpath(sys.argv[1])
assert os.path.realpath(ferry.__file__).startswith(prefix + "/"), ferry.__file__
with ferry.Node("py_installed_listener", config=sys.argv[2]) as node:
    sub = node.subscribe("installed/chatter", type=str)
    print("ready", flush=True)
    msg = sub.take(timeout=20)
    mapped = {line.split()[-1] for line in open("/proc/self/maps") if ".so" in line}
    for lib in ("libferry.so", "ferry_plugin_shm.so"):
        paths = [os.path.realpath(p) for p in mapped if os.path.basename(p).startswith(lib)]
        assert paths and all(p.startswith(prefix + "/") for p in paths), (lib, paths)
    print("python listener got: %s" % msg, flush=True)
PY
  cat > "$prefix/py_talker.py" <<'PY'
import sys, ferry
with ferry.Node("py_installed_talker", config=sys.argv[1]) as node:
    pub = node.advertise("installed/chatter", type=str)
    assert pub.wait_for_subscribers(1, timeout=20), "no subscriber"
    pub.publish("hello from an installed ferry in Python")
    pub.flush(timeout=20)
PY
  py_env=(env -u FERRY_PLUGIN_PATH -u FERRY_CONFIG -u LD_LIBRARY_PATH PYTHONPATH="$pydir" PYTHONDONTWRITEBYTECODE=1
          FERRY_DOMAIN="t$$_install_py")
  (cd "$prefix" && "${py_env[@]}" "$python" py_listener.py "$prefix" "$prefix/py.toml" > "$prefix/py_out.txt") &
  listener=$!
  (cd "$prefix" && "${py_env[@]}" "$python" py_talker.py "$prefix/py.toml")
  wait "$listener"
  cat "$prefix/py_out.txt"
  grep -q "python listener got: hello from an installed ferry in Python" "$prefix/py_out.txt"
  "${py_env[@]}" "$python" -c 'import ferry, sys; ferry.clean_domain(sys.argv[1])' "t$$_install_py"
  if ls /dev/shm /dev/mqueue | grep -q "t$$_install_py"; then echo "left behind in /dev/shm or /dev/mqueue" >&2; exit 1; fi
fi
