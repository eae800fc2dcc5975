"""``image-folder``: your own images, ``data_dir/train/<class>/*.{png,jpg,jpeg}`` and, if present,
``data_dir/test/<class>/...`` (classes: the training folder names, sorted).

Read lazily with :class:`longtail.data.ImageFolderDataset` (``data.image_size``, default 32;
``data.channels``, default 3): the bundle's ``train_x`` / ``test_x`` are empty ``(0, C, S, S)``
placeholders giving the input shape, and the trainer reads ``train_dataset`` / ``eval_datasets``
through a ``DataLoader`` with ``data.num_workers`` workers. Standardisation: per-channel mean and
std of a seeded sample (``subset_seed``) of at most :data:`IMAGE_STATS_SAMPLE` images of the
training subset (all of them when it is smaller), applied in the dataset. Every file the run reads
(the training subset and the test set) is checked first (:func:`longtail.data.check_image_files`:
headers and compressed data, without a full decode), so a damaged image stops the run before
training, not when it is first read. Without ``test/`` the
files are split by :func:`~longtail.engine.datasets.stratified_split` (``data.test_fraction``,
seed ``data.subset_seed``) before the training pool is made long-tailed, and the test files are
listed in ``split.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from longtail.data import check_image_files, class_counts
from longtail.data.image_folder import (
    ImageFilesDataset,
    ImageFolderDataset,
    image_channel_stats,
)
from longtail.engine.datasets.build import training_indices
from longtail.engine.datasets.bundle import DataBundle
from longtail.engine.datasets.formats import DataFormat, register_data_format
from longtail.engine.datasets.preprocessing import Preprocessing
from longtail.engine.datasets.splits import split_record, stratified_split

if TYPE_CHECKING:
    from longtail.engine.config import Config, DataConfig

__all__ = [
    "IMAGE_FOLDER",
    "IMAGE_STATS_SAMPLE",
    "check_channels",
    "image_shape",
    "lazy_image_bundle",
    "standardise_lazy",
]

#: Image folders: the mean and std are estimated from at most this many training images.
IMAGE_STATS_SAMPLE = 2000


def image_shape(cfg: DataConfig) -> tuple[int, int]:
    """``(image_size, channels)`` of lazily read images: ``data.image_size`` (default 32) and
    ``data.channels`` (default 3)."""
    size = cfg.image_size if cfg.image_size is not None else 32
    channels = cfg.channels if cfg.channels is not None else 3
    return size, channels


def standardise_lazy(
    cfg: DataConfig, train: ImageFilesDataset, test: ImageFilesDataset
) -> Preprocessing:
    """Standardise both splits with the per-channel mean and std of (a seeded sample of at most
    :data:`IMAGE_STATS_SAMPLE` of) the training images; the steps as a record (decoded images
    are in ``[0, 1]``, so ``divide`` is 255)."""
    mean, std = image_channel_stats(
        train, max_images=IMAGE_STATS_SAMPLE, seed=cfg.subset_seed, num_workers=cfg.num_workers
    )
    train.set_normalization(mean, std)
    test.set_normalization(mean, std)
    shape = (train.channels, train.image_size, train.image_size)
    return Preprocessing.for_images(
        torch.as_tensor(mean, dtype=torch.float32),
        torch.as_tensor(std, dtype=torch.float32),
        shape,
        255.0,
    )


def lazy_image_bundle(
    cfg: DataConfig,
    pool: ImageFilesDataset,
    test: ImageFilesDataset,
    split: dict[str, Any] | None,
    balanced: bool,
    seed: int | None,
) -> DataBundle:
    """The single-label bundle of lazily read images: the training pool made long-tailed (or the
    balanced reference's subset, see :func:`~longtail.engine.datasets.training_indices`),
    standardised with :func:`standardise_lazy`; ``train_x`` / ``test_x`` are placeholders."""
    names = list(pool.class_names)
    idx, lt_counts = training_indices(cfg, pool.targets, len(names), balanced=balanced, seed=seed)
    train = pool.subset(idx)
    counts = [int(c) for c in class_counts(train.targets, len(names))]
    if min(counts) == 0:
        raise ValueError(f"data: a class has no training images (counts {counts})")
    check_image_files([*train.paths, *test.paths])  # now, not when training reads a bad one
    pre = standardise_lazy(cfg, train, test)
    placeholder = torch.empty((0, train.channels, train.image_size, train.image_size))
    return DataBundle(
        name=cfg.dataset,
        train_x=placeholder,
        train_y=train.targets.clone(),
        test_x=placeholder,
        test_y=test.targets.clone(),
        class_names=names,
        class_counts=counts,
        group_counts=lt_counts,
        imbalance_factor=cfg.imbalance_factor,
        train_dataset=train,
        eval_datasets={"test": test},
        split=split,
        num_workers=cfg.num_workers,
        preprocessing=pre,
    )


def _build(cfg: DataConfig, root: Path | None, balanced: bool, seed: int | None) -> DataBundle:
    """Lazy datasets over ``data_dir/train`` (and ``data_dir/test``)."""
    assert root is not None
    if not (root / "train").is_dir():
        raise FileNotFoundError(
            f"data.data_dir: {root} has no train/ folder (expected train/<class>/*.png, *.jpg or "
            "*.jpeg, and optionally test/<class>/...)"
        )
    size, channels = image_shape(cfg)
    pool = ImageFolderDataset(root / "train", size, channels)
    split: dict[str, Any] | None = None
    if (root / "test").is_dir():
        test = ImageFolderDataset(root / "test", size, channels, class_names=pool.class_names)
    else:
        train_idx, test_idx = stratified_split(pool.targets, cfg.test_fraction, cfg.subset_seed)
        test = pool.subset(test_idx)
        pool = pool.subset(train_idx)
        split = split_record(
            cfg,
            root / "train",
            test.relative_paths(root),
            len(pool),
            entries="image files, relative to data.data_dir",
        )
    return lazy_image_bundle(cfg, pool, test, split, balanced, seed)


def check_channels(cfg: Config, labels: str) -> None:
    """``data.channels``: 1 or 3 (the config allows 1..3)."""
    channels = cfg.data.channels
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"config key 'data.channels': must be 1 or 3, got {channels}")


IMAGE_FOLDER = register_data_format(
    DataFormat(
        name="image-folder",
        build=_build,
        keys=("image_size", "channels", "num_workers"),
        test_set="the `test/` folder",
        holds_out_test=lambda root: not (root / "test").is_dir(),
        own_data=True,
        check=check_channels,
        doc="your images: data_dir/train/<class>/*.png (and test/<class>/...), read lazily",
    )
)
