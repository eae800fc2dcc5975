"""Where a method loses to a reference: per-class recall and the confusions that differ.

Each argument is ``FOLDER:METHOD`` (a run folder with ``results.json`` and the method's seed
folders); the last is the reference. Prints every method's recall per class (mean over the seeds
both have, in percent), its difference to the reference, and the reference-relative confusions
(true -> predicted, in test images per seed) that moved most. docs/results.md quotes

    python benchmarks/class_gap.py runs/tune_fmnist_lt/tuned:power-la \\
        runs/tune_fmnist_lt/default:sqrt-la runs/tune_fmnist_lt/default:erm \\
        runs/tune_fmnist_lt/default:balanced --names fashion-mnist
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from longtail.engine.datasets import FASHION_MNIST_NAMES


def confusions(folder: Path, method: str, seeds: list[int]) -> np.ndarray:
    """The mean confusion matrix (rows: true class) over ``seeds``."""
    mats = []
    for s in seeds:
        record = json.loads((folder / method / f"seed_{s}" / "result.json").read_text())
        mats.append(np.asarray(record["details"]["confusion"], dtype=float))
    return np.mean(mats, axis=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="FOLDER:METHOD ...; the last is the reference")
    p.add_argument("--names", default=None, help="'fashion-mnist' for its class names")
    p.add_argument("--top", type=int, default=6, help="confusions shown per method")
    args = p.parse_args()
    if len(args.runs) < 2:
        raise SystemExit("give at least one FOLDER:METHOD and the reference")
    entries = []
    for spec in args.runs:
        folder, _, method = spec.rpartition(":")
        results = json.loads((Path(folder) / "results.json").read_text())
        if method not in results["methods"]:
            raise SystemExit(f"{spec}: no method {method!r} in {folder}/results.json")
        entries.append((Path(folder), method, results))
    seed_sets = [set(r["methods"][m]["seeds"]) for _, m, r in entries]
    seeds = sorted(set.intersection(*seed_sets))
    names = (
        list(FASHION_MNIST_NAMES)
        if args.names == "fashion-mnist"
        else entries[-1][2]["class_names"]
    )
    counts = entries[0][2].get("class_counts")  # the long-tailed training counts
    mats = [confusions(f, m, seeds) for f, m, _ in entries]
    recalls = [100 * np.diag(c) / c.sum(axis=1) for c in mats]
    ref = recalls[-1]
    width = max(len(n) for n in names)
    header = f"{'class':<{width}}  {'train n':>7}  " + "  ".join(
        f"{m[:14]:>14}" for _, m, _ in entries
    )
    print(f"recall per class (%), mean over seeds {seeds}; (difference to {entries[-1][1]})")
    print(header)
    for c, name in enumerate(names):
        n = "" if counts is None else str(counts[c])
        cells = [f"{r[c]:6.1f} ({r[c] - ref[c]:+5.1f})" for r in recalls[:-1]]
        print(f"{name:<{width}}  {n:>7}  " + "  ".join(cells) + f"  {ref[c]:14.1f}")
    print(
        "balanced accuracy: "
        + ", ".join(f"{m} {r.mean():.2f}" for (_, m, _), r in zip(entries, recalls, strict=True))
    )
    for (_, m, _), c in zip(entries[:-1], mats[:-1], strict=True):
        diff = c - mats[-1]
        off = [(diff[i, j], i, j) for i in range(len(names)) for j in range(len(names)) if i != j]
        off.sort(key=lambda t: -abs(t[0]))
        moved = ", ".join(f"{names[i]} -> {names[j]} {d:+.0f}" for d, i, j in off[: args.top])
        print(f"{m} against {entries[-1][1]}, test images per seed: {moved}")


if __name__ == "__main__":
    main()
