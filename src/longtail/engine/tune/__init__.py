"""``longtail tune``: choose a method's hyper-parameters on a validation split (Optuna).

- :mod:`~longtail.engine.tune.study`: :func:`tune_method` (the space, the validation data built
  once, the study and its storage, the trials in this process or in worker processes).
- :mod:`~longtail.engine.tune.trials`: one trial (a run of the method with sampled values, pruned on
  its validation scores), the seeded TPE sampler, the loop a worker runs.
- :mod:`~longtail.engine.tune.confirm`: ``--confirm K``: the best values and the defaults trained
  again with new seeds, the best kept only if they win there (the winner's-curse guard).
- :mod:`~longtail.engine.tune.output`: ``best_params.json``, ``trials.csv``, ``report.md``, plots.
- :mod:`~longtail.engine.tune.compare`: ``bench --tune-trials``: default against tuned, every
  method with one budget.

The search spaces are declared with the parameters (:mod:`longtail.engine.methods.space`).
"""

from __future__ import annotations

from longtail.engine.tune.output import trial_rows
from longtail.engine.tune.study import STUDY_DB, TuneOptions, tune_method, tune_validation_config

__all__ = ["STUDY_DB", "TuneOptions", "trial_rows", "tune_method", "tune_validation_config"]
