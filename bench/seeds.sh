#!/usr/bin/env bash
# Test accuracy of the foundation recipe (LeNet-5, 10 epochs, SGD lr 0.01 momentum 0.9, batch 64,
# 2 threads) over a range of seeds, lowbit and Debian's PyTorch side by side:
#   bench/seeds.sh FIRST LAST [--lowbit-only] [--ptq]
# One seed is one draw: the last epoch's accuracy moves by several tenths of a point with the
# initialization and batch order (and, in lowbit, with the float summation order of the kernels).
# Prints each seed's accuracy, then per side the mean, sample standard deviation, range and the
# share of seeds >= TARGET (default 89.6), and the difference of the means with its standard
# error. lowbit takes ~5 s per seed here, PyTorch ~35 s. --ptq also quantizes each lowbit model
# to w8a8 per-tensor with each of the five calibrators (`lowbit quantize`, ~4 s per seed) and
# prints the accuracy drops per calibrator ($PTQ_FLAGS adds flags to `lowbit quantize`, e.g.
# --observe-before-pool). JSON of every run is kept in $OUT (default /tmp/lowbit-seeds).
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { echo "usage: $0 FIRST LAST [--lowbit-only] [--ptq]" >&2; exit 2; }
[ "$#" -ge 2 ] || usage
FIRST="$1"; LAST="$2"; shift 2
ONLY=""; PTQ=""
for flag in "$@"; do
  case "$flag" in --lowbit-only) ONLY=1 ;; --ptq) PTQ=1 ;; *) usage ;; esac
done
CALIBRATORS="max 3sigma percentile kl mse"
OUT="${OUT:-/tmp/lowbit-seeds}"; mkdir -p "$OUT"
TARGET="${TARGET:-89.6}"
[ -x build/lowbit ] || { echo "$0: build/lowbit is missing: run scripts/build.sh first" >&2; exit 1; }

for s in $(seq "$FIRST" "$LAST"); do
  build/lowbit train --seed "$s" --threads 2 -q -o "$OUT/lowbit_$s.safetensors" --json "$OUT/lowbit_$s.json" >/dev/null
  if [ -n "$PTQ" ]; then
    for c in $CALIBRATORS; do
      # shellcheck disable=SC2086 # PTQ_FLAGS holds several words
      build/lowbit quantize "$OUT/lowbit_$s.safetensors" --calibrator "$c" --threads 2 -q ${PTQ_FLAGS:-} \
        -o "$OUT/lowbit_${s}_w8a8_$c.safetensors" --json "$OUT/ptq_${s}_$c.json" >/dev/null
    done
  fi
  if [ -z "$ONLY" ]; then
    /usr/bin/python3 bench/peer_pytorch.py accuracy --seed "$s" --epochs 10 --threads 2 >"$OUT/pytorch_$s.json"
  fi
  echo "seed $s done" >&2
done

SIDES="lowbit pytorch"; [ -n "$ONLY" ] && SIDES=lowbit
/usr/bin/python3 - "$OUT" "$FIRST" "$LAST" "$TARGET" "${PTQ:+$CALIBRATORS}" $SIDES <<'EOF'
import json, math, statistics, sys
out, first, last, target = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
calibrators = sys.argv[5].split()
seeds = range(first, last + 1)
# Both JSONs hold the test accuracy as a fraction.
sides = {name: [json.load(open(f"{out}/{name}_{s}.json"))["test_accuracy"] * 100 for s in seeds]
         for name in sys.argv[6:]}
print("seed " + " ".join(f"{k:>8}" for k in sides))
for i, s in enumerate(seeds):
    print(f"{s:4d} " + " ".join(f"{v[i]:8.2f}" for v in sides.values()))
stats = {}
for k, v in sides.items():
    sd = statistics.stdev(v) if len(v) > 1 else float("nan")
    stats[k] = (statistics.mean(v), sd, len(v))
    print(f"{k}: mean {stats[k][0]:.3f}  sd {sd:.3f}  range {min(v):.2f}-{max(v):.2f}  "
          f">= {target}: {sum(x >= target for x in v)}/{len(v)}")
if len(stats) == 2:
    (m1, s1, n1), (m2, s2, n2) = stats["lowbit"], stats["pytorch"]
    print(f"lowbit - pytorch: {m1 - m2:+.3f} points, standard error {math.sqrt(s1**2 / n1 + s2**2 / n2):.3f}")
if calibrators:  # w8a8 per-tensor: FP32 accuracy - quantized accuracy, in points
    drops = {c: [] for c in calibrators}
    for s in seeds:
        for c in calibrators:
            d = json.load(open(f"{out}/ptq_{s}_{c}.json"))
            drops[c].append((d["accuracy_fp32"] - d["accuracy_quantized"]) * 100)
    print("w8a8 per-tensor drop (points) by calibrator over the seeds:")
    for c, v in drops.items():
        print(f"  {c:10s} median {statistics.median(v):+.2f}  mean {statistics.mean(v):+.3f}  "
              f"max {max(v):+.2f}  <= 0.1: {sum(x <= 0.1 + 1e-9 for x in v)}/{len(v)}")
EOF
