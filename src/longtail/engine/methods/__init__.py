"""Methods: compositions of a loss component, sampler, head, mixing, post-hoc step and second stage.

- :mod:`~longtail.engine.methods.method`: :class:`Method`, :class:`Param`, :class:`LossContext`,
  :class:`Criterion` (a method's loss bound to the training counts).
- :mod:`~longtail.engine.methods.components`: :class:`LossComponent` (derived from the library's
  losses with :meth:`LossComponent.from_spec`) and a task's :class:`Vocabulary`.
- :mod:`~longtail.engine.methods.compose`: :func:`compose`, :func:`recipe_from_dict`,
  :func:`resolve_methods`.
- :mod:`~longtail.engine.methods.params`: the hyper-parameters each composition key brings (DRW,
  the samplers, SLA, mixing, post-hoc steps, second stages).
- :mod:`~longtail.engine.methods.space`: the search spaces of ``longtail tune`` (a
  :class:`Space` declared next to each tunable :class:`Param`) and a config's ``tune:`` section.

The presets (the papers' recipes) and the loss components live with their task kind: the
single-label ones in :mod:`longtail.tracks.single_label.methods`, the multi-label ones in
:mod:`longtail.tracks.multi_label.methods`; :attr:`TaskKind.methods
<longtail.engine.kinds.TaskKind.methods>` holds each task's.
"""

from __future__ import annotations

from longtail.engine.methods.components import LossComponent, Vocabulary
from longtail.engine.methods.compose import (
    BETA_CHOICES,
    SAME_LOSS,
    SAME_SAMPLER,
    canonical_loss,
    canonical_sampler,
    check_method_params,
    compose,
    recipe_from_dict,
    resolve_methods,
    task_vocabulary,
)
from longtail.engine.methods.method import (
    Criterion,
    LogitShift,
    LossContext,
    LossFn,
    Method,
    Param,
    Space,
    drw_start_epoch,
)
from longtail.engine.methods.space import (
    TRAIN_PARAMS,
    Dimension,
    check_tune_section,
    method_dimensions,
    parse_space,
)

__all__ = [
    "BETA_CHOICES",
    "SAME_LOSS",
    "SAME_SAMPLER",
    "TRAIN_PARAMS",
    "Criterion",
    "Dimension",
    "LogitShift",
    "LossComponent",
    "LossContext",
    "LossFn",
    "Method",
    "Param",
    "Space",
    "Vocabulary",
    "canonical_loss",
    "canonical_sampler",
    "check_method_params",
    "check_tune_section",
    "compose",
    "drw_start_epoch",
    "method_dimensions",
    "parse_space",
    "recipe_from_dict",
    "resolve_methods",
    "task_vocabulary",
]
