#!/usr/bin/env bash
# The open-set tables of docs/results.md: the five-split protocol (configs/openset_fashion_mnist.yaml)
# and open long-tailed recognition at imbalance factors 100 and 10
# (configs/openset_lt_fashion_mnist.yaml), one after the other on one core (--jobs 1, one thread),
# then the tables, the AUROC per many / medium / few group and the inference cost. Resumable:
# rerun the same command after an interruption (finished (method, split) pairs are reused, an
# interrupted one continues from its checkpoint).
#   bash benchmarks/openset_results.sh [FASHION_MNIST_DIR] [OUT_ROOT]
set -euo pipefail
DATA=${1:-../shared/data/fashion-mnist}
OUT=${2:-runs/openset}
mkdir -p "$OUT"
run() {  # out config [longtail bench options...]
  local out="$OUT/$1" config=$2
  shift 2
  local resume=()
  [[ -f "$out/config.yaml" ]] && resume=(--resume)
  echo "== $(date +%H:%M:%S) $out"
  longtail bench "$config" --data-dir "$DATA" --out "$out" --jobs 1 --no-progress "${resume[@]}" "$@"
}
run openset configs/openset_fashion_mnist.yaml
run lt_if100 configs/openset_lt_fashion_mnist.yaml
run lt_if10 configs/openset_lt_fashion_mnist.yaml --set data.imbalance_factor=10 \
  --set name=openset_lt_fashion_mnist_if10
echo "== $(date +%H:%M:%S) done"
python benchmarks/openset_tables.py "$OUT"
python benchmarks/openset_shot_auroc.py "$OUT/lt_if100" "$OUT/lt_if10"
python benchmarks/openset_speed.py --data-dir "$DATA" --run "$OUT/openset" --rounds 15
