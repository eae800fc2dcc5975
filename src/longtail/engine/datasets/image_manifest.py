"""``image-manifest``: your own images listed in a CSV file (``data.path``) with their labels,
for either task (read with :func:`longtail.data.read_image_manifest`).

- ``data.path_column`` (default ``path``): the image files, relative to the manifest's folder
  (a path leaving it is refused; every file must exist).
- single-label: ``data.label_column`` holds each image's class (the classes: the values, sorted).
- multi-label (``task: multi-label``): ``data.label_column`` holds each image's tags separated by
  ``data.tag_separator`` (default ``;``; the labels: the tags, sorted), or ``data.label_columns``
  are one 0/1 column per label; a blank cell or ``-1`` is unknown (``-1``, ignored by the losses
  and metrics); a blank tags cell leaves every label of the image unknown.

The test split: the rows marked ``test`` in a ``split`` column (``train`` / ``test``) when the
manifest has one, else held out by :func:`~longtail.engine.datasets.stratified_split`
(single-label, ``data.test_fraction`` of each class, seed ``data.subset_seed``) or at random
(multi-label, ``test_fraction`` of the rows, the draw of
:func:`~longtail.engine.datasets.validation_indices`), listed in ``split.json``. Then as image
folders (:mod:`.image_folder`): read lazily (``data.image_size``, ``data.channels``,
``data.num_workers``), standardised per channel with the training images' statistics;
single-label: the training pool made long-tailed by ``data.imbalance_factor``; multi-label: used
as loaded (``imbalance_factor`` null).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from longtail.data.image_folder import ImageFilesDataset, check_image_files
from longtail.data.image_manifest import SPLIT_COLUMN, ImageManifest, read_image_manifest
from longtail.engine.datasets.bundle import DataBundle
from longtail.engine.datasets.formats import DataFormat, LoadedData, register_data_format
from longtail.engine.datasets.image_folder import (
    check_channels,
    image_shape,
    lazy_image_bundle,
    standardise_lazy,
)
from longtail.engine.datasets.splits import split_record, stratified_split, validation_indices

if TYPE_CHECKING:
    from longtail.engine.config import Config, DataConfig

__all__ = ["IMAGE_MANIFEST"]


def _read(cfg: DataConfig, source: Path | None, multi: bool) -> ImageManifest:
    assert source is not None
    tags = multi and cfg.label_column is not None
    return read_image_manifest(
        source,
        path_column=cfg.path_column,
        label_column=cfg.label_column,
        label_columns=cfg.label_columns,
        tag_separator=cfg.tag_separator if tags else None,
    )


def _splits(
    cfg: DataConfig, source: Path, manifest: ImageManifest, multi: bool
) -> tuple[ImageFilesDataset, ImageFilesDataset, dict[str, Any] | None]:
    """The images as a lazy dataset, split into training and test (see the module docstring)."""
    size, channels = image_shape(cfg)
    images = ImageFilesDataset(
        manifest.paths,
        manifest.targets,
        size,
        channels,
        manifest.class_names,
        root=manifest.root,
    )
    if manifest.split is not None:
        test_idx = [i for i, s in enumerate(manifest.split) if s == "test"]
        train_idx = [i for i, s in enumerate(manifest.split) if s == "train"]
        return images.subset(train_idx), images.subset(test_idx), None
    if len(images) < 2:
        raise ValueError(f"data.path: {source} lists {len(images)} image, at least 2 are needed")
    if multi:  # a stratified split is not defined for several labels per image
        train, test = validation_indices(manifest.targets, cfg.test_fraction, cfg.subset_seed)
    else:
        train, test = stratified_split(manifest.targets, cfg.test_fraction, cfg.subset_seed)
    train_set, test_set = images.subset(train), images.subset(test)
    split = split_record(
        cfg,
        source,
        test_set.relative_paths(),
        len(train_set),
        entries="image files, relative to the manifest's folder",
        stratified=not multi,
    )
    return train_set, test_set, split


def _build(cfg: DataConfig, source: Path | None, balanced: bool, seed: int | None) -> DataBundle:
    """Single-label: lazy datasets, the training pool made long-tailed."""
    assert source is not None
    pool, test, split = _splits(cfg, source, _read(cfg, source, multi=False), multi=False)
    if len(pool.class_names) < 2:
        raise ValueError(
            f"data.path: {source} has {len(pool.class_names)} class(es) in column "
            f"{cfg.label_column!r}, at least 2 are needed"
        )
    return lazy_image_bundle(cfg, pool, test, split, balanced, seed)


def _load_multilabel(cfg: DataConfig, source: Path | None) -> LoadedData:
    """Multi-label: lazy datasets (``train_x`` / ``test_x`` placeholders), used as loaded."""
    assert source is not None
    train, test, split = _splits(cfg, source, _read(cfg, source, multi=True), multi=True)
    check_image_files([*train.paths, *test.paths])  # now, not when training reads a bad one
    pre = standardise_lazy(cfg, train, test)
    placeholder = torch.empty((0, train.channels, train.image_size, train.image_size))
    return LoadedData(
        placeholder,
        train.targets.clone(),
        placeholder,
        test.targets.clone(),
        list(train.class_names),
        split,
        train_dataset=train,
        test_dataset=test,
        num_workers=cfg.num_workers,
        preprocessing=pre,
    )


def _has_split_column(source: Path) -> bool:
    """The manifest's header names a ``split`` column (read for the report's words)."""
    try:
        with open(source, encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, ValueError, csv.Error):
        return False
    return SPLIT_COLUMN in {h.strip() for h in header}


def _check(cfg: Config, labels: str) -> None:
    """The label keys fit the task; ``data.tag_separator`` only with tags; channels 1 or 3."""
    check_channels(cfg, labels)
    d = cfg.data
    for key in ("path_column", "tag_separator"):
        if not getattr(d, key):
            raise ValueError(f"config key 'data.{key}': must not be empty")
    if d.label_column is not None and d.label_columns is not None:
        raise ValueError(
            "config key 'data.label_columns': give data.label_column (a class, or tags) or "
            "data.label_columns (0/1 columns), not both"
        )
    if labels == "single":
        if d.label_columns is not None:
            raise ValueError(
                "config key 'data.label_columns': multi-label only (task: multi-label); a "
                "single-label manifest reads data.label_column"
            )
        if d.label_column is None:
            raise ValueError(
                "config key 'data.label_column': required for a single-label manifest (the "
                "column holding each image's class)"
            )
    else:
        if d.label_column is None and not d.label_columns:
            raise ValueError(
                "config key 'data.label_column': a multi-label manifest needs data.label_column "
                "(a column of tags) or data.label_columns (0/1 columns)"
            )
        if d.label_columns and len(set(d.label_columns)) != len(d.label_columns):
            raise ValueError(
                f"config key 'data.label_columns': duplicate names in {d.label_columns}"
            )
        if d.imbalance_factor is not None:
            raise ValueError(
                "config key 'data.imbalance_factor': a multi-label manifest is used as loaded (a "
                "long-tailed subset is not defined for several labels per image); set it to null, "
                f"got {d.imbalance_factor}"
            )
    if d.tag_separator != ";" and (labels == "single" or d.label_column is None):
        raise ValueError(
            "config key 'data.tag_separator': only used by a multi-label manifest with "
            f"data.label_column (a column of tags), got {d.tag_separator!r}"
        )


IMAGE_MANIFEST = register_data_format(
    DataFormat(
        name="image-manifest",
        build=_build,
        load_multilabel=_load_multilabel,
        source="path",
        suffixes=(".csv",),
        keys=(
            "path_column",
            "label_column",
            "label_columns",
            "tag_separator",
            "image_size",
            "channels",
            "num_workers",
        ),
        test_set="the manifest's rows marked `test` in its `split` column",
        holds_out_test=lambda source: not _has_split_column(source),
        own_data=True,
        check=_check,
        doc="your images listed in a .csv with their class, tags or 0/1 labels (either task)",
    )
)
