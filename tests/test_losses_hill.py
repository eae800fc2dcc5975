"""The Hill loss: reference formulas, gradients, the paper's properties, validation, unknown labels.

The reference is the official code's formulation (github.com/xinyu1205/robust-loss-mlml,
``src/loss_functions/losses.py``, class ``Hill``) re-derived here with plain float64 torch ops on
probabilities: ``pred_pos = sigmoid(z - margin)``, ``pred_neg = sigmoid(z)``, a focal weight
``((1 - pred_pos) y + (1 - y)) ** gamma`` on the whole loss, ``-(y log pred_pos - (1 - y)
(lamb - pred_neg) pred_neg ** 2)``; the implementation works in log space with a fused kernel.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from longtail.losses import (
    LOSSES,
    HillLoss,
    hill_loss,
    list_losses,
    sigmoid_focal_loss,
    value_checks,
)

N, C = 40, 7


def data(
    seed: int = 0, scale: float = 3.0, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(N, C, generator=g, dtype=torch.float64) * scale).to(dtype)
    y = (torch.rand(N, C, generator=g) < 0.3).to(dtype)
    return z, y


def ref_hill_official(
    z: torch.Tensor, y: torch.Tensor, lamb: float = 1.5, margin: float = 1.0, gamma: float = 2.0
) -> torch.Tensor:
    """The official formulation (probabilities, weight on the whole loss), element-wise."""
    pred_pos = torch.sigmoid(z - margin)
    pred_neg = torch.sigmoid(z)
    focal_weight = ((1 - pred_pos) * y + (1 - y)) ** gamma
    los_pos = y * torch.log(pred_pos)
    los_neg = (1 - y) * -(lamb - pred_neg) * pred_neg**2
    return -(los_pos + los_neg) * focal_weight


def ref_hill_linear(
    z: torch.Tensor, y: torch.Tensor, lamb: float = 1.5, margin: float = 1.0, gamma: float = 2.0
) -> torch.Tensor:
    """y L+ + (1 - y) L-: the soft-target blend of the library (same as the official for 0/1)."""
    p_m = torch.sigmoid(z - margin)
    p = torch.sigmoid(z)
    l_pos = -((1 - p_m) ** gamma) * torch.log(p_m)
    l_neg = (lamb - p) * p * p
    return y * l_pos + (1 - y) * l_neg


HYPER = [
    (1.5, 1.0, 2.0),
    (1.5, 0.5, 0.0),
    (1.0, 0.0, 1.0),
    (2.0, 1.5, 0.5),
    (1.2, 0.3, 3.0),
]


# ------------------------------------------------------------------------- reference values


@pytest.mark.parametrize(("lamb", "margin", "gamma"), HYPER)
def test_matches_official_formulation(lamb: float, margin: float, gamma: float) -> None:
    z, y = data(1)
    kw = {"lamb": lamb, "margin": margin, "gamma": gamma}
    ref = ref_hill_official(z, y, lamb, margin, gamma)
    torch.testing.assert_close(hill_loss(z, y, reduction="none", **kw), ref)
    torch.testing.assert_close(hill_loss(z, y, reduction="sum", **kw), ref.sum())
    torch.testing.assert_close(hill_loss(z, y, **kw), ref.mean())  # "mean": over N * C
    torch.testing.assert_close(HillLoss(reduction="sum", **kw)(z, y), ref.sum())


@pytest.mark.parametrize(("lamb", "margin", "gamma"), HYPER)
def test_gradient_matches_autograd_of_reference(lamb: float, margin: float, gamma: float) -> None:
    z, y = data(2, scale=2.0)
    y[0, :3] = torch.tensor([0.3, 0.7, 0.5], dtype=torch.float64)  # soft targets blend linearly
    a = z.clone().requires_grad_(True)
    hill_loss(a, y, lamb=lamb, margin=margin, gamma=gamma, reduction="sum").backward()
    b = z.clone().requires_grad_(True)
    ref_hill_linear(b, y, lamb, margin, gamma).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_defaults_are_the_official_ones() -> None:
    spec = LOSSES["hill"]
    assert spec.task == "multi-label"
    assert "hill" in list_losses("multi-label")
    assert dict(spec.hyperparameters) == {"lamb": 1.5, "margin": 1.0, "gamma": 2.0}
    assert spec.function is hill_loss and spec.module is HillLoss
    z, y = data(3)
    torch.testing.assert_close(hill_loss(z, y), ref_hill_official(z, y).mean())
    m = HillLoss()
    assert (m.lamb, m.margin, m.gamma, m.reduction) == (1.5, 1.0, 2.0, "mean")
    assert "lamb=1.5" in repr(m)


def test_soft_targets_blend_the_two_terms_linearly() -> None:
    z, _ = data(4)
    y = torch.rand(N, C, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    out = hill_loss(z, y, reduction="none")
    torch.testing.assert_close(out, ref_hill_linear(z, y))
    pos = hill_loss(z, torch.ones_like(y), reduction="none")
    neg = hill_loss(z, torch.zeros_like(y), reduction="none")
    torch.testing.assert_close(out, y * pos + (1 - y) * neg)


@pytest.mark.parametrize(("lamb", "margin", "gamma"), HYPER)
def test_gradcheck_float64(lamb: float, margin: float, gamma: float) -> None:
    z, y = data(5, scale=2.0)
    y[1, 1] = -1.0
    y[2, 2] = 0.25
    x = z[:6].clone().requires_grad_(True)
    for reduction in ("none", "mean"):
        assert torch.autograd.gradcheck(
            lambda v, r=reduction: hill_loss(
                v, y[:6], lamb=lamb, margin=margin, gamma=gamma, reduction=r
            ),
            (x,),
            eps=1e-6,
            atol=1e-6,
        )


def test_positive_term_is_sigmoid_focal_of_shifted_logit() -> None:
    z, _ = data(6)
    ones = torch.ones_like(z)
    for margin, gamma in [(1.0, 2.0), (0.5, 0.5), (0.0, 0.0)]:
        torch.testing.assert_close(
            hill_loss(z, ones, margin=margin, gamma=gamma, reduction="none"),
            sigmoid_focal_loss(z - margin, ones, gamma=gamma, alpha=None, reduction="none"),
        )


def test_margin_shifts_the_positive_term_only() -> None:
    z, _ = data(7)
    zeros = torch.zeros_like(z)
    a = hill_loss(z, zeros, margin=0.0, gamma=0.0, reduction="none")
    b = hill_loss(z, zeros, margin=2.0, gamma=5.0, reduction="none")
    torch.testing.assert_close(a, b)  # negatives: neither margin nor focal weight
    p = torch.sigmoid(z)
    torch.testing.assert_close(a, (1.5 - p) * p**2)


def test_focal_weight_is_differentiated_not_detached() -> None:
    """The official code computes the focal weight with autograd on: its gradient flows."""
    z, _ = data(8, scale=2.0)
    ones = torch.ones_like(z)
    a = z.clone().requires_grad_(True)
    hill_loss(a, ones, reduction="sum").backward()
    p_m = torch.sigmoid(z - 1.0)
    detached = -((1 - p_m) ** 2) * (1 - p_m)  # d/dz of -(w log p_m) with w constant
    full = -((1 - p_m) ** 2) * ((1 - p_m) - 2 * p_m * torch.log(p_m))
    torch.testing.assert_close(a.grad, full)
    assert not torch.allclose(a.grad, detached)


# --------------------------------------------------------------------- the paper's properties


def negative_loss_and_grad(p: torch.Tensor, lamb: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """L-(p) and dL-/dp at probabilities p (float64), through the loss's own gradient in z."""
    z = torch.logit(p).requires_grad_(True)
    loss = hill_loss(z, torch.zeros_like(z), lamb=lamb, reduction="none")
    loss.sum().backward()
    assert z.grad is not None
    return loss.detach(), z.grad / (p * (1 - p))  # dL/dp = dL/dz / (dp/dz)


