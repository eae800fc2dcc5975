"""Open-set library: reciprocal-point and prototype heads, their losses, the ARPL+CS GAN blocks.

References are written here with explicit loops over samples, classes and points (no shared code
with the library), including the ``M > 1`` indexing the official code gets wrong.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from longtail.gan import ConfusingSampleGenerator, SampleDiscriminator
from longtail.heads import (
    PrototypeHead,
    ReciprocalPointHead,
    prototype_distances,
    reciprocal_distances,
    reciprocal_logits,
)
from longtail.losses import (
    ARPLLoss,
    ConfusingSampleLoss,
    GCPLLoss,
    RPLLoss,
    arpl_loss,
    confusing_sample_loss,
    gcpl_loss,
    rpl_loss,
)

# ------------------------------------------------------------------------ references (loops)


def ref_distances(x: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """d_l2[n, c] = mean_m ||x_n - p_cm||^2 / D and d_dot[n, c] = mean_m x_n . p_cm, by loops."""
    n, (c, m, d) = x.shape[0], p.shape
    l2 = torch.zeros(n, c, dtype=torch.float64)
    dot = torch.zeros(n, c, dtype=torch.float64)
    for i in range(n):
        for k in range(c):
            for j in range(m):
                diff = x[i].double() - p[k, j].double()
                l2[i, k] += float((diff * diff).sum()) / d / m
                dot[i, k] += float((x[i].double() * p[k, j].double()).sum()) / m
    return l2, dot


def ref_ce(logits: list[float], y: int) -> float:
    top = max(logits)
    return -(logits[y] - top - math.log(sum(math.exp(v - top) for v in logits)))


def ref_rpl(x, y, p, r, t, lam, adj=None) -> list[float]:  # type: ignore[no-untyped-def]
    l2, _ = ref_distances(x, p)
    out = []
    for i in range(x.shape[0]):
        z = [float(l2[i, k]) / t + (0.0 if adj is None else adj[k]) for k in range(p.shape[0])]
        out.append(ref_ce(z, int(y[i])) + lam * (float(l2[i, int(y[i])]) - r) ** 2)
    return out


def ref_arpl(x, y, p, r, t, lam, margin=1.0, adj=None) -> list[float]:  # type: ignore[no-untyped-def]
    l2, dot = ref_distances(x, p)
    out = []
    for i in range(x.shape[0]):
        z = [
            (float(l2[i, k]) - float(dot[i, k])) / t + (0.0 if adj is None else adj[k])
            for k in range(p.shape[0])
        ]
        own = float(l2[i, int(y[i])])
        out.append(ref_ce(z, int(y[i])) + lam * max(0.0, own - r + margin))
    return out


def ref_gcpl(x, y, p, t, lam) -> list[float]:  # type: ignore[no-untyped-def]
    c, m, d = p.shape
    out = []
    for i in range(x.shape[0]):
        dist = [
            min(float(((x[i].double() - p[k, j].double()) ** 2).sum()) / d for j in range(m))
            for k in range(c)
        ]
        out.append(ref_ce([-v / t for v in dist], int(y[i])) + 0.5 * lam * dist[int(y[i])])
    return out


def setup_tensors(n: int = 6, c: int = 3, m: int = 3, d: int = 5, seed: int = 0):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    p = torch.randn(c, m, d, generator=g, dtype=torch.float64)
    y = torch.arange(n) % c
    return x, y, p


# ------------------------------------------------------------------------ distances and heads


@pytest.mark.parametrize("m", [1, 3])
def test_distances_match_the_loop_reference(m: int) -> None:
    x, _, p = setup_tensors(m=m)
    l2, dot = reciprocal_distances(x, p)
    r_l2, r_dot = ref_distances(x, p)
    torch.testing.assert_close(l2, r_l2)
    torch.testing.assert_close(dot, r_dot)
    per_point = prototype_distances(x, p)
    for i in range(x.shape[0]):
        for k in range(p.shape[0]):
            for j in range(m):
                want = float(((x[i] - p[k, j]) ** 2).sum()) / x.shape[1]
                assert per_point[i, k, j].item() == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_m_above_one_uses_the_points_of_the_sample_class() -> None:
    """The official code's ``centers[labels]`` on a flat (C*M, D) table picks rows of other classes
    when M > 1; the loss must use the mean over the M points of the sample's own class."""
    c, m, d = 3, 2, 4
    p = torch.zeros(c, m, d, dtype=torch.float64)
    for k in range(c):
        p[k] = 10.0 * (k + 1)  # class k's points all at 10 (k + 1)
    x = torch.zeros(1, d, dtype=torch.float64)
    y = torch.tensor([2])
    own = 30.0**2  # squared distance per coordinate to class 2's points (mean over d)
    # RPL with lambda 1, T huge (CE ~ log C), radius 0: the open term is own^2
    loss = rpl_loss(x, y, p, 0.0, temperature=1e9, open_weight=1.0)
    assert loss.item() == pytest.approx(math.log(3) + own**2, rel=1e-6)
    wrong = p.reshape(c * m, d)[y]  # what centers[labels] reads: a point of class 1
    wrong_own = float(((x - wrong) ** 2).mean())
    assert wrong_own != pytest.approx(own)


