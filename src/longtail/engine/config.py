"""Run configuration: typed sections, YAML loading and validation.

A configuration is a YAML mapping with the sections below (every key is optional; the defaults are the
bundled digits benchmark). It is loaded with ``yaml.safe_load`` and validated before any work starts:
an unknown key, a value of the wrong type or a value out of range raises :class:`ConfigError` (a
``ValueError``) whose message names the dotted key, e.g. ``train.lr``. A setting that would be
silently ignored is an error too (``train.milestones`` without ``train.schedule: step``,
``data.max_per_class`` without ``data.imbalance_factor``, except for ``fashion-pairs``); what depends on the data (``train.augment``
and ``model.arch: cnn`` / ``resnet32`` need images) is checked by :func:`check_config_against_data`
once the data is loaded.

.. code-block:: yaml

    name: digits_lt            # run-folder prefix and report title
    task: single-label
    methods: all               # or a list of registry names (see `longtail methods`)
    seeds: [0, 1, 2]
    method_params:             # per-method hyper-parameter overrides
      la-loss: {tau: 1.5}
    data:
      dataset: digits          # digits | fashion-mnist | fashion-pairs | mnist | kmnist | idx
                               # | cifar10 | cifar100 | image-folder | table | mat
      data_dir: null
      imbalance_factor: 10     # n_max / n_min of the exponential or step profile; null = as is
      profile: exp
      subset_seed: 0           # seed of the long-tailed subset (fixed across training seeds)
      max_per_class: null      # fashion-pairs: also the pool per pair class (default 600)
      class_order: fixed       # fixed (class 0 the head) | random (permuted per training seed)
      test_fraction: 0.5       # digits only: stratified, balanced test split
      pair_test_per_class: 100 # fashion-pairs only: balanced test images per pair class
      balanced_reference: false
    model:
      arch: auto               # auto | mlp | cnn | resnet32
      hidden: [128]
      channels: [16, 32, 64]
      convs_per_stage: 1
      dropout: 0.0
    train:
      epochs: 30
      batch_size: 64
      lr: 0.1
      ...
    metrics:
      shot_mode: terciles      # terciles | thresholds
      n_bins: 15

:func:`load_config` also accepts overrides (the command line's ``--epochs`` and friends) as dotted keys.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from longtail.engine.kinds import TASK_KINDS

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "DistillConfig",
    "DistillTeacherConfig",
    "MetricLearningConfig",
    "MetricTeacherConfig",
    "MetricsConfig",
    "ModelConfig",
    "OpenSetConfig",
    "TrainConfig",
    "bundled_config_names",
    "bundled_config_path",
    "check_config_against_data",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "save_config",
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


def _f(default: Any, **meta: Any) -> Any:
    """A dataclass field with an immutable default and validation metadata (see :func:`_meta`)."""
    return field(default=default, metadata=_meta(**meta))


DATASETS = (
    "digits",
    "fashion-mnist",
    "fashion-pairs",
    "mnist",
    "kmnist",
    "idx",
    "cifar10",
    "cifar100",
    "mulan",
    "fashion-tiles",
    "image-folder",
    "table",
    "mat",
)
#: Data sets of multi-label tasks (every other one is single-label, except ``EITHER_TASK_DATASETS``).
MULTILABEL_DATASETS = ("mulan", "fashion-tiles")
#: Data sets of either task (single-label with ``data.label_column``, multi-label with
#: ``data.label_columns``).
EITHER_TASK_DATASETS = ("table",)


@dataclass
class DataConfig:
    """Which data, how it is made long-tailed and split."""

    dataset: str = _f("digits", choices=DATASETS, doc="data set")
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
        "without test/: share of each class held out (stratified split)",
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
    balanced_reference: bool = _f(
        False, doc="also train `erm` on a balanced subset of the same size (upper bound)"
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
    path: str | None = _f(None, doc="table / mat: the data file (.csv, .npz, .parquet / .mat)")
    label_column: str | None = _f(
        None, doc="table, single-label: the column holding the class (text or integers)"
    )
    label_columns: list[str] | None = field(
        default=None,
        metadata=_meta(doc="table, multi-label: the 0/1 label columns (empty / NaN: unknown)"),
    )
    x_key: str | None = _f(None, doc="mat: the variable holding the inputs (default X)")
    y_key: str | None = _f(None, doc="mat: the variable holding the labels (default Y)")
    image_size: int | None = _f(
        None, ge=1, doc="image-folder: images are resized to this square size (default 32)"
    )
    channels: int | None = _f(
        None, ge=1, le=3, doc="image-folder: 1 (grey) or 3 (RGB, default) channels"
    )
    num_workers: int = _f(
        0,
        ge=0,
        doc="image-folder: DataLoader worker processes decoding the images (0: in the loop)",
    )


ARCHS = ("auto", "mlp", "cnn", "resnet32")


@dataclass
class ModelConfig:
    """The network: backbone plus the head the method asks for (linear or cosine)."""

    arch: str = _f("auto", choices=ARCHS, doc="mlp (vectors), cnn (28x28), resnet32 (CIFAR)")
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


#: The five known-class splits of MNIST in the open-set literature (the ARPL code's): 6 known
#: classes, the other 4 unknown. Seed ``i`` of an open-set run trains on split ``i``.
MNIST_OPEN_SET_SPLITS: tuple[tuple[int, ...], ...] = (
    (2, 4, 5, 9, 8, 3),
    (3, 2, 6, 9, 4, 0),
    (5, 8, 3, 2, 4, 6),
    (3, 7, 8, 4, 0, 5),
    (6, 3, 4, 9, 8, 2),
)
#: Data sets an open-set run can split into known and unknown classes (in-memory, with a test split).
OPEN_SET_DATASETS = ("digits", "fashion-mnist", "mnist", "kmnist", "idx", "cifar10", "cifar100")


@dataclass
class OpenSetConfig:
    """Open-set protocol (``task: open-set``): which classes are known in each split."""

    splits: list[list[int]] = field(
        default_factory=lambda: [list(s) for s in MNIST_OPEN_SET_SPLITS],
        metadata=_meta(
            ge=0,
            doc="known classes of each split (the rest are unknown); seed i trains on split i",
        ),
    )


@dataclass
class DistillTeacherConfig:
    """The teacher of ``task: distillation``: trained as the run's first stage, or loaded."""

    method: str | dict[str, Any] = field(
        default="erm",
        metadata=_meta(
            doc="a single-label registry method without post-hoc step or second stage, or a "
            "recipe mapping {loss, sampler, head, drw, mix, params} (see recipes)"
        ),
    )
    params: dict[str, Any] = field(
        default_factory=dict, metadata=_meta(doc="hyper-parameters of the teacher's method")
    )
    model: ModelConfig = field(default_factory=ModelConfig)
    checkpoint: str | None = _f(
        None,
        doc="load the teacher's weights from this file (a model.pt or checkpoint.pt of a run, "
        "read with weights_only=True) instead of training it",
    )


