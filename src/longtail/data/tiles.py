"""Multi-label image sets made of tiles of single-label images (e.g. Fashion-MNIST "tiles").

:func:`make_tile_images` lays out ``grid x grid`` items of a single-label image set (e.g.
Fashion-MNIST 28x28) as the tiles of one image; the labels of a tile image are the classes of the items it
shows, so a long-tailed choice of ``label_probs`` (:func:`long_tailed_label_probs`) gives a
long-tailed multi-label data set whose ground truth is known exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from longtail.data.long_tailed import _check_if

__all__ = ["long_tailed_label_probs", "make_tile_images"]


def _label_probs(label_probs: Tensor | Sequence[float]) -> Tensor:
    """Validated ``label_probs`` as a float64 ``(K,)`` CPU tensor."""
    try:
        probs = (
            label_probs.detach()
            if isinstance(label_probs, Tensor)
            else torch.as_tensor(np.asarray(label_probs))  # Python floats stay float64
        )
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(
            f"label_probs: expected K probabilities, got {type(label_probs).__name__} ({exc})"
        ) from None
    if probs.dtype.is_complex or probs.dtype == torch.bool:
        raise TypeError(f"label_probs: expected real numbers, got dtype {probs.dtype}")
    if probs.ndim != 1 or probs.numel() == 0:
        raise ValueError(
            f"label_probs: expected a non-empty 1-D tensor of K probabilities, got shape "
            f"{tuple(probs.shape)}"
        )
    probs = probs.to("cpu", torch.float64)
    bad = ~torch.isfinite(probs) | (probs < 0)
    if bool(bad.any()):
        k = int(torch.nonzero(bad)[0])
        raise ValueError(
            f"label_probs: probabilities must be finite and >= 0, got {float(probs[k])!r} "
            f"for class {k}"
        )
    total = float(probs.sum())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"label_probs: probabilities must sum to 1 (within 1e-6), got {total!r}")
    return probs


def make_tile_images(
    images: Tensor,
    labels: Tensor,
    *,
    num_images: int,
    label_probs: Tensor | Sequence[float],
    blank_prob: float = 0.25,
    grid: int = 2,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Multi-label images of ``grid x grid`` tiles, each blank or an item of a random class.

    **Construction.** Let ``T = grid * grid``, ``K = len(label_probs)`` and
    ``g = torch.Generator().manual_seed(seed)`` (the global RNG is untouched). The draws are made
    from ``g`` in this order, each for all ``num_images x T`` tiles at once (tile ``t`` of an
    image is row ``t // grid``, column ``t % grid``, i.e. row-major):

    1. ``blank = torch.rand((num_images, T), generator=g, dtype=torch.float64) < blank_prob``;
    2. ``cls = torch.multinomial(p, num_images * T, replacement=True, generator=g)
       .view(num_images, T)`` with ``p = label_probs`` as float64 (drawn for every tile, blank
       ones included, and then ignored for blank ones);
    3. ``u = torch.rand((num_images, T), generator=g, dtype=torch.float64)``; with the images of
       class ``c`` listed in ascending index order (``members_c``, ``n_c`` of them), a non-blank
       tile of class ``c`` shows ``images[members_c[min(floor(u * n_c), n_c - 1)]]``: a uniformly
       random item of its class, with replacement (an item may appear in several tiles).

    Blank tiles are all zeros. Hence each tile is independently blank with probability
    ``b = blank_prob`` and otherwise shows class ``k`` with probability ``p_k``, and

    .. math:: P(y_{nk} = 1) = 1 - \\bigl(1 - (1 - b)\\, p_k\\bigr)^{T}.

    Args:
        images: ``uint8`` ``(M, H, W)`` single-channel items (e.g. Fashion-MNIST ``28 x 28``).
        labels: integer class ids ``(M,)`` in ``[0, K)``.
        num_images: number of tile images to make (``>= 1``).
        label_probs: ``K`` class probabilities ``p_k`` (non-negative, summing to 1 within
            ``1e-6``), e.g. :func:`long_tailed_label_probs`.
        blank_prob: probability ``b`` in ``[0, 1]`` that a tile is blank. Default ``0.25``.
        grid: tiles per side (``>= 1``). Default ``2``.
        seed: seed of the draw. Default ``0``.

    Returns:
        ``(x, y)``: ``x`` ``uint8`` ``(num_images, grid * H, grid * W)``; ``y`` ``float32``
        ``(num_images, K)`` in ``{0, 1}``, ``y[n, k] = 1`` iff some tile of image ``n`` shows an
        item of class ``k``.

    Raises:
        TypeError: ``images`` not a ``uint8`` tensor, ``labels`` not an integer tensor,
            ``label_probs`` not real numbers.
        ValueError: ``images`` not 3-D or empty, ``labels`` of another shape or outside
            ``[0, K)``, bad ``label_probs`` (shape, negative, not summing to 1), a class with
            ``p_k > 0`` but no images, ``num_images`` / ``grid`` not an int ``>= 1``,
            ``blank_prob`` outside ``[0, 1]``, ``seed`` not an int.

    Example:
        >>> items = torch.tensor([[[1]], [[2]], [[3]]], dtype=torch.uint8)  # 3 items, 1x1 pixel
        >>> x, y = make_tile_images(
        ...     items, torch.tensor([0, 1, 1]), num_images=2, label_probs=[0.5, 0.5]
        ... )
        >>> tuple(x.shape), x.dtype, tuple(y.shape), y.dtype
        ((2, 2, 2), torch.uint8, (2, 2), torch.float32)
    """
    if not isinstance(images, Tensor) or images.dtype != torch.uint8:
        what = images.dtype if isinstance(images, Tensor) else type(images).__name__
        raise TypeError(f"images: expected a uint8 tensor (M, H, W), got {what}")
    if images.ndim != 3 or images.numel() == 0:
        raise ValueError(
            f"images: expected a non-empty (M, H, W) tensor, got shape {tuple(images.shape)}"
        )
    if not isinstance(labels, Tensor) or (
        labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool
    ):
        what = labels.dtype if isinstance(labels, Tensor) else type(labels).__name__
        raise TypeError(f"labels: expected an integer tensor of class ids, got {what}")
    if labels.shape != images.shape[:1]:
        raise ValueError(
            f"labels: expected shape ({images.shape[0]},) to match images, got "
            f"{tuple(labels.shape)}"
        )
    probs = _label_probs(label_probs)
    num_classes = probs.numel()
    labels = labels.detach().to("cpu", torch.int64)
    outside = (labels < 0) | (labels >= num_classes)
    if bool(outside.any()):
        i = int(torch.nonzero(outside)[0])
        raise ValueError(
            f"labels: class ids must be in [0, {num_classes}) (K = len(label_probs)), got "
            f"{int(labels[i])} at index {i}"
        )
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"num_images: expected an int >= 1, got {num_images!r}")
    if (
        isinstance(blank_prob, bool)
        or not isinstance(blank_prob, (int, float))
        or not 0.0 <= blank_prob <= 1.0  # also refuses NaN
    ):
        raise ValueError(f"blank_prob: expected a number in [0, 1], got {blank_prob!r}")
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"grid: expected an int >= 1, got {grid!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed: expected an int, got {seed!r}")
    counts = torch.bincount(labels, minlength=num_classes)
    missing = torch.nonzero((probs > 0) & (counts == 0)).flatten().tolist()
    if missing:
        raise ValueError(
            f"label_probs: class {missing[0]} has probability {float(probs[missing[0]])!r} "
            f"but no images (classes with p > 0 and no images: {missing[:10]})"
        )

    tiles = grid * grid
    height, width = images.shape[1], images.shape[2]
    generator = torch.Generator().manual_seed(seed)
    blank = torch.rand((num_images, tiles), generator=generator, dtype=torch.float64) < blank_prob
    classes = torch.multinomial(
        probs, num_images * tiles, replacement=True, generator=generator
    ).view(num_images, tiles)
    uniform = torch.rand((num_images, tiles), generator=generator, dtype=torch.float64)
    order = torch.argsort(labels, stable=True)  # members of class c: order[starts[c]:][:n_c]
    starts = torch.cumsum(counts, 0) - counts
    sizes = counts[classes]
    offsets = torch.minimum((uniform * sizes).long(), sizes - 1)  # sizes >= 1: p_c > 0
    items = order[starts[classes] + offsets]

    shown = images[items]  # (num_images, T, H, W)
    shown[blank] = 0
    x = (
        shown.view(num_images, grid, grid, height, width)
        .permute(0, 1, 3, 2, 4)
        .reshape(num_images, grid * height, grid * width)
    )
    y = torch.zeros((num_images, num_classes), dtype=torch.float32)
    rows = torch.arange(num_images).unsqueeze(1).expand(num_images, tiles)
    y[rows[~blank], classes[~blank]] = 1.0
    return x.contiguous(), y


