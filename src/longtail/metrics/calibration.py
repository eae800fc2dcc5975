"""Calibration: expected calibration error (ECE) and reliability-diagram data.

Following Guo et al., "On Calibration of Modern Neural Networks", ICML 2017 (and Naeini et al. 2015):
the confidence of sample i is its maximum softmax probability ``p_i = max_c softmax(logits_i)_c`` and
the prediction is ``argmax_c logits_i``. The interval [0, 1] is cut into ``n_bins`` equal-width bins
``B_b = (b / n_bins, (b + 1) / n_bins]`` (the first bin also holds 0, which softmax never reaches), and::

    ECE = sum_b (|B_b| / N) * | acc(B_b) - conf(B_b) |
        = (1 / N) * sum_b | sum_{i in B_b} correct_i - sum_{i in B_b} p_i |

with ``acc(B_b)`` the accuracy and ``conf(B_b)`` the mean confidence of the bin. Empty bins contribute
nothing; an empty input gives NaN. The softmax is computed in float64. Logits must be finite (NaN and
+-inf raise ``ValueError``: ``softmax`` of a row holding ``inf`` is NaN and would silently turn the
accumulated ECE into NaN).

This is not torchmetrics' ``MulticlassCalibrationError(norm="l1")``, on purpose. torchmetrics bins
``[lo, hi)`` (a confidence on an inner edge goes to the upper bin) and puts a confidence of exactly 1
in a bin of its own; a saturated softmax reaches 1.0 (logit gap above ~37 in float64), and then the
values differ: confidences 1.0 (wrong) and 0.9526 twice (right) give 0.302 here and 0.365 there. It
also keeps every sample's confidence as state where the bin sums here are a fixed (n_bins,) size.
Without confidences on a bin edge or at 1 the two agree (a test checks both facts).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from longtail.metrics._base import Metric
from longtail.metrics._checks import (
    check_finite,
    check_float_matrix,
    check_labels,
    check_positive_int,
)

_FINITE_WHY = "the softmax confidence of the ECE needs finite logits"

__all__ = [
    "ExpectedCalibrationError",
    "expected_calibration_error",
    "reliability_diagram_data",
]


def _bin_edges(n_bins: int, device: torch.device) -> Tensor:
    return torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64, device=device)


def _ece_bin_sums(logits: Tensor, target: Tensor, n_bins: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-bin (count int64, confidence sum float64, correct count int64), each (n_bins,)."""
    prob = torch.softmax(logits.detach().to(torch.float64), dim=1)
    conf = prob.max(dim=1).values
    # the prediction is argmax (first maximal index), as in the classification metrics
    correct = (logits.argmax(dim=1) == target).to(torch.int64)
    edges = _bin_edges(n_bins, conf.device)
    # bucketize(right=False) gives b with edges[b] < x <= edges[b + 1] for the inner edges
    idx = torch.bucketize(conf, edges[1:-1], right=False)
    count = torch.bincount(idx, minlength=n_bins)
    conf_sum = torch.zeros(n_bins, dtype=torch.float64, device=conf.device).index_add_(0, idx, conf)
    correct_sum = torch.zeros(n_bins, dtype=torch.int64, device=conf.device).index_add_(
        0, idx, correct
    )
    return count, conf_sum, correct_sum


def _ece_from_bins(count: Tensor, conf_sum: Tensor, correct_sum: Tensor) -> float:
    n = int(count.sum())
    if n == 0:
        return math.nan
    return float((correct_sum.to(torch.float64) - conf_sum).abs().sum()) / n


def _checked(logits: object, target: object, n_bins: object) -> tuple[Tensor, Tensor, int]:
    nb = check_positive_int("n_bins", n_bins)
    lg = check_finite("logits", check_float_matrix("logits", logits), _FINITE_WHY)
    tg = check_labels("target", target, lg.shape[0], lg.shape[1])
    return lg, tg, nb


