"""Knowledge distillation on logits: Hinton's KD (optionally on standardised logits) and DKD.

Hinton, Vinyals, Dean. "Distilling the Knowledge in a Neural Network". NIPS workshop 2015.
Sun, Ren, Li, Wang, Cao. "Logit Standardization in Knowledge Distillation". CVPR 2024.
Zhao, Cui, Song, Qiu, Liang. "Decoupled Knowledge Distillation". CVPR 2022.

Every loss takes the student's output first and the teacher's second. The teacher side is detached
(and computed under ``torch.no_grad``): no gradient ever reaches the teacher. The losses work in
log space (``log_softmax`` / ``logsumexp``) in float32 (float64 for float64 inputs), so they are finite
for logits of +-1e4 and under bf16 autocast. They are registered in :data:`longtail.losses.LOSSES`
under the task ``"distillation"`` (their specs name the teacher as an extra positional argument), not
among the ``(logits, target)`` classification losses. The relational losses (RKD) on features are in
:mod:`longtail.losses.relational`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import (
    Reduction,
    check_nonnegative,
    check_pair,
    check_positive,
    check_reduction,
    check_single_label,
    reduce_loss,
    upcast,
)

__all__ = ["DKDLoss", "KDLoss", "dkd_loss", "kd_loss"]

#: The z-score of :func:`kd_loss` divides by ``std + _STD_EPS`` (the official code's 1e-7).
_STD_EPS = 1e-7


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

    Example:
        >>> from longtail.losses import kd_loss
        >>> student = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3]])
        >>> teacher = torch.tensor([[3.0, 0.0, -2.0], [0.0, 2.5, 0.5]])
        >>> round(kd_loss(student, teacher, temperature=4.0).item(), 4)
        0.2429
        >>> kd_loss(teacher, teacher).item()  # the teacher itself: zero
        0.0
        >>> std = kd_loss(student, teacher, standardize=True)  # logit standardisation (Sun et al.)
        >>> moved = kd_loss(3.0 * student + 1.0, teacher, standardize=True)  # invariant to a s + b
        >>> round(std.item(), 4), round(moved.item(), 4)
        (0.0026, 0.0026)
    """
    check_reduction(reduction)
    temperature = check_positive("temperature", temperature)
    if not isinstance(standardize, bool):
        raise TypeError(f"standardize must be a bool, got {type(standardize).__name__}")
    s, t = check_pair(
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
    """Module twin of :func:`kd_loss`.

    Example:
        >>> from longtail.losses import KDLoss
        >>> student = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3]])
        >>> teacher = torch.tensor([[3.0, 0.0, -2.0], [0.0, 2.5, 0.5]])
        >>> criterion = KDLoss(temperature=4.0, reduction="none")
        >>> criterion(student, teacher).shape
        torch.Size([2])
    """

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

    Example:
        >>> from longtail.losses import dkd_loss, kd_loss
        >>> student = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3]])
        >>> teacher = torch.tensor([[3.0, 0.0, -2.0], [0.0, 2.5, 0.5]])
        >>> target = torch.tensor([0, 1])
        >>> round(dkd_loss(student, teacher, target, alpha=1.0, beta=8.0).item(), 4)
        0.3971
        >>> dkd_loss(teacher, teacher, target).item()
        0.0
    """
    check_reduction(reduction)
    alpha = check_nonnegative("alpha", alpha)
    beta = check_nonnegative("beta", beta)
    temperature = check_positive("temperature", temperature)
    s, t = check_pair(
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
    """Module twin of :func:`dkd_loss`; ``forward(student_logits, teacher_logits, target)``.

    Example:
        >>> from longtail.losses import DKDLoss, dkd_loss
        >>> student = torch.tensor([[2.0, 0.5, -1.0], [0.1, 1.5, 0.3]])
        >>> teacher = torch.tensor([[3.0, 0.0, -2.0], [0.0, 2.5, 0.5]])
        >>> target = torch.tensor([0, 1])
        >>> criterion = DKDLoss(alpha=1.0, beta=8.0, temperature=4.0)
        >>> torch.equal(criterion(student, teacher, target), dkd_loss(student, teacher, target))
        True
    """

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
