"""Tests of longtail.data.RepeatFactorSampler: factors, expected repeats, determinism, sharding."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch

import longtail.data.samplers
from longtail.data import RepeatFactorSampler


def _targets(seed: int = 0, n: int = 300, num_labels: int = 8) -> np.ndarray:
    """Random {1, 0, -1} targets with label frequencies from ~50% down to ~0.3%, label 5 with no
    positive (only 0 / -1), ~10% unknown entries and some rows with no positive at all."""
    rng = np.random.default_rng(seed)
    rates = np.array([0.5, 0.2, 0.08, 0.03, 0.01, 0.0, 0.003, 0.3])[:num_labels]
    y = (rng.random((n, num_labels)) < rates).astype(np.float64)
    y[rng.random((n, num_labels)) < 0.1] = -1.0
    y[0, 6] = 1.0  # the rarest label has at least one positive
    y[1, :] = 0.0  # a row without positives
    y[2, :] = -1.0  # a row of unknowns only
    return y


def _reference(y: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """LVIS repeat factors computed independently with plain numpy loops."""
    n, num_labels = y.shape
    label_factor = np.full(num_labels, np.nan)
    for label in range(num_labels):
        positives = sum(1 for i in range(n) if y[i, label] == 1)
        if positives:
            label_factor[label] = max(1.0, math.sqrt(t / (positives / n)))
    example_factor = np.ones(n)
    for i in range(n):
        factors = [label_factor[label] for label in range(num_labels) if y[i, label] == 1]
        if factors:
            example_factor[i] = max(factors)
    return label_factor, example_factor


@pytest.mark.parametrize("threshold", [0.001, 0.02, 0.1, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, "numpy"])
def test_factors_match_reference(threshold: float, dtype: object) -> None:
    y = _targets()
    label_ref, example_ref = _reference(y, threshold)
    targets = y if dtype == "numpy" else torch.as_tensor(y).to(dtype)  # type: ignore[call-overload]
    sampler = RepeatFactorSampler(targets, threshold=threshold)
    assert sampler.repeat_factors.dtype == torch.float64
    assert sampler.repeat_factors.shape == (300,)
    np.testing.assert_allclose(sampler.label_factors.numpy(), label_ref, rtol=1e-12)
    assert math.isnan(float(sampler.label_factors[5]))  # no positive: no factor
    np.testing.assert_allclose(sampler.repeat_factors.numpy(), example_ref, rtol=1e-12)
    assert sampler.repeat_factors[1] == 1.0 and sampler.repeat_factors[2] == 1.0
    assert sampler.num_samples_total == round(example_ref.sum())
    assert len(sampler) == round(example_ref.sum())


def test_bool_targets() -> None:
    y = torch.tensor([[True, False], [True, False], [True, False], [False, True]])
    sampler = RepeatFactorSampler(y, threshold=1.0)
    assert sampler.label_factors.tolist() == pytest.approx([math.sqrt(4 / 3), 2.0])
    assert sampler.repeat_factors.tolist() == pytest.approx([math.sqrt(4 / 3)] * 3 + [2.0])


def test_mean_count_over_epochs_converges_to_factor() -> None:
    y = _targets(seed=1, n=200)
    sampler = RepeatFactorSampler(torch.as_tensor(y), threshold=0.3, seed=3)
    r = sampler.repeat_factors.numpy()
    assert r.max() > 3 and (r == 1).sum() > 20 and (r % 1 > 0.1).sum() > 20
    epochs = 400
    counts = np.zeros(len(r))
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        drawn = list(sampler)
        assert len(drawn) == len(sampler) == round(r.sum())
        counts += np.bincount(drawn, minlength=len(r))
    mean = counts / epochs
    # per-epoch count variance <= 1/4 (stochastic rounding) plus the truncation noise
    np.testing.assert_allclose(mean, r, atol=0.15)
    assert abs(mean.mean() - r.mean()) < 0.01
    assert np.corrcoef(mean, r)[0, 1] > 0.98


def test_padding_and_truncation_keep_proportions() -> None:
    y = _targets(seed=2, n=100)
    for num_samples in (37, 1000):
        sampler = RepeatFactorSampler(torch.as_tensor(y), threshold=0.2, num_samples=num_samples)
        r = sampler.repeat_factors.numpy()
        counts = np.zeros(len(r))
        for epoch in range(200):
            sampler.set_epoch(epoch)
            drawn = sampler.global_indices()
            assert drawn.dtype == torch.int64 and drawn.numel() == num_samples
            counts += np.bincount(drawn.numpy(), minlength=len(r))
        expected = r * num_samples * 200 / r.sum()
        assert np.corrcoef(counts, expected)[0, 1] > 0.97
        assert abs(counts.sum() - expected.sum()) < 1e-6


def test_deterministic_per_seed_and_epoch() -> None:
    y = torch.as_tensor(_targets())
    a = RepeatFactorSampler(y, threshold=0.05, seed=7)
    b = RepeatFactorSampler(y, threshold=0.05, seed=7)
    torch.manual_seed(0)
    first = list(a)
    torch.manual_seed(1)  # the global RNG plays no part
    assert list(b) == first == list(a)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b) != first
    a.set_epoch(4)
    assert list(a) != list(b)
    a.set_epoch(0)
    assert list(a) == first
    other_seed = RepeatFactorSampler(y, threshold=0.05, seed=8)
    assert list(other_seed) != first


@pytest.mark.parametrize("drop_last", [False, True])
def test_sharding_union_is_global_draw(drop_last: bool) -> None:
    y = torch.as_tensor(_targets(n=101))
    for world in range(1, 5):
        shards = []
        for rank in range(world):
            sampler = RepeatFactorSampler(
                y, threshold=0.05, seed=1, num_replicas=world, rank=rank, drop_last=drop_last
            )
            sampler.set_epoch(2)
            shards.append(list(sampler))
            assert len(shards[-1]) == len(sampler)
        total = sampler.num_samples_total
        per_rank = total // world if drop_last else math.ceil(total / world)
        assert {len(s) for s in shards} == {per_rank}
        interleaved = [shards[i % world][i // world] for i in range(world * per_rank)]
        assert interleaved == sampler.global_indices().tolist()
        assert sampler.total_size == world * per_rank


def test_no_rare_label_gives_a_permutation() -> None:
    y = _targets(n=120)
    positives = (y == 1).sum(0)
    threshold = float(positives[positives > 0].min() / len(y))  # = min f_l: nothing is rare
    sampler = RepeatFactorSampler(torch.as_tensor(y), threshold=threshold, num_samples=len(y))
    assert torch.equal(sampler.repeat_factors, torch.ones(len(y), dtype=torch.float64))
    draws = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        draws.append(list(sampler))
        assert sorted(draws[-1]) == list(range(len(y)))
    assert draws[0] != draws[1]


@pytest.mark.parametrize("threshold", [0, 0.0, -0.1, 1.5, math.nan, math.inf, True, "0.1", None])
def test_threshold_validation(threshold: object) -> None:
    with pytest.raises(ValueError, match=r"threshold: expected a number in \(0, 1\]"):
        RepeatFactorSampler(torch.ones(3, 2), threshold=threshold)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("targets", "error", "message"),
    [
        (torch.ones(5), ValueError, r"targets: expected a 2-D \(N, L\) .* got shape \(5,\)"),
        (torch.ones(2, 3, 4), ValueError, r"targets: expected a 2-D .* got shape \(2, 3, 4\)"),
        (torch.ones(0, 3), ValueError, r"targets: empty, shape \(0, 3\)"),
        (torch.ones(3, 0), ValueError, r"targets: empty, shape \(3, 0\)"),
        (
            torch.tensor([[1.0, 0.0], [0.0, 0.5]]),
            ValueError,
            r"targets: entries must be 1 .* got 0\.5 at \[1, 1\]",
        ),
        (torch.tensor([[1, 2], [0, 0]]), ValueError, r"got 2\.0 at \[0, 1\]"),
        (torch.tensor([[1.0, math.nan]]), ValueError, r"got nan at \[0, 1\]"),
        (torch.ones(2, 2, dtype=torch.complex64), TypeError, r"targets: expected a real"),
        ([["a", "b"]], TypeError, r"targets: expected a \(N, L\) tensor"),
    ],
)
def test_bad_targets(targets: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        RepeatFactorSampler(targets)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_samples": 0}, r"num_samples: expected an int >= 1, got 0"),
        ({"num_samples": 2.5}, r"num_samples: expected an int >= 1, got 2\.5"),
        ({"seed": "1"}, r"seed: expected an int, got '1'"),
        ({"num_replicas": 0, "rank": 0}, r"num_replicas: expected an int >= 1, got 0"),
        ({"num_replicas": 2, "rank": 2}, r"rank: expected an int in \[0, 2\), got 2"),
        (
            {"num_samples": 1, "num_replicas": 2, "rank": 0, "drop_last": True},
            r"num_samples: 1 with drop_last leaves nothing for 2 replicas",
        ),
    ],
)
def test_other_argument_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RepeatFactorSampler(torch.ones(3, 2), **kwargs)  # type: ignore[arg-type]


def test_set_epoch_validation() -> None:
    sampler = RepeatFactorSampler(torch.ones(3, 2))
    with pytest.raises(ValueError, match=r"epoch: expected an int >= 0, got -1"):
        sampler.set_epoch(-1)


def test_works_with_a_dataloader() -> None:
    from torch.utils.data import DataLoader, TensorDataset

    y = torch.as_tensor(_targets(n=50), dtype=torch.float32)
    sampler = RepeatFactorSampler(y, threshold=0.3)
    loader = DataLoader(TensorDataset(torch.arange(50), y), batch_size=8, sampler=sampler)
    seen = torch.cat([batch[0] for batch in loader])
    assert seen.tolist() == list(sampler)


def test_docstring_example() -> None:
    result = doctest.testmod(longtail.data.samplers, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 3
