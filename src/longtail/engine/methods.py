"""The method registry: every long-tail method the engine can train, as a composable recipe.

A :class:`Method` is a composition of

- a **loss** (a named component of :data:`LOSSES`: ``ce``, ``inv-freq``, ``cb-softmax``, ``cb-focal``,
  ``focal``, ``ldam``, ``la``, ``balanced-softmax``, ``el``, ``el-la``), optionally with deferred
  re-weighting (``drw``: class-balanced weights for the last epochs, Cao et al. 2019);
- a **sampler** (``instance``, ``class-balanced``, ``sqrt``, ``progressive``; see :mod:`longtail.data`);
- a **head** (``linear``, or ``cosine`` for LDAM);
- an optional **input mixing** (``mixup`` or ``remix``, with the ``ce`` loss);
- an optional **post-hoc step** (``logit-adjust`` of the test logits, ``tau-norm`` of the classifier);
- an optional **second stage** on the frozen features of the first (``crt``: classifier re-trained
  with class-balanced sampling; ``lws``: learnable per-class scales; ``wb``: weight balancing's
  class-balanced loss with weight decay and a MaxNorm projection);
- ``params``: the hyper-parameters with their paper defaults (:class:`Param`), overridable from the
  ``method_params`` section of a config.

The first three (and mixing) define the first training stage; methods whose first stages are equal
(``erm``, ``la-posthoc``, ``tau-norm``, ``crt``, ``lws``) share it: the runner trains it once per seed.
Multi-label methods (``task: multi-label``) are compositions too, of a multi-label loss component
(:data:`ML_LOSSES`: ``bce``, ``focal``, ``asl``, ``cb-bce``, ``cb-focal``, ``hill``) and a sampler
(``instance`` or ``rfs``, repeat-factor sampling); their presets are :data:`MULTILABEL_METHODS`.
Each task kind's presets are its :attr:`TaskKind.methods <longtail.engine.kinds.TaskKind.methods>`.

``METHODS`` holds the presets (the papers' recipes); a config's ``recipes`` section composes new ones
(:func:`recipe_from_dict`), validated like every other key. The contract test trains every preset, so
a method added here is tested without new test code. To add one::

    METHODS["my-method"] = Method(
        name="my-method", description="...", paper="Author et al., Venue Year",
        loss=lambda z, y, ctx: my_loss(z, y, alpha=ctx.params["alpha"]),
        params={"alpha": Param(0.5, low=0.0)},
    )
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from longtail.engine.kinds import TASK_KINDS, task_kind

__all__ = [
    "LOSSES",
    "METHODS",
    "ML_LOSSES",
    "MULTILABEL_METHODS",
    "SAME_LOSS",
    "LossComponent",
    "LossContext",
    "Method",
    "Param",
    "canonical_loss",
    "check_method_params",
    "compose",
    "recipe_from_dict",
    "resolve_methods",
]

SamplerKind = Literal["instance", "class-balanced", "sqrt", "progressive", "drs", "smote", "rfs"]
#: The samplers of each task (``rfs``: repeat-factor sampling of multi-label data).
_TASK_SAMPLERS: dict[str, tuple[str, ...]] = {
    "single-label": ("instance", "class-balanced", "sqrt", "progressive", "drs", "smote"),
    "multi-label": ("instance", "rfs"),
}
HeadKind = Literal["linear", "cosine"]
PosthocKind = Literal["logit-adjust", "tau-norm"]
MixKind = Literal["mixup", "remix"]
#: Self-supervised label augmentation (Lee et al., ICML 2020): ``joint`` trains one head over the
#: (class, transformation) pairs; ``mt`` (multi-task: a class head and a transformation head) and
#: ``da`` (every transformed copy labelled with its class) are the paper's baselines.
SLAKind = Literal["joint", "mt", "da"]
StageKind = Literal["crt", "lws", "wb", "m2m"]


@dataclass(frozen=True)
class Param:
    """A hyper-parameter: its default and the allowed range (bounds inclusive unless ``*_open``).

    ``stage`` says what the value shapes: ``1`` the (shareable) first training stage, ``2`` only the
    second stage or the post-hoc step, so methods that differ only there share the first stage.
    """

    default: float | int | bool | str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    help: str = ""
    stage: int = 1
    choices: tuple[str, ...] = ()

    def check(self, key: str, value: Any) -> Any:
        """Validate ``value`` (same type as the default, in range); raise ValueError naming ``key``."""
        d = self.default
        if isinstance(d, bool):
            if not isinstance(value, bool):
                raise ValueError(f"config key '{key}': expected true/false, got {value!r}")
            return value
        if isinstance(d, str):
            if not isinstance(value, str):
                raise ValueError(f"config key '{key}': expected a string, got {value!r}")
            if self.choices and value not in self.choices:
                raise ValueError(
                    f"config key '{key}': must be one of {list(self.choices)}, got {value!r}"
                )
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(
                f"config key '{key}': expected a number, got {value!r} ({type(value).__name__})"
            )
        if isinstance(d, int) and not isinstance(value, int):
            raise ValueError(f"config key '{key}': expected an integer, got {value!r}")
        if not math.isfinite(float(value)):
            raise ValueError(f"config key '{key}': must be finite, got {value!r}")
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            op = ">" if self.low_open else ">="
            raise ValueError(f"config key '{key}': must be {op} {self.low}, got {value!r}")
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            op = "<" if self.high_open else "<="
            raise ValueError(f"config key '{key}': must be {op} {self.high}, got {value!r}")
        return float(value) if isinstance(d, float) else value


@dataclass(frozen=True)
class LossContext:
    """What a method's loss may use besides logits and targets.

    Attributes:
        epoch: current epoch (0-based).
        total_epochs: number of training epochs.
        class_counts: training counts per class, float tensor ``(C,)`` on the logits' device.
        log_prior: ``log(n_c / sum n)``, ``(C,)``.
        params: the method's resolved hyper-parameters.
        weight: per-class weights of this epoch from deferred re-weighting, or ``None``.
        cache: tensors a loss derives from the above once per context (e.g. class-balanced
            weights), by a key of its choice.
    """

    epoch: int
    total_epochs: int
    class_counts: Tensor
    log_prior: Tensor
    params: Mapping[str, Any]
    weight: Tensor | None = None
    cache: dict[Any, Tensor] = field(default_factory=dict, compare=False, repr=False)


LossFn = Callable[[Tensor, Tensor, LossContext], Tensor]


@dataclass(frozen=True)
class Method:
    """A long-tail method of one ``task`` (single- or multi-label): a composition (see the module
    docstring).

    Attributes:
        name, description, paper: identity and documentation.
        loss: the training loss ``loss(logits, target, ctx)``.
        params: hyper-parameters with their defaults.
        head, sampler, posthoc, drw, mix, second_stage, sla: the composition.
        loss_name: the :data:`LOSSES` component ``loss`` comes from (methods with the same
            component, sampler, head, mixing and first-stage parameters share their first stage);
            ``None`` for a hand-written loss (never shared).
        sigmoid: the loss is sigmoid-based: the classifier bias starts at the prior
            ``-log((1 - pi) / pi)``, ``pi = 1 / C``, without weight decay (Cui et al.'s code).
        stage1_weight_decay_param: name of a parameter that overrides ``train.weight_decay`` in the
            first stage (weight balancing's larger weight decay).
    """

    name: str
    description: str
    paper: str
    loss: LossFn
    params: Mapping[str, Param] = field(default_factory=dict)
    head: HeadKind = "linear"
    sampler: SamplerKind = "instance"
    posthoc: PosthocKind | None = None
    drw: bool = False
    task: str = "single-label"
    mix: MixKind | None = None
    second_stage: StageKind | None = None
    loss_name: str | None = None
    sigmoid: bool = False
    stage1_weight_decay_param: str | None = None
    sla: SLAKind | None = None

    @property
    def citation(self) -> str:
        """Short form of ``paper``: ``"Author et al., Venue Year"`` per cited work."""
        parts = []
        for ref in self.paper.split(";"):
            bits = [b.strip() for b in ref.split(",")]
            parts.append(f"{bits[0]}, {bits[-1]}" if len(bits) > 2 else ref.strip())
        return "; ".join(parts)

    @property
    def defaults(self) -> dict[str, Any]:
        """The paper defaults of the hyper-parameters."""
        return {k: p.default for k, p in self.params.items()}

    @property
    def needs_stage(self) -> bool:
        """Whether the method finishes an earlier stage (a post-hoc step or a second stage)."""
        return self.posthoc is not None or self.second_stage is not None

    def composition(self) -> dict[str, Any]:
        """The recipe as plain values (``longtail methods``, the run fingerprint)."""
        return {
            "loss": self.loss_name or f"<{self.name}>",
            "drw": self.drw,
            "sampler": self.sampler,
            "head": self.head,
            "mix": self.mix,
            "posthoc": self.posthoc,
            "second_stage": self.second_stage,
            **({"sla": self.sla} if self.sla else {}),
        }

    def stage_identity(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """What determines the first training stage (shared by methods with equal identities)."""
        return {
            "loss": self.loss_name or f"<method {self.name}>",
            "drw": self.drw,
            "sampler": self.sampler,
            "head": self.head,
            "mix": self.mix,
            **({"sla": self.sla} if self.sla else {}),
            "sigmoid": self.sigmoid,
            "params": {k: params[k] for k in sorted(self.params) if self.params[k].stage == 1},
        }

    def resolve_params(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults updated with validated ``overrides``."""
        out = self.defaults
        for k, v in (overrides or {}).items():
            if k not in self.params:
                known = ", ".join(self.params) or "none"
                raise ValueError(
                    f"config key 'method_params.{self.name}.{k}': unknown hyper-parameter "
                    f"(known: {known})"
                )
            out[k] = self.params[k].check(f"method_params.{self.name}.{k}", v)
        return out

    def build_criterion(
        self,
        class_counts: Tensor | list[int],
        *,
        total_epochs: int,
        params: Mapping[str, Any] | None = None,
    ) -> Criterion:
        """The training loss of this method for given class counts (see :class:`Criterion`)."""
        return Criterion(self, class_counts, total_epochs=total_epochs, params=params)


class Criterion:
    """A method's loss bound to the training class counts: ``criterion(logits, target, epoch)``.

    Everything is validated here, once: the class counts, the hyper-parameters; the loss is then
    called with the library's value checks off (:func:`longtail.losses.value_checks`), so a training
    step reads nothing back to the host. Holds the deferred re-weighting schedule when ``method.drw``
    (class-balanced weights with ``drw_beta`` from epoch ``int(drw_start_fraction * total_epochs)``).
    """

    def __init__(
        self,
        method: Method,
        class_counts: Tensor | list[int],
        *,
        total_epochs: int,
        params: Mapping[str, Any] | None = None,
    ):
        self.method = method
        self.params = method.resolve_params(params)
        counts = torch.as_tensor(class_counts, dtype=torch.float32)
        if counts.ndim != 1 or bool((counts <= 0).any()):
            raise ValueError(f"class_counts must be positive, got {counts.tolist()}")
        self.counts_list = [int(c) for c in counts.tolist()]
        self.total_epochs = int(total_epochs)
        self._counts = counts
        self._log_prior = torch.log(counts / counts.sum())
        self._drw: Any = None
        if method.drw:
            from longtail.losses import DeferredReweighting

            start = int(self.params["drw_start_fraction"] * self.total_epochs)
            self._drw = DeferredReweighting(
                self.counts_list,
                total_epochs=self.total_epochs,
                start_epoch=min(start, self.total_epochs - 1) if self.total_epochs > 1 else 0,
                beta=self.params["drw_beta"],
            )
        self._cache: dict[tuple[torch.device, int], LossContext] = {}

    def context(self, epoch: int, device: torch.device) -> LossContext:
        """The (cached) :class:`LossContext` of ``epoch`` with tensors on ``device``."""
        key = (device, epoch)
        ctx = self._cache.get(key)
        if ctx is None:
            weight = None
            if self._drw is not None:
                w = self._drw.weight(int(epoch))
                weight = None if w is None else torch.as_tensor(w, dtype=torch.float32).to(device)
            ctx = LossContext(
                int(epoch),
                self.total_epochs,
                self._counts.to(device),
                self._log_prior.to(device),
                self.params,
                weight,
            )
            self._cache[key] = ctx
        return ctx

    def __call__(self, logits: Tensor, target: Tensor, epoch: int) -> Tensor:
        from longtail.losses import value_checks

        ctx = self.context(epoch, logits.device)
        if logits.dtype != torch.float32:
            logits = logits.float()
        with value_checks(False):
            return self.method.loss(logits, target, ctx)


# --------------------------------------------------------------------------------------------------
# losses of the registry entries (import the library lazily: the registry loads without it)


def _cross_entropy(z: Tensor, y: Tensor, ctx: LossContext, weight: Tensor | None) -> Tensor:
    """Softmax cross-entropy; with ``weight``, ``sum_i w_{y_i} CE_i / N`` (the papers' convention).

    Unweighted it is ``F.cross_entropy``; weighted it is the library's
    :func:`longtail.losses.logit_adjusted_loss` with ``tau = 0`` (plain CE) and ``weight``, which
    divides by N, unlike ``F.cross_entropy(weight=...)`` (divides by ``sum_i w_{y_i}``).
    """
    if weight is None:
        return F.cross_entropy(z, y)
    from longtail.losses import logit_adjusted_loss

    out: Tensor = logit_adjusted_loss(z, y, class_counts=ctx.class_counts, tau=0.0, weight=weight)
    return out


def _erm(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    return _cross_entropy(z, y, ctx, ctx.weight)


def _inv_freq(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    from longtail.losses import inverse_frequency_weights

    w = torch.as_tensor(inverse_frequency_weights(ctx.class_counts), dtype=z.dtype).to(z.device)
    return _cross_entropy(z, y, ctx, w)


def _cb(loss_type: str) -> LossFn:
    def fn(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
        from longtail.losses import class_balanced_loss

        kwargs: dict[str, Any] = {"beta": ctx.params["beta"], "loss_type": loss_type}
        if loss_type == "focal":
            kwargs["gamma"] = ctx.params["gamma"]
        out: Tensor = class_balanced_loss(z, y, class_counts=ctx.class_counts, **kwargs)
        return out

    return fn


def _focal(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    from longtail.losses import focal_loss

    out: Tensor = focal_loss(z, y, gamma=ctx.params["gamma"], weight=ctx.weight)
    return out


def _ldam(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    from longtail.losses import ldam_loss

    out: Tensor = ldam_loss(
        z,
        y,
        class_counts=ctx.class_counts,
        max_margin=ctx.params["max_margin"],
        scale=ctx.params["scale"],
        weight=ctx.weight,
    )
    return out


def _la_loss(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    from longtail.losses import logit_adjusted_loss

    out: Tensor = logit_adjusted_loss(z, y, class_counts=ctx.class_counts, tau=ctx.params["tau"])
    return out


def _balanced_softmax(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    from longtail.losses import balanced_softmax_loss

    out: Tensor = balanced_softmax_loss(z, y, class_counts=ctx.class_counts)
    return out


def _el(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    from longtail.losses import encouraging_loss

    out: Tensor = encouraging_loss(z, y, log_end=ctx.params["log_end"], weight=ctx.weight)
    return out


def _el_la(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    from longtail.losses import encouraging_loss

    adjusted = z + ctx.params["tau"] * ctx.log_prior.to(z.dtype)
    out: Tensor = encouraging_loss(adjusted, y, log_end=ctx.params["log_end"])
    return out


def _ce_mixable(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    return _cross_entropy(z, y, ctx, ctx.weight)


_DRW_PARAMS = {
    "drw_beta": Param(0.9999, low=0.0, high=1.0, high_open=True, help="CB beta of the DRW weights"),
    "drw_start_fraction": Param(
        0.8, low=0.0, high=1.0, high_open=True, help="DRW starts at this fraction of the epochs"
    ),
}
_DRS_PARAMS = {
    "drs_start_fraction": Param(
        0.8,
        low=0.0,
        high=1.0,
        high_open=True,
        help="class-balanced re-sampling starts at this fraction of the epochs (Cao et al.: 160/200)",
    ),
}
_SMOTE_PARAMS = {
    "smote_k_neighbors": Param(
        5, low=1, help="nearest same-class neighbours SMOTE interpolates towards (Chawla et al.: 5)"
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
    ),
}
_LOG_END = Param(0.75, low=0.0, high=1.0, low_open=True, help="conservative-bonus log end")
_TAU = Param(1.0, low=0.0, help="logit-adjustment temperature")
_BETA = Param(0.9999, low=0.0, high=1.0, high_open=True, help="effective-number beta")


@dataclass(frozen=True)
class LossComponent:
    """A training loss a recipe can use: ``fn(logits, target, ctx)``, its parameters and needs."""

    name: str
    fn: LossFn
    description: str
    params: Mapping[str, Param] = field(default_factory=dict)
    sigmoid: bool = False
    head: HeadKind = "linear"


#: The training losses recipes compose, by name.
LOSSES: dict[str, LossComponent] = {
    c.name: c
    for c in [
        LossComponent("ce", _erm, "softmax cross-entropy"),
        LossComponent("inv-freq", _inv_freq, "cross-entropy weighted by inverse class frequency"),
        LossComponent(
            "cb-softmax",
            _cb("softmax"),
            "cross-entropy weighted by the inverse effective number of samples",
            {"beta": _BETA},
        ),
        LossComponent(
            "cb-focal",
            _cb("focal"),
            "class-balanced sigmoid focal loss",
            {
                "beta": _BETA,
                "gamma": Param(1.0, low=0.0, help="focusing parameter"),
                "prior_bias": Param(
                    True,
                    help="start the classifier bias at the prior -log(C - 1) (Cui et al.'s code)",
                ),
            },
            sigmoid=True,
        ),
        LossComponent(
            "focal",
            _focal,
            "softmax focal loss",
            {"gamma": Param(2.0, low=0.0, help="focusing parameter")},
        ),
        LossComponent(
            "ldam",
            _ldam,
            "label-distribution-aware margin loss on cosine logits",
            {
                "max_margin": Param(0.5, low=0.0, help="largest margin (rarest class)"),
                "scale": Param(30.0, low=0.0, low_open=True, help="logit scale s"),
            },
            head="cosine",
        ),
        LossComponent("la", _la_loss, "logit-adjusted cross-entropy", {"tau": _TAU}),
        LossComponent("balanced-softmax", _balanced_softmax, "cross-entropy on f(x) + log prior"),
        LossComponent("el", _el, "encouraging loss", {"log_end": _LOG_END}),
        LossComponent(
            "el-la",
            _el_la,
            "encouraging loss on logit-adjusted logits",
            {"log_end": _LOG_END, "tau": _TAU},
        ),
    ]
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


# multi-label losses: logits (N, L), targets (N, L) in {0, 1} or -1 (a hidden label, ignored);
# ``ctx.class_counts`` holds each label's positive count in the training split


def _bce(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    from longtail.losses import sigmoid_focal_loss

    # gamma 0 without alpha is BCE; the library masks the hidden (-1) entries
    out: Tensor = sigmoid_focal_loss(z, y, gamma=0.0, alpha=None)
    return out


def _ml_focal(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    from longtail.losses import sigmoid_focal_loss

    out: Tensor = sigmoid_focal_loss(z, y, gamma=ctx.params["gamma"], alpha=None)
    return out


def _asl(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    from longtail.losses import asymmetric_loss

    out: Tensor = asymmetric_loss(
        z,
        y,
        gamma_pos=ctx.params["gamma_pos"],
        gamma_neg=ctx.params["gamma_neg"],
        clip=ctx.params["clip"],
    )
    return out


def _ml_cb(gamma_key: str | None) -> LossFn:
    def fn(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
        from longtail.losses import class_balanced_weights, sigmoid_focal_loss

        key = ("cb-weights", ctx.params["beta"], z.device)
        w = ctx.cache.get(key)
        if w is None:
            w = class_balanced_weights(ctx.class_counts, beta=ctx.params["beta"]).to(z.device)
            ctx.cache[key] = w
        gamma = 0.0 if gamma_key is None else ctx.params[gamma_key]
        out: Tensor = sigmoid_focal_loss(z, y, gamma=gamma, alpha=None, weight=w)
        return out

    return fn


def _hill(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    from longtail.losses import hill_loss

    out: Tensor = hill_loss(
        z, y, lamb=ctx.params["lamb"], margin=ctx.params["margin"], gamma=ctx.params["gamma"]
    )
    return out


_ML_GAMMA = Param(2.0, low=0.0, help="focusing parameter")
_ML_BETA = Param(
    0.9999, low=0.0, high=1.0, high_open=True, help="effective-number beta (per-label positives)"
)

#: The training losses multi-label recipes compose, by name. ``"mean"`` everywhere: the sum over the
#: known (not hidden) entries divided by their number.
ML_LOSSES: dict[str, LossComponent] = {
    c.name: c
    for c in [
        LossComponent("bce", _bce, "binary cross-entropy", sigmoid=True),
        LossComponent(
            "focal",
            _ml_focal,
            "sigmoid focal loss without alpha",
            {"gamma": _ML_GAMMA},
            sigmoid=True,
        ),
        LossComponent(
            "asl",
            _asl,
            "asymmetric loss",
            {
                "gamma_pos": Param(0.0, low=0.0, help="focusing of positives"),
                "gamma_neg": Param(4.0, low=0.0, help="focusing of negatives"),
                "clip": Param(0.05, low=0.0, high=1.0, high_open=True, help="probability margin m"),
            },
            sigmoid=True,
        ),
        LossComponent(
            "cb-bce",
            _ml_cb(None),
            "binary cross-entropy, each label weighted by its class-balanced weight",
            {"beta": _ML_BETA},
            sigmoid=True,
        ),
        LossComponent(
            "cb-focal",
            _ml_cb("gamma"),
            "sigmoid focal loss, each label weighted by its class-balanced weight",
            {"beta": _ML_BETA, "gamma": _ML_GAMMA},
            sigmoid=True,
        ),
        LossComponent(
            "hill",
            _hill,
            "Hill loss: focal-margin positives, -(lambda - p) p^2 negatives",
            {
                "lamb": Param(1.5, low=1.0, help="lambda of the negative term"),
                "margin": Param(1.0, low=0.0, help="logit margin of the positive term"),
                "gamma": Param(2.0, low=0.0, help="focusing of the positive term"),
            },
            sigmoid=True,
        ),
    ]
}
#: The loss components of each task.
TASK_LOSSES: dict[str, dict[str, LossComponent]] = {
    "single-label": LOSSES,
    "multi-label": ML_LOSSES,
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

_MIX_PARAMS: dict[str, dict[str, Param]] = {
    "mixup": {
        "mix_alpha": Param(1.0, low=0.0, low_open=True, help="Beta(a, a) of the mixing weight")
    },
    "remix": {
        "mix_alpha": Param(1.0, low=0.0, low_open=True, help="Beta(a, a) of the mixing weight"),
        "remix_kappa": Param(
            3.0, low=1.0, help="count ratio above which the label leans to the minority"
        ),
        "remix_tau": Param(0.5, low=0.0, high=1.0, help="mixing weight below which it does"),
    },
}
_POSTHOC_PARAMS: dict[str, dict[str, Param]] = {
    "logit-adjust": {"tau": Param(1.0, low=0.0, help="post-hoc adjustment temperature", stage=2)},
    "tau-norm": {
        "tau": Param(1.0, low=0.0, help="normalisation exponent", stage=2),
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
    ),
    "stage2_lr_factor": Param(
        1.0,
        low=0.0,
        low_open=True,
        help="second-stage peak lr / train.lr (cosine, restarted)",
        stage=2,
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
        0.999, low=0.0, high=1.0, high_open=True, help="seed / acceptance beta", stage=2
    ),
    "m2m_lambda": Param(0.5, low=0.0, help="weight of f's seed-class logit", stage=2),
    "m2m_gamma": Param(
        0.9,
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
        help="g's minimal probability of the target class to accept (official run.sh)",
        stage=2,
    ),
    "m2m_steps": Param(10, low=1, help="gradient steps per translation", stage=2),
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
            5e-3, low=0.0, help="weight decay of the first stage (official code: 5e-3)"
        ),
        **_STAGE2_COMMON,
        "stage2_weight_decay": Param(
            0.01,
            low=0.0,
            help="weight decay of the classifier in the second stage (the official 0.1 at lr 0.01, "
            "scaled to keep lr x weight decay at lr 0.1)",
            stage=2,
        ),
        "maxnorm": Param(
            0.1,
            low=0.0,
            high=1.0,
            help="MaxNorm radius: min + maxnorm * (max - min) of the stage-1 class-vector norms",
            stage=2,
        ),
        "cb_beta": Param(
            0.9999,
            low=0.0,
            high=1.0,
            high_open=True,
            help="beta of the class-balanced loss",
            stage=2,
        ),
    },
}


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
) -> Method:
    """Build a :class:`Method` from components; errors name ``where`` + the offending key.

    ``task`` picks the loss components (:data:`LOSSES` or :data:`ML_LOSSES`) and the samplers; a
    multi-label recipe is a loss and a sampler (``instance`` or ``rfs``) only.
    """
    at = where or f"methods.{name}"
    if task not in TASK_LOSSES:
        raise ValueError(f"config key 'task': must be one of {list(TASK_LOSSES)}, got {task!r}")
    losses = TASK_LOSSES[task]

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
    if task == "multi-label":
        single_only: tuple[tuple[str, object], ...] = (
            ("drw", drw or None),
            ("mix", mix),
            ("posthoc", posthoc),
            ("second_stage", second_stage),
            ("sla", sla),
        )
        for key, used in single_only:
            if used is not None:
                raise ValueError(
                    f"config key '{at}.{key}': not available for multi-label recipes "
                    "(a multi-label recipe is a loss and a sampler)"
                )
    for key, value, kinds in (
        ("sampler", sampler, _TASK_SAMPLERS[task]),
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
    if mix is not None and loss != "ce":
        raise ValueError(
            f"config key '{at}.mix': {mix} mixes the cross-entropy of two labels; it needs "
            f"loss 'ce', got {loss!r}"
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
    if name in (TASK_KINDS[task].methods if task in TASK_KINDS else METHODS):
        raise ValueError(f"config key '{at}': {name!r} is a registry method; choose another name")
    if not isinstance(raw, Mapping):
        raise ValueError(f"config key '{at}': expected a mapping, got {raw!r}")
    for k in raw:
        if k not in _RECIPE_KEYS:
            raise ValueError(
                f"config key '{at}.{k}': unknown key (known: {', '.join(_RECIPE_KEYS)})"
            )
    if "loss" not in raw:
        raise ValueError(
            f"config key '{at}.loss': required (one of {list(TASK_LOSSES.get(task, LOSSES))})"
        )
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
    )


_CB = "Cui et al., Class-Balanced Loss Based on Effective Number of Samples, CVPR 2019"
_LDAM = "Cao et al., Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss, NeurIPS 2019"
_LA = "Menon et al., Long-Tail Learning via Logit Adjustment, ICLR 2021"
_DECOUPLE = (
    "Kang et al., Decoupling Representation and Classifier for Long-Tailed Recognition, ICLR 2020"
)
_EL = "Zhao et al., Well-Classified Examples are Underestimated in Classification with Deep Neural Networks, AAAI 2022"
_WB = "Alshammari et al., Long-Tailed Recognition via Weight Balancing, CVPR 2022"
_TRICKS = "Zhang et al., Bag of Tricks for Long-Tailed Visual Recognition with Deep Convolutional Neural Networks, AAAI 2021"
_REMIX = "Chou et al., Remix: Rebalanced Mixup, ECCV Workshops 2020"
_M2M_PAPER = "Kim et al., M2m: Imbalanced Classification via Major-to-minor Translation, CVPR 2020"
_SLA = "Lee et al., Self-supervised Label Augmentation via Input Transformations, ICML 2020"

_ALL = [
    compose(
        "erm",
        description="cross-entropy on the imbalanced data, instance-balanced sampling (the baseline)",
        paper="Vapnik, Principles of Risk Minimization for Learning Theory, NIPS 1991",
    ),
    compose(
        "cb-resample",
        description="cross-entropy with class-balanced re-sampling (every class equally likely per draw)",
        paper=_DECOUPLE,
        sampler="class-balanced",
    ),
    compose(
        "sqrt-resample",
        description="cross-entropy with square-root re-sampling (class drawn with probability ~ sqrt(n_c))",
        paper="Mahajan et al., Exploring the Limits of Weakly Supervised Pretraining, ECCV 2018; "
        + _DECOUPLE,
        sampler="sqrt",
    ),
    compose(
        "inv-freq",
        loss="inv-freq",
        description="cross-entropy re-weighted by inverse class frequency (weights sum to C)",
        paper="Huang et al., Learning Deep Representation for Imbalanced Classification, CVPR 2016",
    ),
    compose(
        "cb-softmax",
        loss="cb-softmax",
        description="softmax cross-entropy re-weighted by the inverse effective number of samples",
        paper=_CB,
    ),
    compose(
        "cb-focal",
        loss="cb-focal",
        description="class-balanced (sigmoid) focal loss, beta 0.9999, gamma 1 (from the paper's grid); "
        "classifier bias initialised to the prior -log(C - 1)",
        paper=_CB,
    ),
    compose(
        "focal",
        loss="focal",
        description="softmax focal loss -(1 - p_y)^gamma log p_y, gamma 2 (the paper's default)",
        paper="Lin et al., Focal Loss for Dense Object Detection, ICCV 2017",
    ),
    compose(
        "drw",
        drw=True,
        description="cross-entropy, class-balanced weights (beta 0.9999) for the last 20% of epochs",
        paper=_LDAM,
    ),
    compose(
        "ldam-drw",
        loss="ldam",
        drw=True,
        description="label-distribution-aware margins (max 0.5, scale 30) on a cosine head, with DRW",
        paper=_LDAM,
    ),
    compose(
        "la-loss",
        loss="la",
        description="logit-adjusted cross-entropy on f(x) + tau log(prior), tau 1; predicts with f(x)",
        paper=_LA,
    ),
    compose(
        "la-posthoc",
        posthoc="logit-adjust",
        description="the ERM stage; predicts argmax f(x) - tau log(prior) at test time, tau 1",
        paper=_LA,
    ),
    compose(
        "tau-norm",
        posthoc="tau-norm",
        description="the ERM stage; classifier rows divided by their norm^tau (tau 1, bias dropped)",
        paper=_DECOUPLE,
    ),
    compose(
        "balanced-softmax",
        loss="balanced-softmax",
        description="softmax cross-entropy on f(x) + log(prior) (the LA loss with tau 1)",
        paper="Ren et al., Balanced Meta-Softmax for Long-Tailed Visual Recognition, NeurIPS 2020",
    ),
    compose(
        "el",
        loss="el",
        description="encouraging loss: CE plus a conservative bonus log(1 - p_y), log end 0.75",
        paper=_EL,
    ),
    compose(
        "el-drw",
        loss="el",
        drw=True,
        description="encouraging loss with deferred class-balanced re-weighting (last 20% of epochs)",
        paper=_EL + "; " + _LDAM,
    ),
    compose(
        "el-la",
        loss="el-la",
        description="encouraging loss on logit-adjusted logits f(x) + tau log(prior), tau 1",
        paper=_EL + "; " + _LA,
    ),
    compose(
        "crt",
        second_stage="crt",
        description="the ERM stage; features and BatchNorm frozen, linear classifier re-initialised "
        "and re-trained with class-balanced sampling (10% of the epochs)",
        paper=_DECOUPLE,
    ),
    compose(
        "lws",
        second_stage="lws",
        description="the ERM stage; features and classifier frozen, one learnable scale per class "
        "trained with class-balanced sampling (10% of the epochs)",
        paper=_DECOUPLE,
    ),
    compose(
        "weight-balancing",
        second_stage="wb",
        description="stage 1 cross-entropy with weight decay 5e-3; stage 2 the classifier with the "
        "class-balanced loss, weight decay and a MaxNorm projection after every step",
        paper=_WB,
    ),
    compose(
        "mixup-drw",
        mix="mixup",
        drw=True,
        description="mixup (alpha 1) of inputs and labels, class-balanced DRW weights in the last 20% "
        "of epochs",
        paper=_TRICKS,
    ),
    compose(
        "remix-drw",
        mix="remix",
        drw=True,
        description="mixup inputs with labels leaning to the minority class (kappa 3, tau 0.5), "
        "class-balanced DRW weights in the last 20% of epochs",
        paper=_REMIX + "; " + _TRICKS,
    ),
    compose(
        "sla",
        sla="joint",
        description="self-supervised label augmentation: one head over (class, rotation) pairs, "
        "cross-entropy on the 4 rotated copies; aggregated inference (mean joint logit over the "
        "copies; inference si | ag | sd)",
        paper=_SLA,
    ),
    compose(
        "sla-mt",
        sla="mt",
        description="SLA's multi-task baseline: a class head and a rotation head on shared features, "
        "cross-entropy on the 4 rotated copies",
        paper=_SLA,
    ),
    compose(
        "sla-da",
        sla="da",
        description="SLA's data-augmentation baseline: every rotated copy labelled with its class",
        paper=_SLA,
    ),
    compose(
        "m2m",
        second_stage="m2m",
        description="major-to-minor translation: g is the ERM stage; f trained from scratch with "
        "cross-entropy, from 80% of the epochs class-balanced over-sampling with minority slots "
        "replaced by majority samples translated by 10 steps against g",
        paper=_M2M_PAPER,
    ),
    compose(
        "m2m-ldam-drw",
        second_stage="m2m",
        defaults={"m2m_f_method": "ldam-drw", "m2m_oversample": False},
        description="M2m with f trained by LDAM-DRW (cosine head, margins, deferred re-weighting) on "
        "instance-balanced batches (DRW re-balances; no over-sampling on top); g the ERM stage",
        paper=_M2M_PAPER,
    ),
    compose(
        "drs",
        sampler="drs",
        description="cross-entropy; instance-balanced sampling, then class-balanced re-sampling for "
        "the last 20% of epochs (deferred re-sampling)",
        paper="Cao et al., Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss, "
        "NeurIPS 2019",
    ),
    compose(
        "smote",
        sampler="smote",
        description="cross-entropy on the training set over-sampled by SMOTE (imbalanced-learn, "
        "5 neighbours, on flattened inputs) to n_max examples per class",
        paper="Chawla et al., SMOTE: Synthetic Minority Over-sampling Technique, JAIR 2002",
    ),
]

#: Every registered single-label method, by name, in display order.
METHODS: dict[str, Method] = {m.name: m for m in _ALL}

_ASL = "Ridnik et al., Asymmetric Loss For Multi-Label Classification, ICCV 2021"
_ML_ALL = [
    compose(
        "bce",
        loss="bce",
        task="multi-label",
        description="binary cross-entropy per label (the baseline)",
        paper="the standard multi-label baseline; " + _ASL,
    ),
    compose(
        "focal",
        loss="focal",
        task="multi-label",
        description="sigmoid focal loss (1 - p_t)^gamma BCE, gamma 2, no alpha (the focal baseline "
        "of the ASL paper: ASL with gamma+ = gamma- = 2, no margin)",
        paper="Lin et al., Focal Loss for Dense Object Detection, ICCV 2017",
    ),
    compose(
        "asl",
        loss="asl",
        task="multi-label",
        description="asymmetric loss: gamma- 4, gamma+ 0, probability margin 0.05 (the official "
        "training script)",
        paper=_ASL,
    ),
    compose(
        "cb-bce",
        loss="cb-bce",
        task="multi-label",
        description="BCE with each label's terms weighted by the inverse effective number of its "
        "positives (beta 0.9999, weights sum to L)",
        paper=_CB,
    ),
    compose(
        "cb-focal",
        loss="cb-focal",
        task="multi-label",
        description="sigmoid focal loss (gamma 2) with each label's terms weighted by the inverse "
        "effective number of its positives (beta 0.9999)",
        paper=_CB,
    ),
    compose(
        "hill",
        loss="hill",
        task="multi-label",
        description="Hill loss: negatives -(lambda - p) p^2 (lambda 1.5), positives focal with a "
        "logit margin (margin 1, gamma 2); robust to missing labels",
        paper="Zhang et al., Simple and Robust Loss Design for Multi-Label Learning with Missing "
        "Labels, arXiv 2021",
    ),
    compose(
        "rfs",
        loss="bce",
        sampler="rfs",
        task="multi-label",
        description="BCE with repeat-factor sampling: an example repeats max over its labels of "
        "max(1, sqrt(t / f_label)) times per epoch (stochastic rounding), t = 1 / L",
        paper="Gupta et al., LVIS: A Dataset for Large Vocabulary Instance Segmentation, CVPR 2019",
    ),
]
#: Every registered multi-label method, by name, in display order.
MULTILABEL_METHODS: dict[str, Method] = {m.name: m for m in _ML_ALL}
#: The method registry of each task.
def resolve_methods(
    recipes: Mapping[str, Any] | None = None, task: str = "single-label"
) -> dict[str, Method]:
    """The registry presets of ``task`` plus the config's composed ``recipes`` (validated)."""
    out = dict(task_kind(task).methods)
    for name, raw in (recipes or {}).items():
        out[name] = recipe_from_dict(name, raw, task)
    return out


def check_method_params(
    name: str, params: Mapping[str, Any], methods: Mapping[str, Method] | None = None
) -> dict[str, Any]:
    """Validate overrides of method ``name``; raise ValueError naming the config key."""
    table = METHODS if methods is None else methods
    if name not in table:
        raise ValueError(f"config key 'method_params.{name}': unknown method")
    return table[name].resolve_params(params)

