"""Classifier heads.

:class:`CosineClassifier` is the normalised linear layer LDAM (Cao et al. 2019) trains with: its logits
are cosine similarities in ``[-1, 1]``, which :func:`longtail.losses.ldam_loss` shifts by a margin and
scales by ``s``.

Open-set heads (distances in feature space; their losses are in :mod:`longtail.losses.reciprocal`):

- :class:`ReciprocalPointHead`: ``M`` learnable *reciprocal points* per class (the "otherness" of the
  class) and a learnable radius; its logits grow with the distance from a class's points (RPL, Chen
  et al. ECCV 2020; ARPL, Chen et al. TPAMI 2021).
- :class:`PrototypeHead`: ``M`` learnable prototypes per class; its logits are minus the distance to
  the nearest prototype of the class (GCPL, Yang et al. CVPR 2018).

Distances are squared Euclidean distances divided by the feature dimension ``D`` (the RPL / ARPL
official code), computed by :func:`reciprocal_distances` and :func:`prototype_distances`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CosineClassifier",
    "LearnableWeightScaling",
    "PrototypeHead",
    "ReciprocalPointHead",
    "prototype_distances",
    "reciprocal_distances",
    "reciprocal_logits",
]


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

    Example:
        >>> from longtail.heads import CosineClassifier
        >>> _ = torch.manual_seed(0)
        >>> head = CosineClassifier(8, 3)
        >>> logits = head(torch.randn(4, 8))
        >>> logits.shape, bool(logits.abs().max() <= 1)  # cosines
        (torch.Size([4, 3]), True)
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

    Example:
        >>> from longtail.heads import LearnableWeightScaling
        >>> _ = torch.manual_seed(0)
        >>> linear = torch.nn.Linear(8, 3)
        >>> lws = LearnableWeightScaling(linear)  # scales start at 1: the classifier unchanged
        >>> x = torch.randn(4, 8)
        >>> torch.equal(lws(x), linear(x))
        True
        >>> lws.scales.shape  # one scale per class; freeze lws.linear to train them alone
        torch.Size([3])
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


# --------------------------------------------------------------------------------------------------
# open-set heads: reciprocal points (RPL / ARPL) and prototypes (GCPL)

_RECIPROCAL_KINDS = ("rpl", "arpl")


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_points(features: object, points: object, points_name: str) -> tuple[Tensor, Tensor]:
    """``features`` (N, D) float and ``points`` (C, M, D) float of the same dtype and device."""
    if not isinstance(features, Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if not isinstance(points, Tensor):
        raise TypeError(f"{points_name} must be a torch.Tensor, got {type(points).__name__}")
    if not features.is_floating_point():
        raise TypeError(f"features must be a floating-point tensor, got dtype {features.dtype}")
    if not points.is_floating_point():
        raise TypeError(f"{points_name} must be a floating-point tensor, got dtype {points.dtype}")
    if features.ndim != 2:
        raise ValueError(f"features must have shape (N, D), got {tuple(features.shape)}")
    if points.ndim != 3 or points.shape[0] < 1 or points.shape[1] < 1:
        raise ValueError(
            f"{points_name} must have shape (C, M, D) with C >= 1 classes and M >= 1 points per "
            f"class, got {tuple(points.shape)}"
        )
    if points.shape[2] != features.shape[1]:
        raise ValueError(
            f"{points_name} has feature dimension {points.shape[2]} but features have "
            f"{features.shape[1]}"
        )
    return features, points


def reciprocal_distances(features: Tensor, points: Tensor) -> tuple[Tensor, Tensor]:
    r"""Distances of every sample to every class's reciprocal points, averaged over the points.

    .. math::
        d^{l2}_{nc} = \frac{1}{M} \sum_{m=1}^{M} \frac{\lVert x_n - p_{cm} \rVert_2^2}{D}, \qquad
        d^{dot}_{nc} = \frac{1}{M} \sum_{m=1}^{M} x_n \cdot p_{cm}

    Both are linear in the points' sum over ``m``, so they are computed from
    ``||x||^2 - 2 x . mean_m p_cm + mean_m ||p_cm||^2`` without forming the ``(N, C, M)`` tensor;
    ``d^{l2}`` is clamped at 0 against rounding. Every point belongs to the class of its first index
    (the official code indexes a flat ``(C M, D)`` table by the label, which is only right for
    ``M = 1``).

    Args:
        features: ``(N, D)`` float.
        points: ``(C, M, D)`` float, ``M`` points per class.

    Returns:
        ``(d_l2, d_dot)``, each ``(N, C)``.

    Example:
        >>> from longtail.heads import reciprocal_distances
        >>> features = torch.tensor([[2.0, 0.0]])
        >>> points = torch.tensor([[[0.0, 0.0], [2.0, 2.0]], [[2.0, 0.0], [2.0, 0.0]]])  # (2, 2, 2)
        >>> d_l2, d_dot = reciprocal_distances(features, points)
        >>> d_l2.tolist(), d_dot.tolist()
        ([[2.0, 0.0]], [[2.0, 4.0]])
    """
    x, p = _check_points(features, points, "points")
    d = x.shape[1]
    mean_p = p.mean(dim=1)  # (C, D)
    mean_sq = p.pow(2).sum(dim=2).mean(dim=1)  # (C,)
    dot = x @ mean_p.t()  # (N, C): mean over m of x . p_cm
    l2 = (x.pow(2).sum(dim=1, keepdim=True) - 2.0 * dot + mean_sq.unsqueeze(0)).clamp_min(0.0)
    return l2 / d, dot


def reciprocal_logits(features: Tensor, points: Tensor, kind: str = "rpl") -> Tensor:
    """Logits of the reciprocal-point classifiers from :func:`reciprocal_distances`.

    ``kind="rpl"``: ``d_l2`` (far from a class's reciprocal points means likely that class);
    ``kind="arpl"``: ``d_l2 - d_dot`` (ARPL's distance). Shape ``(N, C)``.

    Example:
        >>> from longtail.heads import reciprocal_logits
        >>> features = torch.tensor([[2.0, 0.0]])
        >>> points = torch.tensor([[[0.0, 0.0]], [[2.0, 0.0]]])
        >>> reciprocal_logits(features, points, kind="rpl").tolist()  # d_l2
        [[2.0, 0.0]]
        >>> reciprocal_logits(features, points, kind="arpl").tolist()  # d_l2 - d_dot
        [[2.0, -4.0]]
    """
    if kind not in _RECIPROCAL_KINDS:
        raise ValueError(f"kind must be one of {_RECIPROCAL_KINDS}, got {kind!r}")
    l2, dot = reciprocal_distances(features, points)
    return l2 if kind == "rpl" else l2 - dot


def prototype_distances(features: Tensor, prototypes: Tensor) -> Tensor:
    """Squared distance of every sample to every prototype, divided by ``D``: ``(N, C, M)``.

    ``||x_n - m_cm||^2 / D`` from ``||x||^2 - 2 x . m + ||m||^2`` (clamped at 0 against rounding).

    Args:
        features: ``(N, D)`` float.
        prototypes: ``(C, M, D)`` float.

    Example:
        >>> from longtail.heads import prototype_distances
        >>> features = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
        >>> prototypes = torch.tensor([[[0.0, 0.0], [2.0, 2.0]]])  # (C=1, M=2, D=2)
        >>> prototype_distances(features, prototypes).tolist()  # ||x - m||^2 / D, (N, C, M)
        [[[0.0, 4.0]], [[2.0, 2.0]]]
    """
    x, p = _check_points(features, prototypes, "prototypes")
    c, m, d = p.shape
    flat = p.reshape(c * m, d)
    sq = x.pow(2).sum(dim=1, keepdim=True) - 2.0 * (x @ flat.t()) + flat.pow(2).sum(dim=1)
    return (sq.clamp_min(0.0) / d).reshape(x.shape[0], c, m)


class ReciprocalPointHead(nn.Module):
    r"""Reciprocal points: ``M`` learnable points per class and a learnable radius (RPL / ARPL).

    Chen et al., "Learning Open Set Network with Discriminative Reciprocal Points", ECCV 2020 (RPL);
    Chen et al., "Adversarial Reciprocal Points Learning for Open Set Recognition", TPAMI 2021 (ARPL).

    Logits (see :func:`reciprocal_logits`): ``d_l2`` for ``kind="rpl"``, ``d_l2 - d_dot`` for
    ``kind="arpl"``; the open-set score is the maximum logit (an unknown sample lies close to every
    class's reciprocal points, so all its logits are small). Train with
    :func:`longtail.losses.rpl_loss` / :func:`longtail.losses.arpl_loss`, which also use
    :attr:`radius`. Put :attr:`points` and :attr:`radius` in a parameter group without weight decay
    (:meth:`no_weight_decay_parameters`): decay would pull the points to the origin and the radius
    to 0, which are not regularisers of these models.

    Args:
        in_features: feature dimension ``D``.
        num_classes: number of known classes ``C``.
        num_points: reciprocal points per class ``M`` (default 1, the papers' setting).
        kind: ``"rpl"`` or ``"arpl"`` (the logits).
        init_std: the points start as ``init_std * N(0, 1)`` (official: 0.1); the radius at 0.

    Shapes: input ``(N, D)``, output ``(N, C)``; ``points`` is ``(C, M, D)``, ``radius`` a 0-d tensor.

    Example:
        >>> from longtail.heads import ReciprocalPointHead
        >>> _ = torch.manual_seed(0)
        >>> head = ReciprocalPointHead(8, 3, num_points=2, kind="arpl")
        >>> head.points.shape, head.radius.shape, head(torch.randn(4, 8)).shape
        (torch.Size([3, 2, 8]), torch.Size([]), torch.Size([4, 3]))
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        num_points: int = 1,
        kind: str = "rpl",
        init_std: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_features = _positive_int("in_features", in_features)
        self.num_classes = _positive_int("num_classes", num_classes)
        self.num_points = _positive_int("num_points", num_points)
        if kind not in _RECIPROCAL_KINDS:
            raise ValueError(f"kind must be one of {_RECIPROCAL_KINDS}, got {kind!r}")
        if not (isinstance(init_std, (int, float)) and math.isfinite(init_std) and init_std > 0):
            raise ValueError(f"init_std must be a finite number > 0, got {init_std!r}")
        self.kind = kind
        self.init_std = float(init_std)
        self.points = nn.Parameter(torch.empty(num_classes, num_points, in_features))
        self.radius = nn.Parameter(torch.zeros(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.points.normal_(0.0, self.init_std)
            self.radius.zero_()

    def no_weight_decay_parameters(self) -> list[nn.Parameter]:
        """The points and the radius (train them without weight decay)."""
        return [self.points, self.radius]

    def forward(self, x: Tensor) -> Tensor:
        return reciprocal_logits(x, self.points, self.kind)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_classes={self.num_classes}, "
            f"num_points={self.num_points}, kind={self.kind!r}"
        )


class PrototypeHead(nn.Module):
    r"""Learnable class prototypes: logits ``-min_m ||x - m_cm||^2 / D`` (GCPL).

    Yang et al., "Robust Classification with Convolutional Prototype Learning", CVPR 2018: a sample
    belongs to the class of its nearest prototype; train with :func:`longtail.losses.gcpl_loss`
    (distance-based cross-entropy plus the prototype loss). The open-set score is the maximum logit,
    i.e. minus the distance to the nearest prototype of any class. With ``M = 1`` the logits are those
    of the GCPL baseline of the ARPL code (``-d_l2``).

    Args:
        in_features: ``D``.
        num_classes: ``C``.
        num_prototypes: prototypes per class ``M`` (default 1).
        init_std: the prototypes start as ``init_std * N(0, 1)``.

    Shapes: input ``(N, D)``, output ``(N, C)``; ``prototypes`` is ``(C, M, D)``.

    Example:
        >>> from longtail.heads import PrototypeHead
        >>> _ = torch.manual_seed(0)
        >>> head = PrototypeHead(8, 3, num_prototypes=2)
        >>> head.prototypes.shape, head(torch.randn(4, 8)).shape
        (torch.Size([3, 2, 8]), torch.Size([4, 3]))
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        num_prototypes: int = 1,
        init_std: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_features = _positive_int("in_features", in_features)
        self.num_classes = _positive_int("num_classes", num_classes)
        self.num_prototypes = _positive_int("num_prototypes", num_prototypes)
        if not (isinstance(init_std, (int, float)) and math.isfinite(init_std) and init_std > 0):
            raise ValueError(f"init_std must be a finite number > 0, got {init_std!r}")
        self.init_std = float(init_std)
        self.prototypes = nn.Parameter(torch.empty(num_classes, num_prototypes, in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.prototypes.normal_(0.0, self.init_std)

    def no_weight_decay_parameters(self) -> list[nn.Parameter]:
        """The prototypes (train them without weight decay)."""
        return [self.prototypes]

    def forward(self, x: Tensor) -> Tensor:
        return -prototype_distances(x, self.prototypes).amin(dim=2)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_classes={self.num_classes}, "
            f"num_prototypes={self.num_prototypes}"
        )
