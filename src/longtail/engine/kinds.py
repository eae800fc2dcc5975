"""Task kinds: what a ``task:`` of a config is, and the registry through which the core finds them.

The core (runner, config, report, CLI) knows no task by name. Each track (a package of
:mod:`longtail.tracks`) registers one :class:`TaskKind` in :data:`TASK_KINDS` when it is imported;
the registry imports :mod:`longtail.tracks` the first time it is read, so code that only imports the
core still sees every built-in track, and a plug-in track registers itself the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from longtail.registry import Registry

if TYPE_CHECKING:
    from torch import Tensor

    from longtail.engine.config import Config
    from longtail.engine.datasets import DataBundle
    from longtail.engine.methods import Method
    from longtail.engine.tasks import MetricSpec, Task

__all__ = ["TASK_KINDS", "ConfigSection", "TaskKind", "register_task_kind", "task_kind"]


@dataclass(frozen=True)
class ConfigSection:
    """A top-level config section that one task kind adds (``open_set:``, ``distill:``...).

    Attributes:
        key: the config key.
        schema: the dataclass the section is validated into (errors name the dotted key).
        doc: one line for the config reference.
    """

    key: str
    schema: type
    doc: str = ""


@dataclass(frozen=True)
class TaskKind:
    """How the core drives one ``task:`` of a config: its methods, data, task phases and metrics.

    Attributes:
        name: the config's ``task`` value.
        metrics: the metric specs of its evaluations (table, bold best, gap to the reference).
        methods: the registry presets of this task, by name (``longtail methods --task NAME``).
        build_data: ``(config, variant, seed or None) -> DataBundle``; ``variant`` is
            ``"long-tailed"`` or ``"balanced"`` (the reference), ``seed`` is given when the data
            depends on the training seed (``data.class_order: random``).
        stage_task: ``(method, data, config, params) -> Task`` trains a method's first stage.
        finish_task: ``(method, data, config, stage_state, params) -> Task`` runs its second stage
            or post-hoc step from the stage's final weights.
        finish_config: ``(config, method, params) -> Config`` of the finishing run.
        data_per_seed: the data depend on the seed (open set: seed ``i`` trains on split ``i``),
            so ``build_data`` gets the seed and the runner builds one data set per seed.
        stage_config: ``(config, method, params) -> Config`` a first stage trains with (a teacher's
            own network; ``None``: the run's config).
        recipes: composition keys a config's ``recipes:`` may use for this task (empty: the task
            takes no recipes, only its registry methods).
        recipe_help: what ``longtail methods --task NAME`` prints after the list: how to compose
            a recipe (empty: the methods are presets).
        section: the config section this task adds, if any.
        check_config: ``(config) -> None`` cross-checks of this task (raise ``ConfigError``).
        check_data: ``(config, is_image, num_classes) -> None`` checks once the data are loaded.
        report_sections: ``(run_dir, results) -> list of markdown blocks`` the report adds.
    """

    name: str
    metrics: tuple[MetricSpec, ...]
    methods: Mapping[str, Method]
    build_data: Callable[[Config, str, int | None], DataBundle]
    stage_task: Callable[[Method, DataBundle, Config, dict[str, Any]], Task]
    finish_task: Callable[[Method, DataBundle, Config, dict[str, Tensor], dict[str, Any]], Task]
    finish_config: Callable[[Config, Method, Mapping[str, Any]], Config]
    data_per_seed: bool = False
    stage_config: Callable[[Config, Method, Mapping[str, Any]], Config] | None = None
    recipes: Sequence[str] = ()
    recipe_help: str = ""
    section: ConfigSection | None = None
    check_config: Callable[[Config], None] | None = None
    check_data: Callable[[Config, bool, int], None] | None = None
    report_sections: Callable[[Any, Mapping[str, Any]], list[str]] | None = None


#: Every task kind, by ``Config.task``, in registration order (the tracks of
#: :mod:`longtail.tracks`, imported on first use).
TASK_KINDS: Registry[TaskKind] = Registry("task kind", locations=("longtail.tracks",))


def register_task_kind(kind: TaskKind) -> TaskKind:
    """Add ``kind`` to :data:`TASK_KINDS` (a track calls this once, in its ``__init__``)."""
    return TASK_KINDS.register(kind.name, kind)


def task_kind(name: str) -> TaskKind:
    """The registered kind ``name``; ``ValueError`` naming the ``task`` key otherwise."""
    if name not in TASK_KINDS:
        raise ValueError(f"config key 'task': must be one of {list(TASK_KINDS)}, got {name!r}")
    return TASK_KINDS[name]
