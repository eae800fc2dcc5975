"""Print the open-set tables of docs/results.md from the run folders of openset_results.sh.

Usage: ``python benchmarks/openset_tables.py [OUT_ROOT]`` (default ``runs/openset``). Reads
``OUT_ROOT/openset/results.json`` (the five-split protocol) and ``OUT_ROOT/lt_if100`` /
``OUT_ROOT/lt_if10`` (open long-tailed recognition), and prints, mean ± sample std over the splits
in percent (best of a column in bold):

- the protocol table: AUROC, AUPR-in, AUPR-out, OSCR, closed-set accuracy, the score each method
  thresholds, training seconds of one split; then each split's AUROC, and the mean AUROC had each
  method thresholded the other score (from the evaluation details);
- per imbalance factor: AUROC, OSCR, closed-set accuracy and many / medium / few;
- the effect of logit adjustment: each method against its ``-la`` twin (AUROC, closed-set and
  few-shot accuracy, with the change: mean ± std over the splits of the paired differences).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def cell(entry: Mapping[str, Any], metric: str) -> tuple[float | None, str]:
    m = entry["metrics"].get(metric) or {}
    mean, std = m.get("mean"), m.get("std")
    if mean is None:
        return None, "n/a"
    return mean, f"{100 * mean:.1f} ± {100 * (std or 0.0):.1f}"


def table(results: Mapping[str, Any], metrics: Sequence[tuple[str, str]], extra: bool) -> str:
    methods = results["methods"]
    best = {}
    for key, _ in metrics:
        vals = [cell(e, key)[0] for e in methods.values()]
        vals = [v for v in vals if v is not None]
        best[key] = max(vals) if vals else None
    head = ["Method", *[label for _, label in metrics]]
    if extra:
        head += ["Score", "Splits", "Train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, e in methods.items():
        row = [name]
        for key, _ in metrics:
            v, text = cell(e, key)
            row.append(
                f"**{text}**"
                if v is not None and best[key] is not None and abs(v - best[key]) < 1e-12
                else text
            )
        if extra:
            row += [
                str(e.get("composition", {}).get("score", "?")),
                str(len(e["seeds"])),
                f"{e['train_seconds']:.0f}",
            ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def split_table(root: Path, results: Mapping[str, Any]) -> str:
    """AUROC of every split, and the mean AUROC of the other score."""
    seeds = next(iter(results["methods"].values()))["seeds"]
    head = ["Method", *[f"split {s}" for s in seeds], "Score", "Other score: AUROC"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in results["methods"]:
        row, other = [name], []
        score = other_name = "?"
        for s in seeds:
            path = root / name / f"seed_{s}" / "result.json"
            if not path.is_file():
                row.append("")
                continue
            r = json.loads(path.read_text())
            row.append(f"{100 * r['metrics']['auroc']:.1f}")
            det = r["details"]
            score = det["score"]
            for k, v in det["auroc_by_score"].items():
                if k != score and v is not None:
                    other_name = k
                    other.append(v)
        mean = sum(other) / len(other) if other else None
        row += [score, "n/a" if mean is None else f"{100 * mean:.1f} ({other_name})"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def paired_change(a: Mapping[str, Any], b: Mapping[str, Any], metric: str) -> str:
    """Mean ± sample std over the splits of the per-split difference ``b - a`` (points)."""
    va = (a["metrics"].get(metric) or {}).get("values") or []
    vb = (b["metrics"].get(metric) or {}).get("values") or []
    diffs = [100 * (y - x) for x, y in zip(va, vb, strict=False) if x is not None and y is not None]
    if not diffs:
        return "n/a"
    mean = sum(diffs) / len(diffs)
    std = (sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) ** 0.5 if len(diffs) > 1 else 0.0
    return f"{mean:+.1f} ± {std:.1f}"


def la_table(results: Mapping[str, Any]) -> str:
    """Each method against its ``-la`` twin; the change is the mean ± std of the paired per-split
    differences (the same split, known classes and seed)."""
    methods = results["methods"]
    lines = [
        "| Method | AUROC | with LA | change | Closed-set acc. | with LA | change | Few | with LA "
        "| change |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in methods:
        twin = f"{name}-la"
        if twin not in methods:
            continue
        row = [name]
        for key in ("auroc", "closed_set_accuracy", "few"):
            row += [
                cell(methods[name], key)[1],
                cell(methods[twin], key)[1],
                paired_change(methods[name], methods[twin], key),
            ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


PROTOCOL = [
    ("auroc", "AUROC"),
    ("aupr_in", "AUPR-in"),
    ("aupr_out", "AUPR-out"),
    ("oscr", "OSCR"),
    ("closed_set_accuracy", "Closed-set acc."),
]
LONG_TAILED = [
    ("auroc", "AUROC"),
    ("oscr", "OSCR"),
    ("closed_set_accuracy", "Closed-set acc."),
    ("many", "Many"),
    ("medium", "Medium"),
    ("few", "Few"),
]


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/openset")
    path = root / "openset" / "results.json"
    if path.is_file():
        res = json.loads(path.read_text())
        print("### Five splits, 6 known / 4 unknown classes\n")
        print(table(res, PROTOCOL, extra=True))
        print()
        print("### AUROC of each split\n")
        print(split_table(root / "openset", res))
        print()
    for factor in ("100", "10"):
        path = root / f"lt_if{factor}" / "results.json"
        if not path.is_file():
            continue
        res = json.loads(path.read_text())
        counts = res.get("class_counts")
        print(f"### Open long-tailed, imbalance factor {factor} (known-class counts {counts})\n")
        print(table(res, LONG_TAILED, extra=True))
        print()
        print(f"### Logit adjustment of the known classes, imbalance factor {factor}\n")
        print(la_table(res))
        print()


if __name__ == "__main__":
    main()