def probabilities() -> torch.Tensor:
    return torch.linspace(0.001, 0.999, 999, dtype=torch.float64)


@pytest.mark.parametrize("lamb", [1.0, 1.2, 1.5, 2.0, 3.0])
def test_negative_derivative_in_p(lamb: float) -> None:
    """dL-/dp = p (2 lamb - 3 p): positive for p < 2 lamb / 3, and the loss is (lamb - p) p^2."""
    p = probabilities()
    loss, d = negative_loss_and_grad(p, lamb)
    torch.testing.assert_close(loss, (lamb - p) * p**2)
    torch.testing.assert_close(d, p * (2 * lamb - 3 * p))
    assert (d[p < 2 * lamb / 3] > 0).all()
    assert (d[p > 2 * lamb / 3] < 0).all()
    assert (loss >= 0).all()  # lamb >= 1: a negative is never rewarded for a high p


def test_hill_shape_of_the_negative_gradient() -> None:
    """With lamb = 1.5, dL-/dp = 3 p (1 - p): a hill, largest at p = 0.5, zero at p = 0 and 1."""
    p = probabilities()
    loss, d = negative_loss_and_grad(p)
    torch.testing.assert_close(d, 3 * p * (1 - p))
    top = int(d.argmax())
    assert abs(p[top].item() - 0.5) < 1e-3
    assert (d[:top].diff() > 0).all() and (d[top:].diff() < 0).all()  # non-monotone
    assert d[0] < 0.01 and d[-1] < 0.01
    # The loss is increasing and bounded by its value at p = 1, lamb - 1 = 0.5 (BCE is unbounded).
    assert (loss.diff() > 0).all()
    assert loss.max() < 0.5
    z = torch.tensor([10.0, 20.0, 1e4], dtype=torch.float64)
    assert (hill_loss(z, torch.zeros_like(z), reduction="none") <= 0.5).all()