@dataclass
class DistillConfig:
    """``task: distillation``: the teacher (the student is ``model``; the loss weights are the
    methods' ``method_params``)."""

    teacher: DistillTeacherConfig = field(default_factory=DistillTeacherConfig)


@dataclass
class MetricTeacherConfig:
    """The teacher embedding network of ``task: metric-learning``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    embedding_dim: int = _f(128, ge=1, doc="teacher embedding size")
    checkpoint: str | None = _f(
        None, doc="load the teacher's weights from this file instead of training it"
    )


@dataclass
class MetricLearningConfig:
    """``task: metric-learning``: seen / unseen classes, embeddings, triplet loss, batches."""

    train_classes: list[int] = field(
        default_factory=lambda: [0, 1, 2, 3, 4],
        metadata=_meta(
            ge=0, doc="classes trained on; the test images of every other class are evaluated"
        ),
    )
    embedding_dim: int = _f(64, ge=1, doc="student embedding size")
    classes_per_batch: int = _f(
        5, ge=2, doc="P of the P x K batches (K = train.batch_size / P images per class)"
    )
    margin: float = _f(0.2, gt=0.0, doc="triplet margin (teacher and the triplet student)")
    mining: str = _f(
        "all",
        choices=("all", "batch_hard"),
        doc="triplets of a batch (mine_triplets): every valid one, or each anchor's hardest",
    )
    teacher: MetricTeacherConfig = field(default_factory=MetricTeacherConfig)


#: The tasks with a teacher and students (``distill`` / ``metric_learning`` sections).
TEACHER_TASKS = ("distillation", "metric-learning")


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
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    open_set: OpenSetConfig | None = field(
        default=None,
        metadata=_meta(doc="task open-set: the known-class splits (default: the MNIST splits)"),
    )
    distill: DistillConfig | None = field(
        default=None, metadata=_meta(doc="task distillation: the teacher")
    )
    metric_learning: MetricLearningConfig | None = field(
        default=None,
        metadata=_meta(doc="task metric-learning: classes, embeddings, triplets, the teacher"),
    )


# --------------------------------------------------------------------------------------------------
# validation


def _type_name(value: object) -> str:
    return type(value).__name__


def _check_range(key: str, value: float, meta: Mapping[str, Any]) -> None:
    ge, gt, le, lt = meta.get("ge"), meta.get("gt"), meta.get("le"), meta.get("lt")
    if ge is not None and not value >= ge:
        raise ConfigError(f"config key '{key}': must be >= {ge}, got {value!r}")
    if gt is not None and not value > gt:
        raise ConfigError(f"config key '{key}': must be > {gt}, got {value!r}")
    if le is not None and not value <= le:
        raise ConfigError(f"config key '{key}': must be <= {le}, got {value!r}")
    if lt is not None and not value < lt:
        raise ConfigError(f"config key '{key}': must be < {lt}, got {value!r}")


def _coerce(key: str, tp: Any, value: Any, meta: Mapping[str, Any]) -> Any:
    """Check ``value`` against the annotation ``tp`` (and the field's range/choices); return it."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"config key '{key}': must not be null")
        errors: list[ConfigError] = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, arg, value, meta)
            except ConfigError as exc:
                errors.append(exc)
        raise (
            errors[-1]
            if len(errors) == 1
            else ConfigError(
                f"config key '{key}': unexpected value {value!r} ({_type_name(value)}); "
                + "; ".join(str(e).split(": ", 1)[1] for e in errors)
            )
        )
    if value is None:
        raise ConfigError(f"config key '{key}': must not be null")
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(
                f"config key '{key}': expected a list, got {value!r} ({_type_name(value)})"
            )
        return [_coerce(f"{key}[{i}]", item_tp, v, meta) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(
                f"config key '{key}': expected a mapping, got {value!r} ({_type_name(value)})"
            )
        _, val_tp = typing.get_args(tp)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"config key '{key}': keys must be strings, got {k!r}")
            out[k] = v if val_tp is Any else _coerce(f"{key}.{k}", val_tp, v, {})
        return out
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(
                f"config key '{key}': expected true/false, got {value!r} ({_type_name(value)})"
            )
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(
                f"config key '{key}': expected an integer, got {value!r} ({_type_name(value)})"
            )
        _check_range(key, value, meta)
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(
                    f"config key '{key}': expected a number, got {value!r} (str)"
                ) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(
                f"config key '{key}': expected a number, got {value!r} ({_type_name(value)})"
            )
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"config key '{key}': must be finite, got {value!r}")
        _check_range(key, value, meta)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(
                f"config key '{key}': expected a string, got {value!r} ({_type_name(value)})"
            )
        choices = meta.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(f"config key '{key}': must be one of {list(choices)}, got {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")  # pragma: no cover


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _build(cls: Any, raw: Any, prefix: str) -> Any:
    where = f"config key '{prefix}'" if prefix else "config"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r} ({_type_name(raw)})")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k in raw:
        if k not in fields:
            full = f"{prefix}.{k}" if prefix else str(k)
            raise ConfigError(
                f"config key '{full}': unknown key (known: {', '.join(sorted(fields))})"
            )
    hints = _hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name in raw:
            full = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _coerce(full, hints[name], raw[name], f.metadata)
    return cls(**kwargs)


