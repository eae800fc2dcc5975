"""Build the in-memory train / test tensors of a run from its :class:`DataConfig`.

- ``digits`` (bundled with scikit-learn): each class is split with ``subset_seed``; the test split takes
  the same number of images from every class (``floor(test_fraction * smallest class)``), so it is
  balanced; the rest is the training pool.
- ``fashion-mnist`` / ``mnist`` / ``kmnist`` / ``idx`` (IDX files in ``data_dir``) and ``cifar10`` /
  ``cifar100`` (python batches in ``data_dir``): the official train split is the pool and the official
  (balanced) test split is the test set.
- ``fashion-pairs`` (the Fashion-MNIST IDX files in ``data_dir``): 100 classes, class ``10 * a + b``
  shows an item of Fashion-MNIST class ``a`` on the left and one of class ``b`` on the right
  (1x28x56 images; names like ``"T-shirt/top|Trouser"``). Built with
  :func:`longtail.data.make_pair_images`: the training pool has ``max_per_class`` pairs per class
  (default 600), drawn from the official *training* images with seed ``subset_seed``; the test set
  has ``pair_test_per_class`` pairs per class (default 100, so balanced), drawn the same way from the
  official *test* images with seed ``subset_seed + 1``. For each pair class ``(a, b)`` (in class-id
  order) the left items are the first ``per_class`` of a random permutation of the images of class
  ``a`` and the right items, independently, the first ``per_class`` of a random permutation of the
  images of class ``b``: no image appears twice in the same slot of a class (Fashion-MNIST has 6,000
  training and 1,000 test images per class), and for ``a == b`` a pair may show the same image on
  both sides (probability 1/6,000 per training pair). Since every pool class has exactly
  ``max_per_class`` pairs, the profile's ``n_max`` is that number. Do not train with horizontal flips
  (they swap ``a`` and ``b``; the config rejects ``train.flip`` with ``train.augment``).

The pool is then made long-tailed with :func:`longtail.data.make_long_tailed` (``imbalance_factor``,
``profile``, ``subset_seed``, ``max_per_class``); the test set is never subsampled. With
``balanced=True`` the same number of training images is drawn evenly over the classes instead (the
upper-bound reference).

**Which class is the head** (``class_order``): ``"fixed"`` gives the ``r``-th largest count to class
``r`` (class 0 is the head, as in CIFAR-LT). ``"random"`` gives it to class ``perm[r]``, where ``perm =
torch.randperm(C, generator=torch.Generator().manual_seed(s))`` and ``s =
numpy.random.SeedSequence([seed, subset_seed]).generate_state(1)[0]`` for the *training* seed passed
to :func:`build_data` (so each training seed has its own head class, and frequency is not confounded
with the difficulty of class 0). Labels and class names stay the real ones; ``class_counts`` and
``group_counts`` are the real per-class counts, so many / medium / few follow the counts. The
balanced reference draws the same training images whatever the order (only its ``group_counts``,
the long-tailed counts of the same seed, follow the permutation).

Images are scaled to ``[0, 1]`` and standardised with the training subset's
per-channel mean and std; feature vectors are used as loaded.

Your own data (see docs/cli.md, "Your own data"):

- ``image-folder``: ``data_dir/train/<class>/*.{png,jpg,jpeg}`` and, if present,
  ``data_dir/test/<class>/...`` (classes: the training folder names, sorted). Read lazily with
  :class:`longtail.data.ImageFolderDataset` (``data.image_size``, default 32; ``data.channels``,
  default 3): the bundle's ``train_x`` / ``test_x`` are empty ``(0, C, S, S)`` placeholders giving
  the input shape, and the trainer reads ``train_dataset`` / ``eval_datasets`` through a
  ``DataLoader`` with ``data.num_workers`` workers. Standardisation: per-channel mean and std of a
  seeded sample (``subset_seed``) of at most :data:`IMAGE_STATS_SAMPLE` images of the training
  subset (all of them when it is smaller), applied in the dataset.
- ``table`` (``data.path``: ``.csv`` / ``.npz`` / ``.parquet``, read with
  :func:`longtail.data.load_table`; ``data.label_column``) and ``mat`` (``data.path``, variables
  ``data.x_key`` / ``data.y_key``, default ``X`` / ``Y``, read with :func:`longtail.data.load_mat`):
  feature vectors; class labels are mapped to ``0..C-1`` in sorted order of their values, which are
  the class names. Features are standardised with the training subset's mean and std (a constant
  feature is only centred); a missing value (NaN) is replaced by the training mean, i.e. 0 after
  standardising.

Without a test set (``table``, ``mat``, ``image-folder`` without ``test/``) the examples are split
by :func:`stratified_split` (``data.test_fraction``, seed ``data.subset_seed``) before the training
pool is made long-tailed; the test rows (or files) are kept in ``DataBundle.split`` and written to
``split.json`` in the run folder by :func:`write_split`. The test set then follows the data's own
class distribution (it is not balanced).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from longtail.engine.config import DataConfig

__all__ = [
    "IMAGE_STATS_SAMPLE",
    "DataBundle",
    "build_data",
    "class_order_permutation",
    "hold_out_validation",
    "load_table_multilabel",
    "standardise_features",
    "standardise_images",
    "stratified_split",
    "validation_indices",
    "write_split",
]

#: Image folders: the mean and std are estimated from at most this many training images.
IMAGE_STATS_SAMPLE = 2000


@dataclass
class DataBundle:
    """Training and test tensors of a run.

    Attributes:
        name: data set name.
        train_x, train_y: training inputs (float32, ``(N, D)`` or ``(N, C, H, W)``) and int64 labels.
        test_x, test_y: the balanced test set.
        class_names: one name per class.
        class_counts: training images per class.
        group_counts: counts used to group classes into many / medium / few (the long-tailed counts,
            also for the balanced reference run, so that the groups are the same classes).
        imbalance_factor: the configured imbalance factor (``None``: data used as is).
        extra_splits: further named evaluation splits besides ``test`` (see :attr:`eval_splits`).
        train_dataset: lazy data (image folders): a map-style ``Dataset`` whose item ``i`` is
            ``(x_i, y_i)`` for training example ``i`` (``train_y[i]``); ``train_x`` is then an
            empty ``(0, ...)`` placeholder that only gives the input shape. ``None``: in memory.
        eval_datasets: lazy evaluation splits by name (``test``), read instead of
            :attr:`eval_splits`' tensors of the same name.
        split: the hold-out made when the data has no test set (``test``: row indices or file
            names, plus how it was drawn); written to ``split.json`` by :func:`write_split`.
        num_workers: ``DataLoader`` workers for the lazy datasets.
        evaluated_on: ``"test"``, or ``"validation"`` when the evaluation splits were held out of
            the training data (``data.validation_fraction``, see :func:`hold_out_validation`).
    """

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    class_names: list[str]
    class_counts: list[int]
    group_counts: list[int]
    imbalance_factor: float | None
    extra_splits: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)
    train_dataset: Dataset[Any] | None = None
    eval_datasets: dict[str, Dataset[Any]] = field(default_factory=dict)
    split: dict[str, Any] | None = None
    num_workers: int = 0
    evaluated_on: str = "test"

    @property
    def lazy(self) -> bool:
        """The training examples are read from :attr:`train_dataset`, not held in ``train_x``."""
        return self.train_dataset is not None

    @property
    def eval_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        """Named evaluation splits ``{name: (x, y)}``: ``test`` first, then ``extra_splits``
        (e.g. ``unknown`` for open set)."""
        return {"test": (self.test_x, self.test_y), **self.extra_splits}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.train_x.ndim == 4


_IDX_SETS = ("fashion-mnist", "mnist", "kmnist", "idx")

# Official Fashion-MNIST class names (Xiao et al. 2017); IDX files store no names.
_FASHION_MNIST_NAMES = (
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
#: Data sets of feature vectors from one file (``data.path``), split by :func:`stratified_split`.
_OWN_VECTORS = ("table", "mat")


def _load_pairs(
    cfg: DataConfig, directory: Path
) -> tuple[Tensor, Tensor, Tensor, Tensor, list[str]]:
    from longtail import data as ltdata

    train = ltdata.load_idx(directory, split="train")
    test = ltdata.load_idx(directory, split="test")
    num_items = int(train.targets.max()) + 1
    if num_items != len(_FASHION_MNIST_NAMES):
        raise ValueError(
            f"data.data_dir: fashion-pairs needs the 10 Fashion-MNIST classes, found {num_items}"
        )
    per_class = cfg.max_per_class if cfg.max_per_class is not None else _PAIRS_PER_CLASS
    x_pool, y_pool = ltdata.make_pair_images(
        train.data, train.targets, per_class=per_class, seed=cfg.subset_seed
    )
    x_test, y_test = ltdata.make_pair_images(
        test.data, test.targets, per_class=cfg.pair_test_per_class, seed=cfg.subset_seed + 1
    )
    names = [f"{a}|{b}" for a in _FASHION_MNIST_NAMES for b in _FASHION_MNIST_NAMES]
    return x_pool, y_pool, x_test, y_test, names


def _load_raw(cfg: DataConfig) -> tuple[Tensor, Tensor, Tensor, Tensor, list[str]]:
    from longtail import data as ltdata

    if cfg.dataset == "digits":
        full = ltdata.load_digits()
        x, y = full.data.float(), full.targets.long()
        num_classes = int(y.max()) + 1
        gen = torch.Generator().manual_seed(cfg.subset_seed)
        per_class = [torch.nonzero(y == c).flatten() for c in range(num_classes)]
        n_test = int(cfg.test_fraction * min(len(p) for p in per_class))
        if n_test < 1:
            raise ValueError(f"data.test_fraction: {cfg.test_fraction} leaves no test images")
        train_idx, test_idx = [], []
        for p in per_class:
            p = p[torch.randperm(len(p), generator=gen)]
            test_idx.append(p[:n_test])
            train_idx.append(p[n_test:])
        tr, te = torch.cat(train_idx).sort().values, torch.cat(test_idx).sort().values
        names = list(full.class_names or [str(c) for c in range(num_classes)])
        return x[tr], y[tr], x[te], y[te], names
    if cfg.data_dir is None:
        raise ValueError(f"data.data_dir: required for dataset {cfg.dataset!r}")
    directory = Path(cfg.data_dir).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"data.data_dir: folder not found: {directory}")
    if cfg.dataset == "fashion-pairs":
        return _load_pairs(cfg, directory)
    if cfg.dataset in _IDX_SETS:
        train = ltdata.load_idx(directory, split="train")
        test = ltdata.load_idx(directory, split="test")
    else:
        train = ltdata.load_cifar(directory, split="train")
        test = ltdata.load_cifar(directory, split="test")
    num_classes = int(train.targets.max()) + 1
    names = list(train.class_names or [str(c) for c in range(num_classes)])
    return train.data, train.targets.long(), test.data, test.targets.long(), names


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


def class_order_permutation(num_classes: int, seed: int, subset_seed: int) -> list[int]:
    """The classes in the order they receive the long-tailed counts (``data.class_order: random``).

    ``torch.randperm(num_classes)`` with a generator seeded by
    ``numpy.random.SeedSequence([seed, subset_seed]).generate_state(1)[0]``: element ``r`` is the
    class that gets the ``r``-th largest count.

    Raises:
        ValueError: ``num_classes < 1``, ``seed`` or ``subset_seed`` not an int ``>= 0``.
    """
    import numpy as np

    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: expected an int >= 1, got {num_classes!r}")
    for name, value in (("seed", seed), ("subset_seed", subset_seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: expected an int >= 0, got {value!r}")
    state = int(np.random.SeedSequence([seed, subset_seed]).generate_state(1)[0])
    generator = torch.Generator().manual_seed(state)
    return [int(c) for c in torch.randperm(num_classes, generator=generator).tolist()]


def build_data(cfg: DataConfig, *, balanced: bool = False, seed: int | None = None) -> DataBundle:
    """Load, split, make long-tailed (or balanced of the same size) and normalise.

    Args:
        cfg: the ``data`` section of the config.
        balanced: draw the same number of training images as the long-tailed subset, evenly over
            the classes (the balanced reference).
        seed: the training seed; with ``cfg.class_order == "random"`` it picks which class gets
            which long-tailed count (see :func:`class_order_permutation`), ignored with ``"fixed"``.

    Raises:
        ValueError: ``cfg.class_order == "random"`` without a ``seed`` (the message names
            ``data.class_order``), or a data problem (the message names the config key).
    """
    from longtail.data import class_counts

    if cfg.class_order not in ("fixed", "random"):
        raise ValueError(f"data.class_order: expected 'fixed' or 'random', got {cfg.class_order!r}")
    if cfg.class_order == "random" and seed is None:
        raise ValueError(
            "data.class_order: 'random' needs the training seed (build_data(seed=...))"
        )
    if cfg.dataset == "image-folder":
        return _build_image_folder(cfg, balanced=balanced, seed=seed)
    split: dict[str, Any] | None = None
    if cfg.dataset in _OWN_VECTORS:
        x_pool, y_pool, x_test, y_test, names, split = _load_own_vectors(cfg)
    else:
        x_pool, y_pool, x_test, y_test, names = _load_raw(cfg)
    num_classes = len(names)
    idx, lt_counts = _training_indices(cfg, y_pool, num_classes, balanced=balanced, seed=seed)
    x_train, y_train = x_pool[idx], y_pool[idx]
    counts = [int(c) for c in class_counts(y_train, num_classes)]
    if min(counts) == 0:
        raise ValueError(f"data: a class has no training images (counts {counts})")
    if x_train.ndim < 3 and cfg.dataset in _OWN_VECTORS:
        x_train, x_test = standardise_features(x_train, x_test)
    else:
        x_train, x_test = standardise_images(x_train, x_test)
    return DataBundle(
        name=cfg.dataset,
        train_x=x_train,
        train_y=y_train.long().contiguous(),
        test_x=x_test,
        test_y=y_test.long().contiguous(),
        class_names=names,
        class_counts=counts,
        group_counts=lt_counts,
        imbalance_factor=cfg.imbalance_factor,
        split=split,
    )


def _training_indices(
    cfg: DataConfig, y_pool: Tensor, num_classes: int, *, balanced: bool, seed: int | None
) -> tuple[Tensor, list[int]]:
    """Sorted indices of the training subset of the pool, and the long-tailed counts per class."""
    from longtail.data import class_counts, make_long_tailed

    order = (
        class_order_permutation(num_classes, seed, cfg.subset_seed)
        if cfg.class_order == "random" and seed is not None
        else None
    )
    if cfg.imbalance_factor is None:
        lt_idx = torch.arange(len(y_pool))
    else:
        lt_idx = torch.as_tensor(
            make_long_tailed(
                y_pool,
                cfg.imbalance_factor,
                profile=cfg.profile,  # type: ignore[arg-type]  # validated: "exp" | "step"
                seed=cfg.subset_seed,
                max_per_class=cfg.max_per_class,
                class_order=order,
            ),
            dtype=torch.long,
        )
    lt_counts = [int(c) for c in class_counts(y_pool[lt_idx], num_classes)]
    if balanced:
        per = len(lt_idx) // num_classes
        gen = torch.Generator().manual_seed(cfg.subset_seed + 1)
        parts = []
        for c in range(num_classes):
            members = torch.nonzero(y_pool == c).flatten()
            if len(members) < per:
                raise ValueError(
                    f"data.balanced_reference: class {c} has {len(members)} images, {per} needed"
                )
            parts.append(members[torch.randperm(len(members), generator=gen)[:per]])
        idx = torch.cat(parts).sort().values
    else:
        idx = lt_idx.sort().values
    return idx, lt_counts


# --------------------------------------------------------------------------------------------------
# your own data: image folders, tables, .mat files


def stratified_split(labels: Tensor, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Split example indices into training and test, class by class.

    A class with ``n >= 2`` examples puts ``min(n - 1, max(1, floor(test_fraction * n + 0.5)))`` of
    them in the test part (so at least one test and one training example); a class with one
    example keeps it for training. Within each class (in class order) the examples are shuffled
    with one ``torch.Generator`` seeded by ``seed``.

    Args:
        labels: ``int64 (N,)`` class indices.
        test_fraction: share of each class held out, in ``(0, 1)``.
        seed: the generator's seed (``data.subset_seed``).

    Returns:
        ``(train_idx, test_idx)``: sorted ``int64`` indices, disjoint, together ``0..N-1``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"data.test_fraction: must be in (0, 1), got {test_fraction!r}")
    labels = torch.as_tensor(labels).long()
    gen = torch.Generator().manual_seed(int(seed))
    train, test = [], []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        n = len(members)
        members = members[torch.randperm(n, generator=gen)]
        k = min(n - 1, max(1, math.floor(test_fraction * n + 0.5))) if n >= 2 else 0
        test.append(members[:k])
        train.append(members[k:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def validation_indices(train_y: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """``(kept, held_out)`` indices of the training examples for ``data.validation_fraction``.

    Single-label (``train_y`` of shape ``(N,)``): :func:`stratified_split` with ``fraction`` and
    generator seed ``seed`` (every class keeps at least one training example and, with two or
    more, gives at least one). Multi-label (``(N, L)``): ``round(fraction * N)`` rows drawn by
    ``torch.randperm`` with that seed (at least one, and at least one row kept).
    """
    if train_y.ndim == 1:
        try:
            return stratified_split(train_y, fraction, seed)
        except ValueError:
            raise ValueError(
                f"data.validation_fraction: must be in (0, 1), got {fraction!r}"
            ) from None
    n = len(train_y)
    if not 0.0 < fraction < 1.0 or n < 2:
        raise ValueError(
            f"data.validation_fraction: needs a value in (0, 1) and at least 2 training examples, "
            f"got {fraction!r} with {n}"
        )
    k = min(n - 1, max(1, math.floor(fraction * n + 0.5)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return perm[k:].sort().values, perm[:k].sort().values


def hold_out_validation(bundle: DataBundle, fraction: float, seed: int) -> DataBundle:
    """The bundle with a validation split of its training data in place of its test set.

    The held-out examples (:func:`validation_indices`) leave the training set and become the
    ``test`` split, so a run evaluates without reading the test set. ``class_counts`` are the
    counts left for training; ``group_counts`` (which classes are many / medium / few) are kept.
    The inputs keep the standardisation of the full training subset (its per-channel or
    per-feature mean and std include the held-out examples; no labels are involved).

    Raises:
        ValueError: naming ``data.validation_fraction``: the bundle has evaluation splits besides
            ``test`` (a task must hold those out itself), a fraction outside ``(0, 1)``, or a class
            left without training examples.
    """
    from longtail.data import class_counts

    if bundle.evaluated_on == "validation":
        return bundle
    if bundle.extra_splits or set(bundle.eval_datasets) - {"test"}:
        extra = sorted(set(bundle.extra_splits) | (set(bundle.eval_datasets) - {"test"}))
        raise ValueError(
            f"data.validation_fraction: this data also evaluates split(s) {extra}, which a "
            "validation split of the training data cannot stand in for"
        )
    keep, held = validation_indices(bundle.train_y, fraction, seed)
    train_y, val_y = bundle.train_y[keep].contiguous(), bundle.train_y[held].contiguous()
    if train_y.ndim == 1:
        counts = [int(c) for c in class_counts(train_y, bundle.num_classes)]
    else:  # multi-label: the visible positives per label
        counts = [int(c) for c in (train_y == 1).sum(dim=0).tolist()]
    if min(counts) == 0:
        raise ValueError(
            f"data.validation_fraction: leaves a class without training examples (counts {counts})"
        )
    updates: dict[str, Any] = {
        "train_y": train_y,
        "test_y": val_y,
        "class_counts": counts,
        "evaluated_on": "validation",
    }
    if bundle.train_dataset is not None:
        ds = bundle.train_dataset
        subset = getattr(ds, "subset", None)
        if callable(subset):
            updates["train_dataset"], val_ds = subset(keep), subset(held)
        else:
            from torch.utils.data import Subset

            updates["train_dataset"], val_ds = Subset(ds, keep.tolist()), Subset(ds, held.tolist())
        updates["eval_datasets"] = {"test": val_ds}
    else:
        updates["train_x"] = bundle.train_x[keep].contiguous()
        updates["test_x"] = bundle.train_x[held].contiguous()
    return replace(bundle, **updates)


def write_split(bundle: DataBundle, run_dir: str | os.PathLike[str]) -> Path | None:
    """Write ``bundle.split`` (the test hold-out of data without a test set) to
    ``run_dir/split.json``, atomically; returns the path, or ``None`` when there is no split."""
    if bundle.split is None:
        return None
    from longtail.engine.checkpoint import atomic_write_json

    path = Path(run_dir) / "split.json"
    atomic_write_json(path, bundle.split)
    return path


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


def _data_path(cfg: DataConfig) -> Path:
    if cfg.path is None:
        raise ValueError(f"data.path: required for dataset {cfg.dataset!r}")
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"data.path: file not found: {path}")
    return path


def _split_record(
    cfg: DataConfig,
    source: Path,
    test: list[Any],
    num_train: int,
    *,
    entries: str,
    stratified: bool = True,
) -> dict[str, Any]:
    return {
        "dataset": cfg.dataset,
        "source": str(source),
        "method": "stratified" if stratified else "random",
        "test_fraction": cfg.test_fraction,
        "subset_seed": cfg.subset_seed,
        "num_train": num_train,
        "num_test": len(test),
        "entries": entries,
        "test": test,
    }


_ROWS = "row indices (0-based, in file order)"


def _load_own_vectors(
    cfg: DataConfig,
) -> tuple[Tensor, Tensor, Tensor, Tensor, list[str], dict[str, Any]]:
    """``table`` / ``mat`` (single-label): features (NaN: missing), labels, split, class names."""
    path = _data_path(cfg)
    if cfg.dataset == "table":
        from longtail.data import load_table

        if cfg.label_column is None:
            raise ValueError("data.label_column: required for dataset 'table' (single-label)")
        table = load_table(path, label_column=cfg.label_column)
        x, y, names = table.data, table.targets, list(table.class_names)
    else:
        from longtail.data import load_mat

        loaded = load_mat(path, features=cfg.x_key or "X", labels=cfg.y_key or "Y")
        if loaded.targets.ndim != 1:
            raise ValueError(
                f"data.y_key: {cfg.y_key or 'Y'!r} of {path} is a multi-label matrix "
                f"{tuple(loaded.targets.shape)}; dataset 'mat' needs a label vector"
            )
        values, y = torch.unique(loaded.targets, return_inverse=True)
        x, names = loaded.data, [str(int(v)) for v in values.tolist()]
    if len(names) < 2:
        raise ValueError(f"data.path: {path} has {len(names)} class(es), at least 2 are needed")
    train_idx, test_idx = stratified_split(y, cfg.test_fraction, cfg.subset_seed)
    split = _split_record(
        cfg, path, [int(i) for i in test_idx.tolist()], len(train_idx), entries=_ROWS
    )
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx], names, split


def load_table_multilabel(
    cfg: DataConfig,
) -> tuple[Tensor, Tensor, Tensor, Tensor, list[str], str, dict[str, Any]]:
    """``table`` with ``task: multi-label``: features (NaN: missing), ``(N, L)`` labels (``-1``:
    unknown) of ``data.label_columns``, split at random (``test_fraction`` of the rows, at least
    one, seeded with ``subset_seed``; a stratified split is not defined for several labels per
    row). Returns ``(x_train, y_train, x_test, y_test, label names, name, split record)``."""
    from longtail.data import load_table

    path = _data_path(cfg)
    if not cfg.label_columns:
        raise ValueError("data.label_columns: required for dataset 'table' with task multi-label")
    table = load_table(path, label_columns=cfg.label_columns)
    n = len(table.targets)
    if n < 2:
        raise ValueError(f"data.path: {path} has {n} row(s), at least 2 are needed")
    gen = torch.Generator().manual_seed(cfg.subset_seed)
    perm = torch.randperm(n, generator=gen)
    k = min(n - 1, max(1, math.floor(cfg.test_fraction * n + 0.5)))
    test_idx, train_idx = perm[:k].sort().values, perm[k:].sort().values
    split = _split_record(
        cfg,
        path,
        [int(i) for i in test_idx.tolist()],
        len(train_idx),
        entries=_ROWS,
        stratified=False,
    )
    x, y = table.data, table.targets
    return (
        x[train_idx],
        y[train_idx],
        x[test_idx],
        y[test_idx],
        list(table.class_names),
        cfg.dataset,
        split,
    )


def _build_image_folder(cfg: DataConfig, *, balanced: bool, seed: int | None) -> DataBundle:
    """``image-folder``: lazy datasets over ``data_dir/train`` (and ``data_dir/test``)."""
    from longtail.data import class_counts
    from longtail.data.image_folder import ImageFolderDataset, image_channel_stats

    if cfg.data_dir is None:
        raise ValueError("data.data_dir: required for dataset 'image-folder'")
    root = Path(cfg.data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data.data_dir: folder not found: {root}")
    if not (root / "train").is_dir():
        raise FileNotFoundError(
            f"data.data_dir: {root} has no train/ folder (expected train/<class>/*.png, *.jpg or "
            "*.jpeg, and optionally test/<class>/...)"
        )
    size = cfg.image_size if cfg.image_size is not None else 32
    channels = cfg.channels if cfg.channels is not None else 3
    pool = ImageFolderDataset(root / "train", size, channels)
    names = list(pool.class_names)
    split: dict[str, Any] | None = None
    if (root / "test").is_dir():
        test = ImageFolderDataset(root / "test", size, channels, class_names=names)
    else:
        train_idx, test_idx = stratified_split(pool.targets, cfg.test_fraction, cfg.subset_seed)
        test = pool.subset(test_idx)
        pool = pool.subset(train_idx)
        split = _split_record(
            cfg,
            root / "train",
            test.relative_paths(root),
            len(pool),
            entries="image files, relative to data.data_dir",
        )
    idx, lt_counts = _training_indices(cfg, pool.targets, len(names), balanced=balanced, seed=seed)
    train = pool.subset(idx)
    counts = [int(c) for c in class_counts(train.targets, len(names))]
    if min(counts) == 0:
        raise ValueError(f"data: a class has no training images (counts {counts})")
    mean, std = image_channel_stats(
        train, max_images=IMAGE_STATS_SAMPLE, seed=cfg.subset_seed, num_workers=cfg.num_workers
    )
    train.set_normalization(mean, std)
    test.set_normalization(mean, std)
    placeholder = torch.empty((0, channels, size, size))
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
    )
