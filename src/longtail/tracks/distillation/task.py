"""Knowledge distillation (``task: distillation``): a teacher stage, then students trained against it.

**Stages.** The teacher is the run's first stage: a single-label method (``distill.teacher.method``,
any registry method without a post-hoc step or second stage, or a recipe mapping) trained with its
own, usually larger network (``distill.teacher.model``) on the same data and training recipe
(``train``) as the students; or, with ``distill.teacher.checkpoint``, its weights are read from a file
(``weights_only=True``; a run's ``model.pt`` or ``checkpoint.pt``) and only evaluated. Every student
method of a seed shares that one stage: its identity is the ``distill`` section (method, its
parameters, its model, the checkpoint's path) together with the data and ``train``, so a change to
any of them trains a new teacher. The students are the config's ``model``, trained from scratch for
the full ``train.epochs`` with the teacher frozen (evaluation mode, no gradients; a
:class:`~longtail.engine.tasks.Setup` ``frozen`` module). The results of a student hold the
teacher's and its own epochs (``history``, the student's with ``stage`` 2) and both training times.

**Loss** of a student (every weight a ``method_params`` entry, so any weighted combination is a
``method_params`` override of any preset)::

    ce_weight CE(z_s, y) + kd_weight KD_T(z_s, z_t) + r(t) dkd_weight DKD_T(z_s, z_t, y)
      + rkd_distance RKD_D(f_s, f_t) + rkd_angle RKD_A(f_s, f_t)

with :func:`longtail.losses.kd_loss` (``T^2`` KL; ``standardize``: on z-scored logits, Sun et al.
2024), :func:`longtail.losses.dkd_loss` (``dkd_alpha`` TCKD + ``dkd_beta`` NCKD) whose weight ramps
up linearly over the first ``dkd_warmup`` of the training steps (``r``; the official 20 of 240
epochs), and the RKD potentials (:func:`longtail.losses.rkd_distance_loss`,
:func:`longtail.losses.rkd_angle_loss`) on the penultimate features ``f`` (the backbone outputs),
L2-normalised first (``rkd_normalize``, as the official classification script). A batch too small
for a relational term (one sample: no pair; two: no triplet, the trailing batch of an epoch) skips
that term. Under ``torchrun`` the relational terms see each process's share of the batch.

**Methods** (:data:`DISTILL_METHODS`, defaults from each paper's official CIFAR-100 code):

===============  ==========================================================================
``teacher``      the teacher stage, evaluated
``student``      the student network with cross-entropy alone (its own stage; no teacher)
``kd``           0.1 CE + 0.9 KD at T 4 (Hinton et al.; the mdistiller / CRD setting)
``kd-std``       0.1 CE + 9 KD at T 2 on z-scored logits (Sun et al., official defaults)
``dkd``          CE + DKD, alpha 1, beta 8, T 4, warm-up 20/240 of training (Zhao et al.)
``rkd-da``       CE + 25 RKD-D + 50 RKD-A on normalised features (Park et al.'s weights)
``kd-rkd-da``    CE + KD at T 4 (weight 1: the script's 16 x KL without the T^2 factor) +
                 25 RKD-D + 50 RKD-A: the official RKD classification script
===============  ==========================================================================

The metrics are the single-label ones (balanced accuracy, accuracy, many / medium / few, ECE).
``data.balanced_reference`` adds ``erm`` with the student network on the balanced subset.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.engine.classifier import ClassifierTask as SingleLabelTask
from longtail.engine.config import Config, ConfigError, ModelConfig
from longtail.engine.datasets import DataBundle, build_data
from longtail.engine.kinds import TASK_KINDS
from longtail.engine.methods import (
    LossContext,
    Method,
    Param,
    Space,
    recipe_from_dict,
)
from longtail.engine.models import Classifier, build_model
from longtail.engine.tasks import Batch, Setup, StepOutput, Task
from longtail.engine.teacher import (
    TeacherStudentMethod,
    check_teacher_checkpoint,
    load_teacher_state,
    load_weights,
)
from longtail.losses import dkd_loss, kd_loss, rkd_angle_loss, rkd_distance_loss, value_checks
from longtail.registry import Registry
from longtail.tracks.distillation.config import DistillConfig

__all__ = [
    "DISTILL_METHODS",
    "DistillTask",
    "FeatureClassifier",
    "build_distill_data",
    "distill_finish_config",
    "distill_finish_task",
    "distill_stage_config",
    "distill_stage_task",
    "teacher_method",
]


def _ce(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    return F.cross_entropy(z, y)


def _p(default: float | bool, help: str, *, low: float | None = 0.0, **kw: Any) -> Param:
    return Param(default, low=None if isinstance(default, bool) else low, help=help, stage=2, **kw)


def _distill_params(**defaults: float | bool) -> dict[str, Param]:
    params = {
        "ce_weight": _p(1.0, "weight of the cross-entropy"),
        "kd_weight": _p(0.0, "weight of Hinton's KD (T^2 KL(teacher || student), kd_loss)"),
        "temperature": _p(4.0, "temperature T of KD and DKD", low_open=True),
        "standardize": _p(False, "KD on z-scored logits (logit standardisation, Sun et al.)"),
        "dkd_weight": _p(0.0, "weight of DKD (dkd_loss)"),
        "dkd_alpha": _p(1.0, "DKD: weight of the target-class term TCKD"),
        "dkd_beta": _p(8.0, "DKD: weight of the non-target term NCKD"),
        "dkd_warmup": _p(
            20 / 240,
            "share of the training steps over which the DKD weight ramps up linearly (official: "
            "20 of 240 epochs)",
            high=1.0,
        ),
        "rkd_distance": _p(0.0, "weight of the RKD distance potential on the features"),
        "rkd_angle": _p(0.0, "weight of the RKD angle potential on the features"),
        "rkd_normalize": _p(True, "L2-normalise the features before RKD (official script)"),
    }
    for k, v in defaults.items():
        params[k] = dataclasses.replace(params[k], default=v)
    # searched by `longtail tune`: the terms the method uses (a weight at 0 stays off)
    on = {k for k, v in defaults.items() if v and not isinstance(v, bool)}
    spaces = {"ce_weight": Space(0.05, 2.0, "log")}
    if on & {"kd_weight", "dkd_weight"}:
        spaces["temperature"] = Space(1.0, 8.0, "log")
    if "dkd_weight" in on:
        spaces |= {"dkd_alpha": Space(0.25, 4.0, "log"), "dkd_beta": Space(1.0, 16.0, "log")}
    for k in on & {"kd_weight", "dkd_weight", "rkd_distance", "rkd_angle"}:
        d = float(defaults[k])
        spaces[k] = Space(d / 5, d * 5, "log")
    for k, space in spaces.items():
        params[k] = dataclasses.replace(params[k], space=space)
    return params


_KD = "Hinton et al., Distilling the Knowledge in a Neural Network, NIPS-W 2015"
_LS = "Sun et al., Logit Standardization in Knowledge Distillation, CVPR 2024"
_DKD = "Zhao et al., Decoupled Knowledge Distillation, CVPR 2022"
_RKD = "Park et al., Relational Knowledge Distillation, CVPR 2019"


def _method(
    name: str, role: str, description: str, paper: str, **defaults: float | bool
) -> TeacherStudentMethod:
    params = _distill_params(**defaults) if role == "student" else {}
    return TeacherStudentMethod.of(
        name, role, description, paper, task="distillation", loss=_ce, params=params
    )


_DISTILL_ALL = [
    _method(
        "teacher",
        "teacher",
        "the teacher (distill.teacher: its method and network, or a checkpoint), evaluated",
        "the teacher of the distillation methods",
    ),
    _method(
        "student",
        "alone",
        "the student network trained with cross-entropy alone (no teacher)",
        "the student baseline",
    ),
    _method(
        "kd",
        "student",
        "0.1 CE + 0.9 KD at T 4 (the mdistiller / CRD CIFAR-100 setting)",
        _KD,
        ce_weight=0.1,
        kd_weight=0.9,
    ),
    _method(
        "kd-std",
        "student",
        "0.1 CE + 9 KD at T 2 on z-scored logits (official defaults)",
        _LS,
        ce_weight=0.1,
        kd_weight=9.0,
        temperature=2.0,
        standardize=True,
    ),
    _method(
        "dkd",
        "student",
        "CE + DKD (alpha 1, beta 8, T 4), its weight ramped up over the first 20/240 of training",
        _DKD,
        dkd_weight=1.0,
    ),
    _method(
        "rkd-da",
        "student",
        "CE + 25 RKD distance + 50 RKD angle on L2-normalised penultimate features",
        _RKD,
        rkd_distance=25.0,
        rkd_angle=50.0,
    ),
    _method(
        "kd-rkd-da",
        "student",
        "CE + KD at T 4 (weight 1 = the script's 16 x KL) + 25 RKD-D + 50 RKD-A: the official "
        "RKD classification script",
        f"{_RKD}; {_KD}",
        kd_weight=1.0,
        rkd_distance=25.0,
        rkd_angle=50.0,
    ),
]

#: The distillation methods by name (the kind's ``methods``).
DISTILL_METHODS: Registry[Method] = Registry("distillation method")
for _m in _DISTILL_ALL:
    DISTILL_METHODS.register(_m.name, _m)


# --------------------------------------------------------------------------------------------------
# teacher


def _teacher_config(cfg: Config) -> Any:
    return (cfg.distill or DistillConfig()).teacher


def teacher_method(cfg: Config) -> tuple[Method, dict[str, Any]]:
    """The teacher's single-label method (``distill.teacher.method``) and its resolved parameters."""
    t = _teacher_config(cfg)
    method = (
        TASK_KINDS["single-label"].methods[t.method]
        if isinstance(t.method, str)
        else recipe_from_dict("teacher", t.method)
    )
    return method, method.resolve_params(t.params)


