"""The training engine behind the ``longtail`` command (needs the ``longtail[cli]`` extra).

- :mod:`~longtail.engine.config`: YAML configs, validated (errors name the key).
- :mod:`~longtail.engine.methods`: the method registry ``METHODS``.
- :mod:`~longtail.engine.tasks`: the :class:`Task` interface (setup, updates, metric specs).
- :mod:`~longtail.tracks.single_label.task`: :class:`SingleLabelTask` and :class:`SecondStageTask`.
- :mod:`~longtail.tracks.open_set.task`: :class:`OpenSetTask`, the open-set methods and protocol.
- :mod:`~longtail.tracks.distillation.task`: :class:`DistillTask`, a teacher stage and its students.
- :mod:`~longtail.tracks.metric_learning.task`: :class:`MetricLearningTask`, triplet teachers, RKD students.
- :mod:`~longtail.engine.trainer`: the resumable, deterministic, DDP-aware training loop.
- :mod:`~longtail.engine.runner`: benchmarks over methods and seeds; the run folder.
- :mod:`~longtail.engine.report`: ``report.md`` and plots.
- :mod:`~longtail.engine.models`, :mod:`~longtail.engine.augment`, :mod:`~longtail.engine.schedule`,
  :mod:`~longtail.engine.checkpoint`, :mod:`~longtail.engine.distributed`: building blocks.

The library modules (losses, data, metrics, heads, adjust) never import the engine.
"""

from __future__ import annotations

from longtail.engine.classifier import ClassifierTask
from longtail.engine.config import Config, ConfigError, config_from_dict, load_config
from longtail.engine.datasets import DataBundle, build_data
from longtail.engine.kinds import TASK_KINDS, TaskKind, register_task_kind
from longtail.engine.methods import (
    LOSSES,
    METHODS,
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
    "LOSSES",
    "METHODS",
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
