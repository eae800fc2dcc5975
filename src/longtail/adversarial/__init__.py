"""Adversarial perturbations: PGD attacks and M2m major-to-minor translation.

- :func:`pgd` / :class:`PGD`: projected gradient attacks in the L-infinity and L2 norms, targeted or
  untargeted, batched, with random start and input-range clipping (Madry et al., ICLR 2018);
  helpers :func:`project`, :func:`random_in_ball`, :func:`l2_normalise`.
- :class:`M2mGenerator`: replaces minority slots of a mini-batch by majority samples translated to
  the minority class against a plainly trained classifier (Kim et al., CVPR 2020), returning an
  :class:`M2mOutput` with per-class generated and accepted counts.

The finding M2m rests on (Ilyas et al., NeurIPS 2019: perturbations towards a class carry real
features of it) is reproduced on Fashion-MNIST by ``benchmarks/ilyas_features.py``.
"""

from __future__ import annotations

from longtail.adversarial.m2m import M2mGenerator, M2mOutput, SeedWeighting
from longtail.adversarial.pgd import PGD, Norm, l2_normalise, pgd, project, random_in_ball

__all__ = [
    "PGD",
    "M2mGenerator",
    "M2mOutput",
    "Norm",
    "SeedWeighting",
    "l2_normalise",
    "pgd",
    "project",
    "random_in_ball",
]
