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

# Flags of the ISA folders, as in CMakeLists.txt (the *vbmi* files alone get -mavx512vbmi).
isa_flags() {
  case "$1" in
    */avx2/*) echo "-mavx2 -mfma -mf16c" ;;
    */avx512/*vbmi*) echo "-mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512vnni -mavx512vbmi -mavx2 -mfma" ;;
    */avx512/*) echo "-mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512vnni -mavx2 -mfma" ;;
  esac
}

cd "$ROOT"  # FUZZ_SOURCES may hold globs, relative to the repository root
jobs_max="$(nproc)"
for name in "${targets[@]}"; do
  src="fuzz/fuzz_$name.cpp"
  [ -f "$src" ] || { echo "build.sh: no such target: $ROOT/$src" >&2; exit 1; }
  sources="$(sed -n 's|^// FUZZ_SOURCES:||p' "$src")"
  libs="$(sed -n 's|^// FUZZ_LIBS:||p' "$src")"
  echo "building fuzz_$name <- $src$(printf ' %s' $sources)"
  objdir="$OUT/obj/$name"; rm -rf "$objdir"; mkdir -p "$objdir"
  objs=()
  # shellcheck disable=SC2086
  for s in $src $sources; do
    [ -f "$s" ] || { echo "build.sh: $src lists $s, which does not exist" >&2; exit 1; }
    o="$objdir/$(echo "$s" | tr / _).o"; objs+=("$o")
    # shellcheck disable=SC2046
    "$CXX" "${FLAGS[@]}" $(isa_flags "$s") -c "$s" -o "$o" &
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n; done
  done
  while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n; done
  # shellcheck disable=SC2086
  "$CXX" "${FLAGS[@]}" "${objs[@]}" $libs -o "$OUT/fuzz_$name"
done
