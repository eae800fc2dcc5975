"""Tie-aware ranking primitives shared by the multi-label and open-set metrics (private).

All work in float64 on 1-D tensors and return Python floats (NaN when undefined).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def binary_average_precision(scores: Tensor, positive: Tensor) -> float:
    """Average precision as ``sklearn.metrics.average_precision_score``.

    ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds in decreasing order, where a
    threshold ``t`` predicts positive for every score ``>= t`` (equal scores enter together) and ``R_0 = 0``.
    NaN if there is no positive.
    """
    pos = positive.to(torch.bool)
    n_pos = int(pos.sum())
    if n_pos == 0:
        return math.nan
    s = scores.to(torch.float64)
    order = torch.argsort(s, descending=True, stable=True)
    s_sorted = s[order]
    y = pos[order].to(torch.float64)
    tps = torch.cumsum(y, 0)
    fps = torch.cumsum(1.0 - y, 0)
    # last index of each group of equal scores
    last = torch.ones_like(s_sorted, dtype=torch.bool)
    last[:-1] = s_sorted[1:] != s_sorted[:-1]
    tp = tps[last]
    fp = fps[last]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    d_recall = torch.diff(recall, prepend=recall.new_zeros(1))
    return float((d_recall * precision).sum())


def pairwise_greater_fraction(high: Tensor, low: Tensor) -> float:
    """``(1 / (|high| |low|)) sum_{a in high, b in low} ([a > b] + 0.5 [a == b])``; NaN if either is empty.

    This is the Mann-Whitney form of the ROC AUC with ``high`` the positives (the ties count one half, as
    in ``sklearn.metrics.roc_auc_score``). Runs in O(n log n) via ``searchsorted``.
    """
    if high.numel() == 0 or low.numel() == 0:
        return math.nan
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
