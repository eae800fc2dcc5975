"""Print the multi-label tables of docs/results.md from the run folders of multilabel_results.sh.

Usage: ``python benchmarks/multilabel_tables.py [OUT_ROOT]`` (default ``runs/multilabel``). For each
data set: the table with all label entries known, the table with 50% hidden, and a compact table of
mAP at 0% and 50% with the change.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from longtail.engine.report import format_table

SETS = [("scene", "Scene"), ("yeast", "Yeast"), ("fashion_tiles", "Fashion-tiles")]


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/multilabel")
    for key, title in SETS:
        runs = {}
        for hide in ("0", "0.5"):
            f = root / f"{key}-hide{hide}" / "results.json"
            if f.is_file():
                runs[hide] = json.loads(f.read_text())
        if not runs:
            continue
        for hide, res in runs.items():
            print(f"### {title}, {100 * float(hide):g}% of the training labels hidden\n")
            print(format_table(res, markdown=True))
            print()
        if len(runs) == 2:
            print(f"### {title}: mAP with all labels and with half of them hidden\n")
            print("| Method | mAP, 0% hidden | mAP, 50% hidden | change |")
            print("|---|---|---|---|")
            for m in runs["0"]["methods"]:
                a = runs["0"]["methods"][m]["metrics"]["mAP"]
                b = runs["0.5"]["methods"].get(m, {}).get("metrics", {}).get("mAP")
                if b is None:
                    continue
                print(
                    f"| {m} | {100 * a['mean']:.1f} ± {100 * a['std']:.1f} | "
                    f"{100 * b['mean']:.1f} ± {100 * b['std']:.1f} | "
                    f"{100 * (b['mean'] - a['mean']):+.1f} |"
                )
            print()


if __name__ == "__main__":
    main()
