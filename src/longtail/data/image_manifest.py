"""Image manifests: a CSV file listing image files and their labels, single- or multi-label.

The common format of tagged photos (fashion attributes, product tags). One header row, then one
row per image (the :mod:`csv` module: comma-separated, quotes allowed, UTF-8, blank lines skipped):

- the *path column* (default ``path``): the image file, relative to the manifest's folder (``/``
  separators). An absolute path is allowed only inside that folder; a path that leaves it
  (``../``, or absolute elsewhere) is refused, and so is a file listed twice. Every file must exist
  when the manifest is read (nothing is decoded then: see :class:`ImageFilesDataset`).
- the labels, one of three layouts:

  - ``label_column`` (single-label): the class of each image; the classes are the distinct values,
    sorted (numerically when every value is an integer), and a blank cell is an error;
  - ``label_column`` with ``tag_separator`` (multi-label): the image's tags, e.g.
    ``red;shirt;cotton``; the labels are the distinct tags, sorted; blanks around a tag and empty
    tags are ignored; a blank cell (or ``-1``) leaves every label of the image unknown (``-1``);
  - ``label_columns`` (multi-label): one column per label holding ``0`` or ``1``; a blank cell or
    ``-1`` is unknown (``-1``).

- an optional ``split`` column (:data:`SPLIT_COLUMN`): ``train`` or ``test`` per image (any
  case); without it the caller draws a test split.

Every error is a ``ValueError`` (a missing manifest or image: ``FileNotFoundError``) whose message
names the manifest and, for a row, its line (the header is line 1).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch

from longtail.data.table import check_csv_text

__all__ = ["SPLIT_COLUMN", "ImageManifest", "read_image_manifest"]

#: The optional column of a manifest holding ``train`` / ``test`` per image.
SPLIT_COLUMN = "split"
_UNKNOWN = ("", "-1")


class ImageManifest(NamedTuple):
    """The images and labels of a manifest (see :func:`read_image_manifest`).

    Attributes:
        paths: the image files, absolute, one per row.
        targets: single-label: ``int64 (N,)`` class indices; multi-label: ``float32 (N, L)`` in
            ``{0, 1}``, ``-1`` unknown.
        class_names: the classes (single-label) or labels (multi-label), in index order.
        lines: the line of each row in the manifest.
        split: ``"train"`` / ``"test"`` per row from the ``split`` column, ``None`` without one.
        root: the manifest's folder (absolute): the paths are relative to it.
    """

    paths: list[str]
    targets: torch.Tensor
    class_names: list[str]
    lines: list[int]
    split: list[str] | None
    root: Path


def _sorted_names(values: set[str]) -> list[str]:
    """Sorted numerically when every value is an integer, else alphabetically."""
    try:
        return sorted(values, key=int)
    except ValueError:
        return sorted(values)


def _rows(
    path: Path, needed: Sequence[tuple[str, str]]
) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the ``(line, cells)`` rows, checked for shape; ``needed``: ``(argument,
    column)`` pairs that must be in the header."""
    rows: list[tuple[int, list[str]]] = []
    check_csv_text(path)
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, strict=True)
        try:
            header = next(reader, None)
            if header is None or not any(h.strip() for h in header):
                raise ValueError(
                    f"{path}: empty manifest (expected a header row naming the path and label "
                    "columns, then one row per image)"
                )
            check_csv_text(path, header)
            names = [h.strip() for h in header]
            dupes = sorted({h for h in names if names.count(h) > 1})
            if dupes:
                raise ValueError(f"{path}: duplicate column names {dupes}")
            for arg, column in needed:
                if column not in names:
                    raise ValueError(
                        f"{path}: no column {column!r} ({arg}); columns found: {', '.join(names)}"
                    )
            for cells in reader:
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue  # blank line
                if len(cells) != len(names):
                    raise ValueError(
                        f"{path}: line {reader.line_num} has {len(cells)} fields, the header has "
                        f"{len(names)}"
                    )
                rows.append((reader.line_num, [c.strip() for c in cells]))
        except csv.Error as exc:
            raise ValueError(f"{path}: line {reader.line_num}: malformed CSV ({exc})") from None
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start} of a block)"
            ) from None
    if not rows:
        raise ValueError(f"{path}: empty manifest (a header but no image rows)")
    return names, rows


def _image_path(manifest: Path, root: Path, line: int, value: str, column: str) -> str:
    """The absolute path of a row's image, refused when it leaves ``root`` or does not exist."""
    if not value:
        raise ValueError(f"{manifest}: line {line}: no image path in column {column!r}")
    full = os.path.normpath(os.path.join(root, value))
    try:
        inside = os.path.commonpath([root, full]) == str(root)
    except ValueError:  # another drive (Windows)
        inside = False
    if not inside:
        raise ValueError(
            f"{manifest}: line {line}: image path {value!r} is outside the manifest's folder "
            f"{root} (paths are relative to it; ../ or an absolute path elsewhere is refused)"
        )
    if not os.path.isfile(full):
        raise FileNotFoundError(f"{manifest}: line {line}: image file not found: {full}")
    return full


