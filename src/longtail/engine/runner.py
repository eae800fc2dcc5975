"""Benchmark orchestration: every (method, seed) of a config, resumable, aggregated into ``results.json``.

Run-folder layout (only rank 0 writes; every file is written atomically)::

    RUN_DIR/
      config.yaml            the resolved configuration (reproduces the run)
      run.json               the command line, versions, start time
      results.json           aggregated metrics (schema below)
      report.md, plots/*.png tables and figures (see longtail.engine.report)
      stages/<stage>/seed_<s>/
                             a first training stage, shared by every method that starts from it
                             (see :func:`stage_of`): checkpoint.pt (every epoch), log.csv (per
                             epoch), model.pt (final weights), stage.json (its record)
      <method>/seed_<s>/     result.json (final metrics, evaluation details, the history of both
                             stages), model.pt (final weights, after the post-hoc step); for a
                             method with a second stage also its checkpoint.pt and log.csv

``results.json``::

    {"dataset": str, "task": "single-label" | "multi-label" | "open-set",
     "imbalance_factor": float | null,
     "class_counts": [int], "class_names": [str], "num_train": int, "num_test": int,
     "methods": {NAME: {"seeds": [int], "train_seconds": float,
                        "metrics": {METRIC: {"mean": float, "std": float, "values": [float]}}}}}

Multi-label runs: ``class_counts`` are each label's visible positive training examples and the
metrics are ``mAP``, ``CF1``, ``OF1`` and ``tail_mAP`` (see :mod:`longtail.tracks.multi_label.task`).
Open-set runs: seed ``i`` trains on ``open_set.splits[i]`` (the data are built per seed),
``class_counts`` / ``class_names`` are the first seed's known classes, the metrics are AUROC,
AUPR-in / -out, OSCR, closed-set and many / medium / few accuracy, and each method's
``composition.score`` names the score it thresholds (see :mod:`longtail.tracks.open_set.task`).
``train_seconds`` is the mean over seeds of the training wall-clock time of one run; ``std`` is the
sample standard deviation over seeds (0 for one seed); metric values are fractions in [0, 1]
(``null`` where undefined). A ``balanced`` entry, when configured, is ``erm`` trained on the same
number of images spread evenly over the classes.

Stages: a method is a first training stage (loss, sampler, head, mixing, first-stage
hyper-parameters) plus an optional second stage and post-hoc step. Methods whose first stages are
equal share one: it is trained once per (stage, seed), its identity is in every dependent run's
fingerprint, and it resumes like any run. ``la-posthoc``, ``tau-norm``, ``crt`` and ``lws`` finish
the stage of ``erm``.

Resume (``resume=True``): finished pairs (``result.json`` present) and finished stages
(``stage.json``) are reused, interrupted ones continue from their checkpoint, missing ones start.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from longtail.engine import distributed as D
from longtail.engine.checkpoint import (
    atomic_write_json,
    load_checkpoint,
    read_json,
    save_checkpoint,
)
from longtail.engine.config import Config, config_to_dict, save_config
from longtail.engine.datasets import DataBundle, hold_out_validation, write_split
from longtail.engine.kinds import TASK_KINDS, TaskKind
from longtail.engine.methods import METHODS, Method, resolve_methods
from longtail.engine.tasks import MetricSpec
from longtail.engine.trainer import Trainer

__all__ = [
    "BALANCED",
    "TASK_KINDS",
    "Stage",
    "TaskKind",
    "aggregate",
    "method_fingerprint",
    "method_names",
    "run_benchmark",
    "run_dir_for",
    "stage_dir_for",
    "stage_of",
    "train_method",
]

#: Name of the balanced-reference entry in ``results.json``.
BALANCED = "balanced"
#: Without a terminal, a progress line per (method, seed) at most this often (and one when it ends).
PROGRESS_SECONDS = 30.0


def method_names(cfg: Config) -> list[str]:
    """The registry methods a config asks for (``"all"``: every method of the config's task)."""
    if isinstance(cfg.methods, str):
        table = resolve_methods(cfg.recipes, cfg.task)
        return [name for name, m in table.items() if m.task == cfg.task]
    return list(cfg.methods)


def _data_problem(method: Method, data: DataBundle) -> str | None:
    """Why ``method`` cannot train on ``data`` (``None``: it can)."""
    if getattr(method, "sla", None) is not None and not data.is_image:
        return "needs images (SLA rotates and permutes them); the data are feature vectors"
    if getattr(method, "sampler", None) == "smote" and data.lazy:
        return "needs in-memory training data (SMOTE); the image folder is read lazily"
    return None


def run_dir_for(out_dir: Path, method: str, seed: int) -> Path:
    """Where a method's ``result.json`` (and its second stage's checkpoint) go."""
    return out_dir / method / f"seed_{seed}"


def stage_dir_for(out_dir: Path, stage: Stage, seed: int) -> Path:
    """Where a first stage's ``checkpoint.pt``, ``log.csv``, ``model.pt`` and ``stage.json`` go."""
    return out_dir / "stages" / stage.key / f"seed_{seed}"


def _clean(v: float) -> float | None:
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
        "values": [_clean(v) if v is not None else None for v in values],
    }


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
    return {
        "dataset": dataset,
        "task": task,
        "imbalance_factor": imbalance_factor,
        "class_counts": [int(c) for c in class_counts],
        "metric_specs": [
            {"name": m.name, "label": m.label, "higher_is_better": m.higher_is_better}
            for m in metric_specs
        ],
        "methods": methods,
    }


