"""Do the gloo group's threads outlive ``destroy_process_group``? (see ``exit_rank``)

Run under torchrun: ``torchrun --standalone --nproc_per_node=2 scripts/gloo_threads_after_ddp.py``
(``--no-ddp`` for the control). Each rank prints its thread names (``/proc/self/task/*/comm``,
Linux) after the group is destroyed and garbage collected: with torch 2.13, once a
``DistributedDataParallel`` model was built, the ``pt_gloo_runloop`` and ``gloo_tcp_loop`` threads
are still there; without one they are gone.
"""

from __future__ import annotations

import gc
import os
import sys

import torch
import torch.distributed as dist
from torch import nn


def thread_names() -> list[str]:
    tasks = os.listdir("/proc/self/task")
    return sorted(open(f"/proc/self/task/{t}/comm").read().strip() for t in tasks)


def main() -> None:
    dist.init_process_group("gloo")
    if "--no-ddp" not in sys.argv:
        model = nn.parallel.DistributedDataParallel(nn.Linear(3, 2))
        model(torch.randn(4, 3)).sum().backward()
        del model
    else:
        x = torch.ones(3)
        dist.all_reduce(x)
    dist.barrier()
    dist.destroy_process_group()
    gc.collect()
    print(f"rank {os.environ.get('RANK')}: threads after destroy: {thread_names()}", flush=True)


if __name__ == "__main__":
    main()
