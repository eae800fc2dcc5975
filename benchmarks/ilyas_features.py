"""Ilyas et al.'s "deterministic" experiment on Fashion-MNIST: adversarial perturbations carry features.

Ilyas, Santurkar, Tsipras, Engstrom, Tran, Madry. "Adversarial Examples Are Not Bugs, They Are
Features". NeurIPS 2019, Section 3.2 ("D_det"). The finding M2m (Kim et al., CVPR 2020) rests on.

Per seed:

1. **Source.** Train a classifier ``g`` (``longtail.engine.models.build_model("cnn", ...)``) on a
   class-stratified subset of the Fashion-MNIST training set (``--train-size`` images, read with
   ``longtail.data.load_idx`` and standardised with the subset's mean and std).
2. **Relabelled set.** Perturb every image of that subset towards ``t = (y + 1) mod 10`` with a
   targeted L2 PGD (``longtail.adversarial.pgd``, no random start, ``--steps`` steps of
   ``--step-size``, radius ``--epsilon``, both in ``[0, 1]`` pixel units and divided by the std for
   the standardised inputs; clipped to the valid pixel range) and label it ``t``. Every pair now
   looks like class ``y`` to a human and carries the label ``y + 1``.
3. **Fresh model.** Train a new classifier (same architecture, new initialisation and order) on
   that relabelled set only, and evaluate it on the original, correctly labelled test set (10,000
   images). Chance is 10 %. A model that learned the images' visible ("robust") features would
   predict ``y + 1`` on the test set (accuracy near 0 %, "shifted" near 100 %); one that learned
   the features the perturbations added predicts ``y``.

Reported per seed: the source's clean test accuracy, the attack's success rate (share of the
perturbed training images that ``g`` classifies as ``t``), the mean L2 norm of the perturbations in
pixel units, and the fresh model's test accuracy against the true labels and against ``y + 1``.

Training: SGD (momentum 0.9, weight decay 5e-4), learning rate ``--lr`` with a per-step cosine
decay, batch 128, no augmentation, ``--threads`` threads (default 1). Everything is seeded.

Resumable per seed: ``OUT/seed_<s>/source.pt`` (g's weights), ``adv.pt`` (the relabelled set) and
``result.json`` are written atomically as they are done, and a second call reuses them (the
settings must be the same: ``OUT/config.json``). ``OUT/results.json`` holds every seed, mean and
std; the markdown table is printed.

Usage::

    python benchmarks/ilyas_features.py --out runs/ilyas --seeds 0 1 2 --train-size 20000
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.adversarial import pgd
from longtail.data import load_idx
from longtail.engine.checkpoint import atomic_write_json, load_checkpoint, save_checkpoint
from longtail.engine.models import build_model

REPO = Path(__file__).resolve().parents[1]
NUM_CLASSES = 10


def stratified_subset(y: Tensor, size: int, seed: int) -> Tensor:
    """``size // 10`` indices per class (the first of a seeded permutation), sorted."""
    per_class = size // NUM_CLASSES
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in range(NUM_CLASSES):
        idx = (y == c).nonzero().view(-1)
        if len(idx) < per_class:
            raise ValueError(f"--train-size: class {c} has only {len(idx)} training images")
        chosen.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.cat(chosen).sort().values


def load_data(data_dir: Path, size: int) -> dict[str, Any]:
    """Subset, standardised images ``(N, 1, 28, 28)``, the test set and the valid input range."""
    train, test = load_idx(data_dir, "train"), load_idx(data_dir, "test")
    idx = stratified_subset(train.targets, size, seed=0) if size < len(train.targets) else None
    x_tr = train.data if idx is None else train.data[idx]
    y_tr = train.targets if idx is None else train.targets[idx]
    x_tr = x_tr.float().unsqueeze(1) / 255.0
    x_te = test.data.float().unsqueeze(1) / 255.0
    mean, std = x_tr.mean(), x_tr.std()
    lo = float((torch.zeros(()) - mean) / std)
    hi = float((torch.ones(()) - mean) / std)
    return {
        "x_train": ((x_tr - mean) / std).contiguous(),
        "y_train": y_tr.long(),
        "x_test": ((x_te - mean) / std).contiguous(),
        "y_test": test.targets.long(),
        "mean": float(mean),
        "std": float(std),
        "range": (lo, hi),
    }


def new_model(seed: int, channels: list[int]) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("cnn", (1, 28, 28), NUM_CLASSES, channels=channels)


def train(
    model: nn.Module, x: Tensor, y: Tensor, *, epochs: int, lr: float, batch: int, seed: int
) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    steps = epochs * math.ceil(len(y) / batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(batch):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch: int = 1000) -> Tensor:
    model.eval()
    return torch.cat([model(xb).argmax(1) for xb in x.split(batch)])


