#!/usr/bin/env bash
# Installs every Debian package lowbit needs, when missing. Safe to run again.
# Usage: scripts/setup.sh [--bench] [--report]   (--bench adds python3-torch for side-by-side
# benchmarks; --report adds chromium for the report screenshot test)
set -euo pipefail
pkgs=(g++ cmake ninja-build pkg-config libgtest-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev
      libfmt-dev zlib1g-dev dataset-fashion-mnist clang libclang-rt-14-dev libomp-dev)
for arg in "$@"; do
  case "$arg" in
    --bench) pkgs+=(python3-torch python3-numpy) ;;
    --report) pkgs+=(chromium) ;;
    *) echo "setup.sh: unknown option $arg (use --bench, --report)" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
