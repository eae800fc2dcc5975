"""Standardisation of the loaded tensors with statistics of the training subset only.

:func:`standardise_images` is the default of :attr:`~longtail.engine.datasets.DataFormat.standardise`
(images to ``[0, 1]``, then per-channel mean and std; feature vectors such as the bundled digits are
used as loaded); :func:`standardise_features` is that of tables and ``.mat`` files (per-feature mean
and std, a missing value becomes the training mean).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["standardise_features", "standardise_images"]


def _as_images(x: Tensor) -> Tensor:
    """uint8 ``(N, H, W)`` / ``(N, H, W, C)`` / ``(N, C, H, W)`` -> float ``(N, C, H, W)`` in [0, 1]."""
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)
    x = x.contiguous().float()
    return x / 255.0 if x.max() > 1.0 else x


def standardise_images(x_train: Tensor, x_test: Tensor) -> tuple[Tensor, Tensor]:
    """Images (``ndim >= 3``): to float ``(N, C, H, W)`` in ``[0, 1]``, then standardised with the
    training images' per-channel mean and std (std at least ``1e-6``); anything else: float32 as
    loaded. Both results are contiguous."""
    if x_train.ndim < 3:
        return x_train.float().contiguous(), x_test.float().contiguous()
    x_train, x_test = _as_images(x_train), _as_images(x_test)
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return ((x_train - mean) / std).contiguous(), ((x_test - mean) / std).contiguous()


def standardise_features(x_train: Tensor, x_test: Tensor) -> tuple[Tensor, Tensor]:
    """Standardise feature vectors with the training split's mean and std (missing values: NaN).

    Mean and (sample) std per feature over the finite training values; a feature with std 0 is
    only centred; every non-finite value (missing) becomes 0 afterwards, i.e. the training mean.
    """
    x_train, x_test = x_train.double(), x_test.double()
    finite = torch.isfinite(x_train)
    n = finite.sum(0).clamp_min(1)
    mean = torch.where(finite, x_train, 0.0).sum(0) / n
    var = torch.where(finite, (x_train - mean) ** 2, 0.0).sum(0) / (n - 1).clamp_min(1)
    std = var.sqrt()
    std = torch.where(std > 1e-12, std, torch.ones_like(std))

    def apply(x: Tensor) -> Tensor:
        z = (x - mean) / std
        return torch.where(torch.isfinite(z), z, 0.0).float().contiguous()

    return apply(x_train), apply(x_test)
