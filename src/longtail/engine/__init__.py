"""The training engine behind the ``longtail`` command (needs the ``longtail[cli]`` extra).

- :mod:`~longtail.engine.config`: YAML configs, validated (errors name the key).
- :mod:`~longtail.engine.methods`: the method registry ``METHODS``.
- :mod:`~longtail.engine.tasks`: the :class:`Task` interface and :class:`SingleLabelTask`.
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
from longtail.engine.methods import METHODS, LossContext, Method, Param
from longtail.engine.models import CNN, MLP, Classifier, ResNet32, build_model
from longtail.engine.runner import run_benchmark
from longtail.engine.schedule import LRSchedule
from longtail.engine.tasks import Batch, Evaluation, SingleLabelTask, StepOutput, Task
from longtail.engine.trainer import NonFiniteLossError, RunResult, Trainer

__all__ = [
    "CNN",
    "METHODS",
    "MLP",
    "Batch",
    "Classifier",
    "Config",
    "ConfigError",
    "DataBundle",
    "Evaluation",
    "LRSchedule",
    "LossContext",
    "Method",
    "NonFiniteLossError",
    "Param",
    "ResNet32",
    "RunResult",
    "SingleLabelTask",
    "StepOutput",
    "Task",
    "Trainer",
    "build_data",
    "build_model",
    "config_from_dict",
    "load_config",
    "run_benchmark",
]
