"""Focal loss, softmax (multi-class) and sigmoid (binary / multi-label) forms.

Lin, Goyal, Girshick, He, Dollár. "Focal Loss for Dense Object Detection". ICCV 2017.
"""

from __future__ import annotations

from torch import Tensor, nn

from ._common import (
    Reduction,
    VectorLike,
    buffer_vector,
    check_class_weight,
    check_interval,
    check_multilabel,
    check_nonnegative,
    check_reduction,
    check_single_label,
    ignore_mask,
    reduce_loss,
    upcast,
)
from ._elementwise import sigmoid_focal_elementwise, softmax_focal_rows

__all__ = ["FocalLoss", "SigmoidFocalLoss", "focal_loss", "sigmoid_focal_loss"]


def _check_alpha_scalar(alpha: float | None) -> float | None:
    if alpha is None:
        return None
    return check_interval("alpha", alpha, 0.0, 1.0, low_closed=True, high_closed=True)


def focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    alpha: VectorLike | None = None,
    weight: VectorLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Softmax focal loss for single-label classification.

    .. math::
        \ell_i = -\,\alpha_{y_i}\, w_{y_i}\, (1 - p_{i,y_i})^{\gamma} \log p_{i,y_i},
        \qquad p_i = \operatorname{softmax}(z_i)

    ``log p`` comes from ``log_softmax``; ``1 - p`` is computed as ``-expm1(log p)`` (accurate as
    ``p -> 1``) and clamped to the smallest normal float, so the loss and its gradient stay finite for
    any ``gamma >= 0`` and logits of +-1e4. ``gamma = 0`` with ``alpha = None`` is cross-entropy exactly.

    Args:
        logits: ``(N, C)`` unnormalised scores (any float dtype; computed in float32 for half/bf16).
        target: ``(N,)`` integer class indices in ``[0, C)`` or ``ignore_index``.
        gamma: focusing parameter, ``>= 0``. Default 2 (the paper's).
        alpha: optional per-class balancing factor ``(C,)`` (e.g. inverse frequency).
        weight: optional per-class weight ``(C,)``; multiplies like ``alpha``.
        ignore_index: target value whose samples contribute nothing (loss 0 under ``"none"``).
        reduction: ``"none"`` gives ``(N,)``; ``"sum"``; ``"mean"`` divides the weighted sum by the
            number of non-ignored samples, **not** by the sum of their weights as
            ``F.cross_entropy(weight=...)`` does. An empty batch gives 0.

    Returns:
        The loss, float32 (float64 for float64 logits).

    Example:
        >>> import torch
        >>> from longtail.losses import focal_loss
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [0.0, -0.5, 1.0]])
        >>> target = torch.tensor([0, 2, 2])
        >>> round(focal_loss(logits, target, gamma=2.0).item(), 4)
        0.379
        >>> ce = torch.nn.functional.cross_entropy(logits, target)
        >>> torch.allclose(focal_loss(logits, target, gamma=0.0), ce)  # gamma = 0: cross-entropy
        True
    """
    check_reduction(reduction)
    gamma = check_nonnegative("gamma", gamma)
    z, t = check_single_label(logits, target, ignore_index=ignore_index)
    num_classes = z.shape[1]
    a = None if alpha is None else check_class_weight("alpha", alpha, num_classes, z.device)
    w = None if weight is None else check_class_weight("weight", weight, num_classes, z.device)
    return _focal(z, t, gamma, a, w, ignore_index, reduction)


def _focal(
    z: Tensor,
    t: Tensor,
    gamma: float,
    alpha: Tensor | None,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
) -> Tensor:
    z = upcast(z)
    valid, t_safe = ignore_mask(t, ignore_index)
    w = valid.to(z.dtype)
    if alpha is not None:
        w = w * alpha.to(z.dtype)[t_safe]
    if weight is not None:
        w = w * weight.to(z.dtype)[t_safe]
    loss = softmax_focal_rows(z, t_safe, gamma, w)
    return reduce_loss(loss, reduction, valid.sum())


class FocalLoss(nn.Module):
    """Module twin of :func:`focal_loss`; ``alpha`` and ``weight`` are buffers.

    Example:
        >>> import torch
        >>> from longtail.losses import FocalLoss, focal_loss
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [0.0, -0.5, 1.0]])
        >>> target = torch.tensor([0, 2, 2])
        >>> criterion = FocalLoss(gamma=2.0, reduction="none")
        >>> criterion(logits, target).shape
        torch.Size([3])
        >>> torch.equal(criterion(logits, target), focal_loss(logits, target, reduction="none"))
        True
    """

    alpha: Tensor | None
    weight: Tensor | None

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        alpha: VectorLike | None = None,
        weight: VectorLike | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.gamma = check_nonnegative("gamma", gamma)
        self.ignore_index = int(ignore_index)
        self.reduction: Reduction = reduction
        self.register_buffer("alpha", None if alpha is None else buffer_vector("alpha", alpha))
        self.register_buffer("weight", None if weight is None else buffer_vector("weight", weight))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return focal_loss(
            logits,
            target,
            gamma=self.gamma,
            alpha=self.alpha,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, reduction={self.reduction!r}"


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | None = 0.25,
    weight: VectorLike | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Sigmoid focal loss, element-wise (binary, multi-label, dense detection).

    .. math::
        \ell_{ic} = w_c\, \alpha_t\, (1 - p_t)^{\gamma}\, \mathrm{BCE}(z_{ic}, y_{ic}), \quad
        (1 - p_t)^{\gamma} = \exp\bigl(-\gamma\, [y \operatorname{softplus}(z)
        + (1 - y) \operatorname{softplus}(-z)]\bigr), \quad
        \alpha_t = \alpha y + (1 - \alpha)(1 - y)

    The modulating factor is evaluated in log space (the stable form of the paper's Appendix), so
    logits of +-1e4 give finite values and gradients, and ``gamma < 1`` has no infinite derivative.
    Loss and gradient are computed without cancellation, so they keep their relative accuracy in the
    tails (e.g. a confident correct prediction at ``|z| = 40`` in float32). ``gamma = 0`` with
    ``alpha = None`` is ``binary_cross_entropy_with_logits``, and with ``weight=w`` it is
    ``binary_cross_entropy_with_logits(..., weight=w)``.

    Args:
        logits: any shape ``(..., C)``, float.
        targets: same shape, floats in ``[0, 1]``; ``-1`` marks an unknown entry (partial labels): it is
            left out of the loss and of the ``"mean"`` denominator.
        gamma: focusing parameter ``>= 0`` (default 2).
        alpha: weight of positives in ``[0, 1]`` (negatives get ``1 - alpha``); ``None`` disables it.
            Default 0.25 (the paper's).
        weight: optional per-label weight ``w`` of shape ``(C,)`` (the last dimension of
            ``logits``), finite and ``>= 0``; it multiplies every element of label ``c``, positives
            and negatives alike (e.g. class-balanced weights from each label's positive count).
            Default ``None``.
        reduction: ``"none"`` (same shape as ``logits``, 0 at unknown entries), ``"sum"``, or
            ``"mean"``: the sum, weighted if ``weight`` is given, divided by the number of known
            entries (``N * C`` without unknowns, like ``F.binary_cross_entropy_with_logits``), **not**
            by the sum of the weights. An empty input gives 0.

    Example:
        >>> import torch
        >>> from longtail.losses import sigmoid_focal_loss
        >>> logits = torch.tensor([[3.0, -2.0, 0.5], [-1.0, 1.0, 0.0]])
        >>> targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, -1.0, 1.0]])  # -1: unknown label
        >>> loss = sigmoid_focal_loss(logits, targets, reduction="none")
        >>> loss.shape, loss[1, 1].item()
        (torch.Size([2, 3]), 0.0)
        >>> round(sigmoid_focal_loss(logits, targets).item(), 4)  # mean over the 5 known labels
        0.0157
    """
    check_reduction(reduction)
    gamma = check_nonnegative("gamma", gamma)
    alpha = _check_alpha_scalar(alpha)
    z, y, maybe_unknown = check_multilabel(logits, targets)
    w = None if weight is None else _check_label_weight(weight, z)
    return _sigmoid_focal(z, y, gamma, alpha, reduction, maybe_unknown, w)


def _check_label_weight(weight: VectorLike, z: Tensor) -> Tensor:
    if z.ndim == 0:
        raise ValueError("weight needs logits with a label dimension (the last), got a 0-d tensor")
    return check_class_weight("weight", weight, z.shape[-1], z.device)


def _sigmoid_focal(
    z: Tensor,
    y: Tensor,
    gamma: float,
    alpha: float | None,
    reduction: str,
    maybe_unknown: bool = True,
    weight: Tensor | None = None,
) -> Tensor:
    z = upcast(z)
    y = y.to(z.dtype)
    if not maybe_unknown:
        loss = sigmoid_focal_elementwise(z, y, gamma, alpha)
        if weight is not None:
            loss = loss * weight.to(z.dtype)
        return reduce_loss(loss, reduction, loss.numel())
    known = y != -1
    loss = sigmoid_focal_elementwise(z, y.clamp_min(0.0), gamma, alpha)
    loss = loss * known if weight is None else loss * (known * weight.to(z.dtype))
    return reduce_loss(loss, reduction, known.sum())


class SigmoidFocalLoss(nn.Module):
    """Module twin of :func:`sigmoid_focal_loss`; ``weight`` is a buffer.

    Example:
        >>> import torch
        >>> from longtail.losses import SigmoidFocalLoss
        >>> logits = torch.tensor([[3.0, -2.0, 0.5], [-1.0, 1.0, 0.0]])
        >>> targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, -1.0, 1.0]])  # -1: unknown label
        >>> criterion = SigmoidFocalLoss(weight=[1.0, 2.0, 1.0])  # a buffer: moves with .to()
        >>> [name for name, _ in criterion.named_buffers()]
        ['weight']
        >>> round(criterion(logits, targets).item(), 4)
        0.016
    """

    weight: Tensor | None

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        alpha: float | None = 0.25,
        weight: VectorLike | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.gamma = check_nonnegative("gamma", gamma)
        self.alpha = _check_alpha_scalar(alpha)
        self.reduction: Reduction = reduction
        self.register_buffer("weight", None if weight is None else buffer_vector("weight", weight))

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return sigmoid_focal_loss(
            logits,
            targets,
            gamma=self.gamma,
            alpha=self.alpha,
            weight=self.weight,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}, reduction={self.reduction!r}"
