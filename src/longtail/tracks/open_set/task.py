"""Open-set recognition: known/unknown class splits, its methods, their scores and metrics.

**Protocol** (``task: open-set``). A 10-class data set (any in-memory set with a test split, e.g. an
MNIST-format IDX folder) is split into known and unknown classes by ``open_set.splits``, by default
the five splits of the literature (the ARPL code's MNIST splits, 6 known / 4 unknown). **Seed ``i``
trains on split ``i``** (``seeds: [0, 1, 2, 3, 4]`` runs the five splits, one training seed each;
the runner builds the data per seed, see :func:`build_open_set_data`). A method trains on the known
classes' training images only (relabelled ``0..K-1`` in the order the split lists them) and is tested
on the known classes' test images (split ``test``) plus the unknown classes' test images (split
``unknown``, label ``-1``). With ``data.imbalance_factor`` the known classes' training images are made
long-tailed (the first listed class the head; the open long-tailed setting of the RPL paper);
``imbalance_factor: 1`` with ``data.max_per_class`` takes a balanced subset. Images are standardised
with the known classes' training images' mean and std.

**Methods** (:data:`OPEN_SET_METHODS`, ``longtail methods --task open-set``); each thresholds one
*score* (higher = more likely known), stated in ``results.json`` (``composition.score``):

==============  =============================================================  ===========
method          training                                                       score
==============  =============================================================  ===========
``softmax``     cross-entropy (Hendrycks & Gimpel 2017)                        max-softmax
``mls``         the same stage as ``softmax`` (shared)                         max-logit
``mls-strong``  Vaze et al.'s closed-set recipe: label smoothing, twice the    max-logit
                steps (a longer cosine schedule), stronger augmentation
``gcpl``        prototypes: distance cross-entropy + prototype loss            max-softmax
``rpl``         reciprocal points: CE on the distances + (d - R)^2             max-softmax
``arpl``        reciprocal points: CE on d_l2 - d_dot + max(0, d - R + 1)      max-logit
``arpl-cs``     ARPL + confusing samples of a GAN (generator, discriminator)   max-logit
``*-la``        the method with the logit-adjusted training loss (tau 1)       the method's
==============  =============================================================  ===========

The scores are those of the official tests (the ARPL code returns softmax probabilities from its
RPL and GCPL losses and raw logits from ARPL's); the evaluation details also hold the AUROC of the
other score. ARPL+CS follows the ARPL code's step (discriminator, generator, classifier, with Adam
at betas 0.5, 0.999 for the GAN) with two differences: generated images pass the classifier with
its batch norm in evaluation mode (the official network has a second batch norm for them), and an
epoch is one pass (the official ARPL+CS epoch runs the confusing-sample pass and then a plain ARPL
pass over the data).

Each method is a first stage (its training) plus a finishing run that only evaluates with the
method's score (``train.epochs`` 0), so ``softmax`` and ``mls`` share one training.

**Metrics** (:data:`OPEN_SET_METRICS`): AUROC, AUPR-in, AUPR-out of the unknown score
(``-score``) between the known and the unknown test images; OSCR thresholding the score; closed-set
accuracy on the known test images; and, when the known classes' training counts differ, the accuracy
of the many / medium / few-shot known classes (``metrics.shot_mode``; NaN otherwise). The
evaluation ``details`` hold the score's name, the AUROC of both scores, histograms of the known and
unknown scores and the ROC curve on a fixed FPR grid (for the report, see
:mod:`longtail.tracks.open_set.report`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.engine import distributed as D
from longtail.engine.config import Config, OpenSetConfig
from longtail.engine.datasets import DataBundle
from longtail.engine.methods import LossContext, Method, Param
from longtail.engine.tasks import (
    Batch,
    Evaluation,
    MetricSpec,
    OptimizerSpec,
    Setup,
    StepOutput,
    Task,
    Update,
)

__all__ = [
    "OPEN_SET_METHODS",
    "OPEN_SET_METRICS",
    "SCORES",
    "OpenSetMethod",
    "OpenSetNet",
    "OpenSetTask",
    "build_open_set_data",
    "check_open_set_splits",
    "known_score",
    "open_set_evaluation",
    "open_set_finish_config",
    "strong_augment",
]

OPEN_SET_METRICS = (
    MetricSpec("auroc", "AUROC"),
    MetricSpec("aupr_in", "AUPR-in"),
    MetricSpec("aupr_out", "AUPR-out"),
    MetricSpec("oscr", "OSCR"),
    MetricSpec("closed_set_accuracy", "Closed-set acc."),
    MetricSpec("many", "Many"),
    MetricSpec("medium", "Medium"),
    MetricSpec("few", "Few"),
)
#: The scores a method may threshold (higher = more likely a known class).
SCORES = ("max-softmax", "max-logit")
_OBJECTIVES = ("ce", "gcpl", "rpl", "arpl")
_HEADS = {
    "ce": "linear",
    "gcpl": "prototypes",
    "rpl": "reciprocal-points",
    "arpl": "reciprocal-points",
}
#: Points of the ROC curve kept in the details (FPR 0, 0.01, ..., 1).
ROC_GRID = 101
#: Bins of the score histograms in the details.
HISTOGRAM_BINS = 40


# --------------------------------------------------------------------------------------------------
# scores


def known_score(logits: Tensor, score: str) -> Tensor:
    """The score a method thresholds, float64 ``(N,)``: the maximum softmax probability
    (``"max-softmax"``) or the maximum logit (``"max-logit"``) of ``logits`` ``(N, C)``."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    z = logits.detach().to(torch.float64)
    if z.shape[0] == 0:
        return z.new_zeros(0)
    if score == "max-softmax":
        z = torch.softmax(z, dim=1)
    return z.max(dim=1).values