def run_seed(
    seed: int, data: dict[str, Any], args: argparse.Namespace, out: Path
) -> dict[str, Any]:
    folder = out / f"seed_{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / "result.json"
    if done.is_file():
        print(f"seed {seed}: reusing {done}", flush=True)
        return dict(json.loads(done.read_text()))
    x, y = data["x_train"], data["y_train"]
    std = data["std"]
    times: dict[str, float] = {}

    source = new_model(seed, args.channels)
    path = folder / "source.pt"
    if path.is_file():
        source.load_state_dict(load_checkpoint(path)["model"])
    else:
        t0 = time.perf_counter()
        train(source, x, y, epochs=args.source_epochs, lr=args.lr, batch=128, seed=seed)
        times["source_train_s"] = time.perf_counter() - t0
        save_checkpoint(path, {"model": source.state_dict()})
    source.eval()
    source_acc = float((predict(source, data["x_test"]) == data["y_test"]).float().mean())
    print(f"seed {seed}: source test accuracy {source_acc:.4f}", flush=True)

    t = (y + 1) % NUM_CLASSES
    path = folder / "adv.pt"
    if path.is_file():
        x_adv = load_checkpoint(path)["x_adv"]
    else:
        t0 = time.perf_counter()
        eps, step = args.epsilon / std, args.step_size / std
        gen = torch.Generator().manual_seed(seed)
        parts = []
        for xb, tb in zip(x.split(500), t.split(500), strict=True):
            parts.append(
                pgd(
                    source,
                    xb,
                    tb,
                    norm="l2",
                    epsilon=eps,
                    step_size=step,
                    steps=args.steps,
                    targeted=True,
                    random_start=False,
                    input_range=data["range"],
                    generator=gen,
                )
            )
        x_adv = torch.cat(parts)
        times["attack_s"] = time.perf_counter() - t0
        save_checkpoint(path, {"x_adv": x_adv})
    success = float((predict(source, x_adv) == t).float().mean())
    l2 = float(((x_adv - x).flatten(1).norm(dim=1) * std).mean())
    print(f"seed {seed}: attack success {success:.4f}, mean L2 {l2:.3f} (pixels)", flush=True)

    fresh = new_model(seed + 1000, args.channels)
    t0 = time.perf_counter()
    train(fresh, x_adv, t, epochs=args.fresh_epochs, lr=args.lr, batch=128, seed=seed + 1000)
    times["fresh_train_s"] = time.perf_counter() - t0
    pred = predict(fresh, data["x_test"])
    y_te = data["y_test"]
    result = {
        "seed": seed,
        "source_test_accuracy": source_acc,
        "attack_success": success,
        "mean_l2_pixels": l2,
        "fresh_train_accuracy": float((predict(fresh, x_adv) == t).float().mean()),
        "fresh_test_accuracy": float((pred == y_te).float().mean()),
        "fresh_test_shifted": float((pred == (y_te + 1) % NUM_CLASSES).float().mean()),
        "times_s": times,
    }
    atomic_write_json(done, result)
    print(
        f"seed {seed}: fresh model test accuracy {result['fresh_test_accuracy']:.4f} "
        f"(predicts y+1: {result['fresh_test_shifted']:.4f})",
        flush=True,
    )
    return result


COLUMNS = [
    ("source_test_accuracy", "g test acc."),
    ("attack_success", "attack success"),
    ("mean_l2_pixels", "mean L2 (pixels)"),
    ("fresh_train_accuracy", "fresh: train acc. (labels t)"),
    ("fresh_test_accuracy", "**fresh: test acc. (true y)**"),
    ("fresh_test_shifted", "fresh: test predicts y+1"),
]


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| seed | " + " | ".join(label for _, label in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for r in results:
        lines.append(f"| {r['seed']} | " + " | ".join(_fmt(k, r[k]) for k, _ in COLUMNS) + " |")
    if len(results) > 1:
        cells = []
        for k, _ in COLUMNS:
            vals = [r[k] for r in results]
            cells.append(f"{_fmt(k, statistics.mean(vals))} ± {_fmt(k, statistics.stdev(vals))}")
        lines.append("| mean ± std | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(key: str, value: float) -> str:
    return f"{value:.3f}" if key == "mean_l2_pixels" else f"{100 * value:.1f} %"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared/data/fashion-mnist")
    p.add_argument("--out", type=Path, default=REPO / "runs/ilyas")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train-size", type=int, default=20000, help="stratified training subset")
    p.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--source-epochs", type=int, default=6)
    p.add_argument("--fresh-epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--epsilon", type=float, default=1.0, help="L2 radius, [0, 1] pixel units")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--step-size", type=float, default=None, help="default 2.5 * epsilon / steps")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if args.step_size is None:
        args.step_size = 2.5 * args.epsilon / args.steps
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("seeds", "out", "threads")
    }
    cfg_path = args.out / "config.json"
    if cfg_path.is_file():
        old = json.loads(cfg_path.read_text())
        if old != settings:
            raise SystemExit(
                f"--out: {args.out} holds a run with other settings ({old}); use another folder"
            )
    else:
        atomic_write_json(cfg_path, settings)
    data = load_data(args.data_dir, args.train_size)
    print(
        f"{len(data['y_train'])} training images, std {data['std']:.4f}; epsilon {args.epsilon} "
        f"(pixels) = {args.epsilon / data['std']:.3f} (standardised), {args.steps} steps of "
        f"{args.step_size:.4f}",
        flush=True,
    )
    results = [run_seed(s, data, args, args.out) for s in args.seeds]
    summary = {
        "settings": settings,
        "std": data["std"],
        "epsilon_standardised": args.epsilon / data["std"],
        "seeds": results,
        "mean": {k: statistics.mean(r[k] for r in results) for k, _ in COLUMNS},
        "std_over_seeds": (
            {k: statistics.stdev(r[k] for r in results) for k, _ in COLUMNS}
            if len(results) > 1
            else None
        ),
    }
    atomic_write_json(args.out / "results.json", summary)
    print()
    print(table(results))


if __name__ == "__main__":
    main()
