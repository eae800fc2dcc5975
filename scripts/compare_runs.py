"""Compare the per-method, per-seed metric values of two behaviour snapshots (issue 19).

Usage: python scripts/compare_runs.py OLD NEW, where OLD and NEW are folders written by
scripts/behaviour_snapshot.sh. Every ``result.json`` and ``results.json`` under OLD must exist under
NEW with the same values, bit for bit (floats compared exactly): metrics, details, the per-epoch
history, fingerprints, stages, compositions and parameters; only wall-clock times (keys ending in
``seconds``, ``started``, ``finished``, ``time``) are skipped. Prints one line per difference; exit 1
if any.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

_CLOCK = ("seconds", "started", "finished", "time", "command", "created")


def _metrics(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def _is_clock(key: str) -> bool:
    last = key.rsplit(".", 1)[-1].split("[", 1)[0]
    return any(last.endswith(c) for c in _CLOCK)


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obj, list):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: obj}


def main(old: Path, new: Path) -> int:
    diffs = compared = 0
    files = sorted(
        p.relative_to(old) for name in ("result.json", "results.json") for p in old.rglob(name)
    )
    if not files:
        print(f"no result.json under {old}")
        return 1
    for rel in files:
        if not (new / rel).is_file():
            print(f"missing in new: {rel}")
            diffs += 1
            continue
        a, b = _flatten(_metrics(old / rel)), _flatten(_metrics(new / rel))
        for key in sorted(set(a) | set(b)):
            if _is_clock(key):
                continue
            compared += 1
            if a.get(key) != b.get(key):
                diffs += 1
                print(f"{rel}: {key}: {a.get(key)!r} != {b.get(key)!r}")
    print(f"{len(files)} result files, {compared} values compared, {diffs} differences")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
