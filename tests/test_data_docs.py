"""docs/data.md: every signature it shows is the real one, its code runs, its numbers hold."""

from __future__ import annotations

import torch

import longtail.data
from data_fixtures import REPO_ROOT, doc_code_blocks, doc_signature_problems, require
from longtail.data import long_tailed_counts


def test_signatures_in_docs_match_the_code() -> None:
    assert doc_signature_problems("docs/data.md", longtail.data) == []


def test_signature_checker_catches_mistakes() -> None:
    text = (
        "`make_long_tailed(labels, imbalance_factor, *, profile='step', seed=0)` "
        "`load_idx(directory, split='train', gz=True)` `download(name, *, directory)`"
    )
    problems = doc_signature_problems("x.md", longtail.data, text)
    assert len(problems) == 3
    assert "default of 'profile'" in problems[0]
    assert "no parameter 'gz'" in problems[1]
    assert "'directory' is not keyword-only" in problems[2]


def test_code_blocks_run() -> None:
    blocks = doc_code_blocks("docs/data.md")
    assert blocks
    data_dir = require("fashion-mnist").parent
    namespace: dict[str, object] = {}
    for block in blocks:
        code = block.replace("../shared/data", str(data_dir))
        exec(compile(code, "docs/data.md", "exec"), namespace)
    idx = namespace["idx"]
    assert isinstance(idx, torch.Tensor)
    assert idx.numel() == sum(long_tailed_counts(6000, 10, 100))
    assert len(namespace["sampler"]) == idx.numel()  # type: ignore[arg-type]


def test_numbers_quoted_in_docs() -> None:
    text = (REPO_ROOT / "docs/data.md").read_text(encoding="utf-8")
    counts = long_tailed_counts(5000, 10, 100)
    assert "| images | " + " | ".join(map(str, counts)) + " | 12,406 |" in text
    assert sum(counts) == 12406
    assert "CIFAR-100-LT at IF 100 has 10,847 images" in text
    assert sum(long_tailed_counts(500, 100, 100)) == 10847
