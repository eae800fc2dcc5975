"""The task interface: what the training loop asks of a kind of learning problem.

The :class:`~longtail.engine.trainer.Trainer` owns everything generic (devices, DDP, the optimiser and
schedule, augmentation, mixed precision, checkpoints, logs, the non-finite-loss guard). Everything that
depends on *what* is learned sits behind :class:`Task`:

===========================  ======================================================================
hook                         called
===========================  ======================================================================
``build_model()``            once; returns the network (backbone + heads the task needs)
``sampler(epoch, ...)``      each epoch; the dataset indices this process trains on, in order
``on_train_start(model)``    once, after the model is on its device (load a teacher, a baseline, ...)
``on_epoch_start(e, model)`` each epoch, before the first step (switch a schedule, generate data)
``training_step(...)``       each batch; returns the loss (and optional logits / logged scalars)
``evaluate(model, batches)`` after training (and every ``eval_every`` epochs for the curves)
``postprocess(model)``       once after training, before the final evaluation
``state_dict()``             with every checkpoint (task state needed to resume exactly)
===========================  ======================================================================

How the other tracks plug in without touching the loop:

- **multi-label** targets: the batch's ``y`` is a float ``(N, L)`` matrix (``-1`` = unknown);
  ``training_step`` applies a multi-label loss (ASL, sigmoid focal) and ``evaluate`` builds mAP /
  CF1 metric objects; ``sampler`` may return plain shuffled indices.
- **open-set** head: ``build_model`` returns a backbone plus reciprocal-point head;
  ``training_step`` adds the open-space term; ``evaluate`` scores known-class and unknown-class
  test batches (the bundle holds both) with the open-set metric objects.
- **distillation** with a frozen teacher: ``on_train_start`` loads the teacher on the model's device
  (``requires_grad_(False)``, ``eval()``); ``training_step`` computes teacher outputs under
  ``torch.no_grad()`` and the RKD / KD loss; the teacher is not part of the checkpointed model.
- **several transformed copies** of a batch (SLA): ``training_step`` builds the ``M`` rotated copies
  of ``batch.x`` itself, forwards them in one call and uses joint labels ``y * M + j``;
  ``evaluate`` aggregates over copies.
- **samples generated inside the epoch** (M2m): ``on_train_start`` loads the baseline classifier
  ``g``; ``training_step`` replaces minority slots of the batch (it knows ``batch.index``) by
  adversarially translated samples, seeded from ``torch.Generator`` state kept in ``state_dict()``
  so a resumed run draws the same samples.

Only :class:`SingleLabelTask` is implemented here.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from longtail.engine.config import Config
from longtail.engine.datasets import DataBundle
from longtail.engine.methods import Criterion, Method
from longtail.engine.models import build_model

__all__ = ["Batch", "Evaluation", "SingleLabelTask", "StepOutput", "Task"]


@dataclass
class Batch:
    """One mini-batch: inputs ``x``, targets ``y`` and the dataset ``index`` of every sample."""

    x: Tensor
    y: Tensor
    index: Tensor


@dataclass
class StepOutput:
    """What ``training_step`` may return instead of a bare loss tensor.

    Attributes:
        loss: scalar to back-propagate.
        logits: the logits of the batch (for the running training accuracy), or ``None``.
        logs: extra scalars averaged over the epoch into the CSV log.
    """

    loss: Tensor
    logits: Tensor | None = None
    logs: dict[str, float] = field(default_factory=dict)


@dataclass
class Evaluation:
    """Result of :meth:`Task.evaluate`.

    Attributes:
        metrics: named scalars (fractions), e.g. ``balanced_accuracy``; the benchmark tables use them.
        details: JSON-serialisable extras for the report (per-class accuracy, confusion matrix,
            reliability diagram bins).
    """

    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    """A kind of learning problem (see the module docstring for the hooks and how tasks plug in).

    Attributes:
        kind: the task name written to ``results.json`` (``"single-label"``, ...).
        metric_names: the scalars ``evaluate`` returns, in table order.
        higher_is_better: per metric, whether larger is better (for the bold best in the report).
    """

    kind: ClassVar[str]
    metric_names: ClassVar[tuple[str, ...]]
    higher_is_better: ClassVar[Mapping[str, bool]]

    @abstractmethod
    def build_model(self) -> nn.Module:
        """The freshly initialised network (the trainer seeds torch before calling this)."""

    @abstractmethod
    def sampler(self, epoch: int, *, seed: int, rank: int, world_size: int) -> Tensor:
        """Dataset indices this process trains on in ``epoch``, in order (``int64``, 1-D).

        Sharding contract: the union over ranks of the ``k``-th per-rank batch must be the ``k``-th
        global batch (``DistributedSampler``-style ``global[rank::world_size]``).
        """

    def on_train_start(self, model: nn.Module, device: torch.device) -> None:  # noqa: B027
        """Called once, after the model is on ``device``."""

    def on_epoch_start(self, epoch: int, model: nn.Module) -> None:  # noqa: B027
        """Called at the start of every epoch (also the first epoch after a resume)."""

    @abstractmethod
    def training_step(
        self, model: nn.Module, batch: Batch, epoch: int, step: int
    ) -> Tensor | StepOutput:
        """The loss of one batch (``model`` may be wrapped in DDP; call it, not its parts)."""

    @abstractmethod
    def evaluate(self, model: nn.Module, batches: Iterable[Batch]) -> Evaluation:
        """Metrics on ``batches`` (this process's shard; metric objects sync across processes)."""

    def postprocess(self, model: nn.Module) -> None:  # noqa: B027
        """Called once after the last epoch, before the final evaluation (e.g. tau-norm)."""

    def state_dict(self) -> dict[str, Any]:
        """Task state to checkpoint (tensors and plain Python values only)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027
        """Restore what :meth:`state_dict` returned."""


def _nan_to_none(values: Iterable[float]) -> list[float | None]:
    return [None if (v is None or math.isnan(v)) else float(v) for v in values]


class SingleLabelTask(Task):
    """Single-label classification with a long-tail :class:`~longtail.engine.methods.Method`.

    The method chooses the head (linear / cosine), the training loss (with deferred re-weighting),
    the sampler, and the post-hoc step: logit adjustment of the test logits
    (``posthoc="logit-adjust"``) or tau-normalisation of the classifier rows after training
    (``posthoc="tau-norm"``). :meth:`evaluate` uses :class:`longtail.metrics.SingleLabelMetrics`
    (balanced accuracy, accuracy, many / medium / few, ECE), grouping classes by
    ``data.group_counts``.
    """

    kind = "single-label"
    metric_names = ("balanced_accuracy", "accuracy", "many", "medium", "few", "ece")
    higher_is_better: ClassVar[Mapping[str, bool]] = {
        "balanced_accuracy": True,
        "accuracy": True,
        "many": True,
        "medium": True,
        "few": True,
        "ece": False,
    }

    def __init__(
        self,
        method: Method,
        data: DataBundle,
        config: Config,
        *,
        params: Mapping[str, Any] | None = None,
    ):
        self.method = method
        self.data = data
        self.config = config
        self.params = method.resolve_params(params)
        self.criterion: Criterion = method.build_criterion(
            data.class_counts, total_epochs=config.train.epochs, params=self.params
        )
        self._log_prior = torch.log(
            torch.as_tensor(data.class_counts, dtype=torch.float32) / float(sum(data.class_counts))
        )

    def build_model(self) -> nn.Module:
        m = self.config.model
        return build_model(
            m.arch,
            self.data.input_shape,
            self.data.num_classes,
            head=self.method.head,
            hidden=m.hidden,
            channels=m.channels,
            dropout=m.dropout,
            convs_per_stage=m.convs_per_stage,
        )

    def sampler(self, epoch: int, *, seed: int, rank: int, world_size: int) -> Tensor:
        from longtail import data as ltdata

        labels = self.data.train_y
        common: dict[str, Any] = {"seed": seed, "num_replicas": world_size, "rank": rank}
        kind = self.method.sampler
        s: Any
        if kind == "instance":
            s = ltdata.InstanceBalancedSampler(labels, **common)
        elif kind == "class-balanced":
            s = ltdata.ClassBalancedSampler(labels, **common)
        elif kind == "sqrt":
            s = ltdata.SquareRootSampler(labels, **common)
        elif kind == "progressive":
            s = ltdata.ProgressivelyBalancedSampler(
                labels, total_epochs=self.config.train.epochs, **common
            )
        else:  # pragma: no cover - guarded by the Method type
            raise ValueError(f"sampler: unknown kind {kind!r}")
        s.set_epoch(epoch)
        # the samplers' documented sharding: rank r keeps global_indices()[r::num_replicas]
        shard: Tensor = s.global_indices()[rank : s.total_size : world_size]
        return shard

    def training_step(self, model: nn.Module, batch: Batch, epoch: int, step: int) -> StepOutput:
        logits = model(batch.x)
        loss = self.criterion(logits, batch.y, epoch)
        return StepOutput(loss=loss, logits=logits.detach())

    def predict_logits(self, model: nn.Module, x: Tensor) -> Tensor:
        """Test-time logits, post-hoc adjusted when the method says so."""
        logits: Tensor = model(x).float()
        if self.method.head == "cosine" and "scale" in self.params:
            # cosine logits live in [-1, 1]; the loss's scale s makes their softmax meaningful
            # (argmax unchanged, calibration measured on the probabilities the model was trained for)
            logits = logits * self.params["scale"]
        if self.method.posthoc == "logit-adjust":
            from longtail.adjust import posthoc_logit_adjust

            adjusted: Tensor = posthoc_logit_adjust(
                logits, self.data.class_counts, tau=self.params["tau"]
            )
            return adjusted
        return logits

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[Batch]) -> Evaluation:
        from longtail.metrics import SingleLabelMetrics

        was_training = model.training
        model.eval()
        metric = SingleLabelMetrics(
            self.data.num_classes,
            self.data.group_counts,
            shot_mode=self.config.metrics.shot_mode,  # type: ignore[arg-type]
            n_bins=self.config.metrics.n_bins,
        )
        for b in batches:
            logits = self.predict_logits(model, b.x)
            metric.update(logits.cpu(), b.y.cpu())
        values = metric.compute()
        per_class = metric.per_class()
        cm = metric.confusion()
        states = metric.states()
        model.train(was_training)
        count = states["bin_count"].double()
        conf = torch.where(count > 0, states["bin_conf"] / count.clamp_min(1), torch.nan)
        acc = torch.where(count > 0, states["bin_correct"].double() / count.clamp_min(1), torch.nan)
        details = {
            "per_class": _nan_to_none(per_class.tolist()),
            "confusion": cm.tolist(),
            "reliability": {
                "confidence": _nan_to_none(conf.tolist()),
                "accuracy": _nan_to_none(acc.tolist()),
                "count": [int(c) for c in states["bin_count"].tolist()],
            },
        }
        return Evaluation(metrics={k: float(v) for k, v in values.items()}, details=details)

    def postprocess(self, model: nn.Module) -> None:
        if self.method.posthoc != "tau-norm":
            return
        from longtail.adjust import tau_normalize

        head = getattr(model, "head", None)
        if not isinstance(head, nn.Linear):
            raise TypeError("tau-norm needs a model with a linear `head`")
        with torch.no_grad():
            head.weight.copy_(tau_normalize(head.weight, tau=self.params["tau"]))
            if head.bias is not None and self.params.get("drop_bias", True):
                head.bias.zero_()
