"""Composition: build a :class:`~longtail.engine.methods.method.Method` from named components.

:func:`compose` checks a composition (a task's loss component and sampler, head, deferred
re-weighting, input mixing, post-hoc step, second stage, SLA) and gathers its hyper-parameters;
:func:`recipe_from_dict` reads a config's ``recipes.<name>`` mapping; :func:`resolve_methods` is a
task's presets plus a config's recipes. The component vocabulary of each task is its kind's
(:attr:`TaskKind.vocabulary <longtail.engine.kinds.TaskKind.vocabulary>`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

from longtail.engine.kinds import TASK_KINDS, task_kind
from longtail.engine.methods.components import Vocabulary
from longtail.engine.methods.method import (
    HeadKind,
    Method,
    MixKind,
    Param,
    PosthocKind,
    SLAKind,
    StageKind,
)
from longtail.engine.methods.params import (
    BETA_CHOICES,
    DRS_PARAMS,
    DRW_PARAMS,
    MIX_PARAMS,
    POSTHOC_PARAMS,
    POWER_PARAMS,
    RFS_PARAMS,
    SLA_PARAMS,
    SMOTE_PARAMS,
    STAGE2_PARAMS,
)

__all__ = [
    "BETA_CHOICES",
    "SAME_LOSS",
    "SAME_SAMPLER",
    "canonical_loss",
    "canonical_sampler",
    "check_method_params",
    "compose",
    "recipe_from_dict",
    "resolve_methods",
    "task_vocabulary",
]


def task_vocabulary(task: str) -> Vocabulary:
    """The composition vocabulary of ``task``; ``ValueError`` naming the ``task`` key if it has none."""
    voc = task_kind(task).vocabulary if task in TASK_KINDS else None
    if voc is None:
        known = [k for k in TASK_KINDS if TASK_KINDS[k].vocabulary is not None]
        raise ValueError(f"config key 'task': must be one of {known}, got {task!r}")
    return voc


#: Loss components that equal another one at one value of a parameter: ``component -> (parameter,
#: value, the component it equals)``. The logit-adjusted loss at tau 1, ``CE(z + log pi, y)``, is
#: Balanced Softmax (Ren et al., NeurIPS 2020; Menon et al., ICLR 2021, eq. 10 with tau = 1).
SAME_LOSS: dict[str, tuple[str, float, str]] = {"la": ("tau", 1.0, "balanced-softmax")}


def canonical_loss(loss: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A method's loss component and parameters in canonical form (:data:`SAME_LOSS`).

    ``("la", {"tau": 1.0, ...})`` becomes ``("balanced-softmax", {...})`` (the parameter that makes
    the two equal removed); anything else is returned unchanged. Two methods whose compositions
    are equal once their losses are canonical train the same function: ``la-loss`` at its default
    tau 1 is ``balanced-softmax``, under any name.

    Args:
        loss: the component name (a method's ``composition()["loss"]``).
        params: the method's resolved hyper-parameters.
    """
    rest = dict(params)
    if loss in SAME_LOSS:
        key, value, same = SAME_LOSS[loss]
        v = rest.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and float(v) == value:
            del rest[key]
            return same, rest
    return loss, rest


#: Samplers that equal another at a parameter value: ``sampler -> (parameter, {value: sampler})``
#: (the class-aware draw with exponent 0 or 1/2 is the class-balanced or square-root sampler's).
SAME_SAMPLER: dict[str, tuple[str, dict[float, str]]] = {
    "power": ("sampler_q", {0.0: "class-balanced", 0.5: "sqrt"})
}


