"""The training loop: one (task, seed) run, resumable, deterministic on CPU, DDP-aware.

What is trained comes from the task's :class:`~longtail.engine.tasks.Setup`: named modules (each moved
to the device, batch norm synchronised and DDP-wrapped under ``torchrun``, checkpointed), named
optimisers (SGD with ``train.momentum`` / ``nesterov`` or Adam; parameter groups with their own weight
decay and learning-rate scale; an after-step hook such as a MaxNorm projection) and frozen auxiliary
models (evaluation mode, no gradients, never saved). Every optimiser that follows the schedule gets the
learning rate of :class:`~longtail.engine.schedule.LRSchedule` (linear warm-up, then step / cosine /
constant) before every step, with the number of steps per epoch taken from the sampler's length. A
``training_step`` may return several :class:`~longtail.engine.tasks.Update` s: they run in order, each
``zero_grad -> backward -> step -> after_step`` on its own optimiser. Optional batch augmentation
(random crop with padding, flip) and autocast (``bf16`` on CPU or CUDA, ``fp16`` with a gradient scaler
on CUDA).

Determinism and resume: the modules are initialised after ``torch.manual_seed(seed)``; in epoch ``e``
the sampler draws from ``seed`` and ``e`` only, the augmentation uses a ``torch.Generator`` seeded
from ``(seed, e)``, and the global RNG (dropout, mixup draws) is re-seeded from ``(seed, e)`` at the
start of the epoch, so no RNG state needs to be checkpointed. The learning rate is a pure function of
the step. So the state after epoch ``e`` is fully described by the modules, the optimisers (momentum
buffers), the task's ``state_dict`` and ``e``: a checkpoint with those, written atomically after every
epoch, lets ``resume=True`` continue a run killed at any point (even by SIGKILL) to bit-identical
weights on CPU, the same as an uninterrupted run.

Per-step cost: the loop keeps the per-step losses (and the logits and targets for the running
training accuracy) as tensors and reads them on the host once every ``SYNC_EVERY`` steps and at the
end of every epoch, so a step costs no host synchronisation and almost no Python work beyond the
hand-written loop. The checkpoint and CSV log are serialised at the end of the epoch and written
(atomically, with ``fsync``) by a background thread while the next epoch runs.

Lazy data (``DataBundle.train_dataset``, e.g. an image folder): the sampler's indices are split into
batches as usual and a ``DataLoader`` (``DataBundle.num_workers`` workers, kept alive across epochs)
reads exactly those batches, in that order; evaluation reads ``DataBundle.eval_datasets`` the same
way. In-memory bundles take the unchanged tensor-indexing path.

A non-finite loss raises :class:`NonFiniteLossError` naming the epoch and the exact step where it first
appeared (found at the next read, at most ``SYNC_EVERY - 1`` steps later); checkpoints are only written
at the end of an epoch whose losses were all finite, so the last checkpoint (the end of the previous
epoch) is left untouched.

Under ``torchrun`` each process trains on its shard (per-process batch ``batch_size / world_size``),
evaluation is sharded and the metric objects sum their states across processes; batch norm becomes
synchronised batch norm (statistics over the global batch, see
:func:`longtail.engine.distributed.convert_sync_batchnorm`); the epoch's logged scalars are averaged
over processes in one ``all_reduce`` with a fixed key order (a key logged on some ranks only counts
as missing elsewhere, it cannot hang the run); only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from longtail.engine import distributed as D
from longtail.engine.augment import augment_batch
from longtail.engine.checkpoint import (
    REQUIRED_KEYS,
    BackgroundWriter,
    load_checkpoint,
    serialize_checkpoint,
)
from longtail.engine.config import Config, config_to_dict
from longtail.engine.datasets import DataBundle
from longtail.engine.models import model_factory
from longtail.engine.schedule import LRSchedule
from longtail.engine.tasks import Batch, Evaluation, OptimizerSpec, StepOutput, Task, Update

__all__ = ["NonFiniteLossError", "RunResult", "Trainer", "derive_seed"]

CHECKPOINT_VERSION = 2
#: Steps between two host reads of the buffered losses / logits (finite check, running accuracy).
SYNC_EVERY = 32
#: Buffered logits elements that force an earlier read (bounds the memory of the buffer).
_MAX_BUFFERED_LOGITS = 1 << 22
#: Name of the optimiser built when the task's setup declares none.
DEFAULT_OPTIMIZER = "default"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and step."""


