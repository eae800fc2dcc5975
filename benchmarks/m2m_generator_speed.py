"""Throughput of :class:`longtail.adversarial.M2mGenerator` and the cost of an M2m training step.

Both steps train the same classifier ``f`` (SGD, momentum 0.9) on the same mini-batch; ``g`` is a
second network of the same architecture (``longtail.engine.models.build_model``):

- **ERM step**: ``cross_entropy(f(x), y)``, backward, optimiser step;
- **M2m step**: ``M2mGenerator(g, counts).generate(f, x, y)`` (official defaults: 10 steps of
  size 0.1, ``beta`` 0.999, ``gamma`` 0.9), then the same ERM step on the returned batch.

The cost of generation does not depend on what is accepted (every selected slot is optimised for
all steps), so both networks are left at their initialisation. Class counts: Fashion-MNIST-LT with
imbalance factor 100 (``long_tailed_counts(6000, 10, 100)``). Two kinds of batches: ``instance``
(labels drawn in proportion to the counts, as plain sampling gives; few slots are selected) and
``balanced`` (uniform labels, as the official code's over-sampling loader gives from the epoch
generation starts; most slots are selected).

Reported per kind: the mean number ``M`` of translated slots per batch, the generator's throughput
in batch samples per second and in translated slots per second, the ERM and M2m step times and
their ratio (M2m / ERM). Medians over ``--repeats`` timed batches after ``--warmup`` batches.

Usage::

    python benchmarks/m2m_generator_speed.py [--arch cnn] [--batch 128] [--threads 1] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from longtail.adversarial import M2mGenerator
from longtail.data import long_tailed_counts
from longtail.engine.models import build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _erm_step(f: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    f.train()
    loss = F.cross_entropy(f(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def measure(
    kind: str, args: argparse.Namespace, device: torch.device, counts: list[int]
) -> dict[str, float]:
    shape = (1, 28, 28) if args.arch == "cnn" else (3, 32, 32)
    torch.manual_seed(0)
    f = build_model(args.arch, shape, 10).to(device)
    g = build_model(args.arch, shape, 10).to(device).eval()
    opt = torch.optim.SGD(f.parameters(), lr=0.01, momentum=0.9)
    gen = M2mGenerator(g, counts)
    rng = torch.Generator(device=device).manual_seed(0)
    probs = torch.tensor(counts, dtype=torch.float, device=device)
    if kind == "balanced":
        probs = torch.ones_like(probs)
    erm_t, m2m_t, gen_t, slots = [], [], [], []
    for i in range(args.warmup + args.repeats):
        x = torch.randn(args.batch, *shape, device=device, generator=rng)
        y = torch.multinomial(probs, args.batch, replacement=True, generator=rng)
        _sync(device)
        t0 = time.perf_counter()
        _erm_step(f, opt, x, y)
        _sync(device)
        t1 = time.perf_counter()
        out = gen.generate(f, x, y, generator=rng)
        _sync(device)
        t2 = time.perf_counter()
        _erm_step(f, opt, out.x, out.y)
        _sync(device)
        t3 = time.perf_counter()
        if i >= args.warmup:
            erm_t.append(t1 - t0)
            gen_t.append(t2 - t1)
            m2m_t.append(t3 - t1)
            slots.append(int(out.generated.sum()))
    erm, m2m, gtime = (statistics.median(v) for v in (erm_t, m2m_t, gen_t))
    m = statistics.mean(slots)
    return {
        "slots_per_batch": m,
        "generator_samples_per_s": args.batch / gtime,
        "generator_slots_per_s": m / gtime,
        "erm_step_ms": 1000 * erm,
        "m2m_step_ms": 1000 * m2m,
        "ratio": m2m / erm,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", choices=["cnn", "resnet32"], default="cnn")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=None, help="write the numbers as JSON")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    counts = long_tailed_counts(6000, 10, 100)
    results = {kind: measure(kind, args, device, counts) for kind in ("instance", "balanced")}
    print(f"{args.arch}, batch {args.batch}, {device}, {args.threads} thread(s), counts {counts}\n")
    print(
        "| batch | translated slots / batch | generator samples/s | generator slots/s "
        "| ERM step (ms) | M2m step (ms) | M2m / ERM |"
    )
    print("|---|---|---|---|---|---|---|")
    for kind, r in results.items():
        print(
            f"| {kind} | {r['slots_per_batch']:.1f} | {r['generator_samples_per_s']:.0f} "
            f"| {r['generator_slots_per_s']:.0f} | {r['erm_step_ms']:.1f} "
            f"| {r['m2m_step_ms']:.1f} | {r['ratio']:.1f}x |"
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"settings": {k: str(v) for k, v in vars(args).items()}, "counts": counts}
        args.out.write_text(json.dumps({**record, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
