"""Relational knowledge distillation (RKD): the distance and angle potentials on embeddings.

Park, Kim, Lu, Cho. "Relational Knowledge Distillation". CVPR 2019.

Every loss takes the student's output first and the teacher's second. The teacher side is detached
(and computed under ``torch.no_grad``): no gradient ever reaches the teacher. The losses switch
autocast off and compute in float32 (float64 for float64 inputs). They are registered in
:data:`longtail.losses.LOSSES` under the task ``"distillation"`` (their specs name the teacher as an
extra positional argument), with the logit losses of :mod:`longtail.losses.distillation`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ._common import (
    Reduction,
    autocast_off,
    check_nonnegative,
    check_pair,
    check_reduction,
    reduce_loss,
    upcast,
)

__all__ = [
    "RKDAngleLoss",
    "RKDDistanceLoss",
    "RKDLoss",
    "rkd_angle_loss",
    "rkd_distance_loss",
]

#: Squared distances are clamped to this before the square root (the gradient of sqrt at 0 is
#: infinite); a difference vector of norm <= sqrt of it has no direction (its cosines are 0).
_EPS_SQ = 1e-12


# ---------------------------------------------------------------------------------- validation


def _check_chunk_size(chunk_size: object) -> int | None:
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise TypeError(
            f"chunk_size must be a positive int or None, got {type(chunk_size).__name__} "
            f"{chunk_size!r}"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return chunk_size


def _check_batch(name: str, x: Tensor, minimum: int, what: str) -> None:
    if x.shape[0] < minimum:
        raise ValueError(
            f"{name} must hold at least {minimum} samples ({what}), got shape {tuple(x.shape)}"
        )


# --------------------------------------------------------------------------------------- RKD


def _normalised_distances(e: Tensor) -> Tensor:
    r"""``d_ij / mu``: pairwise Euclidean distances over their mean over pairs ``i != j``.

    Squared distances come from the Gram matrix of the *centred* batch (translation-invariant, and
    centring keeps the cancellation error relative to the batch's spread, not its offset), are
    clamped to ``1e-12`` before the square root, and the diagonal is set to 0 out of place.
    """
    n = e.shape[0]
    x = e - e.mean(dim=0, keepdim=True)
    sq = x.pow(2).sum(dim=1)
    d2 = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * (x @ x.T)).clamp_min(_EPS_SQ)
    idx = torch.arange(n, device=e.device)
    off = idx.unsqueeze(1) != idx.unsqueeze(0)  # (torch.eye of bool is slow on CPU)
    d = torch.where(off, d2.sqrt(), torch.zeros((), dtype=d2.dtype, device=d2.device))
    return d / (d.sum() / (n * (n - 1)))


def rkd_distance_loss(student: Tensor, teacher: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    r"""RKD distance potential (Park et al., CVPR 2019, eq. 4-5).

    .. math::
        \ell_{ij} = \operatorname{Huber}_1\Bigl(\frac{\lVert t_i - t_j\rVert}{\mu_t},\,
                    \frac{\lVert s_i - s_j\rVert}{\mu_s}\Bigr), \qquad
        \mu = \frac{1}{N(N-1)} \sum_{i \ne j} \lVert e_i - e_j\rVert

    (Huber with ``delta = 1`` is ``F.smooth_l1_loss(beta=1)``.) Zero when the student is a scaled,
    rotated or translated copy of the teacher. Squared distances are clamped to ``1e-12`` before the
    square root, the diagonal is set to 0 out of place, and the teacher's distances are computed
    under ``no_grad``. Distances below ``1e-6`` (the clamp) count as ``1e-6``, with no gradient:
    rescale embeddings whose spread is that small. Memory ``O(N^2 + N D)``, time ``O(N^2 D)`` (a
    Gram matrix).

    Args:
        student: ``(N, D_s)`` embeddings, ``N >= 2``.
        teacher: ``(N, D_t)`` embeddings; ``D_t`` may differ from ``D_s``. Detached.
        reduction: ``"none"`` gives the ``(N, N)`` Huber terms (0 on the diagonal); ``"sum"``;
            ``"mean"`` divides the sum over ordered pairs by ``N^2``, the count of *all* ordered
            pairs, the ``N`` zero terms ``(i, i)`` included (as the official code, whose weights
            assume it): ``(N - 1) / N`` times the mean over pairs ``i != j``.

    Returns:
        The loss, float32 (float64 for float64 student embeddings).

    Example:
        >>> from longtail.losses import rkd_distance_loss
        >>> _ = torch.manual_seed(0)
        >>> student, teacher = torch.randn(5, 4), torch.randn(5, 3)
        >>> round(rkd_distance_loss(student, teacher).item(), 4)
        0.0825
        >>> rkd_distance_loss(student, teacher, reduction="none").shape  # one term per ordered pair
        torch.Size([5, 5])
        >>> rotation = torch.linalg.qr(torch.randn(4, 4))[0]  # scaled, rotated, shifted copy: zero
        >>> round(rkd_distance_loss(2.0 * student @ rotation + 1.0, student).item(), 6)
        0.0
    """
    check_reduction(reduction)
    s, t = check_pair(student, teacher, names=("student", "teacher"), same_width=False)
    _check_batch("student", s, 2, "a pair")
    return _rkd_distance(s, t, reduction)


def _rkd_distance(s: Tensor, t: Tensor, reduction: str) -> Tensor:
    s = upcast(s)
    with autocast_off(s.device):
        with torch.no_grad():
            t_d = _normalised_distances(t.detach().to(s.dtype))
        s_d = _normalised_distances(s)
        loss = F.smooth_l1_loss(s_d, t_d, reduction="none", beta=1.0)
    return reduce_loss(loss, reduction, s.shape[0] ** 2)


def _angles(e: Tensor, start: int, stop: int) -> Tensor:
    """``A[v - start, j, k] = cos`` of the angle at vertex ``e_v`` between ``e_j`` and ``e_k``.

    ``(stop - start, N, N)``. Difference vectors shorter than ``1e-6`` (``e_j = e_v``) have no
    direction: their cosines are 0 with no gradient (``F.normalize`` would give them a gradient of
    ``1 / eps`` when two distinct samples coincide).
    """
    diff = e.unsqueeze(0) - e[start:stop].unsqueeze(1)  # (c, N, D): e_j - e_v
    sq = diff.pow(2).sum(dim=2, keepdim=True)
    zero = torch.zeros((), dtype=sq.dtype, device=sq.device)
    inv_norm = torch.where(sq > _EPS_SQ, sq.clamp_min(_EPS_SQ).rsqrt(), zero)  # (c, N, 1)
    unit = diff * inv_norm
    return torch.bmm(unit, unit.transpose(1, 2))


def _angle_terms(s: Tensor, t: Tensor, start: int, stop: int) -> Tensor:
    with torch.no_grad():
        t_a = _angles(t, start, stop)
    return F.smooth_l1_loss(_angles(s, start, stop), t_a, reduction="none", beta=1.0)


def _angle_sum(s: Tensor, t: Tensor, start: int, stop: int) -> Tensor:
    return _angle_terms(s, t, start, stop).sum()


def rkd_angle_loss(
    student: Tensor,
    teacher: Tensor,
    *,
    chunk_size: int | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""RKD angle potential (Park et al., CVPR 2019, eq. 6-7).

    .. math::
        \ell_{vjk} = \operatorname{Huber}_1\bigl(\cos\angle t_j t_v t_k,\; \cos\angle s_j s_v s_k\bigr),
        \qquad \cos\angle e_j e_v e_k =
        \Bigl\langle \tfrac{e_j - e_v}{\lVert e_j - e_v\rVert},
                     \tfrac{e_k - e_v}{\lVert e_k - e_v\rVert} \Bigr\rangle

    over all ordered triplets, vertex ``v`` first. A triplet with a repeated point (``j = v`` or
    ``k = v``) has cosine 0 for both networks and contributes 0. Zero when the student is a scaled,
    rotated and translated copy of the teacher. The teacher's cosines are computed under ``no_grad``.

    Memory: the unit difference vectors take ``O(N^2 D)`` and the cosines ``O(N^3)``, and autograd
    keeps both for the backward pass (about 260 MB in float32 for ``N = 256, D = 128``). With
    ``chunk_size=c`` the vertices are processed ``c`` at a time and each chunk of the student is
    recomputed in the backward pass (activation checkpointing), so the peak is ``O(c N (N + D))``
    at the price of a second forward; the value and the gradient are the same up to rounding.

    Args:
        student: ``(N, D_s)`` embeddings, ``N >= 3`` (a triplet of distinct samples).
        teacher: ``(N, D_t)`` embeddings; ``D_t`` may differ from ``D_s``. Detached.
        chunk_size: vertices per chunk, ``>= 1``, or ``None`` (all at once). Default None.
        reduction: ``"none"`` gives the ``(N, N, N)`` terms indexed ``[v, j, k]``; ``"sum"``;
            ``"mean"`` divides the sum by ``N^3``, the count of *all* ordered triplets (those with
            a repeated point, whose terms are 0, included), as the official code, whose weights
            assume it.

    Returns:
        The loss, float32 (float64 for float64 student embeddings).

    Example:
        >>> from longtail.losses import rkd_angle_loss
        >>> _ = torch.manual_seed(0)
        >>> student, teacher = torch.randn(5, 4), torch.randn(5, 3)
        >>> round(rkd_angle_loss(student, teacher).item(), 4)
        0.1223
        >>> rkd_angle_loss(student, teacher, reduction="none").shape  # [vertex, j, k]
        torch.Size([5, 5, 5])
        >>> chunked = rkd_angle_loss(student, teacher, chunk_size=2)  # less memory, same value
        >>> torch.allclose(chunked, rkd_angle_loss(student, teacher))
        True
    """
    check_reduction(reduction)
    chunk = _check_chunk_size(chunk_size)
    s, t = check_pair(student, teacher, names=("student", "teacher"), same_width=False)
    _check_batch("student", s, 3, "a triplet")
    return _rkd_angle(s, t, chunk, reduction)


def _rkd_angle(s: Tensor, t: Tensor, chunk: int | None, reduction: str) -> Tensor:
    s = upcast(s)
    n = s.shape[0]
    t = t.detach().to(s.dtype)
    step = n if chunk is None else min(chunk, n)
    bounds = [(a, min(a + step, n)) for a in range(0, n, step)]
    with autocast_off(s.device):
        if reduction == "none":
            return torch.cat([_angle_terms(s, t, a, b) for a, b in bounds])
        if len(bounds) == 1:
            total = _angle_sum(s, t, 0, n)
        elif s.requires_grad and torch.is_grad_enabled():
            total = sum(
                (checkpoint(_angle_sum, s, t, a, b, use_reentrant=False) for a, b in bounds),
                start=s.new_zeros(()),
            )
        else:
            total = sum((_angle_sum(s, t, a, b) for a, b in bounds), start=s.new_zeros(()))
    return total if reduction == "sum" else total / float(n) ** 3


class RKDDistanceLoss(nn.Module):
    """Module twin of :func:`rkd_distance_loss`; ``forward(student, teacher)``.

    Example:
        >>> from longtail.losses import RKDDistanceLoss, rkd_distance_loss
        >>> _ = torch.manual_seed(0)
        >>> student, teacher = torch.randn(5, 4), torch.randn(5, 3)
        >>> criterion = RKDDistanceLoss(reduction="sum")
        >>> expected = rkd_distance_loss(student, teacher, reduction="sum")
        >>> torch.equal(criterion(student, teacher), expected)
        True
    """

    def __init__(self, *, reduction: Reduction = "mean") -> None:
        super().__init__()
        check_reduction(reduction)
        self.reduction: Reduction = reduction

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        return rkd_distance_loss(student, teacher, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class RKDAngleLoss(nn.Module):
    """Module twin of :func:`rkd_angle_loss`; ``forward(student, teacher)``.

    Example:
        >>> from longtail.losses import RKDAngleLoss, rkd_angle_loss
        >>> _ = torch.manual_seed(0)
        >>> student, teacher = torch.randn(5, 4), torch.randn(5, 3)
        >>> criterion = RKDAngleLoss(chunk_size=2)
        >>> torch.allclose(criterion(student, teacher), rkd_angle_loss(student, teacher))
        True
    """

    def __init__(self, *, chunk_size: int | None = None, reduction: Reduction = "mean") -> None:
        super().__init__()
        check_reduction(reduction)
        self.chunk_size = _check_chunk_size(chunk_size)
        self.reduction: Reduction = reduction

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        return rkd_angle_loss(
            student, teacher, chunk_size=self.chunk_size, reduction=self.reduction
        )

    def extra_repr(self) -> str:
        return f"chunk_size={self.chunk_size}, reduction={self.reduction!r}"


class RKDLoss(nn.Module):
    r"""Relational KD: ``distance_weight * rkd_distance_loss + angle_weight * rkd_angle_loss``.

    Defaults are the paper's metric-learning weights (``lambda_D = 1, lambda_A = 2``, no task loss);
    for classification the official script uses 25 and 50 with cross-entropy and Hinton KD. Both
    terms use ``"mean"`` (sum over pairs / ``N^2`` and over triplets / ``N^3``) or ``"sum"``; a
    weight of 0 skips its term. ``forward(student, teacher)`` takes ``(N, D_s)`` and ``(N, D_t)``
    embeddings with ``N >= 3`` (``N >= 2`` when ``angle_weight = 0``).

    Example:
        >>> from longtail.losses import RKDLoss, rkd_angle_loss, rkd_distance_loss
        >>> _ = torch.manual_seed(0)
        >>> student, teacher = torch.randn(5, 4), torch.randn(5, 3)
        >>> criterion = RKDLoss(distance_weight=25.0, angle_weight=50.0)
        >>> loss = criterion(student, teacher)
        >>> distance, angle = rkd_distance_loss(student, teacher), rkd_angle_loss(student, teacher)
        >>> torch.allclose(loss, 25.0 * distance + 50.0 * angle)
        True
    """

    def __init__(
        self,
        distance_weight: float = 1.0,
        angle_weight: float = 2.0,
        *,
        chunk_size: int | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        if reduction == "none":
            raise ValueError(
                "reduction must be 'mean' or 'sum' for RKDLoss (its two terms have different "
                "shapes), got 'none'"
            )
        self.distance_weight = check_nonnegative("distance_weight", distance_weight)
        self.angle_weight = check_nonnegative("angle_weight", angle_weight)
        self.chunk_size = _check_chunk_size(chunk_size)
        self.reduction: Reduction = reduction

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        s, t = check_pair(student, teacher, names=("student", "teacher"), same_width=False)
        if self.angle_weight > 0:
            _check_batch("student", s, 3, "a triplet")
        else:
            _check_batch("student", s, 2, "a pair")
        loss = upcast(s).new_zeros(())
        if self.distance_weight > 0:
            loss = loss + self.distance_weight * _rkd_distance(s, t, self.reduction)
        if self.angle_weight > 0:
            loss = loss + self.angle_weight * _rkd_angle(s, t, self.chunk_size, self.reduction)
        return loss

    def extra_repr(self) -> str:
        return (
            f"distance_weight={self.distance_weight}, angle_weight={self.angle_weight}, "
            f"chunk_size={self.chunk_size}, reduction={self.reduction!r}"
        )
