"""The training loop: one (task, seed) run, resumable, deterministic on CPU, DDP-aware.

What is trained comes from the task's :class:`~longtail.engine.tasks.Setup`: named modules (each moved
to the device, batch norm synchronised and DDP-wrapped under ``torchrun``, checkpointed), named
optimisers (:mod:`longtail.engine.optimizers`: SGD or Adam, parameter groups, a learning rate from
:class:`~longtail.engine.schedule.LRSchedule` before every step, with the number of steps per epoch
taken from the sampler's length) and frozen auxiliary models (evaluation mode, no gradients, never
saved). A ``training_step`` may return several :class:`~longtail.engine.tasks.Update` s: they run in
order, each ``zero_grad -> backward -> step -> after_step`` on its own optimiser. Optional batch
augmentation (random crop with padding, flip) and autocast (``bf16`` on CPU or CUDA, ``fp16`` with a
gradient scaler on CUDA).

Determinism and resume: the modules are initialised after ``torch.manual_seed(seed)``; in epoch ``e``
the sampler draws from ``seed`` and ``e`` only, the augmentation uses a ``torch.Generator`` seeded
from ``(seed, e)``, and the global RNG (dropout, mixup draws) is re-seeded from ``(seed, e)`` at the
start of the epoch, so no RNG state needs to be checkpointed. The learning rate is a pure function of
the step. So the state after epoch ``e`` is fully described by the modules, the optimisers (momentum
buffers), the task's ``state_dict`` and ``e``: a checkpoint with those, written atomically after every
epoch (:mod:`longtail.engine.run_state`), lets ``resume=True`` continue a run killed at any point
(even by SIGKILL) to bit-identical weights on CPU, the same as an uninterrupted run.

Per-step cost: the losses and accuracy are buffered on the device and read on the host every
``SYNC_EVERY`` steps (:mod:`longtail.engine.epoch_stats`), so a step costs no host synchronisation
and almost no Python work beyond the hand-written loop. Lazy data (an image folder) are read through
a ``DataLoader`` over the sampler's batches (:mod:`longtail.engine.batches`).

A non-finite loss raises :class:`NonFiniteLossError` naming the epoch and the exact step where it first
appeared (found at the next read, at most ``SYNC_EVERY - 1`` steps later); checkpoints are only written
at the end of an epoch whose losses were all finite, so the last checkpoint (the end of the previous
epoch) is left untouched.

Under ``torchrun`` each process trains on its shard (per-process batch ``batch_size / world_size``),
evaluation is sharded and the metric objects sum their states across processes; batch norm becomes
synchronised batch norm (statistics over the global batch, see
:func:`longtail.engine.distributed.convert_sync_batchnorm`); the epoch's logged scalars are averaged
over processes (see :mod:`longtail.engine.epoch_stats`); only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from longtail.engine import distributed as D
from longtail.engine.augment import augment_batch
from longtail.engine.batches import EpochBatches, batch_loader, eval_batches
from longtail.engine.checkpoint import BackgroundWriter
from longtail.engine.config import Config
from longtail.engine.datasets import DataBundle
from longtail.engine.epoch_stats import EpochAccumulator, all_reduce_logs
from longtail.engine.models import model_factory
from longtail.engine.optimizers import Optim, build_optimizers, step_updates, trainable
from longtail.engine.run_state import (
    fingerprint_of,
    open_tensorboard,
    restore_checkpoint,
    snapshot_checkpoint,
    unwrap,
)
from longtail.engine.tasks import Batch, Evaluation, StepOutput, Task

#: The shortest time between two checkpoints of a run (seconds of the training loop), unless
#: ``$LONGTAIL_CHECKPOINT_SECONDS`` sets another (0: after every epoch); the last epoch always
#: writes one. A run of the bundled digits (0.3 s) writes one; with epochs longer than this, every
#: epoch writes one.
CHECKPOINT_EVERY_SECONDS = 2.0


#: The clock of the checkpoint interval (a test replaces it).
_clock = time.monotonic


def checkpoint_interval() -> float:
    """Seconds between checkpoints: ``$LONGTAIL_CHECKPOINT_SECONDS``, else
    :data:`CHECKPOINT_EVERY_SECONDS`."""
    raw = os.environ.get("LONGTAIL_CHECKPOINT_SECONDS", "").strip()
    if not raw:
        return CHECKPOINT_EVERY_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"LONGTAIL_CHECKPOINT_SECONDS: expected a number >= 0, got {raw!r}")
    return value


__all__ = [
    "CHECKPOINT_EVERY_SECONDS",
    "NonFiniteLossError",
    "RunResult",
    "Trainer",
    "check_device_settings",
    "checkpoint_interval",
    "derive_seed",
    "seed_global_rng",
]


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


def check_device_settings(config: Config) -> torch.device:
    """The device ``train.device`` resolves to, after checking what this machine and process group
    can run: ``train.precision`` ``fp16`` needs CUDA, ``train.batch_size`` must split evenly over
    the processes. :func:`~longtail.engine.runner.run_benchmark` calls it before it makes the run
    folder, :class:`Trainer` when it starts.

    Raises:
        ValueError: naming ``train.device``, ``train.precision`` or ``train.batch_size``.
    """
    t = config.train
    device = D.resolve_device(t.device)
    if t.precision == "fp16" and device.type != "cuda":
        raise ValueError("train.precision: 'fp16' needs CUDA; use 'bf16' on CPU")
    world = D.world_size()
    if t.batch_size % world:
        raise ValueError(
            f"train.batch_size: {t.batch_size} is not divisible by the {world} processes"
        )
    return device


def seed_global_rng(seed: int, device: torch.device) -> None:
    """Re-seed the global RNG that a run on ``device`` draws from (dropout, mixup draws).

    On a CPU that is the CPU generator alone: ``torch.manual_seed`` also queues the seed for every
    accelerator that is not initialised yet, formatting a stack trace for each (about 0.3-1 ms a
    call, once an epoch). On an accelerator, ``torch.manual_seed`` (every device).
    """
    if device.type == "cpu":
        torch.default_generator.manual_seed(int(seed))
    else:
        torch.manual_seed(int(seed))


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
        self.device = check_device_settings(config)
        self.rank, self.world = D.rank(), D.world_size()
        self.local_batch = t.batch_size // self.world
        self._files = BackgroundWriter()
        self._checkpoint_epoch = 0
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

    def evaluate(self, model: nn.Module) -> Evaluation:
        """The task's evaluation on the (sharded) evaluation splits, under autocast if configured."""
        splits = eval_batches(self.data, self.rank, self.world, self.local_batch, self.device)
        with self._autocast():
            return self.task.evaluate(unwrap(model), splits)

    def _train_mode(self, modules: Mapping[str, nn.Module]) -> None:
        """Trained modules in training mode, except the task's ``eval_modules`` (frozen parts)."""
        for m in modules.values():
            m.train()
        for m in self._eval_modules:
            m.eval()

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
        optims = build_optimizers(setup.optimizers, modules, self.config, steps_per_epoch)
        scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
        history: list[dict[str, float]] = []
        start_epoch, seconds = 0, 0.0
        ckpt = self.checkpoint_path
        if resume and ckpt is not None and ckpt.is_file():
            start_epoch, history, seconds = restore_checkpoint(
                ckpt, self.fingerprint, self.task, modules, optims, scaler
            )
        if distributed:
            ddp_kwargs: dict[str, Any] = {}
            if self.device.type == "cuda":
                ddp_kwargs["device_ids"] = [self.device]
            modules = {
                k: nn.parallel.DistributedDataParallel(m, **ddp_kwargs) if trainable(m) else m
                for k, m in modules.items()
            }
        self.task.on_train_start({**modules, **frozen}, self.device)
        # parts a task put in evaluation mode (e.g. frozen BatchNorm) stay so every epoch
        self._eval_modules += [
            sub for m in modules.values() for sub in m.modules() if not sub.training
        ]
        files = self._files = BackgroundWriter()
        self._checkpoint_epoch = start_epoch  # the epoch of the checkpoint on disk (if any)
        # a resumed run continues from its last checkpoint, which may be older than the last
        # epoch it logged: TensorBoard drops the points after it (they are logged again)
        writer = open_tensorboard(self.run_dir, purge_step=start_epoch + 1 if start_epoch else None)
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
        core = unwrap(modules["model"])
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
                name: {k: v.detach().cpu().clone() for k, v in unwrap(m).state_dict().items()}
                for name, m in modules.items()
                if name != "model"
            },
        )

    def _epochs(
        self,
        modules: dict[str, nn.Module],
        optims: dict[str, Optim],
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
        lazy_batches: EpochBatches | None = None
        loader: Any = None
        if self.data.train_dataset is not None:
            lazy_batches = EpochBatches()
            loader = batch_loader(
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
        every_seconds = checkpoint_interval()
        last_checkpoint = _clock()
        for epoch in range(start_epoch, cfg.epochs):
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                return None
            t0 = time.perf_counter()
            seed_global_rng(derive_seed(self.seed, epoch, 2), self.device)
            gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch, 3))
            self.task.on_epoch_start(epoch, modules)
            order = self.task.sampler(
                epoch, seed=sampler_seed, rank=self.rank, world_size=self.world
            )
            acc = EpochAccumulator(self, epoch, steps_per_epoch, distributed)
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
                for name, st in step_updates(self.task, out, optims):
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
                merged = all_reduce_logs(local, self.device)
                row["train_accuracy"] = merged.pop("train_accuracy", math.nan)
                extra = merged
            row.update(extra)
            every = cfg.eval_every
            if every and ((epoch + 1) % every == 0 or epoch + 1 == cfg.epochs):
                t_eval = time.perf_counter()
                ev = self.evaluate(model)
                row["eval_seconds"] = time.perf_counter() - t_eval
                for k, v in ev.metrics.items():
                    row[f"test_{k}"] = float(v)
                self._train_mode(modules)
            history.append(row)
            if writer is not None:
                for k, v in row.items():
                    if k != "epoch" and math.isfinite(v):
                        writer.add_scalar(k, v, epoch + 1)
            # a checkpoint (and log.csv) at most every checkpoint_interval(), and always after
            # the last epoch of the run or of the session: an interruption loses at most that much
            # training, and a resumed run continues from an earlier epoch to the same weights
            now = _clock()
            last = epoch + 1 == cfg.epochs or (
                stop_after_epoch is not None and epoch + 1 >= stop_after_epoch
            )
            if last or now - last_checkpoint >= every_seconds:
                last_checkpoint = now
                self._checkpoint_epoch = epoch + 1
                snapshot_checkpoint(
                    files,
                    self.run_dir,
                    self.fingerprint,
                    self.task,
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
            f"the last good checkpoint (end of epoch {self._checkpoint_epoch}) is kept at {ckpt}"
            if ckpt is not None and ckpt.is_file()
            else "no checkpoint was written yet"
        )
        raise NonFiniteLossError(
            f"non-finite loss ({value}) in {self.label} (seed {self.seed}) at {where}, "
            f"lr {lr:.4g}; training stopped and {kept}. Lower train.lr, add warm-up "
            "or check the method's hyper-parameters."
        )
