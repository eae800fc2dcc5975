"""``longtail fit``: train one method, choose its calibration on validation, write a model bundle.

:func:`fit_bundle`:

1. trains ``method`` on the training data minus a validation split (``data.validation_fraction``;
   0.2 when the config has none), in a resumable run folder (``run_dir``), as ``longtail bench``
   would (the same stages, fingerprints and files);
2. rebuilds the method's final network and prediction rule from that run and computes the method's
   logits on the validation split (the test set is not read);
3. chooses on validation: the temperature (single-label and open set; ECE before and after), the
   per-label (or global) thresholds (multi-label; CF1 / OF1 at 0.5 and at the thresholds), the
   open-set rejection threshold keeping a share ``keep`` of the known validation images;
4. with ``refit``, trains again on all the training data (same settings, another run folder)
   and bundles that network with the settings chosen in 3;
5. writes the bundle (:func:`~longtail.engine.bundle.files.save_bundle`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from longtail.engine.batches import eval_batches
from longtail.engine.bundle.calibrate import (
    ece,
    fit_temperature,
    label_thresholds,
    reject_threshold,
)
from longtail.engine.bundle.files import network_task, save_bundle
from longtail.engine.checkpoint import load_checkpoint
from longtail.engine.config import Config, ConfigError, config_from_dict, config_to_dict
from longtail.engine.datasets import DataBundle
from longtail.engine.methods import resolve_methods
from longtail.engine.prediction import PredictionRule, rule_logits, rule_score
from longtail.engine.runner.runs import Runs
from longtail.engine.runner.stages import run_dir_for
from longtail.metrics import multilabel_prf

__all__ = ["DEFAULT_VALIDATION_FRACTION", "fit_bundle"]

#: The validation share ``longtail fit`` holds out when the config sets none.
DEFAULT_VALIDATION_FRACTION = 0.2


def _with_validation(cfg: Config, fraction: float | None) -> Config:
    """``cfg`` training one method: the validation split set, no reference rows."""
    data = dataclasses.replace(
        cfg.data, validation_fraction=fraction, balanced_reference=False, sklearn_reference=False
    )
    return dataclasses.replace(cfg, data=data)


def _train(
    cfg: Config, label: str, seed: int, run_dir: Path
) -> tuple[DataBundle, nn.Module, PredictionRule]:
    """Train (or resume) ``label`` in ``run_dir``; its data, final network and rule."""
    table = resolve_methods(cfg.recipes, cfg.task)
    method = table[label]
    runs = Runs(cfg, run_dir, resume=True, tick=lambda *a, **k: None)
    runs.method(label, method, "long-tailed", seed)
    data = runs.data("long-tailed", seed)
    params = method.resolve_params(cfg.method_params.get(label, {}))
    task = network_task(cfg, method, data, params)
    network = task.inference_model()
    state = load_checkpoint(run_dir_for(run_dir, label, seed) / "model.pt")
    network.load_state_dict(state)
    return data, network.eval(), task.prediction_rule()


@torch.no_grad()
def _split_logits(
    data: DataBundle, network: nn.Module, rule: PredictionRule, split: str
) -> tuple[Tensor, Tensor]:
    batches = eval_batches(data, 0, 1, 512, torch.device("cpu"))
    zs, ys = [], []
    for b in batches.get(split, iter(())):
        zs.append(rule_logits(rule, network, b.x))
        ys.append(b.y)
    if not zs:
        return torch.zeros(0, data.num_classes), torch.zeros(0, dtype=torch.long)
    return torch.cat(zs), torch.cat(ys)


def _r(v: float) -> float | None:
    return None if not math.isfinite(v) else round(float(v), 6)


def _calibrate(
    data: DataBundle,
    network: nn.Module,
    rule: PredictionRule,
    *,
    thresholds: str,
    keep: float,
    min_positives: int,
) -> tuple[PredictionRule, dict[str, Any]]:
    """The rule with the settings chosen on the validation split, and what was measured."""
    if rule.output == "embedding" or data.evaluated_on != "validation":
        return rule, {"validation_examples": 0}
    z, y = _split_logits(data, network, rule, "test")
    info: dict[str, Any] = {"validation_examples": int(z.shape[0])}
    if rule.output in ("class", "class-or-unknown"):
        t = fit_temperature(z, y)
        info.update(temperature=_r(t), ece_before=_r(ece(z, y)), ece_after=_r(ece(z, y, t)))
        rule = rule.with_calibration(temperature=t)
        if rule.output == "class-or-unknown":
            r = reject_threshold(rule_score(rule, z), keep)
            info.update(reject_threshold=r, keep=keep)
            zu, _ = _split_logits(data, network, rule, "unknown")
            if zu.shape[0]:
                info["unknown_rejected"] = _r(float((rule_score(rule, zu) < r).double().mean()))
            rule = rule.with_calibration(reject_threshold=r)
    elif rule.output == "labels":
        th = label_thresholds(z, y, mode=thresholds, min_positives=min_positives)
        at_half = multilabel_prf(z, y.long())
        tuned = multilabel_prf(z, y.long(), threshold=th.double())
        info.update(
            thresholds_mode=thresholds,
            min_positives=min_positives,
            CF1_at_0_5=_r(float(at_half["CF1"])),
            OF1_at_0_5=_r(float(at_half["OF1"])),
            CF1_tuned=_r(float(tuned["CF1"])),
            OF1_tuned=_r(float(tuned["OF1"])),
            note="the tuned F1 is measured on the split the thresholds were chosen on (optimistic)",
        )
        rule = rule.with_calibration(thresholds=tuple(float(v) for v in th.tolist()))
    return rule, info


def fit_bundle(
    cfg: Config,
    method: str,
    out: str | Path,
    *,
    seed: int = 0,
    run_dir: str | Path | None = None,
    validation_fraction: float | None = None,
    refit: bool = False,
    thresholds: str = "per-label",
    keep: float = 0.95,
    min_positives: int = 5,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``method`` and write its model bundle to ``out`` (see the module docstring).

    Returns:
        the bundle's ``calibration`` record (what was chosen and measured on validation).

    Raises:
        ValueError: an unknown method (naming the known ones), a bad fraction or share.
    """
    table = resolve_methods(cfg.recipes, cfg.task)
    if method not in table:
        raise ValueError(
            f"--method: {method!r} is not a {cfg.task} method ({', '.join(sorted(table))})"
        )
    fraction = validation_fraction or cfg.data.validation_fraction or DEFAULT_VALIDATION_FRACTION
    out = Path(out)
    runs_at = Path(run_dir) if run_dir is not None else out.with_name(out.name + "-run")
    say = echo or (lambda _m: None)
    cfg_val = _with_validation(cfg, fraction)
    try:  # the config's own checks (a task may not allow a validation split)
        cfg_val = config_from_dict(config_to_dict(cfg_val))
    except ConfigError as exc:
        if validation_fraction is not None or "data.validation_fraction" not in str(exc):
            raise
        say(f"note: no validation split ({exc}); nothing is calibrated")
        cfg_val = _with_validation(cfg, None)
    held = cfg_val.data.validation_fraction
    say(
        f"training {method} (seed {seed})"
        + (f" with {held:g} of the training data held out" if held else "")
        + f": {runs_at / 'validation'}"
    )
    data, network, rule = _train(cfg_val, method, seed, runs_at / "validation")
    rule, info = _calibrate(
        data, network, rule, thresholds=thresholds, keep=keep, min_positives=min_positives
    )
    info["validation_fraction"] = cfg_val.data.validation_fraction
    info["refit"] = refit
    info["seed"] = seed
    bundle_cfg = cfg_val
    if refit:
        cfg_all = _with_validation(cfg, None)
        say(f"refitting {method} on all the training data: {runs_at / 'all'}")
        data_all, network, rule_all = _train(cfg_all, method, seed, runs_at / "all")
        rule = dataclasses.replace(
            rule_all,
            temperature=rule.temperature,
            thresholds=rule.thresholds,
            reject_threshold=rule.reject_threshold,
        )
        data, bundle_cfg = data_all, cfg_all
    save_bundle(
        out,
        network=network,
        rule=rule,
        preprocessing=data.preprocessing,
        cfg=bundle_cfg,
        method_label=method,
        params=resolve_methods(cfg.recipes, cfg.task)[method].resolve_params(
            cfg.method_params.get(method, {})
        ),
        data=data,
        calibration=info,
    )
    return info
