#!/usr/bin/env bash
# Runs one libFuzzer target for a while: fuzz/run.sh NAME SECONDS [extra libFuzzer flags]
# Seeds come from fuzz/corpus/NAME/ (committed, read only); new inputs go to
# <build>/corpus/NAME/ and crashes to <build>/artifacts/NAME/, so the committed corpus does not grow
# by itself. To keep a finding, copy it into fuzz/corpus/NAME/ (or a regression test).
# Uses fuzz/NAME.dict as a dictionary when present. Builds the target first if missing.
set -euo pipefail
[ "$#" -ge 2 ] || { echo "usage: $0 NAME SECONDS [libFuzzer flags]" >&2; exit 2; }
NAME="$1"; SECONDS_TO_RUN="$2"; shift 2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
BIN="$OUT/fuzz_$NAME"
[ -x "$BIN" ] || "$ROOT/fuzz/build.sh" "$NAME"
mkdir -p "$OUT/corpus/$NAME" "$OUT/artifacts/$NAME" "$ROOT/fuzz/corpus/$NAME"
args=(-max_total_time="$SECONDS_TO_RUN" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1
      -artifact_prefix="$OUT/artifacts/$NAME/")
[ -f "$ROOT/fuzz/$NAME.dict" ] && args+=(-dict="$ROOT/fuzz/$NAME.dict")
exec "$BIN" "${args[@]}" "$@" "$OUT/corpus/$NAME" "$ROOT/fuzz/corpus/$NAME"
