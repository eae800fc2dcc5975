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
    Space,
    StageKind,
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


#: Effective-number betas as Cui et al. sweep them (a log scale of 1 - beta, as choices).
BETA_CHOICES = Space(scale="choice", choices=(0.9, 0.99, 0.999, 0.9999, 0.99999))

_DRW_PARAMS = {
    "drw_beta": Param(
        0.9999,
        low=0.0,
        high=1.0,
        high_open=True,
        help="CB beta of the DRW weights",
        space=BETA_CHOICES,
    ),
    "drw_start_fraction": Param(
        0.8,
        low=0.0,
        high=1.0,
        high_open=True,
        help="DRW starts at this fraction of the epochs",
        space=Space(0.5, 0.95),
    ),
}
_DRS_PARAMS = {
    "drs_start_fraction": Param(
        0.8,
        low=0.0,
        high=1.0,
        high_open=True,
        help="class-balanced re-sampling starts at this fraction of the epochs (Cao et al.: 160/200)",
        space=Space(0.5, 0.95),
    ),
}
#: ``sampler: power``: class ``c`` drawn with probability ``~ n_c^q``; the Fisher-consistent
#: logit adjustment on top is ``tau = q`` (the sampled prior is ``~ n_c^q``).
_POWER_PARAMS = {
    "sampler_q": Param(
        0.5,
        low=0.0,
        high=1.0,
        help="class drawn with probability ~ n_c^q (0 class-balanced, 0.5 square root)",
        space=Space(0.0, 1.0),
    ),
}
_SMOTE_PARAMS = {
    "smote_k_neighbors": Param(
        5,
        low=1,
        help="nearest same-class neighbours SMOTE interpolates towards (Chawla et al.: 5)",
        space=Space(1, 10, "int"),
    ),
}
_SLA_PARAMS = {
    "sla_family": Param(
        "rotation",
        choices=("rotation", "channel_permutation", "product"),
        help="transformations: 4 rotations, the 6 RGB channel permutations, or their 24 products",
    ),
    "inference": Param(
        "ag",
        choices=("si", "ag", "sd"),
        help="single (identity copy), aggregated (mean joint logit over the copies) or "
        "self-distilled (a class head trained towards the aggregation) inference",
        space=Space(scale="choice", choices=("si", "ag", "sd")),
    ),
}


_RFS_PARAMS = {
    "rfs_threshold": Param(
        0.0,
        low=0.0,
        high=1.0,
        help="repeat-factor threshold t; 0: 1 / (number of labels), which is 0.00083 on LVIS's "
        "1,203 categories, close to its 0.001",
    )
}

