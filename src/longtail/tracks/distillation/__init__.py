"""Knowledge distillation on long-tailed data (``task: distillation``): a teacher stage, then KD,
DKD and RKD students."""

from __future__ import annotations

from longtail.engine.classifier import CLASSIFIER_METRICS
from longtail.engine.kinds import TASK_KINDS, ConfigSection, TaskKind, register_task_kind
from longtail.tracks.distillation.config import DistillConfig, check_distill_config
from longtail.tracks.distillation.task import (
    DISTILL_METHODS,
    DistillTask,
    build_distill_data,
    distill_finish_config,
    distill_finish_task,
    distill_stage_config,
    distill_stage_task,
)

__all__ = ["KIND", "DistillConfig", "DistillTask"]

KIND = register_task_kind(
    TaskKind(
        name="distillation",
        metrics=CLASSIFIER_METRICS,
        methods=DISTILL_METHODS,
        build_data=build_distill_data,
        stage_task=distill_stage_task,
        finish_task=distill_finish_task,
        finish_config=distill_finish_config,
        stage_config=distill_stage_config,
        # the reference is plain training (the single-label erm) on the balanced data
        reference=lambda: TASK_KINDS["single-label"].methods["erm"],
        recipes_refused="its methods are the registry's; any weighted combination of their "
        "terms: method_params",
        section=ConfigSection("distill", DistillConfig, "the teacher"),
        check_config=check_distill_config,
    )
)
