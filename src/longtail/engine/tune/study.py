"""``longtail tune``: search a method's hyper-parameters on a validation split with Optuna.

:func:`tune_method`:

1. the search space: the method's parameters with a :class:`~longtail.engine.methods.Space` (the
   config's ``tune:`` section changes them), ``train.lr`` / ``train.weight_decay`` on request; a
   method with nothing to search is refused;
2. the validation configuration: ``data.validation_fraction`` (0.2 when the config has none), no
   reference rows; a task that cannot hold out a validation split is refused. The data are built
   once (the held-out share of the training data replaces the test set, which is never evaluated)
   and shared by every trial (passed to the worker processes);
3. the study: TPE sampling (seeded, :func:`~longtail.engine.tune.trials.make_sampler`), median
   pruning on the validation score of the epochs (``train.eval_every``), the primary metric of the
   task as the objective, stored in ``study.db`` (SQLite) in the study's folder or in
   ``storage`` (any database Optuna supports: several machines share one study). The first trial
   is the defaults (the config's ``method_params`` and ``train``), when they lie in the space;
4. trials until the budget (finished trials) is spent, in this process or in ``jobs`` processes
   sharing the study; an interrupted study continues with ``resume`` (its finished trials kept);
5. with ``confirm``, the best values and the defaults trained again with new seeds, the best kept
   only if they win there (:mod:`~longtail.engine.tune.confirm`);
6. ``best_params.json``, ``trials.csv``, ``report.md`` and ``plots/``
   (:mod:`~longtail.engine.tune.output`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from longtail.engine.bundle.fit import DEFAULT_VALIDATION_FRACTION
from longtail.engine.checkpoint import atomic_write_json
from longtail.engine.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    save_config,
)
from longtail.engine.datasets import DataBundle, DataWarning
from longtail.engine.kinds import TASK_KINDS
from longtail.engine.methods import Dimension, method_dimensions, resolve_methods
from longtail.engine.runner.lock import RunFolderLock
from longtail.engine.runner.parallel import threads_per_job
from longtail.engine.runner.runs import Runs
from longtail.engine.runner.stages import _stage_blob, stage_of
from longtail.engine.tune.confirm import confirm_best
from longtail.engine.tune.output import trial_rows, write_outputs
from longtail.engine.tune.trials import (
    TrialContext,
    make_pruner,
    make_sampler,
    open_storage,
    redact,
    run_trials,
    sqlite_file,
    stage_lock,
    worker_main,
)
from longtail.forkserver import TUNE_PRELOAD
from longtail.forkserver import context as forkserver_context

__all__ = ["STUDY_DB", "TuneOptions", "tune_method", "tune_validation_config"]

#: The SQLite file of a study in its folder (without ``storage``).
STUDY_DB = "study.db"


@dataclass(frozen=True)
class TuneOptions:
    """How :func:`tune_method` searches.

    Attributes:
        method: the method label (a registry method of the task or a config recipe).
        trials: the budget: finished (complete or pruned) trials of the study.
        jobs: processes running trials side by side (1: this process).
        seed: the training seed of every trial and the sampler's (``None``: the config's first).
        storage: an Optuna storage URL (``None``: ``study.db`` in the study's folder).
        resume: continue the study in the folder (its finished trials kept).
        tune_train: also search ``train.lr`` and ``train.weight_decay``.
        command: the command line (recorded).
        confirm: after the trials, train the best values and the defaults with this many new
            seeds and keep the best values only if they beat the defaults there
            (:mod:`~longtail.engine.tune.confirm`); 0: no confirmation.
    """

    method: str
    trials: int = 20
    jobs: int = 1
    seed: int | None = None
    storage: str | None = None
    resume: bool = False
    tune_train: bool = False
    command: str = ""
    confirm: int = 0


def tune_validation_config(cfg: Config, method: str, seed: int) -> Config:
    """``cfg`` training ``method`` with ``seed`` on a validation split (the config's
    ``data.validation_fraction``, else 0.2), without reference rows; validated again.

    Raises:
        ConfigError: the task cannot hold out a validation split (naming the key), or another
            check of the config fails.
    """
    fraction = cfg.data.validation_fraction or DEFAULT_VALIDATION_FRACTION
    data = dataclasses.replace(
        cfg.data, validation_fraction=fraction, balanced_reference=False, sklearn_reference=False
    )
    out = dataclasses.replace(cfg, data=data, methods=[method], seeds=[seed])
    try:
        return config_from_dict(config_to_dict(out))
    except ConfigError as exc:
        if "validation_fraction" not in str(exc):
            raise
        raise ConfigError(
            f"{exc}; longtail tune chooses on a validation split and never reads the test set"
        ) from None


def _fingerprint(
    cfg: Config, method: str, dims: list[Dimension], seed: int, marks: dict[str, Any]
) -> str:
    """What a study is: the data, model and training recipe, the method, its base parameters,
    the space and the seed (the budget may grow on resume); ``marks``: the method's
    :attr:`~longtail.engine.methods.Method.identity_marks`."""
    blob = json.dumps(
        {
            **marks,
            "config": _stage_blob(cfg),
            "method": method,
            "params": cfg.method_params.get(method, {}),
            "recipe": cfg.recipes.get(method),
            "space": {d.name: d.space.to_json() for d in dims},
            "seed": seed,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _defaults(cfg: Config, method: Any, dims: list[Dimension]) -> dict[str, Any]:
    params = method.resolve_params(cfg.method_params.get(cfg.methods[0], {}))
    out = {}
    for d in dims:
        key = d.train_key
        out[d.name] = getattr(cfg.train, key) if key is not None else params[d.name]
    return out


def _open_study(
    ctx: TrialContext, options: TuneOptions, fingerprint: str, defaults: dict[str, Any]
) -> Any:
    """Create (or load, to continue or join it) the study; enqueue the defaults as a trial when
    no live trial has them; fail the trials a killed process left running (local storage)."""
    import optuna  # optional dependency: optuna (the cli extra)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(ctx.storage, heartbeat=ctx.heartbeat)
    db = sqlite_file(ctx.storage)
    # commands opening one SQLite study at once do it in turn (one of them enqueues the defaults)
    with stage_lock(Path(f"{db}.lock")) if db else contextlib.nullcontext():
        return _create_or_load(ctx, options, storage, fingerprint, defaults)


def _create_or_load(
    ctx: TrialContext,
    options: TuneOptions,
    storage: Any,
    fingerprint: str,
    defaults: dict[str, Any],
) -> Any:
    import optuna  # optional dependency: optuna (the cli extra)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(
            study_name=ctx.study_name,
            storage=storage,
            sampler=make_sampler(ctx.seed, ctx.startup),
            pruner=make_pruner(ctx),
            direction="maximize" if ctx.maximize else "minimize",
            load_if_exists=True,
        )
    known = study.user_attrs.get("fingerprint")
    if known is None:
        study.set_user_attr("fingerprint", fingerprint)
        study.set_user_attr("method", ctx.method)
    elif known != fingerprint:
        where = "--out" if options.storage is None else "--storage"
        raise FileExistsError(
            f"{where}: study {ctx.study_name!r} in {redact(ctx.storage)} was made with another "
            "configuration, method, search space or seed; choose another "
            + ("--out" if options.storage is None else "storage or config name")
        )
    if not ctx.heartbeat:  # the folder is locked: a running trial is a killed process's
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
    live = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get("defaults") and t.state.name != "FAIL"
    ]
    if defaults and not live and all(d.contains(defaults[d.name]) for d in ctx.dims):
        study.enqueue_trial(defaults, user_attrs={"defaults": True})
    return study


def _run_workers(ctx: TrialContext, data: DataBundle, jobs: int, quiet: bool) -> None:
    """Trials of the study until its budget is spent, side by side in this process and ``jobs - 1``
    worker processes (forked from the ``forkserver`` of :mod:`longtail.forkserver`, which the
    ``longtail`` command starts early; ``spawn`` where the platform has none)."""
    mpctx = forkserver_context(TUNE_PRELOAD)
    threads = threads_per_job(jobs, ctx.cfg.train.num_threads)
    procs = [
        mpctx.Process(
            target=worker_main, args=(ctx, data, threads, quiet, os.getpid()), daemon=False
        )
        for _ in range(jobs - 1)
    ]
    before = torch.get_num_threads()
    try:
        for p in procs:
            p.start()
        torch.set_num_threads(threads)
        run_trials(ctx, data, None if quiet else _say_stderr)
        for p in procs:
            p.join()
    finally:
        torch.set_num_threads(before)
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join()
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"--jobs: {len(failed)} worker(s) failed (exit codes {failed})")


def _say_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def tune_method(
    cfg: Config,
    out_dir: str | Path,
    options: TuneOptions,
    *,
    echo: Callable[[str], None] | None = print,
    data: DataBundle | None = None,
) -> dict[str, Any]:
    """Search ``options.method``'s hyper-parameters on a validation split; write the study's
    folder; return the ``best_params.json`` record (see the module docstring).

    Args:
        data: the data instead of building them from ``cfg`` (tests, the Python API); they must
            be evaluated on a validation split. The confirmation runs (``options.confirm``) train
            on them too.

    Raises:
        ValueError: an unknown method, nothing to search, a bad ``tune:`` entry, a storage that
            cannot be opened, a task without a validation split (all naming the key or option).
        FileExistsError: the folder holds a study and ``resume`` is false, or another study.
    """
    table = resolve_methods(cfg.recipes, cfg.task)
    label = options.method
    if label not in table:
        raise ValueError(f"--method: {label!r} is not a {cfg.task} method ({', '.join(table)})")
    method = table[label]
    dims = method_dimensions(
        method,
        label,
        cfg.tune,
        train_defaults=dataclasses.asdict(cfg.train),
        tune_train=options.tune_train,
    )
    if not dims:
        raise ValueError(
            f"--method: {label} has no hyper-parameter to tune (add --tune-train to search "
            f"train.lr and train.weight_decay, or give spaces in the config's tune.{label})"
        )
    seed = cfg.seeds[0] if options.seed is None else int(options.seed)
    vcfg = tune_validation_config(cfg, label, seed)
    out = Path(out_dir)
    local = options.storage is None
    if local and not options.resume and (out / STUDY_DB).exists():
        raise FileExistsError(
            f"--out: {out} holds a study already; continue it with --resume or choose another --out"
        )
    try:
        import optuna  # noqa: F401  # optional dependency: optuna (the cli extra)
    except ImportError:
        raise ValueError("longtail tune needs optuna: pip install 'longtail[cli]'") from None
    if not local:  # a storage that cannot be opened is said before the folder is made
        open_storage(str(options.storage), heartbeat=True)
    out.mkdir(parents=True, exist_ok=True)
    lock = RunFolderLock(out)
    lock.acquire(options.command)
    try:
        return _tune(vcfg, out, options, label, method, dims, seed, echo, data, lock.note)
    finally:
        lock.release()


def _tune(
    vcfg: Config,
    out: Path,
    options: TuneOptions,
    label: str,
    method: Any,
    dims: list[Dimension],
    seed: int,
    echo: Callable[[str], None] | None,
    data: DataBundle | None,
    note: str | None,
) -> dict[str, Any]:
    say = echo or (lambda _m: None)
    if note:
        say(f"note: {note}")
    runs = Runs(vcfg, out / "trials", resume=True, tick=lambda *a, **k: None, data=data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        bundle = runs.data("long-tailed", seed)
    if bundle.evaluated_on != "validation":
        raise ValueError(
            f"data.validation_fraction: the {vcfg.task} data were not split for validation; "
            "longtail tune never reads the test set"
        )
    kind = TASK_KINDS[vcfg.task]
    primary = kind.metrics[0]
    epochs = vcfg.train.epochs
    ctx = TrialContext(
        cfg=vcfg,
        out=out,
        method=label,
        dims=tuple(dims),
        seed=seed,
        primary=primary.name,
        maximize=primary.higher_is_better,
        trials=options.trials,
        storage=options.storage or f"sqlite:///{(out / STUDY_DB).resolve()}",
        heartbeat=options.storage is not None,
        study_name=f"{vcfg.name}-{label}",
        startup=max(1, min(10, options.trials // 4)),
        warmup=max(1, epochs // 3) + 1,
    )
    fingerprint = _fingerprint(vcfg, label, dims, seed, method.identity_marks)
    study = _open_study(ctx, options, fingerprint, _defaults(vcfg, method, dims))
    save_config(vcfg, out / "config.yaml")
    atomic_write_json(
        out / "run.json",
        {"command": options.command, "started": time.strftime("%Y-%m-%d %H:%M:%S")},
    )
    if not vcfg.train.eval_every:
        say("note: train.eval_every is 0: no validation score between epochs, nothing is pruned")
    if all(d.param.stage == 2 and d.train_key is None for d in dims):
        # every trial starts from the same first stage: train it once, before the trials
        params = method.resolve_params(vcfg.method_params.get(label, {}))
        say(f"{ctx.study_name}: training the shared first stage (seed {seed})")
        runs.stage(stage_of(vcfg, method, params, "long-tailed"), seed)
    say(
        f"{ctx.study_name}: {options.trials} trial(s) of {epochs} epoch(s), searching "
        f"{', '.join(d.name for d in dims)} on {vcfg.data.validation_fraction:g} of the training "
        f"data; study in {redact(ctx.storage)}"
    )
    if options.jobs > 1:
        _run_workers(ctx, bundle, options.jobs, quiet=echo is None)
    else:
        run_trials(ctx, bundle, say if echo is not None else None)
    confirmation = None
    if options.confirm:
        confirmation = confirm_best(
            trial_rows(study),
            ctx,
            options.confirm,
            jobs=options.jobs,
            command=options.command,
            say=say,
            data=data,
        )
    record = write_outputs(study, ctx, options, bundle, confirmation)
    if echo is not None:
        shown = ", ".join(f"{k}={v}" for k, v in record["study_best_params"].items())
        echo(
            f"best {primary.name} on validation {record['best_value']:.4f} "
            f"(trial {record['best_trial']}): {shown}\nstudy folder: {out}"
        )
    sys.stderr.flush()
    return record