def _roc_on_grid(unknown_scores: Tensor, is_unknown: Tensor, grid: int) -> dict[str, Any]:
    """TPR (unknowns detected) at FPR ``0, 1/(grid-1), ..., 1`` (the best TPR with FPR <= the grid
    value), and the FPR at 95% TPR."""
    s, pos = unknown_scores.to(torch.float64), is_unknown.bool()
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    fpr_grid = torch.linspace(0.0, 1.0, grid, dtype=torch.float64)
    if n_pos == 0 or n_neg == 0:
        return {"fpr": fpr_grid.tolist(), "tpr": [None] * grid, "fpr_at_95_tpr": None}
    order = torch.argsort(s, descending=True, stable=True)
    s_sorted, pos_sorted = s[order], pos[order]
    tps = torch.cumsum(pos_sorted.to(torch.float64), 0)
    fps = torch.cumsum((~pos_sorted).to(torch.float64), 0)
    last = torch.ones_like(pos_sorted)
    last[:-1] = s_sorted[1:] != s_sorted[:-1]  # one point per distinct threshold
    tpr = torch.cat([s.new_zeros(1), tps[last] / n_pos])
    fpr = torch.cat([s.new_zeros(1), fps[last] / n_neg])
    idx = torch.searchsorted(fpr, fpr_grid, right=True) - 1
    reach = torch.nonzero(tpr >= 0.95)
    return {
        "fpr": fpr_grid.tolist(),
        "tpr": tpr[idx].tolist(),
        "fpr_at_95_tpr": float(fpr[reach[0, 0]]) if reach.numel() else None,
    }


def _histogram(known: Tensor, unknown: Tensor, bins: int) -> dict[str, Any]:
    both = torch.cat([known, unknown])
    if both.numel() == 0:
        return {"edges": [], "known": [], "unknown": []}
    lo, hi = float(both.min()), float(both.max())
    if not hi > lo:
        hi = lo + 1.0
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    return {
        "edges": edges.tolist(),
        "known": [int(v) for v in torch.histc(known.double(), bins, lo, hi).tolist()],
        "unknown": [int(v) for v in torch.histc(unknown.double(), bins, lo, hi).tolist()],
    }


def _nan_to_none(values: Iterable[float]) -> list[float | None]:
    return [None if (v is None or math.isnan(v)) else float(v) for v in values]


