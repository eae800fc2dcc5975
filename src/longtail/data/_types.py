"""Container returned by every loader of :mod:`longtail.data`."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

__all__ = ["LabeledTensors"]


class LabeledTensors(NamedTuple):
    """A data set held in memory: inputs, targets and (when the format has them) class names.

    Attributes:
        data: the inputs, shape ``(N, ...)``; the dtype depends on the loader (``uint8`` images
            for IDX / CIFAR, ``float32`` features for digits, ARFF and ``.mat``).
        targets: ``int64`` class indices of shape ``(N,)`` for single-label data, or ``float32``
            ``{0, 1}`` indicators of shape ``(N, L)`` for multi-label data.
        class_names: one name per class / label (index ``c`` names class ``c``), or ``None`` when
            the format does not store names.
    """

    data: torch.Tensor
    targets: torch.Tensor
    class_names: tuple[str, ...] | None


def _torch_from_numpy(array: object) -> torch.Tensor:
    """``torch.from_numpy`` that first makes the array writable and contiguous (no warning)."""
    arr = np.asarray(array)
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr).copy()
    return torch.from_numpy(arr)
