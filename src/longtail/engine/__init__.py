"""The engine core behind the ``longtail`` command (needs the ``longtail[cli]`` extra).

It knows no task kind by name: the tracks (:mod:`longtail.tracks`) register theirs in
:data:`~longtail.engine.kinds.TASK_KINDS`, which imports them the first time it is read.

- :mod:`~longtail.engine.kinds`: :class:`TaskKind` and the registry ``TASK_KINDS``.
- :mod:`~longtail.engine.config`: YAML configs with ``extends:``, validated (errors name the key).
- :mod:`~longtail.engine.methods`: :class:`Method`, loss components, :func:`compose`.
- :mod:`~longtail.engine.datasets`: :class:`DataBundle`, the data formats (``DATA_FORMATS``).
- :mod:`~longtail.engine.tasks`: the :class:`Task` interface; :mod:`~longtail.engine.classifier`:
  :class:`ClassifierTask`, a method's first stage on labelled data.
- :mod:`~longtail.engine.trainer` (with ``optimizers``, ``batches``, ``epoch_stats``,
  ``run_state``): the resumable, deterministic, DDP-aware training loop.
- :mod:`~longtail.engine.runner`: benchmarks over methods and seeds; the run folder.
- :mod:`~longtail.engine.report`: ``report.md``, ``report.html`` and plots.
- :mod:`~longtail.engine.models`, :mod:`~longtail.engine.augment`, :mod:`~longtail.engine.schedule`,
  :mod:`~longtail.engine.checkpoint`, :mod:`~longtail.engine.distributed`,
  :mod:`~longtail.engine.teacher`: building blocks.

The library modules (losses, data, metrics, heads, adjust) never import the engine; see
docs/architecture.md and the import contracts in pyproject.toml.
"""

from __future__ import annotations

from longtail.engine.classifier import ClassifierTask
from longtail.engine.config import Config, ConfigError, config_from_dict, load_config
from longtail.engine.datasets import DataBundle, build_data
from longtail.engine.kinds import TASK_KINDS, TaskKind, register_task_kind
from longtail.engine.methods import (
    LossComponent,
    LossContext,
    Method,
    Param,
    recipe_from_dict,
    resolve_methods,
)
from longtail.engine.models import CNN, MLP, Classifier, ResNet32, build_model
from longtail.engine.runner import run_benchmark
from longtail.engine.schedule import LRSchedule
from longtail.engine.tasks import (
    Batch,
    Evaluation,
    MetricSpec,
    OptimizerSpec,
    Setup,
    StepOutput,
    Task,
    Update,
)
from longtail.engine.trainer import NonFiniteLossError, RunResult, Trainer

__all__ = [
    "CNN",
    "MLP",
    "TASK_KINDS",
    "Batch",
    "Classifier",
    "ClassifierTask",
    "Config",
    "ConfigError",
    "DataBundle",
    "Evaluation",
    "LRSchedule",
    "LossComponent",
    "LossContext",
    "Method",
    "MetricSpec",
    "NonFiniteLossError",
    "OptimizerSpec",
    "Param",
    "ResNet32",
    "RunResult",
    "Setup",
    "StepOutput",
    "Task",
    "TaskKind",
    "Trainer",
    "Update",
    "build_data",
    "build_model",
    "config_from_dict",
    "load_config",
    "recipe_from_dict",
    "register_task_kind",
    "resolve_methods",
    "run_benchmark",
]
