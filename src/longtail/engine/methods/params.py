"""The hyper-parameters each composition key brings to a :class:`~longtail.engine.methods.Method`.

Deferred re-weighting (``DRW_PARAMS``), the samplers (deferred re-sampling, the power sampler,
SMOTE, repeat-factor sampling), SLA, input mixing (mixup, Remix, CMO), the post-hoc steps and the
second stages (cRT, LWS, weight balancing, M2m): each a :class:`~longtail.engine.methods.Param` with
its default, valid range and the :class:`~longtail.engine.methods.Space` ``longtail tune`` searches.
:func:`~longtail.engine.methods.compose` gathers the ones a composition uses.
"""

from __future__ import annotations

from longtail.engine.methods.method import Param, Space

__all__ = [
    "BETA_CHOICES",
    "DRS_PARAMS",
    "DRW_PARAMS",
    "MIX_PARAMS",
    "POSTHOC_PARAMS",
    "POWER_PARAMS",
    "RFS_PARAMS",
    "SLA_PARAMS",
    "SMOTE_PARAMS",
    "STAGE2_PARAMS",
]

#: Effective-number betas as Cui et al. sweep them (a log scale of 1 - beta, as choices).
BETA_CHOICES = Space(scale="choice", choices=(0.9, 0.99, 0.999, 0.9999, 0.99999))

DRW_PARAMS = {
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
DRS_PARAMS = {
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
POWER_PARAMS = {
    "sampler_q": Param(
        0.5,
        low=0.0,
        high=1.0,
        help="class drawn with probability ~ n_c^q (0 class-balanced, 0.5 square root)",
        space=Space(0.0, 1.0),
    ),
}
SMOTE_PARAMS = {
    "smote_k_neighbors": Param(
        5,
        low=1,
        help="nearest same-class neighbours SMOTE interpolates towards (Chawla et al.: 5)",
        space=Space(1, 10, "int"),
    ),
}
SLA_PARAMS = {
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


RFS_PARAMS = {
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
MIX_PARAMS: dict[str, dict[str, Param]] = {
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
    # CMO (Park et al., CVPR 2022; the official naver-ai/cmo defaults: beta 1, mixup_prob 0.5,
    # weighted_alpha 1, CutMix on the epochs 4..196 of 200)
    "cmo": {
        "mix_alpha": _MIX_ALPHA,
        "cmo_prob": Param(
            0.5,
            low=0.0,
            high=1.0,
            low_open=True,
            help="probability that a batch gets a pasted box",
            space=Space(0.1, 1.0),
        ),
        "cmo_weight_power": Param(
            1.0,
            low=0.0,
            help="pasted images drawn with weight n_c^(-p) each (1: every class equally likely)",
            space=Space(0.0, 2.0),
        ),
        "cmo_start_fraction": Param(
            0.02,
            low=0.0,
            high=1.0,
            help="fraction of the epochs before the pasting starts",
            space=Space(0.0, 0.5),
        ),
        "cmo_end_fraction": Param(
            0.015,
            low=0.0,
            high=1.0,
            help="fraction of the last epochs without pasting",
            space=Space(0.0, 0.5),
        ),
    },
}
POSTHOC_PARAMS: dict[str, dict[str, Param]] = {
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

STAGE2_PARAMS: dict[str, dict[str, Param]] = {
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
