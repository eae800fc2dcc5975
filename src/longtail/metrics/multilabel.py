"""Multi-label metrics: mean average precision and CP / CR / CF1 / OP / OR / OF1.

Inputs: ``scores`` (N, L) float (logits or probabilities) and ``targets`` (N, L) with entries 1
(positive), 0 (negative) or -1 (unknown). Unknown entries are ignored everywhere: they are neither
positive nor negative, neither counted as predictions nor as misses.

* ``AP_l`` is ``sklearn.metrics.average_precision_score`` of label l over the samples with a known
  target: ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds (equal scores form one
  threshold, so ties are handled as sklearn does). Only the ranking of the scores matters.
  ``mAP = mean of AP_l over the labels with at least one positive`` (other labels have no AP).
* At a threshold (default 0.5 on ``sigmoid(scores)``; predicted positive iff ``p >= threshold``), with
  per-label counts ``TP_l, FP_l, FN_l`` (Wang et al. / ML-GCN, Chen et al. CVPR 2019; ASL, Ridnik et al.
  ICCV 2021)::

      CP = (1/L) sum_l TP_l / (TP_l + FP_l)        OP = sum_l TP_l / sum_l (TP_l + FP_l)
      CR = (1/L) sum_l TP_l / (TP_l + FN_l)        OR = sum_l TP_l / sum_l (TP_l + FN_l)
      CF1 = 2 CP CR / (CP + CR)                    OF1 = 2 OP OR / (OP + OR)

  ``C*`` are per-class (macro over all L labels), ``O*`` overall (micro). A ratio 0/0 counts as 0 (as
  sklearn's ``zero_division=0``), so CP / CR equal ``sklearn.metrics.precision_score`` /
  ``recall_score`` with ``average="macro", zero_division=0``. Note that CF1 is the harmonic mean of the
  *averaged* CP and CR, as in the ML-GCN / ASL papers and code, not sklearn's macro F1 (the mean of the
  per-label F1 scores).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from longtail.metrics._base import Metric
from longtail.metrics._checks import (
    check_float_matrix,
    check_multilabel_targets,
    check_positive_int,
    check_probability,
)
from longtail.metrics._ranking import binary_average_precision

__all__ = [
    "MeanAveragePrecision",
    "MultilabelPRF",
    "average_precision",
    "mean_average_precision",
    "multilabel_prf",
]

PRF_KEYS = ("CP", "CR", "CF1", "OP", "OR", "OF1")


def _checked(
    scores: object, targets: object, num_labels: int | None = None
) -> tuple[Tensor, Tensor]:
    sc = check_float_matrix("scores", scores)
    if num_labels is not None and sc.shape[1] != num_labels:
        raise ValueError(f"scores has {sc.shape[1]} columns but num_labels={num_labels}")
    tg = check_multilabel_targets("targets", targets, tuple(sc.shape))
    return sc, tg


def _ap_per_label(scores: Tensor, targets: Tensor) -> Tensor:
    n_labels = scores.shape[1] if scores.ndim == 2 else 0
    out = torch.full((n_labels,), math.nan, dtype=torch.float64)
    for j in range(n_labels):
        known = targets[:, j] >= 0
        out[j] = binary_average_precision(scores[known, j], targets[known, j] == 1)
    return out


def average_precision(scores: Tensor, targets: Tensor) -> Tensor:
    """Per-label average precision (L,) float64; NaN for labels without a (known) positive."""
    sc, tg = _checked(scores, targets)
    return _ap_per_label(sc, tg)


def _nanmean(x: Tensor) -> float:
    ok = ~torch.isnan(x)
    return float(x[ok].mean()) if bool(ok.any()) else math.nan


def mean_average_precision(scores: Tensor, targets: Tensor) -> float:
    """Macro mean average precision over the labels with at least one positive (NaN if none has one).

    Args:
        scores: (N, L) float scores (logits or probabilities; only the ranking matters).
        targets: (N, L) in {0, 1}, with -1 = unknown (ignored).
    """
    return _nanmean(average_precision(scores, targets))


def _prf_counts(
    scores: Tensor, targets: Tensor, threshold: float, from_logits: bool
) -> tuple[Tensor, Tensor, Tensor]:
    s = scores.detach().to(torch.float64)
    prob = torch.sigmoid(s) if from_logits else s
    pred = prob >= threshold
    known = targets >= 0
    pos = targets == 1
    tp = (pred & pos).sum(dim=0)
    fp = (pred & known & ~pos).sum(dim=0)
    fn = (~pred & pos).sum(dim=0)
    return tp, fp, fn


def _safe_div(a: Tensor, b: Tensor) -> Tensor:
    a = a.to(torch.float64)
    b = b.to(torch.float64)
    return torch.where(b > 0, a / b.clamp_min(1), torch.zeros_like(a))


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _prf_from_counts(tp: Tensor, fp: Tensor, fn: Tensor) -> dict[str, float]:
    if tp.numel() == 0:
        return dict.fromkeys(PRF_KEYS, math.nan)
    cp = float(_safe_div(tp, tp + fp).mean())
    cr = float(_safe_div(tp, tp + fn).mean())
    op = float(_safe_div(tp.sum(), (tp + fp).sum()))
    o_r = float(_safe_div(tp.sum(), (tp + fn).sum()))
    return {"CP": cp, "CR": cr, "CF1": _f1(cp, cr), "OP": op, "OR": o_r, "OF1": _f1(op, o_r)}


def multilabel_prf(
    scores: Tensor, targets: Tensor, *, threshold: float = 0.5, from_logits: bool = True
) -> dict[str, float]:
    """CP, CR, CF1, OP, OR, OF1 at a threshold (see the module docstring for the formulas).

    Args:
        scores: (N, L) float logits (``from_logits=True``, sigmoid applied) or probabilities.
        targets: (N, L) in {0, 1}, -1 = unknown (ignored).
        threshold: a label is predicted iff its probability is ``>= threshold`` (in [0, 1]; default 0.5,
            i.e. logit >= 0).
        from_logits: apply the sigmoid to ``scores`` first (default True).

    Returns:
        dict with keys ``"CP", "CR", "CF1", "OP", "OR", "OF1"`` (fractions in [0, 1]).
    """
    thr = check_probability("threshold", threshold)
    sc, tg = _checked(scores, targets)
    return _prf_from_counts(*_prf_counts(sc, tg, thr, from_logits))


class MeanAveragePrecision(Metric[float]):
    """Accumulated mAP. State: the scores and targets of every sample (cat states, gathered on sync).

    Args:
        num_labels: L; if given, every batch must have L columns.
    """

    def __init__(self, num_labels: int | None = None) -> None:
        super().__init__()
        self.num_labels = (
            None if num_labels is None else check_positive_int("num_labels", num_labels)
        )
        self._add_cat_state("scores", 2, torch.float64)
        self._add_cat_state("targets", 2, torch.int64)

    def update(self, scores: Tensor, targets: Tensor) -> None:
        """Add a batch: ``scores`` (B, L) float, ``targets`` (B, L) in {-1, 0, 1}."""
        sc, tg = _checked(scores, targets, self.num_labels)
        self._append("scores", sc)
        self._append("targets", tg)

    def _compute(self, states: dict[str, Tensor]) -> float:
        return _nanmean(_ap_per_label(states["scores"], states["targets"]))

    def per_label(self) -> Tensor:
        """Accumulated per-label AP (L,) float64, NaN for labels without a positive."""
        s = self.states()
        return _ap_per_label(s["scores"], s["targets"])

    def __repr__(self) -> str:
        return f"MeanAveragePrecision(num_labels={self.num_labels})"


class MultilabelPRF(Metric[dict[str, float]]):
    """Accumulated CP / CR / CF1 / OP / OR / OF1. State: per-label TP, FP, FN counts (sum states).

    Args:
        num_labels: L.
        threshold: see :func:`multilabel_prf` (default 0.5).
        from_logits: see :func:`multilabel_prf` (default True).
    """

    def __init__(
        self, num_labels: int, *, threshold: float = 0.5, from_logits: bool = True
    ) -> None:
        super().__init__()
        self.num_labels = check_positive_int("num_labels", num_labels)
        self.threshold = check_probability("threshold", threshold)
        self.from_logits = bool(from_logits)
        for name in ("tp", "fp", "fn"):
            self._add_sum_state(name, torch.zeros(num_labels, dtype=torch.int64))

    def update(self, scores: Tensor, targets: Tensor) -> None:
        """Add a batch: ``scores`` (B, L) float, ``targets`` (B, L) in {-1, 0, 1}."""
        sc, tg = _checked(scores, targets, self.num_labels)
        tp, fp, fn = _prf_counts(sc, tg, self.threshold, self.from_logits)
        self._accumulate("tp", tp)
        self._accumulate("fp", fp)
        self._accumulate("fn", fn)

    def _compute(self, states: dict[str, Tensor]) -> dict[str, float]:
        return _prf_from_counts(states["tp"], states["fp"], states["fn"])

    def __repr__(self) -> str:
        return (
            f"MultilabelPRF(num_labels={self.num_labels}, threshold={self.threshold}, "
            f"from_logits={self.from_logits})"
        )
