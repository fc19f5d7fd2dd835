#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --report   # chromium: the report screenshot test
scripts/build.sh
# Tests run one at a time: several of them use both cores and time themselves out otherwise.
ctest --test-dir build --output-on-failure --timeout 600