def test_reciprocal_head_forward_and_parameters() -> None:
    torch.manual_seed(0)
    head = ReciprocalPointHead(5, 4, num_points=3, kind="arpl")
    assert head.points.shape == (4, 3, 5) and head.radius.shape == () and head.radius.item() == 0
    x = torch.randn(7, 5)
    torch.testing.assert_close(head(x), reciprocal_logits(x, head.points, "arpl"))
    l2, dot = reciprocal_distances(x, head.points)
    torch.testing.assert_close(head(x), l2 - dot)
    rpl = ReciprocalPointHead(5, 4, kind="rpl")
    torch.testing.assert_close(rpl(x), reciprocal_distances(x, rpl.points)[0])
    names = {id(p) for p in head.no_weight_decay_parameters()}
    assert names == {id(head.points), id(head.radius)}
    proto = PrototypeHead(5, 4, num_prototypes=2)
    torch.testing.assert_close(proto(x), -prototype_distances(x, proto.prototypes).amin(dim=2))
    assert [id(q) for q in proto.no_weight_decay_parameters()] == [id(proto.prototypes)]


def test_heads_are_device_and_dtype_agnostic() -> None:
    head = ReciprocalPointHead(3, 2, num_points=2).double()
    assert head(torch.randn(4, 3, dtype=torch.float64)).dtype == torch.float64
    meta = ReciprocalPointHead(3, 2).to("meta")
    assert meta(torch.empty(4, 3, device="meta")).device.type == "meta"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_points": 0}, "num_points"),
        ({"num_points": 1.5}, "num_points"),
        ({"kind": "cpl"}, "kind"),
        ({"init_std": 0.0}, "init_std"),
    ],
)
def test_reciprocal_head_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ReciprocalPointHead(4, 3, **kwargs)


def test_prototype_head_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_prototypes"):
        PrototypeHead(4, 3, num_prototypes=0)
    with pytest.raises(ValueError, match="in_features"):
        PrototypeHead(0, 3)


@given(
    shift=st.floats(-5, 5),
    seed=st.integers(0, 2**16),
    m=st.integers(1, 3),
)
def test_distances_are_translation_invariant_and_nonnegative(
    shift: float, seed: int, m: int
) -> None:
    x, _, p = setup_tensors(n=4, c=2, m=m, d=3, seed=seed)
    l2, _ = reciprocal_distances(x, p)
    moved, _ = reciprocal_distances(x + shift, p + shift)
    assert bool((l2 >= 0).all())
    torch.testing.assert_close(moved, l2, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------------ losses vs references


@pytest.mark.parametrize("m", [1, 3])
def test_rpl_loss_matches_reference(m: int) -> None:
    x, y, p = setup_tensors(m=m)
    adj = [0.3, -0.2, 0.1]
    got = rpl_loss(x, y, p, 0.7, temperature=2.0, open_weight=0.4, adjustment=adj, reduction="none")
    want = ref_rpl(x, y, p, 0.7, 2.0, 0.4, adj)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))
    mean = rpl_loss(x, y, p, 0.7, temperature=2.0, open_weight=0.4, adjustment=adj)
    assert mean.item() == pytest.approx(sum(want) / len(want), rel=1e-10)
    total = rpl_loss(
        x, y, p, 0.7, temperature=2.0, open_weight=0.4, adjustment=adj, reduction="sum"
    )
    assert total.item() == pytest.approx(sum(want), rel=1e-10)


