"""Single-label classification metrics: accuracy, balanced accuracy, per-class and many/medium/few-shot.

All take ``logits`` of shape (N, C) (any real scores; only the arg-max matters, ties go to the lowest class
index as in ``torch.argmax``) and integer ``target`` of shape (N,) with values in ``[0, C)``. Everything is
derived from the confusion matrix ``M`` (rows = true class, columns = predicted class), counted by
torchmetrics (``multiclass_confusion_matrix``)::

    accuracy             = trace(M) / sum(M)
    recall_c             = M[c, c] / sum_j M[c, j]                    (NaN if class c is absent from target)
    balanced_accuracy    = mean of recall_c over classes present in target   (= 1 - balanced error rate)
    shot accuracy (g)    = mean of recall_c over classes c in group g that are present in target

Values are fractions in [0, 1], computed in float64. An empty input gives NaN for the ratios. Balanced
accuracy equals ``sklearn.metrics.balanced_accuracy_score`` (which also averages only over classes
present in ``y_true``). torchmetrics' ``MulticlassAccuracy(average="macro")`` differs: it averages over
the classes present in the target *or predicted*, a class absent from the target but predicted
counting with recall 0 (``[0, 0, 1, 2]`` predicted for ``[0, 0, 1, 1]`` gives 0.5 there, 0.75 here), and
it computes in float32; so balanced accuracy is reduced here from the torchmetrics confusion matrix.
Many / medium / few-shot follows the ImageNet-LT protocol (Liu et al., "Large-Scale Long-Tailed
Recognition in an Open World", CVPR 2019): > 100, 20-100 and < 20 training images per class.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor
from torchmetrics.functional.classification import multiclass_confusion_matrix

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


def _confusion(logits: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """(C, C) int64 counts of (true, arg-max) pairs; the inputs are already checked."""
    return multiclass_confusion_matrix(
        logits.detach(), target, num_classes=num_classes, validate_args=False
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

    Example:
        >>> from longtail.metrics import shot_groups
        >>> counts = [500, 400, 300, 150, 100, 10]
        >>> groups = shot_groups(counts)  # many > 100, few < 20
        >>> {name: mask.nonzero().flatten().tolist() for name, mask in groups.items()}
        {'many': [0, 1, 2, 3], 'medium': [4], 'few': [5]}
        >>> groups = shot_groups(counts, mode="terciles")  # thirds by count
        >>> {name: mask.nonzero().flatten().tolist() for name, mask in groups.items()}
        {'many': [0, 1], 'medium': [2, 3], 'few': [4, 5]}
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

    Example:
        >>> from longtail.metrics import confusion_matrix
        >>> logits = torch.eye(3)[[0, 0, 2, 1]]  # predicts 0, 0, 2, 1
        >>> confusion_matrix(logits, torch.tensor([0, 1, 2, 1]))  # rows: true, columns: predicted
        tensor([[1, 0, 0],
                [1, 1, 0],
                [0, 0, 1]])
    """
    lg, tg, c = _checked(logits, target, num_classes)
    return _confusion(lg, tg, c)


def accuracy(logits: Tensor, target: Tensor) -> float:
    """Top-1 accuracy ``(1/N) sum_i [argmax_c logits[i, c] == target[i]]`` (NaN if N = 0).

    Example:
        >>> from longtail.metrics import accuracy
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [0.0, -0.5, 1.0]])
        >>> accuracy(logits, torch.tensor([0, 1, 1]))  # 2 of 3 correct
        0.6666666666666666
    """
    lg, tg, _ = _checked(logits, target, None)
    n = tg.numel()
    return math.nan if n == 0 else float((lg.argmax(dim=1) == tg).sum()) / n


#: Closed-set accuracy of an open-set model (on known-class samples) is plain top-1 accuracy.
closed_set_accuracy = accuracy


