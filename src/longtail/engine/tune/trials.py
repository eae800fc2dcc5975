"""The trials of a study: the objective, the seeded sampler, the loop a worker runs.

A trial trains the method once with sampled values (its ``method_params``, and ``train.lr`` /
``train.weight_decay`` when searched) through :class:`~longtail.engine.runner.runs.Runs`, on the
data the study built once (the validation split in place of the test set), in the study's folder
``trials/``: a first stage equal to an earlier trial's (the same first-stage values) is reused from
``trials/stages/``, not trained again. Every ``train.eval_every`` epochs the trainer's per-epoch hook
reports the task's primary metric on the validation split to Optuna, whose median pruner may stop
the trial there.

Reproducibility: the sampler of each trial is a TPE sampler seeded from the study's seed, the number
of finished trials and the number of other running trials when it starts (:class:`SeededTPE`), so a
study interrupted and resumed draws the same values as an uninterrupted one (a killed trial fails
and is drawn again), and trials running side by side draw different ones.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from longtail.engine.config import Config
from longtail.engine.datasets import DataBundle
from longtail.engine.methods import Dimension, Method, resolve_methods
from longtail.engine.runner.runs import Runs
from longtail.engine.runner.stages import run_dir_for, stage_of
from longtail.engine.trainer import NonFiniteLossError, derive_seed
from longtail.forkserver import exit_with_command

__all__ = [
    "TrialContext",
    "make_pruner",
    "make_sampler",
    "open_storage",
    "run_trials",
    "sqlite_file",
    "stage_lock",
    "trial_config",
    "worker_main",
]

#: Trial states counted in the budget (a failed trial, e.g. killed, is drawn again).
FINISHED = ("COMPLETE", "PRUNED")


@dataclass(frozen=True)
class TrialContext:
    """What every process running trials of one study needs (picklable: sent to workers).

    Attributes:
        cfg: the validation configuration (one method, one seed, the validation split).
        out: the study's folder (``trials/`` under it).
        method: the method label.
        dims: the searched values.
        seed: the training seed of every trial and the sampler's seed.
        primary: the task's primary metric (the objective) and ``maximize``.
        trials: the budget: finished (complete or pruned) trials.
        storage: the storage URL; ``heartbeat``: a shared database (failed trials of dead
            processes found by their heartbeat), else the local SQLite file.
        study_name: the study in the storage.
        startup: trials drawn at random (TPE); the median pruner waits for ``max(2, startup)``
            finished trials.
        warmup: epochs before a trial may be pruned (the first third of the epochs).
    """

    cfg: Config
    out: Path
    method: str
    dims: tuple[Dimension, ...]
    seed: int
    primary: str
    maximize: bool
    trials: int
    storage: str
    heartbeat: bool
    study_name: str
    startup: int
    warmup: int

    @property
    def trials_dir(self) -> Path:
        return self.out / "trials"


def open_storage(url: str, *, heartbeat: bool) -> Any:
    """An Optuna RDB storage at ``url``; :class:`ValueError` naming ``--storage`` if it cannot be
    opened (bad URL, missing driver, unreachable server)."""
    import optuna  # optional dependency: optuna (the cli extra)

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}  # parallel writers wait
    if heartbeat:
        kwargs.update(heartbeat_interval=30, grace_period=120)
    db = sqlite_file(url)
    # processes creating one SQLite file's tables at once do it in turn
    serial = db is not None and db.parent.is_dir()
    try:
        lock = stage_lock(Path(f"{db}.lock")) if serial else contextlib.nullcontext()
        with lock, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. heartbeat is experimental in some versions
            return optuna.storages.RDBStorage(url, **kwargs)
    except Exception as exc:  # sqlalchemy's and the drivers' errors have no common base here
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ValueError(f"--storage: cannot open {redact(url)}: {reason}") from None


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL, else ``None``."""
    return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None


def redact(url: str) -> str:
    """``url`` without its password (``postgresql://user:***@host/db``)."""
    head, sep, rest = url.partition("://")
    cred, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in cred:
        return url
    return f"{head}://{cred.split(':', 1)[0]}:***@{host}"


