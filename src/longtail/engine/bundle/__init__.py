"""Model bundles: fit a method, calibrate on validation, predict, export (``longtail fit``).

- :mod:`.predictor`: :class:`Predictor`, a trained method as an ``nn.Module`` with
  ``predict`` / ``predict_proba`` / ``decision_scores`` on raw inputs;
- :mod:`.files`: the bundle folder (``model.safetensors`` + ``bundle.json``), :func:`load_bundle`;
- :mod:`.calibrate`: temperature, label thresholds, the open-set rejection threshold;
- :mod:`.fit`: :func:`fit_bundle`, training and choosing on validation;
- :mod:`.inputs`: raw inputs from image files and folders, tables and IDX files, streamed;
- :mod:`.predictions`: ``predictions.csv``;
- :mod:`.export`: TorchScript, ``torch.export`` and ONNX files.
"""

from __future__ import annotations

from longtail.engine.bundle.calibrate import fit_temperature, label_thresholds, reject_threshold
from longtail.engine.bundle.export import EXPORT_FORMATS, export_bundle
from longtail.engine.bundle.files import BUNDLE_FORMAT, BundleError, load_bundle, save_bundle
from longtail.engine.bundle.fit import DEFAULT_VALIDATION_FRACTION, fit_bundle
from longtail.engine.bundle.inputs import iter_inputs
from longtail.engine.bundle.predictions import write_predictions
from longtail.engine.bundle.predictor import UNKNOWN, Predictor

__all__ = [
    "BUNDLE_FORMAT",
    "DEFAULT_VALIDATION_FRACTION",
    "EXPORT_FORMATS",
    "UNKNOWN",
    "BundleError",
    "Predictor",
    "export_bundle",
    "fit_bundle",
    "fit_temperature",
    "iter_inputs",
    "label_thresholds",
    "load_bundle",
    "reject_threshold",
    "save_bundle",
    "write_predictions",
]
