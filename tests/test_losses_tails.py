"""Tails of the fused sigmoid-focal and ASL kernels against 50-digit mpmath references.

The loss of one element and its derivative d loss / dz are computed by mpmath at 50 significant
digits (the derivative by mpmath's numerical differentiation of the reference loss, so it shares no
formula with the kernels' analytic gradients) on a grid of logits from -80 to 80, for targets 0 and
1 (and a soft 0.25, for the loss value only). Wherever the exact value exceeds 1e-30 in magnitude
the kernels must match it to a relative 1e-4 in float32 and 1e-12 in float64 (the worst errors
measured are about 3e-6 and 6e-15); below that they must stay below 1e-29. Before the kernels were
written without cancellation, terms like ``sigmoid(z) - 1`` or ``(1 - y) z - logsigmoid(z)``
rounded to 0 for |z| above about 16 in float32, and values and gradients there were off by 2% to
100%. The last section tests the per-label ``weight`` of the sigmoid focal loss.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from longtail.losses import SigmoidFocalLoss, asymmetric_loss, sigmoid_focal_loss

mp = pytest.importorskip("mpmath")

#: Logits, all exactly representable in float32; the tails at +-16/17 are where 1 - sigmoid(z)
#: stops being representable next to 1 in float32.
Z_GRID = sorted(
    {
        *(s * v for s in (-1.0, 1.0) for v in (8, 16, 17, 20, 40, 80)),
        *(s * v for s in (-1.0, 1.0) for v in (0.25, 0.5, 1, 1.5, 2, 3, 4.5, 6, 10, 12, 14, 18)),
        *(s * v for s in (-1.0, 1.0) for v in (25, 30, 50, 60, 70)),
        0.0,
    }
)
TARGETS = (0.0, 1.0, 0.25)
RTOL = {torch.float32: 1e-4, torch.float64: 1e-12}
#: Magnitude below which a value is compared in absolute terms (<= TINY_OUT) only.
TINY = 1e-30
TINY_OUT = 1e-29

MpFn = Callable[[object], object]


def _sigma(z: object) -> object:
    return 1 / (1 + mp.exp(-z))


def _value_and_derivative(f: MpFn, z: float) -> tuple[float, float]:
    with mp.workdps(50):
        x = mp.mpf(z)
        return float(f(x)), float(mp.diff(f, x))


# ----------------------------------------------------------------------- mpmath references


def ref_sigmoid_focal(y: float, gamma: float, alpha: float | None) -> MpFn:
    """Loss of one element: a_t (1 - p_t)^gamma BCE, with the soft-target blends of the library.

    ``-log(1 - p_t) = y softplus(z) + (1 - y) softplus(-z)`` and ``BCE = y softplus(-z) + (1 - y)
    softplus(z)``; for y in {0, 1} these are ``-log(1 - p_t)`` and ``-log p_t`` of the paper.
    """
    yy = mp.mpf(y)
    a_t = 1 if alpha is None else mp.mpf(alpha) * yy + (1 - mp.mpf(alpha)) * (1 - yy)

    def f(z: object) -> object:
        sp_pos = mp.log1p(mp.exp(z))  # softplus(z) = -log(1 - p)
        sp_neg = mp.log1p(mp.exp(-z))  # softplus(-z) = -log p
        bce = yy * sp_neg + (1 - yy) * sp_pos
        modulator = mp.exp(-mp.mpf(gamma) * (yy * sp_pos + (1 - yy) * sp_neg))
        return a_t * modulator * bce

    return f


def ref_asl_terms(gamma_pos: float, gamma_neg: float, clip: float) -> tuple[MpFn, ...]:
    """(w+, log p, w-, log(1 - p_m)) as functions of z; L+ = w+ log p, L- = w- log(1 - p_m)."""
    m = mp.mpf(clip)

    def q(z: object) -> object:
        return 1 / (1 + mp.exp(z))  # 1 - p, computed without cancellation

    def p_m(z: object) -> object:
        return max(_sigma(z) - m, mp.mpf(0))

    def w_pos(z: object) -> object:
        return q(z) ** gamma_pos

    def log_p(z: object) -> object:
        return mp.log(_sigma(z))

    def w_neg(z: object) -> object:
        return p_m(z) ** gamma_neg  # 0 ** 0 = 1

    def log_one_minus_pm(z: object) -> object:
        return mp.log(min(q(z) + m, mp.mpf(1)))

    return w_pos, log_p, w_neg, log_one_minus_pm


def ref_asl_point(
    z: float, y: float, gamma_pos: float, gamma_neg: float, clip: float, detach: bool
) -> tuple[float, float]:
    w_pos, log_p, w_neg, log_neg = ref_asl_terms(gamma_pos, gamma_neg, clip)
    with mp.workdps(50):
        x = mp.mpf(z)
        yy = mp.mpf(y)

        def loss(t: object) -> object:
            return -(yy * w_pos(t) * log_p(t) + (1 - yy) * w_neg(t) * log_neg(t))

        value = loss(x)
        if detach:  # the focusing weights are constants: differentiate the log terms only
            wp, wn = w_pos(x), w_neg(x)
            d = -(yy * wp * mp.diff(log_p, x) + (1 - yy) * wn * mp.diff(log_neg, x))
        else:
            d = mp.diff(loss, x)
        return float(value), float(d)


@functools.cache
def focal_reference(gamma: float, alpha: float | None) -> tuple[list[float], list[float]]:
    values: list[float] = []
    grads: list[float] = []
    for y in TARGETS:
        f = ref_sigmoid_focal(y, gamma, alpha)
        for z in Z_GRID:
            v, d = _value_and_derivative(f, z)
            values.append(v)
            grads.append(d)
    return values, grads


@functools.cache
def asl_reference(
    gamma_pos: float, gamma_neg: float, clip: float, detach: bool
) -> tuple[list[float], list[float]]:
    values: list[float] = []
    grads: list[float] = []
    for y in TARGETS:
        for z in Z_GRID:
            v, d = ref_asl_point(z, y, gamma_pos, gamma_neg, clip, detach)
            values.append(v)
            grads.append(d)
    return values, grads


# --------------------------------------------------------------------------------- helpers


def grid(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.tensor(Z_GRID * len(TARGETS), dtype=dtype)
    y = torch.tensor([t for t in TARGETS for _ in Z_GRID], dtype=dtype)
    return z, y


def loss_and_grad(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    z, y = grid(dtype)
    x = z.clone().requires_grad_(True)
    loss = fn(x, y)
    loss.sum().backward()
    assert x.grad is not None
    return z, y, loss.detach(), x.grad


def assert_matches(
    ours: torch.Tensor,
    exact: list[float],
    rtol: float,
    what: str,
    z: torch.Tensor,
    y: torch.Tensor,
    *,
    binary_only: bool = False,
) -> None:
    """Relative error <= rtol where |exact| > TINY, |ours| <= TINY_OUT elsewhere.

    ``binary_only`` checks the entries with y in {0, 1} only: with a soft target the gradient is a
    difference of the two terms, with a true zero (p near y) where no relative bound can hold.
    """
    got = ours.double()
    ref = torch.tensor(exact, dtype=torch.float64)
    assert torch.isfinite(got).all(), what
    if binary_only:
        keep = (y == 0) | (y == 1)
        got, ref, z, y = got[keep], ref[keep], z[keep], y[keep]
    big = ref.abs() > TINY
    rel = torch.where(big, (got - ref).abs() / ref.abs().clamp_min(TINY), torch.zeros_like(ref))
    worst = int(rel.argmax())
    assert rel[worst] <= rtol, (
        f"{what}: relative error {rel[worst].item():.3g} at z={z[worst].item()}, "
        f"y={y[worst].item()}: got {got[worst].item()!r}, exact {ref[worst].item()!r}"
    )
    small = ~big & (got.abs() > TINY_OUT)
    assert not small.any(), (
        f"{what}: |value| > {TINY_OUT} where the exact one is below {TINY}: "
        f"z={z[small].tolist()}, y={y[small].tolist()}, got {got[small].tolist()}"
    )


DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64")]


# ------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.0])
def test_sigmoid_focal_tails(gamma: float, alpha: float | None, dtype: torch.dtype) -> None:
    z, y, loss, grad = loss_and_grad(
        lambda x, t: sigmoid_focal_loss(x, t, gamma=gamma, alpha=alpha, reduction="none"), dtype
    )
    values, grads = focal_reference(gamma, alpha)
    what = f"sigmoid focal gamma={gamma} alpha={alpha} {dtype}"
    assert_matches(loss, values, RTOL[dtype], what + " loss", z, y)
    assert_matches(grad, grads, RTOL[dtype], what + " gradient", z, y, binary_only=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("clip", [0.0, 0.05])
@pytest.mark.parametrize("gamma_neg", [0.0, 1.0, 2.0, 4.0])
@pytest.mark.parametrize("gamma_pos", [0.0, 1.0, 2.0])
def test_asl_tails(
    gamma_pos: float, gamma_neg: float, clip: float, detach: bool, dtype: torch.dtype
) -> None:
    z, y, loss, grad = loss_and_grad(
        lambda x, t: asymmetric_loss(
            x,
            t,
            gamma_pos=gamma_pos,
            gamma_neg=gamma_neg,
            clip=clip,
            detach_focusing=detach,
            reduction="none",
        ),
        dtype,
    )
    values, grads = asl_reference(gamma_pos, gamma_neg, clip, detach)
    what = f"ASL gamma_pos={gamma_pos} gamma_neg={gamma_neg} clip={clip} detach={detach} {dtype}"
    assert_matches(loss, values, RTOL[dtype], what + " loss", z, y)
    assert_matches(grad, grads, RTOL[dtype], what + " gradient", z, y, binary_only=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma_neg", [0.0, 2.0])
@pytest.mark.parametrize("clip", [1e-6, 1e-3, 0.01, 0.3])
def test_asl_tails_other_clips(clip: float, gamma_neg: float, dtype: torch.dtype) -> None:
    """log(1 - p_m) stays accurate for a small margin (1 - p_m = q + m is then small for large z)."""
    z, y, loss, grad = loss_and_grad(
        lambda x, t: asymmetric_loss(
            x, t, gamma_pos=1.0, gamma_neg=gamma_neg, clip=clip, reduction="none"
        ),
        dtype,
    )
    values, grads = asl_reference(1.0, gamma_neg, clip, False)
    what = f"ASL gamma_neg={gamma_neg} clip={clip} {dtype}"
    assert_matches(loss, values, RTOL[dtype], what + " loss", z, y)
    assert_matches(grad, grads, RTOL[dtype], what + " gradient", z, y, binary_only=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_asl_positive_gradient_at_z8_is_not_zero(dtype: torch.dtype) -> None:
    """Regression: y = 1, z = 8 lost dL+/dz (about -1.1e-10) against the y = 0 term and gave 0."""
    x = torch.tensor([8.0], dtype=dtype, requires_grad=True)
    asymmetric_loss(
        x, torch.ones(1, dtype=dtype), gamma_pos=2.0, gamma_neg=4.0, clip=0.0, reduction="sum"
    ).backward()
    _, exact = ref_asl_point(8.0, 1.0, 2.0, 4.0, 0.0, False)
    assert exact == pytest.approx(-1.1312748666571780e-10, rel=1e-12)
    assert x.grad is not None
    assert x.grad.item() == pytest.approx(exact, rel=RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_of_confident_correct_negative_is_not_zero(dtype: torch.dtype) -> None:
    """Regression: y = 0, z = -20 gave a BCE of 0 ((1 - y) z - log sigma(z) cancels), not 2.06e-9."""
    z = torch.tensor([-20.0], dtype=dtype)
    loss = sigmoid_focal_loss(z, torch.zeros(1, dtype=dtype), gamma=0.0, alpha=None)
    exact = float(mp.log1p(mp.exp(-20)))
    assert loss.item() == pytest.approx(exact, rel=RTOL[dtype])


# ------------------------------------------------------- per-label weight of the sigmoid focal loss


def weighted_data(
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(40)
    z = (torch.randn(12, 5, generator=g, dtype=torch.float64) * 3).to(dtype)
    y = (torch.rand(12, 5, generator=g) < 0.3).to(dtype)
    w = torch.tensor([0.5, 2.0, 0.0, 1.0, 3.5], dtype=dtype)
    return z, y, w


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_weighted_gamma0_is_weighted_bce(reduction: str, dtype: torch.dtype) -> None:
    z, y, w = weighted_data(dtype)
    a = z.clone().requires_grad_(True)
    b = z.clone().requires_grad_(True)
    ours = sigmoid_focal_loss(a, y, gamma=0.0, alpha=None, weight=w, reduction=reduction)
    ref = F.binary_cross_entropy_with_logits(b, y, weight=w, reduction=reduction)
    torch.testing.assert_close(ours, ref)
    ours.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_weight_multiplies_positives_and_negatives_of_its_label() -> None:
    z, y, w = weighted_data()
    plain = sigmoid_focal_loss(z, y, reduction="none")
    torch.testing.assert_close(sigmoid_focal_loss(z, y, weight=w, reduction="none"), plain * w)
    # "mean" divides the weighted sum by the number of entries, not by the sum of the weights.
    torch.testing.assert_close(sigmoid_focal_loss(z, y, weight=w), (plain * w).sum() / y.numel())
    # Any leading shape: the weight runs along the last dimension.
    z3, y3 = z.reshape(3, 4, 5), y.reshape(3, 4, 5)
    torch.testing.assert_close(
        sigmoid_focal_loss(z3, y3, weight=w, reduction="none"), (plain * w).reshape(3, 4, 5)
    )
    # A sequence works like a tensor.
    torch.testing.assert_close(
        sigmoid_focal_loss(z, y, weight=w.tolist()), sigmoid_focal_loss(z, y, weight=w)
    )


def test_weight_with_unknown_labels() -> None:
    z, y, w = weighted_data()
    unknown = torch.rand(z.shape, generator=torch.Generator().manual_seed(41)) < 0.3
    y2 = y.masked_fill(unknown, -1.0)
    full = sigmoid_focal_loss(z, y, weight=w, reduction="none")
    out = sigmoid_focal_loss(z, y2, weight=w, reduction="none")
    assert (out[unknown] == 0).all()
    torch.testing.assert_close(out[~unknown], full[~unknown])
    mean = sigmoid_focal_loss(z, y2, weight=w)
    torch.testing.assert_close(mean, full[~unknown].sum() / (~unknown).sum())
    a = z.clone().requires_grad_(True)
    sigmoid_focal_loss(a, y2, weight=w).backward()
    assert a.grad is not None and (a.grad[unknown] == 0).all()
    assert (a.grad[:, 2] == 0).all()  # weight 0: no gradient


def test_weighted_gradcheck() -> None:
    z, y, w = weighted_data()
    y[0, 0] = -1.0
    y[1, 1] = 0.3
    x = z[:4].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda v: sigmoid_focal_loss(v, y[:4], gamma=1.5, alpha=0.25, weight=w, reduction="none"),
        (x,),
        eps=1e-6,
        atol=1e-6,
    )


def test_module_weight_is_a_buffer() -> None:
    z, y, w = weighted_data(torch.float32)
    m = SigmoidFocalLoss(gamma=1.0, alpha=None, weight=w)
    assert "weight" in dict(m.named_buffers())
    assert m.weight is not None and m.weight.dtype == torch.float32
    torch.testing.assert_close(m(z, y), sigmoid_focal_loss(z, y, gamma=1.0, alpha=None, weight=w))
    state = m.state_dict()
    assert set(state) == {"weight"}
    fresh = SigmoidFocalLoss(gamma=1.0, alpha=None, weight=torch.ones(5))
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh(z, y), m(z, y))
    m64 = m.to(torch.float64)
    assert m64.weight is not None and m64.weight.dtype == torch.float64
    assert SigmoidFocalLoss().weight is None


@pytest.mark.parametrize(
    ("weight", "error"),
    [
        (torch.ones(4), ValueError),  # wrong length
        (torch.tensor([1.0, -0.5, 1.0, 1.0, 1.0]), ValueError),
        (torch.tensor([1.0, float("nan"), 1.0, 1.0, 1.0]), ValueError),
        (torch.tensor([1.0, float("inf"), 1.0, 1.0, 1.0]), ValueError),
        (torch.ones(5, 1), ValueError),
        ("weights", TypeError),
        (torch.ones(5, dtype=torch.bool), TypeError),
    ],
)
def test_bad_weight(weight: object, error: type[Exception]) -> None:
    z, y, _ = weighted_data()
    with pytest.raises(error, match="weight"):
        sigmoid_focal_loss(z, y, weight=weight)  # type: ignore[arg-type]
    if not (isinstance(weight, torch.Tensor) and weight.shape == (4,)):
        with pytest.raises(error, match="weight"):
            SigmoidFocalLoss(weight=weight)  # type: ignore[arg-type]


def test_weight_needs_a_label_dimension() -> None:
    with pytest.raises(ValueError, match="weight"):
        sigmoid_focal_loss(torch.tensor(1.0), torch.tensor(1.0), weight=torch.ones(1))
