"""Knowledge distillation: Hinton's KD (optionally on standardised logits), DKD and relational KD.

Hinton, Vinyals, Dean. "Distilling the Knowledge in a Neural Network". NIPS workshop 2015.
Sun, Ren, Li, Wang, Cao. "Logit Standardization in Knowledge Distillation". CVPR 2024.
Zhao, Cui, Song, Qiu, Liang. "Decoupled Knowledge Distillation". CVPR 2022.
Park, Kim, Lu, Cho. "Relational Knowledge Distillation". CVPR 2019.

Every loss takes the student's output first and the teacher's second. The teacher side is detached
(and computed under ``torch.no_grad``): no gradient ever reaches the teacher. The logit losses work in
log space (``log_softmax`` / ``logsumexp``) in float32 (float64 for float64 inputs), so they are finite
for logits of +-1e4 and under bf16 autocast; the relational losses switch autocast off and compute
in float32 too. None of these losses fits the ``(logits, target)`` contract of
:data:`longtail.losses.LOSSES`, so they are not registered there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ._common import (
    Reduction,
    check_logits,
    check_nonnegative,
    check_positive,
    check_reduction,
    check_single_label,
    reduce_loss,
    upcast,
)

__all__ = [
    "DKDLoss",
    "KDLoss",
    "RKDLoss",
    "dkd_loss",
    "kd_loss",
    "rkd_angle_loss",
    "rkd_distance_loss",
]

#: Squared distances are clamped to this before the square root (the gradient of sqrt at 0 is
#: infinite); a difference vector of norm <= sqrt of it has no direction (its cosines are 0).
_EPS_SQ = 1e-12
#: The z-score of :func:`kd_loss` divides by ``std + _STD_EPS`` (the official code's 1e-7).
_STD_EPS = 1e-7


# ---------------------------------------------------------------------------------- validation


def _check_pair(
    student: object, teacher: object, *, names: tuple[str, str], same_width: bool
) -> tuple[Tensor, Tensor]:
    """Two float ``(N, K)`` tensors with the same ``N`` (and the same ``K`` if ``same_width``)."""
    s_name, t_name = names
    s = check_logits(s_name, student)
    t = check_logits(t_name, teacher)
    if t.shape[0] != s.shape[0]:
        raise ValueError(
            f"{t_name} has batch size {t.shape[0]} but {s_name} has batch size {s.shape[0]}"
        )
    if same_width and t.shape[1] != s.shape[1]:
        raise ValueError(f"{t_name} has {t.shape[1]} classes but {s_name} has {s.shape[1]}")
    return s, t


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


@contextlib.contextmanager
def _fp32(device: torch.device) -> Iterator[None]:
    """Autocast off (the matmuls of the relational losses must not run in bf16/fp16)."""
    if torch.amp.is_autocast_available(device.type):
        with torch.autocast(device_type=device.type, enabled=False):
            yield
    else:  # pragma: no cover - devices without autocast
        yield


# ---------------------------------------------------------------------------------------- KD


def _standardize(z: Tensor) -> Tensor:
    """Per-row z-score ``(z - mean) / (std + 1e-7)``, unbiased std (as the official code).

    The variance is clamped before the square root, so a constant row (e.g. a zero-initialised
    head) gives zeros with a finite gradient instead of NaN.
    """
    centred = z - z.mean(dim=1, keepdim=True)
    var = centred.pow(2).sum(dim=1, keepdim=True) / (z.shape[1] - 1)
    std = var.clamp_min(torch.finfo(z.dtype).tiny).sqrt()
    return centred / (std + _STD_EPS)


def kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    temperature: float = 4.0,
    standardize: bool = False,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Hinton's knowledge-distillation loss, scaled by :math:`T^2`.

    .. math::
        \ell_i = T^2 \,\mathrm{KL}\bigl(p^T_i \,\|\, q^T_i\bigr)
               = T^2 \sum_c p^T_{ic} \bigl(\log p^T_{ic} - \log q^T_{ic}\bigr),
        \qquad p^T_i = \operatorname{softmax}(t_i / T),\; q^T_i = \operatorname{softmax}(s_i / T)

    with ``t`` the teacher's and ``s`` the student's logits. The :math:`T^2` factor keeps the
    gradient's magnitude independent of ``T`` (Hinton et al. 2015). ``standardize=True`` is the
    logit standardisation of Sun et al. (CVPR 2024): both logit vectors are first replaced by their
    z-scores ``(z - mean(z)) / (std(z) + 1e-7)`` (per sample, unbiased std, as in the official code),
    so the student matches the teacher's logit *relations*, not their range: the loss is then
    invariant to ``s_i -> a_i s_i + b_i`` with ``a_i > 0``. Their CIFAR defaults are a base
    temperature of 2 and a KD weight of 9 (the weight is the caller's).

    Args:
        student_logits: ``(N, C)`` float.
        teacher_logits: ``(N, C)`` float, the same ``C``; detached (no gradient reaches it).
        temperature: ``T > 0``. Default 4.
        standardize: z-score both logit vectors first (needs ``C >= 2``). Default False.
        reduction: ``"none"`` gives ``(N,)``; ``"sum"``; ``"mean"`` divides the sum by ``N`` (the
            ``"batchmean"`` of ``F.kl_div``, as the official code; not by ``N * C``). An empty
            batch gives 0.

    Returns:
        The loss, float32 (float64 for float64 student logits).
    """
    check_reduction(reduction)
    temperature = check_positive("temperature", temperature)
    if not isinstance(standardize, bool):
        raise TypeError(f"standardize must be a bool, got {type(standardize).__name__}")
    s, t = _check_pair(
        student_logits, teacher_logits, names=("student_logits", "teacher_logits"), same_width=True
    )
    if standardize and s.shape[1] < 2:
        raise ValueError(
            f"standardize=True needs at least 2 classes, got student_logits of shape "
            f"{tuple(s.shape)}"
        )
    return _kd(s, t, temperature, standardize, reduction)