def _stage_blob(cfg: Config) -> dict[str, Any]:
    """The parts of the configuration every stage and run depends on (not the method lists)."""
    d = config_to_dict(cfg)
    for key in ("methods", "seeds", "name", "method_params", "recipes"):
        d.pop(key, None)
    d["train"].pop("eval_every", None)
    d["train"].pop("num_threads", None)
    d["data"].pop("balanced_reference", None)  # which data a stage trains on is its variant
    d["data"].pop("num_workers", None)  # loader processes do not change the batches
    return d


@dataclass
class Stage:
    """A first training stage, shared by every method whose :meth:`Method.stage_identity` is equal.

    Attributes:
        key: folder name under ``RUN_DIR/stages/`` (readable prefix and a content hash).
        identity: what determines it (loss, sampler, head, mixing, first-stage parameters, data).
        method: a method to train it with (its post-hoc step and second stage are not applied).
        params: that method's resolved parameters.
        variant: ``"long-tailed"`` or ``"balanced"`` (the reference's data).
    """

    key: str
    identity: dict[str, Any]
    method: Method
    params: dict[str, Any]
    variant: str

    def fingerprint(self, cfg: Config, seed: int) -> str:
        blob = json.dumps(
            {"config": _stage_blob(cfg), "stage": self.identity, "seed": int(seed)},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def stage_of(cfg: Config, method: Method, params: Mapping[str, Any], variant: str) -> Stage:
    """The first stage ``method`` trains (or reuses) on the data ``variant``."""
    ident = method.stage_identity(params)
    ident["data"] = variant
    blob = json.dumps({"config": _stage_blob(cfg), "stage": ident}, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:8]
    name = str(ident["loss"]).strip("<>").replace(" ", "-")
    parts = [name, method.sampler]
    if method.drw:
        parts.append("drw")
    if method.mix:
        parts.append(method.mix)
    if variant != "long-tailed":
        parts.append(variant)
    stage_method = dataclasses.replace(method, posthoc=None, second_stage=None)
    return Stage(f"{'-'.join(parts)}-{digest}", ident, stage_method, dict(params), variant)


def method_fingerprint(
    cfg: Config, label: str, method: Method, params: Mapping[str, Any], stage_fp: str
) -> str:
    """Identity of a method's result: its stage's fingerprint, composition and every parameter."""
    blob = json.dumps(
        {
            "stage": stage_fp,
            "label": label,
            "composition": method.composition(),
            "params": dict(sorted(params.items())),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class _Runs:
    """Trains stages (once per stage and seed) and methods; counts what it trained."""

    def __init__(
        self,
        cfg: Config,
        out: Path,
        *,
        resume: bool,
        tick: Callable[..., Any],
        data: DataBundle | None = None,
    ):
        self.cfg = cfg
        self.kind = TASK_KINDS[cfg.task]
        self._given_data = data
        self.out = out
        self.resume = resume
        self.tick = tick
        self.main = D.is_main_process()
        self._stages: dict[str, tuple[dict[str, Any], dict[str, Tensor]]] = {}
        self._data: dict[tuple[str, int | None], DataBundle] = {}
        #: stages actually trained (not reused) in this session, as (stage key, seed)
        self.trained_stages: list[tuple[str, int]] = []
        self._counted: set[tuple[str, int]] = set()  # stages whose epochs the progress has seen

    def _count_stage(self, key: str, seed: int, epochs: int) -> None:
        """Advance the progress by a reused (or resumed) stage's epochs, once per (stage, seed)."""
        if (key, seed) not in self._counted:
            self._counted.add((key, seed))
            self.tick(key, seed, epochs, skipped=True)

    def loaded_data(self) -> dict[tuple[str, int | None], DataBundle]:
        """The data sets built so far, keyed as :meth:`data` keys them."""
        return dict(self._data)

    def data(self, variant: str, seed: int) -> DataBundle:
        if self._given_data is not None:
            return self._given_data
        per_seed = (
            self.kind.data_per_seed or getattr(self.cfg.data, "class_order", "fixed") == "random"
        )
        key = (variant, seed if per_seed else None)
        if key not in self._data:
            bundle = self.kind.build_data(self.cfg, variant, seed if per_seed else None)
            fraction = getattr(self.cfg.data, "validation_fraction", None)
            if fraction is not None:
                bundle = hold_out_validation(bundle, fraction, self.cfg.data.subset_seed + 3)
            from longtail.engine.config import check_config_against_data

            check_config_against_data(
                self.cfg, is_image=bundle.is_image, num_classes=bundle.num_classes
            )
            self._data[key] = bundle
        return self._data[key]

    def stage(self, stage: Stage, seed: int) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """The finished stage (record, final weights): trained now, or read from its folder."""
        fp = stage.fingerprint(self.cfg, seed)
        if fp in self._stages:
            return self._stages[fp]
        sdir = stage_dir_for(self.out, stage, seed)
        done = sdir / "stage.json"
        if done.is_file() and (sdir / "model.pt").is_file():
            record = read_json(done)
            if record.get("fingerprint") != fp:
                raise FileExistsError(
                    f"--resume: {done} was produced with a different configuration; use another --out"
                )
            state = load_checkpoint(sdir / "model.pt")
            self._count_stage(stage.key, seed, self.cfg.train.epochs)
            self._stages[fp] = (record, state)
            return self._stages[fp]
        bundle = self.data(stage.variant, seed)
        stage_cfg = (
            self.cfg
            if self.kind.stage_config is None
            else self.kind.stage_config(self.cfg, stage.method, stage.params)
        )
        task = self.kind.stage_task(stage.method, bundle, stage_cfg, stage.params)
        trainer = Trainer(
            task,
            bundle,
            stage_cfg,
            seed=seed,
            run_dir=sdir,
            fingerprint=fp,
            on_epoch_end=lambda e, row: self.tick(stage.key, seed, 1, row=row, epoch=e),
            label=f"stage {stage.key}",
        )
        self._count_stage(stage.key, seed, _epochs_done(sdir))  # 0 in a fresh run folder
        result = trainer.fit(resume=True)  # a fresh run folder has no checkpoint to resume
        assert result is not None
        self.trained_stages.append((stage.key, seed))
        record = {
            "fingerprint": fp,
            "stage": stage.key,
            "identity": stage.identity,
            "seed": seed,
            "train_seconds": result.train_seconds,
            "epochs": result.epochs,
            "metrics": {k: _clean(v) for k, v in result.metrics.items()},
            "details": result.details,
            "history": [{k: _clean(v) for k, v in row.items()} for row in result.history],
        }
        if self.main:
            save_checkpoint(sdir / "model.pt", result.model_state)
            atomic_write_json(done, record)
        self._stages[fp] = (record, result.model_state)
        return self._stages[fp]

    def method(self, label: str, method: Method, variant: str, seed: int) -> dict[str, Any]:
        """Train (or reuse) ``method``'s stage, then its second stage / post-hoc step."""
        cfg = self.cfg
        params = method.resolve_params(cfg.method_params.get(label, {}))
        stage = stage_of(cfg, method, params, variant)
        stage_fp = stage.fingerprint(cfg, seed)
        fingerprint = method_fingerprint(cfg, label, method, params, stage_fp)
        rdir = run_dir_for(self.out, label, seed)
        result_file = rdir / "result.json"
        if result_file.is_file() and self.resume:
            done = read_json(result_file)
            if done.get("fingerprint") != fingerprint:
                raise FileExistsError(
                    f"--resume: {result_file} was produced with a different configuration "
                    "(data, model, training recipe or hyper-parameters); use another --out"
                )
            # the progress total counts this result's stage and second stage: count them as done
            self._count_stage(stage.key, seed, cfg.train.epochs)
            if method.second_stage:
                extra = self.kind.finish_config(cfg, method, params).train.epochs
                self.tick(label, seed, extra, skipped=True)
            return dict(done)
        stage_record, stage_state = self.stage(stage, seed)
        bundle = self.data(variant, seed)
        record: dict[str, Any] = {
            "fingerprint": fingerprint,
            "method": label,
            "registry_method": method.name,
            "composition": method.composition(),
            "stage": stage.key,
            "seed": seed,
            "params": params,
            "class_counts": bundle.class_counts,
            "group_counts": bundle.group_counts,
        }
        final_state = stage_state
        if not method.needs_stage:
            record.update(
                {
                    k: stage_record[k]
                    for k in ("train_seconds", "epochs", "metrics", "details", "history")
                }
            )
        else:
            cfg2 = self.kind.finish_config(cfg, method, params)
            task = self.kind.finish_task(method, bundle, cfg2, stage_state, params)
            trainer = Trainer(
                task,
                bundle,
                cfg2,
                seed=seed,
                run_dir=rdir if method.second_stage else None,
                fingerprint=fingerprint,
                on_epoch_end=lambda e, row: self.tick(label, seed, 1, row=row, epoch=e),
                label=label,
            )
            if method.second_stage:
                self.tick(label, seed, _epochs_done(rdir), skipped=True)
            result = trainer.fit(resume=True)
            assert result is not None
            offset = int(stage_record["epochs"])
            history = list(stage_record["history"]) + [
                {
                    **{k: _clean(v) for k, v in row.items()},
                    "epoch": offset + row["epoch"],
                    "stage": 2.0,
                }
                for row in result.history
            ]
            record.update(
                {
                    "train_seconds": float(stage_record["train_seconds"]) + result.train_seconds,
                    "epochs": offset + result.epochs,
                    "metrics": {k: _clean(v) for k, v in result.metrics.items()},
                    "details": result.details,
                    "history": history,
                }
            )
            final_state = result.model_state
        if self.main:
            save_checkpoint(rdir / "model.pt", final_state)
            atomic_write_json(result_file, record)
        self.tick(label, seed, 0, finished=True, record=record)
        return record


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

    runs = _Runs(cfg, Path(out_dir), resume=resume, tick=quiet, data=data)
    return runs.method(label or method.name, method, "long-tailed", seed)


def run_benchmark(
    cfg: Config,
    out_dir: str | Path,
    *,
    resume: bool = False,
    command: str = "",
    progress: bool = True,
    echo: Callable[[str], None] | None = print,
    jobs: int = 1,
) -> dict[str, Any]:
    """Train every (method, seed) of ``cfg``, write the run folder, return ``results.json``'s content.

    Stages are trained once per (stage, seed) and reused by every method that starts from them
    (``erm``, ``la-posthoc``, ``tau-norm``, ``crt`` and ``lws`` share one); see :func:`stage_of`.

    Args:
        cfg: validated configuration.
        out_dir: the run folder (created).
        resume: skip finished pairs and continue interrupted ones (see module docstring).
        command: the command line to record in ``run.json`` and the report.
        progress: show a tqdm bar (rank 0).
        echo: where to print the final table (``None``: silent).
        jobs: worker processes for the stages and second stages (see
            :mod:`longtail.engine.parallel`); 1 trains in this process. Not under ``torchrun``.

    The data are loaded and checked before the run folder is written, and a start that fails before
    ``config.yaml`` and ``run.json`` are written removes the folders it created; a folder holding
    only those two files (a start that failed later, before any result) is reused as if empty.

    Raises:
        FileExistsError: ``out_dir`` already holds results and ``resume`` is false, or it is a
            file, or a non-empty folder that is not a run folder (never written into).
        OSError: ``out_dir`` cannot be created or written (the message names it).
        NonFiniteLossError: a run diverged (the finished runs and its last checkpoint are kept).
    """
    from longtail.engine.report import format_table, write_report

    out = Path(out_dir)
    main = D.is_main_process()
    table = resolve_methods(cfg.recipes, cfg.task)
    names = method_names(cfg)
    entries = [(n, table[n], "long-tailed") for n in names]
    if cfg.data.balanced_reference:
        entries.append((BALANCED, METHODS["erm"], "balanced"))
    # rank 0 checks and creates the folder; every rank raises the same error (none waits forever)
    _raise_shared(FileExistsError, _out_dir_problem(out, resume) if main else None)
    if resume:
        _check_resumable(out, cfg, entries)
    created: list[Path] = []
    problem = None
    if main:
        try:
            created = _make_dirs(out)
        except OSError as exc:
            problem = f"--out: cannot create the run folder {out}: {_os_reason(exc)}"
    _raise_shared(OSError, problem)
    runs = _Runs(cfg, out, resume=resume, tick=lambda *a, **k: None)
    # every data set of the run is built now, before any training: building one later would see the
    # thread count a training set (train.num_threads), and the float32 standardisation statistics
    # depend on it in their last bits, so the same data would differ with the order of the runs;
    # and before the run folder is written, so that bad data leave no half-made run behind
    try:
        _check_data_files(cfg)
        for variant in dict.fromkeys(v for _, _, v in entries):
            for seed in cfg.seeds:
                runs.data(variant, seed)
        first = runs.data("long-tailed", cfg.seeds[0])
        unfit = {n: why for n, m, _ in entries if (why := _data_problem(m, first)) is not None}
        if unfit and not isinstance(cfg.methods, str):
            name, why = next(iter(unfit.items()))
            raise ValueError(f"config key 'methods': {name} {why}")
    except BaseException:
        if main:
            _remove_empty_dirs(created)
        raise
    if unfit:  # methods: all -> every method the data can run
        entries = [e for e in entries if e[0] not in unfit]
        if echo is not None and main:
            for why in dict.fromkeys(unfit.values()):
                skipped = ", ".join(n for n, w in unfit.items() if w == why)
                echo(f"note: skipped {skipped}: {why}")
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
            problem = f"--out: cannot write to the run folder {out}: {_os_reason(exc)}"
    _raise_shared(OSError, problem)  # also the barrier: no rank trains before the folder is made
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
            from tqdm.auto import tqdm

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
    parallel_stages = 0
    if jobs > 1:
        if D.world_size() > 1:
            raise ValueError("--jobs: runs in worker processes cannot be combined with torchrun")
        from longtail.engine.parallel import run_parallel, threads_per_job

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
    finally:
        if bar is not None:
            bar.close()
    first = runs.data("long-tailed", cfg.seeds[0])
    results = aggregate(
        per_run,
        dataset=first.name,
        task=cfg.task,
        imbalance_factor=cfg.data.imbalance_factor,
        class_counts=first.class_counts,
        metric_specs=TASK_KINDS[cfg.task].metrics,
        compositions={label: m.composition() for label, m, _ in entries},
    )
    results["class_names"] = list(first.class_names)
    # the file or folder the data were read from, absolute (the report names it); null: bundled
    source = cfg.data.path or cfg.data.data_dir
    results["data_source"] = str(Path(source).expanduser().resolve()) if source else None
    results["num_train"] = len(first.train_y)
    results["num_test"] = len(first.test_y)
    # "validation": the metrics are of a split held out of the training data, not the test set
    results["evaluated_on"] = first.evaluated_on
    results["stages_trained"] = len(runs.trained_stages) + parallel_stages
    if main:
        atomic_write_json(out / "results.json", results)
        write_report(out)
        if echo is not None:
            echo(format_table(results, markdown=False))
            echo(f"\nrun folder: {out}")
    D.barrier()
    return results


#: The files that make a folder a run folder (written by :func:`run_benchmark` before training).
_RUN_MARKERS = ("config.yaml", "run.json")
#: Files of a run folder written before any training (a failed start leaves only these).
_START_FILES = (*_RUN_MARKERS, "split.json")
#: Data sets read from IDX files (their labels are checked before the data are built).
_IDX_DATASETS = ("fashion-mnist", "mnist", "kmnist", "idx", "fashion-pairs", "fashion-tiles")


def _raise_shared(kind: type[Exception], problem: str | None) -> None:
    """Raise ``kind(problem)`` on every process if rank 0's ``problem`` is not ``None``.

    Only rank 0 looks at the run folder; broadcasting its verdict makes every rank fail alike (and
    acts as a barrier) instead of leaving the others waiting in a collective.
    """
    shared = D.broadcast_object(problem)
    if shared is not None:
        raise kind(str(shared))


def _os_reason(exc: OSError) -> str:
    """``Permission denied``, ``Not a directory (x is a file)``, ...: the reason, one line."""
    reason = exc.strerror or str(exc)
    if isinstance(exc, NotADirectoryError) and exc.filename:
        blocker = next((q for q in Path(exc.filename).parents if q.is_file()), None)
        if blocker is not None:
            reason += f" ({blocker} is a file)"
    return reason


def _is_our_temp(name: str) -> bool:
    """A temporary file of an interrupted atomic write (``.NAME.XXXX.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp")


def _is_run_folder(out: Path) -> bool:
    """``out`` holds a ``config.yaml`` and the ``run.json`` this module writes next to it."""
    if not all((out / name).is_file() for name in _RUN_MARKERS):
        return False
    try:
        meta = read_json(out / "run.json")
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "command" in meta and "started" in meta


def _has_results(out: Path) -> bool:
    """Any file besides :data:`_START_FILES` on top and temporary files anywhere in ``out``."""
    for root, _dirs, files in os.walk(out):
        top = Path(root) == out
        for name in files:
            if not (_is_our_temp(name) or (top and name in _START_FILES)):
                return True
    return False


def _out_dir_problem(out: Path, resume: bool) -> str | None:
    """Why ``out`` cannot take this run (``None``: it can). Reads only; never writes.

    A missing or empty folder takes any run; a run folder (or the ``stages/`` and method folders
    :func:`train_method` writes) takes ``--resume``, or a new run if it holds nothing but the
    ``config.yaml`` / ``run.json`` of a start that failed; any other folder holds files this command
    did not write and is refused.
    """
    if out.exists() and not out.is_dir():
        return f"--out: {out} is a file, not a folder; choose a new or empty folder"
    if not out.is_dir():
        return None
    try:
        names = sorted(e.name for e in out.iterdir() if not _is_our_temp(e.name))
    except OSError as exc:
        return f"--out: cannot read the folder {out}: {_os_reason(exc)}"
    if not names:
        return None
    # the stages and method folders of train_method (no config.yaml / run.json, no files on top)
    trained = "stages" in names and all((out / n).is_dir() for n in names)
    if not (_is_run_folder(out) or trained):
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        return (
            f"--out: {out} is not empty and not a run folder (it holds {shown}); its files are "
            "not overwritten: choose a new or empty folder"
        )
    if not resume and _has_results(out):
        return (
            f"--out: {out} already holds a run; pass --resume to continue it or choose another "
            "folder"
        )
    return None


def _make_dirs(out: Path) -> list[Path]:
    """Create ``out`` and its missing parents; return the folders created, deepest first."""
    missing = [q for q in (out, *out.parents) if not q.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError:
        _remove_empty_dirs([q for q in missing if q.is_dir()])
        raise
    return missing


def _remove_empty_dirs(created: Sequence[Path]) -> None:
    """Remove the folders this run created (deepest first), if they are still empty."""
    for folder in created:
        try:
            folder.rmdir()  # only an empty folder: never anything another program put there
        except OSError:
            return


def _check_data_files(cfg: Config) -> None:
    """Check what building the data would report less clearly: IDX labels must be ``0..K-1``."""
    d = cfg.data
    if d.dataset in _IDX_DATASETS and d.data_dir is not None:
        directory = Path(d.data_dir).expanduser()
        if directory.is_dir():  # a missing folder: building the data names data.data_dir
            from longtail.data.idx import check_idx_labels

            check_idx_labels(directory)


def _check_resumable(out: Path, cfg: Config, entries: Sequence[tuple[str, Method, str]]) -> None:
    """Refuse to resume over results or checkpoints written with another configuration."""
    for label, method, variant in entries:
        params = method.resolve_params(cfg.method_params.get(label, {}))
        stage = stage_of(cfg, method, params, variant)
        for seed in cfg.seeds:
            stage_fp = stage.fingerprint(cfg, seed)
            expected = method_fingerprint(cfg, label, method, params, stage_fp)
            rdir = run_dir_for(out, label, seed)
            found = None
            if (rdir / "result.json").is_file():
                found = read_json(rdir / "result.json").get("fingerprint")
            elif (rdir / "checkpoint.pt").is_file():
                found = load_checkpoint(rdir / "checkpoint.pt").get("fingerprint")
            if found is not None and found != expected:
                raise FileExistsError(
                    f"--resume: {rdir} was produced with a different configuration (data, model, "
                    "training recipe or hyper-parameters); use another --out"
                )


def _epochs_done(rdir: Path) -> int:
    ckpt = rdir / "checkpoint.pt"
    if not ckpt.is_file():
        return 0
    try:
        from longtail.engine.checkpoint import load_checkpoint

        return int(load_checkpoint(ckpt)["epoch"])
    except Exception:
        return 0


def default_out_dir(name: str, root: str | os.PathLike[str] = "runs") -> Path:
    """``runs/<name>-<YYYYmmdd-HHMMSS>`` (with ``-2``, ``-3``, ... if that exists already)."""
    base = Path(root) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def latest_out_dir(name: str, root: str | os.PathLike[str] = "runs") -> Path | None:
    """The most recent ``runs/<name>-*`` run folder (``config.yaml`` and ``run.json``), if any."""
    base = Path(root)
    if not base.is_dir():
        return None
    cands = [p for p in base.glob(f"{name}-*") if _is_run_folder(p)]
    return max(cands, key=lambda p: (p.stat().st_mtime, p.name)) if cands else None


def describe_command(argv: Sequence[str] | None = None) -> str:
    """The command line as typed (``longtail ...``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["longtail", *(_quote(a) for a in args)])


def _quote(a: str) -> str:
    import shlex

    return shlex.quote(a)
