"""Tiny in-memory data and configs shared by the engine tests (helpers only, no tests here)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
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


LABELS = ["sky", "sea", "sand", "tree"]


def write_mulan(
    folder: Path,
    name: str = "toy",
    *,
    n_train: int = 80,
    n_test: int = 40,
    features: int = 5,
    seed: int = 0,
    test_features: int | None = None,
    label_override: dict[int, str] | None = None,
    drop_label_positives: int | None = None,
) -> Path:
    """A small Mulan folder whose labels depend on the features (learnable), label 3 rare."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)

    def rows(n: int, nf: int) -> list[str]:
        x = torch.randn(n, nf, generator=g)
        rates = torch.tensor([0.5, 0.3, 0.2, 0.08])
        y = (torch.rand(n, 4, generator=g) < rates).long()
        x[:, : min(4, nf)] += 2.0 * y[:, : min(4, nf)]
        if drop_label_positives is not None:
            y[:, drop_label_positives] = 0
        out = []
        for i in range(n):
            labels = [str(int(v)) for v in y[i]]
            if label_override:
                for col, val in label_override.items():
                    if i == 0:
                        labels[col] = val
            out.append(",".join([f"{float(v):.4f}" for v in x[i]] + labels))
        return out

    def header(nf: int) -> list[str]:
        head = [f"@relation {name}"]
        head += [f"@attribute f{j} numeric" for j in range(nf)]
        head += [f"@attribute {lab} {{0,1}}" for lab in LABELS]
        return [*head, "@data"]

    (folder / f"{name}-train.arff").write_text(
        "\n".join(header(features) + rows(n_train, features)) + "\n"
    )
    nf_test = features if test_features is None else test_features
    (folder / f"{name}-test.arff").write_text(
        "\n".join(header(nf_test) + rows(n_test, nf_test)) + "\n"
    )
    xml = "".join(f'<label name="{lab}"></label>' for lab in LABELS)
    (folder / f"{name}.xml").write_text(
        f'<?xml version="1.0" encoding="utf-8"?><labels xmlns="http://mulan.sourceforge.net/labels">{xml}</labels>'
    )
    return folder
