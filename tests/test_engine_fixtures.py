"""Tiny in-memory data and configs shared by the engine tests (helpers only, no tests here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from longtail.engine.config import Config, config_from_dict
from longtail.engine.datasets import DataBundle


def tiny_vectors(
    counts: Sequence[int] = (24, 12, 6, 3), dim: int = 8, test_per_class: int = 10, seed: int = 0
) -> DataBundle:
    """Gaussian blobs, one per class, long-tailed training counts, balanced test set."""
    g = torch.Generator().manual_seed(seed)
    c = len(counts)
    centers = torch.randn(c, dim, generator=g) * 2.0

    def draw(per: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for k, n in enumerate(per):
            xs.append(centers[k] + torch.randn(n, dim, generator=g))
            ys.append(torch.full((n,), k, dtype=torch.long))
        return torch.cat(xs), torch.cat(ys)

    x, y = draw(counts)
    xt, yt = draw([test_per_class] * c)
    return DataBundle(
        name="tiny",
        train_x=x,
        train_y=y,
        test_x=xt,
        test_y=yt,
        class_names=[str(k) for k in range(c)],
        class_counts=list(counts),
        group_counts=list(counts),
        imbalance_factor=counts[0] / counts[-1],
    )


def tiny_images(
    counts: Sequence[int] = (16, 8, 4), size: int = 8, test_per_class: int = 6, seed: int = 0
) -> DataBundle:
    """Grey ``size x size`` images whose class sets the mean brightness of a quadrant."""
    g = torch.Generator().manual_seed(seed)

    def draw(per: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for k, n in enumerate(per):
            img = torch.randn(n, 1, size, size, generator=g) * 0.5
            h = size // 2
            img[:, :, (k % 2) * h : (k % 2) * h + h, (k // 2) * h : (k // 2) * h + h] += 2.0
            xs.append(img)
            ys.append(torch.full((n,), k, dtype=torch.long))
        return torch.cat(xs), torch.cat(ys)

    x, y = draw(counts)
    xt, yt = draw([test_per_class] * len(counts))
    return DataBundle(
        name="tiny-images",
        train_x=x,
        train_y=y,
        test_x=xt,
        test_y=yt,
        class_names=[str(k) for k in range(len(counts))],
        class_counts=list(counts),
        group_counts=list(counts),
        imbalance_factor=counts[0] / counts[-1],
    )


def tiny_config(**train: Any) -> Config:
    """MLP / small-CNN config for the tiny bundles; ``train`` overrides the train section."""
    t: dict[str, Any] = {
        "epochs": 2,
        "batch_size": 64,
        "lr": 0.05,
        "warmup_epochs": 0,
        "eval_every": 0,
        "num_threads": 1,
    }
    t.update(train)
    return config_from_dict(
        {
            "name": "tiny",
            "model": {"arch": "auto", "hidden": [16], "channels": [4, 8]},
            "train": t,
        }
    )