def canonical_sampler(sampler: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A method's sampler and parameters in canonical form (:data:`SAME_SAMPLER`): ``("power",
    {"sampler_q": 0.5, ...})`` becomes ``("sqrt", {...})``; anything else is returned unchanged."""
    rest = dict(params)
    if sampler in SAME_SAMPLER:
        key, same = SAME_SAMPLER[sampler]
        v = rest.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and float(v) in same:
            del rest[key]
            return same[float(v)], rest
    return sampler, rest


def compose(
    name: str,
    *,
    loss: str = "ce",
    description: str = "",
    paper: str = "",
    sampler: str = "instance",
    head: str | None = None,
    drw: bool = False,
    mix: str | None = None,
    posthoc: str | None = None,
    second_stage: str | None = None,
    sla: str | None = None,
    defaults: Mapping[str, Any] | None = None,
    where: str = "",
    task: str = "single-label",
    vocabulary: Vocabulary | None = None,
) -> Method:
    """Build a :class:`Method` from components; errors name ``where`` + the offending key.

    ``vocabulary`` (default: the one ``task``'s kind registers) gives the loss components, the
    samplers and the keys a recipe of the task may set; a multi-label recipe, e.g., is a loss and a
    sampler (``instance`` or ``rfs``) only.
    """
    at = where or f"methods.{name}"
    voc = vocabulary if vocabulary is not None else task_vocabulary(task)
    losses = voc.losses

    def bad(key: str, value: Any, allowed: Any) -> ValueError:
        return ValueError(f"config key '{at}.{key}': must be one of {list(allowed)}, got {value!r}")

    for key, value in (
        ("loss", loss),
        ("sampler", sampler),
        ("head", head),
        ("mix", mix),
        ("posthoc", posthoc),
        ("second_stage", second_stage),
        ("sla", sla),
    ):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"config key '{at}.{key}': expected a name, got {value!r}")
    if loss not in losses:
        raise bad("loss", loss, losses)
    comp = losses[loss]
    head = comp.head if head is None else head
    if voc.keys is not None:
        optional: tuple[tuple[str, object], ...] = (
            ("drw", drw or None),
            ("mix", mix),
            ("posthoc", posthoc),
            ("second_stage", second_stage),
            ("sla", sla),
        )
        what = " and ".join(["a loss", "a sampler", *(f"a {k}" for k in voc.keys)])
        for key, used in optional:
            if used is not None and key not in voc.keys:
                raise ValueError(
                    f"config key '{at}.{key}': not available for {task} recipes "
                    f"(a {task} recipe is {what})"
                )
    for key, value, kinds in (
        ("sampler", sampler, voc.samplers),
        ("head", head, get_args(HeadKind)),
        ("mix", mix, (None, *get_args(MixKind))),
        ("posthoc", posthoc, (None, *get_args(PosthocKind))),
        ("second_stage", second_stage, (None, *get_args(StageKind))),
        ("sla", sla, (None, *get_args(SLAKind))),
    ):
        if value not in kinds:
            raise bad(key, value, kinds)
    if not isinstance(drw, bool):
        raise ValueError(f"config key '{at}.drw': expected true/false, got {drw!r}")
    if mix is not None and comp.logit_shift is None:
        mixable = [k for k, c in losses.items() if c.logit_shift is not None]
        raise ValueError(
            f"config key '{at}.mix': {mix} mixes the cross-entropy of two labels; it needs a "
            f"loss of that form ({', '.join(mixable)}), got {loss!r}"
        )
    if drw and not comp.drw_weight:
        takes = [k for k, c in losses.items() if c.drw_weight]
        raise ValueError(
            f"config key '{at}.drw': loss {loss!r} does not take deferred re-weighting's class "
            f"weights (losses that do: {', '.join(takes)})"
        )
    if posthoc == "tau-norm" and second_stage == "lws":
        raise ValueError(
            f"config key '{at}.posthoc': tau-norm normalises a linear classifier's rows; the lws "
            "second stage replaces it by per-class scales (use one or the other)"
        )
    if sla is not None:
        for key, used in (("mix", mix), ("posthoc", posthoc), ("second_stage", second_stage)):
            if used is not None:
                raise ValueError(
                    f"config key '{at}.{key}': not available with sla (the model's head predicts "
                    "(class, transformation) pairs)"
                )
        if sampler == "smote":
            raise ValueError(f"config key '{at}.sampler': smote is not available with sla")
    if (second_stage is not None or posthoc == "tau-norm") and head != "linear":
        what = "second_stage" if second_stage is not None else "posthoc"
        raise ValueError(f"config key '{at}.{what}': needs a linear head, got head {head!r}")
    params: dict[str, Param] = dict(comp.params)
    if drw:
        params.update(DRW_PARAMS)
    if sampler == "rfs":
        params.update(RFS_PARAMS)
    if sampler == "drs":
        params.update(DRS_PARAMS)
    if sampler == "power":
        params.update(POWER_PARAMS)
    if sla is not None:
        params.update(SLA_PARAMS if sla == "joint" else {"sla_family": SLA_PARAMS["sla_family"]})
    if sampler == "smote":
        params.update(SMOTE_PARAMS)
    for extra in (
        MIX_PARAMS.get(mix or "", {}),
        POSTHOC_PARAMS.get(posthoc or "", {}),
        STAGE2_PARAMS.get(second_stage or "", {}),
    ):
        for k, p in extra.items():
            if k in params and params[k] != p:
                # e.g. the LA loss's tau and the post-hoc tau: keep them apart
                raise ValueError(
                    f"config key '{at}': parameter {k!r} of {posthoc or second_stage or mix} "
                    f"clashes with the loss's {k!r}"
                )
            params[k] = p
    for k, v in (defaults or {}).items():
        if k not in params:
            raise ValueError(
                f"config key '{at}.params.{k}': unknown hyper-parameter "
                f"(known: {', '.join(params) or 'none'})"
            )
        params[k] = Param(
            **{**params[k].__dict__, "default": params[k].check(f"{at}.params.{k}", v)}
        )
    parts = [comp.description + (" with DRW" if drw else "")]
    if sampler != "instance":
        parts.append(f"{sampler} sampling")
    if mix:
        parts.append(mix)
    if sla:
        parts.append(f"self-supervised label augmentation ({sla})")
    if second_stage:
        parts.append(f"then {second_stage}")
    if posthoc:
        parts.append(f"then {posthoc}")
    return Method(
        name=name,
        description=description or ", ".join(parts),
        paper=paper or "composed recipe",
        loss=comp.fn,
        params=params,
        head=head,  # type: ignore[arg-type]
        sampler=sampler,  # type: ignore[arg-type]
        posthoc=posthoc,  # type: ignore[arg-type]
        drw=drw,
        mix=mix,  # type: ignore[arg-type]
        second_stage=second_stage,  # type: ignore[arg-type]
        loss_name=loss,
        sigmoid=comp.sigmoid,
        stage1_weight_decay_param="stage1_weight_decay" if second_stage == "wb" else None,
        task=task,
        sla=sla,  # type: ignore[arg-type]
        logit_shift=comp.logit_shift,
    )


_RECIPE_KEYS = (
    "loss",
    "sampler",
    "head",
    "drw",
    "mix",
    "posthoc",
    "second_stage",
    "sla",
    "params",
    "description",
)


def recipe_from_dict(name: str, raw: Any, task: str = "single-label") -> Method:
    """A config ``recipes.<name>`` mapping as a :class:`Method` of ``task`` (errors name the key)."""
    at = f"recipes.{name}"
    if (
        not isinstance(name, str)
        or not name
        or any(c in name for c in "/\\\0")
        or name
        in (
            ".",
            "..",
            "stages",
            "balanced",
            "plots",
        )
    ):
        raise ValueError(
            f"config key '{at}': a recipe name must be a file name other than 'balanced', "
            "'stages' and 'plots'"
        )
    voc = task_vocabulary(task)
    if name in task_kind(task).methods:
        raise ValueError(f"config key '{at}': {name!r} is a registry method; choose another name")
    if not isinstance(raw, Mapping):
        raise ValueError(f"config key '{at}': expected a mapping, got {raw!r}")
    for k in raw:
        if k not in _RECIPE_KEYS:
            raise ValueError(
                f"config key '{at}.{k}': unknown key (known: {', '.join(_RECIPE_KEYS)})"
            )
    if "loss" not in raw:
        raise ValueError(f"config key '{at}.loss': required (one of {list(voc.losses)})")
    params = raw.get("params") or {}
    if not isinstance(params, Mapping):
        raise ValueError(f"config key '{at}.params': expected a mapping, got {params!r}")
    desc = raw.get("description", "")
    if not isinstance(desc, str):
        raise ValueError(f"config key '{at}.description': expected a string, got {desc!r}")
    return compose(
        name,
        loss=raw["loss"],
        sampler=raw.get("sampler", "instance"),
        head=raw.get("head"),
        drw=raw.get("drw", False),
        mix=raw.get("mix"),
        posthoc=raw.get("posthoc"),
        second_stage=raw.get("second_stage"),
        sla=raw.get("sla"),
        defaults=params,
        description=desc,
        where=at,
        task=task,
        vocabulary=voc,
    )


def resolve_methods(
    recipes: Mapping[str, Any] | None = None, task: str = "single-label"
) -> dict[str, Method]:
    """The registry presets of ``task`` plus the config's composed ``recipes`` (validated)."""
    out = dict(task_kind(task).methods)
    for name, raw in (recipes or {}).items():
        out[name] = recipe_from_dict(name, raw, task)
    return out


def check_method_params(
    name: str,
    params: Mapping[str, Any],
    methods: Mapping[str, Method] | None = None,
    task: str = "single-label",
) -> dict[str, Any]:
    """Validate overrides of method ``name`` of ``methods`` (default: ``task``'s presets); raise
    ValueError naming the config key."""
    table = task_kind(task).methods if methods is None else methods
    if name not in table:
        raise ValueError(f"config key 'method_params.{name}': unknown method")
    return table[name].resolve_params(params)
