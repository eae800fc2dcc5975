"""A small DCGAN-style generator and discriminator for ARPL+CS's confusing samples.

Chen et al., "Adversarial Reciprocal Points Learning for Open Set Recognition", TPAMI 2021, train a
generator against a discriminator (real vs generated images) and against the classifier's reciprocal
points (:func:`longtail.losses.confusing_sample_loss`), so the generated images look like the known
classes' images while lying in the open space between them; the classifier then learns to give them
low known-class scores. The official code uses a DCGAN for 32x32 inputs; these are the same design
(strided transposed convolutions with batch norm and ReLU; strided convolutions with LeakyReLU) at a
size for small images such as 28x28 Fashion-MNIST, with any height and width divisible by 4.

The generator's output lies in ``[low, high]`` (``low + (high - low) * (tanh + 1) / 2``): give it the
range of the (standardised) training images so generated and real images share their scale. The
discriminator returns one logit per image (real is positive); train it with
``binary_cross_entropy_with_logits``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["ConfusingSampleGenerator", "SampleDiscriminator"]


def _image_shape(name: str, shape: Sequence[int]) -> tuple[int, int, int]:
    if (
        not isinstance(shape, Sequence)
        or len(shape) != 3
        or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape)
    ):
        raise ValueError(f"{name} must be (channels, height, width) positive ints, got {shape!r}")
    c, h, w = (int(s) for s in shape)
    if h % 4 or w % 4:
        raise ValueError(f"{name}: height and width must be divisible by 4, got {h}x{w}")
    return c, h, w


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class ConfusingSampleGenerator(nn.Module):
    """Noise ``(N, noise_dim)`` to images ``(N, C, H, W)`` in ``[low, high]``.

    ``Linear -> (2w, H/4, W/4) -> BN, ReLU -> ConvT 4x4/2 -> (w, H/2, W/2) -> BN, ReLU ->
    ConvT 4x4/2 -> (C, H, W) -> tanh``, rescaled to ``[low, high]``.

    Args:
        out_shape: ``(C, H, W)``; ``H`` and ``W`` divisible by 4.
        noise_dim: length of the noise vectors (default 64).
        width: channels ``w`` of the last hidden layer (default 32).
        low, high: the output range (default ``[-1, 1]``).
    """

    def __init__(
        self,
        out_shape: Sequence[int] = (1, 28, 28),
        *,
        noise_dim: int = 64,
        width: int = 32,
        low: float = -1.0,
        high: float = 1.0,
    ) -> None:
        super().__init__()
        c, h, w = _image_shape("out_shape", out_shape)
        self.noise_dim = _positive_int("noise_dim", noise_dim)
        width = _positive_int("width", width)
        for name, v in (("low", low), ("high", high)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if not low < high:
            raise ValueError(f"low must be < high, got low={low!r}, high={high!r}")
        self.out_shape = (c, h, w)
        self.low, self.high = float(low), float(high)
        self._start = (2 * width, h // 4, w // 4)
        self.project = nn.Sequential(
            nn.Linear(self.noise_dim, 2 * width * (h // 4) * (w // 4), bias=False),
        )
        self.net = nn.Sequential(
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width, c, 4, stride=2, padding=1),
            nn.Tanh(),
        )

    def forward(self, noise: Tensor) -> Tensor:
        if noise.ndim != 2 or noise.shape[1] != self.noise_dim:
            raise ValueError(
                f"noise must have shape (N, {self.noise_dim}), got {tuple(noise.shape)}"
            )
        x = self.project(noise).view(noise.shape[0], *self._start)
        unit: Tensor = self.net(x)
        return self.low + (self.high - self.low) * (unit + 1.0) * 0.5

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images from standard normal noise drawn on the module's device."""
        device = next(self.parameters()).device
        noise = torch.randn(n, self.noise_dim, generator=generator, device=device)
        out: Tensor = self(noise)
        return out

    def extra_repr(self) -> str:
        return f"out_shape={self.out_shape}, noise_dim={self.noise_dim}, range=[{self.low}, {self.high}]"


class SampleDiscriminator(nn.Module):
    """Images ``(N, C, H, W)`` to one real-vs-generated logit each, ``(N,)``.

    ``Conv 4x4/2 -> (w, H/2, W/2) -> LeakyReLU(0.2) -> Conv 4x4/2 -> (2w, H/4, W/4) -> BN,
    LeakyReLU(0.2) -> Linear -> 1``.

    Args:
        in_shape: ``(C, H, W)``; ``H`` and ``W`` divisible by 4.
        width: channels ``w`` of the first layer (default 32).
    """

    def __init__(self, in_shape: Sequence[int] = (1, 28, 28), *, width: int = 32) -> None:
        super().__init__()
        c, h, w = _image_shape("in_shape", in_shape)
        width = _positive_int("width", width)
        self.in_shape = (c, h, w)
        self.net = nn.Sequential(
            nn.Conv2d(c, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Flatten(),
            nn.Linear(2 * width * (h // 4) * (w // 4), 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(
                f"x must have shape (N, {', '.join(map(str, self.in_shape))}), got {tuple(x.shape)}"
            )
        out: Tensor = self.net(x).squeeze(1)
        return out

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}"
