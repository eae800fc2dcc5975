"""Formats read from IDX files in ``data.data_dir``: ``fashion-mnist``, ``mnist``, ``kmnist``, ``idx``
and ``fashion-pairs``.

- ``fashion-mnist`` / ``mnist`` / ``kmnist`` / ``idx`` (:func:`longtail.data.load_idx`): the official
  train split is the pool and the official (balanced) test split is the test set.
- ``fashion-pairs`` (the Fashion-MNIST IDX files): 100 classes, class ``10 * a + b`` shows an item of
  Fashion-MNIST class ``a`` on the left and one of class ``b`` on the right (1x28x56 images; names
  like ``"T-shirt/top|Trouser"``). Built with :func:`longtail.data.make_pair_images`: the training
  pool has ``max_per_class`` pairs per class (default 600), drawn from the official *training*
  images with seed ``subset_seed``; the test set has ``pair_test_per_class`` pairs per class
  (default 100, so balanced), drawn the same way from the official *test* images with seed
  ``subset_seed + 1``. For each pair class ``(a, b)`` (in class-id order) the left items are the
  first ``per_class`` of a random permutation of the images of class ``a`` and the right items,
  independently, the first ``per_class`` of a random permutation of the images of class ``b``: no
  image appears twice in the same slot of a class (Fashion-MNIST has 6,000 training and 1,000 test
  images per class), and for ``a == b`` a pair may show the same image on both sides (probability
  1/6,000 per training pair). Since every pool class has exactly ``max_per_class`` pairs, the
  profile's ``n_max`` is that number. Do not train with horizontal flips (they swap ``a`` and ``b``;
  the config rejects ``train.flip`` with ``train.augment``).

Images are scaled to ``[0, 1]`` and standardised with the training subset's per-channel mean and std.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from longtail.data import load_idx, make_pair_images
from longtail.engine.datasets.formats import DataFormat, LoadedData, register_data_format

if TYPE_CHECKING:
    from longtail.engine.config import Config, DataConfig

__all__ = ["FASHION_MNIST_NAMES", "IDX_FORMATS"]

#: Official Fashion-MNIST class names (Xiao et al. 2017); IDX files store no names.
FASHION_MNIST_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_PAIRS_PER_CLASS = 600  # fashion-pairs: default pool per pair class (= n_max of the profile)


def _load(cfg: DataConfig, source: Path | None) -> LoadedData:
    assert source is not None
    train = load_idx(source, split="train")
    test = load_idx(source, split="test")
    num_classes = int(train.targets.max()) + 1
    names = list(train.class_names or [str(c) for c in range(num_classes)])
    return LoadedData(train.data, train.targets.long(), test.data, test.targets.long(), names)


def _load_pairs(cfg: DataConfig, source: Path | None) -> LoadedData:
    assert source is not None
    train = load_idx(source, split="train")
    test = load_idx(source, split="test")
    num_items = int(train.targets.max()) + 1
    if num_items != len(FASHION_MNIST_NAMES):
        raise ValueError(
            f"data.data_dir: fashion-pairs needs the 10 Fashion-MNIST classes, found {num_items}"
        )
    per_class = cfg.max_per_class if cfg.max_per_class is not None else _PAIRS_PER_CLASS
    x_pool, y_pool = make_pair_images(
        train.data, train.targets, per_class=per_class, seed=cfg.subset_seed
    )
    x_test, y_test = make_pair_images(
        test.data, test.targets, per_class=cfg.pair_test_per_class, seed=cfg.subset_seed + 1
    )
    names = [f"{a}|{b}" for a in FASHION_MNIST_NAMES for b in FASHION_MNIST_NAMES]
    return LoadedData(x_pool, y_pool, x_test, y_test, names)


def _check_pairs(cfg: Config, labels: str) -> None:
    if cfg.train.augment and cfg.train.flip:
        raise ValueError(
            "config key 'train.flip': must be false for dataset 'fashion-pairs' (a horizontal "
            "flip swaps the left and right items, i.e. the class)"
        )


def _idx(name: str, doc: str, fetch: str | None) -> DataFormat:
    return DataFormat(name=name, load=_load, class_split=True, idx_files=True, doc=doc, fetch=fetch)


FASHION_PAIRS = DataFormat(
    name="fashion-pairs",
    load=_load_pairs,
    keys=("pair_test_per_class",),
    idx_files=True,
    max_per_class_sizes_pool=True,
    check=_check_pairs,
    doc="pairs of Fashion-MNIST items side by side, 100 classes (the Fashion-MNIST IDX files)",
    fetch="fashion-mnist",
)

#: Registered in this order (the order of listings).
IDX_FORMATS = tuple(
    register_data_format(fmt)
    for fmt in (
        _idx("fashion-mnist", "Fashion-MNIST (IDX files)", "fashion-mnist"),
        FASHION_PAIRS,
        _idx("mnist", "MNIST (IDX files)", "mnist"),
        _idx("kmnist", "Kuzushiji-MNIST (IDX files)", "kmnist"),
        _idx("idx", "any IDX files (train/test images and labels)", None),
    )
)
