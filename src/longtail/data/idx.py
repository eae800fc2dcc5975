"""Reader for IDX files (MNIST, Fashion-MNIST, KMNIST, EMNIST), raw or gzip-compressed.

IDX layout (LeCun et al.): a 4-byte magic ``00 00 <type> <ndim>``, then ``ndim`` big-endian
``uint32`` dimension sizes, then the payload in C order. Only ``type == 0x08`` (unsigned byte) is
accepted, with ``ndim == 3`` for images ``(N, H, W)`` and ``ndim == 1`` for labels ``(N,)``.

Every file is treated as untrusted input: the header is checked against the bytes that really
follow it before anything of the size the header promises is allocated.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from longtail.data._types import LabeledTensors

__all__ = ["check_idx_labels", "load_idx"]

_UBYTE = 0x08
_CHUNK = 1 << 20
# Deflate cannot expand data by more than ~1032:1; anything promising more is a lie (or a bomb).
_MAX_DEFLATE_RATIO = 1032

_FILE_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(directory: Path, stem: str) -> Path:
    """Return ``stem``, ``stem.gz`` or the dotted variant (``train-images.idx3-ubyte``)."""
    dotted = stem.replace("-idx", ".idx")
    candidates = [stem, stem + ".gz", dotted, dotted + ".gz"]
    for name in candidates:
        path = directory / name
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"directory: no IDX file {stem!r} (or .gz / dotted variant) in {str(directory)!r}"
    )


def _parse_header(path: Path, head: bytes, expected_ndim: int) -> tuple[int, ...]:
    """Validate magic and dimensions; return the dimension sizes."""
    if len(head) < 4:
        raise ValueError(f"{path}: offset 0: file too short for an IDX magic number")
    zero0, zero1, dtype_code, ndim = head[0], head[1], head[2], head[3]
    if zero0 != 0 or zero1 != 0:
        raise ValueError(
            f"{path}: offset 0: bad IDX magic number 0x{head[:4].hex()} (must start with 0000)"
        )
    if dtype_code != _UBYTE:
        raise ValueError(
            f"{path}: offset 2: unsupported IDX data type 0x{dtype_code:02x} "
            f"(only 0x08 unsigned byte is supported)"
        )
    if ndim != expected_ndim:
        raise ValueError(
            f"{path}: offset 3: IDX file has {ndim} dimensions, expected {expected_ndim} "
            f"(magic 0x{head[:4].hex()})"
        )
    need = 4 + 4 * ndim
    if len(head) < need:
        raise ValueError(
            f"{path}: offset {len(head)}: file ends inside the IDX header "
            f"({need} header bytes needed)"
        )
    return tuple(struct.unpack(f">{ndim}I", head[4:need]))


def _read_exact_gzip(path: Path, stream: gzip.GzipFile, size: int, offset: int) -> bytearray:
    """Read exactly ``size`` decompressed bytes in chunks, then check the stream is at its end.

    Memory grows with the bytes actually decompressed, never with the header's promise.
    """
    buf = bytearray()
    try:
        while len(buf) < size:
            chunk = stream.read(min(_CHUNK, size - len(buf)))
            if not chunk:
                raise ValueError(
                    f"{path}: offset {offset + len(buf)}: data ends early; the header promises "
                    f"{size} payload bytes but only {len(buf)} follow"
                )
            buf += chunk
        extra = stream.read(1)
    except (EOFError, OSError, zlib.error) as exc:
        raise ValueError(
            f"{path}: offset {offset + len(buf)} (decompressed): corrupt or truncated gzip "
            f"stream: {exc}"
        ) from exc
    if extra:
        raise ValueError(
            f"{path}: offset {offset + size}: trailing data after the {size} payload bytes "
            f"the header promises"
        )
    return buf


def _read_idx(path: Path, expected_ndim: int) -> tuple[tuple[int, ...], np.ndarray]:
    """Read one IDX file (raw or gzip) into a ``uint8`` array of the header's shape."""
    header_len = 4 + 4 * expected_ndim
    file_size = os.path.getsize(path)
    if path.suffix == ".gz":
        with open(path, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            try:
                head = stream.read(header_len)
            except (EOFError, OSError, zlib.error) as exc:
                raise ValueError(
                    f"{path}: offset 0 (decompressed): corrupt or truncated gzip stream: {exc}"
                ) from exc
            dims = _parse_header(path, head, expected_ndim)
            payload = int(np.prod(dims, dtype=object)) if dims else 0
            bound = _MAX_DEFLATE_RATIO * file_size + header_len
            if payload > bound:
                raise ValueError(
                    f"{path}: offset 4: header promises {payload} payload bytes, more than a "
                    f"{file_size}-byte gzip file can hold (at most {bound})"
                )
            buf = _read_exact_gzip(path, stream, payload, header_len)
        array = np.frombuffer(buf, dtype=np.uint8)
    else:
        with open(path, "rb") as raw:
            head = raw.read(header_len)
            dims = _parse_header(path, head, expected_ndim)
            payload = int(np.prod(dims, dtype=object)) if dims else 0
            actual = file_size - header_len
            if payload != actual:
                raise ValueError(
                    f"{path}: offset {header_len}: header promises {payload} payload bytes "
                    f"but the file holds {actual}"
                )
            buf = bytearray(payload)
            got = raw.readinto(buf)
            if got != payload:  # pragma: no cover - file changed under us
                raise ValueError(f"{path}: offset {header_len + got}: file shrank while reading")
        array = np.frombuffer(buf, dtype=np.uint8)
    return dims, array.reshape(dims)


def _ranges(values: list[int], limit: int = 4) -> str:
    """``[3, 5, 6, 7, 10]`` -> ``"3, 5-7, 10"`` (at most ``limit`` runs, then ``...``)."""
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    text = [str(a) if a == b else f"{a}-{b}" for a, b in runs[:limit]]
    return ", ".join(text + (["..."] if len(runs) > limit else []))


def check_idx_labels(directory: str | os.PathLike[str]) -> int:
    """Check that an IDX folder's labels are the classes ``0..K-1`` of a classification set.

    Reads only the two label files. The training labels must give every class from 0 to their
    largest value samples (``K = largest + 1``); the test labels must lie in ``0..K-1``. A label far
    outside the others (a corrupt or mislabelled sample, e.g. ``200`` among ``0..9``) would otherwise
    make ``K - 10`` empty classes.

    Returns:
        ``K``, the number of classes.

    Raises:
        ValueError: a class in ``0..K-1`` without training samples (the message names the labels
            file, the largest label value and how many samples hold it), a test label ``>= K``
            (naming the file, the value and its count), or a malformed file (as :func:`load_idx`).
        FileNotFoundError: a labels file or the folder is missing.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"directory: {str(folder)!r} is not a directory")
    train_path = _find(folder, _FILE_STEMS["train"][1])
    _, train = _read_idx(train_path, expected_ndim=1)
    if train.size == 0:
        raise ValueError(f"{train_path}: holds no labels")
    counts = np.bincount(train, minlength=1)
    top = int(train.max())
    missing = [int(c) for c in np.flatnonzero(counts == 0)]
    if missing:
        n = int(counts[top])
        raise ValueError(
            f"{train_path}: label {top} is held by {n} sample(s), but labels must be the classes "
            f"0..K-1 with K = {top + 1} (the largest label + 1) and {len(missing)} of those have "
            f"no samples ({_ranges(missing)}); fix or remove the samples labelled {top}"
        )
    test_path = _find(folder, _FILE_STEMS["test"][1])
    _, test = _read_idx(test_path, expected_ndim=1)
    outside = test[test > top]
    if outside.size:
        value = int(outside.max())
        n = int((test == value).sum())
        raise ValueError(
            f"{test_path}: label {value} is held by {n} test sample(s), but the training labels "
            f"({train_path}) are the classes 0..{top}"
        )
    return top + 1


def load_idx(directory: str | os.PathLike[str], split: str = "train") -> LabeledTensors:
    """Load an MNIST-format folder (MNIST, Fashion-MNIST, KMNIST, ...).

    Looks in ``directory`` for ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte``
    (``split="train"``) or ``t10k-images-idx3-ubyte`` / ``t10k-labels-idx1-ubyte``
    (``split="test"``), each raw or with a ``.gz`` suffix (the dotted names
    ``train-images.idx3-ubyte`` are accepted too).

    Args:
        directory: folder holding the four standard files.
        split: ``"train"`` or ``"test"``.

    Returns:
        :class:`LabeledTensors` with ``data`` ``uint8`` of shape ``(N, H, W)``, ``targets``
        ``int64`` of shape ``(N,)`` and ``class_names=None`` (IDX stores no names).

    Raises:
        ValueError: ``split`` unknown; or a file is malformed: wrong magic number, data type other
            than unsigned byte, wrong number of dimensions, header promising more or fewer bytes
            than the file holds, truncated or corrupt gzip stream, image and label counts
            that disagree. The message names the file and the byte offset.
        FileNotFoundError: a file is missing.
    """
    if split not in _FILE_STEMS:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"directory: {str(folder)!r} is not a directory")
    image_stem, label_stem = _FILE_STEMS[split]
    image_path = _find(folder, image_stem)
    label_path = _find(folder, label_stem)

    label_dims, labels = _read_idx(label_path, expected_ndim=1)
    image_dims, images = _read_idx(image_path, expected_ndim=3)
    if image_dims[0] != label_dims[0]:
        raise ValueError(
            f"{image_path}: offset 4: {image_dims[0]} images but {label_path} holds "
            f"{label_dims[0]} labels"
        )
    data = torch.from_numpy(images)
    targets = torch.from_numpy(labels.astype(np.int64))
    return LabeledTensors(data, targets, None)
