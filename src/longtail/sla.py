"""Self-supervised label augmentation, SLA (Lee, Hwang, Shin, ICML 2020).

One classifier over the joint labels ``(class y, transformation j)`` of ``N * M`` classes, trained
with cross-entropy on the ``M`` transformed copies of every input; at test time either the identity
copy's block of logits (single inference, SI) or an ensemble over the copies (aggregated inference,
AG); or a second ``N``-way head distilled from the aggregation (self-distillation, SD), so inference
is one forward pass.

Conventions (those of the official code, github.com/hankook/SLA):

- images are ``(B, C, H, W)``; a family's transformations of a batch are ``(B, M, C, H, W)``,
  transformation 0 the identity;
- :func:`sla_expand` flattens them *sample-major*: row ``b * M + j`` is ``t_j(x_b)``, with joint label
  ``y_b * M + j``, so joint logit column ``i * M + j`` is the pair (class ``i``, transformation
  ``j``);
- families: ``"rotation"`` (by 0, 90, 180, 270 degrees; M = 4), ``"channel_permutation"`` (the 6
  permutations of the RGB channels in lexicographic order, identity first; M = 6) and ``"product"``
  (rotation-major: transformation ``6 r + p`` is permutation ``p`` of rotation ``r``; M = 24).

The joint loss is plain ``F.cross_entropy(model(x_all), joint_y)`` (the mean over the ``B * M``
copies). The baselines of the paper reuse the same copies: data augmentation (DA) trains an ``N``-way
classifier on ``y = joint_y // M``; multi-task learning (MT) adds an ``M``-way head trained on
``j = joint_y % M`` (:func:`sla_split_labels`).

Example:
    >>> import torch
    >>> from longtail.sla import sla_aggregate_logits, sla_expand, sla_single_logits
    >>> x, y = torch.randn(2, 3, 8, 8), torch.tensor([0, 4])
    >>> x_all, joint_y = sla_expand(x, y, "rotation")
    >>> x_all.shape, joint_y.tolist()
    (torch.Size([8, 3, 8, 8]), [0, 1, 2, 3, 16, 17, 18, 19])
    >>> joint_logits = torch.randn(8, 5 * 4)  # a model's output on x_all, N = 5 classes
    >>> sla_aggregate_logits(joint_logits, 4).shape, sla_single_logits(joint_logits[::4], 4).shape
    (torch.Size([2, 5]), torch.Size([2, 5]))
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Literal, TypeAlias

import torch
import torch.nn.functional as F
from torch import Tensor

from .losses._common import (
    Reduction,
    check_positive,
    check_reduction,
    check_single_label,
    reduce_loss,
    skip_value_checks,
    upcast,
)
from .losses.distillation import kd_loss

__all__ = [
    "CHANNEL_PERMUTATIONS",
    "SLA_FAMILIES",
    "SLAFamily",
    "channel_permutations",
    "rotation_channel_permutations",
    "rotations",
    "sla_aggregate_logits",
    "sla_expand",
    "sla_num_transforms",
    "sla_self_distillation_loss",
    "sla_single_logits",
    "sla_split_labels",
    "sla_transforms",
]

SLAFamily: TypeAlias = Literal["rotation", "channel_permutation", "product"]

#: The 6 permutations of 3 channels, lexicographic (the identity first), as the official code.
CHANNEL_PERMUTATIONS: tuple[tuple[int, int, int], ...] = tuple(
    (a, b, c) for a, b, c in itertools.permutations(range(3))
)


# ------------------------------------------------------------------------------ transformations


def _check_images(name: str, x: object) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have 4 dimensions (B, C, H, W), got shape {tuple(x.shape)}")
    return x


def _check_square(name: str, x: Tensor) -> None:
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"{name} must hold square images (H == W) for rotations by 90 degrees, got shape "
            f"{tuple(x.shape)}"
        )


def _check_rgb(name: str, x: Tensor) -> None:
    if x.shape[1] != 3:
        raise ValueError(
            f"{name} must have 3 channels (RGB) in dimension 1 for channel permutations, got "
            f"shape {tuple(x.shape)}"
        )


def _rotate(x: Tensor) -> Tensor:
    return torch.stack([torch.rot90(x, k, dims=(-2, -1)) for k in range(4)], dim=1)


def _permute(x: Tensor) -> Tensor:
    """Channel permutations of ``(..., 3, H, W)`` as a new dimension before the channels."""
    index = torch.tensor(CHANNEL_PERMUTATIONS, device=x.device).flatten()  # 6 x 3
    out: Tensor = x.index_select(-3, index).unflatten(-3, (6, 3))
    return out


def rotations(x: Tensor) -> Tensor:
    """The 4 rotations of square images by ``90 k`` degrees (``torch.rot90``, ``k = 0..3``).

    Args:
        x: ``(B, C, H, W)`` with ``H == W``.

    Returns:
        ``(B, 4, C, H, W)``; ``[:, k]`` is ``torch.rot90(x, k, dims=(-2, -1))`` (exact: a
        permutation of the pixels), ``[:, 0]`` is ``x``.
    """
    x = _check_images("x", x)
    _check_square("x", x)
    return _rotate(x)


def channel_permutations(x: Tensor) -> Tensor:
    """The 6 permutations of the colour channels of RGB images.

    Args:
        x: ``(B, 3, H, W)``.

    Returns:
        ``(B, 6, 3, H, W)``; ``[:, p]`` is ``x[:, CHANNEL_PERMUTATIONS[p]]``, ``[:, 0]`` is ``x``.
    """
    x = _check_images("x", x)
    _check_rgb("x", x)
    return _permute(x)


def rotation_channel_permutations(x: Tensor) -> Tensor:
    """The product family: every channel permutation of every rotation (M = 24).

    Args:
        x: ``(B, 3, H, W)`` with ``H == W``.

    Returns:
        ``(B, 24, 3, H, W)``; ``[:, 6 r + p]`` is permutation ``p`` of rotation ``r`` (the two
        commute), ``[:, 0]`` is ``x``.
    """
    x = _check_images("x", x)
    _check_square("x", x)
    _check_rgb("x", x)
    return _permute(_rotate(x)).flatten(1, 2)


_FAMILIES: dict[str, tuple[Callable[[Tensor], Tensor], int]] = {
    "rotation": (rotations, 4),
    "channel_permutation": (channel_permutations, 6),
    "product": (rotation_channel_permutations, 24),
}
#: Family name -> its number of transformations ``M``.
SLA_FAMILIES: Mapping[str, int] = MappingProxyType({k: m for k, (_, m) in _FAMILIES.items()})


def _check_family(family: object) -> tuple[Callable[[Tensor], Tensor], int]:
    if not isinstance(family, str) or family not in _FAMILIES:
        raise ValueError(f"family must be one of {tuple(_FAMILIES)}, got {family!r}")
    return _FAMILIES[family]


def sla_num_transforms(family: SLAFamily) -> int:
    """``M`` of a family: 4 (``"rotation"``), 6 (``"channel_permutation"``), 24 (``"product"``)."""
    return _check_family(family)[1]


def sla_transforms(x: Tensor, family: SLAFamily) -> Tensor:
    """All transformations of a family: ``(B, M, C, H, W)``, transformation 0 the identity."""
    transform, _ = _check_family(family)
    return transform(x)


# ------------------------------------------------------------------------------- joint labels


def _check_m(m: object) -> int:
    if isinstance(m, bool) or not isinstance(m, int):
        raise TypeError(f"M must be a positive int, got {type(m).__name__} {m!r}")
    if m < 1:
        raise ValueError(f"M must be >= 1, got {m}")
    return m


def _check_labels(name: str, y: object, batch: int | None) -> Tensor:
    if not isinstance(y, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise TypeError(f"{name} must be an integer tensor of class indices, got dtype {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"{name} must have 1 dimension, got shape {tuple(y.shape)}")
    if batch is not None and y.shape[0] != batch:
        raise ValueError(f"{name} has {y.shape[0]} entries but x has batch size {batch}")
    if y.numel() and not skip_value_checks() and bool((y < 0).any()):
        raise ValueError(f"{name} must hold non-negative class indices, got {int(y.min())}")
    return y


def sla_expand(x: Tensor, y: Tensor, family: SLAFamily) -> tuple[Tensor, Tensor]:
    """The transformed copies of a batch and their joint labels, sample-major.

    Args:
        x: ``(B, C, H, W)`` images (square for rotations, 3 channels for channel permutations).
        y: ``(B,)`` class indices.
        family: ``"rotation"``, ``"channel_permutation"`` or ``"product"``.

    Returns:
        ``(x_all, joint_y)``: ``(B * M, C, H, W)`` with row ``b * M + j = t_j(x_b)``, and ``(B * M,)``
        joint labels ``y_b * M + j``.
    """
    transform, m = _check_family(family)
    x = _check_images("x", x)
    y = _check_labels("y", y, x.shape[0])
    x_all = transform(x).flatten(0, 1)
    j = torch.arange(m, device=y.device, dtype=y.dtype)
    joint_y = (y.unsqueeze(1) * m + j).flatten()
    return x_all, joint_y


def sla_split_labels(joint_y: Tensor, M: int) -> tuple[Tensor, Tensor]:
    """``(joint_y // M, joint_y % M)``: the class labels (DA) and transformation labels (MT)."""
    m = _check_m(M)
    joint_y = _check_labels("joint_y", joint_y, None)
    return torch.div(joint_y, m, rounding_mode="floor"), torch.remainder(joint_y, m)


# ---------------------------------------------------------------------------------- inference


def _check_joint(name: str, z: object, m: int) -> Tensor:
    if not isinstance(z, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if not z.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {z.dtype}")
    if z.ndim < 1 or z.shape[-1] == 0 or z.shape[-1] % m:
        raise ValueError(
            f"{name} must have N * M joint classes in its last dimension (M = {m}), got shape "
            f"{tuple(z.shape)}"
        )
    return z


def sla_single_logits(joint_logits: Tensor, M: int) -> Tensor:
    """Single inference (SI): the identity transformation's block of the joint logits.

    Args:
        joint_logits: ``(..., N * M)`` joint logits of *untransformed* inputs.
        M: number of transformations.

    Returns:
        ``(..., N)``: column ``i`` is joint logit ``(i, 0)``, i.e. column ``i * M``.
    """
    m = _check_m(M)
    z = _check_joint("joint_logits", joint_logits, m)
    return z[..., ::m]


def sla_aggregate_logits(joint_logits_per_transform: Tensor, M: int) -> Tensor:
    r"""Aggregated inference (AG): per class, the mean over ``j`` of joint logit ``(i, j)`` on ``t_j(x)``.

    .. math::
        \bar z_i(x) = \frac{1}{M} \sum_{j=1}^{M} z_{(i, j)}\bigl(t_j(x)\bigr)

    The *logits* are averaged and ``softmax(bar z)`` is the prediction (Lee et al. 2020, eq. 4;
    the official code's ``sum_j preds[j::M, j::M] / M``), not the probabilities.

    Args:
        joint_logits_per_transform: ``(B, M, N * M)`` (``[b, j]`` the joint logits of
            ``t_j(x_b)``), or ``(B * M, N * M)`` flattened sample-major as :func:`sla_expand`
            orders the copies.
        M: number of transformations.

    Returns:
        ``(B, N)`` aggregated logits.
    """
    m = _check_m(M)
    z = _check_joint("joint_logits_per_transform", joint_logits_per_transform, m)
    if z.ndim == 2:
        if z.shape[0] % m:
            raise ValueError(
                f"joint_logits_per_transform of shape {tuple(z.shape)} must have B * M rows "
                f"(M = {m} copies of each sample, sample-major)"
            )
        z = z.unflatten(0, (z.shape[0] // m, m))
    elif z.ndim != 3 or z.shape[1] != m:
        raise ValueError(
            f"joint_logits_per_transform must be (B, M, N * M) or (B * M, N * M) with M = {m}, "
            f"got shape {tuple(z.shape)}"
        )
    n_classes = z.shape[2] // m
    blocks = z.unflatten(2, (n_classes, m))  # [b, j, i, j']
    return torch.diagonal(blocks, dim1=1, dim2=3).mean(dim=-1)  # [b, i, j] -> [b, i]


# ----------------------------------------------------------------------------- self-distillation


def sla_self_distillation_loss(
    head_logits: Tensor,
    aggregated_logits: Tensor,
    target: Tensor,
    T: float = 1.0,
    *,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""SLA+SD loss of the ``N``-way head: cross-entropy plus :math:`T^2` KL to the aggregation.

    .. math::
        \ell_i = \mathrm{CE}(h_i, y_i) + T^2\,
                 \mathrm{KL}\bigl(\operatorname{softmax}(\bar z_i / T) \,\|\,
                                  \operatorname{softmax}(h_i / T)\bigr)

    with ``h`` the head's logits on the untransformed inputs and ``bar z`` the
    :func:`sla_aggregate_logits` of the joint head, detached (the aggregation is the teacher; it
    learns from the joint loss only). The full SLA+SD objective is
    ``F.cross_entropy(joint_logits, joint_y) + sla_self_distillation_loss(h, bar z, y)``, as the
    official code (``T = 1``).

    Args:
        head_logits: ``(B, N)`` logits of the ``N``-way head on the untransformed inputs.
        aggregated_logits: ``(B, N)`` aggregated joint logits (detached here).
        target: ``(B,)`` class indices in ``[0, N)``.
        T: temperature ``> 0``. Default 1.
        reduction: ``"none"`` gives ``(B,)``; ``"sum"``; ``"mean"`` divides the sum by ``B`` (both
            terms are per-sample means, the KL a ``"batchmean"``). An empty batch gives 0.
    """
    check_reduction(reduction)
    temperature = check_positive("T", T)
    h, y = check_single_label(head_logits, target, logits_name="head_logits")
    if not isinstance(aggregated_logits, Tensor):
        raise TypeError(
            f"aggregated_logits must be a torch.Tensor, got {type(aggregated_logits).__name__}"
        )
    if aggregated_logits.shape != h.shape:
        raise ValueError(
            f"aggregated_logits must have the shape of head_logits {tuple(h.shape)}, got "
            f"{tuple(aggregated_logits.shape)}"
        )
    ce = F.cross_entropy(upcast(h), y, reduction="none")
    kl = kd_loss(h, aggregated_logits, temperature=temperature, reduction="none")
    return reduce_loss(ce + kl, reduction, h.shape[0])
