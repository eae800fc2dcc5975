"""Training throughput of every multi-label method, as a ratio to ``bce`` in the same run.

Each method of :data:`longtail.tracks.multi_label.MULTILABEL_METHODS` trains through the engine's
:class:`~longtail.engine.trainer.Trainer` (the same loop as ``longtail bench``: sampler, loss through
the registry, checkpoint and log every epoch) on the same in-memory data, one thread; the figure is
training examples processed per second (an ``rfs`` epoch holds more examples than the others, so
examples per second, not epochs per second, is what compares). Repeats are interleaved over the
methods and the median is taken; evaluation runs on a 64-example test set only at the end and is
included (it is the same for every method).

Cases: the Fashion-tiles CNN (1x28x28 images, 10 labels, batch 128) and a Scene-shaped MLP (294
features, 6 labels, batch 64), synthetic inputs with labels of the real sets' frequencies.

Usage::

    python benchmarks/multilabel_speed.py [--epochs 3] [--repeats 3] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from longtail.engine.config import config_from_dict
from longtail.engine.datasets import DataBundle
from longtail.engine.trainer import Trainer
from longtail.tracks.multi_label import MULTILABEL_METHODS
from longtail.tracks.multi_label.task import MultiLabelTask

CASES: dict[str, dict[str, Any]] = {
    "CNN, 1x28x28, 10 labels (fashion-tiles)": {
        "shape": (1, 28, 28),
        "rates": [0.77, 0.54, 0.38, 0.24, 0.15, 0.09, 0.05, 0.03, 0.02, 0.014],
        "n": 4096,
        "model": {"arch": "cnn", "channels": [16, 32, 64]},
        "batch": 128,
    },
    "MLP, 294 features, 6 labels (scene)": {
        "shape": (294,),
        "rates": [0.19, 0.14, 0.16, 0.16, 0.23, 0.19],
        "n": 8192,
        "model": {"arch": "mlp", "hidden": [256]},
        "batch": 64,
    },
}


def _bundle(case: dict[str, Any]) -> DataBundle:
    g = torch.Generator().manual_seed(0)
    n = case["n"]
    rates = torch.tensor(case["rates"])
    y = (torch.rand(n, len(rates), generator=g) < rates).float()
    x = torch.randn(n, *case["shape"], generator=g)
    counts = [int(c) for c in (y == 1).sum(0)]
    names = [f"label {j}" for j in range(len(rates))]
    return DataBundle("synthetic", x, y, x[:64], y[:64], names, counts, counts, None)


def throughput(name: str, data: DataBundle, case: dict[str, Any], epochs: int) -> float:
    cfg = config_from_dict(
        {
            "task": "multi-label",
            "data": {"dataset": "mulan", "data_dir": ".", "imbalance_factor": None},
            "model": case["model"],
            "train": {
                "epochs": epochs,
                "batch_size": case["batch"],
                "lr": 0.05,
                "eval_every": 0,
                "num_threads": 1,
            },
        }
    )
    task = MultiLabelTask(MULTILABEL_METHODS[name], data, cfg)
    examples = sum(len(task.sampler(e, seed=0, rank=0, world_size=1)) for e in range(epochs))
    start = time.perf_counter()
    Trainer(task, data, cfg, seed=0).fit()
    return examples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--markdown", help="write the table to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = ["| case | method | examples/s | ratio to bce |", "|---|---|---:|---:|"]
    for label, case in CASES.items():
        data = _bundle(case)
        runs: dict[str, list[float]] = {m: [] for m in MULTILABEL_METHODS}
        for _ in range(args.repeats):
            for m in MULTILABEL_METHODS:
                runs[m].append(throughput(m, data, case, args.epochs))
        base = statistics.median(runs["bce"])
        for m, values in runs.items():
            med = statistics.median(values)
            lines.append(f"| {label} | {m} | {med:.0f} | {med / base:.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as fh:
            fh.write(table + "\n")


if __name__ == "__main__":
    main()
