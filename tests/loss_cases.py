"""Builders shared by the loss tests: inputs for any registered loss, driven by its LossSpec.

A spec's function is called ``function(input, *arguments, **required, **kw)``: the input (logits,
cosines, embeddings or features) is built from ``spec.inputs`` and the positional arguments after it
from ``spec.arguments`` (target, teacher, points / prototypes, radius).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

from longtail.losses import LossSpec, logit_adjustment_margins

#: Feature width of the open-set losses and points per class of their points / prototypes.
FEATURE_DIM = 4
POINTS_PER_CLASS = 2
#: Positional arguments that get a gradient besides the input (the teacher's output gets none).
LEARNABLE = ("points", "prototypes", "radius")
#: Positional arguments with one row per sample (a batch-size mismatch is an error).
PER_SAMPLE = ("target", "teacher")


def make_counts(num_classes: int, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """A long-tailed count vector (exponential profile, imbalance 50)."""
    c = torch.arange(num_classes, dtype=torch.float64)
    denom = max(num_classes - 1, 1)
    return torch.floor(500 * 50.0 ** (-c / denom)).to(dtype)


def required_kwargs(spec: LossSpec, num_classes: int) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    counts = make_counts(num_classes)
    if "class_counts" in spec.requires:
        kw["class_counts"] = counts
    if "delta" in spec.requires:
        kw["delta"] = logit_adjustment_margins(counts, tau=1.0)
    return kw


def make_inputs(
    spec: LossSpec,
    n: int,
    c: int,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    scale: float = 3.0,
    unknown: bool = False,
) -> tuple[Tensor, ...]:
    """The positional arguments of ``spec``: its input, then ``spec.arguments`` in order.

    ``c`` is the number of classes (logits, targets, points), or the student's width for embeddings
    (the teacher's is ``c + 1``: relational losses allow different widths). ``unknown`` marks some
    multi-label targets -1.
    """
    g = torch.Generator().manual_seed(seed)
    width = FEATURE_DIM if spec.inputs == "features" else c
    x = torch.randn(n, width, generator=g, dtype=torch.float64) * scale
    if spec.inputs == "cosine":
        x = torch.tanh(x / scale)
    out = [x.to(dtype)]
    for arg in spec.arguments:
        if arg == "target" and spec.task == "multi-label":
            t = (torch.rand(n, c, generator=g) < 0.3).to(dtype)
            if unknown:
                t[torch.rand(n, c, generator=g) < 0.2] = -1
        elif arg == "target":
            t = torch.randint(0, c, (n,), generator=g)
        elif arg == "teacher":
            teacher_width = c + 1 if spec.inputs == "embeddings" else width
            t = torch.randn(n, teacher_width, generator=g, dtype=torch.float64) * scale
        elif arg in ("points", "prototypes"):
            t = torch.randn(c, POINTS_PER_CLASS, FEATURE_DIM, generator=g, dtype=torch.float64)
        elif arg == "radius":
            t = torch.rand((), generator=g, dtype=torch.float64)
        else:  # pragma: no cover - register_loss rejects unknown arguments
            raise AssertionError(f"no builder for argument {arg!r}")
        out.append(t.to(dtype) if t.is_floating_point() else t)
    return tuple(out)


def call(spec: LossSpec, *args: Tensor, **kw: Any) -> Tensor:
    """``spec.function(*args, **required, **kw)`` (per-class keywords exist for logit losses only)."""
    return spec.function(*args, **required_kwargs(spec, args[0].shape[-1]), **kw)


def module(spec: LossSpec, num_classes: int, **kw: Any) -> torch.nn.Module:
    return spec.module(**required_kwargs(spec, num_classes), **kw)


def reductions(spec: LossSpec) -> tuple[str, ...]:
    """The reductions a loss accepts (none for a loss of the whole batch)."""
    return () if spec.terms == "batch" else ("none", "mean", "sum")


def min_batch(spec: LossSpec) -> int:
    """The smallest batch the loss accepts (a pair or a triplet for relational losses)."""
    return {"pair": 2, "triplet": 3}.get(spec.terms, 0)


def none_shape(spec: LossSpec, n: int, c: int) -> tuple[int, ...]:
    """The shape of ``reduction="none"``."""
    if spec.terms == "pair":
        return (n, n)
    if spec.terms == "triplet":
        return (n, n, n)
    return (n, c) if spec.task == "multi-label" else (n,)


def argument_names(spec: LossSpec) -> tuple[str, ...]:
    """The function's names of its positional arguments (errors must name them)."""
    params = list(inspect.signature(spec.function).parameters)
    return tuple(params[: 1 + len(spec.arguments)])


def learnable(spec: LossSpec) -> list[int]:
    """Positions of the float arguments that get a gradient: the input and the class points."""
    return [0] + [i + 1 for i, a in enumerate(spec.arguments) if a in LEARNABLE]


def position(spec: LossSpec, argument: str) -> int:
    """Position of ``argument`` (an entry of ``spec.arguments``) in the call."""
    return 1 + spec.arguments.index(argument)  # type: ignore[arg-type]


def replaced(args: tuple[Tensor, ...], i: int, value: Any) -> tuple[Any, ...]:
    """``args`` with entry ``i`` replaced."""
    return (*args[:i], value, *args[i + 1 :])
