"""Choose one hyper-parameter of a method on a validation split held out of the training data.

The test set is never read. From the long-tailed training set of a config, ``--val-fraction`` of every
class is held out, stratified, with ``--split-seed`` (:func:`longtail.engine.datasets.hold_out_validation`,
the split of ``data.validation_fraction``; ``longtail bench --set data.validation_fraction=F`` does the
same for every method of a config, with seed ``data.subset_seed + 3``); the method is trained on the
rest for each value of ``--grid`` and scored on the held-out images (balanced accuracy: the mean of
per-class recalls, so the rare classes count as much as the frequent ones). Prints a table and the
best value; use it as a ``method_params`` override and say so.

Example (weight balancing's first-stage weight decay, which the paper tunes)::

    python benchmarks/tune_on_validation.py configs/fashion_mnist_lt.yaml \\
        --data-dir ../shared/data/fashion-mnist --method weight-balancing \\
        --param stage1_weight_decay --grid 5e-4,1e-3,2e-3,5e-3 --out runs/tune_wb
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from longtail.engine.config import load_config
from longtail.engine.datasets import build_data, hold_out_validation
from longtail.engine.methods import resolve_methods
from longtail.engine.runner import train_method


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config")
    p.add_argument("--data-dir")
    p.add_argument("--method", required=True)
    p.add_argument("--param", required=True)
    p.add_argument("--grid", required=True, help="comma-separated values")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--out", required=True, help="folder for the runs (created)")
    args = p.parse_args(argv)
    overrides = {"data.data_dir": args.data_dir} if args.data_dir else {}
    cfg = load_config(args.config, overrides)
    method = resolve_methods(cfg.recipes)[args.method]
    data = hold_out_validation(build_data(cfg.data), args.val_fraction, args.split_seed)
    print(
        f"train {len(data.train_y)} images {data.class_counts}, validation {len(data.test_y)}",
        file=sys.stderr,
    )
    rows = []
    for text in args.grid.split(","):
        value = float(text)
        params = dict(cfg.method_params.get(args.method, {}), **{args.param: value})
        run_cfg = dataclasses.replace(cfg, method_params={args.method: params})
        t0 = time.perf_counter()
        record = train_method(
            method,
            data,
            run_cfg,
            seed=args.seed,
            out_dir=Path(args.out) / f"{args.param}={text}",
            label=args.method,
            resume=True,
        )
        bacc = record["metrics"]["balanced_accuracy"]
        rows.append(
            {"value": value, "val_balanced_accuracy": bacc, "seconds": time.perf_counter() - t0}
        )
        print(
            f"{args.param}={text}: validation balanced accuracy {100 * bacc:.2f}", file=sys.stderr
        )
    best = max(rows, key=lambda r: r["val_balanced_accuracy"])
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "tuning.json").write_text(
        json.dumps(
            {"method": args.method, "param": args.param, "rows": rows, "best": best}, indent=2
        )
    )
    print("| value | validation balanced acc. |\n|---|---|")
    for r in rows:
        print(f"| {r['value']:g} | {100 * r['val_balanced_accuracy']:.2f} |")
    print(f"\nbest {args.param} = {best['value']:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
