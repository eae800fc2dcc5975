"""Open-set losses on feature distances: reciprocal points (RPL, ARPL, ARPL+CS) and prototypes (GCPL).

Chen, Qiao, Zhang, Liu, Peng, Tian. "Learning Open Set Network with Discriminative Reciprocal Points",
ECCV 2020 (RPL). Chen, Peng, Wang, Tian. "Adversarial Reciprocal Points Learning for Open Set
Recognition", TPAMI 2021 (ARPL, ARPL+CS). Yang, Zhang, Yin, Liu. "Robust Classification with
Convolutional Prototype Learning", CVPR 2018 (GCPL).

Every loss takes the backbone's ``features`` ``(N, D)``, the targets ``(N,)`` and the head's learnable
tensors (``points`` / ``prototypes`` ``(C, M, D)``, ``radius``), so gradients reach all of them; the
heads are :class:`longtail.heads.ReciprocalPointHead` and :class:`longtail.heads.PrototypeHead`.
Distances are those of :func:`longtail.heads.reciprocal_distances` (mean over a class's ``M`` points of
the squared distance divided by ``D``, as the official code computes them, with ``M > 1`` indexed per
class). The cross-entropy part is ``log_softmax`` of ``logits / temperature + adjustment``; the optional
``adjustment`` ``(C,)`` is a logit adjustment such as ``tau * log(prior)`` (Menon et al. ICLR 2021) for
long-tailed known classes: it enters the training loss only, the head's logits stay unadjusted.
The distances are computed in float32 (float64 for float64 inputs) with autocast off, so under bf16
autocast the loss equals the float32 loss of the same inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..heads import _check_points, prototype_distances, reciprocal_distances
from ._common import (
    Reduction,
    VectorLike,
    as_vector,
    autocast_off,
    check_nonnegative,
    check_positive,
    check_reduction,
    check_single_label,
    reduce_loss,
)

__all__ = [
    "ARPLLoss",
    "ConfusingSampleLoss",
    "GCPLLoss",
    "RPLLoss",
    "arpl_loss",
    "confusing_sample_loss",
    "gcpl_loss",
    "rpl_loss",
]


def _upcast(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _check_common(
    features: object,
    target: object,
    points: object,
    points_name: str,
    temperature: float,
    weight_name: str,
    weight: float,
    reduction: str,
) -> tuple[Tensor, Tensor, Tensor, float, float]:
    """Validate the arguments shared by the losses (before any work); errors name the argument."""
    check_reduction(reduction)
    t = check_positive("temperature", temperature)
    w = check_nonnegative(weight_name, weight)
    features, points = _check_points(features, points, points_name)
    # the target is checked against (N, C) logits without allocating them
    shape_only = features.new_empty(()).expand(features.shape[0], points.shape[0])
    _, y = check_single_label(shape_only, target, logits_name="features / points")
    return _upcast(features), y, _upcast(points), t, w


def _check_radius(radius: object, like: Tensor) -> Tensor:
    if isinstance(radius, bool):
        raise TypeError(f"radius must be a tensor or a real number, got {radius!r}")
    if isinstance(radius, (int, float)):
        return torch.as_tensor(float(radius), dtype=like.dtype, device=like.device)
    if not isinstance(radius, Tensor):
        raise TypeError(f"radius must be a tensor or a real number, got {type(radius).__name__}")
    if not radius.is_floating_point() or radius.numel() != 1:
        raise ValueError(
            f"radius must be a floating-point tensor with one element, got dtype {radius.dtype} "
            f"and shape {tuple(radius.shape)}"
        )
    return _upcast(radius.reshape(()))


def _adjust(logits: Tensor, adjustment: VectorLike | None) -> Tensor:
    if adjustment is None:
        return logits
    a = as_vector("adjustment", adjustment, length=logits.shape[1], device=logits.device)
    return logits + a.to(logits.dtype)


def _cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Per-sample ``-log_softmax(logits)[y]`` (an empty batch gives an empty vector)."""
    return -F.log_softmax(logits, dim=1).gather(1, y.unsqueeze(1)).squeeze(1)