def _check_cross(cfg: Config) -> None:
    from longtail.engine.methods import check_method_params, resolve_methods

    if cfg.task == "open-set" and cfg.recipes:
        raise ConfigError(
            "config key 'recipes': not available with task open-set (its methods are the "
            "registry's: longtail methods --task open-set; tune them with method_params)"
        )
    if cfg.task in TEACHER_TASKS and cfg.recipes:
        raise ConfigError(
            f"config key 'recipes': not available with task {cfg.task} (its methods are the "
            "registry's; any weighted combination of their terms: method_params)"
        )
    try:
        METHODS = resolve_methods(cfg.recipes, cfg.task)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    _check_task_data(cfg)

    t = cfg.train
    if t.warmup_epochs >= t.epochs and t.warmup_epochs > 0:
        raise ConfigError(
            f"config key 'train.warmup_epochs': must be < train.epochs ({t.epochs}), "
            f"got {t.warmup_epochs}"
        )
    for i, milestone in enumerate(t.milestones):
        if milestone >= t.epochs:
            raise ConfigError(
                f"config key 'train.milestones[{i}]': must be < train.epochs ({t.epochs}), "
                f"got {milestone}"
            )
    if t.milestones != sorted(t.milestones):
        raise ConfigError(f"config key 'train.milestones': must be increasing, got {t.milestones}")
    if t.milestones and t.schedule != "step":
        raise ConfigError(
            f"config key 'train.milestones': only used by train.schedule 'step', got "
            f"{t.milestones} with schedule {t.schedule!r} (set schedule: step or remove milestones)"
        )
    if (
        cfg.data.max_per_class is not None
        and cfg.data.imbalance_factor is None
        and cfg.data.dataset != "fashion-pairs"  # there it is also the pool size per class
    ):
        raise ConfigError(
            "config key 'data.max_per_class': only used with data.imbalance_factor "
            f"(got {cfg.data.max_per_class} with imbalance_factor null, which keeps the data as is)"
        )
    if isinstance(cfg.methods, str):
        if cfg.methods != "all":
            raise ConfigError(
                f"config key 'methods': expected 'all' or a list of names, got {cfg.methods!r}"
            )
    else:
        if not cfg.methods:
            raise ConfigError("config key 'methods': must not be empty")
        for i, m in enumerate(cfg.methods):
            if m not in METHODS:
                raise ConfigError(
                    f"config key 'methods[{i}]': unknown method {m!r} (known: {', '.join(METHODS)})"
                )
        if len(set(cfg.methods)) != len(cfg.methods):
            raise ConfigError(f"config key 'methods': duplicate names in {cfg.methods}")
    if not cfg.seeds:
        raise ConfigError("config key 'seeds': must not be empty")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise ConfigError(f"config key 'seeds': duplicate seeds in {cfg.seeds}")
    for name, params in cfg.method_params.items():
        if name not in METHODS:
            raise ConfigError(
                f"config key 'method_params.{name}': unknown method (known: {', '.join(METHODS)})"
            )
        if not isinstance(params, dict):
            raise ConfigError(
                f"config key 'method_params.{name}': expected a mapping, got {params!r}"
            )
        try:
            check_method_params(name, params, METHODS)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if cfg.data.dataset not in ("digits", "table", "mat") and cfg.data.data_dir is None:
        raise ConfigError(
            f"config key 'data.data_dir': required for dataset {cfg.data.dataset!r} "
            "(or pass --data-dir)"
        )
    if cfg.data.dataset == "fashion-pairs" and t.augment and t.flip:
        raise ConfigError(
            "config key 'train.flip': must be false for dataset 'fashion-pairs' (a horizontal "
            "flip swaps the left and right items, i.e. the class)"
        )
    if not cfg.name or any(c in cfg.name for c in "/\\\0"):
        raise ConfigError(f"config key 'name': must be a non-empty file-name, got {cfg.name!r}")
    _check_open_set(cfg)
    _check_teacher_tasks(cfg)