def per_class_accuracy(logits: Tensor, target: Tensor, *, num_classes: int | None = None) -> Tensor:
    """Per-class recall ``M[c, c] / sum_j M[c, j]`` as a float64 (C,) tensor; NaN for absent classes.

    Example:
        >>> from longtail.metrics import per_class_accuracy
        >>> logits = torch.eye(3)[[0, 0, 1, 1]]  # predicts 0, 0, 1, 1
        >>> per_class_accuracy(logits, torch.tensor([0, 1, 1, 1]), num_classes=3)  # no class 2
        tensor([1.0000, 0.6667,    nan], dtype=torch.float64)
    """
    return _recall_from_confusion(confusion_matrix(logits, target, num_classes=num_classes))


def balanced_accuracy(logits: Tensor, target: Tensor, *, num_classes: int | None = None) -> float:
    """Mean per-class recall over the classes present in ``target`` (NaN if N = 0).

    Equal to ``sklearn.metrics.balanced_accuracy_score(target, argmax(logits))`` and to
    ``1 - balanced error rate``.

    Example:
        >>> from longtail.metrics import balanced_accuracy
        >>> logits = torch.eye(3)[[0, 0, 0, 0, 1, 0]]  # predicts 0, 0, 0, 0, 1, 0
        >>> target = torch.tensor([0, 0, 0, 0, 1, 1])
        >>> balanced_accuracy(logits, target)  # (4/4 + 1/2) / 2; plain accuracy is 5/6
        0.75
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

    Example:
        >>> from longtail.metrics import shot_accuracy
        >>> logits = torch.eye(3)[[0, 0, 1, 0]]  # predicts 0, 0, 1, 0
        >>> target = torch.tensor([0, 0, 1, 2])
        >>> shot_accuracy(logits, target, [500, 50, 5])  # classes 0, 1, 2: many, medium, few
        {'many': 1.0, 'medium': 1.0, 'few': 0.0}
    """
    lg, tg, c = _checked(logits, target, None)
    counts = check_counts("train_class_counts", train_class_counts, c)
    groups = shot_groups(
        counts, mode=mode, many_threshold=many_threshold, few_threshold=few_threshold
    )
    return _shot_from_recall(_recall_from_confusion(_confusion(lg, tg, c)), groups)


# ---------------------------------------------------------------------------------------------------
# accumulating classes (torchmetrics Metrics)
# ---------------------------------------------------------------------------------------------------
class _ConfusionBased(Metric):
    """Shared state: the (C, C) int64 confusion matrix ``confmat`` (a sum state)."""

    confmat: Tensor

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        c = check_positive_int("num_classes", num_classes)
        super().__init__(**kwargs)
        self.num_classes = c
        self._add_sum_state("confmat", torch.zeros(c, c, dtype=torch.int64))

    def update(self, logits: Tensor, target: Tensor) -> None:
        """Add a batch: ``logits`` (B, C) float, ``target`` (B,) int."""
        lg, tg, _ = _checked(logits, target, self.num_classes)
        self.confmat += _confusion(lg, tg, self.num_classes)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"


class ConfusionMatrix(_ConfusionBased):
    """Accumulated confusion matrix (C, C) int64, rows = true class, columns = predicted class.

    The same counts as ``torchmetrics.classification.MulticlassConfusionMatrix(num_classes)`` (and the
    same state, ``confmat``), with this package's input checks.

    Example:
        >>> from longtail.metrics import ConfusionMatrix
        >>> metric = ConfusionMatrix(num_classes=2)
        >>> metric.update(torch.eye(2)[[0, 1, 1]], torch.tensor([0, 0, 1]))
        >>> metric.compute()
        tensor([[1, 1],
                [0, 1]])
    """

    higher_is_better = None
    plot_upper_bound = None

    def compute(self) -> Tensor:
        return self.confmat.clone()


class PerClassAccuracy(_ConfusionBased):
    """Accumulated per-class accuracy (recall), float64 (C,), NaN for classes never seen in target.

    Example:
        >>> from longtail.metrics import PerClassAccuracy
        >>> metric = PerClassAccuracy(num_classes=3)
        >>> metric.update(torch.eye(3)[[0, 1, 1, 1]], torch.tensor([0, 0, 1, 1]))
        >>> metric.compute()
        tensor([0.5000, 1.0000,    nan], dtype=torch.float64)
    """

    def compute(self) -> Tensor:
        return _recall_from_confusion(self.confmat)


