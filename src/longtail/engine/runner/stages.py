"""Stages, fingerprints and where their files go in a run folder.

A method is a first training stage (loss, sampler, head, mixing, first-stage hyper-parameters) plus
an optional second stage and post-hoc step. Methods whose first stages are equal share one: it is
trained once per (stage, seed), its identity is in every dependent run's fingerprint, and it resumes
like any run. ``la-posthoc``, ``tau-norm``, ``crt`` and ``lws`` finish the stage of ``erm``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longtail.engine.config import Config, config_to_dict
from longtail.engine.methods import Method

__all__ = [
    "BALANCED",
    "Stage",
    "method_fingerprint",
    "run_dir_for",
    "stage_dir_for",
    "stage_of",
]

#: Name of the balanced-reference entry in ``results.json``.
BALANCED = "balanced"


def run_dir_for(out_dir: Path, method: str, seed: int) -> Path:
    """Where a method's ``result.json`` (and its second stage's checkpoint) go."""
    return out_dir / method / f"seed_{seed}"


def stage_dir_for(out_dir: Path, stage: Stage, seed: int) -> Path:
    """Where a first stage's ``checkpoint.pt``, ``log.csv``, ``model.pt`` and ``stage.json`` go."""
    return out_dir / "stages" / stage.key / f"seed_{seed}"


def _stage_blob(cfg: Config) -> dict[str, Any]:
    """The parts of the configuration every stage and run depends on (not the method lists)."""
    d = config_to_dict(cfg)
    for key in ("methods", "seeds", "name", "method_params", "recipes", "tune"):
        d.pop(key, None)
    d["train"].pop("eval_every", None)
    d["train"].pop("num_threads", None)
    d["data"].pop("balanced_reference", None)  # which data a stage trains on is its variant
    d["data"].pop("sklearn_reference", None)  # a row of its own, trained on no stage
    d["data"].pop("num_workers", None)  # loader processes do not change the batches
    return d


@dataclass
class Stage:
    """A first training stage, shared by every method whose :meth:`Method.stage_identity` is equal.

    Attributes:
        key: folder name under ``RUN_DIR/stages/`` (readable prefix and a content hash).
        identity: what determines it (loss, sampler, head, mixing, first-stage parameters, data).
        method: a method to train it with (its post-hoc step and second stage are not applied).
        params: that method's resolved parameters.
        variant: ``"long-tailed"`` or ``"balanced"`` (the reference's data).
    """

    key: str
    identity: dict[str, Any]
    method: Method
    params: dict[str, Any]
    variant: str

    def fingerprint(self, cfg: Config, seed: int) -> str:
        blob = json.dumps(
            {"config": _stage_blob(cfg), "stage": self.identity, "seed": int(seed)},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def stage_of(cfg: Config, method: Method, params: Mapping[str, Any], variant: str) -> Stage:
    """The first stage ``method`` trains (or reuses) on the data ``variant``."""
    ident = method.stage_identity(params)
    ident["data"] = variant
    blob = json.dumps({"config": _stage_blob(cfg), "stage": ident}, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:8]
    name = str(ident["loss"]).strip("<>").replace(" ", "-")
    parts = [name, method.sampler]
    if method.drw:
        parts.append("drw")
    if method.mix:
        parts.append(method.mix)
    if variant != "long-tailed":
        parts.append(variant)
    stage_method = dataclasses.replace(method, posthoc=None, second_stage=None)
    return Stage(f"{'-'.join(parts)}-{digest}", ident, stage_method, dict(params), variant)


def method_fingerprint(
    cfg: Config, label: str, method: Method, params: Mapping[str, Any], stage_fp: str
) -> str:
    """Identity of a method's result: its stage's fingerprint, composition and every parameter."""
    blob = json.dumps(
        {
            "stage": stage_fp,
            "label": label,
            "composition": method.composition(),
            "params": dict(sorted(params.items())),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