def open_set_evaluation(
    known_logits: Tensor,
    known_target: Tensor,
    unknown_logits: Tensor,
    *,
    score: str,
    group_counts: Sequence[int],
    shot_mode: str = "terciles",
) -> tuple[dict[str, float], dict[str, Any]]:
    """The open-set metrics and the report's details of one evaluation.

    Args:
        known_logits: ``(N_k, C)`` logits of the known classes' test images.
        known_target: ``(N_k,)`` their classes.
        unknown_logits: ``(N_u, C)`` logits of the unknown classes' test images.
        score: what is thresholded, one of :data:`SCORES`; the unknown score is its negation.
        group_counts: training counts of the known classes (many / medium / few; NaN when all
            are equal: the known classes are not long-tailed).
        shot_mode: ``"terciles"`` or ``"thresholds"`` (:func:`longtail.metrics.shot_groups`).

    Returns:
        ``(metrics, details)``: the :data:`OPEN_SET_METRICS` (fractions; NaN where undefined) and
        the JSON-serialisable details (score, per-class accuracy, AUROC of both scores, histograms
        of the score, ROC curve, and for long-tailed known classes ``auroc_by_shot``: the AUROC of
        the unknown images against the known test images of each many / medium / few group).
    """
    from longtail.metrics import open_set_aupr, open_set_auroc, oscr, shot_groups

    kl, ul = known_logits.detach().double().cpu(), unknown_logits.detach().double().cpu()
    ky = known_target.detach().long().cpu()
    c = kl.shape[1]
    s_known, s_unknown = known_score(kl, score), known_score(ul, score)
    unknown_scores = -torch.cat([s_known, s_unknown])
    is_unknown = torch.cat(
        [torch.zeros(len(s_known), dtype=torch.bool), torch.ones(len(s_unknown), dtype=torch.bool)]
    )
    aupr = open_set_aupr(unknown_scores, is_unknown)
    correct = kl.argmax(dim=1) == ky if len(ky) else torch.zeros(0, dtype=torch.bool)
    per_class = [
        float(correct[ky == k].double().mean()) if bool((ky == k).any()) else math.nan
        for k in range(c)
    ]
    metrics: dict[str, float] = {
        "auroc": open_set_auroc(unknown_scores, is_unknown),
        "aupr_in": float(aupr["aupr_in"]),
        "aupr_out": float(aupr["aupr_out"]),
        "oscr": oscr(kl, ky, ul, softmax=score == "max-softmax"),
        "closed_set_accuracy": float(correct.double().mean()) if len(ky) else math.nan,
    }
    counts = [int(v) for v in group_counts]
    auroc_by_shot: dict[str, float | None] = {}
    if len(set(counts)) > 1:
        groups = shot_groups(counts, mode=shot_mode)  # type: ignore[arg-type]
        pc = torch.tensor(per_class, dtype=torch.float64)
        for name, mask in groups.items():
            vals = pc[mask.bool() & ~torch.isnan(pc)]
            metrics[name] = float(vals.mean()) if vals.numel() else math.nan
            # unknown images against the known test images of this group only
            in_group = mask.bool()[ky] if len(ky) else torch.zeros(0, dtype=torch.bool)
            keep = torch.cat([in_group, torch.ones(len(s_unknown), dtype=torch.bool)])
            value = open_set_auroc(unknown_scores[keep], is_unknown[keep])
            auroc_by_shot[name] = None if math.isnan(value) else value
    else:
        metrics.update(many=math.nan, medium=math.nan, few=math.nan)
    by_score = {}
    for other in SCORES:
        if other == score:
            by_score[other] = metrics["auroc"]
        else:
            u = -torch.cat([known_score(kl, other), known_score(ul, other)])
            by_score[other] = open_set_auroc(u, is_unknown)
    details = {
        "score": score,
        "per_class": _nan_to_none(per_class),
        "auroc_by_score": {k: None if math.isnan(v) else v for k, v in by_score.items()},
        "score_histogram": _histogram(s_known, s_unknown, HISTOGRAM_BINS),
        "roc": _roc_on_grid(unknown_scores, is_unknown, ROC_GRID),
        "auroc_by_shot": auroc_by_shot,
        "num_known": len(s_known),
        "num_unknown": len(s_unknown),
    }
    return metrics, details


# --------------------------------------------------------------------------------------------------
# methods


