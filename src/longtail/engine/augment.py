"""Batch image augmentation written with torch: random crop with zero padding, horizontal flip.

Both act on a whole batch ``(N, C, H, W)`` (or ``(N, H, W)``) at once, draw their randomness from an
explicit :class:`torch.Generator` (so a run is reproducible and resumable), and run on the batch's
device. The crop is the CIFAR recipe of He et al. 2016: pad by ``padding`` pixels with zeros and cut
a random ``H x W`` window.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["augment_batch", "random_crop", "random_flip"]


def random_crop(x: Tensor, padding: int, generator: torch.Generator | None = None) -> Tensor:
    """Random ``H x W`` crop of each image after zero-padding by ``padding`` on every side.

    Args:
        x: images ``(N, C, H, W)`` or ``(N, H, W)``.
        padding: pixels added on each side (0 returns ``x`` unchanged).
        generator: source of the offsets (CPU generator).

    Returns:
        Tensor of the same shape and dtype as ``x``.
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if padding == 0 or x.shape[0] == 0:
        return x
    squeeze = x.ndim == 3
    if squeeze:
        x = x.unsqueeze(1)
    if x.ndim != 4:
        raise ValueError(f"x must have shape (N, C, H, W) or (N, H, W), got {tuple(x.shape)}")
    n, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    off = torch.randint(0, 2 * padding + 1, (2, n), generator=generator).to(x.device)
    rows = off[0].view(n, 1) + torch.arange(h, device=x.device).view(1, h)  # (N, H)
    cols = off[1].view(n, 1) + torch.arange(w, device=x.device).view(1, w)  # (N, W)
    idx_n = torch.arange(n, device=x.device).view(n, 1, 1)
    # gather rows then columns with advanced indexing: (N, H, W, C) -> (N, C, H, W)
    out = padded.permute(0, 2, 3, 1)[idx_n, rows.view(n, h, 1), cols.view(n, 1, w)]
    out = out.permute(0, 3, 1, 2).contiguous()
    return out.squeeze(1) if squeeze else out


def random_flip(x: Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> Tensor:
    """Flip each image left-right with probability ``p``. ``x``: ``(N, ..., W)``."""
    if x.shape[0] == 0:
        return x
    mask = (torch.rand(x.shape[0], generator=generator) < p).to(x.device)
    flipped = x.flip(-1)
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    return torch.where(mask.view(shape), flipped, x)


def augment_batch(
    x: Tensor, *, padding: int, flip: bool, generator: torch.Generator | None = None
) -> Tensor:
    """Random crop (if ``padding > 0``) then random horizontal flip (if ``flip``)."""
    x = random_crop(x, padding, generator)
    if flip:
        x = random_flip(x, generator)
    return x
