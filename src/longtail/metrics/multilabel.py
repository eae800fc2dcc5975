"""Multi-label metrics: mean average precision and CP / CR / CF1 / OP / OR / OF1.

Inputs: ``scores`` (N, L) float (logits or probabilities) and ``targets`` (N, L) with entries 1
(positive), 0 (negative) or -1 (unknown). Unknown entries are ignored everywhere: they are neither
positive nor negative, neither counted as predictions nor as misses.

* ``AP_l`` is ``sklearn.metrics.average_precision_score`` of label l over the samples with a known
  target: ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds (equal scores form one
  threshold, so ties are handled as sklearn does). Only the ranking of the scores matters.
  ``mAP = mean of AP_l over the labels with at least one positive`` (other labels have no AP: NaN).
  It is computed here for all labels at once (:func:`longtail.metrics._ranking.column_average_precision`:
  blocks of columns sorted together, memory-light with a thousand labels); it equals torchmetrics'
  ``multilabel_average_precision(..., average=None, ignore_index=-1)`` on the scores' dense ranks
  (tested), which agrees with sklearn to about 1e-7.
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

  ``macro_over="positive"`` averages CP and CR over the labels with at least one known positive
  (``TP_l + FN_l > 0``, the labels mAP averages over: :func:`scored_labels`) instead of all L; a
  label without a positive has no recall and a precision of 0 whenever it is predicted, so it can
  only lower CF1. OP / OR / OF1 always sum over every label (a false positive of such a label
  counts).
* Per-label thresholds: ``threshold`` may be an (L,) tensor of probabilities, one per label;
  :func:`f1_thresholds` chooses them, each maximising its label's F1 ``2 TP / (2 TP + FP + FN)``
  on the data it is given (to be applied to other data).
"""

from __future__ import annotations

import math
from typing import Any, Literal, TypeAlias

import torch
from torch import Tensor

from longtail.metrics._base import Metric
from longtail.metrics._checks import (
    check_float_matrix,
    check_multilabel_targets,
    check_positive_int,
    check_probability,
)
from longtail.metrics._ranking import column_average_precision

__all__ = [
    "MeanAveragePrecision",
    "MultilabelPRF",
    "average_precision",
    "f1_thresholds",
    "mean_average_precision",
    "multilabel_prf",
    "scored_labels",
]

PRF_KEYS = ("CP", "CR", "CF1", "OP", "OR", "OF1")
#: Which labels CP and CR average over: every label, or those with a known positive.
MacroOver: TypeAlias = Literal["all", "positive"]
_MACRO_OVER = ("all", "positive")


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
    return column_average_precision(scores, targets)


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


def scored_labels(targets: Tensor) -> Tensor:
    """The labels with at least one known positive (the labels whose AP is defined), ascending.

    Args:
        targets: (N, L) in {0, 1}, -1 = unknown.

    Returns:
        int64 indices into the L labels.

    Example:
        >>> from longtail.metrics import scored_labels
        >>> scored_labels(torch.tensor([[1, 0, -1], [0, 0, -1], [1, 1, 0]])).tolist()
        [0, 1]
    """
    tg = check_multilabel_targets("targets", targets, tuple(torch.as_tensor(targets).shape))
    return torch.nonzero((tg == 1).any(dim=0)).flatten()


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


def _probabilities(scores: Tensor, from_logits: bool) -> Tensor:
    s = scores.detach().to(torch.float64)
    return torch.sigmoid(s) if from_logits else s


def _prf_counts(
    scores: Tensor, targets: Tensor, threshold: float | Tensor, from_logits: bool
) -> tuple[Tensor, Tensor, Tensor]:
    prob = _probabilities(scores, from_logits)
    if isinstance(threshold, Tensor):
        threshold = threshold.to(prob.device, torch.float64)
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


def _check_macro_over(value: object) -> MacroOver:
    if value not in _MACRO_OVER:
        raise ValueError(f"macro_over must be one of {_MACRO_OVER}, got {value!r}")
    return value  # type: ignore[return-value]


