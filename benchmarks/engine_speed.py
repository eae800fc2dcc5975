"""Images per second of the engine's training loop against a bare PyTorch loop.

Both loops train the same model (built by ``longtail.engine.models.build_model``) on the same
in-memory tensors with the same batch size, SGD (momentum 0.9, weight decay 5e-4) and plain
cross-entropy (the ``erm`` method), one thread each. The bare loop is what one would write by hand::

    for epoch in ...:
        perm = torch.randperm(n)
        for idx in perm.split(batch):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(); loss.backward(); opt.step()

The engine's number includes everything its loop does per step and per epoch (sampler, learning-rate
schedule, loss through the method registry, the buffered finite-loss check and running accuracy, read
on the host every ``SYNC_EVERY`` steps) and the atomic checkpoint and CSV log of every epoch (serialised
in the loop, written by a background thread); evaluation is excluded from both. The first epoch
is a warm-up and not timed. Ratio = engine / bare (goal >= 0.9).

Usage::

    python benchmarks/engine_speed.py [--epochs 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from longtail.engine.config import config_from_dict
from longtail.engine.datasets import DataBundle
from longtail.engine.models import build_model
from longtail.engine.trainer import Trainer
from longtail.tracks.single_label import METHODS, SingleLabelTask


def _bundle(shape: tuple[int, ...], n: int, classes: int = 10) -> DataBundle:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % classes
    x = torch.randn(n, *shape, generator=g) + y.view(-1, *([1] * len(shape))).float() * 0.1
    counts = [int((y == c).sum()) for c in range(classes)]
    return DataBundle(
        "synthetic", x, y, x[:512], y[:512], [str(c) for c in range(classes)], counts, counts, None
    )


def bare_loop(data: DataBundle, arch: str, batch: int, epochs: int, hidden: list[int]) -> float:
    torch.manual_seed(0)
    model = build_model(arch, data.input_shape, data.num_classes, hidden=hidden)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x, y = data.train_x, data.train_y
    n = len(y)
    g = torch.Generator().manual_seed(0)
    times = []
    model.train()
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=g)
        for idx in perm.split(batch):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times[1:])


def engine_loop(data: DataBundle, arch: str, batch: int, epochs: int, hidden: list[int]) -> float:
    cfg = config_from_dict(
        {
            "model": {"arch": arch, "hidden": hidden},
            "train": {
                "epochs": epochs,
                "batch_size": batch,
                "lr": 0.05,
                "eval_every": 0,
                "num_threads": 1,
                "schedule": "cosine",
            },
        }
    )
    task = SingleLabelTask(METHODS["erm"], data, cfg)
    stamps = [time.perf_counter()]

    def tick(epoch: int, row: dict[str, float]) -> None:  # after the checkpoint and the log
        stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(task, data, cfg, seed=0, run_dir=tmp, on_epoch_end=tick)
        result = trainer.fit()
    assert result is not None
    epochs_s = [b - a for a, b in itertools.pairwise(stamps[1:])]
    return len(data.train_y) / statistics.median(epochs_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = [
        ("cnn 1x28x28 (Fashion-MNIST size)", "cnn", (1, 28, 28), 8192, 128, [128]),
        ("mlp 64 features (digits size)", "mlp", (64,), 8192, 32, [128]),
    ]
    print(
        f"torch {torch.__version__}, 1 thread, median epoch of {args.epochs - 1} (engine: epoch start to end incl. checkpoint), best of {args.repeats} interleaved"
    )
    print(f"{'case':36s} {'batch':>5s} {'bare img/s':>11s} {'engine img/s':>13s} {'ratio':>6s}")
    for label, arch, shape, n, batch, hidden in cases:
        data = _bundle(shape, n)
        bares, engines = [], []
        for _ in range(args.repeats):  # interleaved, so that a busy moment hits both alike
            bares.append(bare_loop(data, arch, batch, args.epochs, hidden))
            engines.append(engine_loop(data, arch, batch, args.epochs, hidden))
        bare, eng = max(bares), max(engines)
        print(f"{label:36s} {batch:5d} {bare:11.0f} {eng:13.0f} {eng / bare:6.2f}")


if __name__ == "__main__":
    main()
