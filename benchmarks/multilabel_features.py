"""Why a one-vs-rest logistic regression beat longtail on the text sets: controlled variants.

Each row changes one thing against its neighbours, everything else fixed: the model (scikit-learn's
``OneVsRestClassifier(LogisticRegression())``, longtail's ``bce`` with the MLP of the shipped
multi-label configs, or with ``model.arch: linear``), the feature scaling
(:func:`longtail.engine.datasets.scale_features`: ``standard``, ``maxabs``, ``none``) and the step
(:class:`Variant`: the shipped recipe, its learning rate times the number of labels, or scikit-learn's
objective). Every choice is made on a **validation split of the training file**
(``--val-fraction`` of the rows, drawn by :func:`longtail.engine.datasets.validation_indices` with
``--split-seed``): the scaling statistics are fitted on the remaining rows only, and the test file is
not read. ``--test`` adds, for the rows named in ``--test-rows``, the test mAP of the same variant
trained on the whole training file (reported separately, for the final report only).

Labels without a positive in the fitted rows are dropped for every variant (they cannot be learned
and scikit-learn refuses them); mAP is :func:`longtail.metrics.mean_average_precision` (the mean
over the labels with at least one positive in the scored rows), the metric of ``longtail bench``.
The longtail rows train through the engine's :class:`~longtail.engine.trainer.Trainer` (the loop of
``longtail bench``), one thread, and are the mean over ``--seeds``; scikit-learn's fit is
deterministic.

The recipe (:data:`RECIPE`) is that of ``configs/multilabel_scene.yaml`` / ``multilabel_yeast.yaml``
when the issue was filed: MLP with one hidden layer of 256, SGD with momentum 0.9, 40 epochs, batch
64, lr 0.05 with cosine decay, weight decay 5e-4.

Usage (about 4 minutes on one core; docs/results.md, "Multi-label: why the baseline won on text
sets")::

    python benchmarks/multilabel_features.py --data-dir ../shared/data/multilabel \\
        --sets enron,scene,yeast --seeds 0,1,2 --test --markdown runs/multilabel_features.md
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from longtail.data import load_mulan
from longtail.engine.config import config_from_dict
from longtail.engine.datasets import DataBundle, scale_features, validation_indices
from longtail.engine.trainer import Trainer
from longtail.metrics import average_precision, mean_average_precision
from longtail.tracks.multi_label import MULTILABEL_METHODS
from longtail.tracks.multi_label.task import MultiLabelTask

#: The shipped multi-label recipe when the issue was filed (configs/multilabel_scene.yaml).
RECIPE: dict[str, Any] = {
    "model": {"arch": "mlp", "hidden": [256], "dropout": 0.0},
    "train": {
        "epochs": 40,
        "batch_size": 64,
        "lr": 0.05,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "cosine",
        "eval_every": 0,
        "num_threads": 1,
    },
}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row: ``model`` is ``sklearn``, ``mlp`` or ``linear``; ``step``: ``shipped`` (the
    recipe), ``lr x L`` (lr times the number of labels L: the step of a loss summed over the labels
    instead of averaged), ``wd 0`` (the recipe without weight decay) or ``sklearn`` (lr x L, weight
    decay ``1 / (N L)``, i.e. the L2 penalty of ``LogisticRegression(C=1)`` on N rows in this loss's
    units, 200 epochs)."""

    name: str
    model: str
    scaling: str
    step: str = "shipped"


VARIANTS = (
    Variant("(a) sklearn LR, raw", "sklearn", "none"),
    Variant("(b) sklearn LR, standard", "sklearn", "standard"),
    Variant("(b) sklearn LR, maxabs", "sklearn", "maxabs"),
    Variant("(c) bce MLP, shipped recipe, standard (today)", "mlp", "standard"),
    Variant("(c) bce MLP, shipped recipe, maxabs", "mlp", "maxabs"),
    Variant("(c) bce MLP, shipped recipe, raw", "mlp", "none"),
    Variant("(d) bce linear, shipped recipe, standard", "linear", "standard"),
    Variant("(d) bce linear, shipped recipe, maxabs", "linear", "maxabs"),
    Variant(
        "(d) bce linear, shipped recipe without weight decay, maxabs", "linear", "maxabs", "wd 0"
    ),
    Variant("(e) bce MLP, lr x L, standard", "mlp", "standard", "lr x L"),
    Variant("(e) bce MLP, lr x L, maxabs", "mlp", "maxabs", "lr x L"),
    Variant("(f) bce linear, sklearn's objective, standard", "linear", "standard", "sklearn"),
    Variant("(f) bce linear, sklearn's objective, maxabs", "linear", "maxabs", "sklearn"),
)


