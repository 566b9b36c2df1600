#!/usr/bin/env bash
# Installs the Debian 12 packages ferry builds with, if any is missing. Safe to run again.
set -euo pipefail
packages=(build-essential cmake pkg-config libboost-dev libboost-filesystem-dev libcereal-dev
          libspdlog-dev catch2 libtomlplusplus-dev libcli11-dev
          libzstd-dev liblz4-dev cyclonedds-dev cyclonedds-tools iproute2
          pybind11-dev python3-dev python3-numpy python3-pytest)
packages+=("$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "ferry: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
