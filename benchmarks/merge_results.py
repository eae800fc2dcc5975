"""Merge the method entries of several run folders into one table (same data, recipe and seeds).

Used when rows of one table come from more than one ``longtail bench`` run, e.g. a method re-run after
a fix. Each ``RUN_DIR:method,method`` takes those methods' entries from that run's ``results.json``;
entries are aggregated from the per-seed ``result.json`` files (a run stopped before writing
``results.json`` still counts); a method given by several runs must have identical per-seed values in
all of them (checked: the runs must reproduce each other), and the runs must share the class counts. Prints the
markdown table of ``longtail report`` and optionally writes the merged ``results.json``.

    python benchmarks/merge_results.py \\
        runs/fashion_mnist_lt_stages:erm,cb-resample runs/fashion_mnist_lt_ref:erm,balanced
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from longtail.engine.kinds import TASK_KINDS
from longtail.engine.report import format_table
from longtail.engine.runner import aggregate


def _entries(run_dir: Path, names: list[str], task: str) -> dict[str, Any]:
    """``results.json``-style entries of ``names``, aggregated from ``<method>/seed_*/result.json``
    (so a run stopped before writing ``results.json`` still counts), with the metrics of ``task``
    and each method's composition as the run's ``results.json`` records it (if written)."""
    per_run: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        files = sorted((run_dir / name).glob("seed_*/result.json"))
        if not files:
            raise SystemExit(f"{run_dir}: no results of {name!r}")
        per_run[name] = [json.loads(f.read_text()) for f in files]
    first = next(iter(per_run.values()))[0]
    written = run_dir / "results.json"
    recorded = json.loads(written.read_text())["methods"] if written.is_file() else {}
    compositions = {
        n: recorded[n]["composition"]
        for n in names
        if n in recorded and "composition" in recorded[n]
    }
    return aggregate(
        per_run,
        dataset="",
        task=task,
        imbalance_factor=None,
        class_counts=first["class_counts"],
        metric_specs=TASK_KINDS[task].metrics,
        compositions=compositions or None,
    )


def merge(parts: list[tuple[Path, list[str]]]) -> dict[str, Any]:
    merged: dict[str, Any] | None = None
    for run_dir, names in parts:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        task = cfg.get("task", "single-label")
        res = _entries(run_dir, names, task)
        if merged is None:
            merged = {k: v for k, v in res.items() if k != "methods"}
            merged["dataset"] = cfg["data"]["dataset"]
            merged["imbalance_factor"] = cfg["data"]["imbalance_factor"]
            written = run_dir / "results.json"
            if written.is_file():  # class names, data source, sizes of the first run
                first = json.loads(written.read_text())
                for key in ("class_names", "data_source", "num_train", "num_test"):
                    if key in first:
                        merged[key] = first[key]
            merged["methods"] = {}
        elif task != merged["task"]:
            raise SystemExit(f"{run_dir}: task {task!r}, the first run's is {merged['task']!r}")
        for name, entry in res["methods"].items():
            if name != "balanced" and res["class_counts"] != merged["class_counts"]:
                raise SystemExit(f"{run_dir}: class counts differ from the first run")
            if name in merged["methods"]:
                a = {k: v["values"] for k, v in merged["methods"][name]["metrics"].items()}
                b = {k: v["values"] for k, v in entry["metrics"].items()}
                if a != b:
                    raise SystemExit(f"{run_dir}: {name} differs from an earlier run: {a} != {b}")
                continue
            merged["methods"][name] = entry
    assert merged is not None
    ref = merged["methods"].pop("balanced", None)
    if ref is not None:  # the reference is listed last
        merged["methods"]["balanced"] = ref
    return merged


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("parts", nargs="+", help="RUN_DIR:method,method,...")
    p.add_argument("--out", help="write the merged results.json here")
    args = p.parse_args(argv)
    parts = []
    for text in args.parts:
        run, _, names = text.partition(":")
        parts.append((Path(run), [n for n in names.split(",") if n]))
    merged = merge(parts)
    if args.out:
        Path(args.out).write_text(json.dumps(merged, indent=2) + "\n")
    print(format_table(merged, markdown=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
