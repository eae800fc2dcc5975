"""Fused element-wise kernels (private) for the sigmoid focal loss, ASL and the Hill loss.

Each is a ``torch.autograd.Function`` that computes the per-element loss and, when the logits need a
gradient, its analytic derivative in the same pass, reusing intermediates and working in place. Only
that derivative is saved for backward (one tensor the size of the logits) instead of the dozen
intermediates autograd would keep, which makes these losses faster and lighter than the plain
formulation. The derivatives are checked against autograd with ``gradcheck`` in the tests.
Gradients flow to the logits only (targets are data); double backward is not supported.

The sigmoid kernels are free of cancellation, so values and gradients keep their relative accuracy
for large ``|z|`` (tests/test_losses_tails.py compares them with 50-digit references): ``1 - p`` is
``sigmoid(-z)``, never ``1 - sigmoid(z)`` (which is 0 from ``z = 17`` in float32); ``log(1 - p)`` is
``logsigmoid(-z)``; ``p - y`` is ``(1 - y) p - y q``; and the ``y = 1`` and ``y = 0`` terms are
blended with ``torch.lerp``, which is exact at ``y = 0`` and ``y = 1`` (``a + y (b - a)`` is not: it
loses a small ``b`` against a large ``a``) and linear in soft targets.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable


def _power(x: Tensor, k: float) -> Tensor:
    """``x ** k`` as a new tensor; small integer powers by multiplication (``pow`` is slow on CPU)."""
    if k == 0:
        return torch.ones_like(x)
    if k == int(k) and 1 <= k <= 8:
        n = int(k)
        if n == 1:
            return x.clone()
        square = x * x
        if n == 2:
            return square
        if n == 3:
            return square.mul_(x)
        result = square * square  # x^4
        for _ in range(n - 4):
            result.mul_(x)
        return result
    return x.pow(k)


#: Elements processed at a time: the dozen temporaries of a chunk stay in the CPU cache.
CHUNK = 1 << 15
#: ASL margins below this use ``log(min(q + m, 1))`` for ``log(1 - p_m)`` where ``p_m >= 1/2``
#: (``log1p(-p_m)`` would lose up to ``log2(1/m)`` bits there); above it ``log1p`` alone is accurate
#: to a few ulps.
SMALL_CLIP = 1e-2
#: Elements per chunk of rows for the single-label kernel, whose chunks also run a dozen small
#: per-row operations: larger chunks amortise their fixed cost.
ROW_CHUNK = 1 << 17


def _chunked(
    kernel: Any, z: Tensor, y: Tensor, need_grad: bool, *args: Any
) -> tuple[Tensor, Tensor | None]:
    """Run ``kernel(z, y, need_grad, loss_out, grad_out, *args) -> (loss, grad)`` over chunks.

    The kernel writes its final results into the ``loss_out`` / ``grad_out`` slices of the outputs
    (``out=``), so chunking costs no extra copy.
    """
    zf = z.contiguous().view(-1)
    yf = y.contiguous().view(-1)
    n = zf.numel()
    if n <= CHUNK or z.device.type != "cpu":
        loss, grad = kernel(zf, yf, need_grad, None, None, *args)
        return loss.view(z.shape), None if grad is None else grad.view(z.shape)
    loss = torch.empty_like(zf)
    grad = torch.empty_like(zf) if need_grad else None
    for start in range(0, n, CHUNK):
        end = min(start + CHUNK, n)
        kernel(
            zf[start:end],
            yf[start:end],
            need_grad,
            loss[start:end],
            None if grad is None else grad[start:end],
            *args,
        )
    return loss.view(z.shape), None if grad is None else grad.view(z.shape)


def _sigmoid_focal_kernel(
    z: Tensor,
    y: Tensor,
    need_grad: bool,
    loss_out: Tensor | None,
    grad_out: Tensor | None,
    gamma: float,
    alpha: float | None,
) -> tuple[Tensor, Tensor | None]:
    # Cancellation-free in both tails: softplus(+-z) = relu(+-z) - log sigma(|z|) are sums of
    # non-negative terms (one ``logsigmoid`` for both); p = sigma(z) and q = sigma(-z) = 1 - p are
    # each computed directly; every blend of a y = 1 and a y = 0 quantity is a ``lerp``, exact at
    # y = 0 and y = 1 and linear in soft targets. Buffers are reused to keep allocations few.
    buf = torch.abs(z)
    l_abs = F.logsigmoid(buf)  # log sigma(|z|) = -log(1 + e^-|z|), in [-log 2, 0]
    relu_pos = torch.clamp_min(z, 0.0, out=buf)
    relu_neg = torch.sub(relu_pos, z)  # relu(-z), exact
    # BCE = y softplus(-z) + (1 - y) softplus(z)
    ce = (
        torch.lerp(relu_pos, relu_neg, y, out=loss_out)
        if loss_out is not None
        else torch.lerp(relu_pos, relu_neg, y)
    ).sub_(l_abs)
    # Per-element factor alpha_t (1 - p_t)^gamma, with
    # -log(1 - p_t) = y softplus(z) + (1 - y) softplus(-z).
    factor = relu_neg.lerp_(relu_pos, y).sub_(l_abs).mul_(-gamma).exp_() if gamma != 0 else None
    if alpha is not None:
        spare = l_abs if factor is not None else relu_neg  # l_abs is reused for -q below
        a_t = torch.mul(y, 2 * alpha - 1, out=spare).add_(1 - alpha)
        factor = a_t if factor is None else factor.mul_(a_t)
    g: Tensor | None = None
    if need_grad:
        # d loss / dz = alpha_t m [(p - y) + gamma BCE (1 - p - y)] with p - y = (1 - y) p - y q and
        # 1 - p - y = (1 - y) q - y p, i.e. lerp(p, -q, y) and -lerp(-q, p, y).
        p = torch.sigmoid(z, out=relu_pos)
        neg_q = torch.neg(z, out=l_abs).sigmoid_().neg_()
        g = (
            torch.lerp(p, neg_q, y, out=grad_out)
            if grad_out is not None
            else torch.lerp(p, neg_q, y)
        )
        if gamma != 0:
            g.addcmul_(ce, neg_q.lerp_(p, y), value=-gamma)
        if factor is not None:
            g.mul_(factor)
    loss = ce if factor is None else ce.mul_(factor)  # written last: the gradient reads the BCE
    return loss, g


class _SigmoidFocal(torch.autograd.Function):
    r"""Per-element sigmoid focal loss; ``y`` in [0, 1] (unknown entries masked by the caller).

    With :math:`p = \sigma(z)`, :math:`q = \sigma(-z) = 1 - p` and
    :math:`\operatorname{softplus}(\pm z) = \operatorname{relu}(\pm z) - \log\sigma(|z|)`:

    .. math::
        c = y\,\operatorname{softplus}(-z) + (1 - y)\operatorname{softplus}(z),\quad
        m = e^{-\gamma [y\,\operatorname{softplus}(z) + (1 - y)\operatorname{softplus}(-z)]},\quad
        \ell = a\, m\, c,
        \qquad \frac{\partial \ell}{\partial z} = a\, m\, \bigl[(p - y) + \gamma\, c\, (1 - p - y)\bigr]

    (``m`` is :math:`(1 - p_t)^\gamma`). Every quantity is formed without cancellation, so loss and
    gradient keep their relative accuracy in both tails (e.g. ``z = 40, y = 1``):
    ``p - y = (1 - y) p - y q`` and ``1 - p - y = (1 - y) q - y p``, each blend a ``lerp`` (exact at
    ``y`` = 0 and 1). ``c`` is ``F.binary_cross_entropy_with_logits``, computed without its
    cancellation for ``y = 0, z << 0``.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx, z: Tensor, y: Tensor, gamma: float, alpha: float | None
    ) -> Tensor:
        need_grad = bool(ctx.needs_input_grad[0])  # type: ignore[attr-defined]
        loss, grad = _chunked(_sigmoid_focal_kernel, z, y, need_grad, gamma, alpha)
        if grad is not None:
            ctx.save_for_backward(grad)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None, None, None]:
        (g,) = ctx.saved_tensors
        return grad_out * g, None, None, None