def _split(
    x: Tensor, y: Tensor, x_eval: Tensor, y_eval: Tensor, scaling: str
) -> tuple[Tensor, Tensor, Tensor, Tensor, str]:
    """Scale with the fitted rows' statistics; keep the labels with a positive in them."""
    keep = (y == 1).sum(0) > 0
    scaled = scale_features(x, x_eval, scaling)
    return scaled.train, y[:, keep], scaled.test, y_eval[:, keep], scaled.scaling


def _sklearn_map(x: Tensor, y: Tensor, x_eval: Tensor, y_eval: Tensor) -> float:
    # scikit-learn (and its threadpoolctl) is an optional dependency (the `cli` extra)
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from threadpoolctl import threadpool_limits

    # one BLAS thread, as the longtail rows: on a shared machine more threads are much slower
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # lbfgs convergence notes on unscaled features
        clf = OneVsRestClassifier(LogisticRegression(max_iter=1000)).fit(x.numpy(), y.numpy())
    scores = torch.as_tensor(clf.decision_function(x_eval.numpy()))
    return mean_average_precision(scores, y_eval.long())


def _engine_scores(
    v: Variant, x: Tensor, y: Tensor, x_eval: Tensor, y_eval: Tensor, seed: int
) -> Tensor:
    """The trained model's scores on ``x_eval``."""
    counts = [int(c) for c in (y == 1).sum(0)]
    names = [f"label {j}" for j in range(y.shape[1])]
    data = DataBundle("mulan", x, y, x_eval, y_eval, names, counts, counts, None)
    train = dict(RECIPE["train"])
    n, num_labels = y.shape
    if v.step in ("lr x L", "sklearn"):
        # the loss is the mean over the N x L entries: each label's gradient is 1/L of its own
        # BCE's; lr x L restores the step of a per-label fit
        train["lr"] = train["lr"] * num_labels
    if v.step == "wd 0":
        train["weight_decay"] = 0.0
    if v.step == "sklearn":
        # LogisticRegression(C=1) minimises sum_i loss_i + |w|^2 / 2 per label, i.e. mean_i loss_i
        # + |w|^2 / (2 N); in units of the label-averaged loss that is weight decay 1 / (N L)
        train["weight_decay"] = 1.0 / (n * num_labels)
        train["epochs"] = 200
    cfg = config_from_dict(
        {
            "task": "multi-label",
            "data": {"dataset": "mulan", "data_dir": ".", "imbalance_factor": None},
            "model": {**RECIPE["model"], "arch": v.model},
            "train": train,
        }
    )
    task = MultiLabelTask(MULTILABEL_METHODS["bce"], data, cfg)
    result = Trainer(task, data, cfg, seed=seed).fit()
    assert result is not None
    model = task.build_model()
    model.load_state_dict(result.model_state)
    model.eval()
    with torch.no_grad():
        return model(x_eval).float()


def score(
    v: Variant, x: Tensor, y: Tensor, x_eval: Tensor, y_eval: Tensor, seeds: list[int]
) -> tuple[float, float, str]:
    """``(mean mAP, sample std over seeds, scaling)`` of variant ``v`` fitted on ``(x, y)``."""
    xs, ys, xe, ye, scaling = _split(x, y, x_eval, y_eval, v.scaling)
    if v.model == "sklearn":
        return _sklearn_map(xs, ys, xe, ye), 0.0, scaling
    values = [
        mean_average_precision(_engine_scores(v, xs, ys, xe, ye, s), ye.long()) for s in seeds
    ]
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0, scaling


def label_dilution(
    x: Tensor, y: Tensor, x_eval: Tensor, y_eval: Tensor, k: int, seeds: list[int]
) -> list[str]:
    """Table rows: the AP of the ``k`` labels with the most positives, trained with the shipped
    MLP recipe among all labels or alone (the loss then averages over ``k`` labels, not ``L``)."""
    y, y_eval = y[:, (y == 1).sum(0) > 0], y_eval[:, (y == 1).sum(0) > 0]
    top = torch.argsort((y == 1).sum(0), descending=True, stable=True)[:k]
    rows = []
    for scaling in ("standard", "maxabs"):
        xs, xe, _ = scale_features(x, x_eval, scaling)
        cells = []
        for labels in (torch.arange(y.shape[1]), top):
            aps = []
            for seed in seeds:
                v = Variant("dilution", "mlp", "none")  # already scaled
                scores = _engine_scores(v, xs, y[:, labels], xe, y_eval[:, labels], seed)
                ap = average_precision(scores, y_eval[:, labels].long())
                aps.append(float(ap[torch.isin(labels, top)].nanmean()))
            cells.append(f"{100 * statistics.mean(aps):.1f}")
        rows.append(f"| {scaling} | {cells[0]} | {cells[1]} |")
    return rows


