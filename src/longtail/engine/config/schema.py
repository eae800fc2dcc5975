"""The schema of a run configuration: the typed sections, their defaults and validation metadata.

Every field carries its range / choices and a one-line doc (:func:`option`); :mod:`.coerce` checks a
value against them, naming the dotted key. A task kind adds its own top-level section
(:class:`~longtail.engine.kinds.ConfigSection`), validated into the kind's schema and kept in
:attr:`Config.sections`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from longtail.engine.datasets.formats import DATA_FORMATS
from longtail.engine.datasets.standardise import FEATURE_SCALINGS
from longtail.engine.kinds import TASK_KINDS

__all__ = [
    "ARCHS",
    "Config",
    "ConfigError",
    "DataConfig",
    "MetricsConfig",
    "ModelConfig",
    "TrainConfig",
    "option",
    "option_meta",
    "section_schemas",
]


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range (the message names the key)."""


def _meta(
    *,
    choices: Collection[Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    doc: str = "",
) -> dict[str, Any]:
    return {"choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt, "doc": doc}


def option(default: Any, **meta: Any) -> Any:
    """A config dataclass field: its default and validation metadata (``choices``, ``ge``, ``gt``,
    ``le``, ``lt``, ``doc``); errors name the dotted key. For the sections of task kinds."""
    return field(default=default, metadata=_meta(**meta))


option_meta = _meta


def _f(default: Any, **meta: Any) -> Any:
    """A dataclass field with an immutable default and validation metadata (see :func:`_meta`)."""
    return field(default=default, metadata=_meta(**meta))


@dataclass
class DataConfig:
    """Which data, how it is made long-tailed and split."""

    dataset: str = _f(
        "digits",
        choices=DATA_FORMATS,
        doc="data set (a registered format: longtail.engine.datasets.DATA_FORMATS)",
    )
    data_dir: str | None = _f(None, doc="folder with the files (not needed for digits)")
    imbalance_factor: float | None = _f(
        10.0, ge=1.0, doc="n_max / n_min of the long-tailed profile; null keeps the data as is"
    )
    profile: str = _f("exp", choices=("exp", "step"), doc="long-tailed profile")
    subset_seed: int = _f(0, ge=0, doc="seed of the long-tailed subset and of the digits split")
    max_per_class: int | None = _f(
        None,
        ge=1,
        doc="n_max of the profile (default: smallest class); fashion-pairs: also the pool per "
        "pair class (default 600)",
    )
    class_order: str = _f(
        "fixed",
        choices=("fixed", "random"),
        doc="which class gets which long-tailed count: fixed (class 0 the head, class C-1 the "
        "tail) or random (a permutation drawn from the training seed and subset_seed)",
    )
    test_fraction: float = _f(
        0.5,
        gt=0.0,
        lt=1.0,
        doc="digits: share of each class held out (balanced test split); table, mat, image-folder "
        "without test/, image-manifest without a split column: share of each class held out "
        "(stratified split; multi-label: of the rows, at random)",
    )
    pair_test_per_class: int = _f(
        100, ge=1, doc="fashion-pairs: test images per pair class (balanced test set)"
    )
    validation_fraction: float | None = _f(
        None,
        gt=0.0,
        lt=1.0,
        doc="hold out this share of every class of the training subset and evaluate on it "
        "instead of the test set (for choosing hyper-parameters without the test set); null: "
        "evaluate on the test set",
    )
    validation_seed: int | None = _f(
        None,
        ge=0,
        doc="seed of the validation split's draw, to hold out another part of the same training "
        "subset; null: data.subset_seed + 3 (which also fixes the subset); only with "
        "data.validation_fraction",
    )
    balanced_reference: bool = _f(
        False, doc="also train `erm` on a balanced subset of the same size (upper bound)"
    )
    sklearn_reference: bool = _f(
        False,
        doc="feature vectors (single- or multi-label): also fit a scikit-learn logistic "
        "regression (multinomial; one-vs-rest for multi-label) on the same training split, scored "
        "by the same metrics: the row `sklearn-logreg`",
    )
    mulan_name: str | None = _f(
        None,
        doc="mulan: the NAME of NAME-train.arff / NAME-test.arff / NAME.xml in data_dir (default: "
        "the folder's only Mulan set)",
    )
    hide_fraction: float = _f(
        0.0,
        ge=0.0,
        lt=1.0,
        doc="multi-label: share of the training label entries hidden (-1, unknown), seeded with "
        "subset_seed",
    )
    hidden_as: str = _f(
        "unknown",
        choices=("unknown", "negative"),
        doc="multi-label: a hidden entry becomes -1 (unknown, ignored by the losses) or 0 (an "
        "unannotated label taken as negative: hidden positives become false negatives)",
    )
    min_label_positives: int = _f(
        0,
        ge=0,
        doc="multi-label: drop the labels with fewer visible positives than this in the training "
        "rows (after the validation split and data.hide_fraction); 0 keeps every label (one "
        "without a positive trains as all-negative)",
    )
    tiles_train: int = _f(
        6000, ge=1, doc="fashion-tiles: training images (2x2 tiles from the official train split)"
    )
    tiles_test: int = _f(
        3000, ge=1, doc="fashion-tiles: test images (tiles from the official test split)"
    )
    tiles_item_size: int = _f(
        14,
        ge=4,
        doc="fashion-tiles: items resized (area average) to this size before tiling; 14 gives "
        "28x28 images",
    )
    tiles_blank_prob: float = _f(
        0.25, ge=0.0, lt=1.0, doc="fashion-tiles: probability that a tile is blank"
    )
    path: str | None = _f(
        None,
        doc="table / mat: the data file (.csv, .npz, .parquet / .mat); image-manifest: the "
        "manifest (.csv)",
    )
    label_column: str | None = _f(
        None,
        doc="table, image-manifest, single-label: the column holding the class (text or "
        "integers); image-manifest, multi-label: the column of tags (data.tag_separator)",
    )
    label_columns: list[str] | None = field(
        default=None,
        metadata=_meta(
            doc="table, image-manifest, multi-label: the 0/1 label columns (empty / NaN, "
            "image-manifest also -1: unknown)"
        ),
    )
    path_column: str = _f("path", doc="image-manifest: the column of image paths")
    tag_separator: str = _f(
        ";",
        doc="image-manifest, multi-label with data.label_column: the separator between an "
        "image's tags",
    )
    x_key: str | None = _f(None, doc="mat: the variable holding the inputs (default X)")
    y_key: str | None = _f(None, doc="mat: the variable holding the labels (default Y)")
    image_size: int | None = _f(
        None,
        ge=1,
        doc="image-folder, image-manifest: images are resized to this square size (default 32)",
    )
    channels: int | None = _f(
        None,
        ge=1,
        le=3,
        doc="image-folder, image-manifest: 1 (grey) or 3 (RGB, default) channels",
    )
    num_workers: int = _f(
        0,
        ge=0,
        doc="image-folder, image-manifest: DataLoader worker processes decoding the images (0: "
        "in the loop)",
    )
    feature_scaling: str = _f(
        "auto",
        choices=FEATURE_SCALINGS,
        doc="table, mat, mulan: standard (training mean and std), maxabs (divide by the training "
        "max |x|, zeros stay zero), none (as loaded) or auto (maxabs for non-negative features "
        "that are mostly zeros or all 0/1, else standard)",
    )

    @property
    def validation_split_seed(self) -> int:
        """The seed of the validation split's draw: ``validation_seed``, else ``subset_seed + 3``."""
        return self.subset_seed + 3 if self.validation_seed is None else self.validation_seed


ARCHS = ("auto", "linear", "mlp", "cnn", "resnet32")


@dataclass
class ModelConfig:
    """The network: backbone plus the head the method asks for (linear or cosine)."""

    arch: str = _f(
        "auto",
        choices=ARCHS,
        doc="linear (no hidden layer: the head on the flattened input), mlp (vectors), cnn "
        "(28x28), resnet32 (CIFAR); auto: mlp, cnn or resnet32 by the input shape",
    )
    hidden: list[int] = field(
        default_factory=lambda: [128], metadata=_meta(ge=1, doc="mlp hidden widths")
    )
    channels: list[int] = field(
        default_factory=lambda: [16, 32, 64], metadata=_meta(ge=1, doc="cnn channels per stage")
    )
    convs_per_stage: int = _f(1, ge=1, doc="cnn conv3x3-BN-ReLU layers per stage")
    dropout: float = _f(0.0, ge=0.0, lt=1.0, doc="dropout before the head")
    factory: str | None = _f(
        None,
        doc="'package.module:callable' building the whole network as "
        "callable(num_classes=C, **model.kwargs) (replaces arch)",
    )
    kwargs: dict[str, Any] = field(
        default_factory=dict, metadata=_meta(doc="model.factory: keyword arguments")
    )


@dataclass
class TrainConfig:
    """Optimiser, schedule, augmentation and runtime options."""

    epochs: int = _f(30, ge=1, doc="training epochs")
    batch_size: int = _f(64, ge=1, doc="global batch size (split across processes)")
    lr: float = _f(0.1, gt=0.0, doc="peak learning rate")
    momentum: float = _f(0.9, ge=0.0, lt=1.0, doc="SGD momentum")
    nesterov: bool = _f(False, doc="Nesterov momentum")
    weight_decay: float = _f(5e-4, ge=0.0, doc="L2 weight decay")
    warmup_epochs: int = _f(0, ge=0, doc="linear warm-up epochs")
    schedule: str = _f("cosine", choices=("cosine", "step", "constant"), doc="decay after warm-up")
    milestones: list[int] = field(
        default_factory=list, metadata=_meta(ge=1, doc="step schedule: epochs where lr *= lr_decay")
    )
    lr_decay: float = _f(0.1, gt=0.0, le=1.0, doc="step schedule factor")
    augment: bool = _f(False, doc="random crop with padding and horizontal flip (images only)")
    crop_padding: int = _f(4, ge=0, doc="padding of the random crop")
    flip: bool = _f(True, doc="random horizontal flip when augment is on")
    precision: str = _f("fp32", choices=("fp32", "bf16", "fp16"), doc="autocast precision")
    device: str = _f("auto", choices=("auto", "cpu", "cuda"), doc="device")
    eval_every: int = _f(1, ge=0, doc="evaluate every k epochs for the curves (0: only at the end)")
    num_threads: int | None = _f(None, ge=1, doc="torch.set_num_threads (default: torch's)")


@dataclass
class MetricsConfig:
    """How the metrics group classes and bin confidences."""

    shot_mode: str = _f("terciles", choices=("terciles", "thresholds"), doc="many/medium/few split")
    n_bins: int = _f(15, ge=1, doc="ECE / reliability bins")


@dataclass
class Config:
    """A whole run: data, model, training recipe, methods and seeds."""

    name: str = _f("digits_lt", doc="run name (run-folder prefix, report title)")
    task: str = _f(
        "single-label",
        choices=TASK_KINDS,
        doc="task kind (a registered track: longtail.engine.kinds.TASK_KINDS)",
    )
    methods: list[str] | str = field(
        default="all", metadata=_meta(doc="'all' or a list of method names")
    )
    seeds: list[int] = field(
        default_factory=lambda: [0, 1, 2], metadata=_meta(ge=0, doc="training seeds")
    )
    method_params: dict[str, dict[str, Any]] = field(
        default_factory=dict, metadata=_meta(doc="per-method overrides")
    )
    recipes: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata=_meta(
            doc="composed methods: name -> {loss, sampler, head, drw, mix, posthoc, "
            "second_stage, params}"
        ),
    )
    tune: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata=_meta(
            doc="longtail tune: search spaces by method (or train), parameter -> {low, high, "
            "scale, choices}, [low, high] or false (see longtail.engine.methods.space)"
        ),
    )
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    sections: dict[str, Any] = field(
        default_factory=dict,
        metadata=_meta(
            doc="the sections that task kinds add (open_set, distill, metric_learning...), by "
            "key, validated into each kind's schema; read them as attributes (cfg.open_set)"
        ),
    )

    def __getattr__(self, name: str) -> Any:
        # a task kind's section (cfg.open_set): None unless the config sets it
        if name.startswith("__") or name == "sections" or name not in section_schemas():
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return self.sections.get(name)

    def with_section(self, key: str, value: Any) -> Config:
        """A copy with section ``key`` replaced by ``value`` (``dataclasses.replace`` for sections)."""
        if key not in section_schemas():
            raise ValueError(f"unknown config section {key!r}; known: {list(section_schemas())}")
        return dataclasses.replace(self, sections={**self.sections, key: value})


def section_schemas() -> dict[str, tuple[str, type]]:
    """The config sections of the registered task kinds: ``key -> (task name, schema)``."""
    return {k.section.key: (k.name, k.section.schema) for k in TASK_KINDS.values() if k.section}