def _asl_kernel(
    z: Tensor,
    y: Tensor,
    need_grad: bool,
    loss_out: Tensor | None,
    grad_out: Tensor | None,
    gamma_pos: float,
    gamma_neg: float,
    clip: float,
    detach: bool,
) -> tuple[Tensor, Tensor | None]:
    # Cancellation-free, as in the sigmoid focal kernel: q = sigma(-z) = 1 - p and log q are
    # computed directly, 1 - p_m = min(q + m, 1), and the y = 1 / y = 0 terms are blended with ``lerp``.
    log_p = F.logsigmoid(z)
    p = torch.sigmoid(z)
    nz = torch.neg(z)
    log_q = F.logsigmoid(nz) if clip == 0 else None
    small_clip = 0 < clip < SMALL_CLIP
    q = nz.sigmoid_() if need_grad or gamma_pos != 0 or small_clip else None

    # Positive term L+ = q^g+ log p and dL+/dz = q^g+ (q - g+ p log p), both terms >= 0.
    d_pos: Tensor | None = None
    if gamma_pos == 0:
        pos = log_p
        d_pos = q
    else:
        assert q is not None
        w_pos = _power(q, gamma_pos)
        pos = log_p * w_pos
        if need_grad:
            d_pos = (
                q * w_pos if detach else torch.addcmul(q, p, log_p, value=-gamma_pos).mul_(w_pos)
            )

    # Negative term L- and its derivative.
    d_neg: Tensor | None = None
    if clip > 0:
        p_m = torch.sub(p, clip).clamp_min_(0.0)
        # 1 - p_m = min(q + m, 1) >= m, never computed as 1 - p_m.
        q_m = torch.add(q, clip).clamp_max_(1.0) if q is not None else None
        # log(1 - p_m) = log1p(-p_m): exact for small p_m, and as 1 - p_m >= m it loses at most
        # log2(1/m) bits (p_m carries the rounding of p ~ 1). For m < SMALL_CLIP, log(q_m) is
        # used instead where q_m <= 1/2 (log1p where p_m < 1/2), selected by an exact lerp.
        log_qm = torch.neg(p_m).log1p_()
        if small_clip:
            assert q_m is not None
            small_pm = torch.rsub(p_m, 0.5).sign_().clamp_min_(0.0)  # 1 where p_m < 1/2, else 0
            log_qm = torch.log(q_m).lerp_(log_qm, small_pm)
        lower = None
        if gamma_neg == 0:
            neg = log_qm
            w_neg = torch.ones_like(p_m) if need_grad else None
        else:
            if need_grad and not detach:
                lower = _power(p_m, gamma_neg - 1.0)
                if gamma_neg < 1:  # 0 ** negative = inf where p <= m; that term is 0 there
                    lower = lower.where(p_m > 0, 0.0)
                w_neg = lower * p_m
            else:
                w_neg = _power(p_m, gamma_neg)
            neg = log_qm * w_neg
        if need_grad:
            assert w_neg is not None and q is not None and q_m is not None
            # dp/dz = p q; the clamp is flat where p <= m. For gamma_neg >= 1 every term already
            # vanishes there (p_m = 0, log(1 - p_m) = 0), so no mask is needed.
            dp = p * q
            if gamma_neg < 1:
                dp = dp.where(p_m > 0, 0.0)
            d_neg = w_neg.div_(q_m).neg_()
            if lower is not None:
                d_neg.addcmul_(lower, log_qm, value=gamma_neg)
            d_neg.mul_(dp)
    else:
        assert log_q is not None
        if gamma_neg == 0:
            neg = log_q
            w_neg = None
        else:
            w_neg = torch.mul(log_p, gamma_neg).exp_()  # p^g-
            neg = log_q * w_neg
        if need_grad:
            assert q is not None
            # dL-/dz = p^g- (g- q log q - p), both terms <= 0.
            d_neg = p.neg()
            if gamma_neg != 0 and not detach:
                d_neg.addcmul_(q, log_q, value=gamma_neg)
            if w_neg is not None:
                d_neg.mul_(w_neg)

    # loss = -(y L+ + (1 - y) L-); ``lerp`` returns L+ exactly at y = 1 and L- at y = 0 (a blend
    # ``L- + y (L+ - L-)`` would lose a small L+ against a large L-). The gradient likewise.
    loss = (
        torch.lerp(neg, pos, y, out=loss_out) if loss_out is not None else torch.lerp(neg, pos, y)
    ).neg_()
    if not need_grad:
        return loss, None
    assert d_pos is not None and d_neg is not None
    grad = (
        torch.lerp(d_neg, d_pos, y, out=grad_out)
        if grad_out is not None
        else torch.lerp(d_neg, d_pos, y)
    )
    return loss, grad.neg_()


