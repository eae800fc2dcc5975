#!/usr/bin/env bash
# The multi-label tables of docs/results.md: every multi-label method, five seeds, on Scene, Yeast
# and Fashion-tiles, with 0% and 50% of the training label entries hidden. Resumable: rerun the
# same command after an interruption. Two chains run side by side (one thread each, 2 cores).
#   bash benchmarks/multilabel_results.sh [DATA_ROOT] [OUT_ROOT]
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-runs/multilabel}
mkdir -p "$OUT"
run() {  # config data_dir hide
  local name=$1 dir=$2 hide=$3
  local out="$OUT/${name}-hide${hide}"
  local resume=()
  [[ -f "$out/config.yaml" ]] && resume=(--resume)
  longtail bench "configs/multilabel_${name}.yaml" --data-dir "$dir" --out "$out" \
    --set "data.hide_fraction=${hide}" --no-progress "${resume[@]}"
}
(
  for hide in 0 0.5; do
    run scene "$DATA/multilabel/scene" "$hide"
    run yeast "$DATA/multilabel/yeast" "$hide"
  done
) > "$OUT/mulan.log" 2>&1 &
(
  for hide in 0 0.5; do
    run fashion_tiles "$DATA/fashion-mnist" "$hide"
  done
) > "$OUT/tiles.log" 2>&1 &
wait
for f in "$OUT"/*/results.json; do
  echo "== ${f%/results.json}"
  longtail report "${f%/results.json}" | head -n 12
done