def _build_classifier(m: ModelConfig, data: DataBundle, head: str) -> FeatureClassifier:
    net = build_model(
        m.arch,
        data.input_shape,
        data.num_classes,
        head=head,
        hidden=m.hidden,
        channels=m.channels,
        dropout=m.dropout,
        convs_per_stage=m.convs_per_stage,
        factory=None,
    )
    assert isinstance(net, Classifier)
    return FeatureClassifier(net.backbone, net.head)


def _check_teacher_checkpoint(cfg: Config, data: DataBundle) -> None:
    """The checkpoint's classes must be the data's, and its weights must fit the teacher network."""
    t = _teacher_config(cfg)
    if t.checkpoint is None:
        return
    check_teacher_checkpoint(
        t.checkpoint,
        "distill.teacher.checkpoint",
        "distill.teacher.model",
        lambda: _build_classifier(t.model, data, teacher_method(cfg)[0].head),
        weight="head.weight",
        rows=data.num_classes,
        mismatch=lambda n: (
            f"the teacher has {n} classes but the student's data ({cfg.data.dataset!r}) has "
            f"{data.num_classes}; teacher and student must classify the same classes"
        ),
    )


def build_distill_data(cfg: Config, variant: str, seed: int | None) -> DataBundle:
    """The single-label data (as ``task: single-label``), checked against the teacher: the
    teacher network fits the inputs and a checkpoint's classes are the data's."""
    kwargs: dict[str, Any] = {"balanced": variant == "balanced"}
    if seed is not None:
        kwargs["seed"] = seed
    bundle = build_data(cfg.data, **kwargs)
    arch = _teacher_config(cfg).model.arch
    if arch in ("cnn", "resnet32") and not bundle.is_image:
        raise ConfigError(
            f"config key 'distill.teacher.model.arch': {arch} needs images, but the inputs of "
            f"{cfg.data.dataset!r} are feature vectors (use mlp or auto)"
        )
    _check_teacher_checkpoint(cfg, bundle)
    return bundle


