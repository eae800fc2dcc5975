"""Tables of benchmarks/multilabel_recipe.sh: every method's mAP (mean over seeds) per run folder,
the scikit-learn reference row beside it, and each method's margin over that row.

Usage: python benchmarks/multilabel_recipe_table.py OUT [--prefix val-|test-]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REF = "sklearn-logreg"


def _mean(entry: dict, metric: str) -> float | None:
    stats = (entry.get("metrics") or {}).get(metric) or {}
    return stats.get("mean")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--prefix", default="")
    p.add_argument("--metric", default="mAP")
    args = p.parse_args()
    rows = []
    methods: list[str] = []
    for run in sorted(args.out.glob(f"{args.prefix}*/results.json")):
        res = json.loads(run.read_text())
        entries = res["methods"]
        for m in entries:
            if m not in methods and m not in (REF, "balanced"):
                methods.append(m)
        seeds = max(len(e.get("seeds", [])) for e in entries.values())
        rows.append((run.parent.name, entries, seeds))
    head = ["run", "seeds", REF, *methods, "best - ref"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, entries, seeds in rows:
        ref = _mean(entries.get(REF, {}), args.metric)
        vals = [_mean(entries.get(m, {}), args.metric) for m in methods]
        best = max((v for v in vals if v is not None), default=None)
        cells = [name, str(seeds), "-" if ref is None else f"{100 * ref:.1f}"]
        cells += ["-" if v is None else f"{100 * v:.1f}" for v in vals]
        margin = None if ref is None or best is None else 100 * (best - ref)
        cells.append("-" if margin is None else f"{margin:+.1f}")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
