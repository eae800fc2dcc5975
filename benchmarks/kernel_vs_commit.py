"""Time the sigmoid focal kernel of the working tree against the same kernel at an older commit.

Usage: ``python benchmarks/kernel_vs_commit.py [COMMIT]`` (default 9da1a08, before the
cancellation-free rewrite). Loads ``src/longtail/losses/_elementwise.py`` of COMMIT with ``git
show``, then times forward + backward of ``sigmoid_focal_elementwise(z, y, gamma=2, alpha=0.25)``
(mean-reduced) for both and ``F.binary_cross_entropy_with_logits``, alternately in one process, one
thread, 60 repetitions (the first 10 dropped), targets with 5% positives; prints the medians and
the ratio new / old at the three shapes of ``loss_speed.py``.
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from longtail.losses import _elementwise as new

SHAPES = [(512, 10), (256, 1000), (64, 20000)]


def main() -> None:
    commit = sys.argv[1] if len(sys.argv) > 1 else "9da1a08"
    root = Path(__file__).resolve().parents[1]
    text = subprocess.run(
        ["git", "show", f"{commit}:src/longtail/losses/_elementwise.py"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "old_elementwise.py"
        path.write_text(text)
        spec = importlib.util.spec_from_file_location("old_elementwise", path)
        assert spec is not None and spec.loader is not None
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
    torch.set_num_threads(1)
    for shape in SHAPES:
        z0 = torch.randn(*shape) * 3
        y = (torch.rand(*shape) < 0.05).float()
        times: dict[str, list[float]] = {"old": [], "new": [], "bce": []}
        for _ in range(60):
            for name in times:
                z = z0.clone().requires_grad_()
                start = time.perf_counter()
                if name == "bce":
                    loss = F.binary_cross_entropy_with_logits(z, y)
                else:
                    kernel = old if name == "old" else new
                    loss = kernel.sigmoid_focal_elementwise(z, y, 2.0, 0.25).mean()
                loss.backward()
                times[name].append(time.perf_counter() - start)
        med = {k: statistics.median(v[10:]) * 1e3 for k, v in times.items()}
        print(
            f"{shape}: old {med['old']:.3f} ms, new {med['new']:.3f} ms, bce {med['bce']:.3f} ms, "
            f"new / old {med['new'] / med['old']:.2f}"
        )


if __name__ == "__main__":
    main()