def _check_open_set(cfg: Config) -> None:
    """``task: open-set``: the splits (known classes), the seeds that pick them, what it refuses.

    What needs the data (a class out of range, no unknown class left) is checked when the data are
    built (:func:`longtail.tracks.open_set.task.build_open_set_data`), before any training.
    """
    d = cfg.data
    if cfg.task != "open-set":
        if cfg.open_set is not None:
            raise ConfigError(
                f"config key 'open_set': only used with task open-set, got task {cfg.task!r}"
            )
        return
    splits = (cfg.open_set or OpenSetConfig()).splits
    if not splits:
        raise ConfigError("config key 'open_set.splits': must not be empty")
    for i, known in enumerate(splits):
        key = f"open_set.splits[{i}]"
        if len(known) < 2:
            raise ConfigError(
                f"config key '{key}': needs at least 2 known classes to classify, got {known}"
            )
        dup = sorted({c for c in known if known.count(c) > 1})
        if dup:
            raise ConfigError(f"config key '{key}': duplicate known class {dup[0]} in {known}")
        if len(known) != len(splits[0]):
            raise ConfigError(
                f"config key '{key}': has {len(known)} known classes but open_set.splits[0] has "
                f"{len(splits[0])}; every split of the protocol has the same number"
            )
    for k, seed in enumerate(cfg.seeds):
        if seed >= len(splits):
            raise ConfigError(
                f"config key 'seeds[{k}]': seed {seed} trains on open_set.splits[{seed}], but "
                f"open_set.splits has {len(splits)} entries (seed i uses split i)"
            )
    if d.dataset not in OPEN_SET_DATASETS:
        raise ConfigError(
            f"config key 'data.dataset': task open-set splits an in-memory data set with a test "
            f"split into known and unknown classes ({', '.join(OPEN_SET_DATASETS)}), got "
            f"{d.dataset!r}"
        )
    if d.balanced_reference:
        raise ConfigError(
            "config key 'data.balanced_reference': not used by task open-set (the balanced "
            "reference is a single-label method); set it to false"
        )
    if d.class_order != "fixed":
        raise ConfigError(
            "config key 'data.class_order': task open-set orders the known classes as listed in "
            f"open_set.splits (the first is the head); got {d.class_order!r}"
        )
    if cfg.model.factory is not None:
        raise ConfigError(
            "config key 'model.factory': not available with task open-set (its heads work on "
            "the built-in backbones' features)"
        )


