"""Reading what ``longtail predict`` predicts, in batches of raw inputs and in constant memory.

:func:`iter_inputs` takes one or more paths and yields :class:`InputBatch` es (ids and raw
inputs, before the bundle's preprocessing):

- an image file (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.gif``, ``.webp``) or a folder of them
  (recursively, sorted): converted to the bundle's channels (grey ``L`` or ``RGB``) and resized
  (bilinear) to its size as the training images were; the id is the path;
- a table, ``.csv`` (streamed row by row), ``.parquet`` (streamed by row group) or ``.npz``: the
  bundle's feature columns found by name, in any order (other columns ignored); the id is the data
  row number (1-based; a column named ``id`` gives the ids instead);
- an IDX image file (``-ubyte``, ``.idx``, optionally ``.gz``), streamed; the id is the index.
"""

from __future__ import annotations

import csv
import gzip
import io
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from longtail.engine.datasets.preprocessing import Preprocessing

__all__ = ["IMAGE_SUFFIXES", "InputBatch", "iter_inputs", "pil_to_uint8"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
TABLE_SUFFIXES = (".csv", ".parquet", ".npz")


@dataclass
class InputBatch:
    """Ids and raw inputs (``uint8`` images or ``float64`` features), and notes for the user."""

    ids: list[str]
    x: Tensor
    notes: list[str] = field(default_factory=list)
    labels: list[str] | None = None


def _is_idx(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return name.endswith(("-ubyte", ".idx")) or name.endswith(("idx1-ubyte", "idx3-ubyte"))


def pil_to_uint8(img: Any, pre: Preprocessing) -> Tensor:
    """A PIL image as the training images were read: converted to ``L`` (1 channel) or ``RGB``,
    resized bilinearly to the bundle's size; ``uint8 (C, H, W)``."""
    from PIL import Image  # optional: the cli extra (pillow)

    img = img.convert("L" if pre.channels == 1 else "RGB")
    if img.size != (pre.width, pre.height):
        img = img.resize((pre.width, pre.height), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.array(img, dtype=np.uint8))
    return x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1).contiguous()


def _channels_of(mode: str) -> int:
    return 1 if mode in ("1", "L", "I", "F", "I;16", "P") else (4 if "A" in mode else 3)


def _image_files(paths: Sequence[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            found = sorted(
                q
                for q in p.rglob("*")
                if q.is_file()
                and q.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in q.relative_to(p).parts)
            )
            yield from found
        else:
            yield p


def _images(paths: Sequence[Path], pre: Preprocessing, batch_size: int) -> Iterator[InputBatch]:
    from PIL import Image  # optional: the cli extra (pillow)

    ids: list[str] = []
    xs: list[Tensor] = []
    noted = False
    for f in _image_files(paths):
        try:
            with Image.open(f) as img:
                notes = []
                if not noted and _channels_of(img.mode) != pre.channels:
                    notes.append(
                        f"{f}: {img.mode} image converted to {pre.channels} channel(s), as the "
                        "training images were (further images: the same, without a note)"
                    )
                    noted = True
                xs.append(pil_to_uint8(img, pre))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise ValueError(f"{f}: cannot read the image ({exc})") from None
        ids.append(str(f))
        if len(ids) == batch_size or notes:
            yield InputBatch(ids, torch.stack(xs), notes)
            ids, xs = [], []
    if ids:
        yield InputBatch(ids, torch.stack(xs))


def _feature_names(pre: Preprocessing) -> list[str] | None:
    return None if pre.feature_names is None else list(pre.feature_names)


def _select(header: Sequence[str], pre: Preprocessing, path: Path) -> list[int]:
    """Column indices of the bundle's features in ``header`` (by name; by position if the bundle
    has no names)."""
    names = _feature_names(pre)
    width = len(pre.offset)
    if names is None:
        cols = [i for i, h in enumerate(header) if h != "id"]
        if len(cols) != width:
            raise ValueError(
                f"{path}: the bundle takes {width} unnamed features (by position); the file has "
                f"{len(cols)} column(s)"
            )
        return cols
    where = {h: i for i, h in enumerate(header)}
    missing = [n for n in names if n not in where]
    if missing:
        shown = ", ".join(missing[:10]) + (
            f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        )
        raise ValueError(
            f"{path}: missing feature column(s) {shown} (the bundle's features: "
            f"{', '.join(names[:10])}{' ...' if len(names) > 10 else ''})"
        )
    return [where[n] for n in names]


def _number(text: str) -> float:
    t = text.strip()
    if t == "" or t.lower() in ("nan", "na", "?"):
        return float("nan")
    return float(t)


def _csv(
    path: Path, pre: Preprocessing, batch_size: int, label_column: str | None = None
) -> Iterator[InputBatch]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        head = fh.read(4096)
        if "\x00" in head:
            raise ValueError(f"{path}: not a text CSV file (binary bytes)")
        fh.seek(0)
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise ValueError(f"{path}: empty file (expected a header row with the column names)")
        cols = _select(header, pre, path)
        id_col = header.index("id") if "id" in header else None
        if label_column is not None and label_column not in header:
            raise ValueError(
                f"--label-column: {path} has no column {label_column!r} (columns: "
                f"{', '.join(header[:12])}{' ...' if len(header) > 12 else ''})"
            )
        label_col = None if label_column is None else header.index(label_column)
        labels: list[str] = []
        ids: list[str] = []
        rows: list[list[str]] = []
        first = 1
        for n, row in enumerate(reader, start=1):
            if not row:
                continue
            try:
                rows.append([row[c] for c in cols])
            except IndexError:
                raise ValueError(f"{path}: data row {n}: fewer columns than the header") from None
            ids.append(row[id_col] if id_col is not None and id_col < len(row) else str(n))
            if label_col is not None:
                labels.append(row[label_col].strip() if label_col < len(row) else "")
            if len(rows) == batch_size:
                yield InputBatch(ids, _numbers(rows, path, first), labels=labels or None)
                ids, rows, labels, first = [], [], [], n + 1
        if rows:
            yield InputBatch(ids, _numbers(rows, path, first), labels=labels or None)


def _numbers(rows: list[list[str]], path: Path, first: int) -> Tensor:
    """A batch of CSV cells as float64 (empty, ``NA``, ``?``: missing, NaN)."""
    try:
        return torch.from_numpy(np.array(rows, dtype=np.float64))
    except ValueError:
        pass
    out = []
    for k, row in enumerate(rows):
        try:
            out.append([_number(v) for v in row])
        except ValueError:
            raise ValueError(
                f"{path}: data row {first + k}: a feature value is not a number"
            ) from None
    return torch.tensor(out, dtype=torch.float64)


def _parquet(path: Path, pre: Preprocessing, batch_size: int) -> Iterator[InputBatch]:
    import pyarrow.parquet as pq  # optional: the cli extra (pyarrow)

    f = pq.ParquetFile(path)
    header = list(f.schema_arrow.names)
    cols = _select(header, pre, path)
    names = [header[c] for c in cols]
    has_id = "id" in header
    start = 0
    for batch in f.iter_batches(batch_size=batch_size, columns=names + (["id"] if has_id else [])):
        x = np.stack(
            [batch.column(n).to_numpy(zero_copy_only=False).astype(np.float64) for n in names],
            axis=1,
        )
        ids = (
            [str(v) for v in batch.column("id").to_pylist()]
            if has_id
            else [str(start + i + 1) for i in range(len(x))]
        )
        start += len(x)
        yield InputBatch(ids, torch.from_numpy(x))


def _npz(path: Path, pre: Preprocessing, batch_size: int) -> Iterator[InputBatch]:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    columns: dict[str, np.ndarray] = {}
    for k, a in arrays.items():
        if a.ndim == 1:
            columns[k] = a
        elif a.ndim == 2:
            for j in range(a.shape[1]):
                columns[f"{k}[{j}]"] = a[:, j]
    header = list(columns)
    cols = _select(header, pre, path)
    x = np.stack([columns[header[c]].astype(np.float64) for c in cols], axis=1)
    ids = (
        [str(v) for v in columns["id"]] if "id" in columns else [str(i + 1) for i in range(len(x))]
    )
    for i in range(0, len(x), batch_size):
        yield InputBatch(ids[i : i + batch_size], torch.from_numpy(x[i : i + batch_size]))


def _idx(path: Path, pre: Preprocessing, batch_size: int) -> Iterator[InputBatch]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as raw:
        fh: io.BufferedIOBase = raw
        head = fh.read(4)
        if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] != 0x08:
            raise ValueError(f"{path}: not an IDX file of unsigned bytes (magic {head.hex()})")
        ndim = head[3]
        dims = struct.unpack(f">{ndim}I", fh.read(4 * ndim))
        if ndim != 3:
            raise ValueError(f"{path}: expected IDX images (3 dimensions), got {ndim}")
        n, h, w = dims
        if pre.channels != 1:
            raise ValueError(
                f"{path}: IDX images are grey; the bundle takes {pre.channels} channels"
            )
        resize = (h, w) != (pre.height, pre.width)
        start = 0
        while start < n:
            k = min(batch_size, n - start)
            data = fh.read(k * h * w)
            if len(data) != k * h * w:
                raise ValueError(
                    f"{path}: truncated after image {start + len(data) // (h * w)} of {n}"
                )
            x = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(k, 1, h, w)
            if resize:
                from PIL import Image  # optional: the cli extra (pillow)

                x = torch.stack([pil_to_uint8(Image.fromarray(im[0].numpy()), pre) for im in x])
            yield InputBatch([str(start + i) for i in range(k)], x)
            start += k


def iter_inputs(
    paths: Sequence[str | Path],
    pre: Preprocessing,
    batch_size: int = 256,
    *,
    label_column: str | None = None,
) -> Iterator[InputBatch]:
    """Batches of raw inputs from ``paths`` (see the module docstring).

    Raises:
        ValueError: a path that does not exist, a kind of file the bundle cannot take (a table
            for an image bundle...), a missing feature column (named), a file that cannot be read.
    """
    ps = [Path(p) for p in paths]
    if label_column is not None and not (
        len(ps) == 1 and ps[0].suffix.lower() == ".csv" and pre.kind == "features"
    ):
        raise ValueError("--label-column: the true classes are read from a .csv table only")
    for p in ps:
        if not p.exists():
            raise ValueError(f"INPUT: {p} does not exist")
    tables = [p for p in ps if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES]
    idx = [p for p in ps if p.is_file() and _is_idx(p)]
    if tables or idx:
        if len(ps) != 1:
            raise ValueError(
                "INPUT: give one table or IDX file at a time (or image files and folders)"
            )
        p = ps[0]
        if tables:
            if pre.kind != "features":
                raise ValueError(f"INPUT: {p} is a table; this bundle takes images")
            if p.suffix.lower() == ".csv":
                yield from _csv(p, pre, batch_size, label_column)
                return
            if label_column is not None:
                raise ValueError("--label-column: read from a .csv table only")
            reader = {".parquet": _parquet, ".npz": _npz}[p.suffix.lower()]
            yield from reader(p, pre, batch_size)
        else:
            if pre.kind != "image":
                raise ValueError(
                    f"INPUT: {p} is an IDX image file; this bundle takes feature vectors"
                )
            yield from _idx(p, pre, batch_size)
        return
    if pre.kind != "image":
        raise ValueError(
            f"INPUT: {', '.join(map(str, ps))}: this bundle takes feature vectors (a .csv, "
            ".parquet or .npz table)"
        )
    for p in ps:
        if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(
                f"INPUT: {p}: not an image ({', '.join(IMAGE_SUFFIXES)}), table or IDX file"
            )
    yield from _images(ps, pre, batch_size)
