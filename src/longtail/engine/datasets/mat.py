"""``mat``: feature vectors and a label vector from a MATLAB file, ``data.path``, variables
``data.x_key`` / ``data.y_key`` (default ``X`` / ``Y``), read with :func:`longtail.data.load_mat`.

Class labels are mapped to ``0..C-1`` in sorted order of their values, which are the class names.
The rows are split by :func:`~longtail.engine.datasets.stratified_split` (``data.test_fraction``,
seed ``data.subset_seed``) before the training pool is made long-tailed; features are scaled like a
table's (``data.feature_scaling``, :func:`~longtail.engine.datasets.scale_features`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from longtail.data import load_mat
from longtail.engine.datasets.formats import DataFormat, LoadedData, register_data_format
from longtail.engine.datasets.splits import hold_out
from longtail.engine.datasets.standardise import standardise_features

if TYPE_CHECKING:
    from longtail.engine.config import Config, DataConfig

__all__ = ["MAT"]


def _load(cfg: DataConfig, source: Path | None) -> LoadedData:
    assert source is not None
    loaded = load_mat(source, features=cfg.x_key or "X", labels=cfg.y_key or "Y")
    if loaded.targets.ndim != 1:
        raise ValueError(
            f"data.y_key: {cfg.y_key or 'Y'!r} of {source} is a multi-label matrix "
            f"{tuple(loaded.targets.shape)}; dataset 'mat' needs a label vector"
        )
    values, y = torch.unique(loaded.targets, return_inverse=True)
    names = [str(int(v)) for v in values.tolist()]
    return hold_out(cfg, source, loaded.data, y, names)


def _check(cfg: Config, labels: str) -> None:
    if labels == "multi":
        raise ValueError(
            "config key 'task': dataset 'mat' is single-label (a label vector); use a table for "
            "multi-label data"
        )


MAT = register_data_format(
    DataFormat(
        name="mat",
        load=_load,
        source="path",
        suffixes=(".mat",),
        keys=("x_key", "y_key", "feature_scaling"),
        inputs="vectors",
        standardise=standardise_features,
        holds_out_test=True,
        own_data=True,
        check=_check,
        doc="your feature vectors: a MATLAB .mat file (data.path), single-label",
    )
)
