"""Triplet mining for metric learning with ``torch.nn.functional.triplet_margin_loss``.

The loss itself is torch's; this module only chooses the triplets (anchor, positive, negative) of a
labelled batch. Schroff, Kalenichenko, Philbin. "FaceNet". CVPR 2015 (all valid triplets);
Hermans, Beyer, Leibe. "In Defense of the Triplet Loss for Person Re-Identification". 2017
(batch-hard). Park et al. (RKD, CVPR 2019) train their metric-learning teachers with a triplet loss
of margin 0.2.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import torch
from torch import Tensor

from ._common import check_logits, upcast

__all__ = ["TripletStrategy", "mine_triplets"]

TripletStrategy: TypeAlias = Literal["all", "batch_hard"]
_STRATEGIES = ("all", "batch_hard")


def mine_triplets(
    labels: Tensor,
    embeddings: Tensor | None = None,
    *,
    strategy: TripletStrategy = "all",
) -> tuple[Tensor, Tensor, Tensor]:
    """Indices ``(anchor, positive, negative)`` of triplets of a labelled batch.

    ``"all"``: every ordered triplet with ``labels[a] == labels[p]``, ``a != p`` and
    ``labels[n] != labels[a]`` (up to ``N^3`` of them; ``embeddings`` is not needed).
    ``"batch_hard"``: one triplet per anchor that has a positive and a negative: its farthest
    positive and its nearest negative in Euclidean distance of ``embeddings`` (computed without
    gradient; ties go to the lowest index).

    Use with torch's loss, e.g. the margin 0.2 of RKD's metric-learning teachers::

        a, p, n = mine_triplets(y, e, strategy="batch_hard")
        loss = F.triplet_margin_loss(e[a], e[p], e[n], margin=0.2)

    (With no triplet, e.g. a batch of one class, the indices are empty and torch's ``"mean"`` is
    NaN: check ``a.numel()``.)

    Args:
        labels: ``(N,)`` integer class labels.
        embeddings: ``(N, D)`` float, required by ``"batch_hard"``.
        strategy: ``"all"`` or ``"batch_hard"``. Default ``"all"``.

    Returns:
        Three ``int64`` index tensors of the same length, on the labels' device; ``"all"`` lists
        them in lexicographic order of ``(a, p, n)``, ``"batch_hard"`` by anchor.

    Example:
        >>> from longtail.losses import mine_triplets
        >>> labels = torch.tensor([0, 0, 1])
        >>> anchor, positive, negative = mine_triplets(labels)  # every valid triplet
        >>> anchor.tolist(), positive.tolist(), negative.tolist()
        ([0, 1], [1, 0], [2, 2])
        >>> labels = torch.tensor([0, 0, 1, 1])
        >>> embeddings = torch.tensor([[0.0], [3.0], [1.0], [6.0]])  # hardest positive and negative
        >>> [t.tolist() for t in mine_triplets(labels, embeddings, strategy="batch_hard")]
        [[0, 1, 2, 3], [1, 0, 3, 2], [2, 2, 0, 1]]
    """
    if not isinstance(strategy, str) or strategy not in _STRATEGIES:
        raise ValueError(f"strategy must be one of {_STRATEGIES}, got {strategy!r}")
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if labels.ndim != 1:
        raise ValueError(f"labels must have 1 dimension (N,), got shape {tuple(labels.shape)}")
    e: Tensor | None = None
    if embeddings is not None:
        e = check_logits("embeddings", embeddings)
        if e.shape[0] != labels.shape[0]:
            raise ValueError(
                f"embeddings has {e.shape[0]} rows but labels has {labels.shape[0]} entries"
            )
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    idx = torch.arange(labels.shape[0], device=labels.device)
    positive = same & (idx.unsqueeze(0) != idx.unsqueeze(1))
    negative = ~same
    if strategy == "all":
        valid = positive.unsqueeze(2) & negative.unsqueeze(1)  # [a, p, n]
        a, p, n = valid.nonzero(as_tuple=True)
        return a, p, n
    if e is None:
        raise ValueError("strategy='batch_hard' needs embeddings, got None")
    with torch.no_grad():
        x = upcast(e.detach()).unsqueeze(0)
        d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")[0].to(labels.device)
        inf = torch.tensor(float("inf"), device=d.device)
        hardest_p = torch.where(positive, d, -inf).argmax(dim=1)
        hardest_n = torch.where(negative, d, inf).argmin(dim=1)
        anchors = (positive.any(dim=1) & negative.any(dim=1)).nonzero(as_tuple=True)[0]
    return anchors, hardest_p[anchors], hardest_n[anchors]
