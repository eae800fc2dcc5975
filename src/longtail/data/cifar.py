"""CIFAR-10 / CIFAR-100 "python version" batches, read with a restricted unpickler.

The official files (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html) are Python
pickles. ``pickle.load`` on an untrusted pickle can run arbitrary code, so these loaders use
:class:`RestrictedUnpickler`, which resolves only the few globals a numpy array needs and refuses
everything else with :class:`pickle.UnpicklingError`.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from longtail.data._types import LabeledTensors

__all__ = ["RestrictedUnpickler", "load_cifar", "load_cifar10", "load_cifar100", "safe_unpickle"]

_CIFAR10_DIR = "cifar-10-batches-py"
_CIFAR100_DIR = "cifar-100-python"
_CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_IMAGE_BYTES = 3 * 32 * 32


def _numpy_reconstruct() -> Callable[..., Any]:
    try:
        module = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy < 2
        module = importlib.import_module("numpy.core.multiarray")
    reconstruct: Callable[..., Any] = module._reconstruct
    return reconstruct


def _codecs_encode_latin1(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` restricted to latin-1: how Python 3 protocol-2 pickles store bytes."""
    if not isinstance(obj, str) or encoding.lower().replace("_", "-") not in {"latin1", "latin-1"}:
        raise pickle.UnpicklingError(
            f"refusing _codecs.encode with encoding {encoding!r} (only latin1 is allowed)"
        )
    return obj.encode("latin-1", errors)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals needed to rebuild numpy arrays.

    Allowed: ``numpy.core.multiarray._reconstruct`` and its ``numpy._core`` alias,
    ``numpy.ndarray``, ``numpy.dtype`` and ``_codecs.encode`` with the ``latin1`` encoding (used
    by Python 3 protocol-2 pickles for ``bytes``). Builtin containers, strings, bytes and numbers
    need no globals. Any other global (``os.system``, ``builtins.eval``,
    ``subprocess.Popen``, ...) raises :class:`pickle.UnpicklingError` before it is called.
    """

    def find_class(self, module: str, name: str) -> Any:
        if name == "_reconstruct" and module in {"numpy.core.multiarray", "numpy._core.multiarray"}:
            return _numpy_reconstruct()
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        if module == "_codecs" and name == "encode":
            return _codecs_encode_latin1
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a pickle")


def safe_unpickle(path: str | os.PathLike[str]) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (latin-1 for Python 2 strings).

    Raises:
        ValueError: the pickle is malformed or asks for a forbidden global (message names the
            file).
    """
    data = Path(path).read_bytes()
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path}: unsafe or malformed pickle: {exc}") from exc
    except (EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ValueError(f"{path}: malformed pickle: {exc!r}") from exc


def _as_str_dict(path: Path, obj: Any) -> dict[str, Any]:
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(key, bytes):
            key = key.decode("latin-1")
        if not isinstance(key, str):
            raise ValueError(f"{path}: dict key of type {type(key).__name__} in a CIFAR pickle")
        out[key] = value
    return out


def _names(path: Path, meta: dict[str, Any], key: str, count: int) -> tuple[str, ...]:
    if key not in meta:
        raise ValueError(f"{path}: no {key!r} entry in the meta file")
    raw = meta[key]
    if not isinstance(raw, (list, tuple)) or len(raw) != count:
        raise ValueError(f"{path}: {key!r} must be a list of {count} names")
    names = []
    for item in raw:
        if isinstance(item, bytes):
            item = item.decode("utf-8", errors="replace")
        if not isinstance(item, str):
            raise ValueError(f"{path}: {key!r} holds a {type(item).__name__}, expected str")
        names.append(item)
    return tuple(names)


def _read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _as_str_dict(path, safe_unpickle(path))
    if "data" not in batch or label_key not in batch:
        raise ValueError(f"{path}: CIFAR batch needs 'data' and {label_key!r} entries")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        raise ValueError(f"{path}: 'data' must be a uint8 numpy array")
    if data.ndim != 2 or data.shape[1] != _IMAGE_BYTES:
        raise ValueError(f"{path}: 'data' has shape {data.shape}, expected (N, {_IMAGE_BYTES})")
    raw_labels = batch[label_key]
    if isinstance(raw_labels, np.ndarray):
        raw_labels = raw_labels.tolist()
    if not isinstance(raw_labels, (list, tuple)) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in raw_labels
    ):
        raise ValueError(f"{path}: {label_key!r} must be a list of ints")
    labels = np.asarray(raw_labels, dtype=np.int64)
    if labels.shape[0] != data.shape[0]:
        raise ValueError(
            f"{path}: {data.shape[0]} images but {labels.shape[0]} entries in {label_key!r}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{path}: {label_key!r} outside [0, {num_classes})")
    return data, labels


