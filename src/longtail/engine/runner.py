"""Benchmark orchestration: every (method, seed) of a config, resumable, aggregated into ``results.json``.

Run-folder layout (only rank 0 writes; every file is written atomically)::

    RUN_DIR/
      config.yaml            the resolved configuration (reproduces the run)
      run.json               the command line, versions, start time
      results.json           aggregated metrics (schema below)
      report.md, plots/*.png tables and figures (see longtail.engine.report)
      <method>/seed_<s>/     checkpoint.pt (every epoch), log.csv (per epoch), model.pt (final
                             weights), result.json (final metrics and evaluation details)

``results.json``::

    {"dataset": str, "task": "single-label", "imbalance_factor": float | null,
     "class_counts": [int],
     "methods": {NAME: {"seeds": [int], "train_seconds": float,
                        "metrics": {METRIC: {"mean": float, "std": float, "values": [float]}}}}}

``train_seconds`` is the mean over seeds of the training wall-clock time of one run; ``std`` is the
sample standard deviation over seeds (0 for one seed); metric values are fractions in [0, 1]
(``null`` where undefined). A ``balanced`` entry, when configured, is ``erm`` trained on the same
number of images spread evenly over the classes.

Resume (``resume=True``): finished pairs (``result.json`` present) are skipped, interrupted ones
continue from their checkpoint, missing ones start.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from longtail.engine import distributed as D
from longtail.engine.checkpoint import atomic_write_json, read_json, save_checkpoint
from longtail.engine.config import Config, save_config
from longtail.engine.datasets import DataBundle, build_data
from longtail.engine.methods import METHODS
from longtail.engine.tasks import SingleLabelTask, Task
from longtail.engine.trainer import Trainer, fingerprint_of

__all__ = [
    "BALANCED",
    "aggregate",
    "method_names",
    "run_benchmark",
    "run_dir_for",
]

#: Name of the balanced-reference entry in ``results.json``.
BALANCED = "balanced"
#: Without a terminal, a progress line per (method, seed) at most this often (and one when it ends).
PROGRESS_SECONDS = 30.0


def method_names(cfg: Config) -> list[str]:
    """The registry methods a config asks for (``"all"``: every method of the config's task)."""
    if isinstance(cfg.methods, str):
        return [name for name, m in METHODS.items() if m.task == cfg.task]
    return list(cfg.methods)


def run_dir_for(out_dir: Path, method: str, seed: int) -> Path:
    return out_dir / method / f"seed_{seed}"


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
    metric_names: Sequence[str],
) -> dict[str, Any]:
    """Build the ``results.json`` mapping from per-run results (``{method: [result per seed]}``)."""
    methods: dict[str, Any] = {}
    for name, runs in per_run.items():
        runs = sorted(runs, key=lambda r: r["seed"])
        methods[name] = {
            "seeds": [int(r["seed"]) for r in runs],
            "train_seconds": sum(float(r["train_seconds"]) for r in runs) / max(len(runs), 1),
            "metrics": {m: _stats([r["metrics"].get(m) for r in runs]) for m in metric_names},
        }
    return {
        "dataset": dataset,
        "task": task,
        "imbalance_factor": imbalance_factor,
        "class_counts": [int(c) for c in class_counts],
        "methods": methods,
    }


def _make_task(cfg: Config, method: str, data: DataBundle) -> Task:
    m = METHODS[method]
    if m.task != "single-label":  # pragma: no cover - only single-label methods exist so far
        raise ValueError(f"methods: {method!r} is a {m.task} method; this engine runs single-label")
    return SingleLabelTask(m, data, cfg, params=cfg.method_params.get(method, {}))