class BalancedAccuracy(_ConfusionBased):
    """Accumulated balanced accuracy: mean per-class recall over the classes present in target.

    Equals ``sklearn.metrics.balanced_accuracy_score``; differs from torchmetrics'
    ``MulticlassAccuracy(average="macro")`` when a class absent from the target is predicted (see the
    module docstring).

    Example:
        >>> from longtail.metrics import BalancedAccuracy
        >>> metric = BalancedAccuracy(num_classes=2)
        >>> metric.update(torch.eye(2)[[0, 0, 0, 0]], torch.tensor([0, 0, 0, 1]))
        >>> metric.update(torch.eye(2)[[1, 0]], torch.tensor([1, 1]))
        >>> metric.compute()  # (3/3 + 1/3) / 2
        0.6666666666666666
    """

    def compute(self) -> float:
        return _nanmean(_recall_from_confusion(self.confmat))


class Accuracy(Metric):
    """Accumulated top-1 accuracy. States: number correct and number seen (sum states).

    Example:
        >>> from longtail.metrics import Accuracy
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [0.0, -0.5, 1.0]])
        >>> metric = Accuracy()
        >>> metric.update(logits[:2], torch.tensor([0, 1]))
        >>> metric.update(logits[2:], torch.tensor([0]))
        >>> round(metric.compute(), 4)
        0.6667
    """

    correct: Tensor
    total: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._add_sum_state("correct", torch.zeros((), dtype=torch.int64))
        self._add_sum_state("total", torch.zeros((), dtype=torch.int64))

    def update(self, logits: Tensor, target: Tensor) -> None:
        """Add a batch: ``logits`` (B, C) float, ``target`` (B,) int."""
        lg, tg, _ = _checked(logits, target, None)
        self.correct += (lg.argmax(dim=1) == tg).sum()
        self.total += tg.numel()

    def compute(self) -> float:
        total = int(self.total)
        return math.nan if total == 0 else int(self.correct) / total


class _ShotGroups(Metric):
    """The many / medium / few class masks, held as non-persistent buffers (they follow ``.to``)."""

    def _register_groups(self, groups: dict[str, Tensor]) -> None:
        for key in SHOT_KEYS:
            self.register_buffer(f"{key}_classes", groups[key], persistent=False)

    @property
    def groups(self) -> dict[str, Tensor]:
        """``{"many", "medium", "few"}``: boolean (C,) masks of the classes of each group."""
        return {key: getattr(self, f"{key}_classes") for key in SHOT_KEYS}


class ShotAccuracy(_ShotGroups, _ConfusionBased):
    """Accumulated many / medium / few-shot accuracy; see :func:`shot_accuracy` for the arguments.

    Example:
        >>> from longtail.metrics import ShotAccuracy
        >>> metric = ShotAccuracy([500, 50, 5])
        >>> metric.update(torch.eye(3)[[0, 1, 0]], torch.tensor([0, 1, 2]))
        >>> metric.compute()
        {'many': 1.0, 'medium': 1.0, 'few': 0.0}
    """

    def __init__(
        self,
        train_class_counts: CountsLike,
        *,
        mode: ShotMode = "thresholds",
        many_threshold: float = 100,
        few_threshold: float = 20,
        **kwargs: Any,
    ) -> None:
        counts = check_counts("train_class_counts", train_class_counts)
        groups = shot_groups(
            counts, mode=mode, many_threshold=many_threshold, few_threshold=few_threshold
        )
        super().__init__(counts.numel(), **kwargs)
        self.mode = mode
        self._register_groups(groups)

    def compute(self) -> dict[str, float]:
        return _shot_from_recall(_recall_from_confusion(self.confmat), self.groups)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, mode={self.mode!r}"