def rpl_loss(
    features: Tensor,
    target: Tensor,
    points: Tensor,
    radius: Tensor | float,
    *,
    temperature: float = 1.0,
    open_weight: float = 0.1,
    adjustment: VectorLike | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Reciprocal point learning (RPL): cross-entropy on the distances plus the open-space term.

    .. math::
        \ell_i = -\log \operatorname{softmax}\Bigl(\frac{d^{l2}_i}{T} + a\Bigr)_{y_i}
                 + \lambda \bigl(d^{l2}_{i y_i} - R\bigr)^2

    ``d^{l2}`` (:func:`longtail.heads.reciprocal_distances`) are the logits: a sample is pushed away
    from its own class's reciprocal points; the open-space term (official code: ``F.mse_loss`` of the
    own-class distance against the learnable radius ``R``, which starts at 0) bounds how far, so that
    the space far from every reciprocal point, where no training sample lies, stays small.

    Args:
        features: ``(N, D)`` backbone features.
        target: ``(N,)`` class indices in ``[0, C)``.
        points: ``(C, M, D)`` reciprocal points (``M >= 1`` per class).
        radius: the learnable radius ``R`` (a one-element tensor) or a number.
        temperature: ``T > 0`` (official default 1).
        open_weight: ``lambda >= 0`` (official default 0.1).
        adjustment: optional ``(C,)`` added to the scaled logits inside the cross-entropy.
        reduction: ``"mean"`` divides the sum of ``l_i`` by ``N`` (0 for an empty batch).

    Example:
        >>> from longtail.losses import rpl_loss
        >>> features = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
        >>> target = torch.tensor([0, 1, 1])
        >>> points = torch.tensor([[[0.5, 0.5]], [[-0.5, 0.0]]])  # (C=2, M=1, D=2)
        >>> radius = torch.tensor(0.5)
        >>> round(rpl_loss(features, target, points, radius).item(), 4)
        1.2162
        >>> rpl_loss(features, target, points, radius, reduction="none").shape
        torch.Size([3])
    """
    x, y, p, t, w = _check_common(
        features, target, points, "points", temperature, "open_weight", open_weight, reduction
    )
    r = _check_radius(radius, x)
    with autocast_off(x.device):
        l2, _ = reciprocal_distances(x, p)
    ce = _cross_entropy(_adjust(l2 / t, adjustment), y)
    own = l2.gather(1, y.unsqueeze(1)).squeeze(1)
    return reduce_loss(ce + w * (own - r).pow(2), reduction, y.shape[0])


def arpl_loss(
    features: Tensor,
    target: Tensor,
    points: Tensor,
    radius: Tensor | float,
    *,
    temperature: float = 1.0,
    open_weight: float = 0.1,
    margin: float = 1.0,
    adjustment: VectorLike | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Adversarial reciprocal point learning (ARPL): cross-entropy plus a margin on the radius.

    .. math::
        \ell_i = -\log \operatorname{softmax}\Bigl(\frac{d^{l2}_i - d^{dot}_i}{T} + a\Bigr)_{y_i}
                 + \lambda \max\bigl(0,\ d^{l2}_{i y_i} - R + \mathrm{margin}\bigr)

    The logits are ``d_l2 - d_dot`` (:func:`longtail.heads.reciprocal_logits` with ``kind="arpl"``);
    the open-space term is the official ``MarginRankingLoss(margin=1)(R, d_own, 1)``.

    Args:
        features, target, points, radius, temperature, adjustment: as :func:`rpl_loss`.
        open_weight: ``lambda >= 0`` (official default 0.1).
        margin: ``>= 0`` (official 1).
        reduction: ``"mean"`` divides the sum of ``l_i`` by ``N`` (0 for an empty batch).

    Example:
        >>> from longtail.losses import arpl_loss
        >>> from longtail.heads import ReciprocalPointHead
        >>> _ = torch.manual_seed(0)
        >>> head = ReciprocalPointHead(2, 2, kind="arpl")  # learnable points and radius
        >>> features = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
        >>> target = torch.tensor([0, 1, 1])
        >>> loss = arpl_loss(features, target, head.points, head.radius, margin=1.0)
        >>> loss.backward()
        >>> head.points.grad.shape, head.radius.grad.shape
        (torch.Size([2, 1, 2]), torch.Size([]))
    """
    x, y, p, t, w = _check_common(
        features, target, points, "points", temperature, "open_weight", open_weight, reduction
    )
    m = check_nonnegative("margin", margin)
    r = _check_radius(radius, x)
    with autocast_off(x.device):
        l2, dot = reciprocal_distances(x, p)
    ce = _cross_entropy(_adjust((l2 - dot) / t, adjustment), y)
    own = l2.gather(1, y.unsqueeze(1)).squeeze(1)
    return reduce_loss(ce + w * F.relu(own - r + m), reduction, y.shape[0])


