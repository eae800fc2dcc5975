#!/usr/bin/env bash
# Choose RPL's and GCPL's temperature for configs/openset_fashion_mnist.yaml on a validation split
# of the training data (the test set is not read): for T in {1, 0.1, 0.02}, train rpl and gcpl on
# splits 0, 1, 2 with data.validation_fraction=0.2 (20% of each known class held out, plus as many
# training images per unknown class) and print closed-set accuracy and AUROC on the held-out
# images. The choice is made on closed-set accuracy (the criterion needs no unknown images).
# Resumable: rerun the same command after an interruption.
#   bash benchmarks/openset_temperature.sh [FASHION_MNIST_DIR] [OUT_ROOT]
set -euo pipefail
DATA=${1:-../shared/data/fashion-mnist}
OUT=${2:-runs/openset_temperature}
TEMPERATURES=(1 0.1 0.02)
mkdir -p "$OUT"
for t in "${TEMPERATURES[@]}"; do
  out="$OUT/T$t"
  resume=()
  [[ -f "$out/config.yaml" ]] && resume=(--resume)
  echo "== $(date +%H:%M:%S) T=$t"
  longtail bench configs/openset_fashion_mnist.yaml --methods rpl,gcpl --seeds 0,1,2 \
    --data-dir "$DATA" --out "$out" --jobs 1 --no-progress "${resume[@]}" \
    --set data.validation_fraction=0.2 --set name="openset_temperature_T$t" \
    --set method_params.rpl.temperature="$t" --set method_params.gcpl.temperature="$t"
done
python - "$OUT" "${TEMPERATURES[@]}" <<'PY'
import json, statistics, sys
from pathlib import Path

root, temps = Path(sys.argv[1]), sys.argv[2:]
print("| method | T | validation closed-set acc. | validation AUROC | splits |")
print("|---|---|---|---|---|")
for method in ("rpl", "gcpl"):
    best = None
    for t in temps:
        r = json.loads((root / f"T{t}" / "results.json").read_text())
        assert r["evaluated_on"] == "validation", "not a validation run"
        m = r["methods"][method]["metrics"]
        acc, auroc = m["closed_set_accuracy"], m["auroc"]
        n = len(r["methods"][method]["seeds"])
        print(f"| {method} | {t} | {100 * acc['mean']:.1f} ± {100 * acc['std']:.1f} "
              f"| {100 * auroc['mean']:.1f} ± {100 * auroc['std']:.1f} | {n} |")
        if best is None or acc["mean"] > best[1]:
            best = (t, acc["mean"])
    print(f"| **{method}: chosen T = {best[0]}** | | | | |")
PY
