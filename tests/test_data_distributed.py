"""Two-process gloo test: samplers shard like DistributedSampler with torch.distributed defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from dist_helpers import gloo_group, run_two_processes
from longtail.data import (
    ClassAwareSampler,
    ClassBalancedSampler,
    InstanceBalancedSampler,
    ProgressivelyBalancedSampler,
    SquareRootSampler,
)

COUNTS = [40, 17, 9, 4, 1]
EPOCHS = (0, 3)


def _labels() -> torch.Tensor:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(COUNTS)]).long()
    return labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(0))]


def _samplers(**kwargs: int) -> dict[str, ClassAwareSampler]:
    labels = _labels()
    n = labels.numel()  # 71: odd, so the per-rank length rounds up and the draw is padded
    return {
        "instance": InstanceBalancedSampler(labels, seed=5, **kwargs),
        "class": ClassBalancedSampler(labels, seed=5, **kwargs),
        "sqrt": SquareRootSampler(labels, seed=5, num_samples=n + 10, **kwargs),
        "progressive": ProgressivelyBalancedSampler(labels, total_epochs=4, seed=5, **kwargs),
        "drop_last": ClassAwareSampler(labels, q=0.3, seed=5, drop_last=True, **kwargs),
    }


def _draws(samplers: dict[str, ClassAwareSampler]) -> dict[str, list[int]]:
    out = {}
    for name, sampler in samplers.items():
        for epoch in EPOCHS:
            sampler.set_epoch(epoch)
            out[f"{name}@{epoch}"] = list(sampler)
    return out


def _worker(rank: int, port: int, outdir: str) -> None:
    with gloo_group(rank, port):
        samplers = _samplers()  # num_replicas / rank taken from the process group
        meta = {name: (s.num_replicas, s.rank, len(s)) for name, s in samplers.items()}
        draws = _draws(samplers)
        # every rank must hold the same global draw: compare through the process group itself
        gathered: list[object] = [None, None]
        dist.all_gather_object(gathered, draws)
        torch.save(
            {"meta": meta, "draws": draws, "gathered": gathered}, Path(outdir) / f"r{rank}.pt"
        )


@pytest.mark.slow
@pytest.mark.distributed
def test_two_process_gloo_sharding(tmp_path: Path) -> None:
    run_two_processes(_worker, tmp_path)
    results = [torch.load(tmp_path / f"r{rank}.pt", weights_only=False) for rank in (0, 1)]
    single = _samplers(num_replicas=1, rank=0)
    for rank, res in enumerate(results):
        for name, (replicas, got_rank, length) in res["meta"].items():
            assert (replicas, got_rank) == (2, rank), name
            expected_len = (
                len(single[name]) // 2 if name == "drop_last" else -(-len(single[name]) // 2)
            )
            assert length == expected_len, name
        assert res["gathered"] == [results[0]["draws"], results[1]["draws"]]
    for name in single:
        for epoch in EPOCHS:
            key = f"{name}@{epoch}"
            shard0, shard1 = results[0]["draws"][key], results[1]["draws"][key]
            assert len(shard0) == len(shard1), key
            # the shards interleave into the draw a single process makes for 2 replicas
            ref = _samplers(num_replicas=2, rank=0)[name]
            ref.set_epoch(epoch)
            merged = torch.stack([torch.tensor(shard0), torch.tensor(shard1)], dim=1).flatten()
            assert merged.tolist() == ref.global_indices().tolist(), key
            if name == "instance" and epoch == 0:
                # shuffling without replacement: the shards are disjoint where the data suffice
                n = _labels().numel()
                assert len(set(merged[:n].tolist())) == n
        assert results[0]["draws"][f"{name}@0"] != results[0]["draws"][f"{name}@3"], name
