"""Deep metric learning with relational distillation (``task: metric-learning``), the RKD paper's setting.

**Protocol.** The classes of an in-memory data set with a test split are split into *seen* classes
(``metric_learning.train_classes``, default 0-4), whose training images are trained on (relabelled
``0..K-1``; ``data.imbalance_factor`` / ``data.max_per_class`` take a subset as for single-label
data), and *unseen* classes (every other one), whose test images are the evaluation split ``test``
(labels as in the data set). Images are standardised with the seen training images' mean and std.
The metrics are Recall@1, 2, 4, 8 (:func:`longtail.metrics.recall_at_k`: Euclidean distances of the
embeddings, every test image a query against all the others, itself excluded): zero-shot retrieval
of classes never seen in training, as on Cars196 / CUB-200 in the paper.

**Networks.** An embedding network is a backbone (``model``: the student's, or
``metric_learning.teacher.model``) and a linear layer to ``embedding_dim`` outputs, L2-normalised
for the triplet loss (the RKD code's ``LinearEmbedding``); the distilled students' embeddings are not
normalised (``normalize``, the official ``--l2normalize false`` of its distillation runs).

**Training.** Batches are P x K: ``metric_learning.classes_per_batch`` (P) seen classes drawn at
random, K = ``train.batch_size / P`` images of each (cycling through a class's shuffled images), so
every anchor has positives; ``len(train) // batch_size`` batches per epoch. The triplet loss is torch's
``F.triplet_margin_loss`` (margin ``metric_learning.margin``, 0.2 as the paper) over the triplets of
:func:`longtail.losses.mine_triplets` (``metric_learning.mining``): ``all`` (default: every valid
triplet of the batch, ``N (K - 1) (N - K)`` of them, the loss their mean) or ``batch_hard`` (each
anchor's farthest positive and nearest negative, Hermans et al. 2017). The RKD code samples
distance-weighted negatives, which the library does not provide; trained from scratch on
Fashion-MNIST, batch-hard mining stalls with the loss at the margin (the hardest triplets collapse)
while all triplets keep improving. Students are trained from scratch with the run's ``train`` recipe.

**Methods** (:data:`METRIC_LEARNING_METHODS`):

=============  ====================================================================================
``teacher``    the teacher embedding network (wider backbone, ``teacher.embedding_dim``), triplet loss
``triplet``    the student network alone with the triplet loss (its own stage)
``rkd-d``      the student with the RKD distance potential alone (lambda_D 1), no triplet loss
``rkd-a``      the student with the RKD angle potential alone (lambda_A 2)
``rkd-da``     both (lambda_D 1, lambda_A 2): the paper's metric-learning setting
=============  ====================================================================================

The teacher is the first stage, shared by every RKD student of a seed (see
:mod:`longtail.tracks.distillation.task` for the stage's identity and ``teacher.checkpoint``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.data import class_counts
from longtail.engine import distributed as D
from longtail.engine.config import Config, ConfigError, ModelConfig
from longtail.engine.datasets import (
    DataBundle,
    _load_raw,
    _training_indices,
    standardise_images,
    standardise_recorded,
)
from longtail.engine.methods import LossContext, Method, Param
from longtail.engine.models import build_backbone
from longtail.engine.prediction import PredictionRule, rule_logits
from longtail.engine.tasks import (
    Batch,
    Evaluation,
    MethodTask,
    MetricSpec,
    Setup,
    StepOutput,
    Task,
)
from longtail.engine.teacher import (
    TeacherStudentMethod,
    check_teacher_checkpoint,
    load_teacher_state,
    load_weights,
)
from longtail.losses import mine_triplets, rkd_angle_loss, rkd_distance_loss, value_checks
from longtail.metrics import recall_at_k
from longtail.registry import Registry
from longtail.tracks.metric_learning.config import MetricLearningConfig

__all__ = [
    "METRIC_LEARNING_METHODS",
    "METRIC_LEARNING_METRICS",
    "RECALL_KS",
    "EmbeddingNet",
    "MetricLearningTask",
    "build_embedding_net",
    "build_metric_learning_data",
    "metric_finish_config",
    "metric_stage_config",
    "metric_stage_task",
    "pk_batches",
]

#: The k of the Recall@k metrics.
RECALL_KS = (1, 2, 4, 8)
METRIC_LEARNING_METRICS = tuple(MetricSpec(f"recall_at_{k}", f"R@{k}") for k in RECALL_KS)
_CKPT = "metric_learning.teacher.checkpoint"


def _ml(cfg: Config) -> MetricLearningConfig:
    return cfg.metric_learning or MetricLearningConfig()


# --------------------------------------------------------------------------------------------------
# methods


def _unused(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:  # pragma: no cover - never called
    raise RuntimeError("metric-learning methods train with the triplet loss or RKD")


def _student_params(distance: float, angle: float) -> dict[str, Param]:
    return {
        "rkd_distance": Param(
            distance, low=0.0, help="weight lambda_D of the RKD distance potential"
        ),
        "rkd_angle": Param(angle, low=0.0, help="weight lambda_A of the RKD angle potential"),
        "triplet_weight": Param(0.0, low=0.0, help="weight of the student's own triplet loss"),
        "normalize": Param(False, help="L2-normalise the student's embeddings (official: no)"),
    }


_RKD = "Park et al., Relational Knowledge Distillation, CVPR 2019"
_TRIPLET = (
    "Schroff et al., FaceNet, CVPR 2015; Hermans et al., In Defense of the Triplet Loss, 2017"
)


def _method(
    name: str, role: str, description: str, paper: str, params: dict[str, Param] | None = None
) -> TeacherStudentMethod:
    return TeacherStudentMethod.of(
        name, role, description, paper, task="metric-learning", loss=_unused, params=params
    )


_ALL = [
    _method(
        "teacher",
        "teacher",
        "the teacher embedding network (metric_learning.teacher), triplet loss margin 0.2",
        _TRIPLET,
    ),
    _method("triplet", "alone", "the student network alone, triplet loss margin 0.2", _TRIPLET),
    _method(
        "rkd-d",
        "student",
        "RKD distance potential alone (lambda_D 1)",
        _RKD,
        _student_params(1.0, 0.0),
    ),
    _method(
        "rkd-a",
        "student",
        "RKD angle potential alone (lambda_A 2)",
        _RKD,
        _student_params(0.0, 2.0),
    ),
    _method(
        "rkd-da",
        "student",
        "RKD distance and angle (lambda_D 1, lambda_A 2)",
        _RKD,
        _student_params(1.0, 2.0),
    ),
]
#: The metric-learning methods by name (the kind's ``methods``).
METRIC_LEARNING_METHODS: Registry[Method] = Registry("metric-learning method")
for _m in _ALL:
    METRIC_LEARNING_METHODS.register(_m.name, _m)


# --------------------------------------------------------------------------------------------------
# data


def build_metric_learning_data(
    cfg: Config, variant: str = "long-tailed", seed: int | None = None
) -> DataBundle:
    """The seen classes' training images and the unseen classes' test images (module docstring).

    Raises:
        ConfigError: naming ``metric_learning.train_classes`` (a class out of range, fewer than two
            unseen classes left) or ``metric_learning.teacher.checkpoint`` (see
            :func:`_check_teacher_checkpoint`).
    """
    ml = _ml(cfg)
    x_pool, y_pool, x_test, y_test, names = _load_raw(cfg.data)
    num_classes = len(names)
    seen = list(ml.train_classes)
    key = "metric_learning.train_classes"
    bad = [c for c in seen if not 0 <= c < num_classes]
    if bad:
        raise ConfigError(
            f"config key '{key}': class {bad[0]} is out of range: {cfg.data.dataset!r} has "
            f"{num_classes} classes (0-{num_classes - 1})"
        )
    if num_classes - len(set(seen)) < 2:
        raise ConfigError(
            f"config key '{key}': leaves {num_classes - len(set(seen))} unseen class(es) of "
            f"{num_classes}; retrieval of unseen classes needs at least 2"
        )
    k = len(seen)
    relabel = torch.full((num_classes,), -1, dtype=torch.long)
    relabel[torch.tensor(seen)] = torch.arange(k)
    y_pool = relabel[y_pool.long()]
    keep = y_pool >= 0
    x_pool, y_pool = x_pool[keep], y_pool[keep]
    idx, lt_counts = _training_indices(cfg.data, y_pool, k, balanced=False, seed=None)
    x_train, y_train = x_pool[idx], y_pool[idx]
    counts = [int(c) for c in class_counts(y_train, k)]
    if min(counts) == 0:
        raise ValueError(f"data: a seen class has no training images (counts {counts})")
    unseen = relabel[y_test.long()] < 0
    x_test, y_test = x_test[unseen], y_test[unseen].long()
    x_train, x_test, pre = standardise_recorded(standardise_images, x_train, x_test)
    bundle = DataBundle(
        name=cfg.data.dataset,
        train_x=x_train.contiguous(),
        train_y=y_train.contiguous(),
        test_x=x_test.contiguous(),
        test_y=y_test.contiguous(),
        class_names=[names[c] for c in seen],
        class_counts=counts,
        group_counts=lt_counts,
        imbalance_factor=cfg.data.imbalance_factor,
        preprocessing=pre,
    )
    if len(y_test) <= max(RECALL_KS):
        raise ValueError(
            f"data: {len(y_test)} test images of the unseen classes; Recall@{max(RECALL_KS)} needs "
            f"more than {max(RECALL_KS)}"
        )
    _check_teacher_checkpoint(cfg, bundle)
    return bundle


def _check_teacher_checkpoint(cfg: Config, data: DataBundle) -> None:
    t = _ml(cfg).teacher
    if t.checkpoint is None:
        return
    check_teacher_checkpoint(
        t.checkpoint,
        _CKPT,
        "metric_learning.teacher.model",
        lambda: build_embedding_net(t.model, data.input_shape, t.embedding_dim, normalize=True),
        weight="embedding.weight",
        rows=t.embedding_dim,
        mismatch=lambda n: (
            f"the teacher's embeddings have {n} dimensions but "
            f"metric_learning.teacher.embedding_dim is {t.embedding_dim}"
        ),
    )


# --------------------------------------------------------------------------------------------------
# network and sampler


class EmbeddingNet(nn.Module):
    """A backbone, then a linear map to ``dim`` outputs, L2-normalised if ``normalize``.

    ``(N, ...) -> (N, dim)``.
    """

    def __init__(self, backbone: nn.Module, dim: int, *, normalize: bool = True):
        super().__init__()
        self.backbone = backbone
        self.embedding = nn.Linear(int(backbone.feature_dim), dim)  # type: ignore[arg-type]
        self.normalize = normalize

    def forward(self, x: Tensor) -> Tensor:
        e: Tensor = self.embedding(self.backbone(x))
        return F.normalize(e, dim=1) if self.normalize else e


def build_embedding_net(
    m: ModelConfig, input_shape: tuple[int, ...], dim: int, *, normalize: bool
) -> EmbeddingNet:
    """The :class:`EmbeddingNet` of the model section ``m``."""
    backbone = build_backbone(
        m.arch,
        input_shape,
        hidden=m.hidden,
        channels=m.channels,
        dropout=m.dropout,
        convs_per_stage=m.convs_per_stage,
    )
    return EmbeddingNet(backbone, dim, normalize=normalize)


def pk_batches(
    labels: Tensor,
    batch_size: int,
    classes_per_batch: int,
    num_batches: int,
    generator: torch.Generator,
) -> Tensor:
    """``num_batches`` P x K batches, concatenated: each draws P = ``classes_per_batch`` of the
    classes in ``labels`` at random and K = ``batch_size // P`` indices of each, cycling through
    a shuffled list of the class's indices (reshuffled when used up; a class with fewer than K
    examples repeats them).

    Returns:
        ``(num_batches * P * K,)`` int64 dataset indices.
    """
    classes = torch.unique(labels)
    p = min(classes_per_batch, len(classes))
    k = batch_size // p
    members = [torch.nonzero(labels == c).flatten() for c in classes.tolist()]
    order = [m[torch.randperm(len(m), generator=generator)] for m in members]
    pos = [0] * len(members)
    out: list[Tensor] = []
    for _ in range(num_batches):
        for c in torch.randperm(len(classes), generator=generator)[:p].tolist():
            taken: list[Tensor] = []
            need = k
            while need:
                if pos[c] == len(order[c]):
                    order[c] = members[c][torch.randperm(len(members[c]), generator=generator)]
                    pos[c] = 0
                part = order[c][pos[c] : pos[c] + need]
                pos[c] += len(part)
                need -= len(part)
                taken.append(part)
            out.append(torch.cat(taken))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


# --------------------------------------------------------------------------------------------------
# the task


class MetricLearningTask(MethodTask):
    """Train an embedding network: the teacher or the student alone with the triplet loss, or a
    student with RKD (and optionally its own triplet loss) against the frozen teacher.

    Args:
        method: a :class:`~longtail.tracks.distillation.task.TeacherStudentMethod` of
            :data:`METRIC_LEARNING_METHODS`.
        config: the run's configuration.
        params: the method's parameters.
        teacher_state: the teacher stage's final weights (a student method).
        weights: weights to start from instead of a fresh initialisation (a checkpoint teacher,
            evaluated with ``train.epochs`` 0).
    """

    metrics: ClassVar[tuple[MetricSpec, ...]] = METRIC_LEARNING_METRICS

    def __init__(
        self,
        method: Method,
        data: DataBundle,
        config: Config,
        *,
        params: Mapping[str, Any] | None = None,
        teacher_state: Mapping[str, Tensor] | None = None,
        weights: Mapping[str, Tensor] | None = None,
    ):
        if not isinstance(method, TeacherStudentMethod) or method.task != "metric-learning":
            raise ValueError(f"method {method.name!r} is not a metric-learning method")
        if method.role == "student" and teacher_state is None:
            raise ValueError(f"method {method.name!r} trains against a teacher: give teacher_state")
        super().__init__(method, data, config, params=params, criterion=False)
        self.method: TeacherStudentMethod = method
        self.ml = _ml(config)
        self.teacher_state = None if teacher_state is None else dict(teacher_state)
        self.weights = None if weights is None else dict(weights)
        self.teacher: nn.Module | None = None

    def build_model(self) -> EmbeddingNet:
        shape = self.data.input_shape
        if self.method.role == "teacher":
            t = self.ml.teacher
            return build_embedding_net(t.model, shape, t.embedding_dim, normalize=True)
        normalize = self.method.role == "alone" or bool(self.params["normalize"])
        return build_embedding_net(
            self.config.model, shape, self.ml.embedding_dim, normalize=normalize
        )

    def setup(self) -> Setup:
        model = self.build_model()
        if self.weights is not None:
            load_weights(model, self.weights, _CKPT, "metric_learning.teacher.model")
        frozen: dict[str, nn.Module] = {}
        if self.method.role == "student":
            t = self.ml.teacher
            teacher = build_embedding_net(
                t.model, self.data.input_shape, t.embedding_dim, normalize=True
            )
            assert self.teacher_state is not None
            load_weights(teacher, self.teacher_state, _CKPT, "metric_learning.teacher.model")
            frozen["teacher"] = teacher
        return Setup({"model": model}, frozen=frozen)

    def on_train_start(self, models: Mapping[str, nn.Module], device: torch.device) -> None:
        self.teacher = models.get("teacher")

    def sampler(self, epoch: int, *, seed: int, rank: int, world_size: int) -> Tensor:
        bs = self.config.train.batch_size
        state = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
        g = torch.Generator().manual_seed(state)
        order = pk_batches(
            self.data.train_y,
            bs,
            self.ml.classes_per_batch,
            max(1, len(self.data.train_y) // bs),
            g,
        )
        # rank r's k-th batch of batch_size / world_size is a share of the k-th global batch
        return order[rank::world_size]

    def triplet_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """``F.triplet_margin_loss`` over the mined triplets (0 when the batch has none)."""
        e = embeddings.float()
        a, p, n = mine_triplets(labels, e, strategy=self.ml.mining)  # type: ignore[arg-type]
        if a.numel() == 0:
            return e.sum() * 0.0
        return F.triplet_margin_loss(e[a], e[p], e[n], margin=self.ml.margin)

    def training_step(self, model: nn.Module, batch: Batch, epoch: int, step: int) -> StepOutput:
        e = model(batch.x)
        if self.method.role != "student":
            return StepOutput(loss=self.triplet_loss(e, batch.y))
        assert self.teacher is not None, "on_train_start sets the teacher"
        with torch.no_grad():
            e_t = self.teacher(batch.x).float()
        p = self.params
        s = e.float()
        terms: list[Tensor] = []
        logs: dict[str, float | Tensor] = {}
        n = s.shape[0]
        with value_checks(False):
            if p["rkd_distance"] > 0 and n >= 2:
                d = rkd_distance_loss(s, e_t)
                terms.append(p["rkd_distance"] * d)
                logs["rkd_distance"] = d.detach()
            if p["rkd_angle"] > 0 and n >= 3:
                a = rkd_angle_loss(s, e_t)
                terms.append(p["rkd_angle"] * a)
                logs["rkd_angle"] = a.detach()
            if p["triplet_weight"] > 0:
                t = self.triplet_loss(s, batch.y)
                terms.append(p["triplet_weight"] * t)
                logs["triplet"] = t.detach()
        loss = torch.stack(terms).sum() if terms else s.sum() * 0.0
        return StepOutput(loss=loss, logs=logs)

    def prediction_rule(self) -> PredictionRule:
        """The embedding (the network's output)."""
        return PredictionRule("embedding")

    @torch.no_grad()
    def embed(self, model: nn.Module, batches: Iterable[Batch]) -> tuple[Tensor, Tensor]:
        """Embeddings and labels of ``batches`` (gathered from every process), on the CPU."""
        es, ys = [], []
        rule = self.prediction_rule()
        for b in batches:
            es.append(rule_logits(rule, model, b.x))
            ys.append(b.y)
        device = es[0].device if es else torch.device("cpu")
        e = torch.cat(es) if es else torch.zeros(0, 1, device=device)
        y = torch.cat(ys) if ys else torch.zeros(0, dtype=torch.long, device=device)
        return D.all_gather_cat(e).cpu(), D.all_gather_cat(y).cpu()

    @torch.no_grad()
    def evaluate(self, model: nn.Module, splits: Mapping[str, Iterable[Batch]]) -> Evaluation:
        was_training = model.training
        model.eval()
        e, y = self.embed(model, splits["test"])
        model.train(was_training)
        recall = recall_at_k(e, y, RECALL_KS)
        metrics = {f"recall_at_{k}": float(recall[k]) for k in RECALL_KS}
        details = {
            "num_test": len(y),
            "test_classes": sorted(int(c) for c in torch.unique(y).tolist()),
            "embedding_dim": int(e.shape[1]),
            "embedding_norm": float(e.norm(dim=1).mean()) if len(e) else None,
        }
        return Evaluation(metrics=metrics, details=details)


# --------------------------------------------------------------------------------------------------
# runner hooks


def metric_stage_config(cfg: Config, method: Method, params: Mapping[str, Any]) -> Config:
    """The teacher's stage trains ``metric_learning.teacher.model`` (no epochs when it is loaded
    from a checkpoint); the student alone trains with ``cfg``."""
    if isinstance(method, TeacherStudentMethod) and method.role == "alone":
        return cfg
    t = _ml(cfg).teacher
    train = cfg.train
    if t.checkpoint is not None:
        train = dataclasses.replace(train, epochs=0, warmup_epochs=0)
    return dataclasses.replace(cfg, model=t.model, train=train)


def metric_stage_task(
    method: Method, data: DataBundle, config: Config, params: Mapping[str, Any]
) -> Task:
    """The first stage of ``method``: the teacher (trained, or loaded and evaluated) or the
    student alone."""
    if not isinstance(method, TeacherStudentMethod):
        raise ValueError(f"method {method.name!r} is not a metric-learning method")
    if method.role == "alone":
        return MetricLearningTask(method, data, config, params=params)
    teacher = METRIC_LEARNING_METHODS["teacher"]
    ckpt = _ml(config).teacher.checkpoint
    weights = None if ckpt is None else load_teacher_state(ckpt, _CKPT)
    return MetricLearningTask(teacher, data, config, weights=weights)


def metric_finish_config(cfg: Config, method: Method, params: Mapping[str, Any]) -> Config:
    """A student trains with the run's configuration (its network, the full schedule)."""
    return cfg


def metric_finish_task(
    method: Method,
    data: DataBundle,
    config: Config,
    stage_state: dict[str, Tensor],
    params: dict[str, Any],
) -> Task:
    """An RKD student's training against the teacher stage's weights."""
    return MetricLearningTask(method, data, config, params=params, teacher_state=stage_state)
