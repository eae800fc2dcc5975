"""What the teacher-student tasks share: their method class and reading a teacher's weights.

Used by :mod:`longtail.tracks.distillation.task` (``task: distillation``) and
:mod:`longtail.tracks.metric_learning.task` (``task: metric-learning``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from longtail.engine.checkpoint import CheckpointError, load_checkpoint
from longtail.engine.config import ConfigError
from longtail.engine.methods import LossFn, Method, Param

__all__ = [
    "ROLES",
    "TeacherStudentMethod",
    "check_teacher_checkpoint",
    "load_teacher_state",
    "load_weights",
]

ROLES = ("teacher", "alone", "student")


@dataclass(frozen=True)
class TeacherStudentMethod(Method):
    """A method of a teacher-student task (distillation, metric learning).

    Attributes:
        role: ``"teacher"`` (the teacher stage itself, evaluated), ``"alone"`` (the student
            network trained on its own: its own stage) or ``"student"`` (trained against the
            frozen teacher: a second stage on the teacher's stage, with its own checkpoints).

    Every ``teacher`` and ``student`` method of a run shares one stage, the teacher, whose identity
    is the run's configuration (the runner fingerprints the whole config with the stage).
    """

    role: str = "student"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")

    @classmethod
    def of(
        cls,
        name: str,
        role: str,
        description: str,
        paper: str,
        *,
        task: str,
        loss: LossFn,
        params: Mapping[str, Param] | None = None,
    ) -> TeacherStudentMethod:
        """A method of ``role`` in ``task``: a student is a second stage on the teacher's stage."""
        return cls(
            name=name,
            description=description,
            paper=paper,
            loss=loss,
            params=dict(params or {}),
            task=task,
            second_stage="distill" if role == "student" else None,  # type: ignore[arg-type]
            role=role,
        )

    @property
    def needs_stage(self) -> bool:
        return self.role == "student"

    def composition(self) -> dict[str, Any]:
        return {**super().composition(), "role": self.role}

    def stage_identity(self, params: Mapping[str, Any]) -> dict[str, Any]:
        # the student's parameters never shape the teacher: one stage for every teacher-side method
        return {"loss": "student" if self.role == "alone" else "teacher", "task": self.task}


def load_teacher_state(path: str | Path, key: str) -> dict[str, Tensor]:
    """The model weights in ``path`` (a run's ``model.pt``, or a ``checkpoint.pt`` with a ``model``
    entry), read with ``torch.load(weights_only=True)`` onto the CPU.

    Raises:
        ConfigError: naming ``key``: the file is missing, cannot be read, or holds no weights.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"config key '{key}': file not found: {p}")
    try:
        state: Any = load_checkpoint(p)
    except CheckpointError as exc:
        raise ConfigError(f"config key '{key}': {exc}") from None
    if isinstance(state.get("model"), Mapping):
        state = state["model"]
    if not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(
            f"config key '{key}': {p} holds no model weights (expected a state dict such as a "
            "run's model.pt, or a checkpoint.pt with a 'model' entry)"
        )
    return {str(k): v for k, v in state.items()}


def load_weights(model: nn.Module, state: Mapping[str, Tensor], key: str, model_key: str) -> None:
    """``model.load_state_dict(state)``; a mismatch is a :class:`ConfigError` naming both keys."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = " ".join(lines[1:3]) if len(lines) > 1 else lines[0] if lines else ""
        raise ConfigError(
            f"config key '{key}': the weights do not fit the network of {model_key} ({detail})"
        ) from None


def check_teacher_checkpoint(
    path: str | Path,
    key: str,
    model_key: str,
    build: Callable[[], nn.Module],
    *,
    weight: str,
    rows: int,
    mismatch: Callable[[int], str],
) -> None:
    """Check a teacher checkpoint before training: its weights fit the teacher network.

    Reads ``path`` (:func:`load_teacher_state`), checks that the 2-D weight ``weight``, when present,
    has ``rows`` rows (the number of classes, the embedding's dimension), then builds the network
    with ``build()`` (the global random state left untouched) and loads the weights into it
    (:func:`load_weights`).

    Raises:
        ConfigError: naming ``key``: an unreadable file (:func:`load_teacher_state`), ``weight``
            with another number of rows (the message ``mismatch(found_rows)``), or weights that do
            not fit the network of ``model_key``.
    """
    state = load_teacher_state(path, key)
    w = state.get(weight)
    if w is not None and w.ndim == 2 and w.shape[0] != rows:
        raise ConfigError(f"config key '{key}': {mismatch(int(w.shape[0]))}")
    with torch.random.fork_rng(devices=[]):
        net = build()
    load_weights(net, state, key, model_key)