# --------------------------------------------------------------------------------------------------
# runner hooks


def distill_stage_config(cfg: Config, method: Method, params: Mapping[str, Any]) -> Config:
    """The configuration a first stage trains with: the teacher's network (``distill.teacher.model``)
    for the teacher, no epochs for a checkpoint teacher (evaluated only); ``cfg`` otherwise."""
    if not isinstance(method, TeacherStudentMethod) or method.role == "alone":
        return cfg
    t = _teacher_config(cfg)
    train = cfg.train
    if t.checkpoint is not None:
        train = dataclasses.replace(train, epochs=0, warmup_epochs=0)
    return dataclasses.replace(cfg, model=t.model, train=train)


class _LoadedTeacher(SingleLabelTask):
    """A checkpoint teacher: its weights loaded, nothing trained (``train.epochs`` 0), evaluated."""

    def __init__(self, method: Method, data: DataBundle, config: Config, params: dict[str, Any]):
        super().__init__(method, data, config, params=params)
        self.state = load_teacher_state(_teacher_config(config).checkpoint, _CKPT)

    def setup(self) -> Setup:
        model = self.build_model()
        load_weights(model, self.state, _CKPT, "distill.teacher.model")
        return Setup({"model": model})


_CKPT = "distill.teacher.checkpoint"


