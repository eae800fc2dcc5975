"""Many-class data sets made of ordered pairs of images (e.g. 100 Fashion-MNIST pair classes).

:func:`make_pair_images` turns a labelled image set with ``K`` classes into one with ``K * K``
classes: class ``K * a + b`` shows an image of class ``a`` on the left and an image of class ``b``
on the right (concatenated along the width). It is how the engine's ``fashion-pairs`` data set
(10 x 10 = 100 classes of 1x28x56 images) is built.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["make_pair_images"]


def _draw(members: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """``k`` entries of ``members``: the first ``k`` of fresh random permutations laid end to end.

    No entry repeats while ``k <= len(members)``; beyond that every entry is used ``floor`` or
    ``ceil(k / len(members))`` times.
    """
    n = len(members)
    perms = [torch.randperm(n, generator=generator) for _ in range(-(-k // n))]
    return members[torch.cat(perms)[:k]]


def make_pair_images(
    images: Tensor, labels: Tensor, *, per_class: int, seed: int
) -> tuple[Tensor, Tensor]:
    """Side-by-side pairs of images: ``K`` source classes give ``K * K`` balanced pair classes.

    For every ordered pair ``(a, b)`` (``a`` outer loop, ``b`` inner loop, both ascending), the
    left images are the first ``per_class`` entries of a fresh random permutation of the images of
    class ``a`` and, independently, the right images the first ``per_class`` entries of a fresh
    random permutation of the images of class ``b``; the ``i``-th left and the ``i``-th right image
    are concatenated along the last (width) axis. So within a pair class no image appears twice in
    the same slot as long as ``per_class`` does not exceed the source class size (beyond that,
    further permutations are appended, so an image is reused at most ``ceil(per_class / n)``
    times). For ``a == b`` the two slots are independent draws, so a pair may show the same image
    twice (probability ``1 / n`` per pair). All draws come from one ``torch.Generator`` seeded with
    ``seed`` in the order above (the global RNG is untouched), so the result depends only on
    ``(images, labels, per_class, seed)``.

    Args:
        images: ``(N, H, W)`` or ``(N, C, H, W)`` images of any dtype (e.g. uint8).
        labels: 1-D integer class indices ``(N,)``; ``K = max(labels) + 1`` and every class in
            ``0..K-1`` must be present.
        per_class: images per pair class (``>= 1``).
        seed: seed of the draw.

    Returns:
        ``(pair_images, pair_labels)``: ``(K * K * per_class, H, 2W)`` (or ``(.., C, H, 2W)``)
        images of the dtype of ``images``, and ``int64`` labels ``K * a + b``, sorted ascending
        (``per_class`` consecutive images per class).

    Raises:
        ValueError: ``images`` not a 3-D / 4-D tensor or empty; ``labels`` not 1-D integer, of
            another length, negative or with a class absent; ``per_class`` not an int ``>= 1``;
            ``seed`` not an int.

    Example:
        >>> x = torch.arange(4, dtype=torch.uint8).view(4, 1, 1).expand(4, 2, 2)
        >>> px, py = make_pair_images(x, torch.tensor([0, 0, 1, 1]), per_class=2, seed=0)
        >>> tuple(px.shape), py.tolist()
        ((8, 2, 4), [0, 0, 1, 1, 2, 2, 3, 3])
    """
    if not isinstance(images, Tensor) or images.ndim not in (3, 4):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images: expected a (N, H, W) or (N, C, H, W) tensor, got {shape}")
    if len(images) == 0:
        raise ValueError("images: empty")
    if not isinstance(labels, Tensor) or labels.ndim != 1:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels: expected a 1-D tensor of class indices, got {shape}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels: expected an integer tensor, got dtype {labels.dtype}")
    if len(labels) != len(images):
        raise ValueError(f"labels: {len(labels)} labels for {len(images)} images")
    labels = labels.to(torch.int64)
    if int(labels.min()) < 0:
        raise ValueError(f"labels: class indices must be >= 0, got {int(labels.min())}")
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class: expected an int >= 1, got {per_class!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed: expected an int, got {seed!r}")
    num_classes = int(labels.max()) + 1
    counts = torch.bincount(labels, minlength=num_classes)
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if empty:
        raise ValueError(f"labels: classes {empty[:10]} have no images")
    members = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
    generator = torch.Generator().manual_seed(seed)
    left, right = [], []
    for a in range(num_classes):
        for b in range(num_classes):
            left.append(_draw(members[a], per_class, generator))
            right.append(_draw(members[b], per_class, generator))
    pair_images = torch.cat((images[torch.cat(left)], images[torch.cat(right)]), dim=-1)
    pair_labels = torch.arange(num_classes * num_classes).repeat_interleave(per_class)
    return pair_images.contiguous(), pair_labels
