#!/usr/bin/env bash
# Side by side in one run: lowbit and Debian's PyTorch on LeNet-5, 2 threads.
#   bench/compare.sh FP32_MODEL INT8_MODEL [--best-blas]
# --best-blas gives PyTorch OpenBLAS built for OpenMP (its fastest BLAS here, bench/README.md).
# Prints one line per figure with the ratio lowbit / PyTorch; the JSON of every run is kept in
# $OUT (default /tmp/lowbit-compare).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -ge 2 ] || { echo "usage: $0 FP32_MODEL INT8_MODEL [--best-blas]" >&2; exit 2; }
FP32="$1"; INT8="$2"; BEST="${3:-}"
OUT="${OUT:-/tmp/lowbit-compare}"; mkdir -p "$OUT"
LB=build/lowbit
PY=(/usr/bin/python3 bench/peer_pytorch.py)
ENVS=()
[ "$BEST" = "--best-blas" ] && ENVS=(env LD_LIBRARY_PATH="$(bench/openblas_openmp.sh)")
get() { /usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
ratio() { /usr/bin/python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.2f}')" "$1" "$2"; }

$LB bench "$FP32" --train --batch 64 --threads 2 -q --json "$OUT/lb_train.json" >/dev/null
"${ENVS[@]}" "${PY[@]}" train-speed --batch 64 --threads 2 --steps 200 >"$OUT/pt_train.json"
$LB bench "$FP32" --batch 256 --threads 2 -q --json "$OUT/lb_fp32.json" >/dev/null
"${ENVS[@]}" "${PY[@]}" infer-speed --batch 256 --threads 2 >"$OUT/pt_fp32.json"
$LB bench "$INT8" --batch 256 --threads 2 -q --json "$OUT/lb_int8.json" >/dev/null
"${ENVS[@]}" "${PY[@]}" int8-speed --batch 256 --threads 2 --engine onednn >"$OUT/pt_int8.json"

printf '%-34s %12s %12s %8s\n' figure lowbit pytorch ratio
for pair in "train images/s (batch 64):lb_train:pt_train:images_per_second" \
            "fp32 images/s (batch 256):lb_fp32:pt_fp32:images_per_second" \
            "int8 images/s (batch 256):lb_int8:pt_int8:images_per_second"; do
  IFS=: read -r label a b key <<<"$pair"
  x=$(get "$OUT/$a.json" "$key"); y=$(get "$OUT/$b.json" "$key")
  printf '%-34s %12.0f %12.0f %8s\n' "$label" "$x" "$y" "$(ratio "$x" "$y")"
done
for pair in "fp32 batch-1 latency p50 (us):lb_fp32:pt_fp32" "int8 batch-1 latency p50 (us):lb_int8:pt_int8"; do
  IFS=: read -r label a b <<<"$pair"
  x=$(get "$OUT/$a.json" latency_us_p50); y=$(get "$OUT/$b.json" latency_us_p50)
  printf '%-34s %12.1f %12.1f %8s\n' "$label" "$x" "$y" "$(ratio "$y" "$x")x faster"
done