def make_sampler(seed: int, startup: int) -> Any:
    """A TPE sampler drawing each trial with a generator seeded from ``seed`` and the study's
    state when the trial starts (see the module docstring)."""
    import optuna  # optional dependency: optuna (the cli extra)

    class SeededTPE(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self._by_trial: dict[int, Any] = {}

        def _tpe(self, study: Any, trial: Any) -> Any:
            tpe = self._by_trial.get(trial.number)
            if tpe is None:
                states = [t.state.name for t in study.get_trials(deepcopy=False)]
                running = sum(1 for s in states if s == "RUNNING") - 1  # not this trial
                finished = sum(1 for s in states if s in FINISHED)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # constant_liar is experimental
                    tpe = optuna.samplers.TPESampler(
                        seed=derive_seed(seed, finished, max(0, running)) % 2**32,
                        n_startup_trials=startup,
                        constant_liar=True,
                    )
                self._by_trial[trial.number] = tpe
            return tpe

        def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
            return self._tpe(study, trial).infer_relative_search_space(study, trial)

        def sample_relative(self, study: Any, trial: Any, space: Any) -> Any:
            return self._tpe(study, trial).sample_relative(study, trial, space)

        def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
            return self._tpe(study, trial).sample_independent(study, trial, name, dist)

        def before_trial(self, study: Any, trial: Any) -> None:
            self._tpe(study, trial).before_trial(study, trial)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            self._tpe(study, trial).after_trial(study, trial, state, values)
            self._by_trial.pop(trial.number, None)

    return SeededTPE()


def make_pruner(ctx: TrialContext) -> Any:
    """The median pruner: a trial stops when its validation score at an epoch is worse than the
    median of the finished trials' at that epoch (after ``startup`` trials and ``warmup`` epochs)."""
    import optuna  # optional dependency: optuna (the cli extra)

    return optuna.pruners.MedianPruner(
        n_startup_trials=max(2, ctx.startup), n_warmup_steps=ctx.warmup
    )


def trial_config(cfg: Config, method: str, label: str, values: dict[str, Any]) -> Config:
    """``cfg`` with a trial's values: the method's parameters under the trial's ``label`` (the
    config's own ``method_params`` of the method, then the sampled ones), ``train.*`` replaced."""
    params = dict(cfg.method_params.get(method, {}))
    train = {}
    for name, value in values.items():
        if name.startswith("train."):
            train[name.split(".", 1)[1]] = value
        else:
            params[name] = value
    return replace(cfg, method_params={label: params}, train=replace(cfg.train, **train))


def _suggest(trial: Any, dim: Dimension) -> Any:
    s = dim.space
    if s.scale == "choice":
        return trial.suggest_categorical(dim.name, list(s.choices))
    if s.scale == "int":
        return trial.suggest_int(dim.name, int(s.low or 0), int(s.high or 0))
    return trial.suggest_float(
        dim.name, float(s.low or 0), float(s.high or 0), log=s.scale == "log"
    )


@contextlib.contextmanager
def stage_lock(path: Path) -> Iterator[None]:
    """Hold the file lock ``path`` (waiting): e.g. trials that train the same first stage do it
    one after the other (the second reuses it) when processes run side by side."""
    import filelock  # optional dependency: filelock (the cli extra; torch requires it)

    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(path)):
        yield