def test_weight_below_mse_exactly_for_likely_false_negatives() -> None:
    """(lamb - p) p^2 < p^2 (the MSE) iff p > lamb - 1: only high-p negatives are down-weighted."""
    p = probabilities()
    for lamb in (1.2, 1.5, 1.8):
        loss, _ = negative_loss_and_grad(p, lamb)
        mse = p**2
        assert (loss[p > lamb - 1 + 1e-9] < mse[p > lamb - 1 + 1e-9]).all()
        assert (loss[p < lamb - 1 - 1e-9] > mse[p < lamb - 1 - 1e-9]).all()


def test_confident_negative_gradient_vanishes_where_bce_does_not() -> None:
    z = torch.tensor([-4.0, -1.0, 0.0, 1.0, 4.0, 8.0, 16.0], dtype=torch.float64)
    x = z.clone().requires_grad_(True)
    hill_loss(x, torch.zeros_like(z), reduction="sum").backward()
    assert x.grad is not None
    bce_grad = torch.sigmoid(z)  # d BCE / dz for a negative
    assert (x.grad >= 0).all() and (x.grad < bce_grad).all()
    p = torch.sigmoid(z)
    torch.testing.assert_close(x.grad, 3 * p**2 * (1 - p) ** 2)  # dL-/dz for lamb = 1.5
    assert x.grad[-1] < 1e-12 and bce_grad[-1] > 0.99


# --------------------------------------------------------------------------- numerical range


def _mp_hill(lamb: float, margin: float, gamma: float, y: float) -> Callable[[Any], Any]:
    """The Hill loss of one element at target 0 or 1 as an mpmath function of z."""
    mp = pytest.importorskip("mpmath")

    def f(t: Any) -> Any:
        if y == 1:  # (1 - p_m)^gamma (-log p_m), p_m = sigma(t - margin)
            return (1 / (1 + mp.exp(t - margin))) ** gamma * mp.log1p(mp.exp(margin - t))
        p = 1 / (1 + mp.exp(-t))
        return (lamb - p) * p**2

    return f


def test_tails_against_mpmath() -> None:
    """Loss and gradient at logits up to +-80 in float32 to a relative 1e-4 (exact from mpmath)."""
    mp = pytest.importorskip("mpmath")
    zs = [-80.0, -40.0, -20.0, -17.0, -16.0, -8.0, -2.0, 0.0, 0.5, 1.0, 2.0, 8.0, 16.0, 17.0]
    zs += [20.0, 40.0, 80.0]
    for (lamb, margin, gamma), y in itertools.product(HYPER, (0.0, 1.0)):
        x = torch.tensor(zs, dtype=torch.float32, requires_grad=True)
        loss = hill_loss(
            x, torch.full_like(x, y), lamb=lamb, margin=margin, gamma=gamma, reduction="none"
        )
        loss.sum().backward()
        assert x.grad is not None
        f = _mp_hill(lamb, margin, gamma, y)
        for i, z in enumerate(zs):
            with mp.workdps(50):
                exact = (float(f(mp.mpf(z))), float(mp.diff(f, mp.mpf(z))))
            for got, ref in zip((loss[i].item(), x.grad[i].item()), exact, strict=True):
                where = (lamb, margin, gamma, y, z, got, ref)
                if abs(ref) > 1e-30:
                    assert abs(got - ref) <= 1e-4 * abs(ref), where
                else:
                    assert abs(got) <= 1e-29, where


def test_saturated_logits_finite_in_every_dtype() -> None:
    z = torch.tensor([[-1e4, -100.0, 0.0, 100.0, 1e4]])
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        for y in (0.0, 1.0):
            x = z.to(dtype).detach().clone().requires_grad_(True)
            loss = hill_loss(x, torch.full_like(x, y))
            loss.backward()
            assert torch.isfinite(loss) and x.grad is not None and torch.isfinite(x.grad).all()
    # A positive at -1e4 costs about 1e4 (the official log(sigmoid) gives inf there).
    big = hill_loss(torch.tensor([-1e4]), torch.ones(1), reduction="sum")
    assert big.item() == pytest.approx(1e4 + 1.0, rel=1e-6)


