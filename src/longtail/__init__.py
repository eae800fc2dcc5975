"""longtail: training classifiers on long-tailed, multi-label and open-set data with PyTorch.

Subpackages:

- :mod:`longtail.losses`: losses and class weighting (focal, ASL, logit adjustment, LDAM, ...).
- :mod:`longtail.adjust`: post-hoc logit adjustment and tau-normalisation.
- :mod:`longtail.heads`: classifier heads (cosine / normalised linear).
- :mod:`longtail.data`: loaders, long-tailed subsets and samplers.
- :mod:`longtail.metrics`: balanced accuracy, many/medium/few-shot, calibration, mAP, open set.
- :mod:`longtail.adversarial`: PGD attacks (L-inf, L2) and the M2m major-to-minor generator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "load"]

if TYPE_CHECKING:
    from longtail.engine.bundle import Predictor


def load(bundle: Any, *, device: Any = "cpu") -> Predictor:
    """The :class:`~longtail.engine.bundle.Predictor` of a model bundle folder (``longtail fit
    --out``): an ``nn.Module`` with ``predict``, ``predict_proba`` and ``decision_scores``.

    >>> import longtail
    >>> callable(longtail.load)
    True
    """
    # deferred: `import longtail.losses` must not import the engine (the library's contract)
    from longtail.engine.bundle import load_bundle

    return load_bundle(bundle, device=device)
