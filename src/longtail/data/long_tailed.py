"""Long-tailed subsets of balanced data sets (CIFAR-LT style).

Exponential profile (Cui et al. CVPR 2019; Cao et al. NeurIPS 2019, LDAM; used by CB, LDAM, LA,
M2m): class of rank ``r`` in ``0..C-1`` keeps

.. math:: n_r = \\lfloor n_{max} \\cdot IF^{-r / (C - 1)} \\rfloor,

with imbalance factor ``IF = n_max / n_min``. CIFAR-10 (5,000 per class) at IF 100 gives
``[5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]`` (12,406 images).

Step profile (Buda et al. 2018; LDAM): the first ``ceil(C / 2)`` ranks keep ``n_max``, the rest
``floor(n_max / IF)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

__all__ = ["class_counts", "long_tailed_counts", "make_long_tailed"]

Profile = Literal["exp", "step"]
_PROFILES = ("exp", "step")


def _check_labels(labels: torch.Tensor | Sequence[int], name: str = "labels") -> torch.Tensor:
    tensor = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(labels)
    if tensor.ndim != 1:
        raise ValueError(
            f"{name}: expected a 1-D tensor of class indices, got shape {tuple(tensor.shape)}"
        )
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise ValueError(f"{name}: expected an integer tensor, got dtype {tensor.dtype}")
    tensor = tensor.to(torch.int64)
    if tensor.numel() and int(tensor.min()) < 0:
        raise ValueError(f"{name}: class indices must be >= 0, got {int(tensor.min())}")
    return tensor


def class_counts(labels: torch.Tensor | Sequence[int], num_classes: int | None = None) -> list[int]:
    """Number of samples of each class.

    Args:
        labels: 1-D integer class indices, shape ``(N,)``.
        num_classes: ``C``; default ``max(labels) + 1`` (0 for empty labels).

    Returns:
        ``[n_0, ..., n_{C-1}]`` (classes absent from ``labels`` count 0).

    Raises:
        ValueError: ``labels`` not 1-D integer / negative, or a label ``>= num_classes``.
    """
    tensor = _check_labels(labels)
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes: expected an int >= 0, got {num_classes!r}")
        if tensor.numel() and int(tensor.max()) >= num_classes:
            raise ValueError(
                f"num_classes: {num_classes} but labels contain class {int(tensor.max())}"
            )
    size = (
        num_classes if num_classes is not None else (int(tensor.max()) + 1 if tensor.numel() else 0)
    )
    return [int(v) for v in torch.bincount(tensor, minlength=size).tolist()]


def long_tailed_counts(
    n_max: int, num_classes: int, imbalance_factor: float, profile: Profile = "exp"
) -> list[int]:
    """Per-rank sample counts of a long-tailed profile (rank 0 is the head).

    - ``"exp"``: ``int(n_max * IF ** (-r / (C - 1)))`` (``[n_max]`` when ``C == 1``).
    - ``"step"``: ``n_max`` for the first ``ceil(C / 2)`` ranks, ``int(n_max / IF)`` for the rest.

    Example: ``long_tailed_counts(5000, 10, 100)`` is
    ``[5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]``.

    Raises:
        ValueError: ``n_max < 1``, ``num_classes < 1``, ``imbalance_factor < 1`` (or not finite),
            unknown ``profile``.
    """
    if isinstance(n_max, bool) or not isinstance(n_max, int) or n_max < 1:
        raise ValueError(f"n_max: expected an int >= 1, got {n_max!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: expected an int >= 1, got {num_classes!r}")
    _check_if(imbalance_factor)
    if profile not in _PROFILES:
        raise ValueError(f"profile: expected one of {_PROFILES}, got {profile!r}")
    factor = float(imbalance_factor)
    if profile == "exp":
        if num_classes == 1:
            return [n_max]
        return [int(n_max * factor ** (-r / (num_classes - 1))) for r in range(num_classes)]
    head = num_classes - num_classes // 2
    return [n_max] * head + [int(n_max / factor)] * (num_classes - head)


def _check_if(imbalance_factor: float) -> None:
    if (
        isinstance(imbalance_factor, bool)
        or not isinstance(imbalance_factor, (int, float))
        or not math.isfinite(imbalance_factor)
        or imbalance_factor < 1
    ):
        raise ValueError(
            f"imbalance_factor: expected a finite number >= 1, got {imbalance_factor!r}"
        )


def make_long_tailed(
    labels: torch.Tensor | Sequence[int],
    imbalance_factor: float,
    *,
    profile: Profile = "exp",
    seed: int = 0,
    max_per_class: int | None = None,
    class_order: torch.Tensor | Sequence[int] | Literal["random"] | None = None,
) -> torch.Tensor:
    """Indices of a long-tailed subset of a (typically balanced) labelled data set.

    The class of rank ``r`` keeps ``long_tailed_counts(n_max, C, imbalance_factor, profile)[r]``
    samples, drawn uniformly without replacement from that class with a ``torch.Generator``
    seeded by ``seed`` (the global RNG is untouched). ``C = max(labels) + 1``.

    **Which class is the head**: by default rank = class index, so class 0 is the head and class
    ``C - 1`` the tail (the CIFAR-LT convention). ``class_order`` changes this: a permutation
    of ``0..C-1`` where ``class_order[r]`` is the class given rank ``r``; or ``"random"`` for a
    permutation drawn from ``seed`` (recorded by the seed).

    Args:
        labels: 1-D integer class indices ``(N,)`` of the source set; every class in
            ``0..C-1`` must be present.
        imbalance_factor: ``IF = n_max / n_min >= 1`` (1 gives a balanced subset).
        profile: ``"exp"`` (default) or ``"step"``.
        seed: seed of the draw.
        max_per_class: ``n_max``; default the smallest class size of the source, so every class
            can supply its count.
        class_order: see above; default ``None`` (class index order).

    Returns:
        ``torch.int64`` tensor of the selected indices into ``labels``, sorted ascending.

    Raises:
        ValueError: bad ``labels`` (not 1-D integer, empty, negative, a class with no samples),
            ``imbalance_factor < 1``, unknown ``profile``, ``max_per_class < 1`` or larger than
            a class's size, ``class_order`` not a permutation of ``0..C-1``.

    Example:
        >>> labels = torch.arange(10).repeat_interleave(5000)
        >>> idx = make_long_tailed(labels, 100)
        >>> class_counts(labels[idx])
        [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    """
    tensor = _check_labels(labels)
    _check_if(imbalance_factor)
    if profile not in _PROFILES:
        raise ValueError(f"profile: expected one of {_PROFILES}, got {profile!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed: expected an int, got {seed!r}")
    if tensor.numel() == 0:
        raise ValueError("labels: empty")
    counts = class_counts(tensor)
    num_classes = len(counts)
    empty = [c for c, n in enumerate(counts) if n == 0]
    if empty:
        raise ValueError(f"labels: classes {empty[:10]} have no samples")
    if max_per_class is None:
        n_max = min(counts)
    else:
        if (
            isinstance(max_per_class, bool)
            or not isinstance(max_per_class, int)
            or max_per_class < 1
        ):
            raise ValueError(f"max_per_class: expected an int >= 1, got {max_per_class!r}")
        n_max = max_per_class
    generator = torch.Generator().manual_seed(seed)
    order = _class_order(class_order, num_classes, generator)
    targets = long_tailed_counts(n_max, num_classes, imbalance_factor, profile)
    for rank, cls in enumerate(order):
        if targets[rank] > counts[cls]:
            raise ValueError(
                f"max_per_class: {n_max} needs {targets[rank]} samples of class {cls}, "
                f"which has only {counts[cls]}"
            )
    order_index = torch.argsort(tensor, stable=True)
    starts = [0]
    for n in counts:
        starts.append(starts[-1] + n)
    chosen = []
    for rank, cls in enumerate(order):
        members = order_index[starts[cls] : starts[cls + 1]]
        pick = torch.randperm(counts[cls], generator=generator)[: targets[rank]]
        chosen.append(members[pick])
    result, _ = torch.sort(torch.cat(chosen))
    return result


def _class_order(
    class_order: torch.Tensor | Sequence[int] | Literal["random"] | None,
    num_classes: int,
    generator: torch.Generator,
) -> list[int]:
    if class_order is None:
        return list(range(num_classes))
    if isinstance(class_order, str):
        if class_order != "random":
            raise ValueError(
                f"class_order: expected a permutation or 'random', got {class_order!r}"
            )
        return [int(c) for c in torch.randperm(num_classes, generator=generator).tolist()]
    order = [
        int(c)
        for c in (class_order.tolist() if isinstance(class_order, torch.Tensor) else class_order)
    ]
    if sorted(order) != list(range(num_classes)):
        raise ValueError(
            f"class_order: expected a permutation of 0..{num_classes - 1}, got {order[:12]}"
        )
    return order
