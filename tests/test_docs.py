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
