"""When a single-label run trained another method's function (the track's ``TaskKind.degenerate``).

Read from what the run recorded, never from the config alone:

- **M2m that accepted nothing**: no translated sample accepted in any epoch (``details["m2m"]``:
  the start epoch and the per-epoch accepted counts), or no epoch generating at all (the start
  epoch is past the last). f then trained with its own method (``m2m_f_method``), over-sampled
  class-balanced from M2m's start epoch when ``m2m_oversample``: with ``erm`` that is ``drs``
  when both switch at the same epoch, with ``ldam-drw`` (no over-sampling) it is ``ldam-drw``.
- **A deferred schedule that does not defer** (the first stage's ``details["schedule"]``): deferred
  re-weighting that never starts (its start epoch at or past the last: the method without DRW) or
  starts at the first epoch (re-weighted throughout: cross-entropy so is ``cb-softmax`` with the
  same beta); deferred re-sampling likewise (never: instance-balanced; from the first epoch:
  ``cb-resample``). The engine starts both at the last epoch at the latest, so a one-epoch run (or
  a start fraction of 0) is the case that happens.
- **A second stage of 0 epochs** (cRT, LWS, weight balancing; no history row of stage 2): LWS and
  weight balancing are then their first stage; cRT's re-initialised classifier was never trained
  (no method). The engine trains a second stage for at least one epoch; this reads the history.

The method it equals is the first of the run's methods, then of the task's presets and the config's
recipes, that trains the same thing: the same composition and hyper-parameters with the loss and
the sampler in canonical form (:func:`~longtail.engine.methods.canonical_loss`,
:func:`~longtail.engine.methods.canonical_sampler`: the power sampler at q 0 or 1/2 draws as the
class-balanced or square-root sampler) and each deferred schedule as the epoch it starts (a switch
at the first epoch or never is no switch).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from longtail.engine.classifier import drs_start_epoch
from longtail.engine.config import Config
from longtail.engine.kinds import Degenerate
from longtail.engine.methods import (
    Method,
    canonical_loss,
    canonical_sampler,
    drw_start_epoch,
    resolve_methods,
)
from longtail.tracks.single_label.methods import METHODS

__all__ = ["degenerate", "training_identity"]

#: Second stages that start from the first stage's weights (0 epochs: nothing trained on top).
_ON_THE_STAGE = ("crt", "lws", "wb")


def training_identity(
    composition: Mapping[str, Any],
    params: Mapping[str, Any],
    epochs: int,
    *,
    drw_start: int | None = None,
    drs_start: int | None = None,
) -> str | None:
    """What a composition trains over ``epochs`` epochs, canonical (equal strings: the same training).

    The loss in canonical form, deferred re-weighting and re-sampling as the epoch they start
    (``drw_start`` / ``drs_start`` when the run recorded it, else from the start fractions of
    ``params``): one that starts at the first epoch or never is no deferral. ``None`` for a
    hand-written loss (not comparable).
    """
    loss = str(composition.get("loss"))
    if loss.startswith("<"):
        return None
    loss, canon = canonical_loss(loss, params)
    comp = {**composition, "loss": loss}
    rest = dict(canon)
    if comp.get("drw"):
        fraction = rest.pop("drw_start_fraction", None)
        start = drw_start
        if start is None and fraction is not None:
            start = drw_start_epoch(fraction, epochs)
        if start is not None and start >= epochs:  # never re-weights
            comp["drw"] = False
            rest.pop("drw_beta", None)
        elif start == 0 and loss == "ce" and comp.get("mix") is None:
            # cross-entropy with the class-balanced weights from the start: the CB softmax loss
            comp.update(loss="cb-softmax", drw=False)
            rest["beta"] = rest.pop("drw_beta", None)
        elif start is not None:
            rest["drw_start_epoch"] = start
    comp["sampler"], rest = canonical_sampler(str(comp.get("sampler")), rest)
    if comp.get("sampler") == "drs":
        fraction = rest.pop("drs_start_fraction", None)
        start = drs_start
        if start is None and fraction is not None:
            start = drs_start_epoch(fraction, epochs)
        if start is not None and start >= epochs:
            comp["sampler"] = "instance"
        elif start == 0:
            comp["sampler"] = "class-balanced"
        elif start is not None:
            rest["drs_start_epoch"] = start
    return json.dumps({**comp, "params": rest}, sort_keys=True, default=str)


def _equal_method(identity: str | None, cfg: Config, exclude: str | None) -> str | None:
    """The first method (the run's, then the task's presets and recipes) that trains ``identity``."""
    if identity is None:
        return None
    table = resolve_methods(cfg.recipes, cfg.task)
    run = [] if isinstance(cfg.methods, str) else [m for m in cfg.methods if m in table]
    for name in [*run, *(m for m in table if m not in run)]:
        if name == exclude:
            continue
        method = table[name]
        try:
            params = method.resolve_params(cfg.method_params.get(name, {}))
        except ValueError:
            continue
        if training_identity(method.composition(), params, cfg.train.epochs) == identity:
            return name
    return None


def _stage2_epochs(record: Mapping[str, Any]) -> int:
    return sum(1 for row in record.get("history") or [] if row.get("stage") == 2.0)


def degenerate(
    method: Method,
    params: Mapping[str, Any],
    cfg: Config,
    record: Mapping[str, Any],
    stage_record: Mapping[str, Any],
) -> Degenerate | None:
    """Whether this (method, seed) trained another method's function (see the module docstring)."""
    details = record.get("details") or {}
    schedule = (stage_record.get("details") or {}).get("schedule") or {}
    comp, p = method.composition(), dict(params)
    whys: list[str] = []
    measured: dict[str, Any] = {}
    drw_start = drs_start = None
    epochs = int(schedule.get("epochs", cfg.train.epochs))
    if method.drw and "drw_start_epoch" in schedule:
        drw_start = int(schedule["drw_start_epoch"])
        if drw_start >= epochs or drw_start == 0:
            measured.update(drw_start_epoch=drw_start, epochs=epochs)
            whys.append(
                f"its deferred re-weighting would start at epoch {drw_start + 1} of {epochs}: "
                "it never re-weights"
                if drw_start >= epochs
                else f"its deferred re-weighting starts at the first epoch (of {epochs}): "
                "it re-weights throughout, not deferred"
            )
    if method.sampler == "drs" and "drs_start_epoch" in schedule:
        drs_start = int(schedule["drs_start_epoch"])
        if drs_start >= epochs or drs_start == 0:
            measured.update(drs_start_epoch=drs_start, epochs=epochs)
            whys.append(
                f"its deferred re-sampling would start at epoch {drs_start + 1} of {epochs}: "
                "it never re-samples"
                if drs_start >= epochs
                else f"its deferred re-sampling starts at the first epoch (of {epochs}): "
                "class-balanced throughout, not deferred"
            )
    info = details.get("m2m") if method.second_stage == "m2m" else None
    if info is not None:
        per_epoch = info.get("per_epoch") or {}
        accepted = sum(sum(row["accepted"]) for row in per_epoch.values())
        if accepted == 0:
            start, total = int(info["start_epoch"]), _stage2_epochs(record)
            measured.update(
                m2m_start_epoch=start,
                generating_epochs=len(per_epoch),
                generated=sum(sum(row["generated"]) for row in per_epoch.values()),
                accepted=0,
            )
            f = METHODS[str(p["m2m_f_method"])]
            if per_epoch:
                span = f"epoch {total}" if start + 1 >= total else f"epochs {start + 1}-{total}"
                whys.append(f"M2m accepted none of the samples it translated ({span} of {total})")
            else:
                whys.append(f"M2m never translated (its generation starts after epoch {total})")
            comp, p = f.composition(), f.resolve_params(None)
            f_schedule = details.get("schedule") or {}
            drw_start = f_schedule.get("drw_start_epoch")
            if bool(params["m2m_oversample"]) and start < total:
                if comp["sampler"] != "instance":
                    whys.append(
                        f"f trained as `{f.name}` with class-balanced sampling from epoch "
                        f"{start + 1}, no method of its own"
                    )
                    return Degenerate(None, "; ".join(whys), measured)
                comp["sampler"], drs_start = "drs", start
    if method.second_stage in _ON_THE_STAGE and _stage2_epochs(record) == 0:
        measured["second_stage_epochs"] = 0
        if method.second_stage == "crt":
            whys.append(
                "its second stage trained 0 epochs: the re-initialised classifier was never trained"
            )
            return Degenerate(None, "; ".join(whys), measured)
        whys.append("its second stage trained 0 epochs: the model is its first stage's")
        comp = {**comp, "second_stage": None}
        p = {k: v for k, v in p.items() if method.params[k].stage == 1}
    if not whys:
        return None
    identity = training_identity(comp, p, epochs, drw_start=drw_start, drs_start=drs_start)
    equals = _equal_method(identity, cfg, exclude=record.get("method"))
    return Degenerate(equals, "; ".join(whys), measured)
