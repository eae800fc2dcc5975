"""The open-set task: train an open-set method on the known classes, evaluate known vs unknown.

The protocol (known / unknown splits, seed ``i`` trains on split ``i``) is
:mod:`longtail.tracks.open_set.data`'s, the methods and their scores
:mod:`longtail.tracks.open_set.methods`', the metrics :mod:`longtail.tracks.open_set.evaluation`'s,
the network and the ARPL+CS generator :mod:`longtail.tracks.open_set.network`'s.

Each method is a first stage (its training) plus a finishing run that only evaluates with the
method's score (``train.epochs`` 0), so ``softmax`` and ``mls`` share one training.

ARPL+CS follows the ARPL code's step (discriminator, generator, classifier, with Adam at betas 0.5,
0.999 for the GAN) with two differences: generated images pass the classifier with its batch norm
in evaluation mode (the official network has a second batch norm for them), and an epoch is one pass
(the official ARPL+CS epoch runs the confusing-sample pass and then a plain ARPL pass over the data).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.data import InstanceBalancedSampler
from longtail.engine import distributed as D
from longtail.engine.config import Config
from longtail.engine.datasets import DataBundle
from longtail.engine.methods import Method
from longtail.engine.prediction import PredictionRule, rule_logits
from longtail.engine.tasks import (
    Batch,
    Evaluation,
    MethodTask,
    MetricSpec,
    OptimizerSpec,
    Setup,
    StepOutput,
    Update,
)
from longtail.losses import arpl_loss, confusing_sample_loss, gcpl_loss, rpl_loss, value_checks
from longtail.tracks.open_set.data import build_open_set_data, strong_augment
from longtail.tracks.open_set.evaluation import OPEN_SET_METRICS, open_set_evaluation
from longtail.tracks.open_set.methods import OpenSetMethod
from longtail.tracks.open_set.network import (
    OpenSetNet,
    batch_norm_eval,
    build_confusing_sample_gan,
    build_open_set_net,
    unwrap,
)

# build_open_set_data: also importable from here for tests/test_validation_split.py
__all__ = ["OpenSetTask", "build_open_set_data", "open_set_finish_config"]


def open_set_finish_config(cfg: Config, method: Method, params: Mapping[str, Any]) -> Config:
    """The finishing run of an open-set method: no training (``train.epochs`` 0), its evaluation."""
    train = dataclasses.replace(cfg.train, epochs=0, warmup_epochs=0)
    return dataclasses.replace(cfg, train=train)


class _StageLogits:
    """The logits of the last finished stage's evaluation, reused by the finishing runs of the
    other methods sharing that stage (they differ only in the score they threshold): the same
    weights on the same data give the same logits. One entry; it matches a task only if the task
    holds the very same stage weight tensors (``is``, not equal values) and data bundle, and
    trains nothing (``train.epochs`` 0)."""

    def __init__(self) -> None:
        self._key: tuple[Any, Any] | None = None
        self._value: tuple[Tensor, Tensor, Tensor] | None = None

    @staticmethod
    def _anchor(task: OpenSetTask) -> tuple[Any, Any] | None:
        if task.stage_state is None or task.config.train.epochs != 0 or not task.stage_state:
            return None
        return (next(iter(task.stage_state.values())), task.data)

    def get(self, task: OpenSetTask) -> tuple[Tensor, Tensor, Tensor] | None:
        key = self._anchor(task)
        if key is None or self._key is None:
            return None
        same = key[0] is self._key[0] and key[1] is self._key[1]
        return self._value if same else None

    def put(self, task: OpenSetTask, value: tuple[Tensor, Tensor, Tensor]) -> None:
        key = self._anchor(task)
        if key is not None:
            self._key, self._value = key, value


_STAGE_LOGITS = _StageLogits()


class OpenSetTask(MethodTask):
    """Train an :class:`OpenSetMethod` on the known classes; evaluate known vs unknown test images.

    Without ``stage_state`` the task trains the method (its stage): the backbone and head with SGD
    (the head's points, radius or prototypes in a group without weight decay) and, for ARPL+CS, a
    generator and a discriminator with Adam (betas 0.5, 0.999; constant lr), three updates per batch:
    discriminator, generator, classifier. With ``stage_state`` (the stage's final weights) nothing is
    trained: the finishing run evaluates with the method's score (see
    :func:`open_set_finish_config`).
    """

    metrics: ClassVar[tuple[MetricSpec, ...]] = OPEN_SET_METRICS

    def __init__(
        self,
        method: Method,
        data: DataBundle,
        config: Config,
        *,
        params: Mapping[str, Any] | None = None,
        stage_state: Mapping[str, Tensor] | None = None,
    ):
        if not isinstance(method, OpenSetMethod):
            raise ValueError(
                f"method {method.name!r} is a {method.task} method, not an open-set method"
            )
        super().__init__(method, data, config, params=params)
        self.method: OpenSetMethod = method
        self.stage_state = None if stage_state is None else dict(stage_state)
        counts = torch.as_tensor(data.class_counts, dtype=torch.float64)
        log_prior = (counts / counts.sum()).log()
        self._adjustment: Tensor | None = (
            (float(self.params["tau"]) * log_prior).float() if "tau" in self.params else None
        )
        self._adjust_on: dict[torch.device, Tensor] = {}
        self.gen: nn.Module | None = None
        self.disc: nn.Module | None = None

    # ---------------------------------------------------------------------------------- model
    def build_model(self) -> OpenSetNet:
        return build_open_set_net(self.config.model, self.data, self.method.objective, self.params)

    def setup(self) -> Setup:
        model = self.build_model()
        if self.stage_state is not None:
            model.load_state_dict(self.stage_state)
            return Setup({"model": model})
        head = model.head
        no_decay: list[nn.Parameter] = (
            list(head.no_weight_decay_parameters())  # type: ignore[operator]
            if hasattr(head, "no_weight_decay_parameters")
            else []
        )
        exempt = {id(p) for p in no_decay}
        groups: list[dict[str, Any]] = [
            {"params": [p for p in model.parameters() if id(p) not in exempt]}
        ]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        modules: dict[str, nn.Module] = {"model": model}
        optimizers = {"model": OptimizerSpec(groups)}
        if self.method.confusing_samples:
            gen, disc = build_confusing_sample_gan(self.data, self.params, self.method.name)
            for name, module in (("gen", gen), ("disc", disc)):
                modules[name] = module
                optimizers[name] = OptimizerSpec(
                    [{"params": list(module.parameters()), "betas": (0.5, 0.999)}],
                    kind="adam",
                    lr=float(self.params["gan_lr"]),
                    weight_decay=0.0,
                    schedule=False,
                )
        return Setup(modules, optimizers)

    def on_train_start(self, models: Mapping[str, nn.Module], device: torch.device) -> None:
        self.gen, self.disc = models.get("gen"), models.get("disc")

    def sampler(self, epoch: int, *, seed: int, rank: int, world_size: int) -> Tensor:
        passes = int(self.params.get("passes", 1))
        parts = []
        for k in range(passes):
            s = InstanceBalancedSampler(
                self.data.train_y, seed=seed, num_replicas=world_size, rank=rank
            )
            s.set_epoch(epoch * passes + k)
            parts.append(s.global_indices()[rank : s.total_size : world_size])
        return torch.cat(parts)

    # ---------------------------------------------------------------------------------- training
    def _adjustment_on(self, device: torch.device) -> Tensor | None:
        if self._adjustment is None:
            return None
        if device not in self._adjust_on:
            self._adjust_on[device] = self._adjustment.to(device)
        return self._adjust_on[device]

    def _classifier_loss(
        self, model: nn.Module, x: Tensor, y: Tensor, epoch: int
    ) -> tuple[Tensor, Tensor]:
        """The classifier's training loss on real images and its logits."""
        objective = self.method.objective
        if objective == "ce":
            logits = model(x)
            return self.criterion(logits, y, epoch), logits
        features, logits = model(x, return_features=True)
        head: Any = unwrap(model).head
        p = self.params
        adjustment = self._adjustment_on(features.device)
        with value_checks(False):  # the labels were checked when the data were built
            if objective == "gcpl":
                loss = gcpl_loss(
                    features,
                    y,
                    head.prototypes,
                    temperature=p["temperature"],
                    prototype_weight=p["prototype_weight"],
                    adjustment=adjustment,
                )
            elif objective == "rpl":
                loss = rpl_loss(
                    features,
                    y,
                    head.points,
                    head.radius,
                    temperature=p["temperature"],
                    open_weight=p["open_weight"],
                    adjustment=adjustment,
                )
            else:
                loss = arpl_loss(
                    features,
                    y,
                    head.points,
                    head.radius,
                    temperature=p["temperature"],
                    open_weight=p["open_weight"],
                    margin=p["margin"],
                    adjustment=adjustment,
                )
        return loss, logits

    def training_step(
        self, model: nn.Module, batch: Batch, epoch: int, step: int
    ) -> StepOutput | list[Update]:
        x, y = batch.x, batch.y
        if self.method.strong_recipe and self.params.get("strong_augment", False):
            x = strong_augment(x)
        if not self.method.confusing_samples:
            loss, logits = self._classifier_loss(model, x, y, epoch)
            return StepOutput(loss=loss, logits=logits.detach(), targets=y)
        return self._confusing_sample_updates(model, x, y, epoch)

    def _confusing_sample_updates(
        self, model: nn.Module, x: Tensor, y: Tensor, epoch: int
    ) -> list[Update]:
        """ARPL+CS: discriminator, generator, classifier (the ARPL code's order and losses).

        Under DDP each update makes exactly one forward pass through the wrapper of the module it
        updates (DDP allows one forward per backward); every other pass in the update goes through
        the plain module, whose parameters are the same tensors, so their gradients reach the
        wrapper's all-reduce hooks of that backward (or, for modules not updated here, are
        discarded by their own next ``zero_grad``).
        """
        gen, disc = self.gen, self.disc
        assert gen is not None and disc is not None
        gen_local, disc_local, model_local = unwrap(gen), unwrap(disc), unwrap(model)
        n = y.shape[0]
        noise_dim = int(self.params["noise_dim"])
        beta = float(self.params["cs_weight"])
        noise = torch.randn(n, noise_dim).to(x.device)
        ones, zeros = x.new_ones(n), x.new_zeros(n)
        head: Any = model_local.head
        points: Tensor = head.points

        def disc_step() -> StepOutput:
            with torch.no_grad():
                fake = gen_local(noise)
            real_logit, fake_logit = disc(x).float(), disc_local(fake).float()
            loss = F.binary_cross_entropy_with_logits(
                real_logit, ones.float()
            ) + F.binary_cross_entropy_with_logits(fake_logit, zeros.float())
            return StepOutput(loss=loss)

        def gen_step() -> StepOutput:
            fake = gen(noise)
            adversarial = F.binary_cross_entropy_with_logits(disc_local(fake).float(), ones.float())
            with batch_norm_eval(model_local):
                features, _ = model_local(fake, return_features=True)
            confusion = confusing_sample_loss(features, points)
            return StepOutput(
                loss=adversarial + beta * confusion,
                logs={"gen_confusion": confusion.detach()},
            )

        def classifier_step() -> StepOutput:
            loss, logits = self._classifier_loss(model, x, y, epoch)
            with torch.no_grad():
                fake = gen_local(torch.randn(n, noise_dim).to(x.device))
            with batch_norm_eval(model_local):
                features, _ = model_local(fake, return_features=True)
            total = loss + beta * confusing_sample_loss(features, points)
            return StepOutput(loss=total, logits=logits.detach(), targets=y)

        return [
            Update("disc", disc_step),
            Update("gen", gen_step),
            Update("model", classifier_step),
        ]

    # ---------------------------------------------------------------------------------- evaluation
    def prediction_rule(self) -> PredictionRule:
        """A known class (argmax), or "unknown" when the method's score is below a threshold
        (chosen by a model bundle on validation data)."""
        return PredictionRule("class-or-unknown", score=self.method.score)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, splits: Mapping[str, Iterable[Batch]]) -> Evaluation:
        was_training = model.training
        model.eval()
        c = self.data.num_classes

        rule = self.prediction_rule()

        def logits_of(name: str) -> tuple[Tensor, Tensor]:
            zs, ys = [], []
            for b in splits.get(name, ()):
                zs.append(rule_logits(rule, model, b.x))
                ys.append(b.y)
            device = zs[0].device if zs else torch.device("cpu")
            z = torch.cat(zs) if zs else torch.zeros(0, c, device=device)
            y = torch.cat(ys) if ys else torch.zeros(0, dtype=torch.long, device=device)
            return D.all_gather_cat(z).cpu(), D.all_gather_cat(y).cpu()

        cached = _STAGE_LOGITS.get(self)
        if cached is None:
            known_logits, known_y = logits_of("test")
            unknown_logits, _ = logits_of("unknown")
            _STAGE_LOGITS.put(self, (known_logits, known_y, unknown_logits))
        else:
            known_logits, known_y, unknown_logits = cached
        model.train(was_training)
        metrics, details = open_set_evaluation(
            known_logits,
            known_y,
            unknown_logits,
            score=self.method.score,
            group_counts=self.data.group_counts,
            shot_mode=self.config.metrics.shot_mode,
        )
        details["known_classes"] = list(self.data.class_names)
        return Evaluation(metrics=metrics, details=details)
