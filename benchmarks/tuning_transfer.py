"""Does a validation gain carry over to the test set? Per tuned method of a ``bench --tune-trials``
folder: the validation gain of the best trial over the default trial, and the paired test
difference (tuned minus default, same seed), with their mean and the Spearman rank correlation.

    python benchmarks/tuning_transfer.py runs/tune_fmnist_lt [--without weight-balancing]

The best of N noisy validation scores is optimistic (the winner's curse): where the validation
split is small, most of a method's validation gain does not reappear on test.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""

    def ranks(v: list[float]) -> np.ndarray:
        x = np.asarray(v, dtype=float)
        order = x.argsort(kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=float)
        for value in np.unique(x):  # ties share their mean rank
            tied = x == value
            r[tied] = r[tied].mean()
        return r

    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a folder written by longtail bench --tune-trials")
    p.add_argument("--without", default="", help="comma-separated methods to leave out")
    args = p.parse_args()
    record = json.loads((args.run / "tuning.json").read_text())
    left_out = {m for m in args.without.split(",") if m}
    rows = []
    for name, m in record["methods"].items():
        if not m.get("tuned") or name in left_out or m.get("paired_difference") is None:
            continue
        gain = 100 * (m["best_validation"] - m["default_validation"])
        rows.append((name, gain, 100 * m["paired_difference"]))
    if len(rows) < 2:
        raise SystemExit(f"{args.run}: fewer than two tuned methods with test results")
    print(f"{'method':<20} {'validation gain':>16} {'test difference':>16}")
    for name, gain, diff in sorted(rows, key=lambda r: -r[1]):
        print(f"{name:<20} {gain:>+16.1f} {diff:>+16.1f}")
    gains, diffs = [r[1] for r in rows], [r[2] for r in rows]
    print(
        f"mean over {len(rows)} methods: validation gain {statistics.fmean(gains):+.2f}, "
        f"test difference {statistics.fmean(diffs):+.2f}; Spearman {spearman(gains, diffs):.2f}"
    )


if __name__ == "__main__":
    main()
