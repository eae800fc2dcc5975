"""ARFF data rows into preallocated arrays (private to :mod:`longtail.data.arff`).

:func:`read_rows` reads the ``@data`` section straight into float32 feature and label arrays,
allocated once (no Python object per cell, no array per row). A plain row (no quote, no ``?``;
sparse: ``{index value, ...}`` with non-negative integer indices) takes a fast path: its tokens are
converted by ``float`` or a dict lookup of the declared nominal values, a dense row written in
place, a sparse row's entries kept in compact arrays and scattered once at the end. Any other row,
and any row the fast path cannot read, goes through :func:`_parse_row`, the reference parser: the
same values (features as ``float(token)`` or the nominal value's index, labels 0 / 1, ``?`` NaN /
-1) and its error messages (file, line, column).
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["read_rows"]


class _Attribute:
    __slots__ = ("codes", "line", "name")

    def __init__(self, name: str, codes: dict[str, float] | None, line: int) -> None:
        self.name = name
        self.codes = codes  # None for numeric; value -> code for nominal
        self.line = line


def _unquote(token: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        inner = token[1:-1]
        return re.sub(r"\\(.)", r"\1", inner)
    return token


def _split_values(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside quotes; keep quotes (they are removed later)."""
    if "'" not in text and '"' not in text:
        return text.split(sep)
    out: list[str] = []
    cur: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            cur.append(ch)
            if ch == "\\" and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            cur.append(ch)
        elif ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    if quote:
        raise ValueError("unterminated quote")
    out.append("".join(cur))
    return out


def _convert(
    path: Path, lineno: int, attribute: _Attribute, token: str, is_label: bool, column: int
) -> float:
    token = token.strip()
    if token == "?":
        return -1.0 if is_label else math.nan
    if attribute.codes is None:
        try:
            value = float(token)
        except ValueError:
            raise ValueError(
                f"{path}:{lineno}: column {column} ({attribute.name!r}): {token[:40]!r} is not "
                f"a number"
            ) from None
        if is_label and value not in (0.0, 1.0):
            raise ValueError(
                f"{path}:{lineno}: label {attribute.name!r} has value {token!r}, expected 0 or 1"
            )
        return value
    value_str = _unquote(token)
    if value_str not in attribute.codes:
        raise ValueError(
            f"{path}:{lineno}: column {column} ({attribute.name!r}): {token[:40]!r} is not one "
            f"of the declared nominal values"
        )
    return float(value_str) if is_label else attribute.codes[value_str]


def _parse_row(
    path: Path,
    lineno: int,
    line: str,
    attributes: list[_Attribute],
    label_set: set[int],
    defaults: np.ndarray,
) -> np.ndarray:
    n_attr = len(attributes)
    if line.startswith("{"):
        if not line.endswith("}"):
            raise ValueError(f"{path}:{lineno}: sparse row without a closing '}}'")
        row: np.ndarray = np.array(defaults, dtype=np.float64)
        body = line[1:-1].strip()
        if not body:
            return row
        try:
            entries = _split_values(body)
        except ValueError as exc:
            raise ValueError(f"{path}:{lineno}: {exc}") from exc
        seen: set[int] = set()
        for entry in entries:
            parts = entry.strip().split(None, 1)
            if len(parts) != 2:
                raise ValueError(
                    f"{path}:{lineno}: sparse entry {entry.strip()[:40]!r} is not 'index value'"
                )
            try:
                j = int(parts[0])
            except ValueError:
                raise ValueError(
                    f"{path}:{lineno}: sparse index {parts[0][:20]!r} is not an integer"
                ) from None
            if not 0 <= j < n_attr:
                raise ValueError(
                    f"{path}:{lineno}: sparse index {j} outside [0, {n_attr}) attributes"
                )
            if j in seen:
                raise ValueError(f"{path}:{lineno}: sparse index {j} appears twice")
            seen.add(j)
            row[j] = _convert(path, lineno, attributes[j], parts[1], j in label_set, j)
        return row
    try:
        tokens = _split_values(line)
    except ValueError as exc:
        raise ValueError(f"{path}:{lineno}: {exc}") from exc
    if len(tokens) != n_attr:
        raise ValueError(
            f"{path}:{lineno}: row has {len(tokens)} values, expected {n_attr} attributes"
        )
    row = np.empty(n_attr)
    for j, token in enumerate(tokens):
        row[j] = _convert(path, lineno, attributes[j], token, j in label_set, j)
    return row


