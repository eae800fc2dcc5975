"""``longtail export``: a bundle's network and prediction rule as one file for serving.

The exported module maps *network inputs* (preprocessed as the bundle's ``preprocessing`` says)
to calibrated probabilities (embeddings for metric learning): the post-hoc step, the logit scale,
SLA's inference and the temperature are baked in; thresholds stay in ``bundle.json``.

Formats: ``torchscript`` (``torch.jit.trace``), ``exported-program`` (``torch.export``, a
``.pt2`` file) and ``onnx`` (``torch.onnx.export``, checked with onnxruntime; the ``export``
extra). :func:`export_bundle` checks the file against the eager predictor on the given inputs:
probabilities equal to ``atol`` and the same predicted class.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from longtail.engine.bundle.predictor import Predictor

__all__ = ["EXPORT_FORMATS", "export_bundle"]

EXPORT_FORMATS = ("torchscript", "onnx", "exported-program")


def _run_onnx(path: Path, x: Tensor) -> Tensor:
    import onnxruntime as ort  # optional: the export extra

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = session.run(None, {name: x.numpy()})[0]
    return torch.from_numpy(np.asarray(out))


def export_bundle(
    predictor: Predictor,
    fmt: str,
    out: str | os.PathLike[str],
    example: Tensor,
    *,
    atol: float = 1e-5,
) -> dict[str, Any]:
    """Write ``predictor`` (network + rule) as ``fmt`` to ``out`` and check it on ``example``
    (network inputs, a batch). Returns the check: the largest probability difference and the
    share of equal predicted classes.

    Raises:
        ValueError: an unknown format, or a file that does not agree with the eager predictor.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"--format: expected one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    path = Path(out)
    module = predictor.cpu().eval()
    x = example.float().cpu()
    with torch.no_grad():
        expected = module(x)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    quiet = contextlib.redirect_stdout(io.StringIO())
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)  # "torchvision is not installed" is not the user's business
    try:
        with warnings.catch_warnings(), quiet:
            warnings.simplefilter("ignore")  # tracer and exporter chatter
            return _export_checked(predictor, module, fmt, path, tmp, x, expected, atol)
    finally:
        onnx_log.setLevel(level)


def _export_checked(
    predictor: Predictor,
    module: torch.nn.Module,
    fmt: str,
    path: Path,
    tmp: Path,
    x: Tensor,
    expected: Tensor,
    atol: float,
) -> dict[str, Any]:
    try:
        if fmt == "torchscript":
            with torch.no_grad():
                traced = torch.jit.trace(module, x[:2] if len(x) > 1 else x, check_trace=False)
            traced.save(str(tmp))
            got = torch.jit.load(str(tmp))(x)
        elif fmt == "exported-program":
            batch = torch.export.Dim("batch", min=1)
            ep = torch.export.export(
                module, (x[:2] if len(x) > 1 else x,), dynamic_shapes=({0: batch},)
            )
            torch.export.save(ep, str(tmp))
            got = torch.export.load(str(tmp)).module()(x)
        else:
            torch.onnx.export(
                module,
                (x[:2] if len(x) > 1 else x,),
                str(tmp),
                input_names=["x"],
                output_names=["probabilities"],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                dynamo=True,
                external_data=False,
            )
            got = _run_onnx(tmp, x)
        diff = float((got.float() - expected.float()).abs().max()) if len(x) else 0.0
        same = 1.0
        if predictor.output in ("class", "class-or-unknown") and len(x):
            same = float((got.argmax(1) == expected.argmax(1)).double().mean())
        if diff > atol or same < 1.0:
            raise ValueError(
                f"export: the {fmt} file disagrees with the predictor (largest probability "
                f"difference {diff:.3g}, same class for {same:.1%} of the inputs)"
            )
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {"format": fmt, "max_abs_diff": diff, "same_class": same, "checked_inputs": len(x)}
