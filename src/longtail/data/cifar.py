"""CIFAR-10 / CIFAR-100 "python version" batches, read with a restricted unpickler.

The official files (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html) are Python
pickles. ``pickle.load`` on an untrusted pickle can run arbitrary code, so these loaders use
:class:`RestrictedUnpickler`, which resolves only the few globals a numpy array needs and refuses
everything else with :class:`pickle.UnpicklingError`.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import pickletools
from collections.abc import Mapping
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


_SAFE_KINDS = frozenset("biufc")  # bool, signed / unsigned int, float, complex


class _DtypeSpec:
    """What the restricted unpickler builds for ``numpy.dtype(...)``.

    A live numpy dtype would receive the pickle's ``__setstate__`` (byte order, item size,
    flags); numpy trusts some of those fields, and forged flags make it crash. This holder
    accepts only plain numeric dtypes (bool, int, uint, float, complex: no objects, strings,
    records or sub-arrays), takes only the byte order from the state, and is turned into a fresh
    :class:`numpy.dtype` when an array is built.
    """

    __slots__ = ("dtype",)

    def __init__(self, obj: Any, align: Any = False, copy: Any = False) -> None:
        if isinstance(obj, bytes):
            obj = obj.decode("latin-1")
        if not isinstance(obj, str):
            raise pickle.UnpicklingError(f"refusing numpy.dtype({obj!r}) (only type codes)")
        try:
            dtype = np.dtype(obj)
        except TypeError as exc:
            raise pickle.UnpicklingError(f"bad dtype code {obj!r}: {exc}") from exc
        if dtype.kind not in _SAFE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise pickle.UnpicklingError(
                f"refusing dtype {obj!r} (only bool / int / uint / float / complex arrays)"
            )
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        # numpy's dtype state: (version, byteorder, subarray, names, fields, elsize, alignment,
        # flags[, metadata]); only the byte order matters for a plain numeric dtype.
        if (
            not isinstance(state, tuple)
            or len(state) < 5
            or state[1] not in ("<", ">", "|", "=")
            or any(part is not None for part in state[2:5])
        ):
            raise pickle.UnpicklingError(f"refusing dtype state {str(state)[:80]}")
        if state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])


class _NdarrayType:
    """Stand-in that ``find_class`` returns for ``numpy.ndarray``.

    A numpy pickle only passes ``numpy.ndarray`` as the first argument of ``_reconstruct``; it never
    calls it. Returning the real class would let a pickle call ``numpy.ndarray(shape)`` and allocate
    whatever the pickle asks for, so the restricted unpickler hands out this inert marker instead.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> _NdarrayType:
        raise pickle.UnpicklingError("refusing to call numpy.ndarray from a pickle")


def _check_shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise pickle.UnpicklingError(f"bad array shape {str(shape)[:80]}")
    return shape


class _ArrayPlaceholder:
    """What ``_reconstruct`` returns; its ``__setstate__`` builds the array from the state's bytes.

    numpy pickles an array as ``_reconstruct(numpy.ndarray, (0,), b"b")`` followed by
    ``__setstate__((version, shape, dtype, is_fortran, raw_bytes))``. Here the array is
    ``numpy.frombuffer(raw_bytes, dtype).reshape(shape)`` after checking that ``raw_bytes`` holds
    exactly ``prod(shape) * itemsize`` bytes, so its size is that of data present in the file
    (numpy's own ``__setstate__`` reads past the end of a short object list). Placeholders are
    replaced by their arrays when loading ends.
    """

    __slots__ = ("array",)

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError(f"bad ndarray state {str(state)[:80]}")
        shape, spec, fortran, raw = state[-4:]
        shape = _check_shape(shape)
        if not isinstance(spec, _DtypeSpec):
            raise pickle.UnpicklingError("ndarray state without an allowed dtype")
        if isinstance(raw, str):  # Python 2 str read with encoding="latin1"
            raw = raw.encode("latin-1")
        if not isinstance(raw, (bytes, bytearray)):
            raise pickle.UnpicklingError(f"ndarray data of type {type(raw).__name__}")
        need = math.prod(shape) * spec.dtype.itemsize
        if len(raw) != need:
            raise pickle.UnpicklingError(
                f"ndarray of shape {shape} and dtype {spec.dtype} needs {need} bytes, "
                f"the pickle holds {len(raw)}"
            )
        flat = np.frombuffer(raw, dtype=spec.dtype)
        self.array = flat.reshape(shape, order="F" if fortran else "C")