def single_label_task(
    method: Method, data: DataBundle, config: Config, params: Mapping[str, Any]
) -> Task:
    """The single-label track's first-stage task of ``method`` (found through the registry)."""
    return TASK_KINDS["single-label"].stage_task(method, data, config, dict(params))


def distill_stage_task(
    method: Method, data: DataBundle, config: Config, params: Mapping[str, Any]
) -> Task:
    """The first stage of ``method``: the teacher (trained with its method, or loaded), the
    student alone, or (the balanced reference) a single-label method."""
    if not isinstance(method, TeacherStudentMethod):
        return single_label_task(method, data, config, params)
    if method.role == "alone":
        return SingleLabelTask(method, data, config, params=params)
    tm, tp = teacher_method(config)
    config = distill_stage_config(config, method, params)  # the teacher's network (idempotent)
    if _teacher_config(config).checkpoint is not None:
        return _LoadedTeacher(tm, data, config, tp)
    return single_label_task(tm, data, config, tp)


def distill_finish_config(cfg: Config, method: Method, params: Mapping[str, Any]) -> Config:
    """A student trains with the run's own configuration: its network (``model``) from scratch,
    the full ``train`` schedule."""
    return cfg


# --------------------------------------------------------------------------------------------------
# the student


class FeatureClassifier(Classifier):
    """A :class:`~longtail.engine.models.Classifier` whose forward can also return the features
    (``model(x, return_features=True) -> (features, logits)``), so that a DDP-wrapped student gives
    both from one call. Its weights are a ``Classifier``'s (``backbone.*``, ``head.*``)."""

    def forward(self, x: Tensor, return_features: bool = False) -> Any:
        f = self.backbone(x)
        z = self.head(f)
        return (f, z) if return_features else z


