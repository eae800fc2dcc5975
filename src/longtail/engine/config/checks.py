"""Cross-checks: settings that are valid alone but not together, or that the loaded data refuse.

:func:`_check_cross` runs after coercion (:func:`~longtail.engine.config.config_from_dict`): the
methods and their hyper-parameters, the schedule, the data options of the task, the model factory,
then the task kind's own ``check_config`` hook. :func:`check_config_against_data` runs once the data
are built (images or vectors, the number of classes).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from longtail.engine.config.schema import (
    Config,
    ConfigError,
    DataConfig,
    ModelConfig,
    section_schemas,
)
from longtail.engine.datasets.formats import DATA_FORMATS, DataFormat
from longtail.engine.kinds import TASK_KINDS
from longtail.engine.methods import check_method_params, check_tune_section, resolve_methods
from longtail.engine.models import FACTORY_FORMAT, build_factory_model, factory_head_problem

__all__ = ["check_config_against_data", "check_teacher_model"]


def _check_cross(cfg: Config) -> None:
    refused = TASK_KINDS[cfg.task].recipes_refused
    if refused and cfg.recipes:
        raise ConfigError(f"config key 'recipes': not available with task {cfg.task} ({refused})")
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
    fmt = DATA_FORMATS[cfg.data.dataset]
    if (
        cfg.data.max_per_class is not None
        and cfg.data.imbalance_factor is None
        and not fmt.max_per_class_sizes_pool  # there it is also the pool size per class
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
    try:
        check_tune_section(cfg.tune, METHODS)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if fmt.source == "data_dir" and cfg.data.data_dir is None:
        raise ConfigError(
            f"config key 'data.data_dir': required for dataset {cfg.data.dataset!r} "
            "(or pass --data-dir)"
        )
    if not cfg.name or any(c in cfg.name for c in "/\\\0"):
        raise ConfigError(f"config key 'name': must be a non-empty file-name, got {cfg.name!r}")
    for key, (task, _) in section_schemas().items():
        if cfg.sections.get(key) is not None and cfg.task != task:
            raise ConfigError(
                f"config key '{key}': only used with task {task}, got task {cfg.task!r}"
            )
    kind = TASK_KINDS[cfg.task]
    if kind.check_config is not None:
        kind.check_config(cfg)
    if cfg.data.balanced_reference and kind.reference is None:
        raise ConfigError(
            f"config key 'data.balanced_reference': task {cfg.task} has no balanced reference; "
            "set it to false"
        )
    if cfg.data.sklearn_reference:
        _check_sklearn_reference(cfg, fmt)


def _check_sklearn_reference(cfg: Config, fmt: DataFormat) -> None:
    """``data.sklearn_reference`` needs a task that offers it and feature vectors."""
    if TASK_KINDS[cfg.task].sklearn_reference is None:
        offering = [k.name for k in TASK_KINDS.values() if k.sklearn_reference is not None]
        raise ConfigError(
            f"config key 'data.sklearn_reference': task {cfg.task} has no scikit-learn reference "
            f"(tasks with one: {', '.join(offering) or 'none'}); set it to false"
        )
    if fmt.inputs != "vectors":
        raise ConfigError(
            f"config key 'data.sklearn_reference': needs feature vectors (tables, .mat files, "
            f"Mulan sets), but dataset {cfg.data.dataset!r} holds images; set it to false"
        )


def check_teacher_model(key: str, model: ModelConfig) -> None:
    """A teacher's network is a built-in backbone: ``model.factory`` and ``kwargs`` are refused."""
    for name, used in (("factory", model.factory is not None), ("kwargs", bool(model.kwargs))):
        if used:
            raise ConfigError(
                f"config key '{key}.{name}': a teacher is built from the built-in backbones "
                "(model.factory is not available for it)"
            )


def _task_names(labels: str) -> str:
    """The task kinds whose data hold ``labels`` (``"multi"``: ``multi-label``), for messages."""
    return " / ".join(k.name for k in TASK_KINDS.values() if k.labels == labels)


