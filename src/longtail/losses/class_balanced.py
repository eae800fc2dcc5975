"""Class weights from class counts, class-balanced losses and deferred re-weighting.

Cui, Jia, Lin, Song, Belongie. "Class-Balanced Loss Based on Effective Number of Samples". CVPR 2019.
Cao, Wei, Gaidon, Arechiga, Ma. "Learning Imbalanced Datasets with Label-Distribution-Aware Margin
Loss". NeurIPS 2019 (deferred re-weighting, DRW).
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import torch
from torch import Tensor, nn

from ._common import (
    CountsLike,
    Reduction,
    as_vector,
    check_class_counts,
    check_interval,
    check_nonnegative,
    check_reduction,
    check_single_label,
    ignore_mask,
    reduce_loss,
    skip_value_checks,
    upcast,
    weighted_cross_entropy,
)
from .focal import _sigmoid_focal

__all__ = [
    "ClassBalancedLoss",
    "DeferredReweighting",
    "class_balanced_loss",
    "class_balanced_weights",
    "inverse_frequency_weights",
    "inverse_sqrt_frequency_weights",
]

LossType: TypeAlias = Literal["softmax", "sigmoid", "focal"]
_LOSS_TYPES = ("softmax", "sigmoid", "focal")


def _check_beta(beta: float) -> float:
    return check_interval("beta", beta, 0.0, 1.0, low_closed=True, high_closed=False)


def _normalise(w: Tensor) -> Tensor:
    return (w * (w.numel() / w.sum())).to(torch.float32)


def _nonnegative_counts(class_counts: CountsLike) -> Tensor:
    """Whole-dataset counts, one entry ``>= 0`` per class (a class may have none), as float64."""
    counts = as_vector("class_counts", class_counts).to(torch.float64)
    if counts.numel() == 0:
        raise ValueError("class_counts must not be empty")
    if not skip_value_checks() and bool((counts < 0).any()):
        bad = int(torch.nonzero(counts < 0)[0, 0])
        raise ValueError(
            f"class_counts must be >= 0 for every class; class {bad} has {counts[bad].item():g}"
        )
    return counts


def class_balanced_weights(class_counts: CountsLike, *, beta: float = 0.9999) -> Tensor:
    r"""Class-balanced weights from the effective number of samples (Cui et al. 2019).

    .. math::
        E_{n} = \frac{1 - \beta^{\max(n, 1)}}{1 - \beta}, \qquad
        w_c = \frac{C \,/\, E_{n_c}}{\sum_k 1 / E_{n_k}}

    so that ``sum(w) == C``. ``beta = 0`` gives all ones; ``beta -> 1`` tends to inverse frequency.
    Computed in float64 (``1 - beta^n`` as ``-expm1(n log beta)``), returned as float32.

    **A class with no example** (``n = 0``; e.g. a multi-label label without a training positive)
    is weighted as a class with one: the paper's :math:`E_0 = 0` has no finite inverse (the
    official code divides by it and its normalisation then gives NaN for that class and 0 for every
    other), so :math:`E_0 := E_1 = 1` for every ``beta``, the smallest effective number and the
    largest weight: a class with none is at least as rare as the rarest possible one, the weights
    keep falling as ``n`` grows, stay finite, and still sum to ``C``. In a multi-label loss such a
    label's terms are all negatives, so this weight pushes it towards "absent" as strongly as the
    rarest label.

    Args:
        class_counts: ``(C,)`` whole training-set counts (never mini-batch counts); every entry
            ``>= 0`` (``0``: see above).
        beta: in ``[0, 1)``; the paper's grid is {0.9, 0.99, 0.999, 0.9999}. Default 0.9999.

    Example:
        >>> from longtail.losses import class_balanced_weights
        >>> w = class_balanced_weights([500, 50, 5], beta=0.999)  # (1 - beta) / (1 - beta^n), sum C
        >>> [round(x, 4) for x in w.tolist()]
        [0.0341, 0.2752, 2.6907]
        >>> class_balanced_weights([500, 50, 5], beta=0.0).tolist()  # beta = 0: no re-weighting
        [1.0, 1.0, 1.0]
        >>> w = class_balanced_weights([500, 0, 1], beta=0.999)  # n = 0 weighs as n = 1
        >>> [round(x, 4) for x in w.tolist()]
        [0.0038, 1.4981, 1.4981]
    """
    beta = _check_beta(beta)
    counts = _nonnegative_counts(class_counts)
    if beta == 0.0:
        return torch.ones_like(counts, dtype=torch.float32)
    log_beta = torch.log(torch.tensor(beta, dtype=torch.float64))
    effective = -torch.expm1(counts.clamp_min(1.0) * log_beta) / (1.0 - beta)
    return _normalise(1.0 / effective)


def inverse_frequency_weights(class_counts: CountsLike) -> Tensor:
    r"""``w_c \propto 1 / n_c``, normalised so that ``sum(w) == C``.

    Example:
        >>> from longtail.losses import inverse_frequency_weights
        >>> [round(w, 4) for w in inverse_frequency_weights([300, 100, 50]).tolist()]  # sum C
        [0.3, 0.9, 1.8]
    """
    return _normalise(1.0 / check_class_counts(class_counts))


def inverse_sqrt_frequency_weights(class_counts: CountsLike) -> Tensor:
    r"""``w_c \propto 1 / \sqrt{n_c}``, normalised so that ``sum(w) == C``.

    Example:
        >>> from longtail.losses import inverse_sqrt_frequency_weights
        >>> w = inverse_sqrt_frequency_weights([400, 100, 25])
        >>> [round(x, 4) for x in w.tolist()]  # proportional to 1/20, 1/10, 1/5
        [0.4286, 0.8571, 1.7143]
    """
    return _normalise(check_class_counts(class_counts).rsqrt())


def _check_loss_type(loss_type: object) -> LossType:
    if loss_type not in _LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {_LOSS_TYPES}, got {loss_type!r}")
    return loss_type  # type: ignore[return-value]


def class_balanced_loss(
    logits: Tensor,
    target: Tensor,
    *,
    class_counts: CountsLike,
    beta: float = 0.9999,
    loss_type: LossType = "softmax",
    gamma: float = 1.0,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Class-balanced softmax, sigmoid or focal loss (Cui et al. 2019, eq. 5-7).

    Every sample is weighted by the class-balanced weight of its true class,
    :math:`w_{y} =` :func:`class_balanced_weights` ``(class_counts, beta)[y]``, applied to all of its
    ``C`` terms in the sigmoid forms (as the official code does):

    - ``"softmax"``: :math:`w_y \cdot \mathrm{CE}(z, y)`;
    - ``"sigmoid"``: :math:`w_y \sum_c \mathrm{BCE}(z_c, [c = y])` (one-vs-all);
    - ``"focal"``: :math:`w_y \sum_c \mathrm{FL}_\gamma(z_c, [c = y])`, the sigmoid focal loss without
      ``alpha`` (modulator ``exp(-gamma y z - gamma log(1 + e^{-z}))``).

    ``beta = 0`` gives the unweighted loss.

    Args:
        logits: ``(N, C)``; target: ``(N,)`` class indices or ``ignore_index``.
        class_counts: ``(C,)`` training counts, all positive.
        beta: ``[0, 1)``, default 0.9999.
        loss_type: ``"softmax"`` (default), ``"sigmoid"`` or ``"focal"``.
        gamma: focusing parameter of ``"focal"``, ``>= 0`` (default 1.0; the paper tunes it in
            {0.5, 1, 2}).
        reduction: ``"none"`` gives ``(N,)`` per-sample losses (summed over classes for the sigmoid
            forms); ``"mean"`` divides their sum by the number of non-ignored samples ``N`` (the paper's
            convention: the official code divides by the number of positive labels, which is ``N``).

    Example:
        >>> from longtail.losses import class_balanced_loss
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [0.0, -0.5, 1.0]])
        >>> target = torch.tensor([0, 2, 2])
        >>> counts = torch.tensor([500.0, 50.0, 5.0])  # training samples per class
        >>> round(class_balanced_loss(logits, target, class_counts=counts, beta=0.999).item(), 4)
        1.8873
        >>> ce = torch.nn.functional.cross_entropy(logits, target)
        >>> torch.allclose(class_balanced_loss(logits, target, class_counts=counts, beta=0.0), ce)
        True
    """
    check_reduction(reduction)
    beta = _check_beta(beta)
    loss_type = _check_loss_type(loss_type)
    gamma = check_nonnegative("gamma", gamma)
    z, t = check_single_label(logits, target, ignore_index=ignore_index)
    weights = class_balanced_weights(
        check_class_counts(class_counts, num_classes=z.shape[1]), beta=beta
    ).to(z.device)
    return _cb(z, t, weights, loss_type, gamma, ignore_index, reduction)


