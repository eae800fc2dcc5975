"""Input validation and reduction shared by the losses (private).

Every public loss validates its arguments here *before* any computation, so a bad call fails with a
``ValueError``/``TypeError`` that names the argument and the offending value. Checks that need the values
of a tensor (labels in range, targets in ``[0, 1]``) are skipped while ``torch.compile`` traces, so that
compiled code has no graph breaks; eager calls run them unless :func:`set_value_checks` (or the
:func:`value_checks` context manager) turned them off. On CUDA they become device-side assertions
(``torch._assert_async``), so a training step never waits for the host.

Value checks read tensor values on the host (on CUDA: a device synchronisation or an assertion
kernel). A training loop that validated its labels and class counts once can turn them off with
``value_checks(False)``; shape, dtype, type and hyper-parameter checks cost no host read and stay on.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Literal, TypeAlias

import numpy as np
import torch
from torch import Tensor

Reduction: TypeAlias = Literal["none", "mean", "sum"]
_REDUCTIONS = ("none", "mean", "sum")

#: What a user may pass for ``class_counts``: a 1-D tensor, NumPy array or sequence of counts.
CountsLike: TypeAlias = "Tensor | np.ndarray | Sequence[int] | Sequence[float]"
#: A per-class vector (weights, alpha): tensor, array or sequence.
VectorLike: TypeAlias = "Tensor | np.ndarray | Sequence[float]"


def _compiling() -> bool:
    return bool(torch.compiler.is_compiling())


#: Whether the checks that read tensor values on the host run (see :func:`set_value_checks`).
_VALUE_CHECKS = True


def set_value_checks(enabled: bool) -> None:
    """Turn the value checks of the losses on or off (on by default), for the whole process.

    Value checks are those that read tensor values on the host: labels in ``[0, C)``, multi-label
    targets in ``[0, 1]`` or ``-1``, finite per-class vectors, positive class counts, non-negative
    weights. Each is a host read (a device synchronisation on CUDA, or an assertion kernel), so a
    training loop that validated its data once may turn them off. Shape, dtype, type and
    hyper-parameter checks read no tensor values and always run. With checks off, invalid values
    are not detected (an out-of-range label may give a wrong loss or a low-level error).
    Modelled on ``torch.distributions.Distribution.set_default_validate_args``.

    Example:
        >>> from longtail.losses import focal_loss, set_value_checks, value_checks_enabled
        >>> set_value_checks(False)  # no host reads: labels are not checked
        >>> value_checks_enabled()
        False
        >>> set_value_checks(True)
        >>> focal_loss(torch.zeros(1, 3), torch.tensor([3]))
        Traceback (most recent call last):
        ...
        ValueError: target must hold class indices in [0, 2] or ignore_index=-100, got 3
    """
    global _VALUE_CHECKS
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__} {enabled!r}")
    _VALUE_CHECKS = enabled


def value_checks_enabled() -> bool:
    """Whether the value checks run (see :func:`set_value_checks`).

    Example:
        >>> from longtail.losses import value_checks, value_checks_enabled
        >>> value_checks_enabled()
        True
        >>> with value_checks(False):
        ...     value_checks_enabled()
        False
    """
    return _VALUE_CHECKS


@contextlib.contextmanager
def value_checks(enabled: bool) -> Iterator[None]:
    """Turn the value checks on or off inside a ``with`` block (see :func:`set_value_checks`).

    The previous state is restored on exit, also when the body raises. Not thread-local: the switch
    is one process-wide global.

    Example:
        >>> import torch
        >>> from longtail.losses import focal_loss, value_checks
        >>> with value_checks(False):  # labels were validated once, before training
        ...     loss = focal_loss(torch.zeros(2, 3), torch.tensor([0, 2]))
    """
    previous = _VALUE_CHECKS
    set_value_checks(enabled)
    try:
        yield
    finally:
        set_value_checks(previous)


def skip_value_checks() -> bool:
    """True when data-dependent checks must not read tensor values (switched off, or compiling)."""
    return not _VALUE_CHECKS or _compiling()


def check_reduction(reduction: object) -> None:
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def check_nonnegative(name: str, value: object) -> float:
    """A finite real number >= 0 (gamma, tau, ...)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def check_positive(name: str, value: object) -> float:
    v = check_nonnegative(name, value)
    if v == 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def check_interval(
    name: str, value: object, low: float, high: float, *, low_closed: bool, high_closed: bool
) -> float:
    """A real number in an interval, e.g. ``beta`` in ``[0, 1)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    ok_low = v >= low if low_closed else v > low
    ok_high = v <= high if high_closed else v < high
    if not (math.isfinite(v) and ok_low and ok_high):
        interval = f"{'[' if low_closed else '('}{low:g}, {high:g}{']' if high_closed else ')'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return v


def _check_tensor(name: str, x: object) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_logits(name: str, logits: object, *, ndim: int | None = 2) -> Tensor:
    x = _check_tensor(name, logits)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions (N, C), got shape {tuple(x.shape)}")
    return x


def check_pair(
    student: object, teacher: object, *, names: tuple[str, str], same_width: bool
) -> tuple[Tensor, Tensor]:
    """Two float ``(N, K)`` tensors with the same ``N`` (and the same ``K`` if ``same_width``)."""
    s_name, t_name = names
    s = check_logits(s_name, student)
    t = check_logits(t_name, teacher)
    if t.shape[0] != s.shape[0]:
        raise ValueError(
            f"{t_name} has batch size {t.shape[0]} but {s_name} has batch size {s.shape[0]}"
        )
    if same_width and t.shape[1] != s.shape[1]:
        raise ValueError(f"{t_name} has {t.shape[1]} classes but {s_name} has {s.shape[1]}")
    return s, t


def check_single_label(
    logits: object,
    target: object,
    *,
    ignore_index: int | None = None,
    logits_name: str = "logits",
    target_name: str = "target",
) -> tuple[Tensor, Tensor]:
    """Validate ``(N, C)`` float logits and ``(N,)`` integer class indices in ``[0, C)``.

    Entries equal to ``ignore_index`` are allowed outside the range.
    """
    z = check_logits(logits_name, logits)
    t = _check_tensor(target_name, target)
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise TypeError(
            f"{target_name} must be an integer tensor of class indices, got dtype {t.dtype}"
        )
    if t.ndim != 1:
        raise ValueError(f"{target_name} must have 1 dimension (N,), got shape {tuple(t.shape)}")
    if t.shape[0] != z.shape[0]:
        raise ValueError(
            f"{target_name} has {t.shape[0]} entries but {logits_name} has batch size {z.shape[0]}"
        )
    if z.shape[1] < 1:
        raise ValueError(f"{logits_name} must have at least one class, got shape {tuple(z.shape)}")
    if t.numel() and not skip_value_checks():
        bad = (t < 0) | (t >= z.shape[1])
        if ignore_index is not None:
            bad &= t != ignore_index
        if t.device.type == "cuda":  # no host sync on the GPU: a device-side assertion instead
            torch._assert_async(~bad.any(), f"{target_name} holds a class index out of range")
        elif bool(bad.any()):
            first = int(t[bad][0])
            raise ValueError(
                f"{target_name} must hold class indices in [0, {z.shape[1] - 1}]"
                + (f" or ignore_index={ignore_index}" if ignore_index is not None else "")
                + f", got {first}"
            )
    return z, t


def check_multilabel(
    logits: object,
    targets: object,
    *,
    logits_name: str = "logits",
    targets_name: str = "targets",
    ndim: int | None = None,
) -> tuple[Tensor, Tensor, bool]:
    """Validate logits and same-shaped float targets in ``[0, 1]``, with ``-1`` marking unknown.

    Returns ``(logits, targets, maybe_unknown)``; ``maybe_unknown`` is False only when the targets were
    checked and hold no ``-1`` (so the caller can skip masking). One pass (``aminmax``) in the usual case.
    """
    z = check_logits(logits_name, logits, ndim=ndim)
    y = _check_tensor(targets_name, targets)
    if y.is_complex():
        raise TypeError(f"{targets_name} must be a real tensor, got dtype {y.dtype}")
    if y.shape != z.shape:
        raise ValueError(
            f"{targets_name} must have the shape of {logits_name} {tuple(z.shape)}, "
            f"got {tuple(y.shape)}"
        )
    if skip_value_checks():
        return z, y, True
    if y.numel() == 0:
        return z, y, False
    yf = y if y.is_floating_point() else y.to(torch.float32)
    if y.device.type == "cuda":  # no host sync on the GPU: a device-side assertion instead
        ok = (((yf >= 0) & (yf <= 1)) | (yf == -1)).all()
        torch._assert_async(ok, f"{targets_name} must be in [0, 1] or -1 (unknown)")
        return z, y, True
    lo, hi = (float(v) for v in torch.aminmax(yf))
    bad_value: float | None = None
    if not (lo >= -1 and hi <= 1):  # also catches NaN
        bad = ~(((yf >= 0) & (yf <= 1)) | (yf == -1))
        bad_value = float(yf[bad][0])
    elif lo < 0:
        bad = (yf < 0) & (yf != -1)
        if bool(bad.any()):
            bad_value = float(yf[bad][0])
    if bad_value is not None:
        raise ValueError(f"{targets_name} must be in [0, 1] or -1 (unknown), got {bad_value!r}")
    return z, y, lo < 0


def as_vector(
    name: str, value: object, *, length: int | None = None, device: torch.device | None = None
) -> Tensor:
    """Convert a 1-D tensor / array / sequence to a float tensor and check it is finite."""
    if isinstance(value, Tensor):
        v = value
    elif isinstance(value, (np.ndarray, Sequence)) and not isinstance(value, (str, bytes)):
        try:
            v = torch.as_tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be a sequence of numbers, got {value!r}") from exc
    else:
        raise TypeError(f"{name} must be a 1-D tensor or sequence, got {type(value).__name__}")
    if v.is_complex() or v.dtype == torch.bool:
        raise TypeError(f"{name} must hold real numbers, got dtype {v.dtype}")
    if v.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(v.shape)}")
    if length is not None and v.shape[0] != length:
        raise ValueError(f"{name} must have one entry per class ({length}), got {v.shape[0]}")
    if not v.is_floating_point():
        v = v.to(torch.float64)
    if v.numel() and not skip_value_checks() and not bool(torch.isfinite(v).all()):
        raise ValueError(f"{name} must be finite, got {v.tolist()[:10]}")
    if device is not None:
        v = v.to(device)
    return v


def check_class_counts(
    class_counts: object, *, num_classes: int | None = None, name: str = "class_counts"
) -> Tensor:
    """Whole-dataset training counts, one positive entry per class, as float64."""
    counts = as_vector(name, class_counts, length=num_classes).to(torch.float64)
    if counts.numel() == 0:
        raise ValueError(f"{name} must not be empty")
    if not skip_value_checks() and bool((counts <= 0).any()):
        bad = int(torch.nonzero(counts <= 0)[0, 0])
        raise ValueError(
            f"{name} must be positive for every class (a class with no training sample has no "
            f"finite weight or prior); class {bad} has {counts[bad].item():g}"
        )
    return counts


def check_class_weight(
    name: str, weight: object, num_classes: int | None, device: torch.device | None = None
) -> Tensor:
    """A finite, non-negative per-class vector of length ``num_classes`` (any length if None)."""
    w = as_vector(name, weight, length=num_classes, device=device)
    if not skip_value_checks() and bool((w < 0).any()):
        raise ValueError(f"{name} must be non-negative, got {w.tolist()[:10]}")
    return w


def log_prior(class_counts: Tensor) -> Tensor:
    """``log(n_c / sum(n))`` in float64."""
    c = class_counts.to(torch.float64)
    return c.log() - c.sum().log()


@contextlib.contextmanager
def autocast_off(device: torch.device) -> Iterator[None]:
    """Autocast off, for matmuls that must not run in bf16 / fp16 (pairwise and point distances)."""
    if torch.amp.is_autocast_available(device.type):
        with torch.autocast(device_type=device.type, enabled=False):
            yield
    else:  # pragma: no cover - devices without autocast
        yield


def upcast(x: Tensor) -> Tensor:
    """Losses are computed in float32 (or float64 if given): half and bfloat16 inputs are upcast."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x


