"""Self-supervised label augmentation (longtail.sla): transformations, joint labels, SI / AG / SD.

Conventions checked against the official code (github.com/hankook/SLA): copies sample-major with
joint label ``y * M + j``; AG averages the joint *logits* ``(i, j)`` of ``t_j(x)`` over ``j``; SD is
``CE + T^2 * batchmean KL(softmax(AG / T) || softmax(h / T))`` with the aggregation detached.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from longtail.sla import (
    CHANNEL_PERMUTATIONS,
    SLA_FAMILIES,
    channel_permutations,
    rotation_channel_permutations,
    rotations,
    sla_aggregate_logits,
    sla_expand,
    sla_num_transforms,
    sla_self_distillation_loss,
    sla_single_logits,
    sla_split_labels,
    sla_transforms,
)


def images(seed: int = 0, b: int = 3, c: int = 3, h: int = 5, w: int = 5) -> torch.Tensor:
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------ transformations


def test_rotation_is_the_explicit_pixel_map() -> None:
    x = images(1, h=4, w=4)
    r = rotations(x)
    assert r.shape == (3, 4, 3, 4, 4)
    assert torch.equal(r[:, 0], x)
    expected = torch.empty_like(x)
    for i, j in itertools.product(range(4), range(4)):
        expected[..., i, j] = x[..., j, 3 - i]  # counter-clockwise by 90 degrees
    assert torch.equal(r[:, 1], expected)


@pytest.mark.parametrize("k", range(4))
def test_rotations_of_a_rotation_give_back_the_group(k: int) -> None:
    x = images(2)
    r = rotations(x)
    again = rotations(r[:, k])
    for m in range(4):
        assert torch.equal(again[:, m], r[:, (k + m) % 4])  # exact: pixel permutations
    assert torch.equal(rotations(rotations(r[:, 1])[:, 3])[:, 0], x)


def test_rotations_are_distinct() -> None:
    r = rotations(images(3))
    for a, b in itertools.combinations(range(4), 2):
        assert not torch.equal(r[:, a], r[:, b])


def test_channel_permutations_six_distinct_identity_first() -> None:
    x = images(4)
    p = channel_permutations(x)
    assert p.shape == (3, 6, 3, 5, 5)
    assert torch.equal(p[:, 0], x)
    assert list(CHANNEL_PERMUTATIONS) == list(itertools.permutations(range(3)))
    for j, perm in enumerate(CHANNEL_PERMUTATIONS):
        for c in range(3):
            assert torch.equal(p[:, j, c], x[:, perm[c]])
    for a, b in itertools.combinations(range(6), 2):
        assert not torch.equal(p[:, a], p[:, b])
    # closed under composition: permuting a permutation gives one of the six
    for j in range(6):
        twice = channel_permutations(p[:, j])
        for m in range(6):
            assert any(torch.equal(twice[:, m], p[:, q]) for q in range(6))


def test_product_family_is_rotation_major() -> None:
    x = images(5)
    prod = rotation_channel_permutations(x)
    assert prod.shape == (3, 24, 3, 5, 5)
    r = rotations(x)
    for rot, perm in itertools.product(range(4), range(6)):
        assert torch.equal(prod[:, 6 * rot + perm], channel_permutations(r[:, rot])[:, perm])
        # the two commute
        assert torch.equal(
            prod[:, 6 * rot + perm], rotations(channel_permutations(x)[:, perm])[:, rot]
        )
    flat = prod.flatten(2)
    assert len({tuple(flat[0, j].tolist()) for j in range(24)}) == 24


def test_families() -> None:
    assert dict(SLA_FAMILIES) == {"rotation": 4, "channel_permutation": 6, "product": 24}
    x = images(6)
    for family, m in SLA_FAMILIES.items():
        assert sla_num_transforms(family) == m  # type: ignore[arg-type]
        assert sla_transforms(x, family).shape[1] == m  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="family must be one of"):
        sla_transforms(x, "flip")  # type: ignore[arg-type]


def test_transformation_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match=r"x must have 3 channels \(RGB\)"):
        channel_permutations(images(7, c=1))
    with pytest.raises(ValueError, match="x must have 3 channels"):
        rotation_channel_permutations(images(7, c=4))
    with pytest.raises(ValueError, match="x must have 3 channels"):
        sla_expand(images(7, c=1), torch.zeros(3, dtype=torch.long), "channel_permutation")
    with pytest.raises(ValueError, match=r"x must hold square images"):
        rotations(images(7, h=4, w=6))
    with pytest.raises(ValueError, match=r"x must have 4 dimensions \(B, C, H, W\)"):
        rotations(images(7)[0])
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor"):
        rotations([[1.0]])  # type: ignore[arg-type]
    # rotations work for any channel count
    assert rotations(images(7, c=1)).shape == (3, 4, 1, 5, 5)


# ------------------------------------------------------------------------------- joint labels


@pytest.mark.parametrize("family", ["rotation", "channel_permutation", "product"])
def test_expand_joint_labels_and_order(family: str) -> None:
    x, y = images(8), torch.tensor([2, 0, 5])
    m = SLA_FAMILIES[family]
    x_all, joint_y = sla_expand(x, y, family)  # type: ignore[arg-type]
    assert x_all.shape == (3 * m, 3, 5, 5)
    # the official code's labels: torch.stack([y * M + j for j in range(M)], 1).view(-1)
    assert joint_y.tolist() == [int(y[b]) * m + j for b in range(3) for j in range(m)]
    t = sla_transforms(x, family)  # type: ignore[arg-type]
    for b, j in itertools.product(range(3), range(m)):
        assert torch.equal(x_all[b * m + j], t[b, j])
    cls, tr = sla_split_labels(joint_y, m)
    assert cls.tolist() == [int(y[b]) for b in range(3) for _ in range(m)]
    assert tr.tolist() == list(range(m)) * 3


def test_expand_bad_labels() -> None:
    x = images(9)
    with pytest.raises(ValueError, match="y has 2 entries but x has batch size 3"):
        sla_expand(x, torch.tensor([0, 1]), "rotation")
    with pytest.raises(TypeError, match="y must be an integer tensor"):
        sla_expand(x, torch.zeros(3), "rotation")
    with pytest.raises(ValueError, match="y must hold non-negative class indices, got -1"):
        sla_expand(x, torch.tensor([0, -1, 2]), "rotation")
    with pytest.raises(ValueError, match="M must be >= 1"):
        sla_split_labels(torch.tensor([0, 1]), 0)


# ---------------------------------------------------------------------------------- inference


def ref_aggregate(z: torch.Tensor, m: int) -> torch.Tensor:
    """Loops: out[b, i] = mean_j z[b, j, i * M + j]."""
    b, _, nm = z.shape
    out = torch.zeros(b, nm // m, dtype=z.dtype)
    for bi, i in itertools.product(range(b), range(nm // m)):
        out[bi, i] = sum(float(z[bi, j, i * m + j]) for j in range(m)) / m
    return out


@given(seed=st.integers(0, 10_000), b=st.integers(1, 3), n=st.integers(1, 4), m=st.integers(1, 6))
def test_aggregate_matches_loops(seed: int, b: int, n: int, m: int) -> None:
    z = torch.randn(b, m, n * m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ref = ref_aggregate(z, m)
    torch.testing.assert_close(sla_aggregate_logits(z, m), ref)
    torch.testing.assert_close(sla_aggregate_logits(z.flatten(0, 1), m), ref)  # sample-major rows


def test_aggregate_averages_logits_not_probabilities() -> None:
    z = torch.randn(2, 4, 3 * 4, dtype=torch.float64) * 4
    agg = sla_aggregate_logits(z, 4)
    blocks = [z[:, j, j::4] for j in range(4)]
    torch.testing.assert_close(agg, sum(blocks) / 4)
    probs = sum(torch.softmax(bl, 1) for bl in blocks) / 4
    assert not torch.allclose(torch.softmax(agg, 1), probs)


def test_single_logits_are_the_identity_block() -> None:
    z = torch.arange(2 * 12, dtype=torch.float32).view(2, 12)
    assert sla_single_logits(z, 4).tolist() == [[0, 4, 8], [12, 16, 20]]
    assert sla_single_logits(z[0], 6).tolist() == [0.0, 6.0]


class InvariantModel(nn.Module):
    """Features invariant to rotations and channel permutations; joint logits equal across j."""

    def __init__(self, n: int, m: int) -> None:
        super().__init__()
        self.m = m
        self.fc = nn.Linear(4, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x.flatten(1)
        feats = torch.stack([f.mean(1), f.std(1), f.amax(1), f.amin(1)], 1)
        return self.fc(feats).repeat_interleave(self.m, dim=1)  # column i * M + j = class i


@pytest.mark.parametrize("family", ["rotation", "channel_permutation", "product"])
def test_aggregate_of_a_transform_ignoring_model_equals_single(family: str) -> None:
    torch.manual_seed(0)
    m = SLA_FAMILIES[family]
    model = InvariantModel(5, m)
    x, y = images(10), torch.tensor([1, 4, 0])
    x_all, _ = sla_expand(x, y, family)  # type: ignore[arg-type]
    with torch.no_grad():
        agg = sla_aggregate_logits(model(x_all), m)
        single = sla_single_logits(model(x), m)
    torch.testing.assert_close(agg, single)


def test_aggregate_differs_from_single_for_a_transform_aware_model() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 5 * 5, 5 * 4))
    x_all, _ = sla_expand(images(11), torch.tensor([0, 1, 2]), "rotation")
    with torch.no_grad():
        z = model(x_all)
    assert not torch.allclose(sla_aggregate_logits(z, 4), sla_single_logits(z[::4], 4))


def test_inference_errors() -> None:
    with pytest.raises(ValueError, match="N \\* M joint classes"):
        sla_single_logits(torch.zeros(2, 10), 4)
    with pytest.raises(ValueError, match="must have B \\* M rows"):
        sla_aggregate_logits(torch.zeros(6, 8), 4)
    with pytest.raises(ValueError, match="joint_logits_per_transform must be"):
        sla_aggregate_logits(torch.zeros(2, 3, 8), 4)
    with pytest.raises(TypeError, match="M must be a positive int"):
        sla_single_logits(torch.zeros(2, 8), 4.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="floating-point"):
        sla_single_logits(torch.zeros(2, 8, dtype=torch.long), 4)


# ----------------------------------------------------------------------------- self-distillation


def ref_sd(h: torch.Tensor, agg: torch.Tensor, y: torch.Tensor, temp: float) -> list[float]:
    out = []
    for hi, ai, yi in zip(h, agg, y.tolist(), strict=True):
        ce = -math.log(float(torch.softmax(hi, 0)[yi]))
        p, q = torch.softmax(ai / temp, 0), torch.softmax(hi / temp, 0)
        kl = sum(float(pc) * math.log(float(pc) / float(qc)) for pc, qc in zip(p, q, strict=True))
        out.append(ce + temp**2 * kl)
    return out


@pytest.mark.parametrize("temp", [1.0, 2.5])
def test_self_distillation_matches_reference(temp: float) -> None:
    g = torch.Generator().manual_seed(12)
    h = torch.randn(6, 5, generator=g, dtype=torch.float64) * 2
    agg = torch.randn(6, 5, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, 5, (6,), generator=g)
    ref = torch.tensor(ref_sd(h, agg, y, temp), dtype=torch.float64)
    torch.testing.assert_close(sla_self_distillation_loss(h, agg, y, T=temp, reduction="none"), ref)
    torch.testing.assert_close(sla_self_distillation_loss(h, agg, y, temp), ref.mean())
    torch.testing.assert_close(
        sla_self_distillation_loss(h, agg, y, T=temp, reduction="sum"), ref.sum()
    )
    # the official formulation: CE + batchmean KL * T^2
    official = (
        F.cross_entropy(h, y)
        + F.kl_div(F.log_softmax(h / temp, 1), F.softmax(agg / temp, 1), reduction="batchmean")
        * temp**2
    )
    torch.testing.assert_close(sla_self_distillation_loss(h, agg, y, T=temp), official)


def test_self_distillation_gradient_only_to_the_head() -> None:
    g = torch.Generator().manual_seed(13)
    h = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    agg = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 2, 1, 1])
    sla_self_distillation_loss(h, agg, y).backward()
    assert agg.grad is None and h.grad is not None
    h2 = h.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: sla_self_distillation_loss(a, agg, y, T=2.0), (h2,))


def test_end_to_end_joint_loss_gradient() -> None:
    """Joint CE + SD through SI and AG on a tiny linear model, float64: AG is a constant target."""
    x, y = images(14, b=2, h=2, w=2).double(), torch.tensor([0, 1])
    x_all, joint_y = sla_expand(x, y, "rotation")
    w0 = torch.randn(3 * 2 * 2, 2 * 4, dtype=torch.float64)

    def objective(weight: torch.Tensor, agg_weight: torch.Tensor) -> torch.Tensor:
        z = x_all.flatten(1) @ weight
        agg = sla_aggregate_logits(x_all.flatten(1) @ agg_weight, 4)
        head = sla_single_logits(z[::4], 4)
        return F.cross_entropy(z, joint_y) + sla_self_distillation_loss(head, agg, y)

    w = w0.clone().requires_grad_(True)
    objective(w, w).backward()  # AG from the same weights, detached inside the SD loss
    assert torch.autograd.gradcheck(lambda a: objective(a, w0), (w0.clone().requires_grad_(True),))
    fixed = w0.clone().requires_grad_(True)
    objective(fixed, w0).backward()
    torch.testing.assert_close(w.grad, fixed.grad)


def test_self_distillation_bf16_autocast_and_saturated() -> None:
    g = torch.Generator().manual_seed(15)
    h, agg = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    y = torch.randint(0, 5, (8,), generator=g)
    ref = sla_self_distillation_loss(h.bfloat16().float(), agg.bfloat16().float(), y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sla_self_distillation_loss(h.bfloat16(), agg.bfloat16(), y)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref)
    big = (h.sign() * 1e4).requires_grad_(True)
    loss = sla_self_distillation_loss(big, -big.detach(), y)
    loss.backward()
    assert torch.isfinite(loss) and big.grad is not None and bool(torch.isfinite(big.grad).all())


def test_self_distillation_errors() -> None:
    h, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match=r"T must be > 0|T must be a finite number >= 0"):
            sla_self_distillation_loss(h, h, y, T=bad)
    with pytest.raises(ValueError, match="aggregated_logits must have the shape of head_logits"):
        sla_self_distillation_loss(h, torch.randn(4, 4), y)
    with pytest.raises(ValueError, match="target must hold class indices"):
        sla_self_distillation_loss(h, h, torch.tensor([0, 1, 3, 0]))
    with pytest.raises(ValueError, match="reduction"):
        sla_self_distillation_loss(h, h, y, reduction="avg")  # type: ignore[arg-type]
