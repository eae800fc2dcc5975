"""Run the (stage, seed) and (method, seed) work of a benchmark in several worker processes.

``longtail bench --jobs N``: the work of :func:`longtail.engine.runner.run_benchmark` in N worker
processes (forked from a ``forkserver`` that imported torch and the tracks once; ``spawn`` where
the platform has no forkserver), in two phases:

1. every distinct first stage (see :func:`~longtail.engine.runner.stages.stage_of`) for every seed, in
   parallel: each writes its own ``stages/<key>/seed_<s>/``;
2. every method that finishes a stage (a post-hoc step or a second stage) for every seed, in
   parallel, reading its finished stage from disk; methods that are their stage need no work.

The runner then collects every result from the run folder as a resumed run does. Each job is exactly
the sequential run's code (``Runs.stage`` / ``Runs.method``) with the same seed, on the data the
parent built (passed to the workers, not rebuilt, so every job sees bit-identical tensors), so the
results equal a sequential run's whenever the thread count per run is the same: on a CPU each job
uses ``threads`` threads (by default ``max(1, cores // jobs)``; one with as many jobs as cores), and
the bundled configs set ``train.num_threads: 1``. With CUDA, job ``i`` sees only GPU ``i % count``
(``CUDA_VISIBLE_DEVICES``). Resume stays exact: a job resumes from its own checkpoint.

Progress: the workers report every epoch through a queue; the parent's bar (or its line output
without a terminal) names every running job.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import os
import queue as queue_mod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from longtail.engine.kinds import TASK_KINDS, reference_method
from longtail.engine.methods import resolve_methods
from longtail.engine.runner.runs import Runs
from longtail.engine.runner.stages import BALANCED, stage_of
from longtail.forkserver import context as forkserver_context
from longtail.forkserver import exit_with_command

__all__ = [
    "MIN_STEPS_PER_JOB",
    "Job",
    "WorkerLost",
    "auto_jobs",
    "default_jobs",
    "plan_jobs",
    "run_parallel",
    "threads_per_job",
]


class WorkerLost(RuntimeError):
    """A worker process ended without reporting (killed by a signal, e.g. by the kernel when memory
    ran out). The finished runs are on disk and a running one resumes from its checkpoint, so the
    message says to continue with ``--resume``."""

    def __init__(self, running: Sequence[str]) -> None:
        jobs = f" while running {', '.join(running)}" if running else ""
        super().__init__(
            f"a worker process ended abruptly{jobs} (killed, or out of memory?); the finished "
            "runs are kept: continue with --resume (--jobs 1 trains in this process)"
        )


#: Without ``--jobs``, one worker process per this many optimisation steps of the run (at most one
#: per core): a worker costs about 2-3 s of start (importing torch and the tracks, receiving the
#: data), which the digits MLP's steps (about 1.5 ms each on one thread) repay after a few
#: thousand steps; a smaller run trains in the command's own process.
MIN_STEPS_PER_JOB = 5000


# worker-process state, set by _init
_STATE: dict[str, Any] = {}


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def default_jobs(device: torch.device) -> int:
    """One job per GPU on a CUDA machine, else one per CPU core."""
    if device.type == "cuda":
        return max(1, torch.cuda.device_count())
    return available_cores()


def auto_jobs(
    cfg: Any,
    entries: Sequence[tuple[str, Any, str]],
    train_sizes: Mapping[tuple[str, int], int],
    device: torch.device,
) -> tuple[int, int]:
    """The default number of jobs, chosen from the amount of work; returns ``(jobs, steps)``.

    ``steps``: the optimisation steps of every distinct (first stage, seed) and of every second
    stage (``epochs x ceil(training examples / batch size)``), from the training set sizes
    ``train_sizes[(variant, seed)]``. One job per :data:`MIN_STEPS_PER_JOB` steps, at most
    :func:`default_jobs` (one per core or GPU) and the number of stage jobs.
    """
    batch = max(1, int(cfg.train.batch_size))
    stage_jobs, finish_jobs = plan_jobs(cfg, entries)
    by_label = {label: (method, variant) for label, method, variant in entries}
    steps = 0
    for _, label, seed in stage_jobs:
        _, variant = by_label[label]
        steps += cfg.train.epochs * math.ceil(train_sizes[(variant, seed)] / batch)
    for _, label, seed in finish_jobs:
        method, variant = by_label[label]
        if method.second_stage:
            params = method.resolve_params(cfg.method_params.get(label, {}))
            cfg2 = TASK_KINDS[cfg.task].finish_config(cfg, method, params)
            n = math.ceil(train_sizes[(variant, seed)] / max(1, int(cfg2.train.batch_size)))
            steps += cfg2.train.epochs * n
    jobs = min(default_jobs(device), len(stage_jobs), max(1, steps // MIN_STEPS_PER_JOB))
    return max(1, jobs), steps


def threads_per_job(jobs: int, configured: int | None) -> int:
    """Threads of each job: the config's ``train.num_threads`` if set, else ``cores // jobs``."""
    if configured is not None:
        return configured
    return max(1, available_cores() // max(1, jobs))


def _init(
    cfg: Any,
    out: str,
    entries: Sequence[tuple[str, str]],
    data: Mapping[Any, Any],
    messages: Any,
    threads: int,
    gpu_counter: Any,
    gpus: int,
    command_pid: int,
) -> None:
    exit_with_command(command_pid)  # a killed command leaves no worker behind
    if gpus > 0:
        with gpu_counter.get_lock():
            index = gpu_counter.value
            gpu_counter.value += 1
        os.environ["CUDA_VISIBLE_DEVICES"] = str(index % gpus)
    torch.set_num_threads(threads)

    def tick(what: str, seed: int, epochs: int, **info: Any) -> None:
        row = info.get("row")
        record = info.get("record")
        msg: dict[str, Any] = {
            "pid": os.getpid(),
            "what": what,
            "seed": seed,
            "epochs": epochs,
            "skipped": bool(info.get("skipped")),
            "epoch": info.get("epoch"),
            "train_loss": None if row is None else row.get("train_loss"),
        }
        if record is not None:
            msg["record"] = {
                "metrics": dict(record.get("metrics", {})),
                "train_seconds": record.get("train_seconds", 0.0),
            }
        messages.put(msg)

    runs = Runs(cfg, Path(out), resume=True, tick=tick)
    runs._data.update(data)
    _STATE.update(
        runs=runs,
        entries={label: (_resolve(cfg, label), v) for label, v in entries},
        cfg=cfg,
        messages=messages,
    )


def _resolve(cfg: Any, label: str) -> Any:
    """The method of ``label``, resolved again in the worker (methods hold closures, which do not
    pickle): the registry of the config's task, its recipes, or ``erm`` for the reference."""
    if label == BALANCED:
        return reference_method(cfg.task)
    return resolve_methods(cfg.recipes, cfg.task)[label]


def _job(kind: str, label: str, seed: int) -> int:
    """Run one stage or one finishing method; return the number of stages trained (not reused)."""
    runs = _STATE["runs"]
    cfg = _STATE["cfg"]
    method, variant = _STATE["entries"][label]
    before = len(runs.trained_stages)
    try:
        if kind == "stage":
            params = method.resolve_params(cfg.method_params.get(label, {}))
            runs.stage(stage_of(cfg, method, params, variant), seed)
        else:
            runs.method(label, method, variant, seed)
    finally:
        _STATE["messages"].put({"pid": os.getpid(), "done": True})
    return len(runs.trained_stages) - before


Job = tuple[str, str, int]
"""``(kind, method label, seed)``: kind ``"stage"`` trains the label's first stage, ``"method"``
its second stage or post-hoc step."""


def plan_jobs(cfg: Any, entries: Sequence[tuple[str, Any, str]]) -> tuple[list[Job], list[Job]]:
    """The jobs of the two phases: one per distinct (first stage, seed), named by the first method
    that starts from that stage (methods sharing a stage share its job: one stage key, one job),
    then one per (method that finishes a stage, seed)."""
    stage_jobs: list[Job] = []
    seen: set[tuple[str, int]] = set()
    finish_jobs: list[Job] = []
    for label, method, variant in entries:
        params = method.resolve_params(cfg.method_params.get(label, {}))
        key = stage_of(cfg, method, params, variant).key
        for seed in cfg.seeds:
            if (key, seed) not in seen:
                seen.add((key, seed))
                stage_jobs.append(("stage", label, seed))
            if method.needs_stage:
                finish_jobs.append(("method", label, seed))
    return stage_jobs, finish_jobs


def run_parallel(
    cfg: Any,
    out: Path,
    entries: Sequence[tuple[str, Any, str]],
    *,
    jobs: int,
    data: Mapping[Any, Any],
    tick: Callable[..., Any],
    threads: int,
    gpus: int = 0,
    on_running: Callable[[list[str]], None] | None = None,
) -> int:
    """Train every stage, then every finishing method, of ``entries`` in ``jobs`` processes.

    Returns the number of stages trained (not reused from the run folder).

    Args:
        cfg: the validated configuration.
        out: the run folder (already created by the runner).
        entries: ``(label, method, variant)`` as the runner lists them.
        jobs: worker processes.
        data: the runner's built data sets, keyed as ``Runs`` keys them.
        tick: the runner's progress callback (called in this process).
        threads: torch threads per job.
        gpus: visible CUDA devices (0 on a CPU machine).
        on_running: called with the names of the running jobs whenever they change.

    Raises:
        the first exception a job raised (the other jobs are cancelled; finished work stays on
        disk for ``--resume``).
    """
    stage_jobs, finish_jobs = plan_jobs(cfg, entries)
    ctx = forkserver_context()  # the server imports torch and the tracks once
    messages = ctx.Queue()
    counter = ctx.Value("i", 0)
    running: dict[int, str] = {}
    skipped: set[tuple[str, int]] = set()
    trained = 0

    def drain() -> None:
        changed = got = False
        while True:
            try:
                msg = messages.get_nowait()
            except queue_mod.Empty:
                break
            got = True
            if msg.get("done"):
                if running.pop(msg["pid"], None) is not None:
                    changed = True
                continue
            name = f"{msg['what']} s{msg['seed']}"
            info: dict[str, Any] = {}
            if msg["skipped"]:
                # a reused stage is counted once, as in one process (workers do not share that)
                if (msg["what"], msg["seed"]) in skipped:
                    continue
                skipped.add((msg["what"], msg["seed"]))
                info["skipped"] = True
            if msg["epoch"] is not None:
                info["epoch"] = msg["epoch"]
                info["row"] = {"train_loss": msg["train_loss"]}
                label = f"{name} ep {msg['epoch'] + 1}"
                if running.get(msg["pid"]) != label:
                    running[msg["pid"]] = label
                    changed = True
            if "record" in msg:
                info["record"] = msg["record"]
                info["finished"] = True
                if msg["pid"] in running:
                    del running[msg["pid"]]
                    changed = True
            tick(msg["what"], msg["seed"], msg["epochs"], **info)
        if (changed or got) and on_running is not None:
            on_running(sorted(running.values()))

    with cf.ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=ctx,
        initializer=_init,
        initargs=(
            cfg,
            str(out),
            [(label, variant) for label, _, variant in entries],
            dict(data),
            messages,
            threads,
            counter,
            gpus,
            os.getpid(),
        ),
    ) as pool:
        for phase in (stage_jobs, finish_jobs):
            futures = [pool.submit(_job, *job) for job in phase]
            pending = set(futures)
            try:
                while pending:
                    done, pending = cf.wait(pending, timeout=0.25, return_when=cf.FIRST_COMPLETED)
                    drain()
                    for fut in done:
                        try:
                            trained += fut.result()  # re-raises a job's error here
                        except cf.process.BrokenProcessPool as exc:
                            raise WorkerLost(sorted(running.values())) from exc
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
            drain()
    drain()
    return trained
