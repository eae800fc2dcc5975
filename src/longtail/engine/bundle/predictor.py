"""A trained method as a predictor: :class:`Predictor`, the object a model bundle loads into.

A :class:`Predictor` is an ``nn.Module`` (the network plus the method's
:class:`~longtail.engine.prediction.PredictionRule`) with scikit-learn's habits on top:

- ``forward(x)`` / ``predictor(x)``: network inputs (already preprocessed, a batch) ->
  calibrated probabilities ``(N, C)`` (``softmax(z / T)``; ``sigmoid`` for labels), or the
  embeddings (``output="embedding"``); what ``longtail export`` bakes into a file;
- :meth:`Predictor.predict_proba`, :meth:`Predictor.predict`, :meth:`Predictor.decision_scores`
  take *raw* inputs (what the data files held: images as ``uint8`` pixel values or floats in
  ``[0, 1]``, feature vectors as numbers, a ``pandas.DataFrame`` by feature name, PIL images) and
  apply the bundle's :class:`~longtail.engine.datasets.Preprocessing` first, in batches.

``predict`` returns class indices ``(N,)`` (``-1``: unknown, open set), or a 0/1 matrix ``(N, L)``
(labels), or embeddings; :attr:`Predictor.classes_` holds the class (label) names.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from longtail.engine.bundle.inputs import pil_to_uint8
from longtail.engine.datasets.preprocessing import Preprocessing
from longtail.engine.prediction import PredictionRule, rule_logits, rule_score

__all__ = ["UNKNOWN", "Predictor"]

#: ``predict``'s class index for an open-set input judged unknown.
UNKNOWN = -1


class Predictor(nn.Module):
    """A trained network and its method's prediction rule (see the module docstring).

    Args:
        network: the trained network (its weights loaded).
        rule: the method's prediction rule, with the bundle's calibration and thresholds.
        preprocessing: raw inputs -> network inputs (``None``: inputs are network inputs).
        class_names: one name per class (label); embeddings: the training classes.
        meta: the bundle's JSON record (method, config, versions...).
        batch_size: examples per forward pass in ``predict*``.
    """

    def __init__(
        self,
        network: nn.Module,
        rule: PredictionRule,
        preprocessing: Preprocessing | None,
        class_names: Sequence[str],
        *,
        meta: Mapping[str, Any] | None = None,
        batch_size: int = 256,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
        self.network = network.eval()
        self.rule = rule
        self.preprocessing = preprocessing
        self.classes_ = list(class_names)
        self.meta = dict(meta or {})
        self.batch_size = int(batch_size)
        self._temperature = float(rule.temperature)
        self._thresholds: Tensor
        self.register_buffer(
            "_thresholds",
            torch.tensor(
                rule.thresholds if rule.thresholds is not None else [], dtype=torch.float32
            ),
            persistent=False,
        )

    # ------------------------------------------------------------------------------ tensors
    @property
    def output(self) -> str:
        """The rule's output: ``class``, ``labels``, ``class-or-unknown`` or ``embedding``."""
        return self.rule.output

    @property
    def device(self) -> torch.device:
        for t in self.network.parameters():
            return t.device
        return torch.device("cpu")

    def logits(self, x: Tensor) -> Tensor:
        """The method's logits (before the temperature) of network inputs ``x``."""
        return rule_logits(self.rule, self.network, x)

    def probabilities(self, logits: Tensor) -> Tensor:
        """Calibrated probabilities of the method's ``logits`` (embeddings: unchanged)."""
        if self.output == "embedding":
            return logits
        z = logits / self._temperature if self._temperature != 1.0 else logits
        if self.output == "labels":
            return torch.sigmoid(z)
        return torch.softmax(z, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """Network inputs ``x`` -> calibrated probabilities (embeddings)."""
        return self.probabilities(self.logits(x))

    # ------------------------------------------------------------------------------ raw inputs
    def as_inputs(self, x: Any) -> Tensor:
        """Raw inputs (see the module docstring) -> network inputs, float32 on the CPU."""
        t = _as_tensor(x, self.preprocessing)
        if self.preprocessing is None:
            return t.float()
        if self.preprocessing.kind == "image":
            if t.ndim == 3:
                t = t.unsqueeze(0)
            if t.ndim != 4 or tuple(t.shape[1:]) != self.preprocessing.input_shape:
                raise ValueError(
                    f"x: expected images of shape (N, {', '.join(map(str, self.preprocessing.input_shape))}), "
                    f"got {tuple(t.shape)}"
                )
            return self.preprocessing.apply(t, divide=t.dtype == torch.uint8 or bool(t.max() > 1))
        if t.ndim == 1:
            t = t.unsqueeze(0)
        width = len(self.preprocessing.offset)
        if t.ndim != 2 or t.shape[1] != width:
            raise ValueError(f"x: expected (N, {width}) feature vectors, got {tuple(t.shape)}")
        return self.preprocessing.apply(t)

    def _batches(self, x: Any) -> Iterator[Tensor]:
        inputs = self.as_inputs(x)
        for i in range(0, len(inputs), self.batch_size):
            yield inputs[i : i + self.batch_size].to(self.device)

    @torch.no_grad()
    def _logits_of(self, x: Any) -> Tensor:
        self.network.eval()
        parts = [self.logits(b).cpu() for b in self._batches(x)]
        if parts:
            return torch.cat(parts)
        return torch.zeros(0, len(self.classes_))

    def predict_proba(self, x: Any) -> np.ndarray:
        """Calibrated probabilities ``(N, C)`` of raw inputs (embeddings: ``(N, D)``)."""
        return self.probabilities(self._logits_of(x)).numpy()

    def decision_scores(self, x: Any) -> np.ndarray:
        """Open set: the method's score ``(N,)`` (higher: more likely a known class)."""
        if self.output != "class-or-unknown":
            raise TypeError(
                f"decision_scores: an open-set bundle's; this one predicts {self.output!r}"
            )
        return rule_score(self.rule, self._logits_of(x)).numpy()

    def predict(self, x: Any) -> np.ndarray:
        """Class indices ``(N,)`` (``-1``: unknown), a 0/1 label matrix, or embeddings."""
        return self.decide(self._logits_of(x)).numpy()

    def decide(self, logits: Tensor) -> Tensor:
        """What :meth:`predict` returns, from the method's logits."""
        if self.output == "embedding":
            return logits
        if self.output == "labels":
            p = self.probabilities(logits)
            t = (
                self._thresholds.cpu()
                if self._thresholds.numel()
                else torch.full((p.shape[1],), 0.5)
            )
            return (p >= t).to(torch.int64)
        pred = logits.argmax(dim=1)
        if self.output == "class-or-unknown" and self.rule.reject_threshold is not None:
            score = rule_score(self.rule, logits)
            pred = torch.where(score < self.rule.reject_threshold, UNKNOWN, pred)
        return pred

    def __repr__(self) -> str:
        method = self.meta.get("method", "?")
        return (
            f"Predictor(method={method!r}, output={self.output!r}, classes={len(self.classes_)}, "
            f"temperature={self._temperature:.4g})"
        )


def _as_tensor(x: Any, pre: Preprocessing | None) -> Tensor:
    """Tensors, numpy arrays, PIL images (one or a list) or a pandas DataFrame -> a tensor."""
    if isinstance(x, Tensor):
        return x.detach().cpu()
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise TypeError("x: an object array; give numbers")
        return torch.from_numpy(np.ascontiguousarray(x))
    if _is_dataframe(x):
        return _frame_tensor(x, pre)
    if _is_pil(x):
        return _pil_tensor([x], pre)
    if isinstance(x, Iterable) and not isinstance(x, (str, bytes)):
        items = list(x)
        if items and all(_is_pil(i) for i in items):
            return _pil_tensor(items, pre)
        return torch.as_tensor(np.asarray(items))
    raise TypeError(
        f"x: expected a tensor, a numpy array, PIL images or a DataFrame, got {type(x).__name__}"
    )


def _is_dataframe(x: Any) -> bool:
    return type(x).__name__ == "DataFrame" and hasattr(x, "columns")


def _is_pil(x: Any) -> bool:
    return type(x).__module__.startswith("PIL.") and hasattr(x, "convert")


def _frame_tensor(frame: Any, pre: Preprocessing | None) -> Tensor:
    """The feature columns of a DataFrame by name (any order; extra columns ignored)."""
    names = None if pre is None else pre.feature_names
    if names is None:
        return torch.as_tensor(frame.to_numpy(dtype=np.float64))
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(f"x: missing feature column(s) {', '.join(map(str, missing))}")
    return torch.as_tensor(frame[list(names)].to_numpy(dtype=np.float64))


def _pil_tensor(images: Sequence[Any], pre: Preprocessing | None) -> Tensor:
    """PIL images converted to the bundle's channels and size, as ``uint8 (N, C, H, W)``."""
    if pre is None or pre.kind != "image":
        raise TypeError("x: PIL images given to a bundle that does not take images")
    return torch.stack([pil_to_uint8(img, pre) for img in images])
