"""Tables of features and labels: ``.csv``, ``.npz`` and ``.parquet`` files.

A table is a set of named columns of equal length (one row per example):

- ``.csv``: a header row with the column names, then one row per example, comma-separated (read
  with the :mod:`csv` module; quoted fields allowed). A column is *numeric* when every non-missing
  cell parses as a number; a cell is *missing* when it is empty or one of ``NA``, ``NaN``, ``?``,
  ``null`` (any case).
- ``.npz`` (``numpy.savez``): every array is a column: a 1-D array ``name`` of length N is the
  column ``name``; a 2-D array ``name`` of shape ``(N, k)`` gives the k columns ``name[0]`` ..
  ``name[k-1]`` (so ``numpy.savez(path, x=X, y=y)`` is a table with the features ``x[j]`` and the
  column ``y``). A label argument may name a 2-D array as a whole. Numeric arrays are numeric
  columns (NaN = missing); string arrays are text columns. Object arrays are refused (they would
  need pickle).
- ``.parquet``: read with pyarrow (``pip install 'longtail[cli]'``); integer, float and boolean
  columns are numeric (null = missing), string columns are text, anything else is non-numeric.

:func:`load_table` picks the label column(s); every other numeric column is a feature, in table
order. Non-numeric feature columns (text, or without any value) are skipped, with a warning naming
them. Missing feature values stay NaN (the engine imputes them with the training mean).
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

__all__ = ["TABLE_SUFFIXES", "TableData", "check_csv_text", "load_table", "read_table"]

#: File suffixes :func:`read_table` understands.
TABLE_SUFFIXES = (".csv", ".npz", ".parquet")
_MISSING = {"", "na", "nan", "?", "null"}
#: Bytes no text CSV file holds: the C0 controls but tab, LF, FF and CR, and DEL.
_CONTROL = frozenset([*range(0, 9), 11, *range(14, 32), 127])
_SNIFF = 1 << 16  # bytes of a CSV file checked for control bytes before it is parsed


def check_csv_text(path: str | os.PathLike[str], header: Sequence[str] = ()) -> None:
    """Refuse a file given as CSV that is not text (an image, an archive, a spreadsheet...).

    Its first 64 KiB and its ``header`` (the column names, once parsed) must hold no control
    byte or character (the C0 controls but tab, LF, FF and CR, and DEL). The message names the
    file and the first such byte by its value, never echoing the bytes themselves.

    Raises:
        ValueError: ``"PATH: not a text CSV file (...)"``.
    """
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF)
    if _has_control(head):
        at = next(i for i, b in enumerate(head) if b in _CONTROL)
        raise ValueError(
            f"{path}: not a text CSV file (control byte 0x{head[at]:02x} at byte {at}); expected "
            "comma-separated UTF-8 text with a header row"
        )
    if any(_has_control(h.encode("utf-8", "replace")) for h in header):
        raise ValueError(
            f"{path}: not a text CSV file (a control character in the header row); expected "
            "comma-separated UTF-8 text with a header row"
        )


def _has_control(data: bytes) -> bool:
    return len(data.translate(None, bytes(sorted(_CONTROL)))) != len(data)


class TableData(NamedTuple):
    """Features and labels of a table (see :func:`load_table`).

    Attributes:
        data: ``float32 (N, F)`` features, NaN where a value is missing.
        targets: single-label: ``int64 (N,)`` class indices; multi-label: ``float32 (N, L)`` in
            ``{0, 1}``, ``-1`` where the value is missing (unknown).
        class_names: single-label: the label values in sorted order (class ``c`` is the ``c``-th);
            multi-label: the label column names.
        feature_names: the feature columns, in table order.
        skipped: the non-numeric columns that were not used.
    """

    data: torch.Tensor
    targets: torch.Tensor
    class_names: tuple[str, ...]
    feature_names: tuple[str, ...]
    skipped: tuple[str, ...]


def _parse_column(values: list[str]) -> np.ndarray:
    """float64 (NaN: missing) if every present cell is a number, else object (None: missing)."""
    try:  # fast path: every cell a number
        return np.array(values, dtype=np.float64)
    except ValueError:
        pass
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        s = v.strip()
        if s.lower() in _MISSING:
            out[i] = math.nan
            continue
        try:
            out[i] = float(s)
        except ValueError:
            return np.array([None if c.strip().lower() in _MISSING else c for c in values], object)
    return out


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    check_csv_text(path)
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            if header is None or not any(h.strip() for h in header):
                raise ValueError(
                    f"{path}: empty file (expected a header row with the column names)"
                )
            check_csv_text(path, header)
            names = [h.strip() for h in header]
            dupes = sorted({h for h in names if names.count(h) > 1})
            if dupes:
                raise ValueError(f"{path}: duplicate column names {dupes}")
            rows: list[list[str]] = []
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                if len(row) != len(names):
                    raise ValueError(
                        f"{path}: line {reader.line_num} has {len(row)} fields, the header has "
                        f"{len(names)}"
                    )
                rows.append(row)
        except csv.Error as exc:
            raise ValueError(f"{path}: line {reader.line_num}: malformed CSV ({exc})") from None
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start} of a block); save the "
                "CSV file as UTF-8"
            ) from None
    columns = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in names]
    return {n: _parse_column(c) for n, c in zip(names, columns, strict=True)}


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read the .npz file ({exc})") from exc
    with archive:
        for name in archive.files:
            try:
                a = archive[name]
            except ValueError as exc:  # object arrays need pickle
                raise ValueError(
                    f"{path}: array {name!r} cannot be read without pickle ({exc}); store numbers "
                    "or strings"
                ) from exc
            if a.ndim == 1:
                out[name] = a
            elif a.ndim == 2:
                for j in range(a.shape[1]):
                    out[f"{name}[{j}]"] = a[:, j]
            else:
                raise ValueError(
                    f"{path}: array {name!r} has shape {a.shape}; expected 1-D (a column) or 2-D "
                    "(N, k) (k columns)"
                )
    return {k: _npz_column(v) for k, v in out.items()}


def _npz_column(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "biuf":
        return a.astype(np.float64)
    if a.dtype.kind in "US":
        return np.array([None if str(v).strip().lower() in _MISSING else str(v) for v in a], object)
    return np.array([None] * len(a), dtype=object)


def _read_parquet(path: Path) -> dict[str, np.ndarray]:
    try:
        import pyarrow as pa  # optional: the cli extra
        import pyarrow.parquet as pq  # optional: the cli extra
    except ImportError as exc:
        raise ValueError(
            f"{path}: reading .parquet files needs pyarrow; install it with "
            "`pip install 'longtail[cli]'` (or `pip install pyarrow`)"
        ) from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read the .parquet file ({exc})") from exc
    out: dict[str, np.ndarray] = {}
    for name in table.column_names:
        col = table.column(name)
        t = col.type
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
            values = col.cast(pa.float64()).to_pylist()
            out[name] = np.array([math.nan if v is None else v for v in values], np.float64)
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            out[name] = np.array(col.to_pylist(), dtype=object)
        else:
            out[name] = np.array([None] * len(col), dtype=object)
    return out


def read_table(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """All columns of a ``.csv`` / ``.npz`` / ``.parquet`` file (see the module docstring).

    Returns:
        ``{name: column}`` in file order: numeric columns as ``float64`` arrays (NaN: missing), the
        others as ``object`` arrays of ``str`` (``None``: missing).

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unknown suffix, a malformed file (the message names the file and the line or
            array), a ``.csv`` file that is not UTF-8 text (:func:`check_csv_text`), columns of
            different lengths, duplicate column names, or pyarrow missing for a ``.parquet`` file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: table file not found")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        columns = _read_csv(p)
    elif suffix == ".npz":
        columns = _read_npz(p)
    elif suffix == ".parquet":
        columns = _read_parquet(p)
    else:
        raise ValueError(
            f"{p}: unknown table format {suffix!r} (expected {', '.join(TABLE_SUFFIXES)})"
        )
    lengths = {len(c) for c in columns.values()}
    if len(lengths) > 1:
        detail = ", ".join(f"{k!r}: {len(v)}" for k, v in columns.items())
        raise ValueError(f"{p}: the columns have different lengths ({detail})")
    return columns


