"""Two-process gloo test: every metric class, accumulated on unequal shards (with empty batches, and for
the per-sample states also with one process holding nothing), equals the one-process value; compute
leaves the local states untouched. One spawned run checks all the classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from dist_helpers import gloo_group, run_two_processes
from longtail.metrics import MeanAveragePrecision, Metric, SingleLabelMetrics
from metric_cases import BY_NAME, CASES, COUNTS, N_BINS, C, Case, N, assert_same, batches, result

SPLIT = 30  # rank 0 holds 30 samples, rank 1 holds 67


def _feed(metric: Metric, case: Case, rank: int, *, rank0_only: bool = False) -> None:
    """This rank's shard in three batches, the first one empty (nothing on rank 1 if
    ``rank0_only``)."""
    inputs = case.data(0)
    if rank0_only and rank == 1:
        return
    part = slice(0, SPLIT) if rank == 0 else slice(SPLIT, N)
    rows = tuple(t[part] for t in inputs)
    n = len(rows[0])
    for b in batches(rows, [0, n // 3, n - n // 3]):
        metric.update(*b)


def _local_states(metric: Metric) -> dict[str, Any]:
    return {
        k: [t.clone() for t in v] if isinstance(v, list) else v.clone()
        for k, v in metric.metric_state.items()
    }


LOCAL = (  # built with sync_on_compute=False
    "SingleLabelMetrics",
    "MeanAveragePrecision",
)


def _local_metric(name: str) -> Metric:
    if name == "SingleLabelMetrics":
        return SingleLabelMetrics(
            C, COUNTS, shot_mode="terciles", n_bins=N_BINS, sync_on_compute=False
        )
    return MeanAveragePrecision(sync_on_compute=False)


def _worker(rank: int, port: int, outdir: str) -> None:
    with gloo_group(rank, port):
        out: dict[str, Any] = {}
        for case in CASES:
            variants = (False, True) if case.per_sample else (False,)
            for rank0_only in variants:
                key = f"{case.name}{':rank0_only' if rank0_only else ''}"
                m = case.make()
                _feed(m, case, rank, rank0_only=rank0_only)
                before = _local_states(m)
                out[key] = result(m, case)
                out[f"{key}:again"] = result(m, case)  # compute twice: the same value
                after = _local_states(m)
                assert before.keys() == after.keys()
                for name, v in before.items():  # synchronising left the local states as they were
                    w = after[name]
                    if isinstance(v, list):
                        assert len(v) == len(w) and all(map(torch.equal, v, w)), (key, name)
                    else:
                        assert torch.equal(v, w), (key, name)
        for name in LOCAL:  # sync_on_compute=False: every accessor gives this process's value
            case = BY_NAME[name]
            m = _local_metric(name)
            _feed(m, case, rank)
            out[f"{name}:local"] = result(m, case)
        torch.save(out, Path(outdir) / f"rank{rank}.pt")


def _one_process(case: Case, *, rank0_only: bool) -> dict[str, Any]:
    m = case.make()
    _feed(m, case, 0)
    if not rank0_only:
        _feed(m, case, 1)
    return result(m, case)


@pytest.mark.slow
@pytest.mark.distributed
def test_two_process_gloo_equals_single_process(tmp_path: Path) -> None:
    run_two_processes(_worker, tmp_path)
    got = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    checked = 0
    for case in CASES:
        variants = (False, True) if case.per_sample else (False,)
        for rank0_only in variants:
            key = f"{case.name}{':rank0_only' if rank0_only else ''}"
            want = _one_process(case, rank0_only=rank0_only)
            for r in (0, 1):
                # sums of float64 confidences add up in another order: 1e-12
                assert_same(got[r][key], want, 1e-12, f"rank{r}:{key}")
                assert_same(got[r][f"{key}:again"], want, 1e-12, f"rank{r}:{key}:again")
            checked += 1
    assert checked == len(CASES) + sum(c.per_sample for c in CASES)
    for name in LOCAL:
        case = BY_NAME[name]
        for r in (0, 1):
            shard = case.make()
            _feed(shard, case, r)
            assert_same(got[r][f"{name}:local"], result(shard, case), 1e-12, f"rank{r}:{name}")