@dataclass
class RunResult:
    """Outcome of :meth:`Trainer.fit`.

    Attributes:
        metrics: final test metrics (after the task's post-processing).
        details: the task's evaluation extras (per-class accuracy, confusion, reliability).
        history: one dict per epoch (the CSV log rows).
        train_seconds: wall-clock seconds spent in training steps (all sessions of a resumed run).
        epochs: epochs trained.
        model_state: the final weights of the ``"model"`` module (CPU tensors).
        module_states: the final weights of the other trained modules, by name.
    """

    metrics: dict[str, float]
    details: dict[str, Any]
    history: list[dict[str, float]]
    train_seconds: float
    epochs: int
    model_state: dict[str, Tensor] = field(default_factory=dict, repr=False)
    module_states: dict[str, dict[str, Tensor]] = field(default_factory=dict, repr=False)


def derive_seed(seed: int, *parts: int) -> int:
    """A 62-bit seed derived from ``seed`` and ``parts`` (e.g. the epoch and a stream id)."""
    h = hashlib.blake2b(repr((int(seed), *map(int, parts))).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") >> 2


def _unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", None)
    return inner if isinstance(model, nn.parallel.DistributedDataParallel) and inner else model


def _trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


class _Optim:
    """A built optimiser with its schedule, base learning rate and after-step hook."""

    def __init__(self, name: str, spec: OptimizerSpec, cfg: Config, steps_per_epoch: int):
        t = cfg.train
        self.name = name
        self.base_lr = float(spec.lr if spec.lr is not None else t.lr)
        wd = float(spec.weight_decay if spec.weight_decay is not None else t.weight_decay)
        groups: list[dict[str, Any]] = []
        raw = list(spec.params)
        if raw and isinstance(raw[0], Mapping):
            for g in raw:
                assert isinstance(g, Mapping)
                group = dict(g)
                group["params"] = [p for p in group["params"] if p.requires_grad]
                group.setdefault("weight_decay", wd)
                group.setdefault("lr_scale", 1.0)
                groups.append(group)
        else:
            plain = [p for p in raw if isinstance(p, torch.Tensor) and p.requires_grad]
            groups.append({"params": plain, "lr_scale": 1.0})
        groups = [g for g in groups if g["params"]]
        if not groups:
            raise ValueError(f"optimizer {name!r}: no trainable parameters")
        self.scales = [float(g["lr_scale"]) for g in groups]
        if spec.kind == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(
                groups,
                lr=self.base_lr,
                momentum=t.momentum,
                weight_decay=wd,
                nesterov=t.nesterov and t.momentum > 0,
            )
        elif spec.kind == "adam":
            self.optimizer = torch.optim.Adam(groups, lr=self.base_lr, weight_decay=wd)
        else:
            raise ValueError(f"optimizer {name!r}: kind must be 'sgd' or 'adam', got {spec.kind!r}")
        self.schedule = LRSchedule(
            self.base_lr,
            epochs=max(t.epochs, 1),
            steps_per_epoch=steps_per_epoch,
            warmup_epochs=t.warmup_epochs if spec.schedule else 0,
            kind=t.schedule if spec.schedule else "constant",
            milestones=t.milestones,
            lr_decay=t.lr_decay,
        )
        self.after_step = spec.after_step

    def set_lr(self, step: int) -> float:
        lr = self.schedule.lr(step)
        for group, scale in zip(self.optimizer.param_groups, self.scales, strict=True):
            group["lr"] = lr * scale
        return lr


class Trainer:
    """Train one task with one seed.

    Args:
        task: what is learned (modules, losses, sampler, evaluation).
        data: the training and evaluation tensors.
        config: the run configuration (``train`` section used here; ``train.epochs`` may be 0 for
            a run that only post-processes and evaluates the modules the task's setup loaded).
        seed: training seed.
        run_dir: folder for ``checkpoint.pt``, ``log.csv`` (and ``tb/``); ``None`` writes nothing.
        fingerprint: identifies the run in the checkpoint; resuming from a checkpoint with another
            fingerprint is refused.
        on_epoch_end: callback ``(epoch, row)`` after every epoch (progress bars).
        label: the run's name in messages.
    """

    def __init__(
        self,
        task: Task,
        data: DataBundle,
        config: Config,
        *,
        seed: int,
        run_dir: str | Path | None = None,
        fingerprint: str = "",
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
        label: str = "",
    ):
        self.task = task
        self.data = data
        self._given_data = data  # the task may train on other tensors: see Task.training_data
        self.config = config
        self.seed = int(seed)
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.fingerprint = fingerprint or fingerprint_of(config, label, seed)
        self.on_epoch_end = on_epoch_end
        self.label = label or "run"
        t = config.train
        self.device = D.resolve_device(t.device)
        if t.precision == "fp16" and self.device.type != "cuda":
            raise ValueError("train.precision: 'fp16' needs CUDA; use 'bf16' on CPU")
        self.rank, self.world = D.rank(), D.world_size()
        if t.batch_size % self.world:
            raise ValueError(
                f"train.batch_size: {t.batch_size} is not divisible by the {self.world} processes"
            )
        self.local_batch = t.batch_size // self.world
        self._files = BackgroundWriter()
        self._eval_modules: list[nn.Module] = []

    # ------------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / "checkpoint.pt"

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        p = self.config.train.precision
        if p == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if p == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _split_batches(self, x_all: Tensor, y_all: Tensor) -> Iterator[Batch]:
        n = len(y_all)
        idx = torch.arange(self.rank, n, self.world)
        bs = max(self.local_batch, 512)
        for chunk in idx.split(bs):
            yield Batch(x_all[chunk].to(self.device), y_all[chunk].to(self.device), chunk)

    def _dataset_batches(self, dataset: Dataset[Any]) -> Iterator[Batch]:
        """A lazy split's (sharded) batches, read through a ``DataLoader``."""
        idx = torch.arange(self.rank, len(dataset), self.world)  # type: ignore[arg-type]
        chunks = list(idx.split(max(self.local_batch, 512)))
        loader = _loader(dataset, [c.tolist() for c in chunks], self.data.num_workers, self.device)
        for chunk, (x, y) in zip(chunks, loader, strict=True):
            yield Batch(x.to(self.device), y.to(self.device), chunk)

    def evaluate(self, model: nn.Module) -> Evaluation:
        """The task's evaluation on the (sharded) evaluation splits, under autocast if configured."""
        lazy = self.data.eval_datasets
        splits = {
            name: self._dataset_batches(lazy[name]) if name in lazy else self._split_batches(x, y)
            for name, (x, y) in self.data.eval_splits.items()
        }
        with self._autocast():
            return self.task.evaluate(_unwrap(model), splits)

    def _train_mode(self, modules: Mapping[str, nn.Module]) -> None:
        """Trained modules in training mode, except the task's ``eval_modules`` (frozen parts)."""
        for m in modules.values():
            m.train()
        for m in self._eval_modules:
            m.eval()

    def _log_csv(self, history: list[dict[str, float]]) -> str:
        """The CSV text of ``log.csv`` (one row per epoch)."""
        columns: list[str] = []
        for row in history:
            for k in row:
                if k not in columns:
                    columns.append(k)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for row in history:
            out = []
            for c in columns:
                v = row.get(c, math.nan)
                out.append("" if isinstance(v, float) and math.isnan(v) else f"{v:.6g}")
            writer.writerow(out)
        return buf.getvalue()

    def _checkpoint(
        self,
        writer: BackgroundWriter,
        modules: Mapping[str, nn.Module],
        optims: Mapping[str, _Optim],
        epoch: int,
        step: int,
        history: list[dict[str, float]],
        seconds: float,
        scaler_state: dict[str, Any] | None,
    ) -> None:
        """Snapshot the checkpoint and ``log.csv`` now; ``writer`` writes them in the background."""
        path = self.checkpoint_path
        if path is None or self.run_dir is None or not D.is_main_process():
            return

        def cpu(m: nn.Module) -> dict[str, Tensor]:
            return {k: v.detach().cpu() for k, v in _unwrap(m).state_dict().items()}

        state = {
            "version": CHECKPOINT_VERSION,
            "fingerprint": self.fingerprint,
            "epoch": epoch,
            "model": cpu(modules["model"]),
            "modules": {k: cpu(m) for k, m in modules.items() if k != "model"},
            "optimizers": {k: o.optimizer.state_dict() for k, o in optims.items()},
            "scheduler": {"step": step},
            "scaler": scaler_state or {},
            "task": self.task.state_dict(),
            "history": history,
            "train_seconds": seconds,
        }
        files = [
            (path, serialize_checkpoint(state)),
            (self.run_dir / "log.csv", self._log_csv(history).encode("utf-8")),
        ]
        writer.submit(files)

    def _steps_per_epoch(self, sampler_seed: int) -> int:
        """Optimisation steps per epoch: the length of this process's epoch-0 sampler shard."""
        order = self.task.sampler(0, seed=sampler_seed, rank=self.rank, world_size=self.world)
        return max(1, math.ceil(len(order) / self.local_batch))

    # ------------------------------------------------------------------------------------------
    def fit(self, *, resume: bool = False, stop_after_epoch: int | None = None) -> RunResult | None:
        """Train (or continue) and evaluate.

        Args:
            resume: continue from ``run_dir/checkpoint.pt`` if it exists.
            stop_after_epoch: end the session after this many epochs in total and return ``None``
                (an interrupted run, for tests and time-sliced jobs); ``resume`` continues it.

        Returns:
            The :class:`RunResult`, or ``None`` when stopped early by ``stop_after_epoch``.

        Raises:
            NonFiniteLossError: the loss became NaN/inf (the previous checkpoint is kept).
        """
        cfg = self.config.train
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        torch.manual_seed(self.seed)
        self.data = self.task.training_data(self._given_data, self.seed)
        torch.manual_seed(self.seed)
        with model_factory(self.config.model.factory, self.config.model.kwargs):
            setup = self.task.setup()
        if "model" not in setup.modules:
            raise ValueError(
                f"{type(self.task).__name__}.setup(): modules must include 'model', "
                f"got {sorted(setup.modules)}"
            )
        distributed = D.is_distributed()
        modules: dict[str, nn.Module] = {}
        for name, m in setup.modules.items():
            m = m.to(self.device)
            if distributed:
                # batch statistics over the global batch: N processes step like one process
                m = D.convert_sync_batchnorm(m, self.device)
            modules[name] = m
        frozen: dict[str, nn.Module] = {}
        for name, m in setup.frozen.items():
            if name in modules:
                raise ValueError(f"setup(): {name!r} is both a trained and a frozen module")
            m = m.to(self.device).eval()
            m.requires_grad_(False)
            frozen[name] = m
        self._eval_modules = list(setup.eval_modules)
        sampler_seed = derive_seed(self.seed, 0, 1) % (2**31)
        steps_per_epoch = self._steps_per_epoch(sampler_seed)
        specs = setup.optimizers
        if specs is None:
            params = [p for m in modules.values() for p in _trainable(m)]
            specs = {DEFAULT_OPTIMIZER: OptimizerSpec(params=params)}
        optims = {k: _Optim(k, s, self.config, steps_per_epoch) for k, s in specs.items()}
        scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
        start_epoch, history, seconds = 0, [], 0.0
        ckpt = self.checkpoint_path
        if resume and ckpt is not None and ckpt.is_file():
            state = load_checkpoint(ckpt, required=REQUIRED_KEYS)
            if state.get("fingerprint") != self.fingerprint:
                raise ValueError(
                    f"resume: {ckpt} was written by a different configuration, method or seed; "
                    "use another output folder or delete it"
                )
            modules["model"].load_state_dict(state["model"])
            for name, sd in state.get("modules", {}).items():
                modules[name].load_state_dict(sd)
            for name, sd in state["optimizers"].items():
                optims[name].optimizer.load_state_dict(sd)
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            self.task.load_state_dict(state.get("task", {}))
            start_epoch = int(state["epoch"])
            history = list(state["history"])
            seconds = float(state["train_seconds"])
        if distributed:
            ddp_kwargs: dict[str, Any] = {}
            if self.device.type == "cuda":
                ddp_kwargs["device_ids"] = [self.device]
            modules = {
                k: nn.parallel.DistributedDataParallel(m, **ddp_kwargs) if _trainable(m) else m
                for k, m in modules.items()
            }
        self.task.on_train_start({**modules, **frozen}, self.device)
        # parts a task put in evaluation mode (e.g. frozen BatchNorm) stay so every epoch
        self._eval_modules += [
            sub for m in modules.values() for sub in m.modules() if not sub.training
        ]
        files = self._files = BackgroundWriter()
        writer = self._tensorboard()
        try:
            finished = self._epochs(
                modules,
                optims,
                scaler,
                files,
                writer,
                start_epoch,
                steps_per_epoch,
                sampler_seed,
                history,
                seconds,
                stop_after_epoch,
            )
        finally:
            files.wait()
            if writer is not None:
                writer.close()
        if finished is None:
            return None
        history, seconds = finished
        t0 = time.perf_counter()
        core = _unwrap(modules["model"])
        self.task.postprocess(core)
        seconds += time.perf_counter() - t0
        final = self.evaluate(modules["model"])
        return RunResult(
            metrics=final.metrics,
            details=final.details,
            history=history,
            train_seconds=seconds,
            epochs=cfg.epochs,
            model_state={k: v.detach().cpu().clone() for k, v in core.state_dict().items()},
            module_states={
                name: {k: v.detach().cpu().clone() for k, v in _unwrap(m).state_dict().items()}
                for name, m in modules.items()
                if name != "model"
            },
        )

    def _updates(self, out: Tensor | StepOutput | Sequence[Update], optims: Mapping[str, _Optim]):  # type: ignore[no-untyped-def]
        """Normalise ``training_step``'s return to a list of (optimiser, step or callable)."""
        if isinstance(out, (Tensor, StepOutput)):
            if len(optims) != 1:
                raise ValueError(
                    f"{type(self.task).__name__}.training_step returned one loss but the task has "
                    f"{len(optims)} optimizers ({', '.join(optims)}); return a list of Update"
                )
            return [(next(iter(optims)), out)]
        ups = []
        for u in out:
            if not isinstance(u, Update):
                raise TypeError(
                    f"{type(self.task).__name__}.training_step: expected a loss, a StepOutput or "
                    f"a sequence of Update, got an item of type {type(u).__name__}"
                )
            if u.optimizer not in optims:
                raise ValueError(
                    f"Update: unknown optimizer {u.optimizer!r} (known: {', '.join(optims)})"
                )
            ups.append((u.optimizer, u.step))
        if not ups:
            raise ValueError(f"{type(self.task).__name__}.training_step returned no updates")
        return ups

    def _epochs(
        self,
        modules: dict[str, nn.Module],
        optims: dict[str, _Optim],
        scaler: Any,
        files: BackgroundWriter,
        writer: Any,
        start_epoch: int,
        steps_per_epoch: int,
        sampler_seed: int,
        history: list[dict[str, float]],
        seconds: float,
        stop_after_epoch: int | None,
    ) -> tuple[list[dict[str, float]], float] | None:
        """The epochs from ``start_epoch``; ``None`` when stopped by ``stop_after_epoch``."""
        cfg = self.config.train
        train_x, train_y = self.data.train_x, self.data.train_y
        on_device = self.device.type != "cpu" and train_x.numel() * 4 < 2**31
        if on_device:
            train_x, train_y = train_x.to(self.device), train_y.to(self.device)
        move = not on_device and self.device.type != "cpu"  # batches copied to the device
        # lazy data (image folders): the inputs come from a DataLoader over the sampler's batches
        lazy_batches: _Batches | None = None
        loader: Any = None
        if self.data.train_dataset is not None:
            lazy_batches = _Batches()
            loader = _loader(
                self.data.train_dataset, lazy_batches, self.data.num_workers, self.device
            )
        lazy_x: Iterator[Any] | None = None
        augment = cfg.augment and self.data.is_image
        distributed = D.is_distributed()
        use_amp = cfg.precision != "fp32"
        no_amp = contextlib.nullcontext()
        task_step = self.task.training_step
        model = modules["model"]
        single = len(optims) == 1
        self._train_mode(modules)
        for epoch in range(start_epoch, cfg.epochs):
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                return None
            t0 = time.perf_counter()
            torch.manual_seed(derive_seed(self.seed, epoch, 2))
            gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch, 3))
            self.task.on_epoch_start(epoch, modules)
            order = self.task.sampler(
                epoch, seed=sampler_seed, rank=self.rank, world_size=self.world
            )
            acc = _EpochAccumulator(self, epoch, steps_per_epoch, distributed)
            lr = cfg.lr
            first_step = epoch * steps_per_epoch
            chunks = order.split(self.local_batch)
            if lazy_batches is not None:
                lazy_batches.batches = [c.tolist() for c in chunks]
                lazy_x = iter(loader)
            for step, chunk in enumerate(chunks):
                for o in optims.values():
                    lr_o = o.set_lr(first_step + step)
                lr = lr_o if single else next(iter(optims.values())).schedule.lr(first_step + step)
                if on_device:
                    chunk = chunk.to(self.device)
                if lazy_x is not None:
                    x, y = next(lazy_x)[0].to(self.device), train_y[chunk]
                else:
                    x, y = train_x[chunk], train_y[chunk]
                if move:
                    x, y = x.to(self.device), y.to(self.device)
                if augment:
                    x = augment_batch(x, padding=cfg.crop_padding, flip=cfg.flip, generator=gen)
                with self._autocast() if use_amp else no_amp:
                    out = task_step(model, Batch(x, y, chunk), epoch, step)
                done: list[tuple[str, StepOutput]] = []
                for name, st in self._updates(out, optims):
                    if callable(st) and not isinstance(st, (Tensor, StepOutput)):
                        with self._autocast() if use_amp else no_amp:
                            st = st()
                    so = StepOutput(loss=st) if isinstance(st, Tensor) else st
                    o = optims[name]
                    o.optimizer.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(so.loss).backward()
                        scaler.step(o.optimizer)
                        scaler.update()
                    else:
                        so.loss.backward()
                        o.optimizer.step()
                    if o.after_step is not None:
                        o.after_step()
                    done.append((name, so))
                # buffered; read on the host every SYNC_EVERY steps (finite check, accuracy)
                acc.add(step, done, y.shape[0], lr)
            acc.flush()
            epoch_seconds = time.perf_counter() - t0
            seconds += epoch_seconds
            seen = max(acc.seen, 1)
            row: dict[str, float] = {
                "epoch": float(epoch + 1),
                "lr": float(lr),
                "train_loss": acc.loss_sum / seen,
                "train_accuracy": acc.hits / max(acc.scored, 1) if acc.scored else math.nan,
                "epoch_seconds": epoch_seconds,
            }
            extra = {f"train_{k}": v / seen for k, v in acc.extra.items()}
            if distributed:
                local = {k: row[k] for k in ("train_accuracy",)} | extra
                merged = _all_reduce_logs(local, self.device)
                row["train_accuracy"] = merged.pop("train_accuracy", math.nan)
                extra = merged
            row.update(extra)
            every = cfg.eval_every
            if every and ((epoch + 1) % every == 0 or epoch + 1 == cfg.epochs):
                ev = self.evaluate(model)
                for k, v in ev.metrics.items():
                    row[f"test_{k}"] = float(v)
                self._train_mode(modules)
            history.append(row)
            if writer is not None:
                for k, v in row.items():
                    if k != "epoch" and math.isfinite(v):
                        writer.add_scalar(k, v, epoch + 1)
            self._checkpoint(
                files,
                modules,
                optims,
                epoch + 1,
                (epoch + 1) * steps_per_epoch,
                history,
                seconds,
                None if scaler is None else scaler.state_dict(),
            )
            if self.on_epoch_end is not None:
                self.on_epoch_end(epoch, row)
        return history, seconds

    def _non_finite(self, value: float, epoch: int, step: int, steps: int, lr: float) -> None:
        """Raise :class:`NonFiniteLossError` (after the pending checkpoint write is on disk)."""
        self._files.wait()
        cfg = self.config.train
        ckpt = self.checkpoint_path
        where = f"epoch {epoch + 1}/{cfg.epochs}, step {step + 1}/{steps}"
        kept = (
            f"the last good checkpoint (end of epoch {epoch}) is kept at {ckpt}"
            if ckpt is not None and ckpt.is_file()
            else "no checkpoint was written yet"
        )
        raise NonFiniteLossError(
            f"non-finite loss ({value}) in {self.label} (seed {self.seed}) at {where}, "
            f"lr {lr:.4g}; training stopped and {kept}. Lower train.lr, add warm-up "
            "or check the method's hyper-parameters."
        )

    def _tensorboard(self) -> Any:
        if self.run_dir is None or not D.is_main_process():
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.run_dir / "tb"))