def _resolve(directory: Path, kind: str | None) -> tuple[Path, str]:
    """Find the batch folder and whether it is CIFAR-10 or CIFAR-100."""

    def detect(folder: Path) -> str | None:
        if (folder / "batches.meta").is_file() and (folder / "test_batch").is_file():
            return "cifar10"
        if (folder / "meta").is_file() and (folder / "train").is_file():
            return "cifar100"
        return None

    candidates = [directory, directory / _CIFAR10_DIR, directory / _CIFAR100_DIR]
    found = [(folder, k) for folder in candidates if (k := detect(folder)) is not None]
    if kind is not None:
        found = [(folder, k) for folder, k in found if k == kind]
    if not found:
        want = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", None: "CIFAR-10 or CIFAR-100"}
        raise FileNotFoundError(
            f"directory: no {want[kind]} python batches in {str(directory)!r} "
            f"(or its {_CIFAR10_DIR!r} / {_CIFAR100_DIR!r} subfolder)"
        )
    if len(found) > 1 and found[0][0] != directory:
        raise ValueError(
            f"directory: {str(directory)!r} holds both CIFAR-10 and CIFAR-100; "
            f"use load_cifar10 / load_cifar100 or point at the subfolder"
        )
    return found[0]


def _load(
    directory: str | os.PathLike[str], split: str, kind: str | None, label_kind: str = "fine"
) -> LabeledTensors:
    if split not in {"train", "test"}:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    if label_kind not in {"fine", "coarse"}:
        raise ValueError(f"label_kind: expected 'fine' or 'coarse', got {label_kind!r}")
    folder, found_kind = _resolve(Path(directory), kind)
    if found_kind == "cifar10":
        meta = _as_str_dict(folder / "batches.meta", safe_unpickle(folder / "batches.meta"))
        names = _names(folder / "batches.meta", meta, "label_names", 10)
        files = _CIFAR10_TRAIN if split == "train" else ("test_batch",)
        label_key, num_classes = "labels", 10
    else:
        meta = _as_str_dict(folder / "meta", safe_unpickle(folder / "meta"))
        num_classes = 100 if label_kind == "fine" else 20
        names = _names(folder / "meta", meta, f"{label_kind}_label_names", num_classes)
        files = ("train",) if split == "train" else ("test",)
        label_key = f"{label_kind}_labels"
    parts = []
    for name in files:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"directory: missing CIFAR file {str(path)!r}")
        parts.append(_read_batch(path, label_key, num_classes))
    data = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32))
    if not images.flags.writeable:
        images = images.copy()
    return LabeledTensors(torch.from_numpy(images), torch.from_numpy(labels), names)


def load_cifar(directory: str | os.PathLike[str], split: str = "train") -> LabeledTensors:
    """Load CIFAR-10 or CIFAR-100 (python version), detecting which from the file names.

    ``directory`` is either the batch folder itself or its parent (the folder the official
    tarball was extracted into, holding ``cifar-10-batches-py`` or ``cifar-100-python``).

    - CIFAR-10: ``data_batch_1`` .. ``data_batch_5`` (train, 50,000), ``test_batch`` (10,000),
      class names from ``batches.meta`` (``label_names``).
    - CIFAR-100: ``train`` (50,000), ``test`` (10,000), **fine** labels (100 classes), class names
      from ``meta`` (``fine_label_names``); use :func:`load_cifar100` for coarse labels.

    Args:
        directory: batch folder or its parent.
        split: ``"train"`` or ``"test"``.

    Returns:
        :class:`LabeledTensors` with ``data`` ``uint8`` of shape ``(N, 3, 32, 32)`` (channels
        first, the files' own order and PyTorch's; ``data.permute(0, 2, 3, 1)`` gives HWC),
        ``targets`` ``int64`` ``(N,)`` and the class names.

    Raises:
        ValueError: bad ``split``; a pickle asks for a forbidden global (e.g. ``os.system``) or is
            malformed; shapes / label counts / label ranges are wrong. Messages name the file.
        FileNotFoundError: no CIFAR files found.
    """
    return _load(directory, split, None)


def load_cifar10(directory: str | os.PathLike[str], split: str = "train") -> LabeledTensors:
    """Load CIFAR-10 (python version); see :func:`load_cifar`. Output ``(N, 3, 32, 32)`` uint8."""
    return _load(directory, split, "cifar10")


def load_cifar100(
    directory: str | os.PathLike[str], split: str = "train", *, label_kind: str = "fine"
) -> LabeledTensors:
    """Load CIFAR-100 (python version); see :func:`load_cifar`.

    Args:
        directory: batch folder or its parent.
        split: ``"train"`` or ``"test"``.
        label_kind: ``"fine"`` (100 classes, default) or ``"coarse"`` (20 superclasses).
    """
    return _load(directory, split, "cifar100", label_kind)
