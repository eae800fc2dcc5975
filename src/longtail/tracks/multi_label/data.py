"""Multi-label data: the ``mulan`` and ``fashion-tiles`` formats (registered here) and
:func:`build_multilabel_data`, which also reads a multi-label ``table``.

Data (:func:`build_multilabel_data`), every label column a float ``{0, 1}`` (``-1``: hidden):

- ``mulan``: a Mulan folder (``data_dir`` holds ``NAME-train.arff``, ``NAME-test.arff`` and
  ``NAME.xml``; ``data.mulan_name`` picks NAME when there are several), read with
  :func:`longtail.data.load_mulan`. Features are scaled with statistics of the *training* split
  only, as ``data.feature_scaling`` says (:func:`~longtail.engine.datasets.scale_features`;
  ``auto``: divided by the training max ``|x|`` for non-negative features that are mostly zeros or
  all 0/1, such as bag-of-words, else standardised with the training mean and std); a missing
  feature (``?``) is set to the training mean. The model is an MLP (or ``model.arch: linear``).
- ``fashion-tiles``: 2x2 grids of Fashion-MNIST items (``data_dir`` holds the IDX files), each
  item first resized to ``data.tiles_item_size`` pixels (area averaging; 14 by default, so the
  images are 28x28 like Fashion-MNIST's and train as fast), built with
  :func:`longtail.data.make_tile_images`: each tile is blank with probability
  ``data.tiles_blank_prob``, otherwise an item whose class is drawn from
  :func:`longtail.data.long_tailed_label_probs` (``data.imbalance_factor``; class 0 the head; null:
  uniform); an image's labels are the classes of its items. ``data.tiles_train`` images come from the
  official training images (seed ``subset_seed``), ``data.tiles_test`` from the official test
  images (seed ``subset_seed + 1``), with the same label distribution. Pixels are scaled to
  ``[0, 1]`` and standardised with the training images' mean and std. The model is the CNN.
- ``table``: a ``.csv`` / ``.npz`` / ``.parquet`` file (``data.path``) whose ``data.label_columns``
  hold 0 / 1 (empty / NaN: unknown, -1); every other numeric column is a feature (see
  :func:`longtail.data.load_table`). ``test_fraction`` of the rows (at least one) are held out at
  random (seed ``subset_seed``; recorded in ``split.json``); features are scaled like Mulan's.

Missing labels (``data.hide_fraction`` = h > 0): each training label entry is hidden (set to -1)
independently with probability h, drawn from a generator seeded with ``subset_seed + 2``; the
losses ignore hidden entries and the per-label positive counts (class-balanced weights,
repeat factors, the report) count the visible positives. With ``data.hidden_as: negative`` a hidden
entry becomes 0 instead (an unannotated label taken as negative, the setting of the Hill paper: the
hidden positives become false negatives). The test labels are never hidden.

Labels (:mod:`.labels`): a label without a visible positive in the training rows is kept and trains
as all-negative (a :class:`~longtail.engine.datasets.DataWarning` names it);
``data.min_label_positives: K`` drops the labels with fewer than ``K`` visible training positives
(counted after the validation split and hiding); the metrics average over the labels with a
positive in the evaluated split. The bundle's ``details`` record the dropped, unseen and scored
labels (``results.json``'s ``data_details``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from longtail.data import (
    load_idx,
    load_mulan,
    long_tailed_label_probs,
    make_tile_images,
    mulan_set_names,
)
from longtail.engine.datasets import (
    DATA_FORMATS,
    FASHION_MNIST_NAMES,
    DataBundle,
    DataFormat,
    LoadedData,
    Preprocessing,
    register_data_format,
    resolve_source,
    scale_features,
    validation_indices,
)
from longtail.tracks.multi_label.labels import select_labels

if TYPE_CHECKING:
    from longtail.engine.config import Config, DataConfig

__all__ = ["FASHION_TILES", "MULAN", "build_multilabel_data", "hide_labels", "positive_counts"]


def hide_labels(targets: Tensor, fraction: float, seed: int, *, value: float = -1.0) -> Tensor:
    """A copy of ``targets`` (N, L) with each entry set to ``value`` independently with probability
    ``fraction`` (a ``torch.Generator`` seeded with ``seed``; one uniform draw per entry, row-major).

    ``value`` -1 marks the entry unknown; 0 turns a hidden positive into a false negative (the same
    entries are drawn for either value)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"data.hide_fraction: must be in [0, 1), got {fraction!r}")
    out = targets.clone()
    if fraction == 0.0 or out.numel() == 0:
        return out
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.rand(out.shape, generator=gen, dtype=torch.float64) < fraction
    out[hidden] = value
    return out


