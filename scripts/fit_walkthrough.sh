#!/usr/bin/env bash
# The docs/cli.md walk-through, end to end: a long-tailed image folder made from Fashion-MNIST
# (PNG files, as a user's own photos would be), `longtail bench` with a validation split, the best
# method on validation fitted into a model bundle, predictions on new images, an ONNX export.
# Usage, from the repository root: bash scripts/fit_walkthrough.sh OUT [FASHION_MNIST_DIR]
set -euo pipefail
out="${1:?usage: fit_walkthrough.sh OUT [FASHION_MNIST_DIR]}"
fm="${2:-../shared/data/fashion-mnist}"
mkdir -p "$out"
python - "$fm" "$out/my_images" "$out/new_images" <<'PY'
import sys
from pathlib import Path
from PIL import Image
from longtail.data import load_idx
src, train_root, new_root = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
if not train_root.exists():
    tr, te = load_idx(src, split="train"), load_idx(src, split="test")
    names = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
    counts = [round(400 * (0.02 ** (c / 9))) for c in range(10)]  # imbalance factor 50
    for c, name in enumerate(names):
        idx = (tr.targets == c).nonzero().flatten()
        for split, sel in (("train", idx[: counts[c]]), ("test", (te.targets == c).nonzero().flatten()[:60])):
            d = train_root / split / name
            d.mkdir(parents=True, exist_ok=True)
            data = tr.data if split == "train" else te.data
            for i in sel.tolist():
                Image.fromarray(data[i].numpy()).save(d / f"{i}.png")
    new_root.mkdir(parents=True, exist_ok=True)
    for i in range(60, 260):  # unlabelled "new" images: test images not in test/
        Image.fromarray(te.data[i].numpy()).save(new_root / f"img_{i:05d}.png")
PY
set -x
longtail bench configs/image_folder.yaml --data-dir "$out/my_images" \
  --methods erm,la-posthoc,balanced-softmax,ldam-drw,crt --seeds 0 --epochs 8 \
  --set data.validation_fraction=0.2 --set data.channels=1 --set data.image_size=28 \
  --jobs 1 --no-progress --out "$out/bench" ${RESUME:+--resume}
grep -A4 "Use the best method" "$out/bench/report.md"
best=$(python -c "import json,sys; r=json.load(open('$out/bench/results.json'))['methods']; print(max(r, key=lambda m: r[m]['metrics']['balanced_accuracy']['mean']))")
longtail fit "$out/bench/config.yaml" --method "$best" --out "$out/model" --refit
longtail predict "$out/model" "$out/new_images" --out "$out/predictions.csv"
head -4 "$out/predictions.csv"
rm -f "$out/model.onnx"
longtail export "$out/model" --format onnx --out "$out/model.onnx"