#: A sparse row's body that the fast path reads: blank, or ``index value`` entries (a non-negative
#: integer index, one value token without a comma, brace, blank, quote or ``?``), separated by
#: commas.
_ENTRY = r"[0-9]+\s+[^\s,{}'\"?]+\s*"
_SPARSE_BODY = re.compile(rf"\s*(?:{_ENTRY}(?:,\s*{_ENTRY})*)?")
#: Numeric labels the fast path reads (any other value goes through :func:`_parse_row`).
_BINARY = {"0": 0.0, "1": 1.0}


class _Plan:
    """How the fast path converts each attribute's token and where its value goes."""

    def __init__(self, attributes: Sequence[_Attribute], columns: Sequence[int]) -> None:
        n_attr = len(attributes)
        label_set = set(columns)
        self.label_set = label_set
        self.features = [j for j in range(n_attr) if j not in label_set]
        self.labels = list(columns)
        convs: list[Callable[[str], float]] = []
        for j, a in enumerate(attributes):
            if a.codes is None:  # numeric: a label takes only "0" / "1" here
                convs.append(_BINARY.__getitem__ if j in label_set else float)
            elif j in label_set:  # nominal {0,1} label: its value, not its code
                convs.append({v: float(v) for v in a.codes}.__getitem__)
            else:
                convs.append(a.codes.__getitem__)
        self.convs = convs
        self.feature_convs = [convs[j] for j in self.features]
        self.label_convs = [convs[j] for j in self.labels]
        self.features_float = all(c is float for c in self.feature_convs)
        self.take_features = itemgetter(*self.features)
        self.take_labels = itemgetter(*self.labels)
        # sparse rows: an omitted value is 0, i.e. the first nominal value
        self.defaults = np.zeros(n_attr)
        for j in columns:
            codes = attributes[j].codes
            if codes is not None:
                self.defaults[j] = float(next(iter(codes)))
        self.feature_at = np.full(n_attr, -1, dtype=np.int64)
        self.feature_at[self.features] = np.arange(len(self.features))
        self.label_at = np.full(n_attr, -1, dtype=np.int64)
        self.label_at[self.labels] = np.arange(len(self.labels))


def _as_list(tokens: str | tuple[str, ...]) -> list[str]:
    """What an ``itemgetter`` took: a tuple of tokens, or one token (a single column)."""
    return list(tokens) if isinstance(tokens, tuple) else [tokens]


def _dense_fast(line: str, plan: _Plan, n_attr: int) -> tuple[list[float], list[float]] | None:
    """(features, labels) of a plain dense row, or None for :func:`_parse_row` to read."""
    if "'" in line or '"' in line or "?" in line:
        return None
    tokens = line.split(",")
    if len(tokens) != n_attr:
        return None
    feats: Any = plan.take_features(tokens)
    labs: Any = plan.take_labels(tokens)
    try:
        if plan.features_float:
            fvals = list(map(float, feats)) if isinstance(feats, tuple) else [float(feats)]
        else:
            fvals = [c(t) for c, t in zip(plan.feature_convs, _as_list(feats), strict=True)]
        lvals = [c(t) for c, t in zip(plan.label_convs, _as_list(labs), strict=True)]
    except (ValueError, KeyError):
        return None
    return fvals, lvals


