"""Asymmetric loss (ASL) for multi-label classification, and its single-label variant.

Ridnik, Ben-Baruch, Zamir, Noy, Friedman, Protter, Zelnik-Manor. "Asymmetric Loss For Multi-Label
Classification". ICCV 2021.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import (
    Reduction,
    check_interval,
    check_multilabel,
    check_nonnegative,
    check_reduction,
    check_single_label,
    ignore_mask,
    reduce_loss,
    upcast,
)
from ._elementwise import asymmetric_elementwise, asymmetric_single_label_rows

__all__ = [
    "AsymmetricLoss",
    "AsymmetricSingleLabelLoss",
    "asymmetric_loss",
    "asymmetric_single_label_loss",
]


def _check_clip(clip: float) -> float:
    return check_interval("clip", clip, 0.0, 1.0, low_closed=True, high_closed=False)


def asymmetric_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    detach_focusing: bool = False,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Asymmetric loss (ASL), element-wise over labels.

    With :math:`p = \sigma(z)` and the shifted probability :math:`p_m = \max(p - m, 0)`:

    .. math::
        L_+ = (1 - p)^{\gamma_+} \log p, \qquad
        L_- = p_m^{\gamma_-} \log(1 - p_m), \qquad
        \ell = -\bigl(y L_+ + (1 - y) L_-\bigr)

    ``log p`` and ``log(1 - p)`` come from ``logsigmoid`` (no ``eps`` clamp, so nothing underflows to
    ``log 0`` under float16 and the loss is exact for logits of +-1e4); with ``m > 0``,
    ``log(1 - p_m) = log(min(sigma(-z) + m, 1))`` is bounded below by ``log m``. The focusing weights are
    differentiated, as in the paper's gradient analysis; ``detach_focusing=True`` treats them as constants
    (the official code's ``disable_torch_grad_focal_loss``, done here with ``.detach()`` rather than a
    global autograd switch).

    Identities: ``gamma_pos = gamma_neg = 0, clip = 0`` is binary cross-entropy;
    ``clip = 0, gamma_pos = gamma_neg = g`` is :func:`sigmoid_focal_loss` with ``alpha=None``.

    Args:
        logits: ``(N, C)`` (any shape works) float logits.
        targets: same shape, floats in ``[0, 1]``; ``-1`` marks an unknown label, excluded from the loss
            and from the ``"mean"`` denominator (training with partial labels). Soft targets weight the
            two terms linearly.
        gamma_pos: focusing of positives, ``>= 0`` (paper recipe 0; the official class default is 1).
        gamma_neg: focusing of negatives, ``>= 0`` (4).
        clip: probability margin ``m`` in ``[0, 1)`` (0.05).
        detach_focusing: stop gradients through the focusing weights.
        reduction: ``"none"``, ``"sum"`` (the official code's reduction), or ``"mean"``: the sum divided
            by the number of known entries (``N * C`` without unknowns), i.e. the official loss divided by
            ``N * C``.

    Example:
        >>> from longtail.losses import asymmetric_loss
        >>> logits = torch.tensor([[3.0, -2.0, 0.5], [-1.0, 1.0, 0.0]])
        >>> targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
        >>> round(asymmetric_loss(logits, targets).item(), 4)
        0.2437
        >>> bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
        >>> plain = asymmetric_loss(logits, targets, gamma_neg=0.0, clip=0.0)  # no focusing
        >>> torch.allclose(plain, bce)
        True
    """
    check_reduction(reduction)
    gamma_pos = check_nonnegative("gamma_pos", gamma_pos)
    gamma_neg = check_nonnegative("gamma_neg", gamma_neg)
    clip = _check_clip(clip)
    z, y, maybe_unknown = check_multilabel(logits, targets)
    z = upcast(z)
    y = y.to(z.dtype)
    detach = bool(detach_focusing)
    if not maybe_unknown:
        loss = asymmetric_elementwise(z, y, gamma_pos, gamma_neg, clip, detach)
        return reduce_loss(loss, reduction, loss.numel())
    known = y != -1
    loss = asymmetric_elementwise(z, y.clamp_min(0.0), gamma_pos, gamma_neg, clip, detach)
    loss = loss * known
    return reduce_loss(loss, reduction, known.sum())


