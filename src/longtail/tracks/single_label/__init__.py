"""Single-label long-tailed classification (``task: single-label``): losses, samplers, heads,
post-hoc steps and second stages (cRT, LWS, weight balancing), SLA and M2m."""

from __future__ import annotations

from typing import Any, get_args

from longtail.engine.config import Config
from longtail.engine.datasets import DataBundle, build_data
from longtail.engine.kinds import TaskKind, register_task_kind
from longtail.engine.methods.method import HeadKind, MixKind, PosthocKind, SLAKind, StageKind
from longtail.tracks.single_label import report  # noqa: F401  (registers its report sections)
from longtail.tracks.single_label.degenerate import degenerate
from longtail.tracks.single_label.losses import LOSS_COMPONENTS, SAMPLERS
from longtail.tracks.single_label.methods import METHODS, VOCABULARY
from longtail.tracks.single_label.sklearn import sklearn_reference
from longtail.tracks.single_label.task import (
    SINGLE_LABEL_METRICS,
    SecondStageTask,
    SingleLabelTask,
    second_stage_config,
    single_label_finish_task,
    single_label_task,
)

__all__ = ["KIND", "METHODS", "SecondStageTask", "SingleLabelTask"]


def _data(cfg: Config, variant: str, seed: int | None) -> DataBundle:
    kwargs: dict[str, Any] = {"balanced": variant == "balanced"}
    if seed is not None:
        kwargs["seed"] = seed
    return build_data(cfg.data, **kwargs)


def _kinds(kind: Any) -> str:
    """``{a, b, c}``: the values of a ``Literal`` composition key (one list, in method.py)."""
    return "{" + ", ".join(get_args(kind)) + "}"


KIND = register_task_kind(
    TaskKind(
        name="single-label",
        metrics=SINGLE_LABEL_METRICS,
        methods=METHODS,
        build_data=_data,
        stage_task=single_label_task,
        finish_task=single_label_finish_task,
        finish_config=second_stage_config,
        vocabulary=VOCABULARY,
        reference=lambda: METHODS["erm"],
        sklearn_reference=sklearn_reference,
        degenerate=degenerate,
        recipe_help=lambda: (
            "Compose your own in a config's `recipes:` section from: "
            f"loss {{{', '.join(LOSS_COMPONENTS)}}}, drw {{true, false}}, "
            f"sampler {{{', '.join(SAMPLERS)}}}, head {_kinds(HeadKind)}, mix {_kinds(MixKind)}, "
            f"posthoc {_kinds(PosthocKind)}, second_stage {_kinds(StageKind)}, "
            f"sla {_kinds(SLAKind)} (see docs/cli.md; other tasks: longtail methods --task TASK)."
        ),
    )
)