def gcpl_loss(
    features: Tensor,
    target: Tensor,
    prototypes: Tensor,
    *,
    temperature: float = 1.0,
    prototype_weight: float = 0.1,
    adjustment: VectorLike | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Generalised convolutional prototype learning (GCPL): distance-based cross-entropy plus the
    prototype loss.

    .. math::
        g_{ic} = -\min_m \frac{\lVert x_i - m_{cm} \rVert^2}{D}, \qquad
        \ell_i = -\log \operatorname{softmax}\Bigl(\frac{g_i}{T} + a\Bigr)_{y_i}
                 - \frac{\lambda}{2}\, g_{i y_i}

    The prototype loss pulls each sample to the nearest prototype of its class; with ``M = 1`` it is
    the ARPL code's GCPL baseline (``F.mse_loss(x, m_y) / 2``, weight 0.1).

    Args:
        features: ``(N, D)``; target: ``(N,)``; prototypes: ``(C, M, D)``.
        temperature: ``T > 0`` (default 1).
        prototype_weight: ``lambda >= 0`` (default 0.1).
        adjustment: optional ``(C,)`` added to the scaled logits inside the cross-entropy.
        reduction: ``"mean"`` divides the sum of ``l_i`` by ``N`` (0 for an empty batch).

    Example:
        >>> from longtail.losses import gcpl_loss
        >>> features = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
        >>> target = torch.tensor([0, 1, 1])
        >>> points = torch.tensor([[[0.5, 0.5]], [[-0.5, 0.0]]])  # (C=2, M=1, D=2)
        >>> round(gcpl_loss(features, target, points, prototype_weight=0.1).item(), 4)
        0.6339
    """
    x, y, p, t, w = _check_common(
        features,
        target,
        prototypes,
        "prototypes",
        temperature,
        "prototype_weight",
        prototype_weight,
        reduction,
    )
    with autocast_off(x.device):
        dist = prototype_distances(x, p).amin(dim=2)  # (N, C)
    ce = _cross_entropy(_adjust(-dist / t, adjustment), y)
    own = dist.gather(1, y.unsqueeze(1)).squeeze(1)
    return reduce_loss(ce + 0.5 * w * own, reduction, y.shape[0])


def confusing_sample_loss(features: Tensor, points: Tensor) -> Tensor:
    r"""ARPL+CS's loss on generated confusing samples: ``exp(-mean_i H(softmax(d^{l2}_i)))``.

    ``H`` is the entropy of the softmax over the classes of the distances ``d^{l2}``
    (:func:`longtail.heads.reciprocal_distances`) of a generated sample; minimising the loss makes
    generated samples equally far from every class's reciprocal points (the official
    ``ARPLoss.fake_loss``: ``exp(mean_i sum_c p log p)``). The classifier minimises it on generated
    samples, and so does the generator (plus its GAN loss), so the generated samples lie in the open
    space at the boundary of the known classes. The loss is defined on a whole batch (the exponential
    of a mean), so it has no ``reduction``; an empty batch gives 0 (with a gradient).

    Args:
        features: ``(N, D)`` features of generated samples.
        points: ``(C, M, D)`` reciprocal points.

    Returns:
        A scalar in ``[1 / C, 1]``.

    Example:
        >>> from longtail.losses import confusing_sample_loss
        >>> features = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
        >>> points = torch.tensor([[[0.5, 0.5]], [[-0.5, 0.0]]])  # (C=2, M=1, D=2)
        >>> round(confusing_sample_loss(features, points).item(), 4)  # in [1 / C, 1]
        0.5753
        >>> same = torch.zeros(2, 1, 2)  # equally far from every class: 1 / C
        >>> confusing_sample_loss(features, same).item()
        0.5
    """
    if not isinstance(features, Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if not isinstance(points, Tensor):
        raise TypeError(f"points must be a torch.Tensor, got {type(points).__name__}")
    x, p = _upcast(features), _upcast(points)
    with autocast_off(x.device):
        l2, _ = reciprocal_distances(x, p)
    if x.shape[0] == 0:
        return l2.sum() * 0.0
    log_p = F.log_softmax(l2, dim=1)
    neg_entropy = (log_p.exp() * log_p).sum(dim=1)
    return neg_entropy.mean().exp()


class RPLLoss(nn.Module):
    """Module twin of :func:`rpl_loss`: ``loss(features, target, points, radius)``.

    ``adjustment`` given here is a buffer (moves with the module).

    Example:
        >>> from longtail.losses import RPLLoss, rpl_loss
        >>> features = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
        >>> target = torch.tensor([0, 1, 1])
        >>> points = torch.tensor([[[0.5, 0.5]], [[-0.5, 0.0]]])  # (C=2, M=1, D=2)
        >>> criterion = RPLLoss(open_weight=0.1, adjustment=[0.0, -0.5])  # adjustment: a buffer
        >>> expected = rpl_loss(features, target, points, 0.5, adjustment=[0.0, -0.5])
        >>> torch.allclose(criterion(features, target, points, 0.5), expected)
        True
    """

    adjustment: Tensor | None

    def __init__(
        self,
        *,
        temperature: float = 1.0,
        open_weight: float = 0.1,
        adjustment: VectorLike | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.temperature = check_positive("temperature", temperature)
        self.open_weight = check_nonnegative("open_weight", open_weight)
        self.reduction: Reduction = reduction
        self.register_buffer("adjustment", _buffer(adjustment))

    def forward(
        self, features: Tensor, target: Tensor, points: Tensor, radius: Tensor | float
    ) -> Tensor:
        return rpl_loss(
            features,
            target,
            points,
            radius,
            temperature=self.temperature,
            open_weight=self.open_weight,
            adjustment=self.adjustment,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, open_weight={self.open_weight}, "
            f"reduction={self.reduction!r}"
        )


class ARPLLoss(nn.Module):
    """Module twin of :func:`arpl_loss`: ``loss(features, target, points, radius)``.

    ``adjustment`` given here is a buffer (moves with the module).

    Example:
        >>> from longtail.losses import ARPLLoss, arpl_loss
        >>> features = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
        >>> target = torch.tensor([0, 1, 1])
        >>> points = torch.tensor([[[0.5, 0.5]], [[-0.5, 0.0]]])  # (C=2, M=1, D=2)
        >>> criterion = ARPLLoss(margin=0.5)
        >>> expected = arpl_loss(features, target, points, 0.2, margin=0.5)
        >>> torch.allclose(criterion(features, target, points, 0.2), expected)
        True
    """

    adjustment: Tensor | None

    def __init__(
        self,
        *,
        temperature: float = 1.0,
        open_weight: float = 0.1,
        margin: float = 1.0,
        adjustment: VectorLike | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.temperature = check_positive("temperature", temperature)
        self.open_weight = check_nonnegative("open_weight", open_weight)
        self.margin = check_nonnegative("margin", margin)
        self.reduction: Reduction = reduction
        self.register_buffer("adjustment", _buffer(adjustment))

    def forward(
        self, features: Tensor, target: Tensor, points: Tensor, radius: Tensor | float
    ) -> Tensor:
        return arpl_loss(
            features,
            target,
            points,
            radius,
            temperature=self.temperature,
            open_weight=self.open_weight,
            margin=self.margin,
            adjustment=self.adjustment,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, open_weight={self.open_weight}, "
            f"margin={self.margin}, reduction={self.reduction!r}"
        )


class GCPLLoss(nn.Module):
    """Module twin of :func:`gcpl_loss`: ``loss(features, target, prototypes)``.

    ``adjustment`` given here is a buffer (moves with the module).

    Example:
        >>> from longtail.losses import GCPLLoss, gcpl_loss
        >>> features = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
        >>> target = torch.tensor([0, 1, 1])
        >>> points = torch.tensor([[[0.5, 0.5]], [[-0.5, 0.0]]])  # (C=2, M=1, D=2)
        >>> criterion = GCPLLoss(prototype_weight=0.1, reduction="sum")
        >>> expected = 3 * gcpl_loss(features, target, points)  # "sum" of 3 samples
        >>> torch.allclose(criterion(features, target, points), expected)
        True
    """

    adjustment: Tensor | None

    def __init__(
        self,
        *,
        temperature: float = 1.0,
        prototype_weight: float = 0.1,
        adjustment: VectorLike | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.temperature = check_positive("temperature", temperature)
        self.prototype_weight = check_nonnegative("prototype_weight", prototype_weight)
        self.reduction: Reduction = reduction
        self.register_buffer("adjustment", _buffer(adjustment))

    def forward(self, features: Tensor, target: Tensor, prototypes: Tensor) -> Tensor:
        return gcpl_loss(
            features,
            target,
            prototypes,
            temperature=self.temperature,
            prototype_weight=self.prototype_weight,
            adjustment=self.adjustment,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, prototype_weight={self.prototype_weight}, "
            f"reduction={self.reduction!r}"
        )


class ConfusingSampleLoss(nn.Module):
    """Module twin of :func:`confusing_sample_loss`: ``loss(features, points)``.

    Example:
        >>> from longtail.losses import ConfusingSampleLoss, confusing_sample_loss
        >>> features = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
        >>> points = torch.tensor([[[0.5, 0.5]], [[-0.5, 0.0]]])  # (C=2, M=1, D=2)
        >>> criterion = ConfusingSampleLoss()
        >>> torch.equal(criterion(features, points), confusing_sample_loss(features, points))
        True
    """

    def forward(self, features: Tensor, points: Tensor) -> Tensor:
        return confusing_sample_loss(features, points)


def _buffer(adjustment: VectorLike | None) -> Tensor | None:
    """A finite per-class vector as a float32 buffer (any sign: it is added to logits)."""
    if adjustment is None:
        return None
    return as_vector("adjustment", adjustment).to(torch.float32)
