"""Tests of longtail.data.long_tailed: CIFAR-LT counts, step profile, determinism, validation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from data_fixtures import require
from longtail.data import class_counts, load_idx, long_tailed_counts, make_long_tailed

CIFAR10_LT_100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def _balanced(num_classes: int, per_class: int, seed: int = 0) -> torch.Tensor:
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(seed))]


def test_cifar10_lt_counts() -> None:
    assert long_tailed_counts(5000, 10, 100) == CIFAR10_LT_100
    assert sum(long_tailed_counts(5000, 10, 100)) == 12406
    # CIFAR-100-LT at IF 100 has 10,847 training images (Cao et al. 2019)
    assert sum(long_tailed_counts(500, 100, 100)) == 10847
    labels = _balanced(10, 5000)
    idx = make_long_tailed(labels, 100)
    assert class_counts(labels[idx]) == CIFAR10_LT_100


def test_counts_match_reference_formula() -> None:
    # the LDAM / CB reference code: img_max * (1 / IF) ** (c / (C - 1))
    for n_max, c, factor in [(5000, 10, 10), (500, 100, 50), (6000, 10, 200), (1300, 7, 3.5)]:
        ref = [int(n_max * (1.0 / factor) ** (k / (c - 1.0))) for k in range(c)]
        assert long_tailed_counts(n_max, c, factor) == ref


def test_step_profile() -> None:
    assert long_tailed_counts(5000, 10, 100, "step") == [5000] * 5 + [50] * 5
    assert long_tailed_counts(100, 5, 10, profile="step") == [100] * 3 + [10] * 2
    labels = _balanced(4, 30)
    idx = make_long_tailed(labels, 3, profile="step")
    assert class_counts(labels[idx]) == [30, 30, 10, 10]


def test_edge_cases() -> None:
    assert long_tailed_counts(7, 1, 50) == [7]
    assert long_tailed_counts(7, 4, 1) == [7, 7, 7, 7]
    labels = _balanced(3, 5)
    assert make_long_tailed(labels, 1).tolist() == list(range(15))


def test_subset_properties_and_determinism() -> None:
    labels = _balanced(5, 40, seed=3)
    a = make_long_tailed(labels, 10, seed=7)
    b = make_long_tailed(labels, 10, seed=7)
    c = make_long_tailed(labels, 10, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.dtype == torch.int64
    assert torch.equal(a, torch.sort(a).values) and a.unique().numel() == a.numel()
    assert class_counts(labels[a]) == class_counts(labels[c]) == long_tailed_counts(40, 5, 10)
    state = torch.get_rng_state()
    make_long_tailed(labels, 10, seed=1)
    assert torch.equal(state, torch.get_rng_state())  # global RNG untouched


def test_n_max_is_smallest_class_and_max_per_class() -> None:
    labels = torch.cat([torch.zeros(50), torch.ones(30), torch.full((40,), 2)]).long()
    assert class_counts(labels[make_long_tailed(labels, 4)]) == long_tailed_counts(30, 3, 4)
    assert class_counts(labels[make_long_tailed(labels, 4, max_per_class=20)]) == [20, 10, 5]
    with pytest.raises(
        ValueError, match="max_per_class: 40 needs 40 samples of class 0, which has only"
    ):
        make_long_tailed(torch.tensor([0] * 30 + [1] * 60), 2, max_per_class=40)
    # a tail class may be small as long as its own count fits
    with pytest.raises(ValueError, match="needs 35 samples of class 1, which has only 30"):
        make_long_tailed(labels, 2, max_per_class=50)
    idx = make_long_tailed(labels, 2, max_per_class=50, class_order=[0, 2, 1])
    assert class_counts(labels[idx]) == [50, 25, 35]


def test_class_order() -> None:
    labels = _balanced(4, 100)
    idx = make_long_tailed(labels, 10, class_order=[2, 0, 3, 1])
    counts = long_tailed_counts(100, 4, 10)
    got = class_counts(labels[idx])
    assert (
        got[2] == counts[0] and got[0] == counts[1] and got[3] == counts[2] and got[1] == counts[3]
    )
    r1 = make_long_tailed(labels, 10, class_order="random", seed=5)
    r2 = make_long_tailed(labels, 10, class_order="random", seed=5)
    assert torch.equal(r1, r2)
    assert sorted(class_counts(labels[r1]), reverse=True) == counts
    assert (
        make_long_tailed(labels, 10, class_order=torch.arange(4)).tolist()
        == make_long_tailed(labels, 10).tolist()
    )


def test_fashion_mnist_long_tailed() -> None:
    labels = load_idx(require("fashion-mnist"), "test").targets
    idx = make_long_tailed(labels, 100, seed=0)
    assert class_counts(labels[idx]) == [int(1000 * 100 ** (-c / 9)) for c in range(10)]


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 30), min_size=1, max_size=6),
    factor=st.floats(1.0, 50.0),
    profile=st.sampled_from(["exp", "step"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_counts(sizes: list[int], factor: float, profile: str, seed: int) -> None:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)]).long()
    idx = make_long_tailed(labels, factor, profile=profile, seed=seed)  # type: ignore[arg-type]
    expected = long_tailed_counts(min(sizes), len(sizes), factor, profile)  # type: ignore[arg-type]
    assert class_counts(labels[idx], num_classes=len(sizes)) == expected
    assert expected == sorted(expected, reverse=True) and expected[0] == min(sizes)
    if len(sizes) > 1 and profile == "exp":
        assert abs(expected[-1] - min(sizes) / factor) <= 1 + 1e-9


def test_class_counts() -> None:
    assert class_counts(torch.tensor([0, 2, 2, 5])) == [1, 0, 2, 0, 0, 1]
    assert class_counts([1, 1], num_classes=4) == [0, 2, 0, 0]
    assert class_counts(torch.tensor([], dtype=torch.long)) == []
    with pytest.raises(ValueError, match="num_classes"):
        class_counts(torch.tensor([0, 3]), num_classes=3)
    with pytest.raises(ValueError, match="labels"):
        class_counts(torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"imbalance_factor": 0.5}, "imbalance_factor"),
        ({"imbalance_factor": math.nan}, "imbalance_factor"),
        ({"imbalance_factor": math.inf}, "imbalance_factor"),
        ({"imbalance_factor": 10, "profile": "linear"}, "profile"),
        ({"imbalance_factor": 10, "max_per_class": 0}, "max_per_class"),
        ({"imbalance_factor": 10, "class_order": [0, 1, 1]}, "class_order"),
        ({"imbalance_factor": 10, "class_order": [0, 1]}, "class_order"),
        ({"imbalance_factor": 10, "class_order": "shuffle"}, "class_order"),
        ({"imbalance_factor": 10, "seed": 1.5}, "seed"),
    ],
)
def test_make_long_tailed_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    labels = _balanced(3, 10)
    with pytest.raises(ValueError, match=message):
        make_long_tailed(labels, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "labels",
    [
        torch.zeros(2, 3, dtype=torch.long),
        torch.tensor([0.0, 1.0]),
        torch.tensor([0, -1]),
        torch.tensor([], dtype=torch.long),
        torch.tensor([0, 2]),
    ],
)
def test_make_long_tailed_bad_labels(labels: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="labels"):
        make_long_tailed(labels, 10)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 3, 10), "n_max"),
        ((5, 0, 10), "num_classes"),
        ((5, 3, 0.9), "imbalance_factor"),
        ((5, 3, 10, "zipf"), "profile"),
    ],
)
def test_long_tailed_counts_bad_arguments(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        long_tailed_counts(*args)  # type: ignore[arg-type]
