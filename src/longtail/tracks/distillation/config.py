"""The ``distill:`` config section (the teacher) and the checks of ``task: distillation``.

What needs the data (the teacher checkpoint's classes) is checked when the data are built, before
the run folder is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from longtail.engine.config import (
    Config,
    ConfigError,
    ModelConfig,
    check_teacher_model,
    option,
    option_meta,
)
from longtail.engine.kinds import TASK_KINDS
from longtail.engine.methods import recipe_from_dict

__all__ = ["DistillConfig", "DistillTeacherConfig", "check_distill_config"]


@dataclass
class DistillTeacherConfig:
    """The teacher of ``task: distillation``: trained as the run's first stage, or loaded."""

    method: str | dict[str, Any] = field(
        default="erm",
        metadata=option_meta(
            doc="a single-label registry method without post-hoc step or second stage, or a "
            "recipe mapping {loss, sampler, head, drw, mix, params} (see recipes)"
        ),
    )
    params: dict[str, Any] = field(
        default_factory=dict, metadata=option_meta(doc="hyper-parameters of the teacher's method")
    )
    model: ModelConfig = field(default_factory=ModelConfig)
    checkpoint: str | None = option(
        None,
        doc="load the teacher's weights from this file (a model.pt or checkpoint.pt of a run, "
        "read with weights_only=True) instead of training it",
    )


@dataclass
class DistillConfig:
    """``task: distillation``: the teacher (the student is ``model``; the loss weights are the
    methods' ``method_params``)."""

    teacher: DistillTeacherConfig = field(default_factory=DistillTeacherConfig)


def check_distill_config(cfg: Config) -> None:
    """``task: distillation``: the teacher (a single-label method of one stage), what it refuses."""
    if cfg.model.factory is not None:
        raise ConfigError(
            f"config key 'model.factory': not available with task {cfg.task} (student and "
            "teacher are built from the built-in backbones)"
        )
    teacher: Any = (cfg.distill or DistillConfig()).teacher
    check_teacher_model("distill.teacher.model", teacher.model)
    if cfg.data.validation_fraction is not None and teacher.checkpoint is not None:
        raise ConfigError(
            "config key 'distill.teacher.checkpoint': not available with "
            "data.validation_fraction (a teacher trained elsewhere may have seen the held-out "
            "examples; leave the checkpoint out to train the teacher as a stage of the run)"
        )
    METHODS = TASK_KINDS["single-label"].methods
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