def _cell(mean: float, std: float, model: str) -> str:
    return f"{100 * mean:.1f}" if model == "sklearn" else f"{100 * mean:.1f} ± {100 * std:.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="../shared/data/multilabel")
    p.add_argument("--sets", default="enron,scene,yeast")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--only", help="';'-separated variant name prefixes, e.g. '(a);(d)'")
    p.add_argument("--test", action="store_true", help="also the test mAP of --test-rows")
    p.add_argument(
        "--test-rows",
        default="(a) sklearn LR, raw;(c) bce MLP, shipped recipe, standard (today);"
        "(c) bce MLP, shipped recipe, maxabs;(e) bce MLP, lr x L, maxabs;"
        "(f) bce linear, sklearn's objective, maxabs",
        help="';'-separated variant names scored on the test file with --test",
    )
    p.add_argument(
        "--dilution",
        type=int,
        default=6,
        help="the first set's K most frequent labels trained alone vs among all (0: skip)",
    )
    p.add_argument("--markdown", help="also write the tables to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    sets = args.sets.split(",")
    variants = [
        v
        for v in VARIANTS
        if not args.only or any(v.name.startswith(o) for o in args.only.split(";"))
    ]
    loaded = {}
    header = "| variant | " + " | ".join(sets) + " |"
    lines = [
        f"Validation mAP (%), {args.val_fraction:g} of each training file held out (seed "
        f"{args.split_seed}); longtail rows: mean ± std over seeds "
        f"{args.seeds}.",
        "",
        header,
        "|---|" + "---:|" * len(sets),
    ]
    notes = []
    for name in sets:
        train, test = load_mulan(Path(args.data_dir).expanduser() / name)
        keep, held = validation_indices(train.targets, args.val_fraction, args.split_seed)
        loaded[name] = (train, test, keep, held)
        y_fit = train.targets[keep]
        notes.append(
            f"{name}: {len(keep)} fitted / {len(held)} validation rows, "
            f"{int(((y_fit == 1).sum(0) > 0).sum())} of {train.targets.shape[1]} labels with a "
            f"positive in the fitted rows, auto scaling: "
            f"{scale_features(train.data[keep], train.data[held]).scaling}"
        )
        print(notes[-1], file=sys.stderr)
    cells: dict[str, dict[str, str]] = {v.name: {} for v in variants}
    for v in variants:
        for name in sets:
            train, _, keep, held = loaded[name]
            t0 = time.perf_counter()
            mean, std, _ = score(
                v,
                train.data[keep],
                train.targets[keep],
                train.data[held],
                train.targets[held],
                seeds,
            )
            cells[v.name][name] = _cell(mean, std, v.model)
            print(
                f"{v.name} / {name}: {cells[v.name][name]} ({time.perf_counter() - t0:.0f} s)",
                file=sys.stderr,
            )
        lines.append(f"| {v.name} | " + " | ".join(cells[v.name][n] for n in sets) + " |")
    lines += ["", *notes]
    if args.dilution:
        train, _, keep, held = loaded[sets[0]]
        lines += [
            "",
            f"{sets[0]}: validation AP (%) of the {args.dilution} labels with the most positives, "
            "shipped MLP recipe, mean over seeds.",
            "",
            "| scaling | trained among all labels | trained alone |",
            "|---|---:|---:|",
            *label_dilution(
                train.data[keep],
                train.targets[keep],
                train.data[held],
                train.targets[held],
                args.dilution,
                seeds,
            ),
        ]
        print("\n".join(lines[-2:]), file=sys.stderr)
    if args.test:
        lines += [
            "",
            "**Test mAP (%)**, trained on the whole training file (for the final report only; "
            "nothing above was chosen with it).",
            "",
            header,
            "|---|" + "---:|" * len(sets),
        ]
        by_name = {v.name: v for v in VARIANTS}
        for row in args.test_rows.split(";"):
            v = by_name[row]
            out = []
            for name in sets:
                train, test, _, _ = loaded[name]
                mean, std, _ = score(v, train.data, train.targets, test.data, test.targets, seeds)
                out.append(_cell(mean, std, v.model))
                print(f"test {v.name} / {name}: {out[-1]}", file=sys.stderr)
            lines.append(f"| {v.name} | " + " | ".join(out) + " |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