_MIX_ALPHA = Param(
    1.0,
    low=0.0,
    low_open=True,
    help="Beta(a, a) of the mixing weight",
    space=Space(0.1, 2.0, "log"),
)
_MIX_PARAMS: dict[str, dict[str, Param]] = {
    "mixup": {"mix_alpha": _MIX_ALPHA},
    "remix": {
        "mix_alpha": _MIX_ALPHA,
        "remix_kappa": Param(
            3.0,
            low=1.0,
            help="count ratio above which the label leans to the minority",
            space=Space(1.0, 6.0),
        ),
        "remix_tau": Param(
            0.5,
            low=0.0,
            high=1.0,
            help="mixing weight below which it does",
            space=Space(0.1, 0.9),
        ),
    },
}
_POSTHOC_PARAMS: dict[str, dict[str, Param]] = {
    "logit-adjust": {
        "tau": Param(
            1.0, low=0.0, help="post-hoc adjustment temperature", stage=2, space=Space(0.0, 3.0)
        )
    },
    "tau-norm": {
        "tau": Param(1.0, low=0.0, help="normalisation exponent", stage=2, space=Space(0.0, 2.0)),
        "drop_bias": Param(True, help="set the classifier bias to zero after normalising", stage=2),
    },
}
_STAGE2_COMMON = {
    "stage2_epoch_fraction": Param(
        0.1,
        low=0.0,
        low_open=True,
        help="second-stage epochs as a fraction of train.epochs, rounded up (Kang et al.: 10 of 90)",
        stage=2,
        space=Space(0.05, 0.5),
    ),
    "stage2_lr_factor": Param(
        1.0,
        low=0.0,
        low_open=True,
        help="second-stage peak lr / train.lr (cosine, restarted)",
        stage=2,
        space=Space(0.05, 2.0, "log"),
    ),
}
_M2M = {
    "m2m_f_method": Param(
        "erm",
        help="the registry method f is trained with while M2m replaces minority slots (erm: "
        "cross-entropy; ldam-drw as in the paper's LDAM-DRW + M2m); its own defaults",
        stage=2,
    ),
    "m2m_g_checkpoint": Param(
        "",
        help="a model.pt of g (same architecture and classes as the run's model); empty: g is "
        "the method's first stage (the shared ERM stage)",
        stage=2,
    ),
    "m2m_beta": Param(
        0.999,
        low=0.0,
        high=1.0,
        high_open=True,
        help="seed / acceptance beta",
        stage=2,
        space=Space(scale="choice", choices=(0.9, 0.99, 0.999, 0.9999)),
    ),
    "m2m_lambda": Param(
        0.5, low=0.0, help="weight of f's seed-class logit", stage=2, space=Space(0.01, 1.0, "log")
    ),
    "m2m_gamma": Param(
        0.9,
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
        help="g's minimal probability of the target class to accept (official run.sh)",
        stage=2,
        space=Space(0.5, 0.99),
    ),
    "m2m_steps": Param(
        10, low=1, help="gradient steps per translation", stage=2, space=Space(1, 20, "int")
    ),
    "m2m_step_size": Param(
        0.1,
        low=0.0,
        low_open=True,
        help="L2 step size in [0, 1]-pixel units (scaled to the standardised inputs)",
        stage=2,
    ),
    "m2m_init_noise": Param(
        0.5, low=0.0, help="L2 norm of the random start in [0, 1]-pixel units", stage=2
    ),
    "m2m_oversample": Param(
        True,
        help="from the start of generation, draw batches class-balanced (the official "
        "over-sampling loader, on unless --no_over); false keeps f's own sampler (instance-"
        "balanced for ldam-drw, whose official command runs with --no_over and re-weights instead)",
        stage=2,
    ),
    "m2m_start_fraction": Param(
        0.8,
        low=0.0,
        high=1.0,
        help="generation (and class-balanced over-sampling) from this fraction of the epochs "
        "(official: epoch 160 of 200)",
        stage=2,
    ),
}

_STAGE2_PARAMS: dict[str, dict[str, Param]] = {
    "m2m": _M2M,
    "crt": dict(_STAGE2_COMMON),
    "lws": dict(_STAGE2_COMMON),
    "wb": {
        "stage1_weight_decay": Param(
            5e-3,
            low=0.0,
            help="weight decay of the first stage (official code: 5e-3)",
            space=Space(1e-4, 5e-2, "log"),
        ),
        **_STAGE2_COMMON,
        "stage2_weight_decay": Param(
            0.01,
            low=0.0,
            help="weight decay of the classifier in the second stage (the official 0.1 at lr 0.01, "
            "scaled to keep lr x weight decay at lr 0.1)",
            stage=2,
            space=Space(1e-4, 1e-1, "log"),
        ),
        "maxnorm": Param(
            0.1,
            low=0.0,
            high=1.0,
            help="MaxNorm radius: min + maxnorm * (max - min) of the stage-1 class-vector norms",
            stage=2,
            space=Space(0.0, 0.5),
        ),
        "cb_beta": Param(
            0.9999,
            low=0.0,
            high=1.0,
            high_open=True,
            help="beta of the class-balanced loss",
            stage=2,
            space=BETA_CHOICES,
        ),
    },
}


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
        params.update(_DRW_PARAMS)
    if sampler == "rfs":
        params.update(_RFS_PARAMS)
    if sampler == "drs":
        params.update(_DRS_PARAMS)
    if sampler == "power":
        params.update(_POWER_PARAMS)
    if sla is not None:
        params.update(_SLA_PARAMS if sla == "joint" else {"sla_family": _SLA_PARAMS["sla_family"]})
    if sampler == "smote":
        params.update(_SMOTE_PARAMS)
    for extra in (
        _MIX_PARAMS.get(mix or "", {}),
        _POSTHOC_PARAMS.get(posthoc or "", {}),
        _STAGE2_PARAMS.get(second_stage or "", {}),
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
