"""Multi-label metrics: mean average precision and CP / CR / CF1 / OP / OR / OF1.

Inputs: ``scores`` (N, L) float (logits or probabilities) and ``targets`` (N, L) with entries 1
(positive), 0 (negative) or -1 (unknown). Unknown entries are ignored everywhere: they are neither
positive nor negative, neither counted as predictions nor as misses.

* ``AP_l`` is ``sklearn.metrics.average_precision_score`` of label l over the samples with a known
  target: ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds (equal scores form one
  threshold, so ties are handled as sklearn does). Only the ranking of the scores matters.
  ``mAP = mean of AP_l over the labels with at least one positive`` (other labels have no AP: NaN).
  It is torchmetrics' ``multilabel_average_precision(..., average=None, ignore_index=-1)`` (the
  computation of ``MultilabelAveragePrecision``), given the scores' dense ranks in [0, 1] instead of
  the scores (see :mod:`longtail.metrics._ranking`: torchmetrics would apply a sigmoid, which
  saturates, and it would do so per batch in an accumulating ``MultilabelAveragePrecision``) and only
  the labels with a positive (torchmetrics gives 0 with a warning for the others). torchmetrics
  counts in float32, so AP agrees with sklearn to about 1e-7.
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
from typing import Any

import torch
from torch import Tensor
from torchmetrics.functional.classification import multilabel_average_precision

from longtail.metrics._base import Metric
from longtail.metrics._checks import (
    check_float_matrix,
    check_multilabel_targets,
    check_positive_int,
    check_probability,
)
from longtail.metrics._ranking import dense_ranks

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
    """(L,) float64 AP of checked (N, L) scores and targets; NaN for labels without a positive."""
    out = torch.full((scores.shape[1],), math.nan, dtype=torch.float64, device=scores.device)
    labels = torch.nonzero((targets == 1).any(dim=0)).flatten()
    if labels.numel():
        ap = multilabel_average_precision(
            dense_ranks(scores[:, labels]),
            targets[:, labels],
            num_labels=labels.numel(),
            average=None,
            ignore_index=-1,
            validate_args=False,
        )
        out[labels] = ap.to(torch.float64).reshape(-1)
    return out


def average_precision(scores: Tensor, targets: Tensor) -> Tensor:
    """Per-label average precision (L,) float64; NaN for labels without a (known) positive.

    Example:
        >>> from longtail.metrics import average_precision
        >>> scores = torch.tensor([[0.9, 0.2], [0.8, 0.7], [0.1, 0.6]])
        >>> targets = torch.tensor([[1, 0], [0, 1], [1, 0]])
        >>> [round(ap, 4) for ap in average_precision(scores, targets).tolist()]
        [0.8333, 1.0]
    """
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

    Example:
        >>> from longtail.metrics import mean_average_precision
        >>> scores = torch.tensor([[0.9, 0.2], [0.8, 0.7], [0.1, 0.6]])
        >>> targets = torch.tensor([[1, 0], [0, 1], [1, 0]])
        >>> round(mean_average_precision(scores, targets), 4)  # mean of 5/6 and 1
        0.9167
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

    Example:
        >>> from longtail.metrics import multilabel_prf
        >>> logits = torch.tensor([[2.0, -1.0], [1.0, 1.0], [-2.0, -1.0]])
        >>> targets = torch.tensor([[1, 0], [0, 1], [1, -1]])  # -1: unknown, ignored
        >>> {name: round(value, 4) for name, value in multilabel_prf(logits, targets).items()}
        {'CP': 0.75, 'CR': 0.75, 'CF1': 0.75, 'OP': 0.6667, 'OR': 0.6667, 'OF1': 0.6667}
    """
    thr = check_probability("threshold", threshold)
    sc, tg = _checked(scores, targets)
    return _prf_from_counts(*_prf_counts(sc, tg, thr, from_logits))