def _row(i: int) -> str:
    return f"data row {i + 1}"


def _label_groups(columns: dict[str, np.ndarray], name: str, path: Path, key: str) -> list[str]:
    """The column(s) ``name`` refers to: the column itself, or every ``name[j]`` of a 2-D array."""
    if name in columns:
        return [name]
    expanded = [k for k in columns if k.startswith(f"{name}[") and k.endswith("]")]
    if expanded:
        return expanded
    raise ValueError(f"{key}: no column {name!r} in {path} (columns: {', '.join(columns)})")


def _class_labels(values: np.ndarray, name: str, path: Path) -> tuple[np.ndarray, list[str]]:
    if values.dtype == object:
        missing = [i for i, v in enumerate(values) if v is None]
        if missing:
            raise ValueError(f"{path}: label column {name!r} is missing at {_row(missing[0])}")
        texts = [str(v).strip() for v in values]
        names = sorted(set(texts))
        index = {n: i for i, n in enumerate(names)}
        return np.array([index[t] for t in texts], dtype=np.int64), names
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"{path}: label column {name!r} is missing at {_row(int(bad[0]))}")
    frac = np.flatnonzero(values != np.round(values))
    if frac.size:
        i = int(frac[0])
        raise ValueError(
            f"{path}: label column {name!r} has the non-integer value {float(values[i]):g} at "
            f"{_row(i)} "
            "(class labels must be integers or text)"
        )
    uniq = np.unique(values)
    names = [str(int(v)) for v in uniq]
    return np.searchsorted(uniq, values).astype(np.int64), names


def _binary_labels(values: np.ndarray, name: str, path: Path) -> np.ndarray:
    if values.dtype == object:
        present = [i for i, v in enumerate(values) if v is not None]
        if present:
            i = present[0]
            raise ValueError(
                f"{path}: label column {name!r} has the value {values[i]!r} at {_row(i)}; "
                "multi-label columns hold 0 / 1 (empty: unknown)"
            )
        return np.full(len(values), -1.0, dtype=np.float32)
    known = np.isfinite(values)
    bad = np.flatnonzero(known & (values != 0) & (values != 1))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{path}: label column {name!r} has the value {float(values[i]):g} at {_row(i)}; "
            "multi-label columns hold 0 / 1 (empty: unknown)"
        )
    return np.where(known, values, -1.0).astype(np.float32)


def load_table(
    path: str | os.PathLike[str],
    label_column: str | None = None,
    label_columns: Sequence[str] | None = None,
) -> TableData:
    """Features and labels of a table file.

    Give exactly one of:

    - ``label_column`` (single-label): the column holding the class; integer values (or text that
      reads as integers) are sorted numerically, other text alphabetically, and the sorted values
      are the class names (class ``c`` is the ``c``-th value). A missing label is an error;
    - ``label_columns`` (multi-label): one 0 / 1 column per label (missing: ``-1``, unknown); an
      ``.npz`` 2-D array may be named as a whole.

    Every other numeric column is a feature; non-numeric ones are skipped with a ``UserWarning``
    naming them. Missing feature values are NaN.

    Raises:
        ValueError: a bad file (see :func:`read_table`), a table without rows, a label column not
            found, a missing or non-integer class label, a multi-label value other than 0 / 1, or
            no numeric feature column; the message names the file, the column and the row (``data row i``: the
            i-th example, 1-based, header not counted).
        FileNotFoundError: no such file.
    """
    if (label_column is None) == (label_columns is None):
        raise ValueError("load_table: give exactly one of label_column and label_columns")
    p = Path(path)
    columns = read_table(p)
    if not columns or not len(next(iter(columns.values()))):
        header = ", ".join(columns)
        only = f" (a header row only: {header})" if header and p.suffix.lower() == ".csv" else ""
        raise ValueError(f"{p}: no data rows{only}; expected one row per example")
    if label_column is not None:
        labels = _label_groups(columns, label_column, p, "label_column")
        if len(labels) != 1:
            raise ValueError(
                f"label_column: {label_column!r} is a 2-D array of {p}; name one column "
                f"({labels[0]}, ...)"
            )
    else:
        assert label_columns is not None
        if isinstance(label_columns, str) or not label_columns:
            raise ValueError(f"label_columns: expected a non-empty list, got {label_columns!r}")
        labels = []
        for name in label_columns:
            labels += _label_groups(columns, name, p, "label_columns")
        if len(set(labels)) != len(labels):
            raise ValueError(f"label_columns: a column is named twice in {list(label_columns)}")
    features, skipped = [], []
    for name, col in columns.items():
        if name in labels:
            continue
        if col.dtype == object or not bool(np.isfinite(col).any()):
            skipped.append(name)
        else:
            features.append(name)
    if not features:
        raise ValueError(f"{p}: no numeric feature column (columns: {', '.join(columns)})")
    n = len(columns[labels[0]])
    x = np.empty((n, len(features)), dtype=np.float32)
    for j, name in enumerate(features):
        col = columns[name]
        inf = np.flatnonzero(np.isinf(col))
        if inf.size:
            raise ValueError(
                f"{p}: feature column {name!r} has the value {col[int(inf[0])]} at "
                f"{_row(int(inf[0]))}"
            )
        x[:, j] = col
    targets: Any
    if label_column is not None:
        y, names = _class_labels(columns[labels[0]], labels[0], p)
        targets = torch.from_numpy(y)
    else:
        y2 = np.stack([_binary_labels(columns[k], k, p) for k in labels], axis=1).reshape(n, -1)
        targets = torch.from_numpy(np.ascontiguousarray(y2))
        names = list(labels)
    if skipped:
        warnings.warn(
            f"{p}: non-numeric column(s) skipped (not used as features): {', '.join(skipped)}",
            UserWarning,
            stacklevel=2,
        )
    return TableData(torch.from_numpy(x), targets, tuple(names), tuple(features), tuple(skipped))
