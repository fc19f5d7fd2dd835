#!/usr/bin/env bash
# Builds libFuzzer targets: every fuzz/fuzz_<name>.cpp becomes <build>/fuzz_<name>.
# Each target file lists what it needs in two comment lines:
#   // FUZZ_SOURCES: src/a.cpp src/b.cpp      (paths relative to the repository root)
#   // FUZZ_LIBS: -lz                         (extra link flags, optional)
# so adding a target (IDX reader, config reader, ...) means adding one file; this script is unchanged.
#
# Usage: fuzz/build.sh [name ...]        (default: all targets; name as in fuzz_<name>.cpp)
# Output directory: $FUZZ_BUILD_DIR, default <repo>/build-fuzz. Needs clang++ with libFuzzer
# (Debian: clang-14 + libclang-rt-14-dev).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
CXX="${CXX_FUZZ:-clang++}"
FLAGS=(-std=c++20 -g -O1 -fno-omit-frame-pointer
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I"$ROOT/include" -I"$ROOT/src")
mkdir -p "$OUT"

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in "$ROOT"/fuzz/fuzz_*.cpp; do
    b="$(basename "$f" .cpp)"; targets+=("${b#fuzz_}")
  done
fi

for name in "${targets[@]}"; do
  src="$ROOT/fuzz/fuzz_$name.cpp"
  [ -f "$src" ] || { echo "build.sh: no such target: $src" >&2; exit 1; }
  sources="$(sed -n 's|^// FUZZ_SOURCES:||p' "$src")"
  libs="$(sed -n 's|^// FUZZ_LIBS:||p' "$src")"
  deps=()
  for s in $sources; do deps+=("$ROOT/$s"); done
  echo "building fuzz_$name <- fuzz_$name.cpp$(printf ' %s' $sources)"
  # shellcheck disable=SC2086
  "$CXX" "${FLAGS[@]}" "$src" "${deps[@]}" $libs -o "$OUT/fuzz_$name"
done
