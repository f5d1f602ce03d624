"""What every benchmark records the same way: the machine and load average around a run, and its results as JSON.

A script imports it with its folder's parent on ``sys.path``::

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from common import load_average, run_record, write_results
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages, rounded: a shared machine's other work, recorded beside a run."""
    return [round(x, 2) for x in os.getloadavg()]


def run_record(load_before: list[float]) -> dict[str, Any]:
    """Where and when a run was measured: the machine, the load average before (``load_before``) and now, the date."""
    return {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "load_before": load_before,
        "load_after": load_average(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def write_results(result: dict[str, Any], folder: str | Path, name: str) -> Path:
    """Write ``result`` to ``folder/name-YYYYmmdd-HHMMSS.json`` (the folder is made), say where, return the path."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    target.write_text(json.dumps(result, indent=2))
    print(f"wrote {target}")
    return target