class DistillTask(SingleLabelTask):
    """Train the student network (``config.model``) against the frozen teacher (see the module
    docstring for the loss); evaluated like a single-label method.

    Args:
        method: a student :class:`TeacherStudentMethod` of :data:`DISTILL_METHODS`.
        config: the run's configuration (the student's network and schedule; the teacher's
            method and network from ``distill.teacher``).
        teacher_state: the teacher stage's final weights.
        params: the method's parameters (loss weights).
    """

    def __init__(
        self,
        method: Method,
        data: DataBundle,
        config: Config,
        *,
        teacher_state: Mapping[str, Tensor],
        params: Mapping[str, Any] | None = None,
    ):
        super().__init__(method, data, config, params=params)
        self.teacher_method, self.teacher_params = teacher_method(config)
        self.teacher_state = dict(teacher_state)
        self.teacher: nn.Module | None = None
        self._steps_per_epoch = max(1, math.ceil(len(data.train_y) / config.train.batch_size))

    def build_model(self) -> nn.Module:
        return _build_classifier(self.config.model, self.data, "linear")

    def build_teacher(self) -> FeatureClassifier:
        """The teacher network with the stage's weights (class count checked)."""
        teacher = _build_classifier(
            _teacher_config(self.config).model, self.data, self.teacher_method.head
        )
        head = self.teacher_state.get("head.weight")
        if head is not None and head.shape[0] != self.data.num_classes:
            raise ConfigError(
                f"config key '{_CKPT}': the teacher has {head.shape[0]} classes but the student "
                f"has {self.data.num_classes}"
            )
        load_weights(teacher, self.teacher_state, _CKPT, "distill.teacher.model")
        return teacher

    def setup(self) -> Setup:
        student = self.build_model()
        return Setup({"model": student}, frozen={"teacher": self.build_teacher()})

    def on_train_start(self, models: Mapping[str, nn.Module], device: torch.device) -> None:
        self.teacher = models["teacher"]

    @torch.no_grad()
    def teacher_outputs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The frozen teacher's ``(features, logits)``; cosine logits times the method's scale."""
        assert self.teacher is not None, "on_train_start sets the teacher"
        f, z = self.teacher(x, return_features=True)
        z = z.float()
        if self.teacher_method.head == "cosine" and "scale" in self.teacher_params:
            z = z * float(self.teacher_params["scale"])
        return f.float(), z

    def dkd_ramp(self, epoch: int, step: int) -> float:
        """The DKD weight's warm-up factor ``min(t / (dkd_warmup * T), 1)`` at step ``t`` of ``T``."""
        total = self._steps_per_epoch * max(self.config.train.epochs, 1)
        warm = float(self.params["dkd_warmup"]) * total
        t = epoch * self._steps_per_epoch + step + 1
        return 1.0 if warm <= 0 else min(t / warm, 1.0)

    def distillation_loss(
        self,
        logits: Tensor,
        features: Tensor,
        teacher_logits: Tensor,
        teacher_features: Tensor,
        target: Tensor,
        epoch: int,
        step: int,
    ) -> tuple[Tensor, dict[str, float | Tensor]]:
        """The student's loss and its unweighted terms (logged as ``train_<term>``)."""
        p = self.params
        z = logits.float()
        t = float(p["temperature"])
        terms: list[Tensor] = []
        logs: dict[str, float | Tensor] = {}
        if p["ce_weight"] > 0:
            ce = self.criterion(z, target, epoch)
            terms.append(p["ce_weight"] * ce)
            logs["ce"] = ce.detach()
        with value_checks(False):  # shapes still checked; the labels were checked with the data
            if p["kd_weight"] > 0:
                kd = kd_loss(z, teacher_logits, temperature=t, standardize=p["standardize"])
                terms.append(p["kd_weight"] * kd)
                logs["kd"] = kd.detach()
            if p["dkd_weight"] > 0:
                dkd = dkd_loss(
                    z,
                    teacher_logits,
                    target,
                    alpha=p["dkd_alpha"],
                    beta=p["dkd_beta"],
                    temperature=t,
                )
                terms.append(p["dkd_weight"] * self.dkd_ramp(epoch, step) * dkd)
                logs["dkd"] = dkd.detach()
            f_s, f_t = features.float(), teacher_features
            if p["rkd_normalize"]:
                f_s, f_t = F.normalize(f_s, dim=1), F.normalize(f_t, dim=1)
            n = z.shape[0]
            if p["rkd_distance"] > 0 and n >= 2:
                rd = rkd_distance_loss(f_s, f_t)
                terms.append(p["rkd_distance"] * rd)
                logs["rkd_distance"] = rd.detach()
            if p["rkd_angle"] > 0 and n >= 3:
                ra = rkd_angle_loss(f_s, f_t)
                terms.append(p["rkd_angle"] * ra)
                logs["rkd_angle"] = ra.detach()
        loss = torch.stack(terms).sum() if terms else z.sum() * 0.0
        return loss, logs

    def training_step(self, model: nn.Module, batch: Batch, epoch: int, step: int) -> StepOutput:
        features, logits = model(batch.x, return_features=True)
        t_features, t_logits = self.teacher_outputs(batch.x)
        loss, logs = self.distillation_loss(
            logits, features, t_logits, t_features, batch.y, epoch, step
        )
        return StepOutput(loss=loss, logits=logits.detach(), targets=batch.y, logs=logs)


def distill_finish_task(
    method: Method,
    data: DataBundle,
    config: Config,
    stage_state: dict[str, Tensor],
    params: dict[str, Any],
) -> Task:
    """A student method's training from the teacher stage's weights."""
    return DistillTask(method, data, config, teacher_state=stage_state, params=params)
