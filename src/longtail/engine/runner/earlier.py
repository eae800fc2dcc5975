"""Additive resume: the finished results of earlier commands in a run folder.

``--resume`` may name other methods or seeds than the commands that wrote the folder before.
``results.json`` and the report then cover every finished (method, seed) of the folder whose
``result.json`` matches the current configuration's fingerprint (the one
:func:`~longtail.engine.runner.stages.method_fingerprint` or, for the scikit-learn row,
:func:`~longtail.engine.runner.reference.sklearn_fingerprint` gives): those this command trained or
reused, and those earlier commands trained that this one did not ask for (:func:`earlier_results`).
A result written with another configuration (data, model, training recipe, hyper-parameters), or of
a method this configuration does not know, is left out and never deleted.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longtail.engine.checkpoint import CheckpointError, read_json
from longtail.engine.config import Config
from longtail.engine.kinds import TASK_KINDS, reference_method
from longtail.engine.methods import Method, resolve_methods
from longtail.engine.runner.reference import SKLEARN, sklearn_fingerprint
from longtail.engine.runner.stages import BALANCED, method_fingerprint, stage_of

__all__ = ["Earlier", "earlier_results", "pairs_phrase"]

#: Folders of a run folder that are not a method's (``<method>/seed_<s>/``).
_NOT_METHODS = ("stages", "plots")


@dataclass
class Earlier:
    """What :func:`earlier_results` found.

    Attributes:
        records: each method's matching ``result.json`` records (seeds ascending), by its label.
        methods: the :class:`Method` of each label in ``records`` (none for the scikit-learn row).
        left_out: ``(label, seed, why)`` of each finished result that does not match.
    """

    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    methods: dict[str, Method] = field(default_factory=dict)
    left_out: list[tuple[str, int, str]] = field(default_factory=list)

    def seeds(self) -> dict[str, list[int]]:
        """The seeds of each method in :attr:`records` (``results.json``'s ``earlier_runs``)."""
        return {label: [int(r["seed"]) for r in recs] for label, recs in self.records.items()}


def _method_of(cfg: Config, table: Mapping[str, Method], label: str) -> tuple[Method, str] | None:
    """The method (and the data variant) a result folder ``label`` holds under ``cfg``."""
    if label == BALANCED:
        if TASK_KINDS[cfg.task].reference is None:
            return None
        return reference_method(cfg.task), "balanced"
    method = table.get(label)
    if method is None or method.task != cfg.task:
        return None
    return method, "long-tailed"


def _expected(cfg: Config, table: Mapping[str, Method], label: str, seed: int) -> str | None:
    """The fingerprint a result of (``label``, ``seed``) has under ``cfg`` (``None``: unknown)."""
    if label == SKLEARN:
        return sklearn_fingerprint(cfg, seed) if TASK_KINDS[cfg.task].sklearn_reference else None
    found = _method_of(cfg, table, label)
    if found is None:
        return None
    method, variant = found
    params = method.resolve_params(cfg.method_params.get(label, {}))
    stage_fp = stage_of(cfg, method, params, variant).fingerprint(cfg, seed)
    return method_fingerprint(cfg, label, method, params, stage_fp)


def _result_files(out: Path) -> Iterable[tuple[str, int, Path]]:
    """``(label, seed, file)`` of every ``<method>/seed_<s>/result.json`` in ``out``."""
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and p.name not in _NOT_METHODS):
        seeds = []
        for sub in folder.glob("seed_*"):
            number = sub.name.removeprefix("seed_")
            if number.lstrip("-").isdigit() and (sub / "result.json").is_file():
                seeds.append(int(number))
        for seed in sorted(seeds):
            yield folder.name, seed, folder / f"seed_{seed}" / "result.json"


def earlier_results(out: Path, cfg: Config, asked: Collection[tuple[str, int]]) -> Earlier:
    """The finished results in ``out`` that this command did not ask for (``asked``: its
    ``(label, seed)`` pairs), split into those that match ``cfg`` and those left out."""
    found = Earlier()
    table = resolve_methods(cfg.recipes, cfg.task)
    for label, seed, path in _result_files(out):
        if (label, seed) in asked:
            continue
        try:
            record = read_json(path)
        except CheckpointError:
            found.left_out.append((label, seed, "its result.json cannot be read"))
            continue
        expected = _expected(cfg, table, label, seed)
        if expected is None:
            found.left_out.append((label, seed, "not a method of this configuration"))
        elif not isinstance(record, dict) or record.get("fingerprint") != expected:
            why = "written with another configuration (data, model, recipe or hyper-parameters)"
            found.left_out.append((label, seed, why))
        else:
            found.records.setdefault(label, []).append(record)
            if label != SKLEARN:
                method = _method_of(cfg, table, label)
                assert method is not None
                found.methods[label] = method[0]
    return found


def pairs_phrase(pairs: Iterable[tuple[str, int]]) -> str:
    """``focal (seed 0), erm (seeds 1, 2)``: (method, seed) pairs grouped by method, in order."""
    seeds: dict[str, list[int]] = {}
    for label, seed in pairs:
        seeds.setdefault(label, []).append(seed)
    return ", ".join(
        f"{label} (seed{'s' if len(s) > 1 else ''} {', '.join(str(x) for x in s)})"
        for label, s in seeds.items()
    )
