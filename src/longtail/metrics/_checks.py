"""Input validation shared by the metrics (private).

Every public metric validates its arguments here *before* any computation, so a bad call fails with a
``ValueError`` (bad shape or value) or ``TypeError`` (bad type) whose message names the argument and the
offending value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import torch
from torch import Tensor

#: What a user may pass for ``train_class_counts``: a 1-D tensor, NumPy array or sequence of counts.
CountsLike: TypeAlias = "Tensor | np.ndarray | Sequence[int] | Sequence[float]"


def check_tensor(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_float_matrix(name: str, value: object) -> Tensor:
    """A floating-point (N, C) tensor without NaN."""
    t = check_tensor(name, value)
    if t.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (N, C), got ndim={t.ndim} with shape {tuple(t.shape)}"
        )
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if t.shape[1] < 1:
        raise ValueError(f"{name} must have at least one column, got shape {tuple(t.shape)}")
    if t.numel() and bool(torch.isnan(t).any()):
        raise ValueError(f"{name} contains NaN")
    return t


def check_finite(name: str, t: Tensor, why: str) -> Tensor:
    """Refuse +-inf in ``t`` (NaN is refused by the other checks); ``why`` says what needs it."""
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains inf; {why}")
    return t


def check_float_vector(name: str, value: object) -> Tensor:
    """A floating-point (N,) tensor without NaN."""
    t = check_tensor(name, value)
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got ndim={t.ndim} with shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if t.numel() and bool(torch.isnan(t).any()):
        raise ValueError(f"{name} contains NaN")
    return t


def check_labels(name: str, value: object, n: int, num_classes: int | None) -> Tensor:
    """An integer (N,) tensor of class indices in ``[0, num_classes)`` (no range check if None)."""
    t = check_tensor(name, value)
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got ndim={t.ndim} with shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got dtype {t.dtype}")
    if t.shape[0] != n:
        raise ValueError(
            f"{name} has {t.shape[0]} entries but the scores/logits have batch size {n}"
        )
    if num_classes is not None and t.numel():
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name} must lie in [0, {num_classes - 1}], got a label {bad}")
    return t.long()


def check_bool_vector(name: str, value: object, n: int) -> Tensor:
    """A (N,) tensor of booleans or {0, 1} integers."""
    t = check_tensor(name, value)
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got ndim={t.ndim} with shape {tuple(t.shape)}")
    if t.shape[0] != n:
        raise ValueError(f"{name} has {t.shape[0]} entries but the scores have {n}")
    if t.dtype != torch.bool:
        if t.is_floating_point() or t.is_complex():
            raise TypeError(f"{name} must be a bool or integer tensor, got dtype {t.dtype}")
        if t.numel() and bool(((t != 0) & (t != 1)).any()):
            raise ValueError(
                f"{name} must contain only 0/1 (or bool), got values {t.unique().tolist()}"
            )
        t = t != 0
    return t


def check_multilabel_targets(name: str, value: object, shape: tuple[int, ...]) -> Tensor:
    """A (N, L) tensor with entries in {-1, 0, 1}; -1 = unknown (ignored). Returned as int64."""
    t = check_tensor(name, value)
    if t.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (N, L), got ndim={t.ndim} with shape {tuple(t.shape)}"
        )
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(t.shape)} but scores have shape {shape}")
    if t.is_complex():
        raise TypeError(f"{name} must be a real tensor, got dtype {t.dtype}")
    if t.numel():
        if t.is_floating_point() and bool(torch.isnan(t).any()):
            raise ValueError(f"{name} contains NaN")
        ok = (t == 0) | (t == 1) | (t == -1)
        if not bool(ok.all()):
            bad = t[~ok].flatten()[0].item()
            raise ValueError(f"{name} must contain only 0, 1 or -1 (unknown), got {bad}")
    return t.long()


def check_num_classes(name: str, value: object, actual: int | None = None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    if actual is not None and value != actual:
        raise ValueError(f"{name}={value} does not match the number of logit columns {actual}")
    return value


def check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def check_probability(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return v


def check_counts(name: str, value: object, num_classes: int | None = None) -> Tensor:
    """Training counts per class: a 1-D tensor / array / sequence of finite numbers >= 0 (float64)."""
    if isinstance(value, Tensor):
        t = value.detach().to("cpu", torch.float64)
    elif isinstance(value, np.ndarray | Sequence) and not isinstance(value, str | bytes):
        try:
            t = torch.as_tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a sequence of numbers, got {value!r}") from err
    else:
        raise TypeError(
            f"{name} must be a 1-D tensor, array or sequence, got {type(value).__name__}"
        )
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise ValueError(f"{name} must contain finite counts >= 0, got {t.tolist()}")
    if num_classes is not None and t.numel() != num_classes:
        raise ValueError(f"{name} has {t.numel()} entries but there are {num_classes} classes")
    return t
