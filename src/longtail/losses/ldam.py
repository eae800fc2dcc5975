"""Label-distribution-aware margin (LDAM) loss.

Cao, Wei, Gaidon, Arechiga, Ma. "Learning Imbalanced Datasets with Label-Distribution-Aware Margin
Loss". NeurIPS 2019.
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
    check_positive,
    check_reduction,
    check_single_label,
    weighted_cross_entropy,
)

__all__ = ["LDAMLoss", "ldam_loss", "ldam_margins"]


def ldam_margins(class_counts: CountsLike, *, max_margin: float = 0.5) -> Tensor:
    r"""Per-class margins :math:`m_c \propto n_c^{-1/4}`, rescaled so that the largest is ``max_margin``.

    Example:
        >>> from longtail.losses import ldam_margins
        >>> ldam_margins([10000, 625, 16], max_margin=0.5)  # n^(-1/4): 0.1, 0.2, 0.5
        tensor([0.1000, 0.2000, 0.5000])
    """
    max_margin = check_positive("max_margin", max_margin)
    counts = check_class_counts(class_counts)
    m = counts.pow(-0.25)
    return (m * (max_margin / m.max())).to(torch.float32)


def ldam_loss(
    logits: Tensor,
    target: Tensor,
    *,
    class_counts: CountsLike,
    max_margin: float = 0.5,
    scale: float = 30.0,
    weight: VectorLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""LDAM loss on cosine logits.

    .. math::
        \ell_i = -\,w_{y_i} \log \frac{e^{s (z_{i,y_i} - m_{y_i})}}
                 {e^{s (z_{i,y_i} - m_{y_i})} + \sum_{c \ne y_i} e^{s z_{i,c}}},
        \qquad m_c = \texttt{max\_margin} \cdot \frac{n_c^{-1/4}}{\max_k n_k^{-1/4}}

    ``logits`` should be cosine similarities from a normalised classifier
    (:class:`longtail.heads.CosineClassifier`); predict with ``argmax`` of those cosines. Usually trained
    with deferred re-weighting (:class:`DeferredReweighting`, passing its weights as ``weight``).

    Args:
        logits: ``(N, C)`` cosine logits in ``[-1, 1]`` (not checked).
        target: ``(N,)`` class indices or ``ignore_index``.
        class_counts: ``(C,)`` training counts, positive.
        max_margin: the largest margin, ``> 0`` (0.5).
        scale: ``s > 0`` (30).
        weight: optional per-class weights.
        reduction: ``"mean"`` divides ``sum_i w_{y_i} l_i`` by the number of non-ignored samples (the
            official code uses ``F.cross_entropy(weight=...)``, which divides by the weight sum).

    Example:
        >>> from longtail.losses import ldam_loss
        >>> cosine = torch.tensor([[0.9, 0.1, -0.2], [0.0, 0.5, 0.3], [-0.1, 0.2, 0.4]])
        >>> target = torch.tensor([0, 2, 2])
        >>> round(ldam_loss(cosine, target, class_counts=[500, 50, 5]).item(), 4)
        10.0001
    """
    check_reduction(reduction)
    scale = check_positive("scale", scale)
    z, t = check_single_label(logits, target, ignore_index=ignore_index)
    margins = ldam_margins(
        check_class_counts(class_counts, num_classes=z.shape[1]), max_margin=max_margin
    )
    w = None if weight is None else check_class_weight("weight", weight, z.shape[1], z.device)
    return _ldam(z, t, margins, scale, w, ignore_index, reduction)


def _ldam(
    z: Tensor,
    t: Tensor,
    margins: Tensor,
    scale: float,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
) -> Tensor:
    z = z.float() if z.dtype in (torch.float16, torch.bfloat16) else z
    valid = t != ignore_index
    safe = torch.where(valid, t, torch.zeros_like(t)).unsqueeze(1)
    m = margins.to(device=z.device, dtype=z.dtype)[safe]
    # s * z with s * m_y subtracted at the true class (in place on the fresh product).
    shifted = (z * scale).scatter_add_(1, safe, m.mul(-scale))
    return weighted_cross_entropy(shifted, t, weight, ignore_index, reduction)


class LDAMLoss(nn.Module):
    """Module twin of :func:`ldam_loss`; the margins and ``weight`` are buffers.

    ``weight`` may be replaced between epochs (deferred re-weighting) with :meth:`set_weight`.

    Example:
        >>> from longtail.losses import CosineClassifier, LDAMLoss
        >>> _ = torch.manual_seed(0)
        >>> head = CosineClassifier(8, 3)  # cosine logits in [-1, 1]
        >>> criterion = LDAMLoss(class_counts=[500, 50, 5], max_margin=0.5, scale=30.0)
        >>> loss = criterion(head(torch.randn(4, 8)), torch.tensor([0, 1, 2, 2]))
        >>> loss.shape, bool(loss > 0)
        (torch.Size([]), True)
    """

    margins: Tensor
    weight: Tensor | None

    def __init__(
        self,
        *,
        class_counts: CountsLike,
        max_margin: float = 0.5,
        scale: float = 30.0,
        weight: VectorLike | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.scale = check_positive("scale", scale)
        self.max_margin = check_positive("max_margin", max_margin)
        self.register_buffer("margins", ldam_margins(class_counts, max_margin=max_margin))
        self.ignore_index = int(ignore_index)
        self.reduction: Reduction = reduction
        self.register_buffer("weight", None)
        self.set_weight(weight)

    def set_weight(self, weight: VectorLike | None) -> None:
        """Replace the per-class weights (``None`` for unweighted)."""
        if weight is None:
            self.weight = None
            return
        w = buffer_vector("weight", weight).to(self.margins.device)
        if w.shape[0] != self.margins.shape[0]:
            raise ValueError(
                f"weight must have one entry per class ({self.margins.shape[0]}), got {w.shape[0]}"
            )
        self.weight = w

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        z, t = check_single_label(logits, target, ignore_index=self.ignore_index)
        if z.shape[1] != self.margins.shape[0]:
            raise ValueError(
                f"logits have {z.shape[1]} classes but class_counts has {self.margins.shape[0]}"
            )
        return _ldam(z, t, self.margins, self.scale, self.weight, self.ignore_index, self.reduction)

    def extra_repr(self) -> str:
        return f"max_margin={self.max_margin}, scale={self.scale}, reduction={self.reduction!r}"