class _Asymmetric(torch.autograd.Function):
    r"""Per-element ASL; ``y`` in [0, 1] (unknown entries masked by the caller).

    With ``L+ = (1-p)^{g+} log p`` and ``L- = p_m^{g-} log(1 - p_m)``, ``p_m = max(p - m, 0)``,
    the loss is ``-(y L+ + (1 - y) L-)`` and, for ``p_m > 0``,

    .. math::
        \frac{dL_+}{dz} = (1-p)^{g_+}\bigl[(1 - p) - g_+\, p \log p\bigr], \qquad
        \frac{dL_-}{dz} = p(1-p)\Bigl[g_-\, p_m^{g_- - 1} \log(1 - p_m) - \frac{p_m^{g_-}}{1 - p_m}\Bigr]

    (``dL-/dz = 0`` where ``p <= m``). With ``detach`` the focusing weights are constants and the
    ``g`` terms vanish. Computed without cancellation: ``1 - p`` is ``q = sigma(-z)``,
    ``log(1 - p)`` is ``logsigmoid(-z)``, ``1 - p_m = min(q + m, 1)``, and ``log(1 - p_m)`` is
    ``log1p(-p_m)`` (for ``m < SMALL_CLIP``: ``log(min(q + m, 1))`` where ``p_m >= 1/2``); the two
    terms of each bracket have the same sign; ``y L+ + (1 - y) L-`` is a ``lerp`` (exactly ``L+`` at ``y = 1``,
    where ``L- + y (L+ - L-)`` would lose a small ``L+`` against a large ``L-``).
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        z: Tensor,
        y: Tensor,
        gamma_pos: float,
        gamma_neg: float,
        clip: float,
        detach: bool,
    ) -> Tensor:
        need_grad = bool(ctx.needs_input_grad[0])  # type: ignore[attr-defined]
        loss, grad = _chunked(_asl_kernel, z, y, need_grad, gamma_pos, gamma_neg, clip, detach)
        if grad is not None:
            ctx.save_for_backward(grad)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None, None, None, None, None]:
        (g,) = ctx.saved_tensors
        return grad_out * g, None, None, None, None, None


def sigmoid_focal_elementwise(z: Tensor, y: Tensor, gamma: float, alpha: float | None) -> Tensor:
    out: Tensor = _SigmoidFocal.apply(z, y, gamma, alpha)
    return out


def asymmetric_elementwise(
    z: Tensor, y: Tensor, gamma_pos: float, gamma_neg: float, clip: float, detach: bool
) -> Tensor:
    out: Tensor = _Asymmetric.apply(z, y, gamma_pos, gamma_neg, clip, detach)
    return out


def _hill_kernel(
    z: Tensor,
    y: Tensor,
    need_grad: bool,
    loss_out: Tensor | None,
    grad_out: Tensor | None,
    lamb: float,
    margin: float,
    gamma: float,
) -> tuple[Tensor, Tensor | None]:
    # Positive term on the shifted logit a = z - margin, p_m = sigma(a), q_m = sigma(-a) = 1 - p_m
    # (computed directly): L+ = -q_m^gamma log p_m, log p_m from ``logsigmoid``.
    a = torch.sub(z, margin)
    log_pm = F.logsigmoid(a)
    p_m = torch.sigmoid(a) if need_grad else None
    q_m = a.neg_().sigmoid_()
    w = _power(q_m, gamma) if gamma != 0 else None
    neg_pos = log_pm if w is None else log_pm * w  # -L+
    # Negative term L- = (lamb - p) p^2 = ((lamb - 1) + q) p^2, q = sigma(-z) computed directly.
    q = torch.neg(z).sigmoid_()
    p2 = torch.sigmoid(z).square_()
    neg_neg = torch.rsub(q, 1.0 - lamb).mul_(p2)  # -L-
    loss = (
        torch.lerp(neg_neg, neg_pos, y, out=loss_out)
        if loss_out is not None
        else torch.lerp(neg_neg, neg_pos, y)
    ).neg_()
    if not need_grad:
        return loss, None
    assert p_m is not None
    # -dL+/dz = q_m^gamma (q_m - gamma p_m log p_m), both terms >= 0.
    d_pos = q_m if gamma == 0 else q_m.addcmul_(p_m, log_pm, value=-gamma)
    if w is not None:
        d_pos.mul_(w)
    # -dL-/dz = -p^2 q ((2 lamb - 3) + 3 q): the lamb = 1.5 bracket is 3 q, no 3 - 3 p.
    d_neg = torch.mul(q, -3.0, out=neg_neg).sub_(2.0 * lamb - 3.0).mul_(q).mul_(p2)
    grad = (
        torch.lerp(d_neg, d_pos, y, out=grad_out)
        if grad_out is not None
        else torch.lerp(d_neg, d_pos, y)
    )
    return loss, grad.neg_()


class _Hill(torch.autograd.Function):
    r"""Per-element Hill loss; ``y`` in [0, 1] (unknown entries masked by the caller).

    With :math:`p = \sigma(z)`, :math:`q = \sigma(-z)`, :math:`p_m = \sigma(z - m)`,
    :math:`q_m = \sigma(m - z)`: :math:`L_+ = -q_m^{\gamma} \log p_m`,
    :math:`L_- = (\lambda - p)\, p^2 = ((\lambda - 1) + q)\, p^2`, the loss is
    :math:`y L_+ + (1 - y) L_-` and

    .. math::
        \frac{dL_+}{dz} = -q_m^{\gamma}\bigl[q_m - \gamma\, p_m \log p_m\bigr], \qquad
        \frac{dL_-}{dz} = p^2 q\, \bigl[(2\lambda - 3) + 3q\bigr]

    (``dL-/dz = p q (2 lamb p - 3 p^2)``). No term is formed by cancellation: ``1 - p`` is ``q``,
    ``lamb - p`` is ``(lamb - 1) + q``, and the blend of the two terms is a ``lerp``.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx, z: Tensor, y: Tensor, lamb: float, margin: float, gamma: float
    ) -> Tensor:
        need_grad = bool(ctx.needs_input_grad[0])  # type: ignore[attr-defined]
        loss, grad = _chunked(_hill_kernel, z, y, need_grad, lamb, margin, gamma)
        if grad is not None:
            ctx.save_for_backward(grad)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        (g,) = ctx.saved_tensors
        return grad_out * g, None, None, None, None


