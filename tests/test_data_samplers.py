"""Tests of longtail.data.samplers: frequencies, determinism, epochs and sharding."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from scipy.stats import chi2
from torch.utils.data import DataLoader, TensorDataset

from longtail.data import (
    ClassAwareSampler,
    ClassBalancedSampler,
    InstanceBalancedSampler,
    ProgressivelyBalancedSampler,
    SquareRootSampler,
)

COUNTS = [1000, 300, 100, 30, 10]


def _labels(counts: list[int] = COUNTS, seed: int = 0) -> torch.Tensor:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)]).long()
    return labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(seed))]


def _chi_square_ok(observed: np.ndarray, expected_p: np.ndarray, alpha: float = 1e-4) -> bool:
    total = observed.sum()
    mask = expected_p > 0
    expected = total * expected_p[mask]
    stat = float(((observed[mask] - expected) ** 2 / expected).sum())
    assert observed[~mask].sum() == 0
    return stat < chi2.ppf(1 - alpha, df=int(mask.sum()) - 1)


def _make(kind: str, labels: torch.Tensor, **kwargs: object) -> ClassAwareSampler:
    if kind == "instance":
        return InstanceBalancedSampler(labels, **kwargs)  # type: ignore[arg-type]
    if kind == "instance-replacement":
        return InstanceBalancedSampler(labels, replacement=True, **kwargs)  # type: ignore[arg-type]
    if kind == "class":
        return ClassBalancedSampler(labels, **kwargs)  # type: ignore[arg-type]
    if kind == "sqrt":
        return SquareRootSampler(labels, **kwargs)  # type: ignore[arg-type]
    if kind == "progressive":
        return ProgressivelyBalancedSampler(labels, total_epochs=4, **kwargs)  # type: ignore[arg-type]
    return ClassAwareSampler(labels, q=0.25, **kwargs)  # type: ignore[arg-type]


KINDS = ["instance", "instance-replacement", "class", "sqrt", "progressive", "q0.25"]


def _expected_p(q: float) -> np.ndarray:
    w = np.asarray(COUNTS, dtype=np.float64) ** q
    return w / w.sum()


@pytest.mark.parametrize(
    ("kind", "q"), [("instance-replacement", 1.0), ("class", 0.0), ("sqrt", 0.5), ("q0.25", 0.25)]
)
def test_class_frequencies_match(kind: str, q: float) -> None:
    labels = _labels()
    sampler = _make(kind, labels, num_samples=40000, seed=3)
    np.testing.assert_allclose(sampler.class_probabilities().numpy(), _expected_p(q), rtol=1e-12)
    drawn = labels[torch.tensor(list(sampler))]
    observed = np.bincount(drawn.numpy(), minlength=len(COUNTS)).astype(np.float64)
    assert _chi_square_ok(observed, _expected_p(q))
    # a wrong distribution is detected by the same check (the test can fail)
    assert not _chi_square_ok(observed, _expected_p(q + 0.3))


def test_class_balanced_uniform_within_class() -> None:
    labels = _labels()
    sampler = ClassBalancedSampler(labels, num_samples=20000, seed=1)
    drawn = torch.tensor(list(sampler))
    tail = torch.nonzero(labels == 4).flatten().tolist()
    counts = Counter(i for i in drawn.tolist() if i in set(tail))
    observed = np.array([counts[i] for i in tail], dtype=np.float64)
    assert _chi_square_ok(observed, np.full(len(tail), 1 / len(tail)))
    assert abs(observed.sum() / 20000 - 0.2) < 0.02


def test_instance_balanced_is_a_permutation() -> None:
    labels = _labels()
    sampler = InstanceBalancedSampler(labels, seed=0)
    assert len(sampler) == labels.numel()
    assert sorted(sampler) == list(range(labels.numel()))
    longer = InstanceBalancedSampler(labels, num_samples=2 * labels.numel() + 5)
    assert Counter(Counter(list(longer)).values()) == Counter({2: labels.numel() - 5, 3: 5})


def test_progressive_probabilities_over_epochs() -> None:
    labels = _labels()
    sampler = ProgressivelyBalancedSampler(labels, total_epochs=4, num_samples=30000, seed=2)
    ib, cb = _expected_p(1.0), _expected_p(0.0)
    for epoch in range(6):
        sampler.set_epoch(epoch)
        t = min(epoch, 4) / 4
        np.testing.assert_allclose(
            sampler.class_probabilities().numpy(), (1 - t) * ib + t * cb, rtol=1e-12
        )
    sampler.set_epoch(2)
    drawn = labels[torch.tensor(list(sampler))]
    observed = np.bincount(drawn.numpy(), minlength=5).astype(np.float64)
    assert _chi_square_ok(observed, 0.5 * ib + 0.5 * cb)


@pytest.mark.parametrize("kind", KINDS)
def test_determinism_and_epochs(kind: str) -> None:
    labels = _labels()
    a, b = _make(kind, labels, seed=11), _make(kind, labels, seed=11)
    assert list(a) == list(b)
    assert list(a) == list(a)  # iterating again gives the same epoch
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(_make(kind, labels, seed=12)) != first
    state = torch.get_rng_state()
    list(a)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("num_samples", "replicas", "drop_last"),
    [(1440, 3, False), (1000, 3, False), (1000, 3, True), (7, 4, False)],
)
def test_shards_partition_the_global_draw(
    kind: str, num_samples: int, replicas: int, drop_last: bool
) -> None:
    labels = _labels()
    shards = [
        _make(
            kind,
            labels,
            num_samples=num_samples,
            seed=5,
            num_replicas=replicas,
            rank=r,
            drop_last=drop_last,
        )
        for r in range(replicas)
    ]
    for s in shards:
        s.set_epoch(3)
    lengths = {len(s) for s in shards}
    assert len(lengths) == 1
    per_rank = lengths.pop()
    assert per_rank == (num_samples // replicas if drop_last else -(-num_samples // replicas))
    global_draw = shards[0].global_indices()
    assert all(torch.equal(global_draw, s.global_indices()) for s in shards)
    lists = [list(s) for s in shards]
    assert all(len(x) == per_rank for x in lists)
    # rank r holds positions r, r + R, ...: disjoint positions whose union is the global draw
    rebuilt = [lists[i % replicas][i // replicas] for i in range(per_rank * replicas)]
    assert rebuilt == global_draw.tolist()
    if replicas * per_rank == num_samples and kind == "instance" and num_samples <= labels.numel():
        assert len(set(rebuilt)) == num_samples  # no index on two ranks


def test_instance_shards_cover_dataset_once() -> None:
    labels = _labels()  # 1440 samples
    shards = [InstanceBalancedSampler(labels, num_replicas=4, rank=r, seed=9) for r in range(4)]
    union = [i for s in shards for i in s]
    assert sorted(union) == list(range(labels.numel()))


def test_defaults_from_torch_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    labels = _labels()
    assert ClassBalancedSampler(labels).num_replicas == 1
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda *a, **k: 4)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda *a, **k: 2)
    sampler = ClassBalancedSampler(labels, num_samples=100)
    assert (sampler.num_replicas, sampler.rank, len(sampler)) == (4, 2, 25)
    assert list(sampler) == sampler.global_indices()[2::4].tolist()


def test_works_with_dataloader() -> None:
    labels = _labels([6, 3, 1])
    dataset = TensorDataset(torch.arange(10), labels)
    sampler = SquareRootSampler(labels, num_samples=12, seed=0)
    batches = list(DataLoader(dataset, batch_size=4, sampler=sampler))
    assert len(batches) == 3
    got = torch.cat([b[0] for b in batches])
    assert got.tolist() == list(sampler)
    assert torch.equal(torch.cat([b[1] for b in batches]), labels[got])


def test_missing_classes_get_zero_probability() -> None:
    labels = torch.tensor([0, 0, 2, 2, 2, 5])
    sampler = ClassBalancedSampler(labels, num_samples=600, seed=0)
    p = sampler.class_probabilities()
    assert p.tolist() == [1 / 3, 0, 1 / 3, 0, 0, 1 / 3]
    assert set(labels[torch.tensor(list(sampler))].tolist()) == {0, 2, 5}
    prog = ProgressivelyBalancedSampler(labels, total_epochs=1)
    prog.set_epoch(1)
    assert prog.class_probabilities()[[1, 3, 4]].tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": torch.zeros(2, 2, dtype=torch.long)}, "labels"),
        ({"labels": torch.tensor([0.0, 1.0])}, "labels"),
        ({"labels": torch.tensor([], dtype=torch.long)}, "labels"),
        ({"labels": torch.tensor([0, -1])}, "labels"),
        ({"q": float("nan")}, "q"),
        ({"num_samples": 0}, "num_samples"),
        ({"num_replicas": 0, "rank": 0}, "num_replicas"),
        ({"num_replicas": 2, "rank": 2}, "rank"),
        ({"num_replicas": 2, "rank": -1}, "rank"),
        ({"num_samples": 1, "num_replicas": 2, "rank": 0, "drop_last": True}, "num_samples"),
        ({"seed": "0"}, "seed"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"labels": torch.tensor([0, 1, 1])}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ClassAwareSampler(**args)  # type: ignore[arg-type]


def test_bad_total_epochs_and_epoch() -> None:
    with pytest.raises(ValueError, match="total_epochs"):
        ProgressivelyBalancedSampler(torch.tensor([0, 1]), total_epochs=0)
    with pytest.raises(ValueError, match="epoch"):
        ClassBalancedSampler(torch.tensor([0, 1])).set_epoch(-1)