def _check_teacher_tasks(cfg: Config) -> None:
    """``task: distillation`` / ``metric-learning``: their sections, the teacher, what they refuse.

    What needs the data (the teacher checkpoint's classes, the classes of ``train_classes``) is
    checked when the data are built, before the run folder is written.
    """
    d = cfg.data
    for key, task in (("distill", "distillation"), ("metric_learning", "metric-learning")):
        if getattr(cfg, key) is not None and cfg.task != task:
            raise ConfigError(
                f"config key '{key}': only used with task {task}, got task {cfg.task!r}"
            )
    if cfg.task not in TEACHER_TASKS:
        return
    if cfg.model.factory is not None:
        raise ConfigError(
            f"config key 'model.factory': not available with task {cfg.task} (student and "
            "teacher are built from the built-in backbones)"
        )
    section = "distill" if cfg.task == "distillation" else "metric_learning"
    teacher: Any = getattr(cfg, section) or (
        DistillConfig() if cfg.task == "distillation" else MetricLearningConfig()
    )
    teacher = teacher.teacher
    _check_model_factory_free(f"{section}.teacher.model", teacher.model)
    if cfg.task == "distillation":
        from longtail.engine.methods import METHODS, recipe_from_dict

        key = "distill.teacher.method"
        spec = teacher.method
        if isinstance(spec, str):
            if spec not in METHODS:
                raise ConfigError(
                    f"config key '{key}': unknown single-label method {spec!r} (known: "
                    f"{', '.join(METHODS)})"
                )
            method = METHODS[spec]
        else:
            try:
                method = recipe_from_dict("teacher", spec)
            except ValueError as exc:
                raise ConfigError(str(exc).replace("recipes.teacher", key)) from None
        what = (
            "a post-hoc step"
            if method.posthoc
            else "a second stage"
            if method.second_stage
            else "self-supervised label augmentation"
            if method.sla
            else None
        )
        if what:
            raise ConfigError(
                f"config key '{key}': {method.name!r} has {what}; the teacher is one training "
                "stage whose logits the students match (choose a method without it)"
            )
        try:
            method.resolve_params(teacher.params)
        except ValueError as exc:
            raise ConfigError(
                str(exc).replace(f"method_params.{method.name}", "distill.teacher.params")
            ) from None
        return
    m = cfg.metric_learning or MetricLearningConfig()
    classes = m.train_classes
    if len(classes) < 2:
        raise ConfigError(
            "config key 'metric_learning.train_classes': needs at least 2 classes (a triplet "
            f"needs a negative), got {classes}"
        )
    dup = sorted({c for c in classes if classes.count(c) > 1})
    if dup:
        raise ConfigError(
            f"config key 'metric_learning.train_classes': duplicate class {dup[0]} in {classes}"
        )
    if m.classes_per_batch > len(classes):
        raise ConfigError(
            f"config key 'metric_learning.classes_per_batch': {m.classes_per_batch} is more than "
            f"the {len(classes)} training classes"
        )
    per_class, rest = divmod(cfg.train.batch_size, m.classes_per_batch)
    if rest or per_class < 2:
        raise ConfigError(
            f"config key 'train.batch_size': a P x K batch of metric_learning.classes_per_batch "
            f"P = {m.classes_per_batch} classes needs a multiple of P with K >= 2 images per "
            f"class (a positive), got {cfg.train.batch_size}"
        )
    if d.dataset not in OPEN_SET_DATASETS:
        raise ConfigError(
            f"config key 'data.dataset': task metric-learning splits an in-memory data set with "
            f"a test split into seen and unseen classes ({', '.join(OPEN_SET_DATASETS)}), got "
            f"{d.dataset!r}"
        )
    for key, bad, why in (
        ("data.balanced_reference", d.balanced_reference, "the reference is a classifier"),
        ("data.class_order", d.class_order != "fixed", "classes are listed in train_classes"),
    ):
        if bad:
            raise ConfigError(f"config key '{key}': not used by task metric-learning ({why})")


def _check_model_factory_free(key: str, model: ModelConfig) -> None:
    for name, used in (("factory", model.factory is not None), ("kwargs", bool(model.kwargs))):
        if used:
            raise ConfigError(
                f"config key '{key}.{name}': a teacher is built from the built-in backbones "
                "(model.factory is not available for it)"
            )


