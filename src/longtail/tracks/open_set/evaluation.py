"""Open-set evaluation: the scores a method thresholds and the metrics of known vs unknown images.

**Metrics** (:data:`OPEN_SET_METRICS`): AUROC, AUPR-in, AUPR-out of the unknown score
(``-score``) between the known and the unknown test images; OSCR thresholding the score; closed-set
accuracy on the known test images; and, when the known classes' training counts differ, the accuracy
of the many / medium / few-shot known classes (``metrics.shot_mode``; NaN otherwise). The
evaluation ``details`` hold the score's name, the AUROC of both scores, histograms of the known and
unknown scores and the ROC curve on a fixed FPR grid (for the report, see
:mod:`longtail.tracks.open_set.report`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from longtail.engine.tasks import MetricSpec, nan_to_none
from longtail.metrics import open_set_aupr, open_set_auroc, oscr, shot_groups

__all__ = [
    "HISTOGRAM_BINS",
    "OPEN_SET_METRICS",
    "ROC_GRID",
    "SCORES",
    "known_score",
    "open_set_evaluation",
]

OPEN_SET_METRICS = (
    MetricSpec("auroc", "AUROC"),
    MetricSpec("aupr_in", "AUPR-in"),
    MetricSpec("aupr_out", "AUPR-out"),
    MetricSpec("oscr", "OSCR"),
    MetricSpec("closed_set_accuracy", "Closed-set acc."),
    MetricSpec("many", "Many"),
    MetricSpec("medium", "Medium"),
    MetricSpec("few", "Few"),
)
#: The scores a method may threshold (higher = more likely a known class).
SCORES = ("max-softmax", "max-logit")
#: Points of the ROC curve kept in the details (FPR 0, 0.01, ..., 1).
ROC_GRID = 101
#: Bins of the score histograms in the details.
HISTOGRAM_BINS = 40


def known_score(logits: Tensor, score: str) -> Tensor:
    """The score a method thresholds, float64 ``(N,)``: the maximum softmax probability
    (``"max-softmax"``) or the maximum logit (``"max-logit"``) of ``logits`` ``(N, C)``."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    z = logits.detach().to(torch.float64)
    if z.shape[0] == 0:
        return z.new_zeros(0)
    if score == "max-softmax":
        z = torch.softmax(z, dim=1)
    return z.max(dim=1).values


def _roc_on_grid(unknown_scores: Tensor, is_unknown: Tensor, grid: int) -> dict[str, Any]:
    """TPR (unknowns detected) at FPR ``0, 1/(grid-1), ..., 1`` (the best TPR with FPR <= the grid
    value), and the FPR at 95% TPR."""
    s, pos = unknown_scores.to(torch.float64), is_unknown.bool()
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    fpr_grid = torch.linspace(0.0, 1.0, grid, dtype=torch.float64)
    if n_pos == 0 or n_neg == 0:
        return {"fpr": fpr_grid.tolist(), "tpr": [None] * grid, "fpr_at_95_tpr": None}
    order = torch.argsort(s, descending=True, stable=True)
    s_sorted, pos_sorted = s[order], pos[order]
    tps = torch.cumsum(pos_sorted.to(torch.float64), 0)
    fps = torch.cumsum((~pos_sorted).to(torch.float64), 0)
    last = torch.ones_like(pos_sorted)
    last[:-1] = s_sorted[1:] != s_sorted[:-1]  # one point per distinct threshold
    tpr = torch.cat([s.new_zeros(1), tps[last] / n_pos])
    fpr = torch.cat([s.new_zeros(1), fps[last] / n_neg])
    idx = torch.searchsorted(fpr, fpr_grid, right=True) - 1
    reach = torch.nonzero(tpr >= 0.95)
    return {
        "fpr": fpr_grid.tolist(),
        "tpr": tpr[idx].tolist(),
        "fpr_at_95_tpr": float(fpr[reach[0, 0]]) if reach.numel() else None,
    }


def _histogram(known: Tensor, unknown: Tensor, bins: int) -> dict[str, Any]:
    both = torch.cat([known, unknown])
    if both.numel() == 0:
        return {"edges": [], "known": [], "unknown": []}
    lo, hi = float(both.min()), float(both.max())
    if not hi > lo:
        hi = lo + 1.0
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    return {
        "edges": edges.tolist(),
        "known": [int(v) for v in torch.histc(known.double(), bins, lo, hi).tolist()],
        "unknown": [int(v) for v in torch.histc(unknown.double(), bins, lo, hi).tolist()],
    }


