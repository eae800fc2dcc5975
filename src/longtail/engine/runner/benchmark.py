"""Benchmark orchestration: every (method, seed) of a config, resumable, aggregated into ``results.json``.

:func:`run_benchmark` checks and creates the run folder (:mod:`~longtail.engine.runner.folders`),
builds every data set, trains the stages and methods (:class:`~longtail.engine.runner.runs.Runs`,
in this process or in worker processes: :mod:`~longtail.engine.runner.parallel`), and writes
``results.json`` (:mod:`~longtail.engine.runner.results`) and the report. :func:`train_method` is
one (method, seed) of it, programmatically.
"""

from __future__ import annotations

import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from longtail.engine import distributed as D
from longtail.engine.checkpoint import atomic_write_json
from longtail.engine.config import Config, save_config
from longtail.engine.datasets import DataBundle, DataWarning, write_split
from longtail.engine.kinds import TASK_KINDS, reference_method
from longtail.engine.methods import Method, resolve_methods
from longtail.engine.report import format_table, write_report
from longtail.engine.runner.earlier import Earlier, earlier_results, pairs_phrase
from longtail.engine.runner.folders import (
    check_data_files,
    check_resumable,
    os_reason,
    raise_shared,
    remove_empty_dirs,
    take_run_folder,
)
from longtail.engine.runner.lock import RunFolderLock
from longtail.engine.runner.parallel import auto_jobs, run_parallel, threads_per_job
from longtail.engine.runner.reference import (
    SKLEARN,
    SklearnRow,
    check_sklearn_resumable,
    summary,
)
from longtail.engine.runner.results import aggregate
from longtail.engine.runner.runs import Runs
from longtail.engine.runner.stages import BALANCED, stage_of
from longtail.engine.trainer import check_device_settings

__all__ = ["data_problem", "method_names", "run_benchmark", "train_method"]

#: Without a terminal, a progress line per (method, seed) at most this often (and one when it ends).
PROGRESS_SECONDS = 30.0


def method_names(cfg: Config) -> list[str]:
    """The registry methods a config asks for (``"all"``: every method of the config's task)."""
    if isinstance(cfg.methods, str):
        table = resolve_methods(cfg.recipes, cfg.task)
        return [name for name, m in table.items() if m.task == cfg.task]
    return list(cfg.methods)


def data_problem(method: Method, data: DataBundle) -> str | None:
    """Why ``method`` cannot train on ``data`` (``None``: it can)."""
    why = getattr(method, "needs_images", None)
    if why is not None and not data.is_image:
        return f"needs images ({why}); the data are feature vectors"
    if getattr(method, "sampler", None) == "smote" and data.lazy:
        return "needs in-memory training data (SMOTE); the image folder is read lazily"
    return None


