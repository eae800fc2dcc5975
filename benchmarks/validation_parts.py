"""Choose among a run's methods on several held-out parts, and compare with the test set.

Each VALIDATION folder is a ``longtail bench`` run on a validation split (``data.validation_fraction``,
one ``data.validation_seed`` each) of the same methods and seeds; TEST is the same methods run on the
test set. Prints, per method, its mean validation score on each part (over the seeds), the mean over
the parts, and its test mean; then the method with the best mean over the parts (the rule fixed
before the parts were run), its test score, and the Spearman correlation between the two columns.

    python benchmarks/validation_parts.py runs/oracle_powerla/out runs/oracle_powerla/validation \
        runs/oracle_powerla/validation_101 runs/oracle_powerla/validation_102
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from statistics import mean

from scipy.stats import spearmanr


def _means(folder: Path, metric: str) -> dict[str, float]:
    try:
        results = json.loads((folder / "results.json").read_text())
    except (OSError, ValueError) as exc:
        sys.exit(f"error: {folder}: no readable results.json ({exc})")
    out = {}
    for name, row in results["methods"].items():
        stat = row["metrics"].get(metric)
        if stat is not None and stat.get("mean") is not None:
            out[name] = 100.0 * float(stat["mean"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("test", type=Path, help="the run on the test set")
    parser.add_argument("validation", type=Path, nargs="+", help="runs on held-out parts")
    parser.add_argument("--metric", default="balanced_accuracy")
    args = parser.parse_args(argv)
    test = _means(args.test, args.metric)
    parts = [_means(v, args.metric) for v in args.validation]
    names = sorted(set(test).intersection(*parts))
    if len(names) < 2:
        sys.exit("error: fewer than two methods in every folder")
    header = ["method", *(v.name for v in args.validation), "mean", "test"]
    print(" | ".join(header))
    rows = []
    for n in names:
        per = [p[n] for p in parts]
        rows.append((n, per, mean(per), test[n]))
    for n, per, m, t in sorted(rows, key=lambda r: -r[2]):
        print(" | ".join([n, *(f"{v:.2f}" for v in per), f"{m:.2f}", f"{t:.2f}"]))
    pick = max(rows, key=lambda r: r[2])
    rho = spearmanr([r[2] for r in rows], [r[3] for r in rows]).statistic
    print(
        f"chosen on the {len(parts)} parts: {pick[0]} ({pick[2]:.2f}); its test score {pick[3]:.2f}"
    )
    for i, v in enumerate(args.validation):
        best = max(rows, key=lambda r: r[1][i])
        print(
            f"chosen on {v.name} alone: {best[0]} ({best[1][i]:.2f}); its test score {best[3]:.2f}"
        )
    print(
        f"Spearman between the mean over the parts and the test score: {rho:.2f} ({len(rows)} methods)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
