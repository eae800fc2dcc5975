"""Builders shared by the loss tests: inputs for any registered loss, driven by its LossSpec."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from longtail.losses import LossSpec, logit_adjustment_margins


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
) -> tuple[Tensor, Tensor]:
    """Logits (cosines for LDAM) and targets of the right kind for ``spec``."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    if spec.inputs == "cosine":
        z = torch.tanh(z / scale)
    z = z.to(dtype)
    if spec.task == "single-label":
        t = torch.randint(0, c, (n,), generator=g)
    else:
        t = (torch.rand(n, c, generator=g) < 0.3).to(dtype)
        if unknown:
            t[torch.rand(n, c, generator=g) < 0.2] = -1
    return z, t


def call(spec: LossSpec, z: Tensor, t: Tensor, **kw: Any) -> Tensor:
    return spec.function(z, t, **required_kwargs(spec, z.shape[-1]), **kw)


def module(spec: LossSpec, num_classes: int, **kw: Any) -> torch.nn.Module:
    return spec.module(**required_kwargs(spec, num_classes), **kw)
