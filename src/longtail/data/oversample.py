"""SMOTE over-sampling of a tensor data set, through imbalanced-learn.

SMOTE (Chawla et al., JAIR 2002) adds, for a class with fewer examples than the largest, synthetic
examples ``x_i + u (x_nn - x_i)``, ``u ~ U(0, 1)``, between an example ``x_i`` of the class and one of
its ``k`` nearest same-class neighbours ``x_nn``, until every class has ``n_max`` examples. Images are
flattened for the neighbour search and the interpolation, and reshaped back. This module wraps
:class:`imblearn.over_sampling.SMOTE` (an optional dependency: ``pip install imbalanced-learn``, part of
the ``cli`` extra) rather than re-writing it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["smote_oversample"]


def smote_oversample(
    x: Tensor, y: Tensor, *, k_neighbors: int = 5, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Over-sample every class to the largest class's count with SMOTE.

    Args:
        x: inputs ``(N, ...)`` (float; images ``(N, C, H, W)`` are flattened for SMOTE).
        y: int64 labels ``(N,)`` in ``[0, C)``; every present class needs more than ``k_neighbors``
            examples (a class absent from ``y`` stays absent).
        k_neighbors: same-class neighbours to interpolate towards (SMOTE's default 5).
        seed: random state of the neighbour choice and the interpolation.

    Returns:
        ``(x_new, y_new)``: the original examples first, in order, then the synthetic ones; ``x_new``
        has ``x``'s dtype, trailing shape and device.

    Raises:
        ValueError / TypeError: bad shapes, labels, ``k_neighbors``, or a class too small for SMOTE.
    """
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError(f"x and y must be tensors, got {type(x).__name__} and {type(y).__name__}")
    if isinstance(k_neighbors, bool) or not isinstance(k_neighbors, int) or k_neighbors < 1:
        raise ValueError(f"k_neighbors must be a positive integer, got {k_neighbors!r}")
    if y.ndim != 1 or x.ndim < 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x must be (N, ...) and y (N,), got x {tuple(x.shape)} and y {tuple(y.shape)}"
        )
    if y.dtype != torch.int64:
        raise TypeError(f"y must be int64 class indices, got {y.dtype}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a float tensor, got {x.dtype}")
    if y.numel() == 0:
        raise ValueError("x and y are empty: nothing to over-sample")
    if int(y.min()) < 0:
        raise ValueError(f"y has a negative label {int(y.min())}")
    counts = torch.bincount(y)
    present = counts[counts > 0]
    small = int(present.min())
    if small <= k_neighbors and int(present.max()) > small:
        cls = int(torch.nonzero(counts == small)[0])
        raise ValueError(
            f"k_neighbors={k_neighbors} needs more than {k_neighbors} examples in every class; "
            f"class {cls} has {small}"
        )
    if int(present.max()) == small:  # already balanced: SMOTE adds nothing
        return x, y
    try:
        from imblearn.over_sampling import SMOTE  # optional: the cli extra (imbalanced-learn)
    except ImportError as e:  # pragma: no cover - an install problem
        raise ImportError(
            "smote_oversample needs imbalanced-learn: pip install imbalanced-learn"
        ) from e
    flat = x.detach().reshape(x.shape[0], -1).cpu().numpy()
    sm = SMOTE(k_neighbors=k_neighbors, random_state=int(seed) % (2**32))
    xs, ys = sm.fit_resample(flat, y.cpu().numpy())
    x_new = torch.from_numpy(np.ascontiguousarray(xs, dtype=flat.dtype)).reshape(-1, *x.shape[1:])
    y_new = torch.from_numpy(np.asarray(ys, dtype=np.int64))
    return x_new.to(device=x.device, dtype=x.dtype), y_new.to(y.device)