def _check_task_data(cfg: Config) -> None:
    """The data set and data options must fit the task (multi-label sets need task multi-label)."""
    d = cfg.data
    multi = cfg.task == "multi-label"
    _check_own_data(cfg)
    _check_model_factory(cfg)
    if d.dataset not in EITHER_TASK_DATASETS and multi != (d.dataset in MULTILABEL_DATASETS):
        if multi:
            raise ConfigError(
                f"config key 'data.dataset': task multi-label needs a multi-label data set "
                f"({', '.join(MULTILABEL_DATASETS + EITHER_TASK_DATASETS)}), got {d.dataset!r}"
            )
        raise ConfigError(
            f"config key 'task': data set {d.dataset!r} is multi-label; set task: multi-label"
        )
    if d.hidden_as != "unknown" and not (multi and d.hide_fraction > 0):
        raise ConfigError(
            "config key 'data.hidden_as': only used with task multi-label and "
            f"data.hide_fraction > 0, got {d.hidden_as!r}"
        )
    if d.validation_fraction is not None:
        if cfg.task == "metric-learning":
            raise ConfigError(
                "config key 'data.validation_fraction': not available for task metric-learning "
                "(its evaluation classes are unseen in training, so the training data holds none "
                "of them)"
            )
        if d.balanced_reference:
            raise ConfigError(
                "config key 'data.balanced_reference': not available with "
                "data.validation_fraction (the reference draws its own balanced training set, so "
                "it would be scored on other held-out examples than the methods)"
            )
        teacher = cfg.distill.teacher if cfg.distill is not None else None
        if teacher is not None and teacher.checkpoint is not None:
            raise ConfigError(
                "config key 'distill.teacher.checkpoint': not available with "
                "data.validation_fraction (a teacher trained elsewhere may have seen the held-out "
                "examples; leave the checkpoint out to train the teacher as a stage of the run)"
            )
    if not multi and d.hide_fraction > 0:
        raise ConfigError(
            f"config key 'data.hide_fraction': hides multi-label entries; got {d.hide_fraction} "
            "with task single-label"
        )
    if multi:
        if d.balanced_reference:
            raise ConfigError(
                "config key 'data.balanced_reference': a balanced subset of the same size is "
                "not defined for multi-label data (every example holds several labels)"
            )
        if d.class_order != "fixed":
            raise ConfigError(
                "config key 'data.class_order': only 'fixed' for multi-label data, got "
                f"{d.class_order!r}"
            )
        if d.dataset == "mulan" and d.imbalance_factor is not None:
            raise ConfigError(
                "config key 'data.imbalance_factor': a Mulan set is used as loaded (its labels "
                f"are naturally skewed); set it to null, got {d.imbalance_factor}"
            )
        if d.dataset == "table" and d.imbalance_factor is not None:
            raise ConfigError(
                "config key 'data.imbalance_factor': a multi-label table is used as loaded (a "
                "long-tailed subset is not defined for several labels per row); set it to null, "
                f"got {d.imbalance_factor}"
            )
        if d.max_per_class is not None:
            raise ConfigError(
                "config key 'data.max_per_class': not used by multi-label data sets, got "
                f"{d.max_per_class}"
            )


_FACTORY_FORMAT = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_TABLE_SUFFIXES = (".csv", ".npz", ".parquet")


def _check_own_data(cfg: Config) -> None:
    """The keys of ``image-folder``, ``table`` and ``mat``: required where used, refused elsewhere."""
    d = cfg.data
    multi = cfg.task == "multi-label"

    def unused(key: str, value: Any, used_by: str) -> ConfigError:
        return ConfigError(
            f"config key 'data.{key}': only used by dataset {used_by}, got {value!r} with "
            f"dataset {d.dataset!r}"
        )

    for key, datasets in (
        ("path", ("table", "mat")),
        ("label_column", ("table",)),
        ("label_columns", ("table",)),
        ("x_key", ("mat",)),
        ("y_key", ("mat",)),
        ("image_size", ("image-folder",)),
        ("channels", ("image-folder",)),
    ):
        value = getattr(d, key)
        if value is not None and d.dataset not in datasets:
            raise unused(key, value, " / ".join(datasets))
    if d.num_workers and d.dataset != "image-folder":
        raise unused("num_workers", d.num_workers, "image-folder (images read lazily)")
    if d.channels is not None and d.channels not in (1, 3):
        raise ConfigError(f"config key 'data.channels': must be 1 or 3, got {d.channels}")
    if d.dataset in ("table", "mat"):
        if d.path is None:
            raise ConfigError(
                f"config key 'data.path': required for dataset {d.dataset!r} (or pass --data-path)"
            )
        if d.data_dir is not None:
            raise ConfigError(
                f"config key 'data.data_dir': dataset {d.dataset!r} reads data.path, got "
                f"data_dir {d.data_dir!r}"
            )
        suffixes = _TABLE_SUFFIXES if d.dataset == "table" else (".mat",)
        if Path(d.path).suffix.lower() not in suffixes:
            raise ConfigError(
                f"config key 'data.path': dataset {d.dataset!r} reads {' / '.join(suffixes)} "
                f"files, got {d.path!r}"
            )
    if d.dataset == "mat" and multi:
        raise ConfigError(
            "config key 'task': dataset 'mat' is single-label (a label vector); use a table for "
            "multi-label data"
        )
    if d.dataset != "table":
        return
    if multi:
        if d.label_column is not None:
            raise ConfigError(
                "config key 'data.label_column': single-label only; task multi-label reads "
                "data.label_columns"
            )
        if not d.label_columns:
            raise ConfigError(
                "config key 'data.label_columns': required for a multi-label table (the 0/1 "
                "label columns)"
            )
        if len(set(d.label_columns)) != len(d.label_columns):
            raise ConfigError(
                f"config key 'data.label_columns': duplicate names in {d.label_columns}"
            )
    else:
        if d.label_columns is not None:
            raise ConfigError(
                "config key 'data.label_columns': multi-label only (task: multi-label); a "
                "single-label table reads data.label_column"
            )
        if d.label_column is None:
            raise ConfigError(
                "config key 'data.label_column': required for a single-label table (the "
                "column holding the class)"
            )


