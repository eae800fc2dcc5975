"""Classifier heads.

:class:`CosineClassifier` is the normalised linear layer LDAM (Cao et al. 2019) trains with: its logits
are cosine similarities in ``[-1, 1]``, which :func:`longtail.losses.ldam_loss` shifts by a margin and
scales by ``s``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CosineClassifier", "LearnableWeightScaling"]


class CosineClassifier(nn.Module):
    r"""Cosine (normalised) linear classifier: :math:`z_c = \frac{x \cdot w_c}{\|x\| \|w_c\|} \cdot s`.

    Args:
        in_features: feature dimension ``D``.
        num_classes: number of classes ``C``.
        scale: multiplier ``s`` of the cosine logits. Default 1, so that the output is the cosine that
            :func:`~longtail.losses.ldam_loss` expects (it applies its own ``scale``).
        eps: added to the norms (``F.normalize``), so a zero feature vector gives zero logits.

    Shapes: input ``(N, D)``, output ``(N, C)``. ``weight`` is ``(C, D)`` like ``nn.Linear``, so
    :func:`longtail.adjust.tau_normalize` applies to it unchanged.
    """

    def __init__(
        self, in_features: int, num_classes: int, *, scale: float = 1.0, eps: float = 1e-12
    ) -> None:
        super().__init__()
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise ValueError(f"in_features must be a positive int, got {in_features!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        self.in_features = in_features
        self.num_classes = num_classes
        self.scale = float(scale)
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"x must have shape (N, {self.in_features}), got {tuple(x.shape)}")
        cos = F.linear(
            F.normalize(x, dim=1, eps=self.eps), F.normalize(self.weight, dim=1, eps=self.eps)
        )
        return cos * self.scale if self.scale != 1.0 else cos

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}, scale={self.scale}"


class LearnableWeightScaling(nn.Module):
    r"""Learnable weight scaling (LWS) of a trained linear classifier (Kang et al., ICLR 2020).

    .. math:: z_c = f_c\,(w_c^\top x + b_c)

    One scale ``f_c`` per class, initialised to 1, multiplies the logit of the wrapped classifier
    (bias included, as the official code does). The wrapped ``linear`` is kept as is; freeze it to
    train the scales only.

    Args:
        linear: the classifier ``nn.Linear(D, C)``.

    Shape: ``(N, D) -> (N, C)``.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        self.linear = linear
        self.scales = nn.Parameter(torch.ones(linear.out_features))

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.linear(x) * self.scales
        return out