def _sparse_fast(line: str, plan: _Plan, n_attr: int) -> tuple[list[int], list[float]] | None:
    """(attribute indices, values) of a plain sparse row, or None for :func:`_parse_row`."""
    body = line[1:-1]
    if not line.endswith("}") or _SPARSE_BODY.fullmatch(body) is None:
        return None
    tokens = body.replace(",", " ").split()
    if not tokens:
        return [], []
    index = list(map(int, tokens[0::2]))
    if max(index) >= n_attr or len(set(index)) != len(index):
        return None
    convs = plan.convs
    try:
        values = [convs[j](t) for j, t in zip(index, tokens[1::2], strict=True)]
    except (ValueError, KeyError):
        return None
    return index, values


def _upper_row_count(file: Path, n_attr: int) -> int:
    """An upper bound of the data rows of ``file``: its lines after the ``n_attr`` attribute lines
    and the ``@data`` line."""
    newlines = 0
    with open(file, "rb") as handle:
        while chunk := handle.read(1 << 20):
            newlines += chunk.count(b"\n")
    return max(newlines + 1 - (n_attr + 1), 0)


def read_rows(
    file: Path,
    lines: Iterator[tuple[int, str, bool]],
    attributes: list[_Attribute],
    columns: Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:
    """The float32 ``(N, F)`` features and ``(N, L)`` labels (``columns`` order) of the data rows.

    The arrays are allocated once (an upper bound of the row count from the file's line count);
    a dense row is written in place, a sparse row's entries are kept as compact (row, attribute,
    value) arrays and scattered once at the end. A row the fast path does not read (quotes, ``?``,
    blanks around nominal values, any error) goes through :func:`_parse_row`: the same values, and
    its error messages.
    """
    n_attr = len(attributes)
    plan = _Plan(attributes, columns)
    capacity = _upper_row_count(file, n_attr)
    features = np.zeros((capacity, len(plan.features)), dtype=np.float32)
    labels = np.zeros((capacity, len(plan.labels)), dtype=np.float32)
    label_defaults = plan.defaults[plan.labels]
    sparse_defaults = bool(label_defaults.any())
    rows, counts = array("q"), array("q")  # sparse rows and their entry counts
    index, values = array("q"), array("d")  # their entries
    n = 0
    for lineno, line, ended in lines:
        if n >= capacity:  # pragma: no cover - the line count bounds the rows
            raise AssertionError(f"{file}: more data rows than lines")
        fast: Any = (
            _sparse_fast(line, plan, n_attr)
            if line.startswith("{")
            else _dense_fast(line, plan, n_attr)
        )
        if fast is None:
            try:
                row = _parse_row(file, lineno, line, attributes, plan.label_set, plan.defaults)
            except ValueError as exc:
                if ended:
                    raise
                raise ValueError(
                    f"{exc} (the file ends inside this line, without a line end: is "
                    f"{file.name} truncated?)"
                ) from None
            features[n] = row[plan.features]
            labels[n] = row[plan.labels]
        elif line.startswith("{"):
            if sparse_defaults:
                labels[n] = label_defaults
            rows.append(n)
            counts.append(len(fast[0]))
            index.extend(fast[0])
            values.extend(fast[1])
        else:
            features[n] = fast[0]
            labels[n] = fast[1]
        n += 1
    if index:
        at = np.frombuffer(index, dtype=np.int64)
        val = np.frombuffer(values, dtype=np.float64)
        row_of = np.repeat(np.frombuffer(rows, dtype=np.int64), np.frombuffer(counts, np.int64))
        f_at = plan.feature_at[at]
        is_feature = f_at >= 0
        features[row_of[is_feature], f_at[is_feature]] = val[is_feature]
        is_label = ~is_feature
        labels[row_of[is_label], plan.label_at[at[is_label]]] = val[is_label]
    if n < capacity:
        # a view of the first n rows; copied when the spare rows (comments, blank lines) are many
        features, labels = features[:n], labels[:n]
        if capacity - n > max(64, capacity // 8):
            features, labels = features.copy(), labels.copy()
    return features, labels