def _check_model_factory(cfg: Config) -> None:
    m = cfg.model
    if m.factory is None:
        if m.kwargs:
            raise ConfigError(
                f"config key 'model.kwargs': only used with model.factory, got {m.kwargs!r}"
            )
        return
    if not _FACTORY_FORMAT.fullmatch(m.factory):
        raise ConfigError(
            f"config key 'model.factory': expected 'package.module:callable', got {m.factory!r}"
        )
    if m.arch != "auto":
        raise ConfigError(
            "config key 'model.arch': not used with model.factory (the factory builds the whole "
            f"network), got {m.arch!r}"
        )
    if "num_classes" in m.kwargs:
        raise ConfigError(
            "config key 'model.kwargs.num_classes': set by the engine (the data's number of "
            "classes)"
        )


def _check_factory_against_methods(cfg: Config, num_classes: int) -> None:
    """Build the factory's model once (global RNG untouched) and check that it has the head every
    configured method needs."""
    import torch

    from longtail.engine.methods import resolve_methods
    from longtail.engine.models import build_factory_model, factory_head_problem

    assert cfg.model.factory is not None
    table = resolve_methods(cfg.recipes, cfg.task)
    names = (
        [n for n, m in table.items() if m.task == cfg.task]
        if isinstance(cfg.methods, str)
        else list(cfg.methods)
    )
    try:
        with torch.random.fork_rng(devices=[]):
            model = build_factory_model(cfg.model.factory, num_classes, cfg.model.kwargs)
    except ValueError as exc:
        key, _, problem = str(exc).partition(": ")
        raise ConfigError(f"config key '{key}': {problem}") from None
    for name in names:
        missing = factory_head_problem(model, table[name])
        if missing:
            raise ConfigError(
                f"config key 'model.factory': method {name!r} {missing}, and the "
                f"{type(model).__name__} returned by {cfg.model.factory} has none (choose methods "
                "with a linear head and no second stage or tau-norm, or give the module that "
                "attribute)"
            )


def check_config_against_data(cfg: Config, *, is_image: bool, num_classes: int) -> None:
    """Check the settings that depend on the loaded data (call once the data is built).

    Args:
        cfg: a validated configuration.
        is_image: the inputs are images ``(N, C, H, W)``, not feature vectors.
        num_classes: classes of the data.

    Raises:
        ConfigError: ``train.augment`` or ``model.arch: cnn`` / ``resnet32`` on feature vectors,
            fewer than 2 classes, or a ``model.factory`` that cannot be imported or called, or
            lacks the head a configured method needs; the message names the key.
    """
    if num_classes < 2:
        raise ConfigError(
            f"config key 'data.dataset': {cfg.data.dataset!r} has {num_classes} class(es), "
            "classification needs at least 2"
        )
    if cfg.model.factory is not None:
        _check_factory_against_methods(cfg, num_classes)
    if is_image:
        return
    if cfg.train.augment:
        raise ConfigError(
            f"config key 'train.augment': random crop and flip need images, but the inputs of "
            f"{cfg.data.dataset!r} are feature vectors, not images (set augment: false)"
        )
    if cfg.model.arch in ("cnn", "resnet32"):
        raise ConfigError(
            f"config key 'model.arch': {cfg.model.arch} needs images, but the inputs of "
            f"{cfg.data.dataset!r} are feature vectors (use mlp or auto)"
        )


