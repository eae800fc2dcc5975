"""MATLAB ``.mat`` data sets (version 4 / 5 / 7 files, read with :func:`scipy.io.loadmat`)."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from longtail.data._types import LabeledTensors

__all__ = ["load_mat"]

#: Largest dense matrix (elements) a sparse variable is expanded to: 2**28, 1 GiB as float32.
#: A sparse matrix's shape is only a header field; a few hundred bytes can claim 10^5 x 10^5.
_MAX_DENSE_ELEMENTS = 1 << 28


def _dense(path: Path, key: str, value: Any) -> np.ndarray:
    if hasattr(value, "toarray"):  # scipy.sparse matrix
        shape = tuple(int(d) for d in value.shape)
        if math.prod(shape) > _MAX_DENSE_ELEMENTS:
            raise ValueError(
                f"{path}: sparse variable {key!r} has shape {shape}; densifying it would need "
                f"{math.prod(shape)} elements (more than {_MAX_DENSE_ELEMENTS}); load it with "
                f"scipy.io.loadmat and keep it sparse"
            )
        value = value.toarray()
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        raise ValueError(f"{path}: variable {key!r} is not a numeric matrix")
    return value


def load_mat(
    path: str | os.PathLike[str], features: str = "X", labels: str = "Y"
) -> LabeledTensors:
    """Load features and labels stored as two variables of a MATLAB ``.mat`` file.

    scipy is imported lazily. Sparse matrices are densified, up to ``2**28`` elements (larger
    ones raise ``ValueError`` instead of allocating what a header claims). The file is read into
    memory first and parsed from there, so a header that promises more data than the file holds
    fails instead of allocating.

    Orientation: features are ``(N, F)`` (one row per sample). If their row count does not match
    the labels but their column count does, they are transposed. Multi-label matrices may be
    stored ``(N, L)`` or ``(L, N)`` (the MATLAB multi-label convention of e.g. MLL / LIFT data
    sets); they are transposed when only their column count matches ``N``. When both orientations
    match (``N == L``), ``(N, L)`` is assumed.

    Args:
        path: the ``.mat`` file (v4, v5 or v7; v7.3 HDF5 files are not supported by scipy).
        features: name of the feature variable (default ``"X"``).
        labels: name of the label variable (default ``"Y"``).

    Returns:
        :class:`LabeledTensors` with ``data`` ``float32`` ``(N, F)`` and

        - **single-label** (``labels`` is a vector, ``(N,)``, ``(N, 1)`` or ``(1, N)``): ``targets``
          ``int64`` ``(N,)``; values must be integers (shift them yourself if 1-based);
        - **multi-label** (``labels`` is a matrix): ``targets`` ``float32`` ``(N, L)`` in
          ``{0, 1}``; a matrix using ``{-1, 1}`` (MATLAB convention) is mapped to ``{0, 1}``.

        ``class_names`` is ``None``.

    Raises:
        ValueError: unreadable / malformed file, variable missing or non-numeric, a sparse
            variable too large to densify, shapes that cannot be matched, non-integer
            single-label values, multi-label values outside ``{0, 1}`` / ``{-1, 1}``. The message
            names the file.
        FileNotFoundError: ``path`` does not exist.
        ImportError: scipy missing (``pip install longtail[cli]``).
    """
    try:
        import scipy.io  # optional: the cli extra
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_mat needs scipy; install it with `pip install longtail[cli]`"
        ) from exc
    if not isinstance(features, str) or not features:
        raise ValueError(f"features: expected a variable name, got {features!r}")
    if not isinstance(labels, str) or not labels:
        raise ValueError(f"labels: expected a variable name, got {labels!r}")
    file = Path(path)
    # scipy is given the bytes, not the path: its v4 reader asks the stream for as many bytes as a
    # matrix header claims, which an OS file object allocates up front; BytesIO returns what exists.
    raw = file.read_bytes()
    try:
        content = scipy.io.loadmat(io.BytesIO(raw), variable_names=[features, labels])
    except NotImplementedError as exc:
        raise ValueError(f"{file}: unsupported .mat version (v7.3 / HDF5?): {exc}") from exc
    except Exception as exc:  # whatever a malformed file makes scipy raise
        raise ValueError(f"{file}: cannot read .mat file: {exc!r}") from exc
    for key, arg in ((features, "features"), (labels, "labels")):
        if key not in content:
            raise ValueError(f"{arg}: variable {key!r} not found in {file}")
    x = _dense(file, features, content[features])
    y = _dense(file, labels, content[labels])
    if x.ndim != 2:
        raise ValueError(f"{file}: features {features!r} has shape {x.shape}, expected 2-D")
    if y.ndim != 2 and y.ndim != 1:
        raise ValueError(f"{file}: labels {labels!r} has shape {y.shape}, expected 1-D or 2-D")

    single = y.ndim == 1 or (1 in y.shape and x.shape[0] != 1)
    if single:
        y = y.reshape(-1)
        n = y.shape[0]
        if x.shape[0] != n:
            if x.shape[1] == n:
                x = x.T
            else:
                raise ValueError(
                    f"{file}: features {features!r} {x.shape} and labels {labels!r} ({n},) "
                    f"do not have the same number of samples"
                )
        if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
            raise ValueError(f"{file}: single-label {labels!r} has non-integer values")
        targets = torch.from_numpy(np.ascontiguousarray(y.astype(np.int64)))
    else:
        if y.shape[0] == x.shape[0]:
            pass
        elif y.shape[1] == x.shape[0]:
            y = y.T
        elif y.shape[0] == x.shape[1]:
            x = x.T
        elif y.shape[1] == x.shape[1]:
            x, y = x.T, y.T
        else:
            raise ValueError(
                f"{file}: features {features!r} {x.shape} and labels {labels!r} {y.shape} "
                f"do not share a sample dimension"
            )
        values = set(np.unique(y).tolist())
        if values <= {0, 1}:
            pass
        elif values <= {-1, 1}:
            y = (y > 0).astype(np.float32)
        else:
            raise ValueError(
                f"{file}: multi-label {labels!r} has values {sorted(values)[:6]}, "
                f"expected {{0, 1}} or {{-1, 1}}"
            )
        targets = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
    data = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return LabeledTensors(data, targets, None)