def _prf_from_counts(
    tp: Tensor, fp: Tensor, fn: Tensor, macro_over: MacroOver = "all"
) -> dict[str, float]:
    if tp.numel() == 0:
        return dict.fromkeys(PRF_KEYS, math.nan)
    macro = (tp + fn) > 0 if macro_over == "positive" else torch.ones_like(tp, dtype=torch.bool)
    if bool(macro.any()):
        cp = float(_safe_div(tp, tp + fp)[macro].mean())
        cr = float(_safe_div(tp, tp + fn)[macro].mean())
    else:  # no label to average over
        cp = cr = math.nan
    op = float(_safe_div(tp.sum(), (tp + fp).sum()))
    o_r = float(_safe_div(tp.sum(), (tp + fn).sum()))
    cf1 = math.nan if math.isnan(cp) else _f1(cp, cr)
    return {"CP": cp, "CR": cr, "CF1": cf1, "OP": op, "OR": o_r, "OF1": _f1(op, o_r)}


def _check_thresholds(threshold: object, num_labels: int) -> float | Tensor:
    """A probability in [0, 1], or an (L,) tensor of them (one per label)."""
    if not isinstance(threshold, Tensor):
        return check_probability("threshold", threshold)
    t = threshold.detach()
    if t.ndim != 1 or t.shape[0] != num_labels or not t.is_floating_point():
        raise ValueError(
            f"threshold: a per-label threshold must be a float tensor of shape ({num_labels},), "
            f"got dtype {t.dtype} and shape {tuple(t.shape)}"
        )
    if t.numel() and not bool(((t >= 0) & (t <= 1)).all()):  # also refuses NaN
        raise ValueError(f"threshold must lie in [0, 1], got {t.tolist()[:10]}")
    return t


def multilabel_prf(
    scores: Tensor,
    targets: Tensor,
    *,
    threshold: float | Tensor = 0.5,
    from_logits: bool = True,
    macro_over: MacroOver = "all",
) -> dict[str, float]:
    """CP, CR, CF1, OP, OR, OF1 at a threshold (see the module docstring for the formulas).

    Args:
        scores: (N, L) float logits (``from_logits=True``, sigmoid applied) or probabilities.
        targets: (N, L) in {0, 1}, -1 = unknown (ignored).
        threshold: a label is predicted iff its probability is ``>= threshold`` (in [0, 1]; default 0.5,
            i.e. logit >= 0); or an (L,) float tensor, one threshold per label (e.g.
            :func:`f1_thresholds` of other data).
        from_logits: apply the sigmoid to ``scores`` first (default True).
        macro_over: ``"all"`` (default): CP / CR average over every label, as the ML-GCN / ASL
            code does; ``"positive"``: over the labels with a known positive (NaN if none has one).

    Returns:
        dict with keys ``"CP", "CR", "CF1", "OP", "OR", "OF1"`` (fractions in [0, 1]).

    Example:
        >>> from longtail.metrics import multilabel_prf
        >>> logits = torch.tensor([[2.0, -1.0], [1.0, 1.0], [-2.0, -1.0]])
        >>> targets = torch.tensor([[1, 0], [0, 1], [1, -1]])  # -1: unknown, ignored
        >>> {name: round(value, 4) for name, value in multilabel_prf(logits, targets).items()}
        {'CP': 0.75, 'CR': 0.75, 'CF1': 0.75, 'OP': 0.6667, 'OR': 0.6667, 'OF1': 0.6667}
    """
    sc, tg = _checked(scores, targets)
    thr = _check_thresholds(threshold, sc.shape[1])
    over = _check_macro_over(macro_over)
    return _prf_from_counts(*_prf_counts(sc, tg, thr, from_logits), macro_over=over)


