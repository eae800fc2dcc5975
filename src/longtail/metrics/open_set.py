"""Open-set recognition metrics: AUROC, AUPR-in / AUPR-out, OSCR and closed-set accuracy.

Conventions: an *unknown score* is higher for samples more likely to be unknown (e.g. ``-max logit``);
a *known score* is the opposite (the maximum logit or softmax probability).

* ``open_set_auroc``: ROC AUC of the unknown score with the unknown samples as positives,
  ``AUROC = P(s_u > s_k) + 0.5 P(s_u = s_k)`` over pairs (unknown u, known k); equal to
  ``sklearn.metrics.roc_auc_score(is_unknown, unknown_scores)``, ties included.
* ``open_set_aupr``: average precision (``sklearn.metrics.average_precision_score``) with the known
  samples as positives and the negated score (``"aupr_in"``), and with the unknown samples as positives
  and the score itself (``"aupr_out"``).

  Both are torchmetrics' ``binary_auroc`` / ``binary_average_precision`` (the computations of
  ``BinaryAUROC`` / ``BinaryAveragePrecision``) of the scores' dense ranks in [0, 1] (torchmetrics
  would apply a saturating sigmoid to scores outside [0, 1], see :mod:`longtail.metrics._ranking`);
  they are NaN, not torchmetrics' 0 with a warning, when a group is empty. torchmetrics counts in
  float32: the values agree with sklearn to about 1e-7.
* ``oscr``: Open-Set Classification Rate (Dhamija, Günther & Boult, "Reducing Network Agnostophobia",
  NeurIPS 2018), as reported by ARPL (Chen et al., TPAMI 2021). A sample is *accepted* when its known
  score is ``>= theta``. For each ``theta``::

      CCR(theta) = #{known i : accepted and argmax logits_i = y_i} / #known
      FPR(theta) = #{unknown j : accepted} / #unknown

  and OSCR is the area under the curve CCR against FPR as ``theta`` goes from +inf to -inf (trapezoids
  between consecutive distinct scores; FPR runs from 0 to 1 and CCR from 0 to the closed-set accuracy).
  This area equals the pair count ``(1/(#known #unknown)) sum_{i correct} sum_j ([s_i > s_j] + 0.5 [s_i
  = s_j])``, which is how it is computed. The ARPL code (``core/evaluation.py: compute_oscr``) sorts the
  scores without grouping ties and counts a correct known sample at threshold index k only if it lies
  strictly above k but an unknown one if it lies at or above k; on tie-free data its value is lower than
  this one by ``0.5 / (#known #unknown)`` for every unknown sample immediately followed (in increasing
  score order) by a correctly classified known sample, i.e. by at most ``0.5 / #known``. The maximum
  OSCR is the closed-set accuracy.

Undefined values (no known or no unknown sample) are NaN.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc, binary_average_precision

from longtail.metrics._base import Metric
from longtail.metrics._checks import (
    check_bool_vector,
    check_finite,
    check_float_matrix,
    check_float_vector,
    check_labels,
    check_positive_int,
)
from longtail.metrics._ranking import dense_ranks, pairwise_greater_fraction

__all__ = [
    "OpenSetMetrics",
    "open_set_aupr",
    "open_set_auroc",
    "oscr",
]


def _checked_scores(unknown_scores: object, is_unknown: object) -> tuple[Tensor, Tensor]:
    sc = check_float_vector("unknown_scores", unknown_scores)
    unk = check_bool_vector("is_unknown", is_unknown, sc.shape[0])
    return sc, unk


def _auroc(scores: Tensor, unk: Tensor) -> float:
    if bool(unk.all()) or not bool(unk.any()):
        return math.nan
    return float(binary_auroc(dense_ranks(scores), unk.long(), validate_args=False))


def _average_precision(scores: Tensor, positive: Tensor) -> float:
    if not bool(positive.any()):
        return math.nan
    return float(
        binary_average_precision(dense_ranks(scores), positive.long(), validate_args=False)
    )


def _aupr(scores: Tensor, unk: Tensor) -> dict[str, float]:
    return {
        "aupr_in": _average_precision(-scores, ~unk),
        "aupr_out": _average_precision(scores, unk),
    }


def _oscr(known_scores: Tensor, correct: Tensor, unknown_known_scores: Tensor) -> float:
    """OSCR from known-ness scores of known samples (+ correctness) and of unknown samples."""
    n_k, n_u = known_scores.numel(), unknown_known_scores.numel()
    if n_k == 0 or n_u == 0:
        return math.nan
    high = known_scores[correct]
    if high.numel() == 0:
        return 0.0
    return pairwise_greater_fraction(high, unknown_known_scores) * high.numel() / n_k


def open_set_auroc(unknown_scores: Tensor, is_unknown: Tensor) -> float:
    """AUROC of detecting unknown samples (higher score = more likely unknown), ties count 1/2.

    Args:
        unknown_scores: (N,) float.
        is_unknown: (N,) bool (or 0/1) - true for samples of unknown classes.

    Returns:
        ``roc_auc_score(is_unknown, unknown_scores)``; NaN if only one of the two groups is present.

    Example:
        >>> from longtail.metrics import open_set_auroc
        >>> scores = torch.tensor([0.1, 0.4, 0.35, 0.8])  # higher: more likely unknown
        >>> open_set_auroc(scores, torch.tensor([False, False, True, True]))
        0.75
    """
    sc, unk = _checked_scores(unknown_scores, is_unknown)
    return _auroc(sc, unk)


def open_set_aupr(unknown_scores: Tensor, is_unknown: Tensor) -> dict[str, float]:
    """AUPR-in (known = positive, score negated) and AUPR-out (unknown = positive) as average precision.

    Returns:
        ``{"aupr_in": float, "aupr_out": float}``; a value is NaN if its positive group is empty.

    Example:
        >>> from longtail.metrics import open_set_aupr
        >>> scores = torch.tensor([0.1, 0.4, 0.35, 0.8])
        >>> aupr = open_set_aupr(scores, torch.tensor([False, False, True, True]))
        >>> {name: round(value, 4) for name, value in aupr.items()}
        {'aupr_in': 0.8333, 'aupr_out': 0.8333}
    """
    sc, unk = _checked_scores(unknown_scores, is_unknown)
    return _aupr(sc, unk)


_SOFTMAX_WHY = "softmax=True needs finite logits (softmax of a row holding inf is NaN)"


def _known_scores(logits: Tensor, softmax: bool) -> Tensor:
    x = logits.detach().to(torch.float64)
    if softmax:
        x = torch.softmax(x, dim=1)
    return x.max(dim=1).values


def oscr(
    known_logits: Tensor, known_target: Tensor, unknown_logits: Tensor, *, softmax: bool = False
) -> float:
    """Open-Set Classification Rate (area under CCR vs FPR), see the module docstring.

    Args:
        known_logits: (N_k, C) float logits of the known-class test samples.
        known_target: (N_k,) int labels in ``[0, C)``.
        unknown_logits: (N_u, C) float logits of the unknown-class samples.
        softmax: threshold on the maximum softmax probability instead of the maximum logit (default
            False: maximum logit, as ARPL does with its logits).

    Returns:
        OSCR in [0, closed-set accuracy]; NaN if ``N_k = 0`` or ``N_u = 0``.

    Example:
        >>> from longtail.metrics import oscr
        >>> known = torch.tensor([[5.0, 0.0], [0.0, 4.0], [3.0, 0.0]])  # correct, correct, wrong
        >>> unknown = torch.tensor([[1.0, 0.5], [0.0, 4.5]])
        >>> round(oscr(known, torch.tensor([0, 1, 1]), unknown), 4)
        0.5
    """
    kl = check_float_matrix("known_logits", known_logits)
    kt = check_labels("known_target", known_target, kl.shape[0], kl.shape[1])
    ul = check_float_matrix("unknown_logits", unknown_logits)
    if softmax:
        check_finite("known_logits", kl, _SOFTMAX_WHY)
        check_finite("unknown_logits", ul, _SOFTMAX_WHY)
    if ul.shape[1] != kl.shape[1]:
        raise ValueError(
            f"unknown_logits has {ul.shape[1]} columns but known_logits has {kl.shape[1]}"
        )
    correct = kl.argmax(dim=1) == kt
    return _oscr(_known_scores(kl, softmax), correct, _known_scores(ul, softmax))


class OpenSetMetrics(Metric):
    """Accumulated open-set metrics: AUROC, AUPR-in, AUPR-out, OSCR and closed-set accuracy.

    ``update(logits, target)`` takes the logits (B, C) of a mixed batch and ``target`` (B,) with the
    class index for known samples and ``-1`` (any negative value) for unknown samples. The known score
    is the maximum logit (or softmax probability if ``softmax=True``) and the unknown score its negation,
    unless ``unknown_scores`` (B,) are passed to ``update``; then OSCR thresholds on ``-unknown_scores``.

    States: per-sample unknown score (float64), unknown flag and correctness (int64 0 / 1); cat
    states. ``compute()`` returns ``{"auroc", "aupr_in", "aupr_out", "oscr", "closed_set_accuracy"}``.

    Args:
        num_classes: C (number of known classes = logit columns).
        softmax: use the maximum softmax probability instead of the maximum logit (default False).

    Example:
        >>> from longtail.metrics import OpenSetMetrics
        >>> metric = OpenSetMetrics(num_classes=2)
        >>> logits = torch.tensor([[5.0, 0.0], [0.0, 4.0], [3.0, 0.0], [1.0, 0.5], [0.0, 4.5]])
        >>> metric.update(logits, torch.tensor([0, 1, 1, -1, -1]))  # -1: unknown
        >>> {name: round(value, 4) for name, value in metric.compute().items()}
        {'auroc': 0.6667, 'aupr_in': 0.8056, 'aupr_out': 0.75,
         'oscr': 0.5, 'closed_set_accuracy': 0.6667}
    """

    KEYS = ("auroc", "aupr_in", "aupr_out", "oscr", "closed_set_accuracy")
    scores: list[Tensor]
    unknown: list[Tensor]
    correct: list[Tensor]

    def __init__(self, num_classes: int, *, softmax: bool = False, **kwargs: Any) -> None:
        c = check_positive_int("num_classes", num_classes)
        super().__init__(**kwargs)
        self.num_classes = c
        self.softmax = bool(softmax)
        self._add_cat_state("scores", torch.float64)
        self._add_cat_state("unknown", torch.int64)
        self._add_cat_state("correct", torch.int64)

    def update(self, logits: Tensor, target: Tensor, unknown_scores: Tensor | None = None) -> None:
        """Add a batch: ``logits`` (B, C) float, ``target`` (B,) int (-1 = unknown), optional scores."""
        lg = check_float_matrix("logits", logits)
        if self.softmax:
            check_finite("logits", lg, _SOFTMAX_WHY)
        if lg.shape[1] != self.num_classes:
            raise ValueError(f"logits has {lg.shape[1]} columns but num_classes={self.num_classes}")
        tg = check_labels("target", target, lg.shape[0], None)
        if tg.numel() and int(tg.max()) >= self.num_classes:
            raise ValueError(
                f"target must be -1 (unknown) or lie in [0, {self.num_classes - 1}], "
                f"got a label {int(tg.max())}"
            )
        if unknown_scores is None:
            sc = -_known_scores(lg, self.softmax)
        else:
            sc = check_float_vector("unknown_scores", unknown_scores)
            if sc.shape[0] != lg.shape[0]:
                raise ValueError(
                    f"unknown_scores has {sc.shape[0]} entries but logits has batch size {lg.shape[0]}"
                )
        unk = tg < 0
        self.scores.append(sc.detach().to(torch.float64))
        self.unknown.append(unk.long())
        self.correct.append(((lg.argmax(dim=1) == tg) & ~unk).long())

    def compute(self) -> dict[str, float]:
        sc = self._cat("scores")
        unk = self._cat("unknown").bool()
        correct = self._cat("correct").bool()
        aupr = _aupr(sc, unk)
        n_known = int((~unk).sum())
        known_ness = -sc
        return {
            "auroc": _auroc(sc, unk),
            "aupr_in": aupr["aupr_in"],
            "aupr_out": aupr["aupr_out"],
            "oscr": _oscr(known_ness[~unk], correct[~unk], known_ness[unk]),
            "closed_set_accuracy": math.nan if n_known == 0 else int(correct.sum()) / n_known,
        }

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, softmax={self.softmax}"
