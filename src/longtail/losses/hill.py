"""Hill loss for multi-label learning with missing labels.

Zhang, Cheng, Huang, Wen, Feng, Li, Guo. "Simple and Robust Loss Design for Multi-Label Learning
with Missing Labels". arXiv:2112.07368, 2021. Official code: github.com/xinyu1205/robust-loss-mlml.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from ._common import (
    Reduction,
    check_interval,
    check_multilabel,
    check_nonnegative,
    check_reduction,
    reduce_loss,
    upcast,
)
from ._elementwise import hill_elementwise

__all__ = ["HillLoss", "hill_loss"]


def _check_lamb(lamb: float) -> float:
    # lamb - p weights the negative's MSE-like p^2: it must be >= 0 for every p in [0, 1].
    return check_interval("lamb", lamb, 1.0, math.inf, low_closed=True, high_closed=False)


def hill_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    lamb: float = 1.5,
    margin: float = 1.0,
    gamma: float = 2.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Hill loss: a hill-shaped robust loss for negatives, a focal-margin loss for positives.

    With :math:`p = \sigma(z)` and the margin-shifted :math:`p_m = \sigma(z - m)`:

    .. math::
        L_+ = -(1 - p_m)^{\gamma} \log p_m, \qquad
        L_- = (\lambda - p)\, p^2, \qquad
        \ell = y\, L_+ + (1 - y)\, L_-

    Negatives get the MSE-like :math:`p^2` re-weighted by :math:`\lambda - p` (the paper's
    "Hill"): with :math:`\lambda = 1.5`, :math:`dL_-/dp = 3p(1 - p)` is a hill, largest at
    :math:`p = 0.5` and zero at :math:`p = 0` and :math:`p = 1`, so negatives the model is confident
    about (:math:`p` near 1, likely missing positives) get small gradients, and
    :math:`L_- \le \lambda - 1 = 0.5` (binary cross-entropy is unbounded there). The weight
    :math:`\lambda - p` is below 1 (the loss below MSE) exactly when :math:`p > \lambda - 1`.
    Positives get the focal loss of the logit shifted by the margin :math:`m`, which keeps pushing
    them past :math:`z = m`.

    Checked against the official code (``src/loss_functions/losses.py``, class ``Hill``, in
    github.com/xinyu1205/robust-loss-mlml, unchanged since its first commit e8d4eff). It
    computes ``pred_pos = sigmoid(logits - margin)`` and ``pred_neg = sigmoid(logits)`` (the margin
    shifts the positive term only), the focal weight ``((1 - pred_pos) * y + (1 - y)) ** gamma`` (1 for
    negatives: the negative term is not focused), **not** detached (its gradient flows, as here),
    ``los_pos = y * log(pred_pos)``, ``los_neg = (1 - y) * -(lamb - pred_neg) * pred_neg ** 2`` and
    ``loss = -(los_pos + los_neg) * focal_weight``, with defaults ``lamb=1.5, margin=1.0,
    gamma=2.0`` and ``reduction="sum"`` (its ``"mean"`` averages over all ``N * C`` entries).
    Differences here: ``log p_m`` is ``logsigmoid(z - m)`` (the official ``log(sigmoid(.))`` is
    ``-inf`` for ``z - m`` below about -89 in float32: an infinite loss for a positive, and NaN from
    ``0 * -inf`` for a negative); every term is computed without cancellation (``1 - p`` as
    ``sigma(-z)``, ``lamb - p`` as ``(lamb - 1) + sigma(-z)``) in a fused kernel with an analytic
    gradient; targets of ``-1`` are unknown; soft targets blend ``L+`` and ``L-`` linearly (the
    official code would also scale the negative term of a soft target by the positive's focal
    weight; for 0/1 targets the two agree).

    Args:
        logits: ``(N, C)`` (any shape works) float logits.
        targets: same shape, floats in ``[0, 1]``; ``-1`` marks an unknown label, excluded from the
            loss and from the ``"mean"`` denominator.
        lamb: :math:`\lambda`, finite and ``>= 1`` so that the weight :math:`\lambda - p` is
            non-negative on ``[0, 1]`` (default 1.5, the paper's; it was not tuned there).
        margin: :math:`m >= 0` subtracted from the logits of positives (default 1.0; the official
            code recommends 0.5 to 1.0).
        gamma: focusing parameter of the positive term, ``>= 0`` (default 2).
        reduction: ``"none"`` (same shape as ``logits``, 0 at unknown entries), ``"sum"`` (the
            official code's reduction), or ``"mean"``: the sum divided by the number of known entries
            (``N * C`` without unknowns). An empty input gives 0.

    Returns:
        The loss, float32 (float64 for float64 logits; half and bfloat16 are upcast).

    Example:
        >>> import torch
        >>> from longtail.losses import hill_loss
        >>> logits = torch.tensor([[3.0, -2.0, 0.5], [-1.0, 1.0, 0.0]])
        >>> targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, -1.0, 1.0]])  # -1: unknown label
        >>> loss = hill_loss(logits, targets, reduction="none")
        >>> loss.shape, loss[1, 1].item()  # the unknown label costs nothing
        (torch.Size([2, 3]), 0.0)
        >>> round(hill_loss(logits, targets).item(), 4)
        0.2379
    """
    check_reduction(reduction)
    lamb = _check_lamb(lamb)
    margin = check_nonnegative("margin", margin)
    gamma = check_nonnegative("gamma", gamma)
    z, y, maybe_unknown = check_multilabel(logits, targets)
    z = upcast(z)
    y = y.to(z.dtype)
    if not maybe_unknown:
        loss = hill_elementwise(z, y, lamb, margin, gamma)
        return reduce_loss(loss, reduction, loss.numel())
    known = y != -1
    loss = hill_elementwise(z, y.clamp_min(0.0), lamb, margin, gamma) * known
    return reduce_loss(loss, reduction, known.sum())


class HillLoss(nn.Module):
    """Module twin of :func:`hill_loss`.

    Example:
        >>> import torch
        >>> from longtail.losses import HillLoss, hill_loss
        >>> logits = torch.tensor([[3.0, -2.0, 0.5], [-1.0, 1.0, 0.0]])
        >>> targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, -1.0, 1.0]])  # -1: unknown label
        >>> criterion = HillLoss(lamb=1.5, margin=1.0, gamma=2.0)
        >>> torch.equal(criterion(logits, targets), hill_loss(logits, targets))
        True
    """

    def __init__(
        self,
        *,
        lamb: float = 1.5,
        margin: float = 1.0,
        gamma: float = 2.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.lamb = _check_lamb(lamb)
        self.margin = check_nonnegative("margin", margin)
        self.gamma = check_nonnegative("gamma", gamma)
        self.reduction: Reduction = reduction

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return hill_loss(
            logits,
            targets,
            lamb=self.lamb,
            margin=self.margin,
            gamma=self.gamma,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"lamb={self.lamb}, margin={self.margin}, gamma={self.gamma}, "
            f"reduction={self.reduction!r}"
        )