class _Batches:
    """A ``DataLoader`` batch sampler whose batches are set anew every epoch (the sampler's order
    split into batches), so persistent workers serve every epoch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _loader(
    dataset: Dataset[Any], batches: Any, num_workers: int, device: torch.device
) -> DataLoader[Any]:
    """A ``DataLoader`` reading ``batches`` (lists of indices) of ``dataset`` in that order."""
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        persistent_workers=num_workers > 0 and isinstance(batches, _Batches),
        pin_memory=device.type == "cuda",
    )


def _all_reduce_logs(local: Mapping[str, float], device: torch.device) -> dict[str, float]:
    """Mean over processes of each logged scalar, over the processes that logged it (NaN: none).

    The key sets are gathered first and the values then reduced in one ``all_reduce`` in sorted key
    order, so processes that logged different keys still issue the same collectives.
    """
    keys_per_rank: list[Any] = [None] * D.world_size()
    dist.all_gather_object(keys_per_rank, sorted(local))
    keys = sorted({k for ks in keys_per_rank for k in ks})
    dev = device if device.type == "cuda" else None
    buf = torch.zeros(2 * len(keys), dtype=torch.float64, device=dev)
    for i, k in enumerate(keys):
        v = local.get(k, math.nan)
        if not math.isnan(v):
            buf[2 * i] = v
            buf[2 * i + 1] = 1.0
    dist.all_reduce(buf)
    vals = buf.tolist()
    return {
        k: vals[2 * i] / vals[2 * i + 1] if vals[2 * i + 1] else math.nan
        for i, k in enumerate(keys)
    }


class _EpochAccumulator:
    """Per-epoch training statistics, kept as tensors and read on the host every ``SYNC_EVERY`` steps.

    The values and their order of accumulation are those of a per-step read (``float(loss)`` times
    the batch size, summed in step order; exact integer hit counts), so the log does not depend on
    ``SYNC_EVERY``. ``train_loss`` is the loss of a step's last update; with several updates, each
    optimiser's loss is also logged as ``loss_<optimizer>``. The accuracy scores the last update
    that gave both logits and targets. Under DDP the buffered losses are averaged over the processes
    with one ``all_reduce`` per read, and a non-finite loss on any process stops every process.
    """

    def __init__(self, trainer: Trainer, epoch: int, steps: int, distributed: bool):
        self.trainer = trainer
        self.epoch = epoch
        self.steps = steps
        self.distributed = distributed
        self.loss_sum = 0.0
        self.seen = 0
        self.hits = 0
        self.scored = 0
        self.extra: dict[str, float] = {}
        self._losses: list[Tensor] = []
        self._meta: list[tuple[int, int, float, list[str], dict[str, float | Tensor]]] = []
        self._hits: list[Tensor] = []
        self._scored: int = 0
        self._buffered = 0

    def add(self, step: int, done: list[tuple[str, StepOutput]], n: int, lr: float) -> None:
        names = [name for name, _ in done] if len(done) > 1 else []
        for _, so in done:
            self._losses.append(so.loss.detach())
        logs: dict[str, float | Tensor] = {}
        for _, so in done:
            logs.update(so.logs)
        self._meta.append((step, n, lr, names, logs))
        scored = [so for _, so in done if so.logits is not None and so.targets is not None]
        if scored:
            so = scored[-1]
            logits, targets = so.logits, so.targets
            assert logits is not None and targets is not None
            if (
                logits.ndim != 2
                or targets.ndim != 1
                or targets.shape[0] != logits.shape[0]
                or targets.is_floating_point()
            ):
                raise ValueError(
                    "StepOutput.targets: the running accuracy needs (N, C) logits and (N,) integer "
                    f"targets, got logits {tuple(logits.shape)} and targets {tuple(targets.shape)} "
                    f"({targets.dtype}); leave targets None for outputs that are not class scores"
                )
            self._hits.append((logits.detach().argmax(dim=1) == targets).sum())
            self._scored += targets.shape[0]
            self._buffered += logits.numel()
        # under DDP the reads are collective: flush on the step count only, the same on every rank
        early = not self.distributed and self._buffered >= _MAX_BUFFERED_LOGITS
        if len(self._meta) >= SYNC_EVERY or early:
            self.flush()

    def flush(self) -> None:
        if not self._losses:
            return
        losses = torch.stack([t.float().reshape(()) for t in self._losses])
        if self.distributed:
            dist.all_reduce(losses)
            values = [v / self.trainer.world for v in losses.tolist()]
        else:
            values = losses.tolist()
        if self._hits:
            self.hits += int(torch.stack(self._hits).sum())
            self.scored += self._scored
        meta = self._meta
        self._losses, self._meta, self._hits, self._scored, self._buffered = [], [], [], 0, 0
        pos = 0
        for step, n, lr, names, logs in meta:
            k = max(len(names), 1)
            step_losses = values[pos : pos + k]
            pos += k
            for lv in step_losses:
                if not math.isfinite(lv):
                    self.trainer._non_finite(lv, self.epoch, step, self.steps, lr)
            self.loss_sum += step_losses[-1] * n
            self.seen += n
            for name, lv in zip(names, step_losses, strict=False):
                key = f"loss_{name}"
                self.extra[key] = self.extra.get(key, 0.0) + lv * n
            for key, v in logs.items():
                self.extra[key] = self.extra.get(key, 0.0) + float(v) * n


def fingerprint_of(config: Config, label: str, seed: int) -> str:
    """Hash of everything that determines a run except the lists of methods and seeds."""
    d = config_to_dict(config)
    d.pop("methods", None)
    d.pop("seeds", None)
    d.pop("name", None)
    d["train"].pop("eval_every", None)
    d["train"].pop("num_threads", None)
    d["data"].pop("num_workers", None)  # decoding workers do not change what is trained
    d["method_params"] = d["method_params"].get(label, {})
    blob = json.dumps({"config": d, "label": label, "seed": int(seed)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
