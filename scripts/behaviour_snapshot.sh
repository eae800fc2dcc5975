#!/usr/bin/env bash
# Runs the behaviour-preservation suite of issue 19 into OUT (one run folder per job), so that two
# commits can be compared with scripts/compare_runs.py. Usage, from the repository root:
#   bash scripts/behaviour_snapshot.sh OUT [DATA_DIR]
# DATA_DIR defaults to ../shared/data. Every job resumes (--resume) when OUT already holds it.
set -euo pipefail
out="${1:?usage: behaviour_snapshot.sh OUT [DATA_DIR]}"
data="${2:-../shared/data}"
mkdir -p "$out"
run() { # name, then bench arguments
  local name="$1"; shift
  local resume=()
  [ -d "$out/$name" ] && resume=(--resume)
  echo "== $name: longtail bench $* --out $out/$name ${resume[*]}"
  longtail bench "$@" --out "$out/$name" --jobs 1 --no-progress "${resume[@]}"
}
# the main job: every method on the bundled digits, 3 seeds, with the balanced reference
run digits
# Fashion-MNIST-LT: the stages config (erm, cb-resample, crt, a composed recipe with a second stage)
# plus ldam-drw and m2m, one seed, 2 epochs
run fmnist_lt configs/fashion_mnist_lt_stages.yaml --data-dir "$data/fashion-mnist" \
  --methods erm,cb-resample,crt,ldam-drw,m2m,sqrt-la,sqrt-la-crt --seeds 0 --epochs 2
run multilabel configs/multilabel_yeast.yaml --data-dir "$data/multilabel/yeast" --seeds 0 --epochs 5
run openset configs/openset_fashion_mnist.yaml --data-dir "$data/fashion-mnist" --seeds 0 --epochs 2
run distill configs/distill_fashion_mnist_lt.yaml --data-dir "$data/fashion-mnist" --seeds 0 --epochs 2
