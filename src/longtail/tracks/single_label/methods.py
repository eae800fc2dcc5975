"""The single-label presets: the papers' recipes, each a composition of registered components.

A preset added here (``METHODS.register(name, compose(...))``, or a hand-written
:class:`~longtail.engine.methods.Method`) is listed by ``longtail methods``, runs from configs and
is trained end to end by the contract tests (tests/test_engine_stages.py) without new test code.
"""

from __future__ import annotations

import functools
from typing import Any

from longtail.engine.methods import Method, Vocabulary, compose
from longtail.registry import Registry
from longtail.tracks.single_label.losses import LOSS_COMPONENTS, SAMPLERS

__all__ = ["METHODS", "VOCABULARY"]

#: What single-label recipes compose: every loss component, sampler and composition key.
VOCABULARY = Vocabulary(LOSS_COMPONENTS, SAMPLERS)

_compose: Any = functools.partial(compose, task="single-label", vocabulary=VOCABULARY)

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
_CMO = "Park et al., The Majority Can Help the Minority: Context-rich Minority Oversampling for Long-tailed Classification, CVPR 2022"
_BS = "Ren et al., Balanced Meta-Softmax for Long-Tailed Visual Recognition, NeurIPS 2020"
_SLA = "Lee et al., Self-supervised Label Augmentation via Input Transformations, ICML 2020"

