"""Identities and independent reference formulas (written here, float64, the papers' way)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from longtail.adjust import posthoc_logit_adjust, tau_normalize
from longtail.heads import CosineClassifier
from longtail.losses import (
    AsymmetricLoss,
    DeferredReweighting,
    EncouragingLoss,
    LDAMLoss,
    asymmetric_loss,
    asymmetric_single_label_loss,
    balanced_softmax_loss,
    class_balanced_loss,
    class_balanced_weights,
    encouraging_loss,
    focal_loss,
    inverse_frequency_weights,
    inverse_sqrt_frequency_weights,
    ldam_loss,
    ldam_margins,
    logit_adjusted_loss,
    logit_adjustment_margins,
    pairwise_margin_loss,
    sigmoid_focal_loss,
)
from loss_cases import make_counts

N, C = 40, 7


def data(seed: int = 0, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(N, C, generator=g, dtype=torch.float64) * scale
    t = torch.randint(0, C, (N,), generator=g)
    y = (torch.rand(N, C, generator=g) < 0.3).double()
    return z, t, y


# ------------------------------------------------------------------------------ identities


def test_focal_gamma0_is_cross_entropy() -> None:
    z, t, _ = data()
    torch.testing.assert_close(focal_loss(z, t, gamma=0.0), F.cross_entropy(z, t))
    torch.testing.assert_close(
        focal_loss(z, t, gamma=0.0, reduction="none"), F.cross_entropy(z, t, reduction="none")
    )


def test_sigmoid_focal_gamma0_no_alpha_is_bce() -> None:
    z, _, y = data()
    torch.testing.assert_close(
        sigmoid_focal_loss(z, y, gamma=0.0, alpha=None),
        F.binary_cross_entropy_with_logits(z, y),
    )


def test_asl_zero_gammas_zero_clip_is_bce() -> None:
    z, _, y = data()
    out = asymmetric_loss(z, y, gamma_pos=0.0, gamma_neg=0.0, clip=0.0)
    torch.testing.assert_close(out, F.binary_cross_entropy_with_logits(z, y))


@pytest.mark.parametrize("g", [0.5, 1.0, 2.0])
def test_asl_equal_gammas_no_clip_is_sigmoid_focal(g: float) -> None:
    z, _, y = data()
    torch.testing.assert_close(
        asymmetric_loss(z, y, gamma_pos=g, gamma_neg=g, clip=0.0),
        sigmoid_focal_loss(z, y, gamma=g, alpha=None),
    )


def test_la_tau0_is_cross_entropy() -> None:
    z, t, _ = data()
    counts = make_counts(C)
    torch.testing.assert_close(
        logit_adjusted_loss(z, t, class_counts=counts, tau=0.0), F.cross_entropy(z, t)
    )


def test_balanced_softmax_is_la_tau1() -> None:
    z, t, _ = data()
    counts = make_counts(C)
    torch.testing.assert_close(
        balanced_softmax_loss(z, t, class_counts=counts),
        logit_adjusted_loss(z, t, class_counts=counts, tau=1.0),
    )


def test_class_balanced_beta0_is_unweighted() -> None:
    z, t, _ = data()
    counts = make_counts(C)
    assert torch.equal(class_balanced_weights(counts, beta=0.0), torch.ones(C))
    torch.testing.assert_close(
        class_balanced_loss(z, t, class_counts=counts, beta=0.0), F.cross_entropy(z, t)
    )
    onehot = F.one_hot(t, C).double()
    torch.testing.assert_close(
        class_balanced_loss(z, t, class_counts=counts, beta=0.0, loss_type="sigmoid"),
        F.binary_cross_entropy_with_logits(z, onehot, reduction="sum") / N,
    )
    torch.testing.assert_close(
        class_balanced_loss(z, t, class_counts=counts, beta=0.0, loss_type="focal", gamma=2.0),
        sigmoid_focal_loss(z, onehot, gamma=2.0, alpha=None, reduction="sum") / N,
    )


def test_pairwise_margin_with_la_margins_is_la() -> None:
    z, t, _ = data()
    counts = make_counts(C)
    for tau in (0.5, 1.0, 2.0):
        torch.testing.assert_close(
            pairwise_margin_loss(z, t, delta=logit_adjustment_margins(counts, tau=tau)),
            logit_adjusted_loss(z, t, class_counts=counts, tau=tau),
            rtol=1e-5,
            atol=1e-6,
        )


def test_pairwise_margin_balanced_loss_is_weighted_ce() -> None:
    z, t, _ = data()
    counts = make_counts(C)
    alpha = counts.sum() / counts
    out = pairwise_margin_loss(z, t, delta=torch.zeros(C, C), alpha=alpha, reduction="none")
    torch.testing.assert_close(out, F.cross_entropy(z, t, reduction="none") * alpha[t])


def test_encouraging_log_end_1_is_ce_plus_log_one_minus_p() -> None:
    z, t, _ = data(scale=1.0)
    p = torch.softmax(z, 1).gather(1, t[:, None]).squeeze(1)
    ref = F.cross_entropy(z, t, reduction="none") + torch.log(1 - p)
    torch.testing.assert_close(encouraging_loss(z, t, log_end=1.0, reduction="none"), ref)


def test_asl_single_label_zero_gammas_is_smoothed_ce() -> None:
    z, t, _ = data()
    for eps in (0.0, 0.1):
        torch.testing.assert_close(
            asymmetric_single_label_loss(z, t, gamma_pos=0.0, gamma_neg=0.0, label_smoothing=eps),
            F.cross_entropy(z, t, label_smoothing=eps),
        )


# --------------------------------------------------------------- independent reference formulas


def ref_focal(z, t, gamma, alpha=None, weight=None):  # type: ignore[no-untyped-def]
    p = torch.softmax(z, 1)
    pt = p[torch.arange(len(t)), t]
    loss = -((1 - pt) ** gamma) * torch.log(pt)
    if alpha is not None:
        loss = loss * alpha[t]
    if weight is not None:
        loss = loss * weight[t]
    return loss


def ref_sigmoid_focal(z, y, gamma, alpha):  # type: ignore[no-untyped-def]
    # torchvision.ops.sigmoid_focal_loss, re-derived.
    p = torch.sigmoid(z)
    ce = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = loss * (alpha * y + (1 - alpha) * (1 - y))
    return loss


def ref_asl(z, y, gp, gn, clip):  # type: ignore[no-untyped-def]
    # The official code's formulation, in float64 (no eps needed at these logits).
    p = torch.sigmoid(z)
    xs_neg = 1 - p
    if clip > 0:
        xs_neg = (xs_neg + clip).clamp(max=1)
    loss = y * torch.log(p) + (1 - y) * torch.log(xs_neg)
    pt = p * y + xs_neg * (1 - y)
    gamma = gp * y + gn * (1 - y)
    loss = loss * torch.pow(1 - pt, gamma)
    return -loss


def ref_asl_single(z, t, gp, gn, eps):  # type: ignore[no-untyped-def]
    logp = torch.log_softmax(z, 1)
    onehot = F.one_hot(t, z.shape[1]).double()
    xs_pos = logp.exp() * onehot
    xs_neg = (1 - logp.exp()) * (1 - onehot)
    w = torch.pow(1 - xs_pos - xs_neg, gp * onehot + gn * (1 - onehot))
    smooth = onehot * (1 - eps) + eps / z.shape[1]
    return -(smooth * logp * w).sum(1)


def ref_la(z, t, counts, tau):  # type: ignore[no-untyped-def]
    prior = counts / counts.sum()
    adj = z + tau * torch.log(prior)
    return -(adj[torch.arange(len(t)), t] - torch.logsumexp(adj, 1))


def ref_ldam(cos, t, counts, max_m, s):  # type: ignore[no-untyped-def]
    m = 1.0 / counts**0.25
    m = m * (max_m / m.max())
    out = cos.clone()
    for i in range(len(t)):
        out[i, t[i]] -= m[t[i]]
    return F.cross_entropy(s * out, t, reduction="none")


def ref_el(z, t, le):  # type: ignore[no-untyped-def]
    # As in the official code: bonus for all classes, then pick the target's.
    logp = torch.log_softmax(z, 1)
    p = logp.exp()
    bonus = torch.log(torch.clamp(1 - p, min=1e-5))
    if le != 1.0:
        after = (p - le) / (le - 1) + math.log(1 - le)
        bonus = torch.where(p > le, after, bonus)
    return F.nll_loss(logp - bonus, t, reduction="none")


def ref_cb_weights(counts, beta):  # type: ignore[no-untyped-def]
    eff = (1.0 - beta**counts) / (1.0 - beta)
    w = 1.0 / eff
    return w / w.sum() * len(counts)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 5.0])
def test_focal_reference(gamma: float) -> None:
    z, t, _ = data(1)
    alpha = torch.rand(C, dtype=torch.float64)
    weight = torch.rand(C, dtype=torch.float64) + 0.5
    out = focal_loss(z, t, gamma=gamma, alpha=alpha, weight=weight, reduction="none")
    torch.testing.assert_close(out, ref_focal(z, t, gamma, alpha, weight))
    # "mean" divides by N, not by the sum of weights.
    torch.testing.assert_close(
        focal_loss(z, t, gamma=gamma, weight=weight), ref_focal(z, t, gamma, None, weight).mean()
    )


@pytest.mark.parametrize(("gamma", "alpha"), [(2.0, 0.25), (0.5, 0.75), (1.0, None), (0.0, 0.5)])
def test_sigmoid_focal_reference(gamma: float, alpha: float | None) -> None:
    z, _, y = data(2)
    out = sigmoid_focal_loss(z, y, gamma=gamma, alpha=alpha, reduction="none")
    torch.testing.assert_close(out, ref_sigmoid_focal(z, y, gamma, alpha))


@pytest.mark.parametrize(
    ("gp", "gn", "clip"), [(0.0, 4.0, 0.05), (1.0, 4.0, 0.05), (0.0, 2.0, 0.0), (0.5, 0.5, 0.2)]
)
def test_asl_reference(gp: float, gn: float, clip: float) -> None:
    z, _, y = data(3)
    out = asymmetric_loss(z, y, gamma_pos=gp, gamma_neg=gn, clip=clip, reduction="none")
    torch.testing.assert_close(out, ref_asl(z, y, gp, gn, clip))
    torch.testing.assert_close(
        asymmetric_loss(z, y, gamma_pos=gp, gamma_neg=gn, clip=clip, reduction="sum"),
        ref_asl(z, y, gp, gn, clip).sum(),
    )


def test_asl_detach_focusing_same_value_different_gradient() -> None:
    z, _, y = data(4)
    a = z.clone().requires_grad_(True)
    b = z.clone().requires_grad_(True)
    la = asymmetric_loss(a, y)
    lb = asymmetric_loss(b, y, detach_focusing=True)
    torch.testing.assert_close(la, lb)
    la.backward()
    lb.backward()
    assert not torch.allclose(a.grad, b.grad)
    # Detached: gradient of -(w * log terms) with w constant, derived by hand for clip = 0.05.
    p = torch.sigmoid(z)
    p_m = (p - 0.05).clamp(min=0)
    w_neg = p_m**4
    q = (1 - p + 0.05).clamp(max=1)
    dneg = torch.where(p_m > 0, w_neg * p * (1 - p) / q, torch.zeros_like(p))
    dpos = -(1 - p)
    expected = (y * dpos + (1 - y) * dneg) / z.numel()
    torch.testing.assert_close(b.grad, expected)


def test_asl_does_not_touch_global_grad_mode() -> None:
    z, _, y = data(5)
    with torch.no_grad():
        out = AsymmetricLoss()(z.clone().requires_grad_(True), y)
        assert not torch.is_grad_enabled()
    assert not out.requires_grad
    assert torch.is_grad_enabled()


@pytest.mark.parametrize(("gp", "gn", "eps"), [(0.0, 4.0, 0.1), (1.0, 2.0, 0.0)])
def test_asl_single_label_reference(gp: float, gn: float, eps: float) -> None:
    z, t, _ = data(6)
    out = asymmetric_single_label_loss(
        z, t, gamma_pos=gp, gamma_neg=gn, label_smoothing=eps, reduction="none"
    )
    torch.testing.assert_close(out, ref_asl_single(z, t, gp, gn, eps))


@pytest.mark.parametrize("tau", [0.5, 1.0, 1.5])
def test_la_reference(tau: float) -> None:
    z, t, _ = data(7)
    counts = make_counts(C)
    out = logit_adjusted_loss(z, t, class_counts=counts, tau=tau, reduction="none")
    torch.testing.assert_close(out, ref_la(z, t, counts, tau))


def test_pairwise_margin_reference_sum_form() -> None:
    z, t, _ = data(8)
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(C, C, generator=g, dtype=torch.float64)
    alpha = torch.rand(C, generator=g, dtype=torch.float64) + 0.5
    out = pairwise_margin_loss(z, t, delta=delta, alpha=alpha, reduction="none")
    ref = torch.empty(N, dtype=torch.float64)
    for i in range(N):
        y = int(t[i])
        s = sum(
            math.exp(delta[y, k].item() + z[i, k].item() - z[i, y].item())
            for k in range(C)
            if k != y
        )
        ref[i] = alpha[y] * math.log1p(s)
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize(("max_m", "s"), [(0.5, 30.0), (0.3, 10.0)])
def test_ldam_reference(max_m: float, s: float) -> None:
    z, t, _ = data(9)
    cos = torch.tanh(z)
    counts = make_counts(C)
    w = torch.rand(C, dtype=torch.float64) + 0.5
    out = ldam_loss(cos, t, class_counts=counts, max_margin=max_m, scale=s, reduction="none")
    ref = ref_ldam(cos, t, counts, max_m, s)
    torch.testing.assert_close(out, ref)
    weighted = ldam_loss(cos, t, class_counts=counts, max_margin=max_m, scale=s, weight=w)
    torch.testing.assert_close(weighted, (ref * w[t]).sum() / N)
    m = ldam_margins(counts, max_margin=max_m)
    assert m.argmax() == C - 1 and m.max().item() == pytest.approx(max_m)


@pytest.mark.parametrize("le", [0.5, 0.75, 1.0])
def test_encouraging_reference(le: float) -> None:
    z, t, _ = data(10)
    torch.testing.assert_close(
        encouraging_loss(z, t, log_end=le, reduction="none"), ref_el(z, t, le)
    )


def test_encouraging_bonus_is_differentiated() -> None:
    z, t, _ = data(11, scale=1.0)
    a = z.clone().requires_grad_(True)
    encouraging_loss(a, t, log_end=1.0).backward()
    b = z.clone().requires_grad_(True)
    F.cross_entropy(b, t).backward()
    assert not torch.allclose(a.grad, b.grad)


@pytest.mark.parametrize("beta", [0.9, 0.99, 0.999, 0.9999])
def test_class_balanced_weights_reference(beta: float) -> None:
    counts = make_counts(C)
    w = class_balanced_weights(counts, beta=beta)
    torch.testing.assert_close(w, ref_cb_weights(counts, beta).float())
    assert w.sum().item() == pytest.approx(C, rel=1e-5)
    assert torch.all(w[1:] >= w[:-1])  # rarer classes weigh more


def test_cb_weights_approach_inverse_frequency() -> None:
    counts = make_counts(C)
    torch.testing.assert_close(
        class_balanced_weights(counts, beta=1 - 1e-12),
        inverse_frequency_weights(counts),
        rtol=1e-3,
        atol=1e-3,
    )
    inv = inverse_frequency_weights(counts)
    torch.testing.assert_close(inv, (C / counts / (1 / counts).sum()).float())
    sq = inverse_sqrt_frequency_weights(counts)
    torch.testing.assert_close(sq, (C / counts.sqrt() / (1 / counts.sqrt()).sum()).float())


@pytest.mark.parametrize("loss_type", ["softmax", "sigmoid", "focal"])
def test_class_balanced_loss_reference(loss_type: str) -> None:
    z, t, _ = data(12)
    counts = make_counts(C)
    beta, gamma = 0.999, 1.0
    w = ref_cb_weights(counts, beta)[t]
    onehot = F.one_hot(t, C).double()
    if loss_type == "softmax":
        per = F.cross_entropy(z, t, reduction="none")
    else:
        bce = F.binary_cross_entropy_with_logits(z, onehot, reduction="none")
        if loss_type == "focal":  # the official code's modulator
            bce = bce * torch.exp(-gamma * onehot * z - gamma * torch.log1p(torch.exp(-z)))
        per = bce.sum(1)
    out = class_balanced_loss(
        z, t, class_counts=counts, beta=beta, loss_type=loss_type, gamma=gamma, reduction="none"
    )
    torch.testing.assert_close(out, per * w)
    mean = class_balanced_loss(
        z, t, class_counts=counts, beta=beta, loss_type=loss_type, gamma=gamma
    )
    torch.testing.assert_close(mean, (per * w).sum() / N)


# ------------------------------------------------- conventions: ignore_index, partial labels


def test_weighted_mean_divides_by_samples_not_weight_sum() -> None:
    z, t, _ = data(13)
    counts = make_counts(C)
    w = inverse_frequency_weights(counts).double()
    ours = logit_adjusted_loss(z, t, class_counts=counts, tau=0.0, weight=w)
    torch.testing.assert_close(ours, (F.cross_entropy(z, t, reduction="none") * w[t]).mean())
    torch_style = F.cross_entropy(z, t, weight=w)
    torch.testing.assert_close(torch_style * w[t].sum() / N, ours)


@pytest.mark.parametrize(
    "fn",
    [
        lambda z, t, **k: focal_loss(z, t, **k),
        lambda z, t, **k: encouraging_loss(z, t, **k),
        lambda z, t, **k: logit_adjusted_loss(z, t, class_counts=make_counts(C), **k),
        lambda z, t, **k: ldam_loss(torch.tanh(z), t, class_counts=make_counts(C), **k),
        lambda z, t, **k: class_balanced_loss(z, t, class_counts=make_counts(C), **k),
        lambda z, t, **k: asymmetric_single_label_loss(z, t, **k),
    ],
)
def test_ignore_index(fn) -> None:  # type: ignore[no-untyped-def]
    z, t, _ = data(14)
    t2 = t.clone()
    t2[::3] = -100
    keep = t2 != -100
    full = fn(z[keep], t[keep], reduction="none")
    out = fn(z, t2, reduction="none")
    assert (out[~keep] == 0).all()
    torch.testing.assert_close(out[keep], full)
    torch.testing.assert_close(fn(z, t2), full.mean())
    t2[5] = 77  # still out of range
    with pytest.raises(ValueError, match="target"):
        fn(z, t2)
    assert fn(z, torch.full_like(t, -100)).item() == 0.0


@pytest.mark.parametrize("loss", ["asl", "focal"])
def test_unknown_multilabel_entries_are_ignored(loss: str) -> None:
    z, _, y = data(15)
    y2 = y.clone()
    unknown = torch.rand(N, C, generator=torch.Generator().manual_seed(1)) < 0.3
    y2[unknown] = -1
    f = asymmetric_loss if loss == "asl" else sigmoid_focal_loss
    per = f(z, y, reduction="none")
    out = f(z, y2, reduction="none")
    assert (out[unknown] == 0).all()
    torch.testing.assert_close(out[~unknown], per[~unknown])
    torch.testing.assert_close(f(z, y2), per[~unknown].mean())
    a = z.clone().requires_grad_(True)
    f(a, y2).backward()
    assert (a.grad[unknown] == 0).all()


def test_float16_targets_and_int_targets_accepted_for_multilabel() -> None:
    z, _, y = data(16)
    ref = asymmetric_loss(z, y)
    torch.testing.assert_close(asymmetric_loss(z, y.long()), ref)
    torch.testing.assert_close(asymmetric_loss(z, y.half()), ref)


@given(
    gamma=st.floats(0.0, 5.0),
    seed=st.integers(0, 1000),
)
def test_property_focal_bounded_by_ce(gamma: float, seed: int) -> None:
    z, t, _ = data(seed)
    fl = focal_loss(z, t, gamma=gamma, reduction="none")
    ce = F.cross_entropy(z, t, reduction="none")
    assert (fl <= ce + 1e-12).all()
    assert (fl >= 0).all()


@given(tau=st.floats(0.0, 3.0), seed=st.integers(0, 1000))
def test_property_la_shift_invariance(tau: float, seed: int) -> None:
    z, t, _ = data(seed)
    counts = make_counts(C)
    a = logit_adjusted_loss(z, t, class_counts=counts, tau=tau)
    b = logit_adjusted_loss(z + 5.0, t, class_counts=counts * 7, tau=tau)
    torch.testing.assert_close(a, b)


@given(gamma_neg=st.floats(0.0, 6.0), clip=st.floats(0.0, 0.5), seed=st.integers(0, 1000))
def test_property_asl_clip_only_lowers_negative_loss(
    gamma_neg: float, clip: float, seed: int
) -> None:
    z, _, _ = data(seed)
    y = torch.zeros_like(z)
    a = asymmetric_loss(z, y, gamma_neg=gamma_neg, clip=clip, reduction="none")
    b = asymmetric_loss(z, y, gamma_neg=gamma_neg, clip=0.0, reduction="none")
    assert (a <= b + 1e-12).all()


# --------------------------------------------------------------------- DRW, adjust, heads


def test_deferred_reweighting_schedule() -> None:
    counts = make_counts(C)
    drw = DeferredReweighting(counts, total_epochs=200)
    assert drw.start_epoch == 160
    assert drw.weight(159) is None
    torch.testing.assert_close(drw.weight(160), class_balanced_weights(counts, beta=0.9999))
    assert (
        DeferredReweighting(counts, total_epochs=10, start_epoch=3, beta=0.9).weight(3) is not None
    )
    with pytest.raises(ValueError, match="total_epochs"):
        DeferredReweighting(counts, total_epochs=0)
    with pytest.raises(ValueError, match="beta"):
        DeferredReweighting(counts, total_epochs=10, beta=1.0)
    with pytest.raises(ValueError, match="epoch"):
        drw.weight(-1)


def test_module_set_weight_for_drw() -> None:
    z, t, _ = data(17)
    counts = make_counts(C)
    m = LDAMLoss(class_counts=counts)
    w = class_balanced_weights(counts)
    m.set_weight(w)
    torch.testing.assert_close(
        m(torch.tanh(z), t), ldam_loss(torch.tanh(z), t, class_counts=counts, weight=w)
    )
    assert "weight" in m.state_dict()
    e = EncouragingLoss()
    e.set_weight(w)
    torch.testing.assert_close(e(z, t), encouraging_loss(z, t, weight=w))


def test_posthoc_logit_adjust() -> None:
    z, _, _ = data(18)
    counts = make_counts(C)
    out = posthoc_logit_adjust(z, counts, tau=1.0)
    torch.testing.assert_close(out, z - torch.log(counts / counts.sum()))
    torch.testing.assert_close(posthoc_logit_adjust(z, counts, tau=0.0), z)
    # Adjustment moves predictions towards rare classes.
    flat = torch.zeros(4, C, dtype=torch.float64)
    assert (posthoc_logit_adjust(flat, counts).argmax(1) == C - 1).all()
    with pytest.raises(ValueError, match="tau"):
        posthoc_logit_adjust(z, counts, tau=-1.0)
    with pytest.raises(ValueError, match="class_counts"):
        posthoc_logit_adjust(z, counts[:3])
    with pytest.raises(ValueError, match="logits"):
        posthoc_logit_adjust(z[0], counts)


def test_tau_normalize() -> None:
    w = torch.randn(5, 8, dtype=torch.float64) * torch.arange(1, 6, dtype=torch.float64)[:, None]
    torch.testing.assert_close(tau_normalize(w, tau=0.0), w)
    torch.testing.assert_close(
        tau_normalize(w, tau=1.0).norm(dim=1), torch.ones(5, dtype=torch.float64)
    )
    half = tau_normalize(w, tau=0.5)
    torch.testing.assert_close(half, w / w.norm(dim=1, keepdim=True) ** 0.5)
    w[2] = 0
    assert torch.isfinite(tau_normalize(w)).all()
    with pytest.raises(ValueError, match="tau"):
        tau_normalize(w, tau=-0.1)
    with pytest.raises(ValueError, match="weight"):
        tau_normalize(w[0])


def test_cosine_classifier() -> None:
    head = CosineClassifier(8, 5)
    x = torch.randn(16, 8)
    out = head(x)
    assert out.shape == (16, 5)
    assert out.abs().max() <= 1 + 1e-6
    ref = F.normalize(x, dim=1) @ F.normalize(head.weight, dim=1).T
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(
        CosineClassifier(8, 5, scale=30.0)(x).abs().max() <= 30.0001, torch.tensor(True)
    )
    assert torch.isfinite(head(torch.zeros(2, 8))).all()
    with pytest.raises(ValueError, match="x"):
        head(torch.randn(3, 7))
    with pytest.raises(ValueError, match="num_classes"):
        CosineClassifier(8, 0)


# ------------------------------------------- analytic gradients of the fused element-wise kernels

ASL_GRID = [
    (0.0, 4.0, 0.05, False),
    (1.0, 4.0, 0.05, False),
    (0.5, 0.5, 0.2, False),
    (2.0, 0.0, 0.1, False),
    (0.0, 4.0, 0.0, False),
    (0.3, 0.7, 0.0, False),
    (1.0, 4.0, 0.05, True),
    (1.0, 3.0, 0.0, True),
]


@pytest.mark.parametrize(("gp", "gn", "clip", "detach"), ASL_GRID)
def test_asl_gradient_matches_autograd_of_reference(
    gp: float, gn: float, clip: float, detach: bool
) -> None:
    z, _, y = data(20, scale=2.0)
    y[0, :3] = torch.tensor([0.3, 0.7, 0.5], dtype=torch.float64)  # soft targets too
    a = z.clone().requires_grad_(True)
    asymmetric_loss(
        a, y, gamma_pos=gp, gamma_neg=gn, clip=clip, detach_focusing=detach, reduction="sum"
    ).backward()
    b = z.clone().requires_grad_(True)
    p = torch.sigmoid(b)
    p_m = (p - clip).clamp(min=0)
    w_pos = (1 - p) ** gp
    w_neg = p_m**gn
    if detach:
        w_pos, w_neg = w_pos.detach(), w_neg.detach()
    ref = -(y * w_pos * torch.log(p) + (1 - y) * w_neg * torch.log(1 - p_m))
    ref.sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize(("gp", "gn", "clip", "detach"), [g for g in ASL_GRID if not g[3]])
def test_asl_gradcheck_grid(gp: float, gn: float, clip: float, detach: bool) -> None:
    z, _, y = data(21, scale=2.0)
    y[1, 1] = -1.0
    y[2, 2] = 0.25
    x = z[:6].clone().requires_grad_(True)

    def fn(v: torch.Tensor) -> torch.Tensor:
        return asymmetric_loss(
            v,
            y[:6],
            gamma_pos=gp,
            gamma_neg=gn,
            clip=clip,
            detach_focusing=detach,
            reduction="none",
        )

    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize(("gamma", "alpha"), [(2.0, 0.25), (0.5, None), (0.2, 0.9), (0.0, 0.5)])
def test_sigmoid_focal_gradient_matches_reference(gamma: float, alpha: float | None) -> None:
    z, _, y = data(22, scale=2.0)
    y[0, :3] = torch.tensor([0.3, 0.7, 0.5], dtype=torch.float64)
    y[1, 0] = -1
    known = y != -1
    a = z.clone().requires_grad_(True)
    sigmoid_focal_loss(a, y, gamma=gamma, alpha=alpha, reduction="sum").backward()
    b = z.clone().requires_grad_(True)
    ref = ref_sigmoid_focal(b, y.where(known, 0.0), gamma, alpha)
    # The reference's (1 - p_t)^gamma equals our exp(gamma (log sigma(z) - y z)) only for binary y.
    binary = known & ((y == 0) | (y == 1))
    ref[binary].sum().backward()
    torch.testing.assert_close(a.grad[binary], b.grad[binary])

    x = z[:5].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda v: sigmoid_focal_loss(v, y[:5], gamma=gamma, alpha=alpha, reduction="none"),
        (x,),
        eps=1e-6,
        atol=1e-6,
    )


def test_fused_losses_skip_gradient_work_without_grad() -> None:
    z, _, y = data(23)
    with torch.no_grad():
        out = asymmetric_loss(z.clone().requires_grad_(True), y)
    assert not out.requires_grad
    torch.testing.assert_close(out, ref_asl(z, y, 0.0, 4.0, 0.05).mean())


@pytest.mark.parametrize("loss", ["asl", "focal"])
def test_fused_kernels_chunked_and_non_contiguous(loss: str) -> None:
    """Inputs larger than one chunk (and transposed) give the reference values and gradients."""
    from longtail.losses._elementwise import CHUNK

    g = torch.Generator().manual_seed(30)
    n = CHUNK // 100 + 7
    z = (torch.randn(100, n, generator=g, dtype=torch.float64) * 3).T  # non-contiguous
    y = (torch.rand(n, 100, generator=g) < 0.2).double()
    assert z.numel() > CHUNK
    assert not z.is_contiguous()
    a = z.clone().requires_grad_(True)
    b = z.detach().clone().requires_grad_(True)
    if loss == "asl":
        out = asymmetric_loss(a, y, gamma_pos=1.0, reduction="none")
        ref = ref_asl(b, y, 1.0, 4.0, 0.05)
    else:
        out = sigmoid_focal_loss(a, y, reduction="none")
        ref = ref_sigmoid_focal(b, y, 2.0, 0.25)
    torch.testing.assert_close(out, ref)
    w = torch.rand(out.shape, generator=g, dtype=torch.float64)
    (out * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize(
    ("gp", "gn", "eps"), [(0.0, 4.0, 0.1), (1.0, 2.0, 0.1), (0.5, 0.0, 0.2), (2.0, 1.5, 0.0)]
)
def test_asl_single_label_gradcheck_and_chunks(gp: float, gn: float, eps: float) -> None:
    from longtail.losses._elementwise import ROW_CHUNK

    z, t, _ = data(31)
    x = z[:6].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda v: asymmetric_single_label_loss(
            v, t[:6], gamma_pos=gp, gamma_neg=gn, label_smoothing=eps, reduction="none"
        ),
        (x,),
        eps=1e-6,
        atol=1e-6,
    )
    g = torch.Generator().manual_seed(3)
    n = 2 * ROW_CHUNK // 50 + 3  # several row chunks of 50 classes
    big = torch.randn(n, 50, generator=g, dtype=torch.float64) * 3
    tt = torch.randint(0, 50, (n,), generator=g)
    a = big.clone().requires_grad_(True)
    b = big.clone().requires_grad_(True)
    out = asymmetric_single_label_loss(
        a, tt, gamma_pos=gp, gamma_neg=gn, label_smoothing=eps, reduction="none"
    )
    ref = ref_asl_single(b, tt, gp, gn, eps)
    torch.testing.assert_close(out, ref)
    w = torch.rand(n, generator=g, dtype=torch.float64)
    (out * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_pairwise_margin_learnable_delta_gets_gradient() -> None:
    z, t, _ = data(40)
    delta = torch.zeros(C, C, dtype=torch.float64, requires_grad=True)
    pairwise_margin_loss(z, t, delta=delta).backward()
    assert delta.grad is not None
    assert (torch.diagonal(delta.grad) == 0).all()  # the diagonal is ignored
    assert delta.grad.abs().sum() > 0


@pytest.mark.parametrize("gamma", [0.0, 0.3, 1.0, 2.0, 3.5])
def test_focal_gradient_matches_autograd_of_reference(gamma: float) -> None:
    z, t, _ = data(41)
    t = t.clone()
    t[::5] = -100  # ignored samples get no gradient
    keep = t != -100
    alpha = torch.rand(C, dtype=torch.float64) + 0.1
    weight = torch.rand(C, dtype=torch.float64) + 0.5
    a = z.clone().requires_grad_(True)
    focal_loss(a, t, gamma=gamma, alpha=alpha, weight=weight).backward()
    b = z.clone().requires_grad_(True)
    ref = ref_focal(b[keep], t[keep], gamma, alpha, weight).sum() / int(keep.sum())
    ref.backward()
    torch.testing.assert_close(a.grad, b.grad)
    assert (a.grad[~keep] == 0).all()
    x = z[:6].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda v: focal_loss(v, t[:6], gamma=gamma, alpha=alpha, reduction="none"),
        (x,),
        eps=1e-6,
        atol=1e-6,
    )