def open_set_evaluation(
    known_logits: Tensor,
    known_target: Tensor,
    unknown_logits: Tensor,
    *,
    score: str,
    group_counts: Sequence[int],
    shot_mode: str = "terciles",
) -> tuple[dict[str, float], dict[str, Any]]:
    """The open-set metrics and the report's details of one evaluation.

    Args:
        known_logits: ``(N_k, C)`` logits of the known classes' test images.
        known_target: ``(N_k,)`` their classes.
        unknown_logits: ``(N_u, C)`` logits of the unknown classes' test images.
        score: what is thresholded, one of :data:`SCORES`; the unknown score is its negation.
        group_counts: training counts of the known classes (many / medium / few; NaN when all
            are equal: the known classes are not long-tailed).
        shot_mode: ``"terciles"`` or ``"thresholds"`` (:func:`longtail.metrics.shot_groups`).

    Returns:
        ``(metrics, details)``: the :data:`OPEN_SET_METRICS` (fractions; NaN where undefined) and
        the JSON-serialisable details (score, per-class accuracy, AUROC of both scores, histograms
        of the score, ROC curve, and for long-tailed known classes ``auroc_by_shot``: the AUROC of
        the unknown images against the known test images of each many / medium / few group).
    """
    kl, ul = known_logits.detach().double().cpu(), unknown_logits.detach().double().cpu()
    ky = known_target.detach().long().cpu()
    c = kl.shape[1]
    s_known, s_unknown = known_score(kl, score), known_score(ul, score)
    unknown_scores = -torch.cat([s_known, s_unknown])
    is_unknown = torch.cat(
        [torch.zeros(len(s_known), dtype=torch.bool), torch.ones(len(s_unknown), dtype=torch.bool)]
    )
    aupr = open_set_aupr(unknown_scores, is_unknown)
    correct = kl.argmax(dim=1) == ky if len(ky) else torch.zeros(0, dtype=torch.bool)
    per_class = [
        float(correct[ky == k].double().mean()) if bool((ky == k).any()) else math.nan
        for k in range(c)
    ]
    metrics: dict[str, float] = {
        "auroc": open_set_auroc(unknown_scores, is_unknown),
        "aupr_in": float(aupr["aupr_in"]),
        "aupr_out": float(aupr["aupr_out"]),
        "oscr": oscr(kl, ky, ul, softmax=score == "max-softmax"),
        "closed_set_accuracy": float(correct.double().mean()) if len(ky) else math.nan,
    }
    counts = [int(v) for v in group_counts]
    auroc_by_shot: dict[str, float | None] = {}
    if len(set(counts)) > 1:
        groups = shot_groups(counts, mode=shot_mode)  # type: ignore[arg-type]
        pc = torch.tensor(per_class, dtype=torch.float64)
        for name, mask in groups.items():
            vals = pc[mask.bool() & ~torch.isnan(pc)]
            metrics[name] = float(vals.mean()) if vals.numel() else math.nan
            # unknown images against the known test images of this group only
            in_group = mask.bool()[ky] if len(ky) else torch.zeros(0, dtype=torch.bool)
            keep = torch.cat([in_group, torch.ones(len(s_unknown), dtype=torch.bool)])
            value = open_set_auroc(unknown_scores[keep], is_unknown[keep])
            auroc_by_shot[name] = None if math.isnan(value) else value
    else:
        metrics.update(many=math.nan, medium=math.nan, few=math.nan)
    by_score = {}
    for other in SCORES:
        if other == score:
            by_score[other] = metrics["auroc"]
        else:
            u = -torch.cat([known_score(kl, other), known_score(ul, other)])
            by_score[other] = open_set_auroc(u, is_unknown)
    details = {
        "score": score,
        "per_class": nan_to_none(per_class),
        "auroc_by_score": {k: None if math.isnan(v) else v for k, v in by_score.items()},
        "score_histogram": _histogram(s_known, s_unknown, HISTOGRAM_BINS),
        "roc": _roc_on_grid(unknown_scores, is_unknown, ROC_GRID),
        "auroc_by_shot": auroc_by_shot,
        "num_known": len(s_known),
        "num_unknown": len(s_unknown),
    }
    return metrics, details
