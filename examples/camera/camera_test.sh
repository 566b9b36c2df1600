#!/bin/sh
# Smoke test of the camera example: subscriber and publisher as two processes on shm, in a
# domain of their own. Fails unless the subscriber receives every frame intact and nothing of
# the domain is left in /dev/shm.
#   camera_test.sh <bin dir> <camera.toml>
set -u
bin=$1
export FERRY_CONFIG=$2
export FERRY_DOMAIN="camtest$$"
frames=20
out=$(mktemp)
trap 'rm -f "$out"' EXIT

"$bin/camera_subscriber" --count $frames --timeout 30 >"$out" 2>&1 &
sub=$!
"$bin/camera_publisher" --count $frames --rate 50 --wait-subscribers 1 --wait-timeout 20
pub_rc=$?
wait $sub
sub_rc=$?
cat "$out"

fail=0
if [ $pub_rc -ne 0 ]; then echo "FAIL: camera_publisher exited with $pub_rc"; fail=1; fi
if [ $sub_rc -ne 0 ]; then echo "FAIL: camera_subscriber exited with $sub_rc"; fail=1; fi
if ! grep -q "received $frames lost 0 damaged 0" "$out"; then
    echo "FAIL: the subscriber did not receive all $frames frames intact"; fail=1
fi
left=$(ls /dev/shm 2>/dev/null | grep -F "ferry.$FERRY_DOMAIN." || true)
if [ -n "$left" ]; then echo "FAIL: left in /dev/shm: $left"; fail=1; fi
[ $fail -eq 0 ] && echo "PASS: $frames frames of 4 MiB over shm"
exit $fail
