"""M2m: major-to-minor translation of training samples against a plainly trained classifier.

Kim, Jeong, Shin. "M2m: Imbalanced Classification via Major-to-minor Translation". CVPR 2020.
It rests on Ilyas et al., "Adversarial Examples Are Not Bugs, They Are Features" (NeurIPS 2019):
a small perturbation that makes a classifier ``g`` see class ``k`` carries real features of ``k``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.adversarial.pgd import (
    _check_positive,
    _check_range,
    _describe,
    _eval_mode,
    l2_normalise,
)

__all__ = ["M2mGenerator", "M2mOutput", "SeedWeighting"]

SeedWeighting = Literal["class", "sample"]


@dataclass(frozen=True)
class M2mOutput:
    """What :meth:`M2mGenerator.generate` returns for one mini-batch of ``N`` samples, ``C`` classes.

    Attributes:
        x: ``(N, ...)`` the batch with accepted slots holding their translated sample (a new
            tensor; the input is not modified).
        y: ``(N,)`` the labels, unchanged: a slot of class ``k`` keeps label ``k`` whether it holds
            a translated sample (of target ``k``) or its original, real sample of class ``k``.
        replaced: ``(N,)`` bool, the slots now holding a translated sample.
        generated: ``(C,)`` int64, per target class, the slots for which a translation was
            optimised (selected and with a larger class in the batch to seed from).
        accepted: ``(C,)`` int64, per target class, the translations accepted.
        seed_index: ``(M,)`` int64, for the ``M`` optimised slots (in batch order), the batch index
            of the seed sample.
        slot_index: ``(M,)`` int64, the batch indices of the ``M`` optimised slots (``replaced`` is
            true for the accepted ones).
        objective: ``(steps,)`` float, the mean over the ``M`` slots of
            ``CE(g(x), k) + lam * f(x)[k0]`` at each step, before its update.
        confidence: ``(M,)`` float, ``g``'s probability of the target class for each translation.
    """

    x: Tensor
    y: Tensor
    replaced: Tensor
    generated: Tensor
    accepted: Tensor
    seed_index: Tensor
    slot_index: Tensor
    objective: Tensor
    confidence: Tensor


def _check_counts(class_counts: Sequence[int] | Tensor | np.ndarray) -> Tensor:
    try:
        t = torch.as_tensor(class_counts, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"class_counts: expected a sequence of counts, got {type(class_counts).__name__}"
        ) from None
    if t.ndim != 1 or len(t) < 2:
        raise ValueError(
            f"class_counts: expected a 1-D sequence of at least 2 counts, got shape {tuple(t.shape)}"
        )
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()) or float(t.max()) <= 0:
        raise ValueError(
            f"class_counts: expected finite counts >= 0, not all zero, got {t.tolist()}"
        )
    return t.float()


def _check_interval(
    name: str, value: float, lo: float, hi: float, *, lo_closed: bool, hi_closed: bool
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    v = float(value)
    ok_lo = v >= lo if lo_closed else v > lo
    ok_hi = v <= hi if hi_closed else v < hi
    if not (math.isfinite(v) and ok_lo and ok_hi):
        interval = f"{'[' if lo_closed else '('}{lo:g}, {hi:g}{']' if hi_closed else ')'}"
        raise ValueError(f"{name}: expected a number in {interval}, got {value!r}")
    return v


class M2mGenerator:
    r"""Replace minority slots of a mini-batch by majority samples translated to the minority class.

    For a mini-batch ``(x, y)`` with training class counts ``n`` (``n_max = max n``):

    1. **Slots.** Slot ``i`` (class ``k = y_i``) is selected with probability ``1 - n_k / n_max``.
    2. **Seed.** For a selected slot, a seed ``j`` is drawn from the same mini-batch among samples of
       larger classes, with ``w(k0, k) = 1 - beta^{(n_{k0} - n_k)^+}``:
       ``seed_weighting="class"`` (default) draws the seed class ``k0`` among the classes present
       in the batch with probability proportional to ``w(k0, k)`` (the paper's ``P(k0 | k)``), then a
       sample of that class uniformly; ``"sample"`` weights each sample ``j`` by ``w(y_j, k)``, as
       the official code does (the class probability is then also proportional to how many samples
       of ``k0`` the batch holds). A slot with no larger class in the batch keeps its sample.
    3. **Translation.** All ``M`` selected slots together, one batched optimisation: from
       ``x* = x_{j} + u`` (``u`` of L2 norm ``init_noise`` per sample), ``steps`` times

       .. math::
           x^* \leftarrow x^* - \alpha\, \frac{\nabla L}{\lVert \nabla L \rVert_2},\qquad
           L = \mathrm{CE}(g(x^*), k) + \lambda\, f(x^*)_{k_0}

       (per-sample normalised gradient; ``f(x)_{k0}`` is the logit of the seed class under the
       classifier being trained), clipped to ``input_range`` after every step. ``g`` and ``f``
       run in evaluation mode (their modes are restored after), gradients are taken with
       respect to the input only (``torch.autograd.grad``), so neither model's ``.grad`` changes and
       a caller's ``torch.no_grad()`` does not matter.
    4. **Acceptance.** ``x*`` replaces slot ``i`` iff ``softmax(g(x*))_k >= gamma`` and a
       Bernoulli(``1 - beta^{(n_{k0} - n_k)^+}``) draw passes; otherwise slot ``i`` keeps its own
       real sample of class ``k`` (with the official over-sampling loader, that is a re-sampled
       minority sample). Labels never change.

    Defaults are the official code's (``alinlab/M2m``, ``run.sh`` for CIFAR-10-LT): ``beta=0.999``,
    ``lam=0.5``, ``gamma=0.9`` (the script's value; ``config.py`` defaults to 0.99), ``steps=10``,
    ``step_size=0.1``, ``init_noise=0.5``. The official images are in ``[0, 1]`` (clipped there, and
    normalised inside the network); for standardised inputs pass the standardised image of
    ``[0, 1]`` as ``input_range`` and consider ``step_size`` and ``init_noise`` in those units (a
    per-channel std ``s`` makes them ``1 / s`` times larger). Two known differences from the
    official code: its random start renormalises the noise per *channel over the whole batch*
    (``renorm(p=2, dim=1)``), so a sample's noise is much smaller than 0.5; here each sample's noise
    has norm ``init_noise``. Its objective averages over the batch; here it is summed, which with
    per-sample normalised steps in evaluation mode gives the same steps.

    **Schedule.** Officially ``f`` trains from scratch with plain ERM for 160 of 200 epochs (on the
    imbalanced data, instance sampling) and generation runs from epoch 160 (``--warm 160``, also the
    first learning-rate decay) to the end; since the M2m command does not pass ``--no_over``, the
    loader also switches to class-balanced over-sampling at that epoch. :meth:`start_epoch` gives
    ``round(start_fraction * epochs)``, default ``start_fraction = 0.8`` (160 / 200).

    Args:
        g: the plainly trained classifier, ``(N, ...) -> (N, C)`` logits; not trained here.
        class_counts: ``(C,)`` training counts per class (``>= 0``, at least one positive).
        beta: ``[0, 1)``, seed-class and acceptance weighting. Default 0.999.
        lam: ``>= 0``, weight of ``f``'s seed-class logit. Default 0.5.
        gamma: ``(0, 1)``, minimal probability of ``k`` under ``g`` to accept. Default 0.9.
        steps: number of gradient steps, ``>= 1``. Default 10.
        step_size: L2 norm of each step, ``> 0``. Default 0.1.
        init_noise: L2 norm of the random start per sample, ``>= 0``. Default 0.5.
        input_range: ``(lo, hi)`` to clip to, or ``None`` (default) for no clipping.
        seed_weighting: ``"class"`` (default) or ``"sample"``, see step 2.
        start_fraction: ``[0, 1]``, fraction of the epochs before generation starts. Default 0.8.

    Raises:
        ValueError / TypeError: naming the argument, before any work.
    """

    def __init__(
        self,
        g: nn.Module,
        class_counts: Sequence[int] | Tensor | np.ndarray,
        *,
        beta: float = 0.999,
        lam: float = 0.5,
        gamma: float = 0.9,
        steps: int = 10,
        step_size: float = 0.1,
        init_noise: float = 0.5,
        input_range: tuple[float, float] | None = None,
        seed_weighting: SeedWeighting = "class",
        start_fraction: float = 0.8,
    ) -> None:
        if not isinstance(g, nn.Module):
            raise TypeError(f"g: expected a torch.nn.Module, got {type(g).__name__}")
        self.g = g
        self.class_counts = _check_counts(class_counts)
        self.num_classes = len(self.class_counts)
        self.beta = _check_interval("beta", beta, 0.0, 1.0, lo_closed=True, hi_closed=False)
        self.lam = _check_interval("lam", lam, 0.0, math.inf, lo_closed=True, hi_closed=False)
        self.gamma = _check_interval("gamma", gamma, 0.0, 1.0, lo_closed=False, hi_closed=False)
        if isinstance(steps, bool) or not isinstance(steps, int):
            raise TypeError(f"steps: expected an int >= 1, got {steps!r}")
        if steps < 1:
            raise ValueError(f"steps: expected an int >= 1, got {steps!r}")
        self.steps = steps
        self.step_size = _check_positive("step_size", step_size)
        self.init_noise = _check_interval(
            "init_noise", init_noise, 0.0, math.inf, lo_closed=True, hi_closed=False
        )
        self.input_range = _check_range(input_range)
        if seed_weighting not in ("class", "sample"):
            raise ValueError(
                f"seed_weighting: expected 'class' or 'sample', got {seed_weighting!r}"
            )
        self.seed_weighting: SeedWeighting = seed_weighting
        self.start_fraction = _check_interval(
            "start_fraction", start_fraction, 0.0, 1.0, lo_closed=True, hi_closed=True
        )
        self._counts_on: dict[torch.device, Tensor] = {}

    # ------------------------------------------------------------------ probabilities

    def _counts(self, device: torch.device) -> Tensor:
        t = self._counts_on.get(device)
        if t is None:
            t = self.class_counts.to(device)
            self._counts_on[device] = t
        return t

    def replace_probability(self, y: Tensor) -> Tensor:
        """``(N,)`` probability ``1 - n_{y_i} / n_max`` that each slot is selected."""
        n = self._counts(y.device)
        return 1.0 - n[y] / n.max()

    def seed_weights(self, target: Tensor, y: Tensor) -> Tensor:
        """``(M, N)`` unnormalised probability of seeding target slot ``i`` (class ``target_i``) from
        batch sample ``j`` (class ``y_j``); see the class docstring, step 2. A zero row: no seed."""
        n = self._counts(y.device)
        w = self._one_minus_beta_pow(n[y].unsqueeze(0) - n[target].unsqueeze(1))
        if self.seed_weighting == "class":
            in_batch = torch.bincount(y, minlength=self.num_classes).to(w.dtype)
            w = w / in_batch[y].unsqueeze(0)
        return w

    def acceptance_probability(self, seed_class: Tensor, target: Tensor) -> Tensor:
        """``1 - beta^{(n_{k0} - n_k)^+}`` for seed classes ``k0`` and targets ``k`` (same shape)."""
        n = self._counts(target.device)
        return self._one_minus_beta_pow(n[seed_class] - n[target])

    def _one_minus_beta_pow(self, diff: Tensor) -> Tensor:
        """``1 - beta^{max(diff, 0)}`` as ``-expm1(gap * log beta)`` (accurate for beta near 1)."""
        gap = diff.clamp_min(0.0)
        if self.beta == 0.0:
            return (gap > 0).to(gap.dtype)
        return -torch.expm1(gap * math.log(self.beta))

    def start_epoch(self, epochs: int) -> int:
        """First epoch (0-based) with generation: ``round(start_fraction * epochs)``."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs: expected an int >= 1, got {epochs!r}")
        return round(self.start_fraction * epochs)

    # ------------------------------------------------------------------ generation

    def _check_logits(self, name: str, logits: Tensor, batch: int) -> None:
        if logits.ndim != 2 or logits.shape[0] != batch:
            raise ValueError(
                f"{name}: expected ({batch}, {self.num_classes}) logits, got shape "
                f"{tuple(logits.shape)}"
            )
        if logits.shape[1] != self.num_classes:
            raise ValueError(
                f"{name}: outputs {logits.shape[1]} classes but class_counts has {self.num_classes}"
            )

    def _rand(self, n: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
        device = like.device if generator is None else generator.device
        return torch.rand(n, generator=generator, device=device).to(like.device)

    def _noise(self, like: Tensor, generator: torch.Generator | None) -> Tensor:
        device = like.device if generator is None else generator.device
        u = torch.rand(like.shape, generator=generator, device=device, dtype=like.dtype) - 0.5
        return (l2_normalise(u) * self.init_noise).to(like.device)

    def generate(
        self,
        f: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> M2mOutput:
        """Translate the selected slots of the mini-batch ``(x, y)`` (see the class docstring).

        Args:
            f: the classifier being trained, ``(N, ...) -> (N, C)`` logits.
            x: ``(N, ...)`` floating-point inputs.
            y: ``(N,)`` int64 labels in ``[0, C)``.
            generator: a ``torch.Generator`` on ``x``'s device for every random draw (slots, seeds,
                noise, acceptance); with it the output is deterministic.

        Raises:
            ValueError / TypeError: ``x`` / ``y`` malformed, a label outside ``[0, C)``, or ``g``
                (or ``f``) outputting a number of classes other than ``len(class_counts)``.
        """
        if not isinstance(f, nn.Module):
            raise TypeError(f"f: expected a torch.nn.Module, got {type(f).__name__}")
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 1:
            raise TypeError(f"x: expected a floating-point tensor (N, ...), got {_describe(x)}")
        if not isinstance(y, Tensor) or y.dtype != torch.int64 or y.shape != (len(x),):
            raise ValueError(
                f"y: expected an int64 tensor of shape ({len(x)},), got "
                f"{tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__}"
            )
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(
                f"y: labels must lie in [0, {self.num_classes}), got min {int(y.min())}, "
                f"max {int(y.max())}"
            )
        x = x.detach()
        c = self.num_classes
        zeros = torch.zeros(c, dtype=torch.int64, device=x.device)
        empty = torch.zeros(0, dtype=torch.int64, device=x.device)

        def nothing() -> M2mOutput:
            return M2mOutput(
                x=x.clone(),
                y=y,
                replaced=torch.zeros(len(y), dtype=torch.bool, device=x.device),
                generated=zeros,
                accepted=zeros.clone(),
                seed_index=empty,
                slot_index=empty,
                objective=torch.zeros(0, device=x.device),
                confidence=torch.zeros(0, device=x.device),
            )

        if len(y) == 0:
            return nothing()
        select = self._rand(len(y), y, generator) < self.replace_probability(y)
        slots = select.nonzero().view(-1)
        if len(slots) == 0:
            return nothing()
        target = y[slots]
        w = self.seed_weights(target, y)
        valid = w.sum(1) > 0
        slots, target, w = slots[valid], target[valid], w[valid]
        if len(slots) == 0:
            return nothing()
        seed = torch.multinomial(w, 1, generator=generator).view(-1)
        seed_class = y[seed]
        p_accept = self.acceptance_probability(seed_class, target)

        x_star, objective, confidence = self._translate(f, x[seed], target, seed_class, generator)

        accept = (confidence >= self.gamma) & (self._rand(len(slots), y, generator) < p_accept)
        out = x.clone()
        replaced = torch.zeros(len(y), dtype=torch.bool, device=x.device)
        taken = slots[accept]
        out[taken] = x_star[accept].to(out.dtype)
        replaced[taken] = True
        return M2mOutput(
            x=out,
            y=y,
            replaced=replaced,
            generated=torch.bincount(target, minlength=c),
            accepted=torch.bincount(target[accept], minlength=c),
            seed_index=seed,
            slot_index=slots,
            objective=objective,
            confidence=confidence,
        )

    __call__ = generate

    def _translate(
        self,
        f: nn.Module,
        x0: Tensor,
        target: Tensor,
        seed_class: Tensor,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One batched optimisation of all slots; returns ``(x*, objective per step, p_g(k))``."""
        lo, hi = self.input_range if self.input_range is not None else (None, None)
        x_star = x0 + self._noise(x0, generator) if self.init_noise > 0 else x0.clone()
        if self.input_range is not None:
            x_star = x_star.clamp(lo, hi)
        losses = []
        with ExitStack() as stack:
            stack.enter_context(_eval_mode(self.g, True))
            stack.enter_context(_eval_mode(f, True))
            stack.enter_context(torch.enable_grad())
            for step in range(self.steps):
                x_star = x_star.detach().requires_grad_(True)
                logits_g = self.g(x_star)
                logits_f = f(x_star)
                if step == 0:
                    self._check_logits("g", logits_g, len(x0))
                    self._check_logits("f", logits_f, len(x0))
                per_sample = F.cross_entropy(
                    logits_g.float(), target, reduction="none"
                ) + self.lam * logits_f.float().gather(1, seed_class.view(-1, 1)).view(-1)
                (grad,) = torch.autograd.grad(per_sample.sum(), [x_star])
                losses.append(per_sample.detach().mean())
                x_star = x_star.detach() - self.step_size * l2_normalise(grad)
                if self.input_range is not None:
                    x_star = x_star.clamp(lo, hi)
            with torch.no_grad():
                logits = self.g(x_star).float()
                confidence = torch.softmax(logits, 1).gather(1, target.view(-1, 1)).view(-1)
        return x_star.detach(), torch.stack(losses), confidence
