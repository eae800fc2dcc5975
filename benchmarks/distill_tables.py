"""Markdown tables of the distillation and metric-learning runs of ``benchmarks/distill_results.sh``.

Reads ``results.json`` of each run folder under OUT_ROOT (``lt_erm_teacher``, ``lt_balanced_teacher``,
``metric``) and prints mean ± sample std over seeds, in percent. The metric-learning table also gets
two reference rows computed here: Recall@K of the raw (standardised) pixels, and of the student
network at its initialisation (one per training seed, the triplet student's initial weights).
*Train s* is each row's own training time (mean over seeds): a distilled student's excludes its
teacher's training (which the runner's record of the student includes) but includes the teacher's
forward passes.

    python benchmarks/distill_tables.py runs/distill --data-dir ../shared/data/fashion-mnist
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

SINGLE = [
    ("balanced_accuracy", "Balanced acc."),
    ("many", "Many"),
    ("medium", "Medium"),
    ("few", "Few"),
    ("ece", "ECE"),
]
RECALL = [(f"recall_at_{k}", f"R@{k}") for k in (1, 2, 4, 8)]


def _cell(stats: dict[str, Any] | None) -> str:
    if not stats or stats.get("mean") is None:
        return "n/a"
    return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"


def _table(
    results: dict[str, Any], metrics: list[tuple[str, str]], rows: list[tuple[str, str]]
) -> list[str]:
    head = ["Method", *(label for _, label in metrics), "Seeds", "Train s"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    teacher = results["methods"].get("teacher", {}).get("train_seconds", 0.0)
    for name, shown in rows:
        entry = results["methods"].get(name)
        if entry is None:
            continue
        cells = [_cell(entry["metrics"].get(key)) for key, _ in metrics]
        seeds = ", ".join(str(s) for s in entry["seeds"])
        # a distilled student's record holds its teacher's training time too: show its own
        own = entry["train_seconds"]
        if entry.get("composition", {}).get("role") == "student":
            own -= teacher
        out.append(f"| {shown} | " + " | ".join(cells) + f" | {seeds} | {own:.0f} |")
    return out


def _load(path: Path) -> dict[str, Any] | None:
    f = path / "results.json"
    return json.loads(f.read_text()) if f.is_file() else None


def _recall_references(run: Path, data_dir: str | None, seeds: list[int]) -> list[str]:
    """Rows of Recall@K for raw pixels and for the untrained student network."""
    import torch

    from longtail.engine.config import load_config
    from longtail.metrics import recall_at_k
    from longtail.tracks.metric_learning.task import build_embedding_net, build_metric_learning_data

    overrides = {} if data_dir is None else {"data.data_dir": data_dir}
    cfg = load_config(run / "config.yaml", overrides)
    data = build_metric_learning_data(cfg)
    ks = (1, 2, 4, 8)

    def row(name: str, values: list[dict[int, float]], seeds_text: str) -> str:
        cells = []
        for k in ks:
            v = [r[k] for r in values]
            mean = sum(v) / len(v)
            std = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
            cells.append(f"{100 * mean:.1f} ± {100 * std:.1f}")
        return f"| {name} | " + " | ".join(cells) + f" | {seeds_text} | 0 |"

    pixels = recall_at_k(data.test_x.flatten(1), data.test_y, ks)
    untrained = []
    ml = cfg.metric_learning
    assert ml is not None
    for seed in seeds:
        torch.manual_seed(seed)  # the trainer seeds torch before building the network
        net = build_embedding_net(cfg.model, data.input_shape, ml.embedding_dim, normalize=True)
        net.eval()
        with torch.no_grad():
            e = torch.cat([net(x) for x in data.test_x.split(1000)])
        untrained.append(recall_at_k(e, data.test_y, ks))
    return [
        row("raw pixels (reference)", [pixels], "-"),
        row("student network, untrained (reference)", untrained, ", ".join(map(str, seeds))),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_root", type=Path)
    ap.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (for the references)")
    args = ap.parse_args()
    erm = _load(args.out_root / "lt_erm_teacher")
    bal = _load(args.out_root / "lt_balanced_teacher")
    metric = _load(args.out_root / "metric")
    rows = [
        ("teacher", "teacher (erm, wide CNN)"),
        ("student", "student alone (CE)"),
        ("kd", "KD"),
        ("kd-std", "KD, logit-standardised"),
        ("dkd", "DKD"),
        ("rkd-da", "RKD-DA"),
        ("kd-rkd-da", "KD + RKD-DA"),
    ]
    if erm is not None:
        print("### Distillation on Fashion-MNIST-LT, erm teacher\n")
        print("\n".join(_table(erm, SINGLE, rows)) + "\n")
    if bal is not None:
        print("### The same students, la-loss (re-balancing) teacher\n")
        bal_rows = [("teacher", "teacher (la-loss, wide CNN)"), *rows[1:]]
        print("\n".join(_table(bal, SINGLE, bal_rows)) + "\n")
    if erm is not None and bal is not None:
        print("### Does the teacher's balance carry over? Few-shot and balanced accuracy\n")
        print(
            "| Row | Few, erm teacher | Few, la-loss teacher | Bal. acc., erm teacher "
            "| Bal. acc., la-loss teacher |"
        )
        print("|---|---|---|---|---|")
        for name, shown in rows:
            a, b = erm["methods"].get(name), bal["methods"].get(name)
            if a is None or b is None:
                continue
            print(
                f"| {shown} | {_cell(a['metrics']['few'])} | {_cell(b['metrics']['few'])} | "
                f"{_cell(a['metrics']['balanced_accuracy'])} | "
                f"{_cell(b['metrics']['balanced_accuracy'])} |"
            )
        print()
    if metric is not None:
        print("### Metric learning: Fashion-MNIST classes 0-4 seen, Recall@K on classes 5-9\n")
        mrows = [
            ("teacher", "teacher (triplet, wide CNN, 128-d)"),
            ("triplet", "student alone (triplet, 64-d)"),
            ("rkd-d", "student, RKD-D"),
            ("rkd-a", "student, RKD-A"),
            ("rkd-da", "student, RKD-DA"),
        ]
        lines = _table(metric, RECALL, mrows)
        seeds = metric["methods"]["teacher"]["seeds"]
        lines += _recall_references(args.out_root / "metric", args.data_dir, seeds)
        print("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
