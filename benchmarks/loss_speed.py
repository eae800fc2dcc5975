"""Speed and peak memory of every registered loss, as ratios to its base loss on the same tensors.

Run: ``python benchmarks/loss_speed.py [--reps 30] [--threads 1] [--markdown docs/benchmarks.md]``

For each shape (N, C) in (512, 10), (256, 1000), (64, 20000) and each classification loss
(single-label or multi-label) in :data:`longtail.losses.LOSSES`, it times forward + backward (median
over ``--reps`` interleaved repetitions, after warm-up) and measures the peak of live tensor memory
during forward + backward, and divides both by the same figures of the base loss on the same tensors: ``F.cross_entropy`` for
single-label losses, ``F.binary_cross_entropy_with_logits`` for multi-label ones. It also times plain
reference implementations of ASL and of focal loss, written the way the official code and common
public code write them (our own code, below), against ``longtail``'s versions.

Peak memory is counted with a ``TorchDispatchMode`` that tracks every storage an operator allocates
until it is freed (CPU tensors; allocator caching is not counted), so the figures are bytes of tensors
alive at once, independent of the machine's other load.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from longtail.losses import LOSSES, LossSpec, logit_adjustment_margins

SHAPES = [(512, 10), (256, 1000), (64, 20000)]


class PeakMemory(TorchDispatchMode):
    """Peak bytes of live tensor storages allocated inside the mode."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, Tensor):
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if storage.nbytes() > 0 and key not in self.live:
                    self.live[key] = storage.nbytes()
                    self.current += storage.nbytes()
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(storage, self._free, key)
        return out


# ------------------------------------------------------------------ plain reference versions


def reference_asl(
    z: Tensor,
    y: Tensor,
    gamma_neg: float = 4.0,
    gamma_pos: float = 0.0,
    clip: float = 0.05,
    eps: float = 1e-8,
) -> Tensor:
    """ASL as the official code computes it (probabilities, eps clamps, pow), mean over elements."""
    p = torch.sigmoid(z)
    xs_pos = p
    xs_neg = 1 - p
    xs_neg = (xs_neg + clip).clamp(max=1)
    los_pos = y * torch.log(xs_pos.clamp(min=eps))
    los_neg = (1 - y) * torch.log(xs_neg.clamp(min=eps))
    loss = los_pos + los_neg
    pt = xs_pos * y + xs_neg * (1 - y)
    gamma = gamma_pos * y + gamma_neg * (1 - y)
    loss = loss * torch.pow(1 - pt, gamma)
    return -loss.sum() / z.numel()


def reference_sigmoid_focal(
    z: Tensor, y: Tensor, gamma: float = 2.0, alpha: float = 0.25
) -> Tensor:
    """Sigmoid focal loss as the RetinaNet / torchvision code computes it."""
    p = torch.sigmoid(z)
    ce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * ((1 - p_t) ** gamma)
    alpha_t = alpha * y + (1 - alpha) * (1 - y)
    return (alpha_t * loss).mean()


def reference_softmax_focal(z: Tensor, t: Tensor, gamma: float = 2.0) -> Tensor:
    """Softmax focal loss as common public code writes it (full softmax and one-hot)."""
    p = torch.softmax(z, dim=1)
    onehot = F.one_hot(t, z.shape[1]).to(z.dtype)
    p_t = (p * onehot).sum(1)
    return (-((1 - p_t) ** gamma) * torch.log(p_t)).mean()


# ------------------------------------------------------------------------------- measuring


def inputs(spec_task: str, n: int, c: int, cosine: bool = False) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, c, generator=g) * 2
    if cosine:
        z = torch.tanh(z)
    if spec_task == "single-label":
        return z, torch.randint(0, c, (n,), generator=g)
    return z, (torch.rand(n, c, generator=g) < 0.05).float()


def kwargs_for(spec: LossSpec, c: int) -> dict[str, Any]:
    counts = torch.floor(1000 * 100.0 ** (-torch.arange(c) / max(c - 1, 1))).clamp_min(1)
    kw: dict[str, Any] = {}
    if "class_counts" in spec.requires:
        kw["class_counts"] = counts
    if "delta" in spec.requires:
        kw["delta"] = logit_adjustment_margins(counts)
    return kw


def step(fn: Callable[[Tensor], Tensor], z: Tensor) -> None:
    x = z.detach().requires_grad_(True)
    fn(x).backward()


def peak_bytes(fn: Callable[[Tensor], Tensor], z: Tensor) -> int:
    x = z.detach().requires_grad_(True)
    mode = PeakMemory()
    with mode:
        fn(x).backward()
    return mode.peak


