"""Two-process gloo test: metrics accumulated on unequal shards equal the single-process value."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from dist_helpers import gloo_group, run_two_processes
from longtail.metrics import (
    Accuracy,
    BalancedAccuracy,
    ConfusionMatrix,
    ExpectedCalibrationError,
    MeanAveragePrecision,
    Metric,
    MultilabelPRF,
    OpenSetMetrics,
    PerClassAccuracy,
    RecallAtK,
    ShotAccuracy,
    SingleLabelMetrics,
)

C, L = 6, 4
COUNTS = [400, 150, 90, 40, 15, 3]
N = 97
SPLIT = 30  # rank 0 holds 30 samples, rank 1 holds 67


def _data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    logits = torch.randn(N, C, generator=g)
    target = torch.randint(0, C, (N,), generator=g)
    target[target == 2] = 3  # class 2 absent
    open_target = target.clone()
    open_target[torch.rand(N, generator=g) < 0.3] = -1
    scores = torch.randint(-2, 3, (N, L), generator=g).double()  # ties
    ml_targets = (torch.rand(N, L, generator=g) < 0.4).long()
    ml_targets[torch.rand(N, L, generator=g) < 0.1] = -1
    emb = torch.randn(N, 3, generator=g)
    return {
        "logits": logits,
        "target": target,
        "open_target": open_target,
        "scores": scores,
        "ml_targets": ml_targets,
        "emb": emb,
    }


def _metrics() -> dict[str, Metric[Any]]:
    return {
        "cm": ConfusionMatrix(C),
        "acc": Accuracy(),
        "bacc": BalancedAccuracy(C),
        "pc": PerClassAccuracy(C),
        "shot": ShotAccuracy(COUNTS, mode="terciles"),
        "ece": ExpectedCalibrationError(10),
        "all": SingleLabelMetrics(C, COUNTS),
        "map": MeanAveragePrecision(L),
        "map_rank0_only": MeanAveragePrecision(L),  # rank 1 contributes nothing
        "prf": MultilabelPRF(L),
        "open": OpenSetMetrics(C),
        "r@k": RecallAtK((1, 2, 4)),
    }


def _feed(
    metrics: dict[str, Metric[Any]], d: dict[str, torch.Tensor], sl: slice, rank0: bool
) -> None:
    lg, tg = d["logits"][sl], d["target"][sl]
    # two batches per shard, so accumulation within a process is exercised as well
    n = lg.shape[0]
    for part in (slice(0, n // 2), slice(n // 2, n)):
        for key in ("cm", "acc", "bacc", "pc", "shot", "ece", "all"):
            metrics[key].update(lg[part], tg[part])  # type: ignore[attr-defined]
        metrics["map"].update(d["scores"][sl][part], d["ml_targets"][sl][part])  # type: ignore[attr-defined]
        if rank0:
            metrics["map_rank0_only"].update(d["scores"][sl][part], d["ml_targets"][sl][part])  # type: ignore[attr-defined]
        metrics["prf"].update(d["scores"][sl][part], d["ml_targets"][sl][part])  # type: ignore[attr-defined]
        metrics["open"].update(lg[part], d["open_target"][sl][part])  # type: ignore[attr-defined]
        metrics["r@k"].update(d["emb"][sl][part], tg[part])  # type: ignore[attr-defined]


def _results(metrics: dict[str, Metric[Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: m.compute() for k, m in metrics.items()}
    out["all.per_class"] = metrics["all"].per_class()  # type: ignore[attr-defined]
    out["all.confusion"] = metrics["all"].confusion()  # type: ignore[attr-defined]
    return out


def _worker(rank: int, port: int, outdir: str) -> None:
    with gloo_group(rank, port):
        d = _data()
        sl = slice(0, SPLIT) if rank == 0 else slice(SPLIT, N)
        metrics = _metrics()
        _feed(metrics, d, sl, rank == 0)
        local_before = {k: m.states(sync=False) for k, m in metrics.items()}
        synced = _results(metrics)
        again = _results(metrics)  # compute twice: same value, local state untouched
        local_after = {k: m.states(sync=False) for k, m in metrics.items()}
        for k in local_before:
            for name, v in local_before[k].items():
                assert torch.equal(v, local_after[k][name]), (k, name)
        torch.save({"synced": synced, "again": again}, Path(outdir) / f"rank{rank}.pt")


def _assert_same(a: Any, b: Any, key: str) -> None:
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, equal_nan=True, msg=key)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), key
        for k in a:
            _assert_same(a[k], b[k], f"{key}.{k}")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), key
    else:
        assert a == pytest.approx(b, abs=1e-12), key


@pytest.mark.slow
@pytest.mark.distributed
def test_two_process_gloo_equals_single_process(tmp_path: Path) -> None:
    run_two_processes(_worker, tmp_path)

    d = _data()
    single = _metrics()
    _feed(single, d, slice(0, N), True)
    expected = _results(single)
    rank0_only = MeanAveragePrecision(L)
    rank0_only.update(d["scores"][:SPLIT], d["ml_targets"][:SPLIT])
    expected["map_rank0_only"] = rank0_only.compute()

    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        for key, value in expected.items():
            _assert_same(got["synced"][key], value, f"rank{rank}:{key}")
            _assert_same(got["again"][key], value, f"rank{rank}:{key}:again")
