"""Multi-label classification: its data, its task and its metrics.

Data (:func:`build_multilabel_data`), every label column a float ``{0, 1}`` (``-1``: hidden):

- ``mulan``: a Mulan folder (``data_dir`` holds ``NAME-train.arff``, ``NAME-test.arff`` and
  ``NAME.xml``; ``data.mulan_name`` picks NAME when there are several), read with
  :func:`longtail.data.load_mulan`. Features are standardised with the mean and standard deviation
  of the *training* split only (a constant feature is centred and left unscaled); a missing feature
  (``?``) is set to the training mean, i.e. 0 after standardising. The model is an MLP.
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
  random (seed ``subset_seed``; recorded in ``split.json``); features are standardised like Mulan's.

Missing labels (``data.hide_fraction`` = h > 0): each training label entry is hidden (set to -1)
independently with probability h, drawn from a generator seeded with ``subset_seed + 2``; the
losses ignore hidden entries and the per-label positive counts (class-balanced weights,
repeat factors, the report) count the visible positives. With ``data.hidden_as: negative`` a hidden
entry becomes 0 instead (an unannotated label taken as negative, the setting of the Hill paper: the
hidden positives become false negatives). The test labels are never hidden.

A label without a visible positive in the training split is an error naming the label: nothing can
be learned about it, and no class-balanced weight or repeat factor exists for it.

:class:`MultiLabelTask` trains any multi-label :class:`~longtail.engine.methods.Method` (a loss and a
sampler: ``instance`` or ``rfs``) and evaluates mAP, CF1 and OF1 at threshold 0.5 (see
:mod:`longtail.metrics.multilabel`), plus the mAP of the third of the labels with the fewest training
positives (``tail_mAP``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from longtail.engine.config import Config, DataConfig
from longtail.engine.datasets import _FASHION_MNIST_NAMES, DataBundle, standardise_features
from longtail.engine.methods import Criterion, Method
from longtail.engine.models import build_model
from longtail.engine.tasks import Batch, Evaluation, MetricSpec, Setup, Task

__all__ = [
    "MULTILABEL_METRICS",
    "MultiLabelTask",
    "build_multilabel_data",
    "check_multilabel_targets",
    "hide_labels",
    "tail_labels",
]

MULTILABEL_METRICS = (
    MetricSpec("mAP", "mAP"),
    MetricSpec("CF1", "CF1"),
    MetricSpec("OF1", "OF1"),
    MetricSpec("tail_mAP", "Tail mAP"),
)


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


def tail_labels(counts: list[int]) -> list[int]:
    """The ``ceil(L / 3)`` labels with the fewest training positives (ties: the lower index first)."""
    k = math.ceil(len(counts) / 3)
    return sorted(sorted(range(len(counts)), key=lambda j: (counts[j], j))[:k])


def _load_mulan(cfg: DataConfig) -> tuple[Tensor, Tensor, Tensor, Tensor, list[str], str]:
    from longtail.data import load_mulan

    assert cfg.data_dir is not None
    directory = Path(cfg.data_dir).expanduser()
    train, test = load_mulan(directory, cfg.mulan_name)
    x_train, x_test = standardise_features(train.data, test.data)
    names = list(train.class_names or [f"label {j}" for j in range(train.targets.shape[1])])
    name = cfg.mulan_name or _mulan_stem(directory)
    return x_train, train.targets.float(), x_test, test.targets.float(), names, name


def _mulan_stem(directory: Path) -> str:
    xml = sorted(directory.glob("*.xml"))
    return xml[0].stem if len(xml) == 1 else directory.name


def _resize_items(images: Tensor, cfg: DataConfig) -> Tensor:
    """uint8 ``(M, H, W)`` items resized to ``tiles_item_size`` (area averaging, rounded)."""
    import torch.nn.functional as F

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


def _load_tiles(cfg: DataConfig) -> tuple[Tensor, Tensor, Tensor, Tensor, list[str], str]:
    from longtail import data as ltdata

    assert cfg.data_dir is not None
    directory = Path(cfg.data_dir).expanduser()
    train = ltdata.load_idx(directory, split="train")
    test = ltdata.load_idx(directory, split="test")
    num_items = int(train.targets.max()) + 1
    names = (
        list(_FASHION_MNIST_NAMES)
        if num_items == len(_FASHION_MNIST_NAMES)
        else [str(c) for c in range(num_items)]
    )
    probs = ltdata.long_tailed_label_probs(num_items, cfg.imbalance_factor or 1.0)
    items_train, items_test = _resize_items(train.data, cfg), _resize_items(test.data, cfg)
    common: dict[str, Any] = {"label_probs": probs, "blank_prob": cfg.tiles_blank_prob}
    x_tr, y_tr = ltdata.make_tile_images(
        items_train, train.targets, num_images=cfg.tiles_train, seed=cfg.subset_seed, **common
    )
    x_te, y_te = ltdata.make_tile_images(
        items_test, test.targets, num_images=cfg.tiles_test, seed=cfg.subset_seed + 1, **common
    )
    x_tr = x_tr.unsqueeze(1).float() / 255.0
    x_te = x_te.unsqueeze(1).float() / 255.0
    mean = x_tr.mean()
    std = x_tr.std().clamp_min(1e-6)
    return (
        ((x_tr - mean) / std).contiguous(),
        y_tr.float(),
        ((x_te - mean) / std).contiguous(),
        y_te.float(),
        names,
        "fashion-tiles",
    )


def build_multilabel_data(cfg: DataConfig) -> DataBundle:
    """Load a multi-label data set (see the module docstring) and hide labels if configured.

    Raises:
        ValueError: a data problem (the message names the file, the label or the config key), or
            a label without a visible positive training example.
    """
    split: dict[str, Any] | None = None
    if cfg.dataset == "table":
        from longtail.engine.datasets import load_table_multilabel

        x_train, y_train, x_test, y_test, names, name, split = load_table_multilabel(cfg)
        x_train, x_test = standardise_features(x_train, x_test)
        directory = Path(str(cfg.path)).expanduser()
    else:
        if cfg.data_dir is None:
            raise ValueError(f"data.data_dir: required for dataset {cfg.dataset!r}")
        directory = Path(cfg.data_dir).expanduser()
        if not directory.is_dir():
            raise FileNotFoundError(f"data.data_dir: folder not found: {directory}")
        if cfg.dataset == "mulan":
            x_train, y_train, x_test, y_test, names, name = _load_mulan(cfg)
        elif cfg.dataset == "fashion-tiles":
            x_train, y_train, x_test, y_test, names, name = _load_tiles(cfg)
        else:
            raise ValueError(f"data.dataset: {cfg.dataset!r} is not a multi-label data set")
    evaluated_on = "test"
    if cfg.validation_fraction is not None:
        # held out before hiding: the validation labels are complete, as the test labels are
        from longtail.engine.datasets import validation_indices

        keep, held = validation_indices(y_train, cfg.validation_fraction, cfg.subset_seed + 3)
        x_test, y_test = x_train[held].contiguous(), y_train[held].contiguous()
        x_train, y_train = x_train[keep].contiguous(), y_train[keep]
        evaluated_on = "validation"
    value = -1.0 if cfg.hidden_as == "unknown" else 0.0
    y_train = hide_labels(y_train, cfg.hide_fraction, cfg.subset_seed + 2, value=value)
    counts = positive_counts(y_train)
    for j, c in enumerate(counts):
        if c == 0:
            hidden = (
                f" after hiding {cfg.hide_fraction:g} of the entries" if cfg.hide_fraction else ""
            )
            raise ValueError(
                f"data: label {names[j]!r} (column {j}) has no positive example in the training "
                f"split{hidden} of {directory}; it cannot be learned and has no class-balanced "
                "weight (remove the label or use more data)"
            )
    return DataBundle(
        name=name,
        train_x=x_train,
        train_y=y_train.contiguous(),
        test_x=x_test,
        test_y=y_test.contiguous(),
        class_names=names,
        class_counts=counts,
        group_counts=counts,
        imbalance_factor=cfg.imbalance_factor,
        split=split,
        evaluated_on=evaluated_on,
    )


def check_multilabel_targets(targets: Tensor, name: str, num_labels: int) -> None:
    """``targets`` must be an (N, num_labels) matrix with entries in {0, 1, -1} (hidden).

    Checked once, when a task is built (the losses run without value checks in the loop).

    Raises:
        ValueError: naming ``name``, the shape, or the first bad entry (row, column, value).
    """
    if targets.ndim != 2 or targets.shape[1] != num_labels:
        raise ValueError(
            f"{name}: expected an (N, {num_labels}) multi-label target matrix, got shape "
            f"{tuple(targets.shape)}"
        )
    bad = ~((targets == 0) | (targets == 1) | (targets == -1))
    if bool(bad.any()):
        row, col = (int(v) for v in torch.nonzero(bad)[0])
        raise ValueError(
            f"{name}: entries must be 0, 1 or -1 (hidden), got {float(targets[row, col])!r} at "
            f"row {row}, label column {col}"
        )


def _nan_to_none(values: Iterable[float]) -> list[float | None]:
    return [None if (v is None or math.isnan(v)) else float(v) for v in values]


class MultiLabelTask(Task):
    """Multi-label classification with a :class:`~longtail.engine.methods.Method` of task
    ``multi-label``: sigmoid outputs, one per label, trained with the method's loss (hidden
    entries ignored) and sampler (``instance``: a shuffle; ``rfs``: repeat-factor sampling).
    """

    kind = "multi-label"
    metrics: ClassVar[tuple[MetricSpec, ...]] = MULTILABEL_METRICS

    def __init__(
        self,
        method: Method,
        data: DataBundle,
        config: Config,
        *,
        params: Mapping[str, Any] | None = None,
    ):
        if method.task != "multi-label":
            raise ValueError(f"method {method.name!r} is a {method.task} method, not multi-label")
        check_multilabel_targets(data.train_y, "train_y", data.num_classes)
        check_multilabel_targets(data.test_y, "test_y", data.num_classes)
        self.method = method
        self.data = data
        self.config = config
        self.params = method.resolve_params(params)
        self.criterion: Criterion = method.build_criterion(
            data.class_counts, total_epochs=max(config.train.epochs, 1), params=self.params
        )

    def build_model(self) -> nn.Module:
        m = self.config.model
        return build_model(
            m.arch,
            self.data.input_shape,
            self.data.num_classes,
            head="linear",
            hidden=m.hidden,
            channels=m.channels,
            dropout=m.dropout,
            convs_per_stage=m.convs_per_stage,
        )

    def setup(self) -> Setup:
        return Setup({"model": self.build_model()})

    def sampler(self, epoch: int, *, seed: int, rank: int, world_size: int) -> Tensor:
        from longtail import data as ltdata

        common: dict[str, Any] = {"seed": seed, "num_replicas": world_size, "rank": rank}
        s: Any
        if self.method.sampler == "rfs":
            t = float(self.params["rfs_threshold"]) or 1.0 / self.data.num_classes
            s = ltdata.RepeatFactorSampler(self.data.train_y, threshold=t, **common)
        elif self.method.sampler == "instance":
            # a plain shuffle: one "class" holding every example
            s = ltdata.InstanceBalancedSampler(
                torch.zeros(len(self.data.train_y), dtype=torch.long), **common
            )
        else:  # pragma: no cover - compose() allows only these two
            raise ValueError(f"sampler: {self.method.sampler!r} is not a multi-label sampler")
        s.set_epoch(epoch)
        shard: Tensor = s.global_indices()[rank : s.total_size : world_size]
        return shard

    def training_step(self, model: nn.Module, batch: Batch, epoch: int, step: int) -> Tensor:
        logits = model(batch.x)
        return self.criterion(logits, batch.y, epoch)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, splits: Mapping[str, Iterable[Batch]]) -> Evaluation:
        from longtail.metrics import MeanAveragePrecision, MultilabelPRF

        was_training = model.training
        model.eval()
        num_labels = self.data.num_classes
        # states on the model's device (the batches' device), as the backend needs for the sync
        tensors = [*model.parameters(), *model.buffers()]
        device = tensors[0].device if tensors else torch.device("cpu")
        ap = MeanAveragePrecision(num_labels).to(device)
        prf = MultilabelPRF(num_labels).to(device)
        for b in splits["test"]:
            scores = model(b.x).float()
            targets = b.y.long()
            ap.update(scores, targets)
            prf.update(scores, targets)
        model.train(was_training)
        per_label = ap.per_label()
        values = prf.compute()
        tail = tail_labels(self.data.class_counts)
        tail_ap = per_label[tail]
        tail_ap = tail_ap[~torch.isnan(tail_ap)]
        known = per_label[~torch.isnan(per_label)]
        metrics = {
            "mAP": float(known.mean()) if known.numel() else math.nan,
            "CF1": float(values["CF1"]),
            "OF1": float(values["OF1"]),
            "tail_mAP": float(tail_ap.mean()) if tail_ap.numel() else math.nan,
        }
        details = {
            "per_label_ap": _nan_to_none(per_label.tolist()),
            "prf": {k: float(v) for k, v in values.items()},
            "tail_labels": tail,
        }
        return Evaluation(metrics=metrics, details=details)
