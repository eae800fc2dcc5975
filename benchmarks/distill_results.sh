#!/usr/bin/env bash
# The distillation and metric-learning tables of docs/results.md (issue 13), one run after the other on
# one core (--jobs 1, one thread), then the tables:
#   - configs/distill_fashion_mnist_lt.yaml: an erm teacher (wider CNN) and its students;
#   - configs/distill_fashion_mnist_lt_balanced_teacher.yaml: the same with an la-loss teacher;
#   - configs/metric_fashion_mnist.yaml: triplet teacher, triplet student, RKD students.
# Scaled to about 45 minutes on one shared CPU core: three seeds, 8 epochs, Fashion-MNIST-LT with 2,000
# images in the head class (imbalance factor 100: 4,958 images, 20 in the tail class) and 600 images
# per seen class for metric learning; evaluation at the end only. The configs themselves hold the
# full recipe (12 epochs, 6,000 head images, 1,000 per seen class). The balanced-teacher run skips
# `student` (the same training as the first run's `student`):
#   bash benchmarks/distill_results.sh [FASHION_MNIST_DIR] [OUT_ROOT] [SEEDS]
# Resumable: rerun the same command after an interruption (finished (method, seed) pairs and
# stages are reused, an interrupted one continues from its checkpoint); more seeds, e.g.
# `bash benchmarks/distill_results.sh ../shared/data/fashion-mnist runs/distill 0,1,2,3,4`,
# train only the new ones.
set -euo pipefail
DATA=${1:-../shared/data/fashion-mnist}
OUT=${2:-runs/distill}
SEEDS=${3:-0,1,2}
mkdir -p "$OUT"
run() {  # out config [longtail bench options...]
  local out="$OUT/$1" config=$2
  shift 2
  local resume=()
  [[ -f "$out/config.yaml" ]] && resume=(--resume)
  echo "== $(date +%H:%M:%S) $out"
  longtail bench "$config" --data-dir "$DATA" --out "$out" --jobs 1 --no-progress \
    --seeds "$SEEDS" --epochs 8 --set train.eval_every=0 "${resume[@]}" "$@"
}
run lt_erm_teacher configs/distill_fashion_mnist_lt.yaml --set data.max_per_class=2000
run lt_balanced_teacher configs/distill_fashion_mnist_lt_balanced_teacher.yaml \
  --set data.max_per_class=2000 --methods teacher,kd,kd-std,dkd,rkd-da,kd-rkd-da
run metric configs/metric_fashion_mnist.yaml --set data.max_per_class=600
echo "== $(date +%H:%M:%S) done"
python benchmarks/distill_tables.py "$OUT" --data-dir "$DATA"
