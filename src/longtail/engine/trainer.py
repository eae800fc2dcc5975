"""The training loop: one (task, seed) run, resumable, deterministic on CPU, DDP-aware.

Recipe: SGD with momentum (``train.momentum``, ``nesterov``) and weight decay on all parameters, the
learning rate of :class:`~longtail.engine.schedule.LRSchedule` set before every step (linear warm-up,
then step / cosine / constant), optional batch augmentation (random crop with padding, flip), optional
autocast (``bf16`` on CPU or CUDA, ``fp16`` with a gradient scaler on CUDA).

Determinism and resume: the model is initialised after ``torch.manual_seed(seed)``; in epoch ``e``
the sampler draws from ``seed`` and ``e`` only, the augmentation uses a ``torch.Generator`` seeded
from ``(seed, e)``, and the global RNG (dropout) is re-seeded from ``(seed, e)`` at the start of the
epoch. The learning rate is a pure function of the step. So the state after epoch ``e`` is fully
described by the model, the optimiser (momentum buffers) and ``e``: a checkpoint with those, written
atomically after every epoch, lets ``resume=True`` continue a run killed at any point (even by
SIGKILL) to bit-identical weights on CPU, the same as an uninterrupted run.

Per-step cost: the loop keeps the per-step losses (and the logits for the running training accuracy)
as tensors and reads them on the host once every ``sync_every`` steps and at the end of every epoch,
so a step costs no host synchronisation and almost no Python work beyond the hand-written loop. The
logged ``train_loss`` / ``train_accuracy`` are the same numbers as with a per-step read. The
checkpoint and CSV log are serialised at the end of the epoch and written (atomically, with ``fsync``)
by a background thread while the next epoch runs.

A non-finite loss raises :class:`NonFiniteLossError` naming the epoch and the exact step where it first
appeared (found at the next read, at most ``sync_every - 1`` steps later); checkpoints are only written
at the end of an epoch whose losses were all finite, so the last checkpoint (the end of the previous
epoch) is left untouched.

Under ``torchrun`` the model is wrapped in DistributedDataParallel, each process trains on its shard
(per-process batch ``batch_size / world_size``), evaluation is sharded and the metric objects sum their
states across processes; batch norm becomes synchronised batch norm (statistics over the global
batch, see :func:`longtail.engine.distributed.convert_sync_batchnorm`); only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

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
from longtail.engine.schedule import LRSchedule
from longtail.engine.tasks import Batch, Evaluation, StepOutput, Task

__all__ = ["NonFiniteLossError", "RunResult", "Trainer", "derive_seed"]

CHECKPOINT_VERSION = 1
#: Steps between two host reads of the buffered losses / logits (finite check, running accuracy).
SYNC_EVERY = 32
#: Buffered logits elements that force an earlier read (bounds the memory of the buffer).
_MAX_BUFFERED_LOGITS = 1 << 22


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
    """

    metrics: dict[str, float]
    details: dict[str, Any]
    history: list[dict[str, float]]
    train_seconds: float
    epochs: int
    model_state: dict[str, Tensor] = field(default_factory=dict, repr=False)


