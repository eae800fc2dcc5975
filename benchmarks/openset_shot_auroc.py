"""Open long-tailed runs: is it the tail classes' test images that look unknown?

For every method and split of an open-set run folder with long-tailed known classes, the script
loads the final weights (``<method>/seed_<s>/model.pt``), evaluates them again with
:func:`longtail.tracks.open_set.task.open_set_evaluation` and prints the AUROC of the unknown test images
against the known test images of each many / medium / few group (``details.auroc_by_shot``, which
newer runs record themselves), mean ± sample std over the splits. An AUROC below 50 means the
group's known images score *lower* than the unknown ones.

Usage: ``python benchmarks/openset_shot_auroc.py RUN_DIR [RUN_DIR ...]``
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch

from longtail.engine.checkpoint import load_checkpoint
from longtail.engine.config import load_config
from longtail.engine.methods import resolve_methods
from longtail.tracks.open_set.data import build_open_set_data
from longtail.tracks.open_set.evaluation import open_set_evaluation
from longtail.tracks.open_set.task import OpenSetTask


def _fmt(values: list[float]) -> str:
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def main() -> None:
    torch.set_num_threads(1)
    for run in map(Path, sys.argv[1:]):
        cfg = load_config(run / "config.yaml")
        results = json.loads((run / "results.json").read_text())
        table = resolve_methods(None, "open-set")
        print(f"### {run.name}: AUROC of the unknown images against each group's known images\n")
        print("| Method | Score | All known | Many | Medium | Few |")
        print("|---|---|---|---|---|---|")
        data = {}
        for name, entry in results["methods"].items():
            method = table[name]
            per: dict[str, list[float]] = {"all": [], "many": [], "medium": [], "few": []}
            for seed in entry["seeds"]:
                if seed not in data:
                    data[seed] = build_open_set_data(cfg, seed)
                bundle = data[seed]
                model = OpenSetTask(method, bundle, cfg).build_model()
                model.load_state_dict(load_checkpoint(run / name / f"seed_{seed}" / "model.pt"))
                model.eval()
                with torch.no_grad():
                    known = torch.cat([model(b) for b in bundle.test_x.split(1024)])
                    unknown = torch.cat(
                        [model(b) for b in bundle.eval_splits["unknown"][0].split(1024)]
                    )
                score = method.composition()["score"]
                metrics, details = open_set_evaluation(
                    known,
                    bundle.test_y,
                    unknown,
                    score=score,
                    group_counts=bundle.group_counts,
                    shot_mode=cfg.metrics.shot_mode,
                )
                per["all"].append(metrics["auroc"])
                for group, value in details["auroc_by_shot"].items():
                    if value is not None:
                        per[group].append(value)
            cells = [_fmt(per[g]) for g in ("all", "many", "medium", "few")]
            print(f"| {name} | {score} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main()