def long_tailed_label_probs(num_classes: int, imbalance_factor: float) -> Tensor:
    """Exponentially decaying class probabilities, class 0 the head.

    .. math:: p_k = \\frac{\\rho^{-k / (K - 1)}}{\\sum_{j=0}^{K-1} \\rho^{-j / (K - 1)}},
        \\quad k = 0, \\dots, K - 1

    with ``rho = imbalance_factor = p_0 / p_{K-1}`` (the exponential profile of Cui et al.
    CVPR 2019 / Cao et al. NeurIPS 2019, as :func:`long_tailed_counts`); ``K = 1`` gives ``[1]``.

    Args:
        num_classes: ``K >= 1``.
        imbalance_factor: ``rho >= 1`` (``1``: uniform).

    Returns:
        float64 ``(K,)`` probabilities summing to 1, non-increasing.

    Raises:
        ValueError: ``num_classes`` not an int ``>= 1``; ``imbalance_factor`` not a finite
            number ``>= 1``.

    Example:
        >>> long_tailed_label_probs(3, 4.0).tolist()
        [0.5714285714285714, 0.2857142857142857, 0.14285714285714285]
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: expected an int >= 1, got {num_classes!r}")
    _check_if(imbalance_factor)
    if num_classes == 1:
        return torch.ones(1, dtype=torch.float64)
    ranks = torch.arange(num_classes, dtype=torch.float64)
    weights = float(imbalance_factor) ** (-ranks / (num_classes - 1))
    return weights / weights.sum()