def _safe_reconstruct(subtype: Any, shape: Any, dtype: Any) -> _ArrayPlaceholder:
    """``numpy.core.multiarray._reconstruct`` limited to what numpy's own pickles pass."""
    if subtype is not _NdarrayType:
        raise pickle.UnpicklingError("refusing _reconstruct of anything but numpy.ndarray")
    if math.prod(_check_shape(shape)) != 0:
        raise pickle.UnpicklingError(
            f"refusing _reconstruct with shape {shape!r} (numpy pickles use an empty shape)"
        )
    return _ArrayPlaceholder()


def _safe_frombuffer(
    buf: Any, dtype: Any, shape: Any, order: Any, axis_order: Any = None
) -> np.ndarray:
    """``numpy._core.numeric._frombuffer`` (protocol-5 numpy pickles): a view of bytes in the file.

    The array is ``numpy.frombuffer(buf, dtype).reshape(shape)``, so its size is that of ``buf``.
    """
    if not isinstance(buf, (bytes, bytearray, pickle.PickleBuffer)):
        raise pickle.UnpicklingError(f"refusing _frombuffer on a {type(buf).__name__}")
    if not isinstance(dtype, _DtypeSpec):
        raise pickle.UnpicklingError("refusing _frombuffer without an allowed dtype")
    if order not in ("C", "F", "A", "K"):
        raise pickle.UnpicklingError(f"refusing _frombuffer with order {order!r}")
    view = memoryview(buf.raw() if isinstance(buf, pickle.PickleBuffer) else buf)
    array = np.frombuffer(view, dtype=dtype.dtype)
    if order == "K" and axis_order is not None:
        result: np.ndarray = array.reshape(_check_shape(shape), order="C").transpose(axis_order)
    else:
        result = array.reshape(_check_shape(shape), order=order)
    return result


def _resolve_arrays(obj: Any, seen: dict[int, Any] | None = None) -> Any:
    """Replace every :class:`_ArrayPlaceholder` in dicts / lists / tuples by its array."""
    if seen is None:
        seen = {}
    if isinstance(obj, _ArrayPlaceholder):
        if not hasattr(obj, "array"):
            raise pickle.UnpicklingError("ndarray without state")
        return obj.array
    if isinstance(obj, _DtypeSpec):
        return obj.dtype
    if not isinstance(obj, (dict, list, tuple)):
        return obj
    if id(obj) in seen:
        return seen[id(obj)]
    if isinstance(obj, dict):
        seen[id(obj)] = obj
        for key in list(obj):
            obj[key] = _resolve_arrays(obj[key], seen)
        return obj
    if isinstance(obj, list):
        seen[id(obj)] = obj
        obj[:] = [_resolve_arrays(item, seen) for item in obj]
        return obj
    resolved = tuple(_resolve_arrays(item, seen) for item in obj)
    seen[id(obj)] = resolved
    return resolved


