"""The training engine behind the ``longtail`` command (needs the ``longtail[cli]`` extra).

- :mod:`~longtail.engine.config`: YAML configs, validated (errors name the key).
- :mod:`~longtail.engine.methods`: the method registry ``METHODS``.
- :mod:`~longtail.engine.tasks`: the :class:`Task` interface (setup, updates, metric specs).
- :mod:`~longtail.engine.single_label`: :class:`SingleLabelTask` and :class:`SecondStageTask`.
- :mod:`~longtail.engine.open_set`: :class:`OpenSetTask`, the open-set methods and protocol.
- :mod:`~longtail.engine.distill`: :class:`DistillTask`, a teacher stage and its students.
- :mod:`~longtail.engine.metric_learning`: :class:`MetricLearningTask`, triplet teachers, RKD students.
- :mod:`~longtail.engine.trainer`: the resumable, deterministic, DDP-aware training loop.
- :mod:`~longtail.engine.runner`: benchmarks over methods and seeds; the run folder.
- :mod:`~longtail.engine.report`: ``report.md`` and plots.
- :mod:`~longtail.engine.models`, :mod:`~longtail.engine.augment`, :mod:`~longtail.engine.schedule`,
  :mod:`~longtail.engine.checkpoint`, :mod:`~longtail.engine.distributed`: building blocks.

The library modules (losses, data, metrics, heads, adjust) never import the engine.
"""

from __future__ import annotations

from longtail.engine.config import Config, ConfigError, config_from_dict, load_config
from longtail.engine.datasets import DataBundle, build_data
from longtail.engine.distill import DistillTask
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
from longtail.engine.metric_learning import MetricLearningTask
from longtail.engine.models import CNN, MLP, Classifier, ResNet32, build_model
from longtail.engine.open_set import OpenSetTask
from longtail.engine.runner import run_benchmark
from longtail.engine.schedule import LRSchedule
from longtail.engine.single_label import SecondStageTask, SingleLabelTask
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
    "Batch",
    "Classifier",
    "Config",
    "ConfigError",
    "DataBundle",
    "DistillTask",
    "Evaluation",
    "LRSchedule",
    "LossComponent",
    "LossContext",
    "Method",
    "MetricLearningTask",
    "MetricSpec",
    "NonFiniteLossError",
    "OpenSetTask",
    "OptimizerSpec",
    "Param",
    "ResNet32",
    "RunResult",
    "SecondStageTask",
    "Setup",
    "SingleLabelTask",
    "StepOutput",
    "Task",
    "Trainer",
    "Update",
    "build_data",
    "build_model",
    "config_from_dict",
    "load_config",
    "recipe_from_dict",
    "resolve_methods",
    "run_benchmark",
]