class SingleLabelMetrics(_ShotGroups):
    """Everything the long-tail protocol reports, from one stream of ``(logits, target)`` batches.

    ``compute()`` returns exactly the keys ``"balanced_accuracy"``, ``"accuracy"``, ``"many"``,
    ``"medium"``, ``"few"`` and ``"ece"`` (floats in [0, 1], NaN where undefined: no samples, or a
    shot group without classes). ``per_class()`` gives the per-class accuracy (C,), ``confusion()`` the
    confusion matrix (C, C) and ``reliability_diagram_data()`` the per-bin calibration data; like
    ``compute()`` they combine the states of all processes under ``torch.distributed``.

    States (all sum states): the confusion matrix and, for the ECE, per-bin sample count, confidence
    sum and correct count.

    Args:
        num_classes: C.
        train_class_counts: (C,) training samples per class, for many / medium / few.
        shot_mode: ``"thresholds"`` (ImageNet-LT 100 / 20) or ``"terciles"``, see :func:`shot_groups`.
        n_bins: number of equal-width confidence bins of the ECE (default 15).

    Example:
        >>> from longtail.metrics import SingleLabelMetrics
        >>> metric = SingleLabelMetrics(num_classes=3, train_class_counts=[500, 50, 5])
        >>> logits = 4.0 * torch.eye(3)[[0, 1, 0, 2]]  # predicts 0, 1, 0, 2
        >>> metric.update(logits, torch.tensor([0, 1, 2, 2]))
        >>> {name: round(value, 4) for name, value in metric.compute().items()}
        {'balanced_accuracy': 0.8333, 'accuracy': 0.75,
         'many': 1.0, 'medium': 1.0, 'few': 0.5, 'ece': 0.2147}
    """

    confmat: Tensor
    bin_count: Tensor
    bin_conf: Tensor
    bin_correct: Tensor

    def __init__(
        self,
        num_classes: int,
        train_class_counts: CountsLike,
        *,
        shot_mode: ShotMode = "thresholds",
        n_bins: int = 15,
        **kwargs: Any,
    ) -> None:
        c = check_positive_int("num_classes", num_classes)
        counts = check_counts("train_class_counts", train_class_counts, c)
        nb = check_positive_int("n_bins", n_bins)
        groups = shot_groups(counts, mode=shot_mode)
        super().__init__(**kwargs)
        self.num_classes = c
        self.n_bins = nb
        self.shot_mode = shot_mode
        self._register_groups(groups)
        self._add_sum_state("confmat", torch.zeros(c, c, dtype=torch.int64))
        self._add_sum_state("bin_count", torch.zeros(nb, dtype=torch.int64))
        self._add_sum_state("bin_conf", torch.zeros(nb, dtype=torch.float64))
        self._add_sum_state("bin_correct", torch.zeros(nb, dtype=torch.int64))

    def update(self, logits: Tensor, target: Tensor) -> None:
        """Add a batch: ``logits`` (B, C) finite float, ``target`` (B,) int in ``[0, C)``."""
        lg, tg, _ = _checked(logits, target, self.num_classes)
        lg = check_finite("logits", lg.detach(), _FINITE_WHY)
        self.confmat += _confusion(lg, tg, self.num_classes)
        count, conf, correct = _ece_bin_sums(lg, tg, self.n_bins)
        self.bin_count += count
        self.bin_conf += conf
        self.bin_correct += correct

    def compute(self) -> dict[str, float]:
        recall = _recall_from_confusion(self.confmat)
        shots = _shot_from_recall(recall, self.groups)
        return {
            "balanced_accuracy": _nanmean(recall),
            "accuracy": _accuracy_from_confusion(self.confmat),
            "many": shots["many"],
            "medium": shots["medium"],
            "few": shots["few"],
            "ece": _ece_from_bins(self.bin_count, self.bin_conf, self.bin_correct),
        }

    def per_class(self) -> Tensor:
        """Per-class accuracy (C,) float64, NaN for classes not seen; synchronised like ``compute()``."""
        with self._synced():
            return _recall_from_confusion(self.confmat)

    def confusion(self) -> Tensor:
        """Confusion matrix (C, C) int64 (rows true, columns predicted); synchronised like ``compute()``."""
        with self._synced():
            return self.confmat.clone()

    def reliability_diagram_data(self) -> dict[str, Tensor]:
        """Per-bin ECE data (see :func:`~longtail.metrics.reliability_diagram_data`), synchronised."""
        with self._synced():
            return _reliability(self.bin_count, self.bin_conf, self.bin_correct)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, shot_mode={self.shot_mode!r}, n_bins={self.n_bins}"
