"""docs/metrics.md: every signature it shows is the real one and its code runs."""

from __future__ import annotations

import math
import re

import pytest
import torch

import longtail.metrics
from data_fixtures import doc_code_blocks, doc_signature_problems


def test_signatures_in_docs_match_the_code() -> None:
    assert doc_signature_problems("docs/metrics.md", longtail.metrics) == []


def _stand_ins(num_classes: int) -> dict[str, object]:
    """What the snippets leave to the reader: a model, loaders and training counts."""
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Linear(5, num_classes)

    def loader(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        x = torch.randn(n, 5, generator=g)
        return [
            (x[i : i + 8], torch.randint(0, num_classes, (len(x[i : i + 8]),), generator=g))
            for i in range(0, n, 8)
        ]

    return {
        "model": model,
        "counts": [500 // (c + 1) for c in range(num_classes)],
        "test_loader": loader(40),
        "known_loader": loader(30),
        "unknown_loader": loader(20),
    }


@pytest.mark.parametrize("index", range(len(doc_code_blocks("docs/metrics.md"))))
def test_code_blocks_run(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    block = doc_code_blocks("docs/metrics.md")[index]
    match = re.search(r"num_classes=(\d+)", block)
    assert match is not None
    namespace = _stand_ins(int(match.group(1)))
    with torch.no_grad():
        exec(compile(block, f"docs/metrics.md block {index}", "exec"), namespace)
    if "result" in namespace:
        result = namespace["result"]
        assert isinstance(result, dict)
        assert set(result) == {"balanced_accuracy", "accuracy", "many", "medium", "few", "ece"}
        assert all(math.isnan(v) or 0 <= v <= 1 for v in result.values())
    elif "values" in namespace:  # the MetricCollection block
        values = namespace["values"]
        assert set(values) == {
            "balanced_accuracy",
            "many",
            "medium",
            "few",
            "ece",
            "macro_accuracy",
        }
        assert all(math.isnan(float(v)) or 0 <= float(v) <= 1 for v in values.values())
        assert all(m.update_count == 0 for m in namespace["val_metrics"].values())  # reset
    else:
        assert "auroc" in capsys.readouterr().out