def ignore_mask(target: Tensor, ignore_index: int) -> tuple[Tensor, Tensor]:
    """(valid mask, target with ignored entries replaced by class 0)."""
    valid = target != ignore_index
    return valid, torch.where(valid, target, torch.zeros_like(target))


def reduce_loss(loss: Tensor, reduction: str, count: Tensor | int | float) -> Tensor:
    """Reduce per-sample (or per-element) losses.

    ``"mean"`` divides the sum by ``count`` (the number of non-ignored samples, or known entries). An
    empty batch (``count == 0``) gives a loss of 0 that still carries a gradient, not NaN.
    """
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    if isinstance(count, Tensor):
        return total / count.clamp_min(1).to(total.dtype)
    return total / max(float(count), 1.0)


def one_minus_exp(log_p: Tensor) -> Tensor:
    """``1 - exp(log_p)`` accurately, clamped to the smallest normal number.

    ``-expm1`` keeps precision when ``p`` is close to 1; the clamp keeps ``(1 - p) ** gamma`` and its
    gradient finite even for ``gamma < 1`` when ``p`` rounds to exactly 1 (the gradient there is 0).
    """
    return (-torch.expm1(log_p)).clamp_min(torch.finfo(log_p.dtype).tiny)


def buffer_vector(name: str, value: object) -> Tensor:
    """Validate a per-class vector given to a module's ``__init__`` and return it as a float32 buffer."""
    return check_class_weight(name, value, None).to(torch.float32)


def weighted_cross_entropy(
    z: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int, reduction: str
) -> Tensor:
    """Cross-entropy where ``"mean"`` divides ``sum_i w_{y_i} CE_i`` by the number of valid samples."""
    loss = torch.nn.functional.cross_entropy(
        upcast(z), target, reduction="none", ignore_index=ignore_index
    )
    valid = target != ignore_index
    if weight is not None:
        safe = torch.where(valid, target, torch.zeros_like(target))
        loss = loss * weight.to(loss.dtype)[safe]
    return reduce_loss(loss, reduction, valid.sum())
