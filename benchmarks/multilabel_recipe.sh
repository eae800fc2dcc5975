#!/usr/bin/env bash
# Issue 20: choose the multi-label configs' recipe on VALIDATION splits (20% of each training file,
# data.validation_fraction; the test files are never read), then measure the chosen recipe once on
# the test sets with 5 seeds. Every run resumes (--resume) into OUT. From the repository root:
#   bash benchmarks/multilabel_recipe.sh validate OUT [DATA]   # candidates x {scene, yeast, enron}, 3 seeds
#   bash benchmarks/multilabel_recipe.sh test OUT [DATA]       # the shipped configs, 5 seeds, 0% and 50% hidden
#   python benchmarks/multilabel_recipe_table.py OUT           # the tables of docs/results.md
# DATA defaults to ../shared/data/multilabel. Candidates (everything else as configs/multilabel_yeast.yaml):
#   mean        the previous recipe: loss averaged over every (row, label) entry, MLP [256]
#   sum         multi_label.label_reduction: sum (each label learns at the pace it would alone)
#   sum-linear  the same with model.arch: linear (no hidden layer)
set -euo pipefail
mode="${1:?usage: multilabel_recipe.sh validate|test OUT [DATA]}"
out="${2:?usage: multilabel_recipe.sh validate|test OUT [DATA]}"
data="${3:-../shared/data/multilabel}"
mkdir -p "$out"
run() { # folder, then bench arguments
  local dir="$out/$1"; shift
  local resume=()
  [ -d "$dir" ] && resume=(--resume)
  echo "== $dir"
  longtail bench "$@" --out "$dir" --no-progress --set data.sklearn_reference=true "${resume[@]}"
}
case "$mode" in
  validate)
    for set in scene yeast enron; do
      common=(configs/multilabel_yeast.yaml --data-dir "$data/$set" --seeds 0,1,2
              --set data.validation_fraction=0.2)
      run "val-$set-mean" "${common[@]}" --set multi_label.label_reduction=mean
      run "val-$set-sum" "${common[@]}" --set multi_label.label_reduction=sum
      run "val-$set-sum-linear" "${common[@]}" --set multi_label.label_reduction=sum \
        --set model.arch=linear
    done ;;
  test)
    for set in scene yeast enron; do
      for hide in 0.0 0.5; do
        run "test-$set-hide$hide" configs/multilabel_yeast.yaml --data-dir "$data/$set" \
          --set data.hide_fraction=$hide
      done
    done ;;
  *) echo "mode must be validate or test, got $mode" >&2; exit 2 ;;
esac
