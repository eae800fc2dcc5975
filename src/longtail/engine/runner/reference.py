"""The scikit-learn reference row of a run (``data.sklearn_reference``): fitted, written, resumed.

The row ``sklearn-logreg`` is the task kind's
:attr:`~longtail.engine.kinds.TaskKind.sklearn_reference` hook (a logistic regression with default
settings) fitted on the training split every method of the run trains on, the same feature vectors
(the :class:`~longtail.engine.datasets.DataBundle`'s, after the engine's feature scaling), and
scored by the task's own evaluation (:func:`longtail.engine.reference.evaluate_scores`).

Files and seeds: like a method, ``sklearn-logreg/seed_<s>/result.json`` per seed, written
atomically, so ``results.json`` keeps one value per seed. The fit is deterministic (lbfgs, no random
state), so seeds that share their training data (every seed unless the data depend on it:
``data.class_order: random``, open-set splits) share one fit: the first seed's record is copied
(``copied_from_seed``) instead of fitting again. With ``--resume`` a ``result.json`` whose
fingerprint (the task, the ``data`` section and the seed) matches is read back, never refitted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import warnings
from pathlib import Path
from typing import Any

from longtail.engine.checkpoint import atomic_write_json, read_json
from longtail.engine.config import Config, config_to_dict
from longtail.engine.datasets import DataBundle, DataWarning, hold_out_validation
from longtail.engine.kinds import TASK_KINDS
from longtail.engine.runner.results import finite_or_none
from longtail.engine.runner.runs import Runs
from longtail.engine.runner.stages import run_dir_for

__all__ = ["SKLEARN", "SklearnRow", "check_sklearn_resumable", "sklearn_fingerprint", "summary"]

#: Name of the scikit-learn reference entry in ``results.json`` (and its folder).
SKLEARN = "sklearn-logreg"

#: What the row's inputs are, recorded in ``results.json``: the same rows as the methods, with the
#: features as loaded (``data.feature_scaling: none``; missing values filled with the training mean),
#: which is how a user fits scikit-learn's default logistic regression (its L2 penalty makes the fit
#: depend on the scaling: on scene's standardised features C=1 over-fits).
FEATURES = (
    "the same training and evaluation rows as the methods, with the features as loaded "
    "(data.feature_scaling: none; missing values filled with the training mean)"
)


def sklearn_fingerprint(cfg: Config, seed: int) -> str:
    """Identity of the row's result: the task, the ``data`` section (which examples, which
    features, their scaling, the evaluation split) and the seed."""
    data = config_to_dict(cfg)["data"]
    for key in ("balanced_reference", "sklearn_reference", "num_workers"):
        data.pop(key, None)
    blob = json.dumps(
        {"row": SKLEARN, "task": cfg.task, "data": data, "seed": int(seed)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _result_file(out: Path, seed: int) -> Path:
    return run_dir_for(out, SKLEARN, seed) / "result.json"


def check_sklearn_resumable(out: Path, cfg: Config) -> None:
    """Refuse to resume over a reference row written with another data configuration."""
    for seed in cfg.seeds:
        f = _result_file(out, seed)
        if f.is_file() and read_json(f).get("fingerprint") != sklearn_fingerprint(cfg, seed):
            raise FileExistsError(
                f"--resume: {f.parent} was produced with a different configuration (data); use "
                "another --out"
            )


class SklearnRow:
    """The reference row of one run: :meth:`record` per seed (fitted, copied or read back)."""

    def __init__(self, runs: Runs):
        self.runs = runs
        #: records fitted in this session, by the data bundle they were fitted on
        self._fitted: list[tuple[DataBundle, dict[str, Any]]] = []
        #: fits actually made in this session (not copied, not read back)
        self.fits = 0
        #: the unscaled data of each scaled bundle of the run
        self._raw: list[tuple[DataBundle, DataBundle]] = []

    def record(self, seed: int) -> dict[str, Any]:
        runs, cfg = self.runs, self.runs.cfg
        fingerprint = sklearn_fingerprint(cfg, seed)
        result_file = _result_file(runs.out, seed)
        if result_file.is_file() and runs.resume:
            done = read_json(result_file)
            if done.get("fingerprint") != fingerprint:
                raise FileExistsError(
                    f"--resume: {result_file} was produced with a different configuration "
                    "(data); use another --out"
                )
            return dict(done)
        data = self._raw_data(seed)
        earlier = next((r for d, r in self._fitted if d is data), None)
        if earlier is not None:
            record = {
                **earlier,
                "fingerprint": fingerprint,
                "seed": seed,
                "copied_from_seed": earlier["seed"],
            }
        else:
            record = self._fit(data, fingerprint, seed)
            self._fitted.append((data, record))
        if runs.main:
            atomic_write_json(result_file, record)
        runs.tick(SKLEARN, seed, 0, finished=True, record=record)
        return record

    def _raw_data(self, seed: int) -> DataBundle:
        """The run's data of ``seed`` with unscaled features (built once per distinct bundle)."""
        runs, cfg = self.runs, self.runs.cfg
        scaled = runs.data("long-tailed", seed)
        if cfg.data.feature_scaling == "none" or runs.given_data is not None:
            return scaled  # no scaling, or data given to the run (nothing to rebuild from)
        cached = next((raw for s, raw in self._raw if s is scaled), None)
        if cached is None:
            raw_cfg = dataclasses.replace(
                cfg, data=dataclasses.replace(cfg.data, feature_scaling="none")
            )
            kind = TASK_KINDS[cfg.task]
            per_seed = kind.data_per_seed or cfg.data.class_order == "random"
            with warnings.catch_warnings():  # the run has shown the data's notes already
                warnings.simplefilter("ignore", DataWarning)
                cached = kind.build_data(raw_cfg, "long-tailed", seed if per_seed else None)
            fraction = cfg.data.validation_fraction
            if fraction is not None:  # as Runs.data holds it out
                cached = hold_out_validation(cached, fraction, cfg.data.validation_split_seed)
            self._raw.append((scaled, cached))
        return cached

    def _fit(self, data: DataBundle, fingerprint: str, seed: int) -> dict[str, Any]:
        cfg = self.runs.cfg
        hook = TASK_KINDS[cfg.task].sklearn_reference
        if hook is None:  # the config checks refuse the key first
            raise ValueError(
                f"config key 'data.sklearn_reference': task {cfg.task} has no scikit-learn "
                "reference"
            )
        start = time.perf_counter()
        fit = hook(data, cfg)
        seconds = time.perf_counter() - start
        self.fits += 1
        return {
            "fingerprint": fingerprint,
            "method": SKLEARN,
            "seed": seed,
            "estimator": fit.estimator,
            "settings": dict(fit.settings),
            "features": FEATURES,
            "feature_scaling": getattr(data, "feature_scaling", None),
            "info": dict(fit.info),
            "class_counts": data.class_counts,
            "group_counts": data.group_counts,
            "train_seconds": seconds,
            "metrics": {k: finite_or_none(v) for k, v in fit.evaluation.metrics.items()},
            "details": fit.evaluation.details,
        }


def summary(record: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    """The ``results.json`` entry ``sklearn_reference``: what the row is (from a seed's record)."""
    return {
        "method": SKLEARN,
        "estimator": record["estimator"],
        "settings": record["settings"],
        "features": record["features"],
        "feature_scaling": record.get("feature_scaling"),
        "fitted": (
            "on each seed's training split; seeds with the same training data share one fit "
            "(lbfgs is deterministic)"
        ),
        "seeds": list(seeds),
    }