@pytest.mark.parametrize("m", [1, 3])
def test_arpl_loss_matches_reference(m: int) -> None:
    x, y, p = setup_tensors(m=m)
    # a radius in the middle of the own distances: some samples inside the hinge, some outside
    l2, _ = ref_distances(x, p)
    r = float(l2[torch.arange(len(y)), y].median()) + 1.0
    got = arpl_loss(x, y, p, torch.tensor([r]), temperature=0.5, open_weight=0.3, reduction="none")
    want = ref_arpl(x, y, p, r, 0.5, 0.3)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))
    hinge_active = [float(l2[i, int(y[i])]) - r + 1.0 > 0 for i in range(len(y))]
    assert any(hinge_active) and not all(hinge_active)


@pytest.mark.parametrize("m", [1, 2])
def test_gcpl_loss_matches_reference(m: int) -> None:
    x, y, p = setup_tensors(m=m)
    got = gcpl_loss(x, y, p, temperature=1.5, prototype_weight=0.2, reduction="none")
    torch.testing.assert_close(got, torch.tensor(ref_gcpl(x, y, p, 1.5, 0.2), dtype=torch.float64))


def test_gcpl_with_one_prototype_is_the_arpl_code_baseline() -> None:
    """ARPL code's GCPLoss: CE(-d_l2 / T) + w * F.mse_loss(x, centers[labels]) / 2 (M = 1)."""
    x, y, p = setup_tensors(m=1)
    logits = -((x[:, None, :] - p[None, :, 0, :]) ** 2).mean(dim=2)
    want = F.cross_entropy(logits, y) + 0.1 * F.mse_loss(x, p[y, 0]) / 2
    assert gcpl_loss(x, y, p).item() == pytest.approx(want.item(), rel=1e-10)


def test_confusing_sample_loss_is_exp_of_minus_mean_entropy() -> None:
    x, _, p = setup_tensors(m=2)
    l2, _ = ref_distances(x, p)
    prob = torch.softmax(l2, dim=1)
    want = math.exp(float((prob * prob.log()).sum(1).mean()))
    assert confusing_sample_loss(x, p).item() == pytest.approx(want, rel=1e-10)
    # equal distances to every class: maximal entropy, the loss is 1 / C
    same = torch.zeros(1, 3, 2, 5, dtype=torch.float64).squeeze(0)
    assert confusing_sample_loss(x, same).item() == pytest.approx(1 / 3)


def test_module_twins_call_the_functions() -> None:
    x, y, p = setup_tensors(m=2)
    r = torch.tensor(0.5, dtype=torch.float64)
    adj = [0.1, 0.2, -0.3]
    assert RPLLoss(temperature=2.0, adjustment=adj)(x, y, p, r).item() == pytest.approx(
        rpl_loss(x, y, p, r, temperature=2.0, adjustment=adj).item()
    )
    assert ARPLLoss(margin=0.5, open_weight=0.2)(x, y, p, r).item() == pytest.approx(
        arpl_loss(x, y, p, r, margin=0.5, open_weight=0.2).item()
    )
    assert GCPLLoss(prototype_weight=0.3)(x, y, p).item() == pytest.approx(
        gcpl_loss(x, y, p, prototype_weight=0.3).item()
    )
    assert ConfusingSampleLoss()(x, p).item() == pytest.approx(confusing_sample_loss(x, p).item())
    module = RPLLoss(adjustment=adj)
    assert "adjustment" in dict(module.named_buffers())
    assert module.double().adjustment.dtype == torch.float64  # type: ignore[union-attr]


# ------------------------------------------------------------------------ gradients


# gradcheck at the defaults (features, points and radius), empty batches, bf16 inputs and autocast,
# saturated features, bad reductions / targets / integer features: tests/test_losses_contract.py,
# for every registered loss. Here: the options the registry's defaults leave out.


@pytest.mark.parametrize("fn", ["rpl", "arpl"])
def test_gradcheck_with_adjustment_temperature_and_margin(fn: str) -> None:
    x, y, p = setup_tensors(n=4, c=3, m=2, d=3, seed=1)
    x.requires_grad_(True)
    p.requires_grad_(True)
    r = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    adj = torch.tensor([0.2, -0.1, 0.05], dtype=torch.float64)
    if fn == "rpl":
        assert torch.autograd.gradcheck(
            lambda a, b, c: rpl_loss(a, y, b, c, temperature=1.3, adjustment=adj), (x, p, r)
        )
    else:
        assert torch.autograd.gradcheck(
            lambda a, b, c: arpl_loss(a, y, b, c, temperature=0.8, margin=0.5, reduction="sum"),
            (x, p, r),
        )


