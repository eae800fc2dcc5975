"""Encouraging loss (EL): cross-entropy plus a bonus for confident correct predictions.

Zhao, Zhang, Wang, Sun, Wang. "Well-classified Examples are Underestimated in Classification with Deep
Neural Networks". AAAI 2022.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import (
    Reduction,
    VectorLike,
    buffer_vector,
    check_class_weight,
    check_interval,
    check_reduction,
    check_single_label,
    ignore_mask,
    reduce_loss,
    upcast,
)

__all__ = ["EncouragingLoss", "encouraging_loss"]

_MIN_ONE_MINUS_P = 1e-5  # clamp of 1 - p in the plain bonus (official value)


def _check_log_end(log_end: float) -> float:
    return check_interval("log_end", log_end, 0.0, 1.0, low_closed=False, high_closed=True)


def encouraging_loss(
    logits: Tensor,
    target: Tensor,
    *,
    log_end: float = 0.75,
    weight: VectorLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Encouraging loss with the conservative bonus.

    .. math::
        \ell_i = w_{y_i}\bigl(-\log p_{y_i} + b(p_{y_i})\bigr), \qquad
        b(p) = \begin{cases}
            \log(\max(1 - p, 10^{-5})) & p \le \mathrm{LE} \\
            \log(1 - \mathrm{LE}) - \dfrac{p - \mathrm{LE}}{1 - \mathrm{LE}} & p > \mathrm{LE}
        \end{cases}

    ``b`` is the bonus ``log(1 - p)`` replaced beyond the *log end* LE by its tangent at LE, so it stays
    bounded; ``LE = 1`` is the plain bonus. The loss is negative for confident predictions: that is
    expected (its minimum is not 0). The bonus is differentiated. For long-tailed data combine it with
    a re-balancing method: pass class weights (e.g. deferred re-weighting) as ``weight``, or pass
    logit-adjusted logits ``z + tau log pi``.

    Args:
        logits: ``(N, C)``; target: ``(N,)`` class indices or ``ignore_index``.
        log_end: LE in ``(0, 1]`` (official default 0.75).
        weight: optional per-class weights ``(C,)``.
        reduction: ``"mean"`` divides ``sum_i w_{y_i} l_i`` by the number of non-ignored samples.

    Example:
        >>> from longtail.losses import encouraging_loss
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [0.0, -0.5, 1.0]])
        >>> target = torch.tensor([0, 2, 2])
        >>> ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
        >>> loss = encouraging_loss(logits, target, reduction="none")
        >>> bool((loss <= ce).all())  # the bonus only lowers the loss
        True
        >>> round(encouraging_loss(logits, target).item(), 4)
        -0.131
    """
    check_reduction(reduction)
    log_end = _check_log_end(log_end)
    z, t = check_single_label(logits, target, ignore_index=ignore_index)
    w = None if weight is None else check_class_weight("weight", weight, z.shape[1], z.device)
    return _el(z, t, log_end, w, ignore_index, reduction)


def _el(
    z: Tensor,
    t: Tensor,
    log_end: float,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
) -> Tensor:
    z = upcast(z)
    valid, safe = ignore_mask(t, ignore_index)
    log_p = F.log_softmax(z, dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)
    p = log_p.exp()
    bonus = torch.log((-torch.expm1(log_p)).clamp_min(_MIN_ONE_MINUS_P))
    if log_end < 1.0:
        tangent = math.log(1.0 - log_end) - (p - log_end) / (1.0 - log_end)
        bonus = torch.where(p > log_end, tangent, bonus)
    loss = bonus - log_p
    if weight is not None:
        loss = loss * weight.to(loss.dtype)[safe]
    loss = torch.where(valid, loss, torch.zeros_like(loss))
    return reduce_loss(loss, reduction, valid.sum())


class EncouragingLoss(nn.Module):
    """Module twin of :func:`encouraging_loss`; ``weight`` is a buffer (replace with :meth:`set_weight`).

    Example:
        >>> from longtail.losses import EncouragingLoss, encouraging_loss
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [0.0, -0.5, 1.0]])
        >>> target = torch.tensor([0, 2, 2])
        >>> criterion = EncouragingLoss(log_end=0.75)
        >>> torch.equal(criterion(logits, target), encouraging_loss(logits, target, log_end=0.75))
        True
    """

    weight: Tensor | None

    def __init__(
        self,
        *,
        log_end: float = 0.75,
        weight: VectorLike | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.log_end = _check_log_end(log_end)
        self.ignore_index = int(ignore_index)
        self.reduction: Reduction = reduction
        self.register_buffer("weight", None if weight is None else buffer_vector("weight", weight))

    def set_weight(self, weight: VectorLike | None) -> None:
        """Replace the per-class weights (``None`` for unweighted)."""
        self.weight = None if weight is None else buffer_vector("weight", weight)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return encouraging_loss(
            logits,
            target,
            log_end=self.log_end,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return f"log_end={self.log_end}, reduction={self.reduction!r}"
