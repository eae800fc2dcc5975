"""M2m (Kim et al., CVPR 2020) as a second stage: f trained from scratch against a frozen ERM model g.

A method with ``second_stage="m2m"`` (``m2m``, ``m2m-ldam-drw``) has its first stage trained as
usual and shared (``erm``'s plain cross-entropy stage): that model is ``g``. Its second stage,
:class:`M2mTask`, trains a fresh classifier ``f`` for the run's full schedule with the loss, head and
hyper-parameters of the registry method ``m2m_f_method`` (``erm``; ``ldam-drw`` for
``m2m-ldam-drw``). Before epoch ``round(m2m_start_fraction * epochs)`` (160 of 200 in the official
code) f trains like that method alone; from it on, batches are drawn class-balanced (the official
over-sampling loader; ``m2m_oversample: false`` keeps f's own sampler, the default of
``m2m-ldam-drw``, whose DRW weights already re-balance) and every batch goes through
:class:`longtail.adversarial.M2mGenerator`:
minority slots are replaced, with probability ``1 - n_k / n_max``, by majority samples of the batch
translated towards the slot's class by ``m2m_steps`` L2-normalised steps minimising
``CE(g(x), k) + m2m_lambda * f(x)_{k0}`` (accepted when ``g``'s probability of k reaches
``m2m_gamma`` and a Bernoulli draw passes), then f steps on the batch with its own loss.

Units: the official step size (0.1) and random start (norm 0.5) are in [0, 1]-pixel units. The
engine's images are standardised, so both are multiplied by the width ``hi - lo`` of the training
inputs' range (``1 / std`` for one channel: the [0, 1] range in standardised units) and every step is
clipped to ``[lo, hi]``.

Per epoch, the generated and accepted counts per target class are kept in the task state (so a
resumed run keeps them) and reported in ``details["m2m"]``, with a few accepted samples (their seed
and target classes) of the last generating step for the report's grid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from longtail.adversarial import M2mGenerator
from longtail.engine.checkpoint import load_checkpoint
from longtail.engine.classifier import ClassifierTask as SingleLabelTask
from longtail.engine.classifier import class_sampler
from longtail.engine.config import Config
from longtail.engine.datasets import DataBundle
from longtail.engine.methods import Method
from longtail.engine.models import build_configured_model
from longtail.engine.tasks import Batch, Evaluation, Setup, StepOutput
from longtail.tracks.single_label.methods import METHODS

__all__ = ["M2mTask"]

#: Accepted samples kept for the report's grid.
GRID_SAMPLES = 16


def _f_method(method: Method, params: Mapping[str, Any]) -> Method:
    name = str(params["m2m_f_method"])
    key = f"method_params.{method.name}.m2m_f_method"
    if name not in METHODS:
        raise ValueError(f"{key}: unknown method {name!r} (any of longtail methods)")
    f = METHODS[name]
    if f.needs_stage or f.mix is not None or f.sla is not None or f.sampler == "smote":
        raise ValueError(
            f"{key}: {name!r} is not a one-stage loss-and-sampler method (M2m trains f with its "
            "loss and head; second stages, post-hoc steps, mixing, SLA and SMOTE do not combine)"
        )
    return f


class M2mTask(SingleLabelTask):
    """f's training with M2m's over-sampling by translation (see the module docstring).

    Args:
        method: the ``m2m`` method (its parameters are M2m's).
        data: the run's data.
        config: f's configuration: the run's own (full schedule; see
            :func:`~longtail.tracks.single_label.task.second_stage_config`).
        stage_state: g's weights (the method's first stage), unless ``m2m_g_checkpoint`` is set.
        params: the method's resolved parameters.
    """

    def __init__(
        self,
        method: Method,
        data: DataBundle,
        config: Config,
        *,
        stage_state: Mapping[str, Tensor],
        params: Mapping[str, Any] | None = None,
    ):
        m2m_params = method.resolve_params(params)
        f_method = _f_method(method, m2m_params)
        super().__init__(f_method, data, config)
        self.m2m_method = method
        self.m2m = m2m_params
        self.g_state = self._g_state(dict(stage_state))
        total = config.train.epochs
        self.start_epoch = min(round(float(self.m2m["m2m_start_fraction"]) * total), total)
        self.counts: dict[int, dict[str, list[int]]] = {}
        self._grid: dict[str, Any] | None = None
        self._g: nn.Module | None = None
        self._generator: Any = None

    def _g_state(self, stage_state: dict[str, Tensor]) -> dict[str, Tensor]:
        path = str(self.m2m["m2m_g_checkpoint"])
        key = f"method_params.{self.m2m_method.name}.m2m_g_checkpoint"
        if not path:
            return stage_state
        try:
            state = load_checkpoint(path)
        except (FileNotFoundError, OSError, ValueError) as e:
            raise ValueError(f"{key}: {e}") from None
        model = state.get("model", state)
        if not isinstance(model, dict) or not all(isinstance(v, Tensor) for v in model.values()):
            raise ValueError(f"{key}: {path} holds no model state dict")
        return dict(model)

    def _build_g(self) -> nn.Module:
        m = self.config.model
        g = build_configured_model(m, self.data.input_shape, self.data.num_classes, head="linear")
        key = f"method_params.{self.m2m_method.name}.m2m_g_checkpoint"
        head_w = self.g_state.get("head.weight")
        if head_w is not None and head_w.shape[0] != self.data.num_classes:
            raise ValueError(
                f"{key}: g has {head_w.shape[0]} classes, the data {self.data.num_classes}"
            )
        try:
            g.load_state_dict(self.g_state)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise ValueError(f"{key}: g does not fit the run's model ({first})") from None
        return g

    def setup(self) -> Setup:
        base = super().setup()
        return dataclasses.replace(base, frozen={"g": self._build_g()})

    def on_train_start(self, models: Mapping[str, nn.Module], device: torch.device) -> None:
        g = models["g"]
        x = self.data.train_x
        lo, hi = (float(x.min()), float(x.max())) if x.numel() else (0.0, 1.0)
        scale = max(hi - lo, 1e-6)
        self._g = g
        self._generator = M2mGenerator(
            g,
            self.data.class_counts,
            beta=float(self.m2m["m2m_beta"]),
            lam=float(self.m2m["m2m_lambda"]),
            gamma=float(self.m2m["m2m_gamma"]),
            steps=int(self.m2m["m2m_steps"]),
            step_size=float(self.m2m["m2m_step_size"]) * scale,
            init_noise=float(self.m2m["m2m_init_noise"]) * scale,
            input_range=(lo, hi) if x.numel() else None,
        )

    def sampler(self, epoch: int, *, seed: int, rank: int, world_size: int) -> Tensor:
        """Class-balanced from M2m's start epoch when ``m2m_oversample``; before it (or without
        over-sampling), f's own sampler, as f's method draws it (deferred, power, ...)."""
        if bool(self.m2m["m2m_oversample"]) and epoch >= self.start_epoch:
            return class_sampler(
                "class-balanced",
                self.data.train_y,
                self.config.train.epochs,
                epoch,
                seed,
                rank,
                world_size,
            )
        return super().sampler(epoch, seed=seed, rank=rank, world_size=world_size)

    def training_step(self, model: nn.Module, batch: Batch, epoch: int, step: int) -> StepOutput:
        if epoch < self.start_epoch or self._generator is None:
            return super().training_step(model, batch, epoch, step)
        f = getattr(model, "module", model)  # DDP: translate with the local module, no reducer
        out = self._generator.generate(f, batch.x, batch.y)
        c = self.data.num_classes
        row = self.counts.setdefault(epoch, {"generated": [0] * c, "accepted": [0] * c})
        gen, acc = out.generated.tolist(), out.accepted.tolist()
        row["generated"] = [a + b for a, b in zip(row["generated"], gen, strict=True)]
        row["accepted"] = [a + b for a, b in zip(row["accepted"], acc, strict=True)]
        if bool(out.replaced.any()):
            self._keep_grid(batch, out)
        logits = model(out.x)
        loss = self.criterion(logits, out.y, epoch)
        n = max(len(batch.y), 1)
        logs: dict[str, float | Tensor] = {
            "m2m_generated": sum(gen) / n,
            "m2m_accepted": sum(acc) / n,
        }
        return StepOutput(loss=loss, logits=logits.detach(), targets=out.y, logs=logs)

    def _keep_grid(self, batch: Batch, out: Any) -> None:
        seed_of = dict(zip(out.slot_index.tolist(), out.seed_index.tolist(), strict=True))
        idx = out.replaced.nonzero().view(-1)[:GRID_SAMPLES]
        self._grid = {
            "images": out.x[idx].detach().float().cpu().tolist(),
            "target_class": out.y[idx].tolist(),
            "seed_class": [int(batch.y[seed_of[i]]) for i in idx.tolist()],
        }

    @torch.no_grad()
    def evaluate(self, model: nn.Module, splits: Mapping[str, Iterable[Batch]]) -> Evaluation:
        ev = super().evaluate(model, splits)
        ev.details["m2m"] = {
            "start_epoch": self.start_epoch,
            "per_epoch": {str(e): v for e, v in sorted(self.counts.items())},
            "samples": self._grid,
        }
        return ev

    def state_dict(self) -> dict[str, Any]:
        return {"counts": {str(e): v for e, v in self.counts.items()}, "grid": self._grid}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.counts = {int(e): dict(v) for e, v in dict(state.get("counts", {})).items()}
        self._grid = state.get("grid")
