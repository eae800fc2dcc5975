"""Projected gradient descent (PGD) attacks in the L-infinity and L2 norms, batched.

Madry, Makelov, Schmidt, Tsipras, Vladu. "Towards Deep Learning Models Resistant to Adversarial
Attacks". ICLR 2018. The L2 form with normalised steps is the one of Ilyas et al. (NeurIPS 2019)
and of M2m (Kim et al., CVPR 2020).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PGD", "Norm", "l2_normalise", "pgd", "project", "random_in_ball"]

Norm = Literal["linf", "l2"]
LossFn = Callable[[Tensor, Tensor], Tensor]

_TINY = 1e-12


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a positive number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return v


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"steps: expected an int >= 0, got {steps!r}")
    if steps < 0:
        raise ValueError(f"steps: expected an int >= 0, got {steps!r}")
    return steps


def _check_norm(norm: str) -> Norm:
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm: expected 'linf' or 'l2', got {norm!r}")
    return norm  # type: ignore[return-value]


def _check_range(input_range: tuple[float, float] | None) -> tuple[float, float] | None:
    if input_range is None:
        return None
    try:
        lo, hi = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"input_range: expected (lo, hi) numbers or None, got {input_range!r}"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
        raise ValueError(f"input_range: expected finite lo < hi, got {input_range!r}")
    return lo, hi


def _check_batch(x: Tensor, y: Tensor, input_range: tuple[float, float] | None) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 1:
        raise TypeError(f"x: expected a floating-point tensor (N, ...), got {_describe(x)}")
    if not isinstance(y, Tensor) or y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"y: expected a tensor of shape ({len(x)},), got {_describe(y)}")
    if input_range is not None and x.numel() > 0:
        lo, hi = input_range
        if bool(((x < lo) | (x > hi)).any()):
            raise ValueError(
                f"x: values outside input_range {input_range} (min {float(x.min()):.4g}, "
                f"max {float(x.max()):.4g})"
            )


def _describe(t: object) -> str:
    if isinstance(t, Tensor):
        return f"tensor of shape {tuple(t.shape)} and dtype {t.dtype}"
    return type(t).__name__


def _per_sample_norm(t: Tensor) -> Tensor:
    """L2 norm of each sample, shaped ``(N, 1, ..., 1)`` for broadcasting against ``t``."""
    flat = t.reshape(t.shape[0], math.prod(t.shape[1:]))
    n: Tensor = torch.linalg.vector_norm(flat, dim=1)
    return n.view(-1, *([1] * (t.ndim - 1)))


def l2_normalise(t: Tensor) -> Tensor:
    """``t_i / ||t_i||_2`` per sample (a zero sample stays zero). ``(N, ...) -> (N, ...)``."""
    return t / _per_sample_norm(t).clamp_min(_TINY)


def project(delta: Tensor, norm: Norm, epsilon: float) -> Tensor:
    """The nearest point of the ``epsilon`` ball of ``norm`` to each sample of ``delta``.

    L-infinity: clamp every entry to ``[-epsilon, epsilon]``; L2: scale a sample whose norm exceeds
    ``epsilon`` down to norm ``epsilon``.
    """
    if norm == "linf":
        return delta.clamp(-epsilon, epsilon)
    scale = (epsilon / _per_sample_norm(delta).clamp_min(_TINY)).clamp(max=1.0)
    return delta * scale


def random_in_ball(
    like: Tensor, norm: Norm, epsilon: float, generator: torch.Generator | None = None
) -> Tensor:
    """Per sample, a point drawn uniformly from the ``epsilon`` ball of ``norm``.

    L-infinity: uniform in ``[-epsilon, epsilon]^d``; L2: a Gaussian direction scaled to radius
    ``epsilon * U^(1/d)`` (uniform in the ball, ``d`` the number of entries of a sample). The noise is
    drawn on ``generator``'s device (``like``'s without one) and moved to ``like``'s.
    """
    device = like.device if generator is None else generator.device
    shape = like.shape
    if norm == "linf":
        u = torch.rand(shape, generator=generator, device=device, dtype=like.dtype)
        return ((2 * u - 1) * epsilon).to(like.device)
    d = max(1, like[0].numel()) if len(like) else 1
    direction = l2_normalise(
        torch.randn(shape, generator=generator, device=device, dtype=like.dtype)
    )
    u = torch.rand(shape[0], generator=generator, device=device, dtype=like.dtype)
    radius = epsilon * u.pow(1.0 / d)
    return (direction * radius.view(-1, *([1] * (len(shape) - 1)))).to(like.device)


@contextmanager
def _eval_mode(model: nn.Module, enable: bool) -> Iterator[None]:
    """Put every sub-module in evaluation mode and restore each one's own flag afterwards."""
    if not enable:
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _default_loss(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def _run(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    norm: Norm,
    epsilon: float,
    step_size: float,
    steps: int,
    targeted: bool,
    random_start: bool,
    input_range: tuple[float, float] | None,
    loss_fn: LossFn | None,
    eval_mode: bool,
    generator: torch.Generator | None,
) -> Tensor:
    x = x.detach()
    if x.shape[0] == 0:
        return x.clone()
    lo, hi = input_range if input_range is not None else (None, None)
    loss_of = loss_fn if loss_fn is not None else _default_loss
    delta = random_in_ball(x, norm, epsilon, generator) if random_start else torch.zeros_like(x)
    x_adv = x + delta
    if input_range is not None:
        x_adv = x_adv.clamp(lo, hi)
    sign = -1.0 if targeted else 1.0
    with _eval_mode(model, eval_mode), torch.enable_grad():
        for _ in range(steps):
            x_adv = x_adv.detach().requires_grad_(True)
            loss = loss_of(model(x_adv), y)
            (grad,) = torch.autograd.grad(loss.sum(), [x_adv])
            step = grad.sign() if norm == "linf" else l2_normalise(grad)
            x_adv = x + project(x_adv.detach() + sign * step_size * step - x, norm, epsilon)
            if input_range is not None:
                x_adv = x_adv.clamp(lo, hi)
    return x_adv.detach()


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    norm: Norm = "linf",
    epsilon: float,
    step_size: float,
    steps: int,
    targeted: bool = False,
    random_start: bool = True,
    input_range: tuple[float, float] | None = None,
    loss_fn: LossFn | None = None,
    eval_mode: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Projected gradient ascent (untargeted) or descent (targeted) of a loss in an epsilon ball.

    With ``delta_0`` uniform in the ball (``random_start``) or 0, for ``t = 0 .. steps - 1``:

    .. math::
        x_{t+1} = \Pi_{B_\epsilon(x) \cap [lo, hi]}\bigl(x_t \pm \alpha\, s(\nabla_x L(f(x_t), y))\bigr)

    with ``+`` untargeted (raise the loss of the true label ``y``), ``-`` targeted (lower the loss
    of the target ``y``); ``s`` is ``sign`` for ``"linf"`` and the per-sample unit vector
    ``g / ||g||_2`` for ``"l2"``; the projection clips the perturbation to the ball (per sample),
    then the result to ``input_range``. Because ``x`` lies in the range, clipping to the range only
    shrinks the perturbation, so the result stays in both sets.

    The model runs in evaluation mode (``eval_mode``; batch-norm statistics neither used from the
    batch nor updated, and samples independent) and every sub-module's own mode is restored after.
    Gradients are taken with ``torch.autograd.grad`` with respect to the input only, inside
    ``torch.enable_grad()``: it works under a caller's ``torch.no_grad()`` and never touches the
    parameters' ``.grad``.

    Args:
        model: maps ``(N, ...)`` inputs to ``(N, C)`` logits.
        x: ``(N, ...)`` clean inputs, inside ``input_range`` if one is given.
        y: ``(N,)`` true labels (untargeted) or target labels (targeted).
        norm: ``"linf"`` or ``"l2"``.
        epsilon: radius of the ball, ``> 0``, in the units of ``x``.
        step_size: ``> 0``; per step, the L-infinity step of every entry or the L2 norm of the step.
        steps: number of gradient steps, ``>= 0`` (0: the random start, or ``x`` itself).
        targeted: lower the loss towards ``y`` instead of raising it.
        random_start: start from a uniform point of the ball (Madry et al.) instead of ``x``.
        input_range: ``(lo, hi)`` valid input values (e.g. ``(0, 1)``, or the standardised image of
            it), or ``None`` for no clipping.
        loss_fn: ``(logits, y) -> loss`` (per sample ``(N,)`` or a scalar; it is summed before
            differentiation). Default: per-sample cross-entropy.
        eval_mode: run the model in evaluation mode (default) rather than its current mode.
        generator: for the random start, on the device where the noise is drawn (e.g. a CUDA
            generator for CUDA inputs gives device-side noise); the result is then deterministic.

    Returns:
        ``(N, ...)`` adversarial inputs, detached, same dtype and device as ``x``.

    Raises:
        ValueError / TypeError: naming the argument: ``norm`` unknown, ``epsilon`` or ``step_size``
            not a finite positive number, ``steps`` not an int ``>= 0``, ``input_range`` not
            ``lo < hi``, ``x`` outside ``input_range``, ``y`` of the wrong shape.
    """
    norm = _check_norm(norm)
    epsilon = _check_positive("epsilon", epsilon)
    step_size = _check_positive("step_size", step_size)
    steps = _check_steps(steps)
    rng = _check_range(input_range)
    _check_batch(x, y, rng)
    return _run(
        model,
        x,
        y,
        norm,
        epsilon,
        step_size,
        steps,
        targeted,
        random_start,
        rng,
        loss_fn,
        eval_mode,
        generator,
    )


class PGD:
    """A configured :func:`pgd` attack: ``PGD(model, epsilon=..., step_size=..., steps=...)(x, y)``.

    The hyper-parameters are validated once here; see :func:`pgd` for their meaning and defaults.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        norm: Norm = "linf",
        epsilon: float,
        step_size: float,
        steps: int,
        targeted: bool = False,
        random_start: bool = True,
        input_range: tuple[float, float] | None = None,
        loss_fn: LossFn | None = None,
        eval_mode: bool = True,
    ) -> None:
        self.model = model
        self.norm = _check_norm(norm)
        self.epsilon = _check_positive("epsilon", epsilon)
        self.step_size = _check_positive("step_size", step_size)
        self.steps = _check_steps(steps)
        self.targeted = bool(targeted)
        self.random_start = bool(random_start)
        self.input_range = _check_range(input_range)
        self.loss_fn = loss_fn
        self.eval_mode = bool(eval_mode)

    def __call__(self, x: Tensor, y: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Adversarial examples ``(N, ...)`` for the batch ``(x, y)``."""
        _check_batch(x, y, self.input_range)
        return _run(
            self.model,
            x,
            y,
            self.norm,
            self.epsilon,
            self.step_size,
            self.steps,
            self.targeted,
            self.random_start,
            self.input_range,
            self.loss_fn,
            self.eval_mode,
            generator,
        )

    def __repr__(self) -> str:
        return (
            f"PGD(norm={self.norm!r}, epsilon={self.epsilon}, step_size={self.step_size}, "
            f"steps={self.steps}, targeted={self.targeted}, random_start={self.random_start}, "
            f"input_range={self.input_range})"
        )
