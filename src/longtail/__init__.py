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

__version__ = "0.1.0"

__all__ = ["__version__"]
