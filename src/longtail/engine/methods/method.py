"""A method: a composition of a loss, sampler, head, mixing, post-hoc step and second stage.

:class:`Method` is what the runner trains, :class:`Param` a hyper-parameter with its paper default
and range, :class:`LossContext` what a loss sees besides logits and targets, :class:`Criterion` a
method's loss bound to the training class counts (validated once, run without host reads).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from longtail.losses import DeferredReweighting, value_checks

__all__ = [
    "Criterion",
    "HeadKind",
    "LogitShift",
    "LossContext",
    "LossFn",
    "Method",
    "MixKind",
    "Param",
    "PosthocKind",
    "SLAKind",
    "SamplerKind",
    "Space",
    "SpaceScale",
    "StageKind",
    "drw_start_epoch",
]

SamplerKind = Literal[
    "instance", "class-balanced", "sqrt", "power", "progressive", "drs", "smote", "rfs"
]
HeadKind = Literal["linear", "cosine"]
PosthocKind = Literal["logit-adjust", "tau-norm"]
#: Input mixing: ``mixup`` (Zhang et al.), ``remix`` (its minority-leaning labels, Chou et al.) and
#: ``cmo`` (a box of a minority-weighted image pasted onto the batch's image, Park et al.).
MixKind = Literal["mixup", "remix", "cmo"]
#: Self-supervised label augmentation (Lee et al., ICML 2020): ``joint`` trains one head over the
#: (class, transformation) pairs; ``mt`` (multi-task: a class head and a transformation head) and
#: ``da`` (every transformed copy labelled with its class) are the paper's baselines.
SLAKind = Literal["joint", "mt", "da"]
StageKind = Literal["crt", "lws", "wb", "m2m"]
#: How ``longtail tune`` draws a value: uniformly in ``[low, high]`` (``linear``), uniformly in
#: its logarithm (``log``), an integer in ``[low, high]`` (``int``) or one of ``choices`` (``choice``).
SpaceScale = Literal["linear", "log", "int", "choice"]


@dataclass(frozen=True)
class Space:
    """Where ``longtail tune`` searches a :class:`Param` (declared next to its default; a config's
    ``tune:`` section narrows or widens it within the parameter's valid range)."""

    low: float | None = None
    high: float | None = None
    scale: SpaceScale = "linear"
    choices: tuple[Any, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The space as plain values (``best_params.json``, the report)."""
        if self.scale == "choice":
            return {"scale": "choice", "choices": list(self.choices)}
        return {"scale": self.scale, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Param:
    """A hyper-parameter: its default and the allowed range (bounds inclusive unless ``*_open``).

    ``stage`` says what the value shapes: ``1`` the (shareable) first training stage, ``2`` only the
    second stage or the post-hoc step, so methods that differ only there share the first stage.
    ``space``: where ``longtail tune`` searches it (``None``: not searched unless a config's
    ``tune:`` section gives a space).
    """

    default: float | int | bool | str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    help: str = ""
    stage: int = 1
    choices: tuple[str, ...] = ()
    space: Space | None = None

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

#: ``shift(ctx)``: the loss is softmax cross-entropy on ``logits + shift(ctx)`` (``None``: on the
#: logits themselves), e.g. ``tau log(prior)`` for logit adjustment. Input mixing needs it: it mixes
#: two labels' cross-entropy terms of the shifted logits.
LogitShift = Callable[[LossContext], Tensor | None]


#: Loss components that ignored deferred re-weighting's weights before they took them (December
#: 2026). A DRW stage of one of them is marked (:attr:`Method.identity_marks`), so that a stored
#: stage or study trained without the weights is not reused on resume; other identities (and every
#: stored run of them) are unchanged.
DRW_WEIGHTS_ADDED = frozenset({"la", "balanced-softmax", "el-la"})


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
        logit_shift: when the loss is softmax cross-entropy on shifted logits, the shift (see
            :data:`LogitShift`); ``mix`` needs it.
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
    logit_shift: LogitShift | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.mix is not None and self.logit_shift is None:
            raise ValueError(
                f"method {self.name!r}: mix={self.mix!r} mixes two labels' cross-entropy terms; "
                "it needs a loss of the cross-entropy form (logit_shift)"
            )

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
    def needs_images(self) -> str | None:
        """Why the method trains on images only (``None``: any inputs): SLA transforms them, CMO
        pastes a box of one onto another."""
        if self.sla is not None:
            return "SLA rotates and permutes them"
        if self.mix == "cmo":
            return "CMO pastes a box of one image onto another"
        return None

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

    @property
    def identity_marks(self) -> dict[str, Any]:
        """Keys added to the stage identity (and a study's fingerprint) only where the training
        changed under an unchanged composition (:data:`DRW_WEIGHTS_ADDED`); empty otherwise."""
        return {"drw_weights": True} if self.drw and self.loss_name in DRW_WEIGHTS_ADDED else {}

    def stage_identity(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """What determines the first training stage (shared by methods with equal identities)."""
        return {
            **self.identity_marks,
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
        allow_zero_counts: bool = False,
    ) -> Criterion:
        """The training loss of this method for given class counts (see :class:`Criterion`)."""
        return Criterion(
            self,
            class_counts,
            total_epochs=total_epochs,
            params=params,
            allow_zero_counts=allow_zero_counts,
        )


def drw_start_epoch(fraction: float, total_epochs: int) -> int:
    """The first (0-based) epoch of deferred re-weighting: ``int(fraction * total_epochs)``, at most
    the last epoch (so DRW always runs; epoch 0 when the run has one epoch)."""
    start = int(float(fraction) * total_epochs)
    return min(start, total_epochs - 1) if total_epochs > 1 else 0


class Criterion:
    """A method's loss bound to the training class counts: ``criterion(logits, target, epoch)``.

    Everything is validated here, once: the class counts, the hyper-parameters; the loss is then
    called with the library's value checks off (:func:`longtail.losses.value_checks`), so a training
    step reads nothing back to the host. Holds the deferred re-weighting schedule when ``method.drw``
    (class-balanced weights with ``drw_beta`` from epoch ``int(drw_start_fraction * total_epochs)``).

    Every count must be positive, unless ``allow_zero_counts`` (multi-label data: a label without
    a training positive; its log prior is then ``-inf``, and a loss that weights by the counts
    must define the weight of a zero, as :func:`~longtail.losses.class_balanced_weights` does);
    at least one count must be positive.
    """

    def __init__(
        self,
        method: Method,
        class_counts: Tensor | list[int],
        *,
        total_epochs: int,
        params: Mapping[str, Any] | None = None,
        allow_zero_counts: bool = False,
    ):
        self.method = method
        self.params = method.resolve_params(params)
        counts = torch.as_tensor(class_counts, dtype=torch.float32)
        bad = (counts < 0) if allow_zero_counts else (counts <= 0)
        if counts.ndim != 1 or bool(bad.any()) or not bool((counts > 0).any()):
            need = "non-negative with one positive" if allow_zero_counts else "positive"
            raise ValueError(f"class_counts must be {need}, got {counts.tolist()}")
        self.counts_list = [int(c) for c in counts.tolist()]
        self.total_epochs = int(total_epochs)
        self._counts = counts
        self._log_prior = torch.log(counts / counts.sum())
        self._drw: Any = None
        if method.drw:
            self._drw = DeferredReweighting(
                self.counts_list,
                total_epochs=self.total_epochs,
                start_epoch=drw_start_epoch(self.params["drw_start_fraction"], self.total_epochs),
                beta=self.params["drw_beta"],
            )
        self._cache: dict[tuple[torch.device, int], LossContext] = {}

    @property
    def drw_start_epoch(self) -> int | None:
        """The first (0-based) epoch with deferred re-weighting's weights; ``None``: no DRW."""
        return None if self._drw is None else int(self._drw.start_epoch)

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
        ctx = self.context(epoch, logits.device)
        if logits.dtype != torch.float32:
            logits = logits.float()
        with value_checks(False):
            return self.method.loss(logits, target, ctx)