class AsymmetricLoss(nn.Module):
    """Module twin of :func:`asymmetric_loss`.

    Example:
        >>> from longtail.losses import AsymmetricLoss, asymmetric_loss
        >>> logits = torch.tensor([[3.0, -2.0, 0.5], [-1.0, 1.0, 0.0]])
        >>> targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, -1.0, 1.0]])  # -1: unknown label
        >>> criterion = AsymmetricLoss(gamma_neg=4.0, clip=0.05)
        >>> torch.equal(criterion(logits, targets), asymmetric_loss(logits, targets))
        True
    """

    def __init__(
        self,
        *,
        gamma_pos: float = 0.0,
        gamma_neg: float = 4.0,
        clip: float = 0.05,
        detach_focusing: bool = False,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.gamma_pos = check_nonnegative("gamma_pos", gamma_pos)
        self.gamma_neg = check_nonnegative("gamma_neg", gamma_neg)
        self.clip = _check_clip(clip)
        self.detach_focusing = bool(detach_focusing)
        self.reduction: Reduction = reduction

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return asymmetric_loss(
            logits,
            targets,
            gamma_pos=self.gamma_pos,
            gamma_neg=self.gamma_neg,
            clip=self.clip,
            detach_focusing=self.detach_focusing,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"gamma_pos={self.gamma_pos}, gamma_neg={self.gamma_neg}, clip={self.clip}, "
            f"reduction={self.reduction!r}"
        )


def asymmetric_single_label_loss(
    logits: Tensor,
    target: Tensor,
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    label_smoothing: float = 0.1,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Single-label (softmax) ASL, the variant of the official code.

    With :math:`\log p = \operatorname{log\_softmax}(z)`, each class's log-probability is re-weighted
    asymmetrically and a label-smoothed cross-entropy is taken:

    .. math::
        a_c = \begin{cases}(1 - p_c)^{\gamma_+} & c = y\\ p_c^{\gamma_-} & c \ne y\end{cases}, \qquad
        \ell = -\sum_c \tilde y_c\, a_c \log p_c, \quad
        \tilde y = (1 - \varepsilon)\,\mathrm{onehot}(y) + \varepsilon / C

    ``gamma_pos = gamma_neg = 0`` is cross-entropy with label smoothing ``label_smoothing``.

    Args:
        logits: ``(N, C)``; target: ``(N,)`` class indices or ``ignore_index``.
        gamma_pos, gamma_neg: focusing of the true class and of the others (0 and 4).
        label_smoothing: ``epsilon`` in ``[0, 1)`` (0.1).
        reduction: ``"mean"`` divides by the number of non-ignored samples.

    Example:
        >>> from longtail.losses import asymmetric_single_label_loss
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [0.0, -0.5, 1.0]])
        >>> target = torch.tensor([0, 2, 2])
        >>> round(asymmetric_single_label_loss(logits, target).item(), 4)
        0.7297
        >>> plain = asymmetric_single_label_loss(logits, target, gamma_neg=0.0, label_smoothing=0.1)
        >>> ce = torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.1)
        >>> torch.allclose(plain, ce)  # zero gammas: label-smoothed cross-entropy
        True
    """
    check_reduction(reduction)
    gamma_pos = check_nonnegative("gamma_pos", gamma_pos)
    gamma_neg = check_nonnegative("gamma_neg", gamma_neg)
    eps = check_interval(
        "label_smoothing", label_smoothing, 0.0, 1.0, low_closed=True, high_closed=False
    )
    z, t = check_single_label(logits, target, ignore_index=ignore_index)
    return _asl_single(z, t, gamma_pos, gamma_neg, eps, ignore_index, reduction)


def _asl_single(
    z: Tensor,
    t: Tensor,
    gamma_pos: float,
    gamma_neg: float,
    eps: float,
    ignore_index: int,
    reduction: str,
) -> Tensor:
    z = upcast(z)
    valid, t_safe = ignore_mask(t, ignore_index)
    loss = asymmetric_single_label_rows(z, t_safe, gamma_pos, gamma_neg, eps)
    loss = torch.where(valid, loss, torch.zeros_like(loss))
    return reduce_loss(loss, reduction, valid.sum())


class AsymmetricSingleLabelLoss(nn.Module):
    """Module twin of :func:`asymmetric_single_label_loss`.

    Example:
        >>> from longtail.losses import AsymmetricSingleLabelLoss
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [0.0, -0.5, 1.0]])
        >>> target = torch.tensor([0, 2, 2])
        >>> criterion = AsymmetricSingleLabelLoss(reduction="none")
        >>> criterion(logits, target).shape
        torch.Size([3])
    """

    def __init__(
        self,
        *,
        gamma_pos: float = 0.0,
        gamma_neg: float = 4.0,
        label_smoothing: float = 0.1,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.gamma_pos = check_nonnegative("gamma_pos", gamma_pos)
        self.gamma_neg = check_nonnegative("gamma_neg", gamma_neg)
        self.label_smoothing = check_interval(
            "label_smoothing", label_smoothing, 0.0, 1.0, low_closed=True, high_closed=False
        )
        self.ignore_index = int(ignore_index)
        self.reduction: Reduction = reduction

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return asymmetric_single_label_loss(
            logits,
            target,
            gamma_pos=self.gamma_pos,
            gamma_neg=self.gamma_neg,
            label_smoothing=self.label_smoothing,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )
