"""Logit-adjusted loss, Balanced Softmax and the pairwise-margin loss they generalise to.

Menon, Jayasumana, Rawat, Jain, Veit, Kumar. "Long-tail learning via logit adjustment". ICLR 2021.
Ren, Yu, Sheng, Ma, Zhao, Yi, Li. "Balanced Meta-Softmax for Long-Tailed Visual Recognition".
NeurIPS 2020.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import (
    CountsLike,
    Reduction,
    VectorLike,
    buffer_vector,
    check_class_counts,
    check_class_weight,
    check_nonnegative,
    check_reduction,
    check_single_label,
    log_prior,
    reduce_loss,
    skip_value_checks,
    weighted_cross_entropy,
)

__all__ = [
    "BalancedSoftmaxLoss",
    "LogitAdjustedLoss",
    "PairwiseMarginLoss",
    "balanced_softmax_loss",
    "logit_adjusted_loss",
    "logit_adjustment_margins",
    "pairwise_margin_loss",
]


def logit_adjusted_loss(
    logits: Tensor,
    target: Tensor,
    *,
    class_counts: CountsLike,
    tau: float = 1.0,
    weight: VectorLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Logit-adjusted softmax cross-entropy (Menon et al. 2021, eq. 10).

    .. math::
        \ell_i = -\,w_{y_i} \log \frac{e^{z_{i,y_i} + \tau \log \pi_{y_i}}}
                                       {\sum_c e^{z_{i,c} + \tau \log \pi_c}},
        \qquad \pi_c = n_c / \textstyle\sum_k n_k

    Train with this loss and predict with the *unadjusted* ``argmax z``. ``tau = 0`` is cross-entropy;
    ``tau = 1`` is Balanced Softmax (Ren et al. 2020). The prior uses ``tau * log(pi)`` exactly (no
    ``+1e-12``: zero counts are rejected).

    Args:
        logits: ``(N, C)``; target: ``(N,)`` class indices or ``ignore_index``.
        class_counts: ``(C,)`` whole training-set counts, all positive.
        tau: scaling of the adjustment, ``>= 0`` (1).
        weight: optional per-class weights ``(C,)``.
        reduction: ``"mean"`` divides ``sum_i w_{y_i} l_i`` by the number of non-ignored samples (unlike
            ``F.cross_entropy(weight=...)``, which divides by the sum of the weights).

    Example:
        >>> from longtail.losses import logit_adjusted_loss
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [0.0, -0.5, 1.0]])
        >>> target = torch.tensor([0, 2, 2])
        >>> counts = torch.tensor([500.0, 50.0, 5.0])  # training samples per class
        >>> round(logit_adjusted_loss(logits, target, class_counts=counts, tau=1.0).item(), 4)
        2.822
        >>> ce = torch.nn.functional.cross_entropy(logits, target)
        >>> torch.allclose(logit_adjusted_loss(logits, target, class_counts=counts, tau=0.0), ce)
        True
    """
    check_reduction(reduction)
    tau = check_nonnegative("tau", tau)
    z, t = check_single_label(logits, target, ignore_index=ignore_index)
    counts = check_class_counts(class_counts, num_classes=z.shape[1])
    w = None if weight is None else check_class_weight("weight", weight, z.shape[1], z.device)
    return _la(z, t, log_prior(counts), tau, w, ignore_index, reduction)


def _la(
    z: Tensor,
    t: Tensor,
    log_pi: Tensor,
    tau: float,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
) -> Tensor:
    if tau != 0:
        z = z.float() if z.dtype in (torch.float16, torch.bfloat16) else z
        z = z + (tau * log_pi).to(device=z.device, dtype=z.dtype)
    return weighted_cross_entropy(z, t, weight, ignore_index, reduction)


class LogitAdjustedLoss(nn.Module):
    """Module twin of :func:`logit_adjusted_loss`; the log-prior and ``weight`` are buffers.

    Example:
        >>> from longtail.losses import LogitAdjustedLoss
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [0.0, -0.5, 1.0]])
        >>> target = torch.tensor([0, 2, 2])
        >>> criterion = LogitAdjustedLoss(class_counts=[500, 50, 5], tau=1.0)
        >>> round(criterion(logits, target).item(), 4)
        2.822
    """

    weight: Tensor | None
    log_prior: Tensor

    def __init__(
        self,
        *,
        class_counts: CountsLike,
        tau: float = 1.0,
        weight: VectorLike | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.tau = check_nonnegative("tau", tau)
        counts = check_class_counts(class_counts)
        self.ignore_index = int(ignore_index)
        self.reduction: Reduction = reduction
        self.register_buffer("log_prior", log_prior(counts).to(torch.float32))
        self.register_buffer("weight", None if weight is None else buffer_vector("weight", weight))
        if self.weight is not None and self.weight.shape[0] != counts.shape[0]:
            raise ValueError(
                f"weight must have one entry per class ({counts.shape[0]}), got {self.weight.shape[0]}"
            )

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        check_reduction(self.reduction)
        z, t = check_single_label(logits, target, ignore_index=self.ignore_index)
        if z.shape[1] != self.log_prior.shape[0]:
            raise ValueError(
                f"logits have {z.shape[1]} classes but class_counts has {self.log_prior.shape[0]}"
            )
        return _la(z, t, self.log_prior, self.tau, self.weight, self.ignore_index, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, num_classes={self.log_prior.shape[0]}, reduction={self.reduction!r}"
        )


def balanced_softmax_loss(
    logits: Tensor,
    target: Tensor,
    *,
    class_counts: CountsLike,
    weight: VectorLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Balanced Softmax (Ren et al. 2020): softmax CE on ``z + log pi``.

    Identical to :func:`logit_adjusted_loss` with ``tau = 1``; see there for the arguments.

    Example:
        >>> from longtail.losses import balanced_softmax_loss, logit_adjusted_loss
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [0.0, -0.5, 1.0]])
        >>> target = torch.tensor([0, 2, 2])
        >>> counts = torch.tensor([500.0, 50.0, 5.0])  # training samples per class
        >>> loss = balanced_softmax_loss(logits, target, class_counts=counts)
        >>> round(loss.item(), 4)
        2.822
        >>> torch.allclose(loss, logit_adjusted_loss(logits, target, class_counts=counts, tau=1.0))
        True
    """
    return logit_adjusted_loss(
        logits,
        target,
        class_counts=class_counts,
        tau=1.0,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
    )


class BalancedSoftmaxLoss(LogitAdjustedLoss):
    """Module twin of :func:`balanced_softmax_loss` (a :class:`LogitAdjustedLoss` with ``tau = 1``).

    Example:
        >>> from longtail.losses import BalancedSoftmaxLoss
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [0.0, -0.5, 1.0]])
        >>> target = torch.tensor([0, 2, 2])
        >>> criterion = BalancedSoftmaxLoss(class_counts=[500, 50, 5])
        >>> round(criterion(logits, target).item(), 4)
        2.822
    """

    def __init__(
        self,
        *,
        class_counts: CountsLike,
        weight: VectorLike | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(
            class_counts=class_counts,
            tau=1.0,
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
        )


def logit_adjustment_margins(class_counts: CountsLike, *, tau: float = 1.0) -> Tensor:
    r"""Pairwise margins :math:`\Delta_{y y'} = \tau \log(\pi_{y'} / \pi_y)` of the LA loss, ``(C, C)``.

    With :func:`pairwise_margin_loss` and ``alpha = 1`` these give exactly :func:`logit_adjusted_loss`.

    Example:
        >>> from longtail.losses import logit_adjustment_margins
        >>> delta = logit_adjustment_margins([100, 10], tau=1.0)  # tau * log(pi_j / pi_i)
        >>> delta.shape, round(delta[0, 1].item(), 4), round(delta[1, 0].item(), 4)
        (torch.Size([2, 2]), -2.3026, 2.3026)
    """
    tau = check_nonnegative("tau", tau)
    lp = log_prior(check_class_counts(class_counts))
    return (tau * (lp.unsqueeze(0) - lp.unsqueeze(1))).to(torch.float32)


def _check_delta(delta: object, num_classes: int | None) -> Tensor:
    if not isinstance(delta, Tensor):
        raise TypeError(f"delta must be a (C, C) torch.Tensor, got {type(delta).__name__}")
    if delta.ndim != 2 or delta.shape[0] != delta.shape[1]:
        raise ValueError(f"delta must be a square (C, C) matrix, got shape {tuple(delta.shape)}")
    if num_classes is not None and delta.shape[0] != num_classes:
        raise ValueError(f"delta must be ({num_classes}, {num_classes}), got {tuple(delta.shape)}")
    if not delta.is_floating_point():
        delta = delta.to(torch.float32)
    return delta


def pairwise_margin_loss(
    logits: Tensor,
    target: Tensor,
    *,
    delta: Tensor,
    alpha: VectorLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Pairwise-margin loss, the generalisation of logit adjustment (Menon et al. 2021, eq. 11).

    .. math::
        \ell_i = \alpha_{y_i} \log\Bigl(1 + \sum_{y' \ne y_i}
                 e^{\Delta_{y_i y'}}\, e^{z_{i,y'} - z_{i,y_i}}\Bigr)

    which equals ``alpha_y * CE(z + Delta[y], y)`` once the diagonal of ``Delta`` is taken as 0 (the
    diagonal is ignored). Special cases: ``alpha = 1, Delta = logit_adjustment_margins(counts, tau)`` is
    the LA loss; ``alpha_y = 1 / pi_y, Delta = 0`` is the balanced (re-weighted) loss; margins such as
    ``Delta_{y y'} = pi_y^{-1/4}`` give LDAM-like adaptive margins.

    Args:
        logits: ``(N, C)``; target: ``(N,)`` class indices or ``ignore_index``.
        delta: ``(C, C)`` margins, row = true class.
        alpha: optional per-class weights ``(C,)`` (default all ones).
        reduction: ``"mean"`` divides by the number of non-ignored samples.

    Example:
        >>> from longtail.losses import logit_adjusted_loss, logit_adjustment_margins
        >>> from longtail.losses import pairwise_margin_loss
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [0.0, -0.5, 1.0]])
        >>> target = torch.tensor([0, 2, 2])
        >>> counts = torch.tensor([500.0, 50.0, 5.0])  # training samples per class
        >>> delta = logit_adjustment_margins(counts, tau=1.0)  # LA as a pairwise-margin loss
        >>> loss = pairwise_margin_loss(logits, target, delta=delta)
        >>> round(loss.item(), 4)
        2.822
        >>> torch.allclose(loss, logit_adjusted_loss(logits, target, class_counts=counts))
        True
    """
    check_reduction(reduction)
    z, t = check_single_label(logits, target, ignore_index=ignore_index)
    d = _check_delta(delta, z.shape[1])
    a = None if alpha is None else check_class_weight("alpha", alpha, z.shape[1], z.device)
    return _pairwise(z, t, d, a, ignore_index, reduction)


def _pairwise(
    z: Tensor, t: Tensor, delta: Tensor, alpha: Tensor | None, ignore_index: int, reduction: str
) -> Tensor:
    z = z.float() if z.dtype in (torch.float16, torch.bfloat16) else z
    valid = t != ignore_index
    safe = torch.where(valid, t, torch.zeros_like(t))
    idx = safe.unsqueeze(1)
    # z + Delta[y] with the diagonal entry Delta[y, y] ignored (the true logit keeps its value):
    # the gathered rows are a fresh tensor outside autograd, so zeroing their diagonal is free.
    rows = delta[safe].to(z.dtype)
    rows = rows.scatter(1, idx, 0.0) if rows.requires_grad else rows.scatter_(1, idx, 0.0)
    shifted = z + rows
    loss = weighted_cross_entropy(shifted, t, alpha, ignore_index, "none")
    return reduce_loss(loss, reduction, valid.sum())


class PairwiseMarginLoss(nn.Module):
    """Module twin of :func:`pairwise_margin_loss`; ``delta`` and ``alpha`` are buffers.

    Example:
        >>> from longtail.losses import PairwiseMarginLoss
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [0.0, -0.5, 1.0]])
        >>> target = torch.tensor([0, 2, 2])
        >>> criterion = PairwiseMarginLoss(delta=torch.zeros(3, 3))  # no margin: cross-entropy
        >>> ce = torch.nn.functional.cross_entropy(logits, target)
        >>> torch.allclose(criterion(logits, target), ce)
        True
    """

    delta: Tensor
    alpha: Tensor | None

    def __init__(
        self,
        *,
        delta: Tensor,
        alpha: VectorLike | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        d = _check_delta(delta, None)
        if not skip_value_checks() and not bool(torch.isfinite(d).all()):
            raise ValueError("delta must be finite")
        self.ignore_index = int(ignore_index)
        self.reduction: Reduction = reduction
        self.register_buffer("delta", d.detach().clone())
        a = None if alpha is None else buffer_vector("alpha", alpha)
        if a is not None and a.shape[0] != d.shape[0]:
            raise ValueError(
                f"alpha must have one entry per class ({d.shape[0]}), got {a.shape[0]}"
            )
        self.register_buffer("alpha", a)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return pairwise_margin_loss(
            logits,
            target,
            delta=self.delta,
            alpha=self.alpha,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )
