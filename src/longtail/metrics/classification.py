"""Single-label classification metrics: accuracy, balanced accuracy, per-class and many/medium/few-shot.

All take ``logits`` of shape (N, C) (any real scores; only the arg-max matters, ties go to the lowest class
index as in ``torch.argmax``) and integer ``target`` of shape (N,) with values in ``[0, C)``. Everything is
derived from the confusion matrix ``M`` (rows = true class, columns = predicted class)::

    accuracy             = trace(M) / sum(M)
    recall_c             = M[c, c] / sum_j M[c, j]                    (NaN if class c is absent from target)
    balanced_accuracy    = mean of recall_c over classes present in target   (= 1 - balanced error rate)
    shot accuracy (g)    = mean of recall_c over classes c in group g that are present in target

Values are fractions in [0, 1]. An empty input gives NaN for the ratios. Balanced accuracy equals
``sklearn.metrics.balanced_accuracy_score`` (which also averages only over classes present in ``y_true``).
Many / medium / few-shot follows the ImageNet-LT protocol (Liu et al., "Large-Scale Long-Tailed
Recognition in an Open World", CVPR 2019): > 100, 20-100 and < 20 training images per class.
"""

from __future__ import annotations

import math
from typing import Literal, TypeVar

import torch
from torch import Tensor

from longtail.metrics._base import Metric
from longtail.metrics._checks import (
    CountsLike,
    check_counts,
    check_finite,
    check_float_matrix,
    check_labels,
    check_num_classes,
    check_positive_int,
)
from longtail.metrics.calibration import _FINITE_WHY, _ece_bin_sums, _ece_from_bins, _reliability

ShotMode = Literal["thresholds", "terciles"]
T = TypeVar("T")
SHOT_KEYS = ("many", "medium", "few")

__all__ = [
    "Accuracy",
    "BalancedAccuracy",
    "ConfusionMatrix",
    "PerClassAccuracy",
    "ShotAccuracy",
    "SingleLabelMetrics",
    "accuracy",
    "balanced_accuracy",
    "closed_set_accuracy",
    "confusion_matrix",
    "per_class_accuracy",
    "shot_accuracy",
    "shot_groups",
]


# ---------------------------------------------------------------------------------------------------
# helpers on the confusion matrix
# ---------------------------------------------------------------------------------------------------
def _checked(logits: object, target: object, num_classes: object) -> tuple[Tensor, Tensor, int]:
    lg = check_float_matrix("logits", logits)
    c = lg.shape[1]
    check_num_classes("num_classes", num_classes, c)
    tg = check_labels("target", target, lg.shape[0], c)
    return lg, tg, c