def _objective(
    ctx: TrialContext, method: Method, data: DataBundle, say: Callable[[str], None]
) -> Callable[[Any], float]:
    import optuna  # optional dependency: optuna (the cli extra)

    stage_epochs = ctx.cfg.train.epochs

    def objective(trial: Any) -> float:
        values = {d.name: _suggest(trial, d) for d in ctx.dims}
        trial.set_user_attr("process", f"{socket.gethostname()}:{os.getpid()}")
        label = f"trial-{trial.number:04d}"
        cfg = trial_config(ctx.cfg, ctx.method, label, values)

        def tick(what: str, seed: int, epochs: int, **info: Any) -> None:
            row, epoch = info.get("row"), info.get("epoch")
            if row is None or epoch is None:
                return
            value = row.get(
                f"test_{ctx.primary}"
            )  # the validation split (the test set is not read)
            if value is None or not math.isfinite(value):
                return
            step = int(epoch) + 1 + (stage_epochs if what == label else 0)
            trial.report(float(value), step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {step}")

        params = method.resolve_params(cfg.method_params[label])
        stage = stage_of(cfg, method, params, "long-tailed")
        runs = Runs(cfg, ctx.trials_dir, resume=False, tick=tick, data=data)
        t0 = time.perf_counter()
        try:
            with stage_lock(ctx.trials_dir / "stages" / f"{stage.key}-seed_{ctx.seed}.lock"):
                record = runs.method(label, method, "long-tailed", ctx.seed)
        except NonFiniteLossError as exc:
            trial.set_user_attr("diverged", str(exc).split(";")[0])
            raise optuna.TrialPruned("the loss diverged") from None
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - t0, 3))
        for name in ("model.pt", "checkpoint.pt"):  # the trial's result.json and log.csv stay
            with contextlib.suppress(OSError):
                (run_dir_for(ctx.trials_dir, label, ctx.seed) / name).unlink()
        value = record["metrics"].get(ctx.primary)
        if value is None or not math.isfinite(float(value)):
            trial.set_user_attr("diverged", f"{ctx.primary} is not finite")
            raise optuna.TrialPruned("no finite score")
        trial.set_user_attr("epochs", int(record.get("epochs", 0)))
        return float(value)

    return objective


def _finished_line(ctx: TrialContext, say: Callable[[str], None]) -> Callable[[Any, Any], None]:
    def callback(study: Any, trial: Any) -> None:
        shown = ", ".join(
            f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items()
        )
        if trial.state.name == "COMPLETE":
            what = f"{ctx.primary} {trial.value:.4f}"
        elif trial.state.name == "PRUNED":
            what = trial.user_attrs.get("diverged") or f"pruned at epoch {trial.last_step}"
        else:
            what = trial.state.name.lower()
        try:
            best = f" (best {study.best_value:.4f}, trial {study.best_trial.number})"
        except ValueError:
            best = ""
        say(f"{ctx.study_name}: trial {trial.number}: {what}{best}: {shown}")

    return callback


def _counts(study: Any) -> tuple[int, int]:
    """Finished (complete or pruned) and running trials of the study."""
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    return sum(1 for s in states if s in FINISHED), sum(1 for s in states if s == "RUNNING")


def run_trials(
    ctx: TrialContext, data: DataBundle, say: Callable[[str], None] | None = None
) -> None:
    """Run trials of the study until it has ``ctx.trials`` finished ones (counting those of other
    processes, running ones included)."""
    import optuna  # optional dependency: optuna (the cli extra)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(ctx.storage, heartbeat=ctx.heartbeat)
    study = optuna.load_study(
        study_name=ctx.study_name,
        storage=storage,
        sampler=make_sampler(ctx.seed, ctx.startup),
        pruner=make_pruner(ctx),
    )
    method = resolve_methods(ctx.cfg.recipes, ctx.cfg.task)[ctx.method]
    echo = say or (lambda _m: None)
    objective = _objective(ctx, method, data, echo)
    callbacks = [_finished_line(ctx, echo)] if say is not None else []
    while sum(_counts(study)) < ctx.trials:
        study.optimize(objective, n_trials=1, callbacks=callbacks, gc_after_trial=False)


def worker_main(
    ctx: TrialContext, data: DataBundle, threads: int, quiet: bool, command_pid: int | None = None
) -> None:
    """A worker process of ``--jobs J``: trials until the budget is spent; one line and exit code
    2 on a user's error (a bug's traceback is printed as usual). It ends within a second of the
    command's process ``command_pid`` ending (:func:`longtail.forkserver.exit_with_command`)."""
    if command_pid is not None:
        exit_with_command(command_pid)
    torch.set_num_threads(threads)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        run_trials(ctx, data, None if quiet else say)
    except (ValueError, OSError) as exc:
        say(f"error: worker {os.getpid()}: {exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
