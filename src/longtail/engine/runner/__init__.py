"""Benchmarks over methods and seeds, resumable, aggregated into ``results.json``; the run folder.

Run-folder layout (only rank 0 writes; every file is written atomically)::

    RUN_DIR/
      config.yaml            the resolved configuration (reproduces the run)
      run.json               the command line, versions, start time
      results.json           aggregated metrics (schema: :mod:`~longtail.engine.runner.results`)
      report.md, plots/*.png tables and figures (see longtail.engine.report)
      stages/<stage>/seed_<s>/
                             a first training stage, shared by every method that starts from it
                             (see :func:`stage_of`): checkpoint.pt (every epoch), log.csv (per
                             epoch), model.pt (final weights), stage.json (its record)
      <method>/seed_<s>/     result.json (final metrics, evaluation details, the history of both
                             stages), model.pt (final weights, after the post-hoc step); for a
                             method with a second stage also its checkpoint.pt and log.csv
      .longtail.lock         the lock of the command writing the folder; .longtail.lock.json (its
                             process id, host, start) while it runs (see :mod:`.lock`)

Stages: methods whose first training stages are equal share one, trained once per (stage, seed)
(see :mod:`~longtail.engine.runner.stages`).

Resume (``resume=True``): finished pairs (``result.json`` present) and finished stages
(``stage.json``) are reused, interrupted ones continue from their checkpoint, missing ones start.
It is additive: ``results.json`` also covers the finished pairs of earlier commands that this one
did not ask for, if they match its configuration (:mod:`~longtail.engine.runner.earlier`).

One command at a time: the folder is locked for the command's life
(:mod:`~longtail.engine.runner.lock`); another command into it stops with :class:`RunFolderInUse`.

Modules, each importing only those above it:

- :mod:`~longtail.engine.runner.stages`: :class:`Stage`, :func:`stage_of`, the fingerprints and the
  folders of a stage and a method.
- :mod:`~longtail.engine.runner.results`: :func:`aggregate` (the ``results.json`` schema).
- :mod:`~longtail.engine.runner.runs`: :class:`Runs`, training (or reusing) stages and methods.
- :mod:`~longtail.engine.runner.reference`: the scikit-learn reference row
  (``data.sklearn_reference``), fitted or read back per seed.
- :mod:`~longtail.engine.runner.earlier`: the matching results of earlier commands (additive resume).
- :mod:`~longtail.engine.runner.lock`: the run folder's lock (:class:`RunFolderInUse`).
- :mod:`~longtail.engine.runner.folders`: may a command write into a folder; creating and locking
  it; new and latest run folders; the command line.
- :mod:`~longtail.engine.runner.parallel`: the stages and methods in worker processes (``--jobs``).
- :mod:`~longtail.engine.runner.benchmark`: :func:`run_benchmark` and :func:`train_method`.
"""

from __future__ import annotations

from longtail.engine.runner.benchmark import (
    PROGRESS_SECONDS,
    method_names,
    run_benchmark,
    train_method,
)
from longtail.engine.runner.folders import default_out_dir, describe_command, latest_out_dir
from longtail.engine.runner.lock import RunFolderInUse
from longtail.engine.runner.parallel import (
    WorkerLost,
    available_cores,
    default_jobs,
    run_parallel,
    threads_per_job,
)
from longtail.engine.runner.reference import SKLEARN
from longtail.engine.runner.results import aggregate
from longtail.engine.runner.runs import Runs
from longtail.engine.runner.stages import (
    BALANCED,
    Stage,
    method_fingerprint,
    run_dir_for,
    stage_dir_for,
    stage_of,
)

__all__ = [
    "BALANCED",
    "PROGRESS_SECONDS",
    "SKLEARN",
    "RunFolderInUse",
    "Runs",
    "Stage",
    "WorkerLost",
    "aggregate",
    "available_cores",
    "default_jobs",
    "default_out_dir",
    "describe_command",
    "latest_out_dir",
    "method_fingerprint",
    "method_names",
    "run_benchmark",
    "run_dir_for",
    "run_parallel",
    "stage_dir_for",
    "stage_of",
    "threads_per_job",
    "train_method",
]
