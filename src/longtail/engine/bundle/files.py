"""A model bundle on disk: ``model.safetensors`` (the weights) and ``bundle.json`` (the rest).

``bundle.json`` says everything needed to predict, in plain JSON (nothing is unpickled):

- ``format`` (:data:`BUNDLE_FORMAT`), ``library_version``, ``task``, ``method`` (label),
  ``params`` (its resolved hyper-parameters), ``config`` (the configuration the final network
  was built with) and ``config_fingerprint``;
- ``input_shape``, ``class_names``, ``class_counts`` (training counts);
- ``preprocessing`` (:class:`~longtail.engine.datasets.Preprocessing`), ``rule``
  (:class:`~longtail.engine.prediction.PredictionRule`: post-hoc tau, logit scale, SLA
  inference, temperature, thresholds) and ``calibration`` (what was measured on validation).

:func:`load_bundle` rebuilds the network from ``config`` through the task kind's own task
(:meth:`Task.inference_model <longtail.engine.tasks.Task.inference_model>`), loads the weights
with safetensors (strict: every tensor, of its shape) and returns a
:class:`~longtail.engine.bundle.Predictor`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from longtail import __version__
from longtail.engine.bundle.predictor import Predictor
from longtail.engine.checkpoint import atomic_write_bytes, atomic_write_json
from longtail.engine.config import ConfigError, config_from_dict, config_to_dict
from longtail.engine.config.schema import Config
from longtail.engine.datasets import DataBundle, Preprocessing
from longtail.engine.kinds import TASK_KINDS
from longtail.engine.methods import Method, resolve_methods
from longtail.engine.prediction import PredictionRule
from longtail.engine.tasks import Task

__all__ = [
    "BUNDLE_FORMAT",
    "BundleError",
    "load_bundle",
    "network_task",
    "save_bundle",
    "shape_bundle",
    "split_inputs",
]

#: The bundle layout this library writes and reads.
BUNDLE_FORMAT = 1
WEIGHTS = "model.safetensors"
RECORD = "bundle.json"
#: bundle.json larger than this is refused (a bundle's record is a few hundred kB at most).
MAX_RECORD_BYTES = 64 * 1024 * 1024


class BundleError(ValueError):
    """A bundle that cannot be read (the message names the folder or file and the field)."""


def shape_bundle(
    input_shape: tuple[int, ...],
    class_names: list[str],
    class_counts: list[int],
    labels: bool,
) -> DataBundle:
    """A data bundle without examples: the shapes, names and counts a task's network needs."""
    x = torch.empty((0, *input_shape))
    y = torch.empty((0, len(class_names))) if labels else torch.empty(0, dtype=torch.long)
    return DataBundle(
        name="bundle",
        train_x=x,
        train_y=y,
        test_x=x,
        test_y=y,
        class_names=list(class_names),
        class_counts=list(class_counts),
        group_counts=list(class_counts),
        imbalance_factor=None,
    )


def network_task(cfg: Config, method: Method, data: DataBundle, params: dict[str, Any]) -> Task:
    """The task whose trained ``"model"`` is ``method``'s final network: its second stage or
    post-hoc step's task (with an empty first-stage state), else its first stage's."""
    kind = TASK_KINDS[cfg.task]
    if method.needs_stage:
        cfg2 = kind.finish_config(cfg, method, params)
        return kind.finish_task(method, data, cfg2, {}, params)
    stage_cfg = cfg if kind.stage_config is None else kind.stage_config(cfg, method, params)
    return kind.stage_task(method, data, stage_cfg, params)