class MeanAveragePrecision(Metric):
    """Accumulated mAP. States: the scores and targets of every sample (cat states, flattened).

    Args:
        num_labels: L; if given, every batch must have L columns (otherwise every batch must have the
            columns of the first one).

    Example:
        >>> from longtail.metrics import MeanAveragePrecision
        >>> metric = MeanAveragePrecision(num_labels=2)
        >>> metric.update(torch.tensor([[0.9, 0.2], [0.8, 0.7]]), torch.tensor([[1, 0], [0, 1]]))
        >>> metric.update(torch.tensor([[0.1, 0.6]]), torch.tensor([[1, 0]]))
        >>> round(metric.compute(), 4)
        0.9167
    """

    scores: list[Tensor]
    targets: list[Tensor]
    width: Tensor

    def __init__(self, num_labels: int | None = None, **kwargs: Any) -> None:
        n = None if num_labels is None else check_positive_int("num_labels", num_labels)
        super().__init__(**kwargs)
        self.num_labels = n
        self._add_cat_state("scores", torch.float64)
        self._add_cat_state("targets", torch.int64)
        # the number of columns: L, or 0 until the first batch (a process without samples keeps 0)
        self.add_state("width", torch.tensor(n or 0, dtype=torch.int64), dist_reduce_fx="max")

    def update(self, scores: Tensor, targets: Tensor) -> None:
        """Add a batch: ``scores`` (B, L) float, ``targets`` (B, L) in {-1, 0, 1}."""
        sc, tg = _checked(scores, targets, self.num_labels)
        width = int(self.width)
        if width and sc.shape[1] != width:
            raise ValueError(f"scores has {sc.shape[1]} columns but earlier batches had {width}")
        self.width.fill_(sc.shape[1])
        self.scores.append(sc.detach().to(torch.float64).flatten())
        self.targets.append(tg.flatten())

    def _matrices(self) -> tuple[Tensor, Tensor]:
        """The (N, L) scores and targets (N = 0 and L = 0 before any batch without ``num_labels``)."""
        width = int(self.width)
        scores, targets = self._cat("scores"), self._cat("targets")
        rows = scores.numel() // width if width else 0
        return scores.reshape(rows, width), targets.reshape(rows, width)

    def compute(self) -> float:
        return _nanmean(_ap_per_label(*self._matrices()))

    def per_label(self) -> Tensor:
        """Accumulated per-label AP (L,) float64, NaN for labels without a positive; synchronised."""
        with self._synced():
            return _ap_per_label(*self._matrices())

    def extra_repr(self) -> str:
        return f"num_labels={self.num_labels}"


class MultilabelPRF(Metric):
    """Accumulated CP / CR / CF1 / OP / OR / OF1. States: per-label TP, FP, FN counts (sum states).

    Args:
        num_labels: L.
        threshold: see :func:`multilabel_prf` (default 0.5).
        from_logits: see :func:`multilabel_prf` (default True).

    Example:
        >>> from longtail.metrics import MultilabelPRF
        >>> metric = MultilabelPRF(num_labels=2)
        >>> metric.update(torch.tensor([[2.0, -1.0], [1.0, 1.0]]), torch.tensor([[1, 0], [0, 1]]))
        >>> metric.update(torch.tensor([[-2.0, -1.0]]), torch.tensor([[1, -1]]))
        >>> {name: round(value, 4) for name, value in metric.compute().items()}
        {'CP': 0.75, 'CR': 0.75, 'CF1': 0.75, 'OP': 0.6667, 'OR': 0.6667, 'OF1': 0.6667}
    """

    tp: Tensor
    fp: Tensor
    fn: Tensor

    def __init__(
        self, num_labels: int, *, threshold: float = 0.5, from_logits: bool = True, **kwargs: Any
    ) -> None:
        n = check_positive_int("num_labels", num_labels)
        thr = check_probability("threshold", threshold)
        super().__init__(**kwargs)
        self.num_labels = n
        self.threshold = thr
        self.from_logits = bool(from_logits)
        for name in ("tp", "fp", "fn"):
            self._add_sum_state(name, torch.zeros(n, dtype=torch.int64))

    def update(self, scores: Tensor, targets: Tensor) -> None:
        """Add a batch: ``scores`` (B, L) float, ``targets`` (B, L) in {-1, 0, 1}."""
        sc, tg = _checked(scores, targets, self.num_labels)
        tp, fp, fn = _prf_counts(sc, tg, self.threshold, self.from_logits)
        self.tp += tp
        self.fp += fp
        self.fn += fn

    def compute(self) -> dict[str, float]:
        return _prf_from_counts(self.tp, self.fp, self.fn)

    def extra_repr(self) -> str:
        return (
            f"num_labels={self.num_labels}, threshold={self.threshold}, "
            f"from_logits={self.from_logits}"
        )