def _binary(manifest: Path, line: int, column: str, value: str) -> float:
    if value in _UNKNOWN:
        return -1.0
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if number not in (0.0, 1.0, -1.0):
        raise ValueError(
            f"{manifest}: line {line}: label column {column!r} has {value!r}; a 0/1 label "
            "column holds 0, 1, or blank / -1 (unknown)"
        )
    return number


def read_image_manifest(
    path: str | os.PathLike[str],
    *,
    path_column: str = "path",
    label_column: str | None = None,
    label_columns: Sequence[str] | None = None,
    tag_separator: str | None = None,
) -> ImageManifest:
    """Read a manifest (see the module docstring): files checked, labels parsed, nothing decoded.

    Give exactly one of ``label_column`` (single-label; with ``tag_separator``: multi-label tags)
    and ``label_columns`` (multi-label 0/1 columns).

    Raises:
        FileNotFoundError: no manifest, or an image file that does not exist (naming it and the
            manifest's line).
        ValueError: a malformed or empty manifest, a column not in the header (the message lists
            the columns found), a row of the wrong length, a path outside the manifest's folder or
            listed twice, a blank class, a 0/1 column value other than 0 / 1 / blank / -1, a
            ``split`` value other than train / test, or a split without training or test rows.
    """
    if (label_column is None) == (label_columns is None):
        raise ValueError("read_image_manifest: give exactly one of label_column and label_columns")
    if tag_separator is not None and (label_column is None or not tag_separator):
        raise ValueError("tag_separator: a non-empty string, used with label_column only")
    manifest = Path(path)
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: manifest file not found")
    root = Path(os.path.abspath(manifest.parent))
    label_cols = [label_column] if label_column is not None else list(label_columns or [])
    needed = [("path_column", path_column)]
    key = "label_column" if label_column is not None else "label_columns"
    needed += [(key, c) for c in label_cols]
    clash = sorted({path_column, SPLIT_COLUMN} & set(label_cols))
    if clash or len(set(label_cols)) != len(label_cols):
        raise ValueError(
            f"{manifest}: the label columns {label_cols} must be distinct and differ from the path "
            f"column {path_column!r} and the {SPLIT_COLUMN!r} column"
        )
    names, rows = _rows(manifest, needed)
    at = {n: j for j, n in enumerate(names)}
    paths: list[str] = []
    first: dict[str, int] = {}
    for line, cells in rows:
        full = _image_path(manifest, root, line, cells[at[path_column]], path_column)
        if full in first:
            raise ValueError(
                f"{manifest}: line {line}: image {cells[at[path_column]]!r} is listed twice "
                f"(also on line {first[full]})"
            )
        first[full] = line
        paths.append(full)
    lines = [line for line, _ in rows]
    split = None
    if SPLIT_COLUMN in at:
        split = [cells[at[SPLIT_COLUMN]].lower() for _, cells in rows]
        for line, s in zip(lines, split, strict=True):
            if s not in ("train", "test"):
                raise ValueError(
                    f"{manifest}: line {line}: column {SPLIT_COLUMN!r} has {s!r}; expected train "
                    "or test"
                )
        for part in ("train", "test"):
            if part not in split:
                raise ValueError(f"{manifest}: column {SPLIT_COLUMN!r} marks no image {part}")
    if label_columns is not None:
        targets = torch.tensor(
            [[_binary(manifest, n, c, cells[at[c]]) for c in label_cols] for n, cells in rows],
            dtype=torch.float32,
        ).reshape(len(rows), len(label_cols))
        return ImageManifest(paths, targets, label_cols, lines, split, root)
    assert label_column is not None
    values = [cells[at[label_column]] for _, cells in rows]
    if tag_separator is None:
        for line, v in zip(lines, values, strict=True):
            if not v:
                raise ValueError(f"{manifest}: line {line}: no class in column {label_column!r}")
        classes = _sorted_names(set(values))
        index = {c: i for i, c in enumerate(classes)}
        single = torch.tensor([index[v] for v in values], dtype=torch.int64)
        return ImageManifest(paths, single, classes, lines, split, root)
    tags = [
        None if v in _UNKNOWN else {t.strip() for t in v.split(tag_separator)} - {""}
        for v in values
    ]
    labels = _sorted_names(set().union(*(t for t in tags if t is not None)))
    if not labels:
        raise ValueError(f"{manifest}: column {label_column!r} holds no tag in any row")
    index = {c: i for i, c in enumerate(labels)}
    multi = torch.zeros((len(rows), len(labels)), dtype=torch.float32)
    for i, row_tags in enumerate(tags):
        if row_tags is None:
            multi[i] = -1.0
        else:
            multi[i, [index[t] for t in row_tags]] = 1.0
    return ImageManifest(paths, multi, labels, lines, split, root)