def compare(
    base: Callable[[Tensor], Tensor], other: Callable[[Tensor], Tensor], z: Tensor, reps: int
) -> tuple[float, float, float, float]:
    """(median base seconds, median other seconds, median time ratio, peak-memory ratio)."""
    for _ in range(3):
        step(base, z)
        step(other, z)
    tb: list[float] = []
    to: list[float] = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step(base, z)
        t1 = time.perf_counter()
        step(other, z)
        t2 = time.perf_counter()
        tb.append(t1 - t0)
        to.append(t2 - t1)
    mb, mo = statistics.median(tb), statistics.median(to)
    # The ratio is the median of per-repetition ratios of back-to-back runs, which is robust to
    # load from other processes that slows both runs of a pair alike.
    ratio = statistics.median(o / b for o, b in zip(to, tb, strict=True))
    return mb, mo, ratio, peak_bytes(other, z) / peak_bytes(base, z)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--losses", default=None, help="comma-separated registry names (default: all)"
    )
    parser.add_argument(
        "--markdown", type=Path, default=None, help="also write the tables to this markdown file"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    rows: list[str] = []
    header = (
        "| loss | base | N x C | base ms | loss ms | time / base | peak mem / base |\n"
        "|---|---|---|---:|---:|---:|---:|"
    )
    rows.append(header)
    worst: dict[str, float] = {}
    for n, c in SHAPES:
        for name, spec in LOSSES.items():
            if spec.task not in ("single-label", "multi-label"):
                continue  # distillation / open-set losses have no (logits, target) base loss
            if args.losses is not None and name not in args.losses.split(","):
                continue
            z, t = inputs(spec.task, n, c, cosine=spec.inputs == "cosine")
            kw = kwargs_for(spec, c)
            if spec.task == "single-label":
                base_name = "cross_entropy"

                def base(x: Tensor, t: Tensor = t) -> Tensor:
                    return F.cross_entropy(x, t)
            else:
                base_name = "bce_with_logits"

                def base(x: Tensor, t: Tensor = t) -> Tensor:
                    return F.binary_cross_entropy_with_logits(x, t)

            def loss(
                x: Tensor, spec: LossSpec = spec, t: Tensor = t, kw: dict[str, Any] = kw
            ) -> Tensor:
                return spec.function(x, t, **kw)

            mb, mo, ratio, mem = compare(base, loss, z, args.reps)
            if (n, c) != SHAPES[0]:
                worst[name] = max(worst.get(name, 0.0), ratio)
            rows.append(
                f"| {name} | {base_name} | {n} x {c} | {1e3 * mb:.3f} | {1e3 * mo:.3f} | "
                f"{ratio:.2f} | {mem:.2f} |"
            )
            print(rows[-1], flush=True)

    ref_rows = [
        "| loss | N x C | reference ms | longtail ms | speed-up | reference peak mem / longtail |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for n, c in SHAPES:
        zs, ts = inputs("single-label", n, c)
        zm, ym = inputs("multi-label", n, c)
        pairs = [
            (
                "asymmetric (gamma_neg 4, clip 0.05)",
                zm,
                functools.partial(reference_asl, y=ym),
                functools.partial(LOSSES["asymmetric"].function, targets=ym),
            ),
            (
                "sigmoid-focal (gamma 2, alpha 0.25)",
                zm,
                functools.partial(reference_sigmoid_focal, y=ym),
                functools.partial(LOSSES["sigmoid-focal"].function, targets=ym),
            ),
            (
                "focal, softmax (gamma 2)",
                zs,
                functools.partial(reference_softmax_focal, t=ts),
                functools.partial(LOSSES["focal"].function, target=ts),
            ),
        ]
        for label, z, ref, ours in pairs:
            mb, mo, ratio, mem = compare(ours, ref, z, args.reps)
            ref_rows.append(
                f"| {label} | {n} x {c} | {1e3 * mo:.3f} | {1e3 * mb:.3f} | "
                f"{ratio:.2f}x | {mem:.2f} |"
            )
            print(ref_rows[-1], flush=True)

    summary = ["", "Worst time ratio to the base at the two larger shapes (goal <= 3):", ""]
    summary += [f"- {k}: {v:.2f}" for k, v in worst.items()]
    text = "\n".join(rows) + "\n\n" + "\n".join(ref_rows) + "\n" + "\n".join(summary) + "\n"
    print("\n".join(summary))
    if args.markdown is not None:
        env = (
            f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.reps} reps, "
            f"python {sys.version.split()[0]}"
        )
        args.markdown.write_text(text + f"\n_Measured with: {env}._\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