def expected_calibration_error(logits: Tensor, target: Tensor, n_bins: int = 15) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins of the max-softmax confidence.

    Args:
        logits: (N, C) float logits (softmax is applied here).
        target: (N,) int labels in ``[0, C)``.
        n_bins: number of bins, >= 1 (default 15, as in Guo et al. 2017).

    Returns:
        ECE in [0, 1]; NaN if N = 0.

    Example:
        >>> from longtail.metrics import expected_calibration_error
        >>> logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 3.0]])
        >>> target = torch.tensor([0, 1, 1, 1])  # confidences 0.88, 0.88, 0.95, 0.95
        >>> round(expected_calibration_error(logits, target, n_bins=10), 4)
        0.2141
    """
    lg, tg, nb = _checked(logits, target, n_bins)
    return _ece_from_bins(*_ece_bin_sums(lg, tg, nb))


def _reliability(count: Tensor, conf_sum: Tensor, correct_sum: Tensor) -> dict[str, Tensor]:
    nb = count.numel()
    edges = _bin_edges(nb, count.device)
    cnt = count.to(torch.float64)
    nonempty = count > 0
    conf = torch.full((nb,), math.nan, dtype=torch.float64, device=count.device)
    acc = conf.clone()
    conf[nonempty] = conf_sum[nonempty] / cnt[nonempty]
    acc[nonempty] = correct_sum.to(torch.float64)[nonempty] / cnt[nonempty]
    return {
        "bin_lower": edges[:-1],
        "bin_upper": edges[1:],
        "confidence": conf,
        "accuracy": acc,
        "count": count.clone(),
    }


def reliability_diagram_data(logits: Tensor, target: Tensor, n_bins: int = 15) -> dict[str, Tensor]:
    """Per-bin data for a reliability diagram, with the same bins as :func:`expected_calibration_error`.

    Returns:
        dict of (n_bins,) tensors: ``"bin_lower"``, ``"bin_upper"`` (bin edges), ``"confidence"`` (mean
        confidence, NaN for empty bins), ``"accuracy"`` (accuracy, NaN for empty bins) and ``"count"``
        (int64 number of samples). ``ECE = nansum(count * |accuracy - confidence|) / sum(count)``.

    Example:
        >>> from longtail.metrics import reliability_diagram_data
        >>> logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 3.0]])
        >>> data = reliability_diagram_data(logits, torch.tensor([0, 1, 1, 1]), n_bins=10)
        >>> sorted(data)
        ['accuracy', 'bin_lower', 'bin_upper', 'confidence', 'count']
        >>> data["count"].tolist()
        [0, 0, 0, 0, 0, 0, 0, 0, 2, 2]
    """
    lg, tg, nb = _checked(logits, target, n_bins)
    return _reliability(*_ece_bin_sums(lg, tg, nb))


class ExpectedCalibrationError(Metric):
    """Accumulated ECE. States: per-bin count, confidence sum and correct count (all sum states).

    Args:
        n_bins: number of equal-width bins (default 15).

    Example:
        >>> from longtail.metrics import ExpectedCalibrationError, expected_calibration_error
        >>> logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 3.0]])
        >>> target = torch.tensor([0, 1, 1, 1])
        >>> metric = ExpectedCalibrationError(n_bins=10)
        >>> metric.update(logits[:1], target[:1]); metric.update(logits[1:], target[1:])
        >>> metric.compute() == expected_calibration_error(logits, target, n_bins=10)
        True
    """

    higher_is_better = False
    bin_count: Tensor
    bin_conf: Tensor
    bin_correct: Tensor

    def __init__(self, n_bins: int = 15, **kwargs: Any) -> None:
        nb = check_positive_int("n_bins", n_bins)
        super().__init__(**kwargs)
        self.n_bins = nb
        self._add_sum_state("bin_count", torch.zeros(nb, dtype=torch.int64))
        self._add_sum_state("bin_conf", torch.zeros(nb, dtype=torch.float64))
        self._add_sum_state("bin_correct", torch.zeros(nb, dtype=torch.int64))

    def update(self, logits: Tensor, target: Tensor) -> None:
        """Add a batch: ``logits`` (B, C) finite float, ``target`` (B,) int."""
        lg, tg, nb = _checked(logits, target, self.n_bins)
        count, conf, correct = _ece_bin_sums(lg, tg, nb)
        self.bin_count += count
        self.bin_conf += conf
        self.bin_correct += correct

    def compute(self) -> float:
        return _ece_from_bins(self.bin_count, self.bin_conf, self.bin_correct)

    def reliability_diagram_data(self) -> dict[str, Tensor]:
        """Accumulated per-bin data, see :func:`reliability_diagram_data` (synchronised like compute)."""
        with self._synced():
            return _reliability(self.bin_count, self.bin_conf, self.bin_correct)

    def extra_repr(self) -> str:
        return f"n_bins={self.n_bins}"
