"""Triplet mining (``mine_triplets``) against explicit loops, used with torch's triplet loss."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from longtail.losses import mine_triplets


def batch(seed: int, n: int = 10, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, classes, (n,), generator=g), torch.randn(n, 4, generator=g)


@given(seed=st.integers(0, 10_000), n=st.integers(0, 9), classes=st.integers(1, 4))
def test_all_triplets_match_loops(seed: int, n: int, classes: int) -> None:
    y, _ = batch(seed, n, classes)
    a, p, neg = mine_triplets(y)
    expected = [
        (i, j, k)
        for i, j, k in itertools.product(range(n), repeat=3)
        if y[i] == y[j] and i != j and y[k] != y[i]
    ]
    assert list(zip(a.tolist(), p.tolist(), neg.tolist(), strict=True)) == expected
    assert a.dtype == torch.int64


def test_batch_hard_matches_loops() -> None:
    y, e = batch(1, n=12)
    a, p, n = mine_triplets(y, e, strategy="batch_hard")
    rows = []
    for i in range(12):
        pos = [j for j in range(12) if y[j] == y[i] and j != i]
        neg = [k for k in range(12) if y[k] != y[i]]
        if not pos or not neg:
            continue
        dist = [float(torch.linalg.norm(e[i] - e[j])) for j in range(12)]
        rows.append((i, max(pos, key=lambda j: dist[j]), min(neg, key=lambda k: dist[k])))
    assert list(zip(a.tolist(), p.tolist(), n.tolist(), strict=True)) == rows
    assert len(rows) > 0


def test_with_torch_triplet_loss_margin() -> None:
    y = torch.tensor([0, 0, 1, 1])
    e = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [5.1, 0.0]], requires_grad=True)
    a, p, n = mine_triplets(y, e, strategy="batch_hard")
    assert (
        float(F.triplet_margin_loss(e[a], e[p], e[n], margin=0.2).detach()) == 0.0
    )  # well separated
    close = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 0.1], [1.5, 0.0]], requires_grad=True)
    a, p, n = mine_triplets(y, close, strategy="batch_hard")
    loss = F.triplet_margin_loss(close[a], close[p], close[n], margin=0.2)
    loss.backward()
    assert float(loss.detach()) > 0 and close.grad is not None


def test_no_triplet_in_a_single_class_batch() -> None:
    y = torch.zeros(5, dtype=torch.long)
    for strategy in ("all", "batch_hard"):
        a, p, n = mine_triplets(y, torch.randn(5, 3), strategy=strategy)  # type: ignore[arg-type]
        assert a.numel() == p.numel() == n.numel() == 0


def test_bad_input() -> None:
    y, e = batch(2)
    with pytest.raises(ValueError, match="strategy must be one of"):
        mine_triplets(y, e, strategy="hard")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_hard' needs embeddings"):
        mine_triplets(y, strategy="batch_hard")
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        mine_triplets(y.float())
    with pytest.raises(ValueError, match="labels must have 1 dimension"):
        mine_triplets(y[None])
    with pytest.raises(ValueError, match="embeddings has 9 rows but labels has 10"):
        mine_triplets(y, e[:9], strategy="batch_hard")
    with pytest.raises(TypeError, match="embeddings"):
        mine_triplets(y, e.long(), strategy="batch_hard")