def derive_seed(seed: int, *parts: int) -> int:
    """A 62-bit seed derived from ``seed`` and ``parts`` (e.g. the epoch and a stream id)."""
    h = hashlib.blake2b(repr((int(seed), *map(int, parts))).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") >> 2


def _unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", None)
    return inner if isinstance(model, nn.parallel.DistributedDataParallel) and inner else model


class Trainer:
    """Train one task with one seed.

    Args:
        task: what is learned (model, loss, sampler, evaluation).
        data: the training and test tensors.
        config: the run configuration (``train`` section used here).
        seed: training seed.
        run_dir: folder for ``checkpoint.pt``, ``log.csv`` (and ``tb/``); ``None`` writes nothing.
        fingerprint: identifies the run in the checkpoint; resuming from a checkpoint with another
            fingerprint is refused.
        on_epoch_end: callback ``(epoch, row)`` after every epoch (progress bars).
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

    def _test_batches(self, model_device: torch.device) -> Iterator[Batch]:
        n = len(self.data.test_y)
        idx = torch.arange(self.rank, n, self.world)
        bs = max(self.local_batch, 512)
        for chunk in idx.split(bs):
            yield Batch(
                self.data.test_x[chunk].to(model_device),
                self.data.test_y[chunk].to(model_device),
                chunk,
            )

    def evaluate(self, model: nn.Module) -> Evaluation:
        """The task's evaluation on the (sharded) test set, under autocast if configured."""
        with self._autocast():
            return self.task.evaluate(_unwrap(model), self._test_batches(self.device))

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
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
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
        state = {
            "version": CHECKPOINT_VERSION,
            "fingerprint": self.fingerprint,
            "epoch": epoch,
            "model": {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": {"step": step},
            "scaler": scaler_state or {},
            "task": self.task.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "history": history,
            "train_seconds": seconds,
        }
        files = [
            (path, serialize_checkpoint(state)),
            (self.run_dir / "log.csv", self._log_csv(history).encode("utf-8")),
        ]
        writer.submit(files)

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
        model = self.task.build_model().to(self.device)
        distributed = D.is_distributed()
        if distributed:
            # batch statistics over the global batch: N processes step like one process
            model = D.convert_sync_batchnorm(model, self.device)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            nesterov=cfg.nesterov and cfg.momentum > 0,
        )
        n_train = len(self.data.train_y)
        per_rank = math.ceil(n_train / self.world)
        steps_per_epoch = max(1, math.ceil(per_rank / self.local_batch))
        schedule = LRSchedule(
            cfg.lr,
            epochs=cfg.epochs,
            steps_per_epoch=steps_per_epoch,
            warmup_epochs=cfg.warmup_epochs,
            kind=cfg.schedule,
            milestones=cfg.milestones,
            lr_decay=cfg.lr_decay,
        )
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
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
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
            model = nn.parallel.DistributedDataParallel(model, **ddp_kwargs)
        self.task.on_train_start(_unwrap(model), self.device)
        files = self._files = BackgroundWriter()
        writer = self._tensorboard()
        try:
            finished = self._epochs(
                model,
                optimizer,
                schedule,
                scaler,
                files,
                writer,
                start_epoch,
                steps_per_epoch,
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
        core = _unwrap(model)
        self.task.postprocess(core)
        seconds += time.perf_counter() - t0
        final = self.evaluate(model)
        return RunResult(
            metrics=final.metrics,
            details=final.details,
            history=history,
            train_seconds=seconds,
            epochs=cfg.epochs,
            model_state={k: v.detach().cpu().clone() for k, v in core.state_dict().items()},
        )

    def _epochs(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: LRSchedule,
        scaler: Any,
        files: BackgroundWriter,
        writer: Any,
        start_epoch: int,
        steps_per_epoch: int,
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
        augment = cfg.augment and self.data.is_image
        sampler_seed = derive_seed(self.seed, 0, 1) % (2**31)
        distributed = D.is_distributed()
        use_amp = cfg.precision != "fp32"
        no_amp = contextlib.nullcontext()
        task_step = self.task.training_step
        model.train()
        for epoch in range(start_epoch, cfg.epochs):
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                return None
            t0 = time.perf_counter()
            torch.manual_seed(derive_seed(self.seed, epoch, 2))
            gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch, 3))
            self.task.on_epoch_start(epoch, _unwrap(model))
            order = self.task.sampler(
                epoch, seed=sampler_seed, rank=self.rank, world_size=self.world
            )
            acc = _EpochAccumulator(self, epoch, steps_per_epoch, distributed)
            lr = cfg.lr
            first_step = epoch * steps_per_epoch
            for step, chunk in enumerate(order.split(self.local_batch)):
                lr = schedule.apply(optimizer, first_step + step)
                if on_device:
                    chunk = chunk.to(self.device)
                x, y = train_x[chunk], train_y[chunk]
                if move:
                    x, y = x.to(self.device), y.to(self.device)
                if augment:
                    x = augment_batch(x, padding=cfg.crop_padding, flip=cfg.flip, generator=gen)
                with self._autocast() if use_amp else no_amp:
                    out = task_step(model, Batch(x, y, chunk), epoch, step)
                if isinstance(out, Tensor):
                    out = StepOutput(loss=out)
                loss = out.loss
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                # buffered; read on the host every SYNC_EVERY steps (finite check, accuracy)
                acc.add(step, loss, out, y, lr)
            acc.flush()
            epoch_seconds = time.perf_counter() - t0
            seconds += epoch_seconds
            seen = max(acc.seen, 1)
            row: dict[str, float] = {
                "epoch": float(epoch + 1),
                "lr": float(lr),
                "train_loss": acc.loss_sum / seen,
                "train_accuracy": acc.hits / seen if acc.has_hits else math.nan,
                "epoch_seconds": epoch_seconds,
            }
            for k, v in acc.extra.items():
                row[f"train_{k}"] = v / seen
            if distributed:
                for k in row:
                    if k.startswith("train_") and k != "train_loss":  # the loss is already global
                        row[k] = D.all_reduce_mean(
                            row[k], self.device if self.device.type == "cuda" else None
                        )
            every = cfg.eval_every
            if every and ((epoch + 1) % every == 0 or epoch + 1 == cfg.epochs):
                ev = self.evaluate(model)
                for k, v in ev.metrics.items():
                    row[f"test_{k}"] = float(v)
                model.train()
            history.append(row)
            if writer is not None:
                for k, v in row.items():
                    if k != "epoch" and math.isfinite(v):
                        writer.add_scalar(k, v, epoch + 1)
            self._checkpoint(
                files,
                model,
                optimizer,
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


class _EpochAccumulator:
    """Per-epoch training statistics, kept as tensors and read on the host every ``SYNC_EVERY`` steps.

    The values and their order of accumulation are those of a per-step read (``float(loss)`` times
    the batch size, summed in step order; exact integer hit counts), so the log does not depend on
    ``SYNC_EVERY``. Under DDP the buffered losses are averaged over the processes with one
    ``all_reduce`` per read, and a non-finite loss on any process stops every process.
    """

    def __init__(self, trainer: Trainer, epoch: int, steps: int, distributed: bool):
        self.trainer = trainer
        self.epoch = epoch
        self.steps = steps
        self.distributed = distributed
        self.loss_sum = 0.0
        self.seen = 0
        self.hits = 0
        self.has_hits = False
        self.extra: dict[str, float] = {}
        self._losses: list[Tensor] = []
        self._meta: list[tuple[int, int, float, dict[str, float]]] = []  # step, n, lr, logs
        self._logits: list[Tensor] = []
        self._targets: list[Tensor] = []
        self._buffered = 0

    def add(self, step: int, loss: Tensor, out: StepOutput, y: Tensor, lr: float) -> None:
        self._losses.append(loss.detach())
        self._meta.append((step, y.shape[0], lr, out.logs))
        logits = out.logits
        if logits is not None and logits.ndim == 2 and y.ndim == 1:
            self._logits.append(logits.detach())
            self._targets.append(y)
            self._buffered += logits.numel()
        if len(self._meta) >= SYNC_EVERY or self._buffered >= _MAX_BUFFERED_LOGITS:
            self.flush()

    def flush(self) -> None:
        if not self._losses:
            return
        if all(t.dtype == torch.float32 for t in self._losses):
            losses = torch.stack(self._losses).reshape(-1)
        else:  # e.g. a bf16 loss of a custom task: exact in float32
            losses = torch.stack([t.float().reshape(()) for t in self._losses])
        if self.distributed:
            dist.all_reduce(losses)
            values = [v / self.trainer.world for v in losses.tolist()]
        else:
            values = losses.tolist()
        meta = self._meta
        if self._logits:
            pred = torch.cat(self._logits).argmax(dim=1)
            self.hits += int((pred == torch.cat(self._targets)).sum())
            self.has_hits = True
        self._losses, self._meta, self._logits, self._targets, self._buffered = [], [], [], [], 0
        for lv, (step, n, lr, logs) in zip(values, meta, strict=True):
            if not math.isfinite(lv):
                self.trainer._non_finite(lv, self.epoch, step, self.steps, lr)
            self.loss_sum += lv * n
            self.seen += n
            for k, v in logs.items():
                self.extra[k] = self.extra.get(k, 0.0) + float(v) * n


def fingerprint_of(config: Config, label: str, seed: int) -> str:
    """Hash of everything that determines a run except the lists of methods and seeds."""
    d = config_to_dict(config)
    d.pop("methods", None)
    d.pop("seeds", None)
    d.pop("name", None)
    d["train"].pop("eval_every", None)
    d["train"].pop("num_threads", None)
    d["method_params"] = d["method_params"].get(label, {})
    blob = json.dumps({"config": d, "label": label, "seed": int(seed)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
