#!/usr/bin/env bash
# The multi-label tables of docs/results.md: every multi-label method, five seeds, on Scene, Yeast
# and Fashion-tiles, with 0% and 50% of the training label entries hidden (unknown), and 50% hidden
# as negatives (hidden positives become false negatives). Resumable: rerun the same command after
# an interruption. Two chains run side by side (one thread each, 2 cores).
#   bash benchmarks/multilabel_results.sh [DATA_ROOT] [OUT_ROOT]
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-runs/multilabel}
mkdir -p "$OUT"
run() {  # config data_dir hide [hidden_as]
  local name=$1 dir=$2 hide=$3 as=${4:-unknown}
  local out="$OUT/${name}-hide${hide}"
  [[ "$as" == negative ]] && out="${out}neg"
  local resume=()
  [[ -f "$out/config.yaml" ]] && resume=(--resume)
  local extra=()
  [[ "$as" == negative ]] && extra=(--set data.hidden_as=negative)
  longtail bench "configs/multilabel_${name}.yaml" --data-dir "$dir" --out "$out" --jobs 1 \
    --set "data.hide_fraction=${hide}" "${extra[@]}" --no-progress "${resume[@]}"
}
(
  for hide in 0 0.5; do
    run scene "$DATA/multilabel/scene" "$hide"
    run yeast "$DATA/multilabel/yeast" "$hide"
  done
  run scene "$DATA/multilabel/scene" 0.5 negative
  run yeast "$DATA/multilabel/yeast" 0.5 negative
) > "$OUT/mulan.log" 2>&1 &
(
  for hide in 0 0.5; do
    run fashion_tiles "$DATA/fashion-mnist" "$hide"
  done
  run fashion_tiles "$DATA/fashion-mnist" 0.5 negative
) > "$OUT/tiles.log" 2>&1 &
wait
for f in "$OUT"/*/results.json; do
  echo "== ${f%/results.json}"
  longtail report "${f%/results.json}" | head -n 12
done
