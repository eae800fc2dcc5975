"""Post-hoc corrections of a trained classifier: logit adjustment and tau-normalisation.

Menon et al., "Long-tail learning via logit adjustment", ICLR 2021 (post-hoc adjustment).
Kang et al., "Decoupling Representation and Classifier for Long-Tailed Recognition", ICLR 2020 (tau-norm).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .losses._common import (
    CountsLike,
    check_class_counts,
    check_logits,
    check_nonnegative,
    log_prior,
)

__all__ = ["posthoc_logit_adjust", "tau_normalize"]


def posthoc_logit_adjust(logits: Tensor, class_counts: CountsLike, *, tau: float = 1.0) -> Tensor:
    r"""Post-hoc logit adjustment: :math:`z_c - \tau \log \pi_c` with :math:`\pi_c = n_c / \sum_k n_k`.

    Predicting ``argmax`` of the result needs no retraining; ``tau = 1`` is Fisher-consistent for the
    balanced error. Returns a new tensor of ``logits``' dtype (the adjustment is computed in float64).

    Args:
        logits: ``(N, C)`` logits of a model trained with plain cross-entropy.
        class_counts: ``(C,)`` training counts, positive.
        tau: strength, ``>= 0`` (1).
    """
    tau = check_nonnegative("tau", tau)
    z = check_logits("logits", logits)
    counts = check_class_counts(class_counts, num_classes=z.shape[1])
    if tau == 0:
        return z.clone()
    return z - (tau * log_prior(counts)).to(device=z.device, dtype=z.dtype)


def tau_normalize(weight: Tensor, *, tau: float = 1.0) -> Tensor:
    r"""Tau-normalised classifier weights: row ``c`` divided by :math:`\|w_c\|_2^{\tau}`.

    Apply to the ``(C, D)`` weight of the final linear layer after training (Kang et al. 2020), and drop
    or keep its bias as you evaluated it (the paper removes it). ``tau = 0`` leaves the weights
    unchanged, ``tau = 1`` gives unit-norm rows. Rows of zero norm are left at zero.

    Example:
        >>> layer = torch.nn.Linear(8, 3)
        >>> w = tau_normalize(layer.weight.detach(), tau=1.0)
        >>> bool(torch.allclose(w.norm(dim=1), torch.ones(3)))
        True
    """
    tau = check_nonnegative("tau", tau)
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.ndim != 2:
        raise ValueError(f"weight must be a (C, D) matrix, got shape {tuple(weight.shape)}")
    norms = weight.norm(dim=1, keepdim=True)
    scale = torch.where(norms > 0, norms.pow(tau), torch.ones_like(norms))
    return weight / scale
