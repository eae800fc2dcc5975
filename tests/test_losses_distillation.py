"""Distillation losses: KD (plain and standardised), DKD, RKD distance and angle.

References are written here with plain float64 torch ops and Python loops, the papers' way:
probabilities and explicit KL sums for KD / DKD (Hinton et al. 2015; Zhao et al. CVPR 2022, whose
official code, megvii-research/mdistiller, divides by the batch size and multiplies both DKD terms
by T^2), the z-score of Sun et al. (CVPR 2024; official code: unbiased std, ``/ (std + 1e-7)``), and
loops over pairs and triplets for RKD (Park et al. CVPR 2019; official code lenscloth/RKD: Huber
``smooth_l1_loss`` averaged over all N^2 pairs and N^3 triplets).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from longtail.losses import (
    LOSSES,
    DKDLoss,
    KDLoss,
    RKDAngleLoss,
    RKDLoss,
    dkd_loss,
    kd_loss,
    list_losses,
    rkd_angle_loss,
    rkd_distance_loss,
)

N, C = 12, 7


def logits(seed: int, n: int = N, c: int = C, scale: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=torch.float64) * scale


def labels(seed: int, n: int = N, c: int = C) -> torch.Tensor:
    return torch.randint(0, c, (n,), generator=torch.Generator().manual_seed(seed))


def embeddings(seed: int, n: int = 9, d: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def random_rotation(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q


# ----------------------------------------------------------------------------- references


def ref_kl(p: torch.Tensor, q: torch.Tensor) -> float:
    """KL(p || q) of two probability vectors, term by term."""
    return sum(
        float(pi) * math.log(float(pi) / float(qi)) for pi, qi in zip(p, q, strict=True) if pi > 0
    )


def ref_zscore(z: torch.Tensor) -> torch.Tensor:
    rows = []
    for row in z:
        mean = sum(float(v) for v in row) / len(row)
        std = math.sqrt(sum((float(v) - mean) ** 2 for v in row) / (len(row) - 1))
        rows.append([(float(v) - mean) / (std + 1e-7) for v in row])
    return torch.tensor(rows, dtype=torch.float64)


def ref_kd(s: torch.Tensor, t: torch.Tensor, temp: float, standardize: bool = False) -> list[float]:
    if standardize:
        s, t = ref_zscore(s), ref_zscore(t)
    out = []
    for si, ti in zip(s, t, strict=True):
        p_t = torch.softmax(ti / temp, 0)
        p_s = torch.softmax(si / temp, 0)
        out.append(temp**2 * ref_kl(p_t, p_s))
    return out


def ref_dkd_parts(
    s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, temp: float
) -> tuple[list[float], list[float], list[float]]:
    """Per sample (TCKD, NCKD, b_t of the teacher) from probabilities, without T^2."""
    tckd, nckd, bt = [], [], []
    for si, ti, yi in zip(s, t, y.tolist(), strict=True):
        p_s = torch.softmax(si / temp, 0)
        p_t = torch.softmax(ti / temp, 0)
        b_s = torch.stack([p_s[yi], 1 - p_s[yi]])
        b_t = torch.stack([p_t[yi], 1 - p_t[yi]])
        others = [c for c in range(len(si)) if c != yi]
        q_s = p_s[others] / (1 - p_s[yi])
        q_t = p_t[others] / (1 - p_t[yi])
        tckd.append(ref_kl(b_t, b_s))
        nckd.append(ref_kl(q_t, q_s))
        bt.append(float(p_t[yi]))
    return tckd, nckd, bt


def ref_dkd_masked(
    s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, alpha: float, beta: float, temp: float
) -> torch.Tensor:
    """The official formulation (target masked by -1000 for NCKD), batch mean, for moderate logits."""
    gt = F.one_hot(y, s.shape[1]).to(torch.bool)
    p_s, p_t = torch.softmax(s / temp, 1), torch.softmax(t / temp, 1)
    b_s = torch.stack([p_s[gt], p_s[~gt].view(len(y), -1).sum(1)], 1)
    b_t = torch.stack([p_t[gt], p_t[~gt].view(len(y), -1).sum(1)], 1)
    tckd = (b_t * (b_t.log() - b_s.log())).sum() / len(y)
    log_q_s = torch.log_softmax(s / temp - 1000.0 * gt, 1)
    q_t = torch.softmax(t / temp - 1000.0 * gt, 1)
    nckd = (torch.xlogy(q_t, q_t) - q_t * log_q_s).sum() / len(y)  # 0 log 0 = 0, as F.kl_div
    return temp**2 * (alpha * tckd + beta * nckd)


def huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def ref_rkd_distance(s: torch.Tensor, t: torch.Tensor) -> float:
    n = len(s)

    def normalised(e: torch.Tensor) -> list[list[float]]:
        d = [[float(torch.linalg.norm(e[i] - e[j])) for j in range(n)] for i in range(n)]
        mu = sum(d[i][j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        return [[v / mu for v in row] for row in d]

    ds, dt = normalised(s), normalised(t)
    return sum(huber(ds[i][j] - dt[i][j]) for i in range(n) for j in range(n)) / n**2


def ref_cos(e: torch.Tensor, v: int, j: int, k: int) -> float:
    if j == v or k == v:
        return 0.0
    a, b = e[j] - e[v], e[k] - e[v]
    return float(a @ b) / float(torch.linalg.norm(a) * torch.linalg.norm(b))


def ref_rkd_angle(s: torch.Tensor, t: torch.Tensor) -> float:
    n = len(s)
    total = sum(
        huber(ref_cos(s, v, j, k) - ref_cos(t, v, j, k))
        for v, j, k in itertools.product(range(n), repeat=3)
    )
    return total / n**3


# ------------------------------------------------------------------------------------ KD


@pytest.mark.parametrize("temp", [1.0, 4.0, 0.5])
@pytest.mark.parametrize("standardize", [False, True])
def test_kd_matches_reference(temp: float, standardize: bool) -> None:
    s, t = logits(1), logits(2)
    ref = torch.tensor(ref_kd(s, t, temp, standardize), dtype=torch.float64)
    kw = {"temperature": temp, "standardize": standardize}
    torch.testing.assert_close(kd_loss(s, t, reduction="none", **kw), ref)
    torch.testing.assert_close(kd_loss(s, t, reduction="sum", **kw), ref.sum())
    torch.testing.assert_close(kd_loss(s, t, **kw), ref.sum() / N)  # "mean" = batchmean


def test_kd_is_batchmean_kl_times_t_squared() -> None:
    s, t = logits(3), logits(4)
    ref = F.kl_div(F.log_softmax(s / 4.0, 1), F.softmax(t / 4.0, 1), reduction="batchmean") * (
        4.0**2
    )
    torch.testing.assert_close(kd_loss(s, t), ref)


def test_kd_defaults() -> None:
    m = KDLoss()
    assert (m.temperature, m.standardize, m.reduction) == (4.0, False, "mean")
    s, t = logits(5), logits(6)
    torch.testing.assert_close(kd_loss(s, t), torch.tensor(ref_kd(s, t, 4.0), dtype=s.dtype).mean())
    assert "temperature=4.0" in repr(m)


def test_kd_identical_logits_is_zero() -> None:
    z = logits(7)
    assert float(kd_loss(z, z)) == pytest.approx(0.0, abs=1e-14)
    assert float(kd_loss(z, z.clone(), standardize=True)) == pytest.approx(0.0, abs=1e-14)
    assert float(kd_loss(z, z, temperature=1.0)) == pytest.approx(0.0, abs=1e-14)
    assert float(kd_loss(z, logits(8))) > 0.1  # and it is not always 0


def test_kd_is_shift_invariant_but_not_scale_invariant() -> None:
    s, t = logits(9), logits(10)
    shift = torch.randn(N, 1, dtype=torch.float64) * 5
    torch.testing.assert_close(kd_loss(s + shift, t - shift), kd_loss(s, t))
    assert not torch.allclose(kd_loss(2 * s, t), kd_loss(s, t))


@given(
    seed=st.integers(0, 10_000),
    scale=st.floats(0.05, 20.0),
    shift=st.floats(-50.0, 50.0),
    temp=st.floats(0.5, 8.0),
)
def test_standardized_kd_invariant_to_positive_affine_student(
    seed: int, scale: float, shift: float, temp: float
) -> None:
    s, t = logits(seed), logits(seed + 1)
    g = torch.Generator().manual_seed(seed)
    a = scale * (0.5 + torch.rand(N, 1, generator=g, dtype=torch.float64))  # per sample, > 0
    b = shift * torch.randn(N, 1, generator=g, dtype=torch.float64)
    base = kd_loss(s, t, temperature=temp, standardize=True, reduction="none")
    moved = kd_loss(a * s + b, t, temperature=temp, standardize=True, reduction="none")
    torch.testing.assert_close(moved, base, rtol=1e-5, atol=1e-7)
    # ... and to the teacher's
    moved_t = kd_loss(s, a * t + b, temperature=temp, standardize=True, reduction="none")
    torch.testing.assert_close(moved_t, base, rtol=1e-5, atol=1e-7)
    # a negative scale reverses the ranking: not invariant
    flipped = kd_loss(-s, t, temperature=temp, standardize=True, reduction="none")
    assert not torch.allclose(flipped, base)


@given(seed=st.integers(0, 10_000), temp=st.floats(0.3, 10.0), scale=st.floats(0.01, 100.0))
def test_kd_and_dkd_non_negative(seed: int, temp: float, scale: float) -> None:
    s, t, y = logits(seed, scale=scale), logits(seed + 7, scale=scale), labels(seed)
    assert bool((kd_loss(s, t, temperature=temp, reduction="none") >= -1e-12).all())
    assert bool((dkd_loss(s, t, y, temperature=temp, reduction="none") >= -1e-12).all())


def test_standardize_constant_logits_finite_gradient() -> None:
    """A zero-initialised head gives constant logits: the z-score must not give NaN."""
    s = torch.zeros(4, C, dtype=torch.float32, requires_grad=True)
    loss = kd_loss(s, logits(11, n=4).float(), standardize=True)
    loss.backward()
    assert torch.isfinite(loss)
    assert s.grad is not None and bool(torch.isfinite(s.grad).all())


# ------------------------------------------------------------------------------------ DKD


@pytest.mark.parametrize(("alpha", "beta", "temp"), [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0), (0, 1, 2.0)])
def test_dkd_matches_explicit_tckd_nckd(alpha: float, beta: float, temp: float) -> None:
    s, t, y = logits(12), logits(13), labels(14)
    tckd, nckd, _ = ref_dkd_parts(s, t, y, temp)
    ref = torch.tensor(
        [temp**2 * (alpha * a + beta * b) for a, b in zip(tckd, nckd, strict=True)],
        dtype=torch.float64,
    )
    kw = {"alpha": alpha, "beta": beta, "temperature": temp}
    torch.testing.assert_close(dkd_loss(s, t, y, reduction="none", **kw), ref)
    torch.testing.assert_close(dkd_loss(s, t, y, reduction="sum", **kw), ref.sum())
    torch.testing.assert_close(dkd_loss(s, t, y, **kw), ref.sum() / N)


def test_dkd_matches_the_masked_formulation_for_moderate_logits() -> None:
    s, t, y = logits(15), logits(16), labels(17)
    for alpha, beta, temp in [(1.0, 8.0, 4.0), (2.0, 0.5, 1.0)]:
        torch.testing.assert_close(
            dkd_loss(s, t, y, alpha=alpha, beta=beta, temperature=temp),
            ref_dkd_masked(s, t, y, alpha, beta, temp),
        )


@pytest.mark.parametrize("temp", [1.0, 4.0])
def test_kd_decomposes_into_tckd_and_weighted_nckd(temp: float) -> None:
    """Zhao et al. eq. (1): KD = TCKD + (1 - b_t) NCKD, per sample."""
    s, t, y = logits(18), logits(19), labels(20)
    kd = kd_loss(s, t, temperature=temp, reduction="none")
    tckd = dkd_loss(s, t, y, alpha=1.0, beta=0.0, temperature=temp, reduction="none")
    nckd = dkd_loss(s, t, y, alpha=0.0, beta=1.0, temperature=temp, reduction="none")
    b_t = torch.softmax(t / temp, 1).gather(1, y[:, None]).squeeze(1)
    torch.testing.assert_close(kd, tckd + (1 - b_t) * nckd)


def test_dkd_defaults_and_identical_logits() -> None:
    m = DKDLoss()
    assert (m.alpha, m.beta, m.temperature, m.reduction) == (1.0, 8.0, 4.0, "mean")
    z, y = logits(21), labels(22)
    assert float(dkd_loss(z, z, y)) == pytest.approx(0.0, abs=1e-13)
    assert float(dkd_loss(z, logits(23), y)) > 0.1


def test_dkd_nckd_exact_when_the_target_logit_dominates() -> None:
    """The -1000 mask of the official code leaks once z / T >> 1000; the gathered softmax does not."""
    s, t = logits(24, n=4).float(), logits(25, n=4).float()
    y = torch.tensor([0, 3, 6, 2])
    big = torch.zeros_like(s)
    big[torch.arange(4), y] = 1e4  # the target logit is 1e4, the others O(1)
    nckd = dkd_loss(s + big, t + big, y, alpha=0.0, beta=1.0, temperature=4.0, reduction="none")
    _, ref, _ = ref_dkd_parts(s.double(), t.double(), y, 4.0)  # NCKD ignores the target logit
    expected = 16.0 * torch.tensor(ref, dtype=torch.float64)
    torch.testing.assert_close(nckd.double(), expected, rtol=1e-5, atol=1e-6)  # float32
    assert bool((nckd > 1e-3).all())


# ------------------------------------------------------------------------------------ RKD


@pytest.mark.parametrize("seed", [0, 1])
def test_rkd_distance_matches_loops(seed: int) -> None:
    s, t = embeddings(seed, n=7, d=4), embeddings(seed + 50, n=7, d=3)
    s[0] = s[0] * 8  # an outlier, so some Huber terms are in the linear part
    ref = ref_rkd_distance(s, t)
    assert float(rkd_distance_loss(s, t)) == pytest.approx(ref, rel=1e-9)
    assert float(rkd_distance_loss(s, t, reduction="sum")) == pytest.approx(ref * 49, rel=1e-9)
    terms = rkd_distance_loss(s, t, reduction="none")
    assert terms.shape == (7, 7)
    assert bool((terms.diagonal() == 0).all())
    assert float(terms.max()) > 0.5  # a linear-branch term


@pytest.mark.parametrize("seed", [0, 1])
def test_rkd_angle_matches_loops(seed: int) -> None:
    s, t = embeddings(seed, n=5, d=4), embeddings(seed + 60, n=5, d=6)
    ref = ref_rkd_angle(s, t)
    assert float(rkd_angle_loss(s, t)) == pytest.approx(ref, rel=1e-9)
    assert float(rkd_angle_loss(s, t, reduction="sum")) == pytest.approx(ref * 125, rel=1e-9)
    terms = rkd_angle_loss(s, t, reduction="none")
    assert terms.shape == (5, 5, 5)
    v, j, k = 2, 0, 4
    expected = huber(ref_cos(s, v, j, k) - ref_cos(t, v, j, k))
    assert float(terms[v, j, k]) == pytest.approx(expected, rel=1e-9)


def test_rkd_distance_zero_for_scaled_rotated_shifted_copy() -> None:
    t = embeddings(2, n=10, d=6)
    for scale in (0.01, 3.0, 1e3):
        s = scale * t @ random_rotation(6, 3) + 5.0
        assert float(rkd_distance_loss(s, t)) == pytest.approx(0.0, abs=1e-12)
    assert float(rkd_distance_loss(embeddings(4, n=10, d=6), t)) > 1e-3


def test_rkd_angle_zero_for_scaled_and_shifted_copy() -> None:
    t = embeddings(5, n=8, d=4)
    for scale, shift in ((0.01, -3.0), (7.0, 2.0), (1e3, 100.0)):
        s = scale * t @ random_rotation(4, 6) + shift * torch.ones(4, dtype=torch.float64)
        assert float(rkd_angle_loss(s, t)) == pytest.approx(0.0, abs=1e-12)
    # the distance loss is not shift-sensitive either, but the angle loss does see a shear
    shear = t.clone()
    shear[:, 0] *= 3
    assert float(rkd_angle_loss(shear, t)) > 1e-4


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 8, 100])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_rkd_angle_chunked_equals_unchunked(chunk: int, reduction: str) -> None:
    s0, t = embeddings(7, n=8, d=5), embeddings(8, n=8, d=3)
    a = s0.clone().requires_grad_(True)
    full = rkd_angle_loss(a, t, reduction=reduction)  # type: ignore[arg-type]
    full.sum().backward()
    b = s0.clone().requires_grad_(True)
    chunked = rkd_angle_loss(b, t, chunk_size=chunk, reduction=reduction)  # type: ignore[arg-type]
    chunked.sum().backward()
    torch.testing.assert_close(chunked, full)
    torch.testing.assert_close(b.grad, a.grad)


def test_rkd_angle_chunks_under_no_grad() -> None:
    s, t = embeddings(9, n=8), embeddings(10, n=8)
    with torch.no_grad():
        torch.testing.assert_close(rkd_angle_loss(s, t, chunk_size=3), rkd_angle_loss(s, t))


def test_rkd_duplicate_student_rows_have_finite_gradients() -> None:
    """Two equal samples: sqrt and normalize at 0 must not give inf / 1e12 gradients."""
    s0 = embeddings(11, n=6).float()
    s0[3] = s0[1]
    t = embeddings(12, n=6).float()
    s = s0.clone().requires_grad_(True)
    loss = rkd_distance_loss(s, t) + rkd_angle_loss(s, t)
    loss.backward()
    assert torch.isfinite(loss)
    assert s.grad is not None
    assert float(s.grad.abs().max()) < 10.0


def test_rkd_large_and_tiny_embeddings_finite() -> None:
    t = embeddings(13, n=8).float()
    for scale in (1e4, 1e-3):
        s = (embeddings(14, n=8).float() * scale).requires_grad_(True)
        loss = RKDLoss(25.0, 50.0)(s, t * scale)
        loss.backward()
        assert torch.isfinite(loss)
        assert s.grad is not None and bool(torch.isfinite(s.grad).all())


def test_rkd_module_is_the_weighted_sum() -> None:
    s, t = embeddings(15), embeddings(16, d=3)
    d, a = rkd_distance_loss(s, t), rkd_angle_loss(s, t)
    torch.testing.assert_close(RKDLoss()(s, t), 1.0 * d + 2.0 * a)
    torch.testing.assert_close(RKDLoss(25.0, 50.0)(s, t), 25.0 * d + 50.0 * a)
    torch.testing.assert_close(RKDLoss(angle_weight=0.0)(s, t), d)
    torch.testing.assert_close(RKDLoss(distance_weight=0.0, chunk_size=2)(s, t), 2.0 * a)
    summed = RKDLoss(reduction="sum")(s, t)
    torch.testing.assert_close(
        summed,
        rkd_distance_loss(s, t, reduction="sum") + 2.0 * rkd_angle_loss(s, t, reduction="sum"),
    )
    # a pair is enough when the angle term is off
    pair_s, pair_t = embeddings(17, n=2), embeddings(18, n=2)
    assert float(RKDLoss(angle_weight=0.0)(pair_s, pair_t)) == pytest.approx(0.0, abs=1e-12)
    m = RKDLoss()
    assert (m.distance_weight, m.angle_weight, m.chunk_size) == (1.0, 2.0, None)
    assert "angle_weight=2.0" in repr(m)


# --------------------------------------------------------------------- shared properties
# The registered losses (kd, dkd, rkd-distance, rkd-angle, at their defaults) get gradcheck, the
# teacher's missing gradient, autocast, saturation, empty batches, dtypes and module == function
# from tests/test_losses_contract.py. Here: the variants the registry does not hold (standardised KD,
# the chunked angle loss and its activation checkpointing, the weighted RKDLoss).


def _kd_std(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return kd_loss(s, t, temperature=2.0, standardize=True)


def _angle_chunked(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return rkd_angle_loss(s, t, chunk_size=3)


def _rkd(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return RKDLoss(25.0, 50.0)(s, t)


VARIANTS = [("kd-std", _kd_std), ("rkd-angle-chunked", _angle_chunked), ("rkd", _rkd)]


def _inputs(name: str, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    if name.startswith("rkd"):
        return embeddings(40, n=6, d=4).to(dtype), embeddings(41, n=6, d=3).to(dtype)
    return logits(40, n=6, c=5).to(dtype), logits(41, n=6, c=5).to(dtype)


@pytest.mark.parametrize(("name", "fn"), VARIANTS, ids=[n for n, _ in VARIANTS])
def test_gradcheck(name: str, fn: object) -> None:
    s, t = _inputs(name)
    s.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: fn(x, t), (s,))  # type: ignore[operator]


@pytest.mark.parametrize(("name", "fn"), VARIANTS, ids=[n for n, _ in VARIANTS])
def test_no_gradient_reaches_the_teacher(name: str, fn: object) -> None:
    s, t = _inputs(name)
    s.requires_grad_(True)
    t.requires_grad_(True)
    loss = fn(s, t)  # type: ignore[operator]
    loss.backward()
    assert t.grad is None
    assert s.grad is not None and float(s.grad.abs().sum()) > 0


@pytest.mark.parametrize(("name", "fn"), VARIANTS, ids=[n for n, _ in VARIANTS])
def test_bf16_autocast_computes_in_float32(name: str, fn: object) -> None:
    s, t = (x.float() for x in _inputs(name))
    ref = fn(s, t)  # type: ignore[operator]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fn(s, t)  # type: ignore[operator]
        out_bf16 = fn(s.bfloat16(), t.bfloat16())  # type: ignore[operator]
    assert out.dtype == torch.float32 and out_bf16.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)  # no bf16 matmul inside
    ref_rounded = fn(s.bfloat16().float(), t.bfloat16().float())  # type: ignore[operator]
    torch.testing.assert_close(out_bf16, ref_rounded, rtol=1e-5, atol=1e-6)


LOGIT_LOSSES = [
    ("kd", lambda s, t: kd_loss(s, t, temperature=2.0)),
    ("kd-std", _kd_std),
    ("dkd", lambda s, t: dkd_loss(s, t, labels(30, n=8, c=10), beta=3.0, temperature=2.0)),
]


@pytest.mark.parametrize(("name", "fn"), LOGIT_LOSSES, ids=[n for n, _ in LOGIT_LOSSES])
def test_saturated_logits_finite(name: str, fn: object) -> None:
    """An identical and an opposite saturated teacher (the contract tests draw an independent
    one; standardised KD, not registered, gets that too)."""
    g = torch.Generator().manual_seed(42)
    s = (torch.randint(0, 2, (8, 10), generator=g).float() * 2 - 1) * 1e4
    t = (torch.randint(0, 2, (8, 10), generator=g).float() * 2 - 1) * 1e4
    pairs = [(s, s.clone()), (s, -s)] + ([(s, t)] if name == "kd-std" else [])
    for a, b in pairs:
        x = a.clone().requires_grad_(True)
        loss = fn(x, b)  # type: ignore[operator]
        loss.backward()
        assert torch.isfinite(loss), name
        assert x.grad is not None and bool(torch.isfinite(x.grad).all()), name


def test_standardized_kd_empty_batch_gives_zero() -> None:
    s = torch.zeros(0, C, requires_grad=True)
    loss = kd_loss(s, torch.zeros(0, C), standardize=True)
    assert float(loss.detach()) == 0.0
    loss.backward()


def test_modules_equal_functions() -> None:
    """Non-default hyper-parameters reach the functions (the contract tests use the defaults)."""
    s, t, y = logits(46), logits(47), labels(48)
    for reduction in ("none", "mean", "sum"):
        for kw in ({"temperature": 2.0}, {"temperature": 3.0, "standardize": True}):
            torch.testing.assert_close(
                KDLoss(reduction=reduction, **kw)(s, t),  # type: ignore[arg-type]
                kd_loss(s, t, reduction=reduction, **kw),  # type: ignore[arg-type]
            )
        kw_d = {"alpha": 0.5, "beta": 2.0, "temperature": 3.0}
        torch.testing.assert_close(
            DKDLoss(reduction=reduction, **kw_d)(s, t, y),  # type: ignore[arg-type]
            dkd_loss(s, t, y, reduction=reduction, **kw_d),  # type: ignore[arg-type]
        )
    e_s, e_t = embeddings(49), embeddings(50)
    torch.testing.assert_close(
        RKDLoss(3.0, 4.0, chunk_size=4)(e_s, e_t),
        3.0 * rkd_distance_loss(e_s, e_t) + 4.0 * rkd_angle_loss(e_s, e_t),
    )
    torch.testing.assert_close(
        RKDAngleLoss(chunk_size=4, reduction="sum")(e_s, e_t),
        rkd_angle_loss(e_s, e_t, chunk_size=4, reduction="sum"),
    )
    assert list(KDLoss().state_dict()) == [] and list(DKDLoss().state_dict()) == []


def test_registered_as_distillation_losses() -> None:
    """In the registry under their own task, not among the ``(logits, target)`` losses."""
    assert list_losses("distillation") == ["kd", "dkd", "rkd-distance", "rkd-angle"]
    assert [LOSSES[n].function for n in list_losses("distillation")] == [
        kd_loss,
        dkd_loss,
        rkd_distance_loss,
        rkd_angle_loss,
    ]
    classification = set(list_losses("single-label")) | set(list_losses("multi-label"))
    assert not classification & set(list_losses("distillation"))


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_temperature(bad: float) -> None:
    s, t, y = logits(51), logits(52), labels(53)
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(s, t, temperature=bad)
    with pytest.raises(ValueError, match="temperature"):
        dkd_loss(s, t, y, temperature=bad)
    with pytest.raises(ValueError, match="temperature"):
        KDLoss(temperature=bad)
    with pytest.raises(ValueError, match="temperature"):
        DKDLoss(temperature=bad)
    with pytest.raises(TypeError, match="temperature"):
        kd_loss(s, t, temperature="4")  # type: ignore[arg-type]


def test_different_class_counts() -> None:
    s, t, y = logits(54), logits(55, c=C + 1), labels(56)
    with pytest.raises(ValueError, match=r"teacher_logits has 8 classes but student_logits has 7"):
        kd_loss(s, t)
    with pytest.raises(ValueError, match="teacher_logits has 8 classes"):
        dkd_loss(s, t, y)
    with pytest.raises(ValueError, match="teacher_logits has 8 classes"):
        KDLoss()(s, t)


def test_too_few_classes_and_bad_standardize() -> None:
    s, t = logits(58), logits(59)
    with pytest.raises(ValueError, match="at least 2 classes"):
        dkd_loss(s[:, :1], t[:, :1], torch.zeros(N, dtype=torch.long))
    with pytest.raises(ValueError, match="standardize=True needs at least 2 classes"):
        kd_loss(s[:, :1], t[:, :1], standardize=True)
    with pytest.raises(TypeError, match="standardize"):
        kd_loss(s, t, standardize=1)  # type: ignore[arg-type]


def test_negative_weights() -> None:
    s, t, y = logits(61), logits(62), labels(63)
    with pytest.raises(ValueError, match="alpha"):
        dkd_loss(s, t, y, alpha=-1.0)
    with pytest.raises(ValueError, match="beta"):
        DKDLoss(beta=-0.5)
    with pytest.raises(ValueError, match=r"distance_weight must be a finite number >= 0, got -1"):
        RKDLoss(distance_weight=-1.0)
    with pytest.raises(ValueError, match="angle_weight"):
        RKDLoss(angle_weight=-2.0)
    with pytest.raises(TypeError, match="angle_weight"):
        RKDLoss(angle_weight=None)  # type: ignore[arg-type]


def test_rkd_module_batch_too_small() -> None:
    one, two = embeddings(64, n=1), embeddings(65, n=2)
    with pytest.raises(ValueError, match="student must hold at least 3 samples"):
        RKDLoss()(two, two)
    with pytest.raises(ValueError, match="student must hold at least 2 samples"):
        RKDLoss(angle_weight=0.0)(one, one)


def test_bad_chunk_size_and_reduction() -> None:
    s = embeddings(68)
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        rkd_angle_loss(s, s, chunk_size=0)
    with pytest.raises(TypeError, match="chunk_size"):
        rkd_angle_loss(s, s, chunk_size=True)
    with pytest.raises(TypeError, match="chunk_size"):
        RKDLoss(chunk_size=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum' for RKDLoss"):
        RKDLoss(reduction="none")


def test_rkd_angle_float32_keeps_skinny_triangles_accurate() -> None:
    """A close pair far from the rest (distance ratio 1e5) at an offset of 1e3: the float32 cosines
    match the float64 inner products of unit difference vectors (a law-of-cosines shortcut in
    float32 misses by 1e-2 here)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 16, generator=g, dtype=torch.float64) * 50 + 1e3
    x[1] = x[0] + 5e-4 * torch.randn(16, generator=g, dtype=torch.float64)
    t = torch.randn(10, 8, generator=g, dtype=torch.float64)
    x32, t32 = x.float(), t.float()  # the reference sees the same (rounded) points
    want = F.smooth_l1_loss(
        _unit_cosines(x32.double()), _unit_cosines(t32.double()), reduction="none", beta=1.0
    )
    got = rkd_angle_loss(x32, t32, reduction="none")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, atol=2e-6, rtol=0)


def _unit_cosines(e: torch.Tensor) -> torch.Tensor:
    """float64 reference: ``[v, j, k]`` inner products of the unit vectors ``e_j - e_v``, ``e_k - e_v``."""
    diff = e.unsqueeze(0) - e.unsqueeze(1)
    norm = diff.norm(dim=2, keepdim=True)
    unit = torch.where(norm > 1e-6, diff / norm.clamp_min(1e-6), torch.zeros(()))
    return unit @ unit.transpose(1, 2)