def _kd(s: Tensor, t: Tensor, temperature: float, standardize: bool, reduction: str) -> Tensor:
    s = upcast(s)
    with torch.no_grad():
        tt = t.detach().to(s.dtype)
        if standardize:
            tt = _standardize(tt)
        log_p = F.log_softmax(tt / temperature, dim=1)
        p = log_p.exp()
    if standardize:
        s = _standardize(s)
    log_q = F.log_softmax(s / temperature, dim=1)
    # p * (log p - log q): where p underflows to 0, log p stays finite, so the term is exactly 0
    loss = (p * (log_p - log_q)).sum(dim=1) * temperature**2
    return reduce_loss(loss, reduction, s.shape[0])


class KDLoss(nn.Module):
    """Module twin of :func:`kd_loss`."""

    def __init__(
        self,
        *,
        temperature: float = 4.0,
        standardize: bool = False,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.temperature = check_positive("temperature", temperature)
        if not isinstance(standardize, bool):
            raise TypeError(f"standardize must be a bool, got {type(standardize).__name__}")
        self.standardize = standardize
        self.reduction: Reduction = reduction

    def forward(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        return kd_loss(
            student_logits,
            teacher_logits,
            temperature=self.temperature,
            standardize=self.standardize,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, standardize={self.standardize}, "
            f"reduction={self.reduction!r}"
        )


# --------------------------------------------------------------------------------------- DKD


def _non_target(z: Tensor, target: Tensor) -> Tensor:
    """``(N, C - 1)``: each row of ``z`` without its target column, classes in order."""
    n, c = z.shape
    cols = torch.arange(c - 1, device=z.device).expand(n, c - 1)
    return z.gather(1, cols + (cols >= target.unsqueeze(1)).to(cols.dtype))


def _dkd_log_parts(z: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(log b_t, log(1 - b_t), log q)`` of scaled logits ``z`` in log space.

    ``b_t`` is the target class's probability, ``1 - b_t = sum_{c != t} p_c`` is computed as
    ``exp(logsumexp over non-targets - logsumexp over all)`` (no cancellation), and ``q`` is the
    softmax over the non-target classes alone, from the gathered non-target logits: no masking
    constant such as the official code's ``- 1000 * gt_mask``, so it is exact for any logits.
    """
    other = _non_target(z, target)
    lse_all = torch.logsumexp(z, dim=1)
    lse_other = torch.logsumexp(other, dim=1)
    log_bt = z.gather(1, target.unsqueeze(1)).squeeze(1) - lse_all
    log_bo = lse_other - lse_all
    log_q = other - lse_other.unsqueeze(1)
    return log_bt, log_bo, log_q


def dkd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Decoupled knowledge distillation (Zhao et al., CVPR 2022): ``alpha TCKD + beta NCKD``.

    With ``p = softmax(z / T)`` for teacher (``t``) and student (``s``) and ``y`` the target:

    .. math::
        \mathrm{TCKD}_i = \mathrm{KL}\bigl([b^t, 1 - b^t] \,\|\, [b^s, 1 - b^s]\bigr),
        \quad b = p_{y_i}, \qquad
        \mathrm{NCKD}_i = \mathrm{KL}(\hat q^t \,\|\, \hat q^s), \quad
        \hat q_c = \frac{p_c}{1 - p_{y_i}} \;(c \ne y_i)

        \ell_i = T^2 \bigl(\alpha\, \mathrm{TCKD}_i + \beta\, \mathrm{NCKD}_i\bigr)

    Classical KD decomposes as ``KD = TCKD + (1 - b^t) NCKD``; DKD frees the two weights. The
    :math:`T^2` factor multiplies both terms, as in the official code (megvii-research/mdistiller).
    ``hat q`` is a softmax over the gathered non-target logits, exact for any logits (the official
    code subtracts 1000 from the target logit instead, which fails once ``|z| / T`` nears 1000), and
    ``1 - b`` is a log-sum-exp ratio, so the loss is finite for logits of +-1e4. The official
    training adds cross-entropy and ramps the DKD weight up linearly over the first 20 epochs
    (``min(epoch / 20, 1)``); both are the caller's.

    Args:
        student_logits: ``(N, C)`` float, ``C >= 2``.
        teacher_logits: ``(N, C)`` float, the same ``C``; detached (no gradient reaches it).
        target: ``(N,)`` integer class indices in ``[0, C)``.
        alpha: weight of TCKD, ``>= 0``. Default 1 (CIFAR-100).
        beta: weight of NCKD, ``>= 0``. Default 8 (CIFAR-100; ImageNet uses 0.5).
        temperature: ``T > 0``. Default 4.
        reduction: ``"none"`` gives ``(N,)``; ``"sum"``; ``"mean"`` divides the sum by ``N`` (as
            the official code's ``sum / batch size``). An empty batch gives 0.

    Returns:
        The loss, float32 (float64 for float64 student logits).
    """
    check_reduction(reduction)
    alpha = check_nonnegative("alpha", alpha)
    beta = check_nonnegative("beta", beta)
    temperature = check_positive("temperature", temperature)
    s, t = _check_pair(
        student_logits, teacher_logits, names=("student_logits", "teacher_logits"), same_width=True
    )
    s, y = check_single_label(s, target, logits_name="student_logits")
    if s.shape[1] < 2:
        raise ValueError(
            f"dkd_loss needs at least 2 classes (a non-target class), got student_logits of shape "
            f"{tuple(s.shape)}"
        )
    return _dkd(s, t, y, alpha, beta, temperature, reduction)


def _dkd(
    s: Tensor,
    t: Tensor,
    y: Tensor,
    alpha: float,
    beta: float,
    temperature: float,
    reduction: str,
) -> Tensor:
    s = upcast(s)
    with torch.no_grad():
        t_bt, t_bo, t_q = _dkd_log_parts(t.detach().to(s.dtype) / temperature, y)
    s_bt, s_bo, s_q = _dkd_log_parts(s / temperature, y)
    tckd = t_bt.exp() * (t_bt - s_bt) + t_bo.exp() * (t_bo - s_bo)
    nckd = (t_q.exp() * (t_q - s_q)).sum(dim=1)
    loss = (alpha * tckd + beta * nckd) * temperature**2
    return reduce_loss(loss, reduction, s.shape[0])


class DKDLoss(nn.Module):
    """Module twin of :func:`dkd_loss`; ``forward(student_logits, teacher_logits, target)``."""

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.alpha = check_nonnegative("alpha", alpha)
        self.beta = check_nonnegative("beta", beta)
        self.temperature = check_positive("temperature", temperature)
        self.reduction: Reduction = reduction

    def forward(self, student_logits: Tensor, teacher_logits: Tensor, target: Tensor) -> Tensor:
        return dkd_loss(
            student_logits,
            teacher_logits,
            target,
            alpha=self.alpha,
            beta=self.beta,
            temperature=self.temperature,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, beta={self.beta}, temperature={self.temperature}, "
            f"reduction={self.reduction!r}"
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
    """
    check_reduction(reduction)
    s, t = _check_pair(student, teacher, names=("student", "teacher"), same_width=False)
    _check_batch("student", s, 2, "a pair")
    return _rkd_distance(s, t, reduction)


def _rkd_distance(s: Tensor, t: Tensor, reduction: str) -> Tensor:
    s = upcast(s)
    with _fp32(s.device):
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
    """
    check_reduction(reduction)
    chunk = _check_chunk_size(chunk_size)
    s, t = _check_pair(student, teacher, names=("student", "teacher"), same_width=False)
    _check_batch("student", s, 3, "a triplet")
    return _rkd_angle(s, t, chunk, reduction)


def _rkd_angle(s: Tensor, t: Tensor, chunk: int | None, reduction: str) -> Tensor:
    s = upcast(s)
    n = s.shape[0]
    t = t.detach().to(s.dtype)
    step = n if chunk is None else min(chunk, n)
    bounds = [(a, min(a + step, n)) for a in range(0, n, step)]
    with _fp32(s.device):
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


class RKDLoss(nn.Module):
    r"""Relational KD: ``distance_weight * rkd_distance_loss + angle_weight * rkd_angle_loss``.

    Defaults are the paper's metric-learning weights (``lambda_D = 1, lambda_A = 2``, no task loss);
    for classification the official script uses 25 and 50 with cross-entropy and Hinton KD. Both
    terms use ``"mean"`` (sum over pairs / ``N^2`` and over triplets / ``N^3``) or ``"sum"``; a
    weight of 0 skips its term. ``forward(student, teacher)`` takes ``(N, D_s)`` and ``(N, D_t)``
    embeddings with ``N >= 3`` (``N >= 2`` when ``angle_weight = 0``).
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
        s, t = _check_pair(student, teacher, names=("student", "teacher"), same_width=False)
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
