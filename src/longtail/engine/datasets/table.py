"""``table``: feature vectors and labels from one file, ``data.path`` (``.csv`` / ``.npz`` /
``.parquet``, read with :func:`longtail.data.load_table`), for either task.

- single-label (``data.label_column``): class labels are mapped to ``0..C-1`` in sorted order of
  their values, which are the class names; the rows are split by
  :func:`~longtail.engine.datasets.stratified_split` (``data.test_fraction``, seed
  ``data.subset_seed``) before the training pool is made long-tailed.
- multi-label (``data.label_columns``): ``(N, L)`` labels of the 0/1 columns (``-1``: unknown),
  used as loaded; ``test_fraction`` of the rows (at least one) are held out at random (seed
  ``subset_seed``; a stratified split is not defined for several labels per row).

Features are scaled with the training subset's statistics as ``data.feature_scaling`` says
(:func:`~longtail.engine.datasets.scale_features`; ``auto``: divided by the training max ``|x|`` for
non-negative features that are mostly zeros or all 0/1, else standardised with the training mean and
std, a constant feature only centred); a missing value (NaN) is replaced by the training mean. The
test rows are kept in ``DataBundle.split`` and written to ``split.json``; the test set follows the
data's own class distribution (it is not balanced).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from longtail.data import TableData, load_table
from longtail.engine.datasets.bundle import DataWarning
from longtail.engine.datasets.formats import (
    DataFormat,
    LoadedData,
    register_data_format,
    resolve_source,
)
from longtail.engine.datasets.splits import ROWS, hold_out, split_record
from longtail.engine.datasets.standardise import scale_features, standardise_features

if TYPE_CHECKING:
    from longtail.engine.config import Config, DataConfig

__all__ = ["TABLE", "load_table_multilabel"]


#: The warning of :func:`longtail.data.load_table` that :func:`_read` turns into a data note.
_SKIPPED = r".*: non-numeric column\(s\) skipped"


def _read(path: Path, **labels: Any) -> tuple[TableData, list[str]]:
    """:func:`longtail.data.load_table`, its warning about the text columns it skips said as a
    data note instead (returned, and warned as a :class:`DataWarning`), without a source line."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SKIPPED, category=UserWarning)
        table = load_table(path, **labels)
    notes = []
    if table.skipped:
        notes.append(
            f"{path}: non-numeric column(s) not used as features: {', '.join(table.skipped)}"
        )
        warnings.warn(notes[-1], DataWarning, stacklevel=3)
    return table, notes


def _load(cfg: DataConfig, source: Path | None) -> LoadedData:
    assert source is not None
    if cfg.label_column is None:
        raise ValueError("data.label_column: required for dataset 'table' (single-label)")
    table, notes = _read(source, label_column=cfg.label_column)
    loaded = hold_out(cfg, source, table.data, table.targets, list(table.class_names))
    return replace(loaded, notes=notes, feature_names=tuple(table.feature_names))


def load_table_multilabel(
    cfg: DataConfig,
) -> tuple[Tensor, Tensor, Tensor, Tensor, list[str], str, dict[str, Any]]:
    """``table`` with ``task: multi-label``: features (NaN: missing), ``(N, L)`` labels (``-1``:
    unknown) of ``data.label_columns``, split at random (``test_fraction`` of the rows, at least
    one, seeded with ``subset_seed``; a stratified split is not defined for several labels per
    row). Returns ``(x_train, y_train, x_test, y_test, label names, name, split record)``.

    Warns:
        DataWarning: naming the non-numeric columns not used as features."""
    return _split_multilabel(cfg)[0]


def _split_multilabel(
    cfg: DataConfig,
) -> tuple[
    tuple[Tensor, Tensor, Tensor, Tensor, list[str], str, dict[str, Any]],
    list[str],
    tuple[str, ...],
]:
    """:func:`load_table_multilabel`, the data notes and the feature columns."""
    path = resolve_source(cfg, TABLE)
    assert path is not None
    if not cfg.label_columns:
        raise ValueError("data.label_columns: required for dataset 'table' with task multi-label")
    table, notes = _read(path, label_columns=cfg.label_columns)
    n = len(table.targets)
    if n < 2:
        raise ValueError(f"data.path: {path} has {n} row(s), at least 2 are needed")
    gen = torch.Generator().manual_seed(cfg.subset_seed)
    perm = torch.randperm(n, generator=gen)
    k = min(n - 1, max(1, math.floor(cfg.test_fraction * n + 0.5)))
    test_idx, train_idx = perm[:k].sort().values, perm[k:].sort().values
    split = split_record(
        cfg,
        path,
        [int(i) for i in test_idx.tolist()],
        len(train_idx),
        entries=ROWS,
        stratified=False,
    )
    x, y = table.data, table.targets
    names = list(table.class_names)
    return (
        (x[train_idx], y[train_idx], x[test_idx], y[test_idx], names, cfg.dataset, split),
        notes,
        tuple(table.feature_names),
    )


def _load_multilabel(cfg: DataConfig, source: Path | None) -> LoadedData:
    (x_train, y_train, x_test, y_test, names, name, split), notes, features = _split_multilabel(cfg)
    scaled = scale_features(x_train, x_test, cfg.feature_scaling)
    return LoadedData(
        scaled.train,
        y_train,
        scaled.test,
        y_test,
        names,
        split,
        name,
        scaled.scaling,
        notes=notes,
        preprocessing=scaled.preprocessing.with_feature_names(features),
    )


def _check(cfg: Config, labels: str) -> None:
    """Single-label reads ``data.label_column``, multi-label ``data.label_columns`` (as loaded)."""
    d = cfg.data
    if labels == "multi":
        if d.label_column is not None:
            raise ValueError(
                "config key 'data.label_column': single-label only; task multi-label reads "
                "data.label_columns"
            )
        if not d.label_columns:
            raise ValueError(
                "config key 'data.label_columns': required for a multi-label table (the 0/1 "
                "label columns)"
            )
        if len(set(d.label_columns)) != len(d.label_columns):
            raise ValueError(
                f"config key 'data.label_columns': duplicate names in {d.label_columns}"
            )
        if d.imbalance_factor is not None:
            raise ValueError(
                "config key 'data.imbalance_factor': a multi-label table is used as loaded (a "
                "long-tailed subset is not defined for several labels per row); set it to null, "
                f"got {d.imbalance_factor}"
            )
    else:
        if d.label_columns is not None:
            raise ValueError(
                "config key 'data.label_columns': multi-label only (task: multi-label); a "
                "single-label table reads data.label_column"
            )
        if d.label_column is None:
            raise ValueError(
                "config key 'data.label_column': required for a single-label table (the "
                "column holding the class)"
            )


TABLE = register_data_format(
    DataFormat(
        name="table",
        load=_load,
        load_multilabel=_load_multilabel,
        source="path",
        suffixes=(".csv", ".npz", ".parquet"),
        keys=("label_column", "label_columns", "feature_scaling"),
        inputs="vectors",
        standardise=standardise_features,
        holds_out_test=True,
        own_data=True,
        check=_check,
        doc="your feature vectors: a .csv / .npz / .parquet file (data.path), either task",
    )
)