def config_from_dict(raw: Mapping[str, Any] | None) -> Config:
    """Validate a mapping (e.g. from YAML) and build a :class:`Config`.

    Raises:
        ConfigError: unknown key, wrong type or out-of-range value; the message names the key.
    """
    cfg: Config = _build(Config, {} if raw is None else raw, "")
    _check_cross(cfg)
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The configuration as plain Python types (the inverse of :func:`config_from_dict`)."""
    out = dataclasses.asdict(cfg)
    if out.get("open_set") is None:
        # absent unless set: the dicts (and run fingerprints) of the other tasks stay as they were
        out.pop("open_set", None)
    for key in ("distill", "metric_learning"):
        if out.get(key) is None:
            out.pop(key, None)
    if out["data"].get("validation_fraction") is None:
        out["data"].pop("validation_fraction", None)  # likewise: older run folders still resume
    return out


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for p in parts[:-1]:
        child = node.get(p)
        if child is None:
            child = {}
            node[p] = child
        if not isinstance(child, dict):
            raise ConfigError(f"config key '{key}': '{p}' is not a section")
        node = child
    node[parts[-1]] = value


def bundled_config_names() -> list[str]:
    """Names of the configs shipped inside the package (``longtail/configs/*.yaml``)."""
    root = Path(__file__).resolve().parent.parent / "configs"
    return sorted(p.stem for p in root.glob("*.yaml"))


def bundled_config_path(name: str) -> Path:
    """Path of a bundled config by name (``digits_lt``, ``fashion_mnist_lt``, ...)."""
    path = Path(__file__).resolve().parent.parent / "configs" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(
            f"config: no bundled config named {name!r} (bundled: {', '.join(bundled_config_names())})"
        )
    return path


def _yaml_problem(exc: Exception) -> str:
    """One line for a PyYAML error: the problem and where (PyYAML's own text spans lines)."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split()) or type(exc).__name__


def _read_yaml_mapping(p: Path) -> dict[str, Any]:
    """The top-level mapping of the YAML file ``p``; anything else is a :class:`ConfigError`."""
    import yaml

    data = p.read_bytes()
    if b"\0" in data:
        raise ConfigError(
            f"config {p}: not a YAML file (binary data: byte 0x00 at offset {data.index(0)})"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config {p}: not a YAML file (not UTF-8 text: byte 0x{data[exc.start]:02x} at "
            f"offset {exc.start})"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {p}: not valid YAML: {_yaml_problem(exc)}") from None
    if raw is None:
        raise ConfigError(
            f"config {p} is empty: expected a mapping of settings (e.g. `name: my_run`)"
        )
    if not isinstance(raw, dict):
        raise ConfigError(f"config {p}: expected a mapping at the top level, got {_type_name(raw)}")
    return raw


def _fit_warmup(raw: dict[str, Any], file_epochs: Any, notices: list[str]) -> None:
    """Lower a file's ``train.warmup_epochs`` that an overridden ``train.epochs`` leaves no room for.

    The warm-up keeps its share of the epochs (rounded down), and stays below ``train.epochs``.
    """
    train = raw.get("train")
    if not isinstance(train, dict):
        return
    values: tuple[Any, ...] = (train.get("epochs"), train.get("warmup_epochs"), file_epochs)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        return  # absent or invalid: validation names the key
    epochs, warmup, before = (int(v) for v in values)
    if warmup < epochs:
        return
    fitted = min(epochs - 1, warmup * epochs // before)
    train["warmup_epochs"] = fitted
    notices.append(
        f"train.warmup_epochs lowered from {warmup} to {fitted}: it must be below train.epochs, "
        f"now {epochs} (set train.warmup_epochs to choose another value)"
    )


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    notices: list[str] | None = None,
) -> Config:
    """Load and validate a YAML config; ``None`` loads the bundled ``digits_lt`` config.

    Args:
        path: a YAML file, or the name of a bundled config (see :func:`bundled_config_names`).
        overrides: dotted keys applied on top of the file, e.g. ``{"train.epochs": 2}``.
        notices: if given (the command line does), an overridden ``train.epochs`` that is not above
            the file's ``train.warmup_epochs`` (not overridden) lowers the warm-up, keeping its
            share of the epochs, instead of being an error; a one-line note is appended here.

    Raises:
        ConfigError: an empty file, a file that is not YAML text or not a mapping, an unknown key,
            a wrong type or an out-of-range value (the message names the file or the key).
        FileNotFoundError: ``path`` does not exist and is not a bundled name.
    """
    try:
        import yaml  # noqa: F401
    except ImportError as exc:  # pragma: no cover
        raise ImportError("loading configs needs PyYAML: pip install 'longtail[cli]'") from exc
    if path is None:
        p = bundled_config_path("digits_lt")
    else:
        p = Path(path)
        if p.is_dir():
            raise ConfigError(f"config {p} is a folder, not a YAML file")
        if not p.is_file():
            if p.suffix == "" and str(p.stem) in bundled_config_names():
                p = bundled_config_path(str(p))
            else:
                raise FileNotFoundError(f"config file not found: {path}")
    raw = _read_yaml_mapping(p)
    train = raw.get("train")
    file_epochs = train.get("epochs", TrainConfig().epochs) if isinstance(train, dict) else None
    overrides = dict(overrides or {})
    for k, v in overrides.items():
        _set_dotted(raw, k, v)
    if (
        notices is not None
        and "train.epochs" in overrides
        and "train.warmup_epochs" not in overrides
    ):
        _fit_warmup(raw, file_epochs, notices)
    return config_from_dict(raw)


def save_config(cfg: Config, path: str | os.PathLike[str]) -> None:
    """Write the resolved configuration as YAML, atomically."""
    import yaml

    from longtail.engine.checkpoint import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