def _cb(
    z: Tensor,
    t: Tensor,
    weights: Tensor,
    loss_type: str,
    gamma: float,
    ignore_index: int,
    reduction: str,
) -> Tensor:
    if loss_type == "softmax":
        return weighted_cross_entropy(z, t, weights, ignore_index, reduction)
    z = upcast(z)
    valid, safe = ignore_mask(t, ignore_index)
    # One-hot by scatter: F.one_hot reads the labels' min and max on the host (CPU), which the
    # already validated ``safe`` indices do not need.
    onehot = z.new_zeros(z.shape).scatter_(1, safe.unsqueeze(1), 1.0)
    g = gamma if loss_type == "focal" else 0.0
    per_elem = _sigmoid_focal(z, onehot, g, None, "none", maybe_unknown=False)
    loss = per_elem.sum(1) * weights.to(z.dtype)[safe]
    loss = torch.where(valid, loss, torch.zeros_like(loss))
    return reduce_loss(loss, reduction, valid.sum())


class ClassBalancedLoss(nn.Module):
    """Module twin of :func:`class_balanced_loss`; the class weights are a buffer.

    Example:
        >>> from longtail.losses import ClassBalancedLoss
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [0.0, -0.5, 1.0]])
        >>> target = torch.tensor([0, 2, 2])
        >>> criterion = ClassBalancedLoss(class_counts=[500, 50, 5], beta=0.999, loss_type="focal")
        >>> round(criterion(logits, target).item(), 4)
        2.3647
    """

    weights: Tensor

    def __init__(
        self,
        *,
        class_counts: CountsLike,
        beta: float = 0.9999,
        loss_type: LossType = "softmax",
        gamma: float = 1.0,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.beta = _check_beta(beta)
        self.loss_type: LossType = _check_loss_type(loss_type)
        self.gamma = check_nonnegative("gamma", gamma)
        self.ignore_index = int(ignore_index)
        self.reduction: Reduction = reduction
        counts = check_class_counts(class_counts)  # single-label: every class needs an example
        self.register_buffer("weights", class_balanced_weights(counts, beta=self.beta))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        z, t = check_single_label(logits, target, ignore_index=self.ignore_index)
        if z.shape[1] != self.weights.shape[0]:
            raise ValueError(
                f"logits have {z.shape[1]} classes but class_counts has {self.weights.shape[0]}"
            )
        return _cb(
            z, t, self.weights, self.loss_type, self.gamma, self.ignore_index, self.reduction
        )

    def extra_repr(self) -> str:
        return f"beta={self.beta}, loss_type={self.loss_type!r}, gamma={self.gamma}"


class DeferredReweighting:
    """Deferred re-weighting (DRW) schedule: no weights first, class-balanced weights later.

    Cao et al. (2019) train unweighted and switch to class-balanced weights (``beta = 0.9999``) for the
    last part of training (epoch 160 of 200 in the official code, i.e. the last 20%). The training engine
    calls :meth:`weight` at the start of each epoch and passes the result as the loss's ``weight``.

    Args:
        class_counts: ``(C,)`` training counts, positive.
        total_epochs: number of training epochs, ``>= 1``.
        start_epoch: first (0-based) epoch with weights; default ``int(0.8 * total_epochs)``.
        beta: of :func:`class_balanced_weights` (0.9999).

    Example:
        >>> drw = DeferredReweighting([100, 10], total_epochs=10)
        >>> drw.weight(7) is None, drw.weight(8).shape
        (True, torch.Size([2]))
    """

    def __init__(
        self,
        class_counts: CountsLike,
        *,
        total_epochs: int,
        start_epoch: int | None = None,
        beta: float = 0.9999,
    ) -> None:
        if isinstance(total_epochs, bool) or not isinstance(total_epochs, int) or total_epochs < 1:
            raise ValueError(f"total_epochs must be an int >= 1, got {total_epochs!r}")
        if start_epoch is None:
            start_epoch = int(0.8 * total_epochs)
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
            raise ValueError(f"start_epoch must be an int >= 0, got {start_epoch!r}")
        self.total_epochs = total_epochs
        self.start_epoch = start_epoch
        self.beta = _check_beta(beta)
        self.weights = class_balanced_weights(check_class_counts(class_counts), beta=self.beta)

    def weight(self, epoch: int) -> Tensor | None:
        """Class weights for 0-based ``epoch``: ``None`` before ``start_epoch``, CB weights after."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        return None if epoch < self.start_epoch else self.weights.clone()

    __call__ = weight

    def __repr__(self) -> str:
        return (
            f"DeferredReweighting(total_epochs={self.total_epochs}, start_epoch={self.start_epoch}, "
            f"beta={self.beta})"
        )
