"""Loss components: the training losses a recipe composes, derived from the library's losses.

A :class:`LossComponent` is ``fn(logits, target, ctx)`` with its hyper-parameters (:class:`Param`,
the papers' defaults and ranges) and what it needs of the model (a sigmoid classifier, a cosine
head). :meth:`LossComponent.from_spec` derives one from a loss of the library registry
(:data:`longtail.losses.LOSSES`): the registry states the function and the inputs it ``requires``
(``class_counts``), the component adds which hyper-parameters the method exposes, which are fixed,
and whether deferred re-weighting's per-class weights reach the loss. Each task kind holds its own
components (:attr:`TaskKind.vocabulary <longtail.engine.kinds.TaskKind.vocabulary>`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from longtail.engine.methods.method import HeadKind, LogitShift, LossContext, LossFn, Param
from longtail.losses import get_loss

__all__ = ["LossComponent", "Vocabulary"]


@dataclass(frozen=True)
class LossComponent:
    """A training loss a recipe can use: ``fn(logits, target, ctx)``, its parameters and needs.

    Attributes:
        name, fn, description, params: the component, its loss and hyper-parameters.
        sigmoid, head: what the loss needs of the model.
        drw_weight: ``fn`` applies deferred re-weighting's per-class weights (``ctx.weight``); a
            recipe may set ``drw: true`` only then (a loss that weights the classes itself, such
            as the class-balanced loss, would silently ignore them).
        logit_shift: the loss is softmax cross-entropy on ``logits + logit_shift(ctx)`` (see
            :data:`~longtail.engine.methods.LogitShift`); a recipe may mix inputs (``mix``) only
            then, since mixing mixes two labels' cross-entropy terms.
    """

    name: str
    fn: LossFn
    description: str
    params: Mapping[str, Param] = field(default_factory=dict)
    sigmoid: bool = False
    head: HeadKind = "linear"
    drw_weight: bool = False
    logit_shift: LogitShift | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_spec(
        cls,
        name: str,
        spec: str,
        description: str,
        params: Mapping[str, Param] | None = None,
        *,
        fixed: Mapping[str, Any] | None = None,
        other_params: Mapping[str, Param] | None = None,
        drw_weight: bool = False,
        sigmoid: bool = False,
        head: HeadKind = "linear",
        logit_shift: LogitShift | None = None,
    ) -> LossComponent:
        """The component that calls the library loss ``spec`` (a :data:`longtail.losses.LOSSES` name).

        Args:
            name: the component's name in recipes (``loss: NAME``).
            spec: the library loss.
            description: one line for ``longtail methods``.
            params: the hyper-parameters the method exposes, by the library's keyword names.
            fixed: keyword arguments passed unchanged (e.g. ``loss_type="focal"``).
            other_params: hyper-parameters of the method that the loss does not take (e.g. how
                the task initialises the classifier).
            drw_weight: pass deferred re-weighting's per-class weights (``ctx.weight``) as
                ``weight``.
            sigmoid, head: what the loss needs of the model.
            logit_shift: the loss is cross-entropy on shifted logits (input mixing may use it).

        Raises:
            ValueError: a parameter or fixed keyword the library loss does not take.
        """
        loss = get_loss(spec)
        params = dict(params or {})
        fixed = dict(fixed or {})
        known = set(loss.hyperparameters)
        for key in (*params, *fixed, *(["weight"] if drw_weight else [])):
            if key not in known:
                raise ValueError(
                    f"loss component {name!r}: {key!r} is not a hyper-parameter of the library "
                    f"loss {spec!r} (known: {sorted(known)})"
                )
        function = loss.function
        names = tuple(params)
        counts = "class_counts" in loss.requires

        def fn(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
            kwargs = dict(fixed)
            for key in names:
                kwargs[key] = ctx.params[key]
            if counts:
                kwargs["class_counts"] = ctx.class_counts
            if drw_weight:
                kwargs["weight"] = ctx.weight
            out: Tensor = function(z, y, **kwargs)
            return out

        fn.__name__ = fn.__qualname__ = f"{spec.replace('-', '_')}_component"
        every = {**params, **(other_params or {})}
        return cls(
            name,
            fn,
            description,
            every,
            sigmoid=sigmoid,
            head=head,
            drw_weight=drw_weight,
            logit_shift=logit_shift,
        )


@dataclass(frozen=True)
class Vocabulary:
    """What a task kind's recipes compose: its loss components, samplers and recipe keys.

    Attributes:
        losses: the loss components, by name (``loss:`` of a recipe).
        samplers: the sampler names (``sampler:``).
        keys: the composition keys a recipe of this task may set besides ``loss`` and
            ``sampler`` (``None``: every key: drw, head, mix, posthoc, second_stage, sla).
    """

    losses: Mapping[str, LossComponent]
    samplers: tuple[str, ...]
    keys: tuple[str, ...] | None = None