def positive_counts(targets: Tensor) -> list[int]:
    """Visible positives per label of a (N, L) target matrix."""
    return [int(c) for c in (targets == 1).sum(0).tolist()]


def _mulan_name(cfg: DataConfig, directory: Path) -> str:
    """``data.mulan_name``, else the folder's only Mulan set (errors say which key to set)."""
    if cfg.mulan_name is not None:
        return cfg.mulan_name
    names = mulan_set_names(directory)
    if len(names) == 1:
        return names[0]
    if names:
        raise ValueError(
            f"data.mulan_name: {directory} holds {len(names)} Mulan sets ({', '.join(names)}); "
            f"choose one with --set data.mulan_name=NAME (e.g. --set data.mulan_name={names[0]}) "
            "or mulan_name in the config's data section"
        )
    files = sorted(p.name for p in directory.iterdir() if p.suffix in (".xml", ".arff"))
    raise FileNotFoundError(
        f"data.data_dir: {directory} holds no Mulan set (NAME.xml with NAME-train.arff and "
        f"NAME-test.arff beside it); its .xml / .arff files: {', '.join(files[:10]) or 'none'}"
    )


def _load_mulan(cfg: DataConfig, directory: Path | None) -> LoadedData:
    assert directory is not None
    name = _mulan_name(cfg, directory)
    train, test = load_mulan(directory, name)
    x_train, x_test, scaling, pre = scale_features(train.data, test.data, cfg.feature_scaling)
    names = list(train.class_names or [f"label {j}" for j in range(train.targets.shape[1])])
    return LoadedData(
        x_train,
        train.targets.float(),
        x_test,
        test.targets.float(),
        names,
        name=name,
        feature_scaling=scaling,
        preprocessing=pre,
    )


def _check_mulan(cfg: Config, labels: str) -> None:
    if labels == "multi" and cfg.data.imbalance_factor is not None:
        raise ValueError(
            "config key 'data.imbalance_factor': a Mulan set is used as loaded (its labels "
            f"are naturally skewed); set it to null, got {cfg.data.imbalance_factor}"
        )


def _resize_items(images: Tensor, cfg: DataConfig) -> Tensor:
    """uint8 ``(M, H, W)`` items resized to ``tiles_item_size`` (area averaging, rounded)."""
    size = cfg.tiles_item_size
    if images.ndim != 3:
        raise ValueError(
            f"data.data_dir: fashion-tiles needs single-channel (M, H, W) images, got shape "
            f"{tuple(images.shape)}"
        )
    if tuple(images.shape[1:]) == (size, size):
        return images
    small = F.interpolate(images.unsqueeze(1).float(), size=(size, size), mode="area")
    return small.squeeze(1).round().clamp(0, 255).to(torch.uint8)


def _load_tiles(cfg: DataConfig, directory: Path | None) -> LoadedData:
    assert directory is not None
    train = load_idx(directory, split="train")
    test = load_idx(directory, split="test")
    num_items = int(train.targets.max()) + 1
    names = (
        list(FASHION_MNIST_NAMES)
        if num_items == len(FASHION_MNIST_NAMES)
        else [str(c) for c in range(num_items)]
    )
    probs = long_tailed_label_probs(num_items, cfg.imbalance_factor or 1.0)
    items_train, items_test = _resize_items(train.data, cfg), _resize_items(test.data, cfg)
    common: dict[str, Any] = {"label_probs": probs, "blank_prob": cfg.tiles_blank_prob}
    x_tr, y_tr = make_tile_images(
        items_train, train.targets, num_images=cfg.tiles_train, seed=cfg.subset_seed, **common
    )
    x_te, y_te = make_tile_images(
        items_test, test.targets, num_images=cfg.tiles_test, seed=cfg.subset_seed + 1, **common
    )
    x_tr = x_tr.unsqueeze(1).float() / 255.0
    x_te = x_te.unsqueeze(1).float() / 255.0
    mean = x_tr.mean()
    std = x_tr.std().clamp_min(1e-6)
    return LoadedData(
        ((x_tr - mean) / std).contiguous(),
        y_tr.float(),
        ((x_te - mean) / std).contiguous(),
        y_te.float(),
        names,
        preprocessing=Preprocessing.for_images(mean, std, x_tr.shape[1:], 255.0),
    )


