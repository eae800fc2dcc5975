"""Recall@K against a brute-force NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from longtail.metrics import RecallAtK, recall_at_k
from longtail.metrics import retrieval as retrieval_mod


def brute_force(
    emb: np.ndarray, labels: np.ndarray, ks: tuple[int, ...], distance: str
) -> dict[int, float]:
    n = len(emb)
    if distance == "cosine":
        emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    hits = dict.fromkeys(ks, 0)
    for i in range(n):
        d = []
        for j in range(n):
            if j == i:
                continue
            if distance == "cosine":
                d.append((1.0 - float(emb[i] @ emb[j]), j))
            else:
                d.append((float(np.sqrt(((emb[i] - emb[j]) ** 2).sum())), j))
        d.sort()  # ties by index
        for k in ks:
            if any(labels[j] == labels[i] for _, j in d[:k]):
                hits[k] += 1
    return {k: hits[k] / n for k in ks}


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("seed", range(3))
def test_against_brute_force(distance: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(60, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 6, (60,), generator=g)
    ks = (1, 2, 4, 8, 59)
    got = recall_at_k(emb, labels, ks, distance=distance)  # type: ignore[arg-type]
    ref = brute_force(emb.numpy(), labels.numpy(), ks, distance)
    assert got == pytest.approx(ref)
    assert got[59] == pytest.approx(
        np.mean([np.sum(labels.numpy() == v) > 1 for v in labels.numpy()])
    )


def test_self_is_excluded() -> None:
    # every sample has a unique label: with self included recall@1 would be 1
    emb = torch.randn(10, 3)
    assert recall_at_k(emb, torch.arange(10), ks=(1, 9)) == {1: 0.0, 9: 0.0}


def test_duplicates_and_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrieval_mod, "_CHUNK", 7)  # several chunks, last one partial
    g = torch.Generator().manual_seed(0)
    emb = torch.randint(0, 3, (40, 2), generator=g).double()  # many identical embeddings (ties)
    labels = torch.randint(0, 4, (40,), generator=g)
    for distance in ("euclidean", "cosine"):
        emb_d = emb + 1.0 if distance == "cosine" else emb  # no zero vectors for cosine
        got = recall_at_k(emb_d, labels, (1, 3, 5), distance=distance)  # type: ignore[arg-type]
        assert got == pytest.approx(brute_force(emb_d.numpy(), labels.numpy(), (1, 3, 5), distance))


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_property_accumulated_equals_at_once(data: st.DataObject) -> None:
    n = data.draw(st.integers(3, 25))
    seed = data.draw(st.integers(0, 10_000))
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, 3, generator=g)
    labels = torch.randint(0, 3, (n,), generator=g)
    split = data.draw(st.integers(0, n))
    m = RecallAtK(ks=(1, 2))
    m.update(emb[:split], labels[:split])
    m.update(emb[split:], labels[split:])
    once = recall_at_k(emb, labels, ks=(1, 2))
    assert m.compute() == once
    assert once == pytest.approx(
        brute_force(emb.double().numpy(), labels.numpy(), (1, 2), "euclidean")
    )
    assert once[1] <= once[2]


def test_bad_k_too_large() -> None:
    with pytest.raises(ValueError, match="ks"):
        recall_at_k(torch.randn(4, 2), torch.arange(4), ks=(4,))


def test_bad_k_nonpositive() -> None:
    with pytest.raises(ValueError, match="ks"):
        recall_at_k(torch.randn(4, 2), torch.arange(4), ks=(0, 1))


def test_bad_embeddings_ndim() -> None:
    with pytest.raises(ValueError, match="embeddings"):
        recall_at_k(torch.randn(4), torch.arange(4))


def test_bad_labels_length() -> None:
    with pytest.raises(ValueError, match="labels"):
        recall_at_k(torch.randn(4, 2), torch.arange(5), ks=(1,))


def test_bad_distance() -> None:
    with pytest.raises(ValueError, match="distance"):
        RecallAtK(distance="manhattan")  # type: ignore[arg-type]


def test_bad_embedding_dim_change() -> None:
    m = RecallAtK()
    m.update(torch.randn(3, 2), torch.arange(3))
    with pytest.raises(ValueError, match="embeddings"):
        m.update(torch.randn(3, 4), torch.arange(3))


def test_bad_infinite_embeddings() -> None:
    emb = torch.tensor([[float("inf")], [0.0], [1.0]])
    labels = torch.tensor([0, 0, 1])
    with pytest.raises(ValueError, match="embeddings contains inf"):
        recall_at_k(emb, labels, ks=(1,))
    with pytest.raises(ValueError, match="embeddings contains inf"):
        RecallAtK(ks=(1,)).update(emb, labels)
