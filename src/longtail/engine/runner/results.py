"""``results.json``: the per-run results of a benchmark aggregated over seeds.

``results.json``::

    {"dataset": str, "task": str (a registered task kind: single-label, multi-label, ...),
     "imbalance_factor": float | null,
     "class_counts": [int], "class_names": [str], "num_train": int, "num_test": int,
     "methods": {NAME: {"seeds": [int], "train_seconds": float,
                        "metrics": {METRIC: {"mean": float, "std": float, "values": [float]}}}}}

Multi-label runs: ``class_counts`` are each label's visible positive training examples and the
metrics are ``mAP``, ``CF1``, ``OF1`` and ``tail_mAP``, plus ``CF1_tuned`` / ``OF1_tuned`` on a
validation split (see :mod:`longtail.tracks.multi_label.task`); ``data_details`` records the
labels without a training positive, the labels dropped (``data.min_label_positives``) and the
labels scored (with a positive in the evaluated split; see :mod:`longtail.tracks.multi_label.data`).
A spec with ``"optional": true`` is a metric only some runs report.
Open-set runs: seed ``i`` trains on ``open_set.splits[i]`` (the data are built per seed),
``class_counts`` / ``class_names`` are the first seed's known classes, the metrics are AUROC,
AUPR-in / -out, OSCR, closed-set and many / medium / few accuracy, and each method's
``composition.score`` names the score it thresholds (see :mod:`longtail.tracks.open_set.task`).
``train_seconds`` is the mean over seeds of the training wall-clock time of one run; ``std`` is the
sample standard deviation over seeds (0 for one seed); metric values are fractions in [0, 1]
(``null`` where undefined). A method whose run trained another method's function in some seeds
(M2m that accepted no translation, a deferred schedule that does not defer, a second stage of 0
epochs; the task kind's :attr:`~longtail.engine.kinds.TaskKind.degenerate`) has
``"degenerate": [{"equals": NAME or null, "why": str, "seeds": [int]}]``, from each seed's
``result.json`` (``"degenerate": {"equals", "why", "measured"}`` or ``null``); the table footnotes it.
A ``balanced`` entry, when configured, is ``erm`` trained on the same
number of images spread evenly over the classes. A ``sklearn-logreg`` entry
(``data.sklearn_reference``) is the task's scikit-learn logistic regression on the same training
split and features, scored by the same metric code; it has no ``composition`` or ``params``, and
the top-level ``sklearn_reference`` says what it is: ``{"method", "estimator", "settings" (C,
solver, max_iter...), "features", "feature_scaling", "fitted", "seeds"}`` (see
:mod:`~longtail.engine.runner.reference`). ``earlier_runs`` (only after an additive ``--resume``):
``{NAME: [seed]}``, the entries' seeds read from earlier runs in the folder that the command did not
ask for (:mod:`~longtail.engine.runner.earlier`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from longtail.engine.tasks import MetricSpec

__all__ = ["aggregate", "degenerate_groups", "finite_or_none"]


def finite_or_none(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _stats(values: Sequence[float | None]) -> dict[str, Any]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"mean": None, "std": None, "values": list(values)}
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return {
        "mean": mean,
        "std": std,
        "values": [finite_or_none(v) if v is not None else None for v in values],
    }


def degenerate_groups(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The seeds whose run trained another method's function (their ``result.json``'s
    ``degenerate``), grouped by what it equals and why: ``[{"equals", "why", "seeds"}]``."""
    groups: dict[tuple[Any, str], list[int]] = {}
    for r in runs:
        found = r.get("degenerate")
        if found:
            groups.setdefault((found.get("equals"), str(found.get("why"))), []).append(
                int(r["seed"])
            )
    return [
        {"equals": equals, "why": why, "seeds": sorted(seeds)}
        for (equals, why), seeds in groups.items()
    ]


def aggregate(
    per_run: dict[str, list[dict[str, Any]]],
    *,
    dataset: str,
    task: str,
    imbalance_factor: float | None,
    class_counts: list[int],
    metric_specs: Sequence[MetricSpec],
    compositions: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Build the ``results.json`` mapping from per-run results (``{method: [result per seed]}``)."""
    metric_names = [m.name for m in metric_specs]
    methods: dict[str, Any] = {}
    for name, runs in per_run.items():
        runs = sorted(runs, key=lambda r: r["seed"])
        methods[name] = {
            "seeds": [int(r["seed"]) for r in runs],
            "train_seconds": sum(float(r["train_seconds"]) for r in runs) / max(len(runs), 1),
            "metrics": {m: _stats([r["metrics"].get(m) for r in runs]) for m in metric_names},
        }
        if compositions and name in compositions:
            methods[name]["composition"] = dict(compositions[name])
        if runs and "params" in runs[0]:
            # the hyper-parameters (equal over seeds): the report marks methods that are the same
            methods[name]["params"] = dict(runs[0]["params"])
        degenerate = degenerate_groups(runs)
        if degenerate:
            methods[name]["degenerate"] = degenerate
    return {
        "dataset": dataset,
        "task": task,
        "imbalance_factor": imbalance_factor,
        "class_counts": [int(c) for c in class_counts],
        "metric_specs": [
            {"name": m.name, "label": m.label, "higher_is_better": m.higher_is_better}
            | ({"optional": True} if m.optional else {})
            for m in metric_specs
        ],
        "methods": methods,
    }