def _confusion(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    idx = target.long() * num_classes + pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def _recall_from_confusion(cm: Tensor) -> Tensor:
    support = cm.sum(dim=1).to(torch.float64)
    diag = cm.diagonal().to(torch.float64)
    out = torch.full_like(support, math.nan)
    present = support > 0
    out[present] = diag[present] / support[present]
    return out


def _nanmean(x: Tensor) -> float:
    ok = ~torch.isnan(x)
    if not bool(ok.any()):
        return math.nan
    return float(x[ok].mean())


def _accuracy_from_confusion(cm: Tensor) -> float:
    total = int(cm.sum())
    return math.nan if total == 0 else float(cm.diagonal().sum()) / total


def shot_groups(
    train_class_counts: CountsLike,
    *,
    mode: ShotMode = "thresholds",
    many_threshold: float = 100,
    few_threshold: float = 20,
) -> dict[str, Tensor]:
    """Boolean masks (C,) selecting the many-, medium- and few-shot classes.

    ``mode="thresholds"`` (ImageNet-LT): many = count > ``many_threshold``, few = count <
    ``few_threshold``, medium = the rest (``few_threshold <= count <= many_threshold``).

    ``mode="terciles"`` (small data sets): the classes are sorted by training count, most frequent first,
    ties broken by class index (lower index first, i.e. a stable sort), and the sorted list is cut into
    three consecutive parts like ``numpy.array_split``: with ``C = 3q + r`` the many group gets
    ``q + (r >= 1)`` classes, medium ``q + (r >= 2)`` and few ``q``. Tied counts may therefore straddle a
    group boundary. With fewer than 3 classes some groups are empty.
    """
    counts = check_counts("train_class_counts", train_class_counts)
    c = counts.numel()
    if mode == "thresholds":
        for name, v in (("many_threshold", many_threshold), ("few_threshold", few_threshold)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if few_threshold > many_threshold:
            raise ValueError(
                f"few_threshold ({few_threshold}) must be <= many_threshold ({many_threshold})"
            )
        many = counts > many_threshold
        few = counts < few_threshold
        medium = ~(many | few)
    elif mode == "terciles":
        order = torch.sort(-counts, stable=True).indices
        q, r = divmod(c, 3)
        sizes = [q + (r >= 1), q + (r >= 2), q]
        masks = []
        start = 0
        for size in sizes:
            m = torch.zeros(c, dtype=torch.bool)
            m[order[start : start + size]] = True
            masks.append(m)
            start += size
        many, medium, few = masks
    else:
        raise ValueError(f"mode must be 'thresholds' or 'terciles', got {mode!r}")
    return {"many": many, "medium": medium, "few": few}


def _shot_from_recall(recall: Tensor, groups: dict[str, Tensor]) -> dict[str, float]:
    return {k: _nanmean(recall[groups[k].to(recall.device)]) for k in SHOT_KEYS}


# ---------------------------------------------------------------------------------------------------
# functional
# ---------------------------------------------------------------------------------------------------
def confusion_matrix(logits: Tensor, target: Tensor, *, num_classes: int | None = None) -> Tensor:
    """Confusion matrix ``M`` (C, C) int64, ``M[i, j]`` = number of samples of true class i predicted j.

    Args:
        logits: (N, C) float scores; the prediction is ``argmax`` over dim 1.
        target: (N,) int labels in ``[0, C)``.
        num_classes: optional, must equal C if given.
    """
    lg, tg, c = _checked(logits, target, num_classes)
    return _confusion(lg.argmax(dim=1), tg, c)


def accuracy(logits: Tensor, target: Tensor) -> float:
    """Top-1 accuracy ``(1/N) sum_i [argmax_c logits[i, c] == target[i]]`` (NaN if N = 0)."""
    lg, tg, _ = _checked(logits, target, None)
    n = tg.numel()
    return math.nan if n == 0 else float((lg.argmax(dim=1) == tg).sum()) / n


#: Closed-set accuracy of an open-set model (on known-class samples) is plain top-1 accuracy.
closed_set_accuracy = accuracy


def per_class_accuracy(logits: Tensor, target: Tensor, *, num_classes: int | None = None) -> Tensor:
    """Per-class recall ``M[c, c] / sum_j M[c, j]`` as a float64 (C,) tensor; NaN for absent classes."""
    return _recall_from_confusion(confusion_matrix(logits, target, num_classes=num_classes))


def balanced_accuracy(logits: Tensor, target: Tensor, *, num_classes: int | None = None) -> float:
    """Mean per-class recall over the classes present in ``target`` (NaN if N = 0).

    Equal to ``sklearn.metrics.balanced_accuracy_score(target, argmax(logits))`` and to
    ``1 - balanced error rate``.
    """
    return _nanmean(per_class_accuracy(logits, target, num_classes=num_classes))


def shot_accuracy(
    logits: Tensor,
    target: Tensor,
    train_class_counts: CountsLike,
    *,
    mode: ShotMode = "thresholds",
    many_threshold: float = 100,
    few_threshold: float = 20,
) -> dict[str, float]:
    """Mean per-class accuracy on the many-, medium- and few-shot classes.

    Args:
        logits: (N, C) float scores.
        target: (N,) int labels.
        train_class_counts: (C,) number of *training* samples per class.
        mode: ``"thresholds"`` (ImageNet-LT: many > 100, medium 20-100, few < 20) or ``"terciles"``
            (thirds of the classes by training count), see :func:`shot_groups`.
        many_threshold, few_threshold: the thresholds of ``mode="thresholds"``.

    Returns:
        ``{"many": float, "medium": float, "few": float}``; each is the mean of the per-class accuracy
        over the group's classes present in ``target``. A group with no classes (or none present in
        ``target``) gives NaN.
    """
    lg, tg, c = _checked(logits, target, None)
    counts = check_counts("train_class_counts", train_class_counts, c)
    groups = shot_groups(
        counts, mode=mode, many_threshold=many_threshold, few_threshold=few_threshold
    )
    return _shot_from_recall(_recall_from_confusion(_confusion(lg.argmax(dim=1), tg, c)), groups)


# ---------------------------------------------------------------------------------------------------
# accumulating classes
# ---------------------------------------------------------------------------------------------------
class _ConfusionBased(Metric[T]):
    """Shared state: a (C, C) int64 confusion matrix (a sum state)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = check_positive_int("num_classes", num_classes)
        self._add_sum_state("confmat", torch.zeros(num_classes, num_classes, dtype=torch.int64))

    def update(self, logits: Tensor, target: Tensor) -> None:
        """Add a batch: ``logits`` (B, C) float, ``target`` (B,) int."""
        lg, tg, _ = _checked(logits, target, self.num_classes)
        self._accumulate("confmat", _confusion(lg.argmax(dim=1), tg, self.num_classes))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_classes={self.num_classes})"


class ConfusionMatrix(_ConfusionBased[Tensor]):
    """Accumulated confusion matrix (C, C) int64, rows = true class, columns = predicted class."""

    def _compute(self, states: dict[str, Tensor]) -> Tensor:
        return states["confmat"].clone()


class PerClassAccuracy(_ConfusionBased[Tensor]):
    """Accumulated per-class accuracy (recall), float64 (C,), NaN for classes never seen in target."""

    def _compute(self, states: dict[str, Tensor]) -> Tensor:
        return _recall_from_confusion(states["confmat"])


class BalancedAccuracy(_ConfusionBased[float]):
    """Accumulated balanced accuracy (mean per-class recall over classes present in target)."""

    def _compute(self, states: dict[str, Tensor]) -> float:
        return _nanmean(_recall_from_confusion(states["confmat"]))


class Accuracy(Metric[float]):
    """Accumulated top-1 accuracy. State: number correct and number seen (sum states)."""

    def __init__(self) -> None:
        super().__init__()
        self._add_sum_state("correct", torch.zeros((), dtype=torch.int64))
        self._add_sum_state("total", torch.zeros((), dtype=torch.int64))

    def update(self, logits: Tensor, target: Tensor) -> None:
        """Add a batch: ``logits`` (B, C) float, ``target`` (B,) int."""
        lg, tg, _ = _checked(logits, target, None)
        self._accumulate("correct", (lg.argmax(dim=1) == tg).sum())
        self._accumulate("total", torch.tensor(tg.numel(), dtype=torch.int64, device=tg.device))

    def _compute(self, states: dict[str, Tensor]) -> float:
        total = int(states["total"])
        return math.nan if total == 0 else int(states["correct"]) / total


class ShotAccuracy(_ConfusionBased[dict[str, float]]):
    """Accumulated many / medium / few-shot accuracy; see :func:`shot_accuracy` for the arguments."""

    def __init__(
        self,
        train_class_counts: CountsLike,
        *,
        mode: ShotMode = "thresholds",
        many_threshold: float = 100,
        few_threshold: float = 20,
    ) -> None:
        counts = check_counts("train_class_counts", train_class_counts)
        self.groups = shot_groups(
            counts, mode=mode, many_threshold=many_threshold, few_threshold=few_threshold
        )
        self.mode = mode
        super().__init__(counts.numel())

    def _compute(self, states: dict[str, Tensor]) -> dict[str, float]:
        return _shot_from_recall(_recall_from_confusion(states["confmat"]), self.groups)


class SingleLabelMetrics(Metric[dict[str, float]]):
    """Everything the long-tail protocol reports, from one stream of ``(logits, target)`` batches.

    ``compute()`` returns exactly the keys ``"balanced_accuracy"``, ``"accuracy"``, ``"many"``,
    ``"medium"``, ``"few"`` and ``"ece"`` (floats in [0, 1], NaN where undefined: no samples, or a
    shot group without classes). ``per_class()`` gives the per-class accuracy (C,), ``confusion()`` the
    confusion matrix (C, C) and ``reliability_diagram_data()`` the per-bin calibration data.

    State (all sum states, so distributed synchronisation is one ``all_reduce`` each): the confusion
    matrix and, for ECE, per-bin sample count, confidence sum and correct count.

    Args:
        num_classes: C.
        train_class_counts: (C,) training samples per class, for many / medium / few.
        shot_mode: ``"thresholds"`` (ImageNet-LT 100 / 20) or ``"terciles"``, see :func:`shot_groups`.
        n_bins: number of equal-width confidence bins of the ECE (default 15).
    """

    def __init__(
        self,
        num_classes: int,
        train_class_counts: CountsLike,
        *,
        shot_mode: ShotMode = "thresholds",
        n_bins: int = 15,
    ) -> None:
        super().__init__()
        self.num_classes = check_positive_int("num_classes", num_classes)
        counts = check_counts("train_class_counts", train_class_counts, num_classes)
        self.n_bins = check_positive_int("n_bins", n_bins)
        self.groups = shot_groups(counts, mode=shot_mode)
        self.shot_mode = shot_mode
        self._add_sum_state("confmat", torch.zeros(num_classes, num_classes, dtype=torch.int64))
        self._add_sum_state("bin_count", torch.zeros(n_bins, dtype=torch.int64))
        self._add_sum_state("bin_conf", torch.zeros(n_bins, dtype=torch.float64))
        self._add_sum_state("bin_correct", torch.zeros(n_bins, dtype=torch.int64))

    def update(self, logits: Tensor, target: Tensor) -> None:
        """Add a batch: ``logits`` (B, C) finite float, ``target`` (B,) int in ``[0, C)``."""
        lg, tg, _ = _checked(logits, target, self.num_classes)
        lg = check_finite("logits", lg.detach(), _FINITE_WHY)
        self._accumulate("confmat", _confusion(lg.argmax(dim=1), tg, self.num_classes))
        count, conf, correct = _ece_bin_sums(lg, tg, self.n_bins)
        self._accumulate("bin_count", count)
        self._accumulate("bin_conf", conf)
        self._accumulate("bin_correct", correct)

    def _compute(self, states: dict[str, Tensor]) -> dict[str, float]:
        cm = states["confmat"]
        recall = _recall_from_confusion(cm)
        shots = _shot_from_recall(recall, self.groups)
        return {
            "balanced_accuracy": _nanmean(recall),
            "accuracy": _accuracy_from_confusion(cm),
            "many": shots["many"],
            "medium": shots["medium"],
            "few": shots["few"],
            "ece": _ece_from_bins(states["bin_count"], states["bin_conf"], states["bin_correct"]),
        }

    def per_class(self) -> Tensor:
        """Per-class accuracy (C,) float64, NaN for classes not seen; synchronised like ``compute()``."""
        return _recall_from_confusion(self.states()["confmat"])

    def confusion(self) -> Tensor:
        """Confusion matrix (C, C) int64 (rows true, columns predicted); synchronised like ``compute()``."""
        return self.states()["confmat"].clone()

    def reliability_diagram_data(self) -> dict[str, Tensor]:
        """Per-bin ECE data (see :func:`~longtail.metrics.reliability_diagram_data`), synchronised."""
        s = self.states()
        return _reliability(s["bin_count"], s["bin_conf"], s["bin_correct"])

    def __repr__(self) -> str:
        return (
            f"SingleLabelMetrics(num_classes={self.num_classes}, shot_mode={self.shot_mode!r}, "
            f"n_bins={self.n_bins})"
        )