def train_method(
    method: Method,
    data: DataBundle,
    cfg: Config,
    *,
    seed: int,
    out_dir: str | Path,
    label: str | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train one method (its first stage, then its second stage / post-hoc step) on ``data``.

    The programmatic form of one (method, seed) of :func:`run_benchmark`, with the same files under
    ``out_dir``; returns the ``result.json`` record.
    """

    def quiet(*args: Any, **kwargs: Any) -> None:
        return None

    runs = Runs(cfg, Path(out_dir), resume=resume, tick=quiet, data=data)
    return runs.method(label or method.name, method, "long-tailed", seed)


def run_benchmark(
    cfg: Config,
    out_dir: str | Path,
    *,
    resume: bool = False,
    command: str = "",
    progress: bool = True,
    echo: Callable[[str], None] | None = print,
    jobs: int | None = 1,
    data: DataBundle | None = None,
) -> dict[str, Any]:
    """Train every (method, seed) of ``cfg``, write the run folder, return ``results.json``'s content.

    Stages are trained once per (stage, seed) and reused by every method that starts from them
    (``erm``, ``la-posthoc``, ``tau-norm``, ``crt`` and ``lws`` share one); see :func:`stage_of`.

    Args:
        cfg: validated configuration.
        out_dir: the run folder (created).
        resume: skip finished pairs and continue interrupted ones (see
            :mod:`longtail.engine.runner`); ``results.json`` also covers the finished pairs of
            earlier runs in the folder that match ``cfg`` (:mod:`~longtail.engine.runner.earlier`).
        command: the command line to record in ``run.json`` and the report.
        progress: show a tqdm bar (rank 0).
        echo: where to print the final table (``None``: silent).
        jobs: worker processes for the stages and second stages (see
            :mod:`longtail.engine.runner.parallel`); 1 trains in this process. Not under ``torchrun``.
            ``None``: chosen from the amount of work once the data are built
            (:func:`~longtail.engine.runner.parallel.auto_jobs`; 1 under ``torchrun``).
        data: the data of every seed instead of building them from ``cfg`` (the Python API,
            ``tune_method(data=...)``'s confirmation runs); ``cfg``'s data section still names
            them in the fingerprints. Not with a balanced reference, which is built from ``cfg``
            (a scikit-learn reference is fitted on the given data).

    The data are loaded and checked before the run folder is written, and a start that fails before
    ``config.yaml`` and ``run.json`` are written removes the folders it created; a folder holding
    only those two files (a start that failed later, before any result) is reused as if empty.

    The run folder is locked for the whole call (:mod:`~longtail.engine.runner.lock`): another
    command into it at the same time stops at once.

    Raises:
        FileExistsError: ``out_dir`` already holds results and ``resume`` is false, or it is a
            file, or a non-empty folder that is not a run folder (never written into).
        RunFolderInUse: another command holds ``out_dir`` (a :class:`FileExistsError`).
        OSError: ``out_dir`` cannot be created or written (the message names it).
        NonFiniteLossError: a run diverged (the finished runs and its last checkpoint are kept).
        ValueError: ``data`` given with ``data.balanced_reference``.
    """
    out = Path(out_dir)
    if data is not None and cfg.data.balanced_reference:
        raise ValueError(
            "data.balanced_reference: the balanced reference is built from the config, not from "
            "the data given to run_benchmark; set it to false"
        )
    check_device_settings(cfg)  # e.g. fp16 on a CPU: refused before the run folder is made
    # rank 0 checks, creates and locks the folder; every rank raises the same error (none waits
    # forever); the lock is held until the command ends (the OS drops it if the process dies)
    created, lock = take_run_folder(out, resume, command)
    try:
        return _run_benchmark(
            cfg,
            out,
            created,
            lock,
            resume=resume,
            command=command,
            progress=progress,
            echo=echo,
            jobs=jobs,
            data=data,
        )
    finally:
        if lock is not None:
            lock.release()


def _run_benchmark(
    cfg: Config,
    out: Path,
    created: list[Path],
    lock: RunFolderLock | None,
    *,
    resume: bool,
    command: str,
    progress: bool,
    echo: Callable[[str], None] | None,
    jobs: int | None,
    data: DataBundle | None = None,
) -> dict[str, Any]:
    """:func:`run_benchmark` in the run folder ``out``, created (``created``) and locked."""
    main = D.is_main_process()
    table = resolve_methods(cfg.recipes, cfg.task)
    names = method_names(cfg)
    entries = [(n, table[n], "long-tailed") for n in names]
    if cfg.data.balanced_reference:
        entries.append((BALANCED, reference_method(cfg.task), "balanced"))
    if echo is not None and lock is not None and lock.note is not None:
        print(f"note: {lock.note}", file=sys.stderr, flush=True)
    runs = Runs(cfg, out, resume=resume, tick=lambda *a, **k: None, data=data)
    # every data set of the run is built now, before any training: building one later would see the
    # thread count a training set (train.num_threads), and the float32 standardisation statistics
    # depend on it in their last bits, so the same data would differ with the order of the runs;
    # and before the run folder is written, so that bad data leave no half-made run behind
    try:
        if resume:  # checked once locked: no other command writes into the folder now
            check_resumable(out, cfg, entries)
            if cfg.data.sklearn_reference:
                check_sklearn_resumable(out, cfg)
        if data is None:
            check_data_files(cfg)
        with warnings.catch_warnings():  # shown once each, below, as notes (DataBundle.notes)
            warnings.simplefilter("ignore", DataWarning)
            for variant in dict.fromkeys(v for _, _, v in entries):
                for seed in cfg.seeds:
                    runs.data(variant, seed)
        first = runs.data("long-tailed", cfg.seeds[0])
        unfit = {n: why for n, m, _ in entries if (why := data_problem(m, first)) is not None}
        if unfit and not isinstance(cfg.methods, str):
            name, why = next(iter(unfit.items()))
            raise ValueError(f"config key 'methods': {name} {why}")
    except BaseException:
        if lock is not None:  # a folder this command created goes again, with the lock's files
            lock.release(discard=bool(created))
            remove_empty_dirs(created)
        raise
    if unfit:  # methods: all -> every method the data can run
        entries = [e for e in entries if e[0] not in unfit]
        if echo is not None and main:
            for why in dict.fromkeys(unfit.values()):
                skipped = ", ".join(n for n, w in unfit.items() if w == why)
                print(f"note: skipped {skipped}: {why}", file=sys.stderr, flush=True)
    # additive resume: the results of earlier commands this one does not ask for, if they match
    asked = {(label, seed) for label, _, _ in entries for seed in cfg.seeds}
    if cfg.data.sklearn_reference:
        asked |= {(SKLEARN, seed) for seed in cfg.seeds}
    earlier = earlier_results(out, cfg, asked) if resume else Earlier()
    if echo is not None and main:  # remarks about the data (not errors), on standard error
        for note in dict.fromkeys(n for b in runs.loaded_data().values() for n in b.notes):
            print(f"note: {note}", file=sys.stderr, flush=True)
    problem = None
    if main:
        meta = {
            "command": command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "platform": platform.platform(),
            "world_size": D.world_size(),
        }
        try:
            save_config(cfg, out / "config.yaml")
            atomic_write_json(out / "run.json", meta)
            # the test examples a split without its own test set held out (split.json)
            write_split(runs.data("long-tailed", cfg.seeds[0]), out)
        except OSError as exc:
            problem = f"--out: cannot write to the run folder {out}: {os_reason(exc)}"
    raise_shared(OSError, problem)  # also the barrier: no rank trains before the folder is made
    # progress: every distinct stage's epochs once, plus every second stage's
    total = 0
    seen_stages: set[str] = set()
    for label, m, variant in entries:
        params = m.resolve_params(cfg.method_params.get(label, {}))
        st = stage_of(cfg, m, params, variant)
        if st.key not in seen_stages:
            seen_stages.add(st.key)
            total += cfg.train.epochs * len(cfg.seeds)
        if m.second_stage:
            total += TASK_KINDS[cfg.task].finish_config(cfg, m, params).train.epochs * len(
                cfg.seeds
            )
    bar: Any = None
    if progress and main:
        try:
            from tqdm.auto import tqdm  # optional dependency: tqdm (a progress bar)

            # a live bar on a terminal; one line per finished (method, seed) otherwise
            bar = tqdm(total=total, unit="epoch", desc=cfg.name, dynamic_ncols=True, disable=None)
            if bar.disable:
                bar = None
        except ImportError:  # pragma: no cover
            bar = None
    last_line = [time.monotonic()]

    def tick(what: str, seed: int, epochs: int, **info: Any) -> None:
        if bar is not None:
            if epochs:
                bar.update(epochs)
            bar.set_postfix_str(f"{what} seed {seed}")
            return
        if not (progress and main):
            return
        row = info.get("row")
        record = info.get("record")
        if row is not None and time.monotonic() - last_line[0] >= PROGRESS_SECONDS:
            # no terminal (a log file, a batch job): a line now and then for long runs
            last_line[0] = time.monotonic()
            print(
                f"{cfg.name}: {what} seed {seed}: epoch {info['epoch'] + 1}, "
                f"train loss {row['train_loss']:.4g}",
                file=sys.stderr,
                flush=True,
            )
        if record is not None:
            primary = TASK_KINDS[cfg.task].metrics[0]
            value = record["metrics"].get(primary.name)
            shown = "n/a" if value is None else f"{100 * value:.1f}%"
            print(
                f"{cfg.name}: {what} seed {seed}: {primary.label} {shown} "
                f"({record['train_seconds']:.1f} s)",
                file=sys.stderr,
                flush=True,
            )

    runs.tick = tick
    if jobs is None:  # the default: from the amount of work (one job for a small run)
        jobs = 1
        if D.world_size() == 1:
            sizes = {
                (variant, seed): len(runs.data(variant, seed).train_y)
                for _, _, variant in entries
                for seed in cfg.seeds
            }
            device = D.resolve_device(cfg.train.device)
            jobs, steps = auto_jobs(cfg, entries, sizes, device)
            if echo is not None and jobs > 1:
                threads = threads_per_job(jobs, cfg.train.num_threads)
                print(
                    f"{cfg.name}: {jobs} jobs of {threads} thread{'s' if threads > 1 else ''} "
                    f"({steps} optimisation steps; --jobs 1 trains in this process)",
                    file=sys.stderr,
                    flush=True,
                )
    parallel_stages = 0
    if jobs > 1:
        if D.world_size() > 1:
            raise ValueError("--jobs: runs in worker processes cannot be combined with torchrun")
        device = D.resolve_device(cfg.train.device)
        gpus = torch.cuda.device_count() if device.type == "cuda" else 0

        def show_running(running: list[str]) -> None:
            if bar is not None:
                bar.set_postfix_str("running: " + ", ".join(running) if running else "")

        parallel_stages = run_parallel(
            cfg,
            out,
            entries,
            jobs=jobs,
            data=runs.loaded_data(),
            tick=tick,
            threads=threads_per_job(jobs, cfg.train.num_threads),
            gpus=gpus,
            on_running=show_running,
        )
        # every result is on disk now: the pass below collects them as a resumed run does
        runs.resume = True
        runs.tick = lambda *a, **k: None
    per_run: dict[str, list[dict[str, Any]]] = {}
    try:
        for label, method, variant in entries:
            for seed in cfg.seeds:
                per_run.setdefault(label, []).append(runs.method(label, method, variant, seed))
        if cfg.data.sklearn_reference:  # the scikit-learn baseline: no stage, a row of its own
            sklearn_row = SklearnRow(runs)
            per_run[SKLEARN] = [sklearn_row.record(seed) for seed in cfg.seeds]
    finally:
        if bar is not None:
            bar.close()
    for label, records in earlier.records.items():
        per_run.setdefault(label, []).extend(records)
    refs = [k for k in (BALANCED, SKLEARN) if k in per_run]  # the references last
    per_run = {k: per_run[k] for k in [*(k for k in per_run if k not in refs), *refs]}
    first = runs.data("long-tailed", cfg.seeds[0])
    compositions = {label: m.composition() for label, m, _ in entries}
    compositions |= {label: m.composition() for label, m in earlier.methods.items()}
    results = aggregate(
        per_run,
        dataset=first.name,
        task=cfg.task,
        imbalance_factor=cfg.data.imbalance_factor,
        class_counts=first.class_counts,
        metric_specs=TASK_KINDS[cfg.task].metrics,
        compositions=compositions,
    )
    results["class_names"] = list(first.class_names)
    if SKLEARN in per_run:
        seeds = sorted(int(r["seed"]) for r in per_run[SKLEARN])
        results["sklearn_reference"] = summary(per_run[SKLEARN][0], seeds)
    if earlier.records:  # (method, seeds) not asked for: read from earlier runs in the folder
        results["earlier_runs"] = earlier.seeds()
    # the file or folder the data were read from, absolute (the report names it); null: bundled
    source = cfg.data.path or cfg.data.data_dir
    results["data_source"] = str(Path(source).expanduser().resolve()) if source else None
    results["num_train"] = len(first.train_y)
    results["num_test"] = len(first.test_y)
    # "validation": the metrics are of a split held out of the training data, not the test set
    results["evaluated_on"] = first.evaluated_on
    if first.details:  # what building the data decided (e.g. multi-label: dropped, scored labels)
        results["data_details"] = first.details
    # the scaling of feature vectors (data.feature_scaling, auto resolved); null: images, digits
    results["feature_scaling"] = first.feature_scaling
    results["stages_trained"] = len(runs.trained_stages) + parallel_stages
    if main:
        atomic_write_json(out / "results.json", results)
        write_report(out)
        if echo is not None:
            _say_earlier(out, earlier)
            echo(format_table(results, markdown=False))
            echo(f"\nrun folder: {out}")
    D.barrier()
    return results


def _say_earlier(out: Path, earlier: Earlier) -> None:
    """Notes (standard error) on the rows added from earlier runs and the results left out."""
    if earlier.records:
        pairs = [(label, int(r["seed"])) for label, recs in earlier.records.items() for r in recs]
        print(
            f"note: added from earlier runs in {out} (not asked for by this command): "
            f"{pairs_phrase(pairs)}",
            file=sys.stderr,
            flush=True,
        )
    for why in dict.fromkeys(w for _, _, w in earlier.left_out):
        pairs = [(label, seed) for label, seed, w in earlier.left_out if w == why]
        print(
            f"note: left out of results.json, kept in {out}: {pairs_phrase(pairs)}: {why}",
            file=sys.stderr,
            flush=True,
        )
