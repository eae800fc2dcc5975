"""Inference cost of each open-set method relative to ``softmax``, on the same test tensors.

For every method of a config (default: configs/openset_fashion_mnist.yaml) the script builds the
method's network on split 0 (weights from a run folder when ``--run`` is given, else a fresh
initialisation: the cost does not depend on the weights), and times

- **full**: backbone + head + the method's score on ``--images`` test images drawn from the known
  and unknown ones (default 2048; 0: all), in batches of 512, the way the evaluation runs;
- **head + score**: the head and the score alone, on precomputed features (where the methods
  differ: a linear layer, distances to prototypes or reciprocal points, softmax or not).

Each measurement is the median over ``--rounds`` rounds; within a round the methods run in turn (so
a slow moment of a shared machine hits every method alike). One thread (``torch.set_num_threads``).
ARPL+CS's generator and discriminator are not used at inference: its cost is ARPL's.

Usage::

    python benchmarks/openset_speed.py [--config CONFIG] [--data-dir DIR] [--run RUN_DIR]
        [--rounds 7] [--images 2048]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from longtail.engine.checkpoint import load_checkpoint
from longtail.engine.config import load_config
from longtail.engine.runner import method_names
from longtail.tracks.open_set.data import build_open_set_data
from longtail.tracks.open_set.evaluation import known_score
from longtail.tracks.open_set.task import OpenSetTask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/openset_fashion_mnist.yaml")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--run", default=None, help="a run folder: load each method's seed-0 weights")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument(
        "--images", type=int, default=2048, help="test images timed (the first N; 0: all)"
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    overrides = {} if args.data_dir is None else {"data.data_dir": args.data_dir}
    cfg = load_config(args.config, overrides)
    data = build_open_set_data(cfg, 0)
    x = torch.cat([data.test_x, data.eval_splits["unknown"][0]])
    if args.images > 0:
        x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[: args.images]]
    batches = list(x.split(512))
    from longtail.engine.methods import resolve_methods

    table = resolve_methods(None, "open-set")
    names = method_names(cfg)
    if "softmax" not in names:
        names = ["softmax", *names]
    models = {}
    for name in names:
        task = OpenSetTask(table[name], data, cfg)
        torch.manual_seed(0)
        model = task.build_model()
        if args.run is not None:
            path = Path(args.run) / name / "seed_0" / "model.pt"
            if path.is_file():
                model.load_state_dict(load_checkpoint(path))
        models[name] = (model.eval(), table[name].composition()["score"])  # type: ignore[attr-defined]
    with torch.no_grad():
        feats = {n: torch.cat([m.backbone(b) for b in batches]) for n, (m, _) in models.items()}
    full: dict[str, list[float]] = {n: [] for n in names}
    head: dict[str, list[float]] = {n: [] for n in names}
    with torch.no_grad():
        for _ in range(args.rounds):
            for name, (model, score) in models.items():
                t0 = time.perf_counter()
                for b in batches:
                    known_score(model(b), score)
                full[name].append(time.perf_counter() - t0)
                f = feats[name]
                t0 = time.perf_counter()
                for _ in range(20):
                    known_score(model.head(f), score)
                head[name].append((time.perf_counter() - t0) / 20)
    base_full = statistics.median(full["softmax"])
    base_head = statistics.median(head["softmax"])
    n = len(x)
    print(f"{n} test images, batches of 512, 1 thread, median of {args.rounds} rounds\n")
    print(
        "| Method | Score | Full: ms / 1000 images | Full vs softmax | Head + score: ms / 1000 "
        "images | Head + score vs softmax |"
    )
    print("|---|---|---|---|---|---|")
    for name, (_, score) in models.items():
        f_ms = 1000 * statistics.median(full[name]) / n * 1000
        h_ms = 1000 * statistics.median(head[name]) / n * 1000
        print(
            f"| {name} | {score} | {f_ms:.1f} | {statistics.median(full[name]) / base_full:.2f}x "
            f"| {h_ms:.3f} | {statistics.median(head[name]) / base_head:.2f}x |"
        )


if __name__ == "__main__":
    main()