def f1_thresholds(
    scores: Tensor,
    targets: Tensor,
    *,
    min_positives: int = 1,
    default: float = 0.5,
    from_logits: bool = True,
) -> Tensor:
    """Per-label probability thresholds, each maximising its label's F1 on ``scores, targets``.

    For label l, with ``p`` its probabilities on the rows where its target is known: the
    candidates are the cuts between consecutive distinct values of ``p`` (equal values are
    predicted together), predicting the ``k`` rows above the cut; the cut with the largest
    ``F1 = 2 TP_k / (P + k)`` (``P`` the label's positives; on a tie the highest cut, i.e. the fewest
    predictions) gives the threshold halfway between the lowest predicted and the highest
    unpredicted value (half the lowest value when every row is predicted). A label with fewer than
    ``min_positives`` known positives keeps ``default`` (with so few positives the best cut is
    noise). Choose the thresholds on one split (validation) and apply them to another with
    :func:`multilabel_prf` ``(..., threshold=thresholds)``: on the split they were chosen on, the F1
    they give is optimistic.

    Args:
        scores: (N, L) float logits (``from_logits=True``) or probabilities.
        targets: (N, L) in {0, 1}, -1 = unknown (ignored).
        min_positives: the fewest known positives a label needs to get its own threshold (>= 1).
        default: the threshold of the other labels, in [0, 1] (0.5: logit 0).
        from_logits: apply the sigmoid to ``scores`` first (default True).

    Returns:
        (L,) float64 thresholds in [0, 1]; predicted iff ``probability >= threshold``.

    Example:
        >>> from longtail.metrics import f1_thresholds
        >>> probs = torch.tensor([[0.30, 0.9], [0.20, 0.8], [0.10, 0.7], [0.05, 0.6]])
        >>> targets = torch.tensor([[1, 1], [1, 0], [0, 1], [0, 0]])
        >>> thresholds = f1_thresholds(probs, targets, from_logits=False)
        >>> [round(t, 4) for t in thresholds.tolist()]  # label 1: predict 3 rows, F1 0.8
        [0.15, 0.65]
    """
    sc, tg = _checked(scores, targets)
    min_pos = check_positive_int("min_positives", min_positives)
    fallback = check_probability("default", default)
    prob = _probabilities(sc, from_logits)
    n, num_labels = prob.shape
    out = torch.full((num_labels,), fallback, dtype=torch.float64, device=prob.device)
    known = tg >= 0
    positives = (tg == 1).sum(dim=0)
    tuned = positives >= min_pos
    if n == 0 or not bool(tuned.any()):
        return out
    # unknown entries sort last (below every probability) and count for nothing
    p, order = torch.where(known, prob, torch.full_like(prob, -1.0)).sort(dim=0, descending=True)
    is_pos = (tg == 1).gather(0, order)
    is_known = known.gather(0, order)
    tp = is_pos.cumsum(dim=0).to(torch.float64)
    k = is_known.cumsum(dim=0).to(torch.float64)
    below = torch.cat([p[1:], torch.full_like(p[:1], -1.0)])  # the next value (-1: none)
    cut = is_known & (p != below)  # the end of a group of equal values
    f1 = torch.where(cut, 2 * tp / (positives.to(torch.float64) + k), torch.full_like(tp, -1.0))
    best = f1.argmax(dim=0, keepdim=True)  # the first maximum: the highest cut
    low = p.gather(0, best).squeeze(0)
    nxt = below.gather(0, best).squeeze(0).clamp_min(0.0)
    return torch.where(tuned, (low + nxt) / 2, out)


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
        self._add_cat_state("targets", torch.int8)  # -1 / 0 / 1: one byte an entry
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
        self.targets.append(tg.flatten().to(torch.int8))

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

    def matrices(self) -> tuple[Tensor, Tensor]:
        """The accumulated (N, L) float64 scores and int64 targets of every process (synchronised),
        e.g. for :func:`f1_thresholds`."""
        with self._synced():
            scores, targets = self._matrices()
            return scores.clone(), targets.long()

    def extra_repr(self) -> str:
        return f"num_labels={self.num_labels}"


class MultilabelPRF(Metric):
    """Accumulated CP / CR / CF1 / OP / OR / OF1. States: per-label TP, FP, FN counts (sum states).

    Args:
        num_labels: L.
        threshold: see :func:`multilabel_prf` (default 0.5).
        from_logits: see :func:`multilabel_prf` (default True).
        macro_over: see :func:`multilabel_prf` (default ``"all"``; ``"positive"``: CP / CR over the
            labels with a known positive in everything accumulated).

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
        self,
        num_labels: int,
        *,
        threshold: float = 0.5,
        from_logits: bool = True,
        macro_over: MacroOver = "all",
        **kwargs: Any,
    ) -> None:
        n = check_positive_int("num_labels", num_labels)
        thr = check_probability("threshold", threshold)
        over = _check_macro_over(macro_over)
        super().__init__(**kwargs)
        self.num_labels = n
        self.threshold = thr
        self.from_logits = bool(from_logits)
        self.macro_over: MacroOver = over
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
        return _prf_from_counts(self.tp, self.fp, self.fn, self.macro_over)

    def extra_repr(self) -> str:
        return (
            f"num_labels={self.num_labels}, threshold={self.threshold}, "
            f"from_logits={self.from_logits}, macro_over={self.macro_over!r}"
        )
