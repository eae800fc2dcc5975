"""Inference cost of the SLA methods relative to plain training's model (issue 13).

Times ``predict_logits`` (the test-time forward of each method: one pass for plain training, SLA's
single and self-distilled inference and the baselines; M passes for aggregated inference) on the same
Fashion-MNIST-shaped batch, with the small CNN of ``configs/sla_fashion_mnist.yaml``, and reports each
as a ratio to ``erm`` measured in the same run (interleaved repeats, medians). Weights do not change
the cost, so the models are freshly initialised.

    OMP_NUM_THREADS=1 python benchmarks/sla_inference_cost.py --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from longtail.engine.config import load_config
from longtail.engine.datasets import DataBundle
from longtail.engine.methods import resolve_methods
from longtail.tracks.single_label import METHODS
from longtail.tracks.single_label.task import single_label_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="configs/sla_fashion_mnist.yaml")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config)
    table = resolve_methods(cfg.recipes, cfg.task)
    names = ["erm", "sla-da", "sla-mt", "sla-si", "sla", "sla-sd"]
    n = args.batch
    x = torch.randn(n, 1, 28, 28)
    y = torch.arange(n) % 10
    data = DataBundle(
        name="shape-only",
        train_x=x,
        train_y=y,
        test_x=x,
        test_y=y,
        class_names=[str(k) for k in range(10)],
        class_counts=[n // 10] * 10,
        group_counts=[n // 10] * 10,
        imbalance_factor=None,
    )
    tasks, models = {}, {}
    for name in names:
        method = table.get(name) or METHODS[name]
        task = single_label_task(method, data, cfg)
        torch.manual_seed(0)
        model = task.build_model().eval()
        tasks[name], models[name] = task, model
    from longtail.sla import sla_aggregate_logits, sla_transforms

    ag = tasks["sla"]
    m = ag.m  # type: ignore[attr-defined]

    def stacked() -> None:
        """Aggregated inference as one stacked batch of B * M images (the earlier way)."""
        z = models["sla"](sla_transforms(x, ag.family).flatten(0, 1)).float()  # type: ignore[attr-defined]
        sla_aggregate_logits(z[:, : 10 * m], m)

    stacked_key = "sla, one stacked batch"
    times: dict[str, list[float]] = {k: [] for k in [*names, stacked_key]}
    with torch.no_grad():
        for name in names:  # warm-up
            tasks[name].predict_logits(models[name], x)
        stacked()
        for _ in range(args.repeats):
            for name in names:
                t0 = time.perf_counter()
                tasks[name].predict_logits(models[name], x)
                times[name].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            stacked()
            times[stacked_key].append(time.perf_counter() - t0)
    base = statistics.median(times["erm"])
    print(f"batch {n}, {args.repeats} repeats, 1 thread, torch {torch.__version__}")
    print("| method | inference | ms / batch | relative to erm |")
    print("|---|---|---:|---:|")
    for name in names:
        task = tasks[name]
        kind = getattr(task, "sla_kind", None)
        how = {
            None: "one pass",
            "da": "one pass",
            "mt": "one pass (class head)",
        }.get(
            kind,
            {"si": "one pass (identity block)", "ag": "4 passes", "sd": "one pass (SD head)"}[
                getattr(task, "inference", "si")
            ],
        )
        med = statistics.median(times[name])
        print(f"| {name} | {how} | {1000 * med:.1f} | {med / base:.2f}x |")
    med = statistics.median(times[stacked_key])
    print(
        f"| {stacked_key} | 4 copies in one batch of {n * m} | {1000 * med:.1f} | {med / base:.2f}x |"
    )


if __name__ == "__main__":
    main()