MULAN = register_data_format(
    DataFormat(
        name="mulan",
        load_multilabel=_load_mulan,
        keys=("mulan_name", "feature_scaling"),
        inputs="vectors",
        check=_check_mulan,
        doc="a Mulan folder: NAME-train.arff, NAME-test.arff and NAME.xml (multi-label)",
        # the public sets are fetched under their own name: data.mulan_name, or the folder's
        fetch=lambda cfg, directory: cfg.mulan_name or directory.name,
    )
)
FASHION_TILES = register_data_format(
    DataFormat(
        name="fashion-tiles",
        load_multilabel=_load_tiles,
        keys=("tiles_train", "tiles_test", "tiles_item_size", "tiles_blank_prob"),
        idx_files=True,
        doc="2x2 tiles of Fashion-MNIST items, one label per item class (multi-label)",
        fetch="fashion-mnist",
    )
)


def build_multilabel_data(cfg: DataConfig) -> DataBundle:
    """Load a multi-label data set (see the module docstring), hide labels if configured and keep
    the labels :func:`~longtail.tracks.multi_label.labels.select_labels` keeps.

    Warns:
        DataWarning: naming the labels without a visible positive training example.

    Raises:
        ValueError: a data problem (the message names the file, the label or the config key), or
            no label left with a visible positive training example.
    """
    fmt = DATA_FORMATS[cfg.dataset]
    if fmt.load_multilabel is None:
        raise ValueError(f"data.dataset: {cfg.dataset!r} is not a multi-label data set")
    source = resolve_source(cfg, fmt)
    loaded = fmt.load_multilabel(cfg, source)
    x_train, y_train, x_test, y_test = loaded.train_x, loaded.train_y, loaded.test_x, loaded.test_y
    names = loaded.class_names
    evaluated_on = "test"
    if cfg.validation_fraction is not None:
        # held out before hiding: the validation labels are complete, as the test labels are
        keep, held = validation_indices(y_train, cfg.validation_fraction, cfg.validation_split_seed)
        loaded = loaded.hold_out(keep, held)  # lazy images: the datasets too
        x_train, y_train = loaded.train_x, loaded.train_y
        x_test, y_test = loaded.test_x, loaded.test_y
        evaluated_on = "validation"
    value = -1.0 if cfg.hidden_as == "unknown" else 0.0
    y_train = hide_labels(y_train, cfg.hide_fraction, cfg.subset_seed + 2, value=value)
    hidden = f" after hiding {cfg.hide_fraction:g} of the entries" if cfg.hide_fraction else ""
    where = f" of {source or cfg.dataset}{hidden}"
    kept = select_labels(y_train, y_test, names, min_positives=cfg.min_label_positives, where=where)
    if len(kept.columns) < len(names):
        y_train, y_test = y_train[:, kept.columns], y_test[:, kept.columns]
    names, counts = kept.names, kept.counts
    return DataBundle(
        name=loaded.name or cfg.dataset,
        train_x=x_train,
        train_y=y_train.contiguous(),
        test_x=x_test,
        test_y=y_test.contiguous(),
        class_names=names,
        class_counts=counts,
        group_counts=counts,
        imbalance_factor=cfg.imbalance_factor,
        split=loaded.split,
        evaluated_on=evaluated_on,
        feature_scaling=loaded.feature_scaling,
        notes=[*loaded.notes, *kept.notes],
        details=kept.details,
        preprocessing=loaded.preprocessing,
        **loaded.lazy_datasets(y_train, y_test),  # lazy images carry the final targets
    )
