"""Task kinds: what a ``task:`` of a config is, and the registry through which the core finds them.

The core (runner, config, report, CLI) knows no task by name. Each track (a package of
:mod:`longtail.tracks`) registers one :class:`TaskKind` in :data:`TASK_KINDS` when it is imported;
the registry imports :mod:`longtail.tracks` the first time it is read, so code that only imports the
core still sees every built-in track, and a plug-in track registers itself the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from longtail.registry import Registry

if TYPE_CHECKING:
    from torch import Tensor

    from longtail.engine.config import Config
    from longtail.engine.datasets import DataBundle
    from longtail.engine.methods import Method, Vocabulary
    from longtail.engine.reference import SklearnReference
    from longtail.engine.tasks import MetricSpec, Task

__all__ = [
    "TASK_KINDS",
    "ConfigSection",
    "Degenerate",
    "TaskKind",
    "reference_method",
    "register_task_kind",
    "task_kind",
]


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
class Degenerate:
    """A finished (method, seed) that trained another method's function: ``result.json``'s
    ``degenerate`` (``null`` when it did not), a footnote of the results table.

    Attributes:
        equals: the method (a preset or a recipe of the run's task) whose function it trained;
            ``None`` when no method is that function (``why`` says what it trained).
        why: what made it so, one clause, the same for every seed the same way (markdown inline
            marks allowed): ``M2m accepted none of the samples it translated (epochs 25-30)``.
        measured: the numbers of this seed behind it (counts, epochs), as measured by the run.
    """

    equals: str | None
    why: str
    measured: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``result.json`` form: ``{"equals", "why", "measured"}``."""
        return {"equals": self.equals, "why": self.why, "measured": dict(self.measured)}


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
        vocabulary: the components its recipes compose (loss components, samplers, keys);
            ``None``: no recipes.
        reference: ``() -> Method``: the method the balanced reference trains
            (``data.balanced_reference``); ``None``: the task has no balanced reference.
        recipes_refused: why a config's ``recipes:`` section is refused with this task (``None``:
            recipes compose its methods).
        recipe_help: ``() -> str``: what ``longtail methods --task NAME`` prints after the list,
            how to compose a recipe (``None``: the methods are presets).
        section: the config section this task adds, if any.
        check_config: ``(config) -> None`` cross-checks of this task (raise ``ConfigError``).
        labels: the targets its data hold: ``"single"`` (one class per example) or ``"multi"``
            (a 0/1 row per example); the config accepts the data formats that serve them
            (:attr:`~longtail.engine.datasets.DataFormat.labels`).
        sklearn_reference: ``(data, config) -> SklearnReference`` fits the scikit-learn baseline
            of ``data.sklearn_reference`` on the training split and scores it with the task's
            evaluation (:mod:`longtail.engine.reference`); ``None``: the task has none (the key
            is refused).
        degenerate: ``(method, params, config, record, stage_record) -> Degenerate | None``:
            whether a finished run trained another method's function (M2m that accepted no
            translation, a deferred schedule that never switches, a second stage of 0 epochs),
            read from what the run measured: its ``result.json`` record (details, history) and its
            first stage's ``stage.json`` record. The runner stores it in ``result.json``; the table
            footnotes it. ``None``: the task's runs never degenerate.
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
    vocabulary: Vocabulary | None = None
    reference: Callable[[], Method] | None = None
    recipes_refused: str | None = None
    recipe_help: Callable[[], str] | None = None
    section: ConfigSection | None = None
    check_config: Callable[[Config], None] | None = None
    labels: str = "single"
    sklearn_reference: Callable[[DataBundle, Config], SklearnReference] | None = None
    degenerate: (
        Callable[
            [Method, Mapping[str, Any], Config, Mapping[str, Any], Mapping[str, Any]],
            Degenerate | None,
        ]
        | None
    ) = None


def _check_kind(name: str, kind: TaskKind) -> None:
    if not isinstance(kind, TaskKind):
        raise TypeError(f"a task kind must be a TaskKind, got {type(kind).__name__}")
    if name != kind.name:
        raise ValueError(f"task kind {kind.name!r} registered under another name, {name!r}")
    if kind.labels not in ("single", "multi"):
        raise ValueError(
            f"task kind {name!r}: labels must be 'single' or 'multi', got {kind.labels!r}"
        )
    if not kind.metrics:
        raise ValueError(
            f"task kind {name!r}: needs at least one metric (the first is the primary)"
        )


#: Every task kind, by ``Config.task``, in registration order: the built-in tracks of
#: :mod:`longtail.tracks` (imported on first use), then plug-ins (entry points of the group
#: ``longtail.tracks``, see docs/architecture.md).
TASK_KINDS: Registry[TaskKind] = Registry(
    "task kind", locations=("longtail.tracks",), validate=_check_kind
)


def register_task_kind(kind: TaskKind) -> TaskKind:
    """Add ``kind`` to :data:`TASK_KINDS` (a track calls this once, in its ``__init__``)."""
    return TASK_KINDS.register(kind.name, kind)


def reference_method(task: str) -> Method:
    """The method the balanced reference of ``task`` trains (its kind's :attr:`~TaskKind.reference`)."""
    kind = task_kind(task)
    if kind.reference is None:
        raise ValueError(
            f"config key 'data.balanced_reference': task {task} has no balanced reference"
        )
    return kind.reference()


def task_kind(name: str) -> TaskKind:
    """The registered kind ``name``; ``ValueError`` naming the ``task`` key otherwise."""
    if name not in TASK_KINDS:
        raise ValueError(f"config key 'task': must be one of {list(TASK_KINDS)}, got {name!r}")
    return TASK_KINDS[name]
