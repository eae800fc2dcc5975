"""Splits of the examples: the test hold-out of data without a test set, and validation splits.

:func:`stratified_split` holds out ``data.test_fraction`` of every class (tables, ``.mat`` files,
image folders without ``test/``); :func:`split_record` describes it for ``split.json``
(:func:`write_split`). :func:`hold_out_validation` replaces a bundle's test set by a validation
split of its training data (``data.validation_fraction``).
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.utils.data import Subset

from longtail.data import class_counts
from longtail.engine.checkpoint import atomic_write_json
from longtail.engine.datasets.bundle import DataBundle
from longtail.engine.datasets.formats import LoadedData

if TYPE_CHECKING:
    from longtail.engine.config import DataConfig

__all__ = [
    "ROWS",
    "hold_out",
    "hold_out_validation",
    "split_record",
    "stratified_split",
    "validation_indices",
    "write_split",
]


def stratified_split(labels: Tensor, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Split example indices into training and test, class by class.

    A class with ``n >= 2`` examples puts ``min(n - 1, max(1, floor(test_fraction * n + 0.5)))`` of
    them in the test part (so at least one test and one training example); a class with one
    example keeps it for training. Within each class (in class order) the examples are shuffled
    with one ``torch.Generator`` seeded by ``seed``.

    Args:
        labels: ``int64 (N,)`` class indices.
        test_fraction: share of each class held out, in ``(0, 1)``.
        seed: the generator's seed (``data.subset_seed``).

    Returns:
        ``(train_idx, test_idx)``: sorted ``int64`` indices, disjoint, together ``0..N-1``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"data.test_fraction: must be in (0, 1), got {test_fraction!r}")
    labels = torch.as_tensor(labels).long()
    gen = torch.Generator().manual_seed(int(seed))
    train, test = [], []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        n = len(members)
        members = members[torch.randperm(n, generator=gen)]
        k = min(n - 1, max(1, math.floor(test_fraction * n + 0.5))) if n >= 2 else 0
        test.append(members[:k])
        train.append(members[k:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def validation_indices(train_y: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """``(kept, held_out)`` indices of the training examples for ``data.validation_fraction``.

    Single-label (``train_y`` of shape ``(N,)``): :func:`stratified_split` with ``fraction`` and
    generator seed ``seed`` (every class keeps at least one training example and, with two or
    more, gives at least one). Multi-label (``(N, L)``): ``round(fraction * N)`` rows drawn by
    ``torch.randperm`` with that seed (at least one, and at least one row kept).
    """
    if train_y.ndim == 1:
        try:
            return stratified_split(train_y, fraction, seed)
        except ValueError:
            raise ValueError(
                f"data.validation_fraction: must be in (0, 1), got {fraction!r}"
            ) from None
    n = len(train_y)
    if not 0.0 < fraction < 1.0 or n < 2:
        raise ValueError(
            f"data.validation_fraction: needs a value in (0, 1) and at least 2 training examples, "
            f"got {fraction!r} with {n}"
        )
    k = min(n - 1, max(1, math.floor(fraction * n + 0.5)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return perm[k:].sort().values, perm[:k].sort().values


def hold_out_validation(bundle: DataBundle, fraction: float, seed: int) -> DataBundle:
    """The bundle with a validation split of its training data in place of its test set.

    The held-out examples (:func:`validation_indices`) leave the training set and become the
    ``test`` split, so a run evaluates without reading the test set. ``class_counts`` are the
    counts left for training; ``group_counts`` (which classes are many / medium / few) are kept.
    The inputs keep the standardisation of the full training subset (its per-channel or
    per-feature mean and std include the held-out examples; no labels are involved).

    Raises:
        ValueError: naming ``data.validation_fraction``: the bundle has evaluation splits besides
            ``test`` (a task must hold those out itself), a fraction outside ``(0, 1)``, or a class
            left without training examples.
    """
    if bundle.evaluated_on == "validation":
        return bundle
    if bundle.extra_splits or set(bundle.eval_datasets) - {"test"}:
        extra = sorted(set(bundle.extra_splits) | (set(bundle.eval_datasets) - {"test"}))
        raise ValueError(
            f"data.validation_fraction: this data also evaluates split(s) {extra}, which a "
            "validation split of the training data cannot stand in for"
        )
    keep, held = validation_indices(bundle.train_y, fraction, seed)
    train_y, val_y = bundle.train_y[keep].contiguous(), bundle.train_y[held].contiguous()
    if train_y.ndim == 1:
        counts = [int(c) for c in class_counts(train_y, bundle.num_classes)]
    else:  # multi-label: the visible positives per label
        counts = [int(c) for c in (train_y == 1).sum(dim=0).tolist()]
    if min(counts) == 0:
        raise ValueError(
            f"data.validation_fraction: leaves a class without training examples (counts {counts})"
        )
    updates: dict[str, Any] = {
        "train_y": train_y,
        "test_y": val_y,
        "class_counts": counts,
        "evaluated_on": "validation",
    }
    if bundle.train_dataset is not None:
        ds = bundle.train_dataset
        subset = getattr(ds, "subset", None)
        if callable(subset):
            updates["train_dataset"], val_ds = subset(keep), subset(held)
        else:
            updates["train_dataset"], val_ds = Subset(ds, keep.tolist()), Subset(ds, held.tolist())
        updates["eval_datasets"] = {"test": val_ds}
    else:
        updates["train_x"] = bundle.train_x[keep].contiguous()
        updates["test_x"] = bundle.train_x[held].contiguous()
    return replace(bundle, **updates)


def write_split(bundle: DataBundle, run_dir: str | os.PathLike[str]) -> Path | None:
    """Write ``bundle.split`` (the test hold-out of data without a test set) to
    ``run_dir/split.json``, atomically; returns the path, or ``None`` when there is no split."""
    if bundle.split is None:
        return None
    path = Path(run_dir) / "split.json"
    atomic_write_json(path, bundle.split)
    return path


def split_record(
    cfg: DataConfig,
    source: Path,
    test: list[Any],
    num_train: int,
    *,
    entries: str,
    stratified: bool = True,
) -> dict[str, Any]:
    """The ``split.json`` record of a test hold-out: the data set and file, how it was drawn
    (``stratified`` or ``random``, ``test_fraction``, ``subset_seed``), the sizes and the held-out
    ``test`` entries (row indices or file names, described by ``entries``)."""
    return {
        "dataset": cfg.dataset,
        "source": str(source),
        "method": "stratified" if stratified else "random",
        "test_fraction": cfg.test_fraction,
        "subset_seed": cfg.subset_seed,
        "num_train": num_train,
        "num_test": len(test),
        "entries": entries,
        "test": test,
    }


#: ``split_record(entries=...)`` of tables and matrices.
ROWS = "row indices (0-based, in file order)"


def hold_out(cfg: DataConfig, path: Path, x: Tensor, y: Tensor, names: list[str]) -> LoadedData:
    """Single-label feature vectors of one file (NaN: missing) split by :func:`stratified_split`
    (``data.test_fraction``, seed ``data.subset_seed``): the training pool, the test set, the
    class names and the split record.

    Raises:
        ValueError: fewer than 2 classes (naming ``data.path``).
    """
    if len(names) < 2:
        raise ValueError(f"data.path: {path} has {len(names)} class(es), at least 2 are needed")
    train_idx, test_idx = stratified_split(y, cfg.test_fraction, cfg.subset_seed)
    split = split_record(
        cfg, path, [int(i) for i in test_idx.tolist()], len(train_idx), entries=ROWS
    )
    return LoadedData(x[train_idx], y[train_idx], x[test_idx], y[test_idx], names, split)
