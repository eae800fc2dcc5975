"""Ranking helpers shared by the multi-label and open-set metrics (private).

The areas under the ROC and precision-recall curves are torchmetrics' (``binary_auroc``,
``binary_average_precision``, ``multilabel_average_precision``). Those functions apply a sigmoid to
scores outside [0, 1], which saturates (in float64 every score above ~37 becomes 1.0, in float32
above ~17) and so turns distinct scores into ties. The areas depend only on the order of the scores
and their ties, so :func:`dense_ranks` hands them the scores' dense ranks scaled to [0, 1] instead:
the same order, the same ties, and nothing to transform.
"""

from __future__ import annotations

import torch
from torch import Tensor


def dense_ranks(scores: Tensor) -> Tensor:
    """float64 ranks in [0, 1] of ``scores`` (any shape): equal scores get equal ranks, the lowest
    score 0 and the highest 1 (all 0 if every score is the same)."""
    if scores.numel() == 0:
        return scores.to(torch.float64)
    values, inverse = torch.unique(scores, sorted=True, return_inverse=True)
    ranks: Tensor = inverse.to(torch.float64) / max(values.numel() - 1, 1)
    return ranks


def pairwise_greater_fraction(high: Tensor, low: Tensor) -> float:
    """``(1 / (|high| |low|)) sum_{a in high, b in low} ([a > b] + 0.5 [a == b])``; NaN if either is empty.

    This is the Mann-Whitney form of the ROC AUC with ``high`` the positives (the ties count one half, as
    in ``sklearn.metrics.roc_auc_score``). Runs in O(n log n) via ``searchsorted``.
    """
    if high.numel() == 0 or low.numel() == 0:
        return float("nan")
    return pairwise_greater_count(high, low) / (high.numel() * low.numel())


def pairwise_greater_count(high: Tensor, low: Tensor) -> float:
    """``sum_{a in high, b in low} ([a > b] + 0.5 [a == b])`` (0 if either is empty)."""
    if high.numel() == 0 or low.numel() == 0:
        return 0.0
    low_sorted = torch.sort(low.to(torch.float64)).values
    h = high.to(torch.float64).contiguous()
    below = torch.searchsorted(low_sorted, h, right=False)  # number of low < a
    below_or_equal = torch.searchsorted(low_sorted, h, right=True)  # number of low <= a
    return float(
        below.to(torch.float64).sum() + 0.5 * (below_or_equal - below).to(torch.float64).sum()
    )