def _check_task_data(cfg: Config) -> None:
    """The data set and data options must fit the task (multi-label sets need task multi-label)."""
    d = cfg.data
    fmt = DATA_FORMATS[d.dataset]
    labels = TASK_KINDS[cfg.task].labels
    multi = labels == "multi"
    _check_format(cfg, fmt, labels)
    _check_model_factory(cfg)
    if not fmt.serves(labels):
        if multi:
            serving = [n for n, f in DATA_FORMATS.items() if f.labels == "multi"]
            serving += [n for n, f in DATA_FORMATS.items() if f.labels == "either"]
            raise ConfigError(
                f"config key 'data.dataset': task {cfg.task} needs a multi-label data set "
                f"({', '.join(serving)}), got {d.dataset!r}"
            )
        raise ConfigError(
            f"config key 'task': data set {d.dataset!r} is multi-label; set task: "
            f"{_task_names('multi')}"
        )
    if d.hidden_as != "unknown" and not (multi and d.hide_fraction > 0):
        raise ConfigError(
            f"config key 'data.hidden_as': only used with task {_task_names('multi')} and "
            f"data.hide_fraction > 0, got {d.hidden_as!r}"
        )
    if d.validation_seed is not None and d.validation_fraction is None:
        raise ConfigError(
            f"config key 'data.validation_seed': seeds the validation split; got "
            f"{d.validation_seed} without data.validation_fraction"
        )
    if d.validation_fraction is not None and d.balanced_reference:
        raise ConfigError(
            "config key 'data.balanced_reference': not available with "
            "data.validation_fraction (the reference draws its own balanced training set, so "
            "it would be scored on other held-out examples than the methods)"
        )
    if not multi and d.hide_fraction > 0:
        raise ConfigError(
            f"config key 'data.hide_fraction': hides multi-label entries; got {d.hide_fraction} "
            f"with task {cfg.task}"
        )
    if not multi and d.min_label_positives > 0:
        raise ConfigError(
            "config key 'data.min_label_positives': drops multi-label labels; got "
            f"{d.min_label_positives} with task {cfg.task}"
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
        if d.max_per_class is not None:
            raise ConfigError(
                "config key 'data.max_per_class': not used by multi-label data sets, got "
                f"{d.max_per_class}"
            )


#: What the message adds to the formats that read a key (``only used by dataset X (...)``).
_KEY_NOTES = {"num_workers": " (images read lazily)"}


def _check_format(cfg: Config, fmt: DataFormat, labels: str) -> None:
    """The keys of the data format: those of other formats refused, its file required, then the
    format's own checks (:attr:`~longtail.engine.datasets.DataFormat.check`)."""
    d = cfg.data
    for f in dataclasses.fields(DataConfig):
        users = [n for n, other in DATA_FORMATS.items() if f.name in other.used_keys]
        value = getattr(d, f.name)
        if not users or d.dataset in users or value == f.default:
            continue
        raise ConfigError(
            f"config key 'data.{f.name}': only used by dataset "
            f"{' / '.join(users)}{_KEY_NOTES.get(f.name, '')}, got {value!r} with dataset "
            f"{d.dataset!r}"
        )
    if fmt.source == "path":
        if d.path is None:
            raise ConfigError(
                f"config key 'data.path': required for dataset {d.dataset!r} (or pass --data-path)"
            )
        if d.data_dir is not None:
            raise ConfigError(
                f"config key 'data.data_dir': dataset {d.dataset!r} reads data.path, got "
                f"data_dir {d.data_dir!r}"
            )
        if fmt.suffixes and Path(d.path).suffix.lower() not in fmt.suffixes:
            raise ConfigError(
                f"config key 'data.path': dataset {d.dataset!r} reads "
                f"{' / '.join(fmt.suffixes)} files, got {d.path!r}"
            )
    if fmt.check is not None:
        try:
            fmt.check(cfg, labels)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def _check_model_factory(cfg: Config) -> None:
    m = cfg.model
    if m.factory is None:
        if m.kwargs:
            raise ConfigError(
                f"config key 'model.kwargs': only used with model.factory, got {m.kwargs!r}"
            )
        return
    if not FACTORY_FORMAT.fullmatch(m.factory):
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
            f"{cfg.data.dataset!r} are feature vectors (use linear, mlp or auto)"
        )
