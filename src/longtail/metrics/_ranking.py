"""Ranking helpers shared by the multi-label and open-set metrics (private).

The areas under the ROC and precision-recall curves are torchmetrics' (``binary_auroc``,
``binary_average_precision``, ``multilabel_average_precision``). Those functions apply a sigmoid to
scores outside [0, 1], which saturates (in float64 every score above ~37 becomes 1.0, in float32
above ~17) and so turns distinct scores into ties. The areas depend only on the order of the scores
and their ties, so :func:`dense_ranks` hands them the scores' dense ranks scaled to [0, 1] instead:
the same order, the same ties, and nothing to transform.

:func:`column_average_precision` computes the per-label AP of torchmetrics'
``multilabel_average_precision(..., average=None, ignore_index=-1)`` for every column of an
``(N, L)`` matrix at once (torchmetrics loops over the labels in Python: about 2 ms a label), with
the same float32 arithmetic, so the values are the same to the last bit.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: Matrix entries sorted at once by :func:`column_average_precision` (bounds its memory: about 60
#: bytes an entry, 16 MB).
AP_CHUNK_ENTRIES = 1 << 18


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


def column_average_precision(
    scores: Tensor, targets: Tensor, *, chunk_entries: int = AP_CHUNK_ENTRIES
) -> Tensor:
    """(L,) float64 average precision of each column of ``scores`` (N, L) against ``targets``
    (N, L) in {1, 0, -1 = unknown, ignored}; NaN for a column without a known positive.

    The value of torchmetrics' ``multilabel_average_precision(dense_ranks(scores), targets,
    num_labels=L, average=None, ignore_index=-1)`` on the columns with a positive, and the same
    arithmetic: per column, the known entries sorted by score (equal scores are one threshold), the
    positives ``tp`` and known entries ``k`` above each threshold counted in float32,
    ``precision = tp / k`` and ``recall = tp / P`` in float32, and ``AP = -sum((R_prev - R) *
    precision)`` summed in float32 from the lowest threshold up, as torchmetrics sums. The sorting
    and counting run on ``chunk_entries`` matrix entries at a time (a block of columns), so the
    memory stays bounded whatever ``L``; only the last sum runs once per column.
    """
    n, num_labels = scores.shape
    out = torch.full((num_labels,), math.nan, dtype=torch.float64, device=scores.device)
    if n == 0:
        return out
    width = max(1, chunk_entries // n)
    position = torch.arange(n, device=scores.device)
    for first in range(0, num_labels, width):
        block = slice(first, min(first + width, num_labels))
        values, order = scores[:, block].T.sort(dim=1, descending=True)
        tg = targets[:, block].T.to(torch.int8).gather(1, order)
        del order
        if bool((tg < 0).any()):  # unknown entries after the known ones, each part kept in order
            _, after = (tg < 0).to(torch.int8).sort(dim=1, stable=True)
            values, tg = values.gather(1, after), tg.gather(1, after)
        known = (tg >= 0).sum(dim=1, keepdim=True)
        tp = (tg == 1).cumsum(dim=1, dtype=torch.int32)
        positives = tp[:, -1]
        del tg
        # the last entry of each group of equal scores among the known entries: a threshold
        end = position < known
        end[:, :-1] &= (values[:, 1:] != values[:, :-1]) | (position[:-1] == known - 1)
        del values
        counts = end.sum(dim=1)
        tp_end = tp[end].to(torch.float32)
        k_end = (position + 1).expand_as(end)[end].to(torch.float32)
        del tp, end
        label = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
        precision = tp_end / k_end
        recall = tp_end / positives.to(torch.float32)[label]
        starts = torch.cumsum(counts, 0) - counts
        previous = torch.cat([recall.new_zeros(1), recall[:-1]])
        previous[starts[counts > 0]] = 0.0  # each column's first threshold starts from recall 0
        terms = (previous - recall) * precision
        for j, (start, count) in enumerate(zip(starts.tolist(), counts.tolist(), strict=True)):
            if int(positives[j]) > 0:
                # as torchmetrics sums: a fresh float32 vector, lowest threshold first
                out[first + j] = (-torch.sum(terms[start : start + count].flip(0))).double()
    return out
