"""Shared test configuration: hypothesis profile and the location of the real data sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "longtail",
    deadline=None,
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "30")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)
settings.load_profile("longtail")

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
# `longtail bench` trains in worker processes by default (one per core); the tests train in the
# test process unless they pass --jobs (tests/test_parallel_jobs.py)
os.environ.setdefault("LONGTAIL_JOBS", "1")
# a checkpoint after every epoch (the default writes one at most every 2 s): the resume, kill -9
# and full-disk tests interrupt runs of well under 2 s between two epochs
# (tests/test_engine_trainer.py::test_checkpoints_at_most_every_interval checks the default)
os.environ.setdefault("LONGTAIL_CHECKPOINT_SECONDS", "0")

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """Real data sets: ``$LONGTAIL_DATA_DIR`` or ``<repo>/../shared/data``."""
    return Path(os.environ.get("LONGTAIL_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = shared_data_dir()
    if not d.is_dir():
        pytest.skip(f"real data sets not found at {d} (set LONGTAIL_DATA_DIR)")
    return d


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The ``slow`` tests first (a stable sort: otherwise in collection order). Under xdist
    (``-n auto --dist worksteal`` in pyproject.toml) a worker that runs out of tests takes the end
    of the other's queue, so the long tests start early and the short ones fill in around them,
    instead of one worker finishing a long test alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
