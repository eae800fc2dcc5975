"""Batches of a run's data: the evaluation splits (sharded) and lazy data read through a ``DataLoader``.

Lazy data (``DataBundle.train_dataset``, e.g. an image folder): the sampler's indices are split into
batches as usual and a ``DataLoader`` (``DataBundle.num_workers`` workers, kept alive across epochs)
reads exactly those batches, in that order; evaluation reads ``DataBundle.eval_datasets`` the same
way. In-memory bundles take the unchanged tensor-indexing path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from longtail.engine.datasets import DataBundle
from longtail.engine.tasks import Batch

__all__ = ["EpochBatches", "batch_loader", "eval_batches"]


class EpochBatches:
    """A ``DataLoader`` batch sampler whose batches are set anew every epoch (the sampler's order
    split into batches), so persistent workers serve every epoch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def batch_loader(
    dataset: Dataset[Any], batches: Any, num_workers: int, device: torch.device
) -> DataLoader[Any]:
    """A ``DataLoader`` reading ``batches`` (lists of indices) of ``dataset`` in that order."""
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        persistent_workers=num_workers > 0 and isinstance(batches, EpochBatches),
        pin_memory=device.type == "cuda",
    )


def _split_batches(
    x_all: Tensor, y_all: Tensor, rank: int, world: int, local_batch: int, device: torch.device
) -> Iterator[Batch]:
    n = len(y_all)
    idx = torch.arange(rank, n, world)
    bs = max(local_batch, 512)
    for chunk in idx.split(bs):
        yield Batch(x_all[chunk].to(device), y_all[chunk].to(device), chunk)


def _dataset_batches(
    dataset: Dataset[Any],
    rank: int,
    world: int,
    local_batch: int,
    num_workers: int,
    device: torch.device,
) -> Iterator[Batch]:
    """A lazy split's (sharded) batches, read through a ``DataLoader``."""
    idx = torch.arange(rank, len(dataset), world)  # type: ignore[arg-type]
    chunks = list(idx.split(max(local_batch, 512)))
    loader = batch_loader(dataset, [c.tolist() for c in chunks], num_workers, device)
    for chunk, (x, y) in zip(chunks, loader, strict=True):
        yield Batch(x.to(device), y.to(device), chunk)


def eval_batches(
    data: DataBundle, rank: int, world: int, local_batch: int, device: torch.device
) -> dict[str, Iterator[Batch]]:
    """This process's shard of every evaluation split, in batches (read when iterated)."""
    lazy = data.eval_datasets
    return {
        name: _dataset_batches(lazy[name], rank, world, local_batch, data.num_workers, device)
        if name in lazy
        else _split_batches(x, y, rank, world, local_batch, device)
        for name, (x, y) in data.eval_splits.items()
    }
