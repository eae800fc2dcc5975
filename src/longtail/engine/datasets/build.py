"""Build the in-memory data of a run from its :class:`DataConfig`: load, long tail, standardise.

:func:`build_data` (single-label) reads the format's spec (:data:`DATA_FORMATS`): it checks the
file or folder the format reads, calls its loader for the training *pool* and the test set, makes
the pool long-tailed with :func:`longtail.data.make_long_tailed` (``imbalance_factor``,
``profile``, ``subset_seed``, ``max_per_class``) and standardises both with the training subset's
statistics (the format's ``standardise``, or :func:`~longtail.engine.datasets.scale_features` with
``data.feature_scaling`` for a format that reads that key); the test set is never subsampled. With
``balanced=True`` the same number of training examples is drawn evenly over the classes instead
(the upper-bound reference). A format with ``build`` (image folders, read lazily) builds the whole
bundle itself.

**Which class is the head** (``class_order``): ``"fixed"`` gives the ``r``-th largest count to class
``r`` (class 0 is the head, as in CIFAR-LT). ``"random"`` gives it to class ``perm[r]``, where ``perm =
torch.randperm(C, generator=torch.Generator().manual_seed(s))`` and ``s =
numpy.random.SeedSequence([seed, subset_seed]).generate_state(1)[0]`` for the *training* seed passed
to :func:`build_data` (so each training seed has its own head class, and frequency is not confounded
with the difficulty of class 0). Labels and class names stay the real ones; ``class_counts`` and
``group_counts`` are the real per-class counts, so many / medium / few follow the counts. The
balanced reference draws the same training images whatever the order (only its ``group_counts``,
the long-tailed counts of the same seed, follow the permutation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from longtail.data import class_counts, make_long_tailed
from longtail.engine.datasets.bundle import DataBundle
from longtail.engine.datasets.formats import DATA_FORMATS, LoadedData, resolve_source
from longtail.engine.datasets.preprocessing import Preprocessing
from longtail.engine.datasets.standardise import scale_features, standardise_recorded

if TYPE_CHECKING:
    from longtail.engine.config import DataConfig

__all__ = ["build_data", "class_order_permutation", "load_pool", "training_indices"]


def class_order_permutation(num_classes: int, seed: int, subset_seed: int) -> list[int]:
    """The classes in the order they receive the long-tailed counts (``data.class_order: random``).

    ``torch.randperm(num_classes)`` with a generator seeded by
    ``numpy.random.SeedSequence([seed, subset_seed]).generate_state(1)[0]``: element ``r`` is the
    class that gets the ``r``-th largest count.

    Raises:
        ValueError: ``num_classes < 1``, ``seed`` or ``subset_seed`` not an int ``>= 0``.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: expected an int >= 1, got {num_classes!r}")
    for name, value in (("seed", seed), ("subset_seed", subset_seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: expected an int >= 0, got {value!r}")
    state = int(np.random.SeedSequence([seed, subset_seed]).generate_state(1)[0])
    generator = torch.Generator().manual_seed(state)
    return [int(c) for c in torch.randperm(num_classes, generator=generator).tolist()]


def load_pool(cfg: DataConfig) -> LoadedData:
    """The single-label training pool and test set of ``cfg.dataset``, as its loader returns them
    (not long-tailed, not standardised): what tasks that split the classes start from.

    Raises:
        ValueError: the format has no in-memory single-label loader, or a data problem (the
            message names the config key).
    """
    fmt = DATA_FORMATS[cfg.dataset]
    if fmt.load is None:
        raise ValueError(f"data.dataset: {cfg.dataset!r} has no in-memory single-label loader")
    return fmt.load(cfg, resolve_source(cfg, fmt))


def _load_raw(cfg: DataConfig) -> tuple[Tensor, Tensor, Tensor, Tensor, list[str]]:
    """:func:`load_pool` as a tuple ``(x_pool, y_pool, x_test, y_test, class names)``."""
    pool = load_pool(cfg)
    return pool.train_x, pool.train_y, pool.test_x, pool.test_y, pool.class_names


def build_data(cfg: DataConfig, *, balanced: bool = False, seed: int | None = None) -> DataBundle:
    """Load, split, make long-tailed (or balanced of the same size) and normalise.

    Args:
        cfg: the ``data`` section of the config.
        balanced: draw the same number of training images as the long-tailed subset, evenly over
            the classes (the balanced reference).
        seed: the training seed; with ``cfg.class_order == "random"`` it picks which class gets
            which long-tailed count (see :func:`class_order_permutation`), ignored with ``"fixed"``.

    Raises:
        ValueError: ``cfg.class_order == "random"`` without a ``seed`` (the message names
            ``data.class_order``), or a data problem (the message names the config key).
    """
    if cfg.class_order not in ("fixed", "random"):
        raise ValueError(f"data.class_order: expected 'fixed' or 'random', got {cfg.class_order!r}")
    if cfg.class_order == "random" and seed is None:
        raise ValueError(
            "data.class_order: 'random' needs the training seed (build_data(seed=...))"
        )
    fmt = DATA_FORMATS[cfg.dataset]
    if fmt.build is not None:
        return fmt.build(cfg, resolve_source(cfg, fmt), balanced, seed)
    pool = load_pool(cfg)
    names = pool.class_names
    num_classes = len(names)
    idx, lt_counts = training_indices(cfg, pool.train_y, num_classes, balanced=balanced, seed=seed)
    x_train, y_train = pool.train_x[idx], pool.train_y[idx]
    counts = [int(c) for c in class_counts(y_train, num_classes)]
    if min(counts) == 0:
        raise ValueError(f"data: a class has no training images (counts {counts})")
    scaling = None
    pre: Preprocessing | None
    if "feature_scaling" in fmt.used_keys:
        x_train, x_test, scaling, pre = scale_features(x_train, pool.test_x, cfg.feature_scaling)
    else:
        x_train, x_test, pre = standardise_recorded(fmt.standardise, x_train, pool.test_x)
    if pre is not None:
        pre = pre.with_feature_names(pool.feature_names)
    return DataBundle(
        name=cfg.dataset,
        train_x=x_train,
        train_y=y_train.long().contiguous(),
        test_x=x_test,
        test_y=pool.test_y.long().contiguous(),
        class_names=names,
        class_counts=counts,
        group_counts=lt_counts,
        imbalance_factor=cfg.imbalance_factor,
        split=pool.split,
        feature_scaling=scaling,
        preprocessing=pre,
        notes=list(pool.notes),
    )


def training_indices(
    cfg: DataConfig, y_pool: Tensor, num_classes: int, *, balanced: bool, seed: int | None
) -> tuple[Tensor, list[int]]:
    """Sorted indices of the training subset of the pool, and the long-tailed counts per class."""
    order = (
        class_order_permutation(num_classes, seed, cfg.subset_seed)
        if cfg.class_order == "random" and seed is not None
        else None
    )
    if cfg.imbalance_factor is None:
        lt_idx = torch.arange(len(y_pool))
    else:
        lt_idx = torch.as_tensor(
            make_long_tailed(
                y_pool,
                cfg.imbalance_factor,
                profile=cfg.profile,  # type: ignore[arg-type]  # validated: "exp" | "step"
                seed=cfg.subset_seed,
                max_per_class=cfg.max_per_class,
                class_order=order,
            ),
            dtype=torch.long,
        )
    lt_counts = [int(c) for c in class_counts(y_pool[lt_idx], num_classes)]
    if balanced:
        per = len(lt_idx) // num_classes
        gen = torch.Generator().manual_seed(cfg.subset_seed + 1)
        parts = []
        for c in range(num_classes):
            members = torch.nonzero(y_pool == c).flatten()
            if len(members) < per:
                raise ValueError(
                    f"data.balanced_reference: class {c} has {len(members)} images, {per} needed"
                )
            parts.append(members[torch.randperm(len(members), generator=gen)[:per]])
        idx = torch.cat(parts).sort().values
    else:
        idx = lt_idx.sort().values
    return idx, lt_counts


#: The name the open-set and metric-learning tracks import.
_training_indices = training_indices
