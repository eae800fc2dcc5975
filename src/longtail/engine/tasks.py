"""The task interface: what the training loop asks of a kind of learning problem.

The :class:`~longtail.engine.trainer.Trainer` owns everything generic (devices, DDP and synchronised
batch norm, optimisers and the learning-rate schedule, augmentation, mixed precision, checkpoints,
logs, the non-finite-loss guard). Everything that depends on *what* is learned sits behind
:class:`Task`:

===============================  ==================================================================
hook                             called
===============================  ==================================================================
``setup()``                      once; a :class:`Setup`: named trained modules, named optimisers
                                 (parameter groups, after-step hook), frozen auxiliary models
``sampler(epoch, ...)``          each epoch; the dataset indices this process trains on, in order
``on_train_start(models, dev)``  once, after the modules are on their device (and DDP-wrapped)
``on_epoch_start(e, models)``    each epoch, before the first step
``training_step(model, ...)``    each batch; a loss, a :class:`StepOutput`, or a sequence of
                                 :class:`Update` (several optimiser updates per batch)
``evaluate(model, splits)``      after training (and every ``eval_every`` epochs for the curves)
``postprocess(model)``           once after training, before the final evaluation
``state_dict()``                 with every checkpoint (task state needed to resume exactly)
``prediction_rule()``            what ``evaluate`` applies to the network's outputs (a model bundle
                                 stores it; :mod:`longtail.engine.prediction`)
``inference_model()``            the trained network's structure, freshly built (a bundle rebuilds it)
===============================  ==================================================================

A plain task overrides :meth:`Task.build_model` instead of :meth:`Task.setup` and returns a loss (or a
:class:`StepOutput`) from ``training_step``: it then gets one module ``"model"`` and one SGD optimiser
``"default"`` over its trainable parameters, with the run's weight decay.

How the tracks plug in without touching the loop:

- **Several modules and optimisers** (a GAN-style generator, a reciprocal-point head with its own
  weight decay): ``setup`` returns ``modules={"model": ..., "gen": ...}`` and
  ``optimizers={"model": OptimizerSpec(...), "gen": OptimizerSpec(...)}``; each module is moved to
  the device, synchronised (batch norm) and DDP-wrapped, and saved in the checkpoint with its
  optimiser. ``training_step`` returns ``[Update("gen", gen_step), Update("model", cls_step)]``:
  the updates run in order, each ``zero_grad -> backward -> step -> after_step`` on its optimiser; a
  callable update is evaluated only when its turn comes (after the previous step).
- **Frozen auxiliary models** (a teacher, M2m's pre-trained classifier ``g``): ``Setup.frozen``;
  moved to the device, put in evaluation mode, gradients off, never trained or checkpointed.
- **Frozen parts of a trained module** (cRT's backbone and its batch-norm statistics):
  ``Setup.eval_modules`` stay in evaluation mode although the trainer puts the rest in training mode
  every epoch.
- **Replaced labels** (mixup, M2m's translated samples, SLA's joint labels): ``StepOutput.targets`` is
  what the running training accuracy scores ``StepOutput.logits`` against; no targets, no accuracy
  (the loop never guesses from shapes).
- **Named evaluation splits** (``test``, and ``unknown`` for open set): ``DataBundle.eval_splits``;
  :meth:`Task.evaluate` receives ``{name: batches}``.
- **Metrics as specs**: :attr:`Task.metrics` (:class:`MetricSpec`: name, label, higher-is-better)
  drive the table, the bold best, the gap to the reference and ``results.json``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from longtail.engine.prediction import PredictionRule

if TYPE_CHECKING:
    from longtail.engine.config import Config
    from longtail.engine.datasets import DataBundle
    from longtail.engine.methods import Criterion, Method

__all__ = [
    "Batch",
    "Evaluation",
    "MethodTask",
    "MetricSpec",
    "OptimizerSpec",
    "Setup",
    "StepOutput",
    "Task",
    "Update",
    "nan_to_none",
]


@dataclass
class Batch:
    """One mini-batch: inputs ``x``, targets ``y`` and the dataset ``index`` of every sample."""

    x: Tensor
    y: Tensor
    index: Tensor


@dataclass
class StepOutput:
    """What ``training_step`` returns for one optimiser update.

    Attributes:
        loss: scalar to back-propagate.
        logits: ``(N, C)`` logits for the running training accuracy, or ``None``.
        targets: ``(N,)`` class indices ``logits`` are scored against (the step may have replaced
            the batch's labels); the accuracy is only computed when both are given.
        logs: extra scalars (floats or 0-d tensors, read on the host in batches) averaged over the
            epoch into the CSV log as ``train_<key>``.
    """

    loss: Tensor
    logits: Tensor | None = None
    targets: Tensor | None = None
    logs: dict[str, float | Tensor] = field(default_factory=dict)


@dataclass
class Update:
    """One optimiser update of a batch: the optimiser's name and its step (or a callable for it).

    A callable is evaluated when the update's turn comes, i.e. after the previous updates stepped
    (a GAN-style generator step, then the classifier step on the new samples).
    """

    optimizer: str
    step: StepOutput | Tensor | Callable[[], StepOutput | Tensor]


@dataclass
class OptimizerSpec:
    """A named optimiser: parameter groups, hyper-parameters and an after-step hook.

    Attributes:
        params: parameters, or parameter groups ``{"params": [...], "weight_decay": wd,
            "lr_scale": s}`` (``lr_scale`` multiplies the scheduled learning rate of the group).
        kind: ``"sgd"`` (momentum / Nesterov from ``train``) or ``"adam"``.
        lr: peak learning rate (default ``train.lr``).
        weight_decay: default weight decay of the groups (default ``train.weight_decay``).
        schedule: follow the run's warm-up + decay schedule; ``False`` keeps ``lr`` constant.
        after_step: called after every step of this optimiser (e.g. a MaxNorm projection).
    """

    params: Sequence[nn.Parameter] | Sequence[Mapping[str, Any]]
    kind: Literal["sgd", "adam"] = "sgd"
    lr: float | None = None
    weight_decay: float | None = None
    schedule: bool = True
    after_step: Callable[[], None] | None = None


@dataclass
class Setup:
    """What a task trains: see the module docstring.

    Attributes:
        modules: trained modules by name; ``"model"`` is required (evaluated, saved as ``model.pt``).
        optimizers: named optimisers; ``None``: one SGD ``"default"`` over every trainable parameter
            of every module, with ``train.weight_decay``.
        frozen: auxiliary models: evaluation mode, no gradients, not trained, not checkpointed.
        eval_modules: sub-modules of trained modules kept in evaluation mode during training.
    """

    modules: dict[str, nn.Module]
    optimizers: dict[str, OptimizerSpec] | None = None
    frozen: dict[str, nn.Module] = field(default_factory=dict)
    eval_modules: list[nn.Module] = field(default_factory=list)


@dataclass(frozen=True)
class MetricSpec:
    """A metric a task reports: ``name`` (key in results), ``label`` (table header), direction.

    ``optional``: reported only in some runs (e.g. a metric that needs a validation split); its
    column is left out of the table, without a note, when no method has a value.
    """

    name: str
    label: str
    higher_is_better: bool = True
    optional: bool = False


@dataclass
class Evaluation:
    """Result of :meth:`Task.evaluate`.

    Attributes:
        metrics: named scalars (fractions), one per :attr:`Task.metrics` spec.
        details: JSON-serialisable extras for the report (per-class accuracy, confusion matrix,
            reliability diagram bins).
    """

    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    """A kind of learning problem (see the module docstring for the hooks and how tasks plug in).

    Attributes:
        metrics: the metrics ``evaluate`` returns, in table order; the first is the primary one
            (the gap to the reference is measured on it).
    """

    metrics: ClassVar[tuple[MetricSpec, ...]]

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)

    def build_model(self) -> nn.Module:
        """The freshly initialised network of a single-model task (see :meth:`setup`)."""
        raise NotImplementedError(f"{type(self).__name__} must override setup() or build_model()")

    def setup(self) -> Setup:
        """Modules, optimisers and frozen models (the trainer seeds torch before calling this).

        The default is one module ``"model"`` from :meth:`build_model` and the default optimiser.
        """
        return Setup(modules={"model": self.build_model()})

    @abstractmethod
    def sampler(self, epoch: int, *, seed: int, rank: int, world_size: int) -> Tensor:
        """Dataset indices this process trains on in ``epoch``, in order (``int64``, 1-D).

        Sharding contract: the union over ranks of the ``k``-th per-rank batch must be the ``k``-th
        global batch (``DistributedSampler``-style ``global[rank::world_size]``). Every epoch should
        have the same length: the learning-rate schedule counts steps from epoch 0's.
        """

    def training_data(self, data: Any, seed: int) -> Any:
        """The :class:`~longtail.engine.datasets.DataBundle` the loop draws training batches from.

        Called once per fit, after ``torch.manual_seed(seed)`` and before the first ``sampler`` call;
        the default trains on ``data`` itself. A data-level method (SMOTE over-sampling) returns a
        bundle with other training tensors (the evaluation splits stay ``data``'s) and makes its own
        ``sampler`` index it. Must be deterministic given ``seed``: a resumed run calls it again.
        """
        return data

    def on_train_start(self, models: Mapping[str, nn.Module], device: torch.device) -> None:  # noqa: B027
        """Called once with every trained (possibly DDP-wrapped) and frozen module, on ``device``."""

    def on_epoch_start(self, epoch: int, models: Mapping[str, nn.Module]) -> None:  # noqa: B027
        """Called at the start of every epoch (also the first epoch after a resume)."""

    @abstractmethod
    def training_step(
        self, model: nn.Module, batch: Batch, epoch: int, step: int
    ) -> Tensor | StepOutput | Sequence[Update]:
        """The loss of one batch (``model`` may be wrapped in DDP; call it, not its parts)."""

    @abstractmethod
    def evaluate(self, model: nn.Module, splits: Mapping[str, Iterable[Batch]]) -> Evaluation:
        """Metrics on the evaluation ``splits`` (this process's shard; metrics sync across processes)."""

    def postprocess(self, model: nn.Module) -> None:  # noqa: B027
        """Called once after the last epoch, before the final evaluation (e.g. tau-norm)."""

    def inference_model(self) -> nn.Module:
        """A freshly built network of the structure of the trained ``"model"`` (the weights
        come from elsewhere): what a model bundle rebuilds before loading its weights. The
        default is :meth:`build_model`; it must read nothing but the task's configuration,
        method, parameters and the data's shapes, names and counts."""
        return self.build_model()

    def prediction_rule(self) -> PredictionRule:
        """How the trained ``"model"`` predicts (:class:`~longtail.engine.prediction.PredictionRule`):
        what :meth:`evaluate` applies to the network's outputs, and what a model bundle
        (``longtail fit``) stores. A task that cannot be exported raises ``NotImplementedError``."""
        raise NotImplementedError(f"{type(self).__name__} has no prediction rule")

    def state_dict(self) -> dict[str, Any]:
        """Task state to checkpoint (tensors and plain Python values only)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027
        """Restore what :meth:`state_dict` returned."""


class MethodTask(Task):
    """A task that trains one :class:`~longtail.engine.methods.Method` on one data bundle.

    The opening every task of a track shares: ``method``, ``data``, ``config``, ``params`` (the
    method's defaults updated with the validated overrides) and, unless ``criterion=False``,
    ``criterion``: the method's loss bound to the training class counts
    (:meth:`Method.build_criterion <longtail.engine.methods.Method.build_criterion>`, over
    ``max(train.epochs, 1)`` epochs). A subclass checks what it needs of the method and the data
    first, then calls this.
    """

    def __init__(
        self,
        method: Method,
        data: DataBundle,
        config: Config,
        *,
        params: Mapping[str, Any] | None = None,
        criterion: bool = True,
    ) -> None:
        self.method = method
        self.data = data
        self.config = config
        self.params = method.resolve_params(params)
        if criterion:
            self.criterion: Criterion = method.build_criterion(
                data.class_counts, total_epochs=max(config.train.epochs, 1), params=self.params
            )


def nan_to_none(values: Iterable[float | None]) -> list[float | None]:
    """``values`` as floats with NaN (and ``None``) as ``None``: JSON-safe evaluation details."""
    return [None if (v is None or math.isnan(v)) else float(v) for v in values]
