"""Open-set data: split a 10-class data set into known and unknown classes; the strong augmentation.

**Protocol** (``task: open-set``). A 10-class data set (any in-memory set with a test split, e.g. an
MNIST-format IDX folder) is split into known and unknown classes by ``open_set.splits``, by default
the five splits of the literature (the ARPL code's MNIST splits, 6 known / 4 unknown). **Seed ``i``
trains on split ``i``** (``seeds: [0, 1, 2, 3, 4]`` runs the five splits, one training seed each;
the runner builds the data per seed, see :func:`build_open_set_data`). A method trains on the known
classes' training images only (relabelled ``0..K-1`` in the order the split lists them) and is tested
on the known classes' test images (split ``test``) plus the unknown classes' test images (split
``unknown``, label ``-1``). With ``data.imbalance_factor`` the known classes' training images are made
long-tailed (the first listed class the head; the open long-tailed setting of the RPL paper);
``imbalance_factor: 1`` with ``data.max_per_class`` takes a balanced subset. Images are standardised
with the known classes' training images' mean and std.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from longtail.data import class_counts
from longtail.engine.config import Config
from longtail.engine.datasets import (
    DataBundle,
    _load_raw,
    _training_indices,
    standardise_images,
    standardise_recorded,
    validation_indices,
)
from longtail.tracks.open_set.config import OpenSetConfig

__all__ = ["build_open_set_data", "check_open_set_splits", "strong_augment"]


def check_open_set_splits(
    splits: Sequence[Sequence[int]], num_classes: int, dataset: str = "the data set"
) -> None:
    """Every split's known classes must lie in ``[0, num_classes)`` and leave an unknown class.

    (Duplicates, lengths and the seeds are checked with the config; see
    :class:`~longtail.tracks.open_set.config.OpenSetConfig`.)

    Raises:
        ValueError: naming ``open_set.splits[i]``.
    """
    for i, known in enumerate(splits):
        key = f"open_set.splits[{i}]"
        bad = [c for c in known if not 0 <= c < num_classes]
        if bad:
            raise ValueError(
                f"{key}: class {bad[0]} is out of range: {dataset} has {num_classes} classes "
                f"(0-{num_classes - 1})"
            )
        if len(set(known)) >= num_classes:
            raise ValueError(
                f"{key}: lists all {num_classes} classes of {dataset} as known; no unknown class "
                "is left for the 'unknown' test split"
            )


def build_open_set_data(cfg: Config, seed: int) -> DataBundle:
    """The known / unknown data of split ``seed`` (see the module docstring).

    Returns a :class:`~longtail.engine.datasets.DataBundle` whose training and ``test`` tensors hold
    the known classes (relabelled ``0..K-1`` in the split's order, class names of the known
    classes), and whose ``extra_splits["unknown"]`` holds the unknown classes' test images with
    label ``-1``.

    Raises:
        ValueError: naming ``open_set.splits[i]`` (a class out of range, no unknown class left) or
            ``seeds`` (no split for this seed), or a data problem naming its config key.
    """
    splits = (cfg.open_set or OpenSetConfig()).splits
    if not 0 <= seed < len(splits):
        raise ValueError(
            f"seeds: seed {seed} trains on open_set.splits[{seed}], but open_set.splits has "
            f"{len(splits)} entries (seed i uses split i)"
        )
    x_pool, y_pool, x_test, y_test, names = _load_raw(cfg.data)
    num_classes = len(names)
    check_open_set_splits(splits, num_classes, repr(cfg.data.dataset))
    known = list(splits[seed])
    k = len(known)
    relabel = torch.full((num_classes,), -1, dtype=torch.long)
    relabel[torch.tensor(known)] = torch.arange(k)
    y_pool_all = y_pool.long()
    y_pool, y_test = relabel[y_pool_all], relabel[y_test.long()]
    in_pool = y_pool >= 0
    x_other, y_other = x_pool[~in_pool], y_pool_all[~in_pool]
    x_pool, y_pool = x_pool[in_pool], y_pool[in_pool]
    idx, lt_counts = _training_indices(cfg.data, y_pool, k, balanced=False, seed=None)
    x_train, y_train = x_pool[idx], y_pool[idx]
    fraction = cfg.data.validation_fraction
    if fraction is not None:
        # known: a stratified share of the training subset; unknown: as many training images
        # per unknown class as the known classes give on average (the test set is not read)
        keep, held = validation_indices(y_train, fraction, cfg.data.validation_split_seed)
        x_test, y_test = x_train[held], y_train[held]
        x_train, y_train = x_train[keep], y_train[keep]
        per_class = max(1, math.ceil(len(held) / k))
        gen = torch.Generator().manual_seed(cfg.data.subset_seed + 4)
        picks = []
        for c in torch.unique(y_other).tolist():
            members = torch.nonzero(y_other == c).flatten()
            picks.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
        chosen = torch.cat(picks).sort().values
        x_test = torch.cat([x_test, x_other[chosen]])
        y_test = torch.cat([y_test, torch.full((len(chosen),), -1, dtype=torch.long)])
    counts = [int(c) for c in class_counts(y_train, k)]
    if min(counts) == 0:
        raise ValueError(f"data: a known class has no training images (counts {counts})")
    x_train, x_test, pre = standardise_recorded(standardise_images, x_train, x_test)
    is_known = y_test >= 0
    return DataBundle(
        name=cfg.data.dataset,
        train_x=x_train,
        train_y=y_train.contiguous(),
        test_x=x_test[is_known].contiguous(),
        test_y=y_test[is_known].contiguous(),
        class_names=[names[c] for c in known],
        class_counts=counts,
        group_counts=lt_counts,
        imbalance_factor=cfg.data.imbalance_factor,
        extra_splits={"unknown": (x_test[~is_known].contiguous(), y_test[~is_known].contiguous())},
        evaluated_on="test" if fraction is None else "validation",
        preprocessing=pre,
    )


def strong_augment(
    x: Tensor,
    *,
    max_rotation: float = 8.0,
    max_shear: float = 0.08,
    max_translate: float = 0.1,
    scale: tuple[float, float] = (0.9, 1.1),
    cutout_prob: float = 0.5,
    cutout_size: float = 0.3,
) -> Tensor:
    """A batch of images ``(N, C, H, W)`` under a random affine map and cutout (Vaze et al.'s
    "stronger augmentation", a tensor stand-in for RandAugment at their MNIST magnitude 8/30).

    Each image gets its own rotation (up to ``max_rotation`` degrees), shear (``max_shear``),
    scaling (``scale``) and translation (``max_translate`` of the side), resampled bilinearly with
    the border's value (the background); then, with probability ``cutout_prob``, a square of side
    ``cutout_size`` of the image's side at a random centre is set to the image's minimum (the
    background of standardised images). Draws from the global RNG (re-seeded by the trainer every
    epoch, so runs stay reproducible and resumable); runs on ``x``'s device. Other shapes pass
    unchanged.
    """
    if x.ndim != 4 or x.shape[0] == 0:
        return x
    n, _, h, w = x.shape
    r = torch.rand(n, 7, dtype=torch.float32)
    angle = (2 * r[:, 0] - 1) * math.radians(max_rotation)
    shear = (2 * r[:, 1] - 1) * max_shear
    s = scale[0] + (scale[1] - scale[0]) * r[:, 2]
    tx, ty = (2 * r[:, 3] - 1) * 2 * max_translate, (2 * r[:, 4] - 1) * 2 * max_translate
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack(
        [
            torch.stack([cos, -sin + shear * cos, tx], dim=1),
            torch.stack([sin, cos + shear * sin, ty], dim=1),
        ],
        dim=1,
    ).to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cutout_prob > 0 and cutout_size > 0:
        half_h, half_w = cutout_size * h / 2, cutout_size * w / 2
        cy, cx = (r[:, 5] * h).to(x.device), (r[:, 6] * w).to(x.device)
        rows = torch.arange(h, device=x.device, dtype=torch.float32).view(1, h, 1)
        cols = torch.arange(w, device=x.device, dtype=torch.float32).view(1, 1, w)
        inside = ((rows - cy.view(n, 1, 1)).abs() < half_h) & (
            (cols - cx.view(n, 1, 1)).abs() < half_w
        )
        apply = (torch.rand(n) < cutout_prob).to(x.device).view(n, 1, 1)
        fill = out.amin(dim=(1, 2, 3), keepdim=True)
        out = torch.where((inside & apply).unsqueeze(1), fill, out)
    return out
