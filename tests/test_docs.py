"""The Python examples in the documentation run (each file's blocks in order, one namespace)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "docs/losses.md", "docs/architecture.md"]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


@pytest.fixture(autouse=True)
def _restore_registries() -> object:
    """docs/architecture.md registers example methods and components: undo it for the other tests."""
    from longtail.engine.datasets import DATA_FORMATS
    from longtail.engine.kinds import TASK_KINDS
    from longtail.tracks.single_label import METHODS
    from longtail.tracks.single_label.losses import LOSS_COMPONENTS

    registries = (METHODS, LOSS_COMPONENTS, TASK_KINDS, DATA_FORMATS)
    saved = [dict(r) for r in registries]
    yield
    for registry, before in zip(registries, saved, strict=True):
        for name in list(registry):
            if name not in before:
                del registry[name]
        for name, entry in before.items():
            registry[name] = entry


@pytest.mark.parametrize("name", DOCS)
def test_python_blocks_run(name: str) -> None:
    text = (ROOT / name).read_text()
    blocks = BLOCK.findall(text)
    assert blocks, f"{name} has no python examples"
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{name}[block {i}]", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            raise AssertionError(f"{name} block {i} failed: {exc!r}\n{block}") from exc


# ---- the main job's counts in the docs (issue 23, point 5) ---------------------------------------

MAIN_JOB_DOCS = ["README.md", "docs/cli.md", "docs/benchmarks.md"]
_MAIN_JOB = re.compile(r"main job|`longtail bench` with no arguments|default `longtail bench`")


def _main_job_counts() -> tuple[int, int]:
    """(methods, stages per seed) of `longtail bench` with no arguments, from the registry: the
    single-label methods the bundled digits can run, and their distinct first stages (the engine's
    ``stage_of``) plus the balanced reference's."""
    from longtail.engine.config import load_config
    from longtail.engine.kinds import TASK_KINDS, reference_method
    from longtail.engine.methods import resolve_methods
    from longtail.engine.runner.benchmark import data_problem, method_names
    from longtail.engine.runner.stages import stage_of

    cfg = load_config(None)
    table = resolve_methods(cfg.recipes, cfg.task)
    data = TASK_KINDS[cfg.task].build_data(cfg, "long-tailed", None)
    names = [n for n in method_names(cfg) if data_problem(table[n], data) is None]
    entries = [(table[n], cfg.method_params.get(n, {}), "long-tailed") for n in names]
    assert cfg.data.balanced_reference
    entries.append((reference_method(cfg.task), {}, "balanced"))
    keys = {stage_of(cfg, m, m.resolve_params(p), v).key for m, p, v in entries}
    return len(names), len(keys)


def test_main_job_counts_in_the_docs_match_the_registry() -> None:
    """Every paragraph of README / docs about the main job that counts its methods or stages says
    what the registry gives, and each of these files states both."""
    methods, stages = _main_job_counts()
    for name in MAIN_JOB_DOCS:
        said_methods = said_stages = 0
        for paragraph in (ROOT / name).read_text().split("\n\n"):
            if not _MAIN_JOB.search(paragraph):
                continue
            for m in re.finditer(r"(\d+) methods", paragraph):
                assert int(m.group(1)) == methods, (
                    f"{name}: {m.group(0)!r}, the registry: {methods}"
                )
                said_methods += 1
            for m in re.finditer(r"(\d+) stages", paragraph):
                assert int(m.group(1)) == stages, f"{name}: {m.group(0)!r}, the registry: {stages}"
                said_stages += 1
        assert said_methods and said_stages, f"{name} does not state the main job's counts"