def _codecs_encode_latin1(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` restricted to latin-1: how Python 3 protocol-2 pickles store bytes."""
    if not isinstance(obj, str) or encoding.lower().replace("_", "-") not in {"latin1", "latin-1"}:
        raise pickle.UnpicklingError(
            f"refusing _codecs.encode with encoding {encoding!r} (only latin1 is allowed)"
        )
    return obj.encode("latin-1", errors)


def _empty_bytes(*args: Any) -> bytes:
    """``bytes()`` as protocol-0/1 pickles of ``b""`` call it; ``bytes(n)`` would allocate n."""
    if args:
        raise pickle.UnpicklingError("refusing bytes(...) with arguments in a pickle")
    return b""


_MULTIARRAY = {"numpy.core.multiarray", "numpy._core.multiarray"}
_NUMERIC = {"numpy.core.numeric", "numpy._core.numeric"}
_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals needed to rebuild plain numeric numpy arrays.

    ``find_class`` allows:

    - ``numpy.core.multiarray._reconstruct`` (and its ``numpy._core`` alias), limited to the empty
      placeholder numpy's pickles create; the array is then built from the bytes of its state by
      ``numpy.frombuffer`` after checking their length against the shape (numpy's own
      ``ndarray.__setstate__`` is never called);
    - ``numpy.ndarray`` only as an inert marker for that function (it cannot be called, so a pickle
      cannot allocate an array of a size it merely names);
    - ``numpy.dtype`` for bool / int / uint / float / complex type codes only (no object, string or
      record dtypes; numpy's ``dtype.__setstate__`` is never called either);
    - ``numpy.core.numeric._frombuffer`` (protocol-5 numpy pickles), again via ``frombuffer``;
    - ``_codecs.encode`` with the ``latin1`` encoding (how Python 3 protocol-0 to 2 pickles store
      ``bytes``) and ``bytes()`` without arguments (how they store ``b""``).

    Builtin containers, strings, bytes and numbers need no globals. Any other global
    (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ``functools.partial``,
    ``numpy.load``, ...) raises :class:`pickle.UnpicklingError` before it is called.

    Loading through this class directly leaves placeholder objects where arrays belong; use
    :func:`safe_unpickle`, which also checks the opcode stream first and replaces them.
    """

    def find_class(self, module: str, name: str) -> Any:
        if module in _MULTIARRAY and name == "_reconstruct":
            return _safe_reconstruct
        if module in _NUMERIC and name == "_frombuffer":
            return _safe_frombuffer
        if module == "numpy" and name == "ndarray":
            return _NdarrayType
        if module == "numpy" and name == "dtype":
            return _DtypeSpec
        if module == "_codecs" and name == "encode":
            return _codecs_encode_latin1
        if module in {"builtins", "__builtin__"} and name == "bytes":
            return _empty_bytes
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a pickle")


def _check_opcodes(data: bytes) -> None:
    """Walk the opcodes without executing them; refuse memo indices no real pickle uses.

    CPython's unpickler grows its memo table to twice the largest index a ``PUT`` names, so a
    9-byte pickle with ``LONG_BINPUT 2**31`` would allocate (and zero) tens of GiB. Picklers
    number memo entries consecutively (from 0; Python 2's ``cPickle`` from 1), so an index never
    exceeds the number of opcodes before it, which bounds the memo table by the file size.
    """
    for count, (opcode, arg, _) in enumerate(pickletools.genops(io.BytesIO(data)), start=1):
        if opcode.name in _MEMO_PUTS and (not isinstance(arg, int) or not 0 <= arg <= count):
            raise pickle.UnpicklingError(
                f"memo index {arg!r} at opcode {count} (larger than any real pickle uses: "
                f"a memory bomb?)"
            )


def safe_unpickle(path: str | os.PathLike[str]) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (latin-1 for Python 2 strings).

    The opcode stream is first walked with :func:`pickletools.genops` (nothing is executed) and
    memo indices larger than the number of opcodes before them are refused (CPython would allocate
    a memo table of that size). Arrays are built only from bytes present in the file, so memory
    use is bounded by a small multiple of the file size.

    Raises:
        ValueError: the pickle is malformed or asks for a forbidden global (message names the
            file).
    """
    data = Path(path).read_bytes()
    try:
        _check_opcodes(data)
        return _resolve_arrays(RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load())
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path}: unsafe or malformed pickle: {exc}") from exc
    except Exception as exc:  # anything else a malformed file can raise inside pickle / numpy
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