_ALL = [
    _compose(
        "erm",
        description="cross-entropy on the imbalanced data, instance-balanced sampling (the baseline)",
        paper="Vapnik, Principles of Risk Minimization for Learning Theory, NIPS 1991",
    ),
    _compose(
        "cb-resample",
        description="cross-entropy with class-balanced re-sampling (every class equally likely per draw)",
        paper=_DECOUPLE,
        sampler="class-balanced",
    ),
    _compose(
        "sqrt-resample",
        description="cross-entropy with square-root re-sampling (class drawn with probability ~ sqrt(n_c))",
        paper="Mahajan et al., Exploring the Limits of Weakly Supervised Pretraining, ECCV 2018; "
        + _DECOUPLE,
        sampler="sqrt",
    ),
    _compose(
        "inv-freq",
        loss="inv-freq",
        description="cross-entropy re-weighted by inverse class frequency (weights sum to C)",
        paper="Huang et al., Learning Deep Representation for Imbalanced Classification, CVPR 2016",
    ),
    _compose(
        "cb-softmax",
        loss="cb-softmax",
        description="softmax cross-entropy re-weighted by the inverse effective number of samples",
        paper=_CB,
    ),
    _compose(
        "cb-focal",
        loss="cb-focal",
        description="class-balanced (sigmoid) focal loss, beta 0.9999, gamma 1 (from the paper's grid); "
        "classifier bias initialised to the prior -log(C - 1)",
        paper=_CB,
    ),
    _compose(
        "focal",
        loss="focal",
        description="softmax focal loss -(1 - p_y)^gamma log p_y, gamma 2 (the paper's default)",
        paper="Lin et al., Focal Loss for Dense Object Detection, ICCV 2017",
    ),
    _compose(
        "drw",
        drw=True,
        description="cross-entropy, class-balanced weights (beta 0.9999) for the last 20% of epochs",
        paper=_LDAM,
    ),
    _compose(
        "ldam-drw",
        loss="ldam",
        drw=True,
        description="label-distribution-aware margins (max 0.5, scale 30) on a cosine head, with DRW",
        paper=_LDAM,
    ),
    _compose(
        "la-loss",
        loss="la",
        description="logit-adjusted cross-entropy on f(x) + tau log(prior), tau 1; predicts with f(x)",
        paper=_LA,
    ),
    _compose(
        "la-posthoc",
        posthoc="logit-adjust",
        description="the ERM stage; predicts argmax f(x) - tau log(prior) at test time, tau 1",
        paper=_LA,
    ),
    _compose(
        "tau-norm",
        posthoc="tau-norm",
        description="the ERM stage; classifier rows divided by their norm^tau (tau 1, bias dropped)",
        paper=_DECOUPLE,
    ),
    _compose(
        "balanced-softmax",
        loss="balanced-softmax",
        description="softmax cross-entropy on f(x) + log(prior) (the LA loss with tau 1)",
        paper=_BS,
    ),
    _compose(
        "el",
        loss="el",
        description="encouraging loss: CE plus a conservative bonus log(1 - p_y), log end 0.75",
        paper=_EL,
    ),
    _compose(
        "el-drw",
        loss="el",
        drw=True,
        description="encouraging loss with deferred class-balanced re-weighting (last 20% of epochs)",
        paper=_EL + "; " + _LDAM,
    ),
    _compose(
        "el-la",
        loss="el-la",
        description="encouraging loss on logit-adjusted logits f(x) + tau log(prior), tau 1",
        paper=_EL + "; " + _LA,
    ),
    _compose(
        "crt",
        second_stage="crt",
        description="the ERM stage; features and BatchNorm frozen, linear classifier re-initialised "
        "and re-trained with class-balanced sampling (10% of the epochs)",
        paper=_DECOUPLE,
    ),
    _compose(
        "lws",
        second_stage="lws",
        description="the ERM stage; features and classifier frozen, one learnable scale per class "
        "trained with class-balanced sampling (10% of the epochs)",
        paper=_DECOUPLE,
    ),
    _compose(
        "weight-balancing",
        second_stage="wb",
        description="stage 1 cross-entropy with weight decay 5e-3; stage 2 the classifier with the "
        "class-balanced loss, weight decay and a MaxNorm projection after every step",
        paper=_WB,
    ),
    _compose(
        "mixup-drw",
        mix="mixup",
        drw=True,
        description="mixup (alpha 1) of inputs and labels, class-balanced DRW weights in the last 20% "
        "of epochs",
        paper=_TRICKS,
    ),
    _compose(
        "remix-drw",
        mix="remix",
        drw=True,
        description="mixup inputs with labels leaning to the minority class (kappa 3, tau 0.5), "
        "class-balanced DRW weights in the last 20% of epochs",
        paper=_REMIX + "; " + _TRICKS,
    ),
    _compose(
        "cmo-drw",
        mix="cmo",
        drw=True,
        description="CMO: half the batches get a box (CutMix, Beta(1, 1)) of class-balanced drawn "
        "images pasted on, labels mixed by area (from 2% to 98.5% of the epochs); class-balanced "
        "DRW weights in the last 20% of epochs",
        paper=_CMO + "; " + _LDAM,
    ),
    _compose(
        "bs-cmo",
        loss="balanced-softmax",
        mix="cmo",
        description="balanced softmax (cross-entropy on f(x) + log(prior)) with CMO's pasted "
        "boxes of class-balanced drawn images (half the batches, Beta(1, 1))",
        paper=_CMO + "; " + _BS,
    ),
    _compose(
        "sla",
        sla="joint",
        description="self-supervised label augmentation: one head over (class, rotation) pairs, "
        "cross-entropy on the 4 rotated copies; aggregated inference (mean joint logit over the "
        "copies; inference si | ag | sd)",
        paper=_SLA,
    ),
    _compose(
        "sla-mt",
        sla="mt",
        description="SLA's multi-task baseline: a class head and a rotation head on shared features, "
        "cross-entropy on the 4 rotated copies",
        paper=_SLA,
    ),
    _compose(
        "sla-da",
        sla="da",
        description="SLA's data-augmentation baseline: every rotated copy labelled with its class",
        paper=_SLA,
    ),
    _compose(
        "m2m",
        second_stage="m2m",
        description="major-to-minor translation: g is the ERM stage; f trained from scratch with "
        "cross-entropy, from 80% of the epochs class-balanced over-sampling with minority slots "
        "replaced by majority samples translated by 10 steps against g",
        paper=_M2M_PAPER,
    ),
    _compose(
        "m2m-ldam-drw",
        second_stage="m2m",
        defaults={"m2m_f_method": "ldam-drw", "m2m_oversample": False},
        description="M2m with f trained by LDAM-DRW (cosine head, margins, deferred re-weighting) on "
        "instance-balanced batches (DRW re-balances; no over-sampling on top); g the ERM stage",
        paper=_M2M_PAPER,
    ),
    _compose(
        "drs",
        sampler="drs",
        description="cross-entropy; instance-balanced sampling, then class-balanced re-sampling for "
        "the last 20% of epochs (deferred re-sampling)",
        paper="Cao et al., Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss, "
        "NeurIPS 2019",
    ),
    _compose(
        "smote",
        sampler="smote",
        description="cross-entropy on the training set over-sampled by SMOTE (imbalanced-learn, "
        "5 neighbours, on flattened inputs) to n_max examples per class",
        paper="Chawla et al., SMOTE: Synthetic Minority Over-sampling Technique, JAIR 2002",
    ),
]

#: Every registered single-label method, by name, in display order.
METHODS: Registry[Method] = Registry("single-label method")
for _m in _ALL:
    METHODS.register(_m.name, _m)