def hill_elementwise(z: Tensor, y: Tensor, lamb: float, margin: float, gamma: float) -> Tensor:
    out: Tensor = _Hill.apply(z, y, lamb, margin, gamma)
    return out


def _asl_single_kernel(
    z: Tensor,
    t: Tensor,
    need_grad: bool,
    gamma_pos: float,
    gamma_neg: float,
    eps: float,
    grad_out: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Rows of the single-label ASL: per-sample loss ``(n,)`` and its gradient ``(n, C)``.

    With ``s`` the smoothed one-hot target and ``a`` the asymmetric weights, ``l = -sum_c s_c a_c lp_c``
    and ``dl/dz_k = g_k - p_k sum_c g_c`` where ``g_c = dl/d lp_c``:
    ``g_c = -s_c p_c^{g-} (g- lp_c + 1)`` for ``c != y`` and
    ``g_y = -s_y [(1 - p_y)^{g+} - g+ (1 - p_y)^{g+ - 1} p_y lp_y]``.
    """
    num_classes = z.shape[1]
    s_off = eps / num_classes
    s_y = 1.0 - eps + s_off
    idx = t.unsqueeze(1)
    log_p = F.log_softmax(z, dim=1)
    p = torch.exp(log_p)
    lp_y = log_p.gather(1, idx)
    p_y = p.gather(1, idx)
    one_minus = (-torch.expm1(lp_y)).clamp_min(torch.finfo(z.dtype).tiny)
    w_y = one_minus.pow(gamma_pos) if gamma_pos != 0 else torch.ones_like(lp_y)
    if gamma_neg == 0:
        e = el = None
        row_sum = log_p.sum(1, keepdim=True)
        off_y = lp_y
    else:
        e = _power(p, gamma_neg)
        el = e * log_p
        row_sum = el.sum(1, keepdim=True)
        off_y = e.gather(1, idx) * lp_y
    term_y = w_y * lp_y
    loss = (s_off * (row_sum - off_y) + s_y * term_y).neg_().squeeze(1)
    if not need_grad:
        return loss, None
    if e is None or el is None:
        g = torch.full_like(z, -s_off) if grad_out is None else grad_out.fill_(-s_off)
    else:
        # -s p^g (g log p + 1) = -s (e + g * e log p), reusing e log p from the loss
        g = (
            torch.add(e, el, alpha=gamma_neg)
            if grad_out is None
            else torch.add(e, el, alpha=gamma_neg, out=grad_out)
        ).mul_(-s_off)
    d_y = w_y.clone()
    if gamma_pos != 0:
        d_y -= gamma_pos * one_minus.pow(gamma_pos - 1.0) * p_y * lp_y
    g.scatter_(1, idx, d_y.mul_(-s_y))
    g.addcmul_(p, g.sum(1, keepdim=True), value=-1.0)
    return loss, g


class _AsymmetricSingleLabel(torch.autograd.Function):
    """Single-label ASL over rows; processed in row chunks of about ``CHUNK`` elements."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        z: Tensor,
        t: Tensor,
        gamma_pos: float,
        gamma_neg: float,
        eps: float,
    ) -> Tensor:
        need_grad = bool(ctx.needs_input_grad[0])  # type: ignore[attr-defined]
        n, c = z.shape
        rows = ROW_CHUNK // max(c, 1)
        # Few rows per chunk would cost more in per-call overhead than the cache saves.
        if rows < 16 or n <= rows or z.device.type != "cpu":
            loss, grad = _asl_single_kernel(z, t, need_grad, gamma_pos, gamma_neg, eps)
        else:
            loss = z.new_empty(n)
            grad = torch.empty_like(z) if need_grad else None
            for start in range(0, n, rows):
                end = min(start + rows, n)
                lc, _ = _asl_single_kernel(
                    z[start:end],
                    t[start:end],
                    need_grad,
                    gamma_pos,
                    gamma_neg,
                    eps,
                    None if grad is None else grad[start:end],
                )
                loss[start:end] = lc
        if grad is not None:
            ctx.save_for_backward(grad)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        (g,) = ctx.saved_tensors
        return g * grad_out.unsqueeze(1), None, None, None, None