def _fingerprint(cfg: Config) -> str:
    blob = json.dumps(config_to_dict(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_bundle(
    out: str | os.PathLike[str],
    *,
    network: nn.Module,
    rule: PredictionRule,
    preprocessing: Preprocessing | None,
    cfg: Config,
    method_label: str,
    params: Mapping[str, Any],
    data: DataBundle,
    calibration: Mapping[str, Any] | None = None,
) -> Path:
    """Write a bundle folder (weights first, then ``bundle.json`` last: a folder with a record is
    complete). Returns the folder."""
    from safetensors.torch import save  # optional: the cli extra (safetensors)

    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    atomic_write_bytes(path / WEIGHTS, save(state, metadata={"format": str(BUNDLE_FORMAT)}))
    record = {
        "format": BUNDLE_FORMAT,
        "library_version": __version__,
        "task": cfg.task,
        "method": method_label,
        "params": dict(params),
        "config": config_to_dict(cfg),
        "config_fingerprint": _fingerprint(cfg),
        "input_shape": list(data.input_shape),
        "class_names": list(data.class_names),
        "class_counts": [int(c) for c in data.class_counts],
        "labels": data.train_y.ndim == 2,
        "preprocessing": None if preprocessing is None else preprocessing.to_dict(),
        "rule": rule.to_dict(),
        "calibration": dict(calibration or {}),
    }
    atomic_write_json(path / RECORD, record)
    return path


def read_record(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``bundle.json`` of a bundle folder, checked for the format (:class:`BundleError`)."""
    path = Path(folder)
    if not path.is_dir():
        raise BundleError(
            f"BUNDLE: {path} is not a folder (a bundle is the folder `longtail fit` wrote)"
        )
    rec = path / RECORD
    if not rec.is_file() or not (path / WEIGHTS).is_file():
        raise BundleError(f"BUNDLE: {path} has no {RECORD} and {WEIGHTS} (not a model bundle)")
    if rec.stat().st_size > MAX_RECORD_BYTES:
        raise BundleError(f"BUNDLE: {rec} is larger than {MAX_RECORD_BYTES} bytes")
    try:
        raw = json.loads(rec.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"BUNDLE: {rec} is not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise BundleError(f"BUNDLE: {rec} is not a JSON object")
    fmt = raw.get("format")
    if fmt != BUNDLE_FORMAT:
        raise BundleError(
            f"BUNDLE: {rec} has format {fmt!r} (library {raw.get('library_version', '?')}); this "
            f"longtail {__version__} reads format {BUNDLE_FORMAT}: refit it with this version"
        )
    return raw


def load_bundle(folder: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> Predictor:
    """The :class:`Predictor` of a bundle folder (see the module docstring).

    Raises:
        BundleError: not a bundle, another format, a bad field, weights that do not fit the
            network (the message names the folder and the field or tensor).
    """
    from safetensors import SafetensorError  # optional: the cli extra (safetensors)
    from safetensors.torch import load_file  # optional: the cli extra

    path = Path(folder)
    raw = read_record(path)
    try:
        cfg = config_from_dict(raw["config"])
        table = resolve_methods(cfg.recipes, cfg.task)
        label = str(raw["method"])
        if label not in table:
            raise BundleError(f"BUNDLE: {path}: method {label!r} is not known to this version")
        method = table[label]
        params = method.resolve_params(raw.get("params") or {})
        data = shape_bundle(
            tuple(int(v) for v in raw["input_shape"]),
            [str(n) for n in raw["class_names"]],
            [int(c) for c in raw["class_counts"]],
            bool(raw.get("labels", False)),
        )
        rule = PredictionRule.from_dict(raw["rule"])
        pre = (
            None
            if raw.get("preprocessing") is None
            else Preprocessing.from_dict(raw["preprocessing"])
        )
        network = network_task(cfg, method, data, params).inference_model()
    except BundleError:
        raise
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise BundleError(f"BUNDLE: {path / RECORD}: {exc}") from None
    try:
        state = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(f"BUNDLE: {path / WEIGHTS}: cannot read the weights ({exc})") from None
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise BundleError(
            f"BUNDLE: {path / WEIGHTS}: the weights do not fit the network ({first})"
        ) from None
    predictor = Predictor(network, rule, pre, data.class_names, meta=raw)
    return predictor.to(device)


def split_inputs(
    predictor: Predictor, *, data_dir: str | None = None, limit: int = 512
) -> torch.Tensor:
    """Network inputs of (at most ``limit``) test examples of the bundle's data (its config,
    ``data_dir`` replacing ``data.data_dir``), to check an exported file on. The test split is
    read, not the validation split; nothing is chosen on it.

    Raises:
        ValueError: the data cannot be read (the message names the key or file).
    """
    raw = predictor.meta["config"]
    cfg = config_from_dict(raw)
    data_cfg = dataclasses.replace(cfg.data, validation_fraction=None)
    if data_dir is not None:
        data_cfg = dataclasses.replace(data_cfg, data_dir=data_dir)
    cfg = dataclasses.replace(cfg, data=data_cfg)
    seed = int(predictor.meta.get("calibration", {}).get("seed", 0))
    data = TASK_KINDS[cfg.task].build_data(cfg, "long-tailed", seed)
    if "test" in data.eval_datasets:
        ds = data.eval_datasets["test"]
        n = min(limit, len(ds))  # type: ignore[arg-type]
        return torch.stack([ds[i][0] for i in range(n)])
    return data.test_x[:limit]
