#!/usr/bin/env bash
# Issue 20: choose the multi-label configs' recipe on VALIDATION splits (20% of each training file,
# data.validation_fraction; the test files are never read), then measure the chosen recipe once on
# the test sets with 5 seeds. Every run resumes (--resume) into OUT. From the repository root:
#   bash benchmarks/multilabel_recipe.sh validate OUT [DATA]   # candidates x {scene, yeast, enron}, 3 seeds
#   bash benchmarks/multilabel_recipe.sh test OUT [DATA]       # the shipped configs, 5 seeds, 0% and 50% hidden
#   bash benchmarks/multilabel_recipe.sh tiles-validate OUT [DATA]  # Fashion-tiles: mean vs sum, validation
#   bash benchmarks/multilabel_recipe.sh tiles-test OUT [DATA]      # the shipped tiles config, 5 seeds
#   python benchmarks/multilabel_recipe_table.py OUT           # the tables of docs/results.md
# DATA defaults to ../shared/data/multilabel. Candidates (everything else as configs/multilabel_yeast.yaml):
#   mean        the previous recipe: loss averaged over every (row, label) entry, MLP [256]
#   sum         multi_label.label_reduction: sum (each label learns at the pace it would alone)
#   sum-linear  the same with model.arch: linear (no hidden layer)
#   (enron also: sum-standard, standardised features instead of feature_scaling auto's max-abs)
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
  longtail bench "$@" --out "$dir" --no-progress "${resume[@]}"
}
case "$mode" in
  validate)
    for set in scene yeast enron; do
      common=(configs/multilabel_yeast.yaml --data-dir "$data/$set" --seeds 0,1,2
              --set data.validation_fraction=0.2 --set data.sklearn_reference=true)
      run "val-$set-mean" "${common[@]}" --set multi_label.label_reduction=mean
      run "val-$set-sum" "${common[@]}" --set multi_label.label_reduction=sum
      run "val-$set-sum-linear" "${common[@]}" --set multi_label.label_reduction=sum \
        --set model.arch=linear
    done
    # enron only: standardised instead of max-abs-scaled features (feature_scaling auto's choice)
    run "val-enron-sum-standard" configs/multilabel_yeast.yaml --data-dir "$data/enron" \
      --seeds 0,1,2 --set data.validation_fraction=0.2 --set data.sklearn_reference=true \
      --set multi_label.label_reduction=sum --set data.feature_scaling=standard ;;
  test)
    for set in scene yeast enron; do
      for hide in 0.0 0.5; do
        run "test-$set-hide$hide" configs/multilabel_yeast.yaml --data-dir "$data/$set" \
          --set data.hide_fraction=$hide --set data.sklearn_reference=true
      done
    done ;;
  tiles-validate)  # Fashion-tiles (images, 10 labels): the two reductions on a validation split
    for red in mean sum; do
      run "val-tiles-$red" configs/multilabel_fashion_tiles.yaml --data-dir "$data/../fashion-mnist" \
        --seeds 0,1,2 --set data.validation_fraction=0.2 --set multi_label.label_reduction=$red
    done ;;
  tiles-test)
    for hide in 0.0 0.5; do
      run "test-tiles-hide$hide" configs/multilabel_fashion_tiles.yaml \
        --data-dir "$data/../fashion-mnist" --set data.hide_fraction=$hide
    done ;;
  *) echo "mode must be validate, test, tiles-validate or tiles-test, got $mode" >&2; exit 2 ;;
esac
