"""How raw inputs become a network's inputs: :class:`Preprocessing`, recorded by the data builders.

The data builders standardise with statistics of the training subset only
(:mod:`~longtail.engine.datasets.standardise`); the statistics they used are kept in
:attr:`DataBundle.preprocessing <longtail.engine.datasets.DataBundle.preprocessing>` so that a
model bundle (``longtail fit``) can apply the same steps to new inputs:

- images (``kind="image"``): pixel values divided by ``divide`` (255 for 8-bit images), then
  ``(x - mean[c]) / std[c]`` per channel, in float32; inputs read from files are converted to
  ``channels`` (grey ``L`` or ``RGB``) and resized (bilinear) to ``height x width`` first;
- feature vectors (``kind="features"``): ``(x - offset[j]) / scale[j]`` per feature in float64,
  then every non-finite result (a missing value) replaced by ``fill[j]``, then float32;
  ``feature_names`` (when the data had named columns) say which column is which.

A record is plain JSON (:meth:`Preprocessing.to_dict`, :meth:`Preprocessing.from_dict`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["Preprocessing"]

_KINDS = ("image", "features")


@dataclass(frozen=True)
class Preprocessing:
    """The steps from raw inputs to the network's inputs (see the module docstring).

    Attributes:
        kind: ``"image"`` or ``"features"``.
        mean, std: images: per-channel mean and std (after ``divide``).
        divide: images: raw pixel values are divided by it first (255 or 1).
        channels, height, width: images: the network's input shape.
        offset, scale, fill: features: ``(x - offset) / scale``, non-finite results -> ``fill``.
        feature_names: features: the column of each feature (``None``: by position only).
    """

    kind: str
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    divide: float = 1.0
    channels: int = 0
    height: int = 0
    width: int = 0
    offset: tuple[float, ...] = ()
    scale: tuple[float, ...] = ()
    fill: tuple[float, ...] = ()
    feature_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"preprocessing.kind: expected one of {_KINDS}, got {self.kind!r}")
        if self.kind == "image":
            if self.channels < 1 or len(self.mean) != self.channels != len(self.std):
                raise ValueError(
                    f"preprocessing: {self.channels} channel(s) need as many means and stds, "
                    f"got {len(self.mean)} and {len(self.std)}"
                )
        else:
            n = len(self.offset)
            if len(self.scale) != n or len(self.fill) != n:
                raise ValueError(
                    "preprocessing: offset, scale and fill need one value per feature, got "
                    f"{n}, {len(self.scale)} and {len(self.fill)}"
                )
            if self.feature_names is not None and len(self.feature_names) != n:
                raise ValueError(
                    f"preprocessing.feature_names: {len(self.feature_names)} names for {n} features"
                )

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def for_images(
        cls, mean: Tensor, std: Tensor, shape: Sequence[int], divide: float
    ) -> Preprocessing:
        """Per-channel ``mean`` / ``std`` (any shape holding ``C`` values), network input
        ``shape`` ``(C, H, W)``."""
        c, h, w = (int(v) for v in shape)
        return cls(
            "image",
            mean=tuple(float(v) for v in mean.flatten().tolist()),
            std=tuple(float(v) for v in std.flatten().tolist()),
            divide=float(divide),
            channels=c,
            height=h,
            width=w,
        )

    @classmethod
    def for_features(
        cls,
        offset: Tensor,
        scale: Tensor,
        fill: Tensor,
        feature_names: Sequence[str] | None = None,
    ) -> Preprocessing:
        """Per-feature ``offset``, ``scale`` and ``fill`` (float64 values kept exactly)."""
        return cls(
            "features",
            offset=tuple(float(v) for v in offset.double().flatten().tolist()),
            scale=tuple(float(v) for v in scale.double().flatten().tolist()),
            fill=tuple(float(v) for v in fill.double().flatten().tolist()),
            feature_names=None if feature_names is None else tuple(str(n) for n in feature_names),
        )

    @classmethod
    def identity(
        cls, num_features: int, feature_names: Sequence[str] | None = None
    ) -> Preprocessing:
        """Feature vectors used as loaded (missing values: 0)."""
        zeros = torch.zeros(num_features, dtype=torch.float64)
        return cls.for_features(zeros, torch.ones_like(zeros), zeros, feature_names)

    def with_feature_names(self, names: Sequence[str] | None) -> Preprocessing:
        """The same steps with the features' column names (``None``: unchanged)."""
        if names is None or self.kind != "features":
            return self
        return Preprocessing.for_features(
            torch.tensor(self.offset, dtype=torch.float64),
            torch.tensor(self.scale, dtype=torch.float64),
            torch.tensor(self.fill, dtype=torch.float64),
            names,
        )

    # ------------------------------------------------------------------------------ application
    @property
    def input_shape(self) -> tuple[int, ...]:
        """The network's input shape (one example)."""
        if self.kind == "image":
            return (self.channels, self.height, self.width)
        return (len(self.offset),)

    def apply(self, x: Tensor, *, divide: bool = True) -> Tensor:
        """Raw ``x`` (a batch: ``(N, C, H, W)`` images or ``(N, D)`` features) -> network inputs,
        float32 and contiguous. ``divide=False``: images already divided (in ``[0, 1]``)."""
        if self.kind == "image":
            z = x.float()
            if divide and self.divide != 1.0:
                z = z / self.divide
            mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
            std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
            return ((z - mean) / std).contiguous()
        offset = torch.tensor(self.offset, dtype=torch.float64)
        scale = torch.tensor(self.scale, dtype=torch.float64)
        fill = torch.tensor(self.fill, dtype=torch.float64)
        z = (x.double() - offset) / scale
        return torch.where(torch.isfinite(z), z, fill).float().contiguous()

    # ------------------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        if self.kind == "image":
            return {
                "kind": "image",
                "channels": self.channels,
                "height": self.height,
                "width": self.width,
                "divide": self.divide,
                "mean": list(self.mean),
                "std": list(self.std),
            }
        return {
            "kind": "features",
            "feature_names": None if self.feature_names is None else list(self.feature_names),
            "offset": list(self.offset),
            "scale": list(self.scale),
            "fill": list(self.fill),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Preprocessing:
        """The record :meth:`to_dict` wrote (``ValueError`` naming the bad field)."""
        try:
            kind = str(raw["kind"])
            if kind == "image":
                return cls(
                    "image",
                    mean=tuple(float(v) for v in raw["mean"]),
                    std=tuple(float(v) for v in raw["std"]),
                    divide=float(raw["divide"]),
                    channels=int(raw["channels"]),
                    height=int(raw["height"]),
                    width=int(raw["width"]),
                )
            names = raw.get("feature_names")
            return cls(
                kind,
                offset=tuple(float(v) for v in raw["offset"]),
                scale=tuple(float(v) for v in raw["scale"]),
                fill=tuple(float(v) for v in raw["fill"]),
                feature_names=None if names is None else tuple(str(n) for n in names),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"preprocessing: missing or bad field ({exc})") from None