def asymmetric_single_label_rows(
    z: Tensor, t: Tensor, gamma_pos: float, gamma_neg: float, eps: float
) -> Tensor:
    out: Tensor = _AsymmetricSingleLabel.apply(z, t, gamma_pos, gamma_neg, eps)
    return out


class _SoftmaxFocal(torch.autograd.Function):
    r"""Per-sample softmax focal loss ``-w (1 - p_y)^g log p_y`` with its analytic gradient.

    Only ``log p_y`` enters the loss, so ``dl/dz = dl/d(log p_y) * (onehot(y) - p)`` with
    ``dl/d(log p_y) = -w [(1 - p_y)^g - g (1 - p_y)^{g - 1} p_y log p_y]``: the backward is the
    cross-entropy backward scaled per row. Saves ``log_softmax(z)`` and one number per row.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, z: Tensor, t: Tensor, gamma: float, w: Tensor | None) -> Tensor:
        log_p = F.log_softmax(z, dim=1)
        idx = t.unsqueeze(1)
        lp_y = log_p.gather(1, idx).squeeze(1)
        if gamma != 0:
            one_minus = (-torch.expm1(lp_y)).clamp_min(torch.finfo(z.dtype).tiny)
            mod = one_minus.pow(gamma)
            loss = -mod * lp_y
            d_lp = (gamma * one_minus.pow(gamma - 1.0)) * lp_y.exp() * lp_y - mod
        else:
            loss = -lp_y
            d_lp = torch.full_like(lp_y, -1.0)
        if w is not None:
            loss = loss * w
            d_lp = d_lp * w
        if ctx.needs_input_grad[0]:  # type: ignore[attr-defined]
            ctx.save_for_backward(log_p, idx, d_lp)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None, None, None]:
        log_p, idx, d_lp = ctx.saved_tensors
        c = (grad_out * d_lp).unsqueeze(1)
        grad = torch.exp(log_p).mul_(-c)
        grad.scatter_add_(1, idx, c)
        return grad, None, None, None


def softmax_focal_rows(z: Tensor, t: Tensor, gamma: float, w: Tensor | None) -> Tensor:
    out: Tensor = _SoftmaxFocal.apply(z, t, gamma, w)
    return out
