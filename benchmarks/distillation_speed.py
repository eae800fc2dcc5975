"""Cost of the distillation losses, as ratios to ``F.cross_entropy`` on the same tensors.

Run: ``python benchmarks/distillation_speed.py [--reps 30] [--threads 1] [--only LABEL]``

Logit losses (KD, KD on standardised logits, DKD, the SLA self-distillation loss) get ``(N, C) =
(256, 100)`` student and teacher logits; the relational losses (RKD distance, angle, angle in chunks
of 32 vertices, ``RKDLoss(25, 50)``) get ``(N, D) = (256, 128)`` embeddings, and their base is
cross-entropy on those embeddings read as ``(256, 128)`` logits. Each row times forward + backward
of the student (median of per-repetition ratios of back-to-back runs, after warm-up) and measures the
peak of live tensor memory during forward + backward (``PeakMemory`` of ``loss_speed.py``). Two
plain reference versions written the way the official code computes them (our own code, below) are
timed too: DKD with the ``- 1000 * gt_mask`` softmax, and the RKD angle with ``F.normalize`` + ``bmm``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from longtail.losses import RKDLoss, dkd_loss, kd_loss, rkd_angle_loss, rkd_distance_loss
from longtail.sla import sla_self_distillation_loss
from loss_speed import compare, peak_bytes

N, C, D = 256, 100, 128


def reference_dkd(
    s: Tensor, t: Tensor, y: Tensor, alpha: float, beta: float, temp: float
) -> Tensor:
    """DKD the way the official code computes it: probabilities, masks, ``- 1000`` on the target."""
    gt = F.one_hot(y, s.shape[1]).to(s.dtype)
    p_s, p_t = F.softmax(s / temp, 1), F.softmax(t / temp, 1)
    b_s = torch.stack([(p_s * gt).sum(1), (p_s * (1 - gt)).sum(1)], 1)
    b_t = torch.stack([(p_t * gt).sum(1), (p_t * (1 - gt)).sum(1)], 1)
    tckd = F.kl_div(torch.log(b_s), b_t, reduction="sum") / len(y)
    log_q_s = F.log_softmax(s / temp - 1000.0 * gt, 1)
    q_t = F.softmax(t / temp - 1000.0 * gt, 1)
    nckd = F.kl_div(log_q_s, q_t, reduction="sum") / len(y)
    return temp**2 * (alpha * tckd + beta * nckd)


def reference_angle(s: Tensor, t: Tensor) -> Tensor:
    """RKD angle the way the official code computes it (``F.normalize`` of all differences)."""
    with torch.no_grad():
        ut = F.normalize(t.unsqueeze(0) - t.unsqueeze(1), p=2, dim=2)
        ta = torch.bmm(ut, ut.transpose(1, 2))
    us = F.normalize(s.unsqueeze(0) - s.unsqueeze(1), p=2, dim=2)
    return F.smooth_l1_loss(torch.bmm(us, us.transpose(1, 2)), ta)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default=None, help="run only the rows whose label contains this")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    z_s, z_t = torch.randn(N, C, generator=g) * 2, torch.randn(N, C, generator=g) * 2
    y = torch.randint(0, C, (N,), generator=g)
    e_s, e_t = torch.randn(N, D, generator=g), torch.randn(N, D, generator=g)
    y_e = torch.randint(0, D, (N,), generator=g)

    cases: list[tuple[str, str, Tensor, Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = [
        ("kd (T 4)", f"{N} x {C}", z_s, lambda x: F.cross_entropy(x, y), lambda x: kd_loss(x, z_t)),
        (
            "kd, standardize (T 4)",
            f"{N} x {C}",
            z_s,
            lambda x: F.cross_entropy(x, y),
            lambda x: kd_loss(x, z_t, standardize=True),
        ),
        (
            "dkd (1, 8, T 4)",
            f"{N} x {C}",
            z_s,
            lambda x: F.cross_entropy(x, y),
            lambda x: dkd_loss(x, z_t, y),
        ),
        (
            "dkd, official-style reference",
            f"{N} x {C}",
            z_s,
            lambda x: F.cross_entropy(x, y),
            lambda x: reference_dkd(x, z_t, y, 1.0, 8.0, 4.0),
        ),
        (
            "sla_self_distillation_loss (T 1)",
            f"{N} x {C}",
            z_s,
            lambda x: F.cross_entropy(x, y),
            lambda x: sla_self_distillation_loss(x, z_t, y),
        ),
        (
            "rkd_distance_loss",
            f"{N} x {D}",
            e_s,
            lambda x: F.cross_entropy(x, y_e),
            lambda x: rkd_distance_loss(x, e_t),
        ),
        (
            "rkd_angle_loss",
            f"{N} x {D}",
            e_s,
            lambda x: F.cross_entropy(x, y_e),
            lambda x: rkd_angle_loss(x, e_t),
        ),
        (
            "rkd_angle_loss, chunk_size 32",
            f"{N} x {D}",
            e_s,
            lambda x: F.cross_entropy(x, y_e),
            lambda x: rkd_angle_loss(x, e_t, chunk_size=32),
        ),
        (
            "rkd angle, official-style reference",
            f"{N} x {D}",
            e_s,
            lambda x: F.cross_entropy(x, y_e),
            lambda x: reference_angle(x, e_t),
        ),
        (
            "RKDLoss(25, 50)",
            f"{N} x {D}",
            e_s,
            lambda x: F.cross_entropy(x, y_e),
            lambda x: RKDLoss(25.0, 50.0)(x, e_t),
        ),
    ]
    rows = [
        "| loss | shape | cross_entropy ms | loss ms | time / CE | loss peak MB | peak mem / CE |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(rows), flush=True)
    for label, shape, x, base, loss in cases:
        if args.only is not None and args.only not in label:
            continue
        mb, mo, ratio, mem = compare(base, loss, x, args.reps)
        peak_mb = peak_bytes(loss, x) / 2**20
        rows.append(
            f"| {label} | {shape} | {1e3 * mb:.3f} | {1e3 * mo:.3f} | {ratio:.1f} | "
            f"{peak_mb:.1f} | {mem:.0f} |"
        )
        print(rows[-1], flush=True)
    env = (
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.reps} reps, "
        f"python {sys.version.split()[0]}"
    )
    print(f"\n_Measured with: {env}._")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
