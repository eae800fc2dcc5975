"""Training the stages and methods of a run folder, each once, resumable.

:class:`Runs` trains a first stage once per (stage, seed) and reuses it for every method that starts
from it (see :func:`~longtail.engine.runner.stages.stage_of`), then a method's second stage or
post-hoc step; both resume as described in :mod:`longtail.engine.runner`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor

from longtail.engine import distributed as D
from longtail.engine.checkpoint import (
    atomic_write_json,
    load_checkpoint,
    read_json,
    save_checkpoint,
)
from longtail.engine.config import Config, check_config_against_data
from longtail.engine.datasets import DataBundle, hold_out_validation
from longtail.engine.kinds import TASK_KINDS
from longtail.engine.methods import Method
from longtail.engine.runner.results import finite_or_none
from longtail.engine.runner.stages import (
    Stage,
    method_fingerprint,
    run_dir_for,
    stage_dir_for,
    stage_of,
)
from longtail.engine.trainer import Trainer

__all__ = ["Runs"]


class Runs:
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

    @property
    def given_data(self) -> DataBundle | None:
        """The data given to the run instead of built from the config (tests, the Python API)."""
        return self._given_data

    def data(self, variant: str, seed: int) -> DataBundle:
        per_seed = (
            self.kind.data_per_seed or getattr(self.cfg.data, "class_order", "fixed") == "random"
        )
        key = (variant, seed if per_seed else None)
        if self._given_data is not None:
            # kept under its key too: worker processes receive :meth:`loaded_data`
            self._data[key] = self._given_data
            return self._given_data
        if key not in self._data:
            bundle = self.kind.build_data(self.cfg, variant, seed if per_seed else None)
            fraction = getattr(self.cfg.data, "validation_fraction", None)
            if fraction is not None:
                bundle = hold_out_validation(bundle, fraction, self.cfg.data.validation_split_seed)
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
            "metrics": {k: finite_or_none(v) for k, v in result.metrics.items()},
            "details": result.details,
            "history": [{k: finite_or_none(v) for k, v in row.items()} for row in result.history],
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
                    **{k: finite_or_none(v) for k, v in row.items()},
                    "epoch": offset + row["epoch"],
                    "stage": 2.0,
                }
                for row in result.history
            ]
            record.update(
                {
                    "train_seconds": float(stage_record["train_seconds"]) + result.train_seconds,
                    "epochs": offset + result.epochs,
                    "metrics": {k: finite_or_none(v) for k, v in result.metrics.items()},
                    "details": result.details,
                    "history": history,
                }
            )
            final_state = result.model_state
        # a run that trained another method's function (the task kind says which; the table notes it)
        hook = self.kind.degenerate
        found = None if hook is None else hook(method, params, cfg, record, stage_record)
        record["degenerate"] = None if found is None else found.to_json()
        if self.main:
            save_checkpoint(rdir / "model.pt", final_state)
            atomic_write_json(result_file, record)
        self.tick(label, seed, 0, finished=True, record=record)
        return record


def _epochs_done(rdir: Path) -> int:
    ckpt = rdir / "checkpoint.pt"
    if not ckpt.is_file():
        return 0
    try:
        return int(load_checkpoint(ckpt)["epoch"])
    except Exception:
        return 0