def test_chunked_and_non_contiguous() -> None:
    from longtail.losses._elementwise import CHUNK

    g = torch.Generator().manual_seed(30)
    n = CHUNK // 100 + 7
    z = (torch.randn(100, n, generator=g, dtype=torch.float64) * 3).T
    y = (torch.rand(n, 100, generator=g) < 0.2).double()
    assert z.numel() > CHUNK and not z.is_contiguous()
    a = z.clone().requires_grad_(True)
    b = z.detach().clone().requires_grad_(True)
    out = hill_loss(a, y, reduction="none")
    ref = ref_hill_official(b, y)
    torch.testing.assert_close(out, ref)
    w = torch.rand(out.shape, generator=g, dtype=torch.float64)
    (out * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


# ------------------------------------------------------------------------- unknown labels


def test_unknown_entries_are_ignored() -> None:
    z, y = data(9)
    unknown = torch.rand(N, C, generator=torch.Generator().manual_seed(1)) < 0.3
    y2 = y.clone()
    y2[unknown] = -1
    per = hill_loss(z, y, reduction="none")
    out = hill_loss(z, y2, reduction="none")
    assert (out[unknown] == 0).all()
    torch.testing.assert_close(out[~unknown], per[~unknown])
    torch.testing.assert_close(hill_loss(z, y2), per[~unknown].mean())  # known entries only
    torch.testing.assert_close(hill_loss(z, y2, reduction="sum"), per[~unknown].sum())
    a = z.clone().requires_grad_(True)
    hill_loss(a, y2).backward()
    assert a.grad is not None and (a.grad[unknown] == 0).all()
    assert hill_loss(z, torch.full_like(y, -1.0)).item() == 0.0
    with value_checks(False):  # the masked path (no host read) gives the same
        torch.testing.assert_close(hill_loss(z, y), hill_loss(z, y))


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize("lamb", [0.99, 0.5, 0.0, -1.0, float("nan"), float("inf")])
def test_lamb_below_one_or_not_finite(lamb: float) -> None:
    z, y = data()
    with pytest.raises(ValueError, match="lamb"):
        hill_loss(z, y, lamb=lamb)
    with pytest.raises(ValueError, match="lamb"):
        HillLoss(lamb=lamb)


@pytest.mark.parametrize("name", ["margin", "gamma"])
@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_margin_and_gamma_non_negative_and_finite(name: str, bad: float) -> None:
    z, y = data()
    with pytest.raises(ValueError, match=name):
        hill_loss(z, y, **{name: bad})
    with pytest.raises(ValueError, match=name):
        HillLoss(**{name: bad})


@pytest.mark.parametrize("name", ["lamb", "margin", "gamma"])
def test_hyper_parameter_of_wrong_type(name: str) -> None:
    z, y = data()
    for bad in ("1", True, None):
        with pytest.raises(TypeError, match=name):
            hill_loss(z, y, **{name: bad})
        with pytest.raises(TypeError, match=name):
            HillLoss(**{name: bad})


# ------------------------------------------------------------------------------ properties


@given(
    lamb=st.floats(1.0, 4.0),
    margin=st.floats(0.0, 2.0),
    gamma=st.floats(0.0, 4.0),
    scale=st.sampled_from([0.1, 1.0, 5.0, 30.0]),
    seed=st.integers(0, 2**16),
)
def test_property_matches_reference_and_is_bounded(
    lamb: float, margin: float, gamma: float, scale: float, seed: int
) -> None:
    z, y = data(seed, scale=scale)
    x = z.clone().requires_grad_(True)
    out = hill_loss(x, y, lamb=lamb, margin=margin, gamma=gamma, reduction="none")
    assert torch.isfinite(out).all() and (out >= 0).all()
    # A negative's loss is at most max over [0, 1] of (lamb - p) p^2.
    bound = lamb - 1 if lamb >= 1.5 else 4 * lamb**3 / 27
    assert (out[y == 0] <= bound + 1e-12).all()
    moderate = z.abs() < 30  # the reference's log(sigmoid) is exact enough there
    ref = ref_hill_official(z, y, lamb, margin, gamma)
    torch.testing.assert_close(out[moderate], ref[moderate], rtol=1e-9, atol=1e-12)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    # Negatives: the gradient has the sign of 2 lamb - 3 p (the hill's slope).
    p = torch.sigmoid(z)
    neg = (y == 0) & ((2 * lamb - 3 * p).abs() > 1e-6)
    assert (torch.sign(x.grad[neg]) == torch.sign(2 * lamb - 3 * p[neg])).all()