def test_gradients_reach_points_and_radius_of_the_head() -> None:
    torch.manual_seed(0)
    head = ReciprocalPointHead(4, 3, num_points=2, kind="arpl")
    x = torch.randn(8, 4, requires_grad=True)
    y = torch.arange(8) % 3
    arpl_loss(x, y, head.points, head.radius).backward()
    assert head.points.grad is not None and bool(head.points.grad.abs().sum() > 0)
    assert head.radius.grad is not None and head.radius.grad.item() != 0
    assert x.grad is not None


# ------------------------------------------------------------------------ edge cases and errors


def test_saturated_features_give_finite_losses() -> None:
    """Features of 1e4 in float32 (the contract tests saturate at 100, which float16 gradients hold)."""
    x = torch.full((3, 4), 1e4)
    x[1] = -1e4
    p = torch.randn(3, 2, 4)
    y = torch.tensor([0, 1, 2])
    for loss in (rpl_loss(x, y, p, 0.0), arpl_loss(x, y, p, 0.0), gcpl_loss(x, y, p)):
        assert math.isfinite(loss.item())
    assert math.isfinite(confusing_sample_loss(x, p).item())


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda x, y, p: rpl_loss(x, y, p, 0.0, temperature=0.0), ValueError, "temperature"),
        (lambda x, y, p: rpl_loss(x, y, p, 0.0, open_weight=-0.1), ValueError, "open_weight"),
        (lambda x, y, p: arpl_loss(x, y, p, 0.0, margin=-1.0), ValueError, "margin"),
        (lambda x, y, p: gcpl_loss(x, y, p, prototype_weight=-1.0), ValueError, "prototype_weight"),
        (lambda x, y, p: rpl_loss(x, y, p[:, :, :2], 0.0), ValueError, "feature dimension"),
        (lambda x, y, p: rpl_loss(x, y, p, torch.zeros(2)), ValueError, "radius"),
        (lambda x, y, p: rpl_loss(x, y, p, True), TypeError, "radius"),
        (lambda x, y, p: rpl_loss(x, y, p, 0.0, adjustment=[0.0]), ValueError, "adjustment"),
        (lambda x, y, p: RPLLoss(open_weight=-1.0), ValueError, "open_weight"),
        (lambda x, y, p: ARPLLoss(temperature=-1.0), ValueError, "temperature"),
    ],
)
def test_bad_input_errors_name_the_argument(call, exc, match) -> None:  # type: ignore[no-untyped-def]
    x, y, p = setup_tensors()
    with pytest.raises(exc, match=match):
        call(x, y, p)


# ------------------------------------------------------------------------ GAN building blocks


def test_generator_range_shapes_and_discriminator() -> None:
    torch.manual_seed(0)
    gen = ConfusingSampleGenerator((1, 28, 28), noise_dim=8, width=4, low=-0.5, high=2.0)
    out = gen.sample(5)
    assert out.shape == (5, 1, 28, 28)
    assert float(out.detach().min()) >= -0.5 and float(out.detach().max()) <= 2.0
    disc = SampleDiscriminator((1, 28, 28), width=4)
    logits = disc(out)
    assert logits.shape == (5,)
    logits.sum().backward()
    assert all(p.grad is not None for p in gen.parameters())
    wide = ConfusingSampleGenerator((3, 8, 12), noise_dim=4, width=2)
    assert wide(torch.randn(2, 4)).shape == (2, 3, 8, 12)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: ConfusingSampleGenerator((1, 30, 28)), "divisible by 4"),
        (lambda: ConfusingSampleGenerator((1, 28)), "out_shape"),
        (lambda: ConfusingSampleGenerator(noise_dim=0), "noise_dim"),
        (lambda: ConfusingSampleGenerator(low=1.0, high=1.0), "low"),
        (lambda: SampleDiscriminator((1, 10, 10)), "divisible by 4"),
        (lambda: SampleDiscriminator(width=0), "width"),
    ],
)
def test_gan_bad_arguments(build, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        build()


def test_gan_bad_inputs() -> None:
    with pytest.raises(ValueError, match="noise"):
        ConfusingSampleGenerator(noise_dim=4, width=2)(torch.randn(2, 5))
    with pytest.raises(ValueError, match="x must have shape"):
        SampleDiscriminator(width=2)(torch.randn(2, 1, 32, 32))
