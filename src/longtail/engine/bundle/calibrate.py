"""Calibration and thresholds chosen on validation data (never the test set).

- :func:`fit_temperature`: one scalar ``T`` minimising the negative log-likelihood of
  ``softmax(z / T)`` on the validation logits (Guo et al., "On Calibration of Modern Neural
  Networks", ICML 2017), by L-BFGS on ``log T`` in float64;
- :func:`label_thresholds`: one threshold per label maximising its F1 on validation
  (:func:`longtail.metrics.f1_thresholds`), labels with fewer than ``min_positives`` validation
  positives keeping 0.5; or one global threshold maximising the overall (micro) F1;
- :func:`reject_threshold`: the open-set score below which an input is "unknown": the
  ``(1 - keep)`` quantile of the known validation images' scores, so that a share ``keep`` of
  them is kept (default 0.95).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from longtail.metrics import expected_calibration_error, f1_thresholds, multilabel_prf

__all__ = ["fit_temperature", "label_thresholds", "reject_threshold"]


def fit_temperature(logits: Tensor, targets: Tensor, *, max_iter: int = 200) -> float:
    """The temperature ``T > 0`` minimising ``NLL(softmax(logits / T), targets)``.

    Args:
        logits: ``(N, C)`` validation logits; targets: ``(N,)`` class indices.

    Returns:
        ``T`` (1.0 when there is no validation example).
    """
    z = logits.detach().double()
    y = targets.detach().long()
    if z.shape[0] == 0:
        return 1.0
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return t if math.isfinite(t) and t > 0 else 1.0


def ece(logits: Tensor, targets: Tensor, temperature: float = 1.0, n_bins: int = 15) -> float:
    """Expected calibration error of ``softmax(logits / T)`` (NaN without examples)."""
    if logits.shape[0] == 0:
        return math.nan
    return float(expected_calibration_error(logits.double() / temperature, targets.long(), n_bins))


def label_thresholds(
    logits: Tensor, targets: Tensor, *, mode: str = "per-label", min_positives: int = 5
) -> Tensor:
    """Per-label (``mode="per-label"``) or one global (``"global"``) probability thresholds
    maximising F1 on the validation ``logits`` / ``targets`` (``(N, L)``, ``-1``: unknown).

    A label with fewer than ``min_positives`` validation positives keeps 0.5 (per-label). The
    global threshold is the best of 99 cuts ``0.01 .. 0.99`` for the overall F1 (OF1).
    """
    if mode == "per-label":
        return f1_thresholds(logits, targets, min_positives=min_positives).float()
    if mode != "global":
        raise ValueError(f"thresholds: expected 'per-label' or 'global', got {mode!r}")
    best, best_t = -1.0, 0.5
    for t in torch.linspace(0.01, 0.99, 99).tolist():
        of1 = float(multilabel_prf(logits, targets, threshold=t)["OF1"])
        if of1 > best + 1e-12:
            best, best_t = of1, t
    return torch.full((logits.shape[1],), best_t, dtype=torch.float32)


def reject_threshold(scores: Tensor, keep: float = 0.95) -> float:
    """The score threshold keeping a share ``keep`` of the known validation images ``scores``
    (an input is unknown when its score is below it)."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"--keep: expected a share in (0, 1], got {keep!r}")
    s = scores.detach().double().flatten()
    if s.numel() == 0:
        raise ValueError("reject threshold: no known validation image to choose it on")
    s = s.sort().values
    # the largest t with #(s >= t) >= keep * n: the value at index floor((1 - keep) * n)
    k = min(math.floor((1.0 - keep) * s.numel() + 1e-9), s.numel() - 1)
    return float(s[k])