@dataclass(frozen=True)
class OpenSetMethod(Method):
    """An open-set method: a training objective, a head, the score it thresholds.

    Attributes:
        objective: ``"ce"`` (linear head; the method's ``loss``: cross-entropy, logit-adjusted with
            a ``tau`` parameter, label-smoothed with ``label_smoothing``), ``"gcpl"``
            (:class:`longtail.heads.PrototypeHead`, :func:`longtail.losses.gcpl_loss`), ``"rpl"`` /
            ``"arpl"`` (:class:`longtail.heads.ReciprocalPointHead`, :func:`longtail.losses.rpl_loss`
            / :func:`longtail.losses.arpl_loss`).
        score: the thresholded score, one of :data:`SCORES`.
        confusing_samples: ARPL+CS: a generator and a discriminator trained with their own Adam
            optimisers in the same step (:mod:`longtail.gan`).
        strong_recipe: Vaze et al.'s closed-set recipe: ``passes`` passes over the data per epoch
            (a longer cosine schedule) and :func:`strong_augment` when ``strong_augment`` is true.

    Every open-set method finishes its stage with an evaluation-only run (:attr:`needs_stage`), so
    methods that differ only in their score share their training.
    """

    objective: str = "ce"
    score: str = "max-logit"
    confusing_samples: bool = False
    strong_recipe: bool = False

    def __post_init__(self) -> None:
        if self.objective not in _OBJECTIVES:
            raise ValueError(f"objective must be one of {_OBJECTIVES}, got {self.objective!r}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if self.confusing_samples and self.objective != "arpl":
            raise ValueError("confusing_samples needs the arpl objective (reciprocal points)")

    @property
    def needs_stage(self) -> bool:
        return True

    @property
    def head_kind(self) -> str:
        """``linear``, ``prototypes`` or ``reciprocal-points``."""
        return _HEADS[self.objective]

    def composition(self) -> dict[str, Any]:
        out = super().composition()
        out.update(
            head=self.head_kind,
            objective=self.objective,
            score=self.score,
            confusing_samples=self.confusing_samples,
            strong_recipe=self.strong_recipe,
        )
        return out

    def stage_identity(self, params: Mapping[str, Any]) -> dict[str, Any]:
        out = super().stage_identity(params)
        out.update(
            head=self.head_kind,
            objective=self.objective,
            confusing_samples=self.confusing_samples,
            strong_recipe=self.strong_recipe,
        )
        return out


def _closed_set_loss(z: Tensor, y: Tensor, ctx: LossContext) -> Tensor:
    """Cross-entropy of the ``ce`` objective: on ``z + tau log(prior)`` if the method has ``tau``,
    label-smoothed if it has ``label_smoothing``."""
    if "tau" in ctx.params:
        z = z + float(ctx.params["tau"]) * ctx.log_prior.to(z.dtype)
    return F.cross_entropy(z, y, label_smoothing=float(ctx.params.get("label_smoothing", 0.0)))


_MSP = (
    "Hendrycks and Gimpel, A Baseline for Detecting Misclassified and Out-of-Distribution Examples "
    "in Neural Networks, ICLR 2017"
)
_VAZE = "Vaze et al., Open-Set Recognition: a Good Closed-Set Classifier is All You Need, ICLR 2022"
_GCPL = "Yang et al., Robust Classification with Convolutional Prototype Learning, CVPR 2018"
_RPL = "Chen et al., Learning Open Set Network with Discriminative Reciprocal Points, ECCV 2020"
_ARPL = "Chen et al., Adversarial Reciprocal Points Learning for Open Set Recognition, TPAMI 2021"
_LA = "Menon et al., Long-Tail Learning via Logit Adjustment, ICLR 2021"

_TEMPERATURE = Param(
    1.0, low=0.0, low_open=True, help="temperature T of the cross-entropy on the distances"
)
_OPEN_WEIGHT = Param(0.1, low=0.0, help="weight lambda of the open-space term (official 0.1)")
_NUM_POINTS = Param(1, low=1, help="reciprocal points per class M")
_RECIPROCAL = {"num_points": _NUM_POINTS, "temperature": _TEMPERATURE, "open_weight": _OPEN_WEIGHT}
_ARPL_PARAMS = {**_RECIPROCAL, "margin": Param(1.0, low=0.0, help="margin of the radius term")}
_GCPL_PARAMS = {
    "num_prototypes": Param(1, low=1, help="prototypes per class M"),
    "temperature": _TEMPERATURE,
    "prototype_weight": Param(0.1, low=0.0, help="weight of the prototype loss (ARPL code: 0.1)"),
}
_CS_PARAMS = {
    "cs_weight": Param(
        0.1, low=0.0, help="weight beta of the confusing-sample loss (ARPL code: 0.1)"
    ),
    "gan_lr": Param(2e-4, low=0.0, low_open=True, help="Adam lr of generator and discriminator"),
    "noise_dim": Param(64, low=1, help="length of the generator's noise vectors"),
    "gan_width": Param(
        16, low=1, help="channels of the generator's last and the discriminator's first layer"
    ),
}
_STRONG_PARAMS = {
    "label_smoothing": Param(
        0.1, low=0.0, high=1.0, high_open=True, help="label smoothing of the cross-entropy"
    ),
    "passes": Param(
        2, low=1, help="passes over the training data per epoch (a longer cosine schedule)"
    ),
    "strong_augment": Param(True, help="random affine and cutout (strong_augment) every batch"),
}
_LA_TAU = {"tau": Param(1.0, low=0.0, help="logit adjustment of the training loss: + tau log pi")}


def _method(
    name: str,
    objective: str,
    score: str,
    description: str,
    paper: str,
    params: Mapping[str, Param] | None = None,
    *,
    la: bool = False,
    confusing_samples: bool = False,
    strong_recipe: bool = False,
) -> OpenSetMethod:
    loss_name = objective
    if confusing_samples:
        loss_name += "-cs"
    if strong_recipe:
        loss_name += "-strong"
    if la:
        loss_name += "-la"
    return OpenSetMethod(
        name=name,
        description=description,
        paper=paper + (f"; {_LA}" if la else ""),
        loss=_closed_set_loss,
        params={**(params or {}), **(_LA_TAU if la else {})},
        task="open-set",
        loss_name=loss_name,
        objective=objective,
        score=score,
        confusing_samples=confusing_samples,
        strong_recipe=strong_recipe,
    )


_OPEN_ALL = [
    _method(
        "softmax",
        "ce",
        "max-softmax",
        "cross-entropy; thresholds the maximum softmax probability (the classic baseline)",
        _MSP,
    ),
    _method(
        "mls",
        "ce",
        "max-logit",
        "the softmax stage (shared); thresholds the maximum logit",
        _VAZE,
    ),
    _method(
        "mls-strong",
        "ce",
        "max-logit",
        "Vaze et al.'s closed-set recipe scaled down: label smoothing 0.1, 2 passes per epoch "
        "(twice the cosine schedule), random affine + cutout; thresholds the maximum logit",
        _VAZE,
        _STRONG_PARAMS,
        strong_recipe=True,
    ),
    _method(
        "gcpl",
        "gcpl",
        "max-softmax",
        "one prototype per class, distance cross-entropy + 0.1 x prototype loss; thresholds the "
        "maximum softmax of minus the distances (the ARPL code's GCPL test)",
        _GCPL,
        _GCPL_PARAMS,
    ),
    _method(
        "rpl",
        "rpl",
        "max-softmax",
        "reciprocal points (M 1), CE on the distances + 0.1 (d_y - R)^2; thresholds the maximum "
        "softmax of the distances (the official test)",
        _RPL,
        _RECIPROCAL,
    ),
    _method(
        "arpl",
        "arpl",
        "max-logit",
        "reciprocal points, CE on d_l2 - d_dot + 0.1 max(0, d_y - R + 1); thresholds the maximum "
        "logit",
        _ARPL,
        _ARPL_PARAMS,
    ),
    _method(
        "arpl-cs",
        "arpl",
        "max-logit",
        "ARPL plus confusing samples: a generator (Adam, lr 2e-4) against a discriminator and the "
        "reciprocal points, the classifier also trained to be unsure on them (beta 0.1)",
        _ARPL,
        {**_ARPL_PARAMS, **_CS_PARAMS},
        confusing_samples=True,
    ),
    _method(
        "softmax-la",
        "ce",
        "max-softmax",
        "logit-adjusted cross-entropy (tau 1); thresholds the maximum softmax probability of f(x)",
        _MSP,
        la=True,
    ),
    _method(
        "mls-la",
        "ce",
        "max-logit",
        "the softmax-la stage (shared); thresholds the maximum logit of f(x)",
        _VAZE,
        la=True,
    ),
    _method(
        "rpl-la",
        "rpl",
        "max-softmax",
        "RPL with the logit-adjusted cross-entropy (d / T + tau log pi, tau 1)",
        _RPL,
        _RECIPROCAL,
        la=True,
    ),
    _method(
        "arpl-la",
        "arpl",
        "max-logit",
        "ARPL with the logit-adjusted cross-entropy (tau 1)",
        _ARPL,
        _ARPL_PARAMS,
        la=True,
    ),
]

#: Every registered open-set method, by name, in display order (``METHODS_BY_TASK["open-set"]``).
OPEN_SET_METHODS: dict[str, Method] = {m.name: m for m in _OPEN_ALL}


# --------------------------------------------------------------------------------------------------
# data


def check_open_set_splits(
    splits: Sequence[Sequence[int]], num_classes: int, dataset: str = "the data set"
) -> None:
    """Every split's known classes must lie in ``[0, num_classes)`` and leave an unknown class.

    (Duplicates, lengths and the seeds are checked with the config; see
    :class:`~longtail.engine.config.OpenSetConfig`.)

    Raises:
        ValueError: naming ``open_set.splits[i]``.
    """
    for i, known in enumerate(splits):
        key = f"open_set.splits[{i}]"
        bad = [c for c in known if not 0 <= c < num_classes]
        if bad:
            raise ValueError(
                f"{key}: class {bad[0]} is out of range: {dataset} has {num_classes} classes "
                f"(0-{num_classes - 1})"
            )
        if len(set(known)) >= num_classes:
            raise ValueError(
                f"{key}: lists all {num_classes} classes of {dataset} as known; no unknown class "
                "is left for the 'unknown' test split"
            )


def build_open_set_data(cfg: Config, seed: int) -> DataBundle:
    """The known / unknown data of split ``seed`` (see the module docstring).

    Returns a :class:`~longtail.engine.datasets.DataBundle` whose training and ``test`` tensors hold
    the known classes (relabelled ``0..K-1`` in the split's order, class names of the known
    classes), and whose ``extra_splits["unknown"]`` holds the unknown classes' test images with
    label ``-1``.

    Raises:
        ValueError: naming ``open_set.splits[i]`` (a class out of range, no unknown class left) or
            ``seeds`` (no split for this seed), or a data problem naming its config key.
    """
    from longtail.data import class_counts
    from longtail.engine.datasets import (
        _load_raw,
        _training_indices,
        standardise_images,
        validation_indices,
    )

    splits = (cfg.open_set or OpenSetConfig()).splits
    if not 0 <= seed < len(splits):
        raise ValueError(
            f"seeds: seed {seed} trains on open_set.splits[{seed}], but open_set.splits has "
            f"{len(splits)} entries (seed i uses split i)"
        )
    x_pool, y_pool, x_test, y_test, names = _load_raw(cfg.data)
    num_classes = len(names)
    check_open_set_splits(splits, num_classes, repr(cfg.data.dataset))
    known = list(splits[seed])
    k = len(known)
    relabel = torch.full((num_classes,), -1, dtype=torch.long)
    relabel[torch.tensor(known)] = torch.arange(k)
    y_pool_all = y_pool.long()
    y_pool, y_test = relabel[y_pool_all], relabel[y_test.long()]
    in_pool = y_pool >= 0
    x_other, y_other = x_pool[~in_pool], y_pool_all[~in_pool]
    x_pool, y_pool = x_pool[in_pool], y_pool[in_pool]
    idx, lt_counts = _training_indices(cfg.data, y_pool, k, balanced=False, seed=None)
    x_train, y_train = x_pool[idx], y_pool[idx]
    fraction = cfg.data.validation_fraction
    if fraction is not None:
        # known: a stratified share of the training subset; unknown: as many training images
        # per unknown class as the known classes give on average (the test set is not read)
        keep, held = validation_indices(y_train, fraction, cfg.data.subset_seed + 3)
        x_test, y_test = x_train[held], y_train[held]
        x_train, y_train = x_train[keep], y_train[keep]
        per_class = max(1, math.ceil(len(held) / k))
        gen = torch.Generator().manual_seed(cfg.data.subset_seed + 4)
        picks = []
        for c in torch.unique(y_other).tolist():
            members = torch.nonzero(y_other == c).flatten()
            picks.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
        chosen = torch.cat(picks).sort().values
        x_test = torch.cat([x_test, x_other[chosen]])
        y_test = torch.cat([y_test, torch.full((len(chosen),), -1, dtype=torch.long)])
    counts = [int(c) for c in class_counts(y_train, k)]
    if min(counts) == 0:
        raise ValueError(f"data: a known class has no training images (counts {counts})")
    x_train, x_test = standardise_images(x_train, x_test)
    is_known = y_test >= 0
    return DataBundle(
        name=cfg.data.dataset,
        train_x=x_train,
        train_y=y_train.contiguous(),
        test_x=x_test[is_known].contiguous(),
        test_y=y_test[is_known].contiguous(),
        class_names=[names[c] for c in known],
        class_counts=counts,
        group_counts=lt_counts,
        imbalance_factor=cfg.data.imbalance_factor,
        extra_splits={"unknown": (x_test[~is_known].contiguous(), y_test[~is_known].contiguous())},
        evaluated_on="test" if fraction is None else "validation",
    )


# --------------------------------------------------------------------------------------------------
# model, augmentation, task


class OpenSetNet(nn.Module):
    """``backbone`` (features) and an open-set ``head``: ``forward(x)`` returns the logits;
    ``forward(x, return_features=True)`` returns ``(features, logits)`` (one call, so a
    DDP-wrapped model stays a single forward)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor, return_features: bool = False) -> Any:
        features = self.backbone(x)
        logits = self.head(features)
        return (features, logits) if return_features else logits


def strong_augment(
    x: Tensor,
    *,
    max_rotation: float = 8.0,
    max_shear: float = 0.08,
    max_translate: float = 0.1,
    scale: tuple[float, float] = (0.9, 1.1),
    cutout_prob: float = 0.5,
    cutout_size: float = 0.3,
) -> Tensor:
    """A batch of images ``(N, C, H, W)`` under a random affine map and cutout (Vaze et al.'s
    "stronger augmentation", a tensor stand-in for RandAugment at their MNIST magnitude 8/30).

    Each image gets its own rotation (up to ``max_rotation`` degrees), shear (``max_shear``),
    scaling (``scale``) and translation (``max_translate`` of the side), resampled bilinearly with
    the border's value (the background); then, with probability ``cutout_prob``, a square of side
    ``cutout_size`` of the image's side at a random centre is set to the image's minimum (the
    background of standardised images). Draws from the global RNG (re-seeded by the trainer every
    epoch, so runs stay reproducible and resumable); runs on ``x``'s device. Other shapes pass
    unchanged.
    """
    if x.ndim != 4 or x.shape[0] == 0:
        return x
    n, _, h, w = x.shape
    r = torch.rand(n, 7, dtype=torch.float32)
    angle = (2 * r[:, 0] - 1) * math.radians(max_rotation)
    shear = (2 * r[:, 1] - 1) * max_shear
    s = scale[0] + (scale[1] - scale[0]) * r[:, 2]
    tx, ty = (2 * r[:, 3] - 1) * 2 * max_translate, (2 * r[:, 4] - 1) * 2 * max_translate
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack(
        [
            torch.stack([cos, -sin + shear * cos, tx], dim=1),
            torch.stack([sin, cos + shear * sin, ty], dim=1),
        ],
        dim=1,
    ).to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cutout_prob > 0 and cutout_size > 0:
        half_h, half_w = cutout_size * h / 2, cutout_size * w / 2
        cy, cx = (r[:, 5] * h).to(x.device), (r[:, 6] * w).to(x.device)
        rows = torch.arange(h, device=x.device, dtype=torch.float32).view(1, h, 1)
        cols = torch.arange(w, device=x.device, dtype=torch.float32).view(1, 1, w)
        inside = ((rows - cy.view(n, 1, 1)).abs() < half_h) & (
            (cols - cx.view(n, 1, 1)).abs() < half_w
        )
        apply = (torch.rand(n) < cutout_prob).to(x.device).view(n, 1, 1)
        fill = out.amin(dim=(1, 2, 3), keepdim=True)
        out = torch.where((inside & apply).unsqueeze(1), fill, out)
    return out


@contextlib.contextmanager
def _batch_norm_eval(model: nn.Module) -> Iterator[None]:
    """Batch norm of ``model`` in evaluation mode inside the block: generated samples pass the
    classifier with its running statistics, which they leave unchanged (the ARPL code gives them
    their own batch norm instead)."""
    bns = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
    ]
    for m in bns:
        m.eval()
    try:
        yield
    finally:
        for m in bns:
            m.train()


def _unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", None)
    return inner if isinstance(model, nn.parallel.DistributedDataParallel) and inner else model


def open_set_finish_config(cfg: Config, method: Method, params: Mapping[str, Any]) -> Config:
    """The finishing run of an open-set method: no training (``train.epochs`` 0), its evaluation."""
    train = dataclasses.replace(cfg.train, epochs=0, warmup_epochs=0)
    return dataclasses.replace(cfg, train=train)


class OpenSetTask(Task):
    """Train an :class:`OpenSetMethod` on the known classes; evaluate known vs unknown test images.

    Without ``stage_state`` the task trains the method (its stage): the backbone and head with SGD
    (the head's points, radius or prototypes in a group without weight decay) and, for ARPL+CS, a
    generator and a discriminator with Adam (betas 0.5, 0.999; constant lr), three updates per batch:
    discriminator, generator, classifier. With ``stage_state`` (the stage's final weights) nothing is
    trained: the finishing run evaluates with the method's score (see
    :func:`open_set_finish_config`).
    """

    kind = "open-set"
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
        self.method: OpenSetMethod = method
        self.data = data
        self.config = config
        self.params = method.resolve_params(params)
        self.criterion = method.build_criterion(
            data.class_counts, total_epochs=max(config.train.epochs, 1), params=self.params
        )
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
        from longtail.engine.models import build_backbone
        from longtail.heads import PrototypeHead, ReciprocalPointHead

        m = self.config.model
        backbone = build_backbone(
            m.arch,
            self.data.input_shape,
            hidden=m.hidden,
            channels=m.channels,
            dropout=m.dropout,
            convs_per_stage=m.convs_per_stage,
        )
        d, c = int(backbone.feature_dim), self.data.num_classes  # type: ignore[arg-type]
        head: nn.Module
        objective = self.method.objective
        if objective == "ce":
            head = nn.Linear(d, c)
        elif objective == "gcpl":
            head = PrototypeHead(d, c, num_prototypes=int(self.params["num_prototypes"]))
        else:
            head = ReciprocalPointHead(
                d, c, num_points=int(self.params["num_points"]), kind=objective
            )
        return OpenSetNet(backbone, head)

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
            from longtail.gan import ConfusingSampleGenerator, SampleDiscriminator

            shape = self.data.input_shape
            if len(shape) != 3 or shape[1] % 4 or shape[2] % 4:
                raise ValueError(
                    f"method {self.method.name!r}: the confusing-sample generator makes images "
                    f"(C, H, W) with H and W divisible by 4; the inputs have shape {shape}"
                )
            x = self.data.train_x
            width = int(self.params["gan_width"])
            gen = ConfusingSampleGenerator(
                shape,
                noise_dim=int(self.params["noise_dim"]),
                width=width,
                low=float(x.min()),
                high=float(x.max()),
            )
            disc = SampleDiscriminator(shape, width=width)
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
        from longtail.data import InstanceBalancedSampler

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
        from longtail.losses import arpl_loss, gcpl_loss, rpl_loss, value_checks

        objective = self.method.objective
        if objective == "ce":
            logits = model(x)
            return self.criterion(logits, y, epoch), logits
        features, logits = model(x, return_features=True)
        head: Any = _unwrap(model).head
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
        from longtail.losses import confusing_sample_loss

        gen, disc = self.gen, self.disc
        assert gen is not None and disc is not None
        gen_local, disc_local, model_local = _unwrap(gen), _unwrap(disc), _unwrap(model)
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
            with _batch_norm_eval(model_local):
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
            with _batch_norm_eval(model_local):
                features, _ = model_local(fake, return_features=True)
            total = loss + beta * confusing_sample_loss(features, points)
            return StepOutput(loss=total, logits=logits.detach(), targets=y)

        return [
            Update("disc", disc_step),
            Update("gen", gen_step),
            Update("model", classifier_step),
        ]

    # ---------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, model: nn.Module, splits: Mapping[str, Iterable[Batch]]) -> Evaluation:
        was_training = model.training
        model.eval()
        c = self.data.num_classes

        def logits_of(name: str) -> tuple[Tensor, Tensor]:
            zs, ys = [], []
            for b in splits.get(name, ()):
                zs.append(model(b.x).float())
                ys.append(b.y)
            device = zs[0].device if zs else torch.device("cpu")
            z = torch.cat(zs) if zs else torch.zeros(0, c, device=device)
            y = torch.cat(ys) if ys else torch.zeros(0, dtype=torch.long, device=device)
            return D.all_gather_cat(z).cpu(), D.all_gather_cat(y).cpu()

        known_logits, known_y = logits_of("test")
        unknown_logits, _ = logits_of("unknown")
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
