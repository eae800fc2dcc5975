"""Retrieval metric: Recall@K as used in deep metric learning (e.g. RKD, Park et al. CVPR 2019).

Every sample is a query against all *other* samples (its own entry is excluded). With ``N_k(i)`` the k
nearest other samples of query i::

    Recall@k = (1/N) sum_i [ exists j in N_k(i) : label_j == label_i ]

(a hit if *any* of the k nearest neighbours shares the query's label). Queries whose label occurs only
once still count in the denominator (they can never hit). Distances are Euclidean (default) or cosine
(``1 - cos``), computed in float64; neighbours at equal distance are ordered by index (stable sort), so
the result is deterministic. Embeddings must be finite (NaN / inf raise ``ValueError``: distances to an
infinite point are NaN or inf and would make the ranking meaningless).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from longtail.metrics._base import Metric
from longtail.metrics._checks import check_finite, check_float_matrix, check_labels

__all__ = ["RecallAtK", "recall_at_k"]

Distance = Literal["euclidean", "cosine"]
_CHUNK = 1024
_FINITE_WHY = "distances to an infinite point are undefined"


def _check_ks(ks: object) -> tuple[int, ...]:
    if isinstance(ks, int) and not isinstance(ks, bool):
        ks = (ks,)
    if not isinstance(ks, Sequence) or len(ks) == 0:
        raise ValueError(f"ks must be a non-empty sequence of positive ints, got {ks!r}")
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"ks must contain positive ints, got {k!r}")
        out.append(k)
    return tuple(out)


def _check_distance(distance: object) -> Distance:
    if distance not in ("euclidean", "cosine"):
        raise ValueError(f"distance must be 'euclidean' or 'cosine', got {distance!r}")
    return distance


def _recall(
    emb: Tensor, labels: Tensor, ks: tuple[int, ...], distance: Distance
) -> dict[int, float]:
    n = emb.shape[0]
    k_max = max(ks)
    if n < 2 or k_max > n - 1:
        raise ValueError(f"ks must be <= N - 1 = {n - 1} (the number of other samples), got {ks}")
    x = emb.detach().to(torch.float64)
    if distance == "cosine":
        x = torch.nn.functional.normalize(x, dim=1)
    hits = torch.zeros(len(ks), dtype=torch.int64)
    lab = labels.to(x.device)
    for start in range(0, n, _CHUNK):
        q = x[start : start + _CHUNK]
        if distance == "cosine":
            d = 1.0 - q @ x.T
        else:
            d = torch.cdist(q, x, compute_mode="donot_use_mm_for_euclid_dist")
        rows = torch.arange(q.shape[0], device=x.device)
        d[rows, rows + start] = torch.inf  # exclude the query itself
        nn_idx = torch.sort(d, dim=1, stable=True).indices[:, :k_max]
        same = lab[nn_idx] == lab[start : start + q.shape[0], None]
        first_hit = torch.where(same.any(dim=1), same.to(torch.int64).argmax(dim=1), k_max)
        for i, k in enumerate(ks):
            hits[i] += int((first_hit < k).sum())
    return {k: float(hits[i]) / n for i, k in enumerate(ks)}


def recall_at_k(
    embeddings: Tensor,
    labels: Tensor,
    ks: Sequence[int] = (1, 2, 4, 8),
    *,
    distance: Distance = "euclidean",
) -> dict[int, float]:
    """Recall@k for every k in ``ks`` (see the module docstring).

    Args:
        embeddings: (N, D) float.
        labels: (N,) int class labels (any non-negative or negative integers; only equality matters).
        ks: the k values, each in ``[1, N - 1]`` (default (1, 2, 4, 8)).
        distance: ``"euclidean"`` (default) or ``"cosine"``.

    Returns:
        ``{k: recall}`` with values in [0, 1].

    Example:
        >>> from longtail.metrics import recall_at_k
        >>> embeddings = torch.tensor([[0.0, 0.0], [0.1, 0.0], [1.0, 1.0], [1.1, 1.0], [0.2, 0.0]])
        >>> labels = torch.tensor([0, 0, 1, 1, 1])
        >>> recall_at_k(embeddings, labels, ks=(1, 2))  # the last sample's nearest is of class 0
        {1: 0.8, 2: 0.8}
    """
    kk = _check_ks(ks)
    dist = _check_distance(distance)
    emb = check_finite("embeddings", check_float_matrix("embeddings", embeddings), _FINITE_WHY)
    lab = check_labels("labels", labels, emb.shape[0], None)
    return _recall(emb, lab, kk, dist)


class RecallAtK(Metric):
    """Accumulated Recall@K. States: embeddings (flattened) and labels of every sample (cat states).

    torchmetrics' ``RetrievalRecall`` ranks given documents per query id; this metric ranks every
    sample against all the others by distance, which torchmetrics has no metric for.

    Args:
        ks: the k values (default (1, 2, 4, 8)).
        distance: ``"euclidean"`` (default) or ``"cosine"``.

    Example:
        >>> from longtail.metrics import RecallAtK
        >>> metric = RecallAtK(ks=(1, 2))
        >>> embeddings = torch.tensor([[0.0, 0.0], [0.1, 0.0], [1.0, 1.0], [1.1, 1.0], [0.2, 0.0]])
        >>> labels = torch.tensor([0, 0, 1, 1, 1])
        >>> metric.update(embeddings[:3], labels[:3])
        >>> metric.update(embeddings[3:], labels[3:])
        >>> metric.compute()
        {1: 0.8, 2: 0.8}
    """

    embeddings: list[Tensor]
    labels: list[Tensor]
    width: Tensor

    def __init__(
        self, ks: Sequence[int] = (1, 2, 4, 8), *, distance: Distance = "euclidean", **kwargs: Any
    ) -> None:
        kk = _check_ks(ks)
        dist = _check_distance(distance)
        super().__init__(**kwargs)
        self.ks = kk
        self.distance = dist
        self._add_cat_state("embeddings", torch.float64)
        self._add_cat_state("labels", torch.int64)
        # the embedding dimension D, 0 until the first batch (a process without samples keeps 0)
        self.add_state("width", torch.zeros((), dtype=torch.int64), dist_reduce_fx="max")

    def update(self, embeddings: Tensor, labels: Tensor) -> None:
        """Add a batch: ``embeddings`` (B, D) float, ``labels`` (B,) int."""
        emb = check_finite("embeddings", check_float_matrix("embeddings", embeddings), _FINITE_WHY)
        lab = check_labels("labels", labels, emb.shape[0], None)
        width = int(self.width)
        if width and emb.shape[1] != width:
            raise ValueError(
                f"embeddings has dimension {emb.shape[1]} but earlier batches had {width}"
            )
        self.width.fill_(emb.shape[1])
        self.embeddings.append(emb.detach().to(torch.float64).flatten())
        self.labels.append(lab)

    def compute(self) -> dict[int, float]:
        width = int(self.width)
        emb = self._cat("embeddings")
        emb = emb.reshape(emb.numel() // width if width else 0, width)
        return _recall(emb, self._cat("labels"), self.ks, self.distance)

    def extra_repr(self) -> str:
        return f"ks={self.ks}, distance={self.distance!r}"
