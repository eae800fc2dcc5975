"""``digits``: the 8x8 digits bundled with scikit-learn (no file read), flattened to 64 features.

Each class is split with ``data.subset_seed``: the test split takes the same number of images from
every class (``floor(test_fraction * smallest class)``), so it is balanced; the rest is the
training pool. The inputs are used as loaded (pixel values scaled to ``[0, 1]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from longtail.data import load_digits
from longtail.engine.datasets.formats import DataFormat, LoadedData, register_data_format

if TYPE_CHECKING:
    from longtail.engine.config import DataConfig

__all__ = ["DIGITS"]


def _load(cfg: DataConfig, source: Path | None) -> LoadedData:
    full = load_digits()
    x, y = full.data.float(), full.targets.long()
    num_classes = int(y.max()) + 1
    gen = torch.Generator().manual_seed(cfg.subset_seed)
    per_class = [torch.nonzero(y == c).flatten() for c in range(num_classes)]
    n_test = int(cfg.test_fraction * min(len(p) for p in per_class))
    if n_test < 1:
        raise ValueError(f"data.test_fraction: {cfg.test_fraction} leaves no test images")
    train_idx, test_idx = [], []
    for p in per_class:
        p = p[torch.randperm(len(p), generator=gen)]
        test_idx.append(p[:n_test])
        train_idx.append(p[n_test:])
    tr, te = torch.cat(train_idx).sort().values, torch.cat(test_idx).sort().values
    names = list(full.class_names or [str(c) for c in range(num_classes)])
    return LoadedData(x[tr], y[tr], x[te], y[te], names)


DIGITS = register_data_format(
    DataFormat(
        name="digits",
        load=_load,
        source=None,
        class_split=True,
        doc="the 8x8 digits bundled with scikit-learn (balanced test split of test_fraction)",
    )
)
