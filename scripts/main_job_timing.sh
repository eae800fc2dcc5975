#!/usr/bin/env bash
# Times the main job (`longtail bench`, bundled digits) of this checkout against another source tree,
# paired (A B A B ...), with farm-bench (the tool library's timer). Usage, from the repository root:
#   bash scripts/main_job_timing.sh OLD_SRC [RUNS]
# OLD_SRC: the src/ folder of the other version (e.g. from `git worktree add /tmp/old 948e6c8`:
# /tmp/old/src). Quote the medians of the A/B ratios.
set -euo pipefail
old="${1:?usage: main_job_timing.sh OLD_SRC [RUNS]}"
runs="${2:-3}"
farm-bench -n "$runs" --warmup 1 --timeout 1800 \
  --vs "sh -c 'rm -rf /tmp/lt_timing_B; PYTHONPATH=$old exec longtail bench --out /tmp/lt_timing_B --no-progress'" \
  -- sh -c 'rm -rf /tmp/lt_timing_A; exec longtail bench --out /tmp/lt_timing_A --no-progress'