def run_benchmark(
    cfg: Config,
    out_dir: str | Path,
    *,
    resume: bool = False,
    command: str = "",
    progress: bool = True,
    echo: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Train every (method, seed) of ``cfg``, write the run folder, return ``results.json``'s content.

    Args:
        cfg: validated configuration.
        out_dir: the run folder (created).
        resume: skip finished pairs and continue interrupted ones (see module docstring).
        command: the command line to record in ``run.json`` and the report.
        progress: show a tqdm bar (rank 0).
        echo: where to print the final table (``None``: silent).

    Raises:
        FileExistsError: ``out_dir`` already holds results and ``resume`` is false.
        NonFiniteLossError: a run diverged (the finished runs and its last checkpoint are kept).
    """
    from longtail.engine.report import format_table, write_report

    out = Path(out_dir)
    main = D.is_main_process()
    names = method_names(cfg)
    entries = [(n, n) for n in names]  # (result name, registry method)
    if cfg.data.balanced_reference:
        entries.append((BALANCED, "erm"))
    if resume:
        _check_resumable(out, cfg, entries)
    if main:
        if not resume and (out / "config.yaml").exists():
            raise FileExistsError(
                f"--out: {out} already holds a run; pass --resume to continue it or choose "
                "another folder"
            )
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        meta = {
            "command": command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "platform": platform.platform(),
            "world_size": D.world_size(),
        }
        atomic_write_json(out / "run.json", meta)
    D.barrier()
    data = build_data(cfg.data)
    balanced_data = build_data(cfg.data, balanced=True) if cfg.data.balanced_reference else None
    bar: Any = None
    total_epochs = len(entries) * len(cfg.seeds) * cfg.train.epochs
    if progress and main:
        try:
            from tqdm.auto import tqdm

            # a live bar on a terminal; one line per finished (method, seed) otherwise
            bar = tqdm(
                total=total_epochs, unit="epoch", desc=cfg.name, dynamic_ncols=True, disable=None
            )
            if bar.disable:
                bar = None
        except ImportError:  # pragma: no cover
            bar = None
    per_run: dict[str, list[dict[str, Any]]] = {}
    metric_names: Sequence[str] = SingleLabelTask.metric_names
    try:
        for label, method in entries:
            bundle = balanced_data if label == BALANCED and balanced_data is not None else data
            for seed in cfg.seeds:
                rdir = run_dir_for(out, label, seed)
                result_file = rdir / "result.json"
                fingerprint = fingerprint_of(cfg, label, seed)
                if resume and result_file.is_file():
                    done = read_json(result_file)
                    if done.get("fingerprint", fingerprint) != fingerprint:
                        raise FileExistsError(
                            f"--resume: {result_file} was produced with a different configuration "
                            "(data, model, training recipe or hyper-parameters); use another --out"
                        )
                    per_run.setdefault(label, []).append(done)
                    if bar is not None:
                        bar.update(cfg.train.epochs)
                    continue
                task = _make_task(cfg, method, bundle)
                metric_names = task.metric_names
                if bar is not None:
                    bar.set_postfix_str(f"{label} seed {seed}")

                last_line = [time.monotonic()]

                def tick(
                    epoch: int,
                    row: dict[str, float],
                    label: str = label,
                    seed: int = seed,
                    last_line: list[float] = last_line,
                ) -> None:
                    if bar is not None:
                        bar.update(1)
                    elif progress and main and time.monotonic() - last_line[0] >= PROGRESS_SECONDS:
                        # no terminal (a log file, a batch job): a line now and then for long runs
                        last_line[0] = time.monotonic()
                        print(
                            f"{cfg.name}: {label} seed {seed}: epoch {epoch + 1}/{cfg.train.epochs}, "
                            f"train loss {row['train_loss']:.4g}",
                            file=sys.stderr,
                            flush=True,
                        )

                trainer = Trainer(
                    task,
                    bundle,
                    cfg,
                    seed=seed,
                    run_dir=rdir,
                    fingerprint=fingerprint,
                    on_epoch_end=tick,
                    label=label,
                )
                if bar is not None and resume:
                    done = _epochs_done(rdir)
                    bar.update(done)
                result = trainer.fit(resume=resume)
                assert result is not None
                record = {
                    "fingerprint": fingerprint,
                    "method": label,
                    "registry_method": method,
                    "seed": seed,
                    "params": dict(getattr(task, "params", {})),
                    "train_seconds": result.train_seconds,
                    "epochs": result.epochs,
                    "metrics": {k: _clean(v) for k, v in result.metrics.items()},
                    "details": result.details,
                    "history": [{k: _clean(v) for k, v in row.items()} for row in result.history],
                    "class_counts": bundle.class_counts,
                }
                if main:
                    save_checkpoint(rdir / "model.pt", result.model_state)
                    atomic_write_json(result_file, record)
                    if progress and bar is None:
                        bacc = result.metrics.get("balanced_accuracy", math.nan)
                        print(
                            f"{cfg.name}: {label} seed {seed}: balanced accuracy "
                            f"{100 * bacc:.1f}% ({result.train_seconds:.1f} s)",
                            file=sys.stderr,
                            flush=True,
                        )
                per_run.setdefault(label, []).append(record)
    finally:
        if bar is not None:
            bar.close()
    results = aggregate(
        per_run,
        dataset=data.name,
        task=cfg.task,
        imbalance_factor=cfg.data.imbalance_factor,
        class_counts=data.class_counts,
        metric_names=metric_names,
    )
    if main:
        atomic_write_json(out / "results.json", results)
        write_report(out)
        if echo is not None:
            echo(format_table(results, markdown=False))
            echo(f"\nrun folder: {out}")
    D.barrier()
    return results


def _check_resumable(out: Path, cfg: Config, entries: Sequence[tuple[str, str]]) -> None:
    """Refuse to resume over results or checkpoints written with another configuration."""
    from longtail.engine.checkpoint import load_checkpoint

    for label, _ in entries:
        for seed in cfg.seeds:
            rdir = run_dir_for(out, label, seed)
            expected = fingerprint_of(cfg, label, seed)
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
    """``runs/<name>-<YYYYmmdd-HHMMSS>``."""
    return Path(root) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def latest_out_dir(name: str, root: str | os.PathLike[str] = "runs") -> Path | None:
    """The most recent ``runs/<name>-*`` folder with a ``config.yaml``, if any."""
    base = Path(root)
    if not base.is_dir():
        return None
    cands = [p for p in base.glob(f"{name}-*") if (p / "config.yaml").is_file()]
    return max(cands, key=lambda p: p.name) if cands else None


def describe_command(argv: Sequence[str] | None = None) -> str:
    """The command line as typed (``longtail ...``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["longtail", *(_quote(a) for a in args)])


def _quote(a: str) -> str:
    import shlex

    return shlex.quote(a)
