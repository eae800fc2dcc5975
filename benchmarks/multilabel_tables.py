"""Print the multi-label tables of docs/results.md from the run folders of multilabel_results.sh.

Usage: ``python benchmarks/multilabel_tables.py [OUT_ROOT]`` (default ``runs/multilabel``). For each
data set: the table with all label entries known, with 50% hidden (unknown), with 50% hidden as
negatives (where run), and a compact table of mAP with the changes.
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
        for hide in ("0", "0.5", "0.5neg"):
            f = root / f"{key}-hide{hide}" / "results.json"
            if f.is_file():
                runs[hide] = json.loads(f.read_text())
        if not runs:
            continue
        for hide, res in runs.items():
            share = 100 * float(hide.removesuffix("neg"))
            how = " (taken as negatives)" if hide.endswith("neg") else ""
            print(f"### {title}, {share:g}% of the training labels hidden{how}\n")
            print(format_table(res, markdown=True))
            print()
        if "0" in runs and "0.5" in runs:
            neg = "0.5neg" in runs
            print(f"### {title}: mAP with all labels and with half of them hidden\n")
            head = "| Method | mAP, 0% hidden | mAP, 50% hidden (unknown) | change |"
            print(head + (" mAP, 50% hidden (as negatives) | change |" if neg else ""))
            print("|---|---|---|---|" + ("---|---|" if neg else ""))
            for m in runs["0"]["methods"]:
                a = runs["0"]["methods"][m]["metrics"]["mAP"]
                cells = [f"{100 * a['mean']:.1f} ± {100 * a['std']:.1f}"]
                for hide in ("0.5", "0.5neg") if neg else ("0.5",):
                    b = runs[hide]["methods"].get(m, {}).get("metrics", {}).get("mAP")
                    if b is None:
                        cells += ["", ""]
                        continue
                    cells += [
                        f"{100 * b['mean']:.1f} ± {100 * b['std']:.1f}",
                        f"{100 * (b['mean'] - a['mean']):+.1f}",
                    ]
                print(f"| {m} | " + " | ".join(cells) + " |")
            print()


if __name__ == "__main__":
    main()
